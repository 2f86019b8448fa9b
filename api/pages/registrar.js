// The registrar's page: publish a doctor's day of slots (the server refuses overlapping slots
// of one doctor, and the field it names is shown), the day's schedule per doctor (free, held,
// booked with the patient's reference, past), the waiting lists with the holds on freed slots
// and when they end, booking a free slot for a patient named by their document, cancelling,
// and recording no-shows once a slot has started.
import {
  $, el, fill, api, authorityPath, showError, initPage, loadAuthorities, param, setParams, busy,
  fmtZoned, wireSignIn,
} from "./common.js";
import { t, onLangChange } from "./i18n.js";

const ROLE = "registrar";
let zone = "UTC";
let authorities = [];
let messageKey = null;
let data = { doctors: [], lists: [] };
let signIn = null;

const authority = () => $("authority").value || "demo";
const token = () => signIn && signIn.state.token;

function say(key, vars) {
  messageKey = key ? [key, vars] : null;
  $("message").textContent = key ? t(key, vars) : "";
}

/** The UTC offset (ms) of `timeZone` at the instant `ms`. */
function offsetAt(timeZone, ms) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(new Date(ms));
  const v = Object.fromEntries(parts.map((p) => [p.type, p.value]));
  return Date.UTC(+v.year, +v.month - 1, +v.day, +v.hour, +v.minute, +v.second) - ms;
}

/** The instant of a local day and time ("2027-03-01", "09:20") in `timeZone`. */
export function zonedInstant(day, time, timeZone) {
  const [y, mo, d] = day.split("-").map(Number);
  const [h, mi] = time.split(":").map(Number);
  const wall = Date.UTC(y, mo - 1, d, h, mi);
  let ms = wall - offsetAt(timeZone, wall);
  ms = wall - offsetAt(timeZone, ms);
  return new Date(ms);
}

/** Today in the authority's zone, as YYYY-MM-DD. */
function localToday() {
  return new Date().toLocaleDateString("sv-SE", { timeZone: zone });
}

function shortRef(ref) {
  return el("code", { title: ref, text: `#${ref.slice(0, 10)}` });
}

function timeCell(iso, minutes) {
  return el("td", {}, el("time", { datetime: iso, text: fmtZoned(iso, zone) }),
    el("span", { class: "small muted", text: ` · ${t("patient.minutes", { n: minutes })}` }));
}

function slotActions(slot) {
  const b = slot.booking;
  const started = new Date(slot.start).getTime() <= Date.now();
  if (b && b.status === "active") {
    return el("td", {},
      started ? el("button", {
        type: "button", class: "secondary", "data-no-show": b.number,
        "aria-label": t("registrar.noShow.label", { number: b.number }),
        text: t("registrar.noShow"), onclick: (e) => post(e.currentTarget, `/bookings/${b.number}/no-show`, "registrar.noShowDone", { number: b.number }),
      }) : null,
      " ",
      el("button", {
        type: "button", class: "danger", "data-cancel": b.number,
        "aria-label": t("registrar.cancel.label", { number: b.number }),
        text: t("patient.cancel"), onclick: (e) => post(e.currentTarget, `/bookings/${b.number}/cancel`, "registrar.cancelled", { number: b.number }),
      }));
  }
  if (slot.state === "free") {
    return el("td", {}, el("button", {
      type: "button", class: "secondary", "data-choose": slot.id,
      "aria-label": t("registrar.choose.label", { slot: slot.id }),
      text: t("registrar.choose"), onclick: () => choose(slot.id),
    }));
  }
  return el("td", {});
}

function patientCell(slot) {
  if (slot.booking) {
    return el("td", {}, shortRef(slot.booking.patient), " ",
      el("span", { class: "small muted", text: t("registrar.bookedBy", { who: slot.booking.booked_by, number: slot.booking.number }) }));
  }
  if (slot.hold) {
    return el("td", {}, shortRef(slot.hold.patient), " ",
      el("span", { class: "small" }, t("patient.until"), " ",
        el("time", { class: "until", datetime: slot.hold.until, text: fmtZoned(slot.hold.until, zone) })));
  }
  return el("td", {});
}

function stateBadge(slot) {
  const key = slot.booking && slot.booking.status !== "active" ? `registrar.booking.${slot.booking.status}` : `registrar.state.${slot.state}`;
  return el("span", { class: `badge slot-${slot.state}`, text: t(key) });
}

function render() {
  $("zone").textContent = t("registrar.zone", { zone });
  fill($("doctors"), ...data.doctors.map((d) =>
    el("div", { class: "table-wrap", "data-doctor": d.doctor },
      el("table", {},
        el("caption", { text: t("registrar.doctorCaption", { doctor: d.doctor }) }),
        el("thead", {}, el("tr", {},
          ...["patient.col.time", "patient.col.slot", "patient.col.specialty", "patient.col.status", "registrar.col.patient"]
            .map((k) => el("th", { scope: "col", text: t(k) })),
          el("th", { scope: "col" }, el("span", { class: "sr-only", text: t("patient.col.action") })))),
        el("tbody", {}, ...d.slots.map((s) =>
          el("tr", { "data-slot": s.id, "data-state": s.state },
            timeCell(s.start, s.duration_minutes),
            el("td", { text: s.id }),
            el("td", { text: s.specialty }),
            el("td", {}, stateBadge(s)),
            patientCell(s),
            slotActions(s))))))));
  $("schedule-none").hidden = data.doctors.length > 0;

  const free = data.doctors.flatMap((d) => d.slots.filter((s) => s.state === "free").map((s) => ({ ...s, doctor: d.doctor })));
  const keep = $("book-slot").value;
  fill($("book-slot"), ...free.map((s) =>
    el("option", { value: s.id, text: `${s.id} · ${s.doctor} · ${fmtZoned(s.start, zone)}` })));
  if (free.some((s) => s.id === keep)) $("book-slot").value = keep;
  $("book").disabled = !token() || free.length === 0;
  $("publish").disabled = !token();

  const lists = data.lists.filter((l) => l.waiting.length > 0 || l.holds.length > 0);
  fill($("lists-body"), ...lists.map((l) =>
    el("div", { class: "waiting-list", "data-specialty": l.specialty },
      el("h3", { text: l.specialty }),
      el("ol", {}, ...l.waiting.map((w) =>
        el("li", { "data-entry": w.position },
          shortRef(w.patient), " ",
          el("span", { class: "small muted" }, t("registrar.entry", { tier: w.tier }), " ",
            el("time", { datetime: w.joined_at, text: fmtZoned(w.joined_at, zone) }))))),
      l.holds.length ? el("ul", { class: "holds" }, ...l.holds.map((h) =>
        el("li", { "data-hold": h.slot },
          t("patient.hold", { slot: h.slot, doctor: h.doctor, start: fmtZoned(h.start, zone) }), " — ",
          t("registrar.heldFor"), " ", shortRef(h.patient), " ",
          el("strong", {}, t("patient.until"), " ",
            el("time", { class: "until", datetime: h.until, text: fmtZoned(h.until, zone) }))))) : null)));
  $("lists-none").hidden = lists.length > 0;
}

async function loadSpecialties() {
  try {
    const answer = await api(`${authorityPath(authority())}/specialties`);
    const keep = $("pub-specialty").value;
    const ids = (answer.specialties || []).map((s) => s.id);
    fill($("pub-specialty"), ...ids.map((id) => el("option", { value: id, text: id })));
    if (ids.includes(keep)) $("pub-specialty").value = keep;
  } catch (e) {
    showError($("error"), e);
  }
}

async function refresh() {
  showError($("error"), null);
  showError($("publish-error"), null);
  showError($("book-error"), null);
  const a = authorities.find((x) => x.id === authority());
  zone = (a && a.time_zone) || "UTC";
  if (!$("day").value) $("day").value = localToday();
  setParams({ authority: authority(), day: $("day").value });
  if (!token()) {
    data = { doctors: [], lists: [] };
    render();
    return;
  }
  const base = authorityPath(authority());
  try {
    const day = await api(`${base}/clinic/schedule?date=${encodeURIComponent($("day").value)}`, { token: token() });
    zone = day.time_zone || zone;
    data.doctors = day.doctors || [];
    data.lists = (await api(`${base}/clinic/waiting-lists`, { token: token() })).specialties || [];
  } catch (e) {
    showError($("error"), e);
  }
  render();
}

function choose(slot) {
  $("book-slot").value = slot;
  $("book-document").focus();
}

async function post(button, path, doneKey, vars) {
  await busy(button, async () => {
    showError($("error"), null);
    try {
      await api(`${authorityPath(authority())}${path}`, { method: "POST", token: token() });
      say(doneKey, vars);
    } catch (e) {
      showError($("error"), e);
      return;
    }
    await refresh();
  });
}

/** The slots of the publish form: back to back from `from` to `to` on the chosen local day. */
function daySlots() {
  const doctor = $("pub-doctor").value.trim();
  const day = $("day").value;
  const minutes = Number($("pub-duration").value);
  const from = zonedInstant(day, $("pub-from").value, zone).getTime();
  const to = zonedInstant(day, $("pub-to").value, zone).getTime();
  const slots = [];
  for (let at = from; at + minutes * 60_000 <= to; at += minutes * 60_000) {
    const local = new Date(at).toLocaleTimeString("sv-SE", { timeZone: zone, hour: "2-digit", minute: "2-digit" }).replace(":", "");
    slots.push({
      id: `${doctor}-${day.replaceAll("-", "")}-${local}`,
      start: new Date(at).toISOString().replace(".000Z", "Z"),
      duration_minutes: minutes,
    });
  }
  return { doctor, specialty: $("pub-specialty").value, slots };
}

async function publish(e) {
  e.preventDefault();
  showError($("publish-error"), null);
  await busy($("publish"), async () => {
    const body = daySlots();
    try {
      await api(`${authorityPath(authority())}/slots`, { method: "POST", token: token(), body });
      say("registrar.published", { n: body.slots.length, doctor: body.doctor });
    } catch (err) {
      showError($("publish-error"), err);
      return;
    }
    await refresh();
  });
}

async function book(e) {
  e.preventDefault();
  showError($("book-error"), null);
  await busy($("book"), async () => {
    const slot = $("book-slot").value;
    const body = { slot, document: $("book-document").value.trim() };
    if ($("book-referral").value.trim()) body.referral = $("book-referral").value.trim();
    try {
      const answer = await api(`${authorityPath(authority())}/bookings`, { method: "POST", token: token(), body });
      const booked = (answer.events || []).map((x) => x.event).find((x) => x && x.type === "SlotBooked");
      say("registrar.bookedFor", { slot, number: booked ? booked.booking : "" });
    } catch (err) {
      showError($("book-error"), err);
      return;
    }
    await refresh();
  });
}

async function main() {
  initPage();
  signIn = wireSignIn(ROLE, refresh);
  try {
    authorities = await loadAuthorities($("authority"), param("authority") || "demo");
  } catch (e) {
    showError($("error"), e);
  }
  const a = authorities.find((x) => x.id === authority());
  zone = (a && a.time_zone) || "UTC";
  $("day").value = param("day") || localToday();
  await loadSpecialties();
  $("day-form").addEventListener("submit", (e) => {
    e.preventDefault();
    refresh();
  });
  $("authority").addEventListener("change", async () => {
    await loadSpecialties();
    await refresh();
  });
  $("publish-form").addEventListener("submit", publish);
  $("book-form").addEventListener("submit", book);
  onLangChange(() => {
    if (messageKey) say(...messageKey);
    signIn.render();
    render();
  });
  await refresh();
  document.body.dataset.ready = "true";
}

main();

// The patient's page: the caller's bookings with their time and doctor (and cancelling
// them) and those the registry made for the patient, the patient's place on the waiting lists
// (and leaving one) with any freed slot held for them, and the free slots, earliest first, to
// book.
import {
  $, el, fill, api, authorityPath, showError, initPage, loadAuthorities, param, setParams, busy,
  fmtZoned, wireSignIn,
} from "./common.js";
import { t, onLangChange } from "./i18n.js";

const ROLE = "parent";
let zone = "UTC";
let authorities = [];
let messageKey = null;
let data = { bookings: [], places: [], holds: [], free: [], forYou: [] };
let signIn = null;

const authority = () => $("authority").value || "demo";
const documentNumber = () => $("document").value.trim();
const token = () => signIn && signIn.state.token;

function say(key, vars) {
  messageKey = key ? [key, vars] : null;
  $("message").textContent = key ? t(key, vars) : "";
}

function placeName() {
  const a = authorities.find((x) => x.id === authority());
  return a && a.name ? a.name : authority();
}

function timeCell(iso, minutes) {
  return el("td", {}, el("time", { datetime: iso, text: fmtZoned(iso, zone) }),
    minutes ? el("span", { class: "small muted", text: ` · ${t("patient.minutes", { n: minutes })}` }) : null);
}

function bookButton(slot) {
  return el("button", {
    type: "button",
    "data-book": slot.slot || slot.id,
    "aria-label": t("patient.book.label", { slot: slot.slot || slot.id, time: fmtZoned(slot.start, zone) }),
    text: t("patient.book"),
    onclick: (e) => book(e.currentTarget, slot.slot || slot.id),
  });
}

function render() {
  // The caller's own bookings, and those the registry made for the patient (not cancellable
  // here: the registry cancels them).
  const mine = new Set(data.bookings.map((b) => b.number));
  const bookings = [...data.bookings, ...data.forYou.filter((b) => !mine.has(b.number)).map((b) => ({ ...b, forYou: true }))]
    .sort((a, b) => a.start.localeCompare(b.start));
  fill($("bookings-body"), ...bookings.map((b) =>
    el("tr", { "data-booking": b.number, "data-for-you": b.forYou ? "true" : undefined },
      timeCell(b.start, b.duration_minutes),
      el("td", { text: b.doctor }),
      el("td", { text: b.specialty }),
      el("td", { text: placeName() }),
      el("td", {}, el("span", { class: `badge bk-${b.status}`, text: t(`patient.status.${b.status}`) })),
      el("td", {}, b.forYou ? el("span", { class: "small muted", text: t("patient.bookedByRegistry") }) : b.status === "active"
        ? el("button", {
          type: "button", class: "danger", "data-cancel": b.number,
          "aria-label": t("patient.cancel.label", { time: fmtZoned(b.start, zone) }),
          text: t("patient.cancel"), onclick: (e) => cancel(e.currentTarget, b.number),
        })
        : null),
    )));
  $("bookings-none").hidden = bookings.length > 0;
  $("bookings-table").hidden = bookings.length === 0;

  fill($("places"), ...data.places.map((p) =>
    el("li", { "data-place": p.specialty },
      t("patient.place", { specialty: p.specialty, position: p.position, waiting: p.waiting }),
      " ", el("span", { class: "small muted" }, t("patient.joined"), " ",
        el("time", { datetime: p.joined_at, text: fmtZoned(p.joined_at, zone) })),
      " ", el("button", {
        type: "button", class: "danger", "data-leave": p.specialty,
        "aria-label": t("patient.leave.label", { specialty: p.specialty }),
        text: t("patient.leave"), onclick: (e) => leave(e.currentTarget, p.specialty),
      }))));
  $("waiting-none").hidden = data.places.length > 0;
  fill($("holds-list"), ...data.holds.map((h) =>
    el("li", { "data-hold": h.slot },
      t("patient.hold", { slot: h.slot, doctor: h.doctor, start: fmtZoned(h.start, zone) }), " ",
      el("strong", {}, t("patient.until"), " ", el("time", { class: "until", datetime: h.until, text: fmtZoned(h.until, zone) })),
      " ", bookButton(h))));
  $("holds").hidden = data.holds.length === 0;

  const free = [...data.free].sort((a, b) => a.start.localeCompare(b.start) || a.id.localeCompare(b.id));
  fill($("free-body"), ...free.map((s) =>
    el("tr", { "data-slot": s.id },
      timeCell(s.start, s.duration_minutes),
      el("td", { text: s.doctor }),
      el("td", { text: s.specialty }),
      el("td", { text: s.id }),
      el("td", {}, bookButton(s)))));
  $("free-none").hidden = free.length > 0;
  $("free-table").hidden = free.length === 0;
  $("join").disabled = !token() || !documentNumber() || !$("specialty").value;
}

async function loadSpecialties() {
  const keep = param("specialty") || $("specialty").value;
  try {
    const answer = await api(`${authorityPath(authority())}/specialties`);
    const ids = (answer.specialties || []).map((s) => s.id);
    fill($("specialty"), el("option", { value: "", text: t("patient.specialty.any") }),
      ...ids.map((id) => el("option", { value: id, text: id })));
    if (ids.includes(keep)) $("specialty").value = keep;
  } catch (e) {
    showError($("error"), e);
  }
}

async function refresh() {
  showError($("error"), null);
  const base = authorityPath(authority());
  const a = authorities.find((x) => x.id === authority());
  zone = (a && a.time_zone) || "UTC";
  setParams({ authority: authority(), specialty: $("specialty").value });
  try {
    const query = $("specialty").value ? `?specialty=${encodeURIComponent($("specialty").value)}` : "";
    data.free = (await api(`${base}/slots${query}`)).free_slots || [];
    data.bookings = token() ? (await api(`${base}/bookings`, { token: token() })).bookings || [] : [];
    if (token() && documentNumber()) {
      const mine = await api(`${base}/waiting-list/places`, {
        method: "POST", token: token(), body: { document: documentNumber() },
      });
      data.places = mine.places || [];
      data.holds = mine.holds || [];
      data.forYou = mine.booked_for_you || [];
    } else {
      data.places = [];
      data.holds = [];
      data.forYou = [];
    }
  } catch (e) {
    showError($("error"), e);
  }
  render();
}

function needSignIn() {
  if (token() && documentNumber()) return false;
  showError($("error"), new Error(t(token() ? "patient.needDocument" : "patient.needSignIn")));
  return true;
}

async function book(button, slot) {
  if (needSignIn()) return;
  await busy(button, async () => {
    try {
      await api(`${authorityPath(authority())}/bookings`, {
        method: "POST", token: token(), body: { slot, document: documentNumber() },
      });
      say("patient.booked", { slot });
    } catch (e) {
      showError($("error"), e);
      return;
    }
    await refresh();
  });
}

async function cancel(button, number) {
  await busy(button, async () => {
    try {
      await api(`${authorityPath(authority())}/bookings/${number}/cancel`, { method: "POST", token: token() });
      say("patient.cancelled");
    } catch (e) {
      showError($("error"), e);
      return;
    }
    await refresh();
  });
}

async function join() {
  if (needSignIn()) return;
  await busy($("join"), async () => {
    try {
      await api(`${authorityPath(authority())}/waiting-list`, {
        method: "POST", token: token(), body: { specialty: $("specialty").value, document: documentNumber() },
      });
      say("patient.joinedList", { specialty: $("specialty").value });
    } catch (e) {
      showError($("error"), e);
      return;
    }
    await refresh();
  });
}

async function leave(button, specialty) {
  if (needSignIn()) return;
  await busy(button, async () => {
    try {
      await api(`${authorityPath(authority())}/waiting-list/leave`, {
        method: "POST", token: token(), body: { specialty, document: documentNumber() },
      });
      say("patient.left", { specialty });
    } catch (e) {
      showError($("error"), e);
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
  await loadSpecialties();
  $("patient-form").addEventListener("submit", (e) => {
    e.preventDefault();
    refresh();
  });
  $("authority").addEventListener("change", async () => {
    await loadSpecialties();
    await refresh();
  });
  $("specialty").addEventListener("change", refresh);
  $("document").addEventListener("input", () => render());
  $("join").addEventListener("click", join);
  onLangChange(() => {
    if (messageKey) say(...messageKey);
    render();
  });
  await refresh();
  document.body.dataset.ready = "true";
}

main();

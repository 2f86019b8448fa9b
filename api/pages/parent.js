// The parent's page: sign in, look up an application, see its position in each queue and the
// timeline of why it moved, and answer an offer.
import {
  $, el, fill, api, authorityPath, showError, storedToken, storeToken, claimsOf, demoToken,
  initPage, loadAuthorities, param, setParams, busy, timeEl, tierBadge, serviceName,
  statusBadge, privilegeName, fmtNumber, fmtZoned, zonedTimeEl, fmtDate,
} from "./common.js";
import { t, onLangChange } from "./i18n.js";
import { initAgeRequests, loadAgeRequests, renderAgeRequests } from "./parent-age.js";

const ROLE = "parent";
let token = storedToken(ROLE);
let institutions = new Map(); // id -> name
let current = null; // { authority, application, explanation }
let mine = null; // the signed-in parent's applications
let messageKey = null; // the status message shown, redrawn in the other language

const authority = () => $("authority").value || "demo";

function renderWho() {
  const claims = token && claimsOf(token);
  $("who").textContent = claims ? t("common.signedin", { sub: claims.sub, role: claims.role }) : t("common.signedout");
  $("signout").hidden = !claims;
}

function institutionLabel(id) {
  const name = institutions.get(id);
  return name ? `${id} — ${name}` : id;
}

async function loadInstitutions() {
  try {
    const answer = await api(`${authorityPath(authority())}/institutions`);
    institutions = new Map((answer.institutions || []).map((i) => [i.id, i.name]));
  } catch (_) {
    institutions = new Map();
  }
}

// ---------------------------------------------------------------------------------------------
// Sign-in

async function signIn(newToken) {
  token = newToken;
  storeToken(ROLE, token);
  renderWho();
  await loadMine();
  await loadAgeRequests();
  if ($("number").value) await lookup();
}

async function demoSignIn() {
  showError($("error"), null);
  const sub = $("demo-sub").value.trim() || "parent-1";
  try {
    await signIn(await demoToken(ROLE, sub));
  } catch (e) {
    showError($("error"), e);
  }
}

function signOut() {
  token = null;
  storeToken(ROLE, null);
  mine = null;
  current = null;
  $("mine").hidden = true;
  $("result").hidden = true;
  renderWho();
  loadAgeRequests();
}

async function loadMine() {
  mine = null;
  $("mine").hidden = true;
  const claims = token && claimsOf(token);
  if (!claims || claims.role !== "parent") return;
  try {
    const answer = await api(`${authorityPath(authority())}/applications`, { token });
    mine = answer.applications || [];
  } catch (e) {
    showError($("error"), e);
    return;
  }
  renderMine();
}

function renderMine() {
  if (!mine) return;
  const list = $("mine-list");
  if (mine.length === 0) {
    fill(list, el("li", { class: "muted", text: t("parent.mine.none") }));
  } else {
    fill(
      list,
      mine.map((a) =>
        el(
          "li",
          {},
          el("button", {
            type: "button",
            class: "secondary",
            "data-number": a.number,
            text: t(a.child_name ? "parent.mine.itemNamed" : "parent.mine.item", {
              number: a.number,
              child: a.child_name || "",
              service: serviceName(a.service),
              status: t(`status.${a.status}`),
            }),
            onclick: () => {
              $("number").value = a.number;
              lookup();
            },
          }),
        ),
      ),
    );
  }
  $("mine").hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Look-up

async function lookup() {
  showError($("error"), null);
  const number = Number.parseInt($("number").value, 10);
  if (!Number.isInteger(number) || number < 1) {
    $("number").focus();
    return;
  }
  if (!token) {
    showError($("error"), new Error(t("common.needSignin")));
    $("demo-sub").focus();
    return;
  }
  setParams({ authority: authority(), number });
  $("message").textContent = t("common.loading");
  const base = `${authorityPath(authority())}/applications/${number}`;
  try {
    const [application, explanation] = await Promise.all([
      api(base, { token }),
      api(`${base}/explanation`, { token }),
    ]);
    current = { authority: authority(), application, explanation };
    $("message").textContent = "";
    render();
    // The list shows each application's status: keep it as current as the detail.
    loadMine();
    $("app-title").focus();
  } catch (e) {
    $("message").textContent = "";
    $("result").hidden = true;
    current = null;
    showError($("error"), e);
  }
}

function render() {
  if (!current) return;
  const a = current.application;
  const title = $("app-title");
  title.textContent = t("parent.app.h", { number: a.number });
  title.tabIndex = -1;

  const rows = [
    ["parent.app.service", serviceName(a.service)],
    ["parent.app.status", statusBadge(a.status)],
    ["parent.app.registered", zonedTimeEl(a.registered_at, a.time_zone)],
    ["parent.app.chain", fmtNumber(a.chain_position)],
  ];
  if (a.child_name) rows.unshift(["parent.app.child", a.child_name]);
  if (a.offer && a.status !== "offered") {
    rows.push([
      "parent.app.place",
      t("parent.app.placeText", { institution: `${a.offer.institution.name} (${a.offer.institution.id})`, status: t(`placement.${a.offer.status}`) }),
    ]);
  }
  if (a.service === "kindergarten") rows.push(["parent.app.desired", timeEl(a.desired_start, true)]);
  if (a.campaign) rows.push(["parent.app.campaign", a.campaign]);
  rows.push([
    "parent.app.prefs",
    a.preferences.length
      ? el("ol", { class: "prefs" }, a.preferences.map((p) => el("li", { text: institutionLabel(p) })))
      : t("common.none"),
  ]);
  if (a.service === "kindergarten") {
    rows.push(["parent.app.anyOther", a.any_other ? t("common.yes") : t("common.no")]);
  }
  rows.push([
    "parent.app.privileges",
    a.privileges.length
      ? el(
          "ul",
          {},
          a.privileges.map((c) =>
            el("li", {}, `${privilegeName(c.privilege)} — `, el("span", { class: "muted", text: t(`privstatus.${c.status}`) })),
          ),
        )
      : t("common.none"),
  ]);
  fill($("app-summary"), rows.flatMap(([key, value]) => [el("dt", { text: t(key) }), el("dd", {}, value)]));

  renderOffer(a);
  renderHistory(a);
  $("confirmation-link").href = `/parent/confirmation?${new URLSearchParams({ authority: current.authority, number: a.number })}`;
  renderPositions(a);
  renderTimelines(current.explanation, a);
  $("result").hidden = false;
}

function renderOffer(a) {
  const box = $("offer");
  box.hidden = a.status !== "offered" || !a.offer;
  if (box.hidden) return;
  const o = a.offer;
  fill($("offer-institution"), el("strong", { text: o.institution.name }), ` (${o.institution.id})`);
  fill($("offer-deadline"), el("strong", {}, zonedTimeEl(o.deadline, a.time_zone)));
  $("offer-round").textContent = t("parent.offer.roundText", {
    round: o.round,
    age: o.age_group != null ? o.age_group : "—",
    year: o.intake_year,
  });
}

function historyText(step, a) {
  const place = (o) => (o ? `${o.institution.name} (${o.institution.id})` : "");
  switch (step.type) {
    case "submitted":
      return t("hist.submitted", { chain: step.chain_position });
    case "amended":
      return t("hist.amended", {
        prefs: (step.preferences || []).map((p) => p.name).join(", ") || t("common.none"),
        date: fmtDate(step.desired_start),
      });
    case "privilege_claimed":
    case "privilege_confirmed":
      return t(`hist.${step.type}`, { privilege: privilegeName(step.privilege) });
    case "privilege_revoked":
      return t("hist.privilege_revoked", { privilege: privilegeName(step.privilege), reason: step.reason || "—" });
    case "offered":
      return t("hist.offered", {
        institution: place(step.offer),
        round: step.offer ? step.offer.round : "",
        deadline: step.offer ? fmtZoned(step.offer.deadline, a.time_zone) : "",
      });
    case "enrolled":
      return t("hist.enrolled", { institution: place(step.offer) });
    case "declined":
    case "expired":
      return t(`hist.${step.type}`, { date: fmtDate(step.desired_start) });
    case "transferred":
      return t("hist.transferred", { to: step.to_application });
    case "withdrawn":
      return step.reason ? t("hist.withdrawnReason", { reason: step.reason }) : t("hist.withdrawn");
    default:
      return t(`hist.${step.type}`);
  }
}

function renderHistory(a) {
  const steps = a.history || [];
  fill(
    $("history"),
    steps.map((step) =>
      el(
        "li",
        { "data-type": step.type, "data-chain": step.chain_position },
        zonedTimeEl(step.at, a.time_zone),
        " — ",
        historyText(step, a),
      ),
    ),
  );
}

function renderPositions(a) {
  const positions = a.positions || [];
  $("positions-none").hidden = positions.length > 0;
  $("positions").hidden = positions.length === 0;
  fill(
    $("positions-body"),
    positions.map((p) =>
      el(
        "tr",
        { "data-queue": p.queue },
        el("td", { text: institutionLabel(p.institution) }),
        el("td", { text: p.age_group != null ? t("agegroup", { age: p.age_group }) : p.campaign || t("common.none") }),
        el("td", { text: p.intake_year != null ? p.intake_year : t("common.none") }),
        el(
          "td",
          { class: "num" },
          el("span", { class: "position", "data-position": p.position, text: fmtNumber(p.position) }),
        ),
        el("td", { class: "num", "data-size": p.queue_size, text: fmtNumber(p.queue_size) }),
        el("td", {}, tierBadge(p.tier, p.service)),
      ),
    ),
  );
}

function causeKey(cause) {
  if (typeof cause === "string") return cause;
  if (cause && typeof cause === "object" && "round" in cause) return "round";
  return "other";
}

function describe(m) {
  const cause = t(`cause.${causeKey(m.cause)}`);
  const count = m.applications || 1;
  if (m.other_application == null) {
    if (m.position_before == null && m.position_after != null) {
      const key = causeKey(m.cause);
      return key === "offer_declined" || key === "offer_expired"
        ? t("move.rejoined", { cause })
        : t("move.joined");
    }
    if (m.position_after == null) {
      return m.round ? t("move.placed", { round: m.round }) : t("move.left", { cause });
    }
    return t("move.own", { cause });
  }
  if (count > 1) {
    return m.round
      ? t("move.others", { count: fmtNumber(count), round: m.round })
      : t("move.othersGeneric", { count: fmtNumber(count), cause });
  }
  return t("move.other", { other: m.other_application, cause });
}

function movementItem(m) {
  const before = m.position_before;
  const after = m.position_after;
  let direction = "";
  if (before != null && after != null) direction = after < before ? "up" : after > before ? "down" : "";
  let position = null;
  if (before != null && after != null) position = t("move.position", { before, after });
  else if (after != null) position = t("move.positionNew", { after });
  return el(
    "li",
    { class: direction || undefined },
    timeEl(m.at),
    " — ",
    describe(m),
    position ? " " : null,
    position ? el("span", { class: `move ${direction}`, text: position }) : null,
  );
}

function renderTimelines(explanation, a) {
  const box = $("timelines");
  const queues = explanation.queues || [];
  // The explanation covers the queues the application is in now.
  $("timeline-h").hidden = queues.length === 0;
  fill(
    box,
    queues.map((q) => {
      const d = q.description || {};
      const heading =
        d.campaign != null
          ? t("parent.timeline.school", { institution: institutionLabel(d.institution), campaign: d.campaign })
          : t("parent.timeline.queue", {
              institution: institutionLabel(d.institution),
              age: d.age_group,
              year: d.intake_year,
            });
      const x = q.explanation || {};
      const movements = x.movements || [];
      return el(
        "section",
        { class: "timeline-queue", "data-queue": q.queue },
        el("h4", { text: heading }),
        x.truncated ? el("p", { class: "small muted", text: t("parent.timeline.truncated") }) : null,
        movements.length
          ? el("ol", { class: "timeline" }, movements.map(movementItem))
          : el("p", { class: "muted", text: t("parent.timeline.empty") }),
        el("p", {
          class: "small",
          text:
            x.position_now != null
              ? t("parent.timeline.now", { position: fmtNumber(x.position_now) })
              : t("parent.timeline.gone"),
        }),
      );
    }),
  );
  if (queues.length === 0 && a.status === "enrolled") {
    box.append(el("p", { class: "ok", text: t("parent.enrolled") }));
  }
}

async function answerOffer(accept, button) {
  if (!current) return;
  showError($("error"), null);
  const number = current.application.number;
  const path = `${authorityPath(current.authority)}/applications/${number}/offer/${accept ? "accept" : "decline"}`;
  await busy(button, async () => {
    try {
      await api(path, { method: "POST", token });
      await lookup();
      messageKey = accept ? "parent.offer.accepted" : "parent.offer.declined";
      $("message").textContent = t(messageKey);
    } catch (e) {
      showError($("error"), e);
    }
  });
}

// ---------------------------------------------------------------------------------------------

async function init() {
  initPage();
  renderWho();
  onLangChange(() => {
    renderWho();
    renderMine();
    renderAgeRequests();
    render();
    if (messageKey && $("message").textContent) $("message").textContent = t(messageKey);
  });
  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    busy($("show"), lookup);
  });
  $("demo-signin").addEventListener("click", () => busy($("demo-signin"), demoSignIn));
  $("signout").addEventListener("click", signOut);
  $("use-token").addEventListener("click", () => {
    const value = $("token-input").value.trim();
    if (!claimsOf(value)) {
      showError($("error"), new Error(t("common.token")));
      return;
    }
    $("token-input").value = "";
    signIn(value);
  });
  initAgeRequests({ authority, token: () => token });
  $("accept").addEventListener("click", () => answerOffer(true, $("accept")));
  $("decline").addEventListener("click", () => answerOffer(false, $("decline")));
  $("authority").addEventListener("change", async () => {
    $("result").hidden = true;
    await loadInstitutions();
    await loadMine();
    await loadAgeRequests();
  });
  // Demo applications N belong to demo parents parent-N: suggest the matching one.
  $("number").addEventListener("input", () => {
    const n = $("number").value;
    if (!token && /^parent-\d+$/.test($("demo-sub").value) && /^\d+$/.test(n)) $("demo-sub").value = `parent-${n}`;
  });
  const number = param("number");
  if (number) $("number").value = number;
  try {
    await loadAuthorities($("authority"), param("authority") || "demo");
  } catch (e) {
    showError($("error"), e);
  }
  await loadInstitutions();
  if (token) {
    await loadMine();
    await loadAgeRequests();
    if (number) await lookup();
  }
  document.body.dataset.ready = "true";
}

init();

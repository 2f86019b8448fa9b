// The officer's school-campaign page: the campaign's stages with their opening times in the
// authority's local time, running a stage's enrollment decisions, and the enrollment order of
// each school (the children enrolled, with the order's date and their names where the family
// gave them) as a printable document: printing shows only the chosen school's order.
import {
  $, el, fill, api, authorityPath, showError, initPage, loadAuthorities, param, setParams, busy,
  fmtZoned, fmtDate, wireSignIn,
} from "./common.js";
import { t, onLangChange } from "./i18n.js";

const ROLE = "officer";
let authorities = [];
let campaigns = [];
let order = null;
let messageKey = null;
let signIn = null;

const authority = () => $("authority").value || "demo";
const campaign = () => $("campaign").value;
const token = () => signIn && signIn.state.token;

function say(key, vars) {
  messageKey = key ? [key, vars] : null;
  $("message").textContent = key ? t(key, vars) : "";
}

/** A local day (YYYY-MM-DD) as a long date, without shifting it through a time zone. */
function longDay(day) {
  return fmtDate(day);
}

function renderCalendar() {
  const rows = order ? order.calendar : [];
  const now = Date.now();
  fill($("calendar-body"), ...rows.map((m, i) => {
    const next = rows[i + 1];
    const current = new Date(m.at).getTime() <= now && (!next || now < new Date(next.at).getTime()) && m.what !== "closes";
    return el("tr", { "data-moment": m.what },
      el("th", { scope: "row", text: t(`school.moment.${m.what}`) }),
      el("td", {}, el("time", { datetime: m.at, text: fmtZoned(m.at, order.time_zone) })),
      el("td", {}, current ? el("span", { class: "badge st-enrolled", text: t("school.open") }) : null));
  }));
  $("calendar").hidden = !order;
}

function orderDocument(school) {
  const dates = [...new Set(school.enrolled.map((c) => c.order_date))];
  return el("article", { class: "card order", "data-school": school.institution, "aria-labelledby": `order-${school.institution}` },
    el("h2", { id: `order-${school.institution}` }, t("school.order.title"), " — ", school.name),
    el("p", {}, t("school.order.campaign", { campaign: order.campaign, year: order.year }), " · ",
      t("school.order.date"), " ", ...dates.flatMap((d, i) => [i ? ", " : "", el("time", { class: "order-date", datetime: d, text: longDay(d) })])),
    el("p", { class: "small muted", text: t("school.order.seats", { seats: school.seats, enrolled: school.enrolled.length }) }),
    el("div", { class: "table-wrap" },
      el("table", {},
        el("thead", {}, el("tr", {},
          ...["school.col.n", "school.col.application", "school.col.child", "school.col.stage", "school.col.date"]
            .map((k) => el("th", { scope: "col", text: t(k) })))),
        el("tbody", {}, ...school.enrolled.map((c, i) =>
          el("tr", { "data-application": c.application },
            el("td", { text: String(i + 1) }),
            el("td", { text: `№ ${c.application}` }),
            el("td", { class: "child-name", text: c.child_name || t("school.noName") }),
            el("td", { text: t(`school.stage.${c.stage}`) }),
            el("td", {}, el("time", { datetime: c.order_date, text: longDay(c.order_date) }))))))));
}

function render() {
  renderCalendar();
  const schools = order ? order.schools.filter((s) => s.enrolled.length > 0) : [];
  const keep = $("print-school").value;
  fill($("print-school"), ...schools.map((s) => el("option", { value: s.institution, text: `${s.institution} — ${s.name}` })));
  if (schools.some((s) => s.institution === keep)) $("print-school").value = keep;
  fill($("orders"), ...schools.map(orderDocument));
  $("orders-none").hidden = schools.length > 0;
  $("print").disabled = schools.length === 0;
  $("run-button").disabled = !token() || !campaign();
  if (!$("round").value && campaign()) $("round").value = defaultRound();
  choosePrinted();
}

function defaultRound() {
  const day = new Date().toISOString().slice(0, 10).replaceAll("-", "");
  return `${campaign()}-${$("stage").value}-${day}`.slice(0, 64);
}

/** Marks the chosen school's order as the one to print. */
function choosePrinted() {
  for (const node of document.querySelectorAll("#orders .order")) {
    node.classList.toggle("print-this", node.dataset.school === $("print-school").value);
  }
}

async function loadCampaigns() {
  try {
    campaigns = (await api(`${authorityPath(authority())}/campaigns`)).campaigns || [];
  } catch (e) {
    showError($("error"), e);
    campaigns = [];
  }
  const keep = param("campaign") || campaign();
  fill($("campaign"), ...campaigns.map((c) => el("option", { value: c.id, text: `${c.id} (${c.year})` })));
  if (campaigns.some((c) => c.id === keep)) $("campaign").value = keep;
}

async function refresh() {
  showError($("error"), null);
  setParams({ authority: authority(), campaign: campaign() });
  order = null;
  if (token() && campaign()) {
    try {
      order = await api(`${authorityPath(authority())}/campaigns/${encodeURIComponent(campaign())}/enrollment-order`, { token: token() });
    } catch (e) {
      showError($("error"), e);
    }
  }
  render();
}

async function runEnrollment(e) {
  e.preventDefault();
  showError($("run-error"), null);
  await busy($("run-button"), async () => {
    const body = { round: $("round").value.trim(), campaign: campaign(), stage: $("stage").value };
    try {
      const answer = await api(`${authorityPath(authority())}/school/enrollments`, { method: "POST", token: token(), body });
      const placed = answer && answer.round && typeof answer.round.placed === "number" ? answer.round.placed : null;
      say(placed === null ? "school.ran" : "school.ranN", { round: body.round, n: placed });
      $("round").value = "";
    } catch (err) {
      showError($("run-error"), err);
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
  await loadCampaigns();
  $("campaign-form").addEventListener("submit", (e) => {
    e.preventDefault();
    refresh();
  });
  $("authority").addEventListener("change", async () => {
    await loadCampaigns();
    await refresh();
  });
  $("campaign").addEventListener("change", () => {
    $("round").value = "";
    refresh();
  });
  $("stage").addEventListener("change", () => {
    $("round").value = defaultRound();
  });
  $("run-form").addEventListener("submit", runEnrollment);
  $("print-school").addEventListener("change", choosePrinted);
  $("print").addEventListener("click", () => {
    choosePrinted();
    window.print();
  });
  onLangChange(() => {
    if (messageKey) say(...messageKey);
    signIn.render();
    render();
  });
  await refresh();
  document.body.dataset.ready = "true";
}

main();

// The officer's dashboard: demand against seats per institution (an SVG chart), publishing
// kindergarten seats, running an allocation round and reading its results, and confirming
// the privileges parents claimed.
import {
  $, el, fill, api, authorityPath, showError, storedToken, storeToken, claimsOf, demoToken,
  initPage, loadAuthorities, param, setParams, busy, timeEl, fmtNumber, privilegeName, ApiError,
} from "./common.js";
import { t, onLangChange } from "./i18n.js";
import { barChart } from "./chart.js";
import { initDesk, loadWorklist, loadAgeWorklist, renderDesk, fillCampaigns } from "./officer-desk.js";
import { loadDemand } from "./demand.js";

const ROLE = "officer";
let token = storedToken(ROLE);

const data = {
  config: null,
  institutions: [],
  queues: [],
  campaigns: [],
  rounds: [],
  /** Seats published from this page, by intake year: Map(year -> Map(institution -> [{age_group, seats}])). */
  published: new Map(),
  /** The seat groups of the year the seats editor shows, as the API lists them (published, taken, free). */
  seatGroups: [],
  /** Round details fetched, by id. */
  roundDetails: new Map(),
  shownRound: null,
  privApplication: null,
};

const authority = () => $("authority").value || "demo";
const base = () => authorityPath(authority());

function renderWho() {
  const claims = token && claimsOf(token);
  $("who").textContent = claims ? t("common.signedin", { sub: claims.sub, role: claims.role }) : t("common.signedout");
  $("signout").hidden = !claims;
}

/** Shows a status line; `where` is the section's status element (default: the page's). */
function say(text, where = "message") {
  $(where).textContent = text || "";
}

function requireToken() {
  if (token) return true;
  showError($("error"), new Error(t("common.needSignin")));
  $("demo-signin").focus();
  return false;
}

// ---------------------------------------------------------------------------------------------
// Loading

async function loadAll() {
  showError($("error"), null);
  const [info, institutions, queues, campaigns] = await Promise.all([
    api(base()),
    api(`${base()}/institutions`),
    api(`${base()}/queues`),
    api(`${base()}/campaigns`),
  ]);
  data.config = info.config || {};
  data.institutions = institutions.institutions || [];
  data.queues = queues.queues || [];
  data.campaigns = campaigns.campaigns || [];
  await loadRounds();
  fillChartKinds();
  fillRoundKinds();
  fillCampaigns(data.campaigns);
  await loadSeats();
  await drawChart();
  await loadDemand(authority(), token);
}

async function loadRounds() {
  data.rounds = [];
  if (token) {
    try {
      data.rounds = (await api(`${base()}/rounds`, { token })).rounds || [];
    } catch (e) {
      if (!(e instanceof ApiError) || (e.status !== 403 && e.status !== 404)) showError($("error"), e);
    }
  }
  renderRounds();
}

async function refreshQueues() {
  data.queues = (await api(`${base()}/queues`)).queues || [];
}

async function roundDetail(id) {
  if (!data.roundDetails.has(id)) {
    data.roundDetails.set(id, await api(`${base()}/rounds/${encodeURIComponent(id)}`, { token }));
  }
  return data.roundDetails.get(id);
}

// ---------------------------------------------------------------------------------------------
// Chart

function kindergartenYears() {
  const years = new Set();
  for (const q of data.queues) {
    if (q.description.service === "kindergarten" && q.description.intake_year != null) years.add(q.description.intake_year);
  }
  for (const year of data.published.keys()) years.add(year);
  if (years.size === 0) years.add(new Date().getFullYear() + 1);
  return [...years].sort((a, b) => a - b);
}

function fillChartKinds() {
  const select = $("chart-kind");
  const previous = select.value;
  const options = [
    ...kindergartenYears().map((year) => el("option", { value: `kg:${year}`, text: t("officer.chart.kindergarten", { year }) })),
    ...data.campaigns.map((c) => el("option", { value: `school:${c.id}`, text: t("officer.chart.school", { campaign: c.id }) })),
  ];
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

/**
 * Free seats per kindergarten for an intake year now (published minus offered or taken), and
 * where the numbers come from. After a round this sets the queue that is left against the
 * seats that are left, not against the seats the round started with.
 */
async function kindergartenSeats(year) {
  let groups = [];
  try {
    groups = (await api(`${base()}/kindergarten/seats?intake_year=${year}`)).seats || [];
  } catch (_) {
    groups = [];
  }
  if (groups.length === 0) return { seats: null, source: t("officer.chart.seatsUnknown") };
  const seats = new Map();
  for (const g of groups) seats.set(g.institution, (seats.get(g.institution) || 0) + g.free);
  return { seats, source: t("officer.chart.seatsSource.free") };
}

async function drawChart() {
  const kind = $("chart-kind").value || "";
  let rows = [];
  let source = "";
  if (kind.startsWith("kg:")) {
    const year = Number(kind.slice(3));
    const demand = new Map();
    for (const q of data.queues) {
      const d = q.description;
      if (d.service === "kindergarten" && d.intake_year === year) demand.set(d.institution, (demand.get(d.institution) || 0) + q.size);
    }
    const { seats, source: from } = await kindergartenSeats(year);
    source = from;
    const ids = data.institutions.filter((i) => i.kind === "kindergarten").map((i) => i.id);
    rows = ids.map((id) => ({ label: id, demand: demand.get(id) || 0, seats: seats ? seats.get(id) || 0 : null }));
  } else if (kind.startsWith("school:")) {
    const id = kind.slice(7);
    const campaign = data.campaigns.find((c) => c.id === id);
    const demand = new Map();
    for (const q of data.queues) {
      if (q.description.campaign === id) demand.set(q.description.institution, (demand.get(q.description.institution) || 0) + q.size);
    }
    rows = ((campaign && campaign.schools) || []).map((s) => ({
      label: s.institution,
      demand: demand.get(s.institution) || 0,
      seats: s.seats,
    }));
    source = t("officer.chart.seatsSource.campaign");
  }
  $("chart-source").textContent = source;
  if (rows.length === 0) {
    fill($("chart"), el("p", { class: "muted", text: t("officer.chart.empty") }));
  } else {
    barChart($("chart"), rows, {
      title: t("officer.chart.title"),
      demand: t("officer.chart.demand"),
      seats: t("officer.chart.seats"),
    });
  }
  fill(
    $("chart-table-body"),
    rows.map((r) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", text: r.label }),
        el("td", { class: "num", text: fmtNumber(r.demand) }),
        el("td", { class: "num", text: r.seats == null ? "?" : fmtNumber(r.seats) }),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Seats

function maxAge() {
  return (data.config && data.config.kindergarten_max_age_years) || 7;
}

/** Loads the seats of the editor's intake year (published, taken, free) and shows them. */
async function loadSeats() {
  const year = Number($("seats-year").value) || kindergartenYears()[0];
  $("seats-year").value = year;
  try {
    data.seatGroups = (await api(`${base()}/kindergarten/seats?intake_year=${year}`)).seats || [];
  } catch (e) {
    data.seatGroups = [];
    showError($("seats-error"), e);
  }
  fillSeatsTable();
}

function fillSeatsTable() {
  const year = Number($("seats-year").value);
  const ages = [...Array(maxAge()).keys()];
  fill(
    $("seats-head"),
    el(
      "tr",
      {},
      el("th", { scope: "col", text: t("officer.col.institution") }),
      ages.map((age) => el("th", { scope: "col", class: "num", text: t("officer.seats.age", { age }) })),
    ),
  );
  fill(
    $("seats-body"),
    data.institutions
      .filter((i) => i.kind === "kindergarten")
      .map((inst) => {
        return el(
          "tr",
          { "data-institution": inst.id },
          el("th", { scope: "row", text: `${inst.id} — ${inst.name}` }),
          ages.map((age) => {
            const g = data.seatGroups.find((x) => x.institution === inst.id && x.age_group === age && x.intake_year === year);
            const counts = { taken: g ? g.taken : 0, free: g ? g.free : 0 };
            return el(
              "td",
              { class: "num" },
              el("input", {
                class: "seat",
                type: "number",
                min: counts.taken,
                max: 10000,
                step: 1,
                "data-age": age,
                "data-published": g ? g.published : "",
                value: g ? g.published : undefined,
                "aria-label": t("officer.seats.cellLabel", { institution: inst.id, age, ...counts }),
              }),
              g ? el("div", { class: "small muted seat-counts", text: t("officer.seats.cell", counts) }) : null,
            );
          }),
        );
      }),
  );
}

function fillSampleSeats() {
  // The demo's numbers: a few seats per group, varying by kindergarten and age, never below
  // the seats taken.
  [...$("seats-body").rows].forEach((row, i) => {
    for (const input of row.querySelectorAll("input.seat")) {
      input.value = Math.max(Number(input.min) || 0, 2 + ((i + Number(input.dataset.age)) % 4));
    }
  });
}

async function publishSeats() {
  if (!requireToken()) return;
  showError($("seats-error"), null);
  const year = Number($("seats-year").value);
  const requests = [];
  for (const row of $("seats-body").rows) {
    const seats = [...row.querySelectorAll("input.seat")]
      .filter((input) => input.value !== "")
      .map((input) => ({ age_group: Number(input.dataset.age), seats: Number(input.value) }));
    if (seats.length) requests.push({ institution: row.dataset.institution, intake_year: year, seats });
  }
  if (requests.length === 0) {
    say(t("officer.seats.nothing"), "seats-status");
    return;
  }
  const done = data.published.get(year) || new Map();
  try {
    for (const body of requests) {
      await api(`${base()}/kindergarten/seats`, { method: "POST", token, body });
      done.set(body.institution, body.seats);
    }
  } catch (e) {
    showError($("seats-error"), e);
  } finally {
    data.published.set(year, done);
  }
  if (done.size) say(t("officer.seats.published", { count: done.size }), "seats-status");
  await loadSeats();
  fillChartKinds();
  $("chart-kind").value = `kg:${year}`;
  await drawChart();
}

// ---------------------------------------------------------------------------------------------
// Rounds

function fillRoundKinds() {
  const years = kindergartenYears();
  if (!$("round-year").value) $("round-year").value = years[0];
  if (!$("round-id").value) $("round-id").value = suggestRoundId();
}

function suggestRoundId() {
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  const stamp = `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
  return `kg-${$("round-year").value || years0()}-${stamp}`;
}

function years0() {
  return kindergartenYears()[0];
}

async function runRound(event) {
  event.preventDefault();
  if (!requireToken()) return;
  showError($("round-error"), null);
  const round = $("round-id").value.trim();
  const year = Number($("round-year").value);
  say(t("officer.round.running"), "round-status");
  try {
    const answer = await api(`${base()}/kindergarten/rounds`, {
      method: "POST",
      token,
      body: { round, intake_year: year },
    });
    const view = answer.round;
    if (view) {
      data.roundDetails.set(view.id, view);
      say(
        t("officer.round.done", { round: view.id, placed: fmtNumber(view.placed), applicants: fmtNumber(view.applicants) }),
        "round-status",
      );
      showResults(view);
    } else {
      say("", "round-status");
    }
    $("round-id").value = "";
    $("round-id").value = suggestRoundId();
    await refreshQueues();
    await loadRounds();
    await loadSeats();
    $("chart-kind").value = `kg:${year}`;
    await drawChart();
  } catch (e) {
    say("", "round-status");
    showError($("round-error"), e);
  }
}

async function previewRound() {
  if (!requireToken()) return;
  if (!$("round-form").reportValidity()) return;
  showError($("round-error"), null);
  const round = $("round-id").value.trim();
  const year = Number($("round-year").value);
  say(t("officer.round.previewing"), "round-status");
  try {
    const answer = await api(`${base()}/kindergarten/rounds/preview`, {
      method: "POST",
      token,
      body: { round, intake_year: year },
    });
    const view = answer.round;
    say(
      view ? t("officer.round.previewDone", { round: view.id, placed: fmtNumber(view.placed), applicants: fmtNumber(view.applicants) }) : "",
      "round-status",
    );
    if (view) showResults(view, true);
  } catch (e) {
    say("", "round-status");
    showError($("round-error"), e);
  }
}

/** Downloads the shown round's results as CSV or XLSX (the officer's file, with names). */
async function exportRound(format, button) {
  const view = data.shownRound;
  if (!view || !requireToken()) return;
  showError($("round-error"), null);
  await busy(button, async () => {
    try {
      const response = await fetch(`${base()}/files/rounds/${encodeURIComponent(view.id)}.${format}`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
      const disposition = response.headers.get("Content-Disposition") || "";
      const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || `round-${view.id}.${format}`;
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      showError($("round-error"), e);
    }
  });
}

function renderRounds() {
  const list = $("rounds-list");
  if (data.rounds.length === 0) {
    fill(list, el("li", { class: "muted", text: t("officer.round.none") }));
    return;
  }
  fill(
    list,
    [...data.rounds].reverse().map((r) =>
      el(
        "li",
        {},
        el("strong", { text: r.id }),
        " — ",
        timeEl(r.at),
        ` — ${t(`service.${r.service}`)}: ${fmtNumber(r.placed)} / ${fmtNumber(r.applicants)} `,
        r.calendar_override
          ? el("span", { class: "override", text: `${t("officer.round.override", { reason: r.calendar_override })} ` })
          : "",
        el("button", {
          type: "button",
          class: "secondary",
          text: t("officer.round.view"),
          onclick: async () => {
            try {
              showResults(await roundDetail(r.id));
            } catch (e) {
              showError($("error"), e);
            }
          },
        }),
      ),
    ),
  );
}

const PLACEMENTS_SHOWN = 500;

function showResults(view, preview = false) {
  data.shownRound = view;
  data.shownPreview = preview;
  if (!preview) setParams({ round: view.id });
  $("results-title").textContent = t(preview ? "officer.round.previewTitle" : "officer.results.h", { round: view.id });
  $("results-preview-note").hidden = !preview;
  $("results-exports").hidden = preview;
  const seatsTotal = view.seats.reduce((s, g) => s + g.capacity, 0);
  const stat = (key, value) => el("div", {}, el("span", { class: "label", text: t(key) }), value);
  fill(
    $("results-stats"),
    stat("officer.results.at", timeEl(view.at)),
    stat("officer.results.applicants", el("span", { class: "stat", id: "stat-applicants", text: fmtNumber(view.applicants) })),
    stat("officer.results.placed", el("span", { class: "stat", id: "stat-placed", text: fmtNumber(view.placed) })),
    stat("officer.results.seats", el("span", { class: "stat", text: fmtNumber(seatsTotal) })),
    view.scope && view.scope.offer_deadline ? stat("officer.results.deadline", timeEl(view.scope.offer_deadline)) : null,
  );
  const placedPer = new Map();
  for (const p of view.placements) placedPer.set(p.seats, (placedPer.get(p.seats) || 0) + 1);
  fill(
    $("groups-body"),
    view.seats.map((g) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", text: g.id }),
        el("td", { class: "num", text: fmtNumber(g.capacity) }),
        el("td", { class: "num", text: fmtNumber(placedPer.get(g.id) || 0) }),
      ),
    ),
  );
  const perInstitution = new Map();
  for (const g of view.seats) {
    const row = perInstitution.get(g.institution) || { capacity: 0, placed: 0 };
    row.capacity += g.capacity;
    row.placed += placedPer.get(g.id) || 0;
    perInstitution.set(g.institution, row);
  }
  fill(
    $("by-institution-body"),
    [...perInstitution].map(([institution, row]) =>
      el(
        "tr",
        { "data-institution": institution },
        el("th", { scope: "row", text: institutionLabel(institution) }),
        el("td", { class: "num", text: fmtNumber(row.capacity) }),
        el("td", { class: "num", text: fmtNumber(row.placed) }),
      ),
    ),
  );
  const shown = view.placements.slice(0, PLACEMENTS_SHOWN);
  $("placements-note").textContent =
    view.placements.length === 0
      ? t("officer.results.nobody")
      : view.placements.length > shown.length
        ? t("officer.results.more", { shown: shown.length, total: view.placements.length })
        : "";
  fill(
    $("placements-body"),
    shown.map((p) =>
      el(
        "tr",
        { "data-application": p.application },
        el("td", { class: "num", text: p.application }),
        el("td", { text: p.seats }),
        el("td", { text: p.status ? t(`placement.${p.status}`) : t("common.none") }),
        el("td", {}, p.deadline ? timeEl(p.deadline) : t("common.none")),
      ),
    ),
  );
  $("round-results").hidden = false;
}

/** An institution's name with its id, or the id alone for one the page does not know. */
function institutionLabel(id) {
  const found = data.institutions.find((i) => i.id === id);
  return found && found.name ? `${found.name} (${id})` : id;
}

// ---------------------------------------------------------------------------------------------
// Privileges

async function showPrivileges(event) {
  if (event) event.preventDefault();
  if (!requireToken()) return;
  showError($("priv-error"), null);
  const number = Number.parseInt($("priv-number").value, 10);
  if (!(number > 0)) return;
  try {
    data.privApplication = await api(`${base()}/applications/${number}`, { token });
  } catch (e) {
    data.privApplication = null;
    $("priv-result").replaceChildren();
    showError($("priv-error"), e);
    return;
  }
  renderPrivileges();
}

function renderPrivileges() {
  const a = data.privApplication;
  if (!a) return;
  if (!a.privileges.length) {
    fill($("priv-result"), el("p", { class: "muted", text: t("officer.priv.none") }));
    return;
  }
  const table = el(
    "table",
    { id: "priv-table" },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col", text: t("officer.priv.col.privilege") }),
        el("th", { scope: "col", text: t("officer.priv.col.status") }),
        el("th", { scope: "col" }),
      ),
    ),
    el(
      "tbody",
      {},
      a.privileges.map((c) =>
        el(
          "tr",
          {},
          el("td", { text: privilegeName(c.privilege) }),
          el("td", { text: t(`privstatus.${c.status}`) }),
          el(
            "td",
            {},
            c.status === "claimed"
              ? el("button", { type: "button", text: t("officer.priv.confirm"), onclick: (e) => decide(a.number, c.privilege, true, e.currentTarget) })
              : null,
            c.status !== "revoked"
              ? el("button", { type: "button", class: "danger", text: t("officer.priv.revoke"), onclick: (e) => decide(a.number, c.privilege, false, e.currentTarget) })
              : null,
          ),
        ),
      ),
    ),
  );
  fill($("priv-result"), el("p", { text: `${t("parent.app.h", { number: a.number })} — ${t(`status.${a.status}`)}` }), table);
}

async function decide(number, privilege, confirm, button) {
  showError($("priv-error"), null);
  await busy(button, async () => {
    try {
      await api(`${base()}/applications/${number}/privileges/${confirm ? "confirm" : "revoke"}`, {
        method: "POST",
        token,
        body: confirm ? { privilege } : { privilege, reason: "revoked by an officer" },
      });
      say(t("officer.priv.done"), "priv-status");
      await showPrivileges();
      await loadWorklist();
      await refreshQueues();
      await drawChart();
    } catch (e) {
      showError($("priv-error"), e);
    }
  });
}

// ---------------------------------------------------------------------------------------------

async function signIn(newToken) {
  token = newToken;
  storeToken(ROLE, token);
  renderWho();
  await loadRounds();
  await loadWorklist();
  await loadAgeWorklist();
  await drawChart();
  await loadDemand(authority(), token);
}

/** Opens an application's privileges (from a search result). */
async function showApplication(number) {
  $("priv-number").value = number;
  await showPrivileges();
  $("priv-h").scrollIntoView({ block: "start" });
}

async function init() {
  initPage();
  renderWho();
  onLangChange(() => {
    renderWho();
    fillChartKinds();
    fillSeatsTable();
    renderRounds();
    drawChart();
    if (data.shownRound) showResults(data.shownRound, data.shownPreview);
    renderPrivileges();
    renderDesk();
  });
  $("demo-signin").addEventListener("click", () =>
    busy($("demo-signin"), async () => {
      showError($("error"), null);
      try {
        await signIn(await demoToken(ROLE, $("demo-sub").value.trim() || "officer-1"));
      } catch (e) {
        showError($("error"), e);
      }
    }),
  );
  $("signout").addEventListener("click", () => {
    token = null;
    storeToken(ROLE, null);
    renderWho();
    loadRounds();
    loadWorklist();
    loadAgeWorklist();
    loadDemand(authority(), null);
  });
  $("use-token").addEventListener("click", () => {
    const value = $("token-input").value.trim();
    if (!claimsOf(value)) {
      showError($("error"), new Error(t("common.token")));
      return;
    }
    $("token-input").value = "";
    signIn(value);
  });
  $("chart-kind").addEventListener("change", () => drawChart());
  $("chart-refresh").addEventListener("click", () =>
    busy($("chart-refresh"), async () => {
      await refreshQueues();
      await loadRounds();
      fillChartKinds();
      await drawChart();
    }),
  );
  $("seats-year").addEventListener("change", () => loadSeats());
  $("seats-fill").addEventListener("click", fillSampleSeats);
  $("seats-publish").addEventListener("click", () => busy($("seats-publish"), publishSeats));
  $("round-form").addEventListener("submit", (event) => busy($("run-round"), () => runRound(event)));
  $("preview-round").addEventListener("click", () => busy($("preview-round"), previewRound));
  $("export-csv").addEventListener("click", (e) => exportRound("csv", e.currentTarget));
  $("export-xlsx").addEventListener("click", (e) => exportRound("xlsx", e.currentTarget));
  initDesk({
    base,
    token: () => token,
    requireToken,
    showApplication,
    afterChange: async () => {
      if (data.privApplication) await showPrivileges();
      await refreshQueues();
      await drawChart();
    },
  });
  $("priv-form").addEventListener("submit", (event) => busy($("priv-show"), () => showPrivileges(event)));
  $("authority").addEventListener("change", async () => {
    data.published.clear();
    data.roundDetails.clear();
    $("round-results").hidden = true;
    setParams({ authority: authority(), round: null });
    try {
      await loadAll();
    } catch (e) {
      showError($("error"), e);
    }
  });
  try {
    await loadAuthorities($("authority"), param("authority") || "demo");
    await loadAll();
    await loadWorklist();
    await loadAgeWorklist();
    const round = param("round");
    if (round && token) showResults(await roundDetail(round));
  } catch (e) {
    showError($("error"), e);
  }
  document.body.dataset.ready = "true";
}

init();

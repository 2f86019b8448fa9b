// The officer's demand report: kindergarten applications against seats by district, age
// group and intake year (GET …/reports/demand, docs/RULES.md#kindergarten-demand), as an SVG
// chart per district, a table per district and one per district and age group (the shortage
// or surplus first, so that a phone shows it without scrolling), and the same
// report as CSV or XLSX. The officer page calls loadDemand after sign-in and on reloads.
import { $, el, fill, api, authorityPath, showError, fmtNumber, ApiError } from "./common.js";
import { t, onLangChange } from "./i18n.js";
import { barChart } from "./chart.js";

const state = { authority: null, token: null, report: null };

const districtName = (d) => (d == null ? t("demand.noDistrict") : d);

function reportPath(format = "") {
  const year = $("demand-year").value;
  const query = year ? `?intake_year=${encodeURIComponent(year)}` : "";
  return `${authorityPath(state.authority)}/reports/demand${format}${query}`;
}

/** The intake years the report has rows for, the one shown first: the earliest with waiting applications. */
function years(report) {
  const all = [...new Set(report.rows.map((r) => r.intake_year))].sort((a, b) => a - b);
  const waiting = all.find((y) => report.rows.some((r) => r.intake_year === y && r.applications_first_choice > 0));
  return { all, preferred: waiting ?? all[0] };
}

function fillYears() {
  const select = $("demand-year");
  const previous = Number(select.value) || null;
  const { all, preferred } = years(state.report);
  select.replaceChildren(...all.map((y) => el("option", { value: y, text: String(y) })));
  if (all.length) select.value = all.includes(previous) ? previous : preferred;
  select.disabled = all.length === 0;
}

/** A signed balance as the page shows it: "short by N", "N to spare" or "balanced". */
function balance(row) {
  if (row.shortage > 0) return el("span", { class: "shortage", text: t("demand.short", { n: fmtNumber(row.shortage) }) });
  if (row.surplus > 0) return el("span", { class: "surplus", text: t("demand.spare", { n: fmtNumber(row.surplus) }) });
  return el("span", { text: t("demand.balanced") });
}

function countCells(row) {
  return [
    row.applications_first_choice,
    row.applications_any_choice,
    row.seats_published,
    row.seats_taken,
    row.seats_free,
  ].map((n) => el("td", { class: "num", text: fmtNumber(n) }));
}

function render() {
  const report = state.report;
  if (!report) return;
  const year = Number($("demand-year").value);
  const districts = report.districts.filter((d) => d.intake_year === year);
  const rows = report.rows.filter((r) => r.intake_year === year);
  $("demand-source").textContent = report.rows.length
    ? t("demand.source", { events: fmtNumber(report.as_of_events) })
    : "";
  if (districts.length === 0) {
    fill($("demand-chart"), el("p", { class: "muted", text: t("demand.empty") }));
  } else {
    barChart(
      $("demand-chart"),
      districts.map((d) => ({ label: districtName(d.district), demand: d.applications_first_choice, seats: d.seats_free })),
      { title: t("demand.chart.title", { year }), demand: t("demand.firstChoice"), seats: t("demand.free") },
      "demand-chart",
    );
  }
  fill(
    $("demand-districts-body"),
    districts.map((d) =>
      el(
        "tr",
        { "data-district": d.district ?? "" },
        el("th", { scope: "row", text: districtName(d.district) }),
        el("td", { class: "num balance" }, balance(d)),
        countCells(d),
      ),
    ),
  );
  fill(
    $("demand-rows-body"),
    rows.map((r) =>
      el(
        "tr",
        { "data-district": r.district ?? "", "data-age": r.age_group },
        el("th", { scope: "row", text: districtName(r.district) }),
        el("td", { class: "num", text: String(r.age_group) }),
        el("td", { class: "num balance" }, balance(r)),
        countCells(r),
      ),
    ),
  );
  for (const [id, format] of [["demand-csv", ".csv"], ["demand-xlsx", ".xlsx"]]) {
    $(id).href = reportPath(format);
  }
}

/** Loads the report for an authority as the signed-in officer (or auditor); without a token, says so. */
export async function loadDemand(authority, token) {
  state.authority = authority;
  state.token = token;
  showError($("demand-error"), null);
  $("demand-status").textContent = "";
  if (!token) {
    state.report = null;
    fill($("demand-chart"));
    fill($("demand-districts-body"));
    fill($("demand-rows-body"));
    $("demand-status").textContent = t("demand.signin");
    return;
  }
  try {
    state.report = await api(`${authorityPath(authority)}/reports/demand`, { token });
  } catch (e) {
    state.report = null;
    if (e instanceof ApiError && e.status === 403) $("demand-status").textContent = t("demand.forbidden");
    else showError($("demand-error"), e);
    return;
  }
  fillYears();
  render();
}

/** Downloads a report file with the token (a plain link cannot send it). */
async function download(event) {
  event.preventDefault();
  const link = event.currentTarget;
  showError($("demand-error"), null);
  if (!state.token || !state.report) {
    $("demand-status").textContent = t("demand.signin");
    return;
  }
  try {
    const response = await fetch(link.href, { headers: { Authorization: `Bearer ${state.token}` } });
    if (!response.ok) {
      let body = {};
      try {
        body = await response.json();
      } catch (_) {
        body = {};
      }
      throw new ApiError(response.status, body);
    }
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const blob = await response.blob();
    const save = el("a", { href: URL.createObjectURL(blob) });
    save.download = name ? name[1] : link.href.split("/").pop().split("?")[0];
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(save.href), 10_000);
    $("demand-status").textContent = t("demand.downloaded", { file: save.download });
  } catch (e) {
    showError($("demand-error"), e);
  }
}

$("demand-year").addEventListener("change", render);
$("demand-refresh").addEventListener("click", () => loadDemand(state.authority, state.token));
$("demand-csv").addEventListener("click", download);
$("demand-xlsx").addEventListener("click", download);
onLangChange(() => {
  $("demand-status").textContent = "";
  if (state.report) render();
  else if (!state.token) $("demand-status").textContent = t("demand.signin");
});

// The public page: the anonymised queues, paged, and the head of the hash chain.
import {
  $, el, fill, api, authorityPath, showError, initPage, loadAuthorities, param, setParams,
  busy, timeEl, tierBadge, serviceName, fmtNumber,
} from "./common.js";
import { t, onLangChange } from "./i18n.js";

const PAGE = 50;
const state = { queues: [], head: null, open: null, page: null };

const authority = () => $("authority").value || "demo";

async function loadHead() {
  state.head = await api(`${authorityPath(authority())}/audit/head`);
  renderHead();
}

function renderHead() {
  const h = state.head;
  $("head-seq").textContent = h ? fmtNumber(h.authority_seq) : "…";
  $("head-hash").textContent = h ? h.head_hash : "…";
}

async function loadQueues() {
  state.queues = (await api(`${authorityPath(authority())}/queues`)).queues || [];
  renderQueues();
}

function renderQueues() {
  const filter = $("filter").value.trim().toLowerCase();
  const rows = state.queues.filter((q) => !filter || q.description.institution.toLowerCase().includes(filter));
  if (rows.length === 0) {
    fill($("queues-body"), el("tr", {}, el("td", { colspan: 6, class: "muted", text: t("public.none") })));
    return;
  }
  fill(
    $("queues-body"),
    rows.map((q) => {
      const d = q.description;
      return el(
        "tr",
        { "data-queue": q.queue },
        el("th", { scope: "row", text: d.institution }),
        el("td", { text: serviceName(d.service) }),
        el("td", { text: d.age_group != null ? t("agegroup", { age: d.age_group }) : d.campaign || t("common.none") }),
        el("td", { text: d.intake_year != null ? d.intake_year : t("common.none") }),
        el("td", { class: "num", text: fmtNumber(q.size) }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "secondary",
            text: t("public.view"),
            "aria-label": `${t("public.view")}: ${q.queue}`,
            onclick: () => openQueue(q.queue, 0),
          }),
        ),
      );
    }),
  );
}

async function openQueue(queue, offset) {
  showError($("error"), null);
  try {
    const query = new URLSearchParams({ offset, limit: PAGE });
    state.page = await api(`${authorityPath(authority())}/queues/${encodeURIComponent(queue)}?${query}`);
    state.open = queue;
    setParams({ authority: authority(), queue, offset: offset || null });
    renderPage();
    $("entries").hidden = false;
    $("entries-h").focus();
  } catch (e) {
    showError($("error"), e);
  }
}

function renderPage() {
  const p = state.page;
  if (!p) return;
  const heading = $("entries-h");
  heading.textContent = t("public.entries.h", { queue: p.queue });
  heading.tabIndex = -1;
  const from = p.entries.length ? p.offset + 1 : 0;
  const to = p.offset + p.entries.length;
  $("page-info").textContent = t("public.page", { from: fmtNumber(from), to: fmtNumber(to), size: fmtNumber(p.size) });
  $("prev").disabled = p.offset === 0;
  $("next").disabled = to >= p.size;
  const service = p.description.service;
  fill(
    $("entries-body"),
    p.entries.map((e) =>
      el(
        "tr",
        {},
        el("td", { class: "num", text: fmtNumber(e.position) }),
        el("td", { class: "num", text: e.application }),
        el("td", {}, tierBadge(e.tier, service)),
        el("td", {}, timeEl(e.registered_at)),
      ),
    ),
  );
}

async function loadAll() {
  showError($("error"), null);
  try {
    await Promise.all([loadHead(), loadQueues()]);
  } catch (e) {
    showError($("error"), e);
  }
}

async function init() {
  initPage();
  onLangChange(() => {
    renderHead();
    renderQueues();
    renderPage();
  });
  $("filter").addEventListener("input", renderQueues);
  $("refresh").addEventListener("click", () =>
    busy($("refresh"), async () => {
      await loadAll();
      if (state.open) await openQueue(state.open, state.page ? state.page.offset : 0);
    }),
  );
  $("prev").addEventListener("click", () => openQueue(state.open, Math.max(0, state.page.offset - PAGE)));
  $("next").addEventListener("click", () => openQueue(state.open, state.page.offset + PAGE));
  $("authority").addEventListener("change", () => {
    $("entries").hidden = true;
    state.open = null;
    setParams({ authority: authority(), queue: null, offset: null });
    loadAll();
  });
  try {
    await loadAuthorities($("authority"), param("authority") || "demo");
  } catch (e) {
    showError($("error"), e);
  }
  await loadAll();
  const queue = param("queue");
  if (queue) await openQueue(queue, Number(param("offset")) || 0);
  document.body.dataset.ready = "true";
}

init();

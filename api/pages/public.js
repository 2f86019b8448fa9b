// The public page: the anonymised queues, paged, and the head of the hash chain.
import {
  $, el, fill, api, authorityPath, showError, initPage, loadAuthorities, param, setParams,
  busy, timeEl, tierBadge, serviceName, fmtNumber,
} from "./common.js";
import { t, onLangChange } from "./i18n.js";

const PAGE = 50;
const state = { queues: [], names: new Map(), head: null, open: null, page: null };

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
  const [queues, institutions] = await Promise.all([
    api(`${authorityPath(authority())}/queues`),
    api(`${authorityPath(authority())}/institutions`),
  ]);
  state.queues = queues.queues || [];
  state.names = new Map((institutions.institutions || []).map((i) => [i.id, i.name]));
  renderQueues();
}

function renderQueues() {
  const filter = $("filter").value.trim().toLowerCase();
  // One row per institution and intake year (or campaign), with a button per queue.
  const groups = new Map();
  for (const q of state.queues) {
    const d = q.description;
    const name = state.names.get(d.institution) || "";
    if (filter && !d.institution.toLowerCase().includes(filter) && !name.toLowerCase().includes(filter)) continue;
    const key = `${d.institution}|${d.service}|${d.campaign ?? d.intake_year ?? ""}`;
    if (!groups.has(key)) groups.set(key, { d, name, queues: [] });
    groups.get(key).queues.push(q);
  }
  if (groups.size === 0) {
    fill($("queues-body"), el("tr", {}, el("td", { colspan: 5, class: "muted", text: t("public.none") })));
    return;
  }
  fill(
    $("queues-body"),
    [...groups.values()].map(({ d, name, queues }) =>
      el(
        "tr",
        { "data-institution": d.institution },
        el("th", { scope: "row", text: name ? `${d.institution} — ${name}` : d.institution }),
        el("td", { text: serviceName(d.service) }),
        el("td", { text: d.campaign ?? d.intake_year ?? t("common.none") }),
        el(
          "td",
          {},
          el(
            "div",
            { class: "queue-buttons" },
            queues.map((q) =>
              el("button", {
                type: "button",
                class: "secondary chip",
                "data-queue": q.queue,
                "aria-pressed": String(state.open === q.queue),
                "aria-label": t("public.open", { queue: q.queue, size: q.size }),
                text: `${q.description.age_group != null ? t("agegroup", { age: q.description.age_group }) : t("public.chip.queue")}: ${fmtNumber(q.size)}`,
                onclick: () => openQueue(q.queue, 0),
              }),
            ),
          ),
        ),
        el("td", { class: "num", text: fmtNumber(queues.reduce((sum, q) => sum + q.size, 0)) }),
      ),
    ),
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
    renderQueues();
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

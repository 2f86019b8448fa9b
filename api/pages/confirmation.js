// The printable confirmation of an application: its number, the registration time in the
// authority's time zone, the submission's entry in the authority's hash chain, and the
// server's signed receipt as a file and a QR code.
import {
  $, el, fill, api, authorityPath, showError, initPage, param, wireSignIn, fmtZoned, fmtDate,
  fmtNumber, serviceName,
} from "./common.js";
import { t, onLangChange } from "./i18n.js";

let auth = null;
let current = null; // { authority, info, application, institutions }

const authority = () => param("authority") || "demo";
const number = () => Number.parseInt(param("number") || "", 10);

async function load() {
  showError($("error"), null);
  current = null;
  $("confirmation").hidden = true;
  $("print").disabled = true;
  if (!auth.state.token) return;
  if (!Number.isInteger(number()) || number() < 1) {
    showError($("error"), new Error(t("confirm.noNumber")));
    return;
  }
  const base = authorityPath(authority());
  try {
    const [info, application, list] = await Promise.all([
      api(base),
      api(`${base}/applications/${number()}`, { token: auth.state.token }),
      api(`${base}/institutions`),
    ]);
    const institutions = new Map((list.institutions || []).map((i) => [i.id, i.name]));
    const receipt = await loadReceipt(base, auth.state.token);
    current = { authority: authority(), info, application, institutions, receipt };
  } catch (e) {
    showError($("error"), e);
    return;
  }
  render();
}

// The server's signed receipt of the application (its exact bytes, to download) and its QR
// code (an SVG drawn by the server, shown as a data: image). Without them the page still shows
// the confirmation.
async function loadReceipt(base, token) {
  const get = async (path) => {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    return response.text();
  };
  try {
    const [text, svg] = await Promise.all([
      get(`${base}/applications/${number()}/receipt`),
      get(`${base}/applications/${number()}/receipt.svg`),
    ]);
    return { text, svg, json: JSON.parse(text) };
  } catch (_) {
    return null;
  }
}

function downloadReceipt() {
  const r = current && current.receipt;
  if (!r) return;
  const blob = new Blob([r.text], { type: "application/json" });
  const link = el("a", { href: URL.createObjectURL(blob) });
  link.download = `receipt-${r.json.authority}-${r.json.number}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function renderReceipt() {
  const r = current.receipt;
  $("c-receipt").hidden = !r;
  if (!r) return;
  $("c-qr").src = `data:image/svg+xml;base64,${btoa(r.svg)}`;
  $("c-receipt-text").textContent = t("confirm.receipt.text", {
    seq: r.json.authority_seq,
    hash: r.json.event_hash,
    proof: `${authorityPath(current.authority)}/applications/${r.json.number}/proof`,
    key: "/.well-known/ochered/public-key",
  });
}

function render() {
  if (!current) return;
  const a = current.application;
  const tz = a.time_zone;
  const name = (id) => (current.institutions.get(id) ? `${current.institutions.get(id)} (${id})` : id);
  const cfg = current.info.config || {};
  $("c-authority").textContent = cfg.name ? `${cfg.name} (${current.authority})` : current.authority;
  $("c-number").textContent = String(a.number);
  $("c-child").textContent = a.child_name || t("common.none");
  $("c-service").textContent = serviceName(a.service);
  fill($("c-registered"), el("time", { datetime: a.registered_at_local, text: fmtZoned(a.registered_at, tz) }));
  const utc = a.registered_at.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC");
  fill($("c-registered-utc"), el("time", { datetime: a.registered_at, text: utc }));
  $("c-chain").textContent = fmtNumber(a.chain_position);
  fill($("c-prefs"), a.preferences.length ? el("ol", { class: "prefs" }, a.preferences.map((p) => el("li", { text: name(p) }))) : t("common.none"));
  $("c-desired").textContent = fmtDate(a.desired_start);
  $("c-status").textContent = t(`status.${a.status}`);
  $("c-place").textContent = a.offer
    ? t("confirm.placeText", { institution: `${a.offer.institution.name} (${a.offer.institution.id})`, status: t(`placement.${a.offer.status}`) })
    : t("common.none");
  const positions = a.positions || [];
  $("c-positions-none").hidden = positions.length > 0;
  $("c-positions").hidden = positions.length === 0;
  fill(
    $("c-positions-body"),
    positions.map((p) =>
      el(
        "tr",
        { "data-queue": p.queue },
        el("td", { text: name(p.institution) }),
        el("td", { text: p.age_group != null ? t("agegroup", { age: p.age_group }) : p.campaign || t("common.none") }),
        el("td", { class: "num", text: fmtNumber(p.position) }),
        el("td", { class: "num", text: fmtNumber(p.queue_size) }),
      ),
    ),
  );
  $("c-chain-note").textContent = t("confirm.chainNote", {
    seq: a.chain_position,
    path: `${authorityPath(current.authority)}/audit/head`,
  });
  renderReceipt();
  $("c-printed").textContent = t("confirm.printed", { time: fmtZoned(new Date().toISOString(), tz) });
  $("back").href = `/parent?${new URLSearchParams({ authority: current.authority, number: a.number })}`;
  $("confirmation").hidden = false;
  $("print").disabled = false;
}

async function init() {
  initPage();
  auth = wireSignIn("parent", load);
  onLangChange(() => {
    auth.render();
    render();
  });
  $("print").addEventListener("click", () => window.print());
  $("download-receipt").addEventListener("click", downloadReceipt);
  await load();
  document.body.dataset.ready = "true";
}

init();

// Shared helpers of the pages: building DOM nodes safely (text only, never HTML), calling the
// REST API, keeping the sign-in token, and formatting dates and names.

import { t, getLang, setLang, applyTranslations } from "./i18n.js";

export const API = "/api/v1";

/** The element with this id. */
export function $(id) {
  return document.getElementById(id);
}

/**
 * Creates an element. attrs: {class, text, hidden, ...attributes}; children: nodes or
 * strings (added as text). Data always goes in as text, so it can never become markup.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Creates an SVG element, like el(). */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "class") node.setAttribute("class", value);
    else if (name === "hidden") node.hidden = true;
    else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Removes every child and appends the given ones. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** An error answered by the API (problem+json) or a failed request. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Calls the API. POSTs carry an Idempotency-Key; when the server sheds load (503 with
 * Retry-After) or the network fails, the call is retried with the same key, so it takes
 * effect at most once.
 */
export async function api(path, { method = "GET", token = null, body = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = newKey();
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  let lastError = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      lastError = new ApiError(0, { title: t("common.network"), detail: t("common.network") });
      await sleep(300 * (attempt + 1));
      continue;
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = { detail: text.slice(0, 200) };
      }
    }
    if (response.ok) return data;
    const error = new ApiError(response.status, data || {});
    if (response.status === 503 && attempt < 2) {
      const wait = Number(response.headers.get("Retry-After") || "1");
      lastError = error;
      await sleep(Math.min(Math.max(wait, 0.2), 5) * 1000);
      continue;
    }
    throw error;
  }
  throw lastError;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The API path of an authority. */
export function authorityPath(authority) {
  return `${API}/authorities/${encodeURIComponent(authority)}`;
}

/** Shows an error (or clears it with null) in a role="alert" box. */
export function showError(box, error) {
  if (!error) {
    box.replaceChildren();
    return;
  }
  const problem = error instanceof ApiError ? error.problem : { detail: String(error.message || error) };
  const parts = [problem.title, problem.detail].filter(Boolean);
  const unique = parts.filter((p, i) => parts.indexOf(p) === i);
  const text = unique.join(": ") || t("common.error");
  fill(box, el("strong", { text: `${t("common.error")}: ` }), text);
  const field = problem.field || (problem.errors && problem.errors[0] && problem.errors[0].field);
  if (field) box.append(el("span", { class: "small", text: ` (${t("common.field", { field })})` }));
}

// ---------------------------------------------------------------------------------------------
// Sign-in: a Bearer token per role, kept for the browser tab only.

function tokenKey(role) {
  return `ochered.token.${role}`;
}

/** Decodes a token's claims (not verified: the server verifies it on every call). */
export function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(payload), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json);
  } catch (_) {
    return null;
  }
}

/** The stored token for a role, if it has not expired. */
export function storedToken(role) {
  let token = null;
  try {
    token = sessionStorage.getItem(tokenKey(role));
  } catch (_) {
    return null;
  }
  const claims = token && claimsOf(token);
  if (!claims || (claims.exp && claims.exp * 1000 < Date.now())) return null;
  return token;
}

export function storeToken(role, token) {
  try {
    if (token) sessionStorage.setItem(tokenKey(role), token);
    else sessionStorage.removeItem(tokenKey(role));
  } catch (_) {
    // The token then lives only as long as the page.
  }
}

/** Demo only: asks the server for a short-lived token (answers only with the dev secret). */
export async function demoToken(role, sub) {
  const query = new URLSearchParams({ role, sub });
  try {
    const answer = await api(`/demo/token?${query}`);
    return answer.token;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      throw new ApiError(404, { detail: t("common.demoUnavailable") });
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Formatting

function locale() {
  return getLang() === "ru" ? "ru-RU" : "en-GB";
}

export function fmtDateTime(iso) {
  if (!iso) return t("common.none");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(locale(), { dateStyle: "medium", timeStyle: "short" });
}

export function fmtDate(iso) {
  if (!iso) return t("common.none");
  // Plain dates (YYYY-MM-DD) are calendar dates: show them without a time-zone shift.
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso);
  const d = m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3])) : new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleDateString(locale(), { dateStyle: "medium", timeZone: m ? "UTC" : undefined });
}

export function fmtNumber(n) {
  return Number(n).toLocaleString(locale());
}

/** A <time> element showing a date-time. */
export function timeEl(iso, dateOnly = false) {
  return el("time", { datetime: iso || undefined, text: dateOnly ? fmtDate(iso) : fmtDateTime(iso) });
}

/** The name of a priority tier in a queue of the given service. */
export function tierName(tier, service) {
  if (tier === 3 || tier === undefined || tier === null) return t("tier.3");
  return t(`${service === "school" ? "tier.s" : "tier.k"}${tier}`);
}

export function tierBadge(tier, service) {
  return el("span", { class: `badge tier${tier}`, text: tierName(tier, service) });
}

export function serviceName(service) {
  return t(`service.${service}`);
}

export function statusBadge(status) {
  return el("span", { class: `badge st-${status}`, text: t(`status.${status}`) });
}

export function privilegeName(privilege) {
  const kind = privilege && privilege.kind;
  if (kind === "sibling" || kind === "catchment") {
    return t(`priv.${kind}`, { institution: privilege.institution });
  }
  return t(`priv.${kind}`);
}

// ---------------------------------------------------------------------------------------------
// Page frame

/** Wires the language switch and fills the static texts. Call once per page. */
export function initPage() {
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.addEventListener("click", () => setLang(button.dataset.lang));
  }
  applyTranslations();
}

/** Fills an authority <select> from the API, keeping `preferred` selected when it exists. */
export async function loadAuthorities(select, preferred) {
  const answer = await api(`${API}/authorities`);
  const ids = (answer.authorities || []).map((a) => a.id);
  select.replaceChildren(
    ...(answer.authorities || []).map((a) =>
      el("option", { value: a.id, text: a.name ? `${a.id} — ${a.name}` : a.id }),
    ),
  );
  if (ids.includes(preferred)) select.value = preferred;
  return answer.authorities || [];
}

/** Reads a query parameter of the page's URL. */
export function param(name) {
  return new URLSearchParams(location.search).get(name);
}

/** Updates query parameters of the page's URL without reloading. */
export function setParams(values) {
  const params = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(values)) {
    if (v === null || v === undefined || v === "") params.delete(k);
    else params.set(k, v);
  }
  const query = params.toString();
  history.replaceState(null, "", query ? `${location.pathname}?${query}` : location.pathname);
}

/** Disables a button while an async action runs. */
export async function busy(button, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/** A date-time in a given IANA time zone (the authority's), with the zone's name. */
export function fmtZoned(iso, timeZone) {
  if (!iso) return t("common.none");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  try {
    const text = d.toLocaleString(locale(), { timeZone, dateStyle: "long", timeStyle: "short" });
    return `${text} (${timeZone})`;
  } catch (_) {
    return fmtDateTime(iso);
  }
}

/** A <time> element showing a date-time in the authority's time zone. */
export function zonedTimeEl(iso, timeZone) {
  return el("time", { datetime: iso || undefined, text: fmtZoned(iso, timeZone) });
}

/**
 * The sign-in of a page for one role: the status line, the demo button and sign-out. ids:
 * who, demo-sub, demo-signin, signout, error. onChange(token) runs after each change.
 */
export function wireSignIn(role, onChange) {
  const state = { token: storedToken(role) };
  const render = () => {
    const claims = state.token && claimsOf(state.token);
    $("who").textContent = claims ? t("common.signedin", { sub: claims.sub, role: claims.role }) : t("common.signedout");
    $("signout").hidden = !claims;
    if (claims && claims.sub) $("demo-sub").value = claims.sub;
  };
  $("demo-signin").addEventListener("click", () =>
    busy($("demo-signin"), async () => {
      showError($("error"), null);
      try {
        state.token = await demoToken(role, $("demo-sub").value.trim() || `${role}-1`);
        storeToken(role, state.token);
        render();
        await onChange(state.token);
      } catch (e) {
        showError($("error"), e);
      }
    }),
  );
  $("signout").addEventListener("click", async () => {
    state.token = null;
    storeToken(role, null);
    render();
    await onChange(null);
  });
  render();
  return { state, render };
}

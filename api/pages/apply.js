// The kindergarten application form: a signed-in parent applies; a refusal's problem+json
// `field` puts the message next to the field at fault.
import {
  $, el, fill, api, authorityPath, showError, initPage, loadAuthorities, param, busy, wireSignIn,
  fmtZoned, ApiError,
} from "./common.js";
import { t, onLangChange } from "./i18n.js";

let auth = null;
let kindergartens = []; // [{id, name}]
let maxPreferences = 3;
let lastProblem = null;
let done = null; // the submitted application

const authority = () => $("authority").value || "demo";

async function loadAuthority() {
  try {
    const [info, list] = await Promise.all([
      api(authorityPath(authority())),
      api(`${authorityPath(authority())}/institutions`),
    ]);
    maxPreferences = (info.config && info.config.max_kindergarten_preferences) || 3;
    kindergartens = (list.institutions || []).filter((i) => i.kind === "kindergarten");
  } catch (e) {
    showError($("error"), e);
  }
  renderPreferences();
}

function renderPreferences() {
  const chosen = [...document.querySelectorAll("#pref-selects select")].map((s) => s.value);
  $("hint-preferences").textContent = t("apply.prefs.hint", { max: maxPreferences });
  const selects = [];
  for (let i = 0; i < maxPreferences; i++) {
    const id = `f-pref-${i}`;
    const select = el(
      "select",
      { id, "data-field": `preferences[${i}]`, "aria-describedby": "hint-preferences err-preferences" },
      el("option", { value: "", text: i === 0 ? t("apply.pref.choose") : t("apply.pref.none") }),
      kindergartens.map((k) => el("option", { value: k.id, text: `${k.id} — ${k.name}` })),
    );
    if (chosen[i]) select.value = chosen[i];
    selects.push(el("label", { class: "field", for: id }, el("span", { text: t("apply.pref.n", { n: i + 1 }) })), select);
  }
  fill($("pref-selects"), selects);
}

function value(id) {
  return $(id).value.trim();
}

function body() {
  const preferences = [...document.querySelectorAll("#pref-selects select")].map((s) => s.value).filter(Boolean);
  const privileges = ["extraordinary", "first_priority"]
    .filter((kind) => $(`f-priv-${kind}`).checked)
    .map((kind) => ({ kind }));
  const request = {
    document: value("f-document"),
    birth_date: value("f-birth_date") || null,
    preferences,
    desired_start: value("f-desired_start") || null,
    any_other: $("f-any_other").checked,
    privileges,
  };
  const contact = {
    child_name: value("f-child_name"),
    guardian_name: value("f-guardian_name"),
    phone: value("f-phone") || undefined,
    email: value("f-email") || undefined,
  };
  if (contact.child_name || contact.guardian_name || contact.phone || contact.email) request.contact = contact;
  return request;
}

// ---------------------------------------------------------------------------------------------
// Field errors

function clearFieldErrors() {
  for (const p of document.querySelectorAll(".field-error")) {
    p.hidden = true;
    p.textContent = "";
  }
  for (const node of document.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

/** The input a problem's field names: `preferences[1]` is the second choice, `contact` the name. */
function inputFor(field) {
  if (!field) return null;
  const exact = document.querySelector(`[data-field="${CSS.escape(field)}"]`);
  if (exact) return exact;
  if (field === "contact") return $("f-guardian_name");
  // The child is known by the birth certificate.
  if (field === "child") return $("f-document");
  const root = field.replace(/\[.*$/, "").replace(/\..*$/, "");
  return document.querySelector(`[data-field="${CSS.escape(root)}"]`);
}

/** The message box under an input (a choice's box is its list's). */
function messageFor(input) {
  const field = input.dataset.field.replace(/\[\d+\]$/, "");
  return document.getElementById(`err-${field}`);
}

function showFieldError(problem) {
  const input = inputFor(problem.field);
  if (!input) return false;
  const box = messageFor(input);
  if (!box) return false;
  box.textContent = problem.detail || problem.title || t("common.error");
  // The same child applied before: link the application the child already has.
  if (Number.isInteger(problem.existing)) {
    const query = new URLSearchParams({ authority: authority(), number: problem.existing });
    box.append(" ", el("a", { id: "existing-link", href: `/parent?${query}`, text: t("apply.existing", { number: problem.existing }) }));
  }
  box.hidden = false;
  input.setAttribute("aria-invalid", "true");
  input.focus();
  return true;
}

function renderProblem() {
  clearFieldErrors();
  if (!lastProblem) return;
  const shown = showFieldError(lastProblem.problem);
  showError($("error"), lastProblem);
  if (shown) $("error").append(el("span", { class: "small", text: ` ${t("apply.seeField")}` }));
}

// ---------------------------------------------------------------------------------------------

async function submit() {
  showError($("error"), null);
  lastProblem = null;
  clearFieldErrors();
  if (!auth.state.token) {
    showError($("error"), new Error(t("common.needSignin")));
    $("demo-sub").focus();
    return;
  }
  try {
    const answer = await api(`${authorityPath(authority())}/kindergarten/applications`, {
      method: "POST",
      token: auth.state.token,
      body: body(),
    });
    done = { authority: authority(), application: answer.application };
    renderDone();
    $("apply-form").hidden = true;
    $("done-h").focus();
  } catch (e) {
    if (e instanceof ApiError) lastProblem = e;
    else showError($("error"), e);
    renderProblem();
  }
}

function renderDone() {
  if (!done) return;
  const a = done.application;
  $("done-h").textContent = t("apply.done.h", { number: a.number });
  $("done-registered").textContent = t("apply.done.registered", {
    time: fmtZoned(a.registered_at, a.time_zone),
    chain: a.chain_position,
  });
  const query = new URLSearchParams({ authority: done.authority, number: a.number });
  $("done-open").href = `/parent?${query}`;
  $("done-print").href = `/parent/confirmation?${query}`;
  $("done").hidden = false;
}

async function init() {
  initPage();
  auth = wireSignIn("parent", async () => {});
  onLangChange(() => {
    auth.render();
    renderPreferences();
    renderProblem();
    renderDone();
  });
  $("apply-form").addEventListener("submit", (event) => {
    event.preventDefault();
    busy($("submit"), submit);
  });
  $("authority").addEventListener("change", loadAuthority);
  try {
    await loadAuthorities($("authority"), param("authority") || "demo");
  } catch (e) {
    showError($("error"), e);
  }
  await loadAuthority();
  document.body.dataset.ready = "true";
}

init();

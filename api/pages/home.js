// The landing page: the demo authority's facts.
import { API, api, $, fmtNumber, initPage } from "./common.js";
import { t, onLangChange } from "./i18n.js";

let facts = null;

function render() {
  const box = $("demo-facts");
  if (!facts) {
    box.textContent = t("home.demo.none");
    return;
  }
  box.textContent = t("home.demo.facts", {
    id: facts.id,
    name: (facts.config && facts.config.name) || facts.id,
    institutions: fmtNumber(facts.institutions),
    applications: fmtNumber(facts.applications),
    events: fmtNumber(facts.events),
  });
}

async function load() {
  try {
    const list = await api(`${API}/authorities`);
    const ids = (list.authorities || []).map((a) => a.id);
    const id = ids.includes("demo") ? "demo" : ids[0];
    facts = id ? await api(`${API}/authorities/${encodeURIComponent(id)}`) : null;
  } catch (_) {
    facts = null;
  }
  render();
}

initPage();
onLangChange(render);
load().finally(() => {
  document.body.dataset.ready = "true";
});

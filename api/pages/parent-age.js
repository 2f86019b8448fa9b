// The parent's age-exception requests on the parent page: a child younger than six and a half
// or at least eight on 1 September may start first grade only with the education authority's
// permission. The family asks here and sees what became of each request. Texts live here.
import { $, el, fill, api, authorityPath, showError, busy, fmtDate, timeEl } from "./common.js";
import { t, addTexts } from "./i18n.js";

addTexts({
  en: {
    "age.h": "First grade: ask for an age exception",
    "age.p": "A child under six and a half, or eight or older, on 1 September may start first grade only with the education authority's permission. Ask here; an officer grants or refuses it, and you see the answer below.",
    "age.campaign": "Campaign",
    "age.document": "Child's birth certificate",
    "age.birth": "Date of birth",
    "age.category": "Exception",
    "age.earlier": "Earlier: under six and a half",
    "age.later": "Later: eight or older",
    "age.ask": "Ask for the exception",
    "age.asked": "Your request for campaign {campaign} is sent.",
    "age.none": "No requests yet.",
    "age.col.campaign": "Campaign",
    "age.col.birth": "Born",
    "age.col.category": "Exception",
    "age.col.requested": "Asked",
    "age.col.status": "Status",
    "age.status.pending": "Waiting for a decision",
    "age.status.granted": "Granted: you may apply",
    "age.status.refused": "Refused: {reason}",
    "age.cat.earlier": "earlier",
    "age.cat.later": "later",
  },
  ru: {
    "age.h": "Первый класс: исключение по возрасту",
    "age.p": "Ребёнок младше шести с половиной лет или старше восьми на 1 сентября может пойти в первый класс только с разрешения органа управления образованием. Попросите его здесь: специалист разрешит или откажет, ответ появится ниже.",
    "age.campaign": "Кампания",
    "age.document": "Свидетельство о рождении ребёнка",
    "age.birth": "Дата рождения",
    "age.category": "Исключение",
    "age.earlier": "Раньше: младше шести с половиной лет",
    "age.later": "Позже: восемь лет и старше",
    "age.ask": "Попросить разрешение",
    "age.asked": "Запрос по кампании {campaign} отправлен.",
    "age.none": "Запросов пока нет.",
    "age.col.campaign": "Кампания",
    "age.col.birth": "Дата рождения",
    "age.col.category": "Исключение",
    "age.col.requested": "Запрошено",
    "age.col.status": "Статус",
    "age.status.pending": "Ждёт решения",
    "age.status.granted": "Разрешено: можно подавать заявление",
    "age.status.refused": "Отказано: {reason}",
    "age.cat.earlier": "раньше",
    "age.cat.later": "позже",
  },
});

let page = null;
let requests = null;

/** Loads the campaigns into the form and the signed-in parent's requests. */
export async function loadAgeRequests() {
  const section = $("age-section");
  requests = null;
  if (!page.token()) {
    section.hidden = true;
    return;
  }
  try {
    const [campaigns, mine] = await Promise.all([
      api(`${authorityPath(page.authority())}/campaigns`),
      api(`${authorityPath(page.authority())}/school/age-exception-requests`, { token: page.token() }),
    ]);
    const select = $("age-campaign");
    const previous = select.value;
    select.replaceChildren(
      ...(campaigns.campaigns || []).map((c) => el("option", { value: c.id, text: `${c.id} (${c.year})` })),
    );
    if ([...select.options].some((o) => o.value === previous)) select.value = previous;
    requests = mine.requests || [];
  } catch (e) {
    showError($("age-error"), e);
    return;
  }
  section.hidden = false;
  renderAgeRequests();
}

/** Redraws the list of requests in the current language. */
export function renderAgeRequests() {
  if (!requests) return;
  if (requests.length === 0) {
    fill($("age-list"), el("p", { class: "muted", text: t("age.none") }));
    return;
  }
  fill(
    $("age-list"),
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        { id: "age-table" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["age.col.campaign", "age.col.birth", "age.col.category", "age.col.requested", "age.col.status"].map((key) =>
              el("th", { scope: "col", text: t(key) }),
            ),
          ),
        ),
        el(
          "tbody",
          {},
          requests.map((r) =>
            el(
              "tr",
              { "data-status": r.status },
              el("td", { text: r.campaign }),
              el("td", { text: fmtDate(r.birth_date) }),
              el("td", { text: t(`age.cat.${r.category}`) }),
              el("td", {}, timeEl(r.requested_at)),
              el("td", { class: "age-status", text: t(`age.status.${r.status}`, { reason: r.reason || "" }) }),
            ),
          ),
        ),
      ),
    ),
  );
}

async function ask(event) {
  event.preventDefault();
  showError($("age-error"), null);
  const campaign = $("age-campaign").value;
  try {
    await api(`${authorityPath(page.authority())}/school/age-exception-requests`, {
      method: "POST",
      token: page.token(),
      body: {
        campaign,
        document: $("age-document").value.trim(),
        birth_date: $("age-birth").value,
        category: $("age-category").value,
      },
    });
    $("age-status").textContent = t("age.asked", { campaign });
    await loadAgeRequests();
  } catch (e) {
    $("age-status").textContent = "";
    showError($("age-error"), e);
  }
}

/** Wires the form. `options`: authority(), token(). */
export function initAgeRequests(options) {
  page = options;
  $("age-form").addEventListener("submit", (event) => busy($("age-ask"), () => ask(event)));
}

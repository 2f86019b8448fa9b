// The officer's desk on the officer page: finding an application by the child's document, a
// name or its number; the worklist of privilege claims waiting for a decision (confirm or
// revoke from the list); granting a school age exception. Its texts live here (addTexts).
import { $, el, fill, api, showError, busy, fmtZoned, fmtDate, timeEl, privilegeName, statusBadge, serviceName } from "./common.js";
import { t, addTexts } from "./i18n.js";

addTexts({
  en: {
    "desk.search.h": "Find an application",
    "desk.search.p": "By the child's document (birth certificate), a part of the child's or the parent's name, or the application number.",
    "desk.search.by": "Search by",
    "desk.search.document": "Document",
    "desk.search.name": "Name",
    "desk.search.number": "Application number",
    "desk.search.value": "Looking for",
    "desk.search.go": "Find",
    "desk.search.found": "Found: {count}.",
    "desk.search.more": "Found more than {count}; refine the search.",
    "desk.search.none": "Nothing found.",
    "desk.col.number": "No.",
    "desk.col.child": "Child",
    "desk.col.service": "Service",
    "desk.col.status": "Status",
    "desk.col.registered": "Registered",
    "desk.col.preferences": "Preferences",
    "desk.col.privileges": "Privileges",
    "desk.col.waiting": "Waiting for a decision",
    "desk.open": "Privileges of No. {number}",
    "desk.noName": "no name given",
    "desk.work.h": "Privilege claims waiting for confirmation",
    "desk.work.p": "Every application still in the queues with a privilege its family claimed and no officer has decided yet, oldest first. Only a confirmed privilege moves an application up.",
    "desk.work.refresh": "Refresh the list",
    "desk.work.count": "Waiting: {count}.",
    "desk.work.empty": "No privilege claims wait for confirmation.",
    "desk.work.confirm": "Confirm {privilege} for No. {number}",
    "desk.work.revoke": "Revoke {privilege} for No. {number}",
    "desk.work.confirmed": "Confirmed {privilege} for application No. {number}.",
    "desk.work.revoked": "Revoked {privilege} for application No. {number}.",
    "desk.work.reason": "revoked by an officer from the worklist",
    "desk.age.h": "School age exceptions",
    "desk.age.p": "A child younger than six and a half or at least eight on 1 September may apply once the authority grants an exception. Families ask on the parent page; decide their requests here, or grant one asked for on paper by the child's document.",
    "desk.age.work": "Requests waiting for a decision",
    "desk.age.direct": "Grant without a request (asked on paper)",
    "desk.age.empty": "No age-exception requests wait for a decision.",
    "desk.age.count": "Waiting: {count}.",
    "desk.age.col.campaign": "Campaign",
    "desk.age.col.child": "Child (key)",
    "desk.age.col.birth": "Born",
    "desk.age.col.age": "Age on 1 September",
    "desk.age.col.category": "Exception",
    "desk.age.col.requested": "Asked",
    "desk.age.months": "{years} y {months} m",
    "desk.age.cat.earlier": "earlier (too young)",
    "desk.age.cat.later": "later (too old)",
    "desk.age.grantOne": "Grant",
    "desk.age.refuseOne": "Refuse",
    "desk.age.grantLabel": "Grant the exception for the child born {birth}",
    "desk.age.refuseLabel": "Refuse the exception for the child born {birth}",
    "desk.age.reason": "Reason for the refusal",
    "desk.age.reasonDefault": "no grounds for an exception were shown",
    "desk.age.granted": "Granted for the child born {birth} in campaign {campaign}.",
    "desk.age.refused": "Refused for the child born {birth} in campaign {campaign}.",
    "desk.age.campaign": "Campaign",
    "desk.age.document": "Child's document",
    "desk.age.grant": "Grant the exception",
    "desk.age.done": "Granted for campaign {campaign}.",
    "desk.signin": "Sign in as an officer to search and see the worklists.",
    "officer.seats.h": "Kindergarten seats",
    "officer.seats.p": "Per kindergarten and age group (full years on 1 September of the intake year): the seats published now, and under each how many are taken (offered or enrolled) and free. Change a number and publish; a number below the seats taken is refused.",
    "officer.seats.publish": "Publish the changed numbers",
    "officer.seats.nothing": "No number was changed.",
    "officer.seats.cell": "{taken} taken · {free} free",
    "officer.seats.cellLabel": "{institution}, age {age}: published seats ({taken} taken, {free} free)",
    "officer.round.preview": "Preview the round",
    "officer.round.previewing": "Computing what the round would give…",
    "officer.round.previewDone": "Preview of {round}: {placed} of {applicants} applicants would be placed. Nothing was recorded.",
    "officer.round.previewNote": "A preview: nothing is recorded and no offers are made. Run the round to make them.",
    "officer.round.previewTitle": "Preview of round {round}",
    "officer.round.exportCsv": "Download CSV",
    "officer.round.exportXlsx": "Download XLSX",
  },
  ru: {
    "desk.search.h": "Найти заявление",
    "desk.search.p": "По документу ребёнка (свидетельству о рождении), части имени ребёнка или родителя либо по номеру заявления.",
    "desk.search.by": "Искать по",
    "desk.search.document": "Документ",
    "desk.search.name": "Имя",
    "desk.search.number": "Номер заявления",
    "desk.search.value": "Что искать",
    "desk.search.go": "Найти",
    "desk.search.found": "Найдено: {count}.",
    "desk.search.more": "Найдено больше {count}; уточните запрос.",
    "desk.search.none": "Ничего не найдено.",
    "desk.col.number": "№",
    "desk.col.child": "Ребёнок",
    "desk.col.service": "Услуга",
    "desk.col.status": "Статус",
    "desk.col.registered": "Зарегистрировано",
    "desk.col.preferences": "Учреждения",
    "desk.col.privileges": "Льготы",
    "desk.col.waiting": "Ждут решения",
    "desk.open": "Льготы заявления № {number}",
    "desk.noName": "имя не указано",
    "desk.work.h": "Льготы, ожидающие подтверждения",
    "desk.work.p": "Все заявления в очередях, где семья заявила льготу, а решения ещё нет, — сначала самые ранние. Поднимает заявление в очереди только подтверждённая льгота.",
    "desk.work.refresh": "Обновить список",
    "desk.work.count": "Ожидают: {count}.",
    "desk.work.empty": "Нет льгот, ожидающих подтверждения.",
    "desk.work.confirm": "Подтвердить: {privilege}, заявление № {number}",
    "desk.work.revoke": "Отозвать: {privilege}, заявление № {number}",
    "desk.work.confirmed": "Льгота «{privilege}» подтверждена, заявление № {number}.",
    "desk.work.revoked": "Льгота «{privilege}» отозвана, заявление № {number}.",
    "desk.work.reason": "отозвано специалистом из списка ожидающих",
    "desk.age.h": "Исключения по возрасту (школа)",
    "desk.age.p": "Ребёнок младше шести с половиной лет или старше восьми на 1 сентября может подать заявление, когда орган управления образованием разрешит исключение. Семьи просят об этом на странице родителя; решите их запросы здесь или разрешите исключение по бумажному заявлению, указав документ ребёнка.",
    "desk.age.work": "Запросы, ждущие решения",
    "desk.age.direct": "Разрешить без запроса (заявление на бумаге)",
    "desk.age.empty": "Запросов на исключение по возрасту нет.",
    "desk.age.count": "Ждут решения: {count}.",
    "desk.age.col.campaign": "Кампания",
    "desk.age.col.child": "Ребёнок (ключ)",
    "desk.age.col.birth": "Дата рождения",
    "desk.age.col.age": "Возраст на 1 сентября",
    "desk.age.col.category": "Исключение",
    "desk.age.col.requested": "Запрошено",
    "desk.age.months": "{years} л. {months} мес.",
    "desk.age.cat.earlier": "раньше (младше)",
    "desk.age.cat.later": "позже (старше)",
    "desk.age.grantOne": "Разрешить",
    "desk.age.refuseOne": "Отказать",
    "desk.age.grantLabel": "Разрешить исключение ребёнку {birth} г. р.",
    "desk.age.refuseLabel": "Отказать в исключении ребёнку {birth} г. р.",
    "desk.age.reason": "Причина отказа",
    "desk.age.reasonDefault": "оснований для исключения не представлено",
    "desk.age.granted": "Разрешено ребёнку {birth} г. р., кампания {campaign}.",
    "desk.age.refused": "Отказано ребёнку {birth} г. р., кампания {campaign}.",
    "desk.age.campaign": "Кампания",
    "desk.age.document": "Документ ребёнка",
    "desk.age.grant": "Разрешить исключение",
    "desk.age.done": "Разрешено для кампании {campaign}.",
    "desk.signin": "Войдите как специалист, чтобы искать и видеть списки ожидающих.",
    "officer.seats.h": "Места в детских садах",
    "officer.seats.p": "По садам и возрастным группам (полных лет на 1 сентября года зачисления): сколько мест опубликовано сейчас, а под числом — сколько занято (направления и зачисления) и свободно. Измените число и опубликуйте; меньше занятых мест опубликовать нельзя.",
    "officer.seats.publish": "Опубликовать изменённые числа",
    "officer.seats.nothing": "Ни одно число не изменено.",
    "officer.seats.cell": "занято {taken} · свободно {free}",
    "officer.seats.cellLabel": "{institution}, возраст {age}: опубликовано мест (занято {taken}, свободно {free})",
    "officer.round.preview": "Предпросмотр комплектования",
    "officer.round.previewing": "Считаем, что дало бы комплектование…",
    "officer.round.previewDone": "Предпросмотр {round}: направления получили бы {placed} из {applicants} заявлений. Ничего не записано.",
    "officer.round.previewNote": "Это предпросмотр: ничего не записано, направления не выданы. Проведите комплектование, чтобы выдать их.",
    "officer.round.previewTitle": "Предпросмотр комплектования {round}",
    "officer.round.exportCsv": "Скачать CSV",
    "officer.round.exportXlsx": "Скачать XLSX",
  },
});

/** What the desk needs from the page: the API base, the token, and the privilege lookup. */
let page = null;
let found = null;
let work = null;
let ageWork = null;

const say = (id, text) => {
  $(id).textContent = text || "";
};

// ---------------------------------------------------------------------------------------------
// Search

async function search(event) {
  event.preventDefault();
  showError($("search-error"), null);
  if (!page.requireToken()) return;
  const by = $("search-by").value;
  const value = $("search-value").value.trim();
  try {
    found = await api(`${page.base()}/officer/search?${by}=${encodeURIComponent(value)}`, { token: page.token() });
  } catch (e) {
    found = null;
    fill($("search-results"));
    say("search-status", "");
    showError($("search-error"), e);
    return;
  }
  renderFound();
}

function childName(view) {
  return view.child_name || el("span", { class: "muted", text: t("desk.noName") });
}

function renderFound() {
  if (!found) return;
  const list = found.applications;
  say(
    "search-status",
    list.length === 0 ? t("desk.search.none") : found.truncated ? t("desk.search.more", { count: list.length }) : t("desk.search.found", { count: list.length }),
  );
  if (list.length === 0) {
    fill($("search-results"));
    return;
  }
  fill(
    $("search-results"),
    el(
      "div",
      { class: "table-wrap scroll", tabindex: 0, "aria-label": t("desk.search.h") },
      el(
        "table",
        { id: "search-table" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["desk.col.number", "desk.col.child", "desk.col.service", "desk.col.status", "desk.col.registered", "desk.col.preferences", "desk.col.privileges"].map(
              (key) => el("th", { scope: "col", text: t(key) }),
            ),
            el("th", { scope: "col" }),
          ),
        ),
        el(
          "tbody",
          {},
          list.map((a) =>
            el(
              "tr",
              { "data-application": a.number },
              el("th", { scope: "row", class: "num", text: a.number }),
              el("td", { class: "child" }, childName(a)),
              el("td", { text: serviceName(a.service) }),
              el("td", {}, statusBadge(a.status)),
              el("td", { text: fmtZoned(a.registered_at, a.time_zone) }),
              el("td", { text: a.preferences.join(", ") }),
              el("td", { text: a.privileges.map((c) => `${privilegeName(c.privilege)} — ${t(`privstatus.${c.status}`)}`).join("; ") }),
              el(
                "td",
                {},
                el("button", {
                  type: "button",
                  class: "secondary",
                  text: t("desk.open", { number: a.number }),
                  onclick: () => page.showApplication(a.number),
                }),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Privilege worklist

export async function loadWorklist() {
  showError($("work-error"), null);
  if (!page.token()) {
    work = null;
    fill($("work-list"), el("p", { class: "muted", text: t("desk.signin") }));
    return;
  }
  try {
    work = await api(`${page.base()}/officer/privileges`, { token: page.token() });
  } catch (e) {
    work = null;
    fill($("work-list"));
    showError($("work-error"), e);
    return;
  }
  renderWorklist();
}

function renderWorklist() {
  if (!work) return;
  if (work.items.length === 0) {
    fill($("work-list"), el("p", { class: "muted", id: "work-empty", text: t("desk.work.empty") }));
    return;
  }
  const rows = [];
  for (const item of work.items) {
    const a = item.application;
    for (const privilege of item.waiting) {
      const name = privilegeName(privilege);
      rows.push(
        el(
          "tr",
          { "data-application": a.number },
          el("th", { scope: "row", class: "num", text: a.number }),
          el("td", { class: "child" }, childName(a)),
          el("td", { text: serviceName(a.service) }),
          el("td", { text: fmtZoned(a.registered_at, a.time_zone) }),
          el("td", { class: "privilege", text: name }),
          el(
            "td",
            { class: "actions" },
            el("button", {
              type: "button",
              class: "confirm",
              text: t("officer.priv.confirm"),
              "aria-label": t("desk.work.confirm", { privilege: name, number: a.number }),
              onclick: (e) => decide(a.number, privilege, true, e.currentTarget),
            }),
            " ",
            el("button", {
              type: "button",
              class: "danger revoke",
              text: t("officer.priv.revoke"),
              "aria-label": t("desk.work.revoke", { privilege: name, number: a.number }),
              onclick: (e) => decide(a.number, privilege, false, e.currentTarget),
            }),
          ),
        ),
      );
    }
  }
  fill(
    $("work-list"),
    el("p", { class: "small", text: t("desk.work.count", { count: work.total }) }),
    el(
      "div",
      { class: "table-wrap scroll", tabindex: 0, "aria-label": t("desk.work.h") },
      el(
        "table",
        { id: "work-table" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["desk.col.number", "desk.col.child", "desk.col.service", "desk.col.registered", "desk.col.waiting"].map((key) =>
              el("th", { scope: "col", text: t(key) }),
            ),
            el("th", { scope: "col" }),
          ),
        ),
        el("tbody", {}, rows),
      ),
    ),
  );
}

async function decide(number, privilege, confirm, button) {
  showError($("work-error"), null);
  await busy(button, async () => {
    try {
      await api(`${page.base()}/applications/${number}/privileges/${confirm ? "confirm" : "revoke"}`, {
        method: "POST",
        token: page.token(),
        body: confirm ? { privilege } : { privilege, reason: t("desk.work.reason") },
      });
      const name = privilegeName(privilege);
      say("work-status", t(confirm ? "desk.work.confirmed" : "desk.work.revoked", { privilege: name, number }));
      await loadWorklist();
      await page.afterChange();
    } catch (e) {
      showError($("work-error"), e);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Age exceptions: the families' requests waiting for a decision, and a grant without one

export async function loadAgeWorklist() {
  showError($("age-work-error"), null);
  if (!page.token()) {
    ageWork = null;
    fill($("age-list"), el("p", { class: "muted", text: t("desk.signin") }));
    return;
  }
  try {
    ageWork = await api(`${page.base()}/officer/age-exceptions`, { token: page.token() });
  } catch (e) {
    ageWork = null;
    fill($("age-list"));
    showError($("age-work-error"), e);
    return;
  }
  renderAgeWorklist();
}

function renderAgeWorklist() {
  if (!ageWork) return;
  if (ageWork.items.length === 0) {
    fill($("age-list"), el("p", { class: "muted", id: "age-empty", text: t("desk.age.empty") }));
    return;
  }
  const rows = ageWork.items.map((r) => {
    const birth = fmtDate(r.birth_date);
    const reason = el("input", {
      class: "age-reason",
      "aria-label": t("desk.age.reason"),
      placeholder: t("desk.age.reason"),
      maxlength: 500,
    });
    return el(
      "tr",
      { "data-child": r.child, "data-campaign": r.campaign },
      el("td", { text: r.campaign }),
      el("td", { class: "key", title: r.child, text: `${r.child.slice(0, 8)}…` }),
      el("td", { text: birth }),
      el("td", {
        class: "num",
        text: t("desk.age.months", { years: Math.floor(r.age_months / 12), months: r.age_months % 12 }),
      }),
      el("td", { text: t(`desk.age.cat.${r.category}`) }),
      el("td", {}, timeEl(r.requested_at)),
      el(
        "td",
        { class: "actions" },
        el("button", {
          type: "button",
          class: "grant",
          text: t("desk.age.grantOne"),
          "aria-label": t("desk.age.grantLabel", { birth }),
          onclick: (e) => decideAge(r, null, e.currentTarget),
        }),
        " ",
        reason,
        " ",
        el("button", {
          type: "button",
          class: "danger refuse",
          text: t("desk.age.refuseOne"),
          "aria-label": t("desk.age.refuseLabel", { birth }),
          onclick: (e) => decideAge(r, reason.value.trim() || t("desk.age.reasonDefault"), e.currentTarget),
        }),
      ),
    );
  });
  fill(
    $("age-list"),
    el("p", { class: "small", text: t("desk.age.count", { count: ageWork.total }) }),
    el(
      "div",
      { class: "table-wrap scroll", tabindex: 0, "aria-label": t("desk.age.work") },
      el(
        "table",
        { id: "age-table" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            [
              "desk.age.col.campaign",
              "desk.age.col.child",
              "desk.age.col.birth",
              "desk.age.col.age",
              "desk.age.col.category",
              "desk.age.col.requested",
            ].map((key) => el("th", { scope: "col", text: t(key) })),
            el("th", { scope: "col" }),
          ),
        ),
        el("tbody", {}, rows),
      ),
    ),
  );
}

/** Grants the request (`reason` null) or refuses it with `reason`. */
async function decideAge(request, reason, button) {
  showError($("age-work-error"), null);
  await busy(button, async () => {
    try {
      const body = { campaign: request.campaign, child: request.child, decision: reason === null ? "grant" : "refuse" };
      if (reason !== null) body.reason = reason;
      await api(`${page.base()}/officer/age-exceptions/decide`, { method: "POST", token: page.token(), body });
      const facts = { birth: fmtDate(request.birth_date), campaign: request.campaign };
      say("age-work-status", t(reason === null ? "desk.age.granted" : "desk.age.refused", facts));
      await loadAgeWorklist();
    } catch (e) {
      showError($("age-work-error"), e);
    }
  });
}

export function fillCampaigns(campaigns) {
  const select = $("age-campaign");
  const previous = select.value;
  select.replaceChildren(...campaigns.map((c) => el("option", { value: c.id, text: `${c.id} (${c.year})` })));
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  $("age-grant").disabled = campaigns.length === 0;
}

async function grantAgeException(event) {
  event.preventDefault();
  showError($("age-error"), null);
  if (!page.requireToken()) return;
  const campaign = $("age-campaign").value;
  try {
    await api(`${page.base()}/school/age-exceptions`, {
      method: "POST",
      token: page.token(),
      body: { campaign, document: $("age-document").value.trim() },
    });
    say("age-status", t("desk.age.done", { campaign }));
    await loadAgeWorklist();
  } catch (e) {
    say("age-status", "");
    showError($("age-error"), e);
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Wires the desk. `options`: base() (the authority's API path), token(), requireToken(),
 * showApplication(number) (opens an application's privileges), afterChange() (redraws
 * what a decision changes).
 */
export function initDesk(options) {
  page = options;
  $("search-form").addEventListener("submit", (event) => busy($("search-go"), () => search(event)));
  $("work-refresh").addEventListener("click", () => busy($("work-refresh"), loadWorklist));
  $("age-refresh").addEventListener("click", () => busy($("age-refresh"), loadAgeWorklist));
  $("age-form").addEventListener("submit", (event) => busy($("age-grant"), () => grantAgeException(event)));
}

/** Redraws the desk's dynamic parts in the current language. */
export function renderDesk() {
  renderFound();
  if (work) renderWorklist();
  else if (!page.token()) fill($("work-list"), el("p", { class: "muted", text: t("desk.signin") }));
  if (ageWork) renderAgeWorklist();
  else if (!page.token()) fill($("age-list"), el("p", { class: "muted", text: t("desk.signin") }));
}

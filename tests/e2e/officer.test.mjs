// The officer's journey through the officer page only: find a child by document, confirm the
// claimed privilege from the worklist, see the seats (published, taken, free), preview a
// round (nothing recorded), run it and download its results (the file's content checked);
// a family's age-exception request granted from the worklist.
// Screenshots of the page in English and Russian with its key elements checked visible.
//
// Run: cd tests/e2e && OCHERED_BIN=…/ochered node --test officer.test.mjs
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";

import { harness, shot, visibleText } from "./harness.mjs";

const h = harness("officer");

/** RFC 4180 CSV (UTF-8 with a byte-order mark, CRLF, quoted fields) as rows of fields. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  const s = text.replace(/^\uFEFF/, "");
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\r" && s[i + 1] === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      i++;
    } else field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  return rows;
}
const DOCUMENT = "II-ОФ 771001";
const CHILD = "Мария Соколова";
const GUARDIAN = "Елена Соколова";

after(() => {
  assert.deepEqual(h.pageErrors, [], "no errors on the pages");
});

test("an officer finds a child by document, confirms the privilege, previews, runs and exports a round", async () => {
  // A family applied with a contact and a claimed privilege (the parent's part is another
  // journey). Its intake year is the one the demo's queues have.
  const parent = await h.demoToken("parent", "parent-officer-e2e");
  const institutions = (await h.call("GET", "/institutions")).body.institutions.filter((i) => i.kind === "kindergarten");
  const nextYear = new Date().getUTCFullYear() + 1;
  const submitted = await h.call("POST", "/kindergarten/applications", parent, {
    document: DOCUMENT,
    birth_date: `${nextYear - 4}-02-01`,
    preferences: [institutions[0].id],
    desired_start: `${nextYear}-09-01`,
    privileges: [{ kind: "extraordinary" }],
    contact: { child_name: CHILD, guardian_name: GUARDIAN, phone: "+7 900 000-00-01" },
  });
  assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
  const number = submitted.body.application.number;

  const page = await h.newPage("/officer?lang=en");
  await page.click("#demo-signin");
  await page.waitForFunction(() => /officer-1/.test(document.getElementById("who").textContent));

  // 1. Find the child by document, typed in another spelling.
  await page.selectOption("#search-by", "document");
  await page.fill("#search-value", DOCUMENT.toLowerCase());
  await page.click("#search-go");
  await page.waitForSelector(`#search-table tr[data-application='${number}']`);
  assert.equal(await page.locator("#search-table tbody tr").count(), 1, "one application of this child");
  const row = page.locator(`#search-table tr[data-application='${number}']`);
  assert.equal((await row.locator("td.child").textContent()).trim(), CHILD);
  assert.match(await row.textContent(), /claimed/);
  assert.match(await visibleText(page, "#search-status"), /Found: 1/);

  // 2. Confirm the claim from the worklist.
  const item = page.locator(`#work-table tr[data-application='${number}']`);
  await item.waitFor();
  assert.equal((await item.locator("td.child").textContent()).trim(), CHILD);
  assert.match(await item.locator("td.privilege").textContent(), /Extraordinary/i);
  await item.locator("button.confirm").click();
  await page.waitForFunction((n) => new RegExp(`No\\. ${n}`).test(document.getElementById("work-status").textContent), number);
  await page.waitForFunction((n) => !document.querySelector(`#work-table tr[data-application='${n}']`), number);
  const after = (await h.call("GET", `/applications/${number}`, await h.demoToken("officer", "officer-check"))).body;
  assert.deepEqual(after.privileges, [{ privilege: { kind: "extraordinary" }, status: "confirmed" }]);

  // 3. Seats: publish through the editor, which then shows what is published, taken and
  // free, as the API counts them.
  const year = Number(await page.inputValue("#seats-year"));
  await page.click("#seats-fill");
  await page.click("#seats-publish");
  await page.waitForFunction(() => /Published seats for \d+/.test(document.getElementById("seats-status").textContent));
  assert.equal(await page.textContent("#seats-error"), "");
  await page.waitForSelector("#seats-body .seat-counts");
  const groups = (await h.call("GET", `/kindergarten/seats?intake_year=${year}`)).body.seats;
  assert.ok(groups.length > 0, "seats are published");
  const g = groups[0];
  const cell = page.locator(`#seats-body tr[data-institution='${g.institution}'] input[data-age='${g.age_group}']`);
  assert.equal(await cell.inputValue(), String(g.published));
  assert.match(await cell.locator("xpath=..").textContent(), new RegExp(`${g.taken} taken · ${g.free} free`));

  // 4. Preview the round: results shown, nothing recorded.
  const roundId = `e2e-${Date.now()}`;
  await page.fill("#round-id", roundId);
  await page.fill("#round-year", String(year));
  const head = (await h.call("GET", "/audit/head")).body.authority_seq;
  await page.click("#preview-round");
  await page.waitForSelector("#round-results:not([hidden])");
  assert.equal(await page.textContent("#round-error"), "");
  assert.equal(await visibleText(page, "#results-title"), `Preview of round ${roundId}`);
  assert.ok(await page.locator("#results-preview-note").isVisible(), "the preview says nothing is recorded");
  assert.ok(await page.locator("#results-exports").isHidden(), "a preview has nothing to export");
  const previewPlaced = Number((await page.textContent("#stat-placed")).replace(/\D/g, ""));
  assert.ok(previewPlaced > 0, "the preview places children");
  // The child with the confirmed extraordinary privilege is placed.
  assert.equal(await page.locator(`#placements-body tr[data-application='${number}']`).count(), 1);
  const officer = await h.demoToken("officer", "officer-check");
  assert.equal((await h.call("GET", `/rounds/${roundId}`, officer)).status, 404, "the preview recorded no round");
  assert.equal((await h.call("GET", "/audit/head")).body.authority_seq, head, "the preview appended nothing");

  // 5. Run it for real: the same placements.
  await page.click("#run-round");
  await page.waitForFunction((id) => document.getElementById("results-title").textContent === `Results of round ${id}`, roundId);
  assert.equal(await page.textContent("#round-error"), "");
  const round = (await h.call("GET", `/rounds/${roundId}`, officer)).body;
  assert.equal(round.placed, previewPlaced, "the run placed as many as the preview");
  assert.ok(await page.locator("#results-preview-note").isHidden());
  // The results name the institutions.
  const resultRow = page.locator(`#by-institution-body tr[data-institution='${institutions[0].id}'] th`);
  assert.equal((await resultRow.textContent()).trim(), `${institutions[0].name} (${institutions[0].id})`);

  // 6. Export it: the downloaded CSV holds the round with names, institutions and local times.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
  assert.equal(download.suggestedFilename(), `demo-round-${roundId}.csv`);
  const file = path.join(h.downloads, download.suggestedFilename());
  await download.saveAs(file);
  const [header, ...rows] = parseCsv(readFileSync(file, "utf8"));
  for (const column of ["application", "institution", "institution_name", "deadline (Europe/Moscow)", "child_name", "guardian_name"]) {
    assert.ok(header.includes(column), `${column} in ${header}`);
  }
  assert.equal(rows.length, round.placed, "a row per placement");
  const mine = rows.find((r) => r[0] === String(number));
  assert.ok(mine, "the child's placement is in the file");
  assert.equal(mine[header.indexOf("institution")], institutions[0].id);
  assert.equal(mine[header.indexOf("institution_name")], institutions[0].name);
  assert.equal(mine[header.indexOf("child_name")], CHILD);
  assert.match(mine[header.indexOf("deadline (Europe/Moscow)")], /\+03:00$/);
  await shot(page, "officer-desk-en");

  // 7. In Russian: the key elements are there and visible.
  await page.click("button[data-lang='ru']");
  assert.equal(await page.getAttribute("html", "lang"), "ru");
  for (const [selector, pattern] of [
    ["#search-h", /Найти заявление/],
    ["#work-h", /Льготы, ожидающие подтверждения/],
    ["#seats-h", /Места в детских садах/],
    ["#preview-round", /Предпросмотр/],
    ["#export-csv", /Скачать CSV/],
    ["#search-table td.child", new RegExp(CHILD)],
    ["#seats-body .seat-counts", /занято \d+ · свободно \d+/],
  ]) {
    assert.match(await visibleText(page, selector), pattern, `${selector} in Russian`);
  }
  await shot(page, "officer-desk-ru");
  await page.close();
});

test("a family asks for an age exception on the parent page and an officer grants it from the worklist", async () => {
  const campaign = (await h.call("GET", "/campaigns")).body.campaigns[0];
  const school = campaign.schools[0].institution;
  // Six years and three months on 1 September: too young without an exception.
  const birth = `${campaign.year - 6}-06-01`;
  const document = "II-ВЗ 771002";
  const parentSub = "parent-age-e2e";
  const parent = await h.demoToken("parent", parentSub);
  const form = {
    campaign: campaign.id,
    document,
    birth_date: birth,
    schools: [school],
    privileges: [{ kind: "first_priority" }],
  };
  const early = await h.call("POST", "/school/applications", parent, form);
  assert.equal(early.status, 422, JSON.stringify(early.body));
  assert.equal(early.body.code, "age_out_of_range");

  // 1. The parent asks on the parent page and sees the request waiting.
  const home = await h.newPage("/parent?lang=en");
  await home.fill("#demo-sub", parentSub);
  await home.click("#demo-signin");
  await home.waitForSelector("#age-section:not([hidden])");
  await home.selectOption("#age-campaign", campaign.id);
  await home.fill("#age-document", document);
  await home.fill("#age-birth", birth);
  await home.selectOption("#age-category", "earlier");
  await home.click("#age-ask");
  await home.waitForSelector("#age-table tr[data-status='pending']");
  assert.equal(await home.textContent("#age-error"), "");
  assert.match(await visibleText(home, "#age-status"), new RegExp(`campaign ${campaign.id} is sent`));
  assert.match(await visibleText(home, "#age-table td.age-status"), /Waiting for a decision/);
  await shot(home, "parent-age-request-en");

  // 2. The officer grants it from the worklist.
  const officer = await h.demoToken("officer", "officer-check");
  const pending = (await h.call("GET", "/officer/age-exceptions", officer)).body.items;
  const request = pending.find((r) => r.birth_date === birth && r.campaign === campaign.id);
  assert.ok(request, "the request is in the worklist");
  assert.equal(request.category, "earlier");
  const page = await h.newPage("/officer?lang=en");
  await page.click("#demo-signin");
  const row = page.locator(`#age-table tr[data-child='${request.child}']`);
  await row.waitFor();
  assert.match(await row.textContent(), /earlier \(too young\)/);
  assert.match(await row.textContent(), /6 y 3 m/);
  await row.locator("button.grant").click();
  await page.waitForFunction(() => /Granted for the child born/.test(document.getElementById("age-work-status").textContent));
  await page.waitForFunction((key) => !document.querySelector(`#age-table tr[data-child='${key}']`), request.child);
  assert.equal(await page.textContent("#age-work-error"), "");
  const mine = (await h.call("GET", "/school/age-exception-requests", parent)).body.requests;
  assert.equal(mine.find((r) => r.child === request.child).status, "granted");

  // 3. The grant lets the application through, and the parent page says so.
  const applied = await h.call("POST", "/school/applications", parent, form);
  assert.equal(applied.status, 201, JSON.stringify(applied.body));
  await home.close();
  const again = await h.newPage("/parent?lang=ru");
  if (await again.locator("#age-section[hidden]").count()) {
    await again.fill("#demo-sub", parentSub);
    await again.click("#demo-signin");
  }
  await again.waitForSelector("#age-table tr[data-status='granted']");
  assert.match(await visibleText(again, "#age-table td.age-status"), /Разрешено/);
  assert.match(await visibleText(again, "#age-h"), /исключение по возрасту/);
  await shot(again, "parent-age-request-ru");
  await page.click("button[data-lang='ru']");
  assert.match(await visibleText(page, "#age-work-h"), /Запросы, ждущие решения/);
  await again.close();
  await page.close();
});

test("the officer page fits a phone and names its controls", async () => {
  const page = await h.newPage("/officer?lang=en", { width: 390, height: 844 });
  await page.click("#demo-signin");
  await page.waitForFunction(() => /officer-1/.test(document.getElementById("who").textContent));
  for (const id of ["search-value", "search-by", "round-id", "seats-year", "age-document"]) {
    const label = await page.locator(`label:has(#${id})`).count();
    assert.equal(label, 1, `#${id} has a label`);
  }
  await page.waitForSelector("#work-list p, #work-table");
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert.ok(scroll <= width + 1, `the page is ${scroll}px wide on a ${width}px screen`);
  await shot(page, "officer-desk-phone");
  await page.close();
});

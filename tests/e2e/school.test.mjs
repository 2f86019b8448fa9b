// Browser test of the officer's school-campaign page: a campaign (set up over the API, with
// two catchment applications of which one claim is confirmed) shows its stages at local
// midnight in the authority's zone; the officer runs stage 1's enrollment through the page;
// the school's enrollment order lists the enrolled child by name with the order's date; in
// print only that order is shown (header, forms and other schools' orders hidden). Checked in
// English and in Russian and on a phone's width; screenshots go to artifacts/e2e/school-*.png.
//
// Run: bash tests/e2e/run.sh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { harness, shot, visibleText, inRussian, fitsWidth, errorText, ZONE } from "./harness.mjs";

const h = harness("school");
const localDay = (ms) => new Date(ms).toLocaleDateString("sv-SE", { timeZone: ZONE });
const DAY = 86_400_000;

test("an officer runs a school campaign's stage 1 enrollment and prints the order", async () => {
  const officer = await h.demoToken("officer", "officer-e2e");
  const parent = await h.demoToken("parent", "parent-e2e-school");
  for (const [id, name] of [["E2E-S1", "School No. 57"], ["E2E-S2", "School No. 12"]]) {
    const made = await h.call("POST", "/institutions", officer, { id, kind: "school", name });
    assert.equal(made.status, 201, JSON.stringify(made.body));
  }
  const year = new Date().getUTCFullYear() + 1;
  const campaign = `e2e-${year}`;
  const stage1 = localDay(Date.now() - DAY);
  const configured = await h.call("POST", "/campaigns", officer, {
    id: campaign, year, stage1_opens: stage1, stage2_opens: localDay(Date.now() + 20 * DAY),
    closes: localDay(Date.now() + 40 * DAY), tie_break: { kind: "registration_time" }, mode: { kind: "single_school" },
    schools: [{ institution: "E2E-S1", seats: 2 }, { institution: "E2E-S2", seats: 1 }],
  });
  assert.equal(configured.status, 201, JSON.stringify(configured.body));
  const catchment = { kind: "catchment", institution: "E2E-S1" };
  const apply = (document, childName) => h.call("POST", "/school/applications", parent, {
    campaign, document, birth_date: `${year - 7}-03-01`, schools: ["E2E-S1"], privileges: [catchment],
    contact: { child_name: childName, guardian_name: "Ольга Петрова", phone: "+7 900 000-00-00" },
  });
  const maria = await apply("II-AB 900001", "Мария Петрова");
  assert.equal(maria.status, 201, JSON.stringify(maria.body));
  const ivan = await apply("II-AB 900002", "Иван Сидоров");
  assert.equal(ivan.status, 201, JSON.stringify(ivan.body));
  const number = maria.body.application.number;
  const confirmed = await h.call("POST", `/applications/${number}/privileges/confirm`, officer, { privilege: catchment });
  assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));

  // 1. The calendar: each stage opens at local midnight in the authority's zone.
  const page = await h.newPage(`/school?campaign=${campaign}`);
  await h.signIn(page, "officer-e2e");
  await page.waitForSelector("#calendar-body tr[data-moment='stage1']");
  const stage1Row = await page.locator("#calendar-body tr[data-moment='stage1'] td").allTextContents();
  const expected = new Date(`${stage1}T00:00:00+03:00`).toLocaleString("en-GB", { timeZone: ZONE, dateStyle: "long", timeStyle: "short" });
  assert.equal(stage1Row[0], `${expected} (${ZONE})`);
  assert.match(stage1Row[1], /open now/);
  assert.equal(await page.locator("#calendar-body tr").count(), 3);
  assert.ok(await page.locator("#orders-none").isVisible(), "nobody enrolled yet");

  // 2. The officer runs stage 1: only the confirmed catchment claim is enrolled.
  await page.selectOption("#stage", "one");
  await page.fill("#round", `${campaign}-stage1`);
  await page.click("#run-button");
  try {
    await page.waitForSelector("#orders .order[data-school='E2E-S1']");
  } catch (e) {
    throw new Error(`no order: ${await errorText(page)} ${await page.locator("#run-error").textContent()}`);
  }
  assert.match(await visibleText(page, "#message"), new RegExp(`Enrollment ${campaign}-stage1 is recorded: 1 children enrolled`));
  const order = page.locator("#orders .order[data-school='E2E-S1']");
  assert.match(await order.locator("h2").textContent(), /Enrollment order — School No\. 57/);
  const rows = await order.locator("tbody tr").count();
  assert.equal(rows, 1);
  const cells = await order.locator(`tbody tr[data-application='${number}'] td`).allTextContents();
  assert.equal(cells[1], `№ ${number}`);
  assert.equal(cells[2], "Мария Петрова");
  assert.equal(cells[3], "Stage 1");
  const today = localDay(Date.now());
  assert.equal(await order.locator("time.order-date").getAttribute("datetime"), today, "the order's date, local");
  assert.equal(await page.locator("#orders .order[data-school='E2E-S2']").count(), 0, "nobody enrolled there");
  await shot(page, "school-order");
  await inRussian(page, "school-order", [
    ["h1", /Запись в первый класс/],
    ["#calendar-body tr[data-moment='stage1'] th", /Этап 1/],
    ["#calendar-body tr[data-moment='stage1'] td:nth-child(3)", /идёт сейчас/],
    ["#orders .order h2", /Приказ о зачислении — School No\. 57/],
    ["#orders .order tbody td:nth-child(4)", /Этап 1/],
    ["#print", /Печать приказа/],
  ]);

  // 3. Printing shows the chosen school's order alone: no header, forms or buttons.
  assert.equal(await page.inputValue("#print-school"), "E2E-S1");
  await page.emulateMedia({ media: "print" });
  assert.ok(await order.isVisible(), "the order is printed");
  assert.ok(await order.locator("tbody tr td.child-name").isVisible());
  for (const hidden of ["header.site", "#run", "#calendar", "#print", "footer"]) {
    assert.ok(await page.locator(hidden).isHidden(), `${hidden} is not printed`);
  }
  await shot(page, "school-print");
  const pdf = await page.pdf({ format: "A4" });
  assert.ok(pdf.length > 1000 && pdf.subarray(0, 4).toString() === "%PDF", "a PDF is produced");
  await page.emulateMedia({ media: "screen" });
  assert.ok(await page.locator("#run").isVisible());

  // 4. On a phone.
  const phone = await h.newPage(`/school?campaign=${campaign}`, { width: 390, height: 844 });
  await h.signIn(phone, "officer-e2e");
  await phone.waitForSelector("#orders .order[data-school='E2E-S1']");
  await fitsWidth(phone);
  await shot(phone, "school-phone");
  const home = await h.newPage("/");
  assert.equal(await home.locator("main a[href='/school']").count(), 1, "the landing page links /school");
  assert.deepEqual(h.pageErrors, [], "no script errors");
});

// Browser test of the officer's demand report: on top of the seeded demo (whose kindergartens
// lie in four districts, the popular ones in "Central"), an officer registers a kindergarten
// in a new district with one seat and three families choose it first, over the API. The
// officer then opens the officer page and signs in: the report's table shows that district
// short by exactly 2 and every district as the API's report counts it, the chart has a pair of
// bars per district, and the CSV link downloads the same numbers. Checked in English and in
// Russian and on a phone's width; screenshots go to artifacts/e2e/demand-*.png.
//
// Run: bash tests/e2e/run.sh (the shared setup is harness.mjs).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { harness, visibleText, ARTIFACTS } from "./harness.mjs";

const h = harness("demand");
const DISTRICT = "Zavodskoy";
// The demo's kindergarten applications start on 1 September of next year (demo.rs).
const YEAR = new Date().getUTCFullYear() + 1;

/** A screenshot of the report's section. */
const shot = (page, name) => page.locator("#demand").screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });

/** Switches the page's language with its RU/EN buttons. */
async function setLanguage(page, lang) {
  await page.click(`button[data-lang='${lang}']`);
  assert.equal(await page.getAttribute("html", "lang"), lang);
}

/** The page's row of a district in the table by district (`""`: no district). */
const districtRow = (district) => `#demand-districts-body tr[data-district='${district}']`;

/** The cells of a table row after the district: the balance text, then first choice, any choice, seats, taken, free. */
async function rowCells(page, selector) {
  return page.locator(selector).evaluate((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent.trim()));
}

const digits = (text) => text.replace(/\D/g, "");

test("an officer sees a district's shortage that matches the data, as a table, a chart and a CSV", async () => {
  const officer = await h.demoToken("officer", "officer-e2e");
  const registered = await h.call("POST", "/institutions", officer, {
    id: "KE1",
    kind: "kindergarten",
    name: "Kindergarten on Factory street",
    district: DISTRICT,
    address: "Factory street, 12",
  });
  assert.equal(registered.status, 201, JSON.stringify(registered.body));
  const seats = await h.call("POST", "/kindergarten/seats", officer, {
    institution: "KE1",
    intake_year: YEAR,
    seats: [{ age_group: 3, seats: 1 }],
  });
  assert.equal(seats.status, 201, JSON.stringify(seats.body));
  for (let n = 1; n <= 3; n++) {
    const parent = await h.demoToken("parent", `parent-e2e-demand-${n}`);
    const applied = await h.call("POST", "/kindergarten/applications", parent, {
      document: `II-EE 00070${n}`,
      birth_date: `${YEAR - 3}-03-10`,
      preferences: ["KE1"],
      desired_start: `${YEAR}-09-01`,
    });
    assert.equal(applied.status, 201, JSON.stringify(applied.body));
  }
  const report = (await h.call("GET", `/reports/demand?intake_year=${YEAR}`, officer)).body;
  const districts = report.districts.filter((d) => d.intake_year === YEAR);
  const ours = districts.find((d) => d.district === DISTRICT);
  assert.deepEqual(
    [ours.applications_first_choice, ours.seats_free, ours.shortage, ours.surplus],
    [3, 1, 2, 0],
    "the data set: three first choices, one free seat",
  );
  const central = districts.find((d) => d.district === "Central");
  assert.ok(central.shortage > 0, "the demo's centre is short of seats");
  assert.ok(districts.some((d) => d.surplus > 0), "the demo has a district with seats to spare");

  // The page, signed in as the demo officer.
  const page = await h.newPage("/officer");
  await setLanguage(page, "en");
  assert.match(await visibleText(page, "#demand-status"), /Sign in/);
  await h.signIn(page, "officer-e2e");
  await page.waitForSelector(districtRow(DISTRICT));
  assert.equal(await page.inputValue("#demand-year"), String(YEAR));
  assert.equal(await visibleText(page, "#demand-h"), "Demand against seats by district");

  // The new district: short by 2, as the data says.
  const cells = await rowCells(page, districtRow(DISTRICT));
  assert.equal(cells[0], "short by 2");
  assert.deepEqual(cells.slice(1).map(digits), ["3", "3", "1", "0", "1"]);
  assert.equal(await page.locator(`${districtRow(DISTRICT)} .shortage`).count(), 1, "the shortage is marked");

  // Every district of the year as the API counts it, in its order.
  const shown = await page.locator("#demand-districts-body tr").evaluateAll((rows) => rows.map((r) => r.dataset.district));
  assert.deepEqual(shown, districts.map((d) => d.district ?? ""));
  for (const d of districts) {
    const row = await rowCells(page, districtRow(d.district ?? ""));
    const expected = [d.applications_first_choice, d.applications_any_choice, d.seats_published, d.seats_taken, d.seats_free];
    assert.deepEqual(row.slice(1).map(digits), expected.map(String), `district ${d.district}`);
    const balance = d.shortage > 0 ? `short by ${d.shortage}` : d.surplus > 0 ? `${d.surplus} to spare` : "balanced";
    assert.equal(row[0], balance, `district ${d.district}`);
  }

  // The chart: a bar of first choices and one of free seats per district, heights in proportion.
  assert.equal(await page.locator("#demand-chart svg g[data-label]").count(), districts.length);
  const bars = await page.locator(`#demand-chart svg g[data-label='${DISTRICT}'] rect`).evaluateAll((rects) =>
    rects.map((r) => ({ cls: r.getAttribute("class"), height: Number(r.getAttribute("height")) })),
  );
  assert.deepEqual(bars.map((b) => b.cls), ["demand", "seats"]);
  assert.ok(Math.abs(bars[0].height / bars[1].height - 3) < 0.01, `3 applications to 1 free seat: ${JSON.stringify(bars)}`);
  assert.match(await page.locator("#demand-chart svg title").first().textContent(), new RegExp(`intake year ${YEAR}`));

  // By age group: the district's row for age 3.
  await page.click("#demand-rows-h");
  const age = await rowCells(page, `#demand-rows-body tr[data-district='${DISTRICT}'][data-age='3']`);
  assert.deepEqual(age.slice(0, 2), ["3", "short by 2"]);

  // The CSV link downloads the same numbers.
  assert.match(await page.getAttribute("#demand-csv", "href"), new RegExp(`/reports/demand\\.csv\\?intake_year=${YEAR}$`));
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#demand-csv")]);
  assert.equal(download.suggestedFilename(), `demo-demand-${YEAR}.csv`);
  const csv = readFileSync(await download.path(), "utf8").replace(/^\ufeff/, "");
  assert.ok(csv.startsWith("district,intake_year,age_group,applications_first_choice"), csv.slice(0, 120));
  assert.ok(csv.includes(`\r\n${DISTRICT},${YEAR},3,3,3,1,0,1,2,0\r\n`), csv);
  assert.match(await visibleText(page, "#demand-status"), /Downloaded demo-demand-/);
  const [xlsx] = await Promise.all([page.waitForEvent("download"), page.click("#demand-xlsx")]);
  assert.equal(xlsx.suggestedFilename(), `demo-demand-${YEAR}.xlsx`);
  assert.equal(readFileSync(await xlsx.path()).subarray(0, 2).toString(), "PK", "a workbook (zip)");
  await shot(page, "demand-en");

  // In Russian: the same numbers, the texts translated.
  await setLanguage(page, "ru");
  assert.equal(await visibleText(page, "#demand-h"), "Спрос и места по районам");
  assert.equal((await rowCells(page, districtRow(DISTRICT)))[0], "не хватает 2");
  assert.match(await visibleText(page, "#demand-districts thead"), /Район/);
  assert.match(await page.locator("#demand-chart svg title").first().textContent(), /год зачисления/);
  assert.equal(await visibleText(page, "#demand-csv"), "Скачать CSV");
  await shot(page, "demand-ru");
  await setLanguage(page, "en");
  assert.deepEqual(h.pageErrors, [], "no script errors");
});

test("on a phone the report fits the screen; a parent's token does not get it", async () => {
  const page = await h.newPage("/officer", { width: 390, height: 844 });
  await h.signIn(page, "officer-e2e-phone");
  await page.waitForSelector(districtRow("Central"));
  const { scroll, width } = await page.locator("#demand").evaluate((section) => ({
    scroll: section.scrollWidth,
    width: section.clientWidth,
  }));
  assert.ok(scroll <= width + 1, `the report's section is ${scroll}px wide in ${width}px`);
  // The shortage is in view without scrolling the table sideways.
  const cell = await page.locator(`${districtRow("Central")} td.balance`).boundingBox();
  assert.ok(cell.x + cell.width <= 390, `the shortage cell ends at ${cell.x + cell.width}px`);
  assert.match(await visibleText(page, `${districtRow("Central")} td.balance`), /^short by \d+$/);
  await shot(page, "demand-phone-en");

  const parent = await h.demoToken("parent", "parent-e2e-demand-9");
  const refused = await h.call("GET", "/reports/demand", parent);
  assert.equal(refused.status, 403);
  assert.deepEqual(h.pageErrors, [], "no script errors");
});

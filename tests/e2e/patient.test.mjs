// Browser test of the patient's clinic page: the registrar publishes a doctor's slots over the
// API (two of them with ids out of start order); patient A books the only slot left through the
// page; patient B, finding none free, joins the waiting list through the page; A cancels
// through the page; B's page then shows the slot held for B and until when, and the page's
// list of free slots (the public GET /slots) does not offer the held slot to anyone else.
// Checked in English and in Russian and on a phone's width; screenshots go to
// artifacts/e2e/patient-*.png.
//
// Run: bash tests/e2e/run.sh (the real server on a free loopback port with a fresh SQLite
// database and the demo seeded; headless Chromium at /usr/bin/chromium via playwright-core).


import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, "target");
const BIN = process.env.OCHERED_BIN || path.join(targetDir, "debug", "ochered");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = path.join(root, "artifacts", "e2e");
const TIMEOUT = 20_000;
const ZONE = "Europe/Moscow"; // the demo authority's time zone

const work = mkdtempSync(path.join(tmpdir(), "ochered-e2e-patient-"));
let server = null;
let base = null;
let browser = null;
const pageErrors = [];

function startServer() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OCHERED_")));
  Object.assign(env, { OCHERED_LOG: "info", NO_COLOR: "1" });
  const db = path.join(work, "patient.db");
  server = spawn(BIN, ["serve", "--database-url", `sqlite://${db}`, "--listen", "127.0.0.1:0"], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let log = "";
    const timer = setTimeout(() => reject(new Error(`the server did not start in 60 s:\n${log}`)), 60_000);
    const onData = (chunk) => {
      log += chunk.toString();
      // eslint-disable-next-line no-control-regex
      const m = /listening[^\n]*?(127\.0\.0\.1:\d+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ""));
      if (m) {
        clearTimeout(timer);
        resolve(`http://${m[1]}`);
      }
    };
    server.stdout.on("data", onData);
    server.stderr.on("data", onData);
    server.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code}:\n${log}`));
    });
  });
}

async function call(method, p, token, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${base}/api/v1/authorities/demo${p}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

async function demoToken(role, sub) {
  const response = await fetch(`${base}/demo/token?role=${role}&sub=${encodeURIComponent(sub)}`);
  assert.equal(response.status, 200);
  return (await response.json()).token;
}

async function newPage(url, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, locale: "en-GB", timezoneId: "Asia/Vladivostok" });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => pageErrors.push(`${url}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`${url}: ${m.text()}`);
  });
  await page.goto(`${base}${url}`);
  await page.waitForSelector("body[data-ready='true']");
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Visible text of a selector (asserting it is visible). */
async function visibleText(page, selector) {
  const node = page.locator(selector);
  assert.ok(await node.isVisible(), `${selector} is visible`);
  return (await node.textContent()).trim();
}

/** Switches to Russian, checks the page's key texts, takes the screenshot, switches back. */
async function inRussian(page, name, checks) {
  await page.click("button[data-lang='ru']");
  assert.equal(await page.getAttribute("html", "lang"), "ru");
  for (const [selector, pattern] of checks) {
    assert.match(await visibleText(page, selector), pattern, `${selector} in Russian`);
  }
  await shot(page, `${name}-ru`);
  await page.click("button[data-lang='en']");
  assert.equal(await page.getAttribute("html", "lang"), "en");
}

/** The page fits a phone's width: nothing wider than the screen. */
async function fitsWidth(page) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert.ok(scroll <= width + 1, `the page is ${scroll}px wide on a ${width}px screen`);
}

before(async () => {
  assert.ok(existsSync(BIN), `the server binary ${BIN} exists`);
  assert.ok(existsSync(CHROMIUM), `Chromium is installed at ${CHROMIUM}`);
  mkdirSync(ARTIFACTS, { recursive: true });
  base = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server) {
    server.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (server.exitCode === null) server.kill("SIGKILL");
  }
  rmSync(work, { recursive: true, force: true });
});

/** The slot ids of the page's free-slots table, top to bottom. */
async function freeSlotIds(page) {
  return page.locator("#free-body tr").evaluateAll((rows) => rows.map((r) => r.dataset.slot));
}

/** A patient's page, signed in as `sub`, for the patient's `document` and `specialty`. */
async function patientPage(sub, documentNumber, specialty, viewport) {
  const page = await newPage(`/patient?specialty=${specialty}`, viewport);
  await page.fill("#demo-sub", sub);
  await page.click("#demo-signin");
  await page.waitForFunction((s) => document.getElementById("who").textContent.includes(s), sub);
  await page.fill("#document", documentNumber);
  await page.click("#show");
  return page;
}

test("a patient books and cancels; the freed slot is held for the waiting list and not listed as free", async () => {
  const SPECIALTY = "neurology"; // not among the demo's specialties, so only this test's slots are listed
  const DOCTOR = "dr-e2e-petrova";
  const registrar = await demoToken("registrar", "registrar-e2e");
  const configured = await call("POST", "/specialties", registrar, { specialty: SPECIALTY, referral_only: false });
  assert.equal(configured.status, 201, JSON.stringify(configured.body));
  // Three days ahead, on the hour; ids out of start order: S2 09:00, S1 09:30, S3 10:00 (UTC).
  const day = new Date(Date.now() + 3 * 86_400_000);
  day.setUTCHours(9, 0, 0, 0);
  const at = (minutes) => new Date(day.getTime() + minutes * 60_000).toISOString().replace(".000Z", "Z");
  const publish = (slots) => call("POST", "/slots", registrar, {
    doctor: DOCTOR, specialty: SPECIALTY, slots: slots.map(([id, m]) => ({ id, start: at(m), duration_minutes: 30 })),
  });
  const published = await publish([["S2", 0], ["S1", 30], ["S3", 60]]);
  assert.equal(published.status, 201, JSON.stringify(published.body));

  // 1. Patient A's page lists the free slots by start time, not by id.
  const a = await patientPage("patient-e2e-a", "PAT 700001", SPECIALTY);
  await waitFreeRows(a, 3);
  assert.deepEqual(await freeSlotIds(a), ["S2", "S1", "S3"], "earliest first");
  const s1 = await a.locator("#free-body tr[data-slot='S1'] td").allTextContents();
  const expectedS1 = new Date(at(30)).toLocaleString("en-GB", { timeZone: ZONE, dateStyle: "long", timeStyle: "short" });
  assert.match(s1[0], new RegExp(`^${expectedS1} \\(${ZONE}\\)`), "the start in the authority's zone");
  assert.equal(s1[1], DOCTOR);
  assert.equal(s1[2], SPECIALTY);
  assert.ok(await a.locator("#bookings-none").isVisible(), "no bookings yet");

  // Someone else takes S2 and S3 (over the API): S1 is the only slot left.
  const other = await demoToken("parent", "patient-e2e-c");
  for (const [slot, doc] of [["S2", "PAT 700003"], ["S3", "PAT 700004"]]) {
    const booked = await call("POST", "/bookings", other, { slot, document: doc });
    assert.equal(booked.status, 201, JSON.stringify(booked.body));
  }
  await a.click("#show");
  await waitFreeRows(a, 1);
  assert.deepEqual(await freeSlotIds(a), ["S1"]);

  // 2. A books the only slot through the page: the booking shows its time, doctor and place.
  await a.click("#free-body button[data-book='S1']");
  await a.waitForSelector("#bookings-body tr");
  const row = await a.locator("#bookings-body tr").first().locator("td").allTextContents();
  assert.match(row[0], new RegExp(`^${expectedS1}`));
  assert.equal(row[1], DOCTOR);
  assert.equal(row[2], SPECIALTY);
  assert.match(row[3], /demo/i, "the place: the clinic's authority");
  assert.equal(row[4], "booked");
  assert.match(await visibleText(a, "#message"), /Slot S1 is booked/);
  assert.ok(await a.locator("#free-none").isVisible(), "no free slot is left");
  assert.equal(await a.locator("#free-body tr").count(), 0);
  await shot(a, "patient-booked");
  await inRussian(a, "patient-booked", [
    ["h1", /Запись к врачу/],
    ["#bookings-h", /Мои записи/],
    ["#bookings-body tr td:nth-child(5)", /записан/],
    ["#free-none", /Свободного времени нет/],
  ]);

  // 3. B finds nothing free and joins the waiting list through the page.
  const b = await patientPage("patient-e2e-b", "PAT 700002", SPECIALTY, { width: 390, height: 844 });
  assert.ok(await b.locator("#free-none").isVisible());
  assert.ok(await b.locator("#waiting-none").isVisible());
  await b.click("#join");
  await b.waitForSelector(`#places li[data-place='${SPECIALTY}']`);
  assert.match(await visibleText(b, `#places li[data-place='${SPECIALTY}']`), new RegExp(`${SPECIALTY}: place 1 of 1`));
  assert.ok(await b.locator("#holds").isHidden(), "nothing is held yet");

  // 4. A cancels through the page.
  await a.click("#bookings-body button[data-cancel]");
  await a.waitForFunction(() => /cancelled/.test(document.querySelector("#bookings-body tr td:nth-child(5)").textContent))
    .catch(async (e) => {
      throw new Error(`not cancelled: ${await a.locator("#bookings-body").textContent()}; error: ${await a.locator("#error").textContent()}; ${e.message}`);
    });
  assert.equal(await a.locator("#bookings-body button[data-cancel]").count(), 0);
  const bookingsA = (await call("GET", "/bookings", await demoToken("parent", "patient-e2e-a"))).body.bookings;
  assert.equal(bookingsA.length, 1);
  assert.equal(bookingsA[0].status, "cancelled");
  assert.equal(bookingsA[0].doctor, DOCTOR);
  assert.equal(bookingsA[0].start, at(30));

  // A later slot is published, so that the free list is not simply empty.
  const later = await publish([["S4", 120]]);
  assert.equal(later.status, 201, JSON.stringify(later.body));

  // 5. B's page shows the hold: the slot and until when; the free list leaves S1 out.
  await b.click("#show");
  await b.waitForSelector("#holds:not([hidden]) li[data-hold='S1']");
  const hold = b.locator("#holds-list li[data-hold='S1']");
  assert.match(await visibleText(b, "#holds-list li[data-hold='S1']"), new RegExp(`Slot S1 with ${DOCTOR} at ${expectedS1}`));
  const until = await hold.locator("time.until").getAttribute("datetime");
  const untilMs = new Date(until).getTime();
  assert.ok(untilMs > Date.now() + 100 * 60_000 && untilMs <= Date.now() + 121 * 60_000, `held for the configured 120 minutes: ${until}`);
  const expectedUntil = new Date(until).toLocaleString("en-GB", { timeZone: ZONE, dateStyle: "long", timeStyle: "short" });
  assert.match(await visibleText(b, "#holds-list li[data-hold='S1'] strong"), new RegExp(`held until ${expectedUntil}`));
  assert.ok(await hold.locator("button[data-book='S1']").isVisible(), "B may book the held slot");
  await waitFreeRows(b, 1);
  assert.deepEqual(await freeSlotIds(b), ["S4"], "the held slot S1 is not listed as free");
  // And the page says the truth: anyone else booking S1 is refused.
  const refused = await call("POST", "/bookings", other, { slot: "S1", document: "PAT 700005" });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.code, "slot_held");
  // A's page (anyone else's view) lists S4 only, too.
  await a.click("#show");
  await waitFreeRows(a, 1);
  assert.deepEqual(await freeSlotIds(a), ["S4"]);
  await fitsWidth(b);
  await shot(b, "patient-held");
  await inRussian(b, "patient-held", [
    ["#holds h3", /придержано/],
    ["#holds-list li[data-hold='S1']", new RegExp(`Талон S1, врач ${DOCTOR}`)],
    ["#holds-list li[data-hold='S1'] strong", /придержано до/],
    [`#places li[data-place='${SPECIALTY}']`, /место 1 из 1/],
    ["#free-body tr[data-slot='S4'] button", /Записаться/],
  ]);
  assert.deepEqual(pageErrors, [], "no script errors");
});

/** Waits until the free-slots table has `n` rows. */
async function waitFreeRows(page, n) {
  try {
    await page.waitForFunction((k) => document.querySelectorAll("#free-body tr").length === k, n);
  } catch (e) {
    const seen = await freeSlotIds(page);
    const error = await page.locator("#error").textContent();
    throw new Error(`expected ${n} free slots, the page lists ${JSON.stringify(seen)}; error: ${error}`);
  }
}

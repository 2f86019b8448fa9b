// Browser test of the parent's journey, through the pages only (the officer's round is the
// officer's act, done over the API): a parent applies through the form (and first sees a
// field error on bad input), sees the position in each queue and why it moved, gets an offer
// that names the kindergarten and the deadline in the authority's time zone, accepts it, and
// prints the confirmation (its print view checked). Every page is checked in English and in
// Russian and on a phone's width; screenshots go to artifacts/e2e/parent-*.png (and the
// printed confirmation to artifacts/e2e/parent-confirmation.pdf).
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

const work = mkdtempSync(path.join(tmpdir(), "ochered-e2e-parent-"));
let server = null;
let base = null;
let browser = null;
const pageErrors = [];

function startServer() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OCHERED_")));
  Object.assign(env, { OCHERED_LOG: "info", NO_COLOR: "1" });
  const db = path.join(work, "parent.db");
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

test("a parent applies, follows the position, accepts the offer and prints the confirmation", async () => {
  const sub = "parent-e2e-journey";
  const kindergartens = (await call("GET", "/institutions")).body.institutions.filter((i) => i.kind === "kindergarten");
  const [first, second] = kindergartens;

  // 1. The form: bad input first, its error next to the field at fault.
  const page = await newPage("/parent/apply?lang=en");
  assert.equal(await visibleText(page, "h1"), "Apply for a kindergarten place");
  await page.fill("#demo-sub", sub);
  await page.click("#demo-signin");
  await page.waitForFunction((s) => document.getElementById("who").textContent.includes(s), sub);
  // Every choice lists the authority's kindergartens.
  assert.equal(await page.locator("#f-pref-0 option").count(), kindergartens.length + 1);
  await page.fill("#f-document", "12");
  await page.fill("#f-birth_date", "2024-03-10");
  await page.selectOption("#f-pref-0", first.id);
  await page.selectOption("#f-pref-1", second.id);
  await page.fill("#f-desired_start", "2027-09-01");
  await page.fill("#f-child_name", "Мария Тестова");
  await page.fill("#f-guardian_name", "Ирина Тестова");
  await page.fill("#f-phone", "+7 900 123-45-67");
  await page.click("#submit");
  await page.waitForSelector("#err-document:not([hidden])");
  assert.match(await visibleText(page, "#err-document"), /6-32 letters and digits/);
  assert.equal(await page.getAttribute("#f-document", "aria-invalid"), "true");
  assert.match(await page.getAttribute("#f-document", "aria-describedby"), /err-document/);
  assert.match(await visibleText(page, "#error"), /field: document/);
  assert.equal(await page.evaluate(() => document.activeElement.id), "f-document", "the bad field has the focus");
  assert.equal((await call("GET", "/applications", await demoToken("parent", sub))).body.applications.length, 0, "nothing was written");
  await shot(page, "parent-apply-error");
  await inRussian(page, "parent-apply-error", [
    ["h1", /Заявление в детский сад/],
    ["label[for='f-document']", /Номер свидетельства о рождении/],
    ["#err-document", /6-32/],
  ]);
  // A second field's error (the phone) replaces the first.
  await page.fill("#f-document", "II-АБ 765432");
  await page.fill("#f-phone", "call me");
  await page.click("#submit");
  await page.waitForSelector("#err-contact\\.phone:not([hidden])");
  assert.ok(await page.locator("#err-document").isHidden(), "the fixed field's error is gone");
  assert.equal(await page.getAttribute("#f-phone", "aria-invalid"), "true");

  await page.fill("#f-phone", "+7 900 123-45-67");
  await page.click("#submit");
  await page.waitForSelector("#done:not([hidden])");
  const number = Number((await visibleText(page, "#done-h")).replace(/\D/g, ""));
  assert.ok(number > 0, "an application number");
  const token = await demoToken("parent", sub);
  let application = (await call("GET", `/applications/${number}`, token)).body;
  assert.equal(application.positions.length, 2, "a queue per chosen kindergarten");
  assert.match(await visibleText(page, "#done-registered"), new RegExp(`entry ${application.chain_position} `));
  assert.match(await visibleText(page, "#done-registered"), /Europe\/Moscow/);
  await shot(page, "parent-apply-done");
  await inRussian(page, "parent-apply-done", [["#done-h", new RegExp(`Заявление № ${number} зарегистрировано`)]]);

  // 2. The application page: the positions with the reasons, the history, my applications.
  await page.click("#done-open");
  await page.waitForSelector("#result:not([hidden])");
  await page.waitForSelector("#positions-body tr");
  assert.equal(await visibleText(page, "#app-title"), `Application No. ${number}`);
  for (const p of application.positions) {
    const cells = await page.locator(`#positions-body tr[data-queue='${p.queue}'] td`).allTextContents();
    assert.match(cells[0], new RegExp(`^${p.institution}\\b`));
    assert.equal(cells[3].replace(/\D/g, ""), String(p.position), `position in ${p.queue}`);
    assert.equal(cells[4].replace(/\D/g, ""), String(p.queue_size), `size of ${p.queue}`);
    const reasons = page.locator(`.timeline-queue[data-queue='${p.queue}'] ol.timeline li`);
    assert.ok((await reasons.count()) >= 1, `the reasons in ${p.queue}`);
    assert.match(await reasons.first().textContent(), /joined the queue/);
  }
  assert.match(await visibleText(page, "#app-summary"), /Мария Тестова/);
  assert.match(await visibleText(page, "#app-summary"), /Europe\/Moscow/);
  assert.equal(await page.locator("#history li").count(), 1);
  assert.match(await visibleText(page, "#history li[data-type='submitted']"), new RegExp(`entry ${application.chain_position} of`));
  assert.match(await visibleText(page, "#mine-list"), new RegExp(`No. ${number} — Мария Тестова`));
  await shot(page, "parent-application");
  await inRussian(page, "parent-application", [
    ["#app-title", new RegExp(`Заявление № ${number}`)],
    ["#history-h", /История заявления/],
    ["#history li[data-type='submitted']", /Заявление зарегистрировано/],
  ]);

  // 3. The officer's round (over the API): enough seats at the first choice's age group for
  // everyone in that queue, so the round offers this child a place there.
  const officer = await demoToken("officer", "officer-e2e");
  const queue = application.positions.find((p) => p.institution === first.id);
  const seats = { institution: first.id, intake_year: queue.intake_year, seats: [{ age_group: queue.age_group, seats: queue.queue_size }] };
  const published = await call("POST", "/kindergarten/seats", officer, seats);
  assert.equal(published.status, 201, JSON.stringify(published.body));
  const round = await call("POST", "/kindergarten/rounds", officer, { round: `main-${queue.intake_year}-e2e`, intake_year: queue.intake_year });
  assert.equal(round.status, 201, JSON.stringify(round.body));
  application = (await call("GET", `/applications/${number}`, token)).body;
  assert.equal(application.status, "offered");
  const offer = application.offer;
  assert.equal(offer.institution.id, first.id);

  // 4. The offer on the page: the kindergarten by name, the deadline in the authority's zone.
  await page.click("#show");
  await page.waitForSelector("#offer:not([hidden])");
  assert.match(await visibleText(page, "#offer-institution"), new RegExp(`${first.name} \\(${first.id}\\)`));
  const deadline = page.locator("#offer-deadline time");
  assert.equal(await deadline.getAttribute("datetime"), offer.deadline);
  const expected = new Date(offer.deadline).toLocaleString("en-GB", { timeZone: ZONE, dateStyle: "long", timeStyle: "short" });
  assert.equal(await visibleText(page, "#offer-deadline"), `${expected} (${ZONE})`, "the deadline in the authority's local time");
  assert.match(await visibleText(page, "#offer-round"), new RegExp(offer.round));
  assert.match(await visibleText(page, "#history li[data-type='offered']"), new RegExp(`${first.name}.*answer by ${expected}`));
  assert.equal(await page.locator("#positions-body tr").count(), 0, "an offered application waits in no queue");
  await shot(page, "parent-offer");
  await inRussian(page, "parent-offer", [
    ["#offer h3", /направление|предложение|У вас/i],
    ["#offer-institution", new RegExp(first.name)],
    ["#history li[data-type='offered']", /Направление в/],
  ]);

  // 5. Accept.
  await page.click("#accept");
  await page.waitForFunction(() => /accepted/.test(document.getElementById("message").textContent));
  application = (await call("GET", `/applications/${number}`, token)).body;
  assert.equal(application.status, "enrolled");
  assert.ok(await page.locator("#offer").isHidden());
  assert.match(await visibleText(page, "#history li[data-type='accepted']"), /Offer accepted/);
  assert.match(await visibleText(page, "#app-summary"), new RegExp(`${first.name} \\(${first.id}\\): accepted`));
  await page.waitForFunction((n) => new RegExp(`No. ${n} .*enrolled`).test(document.getElementById("mine-list").textContent), number);
  await shot(page, "parent-accepted");
  await inRussian(page, "parent-accepted", [
    ["#history li[data-type='accepted']", /Направление принято/],
    ["#message", /Направление принято/],
  ]);

  // 6. The printable confirmation.
  await page.click("#confirmation-link");
  await page.waitForSelector("#confirmation:not([hidden])");
  assert.equal(await visibleText(page, "#c-number"), String(number));
  assert.equal(await visibleText(page, "#c-child"), "Мария Тестова");
  assert.equal((await visibleText(page, "#c-chain")).replace(/\D/g, ""), String(application.chain_position));
  const registered = page.locator("#c-registered time");
  assert.equal(await registered.getAttribute("datetime"), application.registered_at_local);
  const registeredText = new Date(application.registered_at).toLocaleString("en-GB", { timeZone: ZONE, dateStyle: "long", timeStyle: "short" });
  assert.equal(await visibleText(page, "#c-registered"), `${registeredText} (${ZONE})`);
  assert.equal(await visibleText(page, "#c-registered-utc"), `${application.registered_at.replace("T", " ").replace(/(\.\d+)?Z$/, "")} UTC`);
  assert.match(await visibleText(page, "#c-place"), new RegExp(`${first.name}`));
  await shot(page, "parent-confirmation");
  await inRussian(page, "parent-confirmation", [
    ["#c-title", /Подтверждение регистрации/],
    ["#c-number", new RegExp(`^${number}$`)],
  ]);
  // The print view: only the confirmation, with its number, time and chain entry.
  await page.emulateMedia({ media: "print" });
  for (const hidden of ["header.site", "footer", "#print", "#signin", "#back"]) {
    assert.ok(await page.locator(hidden).isHidden(), `${hidden} is not printed`);
  }
  for (const shown of ["#c-title", "#c-number", "#c-registered", "#c-chain", "#c-positions-none, #c-positions"]) {
    assert.ok(await page.locator(shown).first().isVisible(), `${shown} is printed`);
  }
  await shot(page, "parent-confirmation-print");
  const pdf = path.join(ARTIFACTS, "parent-confirmation.pdf");
  await page.pdf({ path: pdf, format: "A4" });
  assert.ok(statSync(pdf).size > 1000, "the printed confirmation");
  await page.emulateMedia({ media: "screen" });
  await page.context().close();
});

test("the parent's pages fit a phone's screen", async () => {
  const phone = { width: 390, height: 844 };
  for (const [url, name] of [
    ["/parent/apply?lang=en", "parent-apply-phone"],
    ["/parent?lang=ru", "parent-phone-ru"],
  ]) {
    const page = await newPage(url, phone);
    await fitsWidth(page);
    await shot(page, name);
    await page.context().close();
  }
});

test("someone else's confirmation is not shown", async () => {
  const owner = await demoToken("parent", "parent-e2e-owner");
  const body = { document: "II-АБ 111222", birth_date: "2024-05-01", preferences: ["K001"], desired_start: "2027-09-01" };
  const submitted = await call("POST", "/kindergarten/applications", owner, body);
  assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
  const number = submitted.body.application.number;
  const page = await newPage(`/parent/confirmation?lang=en&authority=demo&number=${number}`);
  await page.fill("#demo-sub", "parent-e2e-stranger");
  await page.click("#demo-signin");
  await page.waitForFunction(() => document.getElementById("error").textContent.length > 0);
  assert.match(await visibleText(page, "#error"), /does not exist/);
  assert.ok(await page.locator("#confirmation").isHidden());
  assert.ok(await page.locator("#print").isDisabled());
  await page.context().close();
});

test("the same child twice: the form names the field and links the application the child has", async () => {
  const sub = "parent-e2e-twice";
  const token = await demoToken("parent", sub);
  const body = { document: "II-АБ 333444", birth_date: "2024-02-01", preferences: ["K001"], desired_start: "2027-09-01" };
  const submitted = await call("POST", "/kindergarten/applications", token, body);
  assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
  const number = submitted.body.application.number;
  const page = await newPage("/parent/apply?lang=en");
  await page.fill("#demo-sub", sub);
  await page.click("#demo-signin");
  await page.waitForFunction((s) => document.getElementById("who").textContent.includes(s), sub);
  await page.fill("#f-document", "ii-аб №333444"); // the same certificate in another spelling
  await page.fill("#f-birth_date", "2024-02-01");
  await page.selectOption("#f-pref-0", "K001");
  await page.fill("#f-desired_start", "2027-09-01");
  await page.click("#submit");
  await page.waitForSelector("#err-document:not([hidden])");
  assert.equal(await page.getAttribute("#f-document", "aria-invalid"), "true");
  assert.equal(await visibleText(page, "#existing-link"), `Application No. ${number}`);
  await page.click("#existing-link");
  await page.waitForSelector("#result:not([hidden])");
  assert.equal(await visibleText(page, "#app-title"), `Application No. ${number}`);
  assert.equal((await call("GET", "/applications", token)).body.applications.length, 1, "nothing more was written");
  await page.context().close();
});

test("no script error on the parent's pages", () => {
  assert.deepEqual(pageErrors, []);
});

// Browser test of the web pages: the real server on a free loopback
// port with a fresh SQLite database (the demo seeded), driven by headless Chromium through
// playwright-core (the system's /usr/bin/chromium; no browser is downloaded).
//
//   (a) a parent signs in, looks up an application and sees its position in each queue and
//       the timeline of why it moved — checked against the API's own answer;
//   (b) an officer publishes seats, runs an allocation round and sees its results — checked
//       against the API's record of the round; the parent of a placed child accepts the offer;
//   (c) the public page shows the anonymised queues and the chain head;
//   and the demo token door is closed when a real secret is configured.
//
// Screenshots of every page go to artifacts/e2e/*.png.
//
// Run: bash tests/e2e/run.sh   (builds the server, installs playwright-core, runs this file)
// Environment: OCHERED_BIN (the server binary), CHROMIUM (default /usr/bin/chromium).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
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

const work = mkdtempSync(path.join(tmpdir(), "ochered-e2e-"));
const servers = [];
let base = null;
let context = null;
const pageErrors = [];

/** Starts `ochered serve` on 127.0.0.1:0 and resolves with its base URL once it listens. */
function startServer(name, extraArgs = [], extraEnv = {}) {
  // Only the flags below configure the server: no OCHERED_* variable of the caller leaks in
  // (the demo token door, in particular, opens only with the development secret).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OCHERED_")));
  Object.assign(env, { OCHERED_LOG: "info", NO_COLOR: "1" }, extraEnv);
  const db = path.join(work, `${name}.db`);
  const child = spawn(
    BIN,
    ["serve", "--database-url", `sqlite://${db}`, "--listen", "127.0.0.1:0", ...extraArgs],
    { env, stdio: ["ignore", "pipe", "pipe"] },
  );
  servers.push(child);
  return new Promise((resolve, reject) => {
    let log = "";
    const timer = setTimeout(() => reject(new Error(`server ${name} did not start in 60 s:\n${log}`)), 60_000);
    const onData = (chunk) => {
      log += chunk.toString();
      // eslint-disable-next-line no-control-regex
      const plain = log.replace(/\x1b\[[0-9;]*m/g, "");
      const m = /listening[^\n]*?(127\.0\.0\.1:\d+)/.exec(plain);
      if (m) {
        clearTimeout(timer);
        resolve(`http://${m[1]}`);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server ${name} exited with ${code}:\n${log}`));
    });
  });
}

async function getJson(url, token) {
  const response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  const body = await response.json().catch(() => null);
  return { status: response.status, body };
}

async function demoToken(role, sub) {
  const { status, body } = await getJson(`${base}/demo/token?role=${role}&sub=${encodeURIComponent(sub)}`);
  assert.equal(status, 200, "the demo token endpoint answers with the development secret");
  return body.token;
}

const api = (p) => `${base}/api/v1/authorities/demo${p}`;

async function newPage(url) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => pageErrors.push(`${url}: ${e.message}`));
  page.on("console", (m) => {
    // Expected API refusals (e.g. someone else's application) are logged as failed loads.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      pageErrors.push(`${url}: console: ${m.text()}`);
    }
  });
  await page.goto(`${base}${url}`);
  await page.waitForSelector("body[data-ready='true']");
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

before(async () => {
  assert.ok(existsSync(BIN), `the server binary ${BIN} exists (build it with cargo build --bin ochered)`);
  assert.ok(existsSync(CHROMIUM), `Chromium is installed at ${CHROMIUM}`);
  mkdirSync(ARTIFACTS, { recursive: true });
  base = await startServer("demo");
  context = await chromium.launchPersistentContext(path.join(work, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
    locale: "en-GB",
    timezoneId: "Europe/Moscow",
  });
});

after(async () => {
  if (context) await context.close().catch(() => {});
  for (const child of servers) child.kill("SIGTERM");
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const child of servers) if (child.exitCode === null) child.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

/** The first demo application (1..50) whose parent parent-N sees it in two or more queues. */
async function applicationWithQueues() {
  for (let n = 1; n <= 50; n++) {
    const token = await demoToken("parent", `parent-${n}`);
    const { status, body } = await getJson(api(`/applications/${n}`), token);
    if (status === 200 && body.positions.length >= 2) return { n, token, application: body };
  }
  throw new Error("no demo application with two queues among the first 50");
}

test("landing page links the three pages", async () => {
  const page = await newPage("/?lang=en");
  for (const href of ["/parent", "/officer", "/public"]) {
    assert.equal(await page.locator(`main a[href='${href}']`).count(), 1, `the landing page links ${href}`);
  }
  await page.waitForFunction(() => /demo/.test(document.getElementById("demo-facts").textContent) && /\d/.test(document.getElementById("demo-facts").textContent));
  await shot(page, "home");
  await page.close();
});

test("(a) a parent looks up an application and sees its positions and why they moved", async () => {
  const { n, token, application } = await applicationWithQueues();
  const page = await newPage("/parent?lang=en");
  await page.fill("#number", String(n));
  await page.fill("#demo-sub", `parent-${n}`);
  await page.click("#demo-signin");
  await page.waitForSelector("#result:not([hidden])");
  await page.waitForSelector("#positions-body tr");

  assert.equal(await page.textContent("#app-title"), `Application No. ${n}`);
  // Every queue of the application, with the position and queue size the API gives.
  const rows = page.locator("#positions-body tr");
  assert.equal(await rows.count(), application.positions.length, "one row per queue");
  for (const p of application.positions) {
    const row = page.locator(`#positions-body tr[data-queue='${p.queue}']`);
    assert.equal(await row.count(), 1, `a row for queue ${p.queue}`);
    const cells = await row.locator("td").allTextContents();
    assert.match(cells[0], new RegExp(`^${p.institution}\\b`), "institution");
    assert.equal(cells[1], `age ${p.age_group}`, "age group");
    assert.equal(cells[2], String(p.intake_year), "intake year");
    assert.equal(cells[3].replace(/\D/g, ""), String(p.position), `position in ${p.queue}`);
    assert.equal(cells[4].replace(/\D/g, ""), String(p.queue_size), `size of ${p.queue}`);
    assert.ok(cells[5].length > 0, "tier");
  }
  // The timeline: one section per queue, starting with the registration.
  const explanation = (await getJson(api(`/applications/${n}/explanation`), token)).body;
  for (const q of explanation.queues) {
    const items = page.locator(`.timeline-queue[data-queue='${q.queue}'] ol.timeline li`);
    assert.equal(await items.count(), q.explanation.movements.length, `timeline of ${q.queue}`);
    assert.match(await items.first().textContent(), /joined the queue/);
    // One move per cause, and none where the position did not change (no pairs that cancel
    // out at one instant).
    for (const m of q.explanation.movements.slice(1)) {
      assert.notEqual(m.position_before, m.position_after, `a movement in ${q.queue} that changes nothing: ${JSON.stringify(m)}`);
    }
    const instants = q.explanation.movements.map((m) => `${m.at} ${m.cause} ${m.other_application}`);
    assert.equal(new Set(instants).size, instants.length, `one movement per cause and instant in ${q.queue}`);
  }
  await shot(page, "parent");

  // The same page in Russian.
  await page.click("button[data-lang='ru']");
  assert.equal(await page.textContent("h1"), "Где моё заявление?");
  assert.equal(await page.textContent("#app-title"), `Заявление № ${n}`);
  assert.equal(await page.getAttribute("html", "lang"), "ru");
  assert.equal(await rows.count(), application.positions.length);
  await shot(page, "parent-ru");
  await page.click("button[data-lang='en']");

  // Someone else's application looks like a missing one.
  await page.fill("#number", String(n + 1));
  await page.click("#show");
  await page.waitForFunction(() => document.getElementById("error").textContent.length > 0);
  assert.match(await page.textContent("#error"), /does not exist/);
  await page.close();
});

test("(b) an officer publishes seats, runs a round and sees its results; a parent accepts the offer", async () => {
  const page = await newPage("/officer?lang=en");
  const kindergartens = (await getJson(api("/institutions"))).body.institutions.filter((i) => i.kind === "kindergarten");
  // Demand per kindergarten is drawn before signing in (queues are public).
  assert.equal(await page.locator("#chart svg rect.demand").count(), kindergartens.length, "a demand bar per kindergarten");

  await page.click("#demo-signin");
  await page.waitForFunction(() => /officer-1/.test(document.getElementById("who").textContent));

  await page.click("#seats-fill");
  await page.click("#seats-publish");
  await page.waitForFunction(() => /Published seats for \d+/.test(document.getElementById("seats-status").textContent));
  assert.equal(await page.textContent("#seats-error"), "", "no error while publishing");
  assert.equal(await page.locator("#chart svg rect.seats").count(), kindergartens.length, "a seats bar per kindergarten");

  const roundId = await page.inputValue("#round-id");
  assert.ok(roundId.length > 0, "a round id is suggested");
  await page.click("#run-round");
  await page.waitForSelector("#round-results:not([hidden])");
  assert.equal(await page.textContent("#round-error"), "", "no error while running the round");
  assert.match(await page.textContent("#round-status"), /is done/);

  // The page shows what the API recorded for the round.
  const officer = await demoToken("officer", "officer-2");
  const round = (await getJson(api(`/rounds/${roundId}`), officer)).body;
  assert.ok(round.placed > 0, "the demo round places some children");
  assert.equal(await page.textContent("#results-title"), `Results of round ${round.id}`);
  assert.equal((await page.textContent("#stat-placed")).replace(/\D/g, ""), String(round.placed));
  assert.equal((await page.textContent("#stat-applicants")).replace(/\D/g, ""), String(round.applicants));
  assert.equal(await page.locator("#placements-body tr").count(), Math.min(round.placed, 500));
  assert.equal(await page.locator("#groups-body tr").count(), round.seats.length);
  const first = round.placements[0];
  const firstRow = await page.locator(`#placements-body tr[data-application='${first.application}'] td`).allTextContents();
  assert.equal(firstRow[1], first.seats);
  assert.equal(firstRow[2], "offered");
  assert.equal(await page.locator("#rounds-list li", { hasText: round.id }).count(), 1, "the round is listed");
  // No status shows as a raw translation key.
  assert.doesNotMatch(await page.textContent("#placements-body"), /placement\./);

  // After the round the chart sets the queue that is left against the seats that are left
  // (free now, as the API counts them), not against the seats the round started with; its
  // count axis has whole-number steps.
  const year = Number((await page.inputValue("#chart-kind")).replace(/^kg:/, ""));
  const free = {};
  for (const g of (await getJson(api(`/kindergarten/seats?intake_year=${year}`))).body.seats) {
    free[g.institution] = (free[g.institution] || 0) + g.free;
  }
  const waiting = {};
  for (const q of (await getJson(api("/queues"))).body.queues) {
    const d = q.description;
    if (d.service === "kindergarten" && d.intake_year === year) waiting[d.institution] = (waiting[d.institution] || 0) + q.size;
  }
  await page.waitForFunction(
    ({ free, waiting }) =>
      [...document.querySelectorAll("#chart-table-body tr")].every((tr) => {
        const label = tr.querySelector("th").textContent;
        const [demand, seats] = [...tr.querySelectorAll("td")].map((td) => td.textContent.replace(/\D/g, ""));
        return demand === String(waiting[label] || 0) && seats === String(free[label] || 0);
      }),
    { free, waiting },
  );
  assert.match(await page.textContent("#chart-source"), /free now/);
  const ticks = await page.locator("#chart svg text[text-anchor='end']").allTextContents();
  assert.ok(ticks.length >= 2, "the count axis has labels");
  for (const tick of ticks) assert.match(tick, /^\d[\d\s,\u00a0\u202f]*$/, `axis label ${tick} is a whole number`);
  await shot(page, "officer");
  await page.close();

  // The parent of a placed child sees the offer and accepts it.
  let parent = null;
  for (const p of round.placements.slice(0, 20)) {
    const token = await demoToken("parent", `parent-${p.application}`);
    if ((await getJson(api(`/applications/${p.application}`), token)).status === 200) {
      parent = { n: p.application, token };
      break;
    }
  }
  assert.ok(parent, "a demo parent of a placed child");
  const pp = await newPage("/parent?lang=en");
  await pp.fill("#number", String(parent.n));
  await pp.fill("#demo-sub", `parent-${parent.n}`);
  await pp.click("#demo-signin");
  await pp.waitForSelector("#offer:not([hidden])");
  await shot(pp, "parent-offer");
  await pp.click("#accept");
  await pp.waitForFunction(() => /accepted/.test(document.getElementById("message").textContent));
  assert.equal((await getJson(api(`/applications/${parent.n}`), parent.token)).body.status, "enrolled");
  assert.match(await pp.textContent("#app-summary"), /enrolled/);
  await pp.close();
});

test("a transferred child's first placement shows as released, in English and Russian; a round run outside the calendar shows its reason", async () => {
  const officer = await demoToken("officer", "officer-4");
  const parent = await demoToken("parent", "parent-transfer");
  const post = async (p, token, body) => {
    const response = await fetch(api(p), {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify(body ?? {}),
    });
    const answer = { status: response.status, body: await response.json().catch(() => null) };
    assert.ok(answer.status < 300, `POST ${p}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  };
  const kindergartens = (await getJson(api("/institutions"))).body.institutions.filter((i) => i.kind === "kindergarten");
  const [first, second] = [kindergartens[0].id, kindergartens[1].id];
  const year = new Date().getFullYear() + 1;
  const stamp = Date.now();
  // The child is 3 on 1 September of the intake year and holds a confirmed extraordinary
  // privilege, so that it comes first wherever a seat is added for it.
  const form = (kindergarten) => ({
    document: "II-TR 000777",
    birth_date: `${year - 3}-03-10`,
    preferences: [kindergarten],
    desired_start: `${year}-09-01`,
    privileges: [{ kind: "extraordinary" }],
  });
  const place = async (kindergarten, round, reason) => {
    const submitted = await post("/kindergarten/applications", parent, form(kindergarten));
    const n = submitted.application?.number ?? submitted.number;
    assert.ok(n, `an application number in ${JSON.stringify(submitted)}`);
    await post(`/applications/${n}/privileges/confirm`, officer, { privilege: { kind: "extraordinary" } });
    const group = (await getJson(api(`/kindergarten/seats?intake_year=${year}`))).body.seats.find(
      (g) => g.institution === kindergarten && g.age_group === 3,
    );
    await post("/kindergarten/seats", officer, {
      institution: kindergarten,
      intake_year: year,
      seats: [{ age_group: 3, seats: (group ? group.published : 0) + 2 }],
    });
    const ran = await post("/kindergarten/rounds", officer, { round, intake_year: year, calendar_override: reason });
    assert.ok(ran.round.placements.some((p) => p.application === n), `round ${round} places application ${n}`);
    await post(`/applications/${n}/offer/accept`, parent);
    return n;
  };
  const firstRound = `transfer-a-${stamp}`;
  const reason = "a transfer shown in the browser test";
  const n1 = await place(first, firstRound, reason);
  const n2 = await place(second, `transfer-b-${stamp}`, undefined);
  assert.equal((await getJson(api(`/applications/${n2}`), parent)).body.status, "enrolled");

  for (const [lang, released] of [["en", "released (transferred)"], ["ru", "место освобождено (перевод)"]]) {
    const page = await newPage(`/officer?lang=${lang}`);
    await page.click("#demo-signin");
    await page.waitForSelector(`#rounds-list li:has-text('${firstRound}')`);
    const item = page.locator("#rounds-list li", { hasText: firstRound });
    assert.match(await item.textContent(), new RegExp(reason), "the round's stated reason is listed");
    await item.locator("button").click();
    await page.waitForSelector(`#placements-body tr[data-application='${n1}']`);
    const row = await page.locator(`#placements-body tr[data-application='${n1}'] td`).allTextContents();
    assert.equal(row[2], released);
    assert.doesNotMatch(await page.textContent("#placements-body"), /placement\./);
    await shot(page, `officer-transfer-${lang}`);
    await page.close();
  }
});

test("an officer confirms a privilege a parent claimed", async () => {
  const officer = await demoToken("officer", "officer-3");
  let target = null;
  for (let n = 1; n <= 120 && !target; n++) {
    const { status, body } = await getJson(api(`/applications/${n}`), officer);
    if (status !== 200 || body.status !== "active") continue;
    const claim = body.privileges.find((c) => c.status === "claimed");
    if (claim) target = { n, claim };
  }
  assert.ok(target, "a demo application with a claimed privilege");
  const page = await newPage("/officer?lang=en");
  await page.click("#demo-signin");
  await page.waitForFunction(() => /officer-1/.test(document.getElementById("who").textContent));
  await page.fill("#priv-number", String(target.n));
  await page.click("#priv-show");
  await page.waitForSelector("#priv-table");
  assert.match(await page.textContent("#priv-table"), /claimed, awaiting confirmation/);
  await page.click("#priv-table button:has-text('Confirm')");
  await page.waitForFunction(() => /Done/.test(document.getElementById("priv-status").textContent));
  await page.waitForFunction(() => /confirmed/.test(document.getElementById("priv-table").textContent));
  const after = (await getJson(api(`/applications/${target.n}`), officer)).body;
  const same = after.privileges.find((c) => JSON.stringify(c.privilege) === JSON.stringify(target.claim.privilege));
  assert.equal(same.status, "confirmed");
  await shot(page, "officer-privileges");
  await page.close();
});

test("(c) the public page shows the anonymised queues and the chain head", async () => {
  const page = await newPage("/public?lang=en");
  const head = (await getJson(api("/audit/head"))).body;
  const queues = (await getJson(api("/queues"))).body.queues;
  await page.waitForFunction((hash) => document.getElementById("head-hash").textContent === hash, head.head_hash);
  assert.equal(await page.locator("#queues-body button[data-queue]").count(), queues.length, "a button per queue");
  const institutions = new Set(queues.map((q) => q.description.institution));
  assert.equal(await page.locator("#queues-body tr").count(), institutions.size, "a row per institution (one intake year)");

  const q = queues.reduce((a, b) => (b.size > a.size ? b : a));
  await page.click(`#queues-body button[data-queue='${q.queue}']`);
  await page.waitForSelector("#entries:not([hidden])");
  const entries = (await getJson(api(`/queues/${q.queue}?limit=50`))).body.entries;
  const rows = page.locator("#entries-body tr");
  assert.equal(await rows.count(), entries.length);
  const cells = await rows.first().locator("td").allTextContents();
  assert.equal(cells[0], "1");
  assert.equal(cells[1], String(entries[0].application));
  await shot(page, "public");
  await page.close();
});

test("no script error or blocked resource on any page", () => {
  assert.deepEqual(pageErrors, []);
});

test("the simulator's HTML report opens with its charts visible", async () => {
  // A short in-process run writes the report; the browser must show its SVG charts.
  const report = path.join(work, "report.html");
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OCHERED_")));
  execFileSync(
    BIN,
    ["simulate", "--preset", "novosibirsk-2024", "--scale", "0.1", "--duration-s", "5", "--seed", "1", "--quiet", "--html", report],
    { env, stdio: "pipe", timeout: 120_000 },
  );
  assert.ok(existsSync(report), "the report was written");
  const page = await context.newPage();
  const failed = [];
  page.on("requestfailed", (r) => failed.push(r.url()));
  await page.goto(`file://${report}`, { timeout: TIMEOUT });
  const charts = page.locator("svg");
  const count = await charts.count();
  assert.ok(count >= 4, `at least four charts (arrivals, latency, queue depth, demand), found ${count}`);
  for (let i = 0; i < count; i++) {
    const box = await charts.nth(i).boundingBox();
    assert.ok(box && box.width > 100 && box.height > 50, `chart ${i} is visible: ${JSON.stringify(box)}`);
    // A chart with data draws more than its frame.
    const marks = await charts.nth(i).locator("path, polyline, rect, line, circle").count();
    assert.ok(marks > 2, `chart ${i} draws its data (${marks} marks)`);
  }
  assert.deepEqual(failed, [], "the report loads nothing from elsewhere");
  await shot(page, "simulator-report");
  await page.close();
});

test("the demo token endpoint is closed when a secret is configured", async () => {
  const other = await startServer("secret", ["--no-demo"], { OCHERED_JWT_SECRET: "e2e-configured-secret-0123456789" });
  const response = await fetch(`${other}/demo/token?role=officer&sub=x`);
  assert.equal(response.status, 404);
  const home = await fetch(`${other}/parent`);
  assert.equal(home.status, 200, "the pages are still served");
});

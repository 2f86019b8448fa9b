// Shared setup of the browser tests of the desks (officer, demand, registrar, school): the real server on a free
// loopback port with a fresh SQLite database and the demo seeded, headless Chromium, API calls
// and demo tokens, screenshots to artifacts/e2e, and the checks every page gets (Russian
// texts visible, fits a phone, no script errors).
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
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
export const ARTIFACTS = path.join(root, "artifacts", "e2e");
const TIMEOUT = 20_000;
export const ZONE = "Europe/Moscow"; // the demo authority's time zone

/** Registers the server and browser for the test file `name`; returns its handles. */
export function harness(name) {
  const h = { base: null, browser: null, pageErrors: [] };
  const work = mkdtempSync(path.join(tmpdir(), `ochered-e2e-${name}-`));
  h.downloads = path.join(work, "downloads");
  let server = null;

  function startServer() {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OCHERED_")));
    Object.assign(env, { OCHERED_LOG: "info", NO_COLOR: "1" });
    const db = path.join(work, `${name}.db`);
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

  before(async () => {
    assert.ok(existsSync(BIN), `the server binary ${BIN} exists`);
    assert.ok(existsSync(CHROMIUM), `Chromium is installed at ${CHROMIUM}`);
    mkdirSync(ARTIFACTS, { recursive: true });
    h.base = await startServer();
    h.browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
  });

  after(async () => {
    if (h.browser) await h.browser.close().catch(() => {});
    if (server) {
      server.kill("SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 300));
      if (server.exitCode === null) server.kill("SIGKILL");
    }
    rmSync(work, { recursive: true, force: true });
  });

  /** An API call on the demo authority. */
  h.call = async (method, p, token, body) => {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${h.base}/api/v1/authorities/demo${p}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: await response.json().catch(() => null) };
  };

  h.demoToken = async (role, sub) => {
    const response = await fetch(`${h.base}/demo/token?role=${role}&sub=${encodeURIComponent(sub)}`);
    assert.equal(response.status, 200);
    return (await response.json()).token;
  };

  /** A page at `url`, ready (its script set body[data-ready]). */
  h.newPage = async (url, viewport = { width: 1280, height: 900 }) => {
    const context = await h.browser.newContext({ viewport, locale: "en-GB", timezoneId: "Asia/Vladivostok", acceptDownloads: true });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on("pageerror", (e) => h.pageErrors.push(`${url}: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) h.pageErrors.push(`${url}: ${m.text()}`);
    });
    await page.goto(`${h.base}${url}`);
    await page.waitForSelector("body[data-ready='true']");
    return page;
  };

  /** Signs a page in with the demo button as `sub`, waiting until it says so. */
  h.signIn = async (page, sub) => {
    await page.fill("#demo-sub", sub);
    await page.click("#demo-signin");
    await page.waitForFunction((s) => document.getElementById("who").textContent.includes(s), sub);
  };

  return h;
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Visible text of a selector (asserting it is visible). */
export async function visibleText(page, selector) {
  const node = page.locator(selector).first();
  assert.ok(await node.isVisible(), `${selector} is visible`);
  return (await node.textContent()).trim();
}

/** Switches to Russian, checks the page's key texts, takes the screenshot, switches back. */
export async function inRussian(page, name, checks) {
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
export async function fitsWidth(page) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert.ok(scroll <= width + 1, `the page is ${scroll}px wide on a ${width}px screen`);
}

/** The page's error box, for failure messages. */
export async function errorText(page) {
  return (await page.locator("#error").textContent()).trim();
}

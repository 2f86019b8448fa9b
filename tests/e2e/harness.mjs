// What a browser test of the pages needs: the real server on a free loopback port over a fresh
// SQLite database with the demo seeded, headless Chromium (the system's /usr/bin/chromium via
// playwright-core), the API and demo tokens, pages that record script errors, screenshots to
// artifacts/e2e and checks of visible text. Used by demand.test.mjs; the older tests still
// carry their own copy.

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
export const BIN = process.env.OCHERED_BIN || path.join(targetDir, "debug", "ochered");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const ARTIFACTS = path.join(root, "artifacts", "e2e");
export const TIMEOUT = 20_000;

/** A started server and browser; `stop()` ends both and removes the database. */
export class Harness {
  constructor(name) {
    this.name = name;
    this.work = mkdtempSync(path.join(tmpdir(), `ochered-e2e-${name}-`));
    this.server = null;
    this.base = null;
    this.browser = null;
    /** Script errors of every page opened, checked by the tests. */
    this.pageErrors = [];
  }

  async start() {
    assert.ok(existsSync(BIN), `the server binary ${BIN} exists`);
    assert.ok(existsSync(CHROMIUM), `Chromium is installed at ${CHROMIUM}`);
    mkdirSync(ARTIFACTS, { recursive: true });
    this.base = await this.startServer();
    this.browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
  }

  startServer() {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OCHERED_")));
    Object.assign(env, { OCHERED_LOG: "info", NO_COLOR: "1" });
    const db = path.join(this.work, `${this.name}.db`);
    this.server = spawn(BIN, ["serve", "--database-url", `sqlite://${db}`, "--listen", "127.0.0.1:0"], {
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
      this.server.stdout.on("data", onData);
      this.server.stderr.on("data", onData);
      this.server.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the server exited with ${code}:\n${log}`));
      });
    });
  }

  async stop() {
    if (this.browser) await this.browser.close().catch(() => {});
    if (this.server) {
      this.server.kill("SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 300));
      if (this.server.exitCode === null) this.server.kill("SIGKILL");
    }
    rmSync(this.work, { recursive: true, force: true });
  }

  /** Calls the demo authority's API: `{status, body}`. */
  async call(method, p, token, body) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${this.base}/api/v1/authorities/demo${p}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: await response.json().catch(() => null) };
  }

  async demoToken(role, sub) {
    const response = await fetch(`${this.base}/demo/token?role=${role}&sub=${encodeURIComponent(sub)}`);
    assert.equal(response.status, 200);
    return (await response.json()).token;
  }

  /** A page at `url`, once its script says it is ready; downloads allowed. */
  async newPage(url, viewport = { width: 1280, height: 900 }) {
    const context = await this.browser.newContext({ viewport, locale: "en-GB", acceptDownloads: true });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on("pageerror", (e) => this.pageErrors.push(`${url}: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) this.pageErrors.push(`${url}: ${m.text()}`);
    });
    await page.goto(`${this.base}${url}`);
    await page.waitForSelector("body[data-ready='true']");
    return page;
  }
}

/** A screenshot of the page, or of one of its elements, to artifacts/e2e/{name}.png. */
export async function shot(page, name, selector = null) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  if (selector) await page.locator(selector).screenshot({ path: file });
  else await page.screenshot({ path: file, fullPage: true });
}

/** The visible text of a selector (asserting it is visible). */
export async function visibleText(page, selector) {
  const node = page.locator(selector).first();
  assert.ok(await node.isVisible(), `${selector} is visible`);
  return (await node.textContent()).trim();
}

/** Switches the page's language with its RU/EN buttons. */
export async function setLanguage(page, lang) {
  await page.click(`button[data-lang='${lang}']`);
  assert.equal(await page.getAttribute("html", "lang"), lang);
}

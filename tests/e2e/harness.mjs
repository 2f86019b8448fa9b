// What a browser test needs: the server started on a free loopback port with a fresh SQLite
// database (the demo seeded), the API called directly for setup and checks, Chromium pages,
// screenshots to artifacts/e2e. Used by officer.test.mjs.
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

/** A running server and browser for one test file; `close()` stops both. */
export async function startHarness(name) {
  assert.ok(existsSync(BIN), `the server binary ${BIN} exists (cargo build --bin ochered)`);
  assert.ok(existsSync(CHROMIUM), `Chromium is installed at ${CHROMIUM}`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const work = mkdtempSync(path.join(tmpdir(), `ochered-e2e-${name}-`));
  // Only the flags configure the server: no OCHERED_* variable of the caller leaks in.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OCHERED_")));
  Object.assign(env, { OCHERED_LOG: "info", NO_COLOR: "1" });
  const server = spawn(BIN, ["serve", "--database-url", `sqlite://${path.join(work, `${name}.db`)}`, "--listen", "127.0.0.1:0"], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const base = await new Promise((resolve, reject) => {
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
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const pageErrors = [];

  return {
    base,
    pageErrors,
    downloads: path.join(work, "downloads"),

    /** Calls the demo authority's API: `{ status, body }`. */
    async call(method, p, token, body) {
      const headers = {};
      if (token) headers.Authorization = `Bearer ${token}`;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(`${base}/api/v1/authorities/demo${p}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.status, body: await response.json().catch(() => null) };
    },

    async demoToken(role, sub) {
      const response = await fetch(`${base}/demo/token?role=${role}&sub=${encodeURIComponent(sub)}`);
      assert.equal(response.status, 200);
      return (await response.json()).token;
    },

    /** A page of its own context, loaded and ready; page errors are collected. */
    async newPage(url, viewport = { width: 1280, height: 900 }) {
      const context = await browser.newContext({ viewport, locale: "en-GB", timezoneId: "Asia/Vladivostok", acceptDownloads: true });
      const page = await context.newPage();
      page.setDefaultTimeout(TIMEOUT);
      page.on("pageerror", (e) => pageErrors.push(`${url}: ${e.message}`));
      page.on("console", (m) => {
        if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`${url}: ${m.text()}`);
      });
      await page.goto(`${base}${url}`);
      await page.waitForSelector("body[data-ready='true']");
      return page;
    },

    async close() {
      await browser.close().catch(() => {});
      server.kill("SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 300));
      if (server.exitCode === null) server.kill("SIGKILL");
      rmSync(work, { recursive: true, force: true });
    },
  };
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The visible text of a selector (asserting it is visible). */
export async function visibleText(page, selector) {
  const node = page.locator(selector).first();
  assert.ok(await node.isVisible(), `${selector} is visible`);
  return (await node.textContent()).trim();
}

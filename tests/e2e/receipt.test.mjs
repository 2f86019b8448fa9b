// Browser test of the receipt on the printable confirmation: a parent's application, its
// confirmation page shows the server's signed receipt as a QR code and offers it as a file;
// the file downloaded by the browser is the receipt the submission answered with, and the
// `ochered verify-receipt` command verifies it offline with the inclusion proof that the server
// gives once a signed tree head covers the application (docs/TRANSPARENCY.md).
//
// Run: bash tests/e2e/run.sh (the real server on a free loopback port with a fresh SQLite
// database, the demo seeded and a tree head signed every second; headless Chromium at
// /usr/bin/chromium via playwright-core).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync, readFileSync, writeFileSync } from "node:fs";
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

const work = mkdtempSync(path.join(tmpdir(), "ochered-e2e-receipt-"));
let server = null;
let base = null;
let browser = null;
const pageErrors = [];

function startServer() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OCHERED_")));
  Object.assign(env, { OCHERED_LOG: "info", NO_COLOR: "1", OCHERED_TREE_HEAD_INTERVAL_S: "1" });
  const db = path.join(work, "receipt.db");
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

async function demoToken(role, sub) {
  const response = await fetch(`${base}/demo/token?role=${role}&sub=${encodeURIComponent(sub)}`);
  assert.equal(response.status, 200);
  return (await response.json()).token;
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

test("the confirmation page's receipt downloads and the command verifies it with its proof", async () => {
  const sub = "parent-e2e-receipt";
  const token = await demoToken("parent", sub);
  const body = { document: "II-АБ 555666", birth_date: "2024-02-01", preferences: ["K001"], desired_start: "2027-09-01" };
  const submitted = await fetch(`${base}/api/v1/authorities/demo/kindergarten/applications`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(submitted.status, 201);
  const answer = await submitted.json();
  const number = answer.application.number;
  assert.equal(answer.receipt.format, "ochered-receipt-v2");

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-GB", acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${base}/parent/confirmation?lang=en&authority=demo&number=${number}`);
  await page.waitForSelector("body[data-ready='true']");
  await page.fill("#demo-sub", sub);
  await page.click("#demo-signin");
  await page.waitForSelector("#c-receipt:not([hidden])");
  // The QR code is drawn (an SVG image from the server) and is printed.
  await page.waitForFunction(() => document.getElementById("c-qr").naturalWidth > 0);
  assert.match(await page.locator("#c-receipt-text").textContent(), new RegExp(answer.receipt.event_hash));
  await page.emulateMedia({ media: "print" });
  assert.ok(await page.locator("#c-qr").isVisible(), "the QR code is printed");
  assert.ok(await page.locator("#download-receipt").isHidden(), "the button is not printed");
  await page.emulateMedia({ media: "screen" });
  await page.screenshot({ path: path.join(ARTIFACTS, "parent-confirmation-receipt.png"), fullPage: true });

  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-receipt")]);
  assert.equal(download.suggestedFilename(), `receipt-demo-${number}.json`);
  const receiptFile = path.join(work, "receipt.json");
  await download.saveAs(receiptFile);
  // The file states what the submission's receipt stated (each is signed in its own batch).
  const statement = ({ batch, signature, ...rest }) => rest;
  const downloaded = JSON.parse(readFileSync(receiptFile, "utf8"));
  assert.ok(downloaded.batch && downloaded.signature, "the file is a signed v2 receipt");
  assert.deepEqual(statement(downloaded), statement(answer.receipt), "the file states what the submission's receipt stated");
  await context.close();

  // The inclusion proof, once a signed head covers the application (one every second here).
  let proof = null;
  for (let i = 0; i < 100 && !proof; i++) {
    const response = await fetch(`${base}/api/v1/authorities/demo/applications/${number}/proof`);
    if (response.status === 200) proof = await response.text();
    else {
      assert.equal(response.status, 409, "not yet covered, or the proof");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  assert.ok(proof, "a signed head covered the application");
  const proofFile = path.join(work, "proof.json");
  writeFileSync(proofFile, proof);
  const keyFile = path.join(work, "server.pub");
  writeFileSync(keyFile, await (await fetch(`${base}/.well-known/ochered/public-key`)).text());

  const verified = spawnSync(BIN, ["verify-receipt", "--receipt", receiptFile, "--proof", proofFile, "--public-key", keyFile], { encoding: "utf8" });
  assert.equal(verified.status, 0, verified.stdout + verified.stderr);
  assert.match(verified.stdout, new RegExp(`receipt ok: kindergarten application ${number} of demo`));
  assert.match(verified.stdout, /inclusion ok/);

  // A changed byte of the downloaded file fails.
  const changed = JSON.parse(readFileSync(receiptFile, "utf8"));
  changed.number += 1;
  const changedFile = path.join(work, "changed.json");
  writeFileSync(changedFile, JSON.stringify(changed));
  const refused = spawnSync(BIN, ["verify-receipt", "--receipt", changedFile, "--proof", proofFile, "--public-key", keyFile], { encoding: "utf8" });
  assert.equal(refused.status, 1, refused.stdout + refused.stderr);
  assert.match(refused.stdout, /NOT VERIFIED/);
  assert.deepEqual(pageErrors, []);
});

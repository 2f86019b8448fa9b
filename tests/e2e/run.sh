#!/usr/bin/env bash
# Browser test of the web pages: builds the server, installs playwright-core (no browser is
# downloaded; the system's /usr/bin/chromium is used) and runs pages.test.mjs and
# parent.test.mjs (the parent's journey), patient.test.mjs (the patient's clinic journey) and
# receipt.test.mjs (the confirmation's receipt, downloaded and verified by the command),
# registrar.test.mjs (the registrar's desk with patients booking, waiting and leaving),
# school.test.mjs (an officer's stage 1 enrollment and its printed order) and
# officer.test.mjs (the officer's desk: search, worklist, round preview, run and export) and
# demand.test.mjs (the officer's demand report by district) with node's test runner, with chart.test.mjs (the
# chart's axis, without a browser). Screenshots: artifacts/e2e/*.png. Needs node >= 20 and the Debian package chromium.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
(cd "$root" && cargo build --bin ochered)
cd "$here"
if [ ! -f node_modules/playwright-core/package.json ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi
OCHERED_BIN="$target/debug/ochered" node --test --test-concurrency=1 chart.test.mjs pages.test.mjs parent.test.mjs patient.test.mjs receipt.test.mjs registrar.test.mjs school.test.mjs officer.test.mjs demand.test.mjs

// The officer chart's count axis, without a browser: whole-number steps whatever the counts.
//
// Run: node --test tests/e2e/chart.test.mjs   (run.sh runs it with the browser test)

import { test } from "node:test";
import assert from "node:assert/strict";

// The page modules read the language from the address and the browser at load.
globalThis.location ??= { search: "" };
globalThis.navigator ??= { languages: ["en"] };
const { niceScale } = await import("../../api/pages/chart.js");

test("the count axis steps by whole numbers and covers the largest count", () => {
  for (let max = 0; max <= 2000; max++) {
    const { top, step } = niceScale(max);
    assert.ok(Number.isInteger(step) && step >= 1, `step ${step} for counts up to ${max}`);
    assert.ok(Number.isInteger(top) && top >= max, `top ${top} for counts up to ${max}`);
    assert.ok(top / step <= 10, `at most 10 steps for ${max}: ${top}/${step}`);
  }
});

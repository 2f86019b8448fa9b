// Browser test of the registrar's desk with the patient's page: the registrar publishes a
// doctor's day through the page (and sees an overlapping day refused, the field named); a
// patient books one slot through the patient page, the registrar books the other for a patient
// named by their document (which no parent's account is shown, not even one that knows the
// document); a third patient joins the waiting list; the first cancels; the registrar's page
// and the waiting patient's page show the slot held for the list's first patient and until
// when; the waiting patient leaves the list through the page and the hold goes with them; the
// registrar puts a patient on the list at a priority tier (which a parent's account that knows
// the document does not see) and takes them off again; a no-show is recorded once a slot has
// started. Checked in English and in Russian and on a phone's width; screenshots go to
// artifacts/e2e/registrar-*.png.
//
// Run: bash tests/e2e/run.sh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { harness, shot, visibleText, inRussian, fitsWidth, errorText, ZONE } from "./harness.mjs";

const h = harness("registrar");
const SPECIALTY = "neurology"; // not among the demo's specialties: only this test's slots
const DOCTOR = "dr-e2e-sidorova";

const localDay = (ms) => new Date(ms).toLocaleDateString("sv-SE", { timeZone: ZONE });
const longTime = (iso) => new Date(iso).toLocaleString("en-GB", { timeZone: ZONE, dateStyle: "long", timeStyle: "short" });

async function registrarPage(day, viewport) {
  const page = await h.newPage(`/registrar?day=${day}`, viewport);
  await h.signIn(page, "registrar-e2e");
  await page.waitForSelector("#pub-specialty option[value='neurology']", { state: "attached" });
  return page;
}

async function patientPage(sub, documentNumber) {
  const page = await h.newPage(`/patient?specialty=${SPECIALTY}`);
  await h.signIn(page, sub);
  await page.fill("#document", documentNumber);
  const places = page.waitForResponse((r) => r.url().endsWith("/waiting-list/places"));
  await page.click("#show");
  assert.equal((await places).status(), 200);
  return page;
}

/** Asserts that the patient page `page` shows no booking and no place on a waiting list. */
async function seesNothing(page) {
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  assert.equal(await page.locator("#bookings-body tr").count(), 0, "no booking");
  assert.ok(await page.locator("#bookings-none").isVisible());
  assert.equal(await page.locator("#places li").count(), 0, "no place");
  assert.ok(await page.locator("#waiting-none").isVisible());
}

/** Waits until the schedule's row of `slot` is in `state`. */
async function slotState(page, slot, state) {
  await page.click("#show");
  try {
    await page.waitForSelector(`#doctors tr[data-slot='${slot}'][data-state='${state}']`);
  } catch (e) {
    throw new Error(`slot ${slot} is not ${state}: ${await page.locator("#doctors").textContent()}; error: ${await errorText(page)}`);
  }
}

test("a registrar publishes a day; patients book, cancel, wait, are held a slot and leave the list", async () => {
  const registrar = await h.demoToken("registrar", "registrar-e2e");
  const configured = await h.call("POST", "/specialties", registrar, { specialty: SPECIALTY, referral_only: false });
  assert.equal(configured.status, 201, JSON.stringify(configured.body));
  const day = localDay(Date.now() + 3 * 86_400_000);
  const compact = day.replaceAll("-", "");
  const first = `${DOCTOR}-${compact}-0900`;
  const second = `${DOCTOR}-${compact}-0930`;

  // 1. The registrar publishes 09:00-10:00 in 30-minute slots (Moscow time).
  const r = await registrarPage(day);
  assert.equal(await r.locator(`#doctors [data-doctor='${DOCTOR}']`).count(), 0, "the doctor has nothing that day yet");
  await r.fill("#pub-doctor", DOCTOR);
  await r.selectOption("#pub-specialty", SPECIALTY);
  await r.fill("#pub-from", "09:00");
  await r.fill("#pub-to", "10:00");
  await r.fill("#pub-duration", "30");
  await r.click("#publish");
  await r.waitForSelector(`#doctors tr[data-slot='${second}']`);
  assert.match(await visibleText(r, "#message"), new RegExp(`2 slots of ${DOCTOR} are published`));
  const firstRow = await r.locator(`#doctors tr[data-slot='${first}'] td`).allTextContents();
  const start = await r.locator(`#doctors tr[data-slot='${first}'] time`).getAttribute("datetime");
  assert.equal(longTime(start).slice(-5), "09:00", "09:00 in the authority's zone");
  assert.match(firstRow[0], new RegExp(`^${longTime(start)} \\(${ZONE}\\)`));
  assert.equal(firstRow[3], "free");
  assert.match(await visibleText(r, `#doctors [data-doctor='${DOCTOR}'] caption`), new RegExp(DOCTOR));

  // An overlapping day of the same doctor is refused; the error names the field.
  await r.fill("#pub-from", "09:15");
  await r.fill("#pub-to", "09:45");
  await r.click("#publish");
  await r.waitForFunction(() => document.getElementById("publish-error").textContent.length > 0);
  const refusal = await visibleText(r, "#publish-error");
  assert.match(refusal, /overlaps/, refusal);
  assert.match(refusal, /field: slots/, refusal);
  assert.equal(await r.locator(`#doctors [data-doctor='${DOCTOR}'] tbody tr`).count(), 2, "still two slots");

  // 2. Patient A books the first slot through the patient page.
  const a = await patientPage("patient-e2e-a", "PAT 800001");
  await a.waitForSelector(`#free-body button[data-book='${first}']`);
  await a.click(`#free-body button[data-book='${first}']`);
  await a.waitForSelector("#bookings-body tr button[data-cancel]");

  // 3. The registrar books the second for patient C, named by their document.
  await r.click("#show");
  await r.waitForSelector(`#book-slot option[value='${second}']`, { state: "attached" });
  await r.click(`#doctors button[data-choose='${second}']`);
  assert.equal(await r.inputValue("#book-slot"), second);
  await r.fill("#book-document", "PAT 800003");
  await r.click("#book");
  await r.waitForSelector(`#doctors tr[data-slot='${second}'][data-state='booked']`);
  assert.match(await visibleText(r, "#message"), new RegExp(`Slot ${second} is booked for the patient`));
  assert.match(await visibleText(r, `#doctors tr[data-slot='${second}'] td:nth-child(5)`), /by registrar-e2e/);
  assert.match(await visibleText(r, `#doctors tr[data-slot='${first}'] td:nth-child(5)`), /#[0-9a-f]{10}.*by patient-e2e-a/);
  // A parent's account that knows C's document is not shown the booking the registry made:
  // knowing a document proves nothing.
  await seesNothing(await patientPage("patient-e2e-c", "PAT 800003"));

  // 4. Patient B finds nothing free and joins the waiting list.
  const b = await patientPage("patient-e2e-b", "PAT 800002");
  assert.ok(await b.locator("#free-none").isVisible());
  await b.click("#join");
  await b.waitForSelector(`#places li[data-place='${SPECIALTY}']`);

  // 5. A cancels; the registrar sees the slot held for B (the list's first) and until when.
  await a.click("#bookings-body button[data-cancel]");
  await a.waitForFunction(() => /cancelled/.test(document.querySelector("#bookings-body tr td:nth-child(5)").textContent));
  await slotState(r, first, "held");
  const list = r.locator(`#lists-body [data-specialty='${SPECIALTY}']`);
  assert.match(await list.locator("li[data-entry='1']").textContent(), /#[0-9a-f]{10} tier 3, joined/);
  const holdRow = list.locator(`li[data-hold='${first}']`);
  assert.match(await holdRow.textContent(), new RegExp(`Slot ${first} with ${DOCTOR}.*held for #[0-9a-f]{10}.*held until`));
  const until = await holdRow.locator("time.until").getAttribute("datetime");
  const untilMs = new Date(until).getTime();
  assert.ok(untilMs > Date.now() + 100 * 60_000 && untilMs <= Date.now() + 121 * 60_000, `held for 120 minutes: ${until}`);
  const holder = await list.locator("li[data-entry='1'] code").getAttribute("title");
  assert.equal(await holdRow.locator("code").getAttribute("title"), holder, "held for the list's first patient");
  assert.equal(await r.locator(`#doctors tr[data-slot='${first}'] time.until`).getAttribute("datetime"), until);
  await fitsWidth(r);
  await shot(r, "registrar-day");
  await inRussian(r, "registrar-day", [
    ["h1", /Регистратура/],
    ["#publish-h", /Опубликовать день врача/],
    [`#doctors tr[data-slot='${first}'] td:nth-child(4)`, /придержан/],
    [`#doctors tr[data-slot='${second}'] td:nth-child(4)`, /занят/],
    ["#lists-h", /Листы ожидания/],
    ["#join-h", /Поставить пациента в лист ожидания/],
    [`#lists-body li[data-hold='${first}']`, /придержан для/],
  ]);
  // And B's page shows the hold.
  await b.click("#show");
  await b.waitForSelector(`#holds-list li[data-hold='${first}']`);

  // 6. B leaves the waiting list through the page: the place and the hold are gone, the slot
  // is free again for everyone.
  await b.click(`#places button[data-leave='${SPECIALTY}']`);
  await b.waitForFunction(() => document.querySelectorAll("#places li").length === 0);
  assert.match(await visibleText(b, "#message"), new RegExp(`You left the waiting list of ${SPECIALTY}`));
  assert.ok(await b.locator("#waiting-none").isVisible());
  assert.ok(await b.locator("#holds").isHidden());
  await b.waitForSelector(`#free-body tr[data-slot='${first}']`);
  await shot(b, "patient-left");
  await inRussian(b, "patient-left", [
    ["#message", /Вы вышли из листа ожидания/],
    ["#waiting-none", /не стоит в листе ожидания/],
  ]);
  await slotState(r, first, "free");
  assert.ok(await r.locator("#lists-none").isVisible(), "nobody waits");

  // 7. The registrar puts patient D on the list at tier 1 through the page; a parent's account
  // that knows D's document does not see the entry (the registry made it); the registrar
  // takes D off again.
  await r.fill("#join-document", "PAT 800005");
  await r.selectOption("#join-specialty", SPECIALTY);
  await r.selectOption("#join-tier", "1");
  await r.click("#join");
  await r.waitForSelector(`#lists-body [data-specialty='${SPECIALTY}'] li[data-entry='1']`);
  assert.match(await visibleText(r, "#message"), new RegExp(`on the waiting list of ${SPECIALTY} \\(tier 1\\)`));
  const entry = r.locator(`#lists-body [data-specialty='${SPECIALTY}'] li[data-entry='1']`);
  assert.match(await entry.textContent(), /#[0-9a-f]{10} tier 1, joined/);
  await seesNothing(await patientPage("patient-e2e-d", "PAT 800005"));
  const lists = await h.call("GET", "/clinic/waiting-lists", registrar);
  const listed = lists.body.specialties.find((x) => x.specialty === SPECIALTY).waiting;
  assert.equal(listed.length, 1);
  assert.equal(listed[0].tier, 1);
  await entry.locator("button[data-remove]").click();
  await r.waitForSelector("#lists-none", { state: "visible" });
  assert.match(await visibleText(r, "#message"), new RegExp(`off the waiting list of ${SPECIALTY}`));
  // A refusal shows on the form: a bad document names the field.
  await r.fill("#join-document", "?");
  await r.click("#join");
  await r.waitForFunction(() => document.getElementById("join-error").textContent.length > 0);
  assert.match(await visibleText(r, "#join-error"), /field: document/);

  // 8. A no-show, once a slot has started: a slot starting in a few seconds, booked by C.
  const soon = new Date(Date.now() + 4_000);
  soon.setUTCMilliseconds(0);
  const quick = `${DOCTOR}-soon`;
  const published = await h.call("POST", "/slots", registrar, {
    doctor: DOCTOR, specialty: SPECIALTY, slots: [{ id: quick, start: soon.toISOString().replace(".000Z", "Z"), duration_minutes: 5 }],
  });
  assert.equal(published.status, 201, JSON.stringify(published.body));
  const bookedSoon = await h.call("POST", "/bookings", registrar, { slot: quick, document: "PAT 800004" });
  assert.equal(bookedSoon.status, 201, JSON.stringify(bookedSoon.body));
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, soon.getTime() - Date.now()) + 1_000));
  const today = await registrarPage(localDay(soon.getTime()), { width: 390, height: 844 });
  await today.waitForSelector(`#doctors tr[data-slot='${quick}'] button[data-no-show]`);
  await today.click(`#doctors tr[data-slot='${quick}'] button[data-no-show]`);
  await today.waitForFunction((id) => /no-show/.test(document.querySelector(`#doctors tr[data-slot='${id}'] td:nth-child(4)`).textContent), quick);
  assert.match(await visibleText(today, "#message"), /A no-show is recorded/);
  await fitsWidth(today);
  await shot(today, "registrar-phone");
  // The landing page leads here.
  const home = await h.newPage("/");
  assert.equal(await home.locator("main a[href='/registrar']").count(), 1, "the landing page links /registrar");
  assert.deepEqual(h.pageErrors, [], "no script errors");
});

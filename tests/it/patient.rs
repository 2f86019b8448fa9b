//! What the patient's clinic page reads: a booking's time and doctor in `GET /bookings`, and
//! a patient's places on the waiting lists with the slots held for them.

use ochered_api::http::auth::Role;
use serde_json::json;

use crate::helpers::{spawn_app, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_carry_time_and_doctor_and_a_waiting_patient_sees_the_hold() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let registrar = token(Role::Registrar, "registrar-1");
    let a = token(Role::Parent, "parent-a");
    let b = token(Role::Parent, "parent-b");
    let slots = app.get(None, "/slots?specialty=therapist").await;
    let t1 = slots.body["free_slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "T1")
        .cloned()
        .expect("T1 is free");

    let booked = app
        .post(
            &a,
            "/bookings",
            json!({"slot": "T1", "document": "PAT 000011"}),
        )
        .await;
    assert_eq!(booked.status, 201, "{}", booked.body);
    let mine = app.get(Some(&a), "/bookings").await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let booking = &mine.body["bookings"][0];
    assert_eq!(booking["slot"], "T1");
    assert_eq!(booking["doctor"], "dr-a");
    assert_eq!(booking["start"], t1["start"]);
    assert_eq!(booking["duration_minutes"], 30);
    assert_eq!(booking["status"], "active");

    // B is on no list yet; then joins and is first of one.
    let places = |who: &str, document: &str| {
        let who = who.to_owned();
        let body = json!({ "document": document });
        let app = &app;
        async move { app.post(&who, "/waiting-list/places", body).await }
    };
    let none = places(&b, "PAT 000012").await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(
        none.body,
        json!({"places": [], "holds": [], "booked_for_you": []})
    );
    let joined = app
        .post(
            &b,
            "/waiting-list",
            json!({"specialty": "therapist", "document": "PAT 000012"}),
        )
        .await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    let waiting = places(&b, "PAT 000012").await;
    assert_eq!(waiting.body["places"][0]["specialty"], "therapist");
    assert_eq!(waiting.body["places"][0]["position"], 1);
    assert_eq!(waiting.body["places"][0]["waiting"], 1);
    assert_eq!(waiting.body["holds"], json!([]));

    // A cancels: T1 is held for B, with its doctor, start and the end of the hold.
    let cancelled = app.post(&a, "/bookings/1/cancel", json!({})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let held = places(&b, "PAT 000012").await;
    let hold = &held.body["holds"][0];
    assert_eq!(hold["slot"], "T1", "{}", held.body);
    assert_eq!(hold["doctor"], "dr-a");
    assert_eq!(hold["start"], t1["start"]);
    let until: chrono::DateTime<chrono::Utc> = hold["until"].as_str().unwrap().parse().unwrap();
    assert!(until > chrono::Utc::now(), "the hold runs: {until}");
    // Nobody else sees a hold for that document; a registrar may look too.
    let other = places(&a, "PAT 000011").await;
    assert_eq!(other.body["holds"], json!([]), "{}", other.body);
    let by_registrar = places(&registrar, "PAT 000012").await;
    assert_eq!(by_registrar.body["holds"][0]["slot"], "T1");
    // A cancelled booking keeps its time and doctor.
    let mine = app.get(Some(&a), "/bookings").await;
    assert_eq!(mine.body["bookings"][0]["status"], "cancelled");
    assert_eq!(mine.body["bookings"][0]["doctor"], "dr-a");

    // Bad input: a malformed document names the field; an unknown field is refused.
    let bad = places(&b, "?").await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.field(), Some("document"));
    let unknown = app
        .post(
            &b,
            "/waiting-list/places",
            json!({"document": "PAT 000012", "x": 1}),
        )
        .await;
    assert!(
        unknown.status == 400 || unknown.status == 422,
        "{}",
        unknown.body
    );
    app.stop().await;
}

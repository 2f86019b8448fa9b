//! The registrar's desk and the officer's school campaign (issue #15): a day's schedule per
//! doctor, the waiting lists with their holds, a booking a registrar makes for a patient (and
//! the patient seeing it), a patient leaving a waiting list, and a campaign's calendar and
//! enrollment order per school. Each endpoint: the happy path, 403 for other roles, and 4xx
//! problem+json naming the field.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use ochered_api::http::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, token, Answer, TestApp};

/// The test authority's zone (Asia/Novosibirsk) has kept UTC+7 all year since 2014.
fn local_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&FixedOffset::east_opt(7 * 3600).unwrap())
        .date_naive()
}

fn at(value: &Value) -> DateTime<Utc> {
    value.as_str().expect("a time").parse().expect("RFC 3339")
}

/// Asserts a 4xx problem+json naming `field`.
fn refused(answer: &Answer, status: u16, field: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.field(), Some(field), "{}", answer.body);
}

/// Asserts that only the allowed roles get past authorisation on `GET path`.
async fn only_for(app: &TestApp, path: &str, allowed: &[Role]) {
    for role in [
        Role::Parent,
        Role::Officer,
        Role::Registrar,
        Role::Auditor,
        Role::Admin,
    ] {
        let answer = app.get(Some(&token(role, "someone")), path).await;
        if allowed.contains(&role) || role == Role::Admin {
            assert_eq!(
                answer.status,
                200,
                "{path} as {}: {}",
                role.as_str(),
                answer.body
            );
        } else {
            assert_eq!(
                answer.status,
                403,
                "{path} as {}: {}",
                role.as_str(),
                answer.body
            );
        }
    }
    assert_eq!(
        app.get(None, path).await.status,
        401,
        "{path} without a token"
    );
}

/// The slot `id` of `schedule`, with its doctor.
fn slot<'a>(schedule: &'a Value, id: &str) -> &'a Value {
    schedule["doctors"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["slots"].as_array().unwrap())
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("slot {id} in {schedule}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registrar_sees_the_day_books_a_patient_and_follows_the_waiting_list() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let registrar = token(Role::Registrar, "registrar-1");
    let patient = token(Role::Parent, "patient-p");
    let waiting = token(Role::Parent, "patient-q");
    let free = app.get(None, "/slots?specialty=therapist").await;
    let t0 = free.body["free_slots"][0].clone();
    assert_eq!(t0["id"], "T0", "{}", free.body);
    let day = local_date(at(&t0["start"]));
    let schedule_path = format!("/clinic/schedule?date={day}");

    // The day: one doctor, four free slots earliest first, in the authority's zone.
    let schedule = app.get(Some(&registrar), &schedule_path).await;
    assert_eq!(schedule.status, 200, "{}", schedule.body);
    assert_eq!(schedule.body["date"], day.to_string());
    assert_eq!(schedule.body["time_zone"], "Asia/Novosibirsk");
    assert_eq!(schedule.body["doctors"][0]["doctor"], "dr-a");
    let ids: Vec<&str> = schedule.body["doctors"][0]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["T0", "T1", "T2", "T3"]);
    assert_eq!(slot(&schedule.body, "T0")["state"], "free");
    let other_doctor = app
        .get(Some(&registrar), &format!("{schedule_path}&doctor=dr-b"))
        .await;
    assert_eq!(other_doctor.body["doctors"], json!([]));
    let next_day = day.succ_opt().unwrap();
    let empty = app
        .get(
            Some(&registrar),
            &format!("/clinic/schedule?date={next_day}"),
        )
        .await;
    assert_eq!(empty.body["doctors"], json!([]), "{}", empty.body);

    // A registrar books T0 for a patient named by their document: the booking records the
    // patient's key and the registrar's account; the patient sees it on their places.
    let booked = app
        .post(
            &registrar,
            "/bookings",
            json!({"slot": "T0", "document": "PAT 000021"}),
        )
        .await;
    assert_eq!(booked.status, 201, "{}", booked.body);
    let schedule = app.get(Some(&registrar), &schedule_path).await;
    let t0_booked = slot(&schedule.body, "T0");
    assert_eq!(t0_booked["state"], "booked");
    assert_eq!(t0_booked["booking"]["number"], 1);
    assert_eq!(t0_booked["booking"]["status"], "active");
    assert_eq!(t0_booked["booking"]["booked_by"], "registrar-1");
    let patient_ref = t0_booked["booking"]["patient"].as_str().unwrap().to_owned();
    assert_eq!(patient_ref.len(), 64, "a pseudonymous reference");
    assert!(!patient_ref.contains("PAT"), "never the document");
    let places = app
        .post(
            &patient,
            "/waiting-list/places",
            json!({"document": "PAT 000021"}),
        )
        .await;
    assert_eq!(places.status, 200, "{}", places.body);
    assert_eq!(places.body["booked_for_you"][0]["number"], 1);
    assert_eq!(places.body["booked_for_you"][0]["slot"], "T0");
    assert_eq!(places.body["booked_for_you"][0]["doctor"], "dr-a");
    let own = app.get(Some(&patient), "/bookings").await;
    assert_eq!(
        own.body["bookings"],
        json!([]),
        "the patient did not book it"
    );

    // Another patient waits; the registrar cancels T0: the waiting list and the schedule
    // show the hold for them and when it ends.
    let joined = app
        .post(
            &waiting,
            "/waiting-list",
            json!({"specialty": "therapist", "document": "PAT 000022"}),
        )
        .await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    let cancelled = app.post(&registrar, "/bookings/1/cancel", json!({})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let lists = app.get(Some(&registrar), "/clinic/waiting-lists").await;
    assert_eq!(lists.status, 200, "{}", lists.body);
    let therapist = &lists.body["specialties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["specialty"] == "therapist")
        .expect("therapist")
        .clone();
    assert_eq!(therapist["waiting"][0]["position"], 1);
    assert_eq!(therapist["waiting"][0]["tier"], 3);
    let holder = therapist["waiting"][0]["patient"].clone();
    assert_eq!(therapist["holds"][0]["slot"], "T0");
    assert_eq!(therapist["holds"][0]["doctor"], "dr-a");
    assert_eq!(therapist["holds"][0]["patient"], holder);
    assert!(at(&therapist["holds"][0]["until"]) > Utc::now());
    let schedule = app.get(Some(&registrar), &schedule_path).await;
    let t0_held = slot(&schedule.body, "T0");
    assert_eq!(t0_held["state"], "held", "{}", schedule.body);
    assert_eq!(t0_held["hold"]["patient"], holder);
    assert_eq!(t0_held["hold"]["until"], therapist["holds"][0]["until"]);

    // The waiting patient leaves the list: the hold goes with them (nobody else waits, so
    // the slot opens to everyone).
    let leave = |who: &str, body: Value| {
        let who = who.to_owned();
        let app = &app;
        async move { app.post(&who, "/waiting-list/leave", body).await }
    };
    let left = leave(
        &waiting,
        json!({"specialty": "therapist", "document": "PAT 000022"}),
    )
    .await;
    assert_eq!(left.status, 200, "{}", left.body);
    let types: Vec<&str> = left.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["WaitingListLeft", "SlotHoldLapsed"]);
    let lists = app.get(Some(&registrar), "/clinic/waiting-lists").await;
    assert_eq!(
        lists.body["specialties"][0]["waiting"],
        json!([]),
        "{}",
        lists.body
    );
    assert_eq!(lists.body["specialties"][0]["holds"], json!([]));
    let schedule = app.get(Some(&registrar), &schedule_path).await;
    assert_eq!(slot(&schedule.body, "T0")["state"], "free");
    let places = app
        .post(
            &waiting,
            "/waiting-list/places",
            json!({"document": "PAT 000022"}),
        )
        .await;
    assert_eq!(places.body["places"], json!([]));

    // Leaving where it makes no sense, and bad input: nothing is written.
    let head = app.head_seq().await;
    let again = leave(
        &waiting,
        json!({"specialty": "therapist", "document": "PAT 000022"}),
    )
    .await;
    refused(&again, 409, "specialty");
    let unknown = leave(
        &waiting,
        json!({"specialty": "dermatology", "document": "PAT 000022"}),
    )
    .await;
    refused(&unknown, 404, "specialty");
    refused(
        &leave(&waiting, json!({"specialty": "therapist", "document": "?"})).await,
        422,
        "document",
    );
    refused(
        &leave(&waiting, json!({"specialty": "therapist"})).await,
        422,
        "document",
    );
    let extra = leave(
        &waiting,
        json!({"specialty": "therapist", "document": "PAT 000022", "x": 1}),
    )
    .await;
    assert!(extra.status == 400 || extra.status == 422, "{}", extra.body);
    for role in [Role::Officer, Role::Auditor] {
        let answer = leave(
            &token(role, "x"),
            json!({"specialty": "therapist", "document": "PAT 000022"}),
        )
        .await;
        assert_eq!(answer.status, 403, "{}", answer.body);
    }
    // A registrar may take a patient off a list for them.
    let rejoined = app
        .post(
            &registrar,
            "/waiting-list",
            json!({"specialty": "therapist", "document": "PAT 000023", "tier": 1}),
        )
        .await;
    assert_eq!(rejoined.status, 201, "{}", rejoined.body);
    let head = head + 1;
    assert_eq!(app.head_seq().await, head, "the refusals wrote nothing");
    let by_registrar = leave(
        &registrar,
        json!({"specialty": "therapist", "document": "PAT 000023"}),
    )
    .await;
    assert_eq!(by_registrar.status, 200, "{}", by_registrar.body);

    // The schedule's query: a bad, missing or unknown parameter names it.
    refused(
        &app.get(Some(&registrar), "/clinic/schedule?date=2027-02-30")
            .await,
        422,
        "date",
    );
    refused(
        &app.get(Some(&registrar), "/clinic/schedule").await,
        422,
        "date",
    );
    refused(
        &app.get(Some(&registrar), &format!("{schedule_path}&page=2"))
            .await,
        422,
        "page",
    );
    // Who may look.
    only_for(&app, &schedule_path, &[Role::Registrar]).await;
    only_for(&app, "/clinic/waiting-lists", &[Role::Registrar]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_sees_a_campaigns_calendar_and_each_schools_enrollment_order() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let officer = token(Role::Officer, "officer-1");
    let parent = token(Role::Parent, "parent-s");
    let campaigns = app.get(None, "/campaigns").await;
    let config = campaigns.body["campaigns"][0].clone();
    let submitted = app
        .post(
            &parent,
            "/school/applications",
            json!({
                "campaign": "school-2027", "document": "II-AB 000031", "birth_date": "2020-06-01",
                "schools": ["S1"],
                "contact": {"child_name": "Анна Иванова", "guardian_name": "Сергей Иванов", "phone": "+7 913 000-00-00"},
            }),
        )
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let number = submitted.body["application"]["number"].clone();
    let unnamed = app
        .post(
            &parent,
            "/school/applications",
            json!({"campaign": "school-2027", "document": "II-AB 000032", "birth_date": "2020-07-01", "schools": ["S1"]}),
        )
        .await;
    assert_eq!(unnamed.status, 201, "{}", unnamed.body);
    let path = "/campaigns/school-2027/enrollment-order";

    // Before any decision: the calendar in local time, no child enrolled.
    let before = app.get(Some(&officer), path).await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(before.body["time_zone"], "Asia/Novosibirsk");
    let calendar = before.body["calendar"].as_array().unwrap();
    let whats: Vec<&str> = calendar
        .iter()
        .map(|m| m["what"].as_str().unwrap())
        .collect();
    assert_eq!(whats, ["stage1", "stage2", "closes"]);
    assert_eq!(calendar[0]["day"], config["stage1_opens"]);
    assert_eq!(
        calendar[0]["local"],
        format!(
            "{}T00:00:00+07:00",
            config["stage1_opens"].as_str().unwrap()
        )
    );
    assert_eq!(
        at(&calendar[0]["at"]).to_rfc3339(),
        at(&calendar[0]["local"]).to_rfc3339(),
        "one instant"
    );
    assert_eq!(before.body["schools"][0]["institution"], "S1");
    assert_eq!(before.body["schools"][0]["name"], "S1 name");
    assert_eq!(before.body["schools"][0]["seats"], 2);
    assert_eq!(before.body["schools"][0]["enrolled"], json!([]));

    // Stage 2 enrolls both (S1 has two seats): the order lists them with the order's local
    // date, the name where the family gave one.
    let run = app
        .post(
            &officer,
            "/school/enrollments",
            json!({"round": "e-2", "campaign": "school-2027", "stage": "two"}),
        )
        .await;
    assert_eq!(run.status, 201, "{}", run.body);
    let order = app.get(Some(&officer), path).await;
    let enrolled = order.body["schools"][0]["enrolled"].as_array().unwrap();
    assert_eq!(enrolled.len(), 2, "{}", order.body);
    assert_eq!(enrolled[0]["application"], number);
    assert_eq!(enrolled[0]["child_name"], "Анна Иванова");
    assert!(enrolled[1].get("child_name").is_none(), "no name was given");
    assert_eq!(enrolled[0]["stage"], "two");
    assert_eq!(enrolled[0]["round"], "e-2");
    assert_eq!(enrolled[0]["status"], "enrolled");
    assert_eq!(
        enrolled[0]["order_date"],
        local_date(at(&enrolled[0]["ordered_at"])).to_string()
    );
    assert_eq!(order.body["schools"][1]["enrolled"], json!([]));

    // An unknown or malformed campaign is a 404 naming it; other roles get 403.
    refused(
        &app.get(Some(&officer), "/campaigns/nope/enrollment-order")
            .await,
        404,
        "campaign",
    );
    refused(
        &app.get(Some(&officer), "/campaigns/n%20o/enrollment-order")
            .await,
        404,
        "campaign",
    );
    only_for(&app, path, &[Role::Officer]).await;
    app.stop().await;
}

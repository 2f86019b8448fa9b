//! Defects found by trying the server as a new user would, each with the case that showed
//! it: the answer a new user gets now, end to end over HTTP.

use ochered_api::http::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, token, TestApp};

fn admin() -> String {
    token(Role::Admin, "admin-1")
}

fn registrar() -> String {
    token(Role::Registrar, "registrar-1")
}

impl TestApp {
    /// `GET {base}{path}` without the authority prefix.
    async fn get_root(&self, path: &str) -> crate::helpers::Answer {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    /// `POST {base}/api/v1/authorities`.
    async fn configure(&self, body: Value) -> crate::helpers::Answer {
        self.send(
            self.client
                .post(format!("{}/api/v1/authorities", self.base))
                .bearer_auth(admin())
                .json(&body),
        )
        .await
    }
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| item[key].as_str().unwrap().to_owned())
        .collect()
}

/// Items 10 and 13: the public list of free slots leaves out a slot held for the waiting
/// list (booking it would be refused with `slot_held`) and lists slots by start time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_slots_leave_out_held_slots_and_come_by_start_time() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    // Ids in the opposite order of their start times.
    let start = chrono::Utc::now() + chrono::Duration::days(3);
    let slots: Vec<Value> = ["Z9", "M5", "A1"]
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"id": id, "start": start + chrono::Duration::minutes(30 * i as i64), "duration_minutes": 30}))
        .collect();
    let published = app
        .post(
            &registrar(),
            "/slots",
            json!({"doctor": "dr-b", "specialty": "therapist", "slots": slots}),
        )
        .await;
    assert_eq!(published.status, 201, "{}", published.body);
    let free = app.get(None, "/slots?specialty=therapist").await;
    let listed = ids(&free.body["free_slots"], "id");
    // set_up_authority's T0-T3 start two days ahead, before Z9, M5 and A1.
    assert_eq!(
        listed,
        ["T0", "T1", "T2", "T3", "Z9", "M5", "A1"],
        "by start time"
    );
    let starts: Vec<String> = ids(&free.body["free_slots"], "start");
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted);

    // A booking on T1 is cancelled while a patient waits: T1 is held for them.
    let booked = app
        .post(
            &token(Role::Parent, "parent-1"),
            "/bookings",
            json!({"slot": "T1", "document": "PAT 000001"}),
        )
        .await;
    assert_eq!(booked.status, 201, "{}", booked.body);
    let waiting = app
        .post(
            &token(Role::Parent, "parent-2"),
            "/waiting-list",
            json!({"specialty": "therapist", "document": "PAT 000002"}),
        )
        .await;
    assert_eq!(waiting.status, 201, "{}", waiting.body);
    let cancelled = app
        .post(&registrar(), "/bookings/1/cancel", json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let other = app
        .post(
            &token(Role::Parent, "parent-3"),
            "/bookings",
            json!({"slot": "T1", "document": "PAT 000003"}),
        )
        .await;
    assert_eq!(
        (other.status, other.body["code"].as_str()),
        (403, Some("slot_held"))
    );
    let free = app.get(None, "/slots").await;
    let listed = ids(&free.body["free_slots"], "id");
    assert!(
        !listed.contains(&"T1".to_owned()),
        "a held slot is not free: {listed:?}"
    );
    assert_eq!(listed, ["T0", "T2", "T3", "Z9", "M5", "A1"]);
    app.stop().await;
}

/// Item 14: a refused `POST /authorities` leaves nothing behind: the id is not listed, not
/// ready, and a later valid configuration of the same id succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_authority_leaves_nothing_behind() {
    let app = spawn_app().await;
    for (id, body, field) in [
        (
            "bad-deadline",
            json!({"id": "bad-deadline", "name": "Bad", "time_zone": "Europe/Moscow", "offer_deadline_days": 0}),
            "offer_deadline_days",
        ),
        (
            "bad-name",
            json!({"id": "bad-name", "name": "", "time_zone": "Europe/Moscow"}),
            "name",
        ),
        (
            "bad-ages",
            json!({"id": "bad-ages", "name": "Bad", "time_zone": "Europe/Moscow",
                   "school_min_age_months": 100, "school_max_age_months": 90}),
            "school_min_age_months",
        ),
    ] {
        let refused = app.configure(body).await;
        assert_eq!(
            (refused.status, refused.field()),
            (422, Some(field)),
            "{id}"
        );
        let listed = app.get_root("/api/v1/authorities").await;
        assert!(
            !ids(&listed.body["authorities"], "id").contains(&id.to_owned()),
            "{id} listed after a refusal: {}",
            listed.body
        );
        let ready = app.get_root("/ready").await;
        assert_eq!(ready.status, 200, "{}", ready.body);
        assert!(
            !ready.body["authorities"]
                .as_array()
                .unwrap()
                .contains(&json!(id)),
            "{id} in /ready: {}",
            ready.body
        );
        let info = app.get_root(&format!("/api/v1/authorities/{id}")).await;
        assert_eq!(info.status, 404, "{id}: {}", info.body);
    }
    let fixed = app
        .configure(json!({"id": "bad-name", "name": "Good", "time_zone": "Europe/Moscow"}))
        .await;
    assert_eq!(fixed.status, 201, "{}", fixed.body);
    let listed = app.get_root("/api/v1/authorities").await;
    assert_eq!(ids(&listed.body["authorities"], "id"), ["bad-name"]);
    app.stop().await;
}

/// Item 16: a missing required field and a duplicate key are named, not called `body`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_repeated_field_is_named() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let parent = token(Role::Parent, "parent-1");
    let mut body = crate::helpers::kindergarten("II-AB 000001", &["K1"]);
    body.as_object_mut().unwrap().remove("desired_start");
    let missing = app.post(&parent, "/kindergarten/applications", body).await;
    assert_eq!(
        (missing.status, missing.field()),
        (422, Some("desired_start")),
        "{}",
        missing.body
    );
    let repeated = app
        .send(
            app.client
                .post(app.url("/kindergarten/applications"))
                .bearer_auth(&parent)
                .header("content-type", "application/json")
                .body(r#"{"document":"II-AB 000002","document":"II-AB 000003","birth_date":"2024-03-10","preferences":["K1"],"desired_start":"2027-09-01"}"#),
        )
        .await;
    assert_eq!(
        (repeated.status, repeated.field()),
        (422, Some("document")),
        "{}",
        repeated.body
    );
    // Nested: a missing field inside a list item names its path.
    let nested = app
        .post(
            &registrar(),
            "/slots",
            json!({"doctor": "dr-c", "specialty": "therapist", "slots": [{"id": "N1", "duration_minutes": 30}]}),
        )
        .await;
    assert_eq!(
        (nested.status, nested.field()),
        (422, Some("slots[0].start")),
        "{}",
        nested.body
    );
    app.stop().await;
}

/// Item 17: an error in `limit` names `limit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_query_parameter_is_named() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let submitted = app
        .post(
            &token(Role::Parent, "parent-1"),
            "/kindergarten/applications",
            crate::helpers::kindergarten("II-AB 000050", &["K1"]),
        )
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let queues = app.get(None, "/queues").await;
    let queue = queues.body["queues"][0]["queue"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad_limit = app.get(None, &format!("/queues/{queue}?limit=ten")).await;
    assert_eq!(
        (bad_limit.status, bad_limit.field()),
        (422, Some("limit")),
        "{}",
        bad_limit.body
    );
    let bad_offset = app.get(None, &format!("/queues/{queue}?offset=-1")).await;
    assert_eq!(
        (bad_offset.status, bad_offset.field()),
        (422, Some("offset"))
    );
    let unknown = app.get(None, &format!("/queues/{queue}?page=2")).await;
    assert_eq!((unknown.status, unknown.field()), (422, Some("page")));
    app.stop().await;
}

/// Item 18: a wrong method and a malformed request get problem+json bodies (the client's
/// `send` checks every 4xx for one). A request line the HTTP library cannot parse at all is
/// still answered by the library itself with a bare 400 (docs/RULES.md#bad-input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_malformed_requests_get_problem_bodies() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let wrong = app
        .send(
            app.client
                .delete(format!("{}/api/v1/authorities", app.base)),
        )
        .await;
    assert_eq!(wrong.status, 405, "{}", wrong.body);
    assert_eq!(wrong.body["code"], "method_not_allowed");
    // A percent-escape that does not decode in a path parameter.
    let malformed = app.get(None, "/applications/%FF%FE").await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    app.stop().await;
}

/// Item 19: idempotency records of two subjects never meet, whatever `:` their subjects and
/// keys contain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_of_different_subjects_never_collide() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let carol = token(Role::Parent, "carol");
    let carol_x = token(Role::Parent, "carol:x");
    let first = app
        .post_keyed(
            &carol,
            "/kindergarten/applications",
            "x:k",
            crate::helpers::kindergarten("II-AB 000101", &["K1"]),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let second = app
        .post_keyed(
            &carol_x,
            "/kindergarten/applications",
            "k",
            crate::helpers::kindergarten("II-AB 000102", &["K1"]),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert!(second.headers.get("idempotent-replayed").is_none());
    assert_ne!(
        first.body["application"]["number"],
        second.body["application"]["number"]
    );
    // A file row's key suffix cannot be forged by a plain key either: `a#row-1` is not row 1
    // of an upload keyed `a`.
    let third = app
        .post_keyed(
            &carol,
            "/kindergarten/applications",
            "a#row-1",
            crate::helpers::kindergarten("II-AB 000103", &["K1"]),
        )
        .await;
    assert_eq!(third.status, 201, "{}", third.body);
    app.stop().await;
}

/// Item 20: a signed token with an empty subject, or one not valid before a future time, is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_with_an_empty_subject_or_a_future_nbf_are_refused() {
    use ochered_api::http::auth::encode_claims;
    let app = spawn_app().await;
    app.set_up_authority().await;
    let now = chrono::Utc::now().timestamp();
    let secret = crate::helpers::SECRET.as_bytes();
    let empty_sub = encode_claims(
        secret,
        &json!({"sub": "", "role": "parent", "iat": now, "exp": now + 600}),
    );
    let future = encode_claims(
        secret,
        &json!({"sub": "p-1", "role": "parent", "iat": now, "exp": now + 7200, "nbf": now + 3600}),
    );
    let present = encode_claims(
        secret,
        &json!({"sub": "p-2", "role": "parent", "iat": now, "exp": now + 7200, "nbf": now - 10}),
    );
    let body = crate::helpers::kindergarten("II-AB 000201", &["K1"]);
    for (name, bad) in [("empty sub", &empty_sub), ("future nbf", &future)] {
        let answer = app
            .post(bad, "/kindergarten/applications", body.clone())
            .await;
        assert_eq!(answer.status, 401, "{name}: {}", answer.body);
        let read = app.get(Some(bad), "/applications/1").await;
        assert_eq!(read.status, 401, "{name}: {}", read.body);
    }
    let ok = app.post(&present, "/kindergarten/applications", body).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    app.stop().await;
}

/// Item 21: an over-long or unprintable X-Correlation-Id is refused, naming the header; one
/// within bounds is recorded with the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_correlation_id_is_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let head = app.head_seq().await;
    let long = "c".repeat(129);
    let refused = app
        .send(
            app.client
                .post(app.url("/kindergarten/applications"))
                .bearer_auth(token(Role::Parent, "parent-1"))
                .header("X-Correlation-Id", &long)
                .json(&crate::helpers::kindergarten("II-AB 000301", &["K1"])),
        )
        .await;
    assert_eq!(
        (refused.status, refused.field()),
        (422, Some("X-Correlation-Id")),
        "{}",
        refused.body
    );
    assert_eq!(app.head_seq().await, head, "nothing written");
    let fine = app
        .send(
            app.client
                .post(app.url("/kindergarten/applications"))
                .bearer_auth(token(Role::Parent, "parent-1"))
                .header("X-Correlation-Id", "c".repeat(128))
                .json(&crate::helpers::kindergarten("II-AB 000301", &["K1"])),
        )
        .await;
    assert_eq!(fine.status, 201, "{}", fine.body);
    app.stop().await;
}

/// Item 22: the documented defaults and tier numbering match what the server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_defaults_and_tiers_match_the_code() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let openapi = app.openapi().await;
    let config = &openapi["components"]["schemas"]["AuthorityConfig"]["properties"];
    let info = app.get(None, "").await;
    for setting in [
        "max_kindergarten_preferences",
        "offer_deadline_days",
        "kindergarten_max_age_years",
        "school_min_age_months",
        "school_max_age_months",
        "clinic_hold_minutes",
        "no_show_block_count",
        "no_show_window_days",
    ] {
        assert_eq!(
            config[setting]["default"], info.body["config"][setting],
            "the documented default of {setting}"
        );
    }
    // The queue entries' tier is described for both kinds of queue.
    let tier = config_description(&openapi, "QueueEntry", "tier");
    assert!(
        tier.contains("school") && tier.contains("2 catchment"),
        "{tier}"
    );
    // The about sheet of a school queue's export gives the school numbering.
    let submitted = app
        .post(&token(Role::Parent, "parent-8"), "/school/applications", json!({"campaign": "school-2027", "document": "II-AB 000400", "birth_date": "2020-06-01", "schools": ["S1"]}))
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let queues = app.get(None, "/queues").await;
    let school = queues.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap().to_owned())
        .find(|q| q.starts_with("school."))
        .expect("a school queue");
    let file = app
        .client
        .get(app.url(&format!("/files/queues/{school}.xlsx")))
        .bearer_auth(token(Role::Auditor, "auditor-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    let bytes = file.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut about = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name("xl/sharedStrings.xml").unwrap(),
        &mut about,
    )
    .unwrap();
    assert!(
        about.contains("1 sibling") && about.contains("2 catchment"),
        "{about}"
    );
    // The age refusal gives the configured bounds: from 78 months, under 96.
    let too_old = app
        .post(&token(Role::Parent, "parent-9"), "/school/applications", json!({"campaign": "school-2027", "document": "II-AB 000401", "birth_date": "2019-01-01", "schools": ["S1"]}))
        .await;
    assert_eq!(too_old.body["code"], "age_out_of_range", "{}", too_old.body);
    let detail = too_old.body["detail"].as_str().unwrap();
    assert!(detail.contains("96"), "{detail}");
    assert!(!detail.contains("95"), "{detail}");
    app.stop().await;
}

fn config_description(openapi: &Value, schema: &str, property: &str) -> String {
    openapi["components"]["schemas"][schema]["properties"][property]["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// What a finished demo looks like from outside: its institutions, its applications, the
/// confirmed privileges, the queues with their sizes, the specialties and free slots.
async fn demo_facts(app: &TestApp) -> Value {
    let demo = |path: &str| format!("/api/v1/authorities/demo{path}");
    let info = app.get_root(&demo("")).await;
    assert_eq!(info.status, 200, "{}", info.body);
    let queues = app.get_root(&demo("/queues")).await.body["queues"].clone();
    let sizes: Vec<(String, u64)> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["queue"].as_str().unwrap().to_owned(),
                q["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let officer = token(Role::Officer, "officer-1");
    let mut confirmed = 0;
    for n in 1..=info.body["applications"].as_u64().unwrap() {
        let a = app
            .send(
                app.client
                    .get(format!(
                        "{}{}",
                        app.base,
                        demo(&format!("/applications/{n}"))
                    ))
                    .bearer_auth(&officer),
            )
            .await;
        confirmed += a.body["privileges"].as_array().map_or(0, |p| {
            p.iter().filter(|c| c["status"] == "confirmed").count()
        });
    }
    json!({
        "institutions": info.body["institutions"],
        "applications": info.body["applications"],
        "active": info.body["active_applications"],
        "confirmed": confirmed,
        "queues": sizes,
        "specialties": app.get_root(&demo("/specialties")).await.body,
        "free_slots": app.get_root(&demo("/slots")).await.body["free_slots"].as_array().unwrap().len(),
    })
}

/// Item 15: a server killed during the first-start demo seed leaves a prefix of the seed in
/// the log (the log is append-only); the next start finishes it, and a start over a
/// finished demo writes nothing. The kill is made exact by cutting a seeded log back to a
/// prefix: right after the configuration, among the applications, among the confirmations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_seed_cut_short_is_finished_by_the_next_start() {
    use std::sync::Arc;
    let mut harnesses = vec![(
        Arc::new(ochered_store::testing::Harness::sqlite().await),
        "sqlite",
    )];
    if let Some(pg) = ochered_store::testing::Harness::postgres().await {
        harnesses.push((Arc::new(pg), "postgres"));
    }
    for (harness, backend) in harnesses {
        let mut config = crate::helpers::config_for(harness.url.clone());
        config.seed_demo = true;
        let start = || crate::helpers::spawn_configured(harness.clone(), backend, config.clone());
        let app = start().await;
        let full = demo_facts(&app).await;
        let events = app.get_root("/api/v1/authorities/demo").await.body["events"]
            .as_i64()
            .unwrap();
        app.stop().await;
        // A restart over the finished demo writes nothing.
        let app = start().await;
        assert_eq!(
            app.get_root("/api/v1/authorities/demo").await.body["events"],
            events,
            "{backend}: a restart added events to a finished demo"
        );
        app.stop().await;
        let mut head = events;
        for keep in [2, events / 2, events - 3] {
            let cut = harness.delete_events("demo", keep + 1, head).await;
            assert!(cut > 0, "{backend}: nothing cut at {keep}");
            let app = start().await;
            assert_eq!(
                demo_facts(&app).await,
                full,
                "{backend}: the demo cut after event {keep} was not finished"
            );
            head = app.get_root("/api/v1/authorities/demo").await.body["events"]
                .as_i64()
                .unwrap();
            app.stop().await;
        }
    }
}

/// The round calendar is the authority's configuration and is enforced: a main round outside
/// its season and a top-up 20 s after the main round are refused, naming the rule; an
/// officer's stated reason overrides it and is kept in the round's event and shown with the
/// round (docs/RULES.md#kindergarten-round-calendar).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_round_calendar_is_enforced_unless_an_officer_states_a_reason() {
    use crate::helpers::{kindergarten, AUTHORITY};
    let app = spawn_app().await;
    let officer = token(Role::Officer, "officer-1");
    // A season that starts two months from today: today is outside it, whatever the date.
    let today = chrono::Utc::now().date_naive();
    let day = |d: chrono::NaiveDate| d.format("%m-%d").to_string();
    let (from, until) = (
        day(today + chrono::Duration::days(60)),
        day(today + chrono::Duration::days(90)),
    );
    let configured = app
        .configure(json!({"id": AUTHORITY, "name": "Calendar city", "time_zone": "Asia/Novosibirsk",
            "round_calendar": {"main_round_from": from, "main_round_until": until, "top_up_interval_days": 30}}))
        .await;
    assert_eq!(configured.status, 201, "{}", configured.body);
    // A day of the year that does not exist is refused, naming the field.
    let bad = app
        .configure(
            json!({"id": "other", "name": "Other", "time_zone": "Europe/Moscow",
            "round_calendar": {"main_round_from": "02-30"}}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(
        bad.field(),
        Some("round_calendar.main_round_from"),
        "{}",
        bad.body
    );
    let institution = json!({"id": "K1", "kind": "kindergarten", "name": "K1"});
    assert_eq!(
        app.post(&officer, "/institutions", institution)
            .await
            .status,
        201
    );
    let seats =
        json!({"institution": "K1", "intake_year": 2027, "seats": [{"age_group": 3, "seats": 2}]});
    assert_eq!(
        app.post(&officer, "/kindergarten/seats", seats)
            .await
            .status,
        201
    );
    for (n, document) in ["II-AB 700001", "II-AB 700002"].iter().enumerate() {
        let parent = token(Role::Parent, &format!("parent-{n}"));
        let submitted = app
            .post(
                &parent,
                "/kindergarten/applications",
                kindergarten(document, &["K1"]),
            )
            .await;
        assert_eq!(submitted.status, 201, "{}", submitted.body);
    }

    // The main round outside its season: refused, nothing written.
    let head = app.head_seq().await;
    let main = json!({"round": "main-2027", "intake_year": 2027});
    let refused = app
        .post(&officer, "/kindergarten/rounds", main.clone())
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(
        refused.body["code"], "round_out_of_season",
        "{}",
        refused.body
    );
    assert_eq!(refused.body["from"], from);
    assert_eq!(refused.body["until"], until);
    assert_eq!(refused.field(), Some("calendar_override"));
    assert_eq!(app.head_seq().await, head, "a refused round writes nothing");
    // A blank reason is no reason.
    let mut blank = main.clone();
    blank["calendar_override"] = json!("   ");
    let refused = app.post(&officer, "/kindergarten/rounds", blank).await;
    assert_eq!(
        (refused.status, refused.field()),
        (422, Some("calendar_override")),
        "{}",
        refused.body
    );

    // With a stated reason it runs; the reason is in its event and in the round's answers.
    let mut overridden = main.clone();
    overridden["calendar_override"] = json!("the season was moved by the city's order");
    let ran = app.post(&officer, "/kindergarten/rounds", overridden).await;
    assert_eq!(ran.status, 201, "{}", ran.body);
    assert_eq!(
        ran.body["round"]["calendar_override"],
        "the season was moved by the city's order"
    );
    let seq = ran.body["authority_seq"].as_i64().unwrap();
    let store = app.server.as_ref().unwrap().state.engine.store();
    let stored = store.read(AUTHORITY, seq - 1, 1).await.unwrap();
    match ochered_writer::decode_event(&stored[0]).unwrap() {
        ochered_core::Event::KindergartenRoundCompleted {
            calendar_override, ..
        } => assert_eq!(
            calendar_override.as_deref(),
            Some("the season was moved by the city's order")
        ),
        other => panic!("not the round: {other:?}"),
    }

    // A top-up 20 s (here: moments) after the main round: refused, naming the rule.
    let seats =
        json!({"institution": "K1", "intake_year": 2027, "seats": [{"age_group": 3, "seats": 3}]});
    assert_eq!(
        app.post(&officer, "/kindergarten/seats", seats)
            .await
            .status,
        201
    );
    let parent = token(Role::Parent, "parent-9");
    let submitted = app
        .post(
            &parent,
            "/kindergarten/applications",
            kindergarten("II-AB 700003", &["K1"]),
        )
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let top_up = json!({"round": "top-up-2027", "intake_year": 2027});
    let refused = app
        .post(&officer, "/kindergarten/rounds", top_up.clone())
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.body["code"], "top_up_too_soon", "{}", refused.body);
    assert_eq!(refused.body["previous"], "main-2027");
    let mut overridden = top_up;
    overridden["calendar_override"] = json!("a child's family moved into the city");
    let ran = app.post(&officer, "/kindergarten/rounds", overridden).await;
    assert_eq!(ran.status, 201, "{}", ran.body);
    assert_eq!(ran.body["round"]["placed"], 1, "{}", ran.body);
    let shown = app.get(Some(&officer), "/rounds/top-up-2027").await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(
        shown.body["calendar_override"], "a child's family moved into the city",
        "{}",
        shown.body
    );
    let listed = app.get(Some(&officer), "/rounds").await;
    let reasons: Vec<&Value> = listed.body["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["calendar_override"])
        .collect();
    assert_eq!(
        reasons,
        [
            &json!("the season was moved by the city's order"),
            &json!("a child's family moved into the city")
        ]
    );
    app.stop().await;
}

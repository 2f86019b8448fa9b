//! The HTTP API end to end: every endpoint's success and error answers, on SQLite and
//! PostgreSQL, and who may do what.

use ochered_api::http::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{each_backend, kindergarten, spawn_app, token, TestApp, AUTHORITY};

fn parent(n: u32) -> String {
    token(Role::Parent, &format!("parent-{n}"))
}

fn officer() -> String {
    token(Role::Officer, "officer-1")
}

fn number(answer: &crate::helpers::Answer) -> u64 {
    answer.body["application"]["number"]
        .as_u64()
        .unwrap_or_else(|| panic!("no number in {}", answer.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_submits_sees_positions_and_the_reasons_they_moved() {
    each_backend(async |app: TestApp| {
        app.set_up_authority().await;
        let first = app
            .post_keyed(
                &parent(1),
                "/kindergarten/applications",
                "a1",
                kindergarten("II-AB 000001", &["K1", "K2"]),
            )
            .await;
        assert_eq!(first.status, 201, "{}: {}", app.backend, first.body);
        assert_eq!(number(&first), 1);
        let positions = first.body["application"]["positions"].as_array().unwrap();
        assert_eq!(positions.len(), 2);
        assert_eq!(positions[0]["position"], 1);
        assert_eq!(positions[0]["institution"], "K1");

        // A privileged child arrives later and jumps ahead once an officer confirms it.
        let mut body = kindergarten("II-AB 000002", &["K1"]);
        body["privileges"] = json!([{"kind": "first_priority"}]);
        let second = app
            .post(&parent(2), "/kindergarten/applications", body)
            .await;
        assert_eq!(second.status, 201);
        let confirm = app
            .post(
                &officer(),
                "/applications/2/privileges/confirm",
                json!({"privilege": {"kind": "first_priority"}}),
            )
            .await;
        assert_eq!(confirm.status, 200, "{}", confirm.body);

        let mine = app.get(Some(&parent(1)), "/applications/1").await;
        assert_eq!(mine.status, 200);
        assert_eq!(mine.body["positions"][0]["position"], 2);
        let why = app
            .get(Some(&parent(1)), "/applications/1/explanation")
            .await;
        assert_eq!(why.status, 200, "{}", why.body);
        let movements = why.body["queues"][0]["explanation"]["movements"]
            .as_array()
            .unwrap();
        let last = movements.last().unwrap();
        assert_eq!(last["cause"], "privilege_confirmed");
        assert_eq!(
            (
                last["position_before"].as_u64(),
                last["position_after"].as_u64()
            ),
            (Some(1), Some(2))
        );

        let list = app.get(Some(&parent(1)), "/applications").await;
        assert_eq!(list.body["applications"].as_array().unwrap().len(), 1);
        app.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_the_same_key_get_the_first_answer() {
    each_backend(async |app: TestApp| {
        app.set_up_authority().await;
        let body = kindergarten("II-AB 000010", &["K1"]);
        let first = app
            .post_keyed(
                &parent(1),
                "/kindergarten/applications",
                "key-1",
                body.clone(),
            )
            .await;
        assert_eq!(first.status, 201);
        assert!(first.headers.get("idempotent-replayed").is_none());
        let retry = app
            .post_keyed(
                &parent(1),
                "/kindergarten/applications",
                "key-1",
                body.clone(),
            )
            .await;
        assert_eq!(retry.status, 201);
        assert_eq!(retry.headers.get("idempotent-replayed").unwrap(), "true");
        assert_eq!(retry.body["events"], first.body["events"]);
        // The same key with another payload is refused, and nothing is written.
        let head = app.head_seq().await;
        let other = app
            .post_keyed(
                &parent(1),
                "/kindergarten/applications",
                "key-1",
                kindergarten("II-AB 000011", &["K2"]),
            )
            .await;
        assert_eq!(other.status, 422);
        assert_eq!(other.field(), Some("Idempotency-Key"));
        assert_eq!(app.head_seq().await, head);
        // Keys are per account: another parent's "key-1" is a different key.
        let another = app
            .post_keyed(
                &parent(2),
                "/kindergarten/applications",
                "key-1",
                kindergarten("II-AB 000012", &["K2"]),
            )
            .await;
        assert_eq!(another.status, 201);
        app.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_child_twice_is_a_conflict_naming_the_existing_application() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    assert_eq!(
        app.post(
            &parent(1),
            "/kindergarten/applications",
            kindergarten("II-AB 000020", &["K1"])
        )
        .await
        .status,
        201
    );
    // Same document in another spelling, from another account, at a service centre.
    let again = app
        .post(
            &officer(),
            "/kindergarten/applications",
            kindergarten("ii-ab №000020", &["K2"]),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.body["code"], "duplicate_application");
    assert_eq!(again.body["existing"], 1);
    assert_eq!(again.field(), Some("child"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_naming_the_field_and_nothing_is_written() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let head = app.head_seq().await;
    let url = app.url("/kindergarten/applications");
    let who = parent(1);
    let post_raw = |body: Vec<u8>, content_type: &'static str| {
        app.client
            .post(url.clone())
            .bearer_auth(&who)
            .header("content-type", content_type)
            .body(body)
    };

    let cases: Vec<(Vec<u8>, &str, u16, Option<&str>)> = vec![
        (b"{\"document\":".to_vec(), "application/json", 400, Some("body")),
        (b"\xff\xfe\x00".to_vec(), "application/json", 400, Some("body")),
        (format!("{{\"document\":{}", "[".repeat(5000)).into_bytes(), "application/json", 422, Some("document")),
        (serde_json::to_vec(&json!({"document": 5})).unwrap(), "application/json", 422, Some("document")),
        (
            serde_json::to_vec(&json!({"document": "II-AB 1", "birth_date": "2024-02-30", "preferences": ["K1"], "desired_start": "2027-09-01"})).unwrap(),
            "application/json",
            422,
            Some("birth_date"),
        ),
        (serde_json::to_vec(&{ let mut b = kindergarten("II-AB 000030", &["K1"]); b["surname"] = json!("x"); b }).unwrap(), "application/json", 422, Some("surname")),
        (serde_json::to_vec(&kindergarten("II-AB 000030", &["K1", "NOPE"])).unwrap(), "application/json", 422, Some("preferences")),
        (serde_json::to_vec(&kindergarten("II-AB 000030", &["K1", "bad id!"])).unwrap(), "application/json", 422, Some("preferences[1]")),
        (serde_json::to_vec(&kindergarten("'; DROP TABLE events; --", &["K1"])).unwrap(), "application/json", 422, Some("document")),
        (serde_json::to_vec(&kindergarten("II-AB 000030", &["K1"])).unwrap(), "text/plain", 415, Some("Content-Type")),
        (vec![b' '; 64 * 1024], "application/json", 413, None),
        (
            serde_json::to_vec(&json!({"document": "II-AB 000031", "birth_date": "2010-01-01", "preferences": ["K1"], "desired_start": "2027-09-01"})).unwrap(),
            "application/json",
            422,
            Some("birth_date"),
        ),
        (
            serde_json::to_vec(&json!({"document": "II-AB 000032", "birth_date": "+275000-01-01", "preferences": ["K1"], "desired_start": "2027-09-01"})).unwrap(),
            "application/json",
            422,
            Some("birth_date"),
        ),
        // Dates at the far edge of what the date type holds reach the rules, which refuse
        // them by name (this one used to panic the authority's writer: found by the fuzzer).
        (
            serde_json::to_vec(&json!({"document": "II-AB 000034", "birth_date": "2024-03-10", "preferences": ["K1"], "desired_start": "+262142-12-31"})).unwrap(),
            "application/json",
            422,
            Some("desired_start"),
        ),
        // A child too young: not born yet.
        (
            serde_json::to_vec(&json!({"document": "II-AB 000035", "birth_date": (chrono::Utc::now().date_naive() + chrono::Duration::days(40)).to_string(), "preferences": ["K1"], "desired_start": "2028-09-01"})).unwrap(),
            "application/json",
            422,
            Some("birth_date"),
        ),
    ];
    for (body, content_type, status, field) in cases {
        let answer = app.send(post_raw(body.clone(), content_type)).await;
        assert_eq!(
            answer.status,
            status,
            "{} → {}",
            String::from_utf8_lossy(&body[..body.len().min(80)]),
            answer.body
        );
        if let Some(field) = field {
            assert_eq!(answer.field(), Some(field), "{}", answer.body);
        }
    }
    // A bad Idempotency-Key header is named too.
    let bad_key = app
        .send(
            app.client
                .post(url.clone())
                .bearer_auth(&who)
                .header("Idempotency-Key", "")
                .json(&kindergarten("II-AB 000033", &["K1"])),
        )
        .await;
    assert_eq!(
        (bad_key.status, bad_key.field()),
        (422, Some("Idempotency-Key"))
    );
    assert_eq!(app.head_seq().await, head, "nothing was written");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_valid_and_unexpired() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let body = kindergarten("II-AB 000040", &["K1"]);
    let none = app
        .send(
            app.client
                .post(app.url("/kindergarten/applications"))
                .json(&body),
        )
        .await;
    assert_eq!(none.status, 401);
    let forged = ochered_api::http::auth::mint(b"not-the-secret", Role::Parent, "p", 1);
    assert_eq!(
        app.post(&forged, "/kindergarten/applications", body.clone())
            .await
            .status,
        401
    );
    let expired =
        ochered_api::http::auth::mint(crate::helpers::SECRET.as_bytes(), Role::Parent, "p", -1);
    let answer = app.post(&expired, "/kindergarten/applications", body).await;
    assert_eq!(answer.status, 401);
    assert!(answer.body["detail"].as_str().unwrap().contains("expired"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_see_and_change_only_their_own_applications() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    assert_eq!(
        app.post(
            &parent(1),
            "/kindergarten/applications",
            kindergarten("II-AB 000050", &["K1"])
        )
        .await
        .status,
        201
    );
    let other = parent(2);
    assert_eq!(app.get(Some(&other), "/applications/1").await.status, 404);
    assert_eq!(
        app.get(Some(&other), "/applications/1/explanation")
            .await
            .status,
        404
    );
    assert_eq!(
        app.post(&other, "/applications/1/withdraw", json!({}))
            .await
            .status,
        404
    );
    let amend = json!({"preferences": ["K2"], "desired_start": "2027-09-01"});
    assert_eq!(
        app.post(&other, "/applications/1/preferences", amend.clone())
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(Some(&token(Role::Auditor, "aud")), "/applications/1")
            .await
            .status,
        403
    );
    // The owner and officers may.
    assert_eq!(
        app.post(&parent(1), "/applications/1/preferences", amend)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(Some(&officer()), "/applications/1").await.status,
        200
    );
    let withdrawn = app
        .post(
            &parent(1),
            "/applications/1/withdraw",
            json!({"reason": "moved away"}),
        )
        .await;
    assert_eq!(withdrawn.status, 200);
    let twice = app
        .post(&parent(1), "/applications/1/withdraw", json!({}))
        .await;
    assert_eq!(
        (twice.status, twice.body["code"].as_str()),
        (409, Some("application_not_active"))
    );
    assert_eq!(
        app.get(Some(&officer()), "/applications/999").await.status,
        404
    );
    assert_eq!(
        app.get(Some(&officer()), "/applications/abc").await.status,
        422
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn school_drafts_applications_and_clinic_bookings() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let school = |doc: &str| json!({"campaign": "school-2027", "document": doc, "birth_date": "2020-06-01", "schools": ["S1"]});
    let draft = app
        .post(&parent(1), "/school/drafts", school("II-AB 000060"))
        .await;
    assert_eq!(draft.status, 201, "{}", draft.body);
    let submitted = app
        .post(
            &parent(1),
            "/school/drafts/submit",
            json!({"campaign": "school-2027", "document": "II-AB 000060"}),
        )
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    assert_eq!(submitted.body["application"]["from_draft"], true);
    // Another parent cannot submit someone else's draft.
    app.post(&parent(1), "/school/drafts", school("II-AB 000061"))
        .await;
    let stolen = app
        .post(
            &parent(2),
            "/school/drafts/submit",
            json!({"campaign": "school-2027", "document": "II-AB 000061"}),
        )
        .await;
    assert_eq!(stolen.status, 404);
    let direct = app
        .post(&parent(3), "/school/applications", school("II-AB 000062"))
        .await;
    assert_eq!(direct.status, 201, "{}", direct.body);
    let too_young = app
        .post(&parent(4), "/school/applications", json!({"campaign": "school-2027", "document": "II-AB 000063", "birth_date": "2021-06-01", "schools": ["S1"]}))
        .await;
    assert_eq!(
        (too_young.status, too_young.field()),
        (422, Some("birth_date"))
    );
    let unknown = app
        .post(&parent(4), "/school/applications", json!({"campaign": "nope", "document": "II-AB 000064", "birth_date": "2020-06-01", "schools": ["S1"]}))
        .await;
    assert_eq!((unknown.status, unknown.field()), (404, Some("campaign")));
    let campaigns = app.get(None, "/campaigns").await;
    assert_eq!(campaigns.body["campaigns"][0]["id"], "school-2027");

    // Clinic: a slot is booked once; cancelling frees it; the registrar records no-shows.
    let free = app.get(None, "/slots?specialty=therapist").await;
    assert_eq!(free.body["free_slots"].as_array().unwrap().len(), 4);
    let booked = app
        .post(
            &parent(1),
            "/bookings",
            json!({"slot": "T0", "document": "PAT 000001"}),
        )
        .await;
    assert_eq!(booked.status, 201, "{}", booked.body);
    let taken = app
        .post(
            &parent(2),
            "/bookings",
            json!({"slot": "T0", "document": "PAT 000002"}),
        )
        .await;
    assert_eq!(
        (taken.status, taken.body["code"].as_str()),
        (409, Some("slot_taken"))
    );
    assert_eq!(
        app.post(&parent(2), "/bookings/1/cancel", json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(Some(&parent(1)), "/bookings").await.body["bookings"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.post(&parent(1), "/bookings/1/cancel", json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        app.post(
            &parent(2),
            "/bookings",
            json!({"slot": "T0", "document": "PAT 000002"})
        )
        .await
        .status,
        201
    );
    let early = app
        .post(
            &token(Role::Registrar, "r"),
            "/bookings/2/no-show",
            json!({}),
        )
        .await;
    assert_eq!((early.status, early.field()), (422, Some("booking")));
    let waiting = app
        .post(
            &parent(3),
            "/waiting-list",
            json!({"specialty": "therapist", "document": "PAT 000003"}),
        )
        .await;
    assert_eq!(waiting.status, 201);
    let jump = app
        .post(
            &parent(4),
            "/waiting-list",
            json!({"specialty": "therapist", "document": "PAT 000004", "tier": 0}),
        )
        .await;
    assert_eq!((jump.status, jump.field()), (403, Some("tier")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_reads_are_anonymised_and_audit_shows_the_chain_head() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    for n in 1..=3u32 {
        app.post(
            &parent(n),
            "/kindergarten/applications",
            kindergarten(&format!("II-AB 00007{n}"), &["K1"]),
        )
        .await;
    }
    let queues = app.get(None, "/queues").await;
    let queue = queues.body["queues"][0]["queue"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(queues.body["queues"][0]["size"], 3);
    let entries = app
        .get(None, &format!("/queues/{queue}?offset=1&limit=5"))
        .await;
    assert_eq!(entries.status, 200);
    let list = entries.body["entries"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["position"], 2);
    let text = entries.body.to_string();
    assert!(
        !text.contains("parent-") && !text.contains("birth"),
        "no personal data: {text}"
    );
    assert_eq!(app.get(None, "/queues/nope").await.status, 404);
    let head = app.get(None, "/audit/head").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body["head_hash"].as_str().unwrap().len(), 64);
    let missing = app
        .send(
            app.client
                .get(format!("{}/api/v1/authorities/nowhere/queues", app.base)),
        )
        .await;
    assert_eq!(missing.status, 404);
    let info = app.get(None, "").await;
    assert_eq!(info.body["active_applications"], 3);
    let health = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .client
        .get(format!("{}/ready", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = app.text("/metrics").await;
    assert!(metrics.contains("ochered_http_requests_total"), "{metrics}");
    assert!(metrics.contains("ochered_writer_queue_depth"));
    assert!(!metrics.contains("II-AB"), "no personal data in metrics");
    app.stop().await;
}

/// Every endpoint, every role: allowed roles get past authorisation (any status but 401/403),
/// the others get 403, and no token gets 401 on protected endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_with_every_role() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    app.post(
        &parent(1),
        "/kindergarten/applications",
        kindergarten("II-AB 000090", &["K1"]),
    )
    .await;
    let roles = [
        Role::Parent,
        Role::Officer,
        Role::Registrar,
        Role::Auditor,
        Role::Admin,
    ];
    use Role::*;
    let privilege = json!({"privilege": {"kind": "extraordinary"}});
    let endpoints: Vec<(&str, &str, Value, Vec<Role>)> = vec![
        (
            "POST",
            "/institutions",
            json!({"id": "K9", "kind": "kindergarten", "name": "n"}),
            vec![Officer, Registrar, Admin],
        ),
        (
            "POST",
            "/kindergarten/applications",
            kindergarten("II-AB 000091", &["K1"]),
            vec![Parent, Officer, Admin],
        ),
        ("GET", "/applications", Value::Null, vec![Parent, Admin]),
        (
            "GET",
            "/applications/1",
            Value::Null,
            vec![Parent, Officer, Admin],
        ),
        (
            "GET",
            "/applications/1/explanation",
            Value::Null,
            vec![Parent, Officer, Admin],
        ),
        (
            "POST",
            "/applications/1/preferences",
            json!({"preferences": ["K1"], "desired_start": "2027-09-01"}),
            vec![Parent, Officer, Admin],
        ),
        (
            "POST",
            "/applications/1/privileges",
            privilege.clone(),
            vec![Parent, Officer, Admin],
        ),
        (
            "POST",
            "/applications/1/privileges/confirm",
            privilege.clone(),
            vec![Officer, Admin],
        ),
        (
            "POST",
            "/applications/1/privileges/revoke",
            json!({"privilege": {"kind": "extraordinary"}, "reason": "r"}),
            vec![Officer, Admin],
        ),
        ("POST", "/campaigns", json!({}), vec![Officer, Admin]),
        (
            "POST",
            "/school/drafts",
            json!({"campaign": "school-2027", "document": "II-AB 000092", "birth_date": "2020-06-01", "schools": ["S1"]}),
            vec![Parent, Admin],
        ),
        (
            "POST",
            "/school/drafts/submit",
            json!({"campaign": "school-2027", "document": "II-AB 000092"}),
            vec![Parent, Admin],
        ),
        (
            "POST",
            "/school/applications",
            json!({"campaign": "school-2027", "document": "II-AB 000093", "birth_date": "2020-06-01", "schools": ["S1"]}),
            vec![Parent, Officer, Admin],
        ),
        (
            "POST",
            "/school/age-exceptions",
            json!({"campaign": "school-2027", "document": "II-AB 000094"}),
            vec![Officer, Admin],
        ),
        (
            "POST",
            "/specialties",
            json!({"specialty": "dentist"}),
            vec![Registrar, Admin],
        ),
        (
            "POST",
            "/slots",
            json!({"doctor": "d", "specialty": "therapist", "slots": []}),
            vec![Registrar, Admin],
        ),
        (
            "POST",
            "/bookings",
            json!({"slot": "T1", "document": "PAT 000090"}),
            vec![Parent, Registrar, Admin],
        ),
        ("GET", "/bookings", Value::Null, vec![Parent, Admin]),
        (
            "POST",
            "/bookings/1/cancel",
            Value::Null,
            vec![Parent, Registrar, Admin],
        ),
        (
            "POST",
            "/bookings/1/no-show",
            Value::Null,
            vec![Registrar, Admin],
        ),
        (
            "POST",
            "/waiting-list",
            json!({"specialty": "therapist", "document": "PAT 000091"}),
            vec![Parent, Registrar, Admin],
        ),
        (
            "POST",
            "/waiting-list/places",
            json!({"document": "PAT 000091"}),
            vec![Parent, Registrar, Admin],
        ),
        (
            "GET",
            "/clinic/schedule?date=2030-01-01",
            Value::Null,
            vec![Registrar, Admin],
        ),
        (
            "GET",
            "/clinic/waiting-lists",
            Value::Null,
            vec![Registrar, Admin],
        ),
        (
            "POST",
            "/waiting-list/leave",
            json!({"specialty": "therapist", "document": "PAT 000091"}),
            vec![Parent, Registrar, Admin],
        ),
        (
            "GET",
            "/campaigns/school-2027/enrollment-order",
            Value::Null,
            vec![Officer, Admin],
        ),
    ];
    for (method, path, body, allowed) in &endpoints {
        for role in roles {
            let who = token(role, &format!("{}-x", role.as_str()));
            let request = match *method {
                "GET" => app.client.get(app.url(path)),
                _ => app.client.post(app.url(path)).json(body),
            };
            let answer = app.send(request.bearer_auth(&who)).await;
            if allowed.contains(&role) {
                assert!(
                    answer.status != 401 && answer.status != 403 || answer.field().is_some(),
                    "{method} {path} as {}: {} {}",
                    role.as_str(),
                    answer.status,
                    answer.body
                );
            } else {
                assert_eq!(
                    answer.status,
                    403,
                    "{method} {path} as {}: {}",
                    role.as_str(),
                    answer.body
                );
            }
        }
        let request = match *method {
            "GET" => app.client.get(app.url(path)),
            _ => app.client.post(app.url(path)).json(body),
        };
        assert_eq!(
            app.send(request).await.status,
            401,
            "{method} {path} without a token"
        );
    }
    // Configuring an authority is for admins only.
    for role in [Parent, Officer, Registrar, Auditor] {
        let answer = app
            .send(
                app.client
                    .post(format!("{}/api/v1/authorities", app.base))
                    .bearer_auth(token(role, "x"))
                    .json(&json!({"id": "other", "name": "Other", "time_zone": "Europe/Moscow"})),
            )
            .await;
        assert_eq!(answer.status, 403);
    }
    // Public reads need no token.
    for path in [
        "",
        "/institutions",
        "/campaigns",
        "/slots",
        "/queues",
        "/audit/head",
        "/transparency/heads",
    ] {
        assert_eq!(app.get(None, path).await.status, 200, "GET {path}");
    }
    let _ = AUTHORITY;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_run_rounds_parents_answer_offers_auditors_reproduce_them() {
    each_backend(async |app: TestApp| {
        app.set_up_authority().await;
        for n in 1..=4u32 {
            let a = app.post(&parent(n), "/kindergarten/applications", kindergarten(&format!("II-AB 00010{n}"), &["K1", "K2"])).await;
            assert_eq!(a.status, 201, "{}", a.body);
        }
        let seats = |inst: &str, n: u32| json!({"institution": inst, "intake_year": 2027, "seats": [{"age_group": 3, "seats": n}]});
        assert_eq!(app.post(&parent(1), "/kindergarten/seats", seats("K1", 2)).await.status, 403);
        let published = app.post(&officer(), "/kindergarten/seats", seats("K1", 2)).await;
        assert_eq!(published.status, 201, "{}", published.body);
        assert_eq!(app.post(&officer(), "/kindergarten/seats", seats("K2", 1)).await.status, 201);
        let bad = app.post(&officer(), "/kindergarten/seats", seats("NOPE", 1)).await;
        assert_eq!((bad.status, bad.field()), (422, Some("institution")));

        let round = app.post(&officer(), "/kindergarten/rounds", json!({"round": "main-2027", "intake_year": 2027})).await;
        assert_eq!(round.status, 201, "{}", round.body);
        assert_eq!(round.body["round"]["placed"], 3, "{}", round.body);
        let again = app.post(&officer(), "/kindergarten/rounds", json!({"round": "main-2027", "intake_year": 2027})).await;
        assert_eq!(again.status, 409);

        // The first two children (by registration time) got K1, the third K2.
        let placements = round.body["round"]["placements"].as_array().unwrap().clone();
        let placed: Vec<u64> = placements.iter().map(|p| p["application"].as_u64().unwrap()).collect();
        assert_eq!(placed.len(), 3);
        assert!(!placed.contains(&4));
        assert_eq!(app.post(&parent(2), "/applications/1/offer/accept", json!({})).await.status, 404, "not theirs");
        let accepted = app.post(&parent(1), "/applications/1/offer/accept", json!({})).await;
        assert_eq!(accepted.status, 200, "{}", accepted.body);
        let declined = app.post(&parent(2), "/applications/2/offer/decline", json!({})).await;
        assert_eq!(declined.status, 200, "{}", declined.body);
        // Anyone may read the seats: K1 keeps the accepted place and got the declined one back,
        // K2's one seat is held by the third child's open offer.
        let seats_now = app.get(None, "/kindergarten/seats?intake_year=2027").await;
        assert_eq!(seats_now.status, 200, "{}", seats_now.body);
        let by_institution: Vec<(String, u64, u64, u64)> = seats_now.body["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["institution"].as_str().unwrap().to_owned(),
                    g["published"].as_u64().unwrap(),
                    g["taken"].as_u64().unwrap(),
                    g["free"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            by_institution,
            vec![("K1".into(), 2, 1, 1), ("K2".into(), 1, 1, 0)],
            "{}",
            seats_now.body
        );
        let other_year = app.get(None, "/kindergarten/seats?intake_year=2030").await;
        assert_eq!(other_year.body["seats"], json!([]));
        let bad_year = app.get(None, "/kindergarten/seats?intake_year=soon").await;
        assert_eq!((bad_year.status, bad_year.field()), (422, Some("intake_year")));
        let no_offer = app.post(&parent(4), "/applications/4/offer/accept", json!({})).await;
        assert_eq!(no_offer.status, 409, "{}", no_offer.body);
        let status = app.get(Some(&parent(1)), "/applications/1").await;
        assert_eq!(status.body["status"], "enrolled", "{}", status.body);

        // Auditors see the round without personal answers and can re-run it.
        let auditor = token(Role::Auditor, "aud-1");
        let public_view = app.get(Some(&auditor), "/rounds/main-2027").await;
        assert_eq!(public_view.status, 200);
        assert!(public_view.body["placements"][0].get("status").is_none(), "{}", public_view.body);
        assert_eq!(app.get(Some(&parent(1)), "/rounds/main-2027").await.status, 403);
        let instance = app.get(Some(&auditor), "/rounds/main-2027/instance").await;
        assert_eq!(instance.status, 200);
        let solved: Value = serde_json::from_str(
            &ochered_core::allocation::solve_instance_json(&instance.body.to_string()).unwrap(),
        )
        .unwrap();
        let assigned = solved["assignments"].as_object().unwrap().values().filter(|v| !v.is_null()).count();
        assert_eq!(assigned, 3, "re-running the exported instance gives the round's placements");
        let rounds = app.get(Some(&officer()), "/rounds").await;
        assert_eq!(rounds.body["rounds"].as_array().map(|r| r.len()), Some(1), "{}", rounds.body);
        assert_eq!(app.get(Some(&officer()), "/rounds/nope").await.status, 404);
        app.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specialties_are_listed_publicly_with_counts_only() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let registrar = token(Role::Registrar, "r");
    let a = app
        .post(
            &registrar,
            "/specialties",
            json!({"specialty": "surgeon", "referral_only": true}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    for n in 1..=2u32 {
        let a = app
            .post(
                &parent(n),
                "/waiting-list",
                json!({"specialty": "therapist", "document": format!("PAT 00010{n}")}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    // No token: public.
    let list = app.get(None, "/specialties").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.body,
        json!({"specialties": [
            {"id": "surgeon", "referral_only": true, "waiting": 0},
            {"id": "therapist", "referral_only": false, "waiting": 2},
        ]})
    );
    // Nothing personal: no document, no key, no account of who waits.
    let text = list.body.to_string();
    assert!(!text.contains("PAT") && !text.contains("parent"), "{text}");
    // The answer matches its schema in the served document.
    let doc = app.openapi().await;
    let op = &doc["paths"]["/api/v1/authorities/{authority}/specialties"]["get"];
    assert!(op["security"].is_null(), "public: {op}");
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SpecialtiesList"
    );
    let unknown = app
        .send(app.client.get(format!(
            "{}/api/v1/authorities/nowhere/specialties",
            app.base
        )))
        .await;
    assert_eq!((unknown.status, unknown.field()), (404, Some("authority")));
    app.stop().await;
}

//! Personal data (docs/RULES.md#privacy): names, contacts and the document as typed are
//! sealed per applicant and never stored in plain text; officers and the submitting parent
//! read them back, auditors and other parents do not; an erasure destroys the applicant's key
//! (crypto-shredding) while the chain still verifies and no queue position moves.

use std::sync::Arc;

use ochered_api::http::auth::Role;
use ochered_store::testing::{Harness, Raw};
use ochered_store::VerifyOutcome;
use serde_json::{json, Value};

use crate::helpers::{config_for, kindergarten, spawn_configured, token, TestApp, AUTHORITY};

const CHILD_NAME: &str = "Злата Пряникова";
const GUARDIAN_NAME: &str = "Устинья Пряникова";
const PHONE: &str = "+7 913 555-01-77";
const EMAIL: &str = "ustinya.pr@example.org";
const DOCUMENT: &str = "IV-ЖЖ 918273";

const SCHOOL_CHILD: &str = "Мирон Колокольцев";
const SCHOOL_EMAIL: &str = "kolokoltsev@example.org";
const SCHOOL_DOCUMENT: &str = "II-ЮЮ 554433";

fn contact() -> Value {
    json!({
        "child_name": CHILD_NAME,
        "guardian_name": GUARDIAN_NAME,
        "phone": PHONE,
        "email": EMAIL,
    })
}

/// Every personal string a test submits; none may be stored in plain text.
const PERSONAL: [&str; 8] = [
    CHILD_NAME,
    GUARDIAN_NAME,
    PHONE,
    EMAIL,
    DOCUMENT,
    SCHOOL_CHILD,
    SCHOOL_EMAIL,
    SCHOOL_DOCUMENT,
];

/// Runs the scenario on SQLite and, when reachable, PostgreSQL, with access to the store.
async fn on_each_backend(test: impl AsyncFn(TestApp, Arc<Harness>)) {
    let sqlite = Arc::new(Harness::sqlite().await);
    let app = spawn_configured(sqlite.clone(), "sqlite", config_for(sqlite.url.clone())).await;
    test(app, sqlite).await;
    if let Some(pg) = Harness::postgres().await {
        let pg = Arc::new(pg);
        let app = spawn_configured(pg.clone(), "postgres", config_for(pg.url.clone())).await;
        test(app, pg).await;
    }
}

/// Everything stored where a request's data could end up: the event records (payloads,
/// metadata and idempotency facts) and snapshots, as text.
async fn stored_texts(harness: &Harness) -> Vec<String> {
    let mut texts = Vec::new();
    for sql in [
        "SELECT record FROM log",
        "SELECT state FROM snapshots",
        "SELECT bytes FROM snapshot_chunks",
    ] {
        let rows: Vec<Vec<u8>> = match &harness.raw {
            Raw::Sqlite(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await.unwrap(),
            Raw::Pg(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await.unwrap(),
        };
        texts.extend(
            rows.into_iter()
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
        );
    }
    texts
}

/// The SQLite file and its WAL, as bytes.
fn sqlite_bytes(harness: &Harness) -> Vec<u8> {
    let path = harness.sqlite_path.clone().expect("a SQLite harness");
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(std::path::PathBuf::from(wal)).unwrap_or_default());
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn wrapped_key(harness: &Harness, person: &str) -> Option<Vec<u8>> {
    let sql = match &harness.raw {
        Raw::Sqlite(_) => "SELECT wrapped FROM data_keys WHERE authority = ?1 AND person = ?2",
        Raw::Pg(_) => "SELECT wrapped FROM data_keys WHERE authority = $1 AND person = $2",
    };
    match &harness.raw {
        Raw::Sqlite(s) => sqlx::query_scalar(sql)
            .bind(AUTHORITY)
            .bind(person)
            .fetch_optional(s.pool())
            .await
            .unwrap(),
        Raw::Pg(s) => sqlx::query_scalar(sql)
            .bind(AUTHORITY)
            .bind(person)
            .fetch_optional(s.pool())
            .await
            .unwrap(),
    }
}

/// Each application's positions (queue and place), as an officer sees them.
async fn positions(app: &TestApp, n: u32) -> Vec<Value> {
    let officer = token(Role::Officer, "officer-1");
    let mut all = Vec::new();
    for number in 1..=n {
        let a = app
            .get(Some(&officer), &format!("/applications/{number}"))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        all.push(json!([number, a.body["status"], a.body["positions"]]));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_sealed_readable_by_the_right_people_and_shredded_on_erasure() {
    on_each_backend(async |app: TestApp, harness: Arc<Harness>| {
        let backend = app.backend;
        app.set_up_authority().await;
        let officer = token(Role::Officer, "officer-1");
        let registrar = token(Role::Registrar, "registrar-1");
        let auditor = token(Role::Auditor, "auditor-1");
        let parent = token(Role::Parent, "parent-1");
        let other_parent = token(Role::Parent, "parent-2");

        // A kindergarten application with a contact; retried with the same key it is the
        // same request (sealing is deterministic for the same person and data).
        let mut body = kindergarten(DOCUMENT, &["K1", "K2"]);
        body["contact"] = contact();
        let a = app
            .post_keyed(&parent, "/kindergarten/applications", "k-1", body.clone())
            .await;
        assert_eq!(a.status, 201, "{backend}: {}", a.body);
        assert_eq!(a.body["application"]["number"], 1);
        let retry = app
            .post_keyed(&parent, "/kindergarten/applications", "k-1", body)
            .await;
        assert_eq!(retry.status, 201, "{backend}: {}", retry.body);
        assert_eq!(retry.headers["idempotent-replayed"], "true");
        // Others without a contact, in the same queues.
        for (n, who) in [(2, "parent-2"), (3, "parent-3")] {
            let a = app
                .post(
                    &token(Role::Parent, who),
                    "/kindergarten/applications",
                    kindergarten(&format!("IV-AB {n:06}"), &["K1", "K2"]),
                )
                .await;
            assert_eq!(a.status, 201, "{backend}: {}", a.body);
        }
        // A first-grade application with a contact (email only), typed in by an officer.
        let school = json!({
            "campaign": "school-2027", "document": SCHOOL_DOCUMENT, "birth_date": "2020-06-01",
            "schools": ["S1"],
            "contact": {"child_name": SCHOOL_CHILD, "guardian_name": GUARDIAN_NAME, "email": SCHOOL_EMAIL},
        });
        let a = app.post(&officer, "/school/applications", school).await;
        assert_eq!(a.status, 201, "{backend}: {}", a.body);
        assert_eq!(a.body["application"]["number"], 4);

        // Nothing personal is stored in plain text: not in any event, stored answer or
        // snapshot, and (SQLite) nowhere in the database file or its WAL.
        let texts = stored_texts(&harness).await;
        assert!(texts.iter().any(|t| t.contains("sealed")), "{backend}: sealed values are in the log");
        for text in &texts {
            for secret in PERSONAL {
                assert!(!text.contains(secret), "{backend}: {secret:?} stored in plain text: {text}");
            }
        }
        if harness.sqlite_path.is_some() {
            let bytes = sqlite_bytes(&harness);
            for secret in PERSONAL {
                assert!(!contains(&bytes, secret.as_bytes()), "{backend}: {secret:?} in the SQLite file");
            }
        }

        // The officer and the submitting parent read the contact back, with the document as
        // typed; auditors, registrars and other parents do not.
        let expected = json!({
            "child_name": CHILD_NAME, "guardian_name": GUARDIAN_NAME,
            "phone": PHONE, "email": EMAIL, "document": DOCUMENT,
        });
        for who in [&officer, &parent] {
            let a = app.get(Some(who), "/applications/1").await;
            assert_eq!(a.status, 200, "{backend}: {}", a.body);
            assert_eq!(a.body["contact"], expected, "{backend}");
            assert_eq!(a.body["erased"], false);
        }
        let a = app.get(Some(&officer), "/applications/4").await;
        assert_eq!(a.body["contact"]["email"], SCHOOL_EMAIL, "{backend}: {}", a.body);
        assert_eq!(a.body["contact"]["phone"], Value::Null);
        let a = app.get(Some(&officer), "/applications/2").await;
        assert_eq!(a.body["contact"], Value::Null, "{backend}: no contact given");
        for (who, status) in [(&auditor, 403), (&registrar, 403), (&other_parent, 404)] {
            let a = app.get(Some(who), "/applications/1").await;
            assert_eq!(a.status, status, "{backend}: {}", a.body);
            assert!(!a.body.to_string().contains(CHILD_NAME));
        }
        // The auditor's anonymised queue shows nothing personal either.
        let queues = app.get(Some(&auditor), "/queues").await;
        assert_eq!(queues.status, 200, "{backend}: {}", queues.body);
        for secret in PERSONAL {
            assert!(!queues.body.to_string().contains(secret));
        }

        // Erasure of the first child, by document.
        let before = positions(&app, 4).await;
        let person = ochered_core::domain::PersonKey::derive(
            b"test-person-secret",
            &ochered_core::domain::DocumentNumber::parse(DOCUMENT).unwrap(),
        )
        .to_hex();
        let wrapped = wrapped_key(&harness, &person)
            .await
            .expect("a data key was made for the applicant");
        if harness.sqlite_path.is_some() {
            assert!(contains(&sqlite_bytes(&harness), &wrapped), "the wrapped key is on disk");
        }
        for who in [&officer, &auditor, &parent] {
            let a = app.post(who, "/erasures", json!({"document": DOCUMENT})).await;
            assert_eq!(a.status, 403, "{backend}: {}", a.body);
        }
        let head_before = app.head_seq().await;
        let a = app.post(&registrar, "/erasures", json!({"document": DOCUMENT})).await;
        assert_eq!(a.status, 201, "{backend}: {}", a.body);
        assert_eq!(a.body["key_destroyed"], true);
        assert_eq!(a.body["applications"], json!([1]));
        assert_eq!(a.body["erased"], json!([1]));
        assert_eq!(a.body["person"], person);
        assert_eq!(a.body["events"][0]["event"]["type"], "PersonalDataErased");
        assert_eq!(app.head_seq().await, head_before + 1, "one event records the erasure");

        // The key row is gone (and on SQLite its bytes are no longer in the file).
        assert_eq!(wrapped_key(&harness, &person).await, None, "{backend}");
        if harness.sqlite_path.is_some() {
            assert!(
                !contains(&sqlite_bytes(&harness), &wrapped),
                "the destroyed key's bytes must leave the SQLite file and its WAL"
            );
        }
        // Nobody reads the contact any more; other applicants' contacts are untouched.
        for who in [&officer, &parent] {
            let a = app.get(Some(who), "/applications/1").await;
            assert_eq!(a.status, 200, "{backend}: {}", a.body);
            assert_eq!(a.body["contact"], Value::Null, "{backend}");
            assert_eq!(a.body["erased"], true);
        }
        let a = app.get(Some(&officer), "/applications/4").await;
        assert_eq!(a.body["contact"]["child_name"], SCHOOL_CHILD, "{backend}");
        // No queue position of any application moved, and the chain still verifies.
        assert_eq!(positions(&app, 4).await, before, "{backend}: positions moved");
        match harness.store.verify(AUTHORITY).await.unwrap() {
            VerifyOutcome::Ok { head, .. } => assert_eq!(head.authority_seq, head_before + 1),
            broken => panic!("{backend}: chain broken after erasure: {broken:?}"),
        }

        // Twice is harmless; by application number too; an unknown person is a 404.
        let head = app.head_seq().await;
        let a = app.post(&registrar, "/erasures", json!({"document": DOCUMENT})).await;
        assert_eq!(a.status, 200, "{backend}: {}", a.body);
        assert_eq!(a.body["key_destroyed"], false);
        assert_eq!(a.body["applications"], json!([]));
        let a = app.post(&registrar, "/erasures", json!({"application": 1})).await;
        assert_eq!(a.status, 200, "{backend}: {}", a.body);
        assert_eq!(app.head_seq().await, head, "repeated erasures record nothing");
        let a = app.post(&registrar, "/erasures", json!({"document": "IV-ZZ 999999"})).await;
        assert_eq!(a.status, 404, "{backend}: {}", a.body);
        assert_eq!(a.field(), Some("document"));
        let a = app.post(&registrar, "/erasures", json!({"application": 99})).await;
        assert_eq!((a.status, a.field()), (404, Some("application")), "{backend}: {}", a.body);
        let a = app.post(&registrar, "/erasures", json!({})).await;
        assert_eq!(a.status, 422, "{backend}: {}", a.body);

        // After a restart (a replay of the log) the erasure holds and the rest reads back.
        let url = harness.url.clone();
        app.stop().await;
        let app = spawn_configured(harness.clone(), backend, config_for(url)).await;
        let a = app.get(Some(&officer), "/applications/1").await;
        assert_eq!((a.body["erased"].clone(), a.body["contact"].clone()), (json!(true), Value::Null));
        let a = app.get(Some(&officer), "/applications/4").await;
        assert_eq!(a.body["contact"]["email"], SCHOOL_EMAIL, "{backend}: {}", a.body);
        assert_eq!(positions(&app, 4).await, before, "{backend}: positions moved on replay");
        app.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_contacts_are_refused_naming_the_field_and_write_nothing() {
    on_each_backend(async |app: TestApp, harness: Arc<Harness>| {
        let backend = app.backend;
        app.set_up_authority().await;
        let parent = token(Role::Parent, "parent-1");
        let keys = || async {
            harness
                .count("SELECT COUNT(*) FROM data_keys")
                .await
        };
        let head = app.head_seq().await;
        let keys_before = keys().await;
        let long_name = "Я".repeat(201);
        let cases = [
            (json!({"child_name": "A B", "guardian_name": "C D", "phone": "call me"}), "contact.phone"),
            (json!({"child_name": "A B", "guardian_name": "C D", "phone": "+7 12"}), "contact.phone"),
            (json!({"child_name": "A B", "guardian_name": "C D", "phone": 79130000000u64}), "contact.phone"),
            (json!({"child_name": "A B", "guardian_name": "C D", "email": "not-an-email"}), "contact.email"),
            (json!({"child_name": "A B", "guardian_name": "C D", "email": "a@b"}), "contact.email"),
            (json!({"child_name": "  ", "guardian_name": "C D", "email": "a@b.org"}), "contact.child_name"),
            (json!({"child_name": long_name, "guardian_name": "C D", "email": "a@b.org"}), "contact.child_name"),
            (json!({"child_name": "A B", "guardian_name": "C\u{0007}D", "email": "a@b.org"}), "contact.guardian_name"),
            (json!({"child_name": "A B", "guardian_name": "C D"}), "contact.phone"),
        ];
        for (contact, field) in cases {
            let mut body = kindergarten(DOCUMENT, &["K1"]);
            body["contact"] = contact.clone();
            let a = app.post(&parent, "/kindergarten/applications", body).await;
            assert!((400..500).contains(&a.status), "{backend}: {contact} gave {}", a.status);
            assert_eq!(a.field(), Some(field), "{backend}: {contact}: {}", a.body);
        }
        // An unknown field inside the contact is named too.
        let mut body = kindergarten(DOCUMENT, &["K1"]);
        body["contact"] = json!({"child_name": "A B", "guardian_name": "C D", "email": "a@b.org", "passport": "x"});
        let a = app.post(&parent, "/kindergarten/applications", body).await;
        assert_eq!(a.status, 422, "{backend}: {}", a.body);
        assert!(a.field().unwrap_or("").starts_with("contact"), "{backend}: {}", a.body);
        // A good contact with bad other input: refused before any data key is made.
        let mut body = kindergarten(DOCUMENT, &["K9"]);
        body["contact"] = contact();
        let a = app.post(&parent, "/kindergarten/applications", body).await;
        assert_eq!((a.status, a.field()), (422, Some("preferences")), "{backend}: {}", a.body);
        assert_eq!(app.head_seq().await, head, "{backend}: the chain head moved");
        assert_eq!(keys().await, keys_before, "{backend}: a data key was made for a refused request");
        app.stop().await;
    })
    .await;
}

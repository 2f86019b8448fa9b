//! A log written by the schema-v1 code (`fixtures/v1.db`, see `fixtures/README.md`) under
//! today's code: it reads, verifies and replays as before, its idempotency keys still answer
//! retries, its chains continue with v2 events that verify, and it exports as JSON lines.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use ochered_core::command::Command;
use ochered_core::Event;
use ochered_store::{EventStore, PayloadFormat, SqliteStore, VerifyOutcome};
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::{load_state, Outcome, RequestMeta, Writer, WriterConfig, WriterError};
use serde_json::Value;

/// A fresh copy of the fixture (the test writes to it) and what the v1 code reported.
async fn v1_store() -> (tempfile::TempDir, Arc<SqliteStore>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(fixtures.join("v1.db"), &path).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("v1.json")).unwrap()).unwrap();
    let store = Arc::new(
        SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap(),
    );
    assert!(store.has_v1_rows());
    (dir, store, expected)
}

/// The command the fixture's program sent for seed `n` (without the sealed contacts, which
/// change the request; those are sent for keys whose `sealed` is false only).
fn application(n: u64) -> Command {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
    let mut rng = SeededRng::new(n);
    demo::kindergarten_application(&mut rng, n, &DemoShape::default(), today)
}

fn config() -> WriterConfig {
    WriterConfig {
        clock: Arc::new(|| Utc.with_ymd_and_hms(2026, 2, 2, 9, 0, 0).unwrap()),
        ..WriterConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_log_reads_verifies_and_replays_as_before() {
    let (_dir, store, expected) = v1_store().await;
    assert_eq!(
        store.authorities().await.unwrap(),
        vec!["v1-city".to_string(), "v1-town".to_string()]
    );
    for (authority, facts) in expected.as_object().unwrap() {
        let head_seq = facts["head_seq"].as_i64().unwrap();
        let head_hash = facts["head_hash"].as_str().unwrap();
        match store.verify(authority).await.unwrap() {
            VerifyOutcome::Ok { head, events } => {
                assert_eq!(head.authority_seq, head_seq);
                assert_eq!(head.hash, head_hash);
                assert_eq!(events as i64, head_seq);
            }
            broken => panic!("{authority}: {broken:?}"),
        }
        let events = store.read(authority, 0, 1000).await.unwrap();
        assert!(events.iter().all(|e| e.format == PayloadFormat::Json));
        for e in &events {
            ochered_writer::decode_event(e).unwrap();
        }
        // From the snapshot (of the older layout: not used) or from the start, the same state.
        let (state, stats) = load_state(store.as_ref(), authority).await.unwrap();
        assert_eq!(state.state_hash(), facts["state_hash"].as_str().unwrap());
        assert_eq!(stats.head.hash, head_hash);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_keys_answer_retries_and_the_chain_continues_with_v2_events() {
    let (_dir, store, expected) = v1_store().await;
    let city = &expected["v1-city"];
    let (writer, _) = Writer::start(store.clone(), "v1-city", config())
        .await
        .unwrap();
    assert_eq!(
        writer.read(|s| s.state_hash()),
        city["state_hash"].as_str().unwrap()
    );
    let key_of = |seed: u64| {
        city["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["seed"] == seed)
            .unwrap()
            .clone()
    };
    // A retry of a v1 request: the first answer, from the v1 idempotency table.
    let first = key_of(3);
    assert_eq!(first["sealed"], false);
    assert_eq!(
        hex::encode(ochered_writer::request_hash(&application(3))),
        first["request_hash"].as_str().unwrap()
    );
    let meta = |key: &str| RequestMeta {
        idempotency_key: Some(key.to_owned()),
        actor: Some("parent:3".into()),
        ..RequestMeta::default()
    };
    let reply = writer
        .submit(application(3), meta(first["key"].as_str().unwrap()))
        .await
        .unwrap();
    assert!(reply.replayed);
    let Outcome::Accepted { events } = &reply.outcome else {
        panic!("{reply:?}")
    };
    assert!(matches!(
        events[0].event,
        Event::KindergartenApplicationSubmitted { .. }
    ));
    // The same v1 key for another request is refused.
    assert_eq!(
        writer
            .submit(application(4), meta(first["key"].as_str().unwrap()))
            .await,
        Err(WriterError::KeyReused)
    );
    // New submissions go into v2 rows that continue the v1 chain.
    let head_before = writer.head();
    for n in 100..110 {
        let reply = writer
            .submit(application(n), meta(&format!("v2:{n}")))
            .await
            .unwrap();
        assert!(
            matches!(reply.outcome, Outcome::Accepted { .. }),
            "{reply:?}"
        );
    }
    let v2 = store
        .read("v1-city", head_before.authority_seq, 100)
        .await
        .unwrap();
    assert_eq!(v2.len(), 10);
    assert!(v2.iter().all(|e| e.format == PayloadFormat::Cbor));
    assert_eq!(hex::encode(v2[0].prev_hash), head_before.hash);
    match store.verify("v1-city").await.unwrap() {
        VerifyOutcome::Ok { events, .. } => assert_eq!(events, 69 + 10),
        broken => panic!("{broken:?}"),
    }
    // A v2 retry and a v1 retry both still answer after a restart.
    drop(writer);
    let (writer, _) = Writer::start(store.clone(), "v1-city", config())
        .await
        .unwrap();
    for (n, key) in [
        (105, "v2:105".to_string()),
        (3, first["key"].as_str().unwrap().to_owned()),
    ] {
        let reply = writer.submit(application(n), meta(&key)).await.unwrap();
        assert!(reply.replayed, "{key}");
    }
    // The whole log exports as JSON lines: v1 lines carry their text, v2 lines rebuild their
    // exact records and hashes.
    let mut out = Vec::new();
    let written = ochered_writer::audit::export_jsonl(store.as_ref(), Some("v1-city"), &mut out)
        .await
        .unwrap();
    assert_eq!(written, 79);
    let lines: Vec<Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let stored = store.read("v1-city", 0, 1000).await.unwrap();
    for (line, e) in lines.iter().zip(&stored) {
        assert_eq!(line["authority_seq"], e.authority_seq);
        assert_eq!(line["hash"], e.hash_hex());
        if e.format == PayloadFormat::Cbor {
            let (record, hash) = ochered_writer::audit::record_of_export(line).unwrap();
            assert_eq!(record, e.record);
            assert_eq!(hash, e.hash);
        } else {
            assert_eq!(line["v1_payload"].as_str().unwrap().as_bytes(), e.payload());
        }
    }
}

/// An institution registered before institutions had districts (a current-version CBOR
/// payload without `district` and `address`) decodes with none, and an event without them
/// encodes to exactly the old bytes: the hashes of logs written before do not change.
#[test]
fn an_institution_registered_before_districts_keeps_its_cbor_bytes() {
    #[derive(serde::Serialize)]
    struct Before<'a> {
        r#type: &'a str,
        id: &'a str,
        kind: &'a str,
        name: &'a str,
    }
    let old = ochered_store::cbor::to_vec(&Before {
        r#type: "InstitutionRegistered",
        id: "K1",
        kind: "kindergarten",
        name: "Kindergarten 1",
    })
    .unwrap();
    let event: Event = ochered_store::cbor::from_slice(&old).unwrap();
    let Event::InstitutionRegistered {
        district, address, ..
    } = &event
    else {
        panic!("decoded as {event:?}");
    };
    assert_eq!((district, address), (&None, &None));
    assert_eq!(ochered_store::cbor::to_vec(&event).unwrap(), old);
}

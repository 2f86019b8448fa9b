//! The commit hook (`WriterConfig::on_commit`, which feeds the transparency tree): told every
//! committed batch's chain hashes, in log order, before any of its commands is acknowledged.

use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use ochered_store::testing::Harness;
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::{Outcome, RequestMeta, Writer, WriterConfig};

const AUTHORITY: &str = "hook-city";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_is_told_every_committed_hash_in_order_before_the_answer() {
    let harness = Harness::sqlite().await;
    let told: Arc<Mutex<Vec<[u8; 32]>>> = Arc::default();
    let hook: ochered_writer::CommitHook = {
        let told = told.clone();
        Arc::new(move |authority: &str, first: i64, hashes: &[[u8; 32]]| {
            assert_eq!(authority, AUTHORITY);
            let mut told = told.lock().unwrap();
            assert_eq!(
                first as usize,
                told.len() + 1,
                "batches arrive in log order"
            );
            told.extend_from_slice(hashes);
        })
    };
    let config = WriterConfig {
        clock: Arc::new(|| Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap()),
        on_commit: Some(hook),
        ..WriterConfig::default()
    };
    let (writer, _) = Writer::start(harness.store.clone(), AUTHORITY, config)
        .await
        .unwrap();
    let slots_from = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    for command in demo::setup_commands(AUTHORITY, &DemoShape::default(), slots_from) {
        writer
            .submit(command, RequestMeta::default())
            .await
            .unwrap();
    }
    let today = chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
    let mut tasks = Vec::new();
    for n in 1..=300u64 {
        let writer = writer.clone();
        let told = told.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SeededRng::new(n);
            let command = demo::kindergarten_application(&mut rng, n, &DemoShape::default(), today);
            let reply = writer
                .submit(command, RequestMeta::default())
                .await
                .unwrap();
            let Outcome::Accepted { events } = reply.outcome else {
                return;
            };
            // Acknowledged only once the hook holds the event.
            let seq = events.last().unwrap().authority_seq as usize;
            assert!(
                told.lock().unwrap().len() >= seq,
                "answered before the hook"
            );
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored: Vec<[u8; 32]> = harness
        .store
        .read(AUTHORITY, 0, 1_000_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.hash)
        .collect();
    assert!(stored.len() > 300);
    assert_eq!(*told.lock().unwrap(), stored);
}

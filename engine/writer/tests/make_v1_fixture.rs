//! Temporary: writes the v1 fixture with the code of e4f1019.
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ochered_core::command::Command;
use ochered_store::EventStore;
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::privacy::{MasterKey, Privacy};
use ochered_writer::{Outcome, RequestMeta, Writer, WriterConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_v1_fixture() {
    let Ok(out) = std::env::var("V1_FIXTURE_OUT") else { return };
    let _ = std::fs::remove_file(&out);
    let store: Arc<dyn EventStore> = ochered_store::open(&format!("sqlite://{out}")).await.unwrap();
    let privacy = Privacy::new(store.clone(), MasterKey::from_bytes([7; 32]));
    let mut expected = serde_json::Map::new();
    for (authority, n) in [("v1-city", 40u64), ("v1-town", 6u64)] {
        let clock: ochered_writer::Clock = Arc::new(|| Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap());
        let config = WriterConfig { clock, snapshot_every_events: Some(25), ..WriterConfig::default() };
        let (writer, _) = Writer::start(store.clone(), authority, config).await.unwrap();
        let slots_from: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
        for command in demo::setup_commands(authority, &DemoShape::default(), slots_from) {
            writer.submit(command, RequestMeta::default()).await.unwrap();
        }
        let today = chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        let mut keys = Vec::new();
        for i in 1..=n {
            let mut rng = SeededRng::new(i);
            let mut command = demo::kindergarten_application(&mut rng, i, &DemoShape::default(), today);
            if i % 5 == 0 {
                if let Command::SubmitKindergartenApplication { form } = &mut command {
                    let sealed = privacy.seal(authority, &form.child, br#"{"phone":"+7 900 000-00-00"}"#).await.unwrap();
                    form.sealed = Some(sealed);
                }
            }
            let key = format!("parent:{i}:k{i}");
            let request_hash = ochered_writer::request_hash(&command);
            let reply = writer.submit(command, RequestMeta { idempotency_key: Some(key.clone()), actor: Some(format!("parent:{i}")), channel: Some("portal".into()), correlation_id: None }).await.unwrap();
            let accepted = matches!(reply.outcome, Outcome::Accepted { .. });
            keys.push(serde_json::json!({"key": key, "request_hash": request_hash, "seed": i, "accepted": accepted, "sealed": i % 5 == 0}));
        }
        // wait for snapshots
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let head = writer.head();
        let state_hash = writer.read(|s| s.state_hash());
        expected.insert(authority.into(), serde_json::json!({"head_seq": head.authority_seq, "head_hash": head.hash, "state_hash": state_hash, "keys": keys}));
        drop(writer);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    store.close().await;
    std::fs::write(format!("{out}.json"), serde_json::to_string_pretty(&expected).unwrap()).unwrap();
}

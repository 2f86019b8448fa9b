//! Rough append throughput, `#[ignore]`d: run with
//! `cargo test -p ochered-store --release --test it throughput -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use ochered_store::{EventStore, Idempotency, Metadata, NewEvent, VerifyOutcome};

use crate::harness::Harness;

const BATCHES: usize = 100;
const BATCH_EVENTS: usize = 1_000;
const SINGLE_APPENDS: usize = 500;

/// A submission-like event (about 300 bytes of payload) with its idempotency facts.
fn submission(n: usize) -> NewEvent {
    let key = format!("9f1c2d3e-{n:012}");
    NewEvent {
        stream_id: format!("application-{n}"),
        stream_version: 1,
        event_type: "ApplicationSubmitted".to_string(),
        schema_version: 1,
        recorded_at: Utc::now(),
        payload: ochered_store::cbor::to_vec(&serde_json::json!({
            "application_id": format!("A-{n:08}"),
            "child": {"document": format!("II-МЮ {n:06}"), "birth_date": "2021-03-04"},
            "choices": ["kg-101", "kg-205", "kg-033"],
            "privileges": ["large_family"],
            "desired_start": "2025-09-01",
            "district": "Северный",
            "parent": format!("p-{n}"),
        }))
        .unwrap(),
        metadata: Metadata {
            actor: Some(format!("parent:{n}")),
            channel: Some("web".to_string()),
            correlation_id: Some(format!("c-{n}")),
        },
        idempotency: Some(Idempotency {
            key_digest: ochered_store::key_digest(&key),
            request_hash: [0x4f; 32],
            answer_events: 1,
        }),
    }
}

/// CPU seconds (user + system, all threads) used by this process so far; the machine is
/// shared, so wall time alone says little.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of /proc/PID/stat (utime, stime), in clock ticks of 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

struct Phase {
    wall: Instant,
    cpu: f64,
}

impl Phase {
    fn start() -> Phase {
        Phase {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    /// "x events/s (wall), y events per CPU-second".
    fn rate(&self, events: usize) -> (f64, String) {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - self.cpu;
        let per_wall = events as f64 / wall;
        (
            per_wall,
            format!(
                "{wall:.3} s, {per_wall:.0} events/s, {:.0} events per CPU-second",
                events as f64 / cpu.max(0.01)
            ),
        )
    }
}

/// "append latency p50 …, p99 …, max …".
fn latency(samples: &mut [std::time::Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "append latency p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

async fn measure(label: &str, store: Arc<dyn EventStore>) {
    let authority = "bench";
    let mut n = 0;
    let mut batches = Vec::new();
    for _ in 0..BATCHES {
        let events: Vec<_> = (0..BATCH_EVENTS)
            .map(|_| {
                n += 1;
                submission(n)
            })
            .collect();
        batches.push(events);
    }
    let phase = Phase::start();
    let mut latencies = Vec::new();
    for events in batches {
        let started = Instant::now();
        store.append(authority, events).await.unwrap();
        latencies.push(started.elapsed());
    }
    let (grouped, text) = phase.rate(BATCHES * BATCH_EVENTS);
    println!(
        "{label}: {BATCHES} appends of {BATCH_EVENTS} keyed events: {text}; {}",
        latency(&mut latencies)
    );

    let phase = Phase::start();
    let mut latencies = Vec::new();
    for _ in 0..SINGLE_APPENDS {
        n += 1;
        let event = submission(n);
        let started = Instant::now();
        store.append(authority, vec![event]).await.unwrap();
        latencies.push(started.elapsed());
    }
    let (single, text) = phase.rate(SINGLE_APPENDS);
    println!(
        "{label}: {SINGLE_APPENDS} appends of 1 event: {text} (group commit x{:.0}); {}",
        grouped / single,
        latency(&mut latencies)
    );

    let phase = Phase::start();
    let mut after = 0;
    let mut read = 0;
    loop {
        let page = store.read(authority, after, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.authority_seq;
        read += page.len();
    }
    println!(
        "{label}: read {read} events in pages of 10,000: {}",
        phase.rate(read).1
    );
    let phase = Phase::start();
    let outcome = store.verify(authority).await.unwrap();
    assert!(matches!(outcome, VerifyOutcome::Ok { .. }), "{outcome:?}");
    println!("{label}: verify {read} events: {}", phase.rate(read).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput figure; run in release with --ignored --nocapture"]
async fn throughput_sqlite_file() {
    let harness = Harness::sqlite().await;
    measure("SQLite file", harness.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput figure; run in release with --ignored --nocapture"]
async fn throughput_postgres() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    measure("PostgreSQL", harness.store.clone()).await;
}

//! Builds a large SQLite event log through the writer, for restart measurements
//! (docs/PERFORMANCE.md, "Restart of a 10,000,000-event log").
//!
//! ```sh
//! cargo run --release --example build_log -- /tmp/big.db 10000000
//! ```
//!
//! One authority (`bench`) receives kindergarten applications in waves of 20,000 concurrent
//! submissions, each with an idempotency key, exactly as `cargo bench --bench engine --
//! group_commit` sends them. Snapshots follow the server's default
//! (`--snapshot-every 200000`), but only the one that matters for a restart is taken: the
//! newest, 199,999 events before the head at most. So the log ends the way a shipped server's
//! log ends in the worst case, with the longest tail to replay after the newest snapshot,
//! without writing the 49 older snapshots that a restart never reads.

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use ochered_core::command::Command;
use ochered_core::domain::PersonKey;
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::{Outcome, RequestMeta, Writer, WriterConfig};

const AUTHORITY: &str = "bench";
/// The server's default `--snapshot-every`.
const SNAPSHOT_EVERY: u64 = 200_000;
const WAVE: u64 = 20_000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: build_log PATH EVENTS"))?;
    let events: u64 = args.next().map_or(Ok(10_000_000), |n| n.parse())?;
    // The writer logs its snapshot (`snapshot stored … encode_ms= store_ms=`).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(build(&path, events))
}

async fn build(path: &str, events: u64) -> anyhow::Result<()> {
    let store: Arc<dyn ochered_store::EventStore> =
        Arc::new(ochered_store::SqliteStore::open(path).await?);
    // The newest snapshot lands SNAPSHOT_EVERY - 1 events before the head at most: the
    // writer takes it at the first idle moment after this many events.
    let snapshot_at = events.saturating_sub(SNAPSHOT_EVERY - 1).max(1);
    let config = WriterConfig {
        batch_commands_max: 2048,
        queue_commands_max: 1 << 20,
        snapshot_every_events: Some(snapshot_at),
        ..WriterConfig::default()
    };
    let (writer, replay) = Writer::start(store.clone(), AUTHORITY, config).await?;
    let shape = DemoShape::default();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 2, 1).expect("a date");
    if writer.read(|s| s.config().is_none()) {
        let slots_from = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
        for command in demo::setup_commands(AUTHORITY, &shape, slots_from) {
            writer.submit(command, RequestMeta::default()).await?;
        }
    }
    let started = Instant::now();
    // Each submission's number `c` names its child, its parent and its idempotency key. A
    // run resumed on a log whose last wave stopped part-way (some of its submissions
    // committed) starts a wave past it, so that no key is sent again for another request.
    let resumed = replay.head.authority_seq as u64 > 1_000;
    let mut next = replay.head.authority_seq as u64 + 1 + if resumed { WAVE } else { 0 };
    while (writer.head().authority_seq as u64) < events {
        let left = events - writer.head().authority_seq as u64;
        submit_wave(&writer, next, WAVE.min(left), &shape, today).await?;
        next += WAVE;
        let head = writer.head().authority_seq;
        if head as u64 % 1_000_000 < WAVE {
            eprintln!(
                "{head} events, {:.0} events/s",
                head as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    // Let the writer take its snapshot (it does when idle) and wait until it is stored.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let snapshot = loop {
        if let Some((seq, bytes)) = store.load_snapshot(AUTHORITY).await? {
            break (seq, bytes.len());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let head = writer.head();
    drop(writer);
    store.close().await;
    println!(
        "{path}: {} events in {:.1} s; newest snapshot at {} ({} bytes), {} events after it",
        head.authority_seq,
        started.elapsed().as_secs_f64(),
        snapshot.0,
        snapshot.1,
        head.authority_seq - snapshot.0
    );
    Ok(())
}

async fn submit_wave(
    writer: &Writer,
    first: u64,
    n: u64,
    shape: &DemoShape,
    today: chrono::NaiveDate,
) -> anyhow::Result<()> {
    let mut rng = SeededRng::new(first);
    let mut handles = Vec::with_capacity(n as usize);
    for c in first..first + n {
        let mut command = demo::kindergarten_application(&mut rng, c, shape, today);
        if let Command::SubmitKindergartenApplication { form } = &mut command {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&c.to_le_bytes());
            form.child = PersonKey(key);
            form.submitted_by = format!("p{c}");
        }
        let writer = writer.clone();
        handles.push(tokio::spawn(async move {
            let meta = RequestMeta {
                idempotency_key: Some(format!("parent:p{c}:k")),
                actor: Some(format!("parent:p{c}")),
                ..RequestMeta::default()
            };
            writer.submit(command, meta).await
        }));
    }
    for handle in handles {
        let reply = handle.await??;
        if !matches!(reply.outcome, Outcome::Accepted { .. }) {
            anyhow::bail!("a submission was refused: {reply:?}");
        }
    }
    Ok(())
}

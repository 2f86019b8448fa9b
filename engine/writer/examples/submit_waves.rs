//! Pushes waves of 20,000 concurrent keyed kindergarten applications through one writer on
//! a fresh SQLite file, exactly as `cargo bench --bench engine -- group_commit` does: the
//! focused binary for profiles and instruction counts of the durable write path
//! (docs/PERFORMANCE.md).
//!
//! ```sh
//! cargo build --release -p ochered-writer --example submit_waves
//! valgrind --tool=callgrind target/release/examples/submit_waves 1   # then 3: the
//! # difference of the two totals over 40,000 is the instructions per submission
//! ```

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use ochered_core::command::Command;
use ochered_core::domain::PersonKey;
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::{Outcome, RequestMeta, Writer, WriterConfig};

const AUTHORITY: &str = "bench";
const WAVE: u64 = 20_000;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let waves: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1), |n| n.parse())
        .map_err(|e| format!("usage: submit_waves [WAVES]: {e}"))?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(waves))
}

async fn run(waves: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("waves.db");
    let store: Arc<dyn ochered_store::EventStore> =
        Arc::new(ochered_store::SqliteStore::open(path.to_str().expect("a UTF-8 path")).await?);
    let clock: ochered_writer::Clock =
        Arc::new(|| Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap());
    let config = WriterConfig {
        batch_commands_max: 2048,
        queue_commands_max: 1 << 20,
        clock,
        ..WriterConfig::default()
    };
    let (writer, _) = Writer::start(store.clone(), AUTHORITY, config).await?;
    let shape = DemoShape::default();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 2, 1).expect("a date");
    let slots_from = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    for command in demo::setup_commands(AUTHORITY, &shape, slots_from) {
        writer.submit(command, RequestMeta::default()).await?;
    }
    let started = Instant::now();
    let io = || {
        let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("wchar:"), field("write_bytes:"))
    };
    for wave in 0..waves {
        let (before, at) = (io(), Instant::now());
        submit_wave(&writer, 1 + wave * WAVE, WAVE, &shape, today).await?;
        let after = io();
        if std::env::var_os("SUBMIT_WAVES_VERBOSE").is_some() {
            eprintln!(
                "wave {wave}: {:.0}/s, {:.0} bytes written per submission ({:.0} to the disk)",
                WAVE as f64 / at.elapsed().as_secs_f64(),
                (after.0 - before.0) as f64 / WAVE as f64,
                (after.1 - before.1) as f64 / WAVE as f64
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let s = writer.stats();
    let batches = s.batches.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{} submissions in {elapsed:.2} s: {:.0}/s; {batches} batches",
        waves * WAVE,
        (waves * WAVE) as f64 / elapsed
    );
    drop(writer);
    store.close().await;
    Ok(())
}

/// The bench's wave: commands made in advance, then one task per submission.
async fn submit_wave(
    writer: &Writer,
    first: u64,
    n: u64,
    shape: &DemoShape,
    today: chrono::NaiveDate,
) -> Result<()> {
    let mut rng = SeededRng::new(first);
    let commands: Vec<_> = (first..first + n)
        .map(|c| {
            let mut command = demo::kindergarten_application(&mut rng, c, shape, today);
            if let Command::SubmitKindergartenApplication { form } = &mut command {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&c.to_le_bytes());
                form.child = PersonKey(key);
            }
            (c, command)
        })
        .collect();
    let mut handles = Vec::with_capacity(n as usize);
    for (c, command) in commands {
        let writer = writer.clone();
        handles.push(tokio::spawn(async move {
            let meta = RequestMeta {
                idempotency_key: Some(format!("parent:{c}:k")),
                actor: Some("parent:bench".into()),
                ..RequestMeta::default()
            };
            writer.submit(command, meta).await
        }));
    }
    for handle in handles {
        let reply = handle.await??;
        if !matches!(reply.outcome, Outcome::Accepted { .. }) {
            return Err(format!("a submission was refused: {reply:?}").into());
        }
    }
    Ok(())
}

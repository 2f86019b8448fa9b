//! Durable submissions per second (group commit vs one transaction per command vs a raw batched
//! INSERT of the same rows, on SQLite and PostgreSQL), replay events per second, position
//! lookup latency at 1,000,000 queued, and bytes of RAM per queued application.
//!
//! `cargo bench --bench engine` (PostgreSQL at OCHERED_TEST_PG_URL, default
//! postgres://postgres@127.0.0.1:5432/test; skipped with a message when absent).
//! `OCHERED_BENCH_QUEUED` sets the queue size of the position benchmark (default 1,000,000).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ochered_core::command::{Command, KindergartenForm};
use ochered_core::domain::{Channel, PersonKey};
use ochered_core::{Event, State};
use ochered_store::{EventStore, Idempotency, Metadata, NewEvent};
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::{Outcome, RequestMeta, Writer, WriterConfig};

const AUTHORITY: &str = "bench";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn clock() -> ochered_writer::Clock {
    Arc::new(|| Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap())
}

fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap()
}

/// A kindergarten application for child `n`, cheap to generate.
fn application(rng: &mut SeededRng, n: u64) -> Command {
    let mut command = demo::kindergarten_application(rng, n, &DemoShape::default(), today());
    if let Command::SubmitKindergartenApplication { form } = &mut command {
        // Unique child per n without hashing a document each time.
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&n.to_le_bytes());
        form.child = PersonKey(key);
    }
    command
}

async fn start_writer(store: Arc<dyn EventStore>, batch: usize) -> Writer {
    let config = WriterConfig {
        batch_commands_max: batch,
        queue_commands_max: 1 << 20,
        clock: clock(),
        ..WriterConfig::default()
    };
    let (writer, _) = Writer::start(store, AUTHORITY, config).await.unwrap();
    let slots_from = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    if writer.read(|s| s.config().is_none()) {
        for command in demo::setup_commands(AUTHORITY, &DemoShape::default(), slots_from) {
            writer
                .submit(command, RequestMeta::default())
                .await
                .unwrap();
        }
    }
    writer
}

/// Submits `n` applications at once (each with an idempotency key) and waits for all answers.
async fn submit_wave(writer: &Writer, next_child: &AtomicU64, n: u64) -> Duration {
    let first = next_child.fetch_add(n, Ordering::Relaxed);
    let mut rng = SeededRng::new(first);
    let commands: Vec<_> = (first..first + n)
        .map(|c| (c, application(&mut rng, c)))
        .collect();
    let started = Instant::now();
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
    for h in handles {
        let reply = h.await.unwrap().unwrap();
        assert!(
            matches!(reply.outcome, Outcome::Accepted { .. }),
            "{reply:?}"
        );
    }
    started.elapsed()
}

/// The rows one submission writes, prepared in advance: what a raw batched INSERT costs.
fn raw_rows(first: u64, n: u64) -> Vec<NewEvent> {
    let mut events = Vec::new();
    let mut rng = SeededRng::new(first);
    for c in first..first + n {
        let Command::SubmitKindergartenApplication { form } = application(&mut rng, c) else {
            unreachable!()
        };
        let event = kindergarten_event(c as u32, form);
        let key = format!("raw:{c}");
        events.push(NewEvent {
            stream_id: format!("application-{c}"),
            stream_version: 1,
            event_type: event.type_name().into(),
            schema_version: ochered_core::SCHEMA_VERSION,
            recorded_at: Utc::now(),
            payload: ochered_store::cbor::to_vec(&event).unwrap(),
            metadata: Metadata {
                actor: Some("parent:bench".into()),
                ..Metadata::default()
            },
            idempotency: Some(Idempotency {
                key_digest: ochered_store::key_digest(&key),
                request_hash: [0; 32],
                answer_events: 1,
            }),
        });
    }
    events
}

fn kindergarten_event(number: u32, form: KindergartenForm) -> Event {
    Event::KindergartenApplicationSubmitted {
        number: ochered_core::domain::ApplicationNumber(number),
        child: form.child,
        birth_date: form.birth_date,
        preferences: form.preferences,
        desired_start: form.desired_start,
        any_other: form.any_other,
        privileges: form.privileges,
        registered_at: Utc::now(),
        channel: Channel::Portal,
        submitted_by: form.submitted_by,
        sealed: form.sealed,
    }
}

struct Backend {
    name: &'static str,
    store: Arc<dyn EventStore>,
    _guard: Box<dyn std::any::Any>,
}

async fn backends() -> Vec<Backend> {
    let mut list = Vec::new();
    let sqlite = ochered_store::testing::Harness::sqlite().await;
    list.push(Backend {
        name: "sqlite",
        store: sqlite.store.clone(),
        _guard: Box::new(sqlite),
    });
    match ochered_store::testing::Harness::postgres().await {
        Some(pg) => list.push(Backend {
            name: "postgres",
            store: pg.store.clone(),
            _guard: Box::new(pg),
        }),
        None => eprintln!("SKIPPED: PostgreSQL benchmarks (not reachable)"),
    }
    list
}

fn durable_submissions(c: &mut Criterion) {
    let rt = runtime();
    let backends = rt.block_on(backends());
    let mut group = c.benchmark_group("durable_submissions");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for backend in &backends {
        let next_child = AtomicU64::new(1);
        // Group commit: a wave of 20,000 concurrent submissions.
        let wave = 20_000u64;
        let writer = rt.block_on(start_writer(backend.store.clone(), 2048));
        group.throughput(Throughput::Elements(wave));
        group.bench_function(BenchmarkId::new("group_commit", backend.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += submit_wave(&writer, &next_child, wave).await;
                    }
                    total
                })
            })
        });
        drop(writer);

        // The same code committing one transaction per command (batch bound 1).
        let single = 500u64;
        let writer = rt.block_on(start_writer(backend.store.clone(), 1));
        group.throughput(Throughput::Elements(single));
        group.bench_function(
            BenchmarkId::new("one_transaction_per_command", backend.name),
            |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += submit_wave(&writer, &next_child, single).await;
                        }
                        total
                    })
                })
            },
        );
        drop(writer);

        // A raw batched INSERT of the same rows in batches of 2,048, no rules: the ceiling.
        let raw = 20_000u64;
        let raw_authority = format!("raw-{}", backend.name);
        group.throughput(Throughput::Elements(raw));
        group.bench_function(BenchmarkId::new("raw_batched_insert", backend.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let first = next_child.fetch_add(raw, Ordering::Relaxed);
                        let events = raw_rows(first, raw);
                        let started = Instant::now();
                        for chunk in events.chunks(2048) {
                            backend
                                .store
                                .append(&raw_authority, chunk.to_vec())
                                .await
                                .unwrap();
                        }
                        total += started.elapsed();
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let rt = runtime();
    let backends = rt.block_on(backends());
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    for backend in &backends {
        let n = 100_000u64;
        let next_child = AtomicU64::new(1);
        let writer = rt.block_on(start_writer(backend.store.clone(), 4096));
        rt.block_on(async {
            for _ in 0..(n / 20_000) {
                submit_wave(&writer, &next_child, 20_000).await;
            }
        });
        let events = writer.head().authority_seq as u64;
        drop(writer);
        group.throughput(Throughput::Elements(events));
        group.bench_function(BenchmarkId::new("load_state", backend.name), |b| {
            b.iter(|| {
                rt.block_on(ochered_writer::load_state(
                    backend.store.as_ref(),
                    AUTHORITY,
                ))
                .unwrap()
            })
        });
    }
    group.finish();
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Builds a state with `n` queued kindergarten applications straight through the fold.
fn big_state(n: u64) -> State {
    let mut state = State::new();
    let slots_from = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap();
    let shape = DemoShape {
        kindergartens: 200,
        ..DemoShape::default()
    };
    for command in demo::setup_commands(AUTHORITY, &shape, slots_from) {
        ochered_core::handle(&mut state, &command, now).unwrap();
    }
    let mut rng = SeededRng::new(7);
    for c in 1..=n {
        let mut command = demo::kindergarten_application(&mut rng, c, &shape, today());
        if let Command::SubmitKindergartenApplication { form } = &mut command {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&c.to_le_bytes());
            form.child = PersonKey(key);
            form.submitted_by = format!("p{c}");
        }
        let at = now + chrono::Duration::milliseconds(c as i64);
        ochered_core::handle(&mut state, &command, at).unwrap();
    }
    state
}

fn positions(c: &mut Criterion) {
    let n: u64 = std::env::var("OCHERED_BENCH_QUEUED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let before = resident_bytes();
    let state = big_state(n);
    let after = resident_bytes();
    eprintln!(
        "memory: {n} queued applications, resident {:.1} MiB more, {:.0} bytes per application",
        (after - before) as f64 / (1 << 20) as f64,
        (after.saturating_sub(before)) as f64 / n as f64
    );

    // Latency of "where does application X stand": every queue of the application.
    let mut rng = SeededRng::new(99);
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for _ in 0..200_000 {
        let number = ochered_core::domain::ApplicationNumber(1 + rng.below(n) as u32);
        let started = Instant::now();
        let app = state.application(number).unwrap();
        let mut total = 0usize;
        for (queue, key) in state.queue_entries(app) {
            total += state.queues.position(&queue, &key).unwrap();
        }
        let elapsed = started.elapsed().as_nanos() as u64;
        std::hint::black_box(total);
        histogram.record(elapsed.max(1)).unwrap();
    }
    eprintln!(
        "position lookup at {n} queued: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs",
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.value_at_quantile(0.999) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0
    );

    let mut group = c.benchmark_group("positions");
    let mut rng = SeededRng::new(5);
    group.bench_function(BenchmarkId::new("all_queues_of_one_application", n), |b| {
        b.iter(|| {
            let number = ochered_core::domain::ApplicationNumber(1 + rng.below(n) as u32);
            let app = state.application(number).unwrap();
            state
                .queue_entries(app)
                .into_iter()
                .map(|(q, k)| state.queues.position(&q, &k).unwrap())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, durable_submissions, replay, positions);
criterion_main!(benches);

//! Durable submissions per second (group commit with an idempotency key on every submission,
//! one transaction per command, eleven authorities at once, and as baselines a raw batched
//! append of the same events and a plain batched INSERT of log rows, on SQLite and
//! PostgreSQL), bytes on disk per submission, replay events per second, position lookup
//! latency at 1,000,000 queued, and bytes of RAM per queued application.
//!
//! `cargo bench --bench engine` (PostgreSQL at OCHERED_TEST_PG_URL, default
//! postgres://postgres@127.0.0.1:5432/test; skipped with a message when absent).
//! `OCHERED_BENCH_QUEUED` sets the queue size of the position benchmark (default 1,000,000).

// The process's allocator (src/lib.rs): the same as the shipped binary's.
use ochered as _;
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
    start_writer_of(store, AUTHORITY, batch).await
}

async fn start_writer_of(store: Arc<dyn EventStore>, authority: &str, batch: usize) -> Writer {
    let config = WriterConfig {
        batch_commands_max: batch,
        queue_commands_max: 1 << 20,
        clock: clock(),
        ..WriterConfig::default()
    };
    let (writer, _) = Writer::start(store, authority, config).await.unwrap();
    let slots_from = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    if writer.read(|s| s.config().is_none()) {
        for command in demo::setup_commands(authority, &DemoShape::default(), slots_from) {
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
    submit_wave_to(std::slice::from_ref(writer), next_child, n).await
}

/// Submits `n` applications at once, spread evenly over the writers, and waits for all.
async fn submit_wave_to(writers: &[Writer], next_child: &AtomicU64, n: u64) -> Duration {
    let first = next_child.fetch_add(n, Ordering::Relaxed);
    let mut rng = SeededRng::new(first);
    let commands: Vec<_> = (first..first + n)
        .map(|c| (c, application(&mut rng, c)))
        .collect();
    let started = Instant::now();
    let mut handles = Vec::with_capacity(n as usize);
    for (c, command) in commands {
        let writer = writers[(c % writers.len() as u64) as usize].clone();
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
    /// The SQLite store itself, for the plain-rows baseline and the file's size.
    sqlite: Option<Arc<ochered_store::SqliteStore>>,
    _guard: Box<dyn std::any::Any>,
}

/// Bytes of the SQLite database in use now (pages not free, the WAL checkpointed).
async fn sqlite_bytes(store: &ochered_store::SqliteStore) -> u64 {
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(store.pool())
        .await;
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(store.pool())
        .await
        .unwrap();
    ((pages - free) * size) as u64
}

async fn backends() -> Vec<Backend> {
    let mut list = Vec::new();
    let sqlite = ochered_store::testing::Harness::sqlite().await;
    let ochered_store::testing::Raw::Sqlite(raw) = &sqlite.raw else {
        unreachable!()
    };
    list.push(Backend {
        name: "sqlite",
        store: sqlite.store.clone(),
        sqlite: Some(raw.clone()),
        _guard: Box::new(sqlite),
    });
    match ochered_store::testing::Harness::postgres().await {
        Some(pg) => list.push(Backend {
            name: "postgres",
            store: pg.store.clone(),
            sqlite: None,
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
        // Bytes on disk per submission: a wave of its own, the file measured around it.
        if let Some(sqlite) = &backend.sqlite {
            rt.block_on(async {
                let before = sqlite_bytes(sqlite).await;
                submit_wave(&writer, &next_child, wave).await;
                let after = sqlite_bytes(sqlite).await;
                eprintln!(
                    "bytes on disk per submission (sqlite, idempotency key on each): {:.0}",
                    after.saturating_sub(before) as f64 / wave as f64
                );
            });
        }
        group.throughput(Throughput::Elements(wave));
        let measured = Arc::new(std::sync::Mutex::new(Duration::ZERO));
        let counters = |w: &Writer| {
            let s = w.stats();
            (
                s.batches.load(Ordering::Relaxed),
                s.commands.load(Ordering::Relaxed),
                s.commit_micros_total.load(Ordering::Relaxed),
            )
        };
        let before = counters(&writer);
        group.bench_function(BenchmarkId::new("group_commit", backend.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += submit_wave(&writer, &next_child, wave).await;
                    }
                    *measured.lock().unwrap() += total;
                    total
                })
            })
        });
        // Where the time went: batches, their size, and the share of the wall time the
        // writer spent waiting for commits (the rest is deciding, encoding, answering).
        let after = counters(&writer);
        let wall = measured.lock().unwrap().as_micros().max(1) as f64;
        let batches = (after.0 - before.0).max(1);
        eprintln!(
            "group_commit/{}: {} batches, {:.0} commands per batch, commits in flight {:.0}% of the wall time",
            backend.name,
            batches,
            (after.1 - before.1) as f64 / batches as f64,
            100.0 * (after.2 - before.2) as f64 / wall
        );
        drop(writer);

        // The transparency tree (docs/TRANSPARENCY.md) on and off in the same run: two
        // writers on two authorities of the same store, one of them feeding its Merkle tree
        // through the commit hook (and signing a head every 10 s, as the server does), the
        // waves alternating between them so that both meet the same disk and the same load.
        tree_on_and_off(&rt, &mut group, backend, &next_child, wave);

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

        // Eleven authorities at once (one per time zone): the same wave spread over eleven
        // writers on the same store, committed together by its committer.
        let writers: Vec<Writer> = rt.block_on(async {
            let mut writers = Vec::new();
            for zone in 0..11 {
                let authority = format!("zone-{zone}");
                writers.push(start_writer_of(backend.store.clone(), &authority, 2048).await);
            }
            writers
        });
        group.throughput(Throughput::Elements(wave));
        group.bench_function(BenchmarkId::new("eleven_authorities", backend.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += submit_wave_to(&writers, &next_child, wave).await;
                    }
                    total
                })
            })
        });
        drop(writers);

        // Plain log rows (integer key, one unique index, 32-byte binary hash, 250-byte
        // payload) inserted in batches of 2,048 with one sync each: the disk's limit for a
        // row of the log, the baseline of the group-commit figure.
        if let Some(sqlite) = &backend.sqlite {
            let plain = 20_000u64;
            let payload = vec![0x5a; 250];
            let next_row = AtomicU64::new(1);
            group.throughput(Throughput::Elements(plain));
            group.bench_function(
                BenchmarkId::new("plain_batched_insert", backend.name),
                |b| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                let first = next_row.fetch_add(plain, Ordering::Relaxed) as i64;
                                let started = Instant::now();
                                let mut at = first;
                                while at < first + plain as i64 {
                                    let n = (first + plain as i64 - at).min(2048) as usize;
                                    sqlite.insert_plain_rows(at, n, &payload).await.unwrap();
                                    at += n as i64;
                                }
                                total += started.elapsed();
                            }
                            total
                        })
                    })
                },
            );
        }

        // A raw batched append of the same events in batches of 2,048, no rules.
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

/// `durable_submissions/tree_on_off/<backend>`: waves of submissions alternating between a
/// writer without the tree and one feeding it; prints each side's waves per second (median,
/// worst and best) and the ratio of the medians.
fn tree_on_and_off(
    rt: &tokio::runtime::Runtime,
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    backend: &Backend,
    next_child: &AtomicU64,
    wave: u64,
) {
    let transparency = ochered_api::transparency::Transparency::new(
        backend.store.clone(),
        ochered_transparency::SigningKey::from_bytes(&[7; 32]),
        Duration::from_secs(10),
    );
    let (off, on) = rt.block_on(async {
        let config = |hook| WriterConfig {
            batch_commands_max: 2048,
            queue_commands_max: 1 << 20,
            clock: clock(),
            on_commit: hook,
            ..WriterConfig::default()
        };
        let start = |authority: &'static str, config: WriterConfig| {
            let store = backend.store.clone();
            async move {
                let (writer, _) = Writer::start(store, authority, config).await.unwrap();
                let slots_from = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
                if writer.read(|s| s.config().is_none()) {
                    for command in
                        demo::setup_commands(authority, &DemoShape::default(), slots_from)
                    {
                        writer
                            .submit(command, RequestMeta::default())
                            .await
                            .unwrap();
                    }
                }
                writer
            }
        };
        let off = start("tree-off", config(None)).await;
        let on = start("tree-on", config(Some(transparency.hook()))).await;
        (off, on)
    });
    // The server's signer, for this authority only (its `run` would also read the other
    // authorities' logs into trees of their own).
    let signer = rt.spawn({
        let transparency = transparency.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let _ = transparency.sign("tree-on", Utc::now()).await;
            }
        }
    });
    // Warm-up: one wave each (and the tree caught up with what the log held before).
    rt.block_on(async {
        submit_wave(&off, next_child, wave).await;
        submit_wave(&on, next_child, wave).await;
        transparency.catch_up("tree-on").await.unwrap();
    });
    let times = std::sync::Mutex::new((Vec::new(), Vec::new()));
    group.throughput(Throughput::Elements(2 * wave));
    group.bench_function(BenchmarkId::new("tree_on_off", backend.name), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    // Alternate which side goes first.
                    let (first, second) = if i % 2 == 0 { (&off, &on) } else { (&on, &off) };
                    let a = submit_wave(first, next_child, wave).await;
                    let b = submit_wave(second, next_child, wave).await;
                    let (t_off, t_on) = if i % 2 == 0 { (a, b) } else { (b, a) };
                    let mut times = times.lock().unwrap();
                    times.0.push(wave as f64 / t_off.as_secs_f64());
                    times.1.push(wave as f64 / t_on.as_secs_f64());
                    total += a + b;
                }
                total
            })
        })
    });
    signer.abort();
    let (mut off_rates, mut on_rates) = times.into_inner().unwrap();
    if off_rates.is_empty() {
        return;
    }
    assert_eq!(
        transparency.tree_size("tree-on"),
        on.head().authority_seq as u64,
        "the tree holds every committed event"
    );
    let summary = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        (rates[rates.len() / 2], rates[0], rates[rates.len() - 1])
    };
    let (off_median, off_worst, off_best) = summary(&mut off_rates);
    let (on_median, on_worst, on_best) = summary(&mut on_rates);
    eprintln!(
        "tree_on_off/{}: {} waves of {wave} each; tree off {off_median:.0}/s median (worst {off_worst:.0}, best {off_best:.0}); tree on {on_median:.0}/s median (worst {on_worst:.0}, best {on_best:.0}); on/off {:.3}",
        backend.name,
        off_rates.len(),
        on_median / off_median
    );
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

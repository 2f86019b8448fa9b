//! HTTP submissions on loopback (target in docs/PERFORMANCE.md: ≥ 15,000/s; p99 ≤ 25 ms at
//! half that rate), with a trivial axum endpoint measured in the same run as the ceiling.
//!
//! `cargo bench --bench http`
//!
//! The real server (`ochered_api::spawn`, SQLite file with `synchronous=FULL`, group commit)
//! and a trivial axum endpoint (`POST /echo`: parse a JSON body, answer 201 with a small JSON
//! body, no middleware) run in one 2-thread runtime; the load generator runs in another
//! 2-thread runtime of the same process, so both share the machine's cores, as the target assumes.
//! The generator speaks HTTP/1.1 over keep-alive connections with hyper's bare client.
//!
//! For each target:
//! - **max**: closed loop, N connections (each of `OCHERED_BENCH_HTTP_CONNECTIONS`; the best
//!   rate counts) each sending its next request as soon as
//!   the previous answer arrives, for `SECONDS` (after a 2-second warm-up); the rate of
//!   successful answers is the sustained maximum.
//! - **half**: open loop at half that rate for `SECONDS`: request `i` is due at
//!   `start + i / rate` whatever happened before (as wrk2 does), and latency is measured from
//!   that intended time, so a stall counts for every request it delayed (no coordinated
//!   omission). The tokio timer's 1 ms granularity is included in these latencies.
//!
//! Submissions are kindergarten applications, each from one of 100,000 parent tokens, with a
//! unique document and `Idempotency-Key`; at the end the server's application count must
//! equal the number of 201 answers.
//!
//! Environment: `OCHERED_BENCH_HTTP_SECONDS` (default 10), `OCHERED_BENCH_HTTP_CONNECTIONS`
//! (closed loop, comma-separated counts, default `64,1024`),
//! `OCHERED_BENCH_HTTP_OPEN_CONNECTIONS` (open loop, default 256),
//! `OCHERED_BENCH_HTTP_ONLY=submissions` to skip the trivial endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use ochered_api::config::{ServerConfig, WebhookConfig};
use ochered_api::http::auth::{mint, Role};
use serde_json::{json, Value};
use tokio::time::Instant;

const AUTHORITY: &str = "bench";
const SECRET: &[u8] = b"bench-jwt-secret";
const KINDERGARTENS: usize = 50;
/// Enough parents that none meets the per-client rate limit, left at its default (30 a
/// minute): at 15,000/s each token is used about once every 7 s.
const PARENTS: usize = 100_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one request is.
#[derive(Clone)]
enum Target {
    Echo {
        addr: SocketAddr,
    },
    Health {
        addr: SocketAddr,
    },
    Submit {
        addr: SocketAddr,
        tokens: Arc<Vec<String>>,
        next: Arc<AtomicU64>,
    },
}

impl Target {
    fn addr(&self) -> SocketAddr {
        match self {
            Target::Echo { addr } | Target::Health { addr } | Target::Submit { addr, .. } => *addr,
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        match self {
            Target::Echo { addr } => Request::builder()
                .method(Method::POST)
                .uri("/echo")
                .header("host", addr.to_string())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(
                    br#"{"document":"II-AB 00000001","birth_date":"2024-03-10","preferences":["K001","K002"],"desired_start":"2027-09-01"}"#,
                )))
                .unwrap(),
            Target::Health { addr } => Request::builder()
                .method(Method::GET)
                .uri("/health")
                .header("host", addr.to_string())
                .body(Full::new(Bytes::new()))
                .unwrap(),
            Target::Submit { addr, tokens, next } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                // A cheap, deterministic spread of 1–3 preferences over the kindergartens.
                let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let k = KINDERGARTENS as u64;
                let prefs: Vec<String> = (0..1 + (h >> 60) % 3)
                    .map(|j| format!("K{:03}", 1 + (h.rotate_left(7 * j as u32 + 5)) % k))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let body = json!({
                    "document": format!("II-AB {n:08}"),
                    "birth_date": "2024-03-10",
                    "preferences": prefs,
                    "desired_start": "2027-09-01",
                });
                Request::builder()
                    .method(Method::POST)
                    .uri(format!("/api/v1/authorities/{AUTHORITY}/kindergarten/applications"))
                    .header("host", addr.to_string())
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {}", tokens[n as usize % tokens.len()]))
                    .header("idempotency-key", format!("bench-{n}"))
                    .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
                    .unwrap()
            }
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends one request; the status (0 for a transport error).
async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> u16 {
    if sender.ready().await.is_err() {
        return 0;
    }
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.into_body().collect().await {
                Ok(_) => status,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    last_done: Option<Instant>,
    errors: std::collections::BTreeMap<u16, u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

struct Run {
    rate: f64,
    last_done: Option<Instant>,
    ok: u64,
    errors: std::collections::BTreeMap<u16, u64>,
    latency: Histogram<u64>,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Closed loop: `connections` connections as fast as answers come, for `seconds` after a
/// 2-second warm-up.
async fn closed_loop(target: &Target, connections: usize, seconds: u64) -> Run {
    let warm = Instant::now() + Duration::from_secs(2);
    let end = warm + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(target.addr()).await;
            let mut tally = Tally::default();
            let mut latency = histogram();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let status = send(&mut sender, target.request()).await;
                if sent >= warm {
                    if (200..300).contains(&status) {
                        tally.ok += 1;
                        latency
                            .record(sent.elapsed().as_micros().max(1) as u64)
                            .unwrap();
                    } else {
                        *tally.errors.entry(status).or_default() += 1;
                    }
                }
                if status == 0 {
                    sender = connect(target.addr()).await;
                }
            }
            (tally, latency)
        }));
    }
    collect(tasks, seconds as f64).await
}

/// Open loop at `rate` requests/s for `seconds` (after a 2-second warm-up at the same rate):
/// latency from each request's intended send time.
async fn open_loop(target: &Target, rate: f64, connections: usize, seconds: u64) -> Run {
    let warm_up = 2.0;
    let total = ((warm_up + seconds as f64) * rate) as u64;
    let start = Instant::now() + Duration::from_millis(200);
    let warm = start + Duration::from_secs_f64(warm_up);
    let mut tasks = Vec::new();
    for k in 0..connections as u64 {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(target.addr()).await;
            let mut tally = Tally::default();
            let mut latency = histogram();
            let mut i = k;
            let mut last_done = warm;
            while i < total {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due).await;
                let status = send(&mut sender, target.request()).await;
                if due >= warm {
                    last_done = last_done.max(Instant::now());
                    if (200..300).contains(&status) {
                        tally.ok += 1;
                        latency
                            .record(due.elapsed().as_micros().max(1) as u64)
                            .unwrap();
                    } else {
                        *tally.errors.entry(status).or_default() += 1;
                    }
                }
                if status == 0 {
                    sender = connect(target.addr()).await;
                }
                i += connections as u64;
            }
            tally.last_done = Some(last_done);
            (tally, latency)
        }));
    }
    // Answered per second from the first due time measured to the last answer: below the
    // offered rate when the server falls behind.
    let mut run = collect(tasks, seconds as f64).await;
    if let Some(last) = run.last_done {
        run.rate = run.ok as f64 / (last - warm).as_secs_f64().max(seconds as f64);
    }
    run
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(Tally, Histogram<u64>)>>,
    seconds: f64,
) -> Run {
    let mut ok = 0;
    let mut errors = std::collections::BTreeMap::new();
    let mut latency = histogram();
    let mut last_done = None;
    for t in tasks {
        let (tally, h) = t.await.unwrap();
        ok += tally.ok;
        last_done = last_done.max(tally.last_done);
        for (status, n) in tally.errors {
            *errors.entry(status).or_insert(0) += n;
        }
        latency.add(h).unwrap();
    }
    Run {
        rate: ok as f64 / seconds,
        last_done,
        ok,
        errors,
        latency,
    }
}

fn report(name: &str, mode: &str, run: &Run) {
    let errors: u64 = run.errors.values().sum();
    println!(
        "| {name} | {mode} | {:>6.0}/s | {:>7.2} | {:>7.2} | {:>7.2} | {:>7.2} | {:>8} | {} |",
        run.rate,
        ms(&run.latency, 0.5),
        ms(&run.latency, 0.99),
        ms(&run.latency, 0.999),
        run.latency.max() as f64 / 1000.0,
        run.ok,
        if errors == 0 {
            "0".to_owned()
        } else {
            format!("{errors} {:?}", run.errors)
        }
    );
}

async fn echo(axum::Json(body): axum::Json<Value>) -> (axum::http::StatusCode, axum::Json<Value>) {
    let n = body.as_object().map_or(0, |o| o.len());
    (
        axum::http::StatusCode::CREATED,
        axum::Json(json!({ "received_fields": n })),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches`
    }
    let seconds = env_u64("OCHERED_BENCH_HTTP_SECONDS", 10);
    let connections: Vec<usize> = std::env::var("OCHERED_BENCH_HTTP_CONNECTIONS")
        .unwrap_or_else(|_| "64,1024".into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("OCHERED_BENCH_HTTP_CONNECTIONS: numbers, comma-separated")
        })
        .collect();
    let open_connections = env_u64("OCHERED_BENCH_HTTP_OPEN_CONNECTIONS", 256) as usize;
    let only_submissions =
        std::env::var("OCHERED_BENCH_HTTP_ONLY").is_ok_and(|v| v == "submissions");

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("http-bench.db").display());
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: url,
        seed_demo: false,
        jwt_secret: SECRET.to_vec(),
        jwt_secret_is_default: false,
        person_secret: b"bench-person-secret".to_vec(),
        queue_max: 65_536,
        // Off: the benchmark measures what the server does, sheds would only hide it.
        max_in_flight: 0,
        admission_target_ms: 0,
        batch_max: 2048,
        request_timeout_ms: 10_000,
        body_limit_bytes: 64 * 1024,
        cors_origins: Vec::new(),
        rate_limit: Default::default(),
        data_key: Some(ochered_writer::privacy::MasterKey::from_bytes([7; 32])),
        snapshot_every: 10_000_000,
        demo_authority: "demo".into(),
        webhooks: WebhookConfig::default(),
        oidc: None,
        otlp_endpoint: None,
    };
    let (server, echo_addr) = server_rt.block_on(async {
        let server = ochered_api::spawn(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/echo", axum::routing::post(echo));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (server, echo_addr)
    });
    let addr = server.addr;
    let engine = server.state.engine.clone();
    // (batches, commands) committed so far by the bench authority's writer.
    let writer_totals = move || {
        engine.writer(AUTHORITY).map_or((0, 0), |w| {
            let stats = w.stats();
            (
                stats.batches.load(Ordering::Relaxed),
                stats.commands.load(Ordering::Relaxed),
            )
        })
    };

    load_rt.block_on(async {
        // The authority and its kindergartens.
        let client = reqwest::Client::new();
        let admin = mint(SECRET, Role::Admin, "admin", 24);
        let officer = mint(SECRET, Role::Officer, "officer", 24);
        let r = client
            .post(format!("http://{addr}/api/v1/authorities"))
            .bearer_auth(&admin)
            .json(&json!({"id": AUTHORITY, "name": "Bench", "time_zone": "Asia/Novosibirsk"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        for i in 1..=KINDERGARTENS {
            let r = client
                .post(format!("http://{addr}/api/v1/authorities/{AUTHORITY}/institutions"))
                .bearer_auth(&officer)
                .json(&json!({"id": format!("K{i:03}"), "kind": "kindergarten", "name": format!("Kindergarten {i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let tokens: Arc<Vec<String>> = Arc::new(
            (0..PARENTS)
                .map(|i| mint(SECRET, Role::Parent, &format!("parent-{i}"), 24))
                .collect(),
        );
        let next = Arc::new(AtomicU64::new(1));
        let submit = Target::Submit {
            addr,
            tokens,
            next: next.clone(),
        };

        println!(
            "\nHTTP on loopback: {seconds} s per run after a 2 s warm-up; closed loop over {connections:?} connections (the best is the max), open loop over {open_connections}; latency in ms\n"
        );
        println!("| target | mode | answered/s | p50 | p99 | p99.9 | max | answered 2xx | errors |");
        println!("|---|---|---|---|---|---|---|---|---|");
        let mut created = 0;
        let mut notes = Vec::new();
        let mut submit_half = None;
        let mut targets: Vec<(&str, Target)> = Vec::new();
        if !only_submissions {
            targets.push(("trivial axum `POST /echo` (ceiling)", Target::Echo { addr: echo_addr }));
            targets.push(("ochered `GET /health`", Target::Health { addr }));
        }
        targets.push(("ochered `POST …/kindergarten/applications`", submit.clone()));
        for (name, target) in &targets {
            let is_submit = matches!(target, Target::Submit { .. });
            let mut best: Option<Run> = None;
            for &c in &connections {
                let before = writer_totals();
                let run = closed_loop(target, c, seconds).await;
                report(name, &format!("closed loop, {c} connections"), &run);
                if is_submit {
                    created += run.ok;
                    let after = writer_totals();
                    notes.push(format!(
                        "closed loop, {c} connections: {:.0} commands per group commit",
                        (after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64
                    ));
                }
                if best.as_ref().is_none_or(|b| run.rate > b.rate) {
                    best = Some(run);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let max = best.expect("at least one connection count");
            tokio::time::sleep(Duration::from_secs(1)).await;
            let before = writer_totals();
            let half = open_loop(target, max.rate / 2.0, open_connections, seconds).await;
            if is_submit {
                let after = writer_totals();
                notes.push(format!(
                    "open loop at half of max: {:.0} commands per group commit",
                    (after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64
                ));
            }
            report(name, &format!("open loop at half of max: {:.0}/s", max.rate / 2.0), &half);
            tokio::time::sleep(Duration::from_secs(1)).await;
            if is_submit {
                created += half.ok;
                // The target's half rate, whatever the maximum reached.
                let before = writer_totals();
                let at_target = open_loop(target, 7_500.0, open_connections, seconds).await;
                let after = writer_totals();
                notes.push(format!(
                    "open loop at 7,500/s: {:.0} commands per group commit",
                    (after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64
                ));
                report(name, "open loop at 7,500/s (half the target)", &at_target);
                created += at_target.ok;
                submit_half = Some(max.rate / 2.0);
            }
        }
        // The latency baseline: the trivial endpoint at the submissions' open-loop rates,
        // through the same generator.
        if let (Some(half), false) = (submit_half, only_submissions) {
            let echo = Target::Echo { addr: echo_addr };
            for rate in [half, 7_500.0] {
                let run = open_loop(&echo, rate, open_connections, seconds).await;
                report(
                    "trivial axum `POST /echo` (latency baseline)",
                    &format!("open loop at {rate:.0}/s"),
                    &run,
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        // Nothing lost: every submission sent (warm-ups included) is in the state exactly once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let info: Value = client
            .get(format!("http://{addr}/api/v1/authorities/{AUTHORITY}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sent = next.load(Ordering::Relaxed) - 1;
        println!();
        for note in notes {
            println!("writer, {note}");
        }
        println!(
            "\nsubmissions sent {sent} (2xx in the measured windows {created}, the rest in warm-ups); applications in the state: {}",
            info["applications"]
        );
        assert_eq!(info["applications"].as_u64(), Some(sent), "every submission is in the state once");
    });
    server_rt.block_on(server.stop());
}

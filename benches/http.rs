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
//! **Overload** (`OCHERED_BENCH_HTTP_OVERLOAD=1`, instead of the above): the server with its
//! admission control as shipped (wait target 50 ms, 1,024 places per class, the per-client
//! limit), its sustainable rate measured first in the same run (closed loop, 64 connections,
//! nothing shed), then open loops at 3× and 10× that rate over 1,000 connections. Each reports
//! accepted submissions per second (goodput) against the sustainable rate, the answers' time
//! by class (client side, from the moment a request is written), the server's own shed
//! latency (from its `/metrics` histogram), the process's resident set, and a well-behaved
//! client running alongside: a new submission every 250 ms, retried after each 503 once
//! Retry-After has passed, whose attempts-to-success are counted.
//!
//! Environment: `OCHERED_BENCH_HTTP_SECONDS` (default 10), `OCHERED_BENCH_HTTP_CONNECTIONS`
//! (closed loop, comma-separated counts, default `64,1024`),
//! `OCHERED_BENCH_HTTP_OPEN_CONNECTIONS` (open loop, default 256),
//! `OCHERED_BENCH_HTTP_ONLY=submissions` to skip the trivial endpoints.

// The process's allocator (src/lib.rs): the same as the shipped binary's.
use ochered as _;
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

/// Sends one request; the status and Retry-After (0 for a transport error).
async fn send_with_retry_after(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
) -> (u16, Option<u64>) {
    if sender.ready().await.is_err() {
        return (0, None);
    }
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            match response.into_body().collect().await {
                Ok(_) => (status, after),
                Err(_) => (0, None),
            }
        }
        Err(_) => (0, None),
    }
}

/// What an overload phase's generator saw.
#[derive(Default)]
struct Overload {
    sent: u64,
    accepted: u64,
    shed: u64,
    other: std::collections::BTreeMap<u16, u64>,
    /// Client-side time from writing a request to its answer, by class (µs).
    accepted_us: Option<Histogram<u64>>,
    shed_us: Option<Histogram<u64>>,
    /// Sends that started more than 100 ms after their intended time.
    late: u64,
    /// Requests due within the phase that were never sent: every connection was still
    /// waiting for an answer when the phase ended (the open loop could not offer its rate
    /// over its connections).
    unsent: u64,
    /// When the last answer came.
    last_answer: Option<Instant>,
}

/// Open loop at `rate` over `connections` for `seconds`: request `i` is due at
/// `start + i / rate`; a connection whose previous answer has not come sends late, and
/// sends nothing once the phase has ended (what was due then is counted as unsent). Rates
/// are over the phase's wall time, from its start to its last answer.
async fn overload_loop(
    target: &Target,
    rate: f64,
    connections: usize,
    seconds: u64,
) -> (Overload, f64) {
    let total = (seconds as f64 * rate) as u64;
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for k in 0..connections as u64 {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(target.addr()).await;
            let mut o = Overload {
                accepted_us: Some(histogram()),
                shed_us: Some(histogram()),
                ..Overload::default()
            };
            let mut i = k;
            while i < total {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due).await;
                let sent = Instant::now();
                if sent >= end {
                    o.unsent += (total - i).div_ceil(connections as u64);
                    break;
                }
                if sent - due > Duration::from_millis(100) {
                    o.late += 1;
                }
                let status = send(&mut sender, target.request()).await;
                let us = sent.elapsed().as_micros().max(1) as u64;
                o.last_answer = Some(Instant::now());
                o.sent += 1;
                match status {
                    200..=299 => {
                        o.accepted += 1;
                        o.accepted_us.as_mut().unwrap().record(us).unwrap();
                    }
                    503 | 429 => {
                        o.shed += 1;
                        o.shed_us.as_mut().unwrap().record(us).unwrap();
                    }
                    other => *o.other.entry(other).or_default() += 1,
                }
                if status == 0 {
                    sender = connect(target.addr()).await;
                }
                i += connections as u64;
            }
            o
        }));
    }
    let mut all = Overload {
        accepted_us: Some(histogram()),
        shed_us: Some(histogram()),
        ..Overload::default()
    };
    for t in tasks {
        let o = t.await.unwrap();
        all.sent += o.sent;
        all.accepted += o.accepted;
        all.shed += o.shed;
        all.late += o.late;
        all.unsent += o.unsent;
        all.last_answer = all.last_answer.max(o.last_answer);
        for (status, n) in o.other {
            *all.other.entry(status).or_default() += n;
        }
        all.accepted_us
            .as_mut()
            .unwrap()
            .add(o.accepted_us.unwrap())
            .unwrap();
        all.shed_us
            .as_mut()
            .unwrap()
            .add(o.shed_us.unwrap())
            .unwrap();
    }
    let wall = all
        .last_answer
        .map_or(seconds as f64, |last| (last - start).as_secs_f64())
        .max(0.001);
    (all, wall)
}

/// A well-behaved client for `seconds`: a new submission every 250 ms, each retried after a
/// 503 or 429 once its Retry-After has passed, up to 10 attempts. Returns how many attempts
/// each submission that finished within the window took, and how many had not finished.
async fn polite_client(target: Target, seconds: u64) -> (Vec<u32>, u64) {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while Instant::now() < end {
        tick.tick().await;
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(target.addr()).await;
            // One request, its key and body kept for every retry.
            let request = target.request();
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            for attempt in 1..=10u32 {
                let mut again = Request::builder()
                    .method(parts.method.clone())
                    .uri(parts.uri.clone());
                for (name, value) in &parts.headers {
                    again = again.header(name, value);
                }
                let (status, after) = send_with_retry_after(
                    &mut sender,
                    again.body(Full::new(body.clone())).unwrap(),
                )
                .await;
                match status {
                    200..=299 => return (Some(attempt), Instant::now() <= end),
                    503 | 429 | 0 => {
                        if status == 0 {
                            sender = connect(target.addr()).await;
                        }
                        tokio::time::sleep(Duration::from_secs(after.unwrap_or(1))).await;
                    }
                    _ => return (None, true),
                }
            }
            (None, true)
        }));
    }
    let mut attempts = Vec::new();
    let mut unfinished = 0;
    for t in tasks {
        match t.await.unwrap() {
            (Some(n), true) => attempts.push(n),
            _ => unfinished += 1,
        }
    }
    (attempts, unfinished)
}

/// The process's resident set and its peak (VmRSS, VmHWM), MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| {
                l[name.len()..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The server's `/metrics` text.
async fn metrics_text(client: &reqwest::Client, addr: SocketAddr) -> String {
    client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The server's shed submissions so far from its `/metrics`: (all, answered within 1 ms).
async fn server_shed(client: &reqwest::Client, addr: SocketAddr) -> (f64, f64) {
    let text = metrics_text(client, addr).await;
    let route = "route=\"/api/v1/authorities/{authority}/kindergarten/applications\"";
    let mut all = 0.0;
    let mut within = 0.0;
    for line in text.lines().filter(|l| {
        l.starts_with("ochered_http_request_seconds_bucket")
            && l.contains(route)
            && l.contains("outcome=\"shed\"")
    }) {
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        if line.contains("le=\"+Inf\"") {
            all += value;
        } else if line.contains("le=\"0.001\"") {
            within += value;
        }
    }
    (all, within)
}

/// The server's receipts signed so far, and the signatures they took, from its `/metrics`.
async fn receipts_signed(client: &reqwest::Client, addr: SocketAddr) -> (f64, f64) {
    let text = metrics_text(client, addr).await;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("ochered_receipts_signed_total"),
        value("ochered_receipt_signatures_total"),
    )
}

/// The overload runs (see the module's documentation).
async fn overload(addr: SocketAddr, submit: Target, seconds: u64) {
    let client = reqwest::Client::new();
    println!("\nOverload: the server's admission control as shipped; {seconds} s per phase\n");
    // Twice, the better kept: the first phase of a fresh server also pays for its warm-up
    // (the state's and the allocator's first growth), which would understate S and so
    // overstate every goodput ratio below.
    let mut sustainable = closed_loop(&submit, 64, seconds).await;
    report(
        "ochered `POST …/kindergarten/applications`",
        "sustainable: closed loop, 64 connections",
        &sustainable,
    );
    let again = closed_loop(&submit, 64, seconds).await;
    report(
        "ochered `POST …/kindergarten/applications`",
        "sustainable: closed loop, 64 connections, again",
        &again,
    );
    if again.rate > sustainable.rate {
        sustainable = again;
    }
    let base = sustainable.rate;
    println!(
        "\nsustainable rate S = {base:.0}/s; resident set {:.0} MiB\n",
        memory_mib().0
    );
    println!("| offered | wall s | sent/s | late sends | unsent | accepted/s | goodput ÷ S | shed/s | other | accepted p50 / p99 ms | shed p50 / p99 / max ms | server: shed answers within 1 ms | RSS / peak MiB | polite client: attempts to success (n) | unfinished |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for factor in [3.0, 10.0] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (shed_before, within_before) = server_shed(&client, addr).await;
        let polite = tokio::spawn(polite_client(submit.clone(), seconds));
        let (o, wall) = overload_loop(&submit, base * factor, 1000, seconds).await;
        let (attempts, unfinished) = polite.await.unwrap();
        let (shed_after, within_after) = server_shed(&client, addr).await;
        let (rss, hwm) = memory_mib();
        let acc = o.accepted_us.as_ref().unwrap();
        let shed = o.shed_us.as_ref().unwrap();
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let mut by_attempts = std::collections::BTreeMap::new();
        for a in &attempts {
            *by_attempts.entry(*a).or_insert(0u32) += 1;
        }
        let server_shed = shed_after - shed_before;
        println!(
            "| {factor}× ({:.0}/s, 1,000 connections) | {wall:.1} | {:.0} | {} | {} | {:.0} | {:.0}% | {:.0} | {:?} | {:.1} / {:.1} | {:.2} / {:.2} / {:.1} | {:.2}% of {server_shed:.0} | {rss:.0} / {hwm:.0} | {by_attempts:?} (max {}) | {unfinished} |",
            base * factor,
            o.sent as f64 / wall,
            o.late,
            o.unsent,
            o.accepted as f64 / wall,
            o.accepted as f64 / wall / base * 100.0,
            o.shed as f64 / wall,
            o.other,
            ms(acc, 0.5),
            ms(acc, 0.99),
            ms(shed, 0.5),
            ms(shed, 0.99),
            shed.max() as f64 / 1000.0,
            if server_shed > 0.0 { (within_after - within_before) / server_shed * 100.0 } else { 100.0 },
            attempts.iter().max().copied().unwrap_or(0),
        );
    }
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
    let overload_mode = std::env::var("OCHERED_BENCH_HTTP_OVERLOAD").is_ok_and(|v| v == "1");

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
        // Off: the benchmark measures what the server does, sheds would only hide it (on,
        // as shipped, for the overload runs).
        max_in_flight: if overload_mode {
            ochered_api::http::admission::DEFAULT_MAX_IN_FLIGHT
        } else {
            0
        },
        admission_target_ms: if overload_mode {
            ochered_api::http::admission::DEFAULT_TARGET_MS
        } else {
            0
        },
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
        signing_key: Some(ochered_transparency::SigningKey::from_bytes(&[9; 32])),
        tree_head_interval: std::time::Duration::from_secs(10),
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
        if overload_mode {
            overload(addr, submit, seconds).await;
            return;
        }

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
        let (receipts, signatures) = receipts_signed(&client, addr).await;
        println!(
            "receipts, whole run: {receipts:.0} signed under {signatures:.0} signatures ({:.1} per signature)",
            receipts / signatures.max(1.0)
        );
        println!(
            "\nsubmissions sent {sent} (2xx in the measured windows {created}, the rest in warm-ups); applications in the state: {}",
            info["applications"]
        );
        assert_eq!(info["applications"].as_u64(), Some(sent), "every submission is in the state once");
    });
    server_rt.block_on(server.stop());
}

//! Status updates: Server-Sent Events per application (in order, resumable with
//! Last-Event-ID, visible only to its parent and officers) and the webhook outbox (retries
//! until the portal accepts, at least once, a durable cursor across restarts).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use ochered_api::config::{default_webhook_cursor_file, ServerConfig, WebhookConfig};
use ochered_api::http::auth::Role;
use ochered_store::testing::Harness;
use serde_json::{json, Value};

use crate::helpers::{config_for, each_backend, kindergarten, token, TestApp, AUTHORITY};

fn parent(n: u32) -> String {
    token(Role::Parent, &format!("parent-{n}"))
}

// ---------------------------------------------------------------------------------------------
// A small SSE client

#[derive(Debug, Clone)]
struct Frame {
    event: String,
    id: Option<String>,
    data: Value,
}

struct EventStream {
    response: reqwest::Response,
    buf: String,
}

impl EventStream {
    async fn open(
        client: &reqwest::Client,
        url: &str,
        who: &str,
        last_event_id: Option<&str>,
    ) -> EventStream {
        let mut request = client.get(url).bearer_auth(who);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        EventStream {
            response,
            buf: String::new(),
        }
    }

    /// The next event (comments skipped); panics after 10 s of silence.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_owned(), None, String::new());
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment or a bare retry
                }
                return Some(Frame {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `status` events, `n` of them (positions events skipped).
    async fn statuses(&mut self, n: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        while out.len() < n {
            let frame = self.next().await.expect("the stream ended early");
            if frame.event == "status" {
                out.push(frame);
            }
        }
        out
    }
}

fn kinds(frames: &[Frame]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f.data["type"].as_str().unwrap())
        .collect()
}

fn ids(frames: &[Frame]) -> Vec<i64> {
    frames
        .iter()
        .map(|f| f.id.as_deref().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_follows_an_application_live_and_resumes_with_last_event_id() {
    each_backend(follow_an_application).await;
}

async fn follow_an_application(app: TestApp) {
    app.set_up_authority().await;
    let submitted = app
        .post(
            &parent(1),
            "/kindergarten/applications",
            kindergarten("II-AB 000001", &["K1", "K2"]),
        )
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let url = app.url("/applications/1/events");

    // Live: on connect, the current positions; then each change as it commits.
    let mut live = EventStream::open(&app.client, &url, &parent(1), None).await;
    let first = live.next().await.unwrap();
    assert_eq!(first.event, "positions");
    assert_eq!(first.id, None);
    assert_eq!(first.data["status"], "active");
    assert_eq!(first.data["positions"][0]["position"], 1);

    // Someone else's application does not show up in this stream.
    let other = app
        .post(
            &parent(2),
            "/kindergarten/applications",
            kindergarten("II-AB 000002", &["K1"]),
        )
        .await;
    assert_eq!(other.status, 201);
    let amended = app
        .post(
            &parent(1),
            "/applications/1/preferences",
            json!({"preferences": ["K2"], "desired_start": "2027-09-01"}),
        )
        .await;
    assert_eq!(amended.status, 200, "{}", amended.body);
    let withdrawn = app
        .post(
            &parent(1),
            "/applications/1/withdraw",
            json!({"reason": "moved"}),
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);

    let got = live.statuses(2).await;
    assert_eq!(kinds(&got), ["amended", "withdrawn"]);
    let live_ids = ids(&got);
    assert!(live_ids[0] < live_ids[1]);
    for f in &got {
        assert_eq!(f.data["application"], 1);
        assert_eq!(
            f.data["authority_seq"],
            f.id.as_deref().unwrap().parse::<i64>().unwrap()
        );
        assert!(f.data["at"].is_string());
        // Only what the parent already sees: no document, birth date or account.
        let text = f.data.to_string();
        assert!(!text.contains("parent-1") && !text.contains("birth") && !text.contains("child"));
    }
    // The positions event follows the withdrawal (throttled to once a second).
    loop {
        let f = live.next().await.unwrap();
        if f.event == "positions" && f.data["status"] == "withdrawn" {
            assert_eq!(f.data["positions"].as_array().unwrap().len(), 0);
            break;
        }
    }

    // Reconnecting from the start replays every change from the log, in order, same ids.
    let mut replay = EventStream::open(&app.client, &url, &parent(1), Some("0")).await;
    let all = replay.statuses(3).await;
    assert_eq!(kinds(&all), ["submitted", "amended", "withdrawn"]);
    assert_eq!(ids(&all)[1..], live_ids[..]);
    drop(replay);

    // Resuming after the amendment gives only what came after it.
    let after = live_ids[0].to_string();
    let mut resumed = EventStream::open(&app.client, &url, &parent(1), Some(&after)).await;
    let rest = resumed.statuses(1).await;
    assert_eq!(kinds(&rest), ["withdrawn"]);
    assert_eq!(ids(&rest), [live_ids[1]]);
    drop(resumed);

    // The token may come as a query parameter (EventSource cannot send headers).
    let by_query = app
        .client
        .get(format!("{url}?access_token={}", parent(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    drop(by_query);

    // An officer may follow it too; another parent sees nothing; auditors are refused.
    let officer = app
        .client
        .get(&url)
        .bearer_auth(token(Role::Officer, "officer-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(officer.status(), 200);
    drop(officer);
    let stranger = app.get(Some(&parent(2)), "/applications/1/events").await;
    assert_eq!(stranger.status, 404, "{}", stranger.body);
    let missing = app.get(Some(&parent(1)), "/applications/99/events").await;
    assert_eq!(missing.status, 404);
    let auditor = app
        .get(Some(&token(Role::Auditor, "a-1")), "/applications/1/events")
        .await;
    assert_eq!(auditor.status, 403);
    assert_eq!(app.get(None, "/applications/1/events").await.status, 401);
    let bad_id = app
        .send(
            app.client
                .get(&url)
                .bearer_auth(parent(1))
                .header("Last-Event-ID", "yesterday"),
        )
        .await;
    assert_eq!(bad_id.status, 422);
    assert_eq!(bad_id.field(), Some("Last-Event-ID"));

    // A stream still open does not hold up the server's graceful shutdown.
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stops with an event stream open");
    assert!(live.next().await.is_none(), "the stream ends on shutdown");
}

// ---------------------------------------------------------------------------------------------
// Webhooks

#[derive(Default)]
struct Receiver {
    /// Answer 500 to this many more requests.
    refuse: AtomicUsize,
    attempts: AtomicUsize,
    accepted: Mutex<Vec<Accepted>>,
}

/// One accepted delivery.
struct Accepted {
    /// `X-Ochered-Delivery`.
    id: String,
    body: Value,
    /// `X-Ochered-Signature`.
    signature: String,
    raw: Vec<u8>,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    r.attempts.fetch_add(1, Ordering::SeqCst);
    if r.refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    r.accepted.lock().unwrap().push(Accepted {
        id: header("x-ochered-delivery"),
        body: serde_json::from_slice(&body).unwrap(),
        signature: header("x-ochered-signature"),
        raw: body.to_vec(),
    });
    StatusCode::NO_CONTENT
}

async fn start_receiver(receiver: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

const HOOK_SECRET: &[u8] = b"hook-secret";

fn webhook_config(harness: &Harness, url: &str, dir: &std::path::Path) -> ServerConfig {
    let mut config = config_for(harness.url.clone());
    config.webhooks = WebhookConfig {
        url: Some(url.to_owned()),
        secret: Some(HOOK_SECRET.to_vec()),
        // Beside the SQLite file by default; PostgreSQL's default is the working directory.
        cursor_file: match &harness.sqlite_path {
            Some(_) => default_webhook_cursor_file(&harness.url),
            None => Some(dir.join("webhooks.json")),
        },
        timeout_ms: 2_000,
        backoff_initial_ms: 20,
        backoff_max_ms: 100,
        max_attempts: 0,
        concurrency: 1,
    };
    config
}

struct Server {
    base: String,
    running: ochered_api::RunningServer,
    client: reqwest::Client,
}

impl Server {
    async fn start(config: ServerConfig) -> Server {
        let running = ochered_api::spawn(config).await.unwrap();
        Server {
            base: format!("http://{}/api/v1", running.addr),
            running,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, who: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(who)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn submit(&self, n: u32) -> i64 {
        let (status, body) = self
            .post(
                &parent(n),
                &format!("/authorities/{AUTHORITY}/kindergarten/applications"),
                kindergarten(&format!("II-AB {n:06}"), &["K1"]),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["events"][0]["authority_seq"].as_i64().unwrap()
    }
}

/// Waits until `done` holds, checking every 20 ms for up to 20 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

fn cursor_seq(path: &std::path::Path) -> i64 {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["cursors"][AUTHORITY]["seq"].as_i64())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_retry_until_accepted_and_survive_restarts_without_loss_or_storm() {
    deliver_through_restarts(Harness::sqlite().await).await;
    if let Some(pg) = Harness::postgres().await {
        deliver_through_restarts(pg).await;
    }
}

async fn deliver_through_restarts(harness: Harness) {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Arc::new(Receiver::default());
    receiver.refuse.store(3, Ordering::SeqCst);
    let url = start_receiver(receiver.clone()).await;
    let config = webhook_config(&harness, &url, dir.path());
    let cursor_file = config.webhooks.cursor_file.clone().unwrap();
    if harness.sqlite_path.is_some() {
        assert!(cursor_file
            .to_string_lossy()
            .ends_with("events.db.webhooks.json"));
    }

    // 1. Three refusals, then the portal accepts: every notification arrives, in log order.
    let server = Server::start(config.clone()).await;
    let (status, body) = server
        .post(
            &token(Role::Admin, "admin-1"),
            "/authorities",
            json!({"id": AUTHORITY, "name": "Test city", "time_zone": "Asia/Novosibirsk"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = server
        .post(
            &token(Role::Officer, "officer-1"),
            &format!("/authorities/{AUTHORITY}/institutions"),
            json!({"id": "K1", "kind": "kindergarten", "name": "K1"}),
        )
        .await;
    assert_eq!(status, 201);
    let mut expected = Vec::new();
    for n in 1..=3 {
        let seq = server.submit(n).await;
        expected.push(format!("{AUTHORITY}:{seq}:0"));
    }
    let (status, body) = server
        .post(
            &parent(2),
            &format!("/authorities/{AUTHORITY}/applications/2/withdraw"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let withdrawn_seq = body["events"][0]["authority_seq"].as_i64().unwrap();
    expected.push(format!("{AUTHORITY}:{withdrawn_seq}:0"));

    eventually("four notifications are accepted", || {
        receiver.accepted.lock().unwrap().len() >= 4
    })
    .await;
    {
        let accepted = receiver.accepted.lock().unwrap();
        let got: Vec<&str> = accepted.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(got, expected);
        let types: Vec<&str> = accepted
            .iter()
            .map(|a| a.body["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["submitted", "submitted", "submitted", "withdrawn"]);
        for Accepted {
            id,
            body,
            signature,
            raw,
        } in accepted.iter()
        {
            assert_eq!(body["id"], id.as_str());
            assert_eq!(body["authority"], AUTHORITY);
            assert!(body["application"].is_u64() && body["at"].is_string());
            // No personal data: exactly these fields.
            let mut keys: Vec<&str> = body
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "application",
                    "at",
                    "authority",
                    "authority_seq",
                    "id",
                    "type"
                ]
            );
            let expected_signature = format!(
                "sha256={}",
                ochered_api::status::webhooks::signature(HOOK_SECRET, raw)
            );
            assert_eq!(signature, &expected_signature);
        }
        assert_eq!(accepted[3].body["application"], 2);
    }
    // The first notification took four attempts (three refused).
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 7);
    eventually("the cursor reaches the withdrawal", || {
        cursor_seq(&cursor_file) >= withdrawn_seq
    })
    .await;
    server.running.stop().await;

    // 2. Restart while the portal refuses everything: a new application is not delivered,
    //    and nothing delivered before is sent again.
    receiver.refuse.store(usize::MAX, Ordering::SeqCst);
    let attempts_before = receiver.attempts.load(Ordering::SeqCst);
    let server = Server::start(config.clone()).await;
    let seq4 = server.submit(4).await;
    eventually("the portal refused the new notification twice", || {
        receiver.attempts.load(Ordering::SeqCst) >= attempts_before + 2
    })
    .await;
    server.running.stop().await;
    assert_eq!(receiver.accepted.lock().unwrap().len(), 4);
    assert!(cursor_seq(&cursor_file) < seq4);

    // 3. Restart with the portal back: the pending notification arrives, then new ones;
    //    the four delivered before the first restart are not sent again.
    receiver.refuse.store(0, Ordering::SeqCst);
    let server = Server::start(config.clone()).await;
    let seq5 = server.submit(5).await;
    eventually("the pending and the new notification are accepted", || {
        receiver.accepted.lock().unwrap().len() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted: Vec<String> = receiver
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.id.clone())
        .collect();
    expected.push(format!("{AUTHORITY}:{seq4}:0"));
    expected.push(format!("{AUTHORITY}:{seq5}:0"));
    assert_eq!(accepted, expected);
    eventually("the cursor reaches the last notification", || {
        cursor_seq(&cursor_file) >= seq5
    })
    .await;
    server.running.stop().await;
}

//! Trace export: `ochered serve --otlp-endpoint` sends its request and commit spans to an
//! OpenTelemetry collector (OTLP over HTTP, JSON), and the correlation id joins a request to
//! the commit of its events. The collector is a stand-in here that keeps what it receives.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ochered_api::http::auth::{mint, Role};
use serde_json::{json, Value};

/// Every span the stand-in collector received: (name, attributes as text).
fn spans(bodies: &[Value]) -> Vec<(String, serde_json::Map<String, Value>)> {
    let mut out = Vec::new();
    for body in bodies {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let mut attributes = serde_json::Map::new();
                    for a in span["attributes"].as_array().into_iter().flatten() {
                        let value = &a["value"];
                        let text = value["stringValue"]
                            .as_str()
                            .map(str::to_owned)
                            .or_else(|| value["intValue"].as_str().map(str::to_owned))
                            .or_else(|| value["intValue"].as_i64().map(|i| i.to_string()))
                            .unwrap_or_else(|| value.to_string());
                        attributes.insert(a["key"].as_str().unwrap().to_owned(), json!(text));
                    }
                    out.push((
                        span["name"].as_str().unwrap_or_default().to_owned(),
                        attributes,
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_commit_spans_reach_the_collector_joined_by_the_correlation_id() {
    // The stand-in collector: OTLP/HTTP's traces endpoint, keeping each JSON body.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = received.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await });

    const SECRET: &str = "trace-test-secret";
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ochered"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-demo"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("q.db").display()))
        .arg("--otlp-endpoint")
        .arg(format!("http://{collector_addr}"))
        .env("OCHERED_JWT_SECRET", SECRET)
        .env("OCHERED_LOG", "info")
        // Send batches often, so the test need not wait for the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening; open http://").nth(1) {
                let _ = addr_tx.send(rest.split(['/', ' ']).next().unwrap_or_default().into());
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server starts");
    let client = reqwest::Client::new();
    let admin = mint(SECRET.as_bytes(), Role::Admin, "admin-1", 1);
    let response = client
        .post(format!("http://{addr}/api/v1/authorities"))
        .bearer_auth(&admin)
        .header("x-correlation-id", "portal-req-7f3a")
        .json(&json!({"id": "city", "name": "Test city", "time_zone": "Asia/Novosibirsk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-correlation-id"], "portal-req-7f3a");
    // A request without an id gets one, returned in the answer.
    let response = client
        .get(format!("http://{addr}/api/v1/authorities"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let made = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 36, "{made}");

    // Wait for the batches (a few hundred milliseconds apart).
    let mut found = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        found = spans(&received.lock().unwrap());
        let commit = found.iter().any(|(name, _)| name == "commit");
        let requests = found
            .iter()
            .filter(|(name, _)| name.starts_with("POST") || name.starts_with("GET"))
            .count();
        if commit && requests >= 2 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();

    let request = found
        .iter()
        .find(|(name, _)| name == "POST /api/v1/authorities")
        .unwrap_or_else(|| panic!("no request span in {found:?}"));
    assert_eq!(request.1["correlation_id"], "portal-req-7f3a");
    assert_eq!(request.1["http.route"], "/api/v1/authorities");
    assert_eq!(request.1["http.response.status_code"], "201");
    let commit = found
        .iter()
        .find(|(name, a)| {
            name == "commit"
                && a.get("correlation_ids")
                    .and_then(Value::as_str)
                    .is_some_and(|ids| ids.split(',').any(|id| id == "portal-req-7f3a"))
        })
        .unwrap_or_else(|| panic!("no commit span joined to the request in {found:?}"));
    assert_eq!(commit.1["authority"], "city");
    assert_eq!(commit.1["events"], "1");
    let read = found
        .iter()
        .find(|(name, _)| name == "GET /api/v1/authorities")
        .unwrap_or_else(|| panic!("no span of the read in {found:?}"));
    assert_eq!(read.1["correlation_id"], made.as_str());
}

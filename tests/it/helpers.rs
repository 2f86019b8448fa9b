//! `spawn_app`: the real server on port 0 with a fresh store per test, and a small client.

use std::collections::HashMap;
use std::sync::Arc;

use ochered_api::config::ServerConfig;
use ochered_api::http::auth::{mint, Role};
use ochered_api::RunningServer;
use ochered_store::testing::Harness;
use serde_json::{json, Value};

pub const AUTHORITY: &str = "city";
pub const SECRET: &str = "test-jwt-secret";
/// The master key wrapping the per-applicant data keys in tests.
pub const TEST_DATA_KEY: [u8; 32] = [0x42; 32];

pub struct TestApp {
    pub server: Option<RunningServer>,
    pub base: String,
    pub client: reqwest::Client,
    /// Which store the server runs on, for messages.
    pub backend: &'static str,
    _harness: Arc<Harness>,
}

/// The server over a fresh SQLite file, with no demo.
pub async fn spawn_app() -> TestApp {
    spawn_on(Arc::new(Harness::sqlite().await), "sqlite").await
}

/// Runs `test` against SQLite and, when reachable, PostgreSQL.
pub async fn each_backend(test: impl AsyncFn(TestApp)) {
    test(spawn_app().await).await;
    if let Some(pg) = Harness::postgres().await {
        test(spawn_on(Arc::new(pg), "postgres").await).await;
    }
}

pub fn config_for(url: String) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: url,
        seed_demo: false,
        jwt_secret: SECRET.as_bytes().to_vec(),
        jwt_secret_is_default: false,
        person_secret: b"test-person-secret".to_vec(),
        queue_max: 4096,
        max_in_flight: ochered_api::http::admission::DEFAULT_MAX_IN_FLIGHT,
        admission_target_ms: ochered_api::http::admission::DEFAULT_TARGET_MS,
        batch_max: 512,
        request_timeout_ms: 10_000,
        body_limit_bytes: 16 * 1024,
        cors_origins: Vec::new(),
        rate_limit: Default::default(),
        data_key: Some(ochered_writer::privacy::MasterKey::from_bytes(
            TEST_DATA_KEY,
        )),
        snapshot_every: 1_000_000,
        demo_authority: "demo".into(),
        webhooks: Default::default(),
        oidc: None,
        otlp_endpoint: None,
        signing_key: Some(test_signing_key()),
        // Short, so that tests see signed heads soon.
        tree_head_interval: std::time::Duration::from_millis(200),
    }
}

/// The Ed25519 key the test servers sign receipts and tree heads with.
pub fn test_signing_key() -> ochered_transparency::SigningKey {
    ochered_transparency::SigningKey::from_bytes(&[0x24; 32])
}

async fn spawn_on(harness: Arc<Harness>, backend: &'static str) -> TestApp {
    let config = config_for(harness.url.clone());
    spawn_configured(harness, backend, config).await
}

/// The server with this configuration (its database URL may differ from the harness's, e.g.
/// through a proxy or on another filesystem); the harness lives as long as the app.
pub async fn spawn_configured(
    harness: Arc<Harness>,
    backend: &'static str,
    config: ServerConfig,
) -> TestApp {
    let server = ochered_api::spawn(config).await.unwrap();
    TestApp {
        base: format!("http://{}", server.addr),
        server: Some(server),
        client: reqwest::Client::new(),
        backend,
        _harness: harness,
    }
}

pub fn token(role: Role, sub: &str) -> String {
    mint(SECRET.as_bytes(), role, sub, 1)
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `field` of a problem+json body.
    pub fn field(&self) -> Option<&str> {
        self.body.get("field").and_then(|f| f.as_str())
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1/authorities/{AUTHORITY}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status >= 400 {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert_eq!(
                content_type, "application/problem+json",
                "{status} without problem+json: {body}"
            );
            assert_eq!(body["status"], status, "problem status: {body}");
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, who: &str, path: &str, body: Value) -> Answer {
        let request = self
            .client
            .post(self.url(path))
            .bearer_auth(who)
            .json(&body);
        self.send(request).await
    }

    pub async fn post_keyed(&self, who: &str, path: &str, key: &str, body: Value) -> Answer {
        let request = self
            .client
            .post(self.url(path))
            .bearer_auth(who)
            .header("Idempotency-Key", key)
            .json(&body);
        self.send(request).await
    }

    pub async fn get(&self, who: Option<&str>, path: &str) -> Answer {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = who {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// The server's OpenAPI document (checks it is served as JSON).
    pub async fn openapi(&self) -> Value {
        let response = self
            .client
            .get(format!("{}/api/openapi.json", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        response.json().await.unwrap()
    }

    /// The body of `GET {base}{path}` as text (no token; e.g. `/metrics`).
    pub async fn text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn head_seq(&self) -> i64 {
        self.get(None, "/audit/head").await.body["authority_seq"]
            .as_i64()
            .unwrap()
    }

    /// Configures the authority: kindergartens K1–K3, schools S1–S2, a campaign open now,
    /// a therapist specialty with slots.
    pub async fn set_up_authority(&self) {
        let admin = token(Role::Admin, "admin-1");
        let officer = token(Role::Officer, "officer-1");
        let registrar = token(Role::Registrar, "registrar-1");
        let configured = self
            .send(
                self.client
                    .post(format!("{}/api/v1/authorities", self.base))
                    .bearer_auth(&admin)
                    // Tests run rounds on any day of the year: the main round's season is the whole
                    // year (the calendar's own test is in defects.rs).
                    .json(&json!({"id": AUTHORITY, "name": "Test city", "time_zone": "Asia/Novosibirsk",
                        "round_calendar": {"main_round_from": "01-01", "main_round_until": "12-31"}})),
            )
            .await;
        assert_eq!(configured.status, 201, "{}", configured.body);
        for (id, kind) in [
            ("K1", "kindergarten"),
            ("K2", "kindergarten"),
            ("K3", "kindergarten"),
            ("S1", "school"),
            ("S2", "school"),
        ] {
            let a = self
                .post(
                    &officer,
                    "/institutions",
                    json!({"id": id, "kind": kind, "name": format!("{id} name")}),
                )
                .await;
            assert_eq!(a.status, 201, "{}", a.body);
        }
        let today = chrono::Utc::now().date_naive();
        let campaign = json!({
            "id": "school-2027", "year": 2027,
            "stage1_opens": (today - chrono::Duration::days(30)).to_string(),
            "stage2_opens": (today - chrono::Duration::days(1)).to_string(),
            "closes": "2027-09-05",
            "tie_break": {"kind": "registration_time"},
            "mode": {"kind": "single_school"},
            "schools": [{"institution": "S1", "seats": 2}, {"institution": "S2", "seats": 2}]
        });
        let a = self.post(&officer, "/campaigns", campaign).await;
        assert_eq!(a.status, 201, "{}", a.body);
        let a = self
            .post(
                &registrar,
                "/specialties",
                json!({"specialty": "therapist"}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        // 10:00 in the authority's zone (Asia/Novosibirsk, UTC+7) two days on, so the four
        // slots fall on one local day whatever the hour the tests run at.
        let start = (chrono::Utc::now().date_naive() + chrono::Duration::days(2))
            .and_hms_opt(3, 0, 0)
            .unwrap()
            .and_utc();
        let slots: Vec<Value> = (0..4)
            .map(|i| json!({"id": format!("T{i}"), "start": start + chrono::Duration::minutes(30 * i), "duration_minutes": 30}))
            .collect();
        let a = self
            .post(
                &registrar,
                "/slots",
                json!({"doctor": "dr-a", "specialty": "therapist", "slots": slots}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// A kindergarten application body for a child with this document.
pub fn kindergarten(document: &str, preferences: &[&str]) -> Value {
    json!({
        "document": document,
        "birth_date": "2024-03-10",
        "preferences": preferences,
        "desired_start": "2027-09-01",
    })
}

/// POSTs a CSV file to `…/files/{file}` (an officer's import).
pub async fn upload(app: &TestApp, who: &str, file: &str, csv: &str, key: Option<&str>) -> Answer {
    let mut request = app
        .client
        .post(app.url(&format!("/files/{file}")))
        .bearer_auth(who)
        .header("content-type", "text/csv")
        .body(csv.to_owned());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    app.send(request).await
}

/// Reads an exported CSV: checks the BOM and CRLF line ends, answers header and rows.
pub fn parse_csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::str::from_utf8(bytes).unwrap();
    let text = text.strip_prefix('\u{feff}').expect("a byte-order mark");
    assert!(text.ends_with("\r\n"));
    let mut lines = text.trim_end().split("\r\n");
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// GETs a file as `who`: the status, the headers and the bytes.
pub async fn download(
    app: &TestApp,
    who: &str,
    path: &str,
) -> (u16, HashMap<String, String>, Vec<u8>) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(who)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

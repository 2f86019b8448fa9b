//! Security: per-client rate limiting of submissions, token expiry, CORS off unless
//! configured, and secrets and personal data kept out of the logs of the real server binary.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use ochered_api::config::RateLimitConfig;
use ochered_api::config::{ServeArgs, ServerConfig};
use ochered_api::http::auth::{encode_claims, mint, Role};
use ochered_store::testing::Harness;
use serde_json::json;

use crate::helpers::{
    config_for, each_backend, kindergarten, spawn_app, spawn_configured, token, TestApp, SECRET,
};

fn parent(n: u32) -> String {
    token(Role::Parent, &format!("parent-{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_over_the_limit_get_429_and_write_nothing() {
    let harness = Arc::new(Harness::sqlite().await);
    let mut config = config_for(harness.url.clone());
    // One a minute after a burst of 3: the fourth submission in a row is over the limit
    // whatever the speed of the machine.
    config.rate_limit = RateLimitConfig {
        per_minute: 1,
        burst: 3,
    };
    let app = spawn_configured(harness, "sqlite", config).await;
    app.set_up_authority().await;
    let path = "/kindergarten/applications";
    for n in 0..3 {
        let doc = format!("II-AB 00010{n}");
        let a = app
            .post(&parent(1), path, kindergarten(&doc, &["K1"]))
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let head = app.head_seq().await;
    let over = app
        .post_keyed(
            &parent(1),
            path,
            "k-over",
            kindergarten("II-AB 000110", &["K1"]),
        )
        .await;
    assert_eq!(over.status, 429, "{}", over.body);
    assert_eq!(over.body["code"], "rate_limited");
    let retry_after: u64 = over.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(app.head_seq().await, head, "nothing was written");
    assert_eq!(
        app.client
            .get(app.url("/applications"))
            .bearer_auth(parent(1))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "reads are not limited"
    );
    // Another parent has a bucket of its own; so does another subject with the same role.
    let other = app
        .post(&parent(2), path, kindergarten("II-AB 000111", &["K1"]))
        .await;
    assert_eq!(other.status, 201, "{}", other.body);
    // Other submission routes share the client's bucket.
    let booking = app
        .post(
            &parent(1),
            "/waiting-list",
            json!({"specialty": "therapist"}),
        )
        .await;
    assert_eq!(booking.status, 429, "{}", booking.body);
    // Officers' configuration is not a submission.
    let officer = token(Role::Officer, "officer-1");
    for i in 0..5 {
        let a = app
            .post(
                &officer,
                "/institutions",
                json!({"id": format!("X{i}"), "kind": "kindergarten", "name": "x"}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    // The OpenAPI document lists the 429 (with Retry-After) on submissions only.
    let doc = app.openapi().await;
    let responses = |path: &str| {
        doc["paths"][format!("/api/v1/authorities/{{authority}}{path}")]["post"]["responses"]
            .clone()
    };
    let limited = responses("/kindergarten/applications");
    assert_eq!(
        limited["429"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    assert!(
        limited["429"]["headers"]["Retry-After"].is_object(),
        "{limited}"
    );
    assert!(responses("/bookings")["429"].is_object());
    assert!(responses("/institutions")["429"].is_null());
    // Without a valid token the peer address is the key: 401 until the burst is spent,
    // then 429.
    let forged = mint(b"not-the-secret", Role::Parent, "parent-3", 1);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let a = app
            .post(&forged, path, kindergarten("II-AB 000112", &["K1"]))
            .await;
        statuses.push(a.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    // A real parent-3 token is not held back by what the forger did.
    let genuine = app
        .post(&parent(3), path, kindergarten("II-AB 000113", &["K1"]))
        .await;
    assert_eq!(genuine.status, 201, "{}", genuine.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_settings_resolve_with_defaults_and_zero_turns_it_off() {
    let config = ServerConfig::resolve(ServeArgs::default()).unwrap();
    assert_eq!(config.rate_limit, RateLimitConfig::default());
    assert!(config.rate_limit.per_minute > 0 && config.rate_limit.burst >= 10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "rate_limit_per_minute = 0\n").unwrap();
    let with_file = |path: &std::path::Path| {
        ServeArgs::from_flags(["--config", path.to_str().unwrap()]).unwrap()
    };
    let config = ServerConfig::resolve(with_file(&path)).unwrap();
    assert_eq!(config.rate_limit.per_minute, 0);
    std::fs::write(&path, "rate_limit_burst = 0\n").unwrap();
    let error = ServerConfig::resolve(with_file(&path)).unwrap_err();
    assert!(
        format!("{error:#}").contains("rate_limit_burst"),
        "{error:#}"
    );

    // Off: a parent may submit as often as the rules allow.
    let harness = Arc::new(Harness::sqlite().await);
    let mut config = config_for(harness.url.clone());
    config.rate_limit = RateLimitConfig::off();
    let app = spawn_configured(harness, "sqlite", config).await;
    app.set_up_authority().await;
    for n in 0..25 {
        let doc = format!("II-AB 0002{n:02}");
        let a = app
            .post(
                &parent(1),
                "/kindergarten/applications",
                kindergarten(&doc, &["K1"]),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_and_tokens_without_exp_are_401() {
    each_backend(async |app: TestApp| {
        app.set_up_authority().await;
        let now = chrono::Utc::now().timestamp();
        let secret = SECRET.as_bytes();
        let expired = mint(secret, Role::Parent, "parent-1", -1);
        let no_exp = encode_claims(
            secret,
            &json!({"sub": "parent-1", "role": "parent", "iat": now}),
        );
        let null_exp = encode_claims(
            secret,
            &json!({"sub": "parent-1", "role": "parent", "iat": now, "exp": null}),
        );
        let head = app.head_seq().await;
        for (name, token) in [
            ("expired", &expired),
            ("no exp", &no_exp),
            ("null exp", &null_exp),
        ] {
            let a = app
                .post(
                    token,
                    "/kindergarten/applications",
                    kindergarten("II-AB 000301", &["K1"]),
                )
                .await;
            assert_eq!(a.status, 401, "{name}: {}", a.body);
            assert_eq!(a.body["code"], "unauthorized", "{name}");
            let a = app.get(Some(token), "/applications").await;
            assert_eq!(a.status, 401, "{name}: {}", a.body);
        }
        let a = app.get(Some(&expired), "/applications").await;
        assert!(
            a.body["detail"].as_str().unwrap().contains("expired"),
            "{}",
            a.body
        );
        assert_eq!(app.head_seq().await, head);
        app.stop().await;
    })
    .await;
}

/// A preflight and a GET from `origin`: the Access-Control-Allow-Origin of each answer.
async fn cors(base: &str, origin: &str) -> (u16, Option<String>, Option<String>) {
    let client = reqwest::Client::new();
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/api/v1/authorities/city/kindergarten/applications"),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    let allow = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let preflight_allow = allow(&preflight);
    let status = preflight.status().as_u16();
    let get = client
        .get(format!("{base}/api/v1/authorities"))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    (status, preflight_allow, allow(&get))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_unless_origins_are_configured() {
    let app = spawn_app().await;
    let (_, preflight, get) = cors(&app.base, "https://portal.example").await;
    assert_eq!(
        (preflight, get),
        (None, None),
        "no CORS header without configuration"
    );
    app.stop().await;

    let harness = Arc::new(Harness::sqlite().await);
    let mut config = config_for(harness.url.clone());
    config.cors_origins = vec![
        "https://portal.example".into(),
        "http://localhost:3000".into(),
    ];
    let app = spawn_configured(harness, "sqlite", config).await;
    for origin in ["https://portal.example", "http://localhost:3000"] {
        let (status, preflight, get) = cors(&app.base, origin).await;
        assert!((200..300).contains(&status), "preflight {status}");
        assert_eq!(preflight.as_deref(), Some(origin));
        assert_eq!(get.as_deref(), Some(origin));
    }
    let (_, preflight, get) = cors(&app.base, "https://evil.example").await;
    assert_eq!(
        (preflight, get),
        (None, None),
        "an unlisted origin gets nothing"
    );
    app.stop().await;

    // Origins are checked when the configuration is read.
    for bad in ["*", "portal.example", "https://portal.example/path"] {
        let error = ServerConfig::resolve(ServeArgs::from_flags(["--cors-origin", bad]).unwrap())
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("cors_origin"),
            "{bad}: {error:#}"
        );
    }
}

#[test]
fn secrets_come_from_files_and_the_configuration_never_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let flags = |flags: &[(&str, std::path::PathBuf)]| {
        let flags = flags
            .iter()
            .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()]);
        ServeArgs::from_flags(flags).unwrap()
    };
    let mut args = flags(&[
        ("--jwt-secret-file", write("jwt", "jwt-from-file-8d1e\n")),
        (
            "--person-secret-file",
            write("person", "person-from-file-52ab\n"),
        ),
        (
            "--webhook-secret-file",
            write("hook", "hook-from-file-77c3\n"),
        ),
        (
            "--database-url-file",
            write("db", "postgres://app:db-pass-from-file-19f0@db/q\n"),
        ),
    ]);
    args.settings.webhook_url = Some("http://127.0.0.1:9/hook".into());
    let config = ServerConfig::resolve(args).unwrap();
    assert_eq!(config.jwt_secret, b"jwt-from-file-8d1e");
    assert!(!config.jwt_secret_is_default);
    assert_eq!(config.person_secret, b"person-from-file-52ab");
    assert_eq!(
        config.webhooks.secret.as_deref(),
        Some(&b"hook-from-file-77c3"[..])
    );
    assert_eq!(
        config.database_url,
        "postgres://app:db-pass-from-file-19f0@db/q"
    );
    let printed = format!("{config:?} {config:#?}");
    for secret in [
        "jwt-from-file",
        "person-from-file",
        "hook-from-file",
        "db-pass-from-file",
    ] {
        assert!(!printed.contains(secret), "{secret} printed: {printed}");
    }
    assert!(printed.contains("postgres://app:***@db/q"), "{printed}");
    // An empty secret file is refused, and the error names the setting, not a secret.
    let error =
        ServerConfig::resolve(flags(&[("--jwt-secret-file", write("empty", "\n"))])).unwrap_err();
    assert!(
        format!("{error:#}").contains("jwt_secret_file"),
        "{error:#}"
    );
}

/// A client of a server this test started as a process.
struct Remote {
    base: String,
    client: reqwest::Client,
}

impl Remote {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/authorities/city{path}", self.base)
    }

    /// (status, body); every error must be problem+json.
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let problem = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json");
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        assert!(
            status < 400 || problem,
            "{status} without problem+json: {body}"
        );
        (status, body)
    }

    async fn post(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    async fn get(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
            .await
    }
}

/// The real server binary with secrets from the environment and files, at the most verbose
/// log level: requests with documents, birth dates and tokens, some refused, and then not
/// one of them, nor a secret, in what it printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_log_holds_no_secret_no_document_and_no_token() {
    const JWT_SECRET: &str = "jwt-secret-q7Wz3-never-logged";
    const PERSON_SECRET: &str = "person-secret-V9k2-never-logged";
    const HOOK_SECRET: &str = "hook-secret-R4t8-never-logged";
    let dir = tempfile::tempdir().unwrap();
    let jwt_file = dir.path().join("jwt.secret");
    std::fs::write(&jwt_file, format!("{JWT_SECRET}\n")).unwrap();
    let hook_file = dir.path().join("hook.secret");
    std::fs::write(&hook_file, HOOK_SECRET).unwrap();
    let db = dir.path().join("q.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ochered"))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .arg("--no-demo")
        .arg("--cors-origin")
        .arg("https://portal.example,https://other.example")
        // Deliveries to a closed port fail and are logged: errors with a secret at hand.
        .arg("--webhook-url")
        .arg("http://127.0.0.1:9/hook")
        .arg("--webhook-backoff-initial-ms")
        .arg("50")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OCHERED_LOG", "trace")
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .env("OCHERED_JWT_SECRET_FILE", &jwt_file)
        .env("OCHERED_PERSON_SECRET", PERSON_SECRET)
        .env("OCHERED_WEBHOOK_SECRET_FILE", &hook_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let out_log = log.clone();
    let out_reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening; open http://").nth(1) {
                let addr = rest.split(['/', ' ']).next().unwrap_or_default();
                let _ = addr_tx.send(addr.to_owned());
            }
            let mut log = out_log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_log = log.clone();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        err_log.lock().unwrap().push_str(&text);
    });
    let addr = match addr_rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not start:\n{}", log.lock().unwrap());
        }
    };

    let app = Remote {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
    };
    let admin = mint(JWT_SECRET.as_bytes(), Role::Admin, "admin-1", 1);
    let officer = mint(JWT_SECRET.as_bytes(), Role::Officer, "officer-1", 1);
    let parent_token = mint(JWT_SECRET.as_bytes(), Role::Parent, "parent-77", 1);
    let (status, body) = app
        .send(
            app.client
                .post(format!("{}/api/v1/authorities", app.base))
                .bearer_auth(&admin)
                .json(&json!({"id": "city", "name": "Test city", "time_zone": "Asia/Novosibirsk"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for id in ["K1", "K2"] {
        let (status, body) = app
            .post(
                &officer,
                "/institutions",
                json!({"id": id, "kind": "kindergarten", "name": id}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // Documents in several spellings (Latin and Cyrillic look-alikes), a rare birth date.
    let birth_date = "2023-11-17";
    let submit = |doc: &str| {
        let mut body = kindergarten(doc, &["K1", "K2"]);
        body["birth_date"] = json!(birth_date);
        body
    };
    let path = "/kindergarten/applications";
    let (status, first) = app.post(&parent_token, path, submit("IV-KM 735291")).await;
    assert_eq!(status, 201, "{first}");
    let number = first["application"]["number"].as_u64().unwrap();
    // The same child in another spelling: a 409 naming the existing application.
    let (status, body) = app.post(&officer, path, submit("iv км №735291")).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = app.post(&parent_token, path, submit("IV-КМ №735292")).await;
    assert_eq!(status, 201, "{body}");
    // A position, then errors: a bad document, a bad date, an expired and a forged token,
    // an unknown application.
    let (status, body) = app
        .get(&parent_token, &format!("/applications/{number}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(&parent_token, path, submit("IV-KM 735293!!"))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("document")),
        "{body}"
    );
    let mut bad_date = submit("IV-KM 735294");
    bad_date["birth_date"] = json!("2023-02-30");
    let (status, body) = app.post(&parent_token, path, bad_date).await;
    assert_eq!(status, 422, "{body}");
    let expired = mint(JWT_SECRET.as_bytes(), Role::Parent, "parent-77", -1);
    let forged = mint(b"guess", Role::Admin, "admin-1", 1);
    for token in [&expired, &forged] {
        let (status, body) = app.get(token, &format!("/applications/{number}")).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = app.get(&parent_token, "/applications/999").await;
    assert_eq!(status, 404, "{body}");
    // CORS from the flag (a comma list): a listed origin is allowed, another is not.
    let (_, preflight, get) = cors(&app.base, "https://other.example").await;
    assert_eq!(preflight.as_deref(), Some("https://other.example"));
    assert_eq!(get.as_deref(), Some("https://other.example"));
    let (_, preflight, _) = cors(&app.base, "https://evil.example").await;
    assert_eq!(preflight, None);
    // Let a webhook delivery fail at least once.
    std::thread::sleep(std::time::Duration::from_millis(300));

    // SIGTERM (to the child this test started) for a graceful stop, then read everything.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    out_reader.join().unwrap();
    err_reader.join().unwrap();
    let log = log.lock().unwrap().clone();

    // The grep is not vacuous: the log is verbose and covers the requests.
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    assert!(log.contains("listening"), "{log}");
    let mut leaks = Vec::new();
    for (what, needle) in [
        ("the token secret", JWT_SECRET),
        ("the person secret", PERSON_SECRET),
        ("the webhook secret", HOOK_SECRET),
    ] {
        if log.contains(needle) {
            leaks.push(what.to_owned());
        }
    }
    for (what, jwt) in [
        ("the parent's token", &parent_token),
        ("the officer's token", &officer),
        ("the admin's token", &admin),
        ("the expired token", &expired),
        ("the forged token", &forged),
    ] {
        // The whole token, or its claims or signature part alone.
        if jwt.split('.').skip(1).any(|part| log.contains(part)) {
            leaks.push(what.to_owned());
        }
    }
    if log.contains("Bearer ") {
        leaks.push("an Authorization header".into());
    }
    // Documents in any spelling: the log squeezed the way documents are normalised.
    let squeeze = |text: &str| -> String {
        text.chars()
            .filter(|c| !(c.is_whitespace() || "-–—№#./".contains(*c)))
            .flat_map(char::to_lowercase)
            .map(|c| match c {
                'к' => 'k',
                'м' => 'm',
                other => other,
            })
            .collect()
    };
    assert!(squeeze("x IV-КМ №735292 y").contains("km735292"));
    let squeezed = squeeze(&log);
    for digits in ["735291", "735292", "735293", "735294"] {
        if squeezed.contains(&format!("km{digits}")) {
            leaks.push(format!("document …{digits}"));
        }
    }
    if log.contains(birth_date) {
        leaks.push("a birth date".into());
    }
    assert!(
        leaks.is_empty(),
        "the server log shows {leaks:?}; the log ({} bytes) is in the test output above",
        {
            eprintln!("{log}");
            log.len()
        }
    );
}

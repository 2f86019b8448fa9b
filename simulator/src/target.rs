//! Where the load goes: the engine in this process (the writer path the server uses), or an
//! HTTP server, given by URL or spawned and killed by the simulator.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ochered_api::http::auth::{mint, Role};
use ochered_core::command::Command;
use ochered_core::{Event, Rejection, RejectionKind};
use ochered_writer::privacy::{NewKey, Privacy};
use ochered_writer::{Engine, Outcome, RequestMeta, Writer, WriterError};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::scenario::Service;
use crate::workload::{ChildSpec, Contact, Workload};

/// What a client learns from one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx: the application is registered under `number`.
    Acknowledged { number: u32 },
    /// A final refusal; `existing` is the child's application for a duplicate.
    Refused {
        status: u16,
        code: String,
        existing: Option<u32>,
    },
    /// Worth another attempt with the same key: 5xx, timeout, connection error, key in flight.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

/// The engine in this process.
pub struct InProcess {
    pub engine: Arc<Engine>,
    pub writers: Vec<Writer>,
    pub person_secret: Vec<u8>,
    /// Seals the contacts of the run's contact share, as the API does before a command
    /// reaches the writer (a new applicant's data key is stored with the command's events on
    /// SQLite, first on PostgreSQL).
    pub privacy: Privacy,
}

impl InProcess {
    pub async fn send(&self, workload: &Workload, child: &ChildSpec, device: u8) -> Answer {
        let mut command = workload.command(&self.person_secret, child, device);
        let new_key = match self.seal_contact(workload, child, &mut command).await {
            Ok(new_key) => new_key,
            Err(answer) => return answer,
        };
        let sub = workload.parent(child.n, device);
        let key = workload.idempotency_key(child.n, device);
        // Scoped the way the API scopes it, so the log looks the same in both modes.
        let meta = RequestMeta {
            idempotency_key: Some(format!("parent:{sub}:{key}")),
            actor: Some(format!("parent:{sub}")),
            channel: Some("portal".into()),
            correlation_id: None,
        };
        match self.writers[child.authority]
            .submit_with_key(command, meta, new_key)
            .await
        {
            Ok(reply) => match reply.outcome {
                Outcome::Accepted { events } => {
                    match submitted_number(events.iter().map(|e| &e.event)) {
                        Some(number) => Answer::Acknowledged { number },
                        None => Answer::Refused {
                            status: 500,
                            code: "accepted_without_application".into(),
                            existing: None,
                        },
                    }
                }
                Outcome::Rejected { rejection } => refusal(&rejection),
            },
            Err(e) => match e {
                WriterError::Overloaded => Answer::Retry {
                    reason: "503".into(),
                    after: Some(Duration::from_secs(1)),
                },
                WriterError::Unavailable(_) | WriterError::Stopped | WriterError::Broken(_) => {
                    Answer::Retry {
                        reason: "503".into(),
                        after: Some(Duration::from_secs(1)),
                    }
                }
                WriterError::KeyInFlight => Answer::Retry {
                    reason: "409 idempotency_key_in_flight".into(),
                    after: None,
                },
                WriterError::KeyReused => Answer::Refused {
                    status: 422,
                    code: "idempotency_key_reused".into(),
                    existing: None,
                },
            },
        }
    }

    /// Seals the child's contact into the command when the child is in the run's contact
    /// share: the same JSON the API seals (`ContactView`), under the child's own data key;
    /// gives the new key to store with the command's events when the child has none yet.
    async fn seal_contact(
        &self,
        workload: &Workload,
        child: &ChildSpec,
        command: &mut Command,
    ) -> Result<Option<NewKey>, Answer> {
        let Some(contact) = workload.contact(child.n) else {
            return Ok(None);
        };
        let (person, sealed) = match command {
            Command::SubmitKindergartenApplication { form } => (form.child, &mut form.sealed),
            Command::SubmitSchoolApplication { form } => (form.child, &mut form.sealed),
            // A draft's submission carries no contact (as over HTTP).
            _ => return Ok(None),
        };
        let plaintext = contact_json(&contact).to_string();
        let authority = self.writers[child.authority].authority();
        match self
            .privacy
            .seal_for_event(authority, &person, plaintext.as_bytes())
            .await
        {
            Ok((value, new_key)) => {
                *sealed = Some(value);
                Ok(new_key)
            }
            Err(_) => Err(Answer::Retry {
                reason: "503".into(),
                after: Some(Duration::from_secs(1)),
            }),
        }
    }

    /// Commands waiting for the writers now.
    pub fn queue_depth(&self) -> u64 {
        self.writers.iter().map(|w| w.queue_depth() as u64).sum()
    }
}

fn submitted_number<'a>(events: impl Iterator<Item = &'a Event>) -> Option<u32> {
    events.into_iter().find_map(|e| match e {
        Event::KindergartenApplicationSubmitted { number, .. }
        | Event::SchoolApplicationSubmitted { number, .. } => Some(number.0),
        _ => None,
    })
}

fn refusal(rejection: &Rejection) -> Answer {
    let status = match rejection.kind() {
        RejectionKind::Invalid => 422,
        RejectionKind::NotFound => 404,
        RejectionKind::Conflict => 409,
        RejectionKind::Forbidden => 403,
    };
    let existing = match rejection {
        Rejection::DuplicateApplication { existing } => Some(existing.0),
        _ => None,
    };
    Answer::Refused {
        status,
        code: rejection.code(),
        existing,
    }
}

/// An HTTP server on loopback (or wherever `--url` points), or several nodes of a cluster.
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    /// The first URL: probes (health, metrics) go here.
    pub base: String,
    /// Every URL given; requests take them in turn, so a retry after a failed attempt goes
    /// to the next node.
    pub bases: Vec<String>,
    next_base: AtomicUsize,
    jwt_secret: Vec<u8>,
    timeout: Duration,
    /// Requests in flight at once; a send waits for a permit, and the wait counts in its
    /// latency (measured from the intended send time).
    permits: Semaphore,
}

/// A response read whole.
pub struct HttpResponse {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Value,
}

impl Http {
    /// `base` is one URL or a comma-separated list of them (the nodes of a cluster).
    pub fn new(base: &str, jwt_secret: &[u8], timeout: Duration, max_in_flight: usize) -> Http {
        let mut bases: Vec<String> = base
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        if bases.is_empty() {
            bases.push(base.trim().trim_end_matches('/').to_owned());
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_in_flight)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Http {
            client,
            base: bases[0].clone(),
            bases,
            next_base: AtomicUsize::new(0),
            jwt_secret: jwt_secret.to_vec(),
            timeout,
            permits: Semaphore::new(max_in_flight.max(1)),
        }
    }

    pub fn token(&self, role: Role, sub: &str) -> String {
        mint(&self.jwt_secret, role, sub, 24)
    }

    /// One request with a timeout over the whole exchange, once one of the in-flight permits
    /// is free.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<HttpResponse, String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| "closed".to_string())?;
        let base = &self.bases[self.next_base.fetch_add(1, Ordering::Relaxed) % self.bases.len()];
        self.exchange(base, method, path, token, idempotency_key, body)
            .await
    }

    /// A request that does not wait for a permit: health checks and metrics samples must
    /// get through while the load holds every permit.
    pub async fn probe(&self, path: &str) -> Result<HttpResponse, String> {
        self.exchange(&self.base, Method::GET, path, None, None, None)
            .await
    }

    async fn exchange(
        &self,
        base: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<HttpResponse, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{base}{path}"));
        if let Some(token) = token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(key) = idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let bytes = match body {
            Some(v) => {
                builder =
                    builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Bytes::from(serde_json::to_vec(v).expect("json serialises"))
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(bytes)).map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("connection: {e}"))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("connection: {e}"))?
                .to_bytes();
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            Ok::<_, String>(HttpResponse {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err("timeout".into()),
        }
    }

    pub async fn send(&self, workload: &Workload, child: &ChildSpec, device: u8) -> Answer {
        let authority = &workload.authorities[child.authority].id;
        let (path, body) = application_request(workload, child, device);
        let token = self.token(Role::Parent, &workload.parent(child.n, device));
        let key = workload.idempotency_key(child.n, device);
        let path = format!("/api/v1/authorities/{authority}{path}");
        match self
            .request(Method::POST, &path, Some(&token), Some(&key), Some(&body))
            .await
        {
            Err(reason) => Answer::Retry {
                reason: if reason == "timeout" {
                    "timeout".into()
                } else {
                    "connection".into()
                },
                after: None,
            },
            Ok(r) => classify(r),
        }
    }

    /// Sum of the writers' queue depths from /metrics.
    pub async fn queue_depth(&self) -> Option<u64> {
        let r = self.probe("/metrics").await.ok()?;
        let text = r.body.as_str()?;
        let mut total = 0.0;
        for line in text.lines() {
            if line.starts_with("ochered_writer_queue_depth") {
                total += line.rsplit(' ').next()?.parse::<f64>().ok()?;
            }
        }
        Some(total as u64)
    }

    pub async fn healthy(&self) -> bool {
        matches!(self.probe("/health").await, Ok(r) if r.status.is_success())
    }

    /// The server's committed chain head of an authority. With several nodes, the furthest
    /// head any of them reports: the writer's (a read-only copy may be a notification behind).
    pub async fn head(&self, authority: &str) -> anyhow::Result<(i64, String)> {
        let path = format!("/api/v1/authorities/{authority}/audit/head");
        let mut best: Option<(i64, String)> = None;
        let mut failure = None;
        for base in &self.bases {
            let r = match self
                .exchange(base, Method::GET, &path, None, None, None)
                .await
            {
                Ok(r) if r.status.is_success() => r,
                Ok(r) => {
                    failure = Some(anyhow::anyhow!(
                        "audit head of {authority} at {base}: HTTP {}",
                        r.status
                    ));
                    continue;
                }
                Err(e) => {
                    failure = Some(anyhow::anyhow!("audit head of {authority} at {base}: {e}"));
                    continue;
                }
            };
            let head = (
                r.body["authority_seq"].as_i64().unwrap_or(-1),
                r.body["head_hash"].as_str().unwrap_or_default().to_owned(),
            );
            if best.as_ref().is_none_or(|(seq, _)| head.0 > *seq) {
                best = Some(head);
            }
        }
        match (best, failure) {
            (Some(head), _) => Ok(head),
            (None, Some(e)) => Err(e),
            (None, None) => bail!("audit head of {authority}: no URL"),
        }
    }

    /// A setup POST, tried again (on the next URL) after a connection error or a 5xx, for a
    /// few seconds: a cluster node may answer 503 while the nodes learn who writes a new
    /// authority.
    async fn setup_request(
        &self,
        path: &str,
        token: &str,
        body: &Value,
    ) -> Result<HttpResponse, String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self
                .request(Method::POST, path, Some(token), None, Some(body))
                .await;
            let again = match &r {
                Ok(r) => r.status.is_server_error(),
                Err(_) => true,
            };
            if !again || attempt >= 50 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Configures the run's authorities through the API (for a server given by `--url`).
    /// Already-existing parts (409) are fine: the same seed may be run twice.
    pub async fn setup(self: &Arc<Self>, workload: &Arc<Workload>) -> anyhow::Result<()> {
        let admin = self.token(Role::Admin, "simulator-admin");
        let officer = self.token(Role::Officer, "simulator-officer");
        for (index, a) in workload.authorities.iter().enumerate() {
            for command in workload.setup_commands(index) {
                let (path, body, token) = match command {
                    Command::ConfigureAuthority { config } => (
                        "/api/v1/authorities".to_owned(),
                        serde_json::to_value(config)?,
                        &admin,
                    ),
                    Command::RegisterInstitution {
                        id,
                        kind,
                        name,
                        district,
                        address,
                    } => (
                        format!("/api/v1/authorities/{}/institutions", a.id),
                        json!({ "id": id, "kind": kind, "name": name, "district": district, "address": address }),
                        &officer,
                    ),
                    Command::ConfigureCampaign { config } => (
                        format!("/api/v1/authorities/{}/campaigns", a.id),
                        serde_json::to_value(config)?,
                        &officer,
                    ),
                    other => bail!("no HTTP route for setup command {}", other.name()),
                };
                let r = self
                    .setup_request(&path, token, &body)
                    .await
                    .map_err(|e| anyhow::anyhow!("setup {path}: {e}"))?;
                if !(r.status.is_success() || r.status == StatusCode::CONFLICT) {
                    bail!("setup {path}: HTTP {}: {}", r.status, r.body);
                }
            }
            // Drafts go in concurrently, so the server commits them in groups.
            let mut tasks = tokio::task::JoinSet::new();
            for child in workload.drafts(index) {
                if tasks.len() >= 128 {
                    tasks.join_next().await.expect("tasks running")??;
                }
                let (http, workload, authority) = (self.clone(), workload.clone(), a.id.clone());
                tasks.spawn(async move {
                    let token = http.token(Role::Parent, &workload.parent(child.n, 0));
                    let body = school_body(&workload, &child);
                    let path = format!("/api/v1/authorities/{authority}/school/drafts");
                    let r = http
                        .setup_request(&path, &token, &body)
                        .await
                        .map_err(|e| anyhow::anyhow!("saving a draft: {e}"))?;
                    if !r.status.is_success() && !child.out_of_range {
                        bail!("saving a draft: HTTP {}: {}", r.status, r.body);
                    }
                    Ok(())
                });
            }
            while let Some(done) = tasks.join_next().await {
                done??;
            }
        }
        Ok(())
    }
}

fn school_body(workload: &Workload, child: &ChildSpec) -> Value {
    json!({
        "campaign": workload.campaign_id(),
        "document": child.document,
        "birth_date": child.birth_date,
        "schools": child.institutions.iter().map(|&i| workload.institution_id(i)).collect::<Vec<_>>(),
        "privileges": child.privileges,
    })
}

/// The route (below the authority) and body of a device's submission, with the child's
/// contact when it is in the run's contact share (a draft's submission takes none).
fn application_request(
    workload: &Workload,
    child: &ChildSpec,
    device: u8,
) -> (&'static str, Value) {
    let (path, mut body) = application_form(workload, child, device);
    if path != "/school/drafts/submit" {
        if let Some(c) = workload.contact(child.n) {
            body["contact"] = contact_json(&c);
        }
    }
    (path, body)
}

/// A contact as the API takes it (`contact` in a submission's body).
fn contact_json(c: &Contact) -> Value {
    json!({
        "child_name": c.child_name,
        "guardian_name": c.guardian_name,
        "phone": c.phone,
        "email": c.email,
    })
}

fn application_form(workload: &Workload, child: &ChildSpec, device: u8) -> (&'static str, Value) {
    match workload.scenario.service {
        Service::Kindergarten => (
            "/kindergarten/applications",
            json!({
                "document": child.document,
                "birth_date": child.birth_date,
                "preferences": child.institutions.iter().map(|&i| workload.institution_id(i)).collect::<Vec<_>>(),
                "desired_start": workload.desired_start(),
                "any_other": child.any_other,
                "privileges": child.privileges,
            }),
        ),
        Service::School if device == 0 && child.from_draft => (
            "/school/drafts/submit",
            json!({ "campaign": workload.campaign_id(), "document": child.document }),
        ),
        Service::School => ("/school/applications", school_body(workload, child)),
    }
}

fn classify(r: HttpResponse) -> Answer {
    let status = r.status.as_u16();
    if r.status.is_success() {
        return match r.body["application"]["number"].as_u64() {
            Some(number) => Answer::Acknowledged {
                number: number as u32,
            },
            None => Answer::Refused {
                status,
                code: "acknowledged_without_number".into(),
                existing: None,
            },
        };
    }
    let code = r.body["code"]
        .as_str()
        .unwrap_or("no_problem_body")
        .to_owned();
    // 429: a rate limit shed the request; like a 503 it is worth another try after
    // Retry-After.
    if status >= 500 || status == 429 || code == "idempotency_key_in_flight" {
        return Answer::Retry {
            reason: if status >= 500 || status == 429 {
                status.to_string()
            } else {
                format!("{status} {code}")
            },
            after: r.retry_after,
        };
    }
    Answer::Refused {
        status,
        code,
        existing: r.body["existing"].as_u64().map(|n| n as u32),
    }
}

/// An `ochered serve` child process on a fixed loopback port and database, which can be
/// killed with SIGKILL and restarted on the same port and database.
pub struct SpawnedServer {
    pub bin: PathBuf,
    pub port: u16,
    pub database_url: String,
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    child: Option<tokio::process::Child>,
    pub starts: u32,
    /// The running server's process id, 0 while it is down (for memory samples).
    pub pid: Arc<std::sync::atomic::AtomicU32>,
}

impl SpawnedServer {
    pub fn new(
        bin: PathBuf,
        database_url: String,
        log: PathBuf,
        extra_args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        // A free port now; the server binds it with SO_REUSEADDR, also after a kill.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .context("failed to find a free port")?
            .local_addr()?
            .port();
        Ok(SpawnedServer {
            bin,
            port,
            database_url,
            log,
            extra_args,
            env,
            child: None,
            starts: 0,
            pid: Arc::new(std::sync::atomic::AtomicU32::new(0)),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until /health answers.
    pub async fn start(&mut self, http: &Http) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("failed to open {}", self.log.display()))?;
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--no-demo")
            .args(&self.extra_args)
            .env("OCHERED_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {} serve", self.bin.display()))?;
        self.pid.store(child.id().unwrap_or(0), Ordering::Relaxed);
        self.child = Some(child);
        self.starts += 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if http.healthy().await {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "the server exited with {status} at start; see {}",
                        self.log.display()
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the server did not become healthy in 60 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill(&mut self) {
        self.pid.store(0, Ordering::Relaxed);
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, then wait for a clean exit (SIGKILL after 30 s).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.pid.store(0, Ordering::Relaxed);
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        #[cfg(unix)]
        if let Some(pid) = child.id() {
            // SAFETY: sending a signal to our own child process by its id.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        Ok(())
    }
}

//! Store outages in the middle of a load.
//!
//! - PostgreSQL unreachable: a TCP proxy inside the test stands between the server and the
//!   shared PostgreSQL (which is never stopped); cutting it closes every proxied connection
//!   and refuses new ones. While cut, submissions answer 503 problem+json with Retry-After
//!   (no hang) and /ready says not ready; after the restore the server resumes by itself.
//! - SQLite out of disk space: the database lives on a small tmpfs that a filler file fills
//!   up. While full, submissions answer 503; the file stays intact; deleting the filler lets
//!   submissions succeed again without a restart.
//!
//! Both check that nothing answered 2xx is missing from the log and that the chain verifies.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ochered_api::http::auth::Role;
use ochered_core::Event;
use ochered_store::testing::Harness;
use ochered_store::VerifyOutcome;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::helpers::{config_for, kindergarten, spawn_configured, token, TestApp, AUTHORITY};

/// Longer than any answer may take: the server's request timeout is 3 s.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
const SERVER_TIMEOUT_MS: u64 = 3_000;
/// Only guards against a server that never recovers.
const RECOVERY_BOUND: Duration = Duration::from_secs(90);

/// A child of the load: its own parent account, document and key.
pub(crate) fn child(n: u32) -> (String, String, String) {
    (
        format!("parent-outage-{n}"),
        format!("II-AB {:06}", 100_000 + n),
        format!("outage-key-{n}"),
    )
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub status: u16,
    pub code: String,
    pub retry_after: bool,
    pub number: Option<u64>,
}

/// Submits child `n`'s kindergarten application once (problem+json is checked for every
/// 4xx/5xx by `TestApp::send`). Panics if no answer comes within [`CLIENT_TIMEOUT`].
pub(crate) async fn submit(app: &TestApp, n: u32) -> Attempt {
    let (parent, document, key) = child(n);
    let who = token(Role::Parent, &parent);
    let answer = tokio::time::timeout(
        CLIENT_TIMEOUT,
        app.post_keyed(
            &who,
            "/kindergarten/applications",
            &key,
            kindergarten(&document, &["K1", "K2"]),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("{}: no answer within {CLIENT_TIMEOUT:?}", app.backend));
    Attempt {
        status: answer.status,
        code: answer.body["code"].as_str().unwrap_or_default().to_owned(),
        retry_after: answer.headers.contains_key("retry-after"),
        number: answer.body["application"]["number"].as_u64(),
    }
}

/// Every answer a client may get while the store is away or the server is overloaded: 2xx
/// with a number, 503 or 429 with Retry-After (problem+json is checked by `TestApp::send`),
/// or 409 for a key whose earlier attempt is still in the writer.
fn check_shape(backend: &str, n: u32, a: &Attempt) {
    match a.status {
        200 | 201 => assert!(a.number.is_some(), "{backend}: 2xx without a number: {a:?}"),
        503 | 429 => assert!(a.retry_after, "{backend}: shed without Retry-After: {a:?}"),
        409 => assert_eq!(
            a.code, "idempotency_key_in_flight",
            "{backend}: child {n}: {a:?}"
        ),
        _ => panic!("{backend}: child {n}: unexpected answer {a:?}"),
    }
}

/// What the clients were told, per child: the number of a 2xx (the same on every 2xx).
#[derive(Default)]
pub(crate) struct Ledger {
    pub acknowledged: Mutex<BTreeMap<u32, u64>>,
    pub statuses: Mutex<BTreeMap<u16, u64>>,
}

impl Ledger {
    pub fn record(&self, backend: &str, n: u32, a: &Attempt) {
        check_shape(backend, n, a);
        *self.statuses.lock().unwrap().entry(a.status).or_default() += 1;
        if let Some(number) = a.number {
            let previous = self.acknowledged.lock().unwrap().insert(n, number);
            assert!(
                previous.is_none_or(|p| p == number),
                "{backend}: child {n} acknowledged as {previous:?} and {number}"
            );
        }
    }
}

/// A background load: `workers` clients, each taking the next child and retrying it with the
/// same key (after a short pause) until a 2xx, until `stop` (children left unacknowledged
/// are finished by [`finish_all`]).
fn start_load(
    app: Arc<TestApp>,
    ledger: Arc<Ledger>,
    next: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    workers: usize,
) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (app, ledger, next, stop) = (app.clone(), ledger.clone(), next.clone(), stop.clone());
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                loop {
                    let a = submit(&app, n).await;
                    ledger.record(app.backend, n, &a);
                    if a.number.is_some() {
                        break;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    set
}

/// Retries each child with its key until acknowledged (the store is back).
pub(crate) async fn finish_all(
    app: &TestApp,
    ledger: &Ledger,
    children: impl IntoIterator<Item = u32>,
) {
    for n in children {
        let deadline = tokio::time::Instant::now() + RECOVERY_BOUND;
        loop {
            let a = submit(app, n).await;
            ledger.record(app.backend, n, &a);
            if a.number.is_some() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: child {n} still refused after the store came back: {a:?}",
                app.backend
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Submits fresh children until one is acknowledged; panics past [`RECOVERY_BOUND`].
async fn until_accepted(app: &TestApp, ledger: &Ledger, next: &AtomicU32) -> Duration {
    let started = tokio::time::Instant::now();
    let n = next.fetch_add(1, Ordering::Relaxed);
    loop {
        let a = submit(app, n).await;
        ledger.record(app.backend, n, &a);
        if a.number.is_some() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < RECOVERY_BOUND,
            "{}: no submission succeeded within {RECOVERY_BOUND:?} after the store came back; last {a:?}",
            app.backend
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ready_status(app: &TestApp) -> u16 {
    tokio::time::timeout(
        CLIENT_TIMEOUT,
        app.client.get(format!("{}/ready", app.base)).send(),
    )
    .await
    .expect("/ready answers")
    .expect("/ready answers")
    .status()
    .as_u16()
}

/// Every acknowledged number is in the log as an application of that child's parent, each
/// child has exactly one application, and the chain verifies.
pub(crate) async fn check_log(app: &TestApp, ledger: &Ledger) {
    let backend = app.backend;
    let store = app.server.as_ref().unwrap().state.engine.store();
    let mut in_log: HashMap<u64, String> = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.read(AUTHORITY, after, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.authority_seq;
        for stored in &page {
            let event = ochered_writer::decode_event(stored).unwrap();
            if let Event::KindergartenApplicationSubmitted {
                number,
                submitted_by,
                ..
            } = event
            {
                let previous = in_log.insert(u64::from(number.0), submitted_by.clone());
                assert!(previous.is_none(), "{backend}: number {number:?} twice");
            }
        }
    }
    let acknowledged = ledger.acknowledged.lock().unwrap().clone();
    for (n, number) in &acknowledged {
        let (parent, _, _) = child(*n);
        let by = in_log.get(number).unwrap_or_else(|| {
            panic!("{backend}: child {n} acknowledged as {number}, not in the log")
        });
        assert!(
            by.contains(&parent),
            "{backend}: number {number} submitted by {by}, acknowledged to {parent}"
        );
    }
    // Each child retried with one key: exactly one application each.
    assert_eq!(
        in_log.len(),
        acknowledged.len(),
        "{backend}: applications in the log vs children acknowledged"
    );
    match store.verify(AUTHORITY).await.unwrap() {
        VerifyOutcome::Ok { .. } => {}
        broken => panic!("{backend}: chain broken: {broken:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL behind a proxy that can be cut.

enum ProxyCommand {
    Cut(oneshot::Sender<()>),
    Restore(oneshot::Sender<()>),
}

/// A TCP proxy on loopback to `upstream`. Cut: every proxied connection is closed and the
/// port refuses connections. Restored: it accepts again on the same port.
struct Proxy {
    addr: SocketAddr,
    commands: mpsc::Sender<ProxyCommand>,
    task: tokio::task::JoinHandle<()>,
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = listen("127.0.0.1:0".parse().unwrap()).expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let (commands, mut rx) = mpsc::channel::<ProxyCommand>(4);
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let command = match &listener {
                    Some(l) => tokio::select! {
                        accepted = l.accept() => {
                            if let Ok((client, _)) = accepted {
                                connections.spawn(pipe(client, upstream));
                            }
                            None
                        }
                        command = rx.recv() => match command {
                            Some(c) => Some(c),
                            None => return,
                        },
                    },
                    None => match rx.recv().await {
                        Some(c) => Some(c),
                        None => return,
                    },
                };
                match command {
                    Some(ProxyCommand::Cut(done)) => {
                        listener = None;
                        connections.abort_all();
                        while connections.join_next().await.is_some() {}
                        let _ = done.send(());
                    }
                    Some(ProxyCommand::Restore(done)) => {
                        if listener.is_none() {
                            listener = Some(listen(addr).expect("rebind the proxy's port"));
                        }
                        let _ = done.send(());
                    }
                    None => while connections.try_join_next().is_some() {},
                }
            }
        });
        Proxy {
            addr,
            commands,
            task,
        }
    }

    async fn cut(&self) {
        let (done, rx) = oneshot::channel();
        self.commands.send(ProxyCommand::Cut(done)).await.unwrap();
        rx.await.unwrap();
    }

    async fn restore(&self) {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(ProxyCommand::Restore(done))
            .await
            .unwrap();
        rx.await.unwrap();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_answers_503_and_recovers_by_itself() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    let options = sqlx::postgres::PgConnectOptions::from_str(&harness.url).unwrap();
    let host_port = format!("{}:{}", options.get_host(), options.get_port());
    assert!(
        harness.url.contains(&host_port),
        "the test PostgreSQL URL must name its host and port: {host_port}"
    );
    let upstream: SocketAddr = tokio::net::lookup_host(&host_port)
        .await
        .unwrap()
        .find(|a| a.is_ipv4())
        .expect("an IPv4 address for PostgreSQL");
    let proxy = Proxy::start(upstream).await;
    let mut config = config_for(harness.url.replace(&host_port, &proxy.addr.to_string()));
    config.request_timeout_ms = SERVER_TIMEOUT_MS;
    let app = Arc::new(spawn_configured(Arc::new(harness), "postgres", config).await);
    app.set_up_authority().await;

    let ledger = Arc::new(Ledger::default());
    let next = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(app.clone(), ledger.clone(), next.clone(), stop.clone(), 6);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ledger.acknowledged.lock().unwrap().len();
    assert!(before > 0, "the load was acknowledged before the cut");

    proxy.cut().await;
    // While cut: fresh submissions are refused with 503 + Retry-After, promptly.
    let mut refused = 0;
    for _ in 0..5 {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let a = submit(&app, n).await;
        ledger.record(app.backend, n, &a);
        if a.status == 503 {
            refused += 1;
        }
    }
    assert!(refused >= 4, "503s during the outage: {refused} of 5");
    assert_eq!(ready_status(&app).await, 503, "/ready during the outage");
    // The load stops while the store is still away: nothing submits after the restore.
    stop.store(true, Ordering::Relaxed);
    let mut load = load;
    while let Some(done) = load.join_next().await {
        done.unwrap();
    }
    // Once a commit has failed and the state cannot be rebuilt, reads refuse rather than show
    // uncommitted effects. A commit in progress at the cut may still be waiting for a
    // connection (the pool retries until its acquire timeout), so the refusal is awaited.
    let waiting = tokio::time::Instant::now();
    let read = loop {
        let read = app.get(None, "/queues").await;
        if read.status == 503 || waiting.elapsed() > Duration::from_secs(30) {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(read.status, 503, "a read during the outage: {}", read.body);
    assert!(read.headers.contains_key("retry-after"));

    proxy.restore().await;
    // With no submission to prompt it, the writer rebuilds its state by itself.
    let restored = tokio::time::Instant::now();
    loop {
        let read = app.get(None, "/queues").await;
        if read.status == 200 {
            break;
        }
        assert_eq!(read.status, 503, "{}", read.body);
        assert!(
            restored.elapsed() < RECOVERY_BOUND,
            "reads still refused {RECOVERY_BOUND:?} after the restore"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "postgres outage: reads back {:?} after the restore, unprompted",
        restored.elapsed()
    );
    let took = until_accepted(&app, &ledger, &next).await;
    eprintln!("postgres outage: a submission accepted {took:?} later");
    assert_eq!(ready_status(&app).await, 200, "/ready after the restore");
    // Children refused during the outage that no 2xx reached: retried with their keys.
    let refused_children: Vec<u32> = (0..next.load(Ordering::Relaxed))
        .filter(|n| !ledger.acknowledged.lock().unwrap().contains_key(n))
        .collect();
    finish_all(&app, &ledger, refused_children).await;
    let statuses = ledger.statuses.lock().unwrap().clone();
    eprintln!("postgres outage: answers by status {statuses:?}");
    assert!(statuses.get(&503).copied().unwrap_or(0) >= 4);
    check_log(&app, &ledger).await;
    let app = Arc::try_unwrap(app).ok().expect("the load has stopped");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// SQLite on a full filesystem.

/// A tmpfs mounted for the test, unmounted (lazily, so open files cannot block it) on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if output.status.success() {
            Ok(Tmpfs {
                path: path.to_owned(),
            })
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Writes zeros into `path` until the filesystem says it is full.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(_) => break,
        }
    }
    let _ = file.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_answers_503_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    std::fs::create_dir(&mount_point).unwrap();
    let _tmpfs = match Tmpfs::mount(&mount_point, "8m") {
        Ok(t) => t,
        Err(why) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: sqlite_disk_full: cannot mount a small tmpfs ({why})"
            );
            return;
        }
    };
    let db = mount_point.join("events.db");
    let mut config = config_for(format!("sqlite://{}", db.display()));
    config.request_timeout_ms = SERVER_TIMEOUT_MS;
    // The harness only satisfies `TestApp`; the server's file is on the tmpfs.
    let app = spawn_configured(Arc::new(Harness::sqlite().await), "sqlite", config).await;
    app.set_up_authority().await;
    let ledger = Ledger::default();
    let next = AtomicU32::new(0);
    for _ in 0..20 {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let a = submit(&app, n).await;
        ledger.record(app.backend, n, &a);
        assert!(a.number.is_some(), "before the disk fills: {a:?}");
    }

    let filler = mount_point.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0);
    // Keep submitting until the store runs out of room: the WAL may still have free pages.
    let mut first_503 = None;
    for _ in 0..3_000 {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let a = submit(&app, n).await;
        ledger.record(app.backend, n, &a);
        if a.status == 503 {
            first_503 = Some(n);
            break;
        }
    }
    let first_503 = first_503.expect("a full disk is answered with 503");
    // Still full: refused again, promptly and with Retry-After (checked by `record`).
    for _ in 0..3 {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let a = submit(&app, n).await;
        ledger.record(app.backend, n, &a);
        assert_eq!(a.status, 503, "while full: {a:?}");
    }
    eprintln!("sqlite disk full: first 503 at child {first_503} after filling {filled} bytes");

    // The file is intact even while full.
    {
        use sqlx::{Connection, SqliteConnection};
        let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(check, "ok");
        conn.close().await.unwrap();
    }

    std::fs::remove_file(&filler).unwrap();
    let took = until_accepted(&app, &ledger, &next).await;
    eprintln!("sqlite disk full: service resumed {took:?} after freeing space");
    let refused: Vec<u32> = (0..next.load(Ordering::Relaxed))
        .filter(|n| !ledger.acknowledged.lock().unwrap().contains_key(n))
        .collect();
    finish_all(&app, &ledger, refused).await;
    check_log(&app, &ledger).await;
    app.stop().await;
}

//! Cluster mode end to end (PostgreSQL only): three real `ochered serve --cluster` processes
//! on one database, submissions driven at all three with retries, and the writer of an
//! authority killed with SIGKILL and restarted, round after round. Every acknowledged
//! application must be in the log once (lost = 0, duplicates = 0), every chain must
//! verify, and every authority must accept writes again after each kill. The failover time
//! (kill to the first acknowledged write through another node) is printed, not asserted.
//! Every node lists every authority and is ready, also when it writes nothing; a new
//! authority can be read on every node as soon as it is created.
//!
//! `the_simulator_survives_killing_the_writer`: the same kill/restart loop with the load
//! from `ochered simulate --mode http --url n1,n2,n3` (a child process) and its audit.
//!
//! `a_fenced_writer_hands_back_at_once`: a writer fenced by a takeover becomes a read-only
//! copy at once (engine level, two engines on one database).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ochered_api::http::auth::{mint, Role};
use ochered_core::domain::InstitutionKind;
use ochered_core::{Command, Event};
use ochered_store::cluster::ClusterLink;
use ochered_store::testing::{Harness, Raw};
use ochered_store::{PgStore, VerifyOutcome};
use ochered_writer::{
    demo, Engine, Outcome, Ownership, RequestMeta, Writer, WriterConfig, WriterError,
};
use serde_json::{json, Value};

use crate::helpers::SECRET;

const AUTHORITIES: [&str; 3] = ["north", "centre", "south"];
const KILL_ROUNDS: usize = 3;
const DRIVERS: usize = 6;

struct Node {
    id: String,
    port: u16,
    child: Option<tokio::process::Child>,
    log: std::path::PathBuf,
}

impl Node {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self, database_url: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ochered"))
            .args(["serve", "--cluster", "--no-demo"])
            .args(["--node-id", &self.id])
            .args(["--advertise-url", &self.url()])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--database-url", database_url])
            .args(["--jwt-secret", SECRET])
            .args(["--person-secret", "cluster-test-person-secret"])
            .env("OCHERED_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start ochered serve");
        self.child = Some(child);
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_healthy(client: &reqwest::Client, node: &Node) {
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{}/health", node.url())).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    panic!("node {} did not start; its log:\n{log}", node.id);
}

fn kindergarten_body(n: u64) -> Value {
    json!({
        "document": format!("II-CL {n:06}"),
        "birth_date": "2024-03-10",
        "preferences": ["K1"],
        "desired_start": "2027-09-01",
    })
}

/// What one attempt to submit child `n` came to.
enum Attempt {
    Acked(u32),
    Retry,
}

async fn submit(client: &reqwest::Client, base: &str, authority: &str, n: u64) -> Attempt {
    let token = mint(
        SECRET.as_bytes(),
        Role::Parent,
        &format!("cl-parent-{n}"),
        1,
    );
    let sent = client
        .post(format!(
            "{base}/api/v1/authorities/{authority}/kindergarten/applications"
        ))
        .bearer_auth(token)
        .header("Idempotency-Key", format!("cl-{n}"))
        .json(&kindergarten_body(n))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    let Ok(response) = sent else {
        return Attempt::Retry;
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match status {
        201 => Attempt::Acked(
            body["application"]["number"]
                .as_u64()
                .unwrap_or_else(|| panic!("201 without a number: {body}")) as u32,
        ),
        // 5xx (failover, overload), 409 key in flight, 429 rate limited: retry, same key.
        409 if body["code"] != "duplicate" => Attempt::Retry,
        429 | 500..=599 => Attempt::Retry,
        _ => panic!("child {n} at {base} for {authority}: {status} {body}"),
    }
}

/// Submits child `n` until acknowledged, starting at node `first` and moving on after a
/// failed attempt.
async fn submit_until_acked(
    client: &reqwest::Client,
    urls: &[String],
    authority: &str,
    n: u64,
    first: usize,
) -> u32 {
    for attempt in 0..2000 {
        let base = &urls[(first + attempt) % urls.len()];
        match submit(client, base, authority, n).await {
            Attempt::Acked(number) => return number,
            Attempt::Retry => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("child {n} of {authority} was never acknowledged");
}

/// POSTs until 201, retrying 5xx (e.g. while the other nodes learn who writes a new
/// authority).
async fn post_until_created(client: &reqwest::Client, token: &str, url: String, body: Value) {
    for _ in 0..400 {
        let r = client
            .post(&url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        if let Ok(r) = r {
            let status = r.status().as_u16();
            if status == 201 {
                return;
            }
            let text = r.text().await.unwrap_or_default();
            assert!(status >= 500, "{url}: {status} {text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never succeeded");
}

fn sorted_authorities() -> Vec<String> {
    let mut all: Vec<String> = AUTHORITIES.iter().map(|a| a.to_string()).collect();
    all.sort();
    all
}

/// The ids `GET /api/v1/authorities` lists, sorted.
async fn listed(client: &reqwest::Client, url: &str) -> Vec<String> {
    let r = client
        .get(format!("{url}/api/v1/authorities"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let mut ids: Vec<String> = body["authorities"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `/ready` must answer 200; returns its `authorities` and `writes`.
async fn ready(client: &reqwest::Client, url: &str) -> (Vec<String>, Vec<String>) {
    let r = client.get(format!("{url}/ready")).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{url}/ready: {body}");
    let names = |key: &str| -> Vec<String> {
        let mut v: Vec<String> = body[key]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    (names("authorities"), names("writes"))
}

async fn owner_of(harness: &Harness, authority: &str) -> String {
    let Raw::Pg(pg) = &harness.raw else {
        unreachable!("PostgreSQL harness")
    };
    sqlx::query_scalar("SELECT node_id FROM authority_owners WHERE authority = $1")
        .bind(authority)
        .fetch_one(pg.pool())
        .await
        .unwrap()
}

/// Three nodes on free loopback ports over the database at `url`, each healthy.
async fn start_three(
    url: &str,
    dir: &std::path::Path,
    prefix: &str,
    client: &reqwest::Client,
) -> Vec<Node> {
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| Node {
            id: format!("{prefix}{i}"),
            port: free_port(),
            child: None,
            log: dir.join(format!("node{i}.log")),
        })
        .collect();
    for node in &mut nodes {
        node.start(url);
    }
    for node in &nodes {
        wait_healthy(client, node).await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_killing_the_writer() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut nodes = start_three(&harness.url, dir.path(), "node", &client).await;
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();

    // Each node creates one authority (and so writes it); institutions are registered
    // through another node, which forwards the write to the owner.
    let admin = mint(SECRET.as_bytes(), Role::Admin, "cl-admin", 1);
    let officer = mint(SECRET.as_bytes(), Role::Officer, "cl-officer", 1);
    for (i, authority) in AUTHORITIES.iter().enumerate() {
        post_until_created(
            &client,
            &admin,
            format!("{}/api/v1/authorities", urls[i]),
            json!({"id": authority, "name": authority, "time_zone": "Europe/Moscow"}),
        )
        .await;
        // The other nodes answer reads of it at once (no 404 until their next round).
        for url in &urls {
            let r = client
                .get(format!("{url}/api/v1/authorities/{authority}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{url} right after {authority} was created");
        }
        let via = &urls[(i + 1) % 3];
        post_until_created(
            &client,
            &officer,
            format!("{via}/api/v1/authorities/{authority}/institutions"),
            json!({"id": "K1", "kind": "kindergarten", "name": "K1"}),
        )
        .await;
    }
    for (i, authority) in AUTHORITIES.iter().enumerate() {
        assert_eq!(
            owner_of(&harness, authority).await,
            format!("node{}", i + 1)
        );
    }
    // Every node serves reads of every authority from its copy that follows the log.
    for url in &urls {
        for authority in AUTHORITIES {
            let mut institutions = 0;
            for _ in 0..200 {
                let r = client
                    .get(format!("{url}/api/v1/authorities/{authority}"))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    let body: Value = r.json().await.unwrap();
                    institutions = body["institutions"].as_u64().unwrap_or(0);
                    if institutions == 1 {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(institutions, 1, "{url} does not show {authority}");
        }
    }
    // Every node lists every authority and is ready; each writes the one it created.
    for (i, url) in urls.iter().enumerate() {
        assert_eq!(listed(&client, url).await, sorted_authorities(), "{url}");
        let (authorities, writes) = ready(&client, url).await;
        assert_eq!(authorities, sorted_authorities(), "{url}/ready");
        assert_eq!(writes, vec![AUTHORITIES[i].to_string()], "{url}/ready");
    }

    // Drivers: child n goes to authority n % 3, first through node n % 3 (so two in three
    // submissions are forwarded), with retries on every failure.
    let next_child = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<(String, u64, u32)>>> = Arc::default();
    let mut drivers = Vec::new();
    for d in 0..DRIVERS {
        let (client, urls, next_child, stop, acks) = (
            client.clone(),
            urls.clone(),
            next_child.clone(),
            stop.clone(),
            acks.clone(),
        );
        drivers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next_child.fetch_add(1, Ordering::Relaxed);
                let authority = AUTHORITIES[(n % 3) as usize];
                let number = submit_until_acked(&client, &urls, authority, n, d % 3).await;
                acks.lock()
                    .unwrap()
                    .push((authority.to_string(), n, number));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // Kill the writer of an authority, measure until a write to it is acknowledged through
    // the others, restart the killed node; round after round.
    let mut failovers = Vec::new();
    for round in 0..KILL_ROUNDS {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let authority = AUTHORITIES[round % 3];
        let owner = owner_of(&harness, authority).await;
        let victim = nodes.iter().position(|n| n.id == owner).unwrap();
        let killed_at = Instant::now();
        nodes[victim].kill().await;
        let survivors: Vec<String> = (0..3)
            .filter(|&i| i != victim)
            .map(|i| urls[i].clone())
            .collect();
        let probe = 1_000_000 + round as u64;
        let number = submit_until_acked(&client, &survivors, authority, probe * 3, 0).await;
        let failover = killed_at.elapsed();
        acks.lock()
            .unwrap()
            .push((authority.to_string(), probe * 3, number));
        let new_owner = owner_of(&harness, authority).await;
        assert_ne!(new_owner, owner, "{authority} has a new writer");
        eprintln!(
            "failover round {round}: killed {owner} (writer of {authority}); {new_owner} took over; first acknowledged write after {} ms",
            failover.as_millis()
        );
        failovers.push(failover);
        // Every authority accepts writes again, through every surviving node.
        for (k, authority) in AUTHORITIES.iter().enumerate() {
            for (s, url) in survivors.iter().enumerate() {
                let n = 2_000_000 + (round * 100 + k * 10 + s) as u64;
                let number =
                    submit_until_acked(&client, std::slice::from_ref(url), authority, n, 0).await;
                acks.lock()
                    .unwrap()
                    .push((authority.to_string(), n, number));
            }
        }
        nodes[victim].start(&harness.url);
        wait_healthy(&client, &nodes[victim]).await;
        // Back, it writes nothing (the survivors hold every authority) and is ready: it
        // serves every authority from its copies and forwards writes.
        let url = &urls[victim];
        let (authorities, writes) = ready(&client, url).await;
        assert_eq!(
            authorities,
            sorted_authorities(),
            "{url}/ready after a restart"
        );
        assert!(writes.is_empty(), "{url} writes {writes:?} after a restart");
        assert_eq!(listed(&client, url).await, sorted_authorities(), "{url}");
    }
    stop.store(true, Ordering::Relaxed);
    for driver in drivers {
        driver.await.unwrap();
    }
    for node in &mut nodes {
        node.kill().await;
    }

    // Audit the log: every acknowledged application once, chains intact.
    let acks = acks.lock().unwrap().clone();
    let mut by_key: HashMap<(String, String), Vec<u32>> = HashMap::new();
    let mut numbers: HashMap<String, BTreeMap<u32, usize>> = HashMap::new();
    for authority in AUTHORITIES {
        match harness.store.verify(authority).await.unwrap() {
            VerifyOutcome::Ok { .. } => {}
            broken => panic!("{authority}: {broken:?}"),
        }
        let stored = harness.store.read(authority, 0, 1_000_000).await.unwrap();
        for e in &stored {
            let event = ochered_writer::decode_event(e).unwrap();
            if let Event::KindergartenApplicationSubmitted { number, .. } = event {
                let key = e
                    .idempotency
                    .map(|i| hex::encode(i.key_digest))
                    .unwrap_or_default();
                by_key
                    .entry((authority.to_string(), key))
                    .or_default()
                    .push(number.0);
                *numbers
                    .entry(authority.to_string())
                    .or_default()
                    .entry(number.0)
                    .or_default() += 1;
            }
        }
    }
    let mut lost = 0;
    for (authority, n, number) in &acks {
        let found = by_key
            .iter()
            .find(|((a, key), _)| {
                // The server scopes the key to the caller; the log records its digest.
                a == authority
                    && *key
                        == hex::encode(ochered_store::key_digest(&format!(
                            "parent:cl-parent-{n}:cl-{n}"
                        )))
            })
            .map(|(_, numbers)| numbers.clone());
        if found.as_deref() != Some(&[*number][..]) {
            lost += 1;
            eprintln!("lost: child {n} of {authority} acknowledged as {number}, log has {found:?}");
        }
    }
    let duplicates: usize = by_key.values().map(|v| v.len() - 1).sum::<usize>()
        + numbers
            .values()
            .flat_map(|m| m.values())
            .map(|c| c - 1)
            .sum::<usize>();
    let mut sorted = failovers.clone();
    sorted.sort();
    eprintln!(
        "cluster: {} acknowledged applications, lost={lost}, duplicates={duplicates}, failover ms: {:?} (max {} ms)",
        acks.len(),
        failovers.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
        sorted.last().map_or(0, |d| d.as_millis())
    );
    assert!(
        acks.len() > 3 * KILL_ROUNDS,
        "the drivers submitted too little"
    );
    assert_eq!(lost, 0, "acknowledged applications missing from the log");
    assert_eq!(duplicates, 0, "applications registered twice");
    assert_eq!(failovers.len(), KILL_ROUNDS);
}

/// Decides nothing on demand: the test chooses who writes.
struct NoClaims;

impl Ownership for NoClaims {
    fn claim<'a>(
        &'a self,
        _authority: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, WriterError>> + Send + 'a>>
    {
        Box::pin(async { Ok(false) })
    }
}

fn institution(i: usize) -> Command {
    Command::RegisterInstitution {
        id: demo::kindergarten_id(i),
        kind: InstitutionKind::Kindergarten,
        name: format!("K{i}"),
        district: None,
        address: None,
    }
}

/// A writer cut off from its lock keeps running until its first append, which the store
/// fences: from that moment the node must not count as the writer (so the HTTP layer
/// forwards instead of answering 503), and the authority must stay readable as a copy that
/// follows the new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_writer_hands_back_at_once() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    let Raw::Pg(pg) = &harness.raw else {
        unreachable!("PostgreSQL harness")
    };
    const A: &str = "fenced";
    let store1 = Arc::new(PgStore::open(&harness.url).await.unwrap());
    let store2 = Arc::new(PgStore::open(&harness.url).await.unwrap());
    let link1 = ClusterLink::join(&store1, "f1", "http://127.0.0.1:1")
        .await
        .unwrap();
    let link2 = ClusterLink::join(&store2, "f2", "http://127.0.0.1:2")
        .await
        .unwrap();
    let engine1 = Engine::new_cluster(store1.clone(), WriterConfig::default(), Arc::new(NoClaims));
    let engine2 = Engine::new_cluster(store2.clone(), WriterConfig::default(), Arc::new(NoClaims));
    let mut fenced1 = engine1.take_fenced().expect("the receiver, once");

    // Node 1 writes A; node 2 follows it.
    assert_eq!(link1.try_take(A).await.unwrap(), Some(1));
    let (writer1, _) = engine1.promote(A).await.unwrap();
    let configure = demo::setup_commands(A, &demo::DemoShape::default(), chrono::Utc::now())
        .into_iter()
        .next()
        .unwrap();
    for command in [configure, institution(0)] {
        let reply = writer1
            .submit(command, RequestMeta::default())
            .await
            .unwrap();
        assert!(
            matches!(reply.outcome, Outcome::Accepted { .. }),
            "{reply:?}"
        );
    }
    let follower2 = engine2
        .follow(A)
        .await
        .unwrap()
        .expect("node 2 does not write A");
    follower2.catch_up().await.unwrap();
    assert_eq!(follower2.writer().head(), writer1.head());

    // Node 1's lock session ends (cut off from the database); node 2 takes A over and writes.
    let pid = link1.lock_backend_pid().await.unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(pg.pool())
        .await
        .unwrap();
    let mut epoch = None;
    for _ in 0..200 {
        epoch = link2.try_take(A).await.unwrap();
        if epoch.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(epoch, Some(2), "node 2 takes A over");
    let (writer2, _) = engine2.promote(A).await.unwrap();
    let reply = writer2
        .submit(institution(1), RequestMeta::default())
        .await
        .unwrap();
    assert!(
        matches!(reply.outcome, Outcome::Accepted { .. }),
        "{reply:?}"
    );

    // Node 1 has not noticed (no balancing loop runs here): its writer still takes the next
    // command, whose append is fenced. Nothing is written.
    assert!(engine1.owns(A));
    match writer1.submit(institution(2), RequestMeta::default()).await {
        Err(WriterError::Unavailable(why)) => assert!(why.contains("another node"), "{why}"),
        other => panic!("expected a fenced refusal, got {other:?}"),
    }
    // At once, without a balancing round: node 1 no longer counts as A's writer, reports A
    // to its cluster, and keeps A readable as a copy that follows the log.
    assert!(
        !engine1.owns(A),
        "the fenced writer still counts as the writer"
    );
    assert_eq!(fenced1.try_recv().ok().as_deref(), Some(A));
    assert!(!writer1.is_running());
    assert!(matches!(
        writer1.submit(institution(3), RequestMeta::default()).await,
        Err(WriterError::Stopped)
    ));
    let copy = engine1.follower(A).expect("A is followed on node 1");
    let readiness = engine1.readiness();
    assert!(readiness.is_ready(), "{readiness:?}");
    assert_eq!(readiness.authorities, vec![A.to_string()]);
    assert!(readiness.writes.is_empty(), "{readiness:?}");
    copy.catch_up().await.unwrap();
    assert_eq!(copy.writer().head(), writer2.head());
    let institutions = |w: &Writer| w.read(|s| s.institutions().len());
    assert_eq!(institutions(copy.writer()), 2);
    assert_eq!(institutions(&engine1.writer(A).unwrap()), 2);

    // The log: node 1's refused command is not in it; the chain verifies.
    assert_eq!(writer2.head().authority_seq, 3);
    match harness.store.verify(A).await.unwrap() {
        VerifyOutcome::Ok { events, .. } => assert_eq!(events, 3),
        broken => panic!("{broken:?}"),
    }
}

/// The simulator's authority (`--preset ekaterinburg-2024` has one, named after the city).
const SIM_AUTHORITY: &str = "ekaterinburg";

/// Which of the running nodes writes `authority`, from each node's `/ready` (`writes`);
/// waits while no node (or more than one) claims it.
async fn writer_of(client: &reqwest::Client, nodes: &[Node], authority: &str) -> usize {
    for _ in 0..400 {
        let mut writers = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if node.child.is_none() {
                continue;
            }
            let Ok(r) = client.get(format!("{}/ready", node.url())).send().await else {
                continue;
            };
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let writes = body["writes"].as_array().cloned().unwrap_or_default();
            if writes.iter().any(|w| w.as_str() == Some(authority)) {
                writers.push(i);
            }
        }
        if let [one] = writers[..] {
            return one;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no single node writes {authority}");
}

/// Registers institution `id` in `authority` through the given nodes in turn until one
/// answers 201 (or 409: an earlier attempt whose answer was lost committed it).
async fn register_through(client: &reqwest::Client, urls: &[String], authority: &str, id: &str) {
    let officer = mint(SECRET.as_bytes(), Role::Officer, "cl-sim-officer", 1);
    for attempt in 0..2000 {
        let url = format!(
            "{}/api/v1/authorities/{authority}/institutions",
            urls[attempt % urls.len()]
        );
        let sent = client
            .post(&url)
            .bearer_auth(&officer)
            .json(&json!({"id": id, "kind": "school", "name": id}))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = sent {
            let status = r.status().as_u16();
            if status == 201 || status == 409 {
                return;
            }
            let text = r.text().await.unwrap_or_default();
            assert!(status >= 500 || status == 429, "{url}: {status} {text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} was never registered in {authority}");
}

/// The load comes from the simulator (`ochered simulate --mode http --url n1,n2,n3`), a
/// child process that sets its authority up through the API and sends each request to the
/// next node in turn, retrying with the same key. Meanwhile the node writing its authority
/// is killed with SIGKILL and restarted, round after round; the simulator's own audit of the
/// log must find nothing lost, duplicated or out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_survives_killing_the_writer() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut nodes = start_three(&harness.url, dir.path(), "sim-node", &client).await;
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();

    let json_path = dir.path().join("report.json");
    let sim_stderr = std::fs::File::create(dir.path().join("simulate.stderr")).unwrap();
    let mut simulator = tokio::process::Command::new(env!("CARGO_BIN_EXE_ochered"))
        .args(["simulate", "--mode", "http", "--url", &urls.join(",")])
        .args(["--database-url", &harness.url])
        .args(["--preset", "ekaterinburg-2024", "--rate", "40"])
        .args(["--duration-s", "15", "--seed", "29", "--quiet"])
        .args(["--jwt-secret", SECRET])
        .args(["--person-secret", "cluster-test-person-secret"])
        .arg("--json")
        .arg(&json_path)
        .stdout(std::process::Stdio::piped())
        .stderr(sim_stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("start ochered simulate");
    // Its stdout, kept for the failure message; `setup:` is printed once the authority is
    // set up and the load starts.
    let stdout = Arc::new(Mutex::new(String::new()));
    let (set_up, mut set_up_rx) = tokio::sync::watch::channel(false);
    let reader = {
        let stdout = stdout.clone();
        let pipe = simulator.stdout.take().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("setup:") {
                    set_up.send_replace(true);
                }
                let mut out = stdout.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        })
    };
    let started = tokio::time::timeout(Duration::from_secs(60), set_up_rx.wait_for(|s| *s)).await;
    assert!(
        matches!(started, Ok(Ok(_))),
        "the simulator did not finish its setup; stdout:\n{}\nstderr:\n{}",
        stdout.lock().unwrap(),
        std::fs::read_to_string(dir.path().join("simulate.stderr")).unwrap_or_default()
    );

    // Kill the writer of the simulator's authority, measure until a write to it is
    // accepted through the survivors, restart the killed node; round after round, while
    // the simulator's load runs.
    let mut failovers = Vec::new();
    for round in 0..KILL_ROUNDS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let victim = writer_of(&client, &nodes, SIM_AUTHORITY).await;
        let killed_at = Instant::now();
        nodes[victim].kill().await;
        let survivors: Vec<String> = (0..3)
            .filter(|&i| i != victim)
            .map(|i| urls[i].clone())
            .collect();
        register_through(&client, &survivors, SIM_AUTHORITY, &format!("P{round}")).await;
        let failover = killed_at.elapsed();
        let new_writer = writer_of(&client, &nodes, SIM_AUTHORITY).await;
        assert_ne!(new_writer, victim);
        eprintln!(
            "simulator failover round {round}: killed {} (writer of {SIM_AUTHORITY}); {} took over; first accepted write after {} ms",
            nodes[victim].id,
            nodes[new_writer].id,
            failover.as_millis()
        );
        failovers.push(failover);
        nodes[victim].start(&harness.url);
        wait_healthy(&client, &nodes[victim]).await;
    }

    let status = tokio::time::timeout(Duration::from_secs(120), simulator.wait())
        .await
        .expect("the simulator finishes")
        .unwrap();
    reader.await.unwrap();
    let stdout = stdout.lock().unwrap().clone();
    let stderr = std::fs::read_to_string(dir.path().join("simulate.stderr")).unwrap_or_default();
    assert!(status.success(), "simulate: {status:?}\n{stdout}\n{stderr}");

    // Every node serves the authority again.
    for url in &urls {
        let r = client
            .get(format!("{url}/api/v1/authorities/{SIM_AUTHORITY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{url} after the run");
    }
    for node in &mut nodes {
        node.kill().await;
    }

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    eprintln!(
        "simulator through three nodes: {} acknowledged of {} submitted ({} attempts, retries {}, gave up {}), lost={}, duplicates={}, order_violations={}, audit_passed={}, failover ms: {:?}",
        report["acknowledged"],
        report["submitted"],
        report["attempts"],
        report["retries_by_reason"],
        report["gave_up"],
        report["lost"],
        report["duplicates"],
        report["order_violations"],
        report["audit_passed"],
        failovers.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    assert_eq!(report["lost"], 0, "{stdout}");
    assert_eq!(report["duplicates"], 0, "{stdout}");
    assert_eq!(report["order_violations"], 0, "{stdout}");
    assert_eq!(report["audit_passed"], true, "{stdout}");
    assert!(report["acknowledged"].as_u64().unwrap() > 0, "{stdout}");
    assert_eq!(failovers.len(), KILL_ROUNDS);
}

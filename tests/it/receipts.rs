//! The server's side of docs/TRANSPARENCY.md, end to end: receipts in the answers of the three
//! services' submissions, checked offline by `ochered verify-receipt`; inclusion proofs once a
//! signed head covers a submission (409 before); the public key and the heads' history; and
//! heads that survive a restart and a SIGKILL of the real binary with no gap and no second
//! head for a size.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ochered_api::http::auth::{mint, Role};
use ochered_store::testing::Harness;
use serde_json::{json, Value};

use crate::cli::{ochered, run};
use crate::helpers::{
    config_for, kindergarten, spawn_configured, test_signing_key, token, TestApp, AUTHORITY,
};

fn parent(n: u32) -> String {
    token(Role::Parent, &format!("parent-{n}"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `ochered verify-receipt`: (exit code, everything it printed).
fn verify_receipt(receipt: &Path, proof: Option<&Path>, public: &Path) -> (i32, String) {
    let mut cmd = ochered();
    cmd.arg("verify-receipt").arg("--receipt").arg(receipt);
    if let Some(proof) = proof {
        cmd.arg("--proof").arg(proof);
    }
    let (code, out, err) = run(cmd.arg("--public-key").arg(public));
    (code, format!("{out}{err}"))
}

/// The server with heads signed only when a test asks (`sign_now`).
async fn app_signing_on_demand() -> TestApp {
    let harness = Arc::new(Harness::sqlite().await);
    let mut config = config_for(harness.url.clone());
    config.tree_head_interval = Duration::from_secs(3600);
    spawn_configured(harness, "sqlite", config).await
}

async fn sign_now(app: &TestApp) {
    let transparency = &app.server.as_ref().unwrap().state.transparency;
    transparency.catch_up(AUTHORITY).await.unwrap();
    transparency
        .sign(AUTHORITY, chrono::Utc::now())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_services_submission_answers_with_a_receipt_that_verifies_offline() {
    let app = app_signing_on_demand().await;
    app.set_up_authority().await;
    let dir = tempfile::tempdir().unwrap();
    let key = app
        .client
        .get(format!("{}/.well-known/ochered/public-key", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        key,
        ochered_transparency::public_key_text(&test_signing_key().verifying_key())
    );
    let public = write(dir.path(), "server.pub", &key);

    let kg = app
        .post(
            &parent(1),
            "/kindergarten/applications",
            kindergarten("II-AB 000901", &["K1"]),
        )
        .await;
    assert_eq!(kg.status, 201, "{}", kg.body);
    let school = app
        .post(
            &parent(2),
            "/school/applications",
            json!({"campaign": "school-2027", "document": "II-AB 000902", "birth_date": "2020-06-01", "schools": ["S1"]}),
        )
        .await;
    assert_eq!(school.status, 201, "{}", school.body);
    let booking = app
        .post(
            &parent(3),
            "/bookings",
            json!({"slot": "T0", "document": "PAT 000903"}),
        )
        .await;
    assert_eq!(booking.status, 201, "{}", booking.body);

    for (answer, service, number) in [
        (
            &kg,
            "kindergarten",
            kg.body["application"]["number"].clone(),
        ),
        (
            &school,
            "school",
            school.body["application"]["number"].clone(),
        ),
        (&booking, "clinic", json!(1)),
    ] {
        let receipt = &answer.body["receipt"];
        assert_eq!(receipt["format"], "ochered-receipt-v2", "{}", answer.body);
        assert_eq!(receipt["service"], service);
        assert_eq!(receipt["number"], number);
        assert_eq!(receipt["authority"], AUTHORITY);
        assert_eq!(receipt["time_zone"], "Asia/Novosibirsk");
        // The registration time in the authority's zone (UTC+7), to the microsecond.
        let at = receipt["registered_at"].as_str().unwrap();
        assert!(at.ends_with("+07:00") && at.len() == 32, "{at}");
        // The receipt names the event the answer reports, with its chain hash.
        let seq = receipt["authority_seq"].as_i64().unwrap();
        assert!(
            answer.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["authority_seq"] == seq),
            "{}",
            answer.body
        );
        let file = write(dir.path(), &format!("{service}.json"), &receipt.to_string());
        let (code, out) = verify_receipt(&file, None, &public);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&format!(
                "receipt ok: {service} application {number} of {AUTHORITY}"
            )),
            "{out}"
        );
        // A changed field fails.
        let mut changed = receipt.clone();
        changed["registered_at"] = json!(at.replace("+07:00", "+06:00"));
        let file = write(dir.path(), "changed.json", &changed.to_string());
        let (code, out) = verify_receipt(&file, None, &public);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("NOT VERIFIED"), "{out}");
    }

    // The hash in the receipt is the stored event's.
    let seq = kg.body["receipt"]["authority_seq"].as_i64().unwrap();
    let stored = app_store_event_hash(&app, seq).await;
    assert_eq!(kg.body["receipt"]["event_hash"], stored);

    // A retried submission (same Idempotency-Key) gets a receipt of the same statement (its
    // signature is that of the batch it was signed in); so does the parent asking for it
    // later; someone else's application is a 404.
    let first = app
        .post_keyed(
            &parent(4),
            "/kindergarten/applications",
            "k-1",
            kindergarten("II-AB 000904", &["K2"]),
        )
        .await;
    let again = app
        .post_keyed(
            &parent(4),
            "/kindergarten/applications",
            "k-1",
            kindergarten("II-AB 000904", &["K2"]),
        )
        .await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        statement(&first.body["receipt"]),
        statement(&again.body["receipt"])
    );
    let n = first.body["application"]["number"].as_u64().unwrap();
    let later = app
        .get(Some(&parent(4)), &format!("/applications/{n}/receipt"))
        .await;
    assert_eq!(later.status, 200, "{}", later.body);
    assert_eq!(statement(&later.body), statement(&first.body["receipt"]));
    let file = write(dir.path(), "later.json", &later.body.to_string());
    assert_eq!(verify_receipt(&file, None, &public).0, 0);
    assert!(later.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("receipt-{AUTHORITY}-{n}.json")));
    let stranger = app
        .get(Some(&parent(5)), &format!("/applications/{n}/receipt"))
        .await;
    assert_eq!(stranger.status, 404);
    let anonymous = app.get(None, &format!("/applications/{n}/receipt")).await;
    assert_eq!(anonymous.status, 401);
    // Roles: officers see every application's receipt; registrars and auditors none.
    let officer = app
        .get(
            Some(&token(Role::Officer, "officer-1")),
            &format!("/applications/{n}/receipt"),
        )
        .await;
    assert_eq!(statement(&officer.body), statement(&first.body["receipt"]));
    for role in [Role::Registrar, Role::Auditor] {
        let refused = app
            .get(
                Some(&token(role, "x")),
                &format!("/applications/{n}/receipt"),
            )
            .await;
        assert_eq!(refused.status, 403, "{role:?}");
    }
    let qr = app
        .client
        .get(app.url(&format!("/applications/{n}/receipt.svg")))
        .bearer_auth(parent(4))
        .send()
        .await
        .unwrap();
    assert_eq!(qr.status(), 200);
    assert_eq!(qr.headers()["content-type"], "image/svg+xml");
    assert!(qr.text().await.unwrap().contains("<svg"));
    app.stop().await;
}

async fn app_store_event_hash(app: &TestApp, seq: i64) -> Value {
    let transparency = &app.server.as_ref().unwrap().state.transparency;
    let proof_hash = {
        sign_now(app).await;
        transparency
            .proof(AUTHORITY, seq as u64)
            .await
            .unwrap()
            .event_hash
    };
    let store = app.server.as_ref().unwrap().state.engine.store().clone();
    let event = store.read(AUTHORITY, seq - 1, 1).await.unwrap();
    assert_eq!(event[0].hash_hex(), proof_hash);
    json!(event[0].hash_hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applications_proof_is_a_409_until_a_signed_head_covers_it_then_it_verifies() {
    let app = app_signing_on_demand().await;
    app.set_up_authority().await;
    let dir = tempfile::tempdir().unwrap();
    let public = write(
        dir.path(),
        "server.pub",
        &ochered_transparency::public_key_text(&test_signing_key().verifying_key()),
    );
    sign_now(&app).await;
    let before = app.get(None, "/transparency/head").await;
    assert_eq!(before.status, 200, "{}", before.body);
    let first_size = before.body["tree_head"]["tree_size"].as_u64().unwrap();

    let kg = app
        .post(
            &parent(1),
            "/kindergarten/applications",
            kindergarten("II-AB 000911", &["K1"]),
        )
        .await;
    assert_eq!(kg.status, 201, "{}", kg.body);
    let n = kg.body["application"]["number"].as_u64().unwrap();
    let seq = kg.body["receipt"]["authority_seq"].as_u64().unwrap();
    assert!(seq > first_size);
    let early = app.get(None, &format!("/applications/{n}/proof")).await;
    assert_eq!(early.status, 409, "{}", early.body);
    assert_eq!(early.body["code"], "not_yet_covered");
    assert!(early.headers.contains_key("retry-after"));
    let missing = app.get(None, "/applications/999/proof").await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let bad = app.get(None, "/applications/zero/proof").await;
    assert_eq!((bad.status, bad.field()), (422, Some("number")));
    for beyond in ["100000", "9223372036854775807", "9223372036854775808"] {
        let answer = app
            .get(None, &format!("/transparency/events/{beyond}/proof"))
            .await;
        assert_eq!(answer.status, 404, "{beyond}: {}", answer.body);
    }

    sign_now(&app).await;
    let proof = app.get(None, &format!("/applications/{n}/proof")).await;
    assert_eq!(proof.status, 200, "{}", proof.body);
    assert_eq!(proof.body["format"], "ochered-inclusion-proof-v1");
    assert_eq!(proof.body["leaf_index"], seq - 1);
    let receipt_file = write(dir.path(), "receipt.json", &kg.body["receipt"].to_string());
    let proof_file = write(dir.path(), "proof.json", &proof.body.to_string());
    let (code, out) = verify_receipt(&receipt_file, Some(&proof_file), &public);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("inclusion ok"), "{out}");
    // The independent verifier agrees on the server's receipt, proof and heads.
    python_agrees(
        &["receipt", "--receipt"],
        &receipt_file,
        Some(&proof_file),
        &public,
        0,
    );
    let changed_file = write(dir.path(), "changed-receipt.json", &{
        let mut changed = kg.body["receipt"].clone();
        changed["number"] = json!(n + 1);
        changed.to_string()
    });
    python_agrees(
        &["receipt", "--receipt"],
        &changed_file,
        Some(&proof_file),
        &public,
        1,
    );
    // The event-position route gives the same proof.
    let same = app
        .get(None, &format!("/transparency/events/{seq}/proof"))
        .await;
    assert_eq!(same.body, proof.body);
    // A proof of another event does not vouch for this receipt.
    let other = app
        .get(None, &format!("/transparency/events/{}/proof", seq - 1))
        .await;
    let other_file = write(dir.path(), "other.json", &other.body.to_string());
    let (code, out) = verify_receipt(&receipt_file, Some(&other_file), &public);
    assert_eq!(code, 1, "{out}");

    // The newest head, proved consistent with the first one; and the history.
    let head = app
        .get(None, &format!("/transparency/head?from_size={first_size}"))
        .await;
    assert_eq!(head.status, 200, "{}", head.body);
    assert_eq!(head.body["consistency"]["from_size"], first_size);
    let bad = app.get(None, "/transparency/head?from_size=0").await;
    assert_eq!((bad.status, bad.field()), (422, Some("from_size")));
    let history = app.get(None, "/transparency/heads").await;
    let heads = history.body["heads"].as_array().unwrap();
    assert!(heads.len() >= 2, "{}", history.body);
    let file = write(dir.path(), "history.json", &history.body.to_string());
    let kept = write(
        dir.path(),
        "kept.jsonl",
        &format!("{}\n{}\n", before.body, head.body),
    );
    let (code, out, err) = run(ochered()
        .arg("verify")
        .env_remove("OCHERED_DATABASE_URL")
        .args(["--heads"])
        .arg(&file)
        .arg("--heads")
        .arg(&kept)
        .arg("--public-key")
        .arg(&public));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(", 0 problems"), "{out}");
    python_agrees(&["heads", "--public-key"], &public, None, &file, 0);
    app.stop().await;
}

/// Runs `verifier/ochered_verify.py` (with `$OCHERED_PYTHON`, or `python3`) as `args FIRST
/// [--proof PROOF] --public-key KEY` (or, for `heads`, `heads --public-key KEY FILE`) and
/// checks its exit code. Skipped when no Python with an Ed25519 package is found, unless
/// `OCHERED_REQUIRE_PYTHON_VERIFIER` is set (CI sets it).
fn python_agrees(args: &[&str], first: &Path, proof: Option<&Path>, last: &Path, expected: i32) {
    let python = std::env::var("OCHERED_PYTHON").unwrap_or_else(|_| "python3".into());
    let required = std::env::var_os("OCHERED_REQUIRE_PYTHON_VERIFIER").is_some();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("verifier/ochered_verify.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script).args(args).arg(first);
    if let Some(proof) = proof {
        cmd.arg("--proof").arg(proof);
    }
    if args[0] == "receipt" {
        cmd.arg("--public-key");
    }
    cmd.arg(last);
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) if !required => return eprintln!("skipped: cannot run {python}: {e}"),
        Err(e) => panic!("cannot run {python}: {e}"),
    };
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    if !required && output.status.code() == Some(3) {
        return eprintln!("skipped: {stderr}");
    }
    assert_eq!(
        output.status.code(),
        Some(expected),
        "the Python verifier: {stdout}{stderr}"
    );
}

/// The real binary, serving a SQLite file with the key file and 1-second heads.
struct Served {
    child: Child,
    base: String,
}

fn serve(db: &str, key: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ochered"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-demo"])
        .args(["--database-url", db])
        .arg("--signing-key-file")
        .arg(key)
        .env("OCHERED_TREE_HEAD_INTERVAL_S", "1")
        .env("OCHERED_JWT_SECRET", crate::helpers::SECRET)
        .env("OCHERED_RATE_LIMIT_PER_MINUTE", "0")
        .env("OCHERED_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening; open http://").nth(1) {
                let _ = tx.send(rest.split(['/', ' ']).next().unwrap_or_default().into());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server starts");
    Served {
        child,
        base: format!("http://{addr}/api/v1/authorities/{AUTHORITY}"),
    }
}

async fn submit_some(client: &reqwest::Client, base: &str, from: u32, n: u32) {
    let parent = mint(crate::helpers::SECRET.as_bytes(), Role::Parent, "p-1", 1);
    for i in from..from + n {
        let answer = client
            .post(format!("{base}/kindergarten/applications"))
            .bearer_auth(&parent)
            .json(&kindergarten(&format!("II-AB {i:06}"), &["K1"]))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
    }
}

/// Waits until the newest signed head covers `size` events; returns it.
async fn head_covering(client: &reqwest::Client, base: &str, size: u64) -> Value {
    for _ in 0..200 {
        let answer = client
            .get(format!("{base}/transparency/head"))
            .send()
            .await
            .unwrap();
        if answer.status() == 200 {
            let head: Value = answer.json().await.unwrap();
            if head["tree_head"]["tree_size"].as_u64().unwrap() >= size {
                return head;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no head covering {size} events was signed");
}

async fn log_size(client: &reqwest::Client, base: &str) -> u64 {
    let head: Value = client
        .get(format!("{base}/audit/head"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    head["authority_seq"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_survive_a_restart_and_a_sigkill_without_a_gap_or_a_second_head_for_a_size() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("server.key");
    let public = dir.path().join("server.pub");
    ochered_transparency::write_key_pair(&secret, &public).unwrap();
    let db = format!("sqlite://{}", dir.path().join("q.db").display());
    let client = reqwest::Client::new();
    let admin = mint(crate::helpers::SECRET.as_bytes(), Role::Admin, "admin-1", 1);
    let officer = mint(crate::helpers::SECRET.as_bytes(), Role::Officer, "o-1", 1);

    let mut seen = Vec::new();
    let mut server = serve(&db, &secret);
    let created = client
        .post(server.base.replace(&format!("/{AUTHORITY}"), ""))
        .bearer_auth(&admin)
        .json(&json!({"id": AUTHORITY, "name": "Test city", "time_zone": "Asia/Novosibirsk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let institution = client
        .post(format!("{}/institutions", server.base))
        .bearer_auth(&officer)
        .json(&json!({"id": "K1", "kind": "kindergarten", "name": "K1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(institution.status(), 201);
    let mut next = 1;
    for round in 0..3 {
        submit_some(&client, &server.base, next, 5).await;
        next += 5;
        let size = log_size(&client, &server.base).await;
        seen.push(head_covering(&client, &server.base, size).await);
        // Events after the newest head, then the end: a graceful stop, then a SIGKILL.
        submit_some(&client, &server.base, next, 3).await;
        next += 3;
        if round == 0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(server.child.id().to_string())
                .status();
        } else {
            server.child.kill().unwrap();
        }
        server.child.wait().unwrap();
        server = serve(&db, &secret);
    }
    let size = log_size(&client, &server.base).await;
    seen.push(head_covering(&client, &server.base, size).await);
    let history: Value = client
        .get(format!("{}/transparency/heads", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // One history, each head proved consistent with the one before it (no gap), sizes
    // strictly growing (no second head for a size), and every head anyone saw is in it.
    let heads = history["heads"].as_array().unwrap();
    assert!(heads.len() >= 4, "{history}");
    for pair in heads.windows(2) {
        let (a, b) = (&pair[0]["tree_head"], &pair[1]);
        assert!(b["tree_head"]["tree_size"].as_u64() > a["tree_size"].as_u64());
        assert_eq!(b["consistency"]["from_size"], a["tree_size"], "{history}");
    }
    for head in &seen {
        assert!(
            heads.iter().any(|h| h["tree_head"] == head["tree_head"]),
            "a head seen before a restart is missing from the history: {head}"
        );
    }
    let history_file = write(dir.path(), "history.json", &history.to_string());
    let seen_file = write(
        dir.path(),
        "seen.jsonl",
        &seen.iter().map(|h| format!("{h}\n")).collect::<String>(),
    );
    let (code, out, err) = run(ochered()
        .arg("verify")
        .args(["--database-url", &db])
        .arg("--heads")
        .arg(&history_file)
        .arg("--heads")
        .arg(&seen_file)
        .arg("--public-key")
        .arg(&public));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(", 0 problems"), "{out}");
    assert!(out.contains("matched to the log"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_changed_under_a_published_head_gets_no_further_head_and_verify_heads_says_why() {
    let harness = Arc::new(Harness::sqlite().await);
    let mut config = config_for(harness.url.clone());
    config.tree_head_interval = Duration::from_secs(3600);
    let app = spawn_configured(harness.clone(), "sqlite", config.clone()).await;
    app.set_up_authority().await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        let a = app
            .post(
                &parent(1),
                "/kindergarten/applications",
                kindergarten(&format!("II-AB 00092{i}"), &["K1"]),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        seqs.push(a.body["receipt"]["authority_seq"].as_i64().unwrap());
    }
    sign_now(&app).await;
    let published = app.get(None, "/transparency/head").await.body;
    app.stop().await;

    // Someone with the database changes who submitted the first application and hashes the
    // chain again: the chain verifies, the published head does not.
    harness
        .rewrite_and_rehash(AUTHORITY, seqs[0], |record| {
            let at = record
                .windows(8)
                .position(|w| w == b"parent-1")
                .expect("the record names its submitter");
            record[at + 7] = b'9';
        })
        .await;
    let app = spawn_configured(harness.clone(), "sqlite", config).await;
    let transparency = &app.server.as_ref().unwrap().state.transparency;
    transparency.catch_up(AUTHORITY).await.unwrap();
    let newest = transparency
        .sign(AUTHORITY, chrono::Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        newest.tree_head,
        published["tree_head"].clone().try_into_head()
    );
    let why = transparency.refused(AUTHORITY).expect("the signer refuses");
    assert!(why.contains("changed under a published head"), "{why}");
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let public = write(
        dir.path(),
        "server.pub",
        &ochered_transparency::public_key_text(&test_signing_key().verifying_key()),
    );
    let kept = write(dir.path(), "kept.jsonl", &format!("{published}\n"));
    let (code, out, err) = run(ochered()
        .arg("verify")
        .args(["--database-url", &harness.url])
        .arg("--heads")
        .arg(&kept)
        .arg("--public-key")
        .arg(&public));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("HEADS PROBLEM"), "{out}");
}

trait IntoHead {
    fn try_into_head(self) -> ochered_transparency::SignedTreeHead;
}

impl IntoHead for Value {
    fn try_into_head(self) -> ochered_transparency::SignedTreeHead {
        serde_json::from_value(self).unwrap()
    }
}

/// A receipt without what depends on the batch it was signed in: what it states.
fn statement(receipt: &serde_json::Value) -> serde_json::Value {
    let mut statement = receipt.clone();
    let fields = statement.as_object_mut().expect("a receipt is an object");
    assert!(
        fields.remove("batch").is_some(),
        "a v2 receipt names its batch: {receipt}"
    );
    fields.remove("signature");
    statement
}

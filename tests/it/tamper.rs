//! Tamper evidence end to end: `ochered verify` run as the real binary on
//! logs changed behind the server's back, with and without a signed checkpoint.
//!
//! The store's own tests (engine/store/tests/it/log.rs) cover each kind of break on the
//! `EventStore::verify` call; here the point is what an auditor sees from the command: the
//! exit code and the event named, truncation that only a checkpoint reveals, and
//! checkpoints that were edited or signed with another key.

use std::path::{Path, PathBuf};

use ochered_store::testing::Harness;

use crate::cli::{filled, ochered, run};

pub(crate) const AUTHORITY: &str = "cli-town";

/// Every store to test on: SQLite and, when reachable, PostgreSQL.
pub(crate) async fn stores() -> Vec<Harness> {
    let mut harnesses = vec![Harness::sqlite().await];
    if let Some(pg) = Harness::postgres().await {
        harnesses.push(pg);
    }
    harnesses
}

struct Keys {
    dir: tempfile::TempDir,
    secret: PathBuf,
    public: PathBuf,
}

fn keygen() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("checkpoint.key");
    let public = dir.path().join("checkpoint.pub");
    let (code, out, err) = run(ochered()
        .args(["checkpoint", "keygen", "--out-secret"])
        .arg(&secret)
        .arg("--out-public")
        .arg(&public));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("public key"), "{out}");
    Keys {
        dir,
        secret,
        public,
    }
}

/// `ochered checkpoint` of the harness's log into a new file in the keys' directory.
fn checkpoint(h: &Harness, keys: &Keys, name: &str) -> PathBuf {
    let out = keys.dir.path().join(name);
    let (code, stdout, err) = run(ochered()
        .args(["checkpoint", "--database-url", &h.url, "--key"])
        .arg(&keys.secret)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        stdout.contains(&format!("authority={AUTHORITY} authority_seq=")),
        "{stdout}"
    );
    out
}

/// `ochered verify`, with a checkpoint when given: (exit code, stdout).
fn verify(h: &Harness, with: Option<(&Path, &Path)>) -> (i32, String) {
    let mut cmd = ochered();
    cmd.args(["verify", "--database-url", &h.url]);
    if let Some((checkpoint, public)) = with {
        cmd.arg("--checkpoint")
            .arg(checkpoint)
            .arg("--public-key")
            .arg(public);
    }
    let (code, out, err) = run(&mut cmd);
    assert!(code == 0 || code == 1, "verify failed to run: {out}{err}");
    (code, out)
}

async fn head_seq(h: &Harness) -> i64 {
    h.store.head(AUTHORITY).await.unwrap().authority_seq
}

/// Rewrites the event at `seq` with a changed byte and hashes it and every later event
/// again, as a forger who knows the algorithm would: the chain verifies.
pub(crate) async fn rewrite_and_rehash(h: &Harness, seq: i64) {
    h.rewrite_and_rehash(AUTHORITY, seq, |record| {
        let last = record.len() - 1;
        record[last] ^= 1;
    })
    .await;
}

/// Changes one byte inside the stored record at `seq`, leaving its hash.
async fn change_a_byte(h: &Harness, seq: i64) {
    let mut record = h.stored_record(AUTHORITY, seq).await;
    let last = record.len() - 1;
    record[last] ^= 1;
    h.set_stored_record(AUTHORITY, seq, &record).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_changed_deleted_and_swapped_events_on_each_store() {
    let keys = keygen();
    for h in stores().await {
        // A changed payload.
        filled(&h, 20).await;
        let cp = checkpoint(&h, &keys, "changed.json");
        change_a_byte(&h, 25).await;
        let (code, out) = verify(&h, None);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("BROKEN at authority_seq=25"), "{out}");
        assert!(out.contains("content changed"), "{out}");
        // The checkpoint itself still matches (the stored hash was not touched); the chain
        // check is what fails, and the command fails with it.
        let (code, out) = verify(&h, Some((&cp, &keys.public)));
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("checkpoint ok: signature valid"), "{out}");
        assert!(out.contains("BROKEN at authority_seq=25"), "{out}");
        // A broken log is never signed.
        let (code, out, err) = run(ochered()
            .args(["checkpoint", "--database-url", &h.url, "--key"])
            .arg(&keys.secret));
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains("refusing to sign"), "{err}");
        assert!(err.contains("authority_seq=25"), "{err}");
    }
    for h in stores().await {
        // A deleted event in the middle.
        filled(&h, 20).await;
        assert_eq!(h.delete_events(AUTHORITY, 17, 17).await, 1);
        let (code, out) = verify(&h, None);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("BROKEN at authority_seq=17"), "{out}");
        assert!(out.contains("gap"), "{out}");
    }
    for h in stores().await {
        // Two events swapped, whole rows with their hashes.
        filled(&h, 20).await;
        h.swap_events(AUTHORITY, 20, 21).await;
        let (code, out) = verify(&h, None);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("BROKEN at authority_seq=20"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_and_rehashing_are_caught_only_with_a_checkpoint() {
    let keys = keygen();
    for h in stores().await {
        filled(&h, 20).await;
        let cp = checkpoint(&h, &keys, "truncated.json");
        let head = head_seq(&h).await;
        let (code, out) = verify(&h, Some((&cp, &keys.public)));
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&format!(
                "authority={AUTHORITY} checkpoint ok at authority_seq={head}"
            )),
            "{out}"
        );

        // Events appended after the checkpoint do not disturb it.
        filled_more(&h).await;
        assert!(head_seq(&h).await > head);
        let (code, out) = verify(&h, Some((&cp, &keys.public)));
        assert_eq!(code, 0, "{out}");

        // Cut the tail back to before the checkpoint's head.
        let cut = h
            .delete_events(AUTHORITY, head - 2, head_seq(&h).await)
            .await;
        assert!(cut >= 3);
        // From the log alone the shorter chain is perfectly valid...
        let (code, out) = verify(&h, None);
        assert_eq!(
            code, 0,
            "truncation is invisible without a checkpoint: {out}"
        );
        assert!(out.contains(&format!("head_seq={}", head - 3)), "{out}");
        // ...but not against the checkpoint.
        let (code, out) = verify(&h, Some((&cp, &keys.public)));
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!(
                "authority={AUTHORITY} CHECKPOINT MISMATCH at authority_seq={head}"
            )),
            "{out}"
        );
        assert!(out.contains("events were removed"), "{out}");
    }
    for h in stores().await {
        // A chain rewritten from event 15 on and hashed again verifies on its own.
        filled(&h, 20).await;
        let cp = checkpoint(&h, &keys, "rehashed.json");
        let head = head_seq(&h).await;
        rewrite_and_rehash(&h, 15).await;
        let (code, out) = verify(&h, None);
        assert_eq!(
            code, 0,
            "a rehashed chain verifies from the log alone: {out}"
        );
        let (code, out) = verify(&h, Some((&cp, &keys.public)));
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("CHECKPOINT MISMATCH at authority_seq={head}")),
            "{out}"
        );
        assert!(out.contains("rewritten"), "{out}");
    }
}

/// A few more applications on the same log (another writer run, as after a restart).
pub(crate) async fn filled_more(h: &Harness) {
    use ochered_writer::demo::{self, DemoShape, SeededRng};
    use ochered_writer::{RequestMeta, Writer, WriterConfig};
    let (writer, _) = Writer::start(h.store.clone(), AUTHORITY, WriterConfig::default())
        .await
        .unwrap();
    let mut rng = SeededRng::new(99);
    let today = chrono::Utc::now().date_naive();
    for i in 1_000..1_003 {
        let command = demo::kindergarten_application(&mut rng, i, &DemoShape::default(), today);
        writer
            .submit(command, RequestMeta::default())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_checkpoints_are_rejected() {
    let keys = keygen();
    let other = keygen();
    let h = Harness::sqlite().await;
    filled(&h, 10).await;
    let cp = checkpoint(&h, &keys, "genuine.json");
    let head = head_seq(&h).await;

    // Signed with another key: the auditor's public key does not accept it.
    let foreign = checkpoint(&h, &other, "foreign.json");
    let (code, out) = verify(&h, Some((&foreign, &keys.public)));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint BROKEN"), "{out}");
    assert!(out.contains("signature does not match"), "{out}");

    // Truncate, then edit the checkpoint by hand to match the shorter log: still refused.
    h.delete_events(AUTHORITY, head - 1, head).await;
    let new_head = h.store.head(AUTHORITY).await.unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    assert_eq!(json["heads"][0]["authority_seq"], head);
    json["heads"][0]["authority_seq"] = new_head.authority_seq.into();
    json["heads"][0]["hash"] = new_head.hash.clone().into();
    let edited = keys.dir.path().join("edited.json");
    std::fs::write(&edited, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let (code, out) = verify(&h, Some((&edited, &keys.public)));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature does not match"), "{out}");
    // Its `public_key` field swapped for the forger's is no help either.
    json["public_key"] = std::fs::read_to_string(&other.public)
        .unwrap()
        .trim()
        .into();
    std::fs::write(&edited, serde_json::to_string(&json).unwrap()).unwrap();
    let (code, out) = verify(&h, Some((&edited, &keys.public)));
    assert_eq!(code, 1, "{out}");
    // Not a checkpoint at all.
    std::fs::write(&edited, "{\"heads\": []}").unwrap();
    let (code, out) = verify(&h, Some((&edited, &keys.public)));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint BROKEN: not a checkpoint"), "{out}");

    // Keys are never overwritten.
    let (code, _, err) = run(ochered()
        .args(["checkpoint", "keygen", "--out-secret"])
        .arg(&keys.secret)
        .arg("--out-public")
        .arg(keys.dir.path().join("new.pub")));
    assert_eq!(code, 2);
    assert!(err.contains("never overwritten"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys.secret)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// A server started on a log whose chain is broken serves, but refuses every write and
/// reports not ready (naming the break) until an operator has repaired the log and
/// restarted it; a restart on the repaired log is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_on_a_broken_chain_refuses_writes() {
    use crate::helpers::{config_for, kindergarten, spawn_configured, token, AUTHORITY as CITY};
    use ochered_api::http::auth::Role;
    use std::sync::Arc;
    for harness in stores().await {
        let harness = Arc::new(harness);
        let backend = if harness.sqlite_path.is_some() {
            "sqlite"
        } else {
            "postgres"
        };
        let app = spawn_configured(harness.clone(), backend, config_for(harness.url.clone())).await;
        app.set_up_authority().await;
        let parent = token(Role::Parent, "parent-1");
        for i in 1..=3 {
            let answer = app
                .post_keyed(
                    &parent,
                    "/kindergarten/applications",
                    &format!("k{i}"),
                    kindergarten(&format!("II-AB 00000{i}"), &["K1"]),
                )
                .await;
            assert_eq!(answer.status, 201, "{}", answer.body);
        }
        let ready = app
            .send(app.client.get(format!("{}/ready", app.base)))
            .await;
        assert_eq!(ready.status, 200, "{}", ready.body);
        app.stop().await;

        // Behind the server's back, one byte of event 5 changes.
        let mut record = harness.stored_record(CITY, 5).await;
        let original = record.clone();
        let last = record.len() - 1;
        record[last] ^= 1;
        harness.set_stored_record(CITY, 5, &record).await;

        let app = spawn_configured(harness.clone(), backend, config_for(harness.url.clone())).await;
        let ready = app
            .send(app.client.get(format!("{}/ready", app.base)))
            .await;
        assert_eq!(ready.status, 503, "{backend}: {}", ready.body);
        let detail = ready.body["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("broken at event 5"), "{backend}: {detail}");
        let refused = app
            .post_keyed(
                &parent,
                "/kindergarten/applications",
                "k4",
                kindergarten("II-AB 000004", &["K1"]),
            )
            .await;
        assert_eq!(refused.status, 503, "{backend}: {}", refused.body);
        let health = app
            .send(app.client.get(format!("{}/health", app.base)))
            .await;
        assert_eq!(health.status, 200);
        app.stop().await;
        let head = harness.store.head(CITY).await.unwrap().authority_seq;

        // The operator restores the event and restarts: ready, and writes go through.
        harness.set_stored_record(CITY, 5, &original).await;
        let app = spawn_configured(harness.clone(), backend, config_for(harness.url.clone())).await;
        let ready = app
            .send(app.client.get(format!("{}/ready", app.base)))
            .await;
        assert_eq!(ready.status, 200, "{backend}: {}", ready.body);
        let accepted = app
            .post_keyed(
                &parent,
                "/kindergarten/applications",
                "k4",
                kindergarten("II-AB 000004", &["K1"]),
            )
            .await;
        assert_eq!(accepted.status, 201, "{backend}: {}", accepted.body);
        assert_eq!(
            harness.store.head(CITY).await.unwrap().authority_seq,
            head + 1
        );
        app.stop().await;
    }
}

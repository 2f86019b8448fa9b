//! `ochered backup` while a simulator surge and a prober write, `ochered restore` into a fresh
//! place: the restored log verifies against the checkpoint the backup carries, and every
//! application acknowledged before the backup began is in it. Also what restore refuses: an
//! existing database without --force, a database a running server has open, a changed
//! backup, a backup signed by another key.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ochered_api::http::auth::Role;
use ochered_core::domain::ApplicationNumber;
use ochered_store::testing::Harness;
use serde_json::Value;

use crate::helpers::{config_for, kindergarten, spawn_configured, token, AUTHORITY, SECRET};

/// The simulator's authority (`--preset ekaterinburg-2024` has one, named after the city).
const SIM_AUTHORITY: &str = "ekaterinburg";

/// Runs the `ochered` binary to completion; its exit code, standard output and error.
async fn ochered(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ochered"))
        .args(args)
        .output()
        .await
        .expect("ochered runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `ochered backup` of `url` into `out`, signed with `key`.
async fn backup_to(url: &str, out: &Path, key: &Path) -> (i32, String, String) {
    ochered(&[
        "backup",
        "--database-url",
        url,
        "--out",
        text(out),
        "--key",
        text(key),
    ])
    .await
}

/// `ochered checkpoint keygen` into these two files.
async fn keygen(secret: &Path, public: &Path) -> (i32, String, String) {
    ochered(&[
        "checkpoint",
        "keygen",
        "--out-secret",
        text(secret),
        "--out-public",
        text(public),
    ])
    .await
}

/// `ochered restore` of `from` into `url`, checked with `public_key`.
async fn restore(from: &Path, url: &str, public_key: &Path, force: bool) -> (i32, String, String) {
    let mut args = vec![
        "restore",
        "--from",
        text(from),
        "--database-url",
        url,
        "--public-key",
        text(public_key),
    ];
    if force {
        args.push("--force");
    }
    ochered(&args).await
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_everything_acknowledged_before_it() {
    let harness = Arc::new(Harness::sqlite().await);
    let live_url = harness.url.clone();
    let app = spawn_configured(harness.clone(), "sqlite", config_for(live_url.clone())).await;
    app.set_up_authority().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_key = dir.path().join("checkpoint.key");
    let public_key = dir.path().join("checkpoint.pub");
    let (code, out, err) = keygen(&secret_key, &public_key).await;
    assert_eq!(code, 0, "{out}{err}");

    // The surge: the simulator over HTTP against this server (a child process).
    let report_path = dir.path().join("report.json");
    let simulator = tokio::process::Command::new(env!("CARGO_BIN_EXE_ochered"))
        .args(["simulate", "--mode", "http", "--url", &app.base])
        .args(["--database-url", &live_url])
        .args(["--preset", "ekaterinburg-2024", "--rate", "150"])
        .args(["--duration-s", "8", "--seed", "41", "--quiet"])
        .args([
            "--jwt-secret",
            SECRET,
            "--person-secret",
            "test-person-secret",
        ])
        .arg("--json")
        .arg(&report_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ochered simulate");

    // A prober beside it: applications in this test's own authority, each with the moment
    // its acknowledgement arrived.
    let acknowledged: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        let url = app.url("/kindergarten/applications");
        let client = app.client.clone();
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                // One parent per child keeps the per-client rate limit out of the way.
                let parent = token(Role::Parent, &format!("backup-parent-{i}"));
                let sent = client
                    .post(&url)
                    .bearer_auth(parent)
                    .header("Idempotency-Key", format!("backup-probe-{i}"))
                    .json(&kindergarten(&format!("II-BK {i:06}"), &["K1", "K2"]))
                    .send()
                    .await;
                if let Ok(response) = sent {
                    if response.status() == 201 {
                        let body: Value = response.json().await.unwrap();
                        let number = body["application"]["number"].as_u64().unwrap() as u32;
                        acknowledged.lock().unwrap().push((number, Instant::now()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Let the surge build up, then back up in the middle of it.
    let live = harness.store.clone();
    let sim_started = Instant::now();
    loop {
        let authorities = live.authorities().await.unwrap();
        if authorities.iter().any(|a| a == SIM_AUTHORITY) && acknowledged.lock().unwrap().len() > 50
        {
            break;
        }
        assert!(
            sim_started.elapsed() < Duration::from_secs(60),
            "the surge did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut heads_before = Vec::new();
    for authority in [AUTHORITY, SIM_AUTHORITY] {
        heads_before.push((authority, live.head(authority).await.unwrap()));
    }
    let backup = dir.path().join("nightly.ochered-backup");
    let backup_began = Instant::now();
    let (code, out, err) = backup_to(&live_url, &backup, &secret_key).await;
    let backup_took = backup_began.elapsed();
    assert_eq!(code, 0, "backup: {out}{err}");
    assert!(out.contains("wrote"), "{out}");

    // Writes went on during the backup; the load continues a little after it.
    let before_count = acknowledged
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < backup_began)
        .count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    prober.await.unwrap();
    let sim = tokio::time::timeout(Duration::from_secs(120), simulator.wait_with_output())
        .await
        .expect("the simulator finishes")
        .unwrap();
    let sim_out = String::from_utf8_lossy(&sim.stdout).into_owned();
    assert!(
        sim.status.success(),
        "simulate: {:?}\n{sim_out}\n{}",
        sim.status,
        String::from_utf8_lossy(&sim.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["lost"], 0, "{sim_out}");
    assert_eq!(report["audit_passed"], true, "{sim_out}");
    let acknowledged = acknowledged.lock().unwrap().clone();
    let after_count = acknowledged.len() - before_count;
    assert!(
        after_count > 0,
        "no acknowledgement after the backup began: the backup did not run under load"
    );
    let live_heads_after: Vec<i64> = {
        let mut seqs = Vec::new();
        for (authority, _) in &heads_before {
            seqs.push(live.head(authority).await.unwrap().authority_seq);
        }
        seqs
    };
    eprintln!(
        "backup under load: took {} ms; {before_count} probe applications acknowledged before it began, {after_count} after; simulator acknowledged {}; heads before {:?}, live after {:?}",
        backup_took.as_millis(),
        report["acknowledged"],
        heads_before
            .iter()
            .map(|(a, h)| format!("{a}={}", h.authority_seq))
            .collect::<Vec<_>>(),
        live_heads_after
    );

    // Restore into a fresh place, then verify with the checkpoint the backup carried.
    let fresh = dir.path().join("restored");
    std::fs::create_dir(&fresh).unwrap();
    let restored_url = format!("sqlite://{}", fresh.join("ochered.db").display());
    let (code, out, err) = restore(&backup, &restored_url, &public_key, false).await;
    assert_eq!(code, 0, "restore: {out}{err}");
    let checkpoint_file = fresh.join("ochered.db.backup-checkpoint.json");
    let (code, out, err) = ochered(&[
        "verify",
        "--database-url",
        &restored_url,
        "--checkpoint",
        text(&checkpoint_file),
        "--public-key",
        text(&public_key),
    ])
    .await;
    assert_eq!(code, 0, "verify: {out}{err}");
    for authority in [AUTHORITY, SIM_AUTHORITY] {
        assert!(
            out.contains(&format!("authority={authority} checkpoint ok")),
            "{out}"
        );
    }

    // Refusals. An existing database needs --force (and is then moved aside, not deleted).
    let (code, _, err) = restore(&backup, &restored_url, &public_key, false).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    // Meanwhile the server had notified the portal past the backup's heads: a restore moves
    // the cursor beside the database back, or events written after it would not be notified.
    let json = |path: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let signed = json(&checkpoint_file);
    let sim_head = signed["heads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["authority"] == SIM_AUTHORITY)
        .unwrap()["authority_seq"]
        .as_i64()
        .unwrap();
    let cursor_file = fresh.join("ochered.db.webhooks.json");
    std::fs::write(
        &cursor_file,
        format!(
            r#"{{"version": 1, "cursors": {{"{SIM_AUTHORITY}": {{"seq": {}, "partial": 1}}, "gone": {{"seq": 7}}}}}}"#,
            sim_head + 100
        ),
    )
    .unwrap();
    let (code, out, err) = restore(&backup, &restored_url, &public_key, true).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("moved the previous database to"), "{out}");
    let rewound = json(&cursor_file);
    assert_eq!(
        rewound["cursors"][SIM_AUTHORITY]["seq"], sim_head,
        "{rewound}"
    );
    assert_eq!(rewound["cursors"][SIM_AUTHORITY]["partial"], 0, "{rewound}");
    assert_eq!(rewound["cursors"]["gone"]["seq"], 0, "{rewound}");
    // The live database, open in this process's server, is never replaced, even with --force.
    let (code, _, err) = restore(&backup, &live_url, &public_key, true).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("running process"), "{err}");
    // A backup signed by another key, and a backup whose events were changed.
    let other_secret = dir.path().join("other.key");
    let other_public = dir.path().join("other.pub");
    keygen(&other_secret, &other_public).await;
    let elsewhere = format!("sqlite://{}", dir.path().join("elsewhere.db").display());
    let (code, _, err) = restore(&backup, &elsewhere, &other_public, false).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("signature"), "{err}");
    let tampered = dir.path().join("tampered.ochered-backup");
    std::fs::copy(&backup, &tampered).unwrap();
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", tampered.display()))
            .await
            .unwrap();
        // Event 2 of the test's authority gets another stored hash (rows are keyed by
        // authority id << 40 | authority_seq; see the store's schema v2).
        let changed = sqlx::query(
            "UPDATE log SET hash = zeroblob(32) WHERE id = ((SELECT id FROM authority_ids WHERE name = ?1) << 40) | 2",
        )
        .bind(AUTHORITY)
        .execute(&mut conn)
        .await
        .unwrap();
        assert_eq!(changed.rows_affected(), 1);
        conn.close().await.unwrap();
    }
    let (code, _, err) = restore(&tampered, &elsewhere, &public_key, false).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("broken"), "{err}");
    assert!(
        !dir.path().join("elsewhere.db").exists(),
        "a refused restore left a database behind"
    );
    // A backup never overwrites a file.
    let (code, _, err) = backup_to(&live_url, &backup, &secret_key).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("never overwrites"), "{err}");
    // Everything committed before the backup began (every acknowledgement among it) is in
    // the copy, with the same hashes as the live log.
    let restored = ochered_store::open(&restored_url).await.unwrap();
    for (authority, before) in &heads_before {
        let head = restored.head(authority).await.unwrap();
        assert!(
            head.authority_seq >= before.authority_seq,
            "{authority}: restored head {} < head before the backup {}",
            head.authority_seq,
            before.authority_seq
        );
        let event = restored
            .read(authority, before.authority_seq - 1, 1)
            .await
            .unwrap();
        assert_eq!(event[0].hash_hex(), before.hash, "{authority}");
    }
    let (state, _) = ochered_writer::load_state(restored.as_ref(), AUTHORITY)
        .await
        .unwrap();
    let mut missing = Vec::new();
    for (number, at) in &acknowledged {
        if *at < backup_began && state.application(ApplicationNumber(*number)).is_none() {
            missing.push(*number);
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged before the backup began but missing: {missing:?}"
    );
    assert!(before_count > 50, "{before_count}");
    restored.close().await;

    app.stop().await;
}

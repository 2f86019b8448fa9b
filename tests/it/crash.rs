//! Crashes: `ochered simulate` drives submissions over HTTP against a real server it spawns,
//! SIGKILLs it 22 times at moments drawn from the seed — each after the server has acknowledged
//! a submission since it restarted, and a drawn uptime of 50–600 ms, so every kill lands in the
//! middle of writes — and restarts it each time, while the clients retry with the same
//! Idempotency-Key. Afterwards every acknowledged application is in the
//! log, no child has two, the chain verifies and a fresh replay equals what the server held.
//! On SQLite and on PostgreSQL.

use ochered_store::testing::Harness;
use serde_json::Value;

const KILLS: u64 = 22;

/// Runs the crash rehearsal against the store behind `harness`; returns the JSON report.
async fn rehearse(harness: &Harness, backend: &str, seed: u64) -> Value {
    rehearse_with(harness, backend, seed, "ekaterinburg-2024", KILLS).await
}

/// The rehearsal of a surge preset with `kills` random SIGKILLs.
async fn rehearse_with(
    harness: &Harness,
    backend: &str,
    seed: u64,
    preset: &str,
    kills: u64,
) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ochered"))
        .args([
            "simulate",
            "--preset",
            preset,
            "--rate",
            "100",
            "--duration-s",
            "30",
            "--seed",
            &seed.to_string(),
            "--mode",
            "http",
            "--spawn-server",
            "--database-url",
            &harness.url,
            "--kill-server-random",
            &kills.to_string(),
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .output()
        .await
        .expect("ochered runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{backend}: status {:?}\n{stdout}\n{stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let context = format!("{backend}:\n{stdout}");
    assert_eq!(report["server_kills"], kills, "{context}");
    assert_eq!(report["lost"], 0, "{context}");
    assert_eq!(report["duplicates"], 0, "{context}");
    assert_eq!(report["order_violations"], 0, "{context}");
    let audit = &report["audit"];
    assert_eq!(audit["chain_ok"], true, "{context}");
    assert_eq!(audit["replay_deterministic"], true, "{context}");
    assert_eq!(audit["live_equal"], true, "{context}");
    assert_eq!(report["audit_passed"], true, "{context}");
    // The kills came at moments drawn from the seed, not at a fixed period.
    let times: Vec<f64> = report["kill_times_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let (shortest, longest) = gaps
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &g| (lo.min(g), hi.max(g)));
    assert!(longest > 2.0 * shortest, "{times:?}\n{context}");
    // The server acknowledged submissions between every two kills.
    let between: Vec<u64> = report["acks_between_kills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(between.len() as u64, kills - 1, "{context}");
    let with_acks = between.iter().filter(|&&n| n > 0).count();
    assert_eq!(with_acks, between.len(), "{between:?}\n{context}");
    assert!(report["acknowledged"].as_u64().unwrap() > 500, "{context}");
    eprintln!(
        "{backend} crash rehearsal: {} kills, {} submitted, {} acknowledged, lost {}, duplicates {}, \
         {with_acks} of {} gaps between kills saw acknowledgements, retries {}",
        report["server_kills"],
        report["submitted"],
        report["acknowledged"],
        report["lost"],
        report["duplicates"],
        between.len(),
        report["retries_by_reason"]
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_applications_survive_random_sigkills_on_sqlite() {
    let harness = Harness::sqlite().await;
    rehearse(&harness, "sqlite", 4242).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_applications_survive_random_sigkills_on_postgres() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    rehearse(&harness, "postgres", 4343).await;
}

/// Eleven authorities (one per time zone) write at once, so every commit holds several
/// authorities' batches in one transaction: a kill in the middle of such a commit loses
/// nothing acknowledged in any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_a_commit_of_several_authorities_loses_nothing_acknowledged() {
    let harness = Harness::sqlite().await;
    rehearse_with(&harness, "sqlite", 5151, "national-first-minute", 12).await;
    let authorities = harness.store.authorities().await.unwrap();
    assert!(authorities.len() >= 11, "{authorities:?}");
}

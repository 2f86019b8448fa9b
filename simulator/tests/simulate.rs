//! `ochered simulate` end to end, in process: reproducible with a fixed seed, the audit
//! catches a planted fault, and the SLO sets the exit status both ways.

use std::path::Path;

use ochered_simulator::{args_from, run_status, EXIT_AUDIT_FAILED, EXIT_SLO_MISSED};
use serde_json::Value;

/// Runs the simulator with these flags plus `--json` and returns its status and report.
async fn simulate(dir: &Path, name: &str, flags: &[&str]) -> (u8, Value) {
    let json = dir.join(format!("{name}.json"));
    let mut argv: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    argv.extend([
        "--quiet".into(),
        "--json".into(),
        json.display().to_string(),
    ]);
    let status = run_status(args_from(argv).expect("valid flags"))
        .await
        .expect("the run completes");
    let report = serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
        .expect("report is JSON");
    (status, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_seed_gives_the_same_state_hash_twice() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--preset",
        "national-first-minute",
        "--scale",
        "0.004",
        "--clock",
        "virtual",
        "--seed",
        "2024",
    ];
    let (status_a, a) = simulate(dir.path(), "a", &flags).await;
    let (status_b, b) = simulate(dir.path(), "b", &flags).await;
    assert_eq!((status_a, status_b), (0, 0), "{a:#}");
    assert_eq!(a["authorities"], 11);
    assert!(a["acknowledged"].as_u64().unwrap() > 700, "{a:#}");
    assert_eq!(a["lost"], 0);
    assert_eq!(a["duplicates"], 0);
    assert_eq!(a["order_violations"], 0);
    assert_eq!(a["errors"], 0, "{a:#}");
    assert!(
        a["expected_refusals"]["duplicate_application"]
            .as_u64()
            .unwrap()
            > 0,
        "{a:#}"
    );
    let hash = a["state_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    assert_eq!(b["state_hash"].as_str().unwrap(), hash);
    assert_eq!(a["audit"]["live_equal"], true);

    let (_, other_seed) = simulate(dir.path(), "c", &[&flags[..7], &["2025"]].concat()).await;
    assert_ne!(other_seed["state_hash"].as_str().unwrap(), hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_catches_a_dropped_acknowledged_application() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--preset",
        "novosibirsk-2024",
        "--scale",
        "0.03",
        "--duration-s",
        "2",
        "--seed",
        "9",
    ];
    let (status, clean) = simulate(dir.path(), "clean", &flags).await;
    assert_eq!(status, 0, "{clean:#}");
    assert_eq!(clean["lost"], 0);
    assert_eq!(clean["audit_passed"], true);

    let (status, report) = simulate(
        dir.path(),
        "fault",
        &[&flags[..], &["--test-drop-acknowledged", "1"]].concat(),
    )
    .await;
    assert_eq!(status, EXIT_AUDIT_FAILED, "{report:#}");
    assert_eq!(report["lost"], 1, "{report:#}");
    assert_eq!(report["audit_passed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slo_sets_the_exit_status_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--preset",
        "ekaterinburg-2024",
        "--scale",
        "0.02",
        "--duration-s",
        "2",
        "--seed",
        "3",
    ];
    let (status, met) = simulate(
        dir.path(),
        "met",
        &[&flags[..], &["--slo", "p99<30s,errors<50%,lost=0"]].concat(),
    )
    .await;
    assert_eq!(status, 0, "{met:#}");
    assert_eq!(met["slo"]["passed"], true);

    let (status, missed) = simulate(
        dir.path(),
        "missed",
        &[&flags[..], &["--slo", "p99<1us,errors<0.1%"]].concat(),
    )
    .await;
    assert_eq!(status, EXIT_SLO_MISSED, "{missed:#}");
    assert_eq!(missed["slo"]["passed"], false);
    assert_eq!(missed["slo"]["results"][0]["ok"], false);
    assert_eq!(missed["slo"]["results"][1]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_kindergarten_scenario_runs_and_writes_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.json");
    std::fs::write(
        &scenario,
        r#"{
            "name": "kindergarten-morning",
            "service": "kindergarten",
            "authorities": [
                {"id": "north", "time_zone": "Asia/Yekaterinburg", "share": 2},
                {"id": "south", "time_zone": "Europe/Moscow", "share": 1, "opens_after_min": 1}
            ],
            "arrivals": [{"minutes": 1, "applications": 300}, {"minutes": 3, "applications": 450}],
            "institutions": 6,
            "popularity_skew": 1.5,
            "second_device_share": 0.1,
            "second_device_delay_s": 20,
            "retry": {"max_attempts": 4},
            "birth_dates": {"out_of_range_share": 0.05},
            "privileges": {"extraordinary": 0.05, "first_priority": 0.1, "sibling": 0.2, "catchment": 0}
        }"#,
    )
    .unwrap();
    let html = dir.path().join("report.html");
    let scenario_arg = scenario.display().to_string();
    let html_arg = html.display().to_string();
    let (status, report) = simulate(
        dir.path(),
        "kg",
        &[
            "--scenario",
            &scenario_arg,
            "--duration-s",
            "2",
            "--seed",
            "5",
            "--html",
            &html_arg,
        ],
    )
    .await;
    assert_eq!(status, 0, "{report:#}");
    assert_eq!(report["children"], 450);
    assert!(
        report["submitted"].as_u64().unwrap() > 450,
        "some children were sent from two devices"
    );
    assert_eq!(report["errors"], 0, "{report:#}");
    assert!(
        report["expected_refusals"]["age_out_of_range"]
            .as_u64()
            .unwrap()
            > 0
    );
    let page = std::fs::read_to_string(&html).unwrap();
    for chart in ["arrivals", "latency", "queue-depth", "demand"] {
        assert!(
            page.contains(&format!("<figure id=\"{chart}\"><svg")),
            "{chart} chart missing"
        );
    }
    assert!(!page.contains("<script"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flat_rate_offers_that_many_sends_and_times_attempts_by_class() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--preset",
        "ekaterinburg-2024",
        "--rate",
        "200",
        "--duration-s",
        "2",
        "--seed",
        "5",
    ];
    let (status, report) = simulate(dir.path(), "rate", &flags).await;
    assert_eq!(status, 0, "{report}");
    // 400 children, and a few second devices within the run.
    assert_eq!(report["children"], 400, "{report}");
    assert!(report["last_send_s"].as_f64().unwrap() <= 4.0, "{report}");
    let accepted = &report["attempt_latency_ms"]["accepted"];
    assert_eq!(accepted["count"], report["acknowledged"], "{report}");
    assert!(accepted["p99"].as_f64().unwrap() > 0.0, "{report}");
    // In process there is no server to measure.
    assert!(report["server_peak_rss_kib"].is_null(), "{report}");
}

#[tokio::test]
async fn fault_and_rate_flags_are_checked() {
    for (flags, expected) in [
        (
            &["--preset", "spb-2015", "--kill-server-random", "3"][..],
            "need --spawn-server",
        ),
        (
            &["--preset", "spb-2015", "--rate", "100", "--scale", "2"][..],
            "leave --scale at 1",
        ),
        (
            &["--preset", "spb-2015", "--rate", "0"][..],
            "--rate must be positive",
        ),
    ] {
        let error = run_status(args_from(flags.iter().copied()).expect("parses"))
            .await
            .expect_err("refused");
        assert!(
            format!("{error:#}").contains(expected),
            "{flags:?}: {error:#}"
        );
    }
    assert!(args_from([
        "--preset",
        "spb-2015",
        "--kill-server-every",
        "1",
        "--kill-server-random",
        "2"
    ])
    .is_err());
}

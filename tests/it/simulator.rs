//! `ochered simulate` over HTTP against a server it spawns and SIGKILLs every 2 s: nothing
//! acknowledged is lost and no child ends up with two applications.

use std::process::Command;

use serde_json::Value;

#[test]
fn a_surge_over_http_survives_server_kills() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_ochered"))
        .args([
            "simulate",
            "--preset",
            "ekaterinburg-2024",
            "--scale",
            "0.2",
            "--duration-s",
            "7",
            "--seed",
            "17",
            "--mode",
            "http",
            "--spawn-server",
            "--kill-server-every",
            "2",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("ochered runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}\n{stdout}\n{stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["lost"], 0, "{stdout}");
    assert_eq!(report["duplicates"], 0, "{stdout}");
    assert_eq!(report["order_violations"], 0, "{stdout}");
    assert_eq!(report["audit_passed"], true, "{stdout}");
    assert!(report["server_kills"].as_u64().unwrap() >= 2, "{stdout}");
    assert!(report["acknowledged"].as_u64().unwrap() > 2000, "{stdout}");
    assert!(
        stdout.contains("reproduce: ochered simulate --preset ekaterinburg-2024"),
        "{stdout}"
    );
}

//! Architecture invariant, made executable: the core does no I/O, so its manifest names no
//! async runtime, database or web crate.

#[test]
fn core_manifest_has_no_io_dependencies() {
    let manifest = include_str!("../Cargo.toml");
    let forbidden = [
        "tokio",
        "sqlx",
        "axum",
        "hyper",
        "reqwest",
        "rand",
        "async-std",
        "ochered-store",
    ];
    let mut in_dependencies = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            // Only runtime dependencies matter; dev-dependencies may use anything.
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if !in_dependencies {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or("");
        assert!(
            !forbidden.contains(&name),
            "engine/core must stay pure, but it depends on {name}"
        );
    }
}

#[test]
fn core_sources_do_not_read_the_clock_or_the_environment() {
    let sources = [
        include_str!("../src/decide.rs"),
        include_str!("../src/state.rs"),
        include_str!("../src/queues.rs"),
        include_str!("../src/ordering.rs"),
        include_str!("../src/domain.rs"),
        include_str!("../src/allocation.rs"),
    ];
    for source in sources {
        for needle in [
            "Utc::now",
            "SystemTime",
            "Instant::now",
            "std::env",
            "std::fs",
            "thread_rng",
        ] {
            assert!(!source.contains(needle), "core source uses {needle}");
        }
    }
}

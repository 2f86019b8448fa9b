//! Architecture invariant, made executable: the core does no I/O, so its manifest names no
//! async runtime, database or web crate, and no source file of it reads the clock, the
//! environment, the file system or an unseeded random source. Every file under `src/` is
//! read, found by walking the directory, so a new module cannot slip past the check.

use std::path::{Path, PathBuf};

pub(crate) fn core_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively, in a fixed order.
pub(crate) fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    let mut files = Vec::new();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn core_manifest_has_no_io_dependencies() {
    let manifest = std::fs::read_to_string(core_dir().join("Cargo.toml")).unwrap();
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
    let src = core_dir().join("src");
    let files = rust_files(&src);
    // The walk must see the whole crate: its root and the two modules that hold the rules.
    for must in ["lib.rs", "decide/mod.rs", "state/mod.rs"] {
        assert!(
            files.contains(&src.join(must)),
            "the walk of {} missed {must}",
            src.display()
        );
    }
    let forbidden = [
        "Utc::now",
        "Local::now",
        "SystemTime",
        "Instant::now",
        "std::env",
        "std::fs",
        "std::net",
        "std::process",
        "std::thread",
        "thread_rng",
        "OsRng",
    ];
    for path in &files {
        let source = std::fs::read_to_string(path).unwrap();
        for needle in forbidden {
            assert!(
                !source.contains(needle),
                "{} uses {needle}",
                path.strip_prefix(&src).unwrap_or(path).display()
            );
        }
    }
}

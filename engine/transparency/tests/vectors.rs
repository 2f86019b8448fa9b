//! The test vectors that the independent verifier (`verifier/`) checks: the committed file is
//! what this crate generates, every verdict in it is this crate's, and, when Python is there,
//! the Python verifier reaches the same verdicts.

use std::path::PathBuf;
use std::process::Command;

use ochered_transparency::vectors;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_committed_vectors_are_the_generated_ones() {
    let path = repository().join("verifier/vectors.json");
    let generated = vectors::to_json(&vectors::generate());
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "verifier/vectors.json differs from vectors::generate(); if the change is intended, run UPDATE_VECTORS=1 cargo test -p ochered-transparency --test vectors"
    );
}

#[test]
fn the_vectors_cover_valid_and_invalid_cases() {
    let v = vectors::generate();
    let valid = v.receipts.iter().filter(|c| c.valid).count();
    assert!(valid >= 7, "{valid} valid receipts");
    assert!(v.receipts.len() - valid >= 15);
    for case in &v.receipts {
        let expected = !(case.name.starts_with("changed")
            || case.name.contains("another")
            || case.name.contains("too")
            || case.name.contains("beyond")
            || case.name.contains("without")
            || case.name.contains(" with a"));
        assert_eq!(case.valid, expected, "{}", case.name);
    }
    let valid_heads: Vec<&str> = v
        .heads
        .iter()
        .filter(|c| c.valid)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(valid_heads, ["honest heads"]);
    assert!(v.heads.len() >= 7);
}

/// Runs `verifier/ochered_verify.py vectors` with `$OCHERED_PYTHON` (or `python3`). Skipped
/// when no Python with an Ed25519 package is found, unless `OCHERED_REQUIRE_PYTHON_VERIFIER`
/// is set (CI sets it and provides the interpreter).
#[test]
fn the_python_verifier_agrees_on_every_vector() {
    let python = std::env::var("OCHERED_PYTHON").unwrap_or_else(|_| "python3".into());
    let required = std::env::var_os("OCHERED_REQUIRE_PYTHON_VERIFIER").is_some();
    let dir = tempfile_dir();
    let path = dir.join("vectors.json");
    std::fs::write(&path, vectors::to_json(&vectors::generate())).unwrap();
    let output = Command::new(&python)
        .arg(repository().join("verifier/ochered_verify.py"))
        .arg("vectors")
        .arg(&path)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) if !required => {
            eprintln!("skipped: cannot run {python}: {e}");
            return;
        }
        Err(e) => panic!("cannot run {python}: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !required && stderr.contains("needs an Ed25519 package") {
        eprintln!("skipped: {stderr}");
        return;
    }
    assert!(
        output.status.success(),
        "the Python verifier disagrees:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all verdicts agree"), "{stdout}\n{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ochered-vectors-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

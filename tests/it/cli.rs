//! The operator's and auditor's commands, run as the real binary.

use std::process::Command;

use ochered_store::testing::Harness;
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::{RequestMeta, Writer, WriterConfig};

pub(crate) fn ochered() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ochered"))
}

/// A log with a demo authority and `n` applications.
pub(crate) async fn filled(h: &Harness, n: u64) {
    let (writer, _) = Writer::start(h.store.clone(), "cli-town", WriterConfig::default())
        .await
        .unwrap();
    let now = chrono::Utc::now();
    for command in demo::setup_commands("cli-town", &DemoShape::default(), now) {
        writer
            .submit(command, RequestMeta::default())
            .await
            .unwrap();
    }
    let mut rng = SeededRng::new(1);
    for i in 0..n {
        let command =
            demo::kindergarten_application(&mut rng, i, &DemoShape::default(), now.date_naive());
        writer
            .submit(command, RequestMeta::default())
            .await
            .unwrap();
    }
}

pub(crate) fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_replay_on_each_store() {
    let mut harnesses = vec![Harness::sqlite().await];
    if let Some(pg) = Harness::postgres().await {
        harnesses.push(pg);
    }
    for h in harnesses {
        filled(&h, 30).await;
        let (code, out, err) = run(ochered().args(["verify", "--database-url", &h.url]));
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("authority=cli-town ok"), "{out}");
        assert!(out.contains("head_hash="), "{out}");

        // Two replays print the same state hash.
        let (code, first, err) = run(ochered().args(["replay", "--database-url", &h.url]));
        assert_eq!(code, 0, "{err}");
        let hash = |text: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("state_hash="))
                .unwrap()
                .to_owned()
        };
        let (_, second, _) = run(ochered().args(["replay", "--database-url", &h.url]));
        assert_eq!(hash(&first), hash(&second));
        assert!(first.contains("events="), "{first}");

        // `export --format jsonl`: one JSON object per event, and each line rebuilds the
        // exact stored record and hash (the export round-trips).
        let (code, out, err) =
            run(ochered().args(["export", "--format", "jsonl", "--database-url", &h.url]));
        assert_eq!(code, 0, "{err}");
        let stored = h.store.read("cli-town", 0, 100_000).await.unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), stored.len());
        for (line, event) in lines.iter().zip(&stored) {
            assert_eq!(line["authority_seq"], event.authority_seq);
            assert!(line["event"]["type"].is_string(), "{line}");
            let (record, hash) = ochered_writer::audit::record_of_export(line).unwrap();
            assert_eq!(record, event.record);
            assert_eq!(hash, event.hash);
            assert_eq!(line["hash"], hex::encode(hash));
        }

        // Change one stored event's payload: verify names that event and fails.
        let mut record = h.stored_record("cli-town", 40).await;
        let at = record
            .windows(7)
            .position(|w| w == b"parent-")
            .expect("a submitter in the record");
        record[at + 6] = b'X';
        h.set_stored_record("cli-town", 40, &record).await;
        let (code, out, _) = run(ochered().args(["verify", "--database-url", &h.url]));
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("BROKEN at authority_seq=40"), "{out}");
    }
}

#[test]
fn allocate_solves_an_instance_and_refuses_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = write(
        "good.json",
        r#"{"institutions":[{"id":"K1","capacity":1},{"id":"K2","capacity":1}],
            "applicants":[{"id":"a1","preferences":["K1","K2"],"rank":2},
                          {"id":"a2","preferences":["K1"],"priorities":{"K1":0},"rank":1},
                          {"id":"a3","preferences":["K1"],"rank":3}]}"#,
    );
    let (code, out, err) = run(ochered().arg("allocate").arg("--instance").arg(&good));
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"assignments": {"a1": "K2", "a2": "K1", "a3": null}})
    );
    let cases = [
        ("malformed.json", r#"{"institutions": ["#, "JSON"),
        (
            "unknown.json",
            r#"{"institutions":[{"id":"K1","capacity":1}],"applicants":[{"id":"a1","preferences":["K9"],"rank":1}]}"#,
            "K9",
        ),
        (
            "dup_id.json",
            r#"{"institutions":[{"id":"K1","capacity":1}],"applicants":[{"id":"a1","preferences":["K1"],"rank":1},{"id":"a1","preferences":["K1"],"rank":2}]}"#,
            "a1",
        ),
        (
            "dup_rank.json",
            r#"{"institutions":[{"id":"K1","capacity":1}],"applicants":[{"id":"a1","preferences":["K1"],"rank":1},{"id":"a2","preferences":["K1"],"rank":1}]}"#,
            "rank",
        ),
        (
            "negative.json",
            r#"{"institutions":[{"id":"K1","capacity":-1}],"applicants":[]}"#,
            "K1",
        ),
    ];
    for (name, text, needle) in cases {
        let path = write(name, text);
        let (code, out, err) = run(ochered().arg("allocate").arg("--instance").arg(&path));
        assert_ne!(code, 0, "{name}");
        assert!(out.is_empty(), "{name} printed a result: {out}");
        assert!(err.contains(needle), "{name}: {err}");
    }
}

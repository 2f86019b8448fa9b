//! Receipts, inclusion proofs and signed tree heads checked by the real binary
//! (`ochered verify-receipt`, `ochered verify --heads`), on logs changed behind the
//! server's back (docs/TRANSPARENCY.md).

use std::path::{Path, PathBuf};

use ochered_store::testing::Harness;
use ochered_transparency::{
    hash_hex, InclusionProofFile, LogTree, PublishedHead, Receipt, ReceiptFields, SignedTreeHead,
    SigningKey,
};

use crate::cli::{filled, ochered, run};
use crate::tamper::{filled_more, rewrite_and_rehash, stores, AUTHORITY};

struct Signer {
    dir: tempfile::TempDir,
    key: SigningKey,
    public: PathBuf,
}

fn new_signer() -> Signer {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("server.key");
    let public = dir.path().join("server.pub");
    ochered_transparency::write_key_pair(&secret, &public).unwrap();
    let key =
        ochered_transparency::parse_secret_key(&std::fs::read_to_string(&secret).unwrap()).unwrap();
    Signer { dir, key, public }
}

impl Signer {
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The head of the first `size` events of `tree`, with the proof from `from`.
    fn head(&self, tree: &LogTree, size: u64, from: Option<u64>) -> PublishedHead {
        PublishedHead::of_tree(&self.key, AUTHORITY, tree, size, from, chrono::Utc::now()).unwrap()
    }
}

fn jsonl(heads: &[&PublishedHead]) -> String {
    heads
        .iter()
        .map(|h| serde_json::to_string(h).unwrap() + "\n")
        .collect()
}

/// The tree of the authority's log as it is in the database now.
async fn tree_of(h: &Harness) -> LogTree {
    let mut tree = LogTree::new();
    for event in h.store.read(AUTHORITY, 0, 1_000_000).await.unwrap() {
        tree.push(&event.hash);
    }
    tree
}

/// `ochered verify --heads …` (offline, or against `h`'s log): (exit code, stdout).
fn verify_heads(h: Option<&Harness>, files: &[&Path], public: &Path) -> (i32, String) {
    let mut cmd = ochered();
    cmd.arg("verify").env_remove("OCHERED_DATABASE_URL");
    if let Some(h) = h {
        cmd.args(["--database-url", &h.url]);
    }
    for file in files {
        cmd.arg("--heads").arg(file);
    }
    cmd.arg("--public-key").arg(public);
    let (code, out, err) = run(&mut cmd);
    assert!(code == 0 || code == 1, "verify failed to run: {out}{err}");
    (code, out)
}

#[test]
fn a_receipt_verifies_offline_and_a_changed_field_fails() {
    let signer = new_signer();
    let events: Vec<[u8; 32]> = (0..30u8).map(|i| [i; 32]).collect();
    let mut tree = LogTree::new();
    for e in &events {
        tree.push(e);
    }
    let receipt = Receipt::sign(
        &signer.key,
        ReceiptFields {
            authority: AUTHORITY.into(),
            service: "school".into(),
            number: 7,
            registered_at: "2025-04-01T00:00:00.000001+05:00".into(),
            time_zone: "Asia/Yekaterinburg".into(),
            authority_seq: 12,
            event_hash: events[11],
        },
    );
    let head = SignedTreeHead::sign(
        &signer.key,
        AUTHORITY,
        25,
        &tree.root_at(25).unwrap(),
        chrono::Utc::now(),
    );
    let proof = InclusionProofFile::build(&tree, &head, 12, &events[11]).unwrap();
    let receipt_file = signer.write("receipt.json", &receipt.to_json());
    let proof_file = signer.write("proof.json", &proof.to_json());
    let check = |receipt: &Path, proof: Option<&Path>, public: &Path| {
        let mut cmd = ochered();
        cmd.arg("verify-receipt").arg("--receipt").arg(receipt);
        if let Some(proof) = proof {
            cmd.arg("--proof").arg(proof);
        }
        let (code, out, err) = run(cmd.arg("--public-key").arg(public));
        (code, format!("{out}{err}"))
    };

    let (code, out) = check(&receipt_file, Some(&proof_file), &signer.public);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("receipt ok: school application 7 of cli-town"),
        "{out}"
    );
    assert!(
        out.contains("inclusion ok: the event is in the tree of 25 events"),
        "{out}"
    );
    let (code, out) = check(&receipt_file, None, &signer.public);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no proof given"), "{out}");

    // Any changed field fails; so does a proof of another event, or another key.
    let json: serde_json::Value = serde_json::from_str(&receipt.to_json()).unwrap();
    for (field, value) in [
        ("number", serde_json::json!(8)),
        (
            "registered_at",
            serde_json::json!("2025-03-31T23:59:59.000001+05:00"),
        ),
        ("authority_seq", serde_json::json!(13)),
        ("event_hash", serde_json::json!(hash_hex(&events[12]))),
    ] {
        let mut changed = json.clone();
        changed[field] = value;
        let file = signer.write("changed.json", &changed.to_string());
        let (code, out) = check(&file, Some(&proof_file), &signer.public);
        assert_eq!(code, 1, "{field}: {out}");
        assert!(
            out.contains("NOT VERIFIED: the receipt's signature does not match"),
            "{out}"
        );
    }
    let other = InclusionProofFile::build(&tree, &head, 13, &events[12]).unwrap();
    let other_file = signer.write("other-proof.json", &other.to_json());
    let (code, out) = check(&receipt_file, Some(&other_file), &signer.public);
    assert_eq!(code, 1, "{out}");
    let stranger = new_signer();
    let (code, out) = check(&receipt_file, Some(&proof_file), &stranger.public);
    assert_eq!(code, 1, "{out}");
    // Not a receipt at all: an error, not a verdict.
    let (code, out) = check(&proof_file, None, &signer.public);
    assert_eq!(code, 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_heads_catches_a_rewritten_or_truncated_log_on_each_store() {
    let signer = new_signer();
    for h in stores().await {
        filled(&h, 20).await;
        let tree = tree_of(&h).await;
        let n = tree.len();
        let (first, second) = (
            signer.head(&tree, n - 10, None),
            signer.head(&tree, n, Some(n - 10)),
        );
        let mirror = signer.write("mirror.jsonl", &jsonl(&[&first, &second]));
        let (code, out) = verify_heads(None, &[&mirror], &signer.public);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("2 signatures ok, 1 consistency proofs ok, 0 problems"),
            "{out}"
        );
        let (code, out) = verify_heads(Some(&h), &[&mirror], &signer.public);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("2 matched to the log"), "{out}");

        // Event n-5 changed and the chain hashed again: the chain verifies, the heads do not.
        rewrite_and_rehash(&h, n as i64 - 5).await;
        let (code, out) = verify_heads(Some(&h), &[&mirror], &signer.public);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("HEADS PROBLEM"), "{out}");
        assert!(
            out.contains(&format!("the log's first {n} events have root")),
            "{out}"
        );
        assert!(!out.contains("BROKEN"), "the chain itself verifies: {out}");
        // The server's next head over the rewritten log cannot be proved consistent with the
        // mirror's: caught without the database too.
        let rewritten = tree_of(&h).await;
        let next = signer.head(&rewritten, n, Some(n - 10));
        let server = signer.write("server.jsonl", &jsonl(&[&next]));
        let (code, out) = verify_heads(None, &[&mirror, &server], &signer.public);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("FORK"), "{out}");

        // Events removed from the end.
        let log_head = h.store.head(AUTHORITY).await.unwrap().authority_seq;
        h.delete_events(AUTHORITY, n as i64 - 2, log_head).await;
        let (code, out) = verify_heads(Some(&h), &[&mirror], &signer.public);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("fewer than the"), "{out}");
    }
}

/// A forged append after the newest head passes every check of the log alone and of the
/// heads seen before it; the next honest head, kept by a mirror, catches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_append_after_the_newest_head_is_caught_by_the_next_honest_head() {
    let signer = new_signer();
    let h = Harness::sqlite().await;
    filled(&h, 10).await;
    let honest = tree_of(&h).await;
    let n = honest.len();
    let h1 = signer.head(&honest, n, None);
    // The honest server goes on and publishes the next head, which a mirror keeps.
    filled_more(&h).await;
    let honest = tree_of(&h).await;
    let h2 = signer.head(&honest, honest.len(), Some(n));
    let seen_by_parent = signer.write("parent.jsonl", &jsonl(&[&h1]));
    let mirror = signer.write("mirror.jsonl", &jsonl(&[&h1, &h2]));

    // Someone with the database replaces everything after the first head with a forged
    // append, chained correctly.
    let log_head = h.store.head(AUTHORITY).await.unwrap().authority_seq;
    h.delete_events(AUTHORITY, n as i64 + 1, log_head).await;
    filled_more(&h).await;
    let forged = tree_of(&h).await;
    assert!(forged.len() > n);
    let (code, out, _) = run(ochered().args(["verify", "--database-url", &h.url]));
    assert_eq!(code, 0, "the forged chain verifies on its own: {out}");
    let (code, out) = verify_heads(Some(&h), &[&seen_by_parent], &signer.public);
    assert_eq!(code, 0, "a head before the forgery cannot see it: {out}");

    // The mirror's honest head does.
    let (code, out) = verify_heads(Some(&h), &[&mirror], &signer.public);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("entry 2 (tree_size={})", honest.len())),
        "{out}"
    );
    // And so does a head the forged server signs, once it meets the mirror's copy.
    let forged_head = signer.head(&forged, honest.len(), Some(n));
    let server = signer.write("server.jsonl", &jsonl(&[&h1, &forged_head]));
    let (code, out) = verify_heads(None, &[&server], &signer.public);
    assert_eq!(code, 0, "alone, the forged branch is consistent: {out}");
    let (code, out) = verify_heads(None, &[&server, &mirror], &signer.public);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FORK"), "{out}");
}

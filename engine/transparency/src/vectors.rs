//! Test vectors shared with the independent verifier (`verifier/vectors.json`): valid and
//! invalid receipts, proofs and heads files, each with the verdict ours gives.
//!
//! Everything is deterministic (a fixed key, fixed times, Ed25519's deterministic
//! signatures), so the file can be regenerated and compared byte for byte.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    audit_heads, hash_hex, verify_receipt, Hash, HeadsFile, InclusionProofFile, LogTree,
    PublishedHead, Receipt, ReceiptBatch, ReceiptFields, SignedTreeHead, SigningKey,
};

/// One receipt case: a receipt, maybe its proof, and whether it verifies.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptCase {
    pub name: String,
    pub receipt: Receipt,
    pub proof: Option<InclusionProofFile>,
    pub valid: bool,
}

/// One heads-file case: the heads one party kept, and whether they check out.
#[derive(Debug, Clone, Serialize)]
pub struct HeadsCase {
    pub name: String,
    pub heads: Vec<PublishedHead>,
    pub valid: bool,
}

/// Roots of a small tree, so that a verifier can test its tree hashing on its own.
#[derive(Debug, Clone, Serialize)]
pub struct TreeCase {
    pub event_hashes: Vec<String>,
    /// `roots[k]` is the root of the first `k + 1` events.
    pub roots: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vectors {
    pub comment: String,
    pub public_key: String,
    pub tree: TreeCase,
    pub receipts: Vec<ReceiptCase>,
    pub heads: Vec<HeadsCase>,
}

fn event_hash(i: u64) -> Hash {
    Sha256::digest(format!("event {i}").as_bytes()).into()
}

/// The vectors, with the verdicts of this crate's verifiers.
pub fn generate() -> Vectors {
    let key = SigningKey::from_bytes(&[7; 32]);
    let other_key = SigningKey::from_bytes(&[8; 32]);
    let public = key.verifying_key();
    let n = 21u64;
    let events: Vec<Hash> = (1..=n).map(event_hash).collect();
    let mut tree = LogTree::new();
    for e in &events {
        tree.push(e);
    }
    let at = |s: i64| Utc.timestamp_opt(1_743_446_400 + s, 123_456_000).unwrap();
    let head = |key: &SigningKey, size: u64, s: i64| {
        SignedTreeHead::sign(key, "demo", size, &tree.root_at(size).unwrap(), at(s))
    };
    let fields = |seq: u64| ReceiptFields {
        authority: "demo".into(),
        service: ["kindergarten", "school", "clinic"][(seq % 3) as usize].into(),
        number: 100 + seq,
        registered_at: format!("2025-04-01T00:00:{:02}.123456+05:00", seq % 60),
        time_zone: "Asia/Yekaterinburg".into(),
        authority_seq: seq,
        event_hash: events[(seq - 1) as usize],
    };
    // Receipts are signed in batches of seven events (1-7, 8-14, 15-21).
    let receipt = |key: &SigningKey, seq: u64| {
        let first = (seq - 1) / 7 * 7 + 1;
        let batch = (first..first + 7).map(fields).collect();
        Receipt::sign_batch(key, batch).swap_remove(((seq - 1) % 7) as usize)
    };

    let mut receipts = Vec::new();
    let mut case = |name: &str, receipt: Receipt, proof: Option<InclusionProofFile>| {
        let valid = verify_receipt(&receipt, proof.as_ref(), &public).is_ok();
        receipts.push(ReceiptCase {
            name: name.into(),
            receipt,
            proof,
            valid,
        });
    };
    for (seq, size) in [
        (1, 1),
        (1, 21),
        (8, 8),
        (8, 16),
        (13, 21),
        (21, 21),
        (16, 17),
    ] {
        let head = head(&key, size, size as i64);
        let proof = InclusionProofFile::build(&tree, &head, seq, &events[(seq - 1) as usize]);
        case(
            &format!("event {seq} in a tree of {size}"),
            receipt(&key, seq),
            proof,
        );
    }
    let base = receipt(&key, 13);
    let head21 = head(&key, 21, 21);
    let proof = InclusionProofFile::build(&tree, &head21, 13, &events[12]).unwrap();
    case("receipt alone", base.clone(), None);
    type Edit = (&'static str, fn(&mut Receipt));
    let edits: [Edit; 8] = [
        ("changed authority", |r| r.authority = "demo2".into()),
        ("changed service", |r| r.service = "clinic".into()),
        ("changed number", |r| r.number += 1),
        ("changed registered_at", |r| {
            r.registered_at = r.registered_at.replace(":13.", ":12.")
        }),
        ("changed time_zone", |r| {
            r.time_zone = "Europe/Moscow".into()
        }),
        ("changed authority_seq", |r| r.authority_seq += 1),
        ("changed event_hash", |r| r.event_hash = hash_hex(&[0; 32])),
        ("changed signature", |r| {
            r.signature = format!("{}{}", &r.signature[..127], "0")
        }),
    ];
    for (name, edit) in edits {
        let mut changed = base.clone();
        edit(&mut changed);
        if name == "changed signature" && changed.signature == base.signature {
            changed.signature = format!("{}{}", &base.signature[..127], "1");
        }
        case(name, changed, Some(proof.clone()));
    }
    type BatchEdit = (&'static str, fn(&mut ReceiptBatch));
    let batch_edits: [BatchEdit; 6] = [
        ("changed batch index", |b| b.index = (b.index + 1) % b.size),
        ("changed batch size", |b| b.size += 1),
        ("changed batch root", |b| b.root = hash_hex(&[0xab; 32])),
        ("changed batch path node", |b| {
            b.path[0] = hash_hex(&[0xab; 32])
        }),
        ("batch path too short", |b| {
            b.path.pop();
        }),
        ("batch path too long", |b| {
            b.path.push(hash_hex(&[0xab; 32]))
        }),
    ];
    for (name, edit) in batch_edits {
        let mut changed = base.clone();
        edit(changed.batch.as_mut().expect("a v2 receipt"));
        case(name, changed, Some(proof.clone()));
    }
    let mut changed = base.clone();
    changed.batch = None;
    case("v2 receipt without its batch", changed, Some(proof.clone()));
    case(
        "receipt signed alone",
        Receipt::sign(&key, fields(13)),
        Some(proof.clone()),
    );
    let v1 = Receipt::sign_v1(&key, fields(13));
    case("v1 receipt", v1.clone(), Some(proof.clone()));
    let mut changed = v1.clone();
    changed.number += 1;
    case(
        "v1 receipt with a changed number",
        changed,
        Some(proof.clone()),
    );
    let mut changed = v1.clone();
    changed.batch = base.batch.clone();
    case("v1 receipt with a batch", changed, Some(proof.clone()));
    let mut p = proof.clone();
    p.audit_path[1] = hash_hex(&[0xab; 32]);
    case("changed audit path node", base.clone(), Some(p));
    let mut p = proof.clone();
    p.audit_path.pop();
    case("audit path too short", base.clone(), Some(p));
    let mut p = proof.clone();
    p.audit_path.push(hash_hex(&[0xab; 32]));
    case("audit path too long", base.clone(), Some(p));
    let mut p = proof.clone();
    p.tree_head.tree_size = 20;
    case("changed head size", base.clone(), Some(p));
    let mut p = proof.clone();
    p.tree_head.root_hash = hash_hex(&[0xcd; 32]);
    case("changed head root", base.clone(), Some(p));
    let mut p = proof.clone();
    p.tree_head = SignedTreeHead::sign(&other_key, "demo", 21, &tree.root(), at(21));
    case("head signed by another key", base.clone(), Some(p));
    case(
        "receipt signed by another key",
        receipt(&other_key, 13),
        Some(proof.clone()),
    );
    case(
        "proof of another event",
        base.clone(),
        InclusionProofFile::build(&tree, &head21, 12, &events[11]),
    );
    let mut p = proof.clone();
    p.leaf_index = 21;
    case(
        "leaf beyond the head",
        receipt(&key, 22_u64.min(n)),
        Some(p),
    );

    // Heads files.
    let published = |size: u64, from: Option<u64>, tree: &LogTree, key: &SigningKey| {
        PublishedHead::of_tree(key, "demo", tree, size, from, at(size as i64)).unwrap()
    };
    let mut rewritten_events = events.clone();
    rewritten_events[4] = [0xee; 32];
    let mut rewritten = LogTree::new();
    for e in &rewritten_events {
        rewritten.push(e);
    }
    let honest = vec![
        published(1, None, &tree, &key),
        published(3, Some(1), &tree, &key),
        published(3, Some(3), &tree, &key),
        published(8, Some(3), &tree, &key),
        published(13, Some(8), &tree, &key),
        published(21, Some(13), &tree, &key),
    ];
    let mut heads = Vec::new();
    let mut heads_case = |name: &str, list: Vec<PublishedHead>| {
        let file = HeadsFile {
            source: name.into(),
            heads: list.clone(),
        };
        let valid = audit_heads(&[file], &public, None::<&HashMap<String, LogTree>>)
            .problems
            .is_empty();
        heads.push(HeadsCase {
            name: name.into(),
            heads: list,
            valid,
        });
    };
    heads_case("honest heads", honest.clone());
    let mut list = honest.clone();
    list[4].consistency = None;
    heads_case("a head without its consistency proof", list);
    let mut list = honest[..5].to_vec();
    list.push(published(21, Some(13), &rewritten, &key));
    heads_case("event 5 rewritten after the head of size 8", list);
    let mut list = honest.clone();
    list.push(published(13, None, &rewritten, &key));
    heads_case("a second head of size 13 with another root", list);
    let mut list = honest.clone();
    list.push(published(8, None, &tree, &key));
    heads_case("the tree shrinks", list);
    let mut list = honest.clone();
    list[3].tree_head.signature = honest[2].tree_head.signature.clone();
    heads_case("a head with a wrong signature", list);
    let mut list = honest.clone();
    if let Some(c) = &mut list[5].consistency {
        c.path[0] = hash_hex(&[0x11; 32]);
    }
    heads_case("a changed consistency proof node", list);
    let mut list = honest.clone();
    if let Some(c) = &mut list[5].consistency {
        c.from_size = 12;
    }
    heads_case("a consistency proof from another size", list);

    Vectors {
        comment: "Generated by ochered-transparency's vectors::generate; `valid` is the Rust verifiers' verdict. Regenerate with UPDATE_VECTORS=1 cargo test -p ochered-transparency --test vectors.".into(),
        public_key: hex::encode(public.to_bytes()),
        tree: TreeCase {
            event_hashes: events.iter().map(hash_hex).collect(),
            roots: (1..=n).map(|k| hash_hex(&tree.root_at(k).unwrap())).collect(),
        },
        receipts,
        heads,
    }
}

/// The vectors as the committed file holds them: pretty JSON and a final newline.
pub fn to_json(vectors: &Vectors) -> String {
    serde_json::to_string_pretty(vectors).expect("vectors serialize") + "\n"
}

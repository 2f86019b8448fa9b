//! Receipts: the server's signed word that an application was logged at a place and time,
//! and the inclusion proof that ties it to a signed tree head.
//!
//! Receipts are signed in batches (format `ochered-receipt-v2`): the receipts issued at one
//! moment are the leaves of a small Merkle tree whose root is signed once, and each receipt
//! carries its place in that tree and its audit path. One Ed25519 signature then serves up to
//! [`RECEIPT_BATCH_MAX`] parents; the construction is that of batch signing in TLS
//! (draft-ietf-tls-batch-signing) with the RFC 6962 tree hashing the log already uses.
//! Receipts of the earlier format (`ochered-receipt-v1`, each signed alone) still verify.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::head::{included, parse_path};
use crate::{
    check_signature, framed, hash_hex, leaf_hash, node_hash, parse_hash, sign_hex, Hash, LogTree,
    SignedTreeHead, SigningKey, VerifyError, VerifyingKey,
};

/// The format of the receipts issued today ([`Receipt::format`], the first field of each
/// receipt's statement).
pub const RECEIPT_FORMAT: &str = "ochered-receipt-v2";

/// The format of the receipts issued before batches, each signed alone: still verified.
pub const RECEIPT_FORMAT_V1: &str = "ochered-receipt-v1";

/// The first field of what a batch's signature covers.
pub const RECEIPT_BATCH_FORMAT: &str = "ochered-receipt-batch-v2";

/// Most receipts under one signature. A receipt's audit path has at most 5 nodes, which keeps
/// its QR code easy to read; and one signature in 32 is already next to nothing.
pub const RECEIPT_BATCH_MAX: usize = 32;

/// The value of [`InclusionProofFile::format`].
pub const INCLUSION_PROOF_FORMAT: &str = "ochered-inclusion-proof-v1";

/// What a receipt states, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFields {
    pub authority: String,
    /// `kindergarten`, `school` or `clinic`.
    pub service: String,
    /// The application number (for the clinic: the booking number).
    pub number: u64,
    /// The registration time in the authority's time zone: RFC 3339 with six fraction digits
    /// and the zone's offset, e.g. `2025-04-01T00:00:00.000123+05:00`.
    pub registered_at: String,
    /// The authority's IANA time zone, e.g. `Asia/Yekaterinburg`.
    pub time_zone: String,
    /// The event's place in the authority's chain (1, 2, …); its leaf index is one less.
    pub authority_seq: u64,
    pub event_hash: Hash,
}

/// A signed receipt, as the parent downloads it.
///
/// ```json
/// {
///   "format": "ochered-receipt-v2",
///   "authority": "demo",
///   "service": "kindergarten",
///   "number": 17,
///   "registered_at": "2025-04-01T00:00:00.000123+05:00",
///   "time_zone": "Asia/Yekaterinburg",
///   "authority_seq": 42,
///   "event_hash": "9f…",
///   "batch": { "size": 3, "index": 1, "root": "5c…", "path": ["0d…", "a4…"] },
///   "public_key": "3b…",
///   "signature": "d1…"
/// }
/// ```
///
/// The receipt's **statement** ([`Receipt::statement`]) is the framed fields `format`,
/// `authority`, `service`, `number` (decimal ASCII), `registered_at`, `time_zone`,
/// `authority_seq` (decimal ASCII), `event_hash`. In v2, `SHA-256(statement)` is leaf
/// `batch.index` of an RFC 6962 tree of `batch.size` leaves whose root is `batch.root`, and
/// the signature covers the framed `ochered-receipt-batch-v2`, `batch.size` (decimal ASCII)
/// and `batch.root` ([`Receipt::signed_bytes`]). In v1 there is no `batch` and the signature
/// covers the statement itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub format: String,
    pub authority: String,
    pub service: String,
    pub number: u64,
    pub registered_at: String,
    pub time_zone: String,
    pub authority_seq: u64,
    pub event_hash: String,
    /// Where the receipt sits in the batch signed with it (v2 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<ReceiptBatch>,
    pub public_key: String,
    pub signature: String,
}

/// A receipt's place in the batch of receipts signed together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBatch {
    /// The number of receipts signed together (1 to [`RECEIPT_BATCH_MAX`]).
    pub size: u64,
    /// This receipt's leaf, from 0.
    pub index: u64,
    /// The root of the batch's tree (RFC 6962 `MTH`), lower-case hex.
    pub root: String,
    /// RFC 6962 `PATH(index, D[size])`, each node as lower-case hex.
    pub path: Vec<String>,
}

impl Receipt {
    /// Signs one receipt alone: a batch of one, whose root is the receipt's own leaf.
    pub fn sign(key: &SigningKey, fields: ReceiptFields) -> Self {
        Self::sign_batch(key, vec![fields])
            .pop()
            .expect("a batch of one gives one receipt")
    }

    /// Signs receipts together, under one signature, in the order given (at most
    /// [`RECEIPT_BATCH_MAX`] at a time is the rule the server keeps; more still verify).
    pub fn sign_batch(key: &SigningKey, batch: Vec<ReceiptFields>) -> Vec<Self> {
        if batch.is_empty() {
            return Vec::new();
        }
        let public_key = hex::encode(key.verifying_key().to_bytes());
        let mut receipts: Vec<Receipt> = batch
            .into_iter()
            .map(|fields| Receipt::unsigned(RECEIPT_FORMAT, fields, public_key.clone()))
            .collect();
        let leaves: Vec<Hash> = receipts
            .iter()
            .map(|receipt| leaf_hash(&receipt.statement_digest()))
            .collect();
        let levels = batch_levels(leaves);
        let size = receipts.len() as u64;
        let root = hash_hex(&levels.last().expect("at least the leaves")[0]);
        let signature = sign_hex(key, &batch_signed_bytes(size, &root));
        for (index, receipt) in receipts.iter_mut().enumerate() {
            receipt.batch = Some(ReceiptBatch {
                size,
                index: index as u64,
                root: root.clone(),
                path: batch_path(&levels, index).iter().map(hash_hex).collect(),
            });
            receipt.signature = signature.clone();
        }
        receipts
    }

    /// A receipt of the earlier format, signed alone (`ochered-receipt-v1`). Servers issue v2;
    /// this is for tests and test vectors of the receipts parents still hold.
    pub fn sign_v1(key: &SigningKey, fields: ReceiptFields) -> Self {
        let public_key = hex::encode(key.verifying_key().to_bytes());
        let mut receipt = Receipt::unsigned(RECEIPT_FORMAT_V1, fields, public_key);
        receipt.signature = sign_hex(key, &receipt.statement());
        receipt
    }

    fn unsigned(format: &str, fields: ReceiptFields, public_key: String) -> Self {
        Receipt {
            format: format.to_string(),
            authority: fields.authority,
            service: fields.service,
            number: fields.number,
            registered_at: fields.registered_at,
            time_zone: fields.time_zone,
            authority_seq: fields.authority_seq,
            event_hash: hash_hex(&fields.event_hash),
            batch: None,
            public_key,
            signature: String::new(),
        }
    }

    /// What the receipt states: its framed fields, `format` first.
    pub fn statement(&self) -> Vec<u8> {
        framed(&[
            &self.format,
            &self.authority,
            &self.service,
            &self.number.to_string(),
            &self.registered_at,
            &self.time_zone,
            &self.authority_seq.to_string(),
            &self.event_hash,
        ])
    }

    /// `SHA-256(statement)`: the receipt's leaf in its batch's tree (hashed once more, with
    /// the leaf prefix `0x00`, as every RFC 6962 leaf).
    pub fn statement_digest(&self) -> Hash {
        Sha256::digest(self.statement()).into()
    }

    /// The exact bytes the signature covers: the batch's (v2) or the statement (v1).
    pub fn signed_bytes(&self) -> Vec<u8> {
        match &self.batch {
            Some(batch) => batch_signed_bytes(batch.size, &batch.root),
            None => self.statement(),
        }
    }

    /// Parses a receipt's JSON text, of either format (the signature is not checked here).
    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        let receipt: Receipt = serde_json::from_str(text)
            .map_err(|e| VerifyError::Format(format!("not a receipt: {e}")))?;
        if receipt.format != RECEIPT_FORMAT && receipt.format != RECEIPT_FORMAT_V1 {
            return Err(VerifyError::Format(format!(
                "unknown receipt format {:?} (expected {RECEIPT_FORMAT:?} or {RECEIPT_FORMAT_V1:?})",
                receipt.format
            )));
        }
        Ok(receipt)
    }

    /// Checks the signature with the auditor's (or the parent's) copy of the public key (in
    /// v2, also that the statement is the batch's leaf `index`), and that the fields are well
    /// formed.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        match (self.format.as_str(), &self.batch) {
            (RECEIPT_FORMAT_V1, None) => {
                check_signature(key, &self.statement(), &self.signature, "receipt")?
            }
            (RECEIPT_FORMAT, Some(batch)) => {
                let root = parse_hash(&batch.root, "the receipt's batch root")?;
                let path = parse_path(&batch.path, "each batch path node")?;
                check_signature(key, &self.signed_bytes(), &self.signature, "receipt")?;
                if !included(
                    &self.statement_digest(),
                    batch.index,
                    batch.size,
                    &root,
                    &path,
                ) {
                    // The fields are not those that were signed (or the path was changed).
                    return Err(VerifyError::BadSignature("receipt"));
                }
            }
            (RECEIPT_FORMAT_V1, Some(_)) => {
                return Err(VerifyError::Format(format!(
                    "a receipt of format {RECEIPT_FORMAT_V1:?} has no batch"
                )))
            }
            (RECEIPT_FORMAT, None) => {
                return Err(VerifyError::Format(format!(
                    "a receipt of format {RECEIPT_FORMAT:?} must name its batch"
                )))
            }
            (other, _) => {
                return Err(VerifyError::Format(format!(
                    "unknown receipt format {other:?}"
                )))
            }
        }
        parse_hash(&self.event_hash, "the receipt's event_hash")?;
        chrono::DateTime::parse_from_rfc3339(&self.registered_at).map_err(|_| {
            VerifyError::Format("the receipt's registered_at is not an RFC 3339 time".into())
        })?;
        if self.authority_seq == 0 {
            return Err(VerifyError::Format(
                "the receipt's authority_seq starts at 1".into(),
            ));
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a receipt serializes")
    }
}

/// The levels of a batch's RFC 6962 tree, from its leaf hashes (`levels[0]`) up to its root
/// (the last level, one node). Built bottom-up: each level pairs the nodes of the one below,
/// and a last node without a partner is carried up unchanged, which gives the RFC's `MTH` for
/// any number of leaves (the tree is the same left-balanced one).
fn batch_levels(leaves: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut levels = vec![leaves];
    while levels.last().expect("at least the leaves").len() > 1 {
        let below = levels.last().expect("at least the leaves");
        let level = below
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => node_hash(left, right),
                [alone] => *alone,
                _ => unreachable!("chunks of two"),
            })
            .collect();
        levels.push(level);
    }
    levels
}

/// RFC 6962 `PATH(index, D[size])` from the levels, leaf upwards: at each level the node's
/// partner, where it has one.
fn batch_path(levels: &[Vec<Hash>], mut index: usize) -> Vec<Hash> {
    let mut path = Vec::new();
    for level in &levels[..levels.len() - 1] {
        if let Some(partner) = level.get(index ^ 1) {
            path.push(*partner);
        }
        index /= 2;
    }
    path
}

/// What a batch's signature covers: the framed `ochered-receipt-batch-v2`, the batch's size
/// (decimal ASCII) and its root (lower-case hex).
fn batch_signed_bytes(size: u64, root: &str) -> Vec<u8> {
    framed(&[RECEIPT_BATCH_FORMAT, &size.to_string(), root])
}

/// The proof that an event is in the tree a signed head covers, as served by
/// `GET …/applications/{n}/proof`.
///
/// ```json
/// {
///   "format": "ochered-inclusion-proof-v1",
///   "authority": "demo",
///   "leaf_index": 41,
///   "event_hash": "9f…",
///   "tree_head": { "format": "ochered-tree-head-v1", … },
///   "audit_path": ["a0…", "77…"]
/// }
/// ```
///
/// `audit_path` is RFC 6962 `PATH(leaf_index, D[tree_size])`, each node as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofFile {
    pub format: String,
    pub authority: String,
    pub leaf_index: u64,
    pub event_hash: String,
    pub tree_head: SignedTreeHead,
    pub audit_path: Vec<String>,
}

impl InclusionProofFile {
    /// The proof that the event at `authority_seq` (whose hash is `event_hash`) is in the tree
    /// `head` signs; `None` when the tree does not reach the head or the head does not reach
    /// the event.
    pub fn build(
        tree: &LogTree,
        head: &SignedTreeHead,
        authority_seq: u64,
        event_hash: &Hash,
    ) -> Option<Self> {
        let leaf_index = authority_seq.checked_sub(1)?;
        let path = tree.inclusion_path(leaf_index, head.tree_size)?;
        Some(InclusionProofFile {
            format: INCLUSION_PROOF_FORMAT.to_string(),
            authority: head.authority.clone(),
            leaf_index,
            event_hash: hash_hex(event_hash),
            tree_head: head.clone(),
            audit_path: path.iter().map(hash_hex).collect(),
        })
    }

    /// Parses a proof's JSON text (nothing is checked but the shape and the format).
    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        parse_document(
            text,
            "inclusion proof",
            INCLUSION_PROOF_FORMAT,
            |p: &Self| &p.format,
        )
    }

    /// Checks the head's signature and that the audit path leads from the event's hash at
    /// `leaf_index` to the head's root.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        self.tree_head.verify(key)?;
        if self.authority != self.tree_head.authority {
            return Err(VerifyError::Mismatch(format!(
                "the proof is for authority {:?} but its head for {:?}",
                self.authority, self.tree_head.authority
            )));
        }
        let event_hash = parse_hash(&self.event_hash, "the proof's event_hash")?;
        let path = parse_path(&self.audit_path, "each audit_path node")?;
        let root = self.tree_head.root()?;
        if !included(
            &event_hash,
            self.leaf_index,
            self.tree_head.tree_size,
            &root,
            &path,
        ) {
            return Err(VerifyError::NotIncluded {
                event_hash: self.event_hash.clone(),
                leaf_index: self.leaf_index,
                tree_size: self.tree_head.tree_size,
            });
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a proof serializes")
    }
}

/// Parses a signed document's JSON and checks its `format` field.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
    expected: &str,
    format: impl Fn(&T) -> &String,
) -> Result<T, VerifyError> {
    let document: T = serde_json::from_str(text)
        .map_err(|e| VerifyError::Format(format!("not a {what}: {e}")))?;
    if format(&document) != expected {
        return Err(VerifyError::Format(format!(
            "unknown {what} format {:?} (expected {expected:?})",
            format(&document)
        )));
    }
    Ok(document)
}

/// What [`verify_receipt`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptVerified {
    pub receipt: Receipt,
    /// The head whose tree holds the event, when a proof was given.
    pub included_in: Option<SignedTreeHead>,
}

/// Checks a receipt and, if given, its inclusion proof, offline: the receipt's signature; the
/// proof's head signature; that the proof speaks of the receipt's authority, position and
/// event hash; and that the audit path leads to the signed root.
pub fn verify_receipt(
    receipt: &Receipt,
    proof: Option<&InclusionProofFile>,
    key: &VerifyingKey,
) -> Result<ReceiptVerified, VerifyError> {
    receipt.verify(key)?;
    let Some(proof) = proof else {
        return Ok(ReceiptVerified {
            receipt: receipt.clone(),
            included_in: None,
        });
    };
    proof.verify(key)?;
    if proof.authority != receipt.authority {
        return Err(VerifyError::Mismatch(format!(
            "the receipt is for authority {:?} but the proof for {:?}",
            receipt.authority, proof.authority
        )));
    }
    if proof.leaf_index + 1 != receipt.authority_seq {
        return Err(VerifyError::Mismatch(format!(
            "the receipt's event is authority_seq {} (leaf {}) but the proof is for leaf {}",
            receipt.authority_seq,
            receipt.authority_seq - 1,
            proof.leaf_index
        )));
    }
    if proof.event_hash != receipt.event_hash {
        return Err(VerifyError::Mismatch(format!(
            "the receipt's event hash is {} but the proof's is {}",
            receipt.event_hash, proof.event_hash
        )));
    }
    Ok(ReceiptVerified {
        receipt: receipt.clone(),
        included_in: Some(proof.tree_head.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_key;
    use chrono::Utc;

    fn fields(seq: u64, hash: Hash) -> ReceiptFields {
        ReceiptFields {
            authority: "demo".into(),
            service: "kindergarten".into(),
            number: 17,
            registered_at: "2025-04-01T00:00:00.000123+05:00".into(),
            time_zone: "Asia/Yekaterinburg".into(),
            authority_seq: seq,
            event_hash: hash,
        }
    }

    #[test]
    fn a_receipt_with_its_proof_verifies_and_every_changed_field_fails() {
        let key = generate_key();
        let public = key.verifying_key();
        let mut tree = LogTree::new();
        let events: Vec<Hash> = (0..10u8).map(|i| [i; 32]).collect();
        for e in &events {
            tree.push(e);
        }
        let head = SignedTreeHead::sign(&key, "demo", 9, &tree.root_at(9).unwrap(), Utc::now());
        let receipt = Receipt::sign(&key, fields(4, events[3]));
        assert_eq!(
            Receipt::sign(&key, fields(4, events[3])),
            receipt,
            "deterministic"
        );
        let proof = InclusionProofFile::build(&tree, &head, 4, &events[3]).unwrap();
        let receipt = Receipt::parse(&receipt.to_json()).unwrap();
        let proof = InclusionProofFile::parse(&proof.to_json()).unwrap();
        let verified = verify_receipt(&receipt, Some(&proof), &public).unwrap();
        assert_eq!(verified.included_in.unwrap().tree_size, 9);
        assert!(verify_receipt(&receipt, None, &public)
            .unwrap()
            .included_in
            .is_none());
        // The event beyond the head has no proof yet.
        assert!(InclusionProofFile::build(&tree, &head, 10, &events[9]).is_none());

        let edits: Vec<fn(&mut Receipt)> = vec![
            |r| r.authority = "other".into(),
            |r| r.service = "school".into(),
            |r| r.number += 1,
            |r| r.registered_at = "2025-04-01T00:00:01.000123+05:00".into(),
            |r| r.time_zone = "Europe/Moscow".into(),
            |r| r.authority_seq += 1,
            |r| r.event_hash = hash_hex(&[1; 32]),
        ];
        for edit in edits {
            let mut changed = receipt.clone();
            edit(&mut changed);
            assert_eq!(
                verify_receipt(&changed, Some(&proof), &public).unwrap_err(),
                VerifyError::BadSignature("receipt")
            );
        }
        let mut wrong = proof.clone();
        wrong.audit_path[0] = hash_hex(&[0xee; 32]);
        assert!(matches!(
            verify_receipt(&receipt, Some(&wrong), &public),
            Err(VerifyError::NotIncluded { .. })
        ));
        let mut wrong = proof.clone();
        wrong.tree_head.tree_size = 10;
        assert_eq!(
            verify_receipt(&receipt, Some(&wrong), &public).unwrap_err(),
            VerifyError::BadSignature("tree head")
        );
        // A proof of another event, correct in itself, does not vouch for this receipt.
        let other = InclusionProofFile::build(&tree, &head, 5, &events[4]).unwrap();
        assert!(matches!(
            verify_receipt(&receipt, Some(&other), &public),
            Err(VerifyError::Mismatch(_))
        ));
        // A receipt signed with another key fails.
        assert!(verify_receipt(&receipt, Some(&proof), &generate_key().verifying_key()).is_err());
        // So does one whose format is changed to the earlier one.
        let mut changed = receipt.clone();
        changed.format = RECEIPT_FORMAT_V1.into();
        assert!(matches!(
            verify_receipt(&changed, Some(&proof), &public),
            Err(VerifyError::Format(_))
        ));
    }

    #[test]
    fn receipts_signed_together_each_verify_and_any_change_to_their_batch_fails() {
        let key = generate_key();
        let public = key.verifying_key();
        for n in [1, 2, 3, 5, 8, RECEIPT_BATCH_MAX as u64] {
            let batch: Vec<ReceiptFields> =
                (1..=n).map(|seq| fields(seq, [seq as u8; 32])).collect();
            let receipts = Receipt::sign_batch(&key, batch);
            assert_eq!(receipts.len() as u64, n);
            let signature = &receipts[0].signature;
            for (i, receipt) in receipts.iter().enumerate() {
                assert_eq!(&receipt.signature, signature, "one signature for the batch");
                let batch = receipt.batch.as_ref().unwrap();
                assert_eq!((batch.size, batch.index), (n, i as u64));
                assert!(batch.path.len() <= 5);
                let parsed = Receipt::parse(&receipt.to_json()).unwrap();
                assert_eq!(&parsed, receipt);
                parsed.verify(&public).unwrap();
            }
            let base = &receipts[(n / 2) as usize];
            let edits: Vec<fn(&mut ReceiptBatch)> = vec![
                |b| b.index = (b.index + 1) % b.size.max(2),
                |b| b.size += 1,
                |b| b.root = hash_hex(&[0xaa; 32]),
                |b| b.path.push(hash_hex(&[0xbb; 32])),
                |b| {
                    if b.path.pop().is_none() {
                        b.path.push(hash_hex(&[0xcc; 32]));
                    }
                },
            ];
            for edit in edits {
                let mut changed = base.clone();
                edit(changed.batch.as_mut().unwrap());
                assert!(changed.verify(&public).is_err(), "{n}: {changed:?}");
            }
            // A receipt's fields moved to another receipt's place in the batch fail.
            if n > 1 {
                let mut swapped = receipts[0].clone();
                swapped.batch = receipts[1].batch.clone();
                assert_eq!(
                    swapped.verify(&public),
                    Err(VerifyError::BadSignature("receipt"))
                );
            }
            let mut bare = base.clone();
            bare.batch = None;
            assert!(matches!(bare.verify(&public), Err(VerifyError::Format(_))));
        }
    }

    /// The batch's tree is the log's tree: the same root and paths as `LogTree` for every size.
    #[test]
    fn a_batch_tree_has_the_roots_and_paths_of_the_log_tree() {
        for n in 1..=70u8 {
            let digests: Vec<Hash> = (0..n).map(|i| [i; 32]).collect();
            let mut tree = LogTree::new();
            for d in &digests {
                tree.push(d);
            }
            let levels = batch_levels(digests.iter().map(leaf_hash).collect());
            assert_eq!(levels.last().unwrap(), &vec![tree.root()], "{n}");
            for i in 0..n as usize {
                assert_eq!(
                    Some(batch_path(&levels, i)),
                    tree.inclusion_path(i as u64, n as u64),
                    "{n} {i}"
                );
            }
        }
    }

    #[test]
    fn receipts_of_the_earlier_format_still_verify() {
        let key = generate_key();
        let public = key.verifying_key();
        let receipt = Receipt::sign_v1(&key, fields(4, [4; 32]));
        assert_eq!(receipt.format, RECEIPT_FORMAT_V1);
        assert!(!receipt.to_json().contains("batch"));
        let parsed = Receipt::parse(&receipt.to_json()).unwrap();
        parsed.verify(&public).unwrap();
        let mut changed = parsed.clone();
        changed.number += 1;
        assert_eq!(
            changed.verify(&public),
            Err(VerifyError::BadSignature("receipt"))
        );
        let mut with_batch = parsed.clone();
        with_batch.batch = Receipt::sign(&key, fields(4, [4; 32])).batch;
        assert!(matches!(
            with_batch.verify(&public),
            Err(VerifyError::Format(_))
        ));
        let mut unknown = parsed;
        unknown.format = "ochered-receipt-v9".into();
        assert!(Receipt::parse(&unknown.to_json()).is_err());
    }
}

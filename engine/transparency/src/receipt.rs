//! Receipts: the server's signed word that an application was logged at a place and time,
//! and the inclusion proof that ties it to a signed tree head.

use serde::{Deserialize, Serialize};

use crate::head::{included, parse_path};
use crate::{
    check_signature, framed, hash_hex, parse_hash, sign_hex, Hash, LogTree, SignedTreeHead,
    SigningKey, VerifyError, VerifyingKey,
};

/// The value of [`Receipt::format`], and the first signed field.
pub const RECEIPT_FORMAT: &str = "ochered-receipt-v1";

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
///   "format": "ochered-receipt-v1",
///   "authority": "demo",
///   "service": "kindergarten",
///   "number": 17,
///   "registered_at": "2025-04-01T00:00:00.000123+05:00",
///   "time_zone": "Asia/Yekaterinburg",
///   "authority_seq": 42,
///   "event_hash": "9f…",
///   "public_key": "3b…",
///   "signature": "d1…"
/// }
/// ```
///
/// The signature covers [`Receipt::signed_bytes`]: the framed fields `format`, `authority`,
/// `service`, `number` (decimal ASCII), `registered_at`, `time_zone`, `authority_seq`
/// (decimal ASCII), `event_hash`.
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
    pub public_key: String,
    pub signature: String,
}

impl Receipt {
    /// Signs the fields. Ed25519 signatures are deterministic, so the same fields always give
    /// the same receipt (a retried request gets the receipt it got the first time).
    pub fn sign(key: &SigningKey, fields: ReceiptFields) -> Self {
        let mut receipt = Receipt {
            format: RECEIPT_FORMAT.to_string(),
            authority: fields.authority,
            service: fields.service,
            number: fields.number,
            registered_at: fields.registered_at,
            time_zone: fields.time_zone,
            authority_seq: fields.authority_seq,
            event_hash: hash_hex(&fields.event_hash),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: String::new(),
        };
        receipt.signature = sign_hex(key, &receipt.signed_bytes());
        receipt
    }

    /// The exact bytes that are signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
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

    /// Parses a receipt's JSON text (the signature is not checked here).
    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        parse_document(text, "receipt", RECEIPT_FORMAT, |r: &Self| &r.format)
    }

    /// Checks the signature with the auditor's (or the parent's) copy of the public key, and
    /// that the fields are well formed.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        check_signature(key, &self.signed_bytes(), &self.signature, "receipt")?;
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
            |r| r.format = "ochered-receipt-v2".into(),
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
    }
}

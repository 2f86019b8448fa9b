//! Signed tree heads: the server's signed statement of an authority's tree size and root.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    check_signature, framed, hash_hex, parse_hash, sign_hex, Hash, SigningKey, VerifyError,
    VerifyingKey,
};

/// The value of [`SignedTreeHead::format`], and the first signed field.
pub const TREE_HEAD_FORMAT: &str = "ochered-tree-head-v1";

/// One authority's tree at one moment, signed by the server.
///
/// ```json
/// {
///   "format": "ochered-tree-head-v1",
///   "authority": "demo",
///   "tree_size": 40,
///   "root_hash": "5f…",
///   "signed_at": "2025-04-01T08:00:10.000123Z",
///   "public_key": "3b…",
///   "signature": "d1…"
/// }
/// ```
///
/// The signature covers [`SignedTreeHead::signed_bytes`]: the framed fields `format`,
/// `authority`, `tree_size` (decimal ASCII), `root_hash`, `signed_at`. `public_key` only says
/// which key signed; verification uses the key the auditor keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTreeHead {
    pub format: String,
    pub authority: String,
    /// The number of events the tree holds: events `authority_seq` 1..=tree_size.
    pub tree_size: u64,
    /// Lower-case hex of the RFC 6962 root of those events' hashes.
    pub root_hash: String,
    /// RFC 3339, UTC, six fraction digits and `Z`.
    pub signed_at: String,
    /// Lower-case hex of the signer's 32-byte public key.
    pub public_key: String,
    /// Lower-case hex of the 64-byte Ed25519 signature.
    pub signature: String,
}

impl SignedTreeHead {
    /// Signs the tree of `tree_size` events with root `root`.
    pub fn sign(
        key: &SigningKey,
        authority: &str,
        tree_size: u64,
        root: &Hash,
        signed_at: DateTime<Utc>,
    ) -> Self {
        let mut head = SignedTreeHead {
            format: TREE_HEAD_FORMAT.to_string(),
            authority: authority.to_string(),
            tree_size,
            root_hash: hash_hex(root),
            signed_at: crate::utc_text(signed_at),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: String::new(),
        };
        head.signature = sign_hex(key, &head.signed_bytes());
        head
    }

    /// The exact bytes that are signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        framed(&[
            &self.format,
            &self.authority,
            &self.tree_size.to_string(),
            &self.root_hash,
            &self.signed_at,
        ])
    }

    /// Parses a head's JSON text (the signature is not checked here).
    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        let head: Self = crate::receipt::parse_document(
            text,
            "signed tree head",
            TREE_HEAD_FORMAT,
            |h: &Self| &h.format,
        )?;
        head.check_format()?;
        Ok(head)
    }

    fn check_format(&self) -> Result<(), VerifyError> {
        if self.format != TREE_HEAD_FORMAT {
            return Err(VerifyError::Format(format!(
                "unknown tree head format {:?} (expected {TREE_HEAD_FORMAT:?})",
                self.format
            )));
        }
        parse_hash(&self.root_hash, "the head's root_hash")?;
        Ok(())
    }

    /// The root as bytes.
    pub fn root(&self) -> Result<Hash, VerifyError> {
        parse_hash(&self.root_hash, "the head's root_hash")
    }

    /// Checks the format and the signature with the auditor's public key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        self.check_format()?;
        check_signature(key, &self.signed_bytes(), &self.signature, "tree head")?;
        if self.tree_size == 0 {
            return Err(VerifyError::Format(
                "a signed tree head has at least one event".into(),
            ));
        }
        Ok(())
    }
}

/// A consistency proof from an earlier tree size to a head's size: RFC 6962
/// `PROOF(from_size, D[tree_size])`, each node as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyJson {
    pub from_size: u64,
    pub path: Vec<String>,
}

/// A head as published and mirrored: one line of a heads file (JSON Lines).
///
/// `consistency` proves that the tree of the previous published head (of `from_size` events)
/// is a prefix of this one; it is absent on an authority's first head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedHead {
    pub tree_head: SignedTreeHead,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencyJson>,
}

impl PublishedHead {
    /// Signs the head of the first `size` events of `tree` and, with `from_size`, proves it
    /// consistent with the tree of the first `from_size`. `None` if a size is out of range.
    pub fn of_tree(
        key: &SigningKey,
        authority: &str,
        tree: &crate::LogTree,
        size: u64,
        from_size: Option<u64>,
        signed_at: DateTime<Utc>,
    ) -> Option<Self> {
        let root = tree.root_at(size)?;
        let consistency = match from_size {
            Some(from_size) => Some(ConsistencyJson {
                from_size,
                path: tree
                    .consistency_path(from_size, size)?
                    .iter()
                    .map(hash_hex)
                    .collect(),
            }),
            None => None,
        };
        Some(PublishedHead {
            tree_head: SignedTreeHead::sign(key, authority, size, &root, signed_at),
            consistency,
        })
    }
}

/// Verifies that the tree `(old_size, old_root)` is a prefix of `(size, root)` with an RFC
/// 6962 consistency proof (with `ct-merkle`). Equal sizes need equal roots and an empty path.
pub(crate) fn consistent(
    old_size: u64,
    old_root: &Hash,
    size: u64,
    root: &Hash,
    path: &[Hash],
) -> bool {
    use ct_merkle::{ConsistencyProof, RootHash};
    use sha2::Sha256;
    if old_size == 0 || old_size > size {
        return false;
    }
    if old_size == size {
        return path.is_empty() && old_root == root;
    }
    let Ok(proof) = ConsistencyProof::<Sha256>::try_from_bytes(path.concat()) else {
        return false;
    };
    let new = RootHash::<Sha256>::new((*root).into(), size);
    let old = RootHash::<Sha256>::new((*old_root).into(), old_size);
    new.verify_consistency(&old, &proof).is_ok()
}

/// Verifies that `event_hash` is leaf `index` of the tree `(size, root)` (with `ct-merkle`).
pub(crate) fn included(
    event_hash: &Hash,
    index: u64,
    size: u64,
    root: &Hash,
    path: &[Hash],
) -> bool {
    use ct_merkle::{InclusionProof, RootHash};
    use sha2::Sha256;
    let Ok(proof) = InclusionProof::<Sha256>::try_from_bytes(path.concat()) else {
        return false;
    };
    RootHash::<Sha256>::new((*root).into(), size)
        .verify_inclusion(event_hash, index, &proof)
        .is_ok()
}

/// Parses a list of hex nodes.
pub(crate) fn parse_path(path: &[String], what: &str) -> Result<Vec<Hash>, VerifyError> {
    path.iter().map(|node| parse_hash(node, what)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate_key, LogTree};

    #[test]
    fn a_signed_head_verifies_and_any_edit_breaks_it() {
        let key = generate_key();
        let head = SignedTreeHead::sign(&key, "demo", 3, &[7; 32], Utc::now());
        let public = key.verifying_key();
        let parsed = SignedTreeHead::parse(&serde_json::to_string(&head).unwrap()).unwrap();
        assert_eq!(parsed, head);
        parsed.verify(&public).unwrap();
        let mut edited = head.clone();
        edited.tree_size = 4;
        assert_eq!(
            edited.verify(&public),
            Err(VerifyError::BadSignature("tree head"))
        );
        let mut edited = head.clone();
        edited.authority = "other".into();
        assert!(edited.verify(&public).is_err());
        let mut edited = head.clone();
        edited.root_hash = hash_hex(&[8; 32]);
        assert!(edited.verify(&public).is_err());
        let mut edited = head.clone();
        edited.signed_at = edited.signed_at.replace('2', "3");
        assert!(edited.verify(&public).is_err());
        assert!(head.verify(&generate_key().verifying_key()).is_err());
    }

    #[test]
    fn proofs_from_the_tree_verify_and_wrong_ones_do_not() {
        let mut tree = LogTree::new();
        let events: Vec<Hash> = (0..13u8).map(|i| [i; 32]).collect();
        for e in &events {
            tree.push(e);
        }
        for size in 1..=13 {
            let root = tree.root_at(size).unwrap();
            for index in 0..size {
                let path = tree.inclusion_path(index, size).unwrap();
                assert!(included(&events[index as usize], index, size, &root, &path));
                assert!(!included(&[99; 32], index, size, &root, &path));
            }
            for old in 1..=size {
                let path = tree.consistency_path(old, size).unwrap();
                let old_root = tree.root_at(old).unwrap();
                assert!(
                    consistent(old, &old_root, size, &root, &path),
                    "{old}->{size}"
                );
                assert!(
                    !consistent(old, &[9; 32], size, &root, &path),
                    "{old}->{size}"
                );
            }
        }
    }
}

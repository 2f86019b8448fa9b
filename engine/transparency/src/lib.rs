//! Proof in the parent's hands: a Merkle tree per authority over the event hashes (RFC 6962),
//! signed tree heads, signed receipts, and the offline checks of all three.
//!
//! # Architecture invariants
//!
//! - This crate depends on no other crate of ours and does no I/O: it sees an event only as
//!   its 32-byte hash and its place in the authority's chain (`authority_seq`), so the tree
//!   does not change when the log's storage format does. The writer feeds it, the store keeps
//!   the signed heads, the API publishes them; auditors run [`verify_receipt`] and
//!   [`audit_heads`] with nothing but files and a public key.
//! - Every signed format is written out byte for byte in `docs/TRANSPARENCY.md`, and an
//!   independent verifier in Python (`verifier/`) checks the same test vectors
//!   (`verifier/vectors.json`, kept equal to [`vectors::generate`] by a test).
//! - What a signature covers is the [`framed`] concatenation of the file's own text fields,
//!   so a verifier never has to re-serialise JSON.

mod audit;
mod head;
mod keys;
mod receipt;
mod tree;
pub mod vectors;

pub use audit::{audit_heads, HeadProblem, HeadsAudit, HeadsFile};
pub use head::{ConsistencyJson, PublishedHead, SignedTreeHead, TREE_HEAD_FORMAT};
pub use keys::{
    generate_key, parse_public_key, parse_secret_key, public_key_text, secret_key_text,
    write_key_pair,
};
pub use receipt::{
    verify_receipt, InclusionProofFile, Receipt, ReceiptBatch, ReceiptFields, ReceiptVerified,
    INCLUSION_PROOF_FORMAT, RECEIPT_BATCH_FORMAT, RECEIPT_BATCH_MAX, RECEIPT_FORMAT,
    RECEIPT_FORMAT_V1,
};
pub use tree::{empty_root, leaf_hash, node_hash, Hash, LogTree};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// Why a receipt, a proof, a head or a key cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Unreadable: not JSON of the expected shape, an unknown format, a malformed hex field.
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Key(String),
    /// The signature over the named document does not hold with the given public key.
    #[error("the {0}'s signature does not match: it was changed or signed with another key")]
    BadSignature(&'static str),
    /// The documents are each well signed but do not speak of the same thing.
    #[error("{0}")]
    Mismatch(String),
    /// The audit path does not lead from the event's hash to the signed root.
    #[error("the inclusion proof fails: the event with hash {event_hash} is not at leaf {leaf_index} of the tree of size {tree_size} whose root the head signs")]
    NotIncluded {
        event_hash: String,
        leaf_index: u64,
        tree_size: u64,
    },
}

/// The bytes that are signed: each field as its length in bytes (an unsigned 64-bit integer,
/// little-endian, 8 bytes) followed by its UTF-8 bytes, the same framing as the event hash and
/// the chain checkpoints.
pub fn framed(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| 8 + f.len()).sum());
    for field in fields {
        out.extend_from_slice(&(field.len() as u64).to_le_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// Lower-case hex of a hash.
pub fn hash_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// Parses 64 lower-case hex characters; `what` names the field in the error.
pub fn parse_hash(text: &str, what: &str) -> Result<Hash, VerifyError> {
    parse_lower_hex::<32>(text)
        .ok_or_else(|| VerifyError::Format(format!("{what} must be 64 lower-case hex characters")))
}

fn parse_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex::decode(text).ok()?.try_into().ok()
}

fn sign_hex(key: &SigningKey, bytes: &[u8]) -> String {
    use ed25519_dalek::Signer;
    hex::encode(key.sign(bytes).to_bytes())
}

fn check_signature(
    key: &VerifyingKey,
    bytes: &[u8],
    signature: &str,
    what: &'static str,
) -> Result<(), VerifyError> {
    use ed25519_dalek::Verifier;
    let signature = parse_lower_hex::<64>(signature).ok_or(VerifyError::BadSignature(what))?;
    key.verify(bytes, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| VerifyError::BadSignature(what))
}

/// RFC 3339, UTC, six fraction digits and `Z`, as every ochered timestamp in UTC.
pub fn utc_text(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_length_then_bytes() {
        assert_eq!(
            framed(&["ab", ""]),
            [&[2, 0, 0, 0, 0, 0, 0, 0][..], b"ab", &[0; 8]].concat()
        );
    }

    #[test]
    fn hashes_are_strict_lower_hex() {
        let hash = [0xab; 32];
        assert_eq!(parse_hash(&hash_hex(&hash), "h"), Ok(hash));
        assert!(parse_hash(&"AB".repeat(32), "h").is_err());
        assert!(parse_hash(&"ab".repeat(31), "h").is_err());
        assert!(parse_hash(&"zz".repeat(32), "h").is_err());
    }
}

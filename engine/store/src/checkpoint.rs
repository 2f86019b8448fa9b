//! Signed checkpoints of the chain heads: evidence against truncation and rewriting.
//!
//! [`EventStore::verify`] recomputes each chain from the log alone, so it cannot see events
//! removed from the end of a chain, nor a chain rewritten from some event on and hashed
//! again. A checkpoint closes that gap: it records, for every authority, the sequence and
//! hash of the chain's head at some moment, signed with an Ed25519 key. Auditors keep
//! checkpoints (and the public key) outside the database; later,
//! [`Checkpoint::check_against`] confirms that each checkpointed event is still in the log
//! with exactly that hash. Since every hash covers the previous one, that one comparison
//! vouches for the whole prefix of the chain up to the checkpoint.
//!
//! # Files
//!
//! - Secret key: the 32-byte Ed25519 seed as 64 lower-case hex characters and a newline
//!   (written with mode 0600).
//! - Public key: the 32-byte Ed25519 public key as 64 lower-case hex characters and a newline.
//! - Checkpoint: JSON, see [`Checkpoint`]; the signature covers [`signed_bytes`].

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{EventStore, StoreError, VerifyOutcome};

/// The value of [`Checkpoint::format`], and the first signed field.
pub const CHECKPOINT_FORMAT: &str = "ochered-checkpoint-v1";

/// One authority's chain head as checkpointed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointHead {
    pub authority: String,
    /// The head's `authority_seq` (at least 1: only authorities with events are listed).
    pub authority_seq: i64,
    /// The head event's hash, lower-case hex.
    pub hash: String,
}

/// A signed record of every authority's chain head.
///
/// ```json
/// {
///   "format": "ochered-checkpoint-v1",
///   "created_at": "2025-03-01T08:00:00.123456Z",
///   "heads": [{"authority": "city", "authority_seq": 40, "hash": "9f…"}],
///   "public_key": "3b…",
///   "signature": "d1…"
/// }
/// ```
///
/// `public_key` only says which key signed; verification uses the public key the auditor
/// keeps, never this field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format: String,
    /// RFC 3339, UTC, six fraction digits and `Z`.
    pub created_at: String,
    /// Sorted by authority, each authority once.
    pub heads: Vec<CheckpointHead>,
    /// Lower-case hex of the signer's 32-byte public key.
    pub public_key: String,
    /// Lower-case hex of the 64-byte Ed25519 signature over [`signed_bytes`].
    pub signature: String,
}

/// Why a checkpoint cannot be made or trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Format(String),
    #[error("the signature does not match: the checkpoint was changed or signed with another key")]
    BadSignature,
    /// The chain is already broken: a checkpoint would vouch for a tampered log.
    #[error("authority {authority}: chain broken at authority_seq={authority_seq}: {reason}")]
    Broken {
        authority: String,
        authority_seq: i64,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The exact bytes that are signed.
///
/// The concatenation of these fields, each written as its length in bytes (an unsigned
/// 64-bit integer, little-endian, 8 bytes) followed by its UTF-8 bytes, the same framing as
/// [`crate::event_hash`]:
///
/// | # | field |
/// |---|---|
/// | 1 | `format`: `ochered-checkpoint-v1` |
/// | 2 | `created_at` as it appears in the file |
/// | 3 | the number of heads, decimal ASCII |
/// | then, per head, in the file's order (sorted by authority): | |
/// | 4 | `authority` |
/// | 5 | `authority_seq`, decimal ASCII |
/// | 6 | `hash`, lower-case hex |
///
/// For example `format` contributes `15 00 00 00 00 00 00 00` and then the 21 bytes of
/// `ochered-checkpoint-v1`.
pub fn signed_bytes(format: &str, created_at: &str, heads: &[CheckpointHead]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    field(format.as_bytes());
    field(created_at.as_bytes());
    field(heads.len().to_string().as_bytes());
    for head in heads {
        field(head.authority.as_bytes());
        field(head.authority_seq.to_string().as_bytes());
        field(head.hash.as_bytes());
    }
    out
}

/// A new random signing key from the operating system's generator.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// The text of a secret key file.
pub fn secret_key_text(key: &SigningKey) -> String {
    format!("{}\n", hex::encode(key.to_bytes()))
}

/// The text of a public key file.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("{}\n", hex::encode(key.to_bytes()))
}

fn key_bytes(text: &str, what: &str) -> Result<[u8; 32], CheckpointError> {
    let bytes = hex::decode(text.trim())
        .map_err(|_| CheckpointError::Key(format!("the {what} is not hex")))?;
    bytes.try_into().map_err(|_| {
        CheckpointError::Key(format!("the {what} must be 32 bytes (64 hex characters)"))
    })
}

/// Parses a secret key file's text.
pub fn parse_secret_key(text: &str) -> Result<SigningKey, CheckpointError> {
    Ok(SigningKey::from_bytes(&key_bytes(text, "secret key")?))
}

/// Parses a public key file's text.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, CheckpointError> {
    VerifyingKey::from_bytes(&key_bytes(text, "public key")?)
        .map_err(|_| CheckpointError::Key("the public key is not a valid Ed25519 point".into()))
}

/// Writes a new key pair; refuses to overwrite an existing file. The secret key file is
/// readable by its owner only.
pub fn write_key_pair(secret: &Path, public: &Path) -> Result<VerifyingKey, std::io::Error> {
    use std::io::Write;
    let key = generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(secret)?;
    file.write_all(secret_key_text(&key).as_bytes())?;
    file.sync_all()?;
    let verifying = key.verifying_key();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(public)?;
    file.write_all(public_key_text(&verifying).as_bytes())?;
    file.sync_all()?;
    Ok(verifying)
}

/// What [`Checkpoint::check_against`] found wrong for one authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMismatch {
    pub authority: String,
    /// The checkpointed position that is missing or different.
    pub authority_seq: i64,
    pub reason: String,
}

impl Checkpoint {
    /// Signs `heads` (sorted here) as of `created_at`.
    pub fn sign(
        key: &SigningKey,
        created_at: DateTime<Utc>,
        mut heads: Vec<CheckpointHead>,
    ) -> Self {
        heads.sort_by(|a, b| a.authority.cmp(&b.authority));
        let created_at = created_at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let signature = key.sign(&signed_bytes(CHECKPOINT_FORMAT, &created_at, &heads));
        Checkpoint {
            format: CHECKPOINT_FORMAT.to_string(),
            created_at,
            heads,
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(signature.to_bytes()),
        }
    }

    /// Verifies every authority's chain in `store` and signs the heads. Refuses (with
    /// [`CheckpointError::Broken`]) when a chain is already broken.
    pub async fn create(
        store: &dyn EventStore,
        key: &SigningKey,
        created_at: DateTime<Utc>,
    ) -> Result<Self, CheckpointError> {
        let mut heads = Vec::new();
        for authority in store.authorities().await? {
            match store.verify(&authority).await? {
                VerifyOutcome::Ok { head, .. } => heads.push(CheckpointHead {
                    authority,
                    authority_seq: head.authority_seq,
                    hash: head.hash,
                }),
                VerifyOutcome::Broken {
                    authority_seq,
                    reason,
                    ..
                } => {
                    return Err(CheckpointError::Broken {
                        authority,
                        authority_seq,
                        reason,
                    })
                }
            }
        }
        Ok(Self::sign(key, created_at, heads))
    }

    /// Parses a checkpoint file's text (the signature is not checked here).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let checkpoint: Checkpoint = serde_json::from_str(text)
            .map_err(|e| CheckpointError::Format(format!("not a checkpoint: {e}")))?;
        if checkpoint.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Format(format!(
                "unknown checkpoint format {:?} (expected {CHECKPOINT_FORMAT:?})",
                checkpoint.format
            )));
        }
        Ok(checkpoint)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a checkpoint serializes")
    }

    /// Checks the signature with the auditor's public key, and that the heads are well
    /// formed (sorted, unique, positive sequences).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), CheckpointError> {
        let signature: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::BadSignature)?;
        key.verify(
            &signed_bytes(&self.format, &self.created_at, &self.heads),
            &Signature::from_bytes(&signature),
        )
        .map_err(|_| CheckpointError::BadSignature)?;
        for pair in self.heads.windows(2) {
            if pair[0].authority >= pair[1].authority {
                return Err(CheckpointError::Format(format!(
                    "heads are not sorted by authority or repeat one ({}, {})",
                    pair[0].authority, pair[1].authority
                )));
            }
        }
        if let Some(head) = self.heads.iter().find(|h| h.authority_seq < 1) {
            return Err(CheckpointError::Format(format!(
                "authority {}: authority_seq must be at least 1",
                head.authority
            )));
        }
        Ok(())
    }

    /// For each checkpointed head (or only `only`'s): the log must still hold an event at
    /// that `authority_seq` whose stored hash is exactly the checkpointed one. Returns what
    /// does not match; empty when everything does. Combine with [`EventStore::verify`],
    /// which checks that the stored hashes are those of the stored events.
    pub async fn check_against(
        &self,
        store: &dyn EventStore,
        only: Option<&str>,
    ) -> Result<Vec<CheckpointMismatch>, StoreError> {
        let mut found = Vec::new();
        for head in &self.heads {
            if only.is_some_and(|a| a != head.authority) {
                continue;
            }
            let mismatch = |reason: String| CheckpointMismatch {
                authority: head.authority.clone(),
                authority_seq: head.authority_seq,
                reason,
            };
            let event = store
                .read(&head.authority, head.authority_seq - 1, 1)
                .await?
                .into_iter()
                .next();
            match event {
                Some(e) if e.authority_seq == head.authority_seq => {
                    if e.hash_hex() != head.hash {
                        found.push(mismatch(format!(
                            "the event at authority_seq={} has hash {}, the checkpoint of {} says {}: events up to it were rewritten",
                            head.authority_seq, e.hash_hex(), self.created_at, head.hash
                        )));
                    }
                }
                _ => {
                    let log_head = store.head(&head.authority).await?;
                    found.push(mismatch(format!(
                        "the checkpoint of {} has authority_seq={} but the log has no event there (its head is authority_seq={}): events were removed",
                        self.created_at, head.authority_seq, log_head.authority_seq
                    )));
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads() -> Vec<CheckpointHead> {
        vec![
            CheckpointHead {
                authority: "b".into(),
                authority_seq: 2,
                hash: "22".repeat(32),
            },
            CheckpointHead {
                authority: "a".into(),
                authority_seq: 7,
                hash: "11".repeat(32),
            },
        ]
    }

    #[test]
    fn signed_bytes_follow_the_documented_layout() {
        let heads = vec![CheckpointHead {
            authority: "msk".into(),
            authority_seq: 12,
            hash: "ab".into(),
        }];
        let bytes = signed_bytes(CHECKPOINT_FORMAT, "T", &heads);
        let mut expected = Vec::new();
        for field in [CHECKPOINT_FORMAT, "T", "1", "msk", "12", "ab"] {
            expected.extend_from_slice(&(field.len() as u64).to_le_bytes());
            expected.extend_from_slice(field.as_bytes());
        }
        assert_eq!(bytes, expected);
        assert_eq!(&bytes[..8], &[21, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_any_edit_breaks_it() {
        let key = generate_key();
        let checkpoint = Checkpoint::sign(&key, Utc::now(), heads());
        assert_eq!(checkpoint.heads[0].authority, "a", "heads are sorted");
        let public = key.verifying_key();
        let parsed = Checkpoint::parse(&checkpoint.to_json()).unwrap();
        assert_eq!(parsed, checkpoint);
        parsed.verify_signature(&public).unwrap();

        let mut edited = checkpoint.clone();
        edited.heads[0].authority_seq = 6;
        assert_eq!(
            edited.verify_signature(&public),
            Err(CheckpointError::BadSignature)
        );
        let mut edited = checkpoint.clone();
        edited.created_at = edited.created_at.replace('2', "3");
        assert!(edited.verify_signature(&public).is_err());
        let mut dropped = checkpoint.clone();
        dropped.heads.pop();
        assert!(dropped.verify_signature(&public).is_err());

        let other = generate_key();
        assert_eq!(
            checkpoint.verify_signature(&other.verifying_key()),
            Err(CheckpointError::BadSignature)
        );
    }

    #[test]
    fn keys_round_trip_through_their_text_and_bad_text_is_refused() {
        let key = generate_key();
        let again = parse_secret_key(&secret_key_text(&key)).unwrap();
        assert_eq!(again.to_bytes(), key.to_bytes());
        let public = parse_public_key(&public_key_text(&key.verifying_key())).unwrap();
        assert_eq!(public, key.verifying_key());
        assert!(parse_secret_key("zz").is_err());
        assert!(parse_public_key(&"ab".repeat(31)).is_err());
        assert!(Checkpoint::parse("{\"format\":\"other\"}").is_err());
    }
}

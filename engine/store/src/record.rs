//! The v2 event record: what one log row holds, its exact bytes, and its chain hash.
//!
//! Auditors reimplement this module to check a log without our code; the layout is written
//! out here in full and must never change for records already written.
//!
//! # The record
//!
//! A record is one CBOR map in deterministic encoding (RFC 8949 §4.2.1: shortest heads,
//! definite lengths, keys sorted bytewise, see [`crate::cbor`]). Its keys are one-letter
//! text strings, in this (sorted) order; entries marked optional are absent when empty:
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `a` | text, optional | actor (who asked) |
//! | `c` | text, optional | channel |
//! | `e` | any CBOR item | the event payload: deterministic CBOR of the event's JSON form |
//! | `k` | bytes (32), optional | SHA-256 of the request's `Idempotency-Key` ([`key_digest`]) |
//! | `n` | unsigned, with `k` | the answer's reference: the request produced the `n` events ending with this one |
//! | `q` | bytes (32), with `k` | the request hash (tells a retry from another request with the same key) |
//! | `r` | text, optional | correlation id |
//! | `s` | text | stream id |
//! | `t` | integer | `recorded_at` in microseconds since 1970-01-01T00:00:00Z |
//! | `v` | integer | stream version |
//! | `x` | integer | schema version of the payload |
//! | `y` | text | event type |
//!
//! The idempotency entries sit on the last event a request produced, inside the record, so
//! the chain hash covers them: pointing a key at other events, or changing its request hash,
//! breaks the chain like any other edit.
//!
//! # The hash
//!
//! `hash = SHA-256(prev_hash ‖ le64(len(authority)) ‖ authority ‖ le64(authority_seq) ‖ record)`
//! where `prev_hash` is the 32-byte hash of the authority's previous event (32 zero bytes
//! before the first), `authority` the authority's name in UTF-8, `le64` an unsigned 64-bit
//! little-endian integer, and `record` the stored record bytes exactly. The hash covers the
//! stored bytes: nothing is re-serialised to check it.

use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};

use crate::cbor::{self, Decoder};
use crate::{Idempotency, Metadata, NewEvent, StoreError};

/// 32 bytes of a SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of every authority's first event.
pub const GENESIS: Hash = [0; 32];

/// The digest of an `Idempotency-Key` as recorded (key `k`): SHA-256 of its UTF-8 bytes.
pub fn key_digest(key: &str) -> Hash {
    Sha256::digest(key.as_bytes()).into()
}

/// `recorded_at` as recorded (key `t`): whole microseconds since the Unix epoch.
pub fn micros(recorded_at: DateTime<Utc>) -> i64 {
    recorded_at.timestamp_micros()
}

/// The record bytes of an event (see the module documentation). The payload must be one
/// well-formed CBOR item.
pub fn encode(event: &NewEvent) -> Result<Vec<u8>, StoreError> {
    encode_located(event).map(|(record, _)| record)
}

/// [`encode`], and where the payload lies in the record (start and end offsets), which the
/// encoder knows without reading the record back.
pub(crate) fn encode_located(event: &NewEvent) -> Result<(Vec<u8>, (u32, u32)), StoreError> {
    let mut payload = Decoder::new(&event.payload);
    let item = payload
        .item()
        .map_err(|e| StoreError::Other(format!("the payload is not one CBOR item: {e}")))?;
    if !payload.rest().is_empty() {
        return Err(StoreError::Other(
            "the payload holds bytes after its CBOR item".into(),
        ));
    }
    let m = &event.metadata;
    let idempotency = event.idempotency.as_ref();
    let entries = 6
        + usize::from(m.actor.is_some())
        + usize::from(m.channel.is_some())
        + usize::from(m.correlation_id.is_some())
        + 3 * usize::from(idempotency.is_some());
    let mut out = Vec::with_capacity(event.payload.len() + 160);
    cbor::write_map_head(&mut out, entries);
    if let Some(actor) = &m.actor {
        cbor::write_text(&mut out, "a");
        cbor::write_text(&mut out, actor);
    }
    if let Some(channel) = &m.channel {
        cbor::write_text(&mut out, "c");
        cbor::write_text(&mut out, channel);
    }
    cbor::write_text(&mut out, "e");
    let payload_start = out.len();
    out.extend_from_slice(item);
    let payload_range = (payload_start as u32, out.len() as u32);
    if let Some(i) = idempotency {
        cbor::write_text(&mut out, "k");
        cbor::write_bytes(&mut out, &i.key_digest);
        cbor::write_text(&mut out, "n");
        cbor::write_head(&mut out, 0, u64::from(i.answer_events));
        cbor::write_text(&mut out, "q");
        cbor::write_bytes(&mut out, &i.request_hash);
    }
    if let Some(correlation) = &m.correlation_id {
        cbor::write_text(&mut out, "r");
        cbor::write_text(&mut out, correlation);
    }
    cbor::write_text(&mut out, "s");
    cbor::write_text(&mut out, &event.stream_id);
    cbor::write_text(&mut out, "t");
    cbor::write_i64(&mut out, micros(event.recorded_at));
    cbor::write_text(&mut out, "v");
    cbor::write_i64(&mut out, event.stream_version);
    cbor::write_text(&mut out, "x");
    cbor::write_i64(&mut out, i64::from(event.schema_version));
    cbor::write_text(&mut out, "y");
    cbor::write_text(&mut out, &event.event_type);
    Ok((out, payload_range))
}

/// A record read back into its fields; the payload borrows from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub recorded_at: DateTime<Utc>,
    pub payload: &'a [u8],
    pub metadata: Metadata,
    pub idempotency: Option<Idempotency>,
}

fn hash_of(bytes: &[u8], what: &str) -> Result<Hash, String> {
    bytes
        .try_into()
        .map_err(|_| format!("{what} has {} bytes, not 32", bytes.len()))
}

/// Reads a record's fields. Refuses unknown or missing keys: a record is exactly what
/// [`encode`] writes.
pub fn decode(record: &[u8]) -> Result<Decoded<'_>, String> {
    let mut d = Decoder::new(record);
    let entries = d.map_len().map_err(|e| e.to_string())?;
    let mut stream_id = None;
    let mut stream_version = None;
    let mut event_type = None;
    let mut schema_version = None;
    let mut recorded_at = None;
    let mut payload = None;
    let mut metadata = Metadata::default();
    let (mut key, mut answer, mut request) = (None, None, None);
    for _ in 0..entries {
        let name = d.text().map_err(|e| e.to_string())?;
        let field = |e: cbor::Error| format!("record field {name}: {e}");
        match name {
            "a" => metadata.actor = Some(d.text().map_err(field)?.to_owned()),
            "c" => metadata.channel = Some(d.text().map_err(field)?.to_owned()),
            "e" => payload = Some(d.item().map_err(field)?),
            "k" => key = Some(hash_of(d.bytes().map_err(field)?, "k")?),
            "n" => {
                answer = Some(
                    u32::try_from(d.i64().map_err(field)?)
                        .map_err(|_| "record field n out of range".to_owned())?,
                )
            }
            "q" => request = Some(hash_of(d.bytes().map_err(field)?, "q")?),
            "r" => metadata.correlation_id = Some(d.text().map_err(field)?.to_owned()),
            "s" => stream_id = Some(d.text().map_err(field)?),
            "t" => {
                let t = d.i64().map_err(field)?;
                recorded_at = Some(
                    Utc.timestamp_micros(t)
                        .single()
                        .ok_or_else(|| format!("record field t {t} is not a time"))?,
                )
            }
            "v" => stream_version = Some(d.i64().map_err(field)?),
            "x" => {
                schema_version = Some(
                    i32::try_from(d.i64().map_err(field)?)
                        .map_err(|_| "record field x out of range".to_owned())?,
                )
            }
            "y" => event_type = Some(d.text().map_err(field)?),
            other => return Err(format!("unknown record field {other:?}")),
        }
    }
    if !d.rest().is_empty() {
        return Err("bytes after the record".into());
    }
    let idempotency = match (key, answer, request) {
        (None, None, None) => None,
        (Some(key_digest), Some(answer_events), Some(request_hash)) => Some(Idempotency {
            key_digest,
            request_hash,
            answer_events,
        }),
        _ => return Err("record fields k, n and q come together".into()),
    };
    let missing = |what: &str| format!("record field {what} missing");
    Ok(Decoded {
        stream_id: stream_id.ok_or_else(|| missing("s"))?,
        stream_version: stream_version.ok_or_else(|| missing("v"))?,
        event_type: event_type.ok_or_else(|| missing("y"))?,
        schema_version: schema_version.ok_or_else(|| missing("x"))?,
        recorded_at: recorded_at.ok_or_else(|| missing("t"))?,
        payload: payload.ok_or_else(|| missing("e"))?,
        metadata,
        idempotency,
    })
}

/// The chain hash of a record (see the module documentation).
pub fn hash(prev_hash: &Hash, authority: &str, authority_seq: i64, record: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update((authority.len() as u64).to_le_bytes());
    hasher.update(authority.as_bytes());
    hasher.update((authority_seq as u64).to_le_bytes());
    hasher.update(record);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewEvent {
        NewEvent {
            stream_id: "application-1".into(),
            stream_version: 1,
            event_type: "KindergartenApplicationSubmitted".into(),
            schema_version: 3,
            recorded_at: Utc.timestamp_opt(1_740_816_000, 123_456_000).unwrap(),
            payload: cbor::to_vec(&serde_json::json!({"type": "X", "n": 1})).unwrap(),
            metadata: Metadata {
                actor: Some("parent:1".into()),
                channel: None,
                correlation_id: Some("c".into()),
            },
            idempotency: Some(Idempotency {
                key_digest: key_digest("k1"),
                request_hash: [7; 32],
                answer_events: 1,
            }),
        }
    }

    #[test]
    fn a_record_is_deterministic_cbor_and_decodes_to_its_fields() {
        let event = sample();
        let record = encode(&event).unwrap();
        // The same bytes as encoding the equivalent JSON value with sorted keys.
        let json = serde_json::json!({
            "a": "parent:1",
            "e": {"type": "X", "n": 1},
            "r": "c",
            "s": "application-1",
            "t": 1_740_816_000_123_456i64,
            "v": 1,
            "x": 3,
            "y": "KindergartenApplicationSubmitted",
        });
        let without_idempotency = encode(&NewEvent {
            idempotency: None,
            ..event.clone()
        })
        .unwrap();
        assert_eq!(without_idempotency, cbor::to_vec(&json).unwrap());
        let decoded = decode(&record).unwrap();
        assert_eq!(decoded.stream_id, "application-1");
        assert_eq!(decoded.recorded_at, event.recorded_at);
        assert_eq!(decoded.payload, &event.payload[..]);
        assert_eq!(decoded.metadata, event.metadata);
        assert_eq!(decoded.idempotency, event.idempotency);
    }

    #[test]
    fn the_hash_covers_every_byte_and_the_place_in_the_chain() {
        let record = encode(&sample()).unwrap();
        let h = hash(&GENESIS, "msk", 1, &record);
        assert_ne!(hash(&GENESIS, "msk", 2, &record), h);
        assert_ne!(hash(&GENESIS, "spb", 1, &record), h);
        assert_ne!(hash(&[1; 32], "msk", 1, &record), h);
        for i in 0..record.len() {
            let mut changed = record.clone();
            changed[i] ^= 1;
            assert_ne!(hash(&GENESIS, "msk", 1, &changed), h);
        }
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&GENESIS);
        bytes.extend_from_slice(&3u64.to_le_bytes());
        bytes.extend_from_slice(b"msk");
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&record);
        assert_eq!(<[u8; 32]>::from(Sha256::digest(&bytes)), h);
    }

    #[test]
    fn malformed_records_are_errors() {
        let record = encode(&sample()).unwrap();
        assert!(decode(&record[..record.len() - 1]).is_err());
        let mut extra = record.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        assert!(decode(&cbor::to_vec(&serde_json::json!({"z": 1})).unwrap()).is_err());
    }
}

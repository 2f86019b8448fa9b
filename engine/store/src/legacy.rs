//! Schema v1 of the log, kept readable and verifiable beside v2: its canonical byte layout
//! and SHA-256 chain hash, and the check of its rows.
//!
//! Logs written before the v2 record ([`crate::record`]) keep their v1 rows in the tables
//! `events` and `idempotency`, untouched; a v2 chain continues from the last v1 event of
//! its authority (its first `prev_hash` is that event's hash). Auditors reimplement this
//! module to check v1 rows, so the layout is written out in full on [`event_hash`] and never
//! changes.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

/// A v1 event's metadata, hashed as [`canonical_metadata`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub idempotency_key: Option<String>,
    pub actor: Option<String>,
    pub channel: Option<String>,
    pub correlation_id: Option<String>,
}

/// A v1 event's hashed fields (its place in the chain aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub recorded_at: DateTime<Utc>,
    /// JSON text, byte for byte.
    pub payload: String,
    pub metadata: Metadata,
}

/// The `prev_hash` of the first event of every authority: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Cuts `recorded_at` to whole microseconds, the precision both backends store and that is hashed.
pub fn truncate_to_micros(recorded_at: DateTime<Utc>) -> DateTime<Utc> {
    recorded_at.trunc_subsecs(6)
}

/// `recorded_at` as hashed (and as stored by SQLite): RFC 3339, UTC, exactly six fraction
/// digits and a `Z`, e.g. `2025-03-01T08:00:00.123456Z`. Sub-microsecond digits are dropped.
pub fn canonical_recorded_at(recorded_at: DateTime<Utc>) -> String {
    truncate_to_micros(recorded_at).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Metadata as hashed and stored: compact JSON with the four keys always present, in this
/// order, absent values as `null`:
/// `{"idempotency_key":…,"actor":…,"channel":…,"correlation_id":…}`.
/// Strings are escaped as serde_json does: `"` and `\` with a backslash, control characters
/// as `\n` `\r` `\t` `\b` `\f` or `\u00xx` (lower-case hex); everything else, including
/// non-ASCII and `/`, as literal UTF-8.
pub fn canonical_metadata(metadata: &Metadata) -> String {
    serde_json::to_string(metadata).expect("Metadata always serializes")
}

/// The hash of one event, chained to `prev_hash` (lower-case hex of 64 characters).
///
/// # Canonical layout
///
/// The hash is `lower_hex(SHA-256(bytes))`, where `bytes` is the concatenation of ten
/// fields, in this order, each written as its length in bytes (an unsigned 64-bit integer,
/// little-endian, 8 bytes) followed by the field's UTF-8 bytes:
///
/// | # | field | text that is hashed |
/// |---|---|---|
/// | 1 | `prev_hash` | lower-case hex of the previous event of the same authority; [`GENESIS_HASH`] (64 `0`) for `authority_seq` 1 |
/// | 2 | `authority` | as given |
/// | 3 | `authority_seq` | decimal ASCII, no leading zeros or `+` (`1`, `2`, …) |
/// | 4 | `stream_id` | as given |
/// | 5 | `stream_version` | decimal ASCII (a negative number starts with `-`) |
/// | 6 | `event_type` | as given |
/// | 7 | `schema_version` | decimal ASCII |
/// | 8 | `recorded_at` | [`canonical_recorded_at`]: `YYYY-MM-DDTHH:MM:SS.ffffffZ` |
/// | 9 | `payload` | the JSON text exactly as stored, byte for byte |
/// | 10 | `metadata` | [`canonical_metadata`]: `{"idempotency_key":…,"actor":…,"channel":…,"correlation_id":…}` |
///
/// For example the field `authority` = `"msk"` contributes the 11 bytes
/// `03 00 00 00 00 00 00 00 6d 73 6b`.
///
/// `global_seq` is not hashed: it is assigned by the database and only orders the log
/// globally. The stores keep the metadata column equal to field 10 byte for byte, so an
/// auditor may hash the stored column directly.
pub fn event_hash(prev_hash: &str, authority: &str, authority_seq: i64, e: &NewEvent) -> String {
    HashInput {
        prev_hash,
        authority,
        authority_seq,
        stream_id: &e.stream_id,
        stream_version: e.stream_version,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        recorded_at: &canonical_recorded_at(e.recorded_at),
        payload: &e.payload,
        metadata: &canonical_metadata(&e.metadata),
    }
    .hash()
}

/// The canonical bytes described on [`event_hash`], for auditors who want to inspect them.
pub fn canonical_bytes(
    prev_hash: &str,
    authority: &str,
    authority_seq: i64,
    e: &NewEvent,
) -> Vec<u8> {
    let mut sink = Vec::new();
    HashInput {
        prev_hash,
        authority,
        authority_seq,
        stream_id: &e.stream_id,
        stream_version: e.stream_version,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        recorded_at: &canonical_recorded_at(e.recorded_at),
        payload: &e.payload,
        metadata: &canonical_metadata(&e.metadata),
    }
    .write(&mut |bytes| sink.extend_from_slice(bytes));
    sink
}

/// The ten hashed fields, already in their canonical text form. The stores build it from
/// stored columns during `verify`, so that what is checked is what is on disk.
pub(crate) struct HashInput<'a> {
    pub prev_hash: &'a str,
    pub authority: &'a str,
    pub authority_seq: i64,
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub recorded_at: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
}

impl HashInput<'_> {
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        self.write(&mut |bytes| hasher.update(bytes));
        lower_hex(&hasher.finalize())
    }

    fn write(&self, sink: &mut dyn FnMut(&[u8])) {
        let mut field = |bytes: &[u8]| {
            sink(&(bytes.len() as u64).to_le_bytes());
            sink(bytes);
        };
        let mut digits = [0u8; 20];
        field(self.prev_hash.as_bytes());
        field(self.authority.as_bytes());
        field(decimal(self.authority_seq, &mut digits));
        field(self.stream_id.as_bytes());
        field(decimal(self.stream_version, &mut digits));
        field(self.event_type.as_bytes());
        field(decimal(i64::from(self.schema_version), &mut digits));
        field(self.recorded_at.as_bytes());
        field(self.payload.as_bytes());
        field(self.metadata.as_bytes());
    }
}

/// `value` in decimal ASCII, written into `buffer` without allocating.
fn decimal(value: i64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut magnitude = value.unsigned_abs();
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        buffer[start] = b'-';
    }
    &buffer[start..]
}

fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// One stored v1 row with its columns as text, the way `verify` checks it.
pub(crate) struct VerifyRow {
    pub authority_seq: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub recorded_at: String,
    pub payload: String,
    pub metadata: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A v1 row as a [`crate::StoredEvent`]: the payload is JSON text
/// ([`crate::PayloadFormat::Json`]), the record the canonical bytes of the stored columns
/// (so that [`crate::StoredEvent::hash_is_valid`] checks what is on disk), and the
/// idempotency key, kept in the v1 metadata as text, becomes its digest.
pub(crate) fn stored_event(authority: &str, row: VerifyRow) -> Result<crate::StoredEvent, String> {
    let recorded_at = DateTime::parse_from_rfc3339(&row.recorded_at)
        .map_err(|e| format!("recorded_at {:?}: {e}", row.recorded_at))?
        .with_timezone(&Utc);
    let metadata: Metadata = serde_json::from_str(&row.metadata)
        .map_err(|e| format!("metadata {:?}: {e}", row.metadata))?;
    if canonical_metadata(&metadata) != row.metadata {
        return Err(format!("metadata is not canonical JSON: {}", row.metadata));
    }
    let hash_bytes = |text: &str, what: &str| -> Result<[u8; 32], String> {
        hex::decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{what} {text:?} is not 64 hex digits"))
    };
    let mut record = Vec::with_capacity(row.payload.len() + row.metadata.len() + 256);
    let mut payload_range = (0u32, 0u32);
    HashInput {
        prev_hash: &row.prev_hash,
        authority,
        authority_seq: row.authority_seq,
        stream_id: &row.stream_id,
        stream_version: row.stream_version,
        event_type: &row.event_type,
        schema_version: row.schema_version,
        recorded_at: &row.recorded_at,
        payload: &row.payload,
        metadata: &row.metadata,
    }
    .write(&mut |bytes| {
        if std::ptr::eq(bytes.as_ptr(), row.payload.as_ptr()) && bytes.len() == row.payload.len() {
            payload_range = (record.len() as u32, (record.len() + bytes.len()) as u32);
        }
        record.extend_from_slice(bytes)
    });
    Ok(crate::StoredEvent {
        authority: authority.to_owned(),
        authority_seq: row.authority_seq,
        stream_id: row.stream_id,
        stream_version: row.stream_version,
        event_type: row.event_type,
        schema_version: row.schema_version,
        recorded_at,
        metadata: crate::Metadata {
            actor: metadata.actor,
            channel: metadata.channel,
            correlation_id: metadata.correlation_id,
        },
        idempotency: metadata
            .idempotency_key
            .as_deref()
            .map(|key| crate::Idempotency {
                key_digest: crate::record::key_digest(key),
                request_hash: [0; 32],
                answer_events: 0,
            }),
        format: crate::PayloadFormat::Json,
        prev_hash: hash_bytes(&row.prev_hash, "prev_hash")?,
        hash: hash_bytes(&row.hash, "hash")?,
        record,
        payload_range,
    })
}

/// A v1 `idempotency` row as an [`crate::IdempotencyHit`]: its response names the span of
/// events of the first answer (`{"first_seq":…,"last_seq":…}`), its request hash is hex.
pub(crate) fn idempotency_hit(
    request_hash: &str,
    response: &str,
) -> Result<crate::IdempotencyHit, crate::StoreError> {
    #[derive(Deserialize)]
    struct Span {
        first_seq: i64,
        last_seq: i64,
    }
    let span: Span = serde_json::from_str(response).map_err(|e| {
        crate::StoreError::Corrupt(format!("v1 idempotency response {response:?}: {e}"))
    })?;
    Ok(crate::IdempotencyHit {
        // A v1 request hash that is not a digest matches no request.
        request_hash: hex::decode(request_hash)
            .ok()
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 32]),
        first_seq: span.first_seq,
        last_seq: span.last_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> NewEvent {
        NewEvent {
            stream_id: "application-1".into(),
            stream_version: 1,
            event_type: "ApplicationSubmitted".into(),
            schema_version: 1,
            recorded_at: Utc.timestamp_opt(1_740_816_000, 123_456_789).unwrap(),
            payload: r#"{"b":1,"a":"ё"}"#.into(),
            metadata: Metadata {
                idempotency_key: Some("k1".into()),
                actor: None,
                channel: Some("web".into()),
                correlation_id: None,
            },
        }
    }

    #[test]
    fn recorded_at_is_rfc3339_with_microseconds_and_z() {
        assert_eq!(
            canonical_recorded_at(sample().recorded_at),
            "2025-03-01T08:00:00.123456Z"
        );
    }

    #[test]
    fn metadata_has_fixed_keys_in_fixed_order() {
        assert_eq!(
            canonical_metadata(&sample().metadata),
            r#"{"idempotency_key":"k1","actor":null,"channel":"web","correlation_id":null}"#
        );
    }

    #[test]
    fn canonical_bytes_are_length_prefixed_fields() {
        let bytes = canonical_bytes(GENESIS_HASH, "msk", 1, &sample());
        assert_eq!(&bytes[..8], &64u64.to_le_bytes());
        assert_eq!(&bytes[8..72], GENESIS_HASH.as_bytes());
        assert_eq!(&bytes[72..83], b"\x03\0\0\0\0\0\0\0msk");
        assert_eq!(&bytes[83..92], b"\x01\0\0\0\0\0\0\x001");
        let digest = hex::encode(Sha256::digest(&bytes));
        assert_eq!(digest, event_hash(GENESIS_HASH, "msk", 1, &sample()));
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = sample();
        let h = event_hash(GENESIS_HASH, "msk", 1, &base);
        let mut variants = Vec::new();
        let mut e = base.clone();
        e.stream_id.push('x');
        variants.push(e);
        let mut e = base.clone();
        e.stream_version += 1;
        variants.push(e);
        let mut e = base.clone();
        e.event_type.push('x');
        variants.push(e);
        let mut e = base.clone();
        e.schema_version += 1;
        variants.push(e);
        let mut e = base.clone();
        e.recorded_at += chrono::Duration::microseconds(1);
        variants.push(e);
        let mut e = base.clone();
        e.payload = r#"{"a":"ё","b":1}"#.into();
        variants.push(e);
        let mut e = base.clone();
        e.metadata.actor = Some("officer".into());
        variants.push(e);
        for v in &variants {
            assert_ne!(event_hash(GENESIS_HASH, "msk", 1, v), h);
        }
        assert_ne!(event_hash(GENESIS_HASH, "msk", 2, &base), h);
        assert_ne!(event_hash(GENESIS_HASH, "spb", 1, &base), h);
        assert_ne!(event_hash(&"1".repeat(64), "msk", 1, &base), h);
        // Length prefixes keep field boundaries apart.
        let mut a = base.clone();
        a.stream_id = "ab".into();
        a.event_type = "c".into();
        let mut b = base.clone();
        b.stream_id = "a".into();
        b.event_type = "bc".into();
        assert_ne!(
            event_hash(GENESIS_HASH, "msk", 1, &a),
            event_hash(GENESIS_HASH, "msk", 1, &b)
        );
    }

    #[test]
    fn integers_are_plain_decimal() {
        let mut buffer = [0u8; 20];
        for value in [0, 1, 9, 10, 42, -1, -10, i64::MAX, i64::MIN, 1_000_000] {
            assert_eq!(decimal(value, &mut buffer), value.to_string().as_bytes());
        }
        assert_eq!(
            lower_hex(&[0x00, 0xab, 0x7f]),
            hex::encode([0x00, 0xab, 0x7f])
        );
    }

    #[test]
    fn sub_microsecond_digits_do_not_matter() {
        let mut e = sample();
        let h = event_hash(GENESIS_HASH, "msk", 1, &e);
        e.recorded_at = truncate_to_micros(e.recorded_at);
        assert_eq!(event_hash(GENESIS_HASH, "msk", 1, &e), h);
    }
}

//! Fixtures: events with CBOR payloads, idempotency facts.
//! The harness itself is `ochered_store::testing::Harness`, shared with other crates.

use chrono::{TimeZone, Utc};
use ochered_store::{key_digest, Idempotency, Metadata, NewEvent};

pub use ochered_store::testing::{Harness, Raw};

/// An event whose payload holds non-ASCII text, quotes and a nested structure.
pub fn event(stream_id: &str, stream_version: i64) -> NewEvent {
    let payload = serde_json::json!({
        "type": "ApplicationSubmitted",
        "zeta": 1,
        "alpha": "Иванова Мария",
        "stream": stream_id,
        "n": stream_version,
        "esc": "a\"b\u{e9}",
        "arr": [3, 1, 2],
    });
    NewEvent {
        stream_id: stream_id.to_string(),
        stream_version,
        event_type: "ApplicationSubmitted".to_string(),
        schema_version: 1,
        recorded_at: Utc
            .timestamp_opt(1_740_816_000 + stream_version, 123_456_789)
            .unwrap(),
        payload: ochered_store::cbor::to_vec(&payload).unwrap(),
        metadata: Metadata {
            actor: Some("parent:42".to_string()),
            channel: Some("web".to_string()),
            correlation_id: None,
        },
        idempotency: None,
    }
}

/// `event` carrying the idempotency facts of a request with `key` that produced
/// `answer_events` events ending with this one.
pub fn keyed(stream_id: &str, key: &str, answer_events: u32) -> NewEvent {
    NewEvent {
        idempotency: Some(idempotency(key, answer_events)),
        ..event(stream_id, 1)
    }
}

pub fn idempotency(key: &str, answer_events: u32) -> Idempotency {
    Idempotency {
        key_digest: key_digest(key),
        request_hash: key_digest(&format!("request of {key}")),
        answer_events,
    }
}

/// `n` events of `n` different streams, numbered from `first`.
pub fn events(prefix: &str, first: i64, n: i64) -> Vec<NewEvent> {
    (first..first + n)
        .map(|i| event(&format!("{prefix}-{i}"), 1))
        .collect()
}

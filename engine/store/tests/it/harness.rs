//! Fixtures: events whose bytes a re-serializing store would change, idempotency records.
//! The harness itself is `ochered_store::testing::Harness`, shared with other crates.

use chrono::{TimeZone, Utc};
use ochered_store::{IdempotencyRecord, Metadata, NewEvent};

pub use ochered_store::testing::{Harness, Raw};

/// An event with a payload whose bytes a re-serializing store would change: keys out of
/// order, spaces, non-ASCII, an escaped character.
pub fn event(stream_id: &str, stream_version: i64) -> NewEvent {
    NewEvent {
        stream_id: stream_id.to_string(),
        stream_version,
        event_type: "ApplicationSubmitted".to_string(),
        schema_version: 1,
        recorded_at: Utc
            .timestamp_opt(1_740_816_000 + stream_version, 123_456_789)
            .unwrap(),
        payload: format!(
            r#"{{"zeta": 1, "alpha":"Иванова Мария","stream":"{stream_id}","n":{stream_version},"esc":"a\"b\u00e9","arr":[3,1,2]}}"#
        ),
        metadata: Metadata {
            idempotency_key: Some(format!("{stream_id}-{stream_version}")),
            actor: Some("parent:42".to_string()),
            channel: Some("web".to_string()),
            correlation_id: None,
        },
    }
}

pub fn idempotency(key: &str, authority_seq: Option<i64>) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.to_string(),
        request_hash: format!("req-{key}"),
        response: format!(r#"{{"status":201,"key":"{key}"}}"#),
        authority_seq,
    }
}

/// `n` events of `n` different streams, numbered from `first`.
pub fn events(prefix: &str, first: i64, n: i64) -> Vec<NewEvent> {
    (first..first + n)
        .map(|i| event(&format!("{prefix}-{i}"), 1))
        .collect()
}

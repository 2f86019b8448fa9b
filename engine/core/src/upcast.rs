//! Upcasting: turns a payload written with an older schema version into the current one,
//! so the fold only ever sees current events.

use serde_json::Value;

use crate::event::{Event, SCHEMA_VERSION};

/// Brings a stored payload to the current schema version.
///
/// History of schema versions:
/// - 1: the first release.
/// - 2: `KindergartenApplicationSubmitted` gained `any_other` (default `false`).
/// - 3: payloads carry their `type` tag (so the current version decodes in one pass).
pub fn upcast(event_type: &str, schema_version: i32, payload: Value) -> Result<Value, String> {
    if !(1..=SCHEMA_VERSION).contains(&schema_version) {
        return Err(format!(
            "{event_type}: schema version {schema_version} is not known to this build (current {SCHEMA_VERSION})"
        ));
    }
    let mut payload = payload;
    if schema_version < 2 && event_type == "KindergartenApplicationSubmitted" {
        if let Some(map) = payload.as_object_mut() {
            map.entry("any_other").or_insert(Value::Bool(false));
        }
    }
    Ok(payload)
}

/// Decodes a stored event of any known schema version. Current payloads decode straight
/// from text (the replay hot path); older ones go through a tree and [`upcast`].
pub fn decode(event_type: &str, schema_version: i32, payload: &str) -> Result<Event, String> {
    if schema_version == SCHEMA_VERSION {
        let event: Event =
            serde_json::from_str(payload).map_err(|e| format!("{event_type}: {e}"))?;
        if event.type_name() != event_type {
            return Err(format!(
                "payload of type {} stored as {event_type}",
                event.type_name()
            ));
        }
        return Ok(event);
    }
    let value: Value = serde_json::from_str(payload)
        .map_err(|e| format!("{event_type}: payload is not JSON: {e}"))?;
    Event::from_payload(event_type, upcast(event_type, schema_version, value)?)
}

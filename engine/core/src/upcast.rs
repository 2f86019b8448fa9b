//! Upcasting: turns a payload written with an older schema version into the current one,
//! so the fold only ever sees current events.

use serde_json::Value;

use crate::event::{Event, SCHEMA_VERSION};

/// Brings a stored payload to the current schema version.
///
/// History of schema versions:
/// - 1: the first release.
/// - 2: `KindergartenApplicationSubmitted` gained `any_other` (default `false`).
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

/// Decodes a stored event of any known schema version.
pub fn decode(event_type: &str, schema_version: i32, payload: &str) -> Result<Event, String> {
    let value: Value = serde_json::from_str(payload)
        .map_err(|e| format!("{event_type}: payload is not JSON: {e}"))?;
    Event::from_payload(event_type, upcast(event_type, schema_version, value)?)
}

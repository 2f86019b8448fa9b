//! The operator's and auditor's tools over a log, as library functions the `ochered`
//! command calls: verify (with a checkpoint), replay, and export as JSON lines.

use std::io::Write;
use std::time::Instant;

use ochered_store::checkpoint::Checkpoint;
use ochered_store::{EventStore, NewEvent, PayloadFormat, StoreError, StoredEvent, VerifyOutcome};
use serde_json::{json, Value};

/// Every authority of the log, or only `only`.
pub async fn authorities(
    store: &dyn EventStore,
    only: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    Ok(match only {
        Some(a) => vec![a.to_owned()],
        None => store.authorities().await?,
    })
}

/// Checks every chain (and a checkpoint whose signature already held, if given) and writes
/// one line per authority and per checkpointed head. `Ok(true)` when everything holds.
pub async fn verify(
    store: &dyn EventStore,
    only: Option<&str>,
    checkpoint: Option<&Checkpoint>,
    out: &mut dyn Write,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let mut ok = true;
    for authority in authorities(store, only).await? {
        match store.verify(&authority).await? {
            VerifyOutcome::Ok { head, events } => writeln!(
                out,
                "authority={authority} ok events={events} head_seq={} head_hash={}",
                head.authority_seq, head.hash
            )?,
            VerifyOutcome::Broken {
                authority_seq,
                reason,
            } => {
                ok = false;
                writeln!(
                    out,
                    "authority={authority} BROKEN at authority_seq={authority_seq}: {reason}"
                )?;
            }
        }
    }
    if let Some(checkpoint) = checkpoint {
        let mismatches = checkpoint.check_against(store, only).await?;
        for m in &mismatches {
            writeln!(
                out,
                "authority={} CHECKPOINT MISMATCH at authority_seq={}: {}",
                m.authority, m.authority_seq, m.reason
            )?;
        }
        for head in &checkpoint.heads {
            let listed = only.is_none_or(|a| a == head.authority);
            if listed && !mismatches.iter().any(|m| m.authority == head.authority) {
                writeln!(
                    out,
                    "authority={} checkpoint ok at authority_seq={} hash={}",
                    head.authority, head.authority_seq, head.hash
                )?;
            }
        }
        ok &= mismatches.is_empty();
    }
    Ok(ok)
}

/// Rebuilds every authority's state from the log and writes its state hash, events and time.
pub async fn replay(
    store: &dyn EventStore,
    only: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for authority in authorities(store, only).await? {
        let started = Instant::now();
        let (state, stats) = crate::load_state(store, &authority)
            .await
            .map_err(|e| format!("failed to replay {authority}: {e}"))?;
        let elapsed = started.elapsed();
        let rate = stats.events as f64 / elapsed.as_secs_f64().max(1e-9);
        writeln!(
            out,
            "authority={authority} state_hash={} events={} head_seq={} from_snapshot={} elapsed_ms={} events_per_s={:.0}",
            state.state_hash(),
            stats.events,
            stats.head.authority_seq,
            stats.from_snapshot.map_or("none".to_string(), |s| s.to_string()),
            elapsed.as_millis(),
            rate
        )?;
    }
    Ok(())
}

/// One stored event as a JSON object: its place in the chain, its hashes, its fields and
/// the event itself as JSON. For a v2 event the object holds everything its record holds,
/// so [`record_of_export`] rebuilds the exact stored bytes from it; for a v1 event the
/// exact payload and metadata texts are given too (`v1_payload`, `v1_metadata`).
pub fn export_event(stored: &StoredEvent) -> Result<Value, String> {
    let event: Value = match stored.format {
        PayloadFormat::Cbor => ochered_store::cbor::from_slice(stored.payload())
            .map_err(|e| format!("event {}: {e}", stored.authority_seq))?,
        PayloadFormat::Json => serde_json::from_slice(stored.payload())
            .map_err(|e| format!("event {}: {e}", stored.authority_seq))?,
    };
    let mut line = json!({
        "authority": stored.authority,
        "authority_seq": stored.authority_seq,
        "prev_hash": hex::encode(stored.prev_hash),
        "hash": stored.hash_hex(),
        "format": match stored.format { PayloadFormat::Cbor => "v2", PayloadFormat::Json => "v1" },
        "stream_id": stored.stream_id,
        "stream_version": stored.stream_version,
        "event_type": stored.event_type,
        "schema_version": stored.schema_version,
        "recorded_at": stored.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "actor": stored.metadata.actor,
        "channel": stored.metadata.channel,
        "correlation_id": stored.metadata.correlation_id,
        "idempotency": stored.idempotency.filter(|_| stored.format == PayloadFormat::Cbor).map(|i| json!({
            "key_digest": hex::encode(i.key_digest),
            "request_hash": hex::encode(i.request_hash),
            "answer_events": i.answer_events,
        })),
        "event": event,
    });
    if stored.format == PayloadFormat::Json {
        line["v1_payload"] = Value::String(String::from_utf8_lossy(stored.payload()).into_owned());
    }
    Ok(line)
}

/// Writes every event of every authority (or of `only`) as one JSON object per line, in
/// chain order; returns how many.
pub async fn export_jsonl(
    store: &dyn EventStore,
    only: Option<&str>,
    out: &mut dyn Write,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let mut written = 0;
    for authority in authorities(store, only).await? {
        let mut after = 0;
        loop {
            let page = store.read(&authority, after, 10_000).await?;
            for stored in &page {
                serde_json::to_writer(&mut *out, &export_event(stored)?)?;
                out.write_all(b"\n")?;
                written += 1;
            }
            match page.last() {
                Some(last) if page.len() == 10_000 => after = last.authority_seq,
                _ => break,
            }
        }
    }
    out.flush()?;
    Ok(written)
}

fn field<'a>(line: &'a Value, name: &str) -> Result<&'a Value, String> {
    line.get(name).ok_or_else(|| format!("no field {name:?}"))
}

fn hex32(value: &Value, name: &str) -> Result<[u8; 32], String> {
    value
        .as_str()
        .and_then(|t| hex::decode(t).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{name} is not 64 hex digits"))
}

fn opt_text(line: &Value, name: &str) -> Option<String> {
    line.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// Rebuilds a v2 event's record from its exported line and returns it with the hash that
/// the line's `prev_hash`, authority and sequence give it: for an untouched export this is
/// the line's own `hash`, so a log exported as JSON proves itself without our database.
pub fn record_of_export(line: &Value) -> Result<(Vec<u8>, [u8; 32]), String> {
    if field(line, "format")?.as_str() != Some("v2") {
        return Err("only v2 events are rebuilt from JSON".into());
    }
    let text = |name: &str| -> Result<String, String> {
        field(line, name)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{name} is not text"))
    };
    let int = |name: &str| -> Result<i64, String> {
        field(line, name)?
            .as_i64()
            .ok_or_else(|| format!("{name} is not an integer"))
    };
    let recorded_at = chrono::DateTime::parse_from_rfc3339(&text("recorded_at")?)
        .map_err(|e| format!("recorded_at: {e}"))?
        .with_timezone(&chrono::Utc);
    let idempotency = match line.get("idempotency") {
        None | Some(Value::Null) => None,
        Some(i) => Some(ochered_store::Idempotency {
            key_digest: hex32(field(i, "key_digest")?, "key_digest")?,
            request_hash: hex32(field(i, "request_hash")?, "request_hash")?,
            answer_events: field(i, "answer_events")?
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("answer_events is not a small integer")?,
        }),
    };
    let event = NewEvent {
        stream_id: text("stream_id")?,
        stream_version: int("stream_version")?,
        event_type: text("event_type")?,
        schema_version: i32::try_from(int("schema_version")?)
            .map_err(|_| "schema_version out of range")?,
        recorded_at,
        payload: ochered_store::cbor::to_vec(field(line, "event")?).map_err(|e| e.to_string())?,
        metadata: ochered_store::Metadata {
            actor: opt_text(line, "actor"),
            channel: opt_text(line, "channel"),
            correlation_id: opt_text(line, "correlation_id"),
        },
        idempotency,
    };
    let record = ochered_store::record::encode(&event).map_err(|e| e.to_string())?;
    let hash = ochered_store::record::hash(
        &hex32(field(line, "prev_hash")?, "prev_hash")?,
        &text("authority")?,
        int("authority_seq")?,
        &record,
    );
    Ok((record, hash))
}

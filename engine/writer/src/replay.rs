//! Start-up: rebuild an authority's state from its newest snapshot and the events after it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ochered_core::{Event, State, SCHEMA_VERSION};
use ochered_store::{ChainHead, EventStore, PayloadFormat, StoredEvent};

use crate::{KeyIndex, WriterError};

/// Events read from the store per page during replay.
pub const REPLAY_PAGE_EVENTS: i64 = 20_000;

#[derive(Debug, Clone)]
pub struct ReplayStats {
    /// Events folded (after the snapshot, if one was used).
    pub events: u64,
    /// The `authority_seq` of the snapshot replay started from, if any.
    pub from_snapshot: Option<i64>,
    pub head: ChainHead,
    pub last_recorded_at: DateTime<Utc>,
    /// Where the log records each idempotency key. [`crate::Writer::start`] moves it into
    /// the writer: the stats it returns hold an empty index.
    pub idempotency_keys: KeyIndex,
    pub elapsed: Duration,
}

/// The first bytes of a snapshot of this layout. Snapshots without them (older layouts:
/// `ochsnap2` kept only a set of key prefixes, not where the log records each key) are not
/// used: the whole log is replayed instead, and the next snapshot is of this layout.
const SNAPSHOT_MAGIC: &[u8; 8] = b"ochsnap3";

/// Snapshot layout: [`SNAPSHOT_MAGIC`], the key index ([`KeyIndex`]'s bytes: where the log
/// records each idempotency key), then the state's own snapshot bytes.
pub(crate) fn encode_snapshot(state: &State, keys: &KeyIndex) -> Vec<u8> {
    let state_bytes = state.to_snapshot();
    let mut out = Vec::with_capacity(16 + keys.len() * 16 + state_bytes.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    keys.encode(&mut out);
    out.extend_from_slice(&state_bytes);
    out
}

fn decode_snapshot(bytes: &[u8]) -> Result<(State, KeyIndex), String> {
    let bytes = bytes
        .strip_prefix(SNAPSHOT_MAGIC)
        .ok_or("a snapshot of an older layout")?;
    let (keys, state_bytes) = KeyIndex::decode(bytes)?;
    let state = State::from_snapshot(state_bytes)?;
    Ok((state, keys))
}

/// Decodes one stored event: a v2 payload (deterministic CBOR) or a v1 one (JSON text), of
/// the current or an older schema version.
pub fn decode_event(stored: &StoredEvent) -> Result<Event, String> {
    let payload = stored.payload();
    match stored.format {
        PayloadFormat::Json => {
            let text = std::str::from_utf8(payload)
                .map_err(|e| format!("{}: payload is not UTF-8: {e}", stored.event_type))?;
            ochered_core::upcast::decode(&stored.event_type, stored.schema_version, text)
        }
        PayloadFormat::Cbor if stored.schema_version == SCHEMA_VERSION => {
            let event: Event = ochered_store::cbor::from_slice(payload)
                .map_err(|e| format!("{}: {e}", stored.event_type))?;
            if event.type_name() != stored.event_type {
                return Err(format!(
                    "payload of type {} stored as {}",
                    event.type_name(),
                    stored.event_type
                ));
            }
            Ok(event)
        }
        PayloadFormat::Cbor => {
            let value: serde_json::Value = ochered_store::cbor::from_slice(payload)
                .map_err(|e| format!("{}: {e}", stored.event_type))?;
            let value =
                ochered_core::upcast::upcast(&stored.event_type, stored.schema_version, value)?;
            Event::from_payload(&stored.event_type, value)
        }
    }
}

/// [`decode_event`] as a writer error naming the event.
pub(crate) fn decode_stored(stored: &StoredEvent) -> Result<Event, WriterError> {
    decode_event(stored).map_err(|e| {
        WriterError::Unavailable(format!(
            "event {} of {} cannot be read: {e}",
            stored.authority_seq, stored.authority
        ))
    })
}

/// A head's hash as bytes (an unparsable one matches nothing).
pub(crate) fn hash_of_head(head: &ChainHead) -> ochered_store::Hash {
    hex::decode(&head.hash)
        .ok()
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0xff; 32])
}

/// The error of a chain that does not verify: the server refuses writes on it.
fn broken(authority: &str, authority_seq: i64, why: &str) -> WriterError {
    WriterError::Broken(format!(
        "the log of {authority} is broken at event {authority_seq} ({why}): run `ochered verify`"
    ))
}

/// Decodes a page of stored events and checks that each hashes to its stored hash (runs
/// on blocking threads, beside the fold).
fn decode_page(page: Vec<StoredEvent>) -> Result<(Vec<StoredEvent>, Vec<Event>), WriterError> {
    let mut events = Vec::with_capacity(page.len());
    for stored in &page {
        if !stored.hash_is_valid() {
            return Err(broken(
                &stored.authority,
                stored.authority_seq,
                "its bytes do not hash to its stored hash",
            ));
        }
        events.push(decode_stored(stored)?);
    }
    Ok((page, events))
}

/// [`decode_page`] split over `parts` blocking tasks (the replay's decoding runs on every
/// core the fold leaves free).
async fn decode_parallel(
    mut page: Vec<StoredEvent>,
    parts: usize,
) -> Result<(Vec<StoredEvent>, Vec<Event>), WriterError> {
    let chunk = page.len().div_ceil(parts.max(1)).max(1);
    let mut tails = Vec::new();
    while page.len() > chunk {
        tails.push(page.split_off(page.len() - chunk));
    }
    tails.push(page);
    tails.reverse();
    let handles: Vec<_> = tails
        .into_iter()
        .map(|part| tokio::task::spawn_blocking(move || decode_page(part)))
        .collect();
    let mut stored = Vec::new();
    let mut events = Vec::new();
    for handle in handles {
        let (part, decoded) = handle
            .await
            .map_err(|e| WriterError::Unavailable(format!("decoding failed: {e}")))??;
        stored.extend(part);
        events.extend(decoded);
    }
    Ok((stored, events))
}

/// Folds a decoded page into the state, checking that each event links to the one before.
fn fold_page(
    state: &mut State,
    page: &[StoredEvent],
    events: &[Event],
    head: &mut ChainHead,
    head_hash: &mut ochered_store::Hash,
    keys: &mut KeyIndex,
    last_recorded_at: &mut DateTime<Utc>,
) -> Result<(), WriterError> {
    for (stored, event) in page.iter().zip(events) {
        if stored.authority_seq != head.authority_seq + 1 {
            return Err(broken(
                &stored.authority,
                head.authority_seq + 1,
                "an event is missing",
            ));
        }
        if stored.prev_hash != *head_hash {
            return Err(broken(
                &stored.authority,
                stored.authority_seq,
                "it does not link to the event before it",
            ));
        }
        state.apply(event);
        if let Some(idempotency) = &stored.idempotency {
            keys.insert(&idempotency.key_digest, stored.authority_seq);
        }
        head.authority_seq = stored.authority_seq;
        *head_hash = stored.hash;
        *last_recorded_at = (*last_recorded_at).max(stored.recorded_at);
    }
    if let Some(last) = page.last() {
        head.hash = last.hash_hex();
    }
    Ok(())
}

/// Rebuilds the state of an authority: newest snapshot, then every later event in order,
/// checking that each event hashes to its stored hash and links to the one before (so a
/// start verifies the chain from the newest snapshot to the head: a break is
/// [`WriterError::Broken`]).
///
/// Three stages run at once: the store reads page k+2, blocking tasks decode (and hash)
/// page k+1 split over the cores, and a thread of its own folds page k.
pub async fn load_state(
    store: &dyn EventStore,
    authority: &str,
) -> Result<(State, ReplayStats), WriterError> {
    let started = Instant::now();
    let mut head = ChainHead::genesis();
    let mut head_hash = ochered_store::GENESIS;
    let mut state = State::new();
    let mut keys = KeyIndex::default();
    let mut from_snapshot = None;
    if let Some((seq, bytes)) = store.load_snapshot(authority).await? {
        match decode_snapshot(&bytes) {
            Ok((snapshot_state, snapshot_keys)) => {
                // The snapshot's head hash is that of its last event.
                let page = store.read(authority, seq - 1, 1).await?;
                match page.first().filter(|e| e.authority_seq == seq) {
                    Some(last) if !last.hash_is_valid() => {
                        return Err(broken(
                            authority,
                            seq,
                            "its bytes do not hash to its stored hash",
                        ))
                    }
                    Some(last) => {
                        state = snapshot_state;
                        keys = snapshot_keys;
                        head = ChainHead::of(last);
                        head_hash = last.hash;
                        from_snapshot = Some(seq);
                    }
                    None => {}
                }
            }
            Err(e) => {
                tracing::warn!(authority, error = %e, "snapshot unusable; replaying the whole log")
            }
        }
    }
    let parts = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Decoded pages, in order, to the folding thread; two pages ahead at most.
    let (pages, mut to_fold) = tokio::sync::mpsc::channel::<(Vec<StoredEvent>, Vec<Event>)>(2);
    let fold = tokio::task::spawn_blocking(move || {
        let mut last_recorded_at = DateTime::<Utc>::MIN_UTC;
        let mut events = 0u64;
        while let Some((page, page_events)) = to_fold.blocking_recv() {
            events += page.len() as u64;
            fold_page(
                &mut state,
                &page,
                &page_events,
                &mut head,
                &mut head_hash,
                &mut keys,
                &mut last_recorded_at,
            )?;
        }
        Ok::<_, WriterError>((state, head, keys, last_recorded_at, events))
    });
    let feed = async {
        let mut after = from_snapshot.unwrap_or(0);
        let mut decoding: Option<tokio::task::JoinHandle<_>> = None;
        loop {
            let raw = store.read(authority, after, REPLAY_PAGE_EVENTS).await?;
            if let Some(handle) = decoding.take() {
                let decoded = handle
                    .await
                    .map_err(|e| WriterError::Unavailable(format!("decoding failed: {e}")))??;
                if pages.send(decoded).await.is_err() {
                    // The fold stopped on an error, reported below.
                    return Ok(());
                }
            }
            let Some(last) = raw.last() else {
                return Ok::<(), WriterError>(());
            };
            after = last.authority_seq;
            let full = raw.len() as i64 == REPLAY_PAGE_EVENTS;
            decoding = Some(tokio::spawn(decode_parallel(raw, parts)));
            if !full {
                let handle = decoding.take().expect("just set");
                let decoded = handle
                    .await
                    .map_err(|e| WriterError::Unavailable(format!("decoding failed: {e}")))??;
                let _ = pages.send(decoded).await;
                return Ok(());
            }
        }
    };
    let fed = feed.await;
    drop(pages);
    let folded = fold
        .await
        .map_err(|e| WriterError::Unavailable(format!("replay failed: {e}")))?;
    // A fold error names the break; a read or decode error otherwise.
    let (state, head, keys, last_recorded_at, events) = folded?;
    fed?;
    Ok((
        state,
        ReplayStats {
            events,
            from_snapshot,
            head,
            last_recorded_at,
            idempotency_keys: keys,
            elapsed: started.elapsed(),
        },
    ))
}

//! Start-up: rebuild an authority's state from its newest snapshot and the events after it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ochered_core::{Event, State};
use ochered_store::{ChainHead, EventStore, StoredEvent};

use crate::{key_digest, WriterError};

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
    pub idempotency_keys: HashSet<u64>,
    pub elapsed: Duration,
}

/// Snapshot layout: 8 bytes little-endian count of idempotency key digests, the digests
/// (8 bytes each), then the state's own snapshot bytes.
pub(crate) fn encode_snapshot(state: &State, keys: &HashSet<u64>) -> Vec<u8> {
    let mut digests: Vec<u64> = keys.iter().copied().collect();
    digests.sort_unstable();
    let state_bytes = state.to_snapshot();
    let mut out = Vec::with_capacity(8 + digests.len() * 8 + state_bytes.len());
    out.extend_from_slice(&(digests.len() as u64).to_le_bytes());
    for d in digests {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&state_bytes);
    out
}

fn decode_snapshot(bytes: &[u8]) -> Result<(State, HashSet<u64>), String> {
    let count_bytes: [u8; 8] = bytes
        .get(..8)
        .ok_or("snapshot too short")?
        .try_into()
        .map_err(|_| "snapshot too short")?;
    let count = u64::from_le_bytes(count_bytes) as usize;
    let keys_end = 8usize
        .checked_add(count.checked_mul(8).ok_or("snapshot key count overflows")?)
        .ok_or("snapshot key count overflows")?;
    let key_bytes = bytes.get(8..keys_end).ok_or("snapshot truncated")?;
    let keys = key_bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8")))
        .collect();
    let state = State::from_snapshot(&bytes[keys_end..])?;
    Ok((state, keys))
}

/// Decodes one stored event of the current or an older schema version.
pub(crate) fn decode_stored(stored: &StoredEvent) -> Result<Event, WriterError> {
    ochered_core::upcast::decode(&stored.event_type, stored.schema_version, &stored.payload)
        .map_err(|e| {
            WriterError::Unavailable(format!(
                "event {} of {} cannot be read: {e}",
                stored.authority_seq, stored.authority
            ))
        })
}

/// Decodes a page of stored events (runs on a blocking thread, beside the fold).
fn decode_page(page: Vec<StoredEvent>) -> Result<(Vec<StoredEvent>, Vec<Event>), WriterError> {
    let mut events = Vec::with_capacity(page.len());
    for stored in &page {
        events.push(decode_stored(stored)?);
    }
    Ok((page, events))
}

/// Folds a decoded page into the state, checking that each event links to the one before.
fn fold_page(
    state: &mut State,
    page: &[StoredEvent],
    events: &[Event],
    head: &mut ChainHead,
    keys: &mut HashSet<u64>,
    last_recorded_at: &mut DateTime<Utc>,
) -> Result<(), WriterError> {
    for (stored, event) in page.iter().zip(events) {
        if stored.authority_seq != head.authority_seq + 1 || stored.prev_hash != head.hash {
            return Err(WriterError::Unavailable(format!(
                "the log of {} is broken at event {}: run `ochered verify`",
                stored.authority, stored.authority_seq
            )));
        }
        state.apply(event);
        if let Some(key) = &stored.metadata.idempotency_key {
            keys.insert(key_digest(key));
        }
        head.authority_seq = stored.authority_seq;
        head.hash.clone_from(&stored.hash);
        *last_recorded_at = (*last_recorded_at).max(stored.recorded_at);
    }
    Ok(())
}

/// Rebuilds the state of an authority: newest snapshot, then every later event in order.
/// Three stages overlap: reading page k+2, decoding page k+1 (on a blocking thread) and
/// folding page k.
pub async fn load_state(
    store: &dyn EventStore,
    authority: &str,
) -> Result<(State, ReplayStats), WriterError> {
    let started = Instant::now();
    let mut head = ChainHead::genesis();
    let mut state = State::new();
    let mut keys = HashSet::new();
    let mut from_snapshot = None;
    if let Some((seq, bytes)) = store.load_snapshot(authority).await? {
        match decode_snapshot(&bytes) {
            Ok((snapshot_state, snapshot_keys)) => {
                // The snapshot's head hash is that of its last event.
                let page = store.read(authority, seq - 1, 1).await?;
                if let Some(last) = page.first().filter(|e| e.authority_seq == seq) {
                    state = snapshot_state;
                    keys = snapshot_keys;
                    head = ChainHead {
                        authority_seq: seq,
                        hash: last.hash.clone(),
                    };
                    from_snapshot = Some(seq);
                }
            }
            Err(e) => {
                tracing::warn!(authority, error = %e, "snapshot unreadable; replaying the whole log")
            }
        }
    }
    let mut last_recorded_at = DateTime::<Utc>::MIN_UTC;
    let mut events = 0u64;
    let mut raw = store
        .read(authority, head.authority_seq, REPLAY_PAGE_EVENTS)
        .await?;
    let mut decoded: Option<(Vec<StoredEvent>, Vec<Event>)> = None;
    while !raw.is_empty() || decoded.is_some() {
        let after = raw.last().map(|e| e.authority_seq);
        let decoding = (!raw.is_empty()).then(|| {
            let page = std::mem::take(&mut raw);
            tokio::task::spawn_blocking(move || decode_page(page))
        });
        let read = async {
            match after {
                Some(after) => store.read(authority, after, REPLAY_PAGE_EVENTS).await,
                None => Ok(Vec::new()),
            }
        };
        let fold = async {
            match decoded.take() {
                Some((page, page_events)) => {
                    events += page.len() as u64;
                    fold_page(
                        &mut state,
                        &page,
                        &page_events,
                        &mut head,
                        &mut keys,
                        &mut last_recorded_at,
                    )
                }
                None => Ok(()),
            }
        };
        let (read_result, fold_result) = tokio::join!(read, fold);
        fold_result?;
        decoded = match decoding {
            Some(handle) => Some(
                handle
                    .await
                    .map_err(|e| WriterError::Unavailable(format!("decoding failed: {e}")))??,
            ),
            None => None,
        };
        raw = read_result?;
    }
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

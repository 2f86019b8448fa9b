//! Append-only, hash-chained event log on SQLite and PostgreSQL.
//!
//! # Architecture invariants
//!
//! - This crate knows nothing about the queue rules: a payload is opaque JSON text plus an
//!   event type string. It does not depend on `ochered-core`.
//! - Every authority has its own chain: `authority_seq` runs 1, 2, 3… without gaps and each
//!   event's hash covers the previous event's hash (see [`event_hash`] for the exact bytes).
//! - The previous hash is read inside the appending transaction, never from a cache, and
//!   unique constraints on `(authority, authority_seq)`, `(authority, stream_id,
//!   stream_version)` and `(authority, key)` make a second concurrent writer fail with
//!   [`StoreError::Conflict`] instead of forking the chain.
//! - One [`EventStore::append`] call is one transaction and one disk sync, whatever the
//!   number of events: that is what makes group commit cheap.
//!
//! Open a store with [`open`]; the concrete [`SqliteStore`] and [`PgStore`] expose their
//! pools for tests and tools that need raw SQL.

pub mod backup;
pub mod checkpoint;
pub mod cluster;
mod error;
mod hash;
pub mod keys;
mod postgres;
mod sqlite;
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use hash::{
    canonical_bytes, canonical_metadata, canonical_recorded_at, event_hash, truncate_to_micros,
    GENESIS_HASH,
};
pub use keys::DataKeyStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Who asked for an event and how; hashed with the event (see [`canonical_metadata`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub idempotency_key: Option<String>,
    pub actor: Option<String>,
    pub channel: Option<String>,
    pub correlation_id: Option<String>,
}

/// An event to append. The store assigns its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    /// Stored and hashed truncated to whole microseconds.
    pub recorded_at: DateTime<Utc>,
    /// JSON text, stored and hashed byte for byte (never re-serialized).
    pub payload: String,
    pub metadata: Metadata,
}

/// An event as it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Unique and increasing within an authority; assigned by the database. Not hashed.
    /// On PostgreSQL it may have gaps and, across authorities, does not follow commit order.
    pub global_seq: i64,
    pub authority: String,
    /// 1, 2, 3… per authority, without gaps.
    pub authority_seq: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub recorded_at: DateTime<Utc>,
    pub payload: String,
    pub metadata: Metadata,
    /// Lower-case hex; [`GENESIS_HASH`] for `authority_seq` 1.
    pub prev_hash: String,
    /// Lower-case hex of [`event_hash`].
    pub hash: String,
}

impl StoredEvent {
    /// The event without its place in the log.
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent {
            stream_id: self.stream_id.clone(),
            stream_version: self.stream_version,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            payload: self.payload.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// Recomputes the hash from the fields, for comparison with [`StoredEvent::hash`].
    pub fn expected_hash(&self) -> String {
        hash::HashInput {
            prev_hash: &self.prev_hash,
            authority: &self.authority,
            authority_seq: self.authority_seq,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at: &canonical_recorded_at(self.recorded_at),
            payload: &self.payload,
            metadata: &canonical_metadata(&self.metadata),
        }
        .hash()
    }
}

/// The first answer given to a request carrying an `Idempotency-Key`, kept so a retry gets
/// the same answer and a different request with the same key can be refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// A digest of the request, to tell a retry from a different request with the same key.
    pub request_hash: String,
    /// JSON text.
    pub response: String,
    /// The last event the request produced, if any.
    pub authority_seq: Option<i64>,
}

/// The end of an authority's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// 0 for an empty chain.
    pub authority_seq: i64,
    /// [`GENESIS_HASH`] for an empty chain.
    pub hash: String,
}

impl ChainHead {
    /// The head of an authority with no events.
    pub fn genesis() -> Self {
        ChainHead {
            authority_seq: 0,
            hash: GENESIS_HASH.to_string(),
        }
    }
}

/// The result of recomputing an authority's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifyOutcome {
    /// Every event links to the previous one and hashes to its stored hash. Removing events
    /// at the end of a chain cannot be seen from the log alone: compare `head` with a head
    /// recorded elsewhere.
    Ok { head: ChainHead, events: u64 },
    /// The chain breaks at `authority_seq`: the first position whose event is missing,
    /// moved, changed or wrongly linked. `global_seq` is that of the row found at (or, for
    /// a gap, after) that position.
    Broken {
        authority_seq: i64,
        global_seq: i64,
        reason: String,
    },
}

/// The event log. Writers of different authorities may append concurrently; one authority
/// is meant to have one writer, and a second one gets [`StoreError::Conflict`].
#[async_trait]
pub trait EventStore: Send + Sync {
    /// The last event of the authority's chain, or [`ChainHead::genesis`].
    async fn head(&self, authority: &str) -> Result<ChainHead, StoreError>;

    /// One transaction, one sync: appends `events` (hashing each over its canonical bytes,
    /// chained to the previous event of the same authority, read inside the transaction)
    /// and the `idempotency` records; returns the stored events in order. All or nothing:
    /// a duplicate stream version, authority_seq or idempotency key is
    /// [`StoreError::Conflict`] and nothing is written.
    async fn append(
        &self,
        authority: &str,
        events: Vec<NewEvent>,
        idempotency: Vec<IdempotencyRecord>,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The record stored under `key` for this authority, if any.
    async fn idempotency(
        &self,
        authority: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// At most `limit` events with `authority_seq > after_authority_seq`, ascending (none
    /// when `limit` is not positive).
    /// Replay pages through it, passing the last `authority_seq` it got.
    async fn read(
        &self,
        authority: &str,
        after_authority_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every authority that has at least one event, sorted.
    async fn authorities(&self) -> Result<Vec<String>, StoreError>;

    /// Recomputes the whole chain of the authority from the stored columns. Detects a
    /// changed field, a removed event (a gap), reordered events and a wrong `prev_hash`.
    async fn verify(&self, authority: &str) -> Result<VerifyOutcome, StoreError>;

    /// Stores a snapshot of the state after `authority_seq` (which must not be beyond the
    /// head). Saving twice at the same position replaces it; only the newest
    /// [`SNAPSHOTS_KEPT`] snapshots of an authority are kept.
    async fn save_snapshot(
        &self,
        authority: &str,
        authority_seq: i64,
        state: &[u8],
    ) -> Result<(), StoreError>;

    /// The newest snapshot of the authority: its `authority_seq` and bytes.
    async fn load_snapshot(&self, authority: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError>;

    /// The table of per-applicant data keys kept beside the log (see [`keys`]), if this
    /// store has one. Both real backends do; a test double may not.
    fn data_keys(&self) -> Option<&dyn DataKeyStore> {
        None
    }

    /// Closes the connections (SQLite also checkpoints its WAL). Later calls fail with
    /// [`StoreError::Unavailable`].
    async fn close(&self) {}
}

/// How many snapshots per authority [`EventStore::save_snapshot`] keeps.
pub const SNAPSHOTS_KEPT: i64 = 2;

/// Opens a store and runs its embedded migrations.
///
/// - `postgres://…` or `postgresql://…`: PostgreSQL ([`PgStore`]).
/// - `sqlite://path.db`, `sqlite:path.db`, `sqlite::memory:` or a bare file path: SQLite
///   ([`SqliteStore`]); the file is created if missing.
pub async fn open(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Ok(Arc::new(SqliteStore::open(url).await?))
    }
}

/// An event with its place in the chain and its canonical texts, ready to insert.
pub(crate) struct PreparedEvent {
    pub stored: StoredEvent,
    /// `canonical_recorded_at(stored.recorded_at)`.
    pub recorded_at_text: String,
    /// `canonical_metadata(&stored.metadata)`.
    pub metadata_text: String,
}

/// Chains `events` after `head`: assigns authority_seq, prev_hash and hash. `global_seq` is
/// left at 0 for the backend to fill in.
pub(crate) fn chain_events(
    authority: &str,
    head: &ChainHead,
    events: Vec<NewEvent>,
) -> Vec<PreparedEvent> {
    let mut prev_hash = head.hash.clone();
    let mut authority_seq = head.authority_seq;
    events
        .into_iter()
        .map(|e| {
            authority_seq += 1;
            let recorded_at = truncate_to_micros(e.recorded_at);
            let recorded_at_text = canonical_recorded_at(recorded_at);
            let metadata_text = canonical_metadata(&e.metadata);
            let hash = hash::HashInput {
                prev_hash: &prev_hash,
                authority,
                authority_seq,
                stream_id: &e.stream_id,
                stream_version: e.stream_version,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                recorded_at: &recorded_at_text,
                payload: &e.payload,
                metadata: &metadata_text,
            }
            .hash();
            let stored = StoredEvent {
                global_seq: 0,
                authority: authority.to_string(),
                authority_seq,
                stream_id: e.stream_id,
                stream_version: e.stream_version,
                event_type: e.event_type,
                schema_version: e.schema_version,
                recorded_at,
                payload: e.payload,
                metadata: e.metadata,
                prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
            };
            PreparedEvent {
                stored,
                recorded_at_text,
                metadata_text,
            }
        })
        .collect()
}

/// One stored row with its columns as text, the way `verify` checks it.
pub(crate) struct VerifyRow {
    pub global_seq: i64,
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

/// The running state of a chain check; fed page by page so `verify` never loads a whole chain.
pub(crate) struct ChainChecker {
    authority: String,
    head: ChainHead,
    last_global_seq: i64,
    events: u64,
}

impl ChainChecker {
    pub fn new(authority: &str) -> Self {
        ChainChecker {
            authority: authority.to_string(),
            head: ChainHead::genesis(),
            last_global_seq: i64::MIN,
            events: 0,
        }
    }

    /// The last `authority_seq` checked, to page on from.
    pub fn last_authority_seq(&self) -> i64 {
        self.head.authority_seq
    }

    /// Checks the next row; `Some` is the first break found.
    pub fn check(&mut self, row: &VerifyRow) -> Option<VerifyOutcome> {
        let expected_seq = self.head.authority_seq + 1;
        let broken = |reason: String| {
            Some(VerifyOutcome::Broken {
                authority_seq: expected_seq,
                global_seq: row.global_seq,
                reason,
            })
        };
        if row.authority_seq != expected_seq {
            return broken(format!(
                "gap: expected authority_seq {expected_seq}, found {} (events {expected_seq}..={} missing)",
                row.authority_seq,
                row.authority_seq - 1
            ));
        }
        if row.prev_hash != self.head.hash {
            return broken(format!(
                "prev_hash {} does not match the hash {} of authority_seq {}",
                row.prev_hash, self.head.hash, self.head.authority_seq
            ));
        }
        if row.global_seq <= self.last_global_seq {
            return broken(format!(
                "global_seq {} is not after {} of the previous event: events reordered",
                row.global_seq, self.last_global_seq
            ));
        }
        match serde_json::from_str::<Metadata>(&row.metadata) {
            Ok(metadata) if canonical_metadata(&metadata) == row.metadata => {}
            _ => return broken(format!("metadata is not canonical JSON: {}", row.metadata)),
        }
        let recomputed = hash::HashInput {
            prev_hash: &row.prev_hash,
            authority: &self.authority,
            authority_seq: row.authority_seq,
            stream_id: &row.stream_id,
            stream_version: row.stream_version,
            event_type: &row.event_type,
            schema_version: row.schema_version,
            recorded_at: &row.recorded_at,
            payload: &row.payload,
            metadata: &row.metadata,
        }
        .hash();
        if recomputed != row.hash {
            return broken(format!(
                "content changed: stored hash {} but the fields hash to {recomputed}",
                row.hash
            ));
        }
        self.head = ChainHead {
            authority_seq: row.authority_seq,
            hash: row.hash.clone(),
        };
        self.last_global_seq = row.global_seq;
        self.events += 1;
        None
    }

    pub fn finish(self) -> VerifyOutcome {
        VerifyOutcome::Ok {
            head: self.head,
            events: self.events,
        }
    }
}

/// How many rows `verify` reads per query.
pub(crate) const VERIFY_PAGE_ROWS: i64 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_events_link_and_verify() {
        let events: Vec<NewEvent> = (1..=3)
            .map(|i| NewEvent {
                stream_id: "s".into(),
                stream_version: i,
                event_type: "T".into(),
                schema_version: 1,
                recorded_at: Utc::now(),
                payload: format!("{{\"i\":{i}}}"),
                metadata: Metadata::default(),
            })
            .collect();
        let prepared = chain_events("a", &ChainHead::genesis(), events);
        assert_eq!(prepared[0].stored.prev_hash, GENESIS_HASH);
        assert_eq!(prepared[1].stored.prev_hash, prepared[0].stored.hash);
        assert_eq!(prepared[2].stored.prev_hash, prepared[1].stored.hash);
        let mut checker = ChainChecker::new("a");
        for (i, p) in prepared.iter().enumerate() {
            assert_eq!(p.stored.expected_hash(), p.stored.hash);
            let s = &p.stored;
            let row = VerifyRow {
                global_seq: i as i64 + 1,
                authority_seq: s.authority_seq,
                stream_id: s.stream_id.clone(),
                stream_version: s.stream_version,
                event_type: s.event_type.clone(),
                schema_version: s.schema_version,
                recorded_at: p.recorded_at_text.clone(),
                payload: s.payload.clone(),
                metadata: p.metadata_text.clone(),
                prev_hash: s.prev_hash.clone(),
                hash: s.hash.clone(),
            };
            assert!(checker.check(&row).is_none());
        }
        assert_eq!(
            checker.finish(),
            VerifyOutcome::Ok {
                head: ChainHead {
                    authority_seq: 3,
                    hash: prepared[2].stored.hash.clone()
                },
                events: 3
            }
        );
    }
}

//! Append-only, hash-chained event log on SQLite and PostgreSQL.
//!
//! # Architecture invariants
//!
//! - This crate knows nothing about the queue rules: a payload is an opaque CBOR item plus
//!   an event type string. It does not depend on `ochered-core`.
//! - Every authority has its own chain: `authority_seq` runs 1, 2, 3… without gaps and each
//!   event's hash covers the previous event's hash and the stored record byte for byte (see
//!   [`record`] for the exact bytes; v1 rows of older logs: [`legacy`]).
//! - The idempotency facts of a request (its key's digest, its request hash, the span of its
//!   answer) are inside the hashed record, so `verify` covers them.
//! - The previous hash is read inside the appending transaction, never from a cache; the
//!   unique position `(authority, authority_seq)` and the writer's expected head
//!   ([`EventStore::append_after`]) make a second concurrent writer fail with
//!   [`StoreError::Conflict`] instead of forking the chain or appending behind a writer's
//!   back.
//! - No index over idempotency keys: an authority's single writer keeps every key's
//!   position in memory and decides a key's uniqueness before the commit; the store confirms
//!   a position against the record ([`EventStore::idempotency_at`]).
//! - One committer per database: every append waiting at a moment, of every authority, goes
//!   into one transaction with one disk sync ([`commit`]); that is what makes group commit
//!   cheap, also for many authorities.
//!
//! Open a store with [`open`]; the concrete [`SqliteStore`] and [`PgStore`] expose their
//! pools for tests and tools that need raw SQL.

pub mod backup;
pub mod cbor;
pub mod checkpoint;
pub mod cluster;
mod commit;
mod error;
pub mod heads;
pub mod keys;
pub mod legacy;
mod postgres;
pub mod record;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use heads::{StoredHead, TreeHeadStore};
pub use keys::DataKeyStore;
pub use legacy::{truncate_to_micros, GENESIS_HASH};
pub use postgres::PgStore;
pub use record::{key_digest, Hash, GENESIS};
pub use sqlite::SqliteStore;

/// Who asked for an event and how; part of the hashed record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub actor: Option<String>,
    pub channel: Option<String>,
    pub correlation_id: Option<String>,
}

/// The idempotency facts of a request, recorded on the last event it produced (inside the
/// hashed record: see [`record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    /// [`key_digest`] of the `Idempotency-Key`.
    pub key_digest: Hash,
    /// A digest of the request, to tell a retry from a different request with the same key.
    pub request_hash: Hash,
    /// The answer's reference: the request produced this many events, ending with this one.
    /// 0 on v1 events, whose answers live in the v1 `idempotency` table.
    pub answer_events: u32,
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
    /// One item of deterministic CBOR ([`cbor`]), stored and hashed byte for byte.
    pub payload: Vec<u8>,
    pub metadata: Metadata,
    pub idempotency: Option<Idempotency>,
}

/// How a stored payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadFormat {
    /// A v1 event: JSON text.
    Json,
    /// A v2 event: deterministic CBOR.
    Cbor,
}

/// An event as it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub authority: String,
    /// 1, 2, 3… per authority, without gaps.
    pub authority_seq: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub recorded_at: DateTime<Utc>,
    pub metadata: Metadata,
    pub idempotency: Option<Idempotency>,
    pub format: PayloadFormat,
    /// The hash of the event before it in the log as read ([`GENESIS`] for the first): for
    /// v2 rows the stored hash of the previous row, for v1 rows the stored `prev_hash`.
    pub prev_hash: Hash,
    /// The stored hash.
    pub hash: Hash,
    /// The bytes the hash covers: the v2 record, or the v1 canonical bytes rebuilt from
    /// the v1 columns ([`legacy::canonical_bytes`]).
    pub record: Vec<u8>,
    /// Where the payload lies in `record`.
    pub payload_range: (u32, u32),
}

impl StoredEvent {
    /// The payload's bytes: CBOR ([`PayloadFormat::Cbor`]) or JSON text.
    pub fn payload(&self) -> &[u8] {
        &self.record[self.payload_range.0 as usize..self.payload_range.1 as usize]
    }

    /// Whether the stored hash is the hash of the stored bytes chained to `prev_hash`.
    pub fn hash_is_valid(&self) -> bool {
        match self.format {
            PayloadFormat::Cbor => {
                record::hash(
                    &self.prev_hash,
                    &self.authority,
                    self.authority_seq,
                    &self.record,
                ) == self.hash
            }
            PayloadFormat::Json => {
                use sha2::Digest;
                <[u8; 32]>::from(sha2::Sha256::digest(&self.record)) == self.hash
            }
        }
    }

    /// The stored hash as lower-case hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// What the log says about an earlier request with the same `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyHit {
    /// The request's digest as recorded (zero bytes when a v1 record's is not a digest).
    pub request_hash: Hash,
    /// The events of the first answer: `first_seq..=last_seq`.
    pub first_seq: i64,
    pub last_seq: i64,
}

/// The end of an authority's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// 0 for an empty chain.
    pub authority_seq: i64,
    /// Lower-case hex; [`GENESIS_HASH`] for an empty chain.
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

    /// The head made of a stored event.
    pub fn of(event: &StoredEvent) -> Self {
        ChainHead {
            authority_seq: event.authority_seq,
            hash: event.hash_hex(),
        }
    }
}

/// The result of recomputing an authority's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifyOutcome {
    /// Every event links to the previous one and hashes to its stored hash. Removing events
    /// at the end of a chain cannot be seen from the log alone: compare `head` with a head
    /// recorded elsewhere (a checkpoint).
    Ok { head: ChainHead, events: u64 },
    /// The chain breaks at `authority_seq`: the first position whose event is missing,
    /// moved, changed or wrongly linked.
    Broken { authority_seq: i64, reason: String },
}

/// Checks stored events in order, page by page, from a known head.
pub struct ChainChecker {
    head: ChainHead,
    head_hash: Hash,
    events: u64,
}

impl ChainChecker {
    /// A check that starts after `head` (the genesis head for the whole chain).
    pub fn after(head: &ChainHead) -> Self {
        let head_hash = hex::decode(&head.hash)
            .ok()
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0xff; 32]);
        ChainChecker {
            head: head.clone(),
            head_hash,
            events: 0,
        }
    }

    /// The last `authority_seq` checked, to page on from.
    pub fn last_authority_seq(&self) -> i64 {
        self.head.authority_seq
    }

    /// Checks the next event; `Some` is the first break found.
    pub fn check(&mut self, event: &StoredEvent) -> Option<VerifyOutcome> {
        let expected_seq = self.head.authority_seq + 1;
        let broken = |reason: String| {
            Some(VerifyOutcome::Broken {
                authority_seq: expected_seq,
                reason,
            })
        };
        if event.authority_seq != expected_seq {
            return broken(format!(
                "gap: expected authority_seq {expected_seq}, found {} (events {expected_seq}..={} missing)",
                event.authority_seq,
                event.authority_seq - 1
            ));
        }
        if event.prev_hash != self.head_hash {
            return broken(format!(
                "prev_hash {} does not match the hash {} of authority_seq {}",
                hex::encode(event.prev_hash),
                self.head.hash,
                self.head.authority_seq
            ));
        }
        if !event.hash_is_valid() {
            return broken(format!(
                "content changed: the stored bytes do not hash to the stored hash {}",
                event.hash_hex()
            ));
        }
        self.head_hash = event.hash;
        self.head = ChainHead::of(event);
        self.events += 1;
        None
    }

    /// The outcome when every event was checked.
    pub fn finish(self) -> VerifyOutcome {
        VerifyOutcome::Ok {
            head: self.head,
            events: self.events,
        }
    }
}

/// The event log. Writers of different authorities may append concurrently; one authority
/// is meant to have one writer, and a second one gets [`StoreError::Conflict`].
#[async_trait]
pub trait EventStore: Send + Sync {
    /// The last event of the authority's chain, or [`ChainHead::genesis`].
    async fn head(&self, authority: &str) -> Result<ChainHead, StoreError>;

    /// Appends `events` after the authority's head (read inside the transaction) and returns
    /// them as stored, in order. All or nothing. Concurrent appends of different
    /// authorities are committed together, in one transaction with one sync (one committer
    /// per database): a failure of that transaction fails every one of them. An authority
    /// whose own rows conflict (a duplicate `authority_seq`, or a head that is not `after`:
    /// [`StoreError::Conflict`]) or, in cluster mode, whose fence no longer holds
    /// ([`StoreError::Fenced`]) fails alone, with nothing of it written.
    ///
    /// `after`: the `authority_seq` the writer expects the head to be at; `None` appends
    /// after whatever the head is. The store does not look at idempotency keys: their
    /// uniqueness is the writer's to decide (it knows every key of its authority).
    async fn append_after(
        &self,
        authority: &str,
        after: Option<i64>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Whether [`EventStore::append_with_keys`] stores the new data keys in the same
    /// transaction as the events (SQLite). When false, it stores them first, each durably
    /// on its own, before the events' commit (the default; PostgreSQL, where another node of
    /// a cluster may create or destroy a key).
    fn stores_keys_with_events(&self) -> bool {
        false
    }

    /// [`EventStore::append_after`], storing with the events the new data keys their sealed
    /// values need ([`keys::NewDataKey`]; withdrawn ones are skipped): in the SAME
    /// transaction when [`EventStore::stores_keys_with_events`], so a failed commit stores
    /// neither the keys nor the events and a successful one both; otherwise (this default)
    /// the keys first, durably, then the events. No events: nothing is stored.
    async fn append_with_keys(
        &self,
        authority: &str,
        after: Option<i64>,
        events: Vec<NewEvent>,
        keys: Vec<Arc<keys::NewDataKey>>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if !keys.is_empty() {
            let store = self
                .data_keys()
                .ok_or_else(|| StoreError::Other("this store keeps no data keys".to_owned()))?;
            store.insert_new_keys(&keys).await?;
        }
        self.append_after(authority, after, events).await
    }

    /// [`EventStore::append_after`] the head, whatever it is.
    async fn append(
        &self,
        authority: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.append_after(authority, None, events).await
    }

    /// What the event at `last_seq` records for an earlier request with `key`, if it records
    /// that key: how a writer confirms the position its in-memory key map gives (one read by
    /// position; the map holds only a prefix of each key's digest). A v1 event sends the
    /// question on to the v1 `idempotency` table ([`EventStore::legacy_idempotency`]).
    async fn idempotency_at(
        &self,
        authority: &str,
        key: &str,
        last_seq: i64,
    ) -> Result<Option<IdempotencyHit>, StoreError> {
        if last_seq < 1 {
            return Ok(None);
        }
        let digest = key_digest(key);
        let page = self.read(authority, last_seq - 1, 1).await?;
        let Some(event) = page.first().filter(|e| e.authority_seq == last_seq) else {
            return Ok(None);
        };
        Ok(match event.idempotency {
            Some(i) if i.key_digest == digest && i.answer_events == 0 => {
                return self.legacy_idempotency(authority, key).await
            }
            Some(i) if i.key_digest == digest => Some(IdempotencyHit {
                request_hash: i.request_hash,
                first_seq: last_seq + 1 - i64::from(i.answer_events),
                last_seq,
            }),
            _ => None,
        })
    }

    /// What the log holds for an earlier request of this authority with `key`, found by
    /// reading the whole chain (there is no index over keys): for audits and tests. The
    /// writer asks [`EventStore::idempotency_at`] at the position it keeps in memory.
    async fn idempotency(
        &self,
        authority: &str,
        key: &str,
    ) -> Result<Option<IdempotencyHit>, StoreError> {
        let digest = key_digest(key);
        let mut after = 0;
        loop {
            let page = self.read(authority, after, VERIFY_PAGE_ROWS).await?;
            for event in &page {
                if event.idempotency.is_some_and(|i| i.key_digest == digest) {
                    return self
                        .idempotency_at(authority, key, event.authority_seq)
                        .await;
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == VERIFY_PAGE_ROWS => after = last.authority_seq,
                _ => return Ok(None),
            }
        }
    }

    /// The answer the v1 `idempotency` table of a log written before schema v2 holds for
    /// `key` (a v1 event records the key but not its answer's span). `None` without v1 rows.
    async fn legacy_idempotency(
        &self,
        _authority: &str,
        _key: &str,
    ) -> Result<Option<IdempotencyHit>, StoreError> {
        Ok(None)
    }

    /// At most `limit` events with `authority_seq > after_authority_seq`, ascending (none
    /// when `limit` is not positive). Replay pages through it, passing the last
    /// `authority_seq` it got. Hashes are not recomputed here
    /// ([`StoredEvent::hash_is_valid`] does that).
    async fn read(
        &self,
        authority: &str,
        after_authority_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every authority that has at least one event, sorted.
    async fn authorities(&self) -> Result<Vec<String>, StoreError>;

    /// Recomputes the chain of the authority after `from` (the genesis head: the whole
    /// chain) from the stored bytes. Detects a changed byte, a removed event (a gap),
    /// reordered events and a wrong link, and a chain that does not continue `from`.
    async fn verify_from(
        &self,
        authority: &str,
        from: &ChainHead,
    ) -> Result<VerifyOutcome, StoreError> {
        let mut checker = ChainChecker::after(from);
        loop {
            let after = checker.last_authority_seq();
            let page = match self.read(authority, after, VERIFY_PAGE_ROWS).await {
                Ok(page) => page,
                Err(StoreError::Corrupt(_)) => {
                    // A row that cannot be read back: find it, one event at a time.
                    let mut at = after;
                    loop {
                        match self.read(authority, at, 1).await {
                            Ok(one) if one.is_empty() => return Ok(checker.finish()),
                            Ok(one) => {
                                if let Some(broken) = checker.check(&one[0]) {
                                    return Ok(broken);
                                }
                                at = one[0].authority_seq;
                            }
                            Err(StoreError::Corrupt(reason)) => {
                                return Ok(VerifyOutcome::Broken {
                                    authority_seq: checker.last_authority_seq() + 1,
                                    reason: format!("undecodable event: {reason}"),
                                })
                            }
                            Err(other) => return Err(other),
                        }
                    }
                }
                Err(other) => return Err(other),
            };
            for event in &page {
                if let Some(broken) = checker.check(event) {
                    return Ok(broken);
                }
            }
            if (page.len() as i64) < VERIFY_PAGE_ROWS {
                return Ok(checker.finish());
            }
        }
    }

    /// Recomputes the whole chain of the authority (see [`EventStore::verify_from`]).
    async fn verify(&self, authority: &str) -> Result<VerifyOutcome, StoreError> {
        self.verify_from(authority, &ChainHead::genesis()).await
    }

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

    /// Stores piece `chunk` (from 0) of the snapshot after `authority_seq`, in a short
    /// transaction of its own (the committer waits for one piece at most, never for a whole
    /// snapshot); storing a piece again replaces it. A snapshot's pieces are read only once
    /// [`EventStore::save_snapshot`] has stored its header at the same position, and they are
    /// deleted with it when it is no longer kept.
    async fn save_snapshot_chunk(
        &self,
        authority: &str,
        authority_seq: i64,
        chunk: i64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let _ = (authority, authority_seq, chunk, bytes);
        Err(StoreError::Other(
            "this store keeps no snapshots in pieces".into(),
        ))
    }

    /// Piece `chunk` of the snapshot after `authority_seq`, if stored.
    async fn load_snapshot_chunk(
        &self,
        authority: &str,
        authority_seq: i64,
        chunk: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = (authority, authority_seq, chunk);
        Ok(None)
    }

    /// The table of per-applicant data keys kept beside the log (see [`keys`]), if this
    /// store has one. Both real backends do; a test double may not.
    fn data_keys(&self) -> Option<&dyn DataKeyStore> {
        None
    }

    /// The table of signed tree heads kept beside the log (see [`heads`]), if this store has
    /// one. Both real backends do; a test double may not.
    fn tree_heads(&self) -> Option<&dyn TreeHeadStore> {
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

/// How many events `verify` reads per page.
pub(crate) const VERIFY_PAGE_ROWS: i64 = 10_000;

/// An event encoded for the log, its place in the chain still to be given.
pub(crate) struct Encoded {
    pub event: NewEvent,
    pub record: Vec<u8>,
    /// Where the payload lies in `record`.
    pub payload_range: (u32, u32),
}

/// Encodes each event's record (done by the caller, before the committer takes it).
pub(crate) fn encode_all(events: Vec<NewEvent>) -> Result<Vec<Encoded>, StoreError> {
    events
        .into_iter()
        .map(|mut event| {
            event.recorded_at = truncate_to_micros(event.recorded_at);
            let (record, payload_range) = record::encode_located(&event)?;
            Ok(Encoded {
                event,
                record,
                payload_range,
            })
        })
        .collect()
}

/// Chains encoded events after the head `(authority_seq, hash)`.
pub(crate) fn chain(
    authority: &str,
    head_seq: i64,
    head_hash: Hash,
    events: Vec<Encoded>,
) -> Vec<StoredEvent> {
    let mut prev_hash = head_hash;
    let mut authority_seq = head_seq;
    events
        .into_iter()
        .map(|e| {
            authority_seq += 1;
            let hash = record::hash(&prev_hash, authority, authority_seq, &e.record);
            let stored = StoredEvent {
                authority: authority.to_owned(),
                authority_seq,
                stream_id: e.event.stream_id,
                stream_version: e.event.stream_version,
                event_type: e.event.event_type,
                schema_version: e.event.schema_version,
                recorded_at: e.event.recorded_at,
                metadata: e.event.metadata,
                idempotency: e.event.idempotency,
                format: PayloadFormat::Cbor,
                prev_hash,
                hash,
                record: e.record,
                payload_range: e.payload_range,
            };
            prev_hash = hash;
            stored
        })
        .collect()
}

/// Chains events again after another head: their positions and hashes follow `head_seq`
/// and `head_hash` (a record does not hold its position, so it stays as it is). For a
/// committer whose remembered head turned out stale.
pub(crate) fn rechain(head_seq: i64, head_hash: Hash, events: &mut [StoredEvent]) {
    let mut prev_hash = head_hash;
    let mut authority_seq = head_seq;
    for e in events {
        authority_seq += 1;
        e.authority_seq = authority_seq;
        e.prev_hash = prev_hash;
        e.hash = record::hash(&prev_hash, &e.authority, authority_seq, &e.record);
        prev_hash = e.hash;
    }
}

/// A v2 row read back: decodes its record into a [`StoredEvent`].
pub(crate) fn stored_from_row(
    authority: &str,
    authority_seq: i64,
    record: Vec<u8>,
    hash: &[u8],
    prev_hash: Hash,
) -> Result<StoredEvent, String> {
    let hash: Hash = hash
        .try_into()
        .map_err(|_| format!("event {authority_seq}: the stored hash is not 32 bytes"))?;
    let d = record::decode(&record).map_err(|e| format!("event {authority_seq}: {e}"))?;
    let start = d.payload.as_ptr() as usize - record.as_ptr() as usize;
    let payload_range = (start as u32, (start + d.payload.len()) as u32);
    let event = StoredEvent {
        authority: authority.to_owned(),
        authority_seq,
        stream_id: d.stream_id.to_owned(),
        stream_version: d.stream_version,
        event_type: d.event_type.to_owned(),
        schema_version: d.schema_version,
        recorded_at: d.recorded_at,
        metadata: d.metadata,
        idempotency: d.idempotency,
        format: PayloadFormat::Cbor,
        prev_hash,
        hash,
        record: Vec::new(),
        payload_range,
    };
    Ok(StoredEvent { record, ..event })
}

/// Parses a lower-case hex hash (a [`ChainHead::hash`]).
pub(crate) fn hash_from_hex(text: &str) -> Result<Hash, StoreError> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{text:?} is not a 64-digit hex hash")))
}

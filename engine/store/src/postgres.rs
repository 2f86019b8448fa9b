//! The PostgreSQL event log: a normal connection pool, `synchronous_commit` left on.
//!
//! Appends of every authority meet in the store's committer ([`crate::commit`]): one
//! statement per round, `ochered_append_round` (`migrations/postgres/0007_append_round.sql`),
//! which checks each authority's fence and head and inserts its rows from arrays, in one
//! implicit transaction: one round trip and one commit, whatever the number of authorities
//! and events in the round. The committer chains each append after the head it remembers
//! (one writer per authority); the statement refuses an append whose head is not the log's,
//! and the committer chains it again and resends it, or refuses it if its writer expected
//! another head.
//!
//! # Schema v2 (`migrations/postgres/0003_log_v2.sql`)
//!
//! - `authority_ids (id, name)`: a small integer per authority name.
//! - `log (authority, authority_seq, record, hash)`: one row per event; the primary key
//!   `(authority, authority_seq)` orders each chain (every read is a range of it) and
//!   refuses a second event at one position. `record` is the hashed record
//!   ([`crate::record`]), `hash` its 32-byte chain hash (the previous hash is the previous
//!   row's and is not stored again).
//!   No other index: nothing reads by any other column.
//!
//! # Idempotency keys (`0004_log_without_key_index.sql`)
//!
//! Until migration 0004 a unique index `log_key` on `(authority, key)` (16 bytes of each key's
//! digest) found a retry's record and refused a second use of a key, at the price of one
//! insert at a random place of a B-tree per keyed submission. It is gone, as on SQLite
//! (`src/sqlite/mod.rs`): the digest stays inside the hashed record, the authority's single
//! writer keeps each key's position in memory and decides uniqueness before the commit, and
//! a position is confirmed by primary key ([`EventStore::idempotency_at`]). In cluster mode
//! one node writes an authority at a time (its fence epoch is checked inside the commit's
//! transaction) and a node that takes an authority over replays its log, keys included,
//! before it writes; an append also names the head it expects
//! ([`EventStore::append_after`]), so a writer that missed another's rows is refused.
//!
//! # Snapshots (`0006_snapshot_chunks.sql`)
//!
//! As on SQLite: `snapshots` holds each kept snapshot's header (written last),
//! `snapshot_chunks` its pieces of at most 16 MiB, each inserted in a statement of its own;
//! the primary keys are the only indexes.
//!
//! Schema v1 (`events`, `idempotency`) stays readable: see [`crate::legacy`].

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};

use crate::commit::{Append, Committer, GroupCommit, GroupResult};
use crate::{
    chain, encode_all, hash_from_hex, legacy, rechain, stored_from_row, ChainHead, EventStore,
    Hash, IdempotencyHit, NewEvent, StoreError, StoredEvent, GENESIS, SNAPSHOTS_KEPT,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long `open` waits for the first connection before answering `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a running store waits for a pooled connection (sqlx keeps retrying a refused
/// connection until then) before answering `Unavailable`: short, so that while PostgreSQL
/// is away requests are refused within their timeout instead of queueing behind it.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A bounded range of an authority's v2 chain: see `read_v2`.
const V2_RANGE_SQL: &str = "SELECT authority_seq, record, hash FROM log \
    WHERE authority = $1 AND authority_seq > $2 AND authority_seq <= $3 ORDER BY authority_seq";
const V2_PAGE_SQL: &str = "SELECT authority_seq, record, hash FROM log \
    WHERE authority = $1 AND authority_seq > $2 ORDER BY authority_seq LIMIT $3";

const V1_RANGE_SQL: &str = "SELECT authority_seq, stream_id, stream_version, event_type, \
    schema_version, recorded_at, payload, metadata, prev_hash, hash FROM events \
    WHERE authority = $1 AND authority_seq > $2 AND authority_seq <= $3 ORDER BY authority_seq";
const V1_PAGE_SQL: &str = "SELECT authority_seq, stream_id, stream_version, event_type, \
    schema_version, recorded_at, payload, metadata, prev_hash, hash FROM events \
    WHERE authority = $1 AND authority_seq > $2 ORDER BY authority_seq LIMIT $3";

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PgStore {
    inner: Arc<Inner>,
    committer: Committer,
}

/// What the store and its committer share.
struct Inner {
    pool: PgPool,
    /// Cluster mode ([`crate::cluster`]): the epochs this node holds; appends are fenced.
    fencing: OnceLock<Arc<crate::cluster::Fences>>,
    /// Whether the database holds v1 rows (then reads and heads consult them).
    legacy: bool,
    /// Authority ids already committed.
    ids: Mutex<HashMap<String, i32>>,
    /// Per authority id, the head the committer last wrote or read: one writer per
    /// authority, so it is the log's; `ochered_append_round` checks it all the same.
    heads: Mutex<HashMap<i32, (i64, Hash)>>,
    /// The committer's connection, kept between rounds (see `commit_group`).
    round_conn: tokio::sync::Mutex<Option<PgConnection>>,
}

impl PgStore {
    /// Connects to `postgres://…` and runs the migrations. Tables go into the first schema
    /// of the `search_path` (settable in the URL: `?options[search_path]=name`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad PostgreSQL URL: {e}")))?;
        Self::connect_with(options).await
    }

    /// Like [`PgStore::open`], with options built in code.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        // One plain connection first: a pool would retry a refused connection until its
        // acquire timeout, and an unreachable server should be reported at once.
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "no connection to PostgreSQL within {CONNECT_TIMEOUT:?}"
                ))
            })??;
        MIGRATOR.run(&mut conn).await?;
        let legacy: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events)")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let inner = Arc::new(Inner {
            pool,
            fencing: OnceLock::new(),
            legacy,
            ids: Mutex::new(HashMap::new()),
            heads: Mutex::new(HashMap::new()),
            round_conn: tokio::sync::Mutex::new(None),
        });
        Ok(PgStore {
            committer: Committer::spawn(inner.clone()),
            inner,
        })
    }

    /// Turns on fencing (cluster mode, for good): from now on an append for an authority
    /// succeeds only if this node holds it, at the epoch still recorded in
    /// `authority_owners`; otherwise it fails with [`StoreError::Fenced`] and writes
    /// nothing (the other authorities of the same transaction are not affected). Each
    /// append also notifies [`crate::cluster::NOTIFY_CHANNEL`] at commit.
    pub fn enable_fencing(&self) -> Arc<crate::cluster::Fences> {
        self.inner.fencing.get_or_init(Default::default).clone()
    }

    /// The connection pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
}

async fn authority_id(
    conn: &mut PgConnection,
    inner: &Inner,
    authority: &str,
) -> Result<Option<i32>, StoreError> {
    if let Some(id) = inner.ids.lock().unwrap().get(authority) {
        return Ok(Some(*id));
    }
    let id: Option<i32> = sqlx::query_scalar("SELECT id FROM authority_ids WHERE name = $1")
        .bind(authority)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(id) = id {
        inner.ids.lock().unwrap().insert(authority.to_owned(), id);
    }
    Ok(id)
}

/// The head: the last v2 row, else the last v1 event, else genesis.
async fn head_on(
    conn: &mut PgConnection,
    inner: &Inner,
    authority: &str,
) -> Result<(i64, Hash), StoreError> {
    if let Some(id) = authority_id(conn, inner, authority).await? {
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT authority_seq, hash FROM log WHERE authority = $1 ORDER BY authority_seq DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((seq, hash)) = row {
            let hash: Hash = hash.try_into().map_err(|_| {
                StoreError::Corrupt(format!(
                    "the hash of the head of {authority} is not 32 bytes"
                ))
            })?;
            return Ok((seq, hash));
        }
    }
    if inner.legacy {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT authority_seq, hash FROM events WHERE authority = $1 ORDER BY authority_seq DESC LIMIT 1",
        )
        .bind(authority)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((seq, hash)) = row {
            return Ok((seq, hash_from_hex(&hash)?));
        }
    }
    Ok((0, GENESIS))
}

/// Fetches `(after, after + limit]` first, then completes a short answer open-ended.
///
/// On a table whose statistics are stale (a fresh log filled in one go, exactly a replay
/// benchmark), PostgreSQL may answer `authority_seq > $2 ORDER BY … LIMIT` with a bitmap
/// scan and a sort of every later row, making a replay quadratic. Since the chain has no
/// gaps, the page is first asked for as the bounded range `(after, after + limit]`, which
/// costs O(limit) whatever the plan; only a short answer (the end of the chain, or a gap
/// in a damaged log) is completed with the open-ended query.
async fn fetch_page<
    K: sqlx::Encode<'static, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Clone + Send + 'static,
>(
    pool: &PgPool,
    range_sql: &'static str,
    page_sql: &'static str,
    key: K,
    after: i64,
    limit: i64,
) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
    let mut rows = sqlx::query(range_sql)
        .bind(key.clone())
        .bind(after)
        .bind(after.saturating_add(limit))
        .fetch_all(pool)
        .await?;
    let missing = limit - rows.len() as i64;
    if missing > 0 {
        let last = match rows.last() {
            Some(row) => row.try_get(0)?,
            None => after,
        };
        let rest = sqlx::query(page_sql)
            .bind(key)
            .bind(last)
            .bind(missing)
            .fetch_all(pool)
            .await?;
        rows.extend(rest);
    }
    Ok(rows)
}

fn v1_row(row: &sqlx::postgres::PgRow) -> Result<legacy::VerifyRow, sqlx::Error> {
    let recorded_at: chrono::DateTime<chrono::Utc> = row.try_get(5)?;
    Ok(legacy::VerifyRow {
        authority_seq: row.try_get(0)?,
        stream_id: row.try_get(1)?,
        stream_version: row.try_get(2)?,
        event_type: row.try_get(3)?,
        schema_version: row.try_get(4)?,
        recorded_at: legacy::canonical_recorded_at(recorded_at),
        payload: row.try_get(6)?,
        metadata: row.try_get(7)?,
        prev_hash: row.try_get(8)?,
        hash: row.try_get(9)?,
    })
}

async fn read_on(
    inner: &Inner,
    authority: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = Vec::new();
    let mut prev: Option<Hash> = (after == 0).then_some(GENESIS);
    if inner.legacy {
        let rows = fetch_page(
            &inner.pool,
            V1_RANGE_SQL,
            V1_PAGE_SQL,
            authority.to_owned(),
            after,
            limit,
        )
        .await?;
        for row in &rows {
            let event = legacy::stored_event(authority, v1_row(row)?)
                .map_err(|e| StoreError::Corrupt(format!("v1 event of {authority}: {e}")))?;
            prev = Some(event.hash);
            events.push(event);
        }
        if events.len() as i64 == limit {
            return Ok(events);
        }
        if prev.is_none() {
            let row: Option<(String,)> = sqlx::query_as(
                "SELECT hash FROM events WHERE authority = $1 AND authority_seq = $2",
            )
            .bind(authority)
            .bind(after)
            .fetch_optional(&inner.pool)
            .await?;
            if let Some((hash,)) = row {
                prev = Some(hash_from_hex(&hash)?);
            }
        }
    }
    let mut conn = inner.pool.acquire().await?;
    let Some(id) = authority_id(&mut conn, inner, authority).await? else {
        return Ok(events);
    };
    drop(conn);
    let v2_after = events.last().map_or(after, |e| e.authority_seq);
    if prev.is_none() {
        let hash: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM log WHERE authority = $1 AND authority_seq = $2")
                .bind(id)
                .bind(v2_after)
                .fetch_optional(&inner.pool)
                .await?;
        prev = hash.and_then(|h| h.try_into().ok());
    }
    // A missing previous row: the chain check reports the gap or the wrong link.
    let mut prev = prev.unwrap_or([0xff; 32]);
    let rows = fetch_page(
        &inner.pool,
        V2_RANGE_SQL,
        V2_PAGE_SQL,
        id,
        v2_after,
        limit - events.len() as i64,
    )
    .await?;
    events.reserve(rows.len());
    for row in rows {
        let seq: i64 = row.try_get(0)?;
        let record: Vec<u8> = row.try_get(1)?;
        let hash: &[u8] = row.try_get(2)?;
        let event = stored_from_row(authority, seq, record, hash, prev)
            .map_err(|e| StoreError::Corrupt(format!("{authority}: {e}")))?;
        prev = event.hash;
        events.push(event);
    }
    Ok(events)
}

/// A round of the committer in one statement ([`APPEND_ROUND_SQL`]).
const APPEND_ROUND_SQL: &str = "SELECT status, head_seq, head_hash FROM ochered_append_round(\
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// How many times a round sends again the appends whose remembered head was not the log's
/// (then chained again after the head the log has).
const STALE_HEAD_RETRIES: usize = 3;

/// What `ochered_append_round` answers per append.
type RoundStatus = (i32, Option<i64>, Option<Vec<u8>>);

/// One append of a round, chained after the head it expects, ready to send.
struct Chained {
    /// Its place in the group.
    index: usize,
    id: i32,
    /// The head its rows follow.
    after: i64,
    prev: Hash,
    /// Cluster mode: the epoch this node holds.
    epoch: Option<i64>,
    events: Vec<StoredEvent>,
}

fn head_hash(authority: &str, seq: i64, hash: Option<Vec<u8>>) -> Result<Hash, StoreError> {
    match hash {
        None if seq == 0 => Ok(GENESIS),
        Some(hash) => hash.try_into().map_err(|_| {
            StoreError::Corrupt(format!(
                "the hash of the head of {authority} is not 32 bytes"
            ))
        }),
        None => Err(StoreError::Corrupt(format!(
            "the head of {authority} at {seq} has no hash"
        ))),
    }
}

impl Inner {
    /// The authority's id; a new authority's is created in a statement of its own,
    /// committed at once (ids never change, and an unused one harms nothing).
    async fn id_or_create(
        &self,
        conn: &mut PgConnection,
        authority: &str,
    ) -> Result<i32, StoreError> {
        if let Some(id) = authority_id(conn, self, authority).await? {
            return Ok(id);
        }
        sqlx::query("INSERT INTO authority_ids (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(authority)
            .execute(&mut *conn)
            .await?;
        let id: i32 = sqlx::query_scalar("SELECT id FROM authority_ids WHERE name = $1")
            .bind(authority)
            .fetch_one(&mut *conn)
            .await?;
        self.ids.lock().unwrap().insert(authority.to_owned(), id);
        Ok(id)
    }

    /// The head this committer last wrote (or read) for the authority, else the log's.
    async fn known_head(
        &self,
        conn: &mut PgConnection,
        id: i32,
        authority: &str,
    ) -> Result<(i64, Hash), StoreError> {
        if let Some(head) = self.heads.lock().unwrap().get(&id) {
            return Ok(*head);
        }
        self.read_head(conn, id, authority).await
    }

    /// The log's head, remembered from now on.
    async fn read_head(
        &self,
        conn: &mut PgConnection,
        id: i32,
        authority: &str,
    ) -> Result<(i64, Hash), StoreError> {
        let head = head_on(conn, self, authority).await?;
        self.heads.lock().unwrap().insert(id, head);
        Ok(head)
    }

    /// One round: every append of the group in one statement, one transaction, one commit
    /// (`migrations/postgres/0007_append_round.sql`). Each append is chained here after the
    /// head this committer remembers (one writer per authority: it is the log's), and the
    /// statement checks it, with the fence, inside the transaction; an append whose head
    /// was not the log's is chained again after the log's and sent again, in a round of its
    /// own, unless its writer expected another head ([`StoreError::Conflict`]).
    async fn commit_group(
        &self,
        group: &mut [Append],
    ) -> Result<Vec<Result<Vec<StoredEvent>, StoreError>>, StoreError> {
        // The committer's own connection (only the committer task takes this lock): taken
        // from the pool once and kept, so its prepared statements and the compiled function
        // stay warm. Acquired per round, the pool's idle connections came in turn and each
        // first round on one cost 20-40 ms (docs/PERFORMANCE.md, "PostgreSQL: the round in
        // one statement").
        let mut slot = self.round_conn.lock().await;
        let conn = match &mut *slot {
            Some(conn) => conn,
            None => slot.insert(self.pool.acquire().await?.detach()),
        };
        let result = self.commit_round(conn, group).await;
        if result.is_err() {
            // Whether the statement committed is not known: read every head again, on a
            // fresh connection (this one may be broken).
            self.heads.lock().unwrap().clear();
            *slot = None;
        }
        result
    }

    async fn commit_round(
        &self,
        conn: &mut PgConnection,
        group: &mut [Append],
    ) -> Result<Vec<Result<Vec<StoredEvent>, StoreError>>, StoreError> {
        let mut results: Vec<Option<Result<Vec<StoredEvent>, StoreError>>> =
            group.iter().map(|_| None).collect();
        let mut round = Vec::with_capacity(group.len());
        // Several appends of one authority in a round follow one another.
        let mut round_heads: HashMap<i32, (i64, Hash)> = HashMap::new();
        for (index, append) in group.iter_mut().enumerate() {
            let authority = append.authority.as_str();
            // Cluster mode: the epoch this node took, checked inside the statement.
            let epoch = match self.fencing.get() {
                Some(fences) => match fences.get(authority) {
                    Some(epoch) => Some(epoch),
                    None => {
                        results[index] = Some(Err(StoreError::Fenced(format!(
                            "this node does not hold {authority:?}"
                        ))));
                        continue;
                    }
                },
                None => None,
            };
            let id = self.id_or_create(conn, authority).await?;
            let in_round = round_heads.get(&id).copied();
            let (mut head_seq, mut head_hash) = match in_round {
                Some(head) => head,
                None => self.known_head(conn, id, authority).await?,
            };
            if let Some(after) = append.after.filter(|after| *after != head_seq) {
                if in_round.is_none() {
                    // What this committer remembers may be behind: ask the log first.
                    (head_seq, head_hash) = self.read_head(conn, id, authority).await?;
                }
                if after != head_seq {
                    results[index] = Some(Err(StoreError::Conflict(format!(
                        "{authority}: the writer appends after event {after}, but the log's head is {head_seq} (another writer?)"
                    ))));
                    continue;
                }
            }
            let events = chain(
                authority,
                head_seq,
                head_hash,
                std::mem::take(&mut append.events),
            );
            let end = events
                .last()
                .map_or((head_seq, head_hash), |e| (e.authority_seq, e.hash));
            round_heads.insert(id, end);
            round.push(Chained {
                index,
                id,
                after: head_seq,
                prev: head_hash,
                epoch,
                events,
            });
        }
        for attempt in 0..=STALE_HEAD_RETRIES {
            if round.is_empty() {
                break;
            }
            let statuses = self.send_round(conn, group, &round).await?;
            let mut again = Vec::new();
            // The appends of one authority after the first that missed its head missed it
            // too (they follow its rows): each is chained after the one before.
            let mut again_heads: HashMap<i32, (i64, Hash)> = HashMap::new();
            for (mut c, (status, found_seq, found_hash)) in round.into_iter().zip(statuses) {
                let authority = group[c.index].authority.as_str();
                match status {
                    0 => {
                        if let Some(last) = c.events.last() {
                            let head = (last.authority_seq, last.hash);
                            self.heads.lock().unwrap().insert(c.id, head);
                        }
                        results[c.index] = Some(Ok(c.events));
                    }
                    2 => {
                        let held = c.epoch.unwrap_or_default();
                        results[c.index] = Some(Err(StoreError::Fenced(format!(
                            "{authority:?} was taken over (epoch {found_seq:?}, this writer holds {held})"
                        ))));
                    }
                    _ => {
                        // The log's head is not the one the rows follow (or another
                        // writer's rows took their positions meanwhile).
                        let (seq, hash) = match (again_heads.get(&c.id), found_seq) {
                            (Some(head), _) => *head,
                            (None, Some(seq)) => {
                                let head = (seq, head_hash(authority, seq, found_hash)?);
                                self.heads.lock().unwrap().insert(c.id, head);
                                head
                            }
                            (None, None) => self.read_head(conn, c.id, authority).await?,
                        };
                        again_heads.insert(c.id, (seq, hash));
                        match group[c.index].after {
                            Some(after) if after != seq => {
                                results[c.index] = Some(Err(StoreError::Conflict(format!(
                                    "{authority}: the writer appends after event {after}, but the log's head is {seq} (another writer?)"
                                ))));
                            }
                            _ if attempt == STALE_HEAD_RETRIES => {
                                results[c.index] = Some(Err(StoreError::Conflict(format!(
                                    "{authority}: the log's head kept moving while appending (another writer?)"
                                ))));
                            }
                            _ => {
                                rechain(seq, hash, &mut c.events);
                                c.after = seq;
                                c.prev = hash;
                                if let Some(last) = c.events.last() {
                                    again_heads.insert(c.id, (last.authority_seq, last.hash));
                                }
                                again.push(c);
                            }
                        }
                    }
                }
            }
            round = again;
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every append of a round is answered"))
            .collect())
    }

    /// Sends one round to `ochered_append_round`: one statement, one transaction.
    async fn send_round(
        &self,
        conn: &mut PgConnection,
        group: &[Append],
        round: &[Chained],
    ) -> Result<Vec<RoundStatus>, StoreError> {
        let rows: usize = round.iter().map(|c| c.events.len()).sum();
        let mut seqs = Vec::with_capacity(rows);
        let mut records: Vec<&[u8]> = Vec::with_capacity(rows);
        let mut hashes: Vec<&[u8]> = Vec::with_capacity(rows);
        for e in round.iter().flat_map(|c| &c.events) {
            seqs.push(e.authority_seq);
            records.push(&e.record);
            hashes.push(&e.hash);
        }
        let ids: Vec<i32> = round.iter().map(|c| c.id).collect();
        let names: Vec<&str> = round
            .iter()
            .map(|c| group[c.index].authority.as_str())
            .collect();
        let after: Vec<i64> = round.iter().map(|c| c.after).collect();
        let prev: Vec<&[u8]> = round.iter().map(|c| c.prev.as_slice()).collect();
        let epochs: Vec<Option<i64>> = round.iter().map(|c| c.epoch).collect();
        let counts: Vec<i32> = round.iter().map(|c| c.events.len() as i32).collect();
        // Followers hear of each append at commit (cluster mode only).
        let notify = self.fencing.get().map(|_| crate::cluster::NOTIFY_CHANNEL);
        let statuses: Vec<RoundStatus> = sqlx::query_as(APPEND_ROUND_SQL)
            .bind(&ids)
            .bind(&names)
            .bind(&after)
            .bind(&prev)
            .bind(&epochs)
            .bind(&counts)
            .bind(&seqs)
            .bind(&records)
            .bind(&hashes)
            .bind(self.legacy)
            .bind(notify)
            .fetch_all(&mut *conn)
            .await?;
        if statuses.len() != round.len() {
            return Err(StoreError::Other(format!(
                "ochered_append_round answered {} appends of {}",
                statuses.len(),
                round.len()
            )));
        }
        Ok(statuses)
    }
}

impl GroupCommit for Inner {
    fn commit<'a>(&'a self, group: &'a mut [Append]) -> GroupResult<'a> {
        Box::pin(async move {
            let n = group.len();
            match self.commit_group(group).await {
                Ok(results) => results,
                Err(error) => (0..n).map(|_| Err(error.clone())).collect(),
            }
        })
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn head(&self, authority: &str) -> Result<ChainHead, StoreError> {
        let mut conn = self.inner.pool.acquire().await?;
        let (authority_seq, hash) = head_on(&mut conn, &self.inner, authority).await?;
        Ok(ChainHead {
            authority_seq,
            hash: hex::encode(hash),
        })
    }

    async fn append_after(
        &self,
        authority: &str,
        after: Option<i64>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(fences) = self.inner.fencing.get() {
            if fences.get(authority).is_none() {
                return Err(StoreError::Fenced(format!(
                    "this node does not hold {authority:?}"
                )));
            }
        }
        let encoded = encode_all(events)?;
        self.committer
            .append(authority, after, encoded, Vec::new())
            .await
    }

    async fn legacy_idempotency(
        &self,
        authority: &str,
        key: &str,
    ) -> Result<Option<IdempotencyHit>, StoreError> {
        if !self.inner.legacy {
            return Ok(None);
        }
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT request_hash, response FROM idempotency WHERE authority = $1 AND key = $2",
        )
        .bind(authority)
        .bind(key)
        .fetch_optional(&self.inner.pool)
        .await?;
        match row {
            Some((request_hash, response)) => {
                legacy::idempotency_hit(&request_hash, &response).map(Some)
            }
            None => Ok(None),
        }
    }

    async fn read(
        &self,
        authority: &str,
        after_authority_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        read_on(&self.inner, authority, after_authority_seq, limit).await
    }

    async fn authorities(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = sqlx::query_scalar(
            "SELECT a.name FROM authority_ids a WHERE EXISTS (SELECT 1 FROM log WHERE authority = a.id)",
        )
        .fetch_all(&self.inner.pool)
        .await?;
        if self.inner.legacy {
            // A skip scan over the v1 (authority, authority_seq) index: one probe per authority.
            let v1: Vec<String> = sqlx::query_scalar(
                "WITH RECURSIVE a(authority) AS ( \
                   SELECT MIN(authority) FROM events \
                   UNION ALL \
                   SELECT (SELECT MIN(e.authority) FROM events e WHERE e.authority > a.authority) \
                   FROM a WHERE a.authority IS NOT NULL) \
                 SELECT authority FROM a WHERE authority IS NOT NULL",
            )
            .fetch_all(&self.inner.pool)
            .await?;
            names.extend(v1);
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn save_snapshot(
        &self,
        authority: &str,
        authority_seq: i64,
        state: &[u8],
    ) -> Result<(), StoreError> {
        let mut tx = self.inner.pool.begin().await?;
        let (head_seq, _) = head_on(&mut tx, &self.inner, authority).await?;
        if authority_seq < 0 || authority_seq > head_seq {
            return Err(StoreError::Other(format!(
                "snapshot at authority_seq {authority_seq} of {authority:?} is beyond the head {head_seq}"
            )));
        }
        sqlx::query(
            "INSERT INTO snapshots (authority, authority_seq, state) VALUES ($1, $2, $3) \
             ON CONFLICT (authority, authority_seq) DO UPDATE SET state = excluded.state, created_at = now()",
        )
        .bind(authority)
        .bind(authority_seq)
        .bind(state)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM snapshots WHERE authority = $1 AND authority_seq < \
             (SELECT MIN(authority_seq) FROM (SELECT authority_seq FROM snapshots WHERE authority = $1 \
              ORDER BY authority_seq DESC LIMIT $2) AS newest)",
        )
        .bind(authority)
        .bind(SNAPSHOTS_KEPT)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM snapshot_chunks WHERE authority = $1 AND authority_seq < \
             (SELECT MIN(authority_seq) FROM snapshots WHERE authority = $1)",
        )
        .bind(authority)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn save_snapshot_chunk(
        &self,
        authority: &str,
        authority_seq: i64,
        chunk: i64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshot_chunks (authority, authority_seq, chunk, bytes) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (authority, authority_seq, chunk) DO UPDATE SET bytes = excluded.bytes",
        )
        .bind(authority)
        .bind(authority_seq)
        .bind(chunk as i32)
        .bind(bytes)
        .execute(&self.inner.pool)
        .await?;
        Ok(())
    }

    async fn load_snapshot_chunk(
        &self,
        authority: &str,
        authority_seq: i64,
        chunk: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as(
            "SELECT bytes FROM snapshot_chunks WHERE authority = $1 AND authority_seq = $2 AND chunk = $3",
        )
        .bind(authority)
        .bind(authority_seq)
        .bind(chunk as i32)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.map(|(bytes,)| bytes))
    }

    fn data_keys(&self) -> Option<&dyn crate::DataKeyStore> {
        Some(self)
    }

    fn tree_heads(&self) -> Option<&dyn crate::TreeHeadStore> {
        Some(self)
    }

    async fn load_snapshot(&self, authority: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT authority_seq, state FROM snapshots WHERE authority = $1 ORDER BY authority_seq DESC LIMIT 1",
        )
        .bind(authority)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row)
    }

    async fn close(&self) {
        if let Some(conn) = self.inner.round_conn.lock().await.take() {
            conn.close().await.ok();
        }
        self.inner.pool.close().await;
    }
}

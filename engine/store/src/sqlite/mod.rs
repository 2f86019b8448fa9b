//! The SQLite event log: one file in WAL mode, one writer connection, a few readers.
//!
//! Every write runs on the single writer connection inside `BEGIN IMMEDIATE … COMMIT`, so
//! the write lock is taken before the chain heads are read, and `synchronous=FULL` syncs the
//! WAL once per commit. Appends of every authority meet in the store's committer
//! ([`crate::commit`]): one transaction, one sync per round. sqlx opens the connections and
//! runs the migrations; the queries themselves step prepared statements through the C API
//! (see [`raw`]), one row at a time, which for an embedded database is the fastest way there
//! is.
//!
//! # Schema v2 (`migrations/sqlite/0003_log_v2.sql`)
//!
//! - `authority_ids (id, name)`: a small integer per authority name.
//! - `log (id, record, hash)`: one row per event. `id` is the rowid and packs the
//!   authority's integer id and the event's `authority_seq` as `authority_id << 40 |
//!   authority_seq`, so the table's own B-tree is the index of every read (an authority's
//!   events are one contiguous range of rowids, in chain order) and a duplicate
//!   `(authority, authority_seq)` is a primary-key conflict. `record` is the hashed record
//!   ([`crate::record`]), `hash` its 32-byte chain hash; the previous hash is the previous
//!   row's and is not stored again.
//! - No other index: nothing reads by any other column.
//!
//! # Idempotency keys (`0004_log_without_key_index.sql`)
//!
//! A request's key digest, request hash and answer span are inside its last event's hashed
//! record, and nowhere else. Until migration 0004 a unique index `log_key` over the first
//! 16 bytes of each digest found a retry's record and refused a second use of a key; it
//! took every keyed submission at a random place of a B-tree over random bytes, so once it
//! outgrew the cache nearly every row of a commit dirtied an index page of its own (8 KB
//! written per submission, the limit of group commit). It is gone: the authority's single
//! writer keeps each key's position in memory (`ochered-writer`, rebuilt from the records
//! on replay and kept in snapshots), decides a key's uniqueness before the commit, and
//! confirms a position with one read by rowid ([`EventStore::idempotency_at`]). A second
//! writer of the same authority cannot append behind the first's back: an append names the
//! head it expects ([`EventStore::append_after`]), checked inside the transaction.
//!
//! # Snapshots (`0006_snapshot_chunks.sql`)
//!
//! `snapshots (authority, authority_seq, state)` holds each kept snapshot's header (written
//! last); `snapshot_chunks (authority, authority_seq, chunk, bytes)` its pieces of at most
//! 16 MiB, each stored in a short transaction of its own so that the committer never waits
//! for a whole snapshot. The primary keys are the only indexes: reads are by key.
//!
//! Schema v1 (`events`, `idempotency`) stays readable: a log written before v2 keeps its rows
//! there untouched, reads and `verify` go through them first, and the v2 chain of an
//! authority continues from its last v1 event ([`crate::legacy`]).

mod key_filter;
mod raw;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use self::key_filter::KeyFilter;
use self::raw::{blocking, Db, Stmt};
use crate::commit::{Append, Committer, GroupCommit, GroupResult};
use crate::{
    chain, encode_all, hash_from_hex, legacy, stored_from_row, ChainHead, EventStore, Hash,
    IdempotencyHit, NewEvent, StoreError, StoredEvent, GENESIS, SNAPSHOTS_KEPT,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Bits of a `log.id` that hold the `authority_seq`.
const SEQ_BITS: u32 = 40;
/// The largest `authority_seq` and authority id that fit.
const SEQ_MAX: i64 = (1 << SEQ_BITS) - 1;
const AUTHORITY_ID_MAX: i64 = (1 << (63 - SEQ_BITS)) - 1;

fn row_id(authority_id: i64, authority_seq: i64) -> i64 {
    (authority_id << SEQ_BITS) | authority_seq
}

const V2_HEAD_SQL: &str =
    "SELECT id, hash FROM log WHERE id > ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1";
const V2_READ_SQL: &str =
    "SELECT id, record, hash FROM log WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3";
const V2_HASH_AT_SQL: &str = "SELECT hash FROM log WHERE id = ?1";
const V2_INSERT_SQL: &str = "INSERT INTO log (id, record, hash) VALUES (?1, ?2, ?3)";
const KEY_INSERT_SQL: &str =
    "INSERT INTO data_keys (authority, person, wrapped) VALUES (?1, ?2, ?3) \
     ON CONFLICT (authority, person) DO NOTHING";
const KEY_SELECT_SQL: &str = "SELECT wrapped FROM data_keys WHERE authority = ?1 AND person = ?2";
const AUTHORITY_ID_SQL: &str = "SELECT id FROM authority_ids WHERE name = ?1";
const AUTHORITY_INSERT_SQL: &str = "INSERT INTO authority_ids (name) VALUES (?1)";
const V2_AUTHORITIES_SQL: &str = "SELECT a.name FROM authority_ids a \
    WHERE EXISTS (SELECT 1 FROM log WHERE id > (a.id << 40) AND id <= (a.id << 40) + 1099511627775)";

/// One page of an authority's v1 chain, in `read_v1_row` column order.
const V1_READ_SQL: &str = "SELECT authority_seq, stream_id, stream_version, event_type, \
    schema_version, recorded_at, payload, metadata, prev_hash, hash FROM events \
    WHERE authority = ?1 AND authority_seq > ?2 ORDER BY authority_seq LIMIT ?3";
const V1_HEAD_SQL: &str = "SELECT authority_seq, hash FROM events WHERE authority = ?1 ORDER BY authority_seq DESC LIMIT 1";
const V1_KEY_SQL: &str =
    "SELECT request_hash, response, authority_seq FROM idempotency WHERE authority = ?1 AND key = ?2";
/// A skip scan over the v1 (authority, authority_seq) index: one probe per authority.
const V1_AUTHORITIES_SQL: &str = "WITH RECURSIVE a(authority) AS ( \
      SELECT MIN(authority) FROM events \
      UNION ALL \
      SELECT (SELECT MIN(e.authority) FROM events e WHERE e.authority > a.authority) \
      FROM a WHERE a.authority IS NOT NULL) \
    SELECT authority FROM a WHERE authority IS NOT NULL";

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    inner: Arc<Inner>,
    committer: Committer,
    /// Dropping the sender (with the store, or in `close`) stops the background checkpointer.
    /// With the task itself, awaited by `close` so that every connection is closed when it
    /// returns (a backup or a restore then has the file to itself).
    stop_checkpointer: std::sync::Mutex<Option<Checkpointer>>,
}

/// The background checkpointer: dropping the sender stops the task.
type Checkpointer = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

/// What the store and its committer share.
struct Inner {
    /// Exactly one connection: all writes are serialized here.
    writer: SqlitePool,
    /// Connections for reads; the writer pool itself for an in-memory database, which each
    /// new connection would otherwise see empty.
    reader: SqlitePool,
    /// An in-memory database lives only as long as its connection, which must then never
    /// be closed to recover from an error.
    in_memory: bool,
    /// Whether the file holds v1 rows (then reads and heads consult them).
    legacy: bool,
    /// Authority ids already committed (ids never change once given).
    ids: Mutex<HashMap<String, i64>>,
    /// Who may have a data key: a new applicant's look-up skips the database
    /// ([`key_filter`]).
    key_filter: KeyFilter,
}

/// How often the background task copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies committed WAL frames into the database file every [`CHECKPOINT_EVERY`], on a
/// connection of its own, so the writer does not stall on checkpoints: a checkpoint
/// `PASSIVE` runs alongside the writer and the readers.
fn spawn_checkpointer(mut conn: SqliteConnection) -> Checkpointer {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = ticks.tick() => {
                    if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
                        tracing::debug!(%error, "SQLite background checkpoint failed");
                    }
                }
            }
        }
        conn.close().await.ok();
    });
    (stop, task)
}

/// The writer connection's page cache: 2 MiB (512 pages), against 64 MiB for the readers.
///
/// Every commit walks the writer's whole page cache when a B-tree page split reordered
/// pages in the transaction: SQLite swaps two pages' numbers through the pending-byte
/// page's number (`balance_nonroot`), which raises the cache's highest page number far past
/// the database's end, and the commit's truncation to the database's size
/// (`pcache1TruncateUnsafe`) then visits every hash bucket and page. Random inserts into
/// the data-key table (a new applicant's key, stored with the first event) split pages in
/// the middle of the tree in most commits: with 64 MiB the walk (16,000 pages) was 8% of
/// the CPU of a national first minute with contacts and doubled its commit latency
/// (docs/PERFORMANCE.md, "Contacts: the page-cache walk"). The writer's appends touch the
/// right edge of the log and a path through the key table; the pages they miss come from
/// the operating system's cache.
///
/// `OCHERED_SQLITE_WRITER_CACHE_KIB` in the environment sets another size (in KiB), for
/// measuring one against the other with the same binary.
const WRITER_CACHE_KIB: u32 = 2048;

/// [`WRITER_CACHE_KIB`], or the environment's `OCHERED_SQLITE_WRITER_CACHE_KIB`, as the
/// `cache_size` pragma's value (negative: KiB).
fn writer_cache_size() -> String {
    let kib = std::env::var("OCHERED_SQLITE_WRITER_CACHE_KIB")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&kib| kib > 0)
        .unwrap_or(WRITER_CACHE_KIB);
    format!("-{kib}")
}

impl SqliteStore {
    /// Opens (creating if missing) `sqlite://path.db`, `sqlite:path.db`, `sqlite::memory:`
    /// or a bare file path, and runs the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Other(format!("bad SQLite URL {url:?}: {e}")))?
        } else if url == ":memory:" {
            SqliteConnectOptions::from_str("sqlite::memory:")
                .map_err(|e| StoreError::Other(e.to_string()))?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let base = options
            .create_if_missing(true)
            .foreign_keys(false)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-65536")
            // Deleted rows (destroyed data keys, see `crate::keys`) are overwritten with
            // zeros rather than left in free space.
            .pragma("secure_delete", "ON");
        let writer_options = if in_memory {
            base.clone()
        } else {
            // The background checkpointer keeps the WAL short; the writer checkpoints
            // itself only if that falls far behind (80 MB), and trims the WAL file to 64 MB
            // when it restarts it.
            base.clone()
                .journal_mode(SqliteJournalMode::Wal)
                .pragma("wal_autocheckpoint", "20000")
                .pragma("journal_size_limit", "67108864")
                .pragma("cache_size", writer_cache_size())
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(writer_options)
            .await?;
        MIGRATOR.run(&writer).await?;
        let legacy: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events)")
            .fetch_one(&writer)
            .await?;
        let (reader, checkpointer) = if in_memory {
            (writer.clone(), None)
        } else {
            let checkpointer = spawn_checkpointer(base.clone().connect().await?);
            let reader = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(base)
                .await?;
            (reader, Some(checkpointer))
        };
        let inner = Arc::new(Inner {
            writer,
            reader,
            in_memory,
            legacy,
            ids: Mutex::new(HashMap::new()),
            key_filter: KeyFilter::default(),
        });
        if in_memory {
            // One connection, and at most a few keys (the database is as old as the process).
            fill_key_filter(inner.clone()).await;
        } else {
            // A file's keys are read in the background; until then look-ups read the file.
            tokio::spawn(fill_key_filter(inner.clone()));
        }
        Ok(SqliteStore {
            committer: Committer::spawn(inner.clone()),
            inner,
            stop_checkpointer: std::sync::Mutex::new(checkpointer),
        })
    }

    /// The writer pool (one connection), for tests and tools that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.writer
    }

    /// The baseline of the benchmarks: `n` plain log rows (an integer key, one unique
    /// index on (authority, seq), a 32-byte binary hash and `payload`) inserted in one
    /// transaction with one sync, through the same C API as the log. Rows are numbered from
    /// `first`; the table `plain_rows` is created if needed.
    #[cfg(feature = "testing")]
    pub async fn insert_plain_rows(
        &self,
        first: i64,
        n: usize,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        self.inner
            .with_write_transaction(|db| {
                db.exec(
                    "CREATE TABLE IF NOT EXISTS plain_rows (id INTEGER PRIMARY KEY, \
                     authority INTEGER NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL, \
                     hash BLOB NOT NULL, UNIQUE (authority, seq))",
                )?;
                let mut stmt = db.prepare(
                    "INSERT INTO plain_rows (authority, seq, payload, hash) VALUES (1, ?1, ?2, ?3)",
                )?;
                stmt.bind_blob(2, payload)?;
                for seq in first..first + n as i64 {
                    let hash = crate::record::hash(&GENESIS, "plain", seq, payload);
                    stmt.bind_i64(1, seq)?;
                    stmt.bind_blob_transient(3, &hash)?;
                    stmt.run()?;
                }
                Ok(())
            })
            .await
    }

    /// Stores each candidate's wrapped key unless its person has one, and reads back every
    /// person's stored key, in ONE write transaction (one sync) stepped through the C API:
    /// a group of a thousand first submissions with contacts costs milliseconds here, not
    /// the tens of milliseconds that a statement per row through sqlx's worker took while
    /// holding the only writer connection (which the log's committer waits for).
    pub(crate) async fn store_data_keys(
        &self,
        candidates: &[crate::keys::KeyCandidate<'_>],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner
            .with_write_transaction(|db| {
                let mut insert = db.prepare(KEY_INSERT_SQL)?;
                for c in candidates {
                    self.inner.key_filter.add(c.authority, c.person);
                    insert.bind_text(1, c.authority)?;
                    insert.bind_text(2, c.person)?;
                    insert.bind_blob(3, c.wrapped)?;
                    insert.run()?;
                }
                drop(insert);
                let mut select = db.prepare(KEY_SELECT_SQL)?;
                let mut stored = Vec::with_capacity(candidates.len());
                for c in candidates {
                    select.bind_text(1, c.authority)?;
                    select.bind_text(2, c.person)?;
                    if !select.step()? {
                        return Err(StoreError::Other(format!(
                            "the data key of {} vanished inside its own transaction",
                            c.person
                        )));
                    }
                    stored.push(select.column_blob(0).to_vec());
                    select.reset();
                }
                Ok(stored)
            })
            .await
    }

    /// Stores the new keys that are not withdrawn (each only if its person has none) in one
    /// write transaction ([`crate::keys::DataKeyStore::insert_new_keys`]).
    pub(crate) async fn insert_data_keys(
        &self,
        keys: &[Arc<crate::keys::NewDataKey>],
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.inner
            .with_write_transaction(|db| insert_new_keys(db, &self.inner.key_filter, keys))
            .await
    }

    /// The person's wrapped data key, read on a reader connection through the C API; `None`
    /// at once for a person the [`key_filter`] knows has none.
    pub(crate) async fn read_data_key(
        &self,
        authority: &str,
        person: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.inner.key_filter.may_have(authority, person) {
            return Ok(None);
        }
        self.inner
            .with_reader(|db| {
                let mut select = db.prepare(KEY_SELECT_SQL)?;
                select.bind_text(1, authority)?;
                select.bind_text(2, person)?;
                Ok(select.step()?.then(|| select.column_blob(0).to_vec()))
            })
            .await
    }

    /// Whether the data keys the file held when it was opened have been read into the
    /// [`key_filter`] (until then every key look-up reads the database).
    pub fn key_filter_ready(&self) -> bool {
        self.inner.key_filter.ready()
    }

    /// Whether the file holds v1 rows (read beside the v2 log).
    pub fn has_v1_rows(&self) -> bool {
        self.inner.legacy
    }
}

/// Reads the fingerprint of every data key in the file into the [`key_filter`] (on a reader
/// connection, one snapshot), then lets the filter answer. On an error the filter stays
/// unready: look-ups keep reading the database.
async fn fill_key_filter(inner: Arc<Inner>) {
    let started = std::time::Instant::now();
    let scanned = inner
        .with_reader(|db| {
            let mut select = db.prepare("SELECT authority, person FROM data_keys")?;
            let mut prints = Vec::new();
            while select.step()? {
                let authority = select.column_text(0).map_err(corrupt)?;
                let person = select.column_text(1).map_err(corrupt)?;
                prints.push(key_filter::fingerprint(authority, person));
            }
            Ok(prints)
        })
        .await;
    match scanned {
        Ok(prints) => {
            let people = prints.len();
            inner.key_filter.fill(prints);
            tracing::debug!(
                people,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "data-key filter ready"
            );
        }
        Err(_) if inner.reader.is_closed() => {}
        Err(error) => {
            tracing::warn!(%error, "could not read the data keys into the key filter; every key look-up reads the database");
        }
    }
}

impl Inner {
    /// Runs `work` on a reader connection, locked for the C API.
    async fn with_reader<T>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let mut locked = conn.lock_handle().await?;
        let db = Db::new(&mut locked);
        blocking(|| work(&db))
    }

    /// Runs `work` in a write transaction on the writer connection.
    async fn with_write_transaction<T>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer.acquire().await?;
        let (result, stuck) = {
            let mut locked = conn.lock_handle().await?;
            let db = Db::new(&mut locked);
            blocking(|| db.write_transaction(work))
        };
        if stuck && !self.in_memory {
            // Closing the connection makes SQLite roll back; the pool opens a fresh one.
            tracing::warn!("SQLite writer connection stuck in a transaction; closing it");
            conn.close_on_drop();
        }
        result
    }

    fn cached_id(&self, authority: &str) -> Option<i64> {
        self.ids.lock().unwrap().get(authority).copied()
    }
}

/// Closes `pool` once every connection is back in it, so that none outlives the store.
///
/// sqlx's `Pool::close` waits for the connections in use, but one that is being handed
/// back while it waits is pinged, put among the idle ones after `close` has taken them, and
/// then stays open until the pool itself is dropped. A backup that turns its copy into one
/// file right after closing the store it signed it with was refused ("database is locked").
async fn close_pool(pool: &SqlitePool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pool.size() as usize > pool.num_idle() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    pool.close().await;
}

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt(message)
}

/// The authority's integer id, if it has one.
fn authority_id_on(db: &Db, inner: &Inner, authority: &str) -> Result<Option<i64>, StoreError> {
    if let Some(id) = inner.cached_id(authority) {
        return Ok(Some(id));
    }
    let mut stmt = db.prepare(AUTHORITY_ID_SQL)?;
    stmt.bind_text(1, authority)?;
    Ok(if stmt.step()? {
        Some(stmt.column_i64(0))
    } else {
        None
    })
}

/// The last v1 event of the authority: (authority_seq, hash).
fn v1_head_on(db: &Db, authority: &str) -> Result<Option<(i64, Hash)>, StoreError> {
    let mut stmt = db.prepare(V1_HEAD_SQL)?;
    stmt.bind_text(1, authority)?;
    if !stmt.step()? {
        return Ok(None);
    }
    let seq = stmt.column_i64(0);
    let hash = hash_from_hex(stmt.column_text(1).map_err(corrupt)?)?;
    Ok(Some((seq, hash)))
}

/// The head: the last v2 row, else the last v1 event, else genesis.
fn head_on(db: &Db, inner: &Inner, authority: &str) -> Result<(i64, Hash), StoreError> {
    if let Some(id) = authority_id_on(db, inner, authority)? {
        let mut stmt = db.prepare(V2_HEAD_SQL)?;
        stmt.bind_i64(1, row_id(id, 0))?;
        stmt.bind_i64(2, row_id(id, SEQ_MAX))?;
        if stmt.step()? {
            let hash: Hash = stmt.column_blob(1).try_into().map_err(|_| {
                corrupt(format!(
                    "the hash of the head of {authority} is not 32 bytes"
                ))
            })?;
            return Ok((stmt.column_i64(0) & SEQ_MAX, hash));
        }
    }
    if inner.legacy {
        if let Some(head) = v1_head_on(db, authority)? {
            return Ok(head);
        }
    }
    Ok((0, GENESIS))
}

fn read_v1_row(row: &Stmt) -> Result<legacy::VerifyRow, String> {
    Ok(legacy::VerifyRow {
        authority_seq: row.column_i64(0),
        stream_id: row.column_string(1)?,
        stream_version: row.column_i64(2),
        event_type: row.column_string(3)?,
        schema_version: i32::try_from(row.column_i64(4))
            .map_err(|e| format!("schema_version: {e}"))?,
        recorded_at: row.column_string(5)?,
        payload: row.column_string(6)?,
        metadata: row.column_string(7)?,
        prev_hash: row.column_string(8)?,
        hash: row.column_string(9)?,
    })
}

/// Up to `limit` events after `after`: v1 rows first (on a legacy file), then v2 rows.
fn read_on(
    db: &Db,
    inner: &Inner,
    authority: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = Vec::with_capacity(limit.clamp(0, 20_000) as usize);
    // The hash of the event at `after`, the previous hash of the first v2 row read.
    let mut prev: Option<Hash> = (after == 0).then_some(GENESIS);
    if inner.legacy {
        let mut stmt = db.prepare(V1_READ_SQL)?;
        stmt.bind_text(1, authority)?;
        stmt.bind_i64(2, after)?;
        stmt.bind_i64(3, limit)?;
        while stmt.step()? {
            let row = read_v1_row(&stmt).map_err(corrupt)?;
            let event = legacy::stored_event(authority, row)
                .map_err(|e| corrupt(format!("v1 event of {authority}: {e}")))?;
            prev = Some(event.hash);
            events.push(event);
        }
        if events.len() as i64 == limit {
            return Ok(events);
        }
        if prev.is_none() {
            // `after` may be the last v1 event, whose hash the first v2 row chains to.
            if let Some((seq, hash)) = v1_head_on(db, authority)? {
                if seq == after {
                    prev = Some(hash);
                }
            }
        }
    }
    let Some(id) = authority_id_on(db, inner, authority)? else {
        return Ok(events);
    };
    let v2_after = events.last().map_or(after, |e| e.authority_seq);
    if prev.is_none() {
        let mut stmt = db.prepare(V2_HASH_AT_SQL)?;
        stmt.bind_i64(1, row_id(id, v2_after))?;
        if stmt.step()? {
            prev = stmt.column_blob(0).try_into().ok();
        }
    }
    // A missing previous row: the chain check reports the gap or the wrong link.
    let mut prev = prev.unwrap_or([0xff; 32]);
    let mut stmt = db.prepare(V2_READ_SQL)?;
    stmt.bind_i64(1, row_id(id, v2_after))?;
    stmt.bind_i64(2, row_id(id, SEQ_MAX))?;
    stmt.bind_i64(3, limit - events.len() as i64)?;
    while stmt.step()? {
        let seq = stmt.column_i64(0) & SEQ_MAX;
        let event = stored_from_row(
            authority,
            seq,
            stmt.column_blob(1).to_vec(),
            stmt.column_blob(2),
            prev,
        )
        .map_err(|e| corrupt(format!("{authority}: {e}")))?;
        prev = event.hash;
        events.push(event);
    }
    Ok(events)
}

/// One append inside the group's transaction: gives the authority an id if it has none,
/// chains the events after the head and inserts them.
fn append_on(
    db: &Db,
    inner: &Inner,
    append: &mut Append,
    new_ids: &mut Vec<(String, i64)>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let authority = append.authority.as_str();
    let id = match authority_id_on(db, inner, authority)? {
        Some(id) => id,
        None => {
            let mut stmt = db.prepare(AUTHORITY_INSERT_SQL)?;
            stmt.bind_text(1, authority)?;
            stmt.run()?;
            let id = db.last_insert_rowid();
            if id > AUTHORITY_ID_MAX {
                return Err(StoreError::Other(format!(
                    "too many authorities: id {id} does not fit"
                )));
            }
            new_ids.push((authority.to_owned(), id));
            id
        }
    };
    let (head_seq, head_hash) = head_on(db, inner, authority)?;
    if let Some(after) = append.after.filter(|after| *after != head_seq) {
        return Err(StoreError::Conflict(format!(
            "{authority}: the writer appends after event {after}, but the log's head is {head_seq} (another writer?)"
        )));
    }
    let stored = chain(
        authority,
        head_seq,
        head_hash,
        std::mem::take(&mut append.events),
    );
    if stored.last().is_some_and(|e| e.authority_seq > SEQ_MAX) {
        return Err(StoreError::Other(format!(
            "{authority}: authority_seq beyond {SEQ_MAX}"
        )));
    }
    {
        // One row per statement run: a multi-row INSERT was tried and costs more, because a
        // statement that may fail after its first row needs a statement journal (a copy of
        // every page it changes), which a single-row INSERT does without.
        let mut stmt = db.prepare(V2_INSERT_SQL)?;
        for e in &stored {
            bind_log_row(&mut stmt, id, e)?;
            stmt.run()?;
        }
    }
    insert_new_keys(db, &inner.key_filter, &append.keys)?;
    Ok(stored)
}

/// Inserts the new data keys that travel with an append, in its transaction (its savepoint
/// in a group): a person who has a key keeps it (`DO NOTHING`: the same key carried by
/// several commands, or one stored meanwhile). A withdrawn key (an erasure came first) is
/// skipped; the flag is read here, holding the only writer connection, which the erasure's
/// `DELETE` needs too ([`crate::keys::NewDataKey`]).
fn insert_new_keys(
    db: &Db,
    filter: &KeyFilter,
    keys: &[Arc<crate::keys::NewDataKey>],
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut insert = db.prepare(KEY_INSERT_SQL)?;
    let mut seen: Option<&Arc<crate::keys::NewDataKey>> = None;
    for key in keys {
        // Commands of one person come in a row and share one candidate: insert it once.
        if seen.is_some_and(|s| Arc::ptr_eq(s, key)) || key.is_withdrawn() {
            continue;
        }
        filter.add(&key.authority, &key.person);
        insert.bind_text(1, &key.authority)?;
        insert.bind_text(2, &key.person)?;
        insert.bind_blob(3, &key.wrapped)?;
        insert.run()?;
        seen = Some(key);
    }
    Ok(())
}

/// Binds one log row to [`V2_INSERT_SQL`] (id, record, hash), without copies.
fn bind_log_row<'data>(
    stmt: &mut Stmt<'_, 'data>,
    authority_id: i64,
    e: &'data StoredEvent,
) -> Result<(), StoreError> {
    stmt.bind_i64(1, row_id(authority_id, e.authority_seq))?;
    stmt.bind_blob(2, &e.record)?;
    stmt.bind_blob(3, &e.hash)?;
    Ok(())
}

impl GroupCommit for Inner {
    fn commit<'a>(&'a self, group: &'a mut [Append]) -> GroupResult<'a> {
        Box::pin(async move {
            let mut new_ids = Vec::new();
            let result = self
                .with_write_transaction(|db| {
                    if let [append] = &mut *group {
                        // One append alone needs no savepoint (each page it changes would be
                        // copied to the savepoint's journal): a conflict rolls the whole
                        // transaction back, which undoes the same rows.
                        return match append_on(db, self, append, &mut new_ids) {
                            Ok(stored) => Ok(vec![Ok(stored)]),
                            Err(error) => Err(error),
                        };
                    }
                    let mut results = Vec::with_capacity(group.len());
                    for append in group.iter_mut() {
                        db.exec("SAVEPOINT append")?;
                        let ids_before = new_ids.len();
                        match append_on(db, self, append, &mut new_ids) {
                            Ok(stored) => {
                                db.exec("RELEASE append")?;
                                results.push(Ok(stored));
                            }
                            Err(error @ StoreError::Conflict(_)) => {
                                // Only this authority's rows are undone.
                                db.exec("ROLLBACK TO append")?;
                                db.exec("RELEASE append")?;
                                new_ids.truncate(ids_before);
                                results.push(Err(error));
                            }
                            Err(error) => return Err(error),
                        }
                    }
                    Ok(results)
                })
                .await;
            match result {
                Ok(results) => {
                    self.ids.lock().unwrap().extend(new_ids);
                    results
                }
                Err(error) => group.iter().map(|_| Err(error.clone())).collect(),
            }
        })
    }
}

fn save_snapshot_on(
    db: &Db,
    inner: &Inner,
    authority: &str,
    authority_seq: i64,
    state: &[u8],
) -> Result<(), StoreError> {
    let (head_seq, _) = head_on(db, inner, authority)?;
    if authority_seq < 0 || authority_seq > head_seq {
        return Err(StoreError::Other(format!(
            "snapshot at authority_seq {authority_seq} of {authority:?} is beyond the head {head_seq}"
        )));
    }
    let created_at = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let mut stmt = db.prepare(
        "INSERT INTO snapshots (authority, authority_seq, state, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (authority, authority_seq) DO UPDATE SET state = excluded.state, created_at = excluded.created_at",
    )?;
    stmt.bind_text(1, authority)?;
    stmt.bind_i64(2, authority_seq)?;
    stmt.bind_blob(3, state)?;
    stmt.bind_text(4, &created_at)?;
    stmt.run()?;
    let mut stmt = db.prepare(
        "DELETE FROM snapshots WHERE authority = ?1 AND authority_seq < \
         (SELECT MIN(authority_seq) FROM (SELECT authority_seq FROM snapshots WHERE authority = ?1 \
          ORDER BY authority_seq DESC LIMIT ?2))",
    )?;
    stmt.bind_text(1, authority)?;
    stmt.bind_i64(2, SNAPSHOTS_KEPT)?;
    stmt.run()?;
    let mut stmt = db.prepare(
        "DELETE FROM snapshot_chunks WHERE authority = ?1 AND authority_seq < \
         (SELECT MIN(authority_seq) FROM snapshots WHERE authority = ?1)",
    )?;
    stmt.bind_text(1, authority)?;
    stmt.run()?;
    Ok(())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn head(&self, authority: &str) -> Result<ChainHead, StoreError> {
        let inner = &self.inner;
        let (authority_seq, hash) = inner
            .with_reader(|db| head_on(db, inner, authority))
            .await?;
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
        self.append_with_keys(authority, after, events, Vec::new())
            .await
    }

    fn stores_keys_with_events(&self) -> bool {
        true
    }

    /// The keys go to the committer with the events and are inserted in the append's own
    /// savepoint of the group's transaction ([`append_on`]): one commit, one sync for both.
    async fn append_with_keys(
        &self,
        authority: &str,
        after: Option<i64>,
        events: Vec<NewEvent>,
        keys: Vec<Arc<crate::keys::NewDataKey>>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = encode_all(events)?;
        self.committer.append(authority, after, encoded, keys).await
    }

    async fn legacy_idempotency(
        &self,
        authority: &str,
        key: &str,
    ) -> Result<Option<IdempotencyHit>, StoreError> {
        let inner = &self.inner;
        if !inner.legacy {
            return Ok(None);
        }
        inner
            .with_reader(|db| {
                let mut stmt = db.prepare(V1_KEY_SQL)?;
                stmt.bind_text(1, authority)?;
                stmt.bind_text(2, key)?;
                if stmt.step()? {
                    let request_hash = stmt.column_text(0).map_err(corrupt)?;
                    let response = stmt.column_text(1).map_err(corrupt)?;
                    return legacy::idempotency_hit(request_hash, response).map(Some);
                }
                Ok(None)
            })
            .await
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
        let inner = &self.inner;
        inner
            .with_reader(|db| read_on(db, inner, authority, after_authority_seq, limit))
            .await
    }

    async fn authorities(&self) -> Result<Vec<String>, StoreError> {
        let inner = &self.inner;
        let mut names = inner
            .with_reader(|db| {
                let mut names = Vec::new();
                let mut stmt = db.prepare(V2_AUTHORITIES_SQL)?;
                while stmt.step()? {
                    names.push(stmt.column_string(0).map_err(corrupt)?);
                }
                drop(stmt);
                if inner.legacy {
                    let mut stmt = db.prepare(V1_AUTHORITIES_SQL)?;
                    while stmt.step()? {
                        names.push(stmt.column_string(0).map_err(corrupt)?);
                    }
                }
                Ok(names)
            })
            .await?;
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
        let inner = &self.inner;
        inner
            .with_write_transaction(|db| {
                save_snapshot_on(db, inner, authority, authority_seq, state)
            })
            .await
    }

    async fn save_snapshot_chunk(
        &self,
        authority: &str,
        authority_seq: i64,
        chunk: i64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.inner
            .with_write_transaction(|db| {
                let mut stmt = db.prepare(
                    "INSERT INTO snapshot_chunks (authority, authority_seq, chunk, bytes) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (authority, authority_seq, chunk) DO UPDATE SET bytes = excluded.bytes",
                )?;
                stmt.bind_text(1, authority)?;
                stmt.bind_i64(2, authority_seq)?;
                stmt.bind_i64(3, chunk)?;
                stmt.bind_blob(4, bytes)?;
                stmt.run()?;
                Ok(())
            })
            .await
    }

    async fn load_snapshot_chunk(
        &self,
        authority: &str,
        authority_seq: i64,
        chunk: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner
            .with_reader(|db| {
                let mut stmt = db.prepare(
                    "SELECT bytes FROM snapshot_chunks WHERE authority = ?1 AND authority_seq = ?2 AND chunk = ?3",
                )?;
                stmt.bind_text(1, authority)?;
                stmt.bind_i64(2, authority_seq)?;
                stmt.bind_i64(3, chunk)?;
                if !stmt.step()? {
                    return Ok(None);
                }
                Ok(Some(stmt.column_blob(0).to_vec()))
            })
            .await
    }

    fn data_keys(&self) -> Option<&dyn crate::DataKeyStore> {
        Some(self)
    }

    fn tree_heads(&self) -> Option<&dyn crate::TreeHeadStore> {
        Some(self)
    }

    async fn load_snapshot(&self, authority: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        self.inner
            .with_reader(|db| {
                let mut stmt = db.prepare(
                    "SELECT authority_seq, state FROM snapshots WHERE authority = ?1 ORDER BY authority_seq DESC LIMIT 1",
                )?;
                stmt.bind_text(1, authority)?;
                if !stmt.step()? {
                    return Ok(None);
                }
                Ok(Some((stmt.column_i64(0), stmt.column_blob(1).to_vec())))
            })
            .await
    }

    async fn close(&self) {
        let checkpointer = self
            .stop_checkpointer
            .lock()
            .ok()
            .and_then(|mut c| c.take());
        if let Some((stop, task)) = checkpointer {
            drop(stop);
            let _ = task.await;
        }
        if !self.inner.in_memory {
            close_pool(&self.inner.reader).await;
        }
        if let Ok(mut conn) = self.inner.writer.acquire().await {
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await
            {
                tracing::warn!(%error, "SQLite WAL checkpoint on close failed");
            }
            // Closed here, not handed back: see `close_pool`.
            if let Err(error) = conn.close().await {
                tracing::warn!(%error, "closing the SQLite writer connection failed");
            }
        }
        close_pool(&self.inner.writer).await;
    }
}

//! The SQLite event log: one file in WAL mode, one writer connection, a few readers.
//!
//! Every write runs on the single writer connection inside `BEGIN IMMEDIATE … COMMIT`, so
//! the write lock is taken before the chain head is read, and `synchronous=FULL` syncs the
//! WAL once per commit. sqlx opens the connections and runs the migrations; the queries
//! themselves step prepared statements through the C API (see [`raw`]), one row at a time,
//! which for an embedded database is the fastest way there is.

mod raw;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use self::raw::{blocking, Db, Stmt};
use crate::{
    chain_events, ChainChecker, ChainHead, EventStore, IdempotencyRecord, Metadata, NewEvent,
    PreparedEvent, StoreError, StoredEvent, VerifyOutcome, VerifyRow, SNAPSHOTS_KEPT,
    VERIFY_PAGE_ROWS,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// One page of an authority's chain, in `read_event` / `read_verify_row` column order.
const READ_PAGE_SQL: &str =
    "SELECT global_seq, authority_seq, stream_id, stream_version, event_type, \
    schema_version, recorded_at, payload, metadata, prev_hash, hash FROM events \
    WHERE authority = ?1 AND authority_seq > ?2 ORDER BY authority_seq LIMIT ?3";

const HEAD_SQL: &str = "SELECT authority_seq, hash FROM events WHERE authority = ?1 ORDER BY authority_seq DESC LIMIT 1";

const INSERT_EVENT_SQL: &str =
    "INSERT INTO events (authority, authority_seq, stream_id, stream_version, \
    event_type, schema_version, recorded_at, payload, metadata, prev_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// `created_at` is bound once per transaction (one time for the whole batch, as PostgreSQL's
/// `now()` gives), in the format of the column's default: SQLite evaluating that default's `strftime` for
/// every row cost about 5% of a batch append.
const INSERT_IDEMPOTENCY_SQL: &str =
    "INSERT INTO idempotency (authority, key, request_hash, response, authority_seq, created_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The time now as the SQLite migrations' `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')` writes it:
/// UTC, milliseconds, `Z`.
fn created_at_now() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A skip scan over the (authority, authority_seq) index: one probe per authority.
const AUTHORITIES_SQL: &str = "WITH RECURSIVE a(authority) AS ( \
      SELECT MIN(authority) FROM events \
      UNION ALL \
      SELECT (SELECT MIN(e.authority) FROM events e WHERE e.authority > a.authority) \
      FROM a WHERE a.authority IS NOT NULL) \
    SELECT authority FROM a WHERE authority IS NOT NULL";

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    /// Exactly one connection: all writes are serialized here.
    writer: SqlitePool,
    /// Connections for reads; the writer pool itself for an in-memory database, which each
    /// new connection would otherwise see empty.
    reader: SqlitePool,
    /// An in-memory database lives only as long as its connection, which must then never
    /// be closed to recover from an error.
    in_memory: bool,
    /// Dropping the sender (with the store, or in `close`) stops the background checkpointer.
    stop_checkpointer: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The background checkpointer, awaited by `close` so that every connection is closed
    /// when it returns (a backup or a restore then has the file to itself).
    checkpointer_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How often the background task copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies committed WAL frames into the database file every [`CHECKPOINT_EVERY`], on a
/// connection of its own, so the writer does not stall on checkpoints: a checkpoint
/// `PASSIVE` runs alongside the writer and the readers.
fn spawn_checkpointer(
    mut conn: SqliteConnection,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
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
        if in_memory {
            return Ok(SqliteStore {
                reader: writer.clone(),
                writer,
                in_memory,
                stop_checkpointer: std::sync::Mutex::new(None),
                checkpointer_task: std::sync::Mutex::new(None),
            });
        }
        let (checkpointer, checkpointer_task) = spawn_checkpointer(base.clone().connect().await?);
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base)
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            in_memory,
            stop_checkpointer: std::sync::Mutex::new(Some(checkpointer)),
            checkpointer_task: std::sync::Mutex::new(Some(checkpointer_task)),
        })
    }

    /// The writer pool (one connection), for tests and tools that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

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
}

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt(message)
}

fn head_on(db: &Db, authority: &str) -> Result<ChainHead, StoreError> {
    let mut stmt = db.prepare(HEAD_SQL)?;
    stmt.bind_text(1, authority)?;
    if stmt.step()? {
        Ok(ChainHead {
            authority_seq: stmt.column_i64(0),
            hash: stmt.column_string(1).map_err(corrupt)?,
        })
    } else {
        Ok(ChainHead::genesis())
    }
}

/// Steps through one page of `READ_PAGE_SQL`, handing each row to `row`.
fn read_page_on(
    db: &Db,
    authority: &str,
    after_authority_seq: i64,
    limit: i64,
    mut row: impl FnMut(&Stmt) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = db.prepare(READ_PAGE_SQL)?;
    stmt.bind_text(1, authority)?;
    stmt.bind_i64(2, after_authority_seq)?;
    stmt.bind_i64(3, limit)?;
    while stmt.step()? {
        row(&stmt)?;
    }
    Ok(())
}

fn read_event(authority: &str, row: &Stmt) -> Result<StoredEvent, String> {
    let recorded_at = row.column_text(6)?;
    let recorded_at = DateTime::parse_from_rfc3339(recorded_at)
        .map_err(|e| format!("recorded_at {recorded_at:?}: {e}"))?
        .with_timezone(&Utc);
    let metadata = row.column_text(8)?;
    let metadata: Metadata =
        serde_json::from_str(metadata).map_err(|e| format!("metadata {metadata:?}: {e}"))?;
    Ok(StoredEvent {
        global_seq: row.column_i64(0),
        authority: authority.to_string(),
        authority_seq: row.column_i64(1),
        stream_id: row.column_string(2)?,
        stream_version: row.column_i64(3),
        event_type: row.column_string(4)?,
        schema_version: i32::try_from(row.column_i64(5))
            .map_err(|e| format!("schema_version: {e}"))?,
        recorded_at,
        payload: row.column_string(7)?,
        metadata,
        prev_hash: row.column_string(9)?,
        hash: row.column_string(10)?,
    })
}

fn read_verify_row(row: &Stmt) -> Result<VerifyRow, String> {
    Ok(VerifyRow {
        global_seq: row.column_i64(0),
        authority_seq: row.column_i64(1),
        stream_id: row.column_string(2)?,
        stream_version: row.column_i64(3),
        event_type: row.column_string(4)?,
        schema_version: i32::try_from(row.column_i64(5))
            .map_err(|e| format!("schema_version: {e}"))?,
        recorded_at: row.column_string(6)?,
        payload: row.column_string(7)?,
        metadata: row.column_string(8)?,
        prev_hash: row.column_string(9)?,
        hash: row.column_string(10)?,
    })
}

fn append_on(
    db: &Db,
    authority: &str,
    events: Vec<NewEvent>,
    idempotency: &[IdempotencyRecord],
) -> Result<Vec<StoredEvent>, StoreError> {
    let head = head_on(db, authority)?;
    let prepared: Vec<PreparedEvent> = chain_events(authority, &head, events);
    let mut global_seqs = Vec::with_capacity(prepared.len());
    {
        let mut stmt = db.prepare(INSERT_EVENT_SQL)?;
        stmt.bind_text(1, authority)?;
        for p in &prepared {
            let e = &p.stored;
            stmt.bind_i64(2, e.authority_seq)?;
            stmt.bind_text(3, &e.stream_id)?;
            stmt.bind_i64(4, e.stream_version)?;
            stmt.bind_text(5, &e.event_type)?;
            stmt.bind_i64(6, i64::from(e.schema_version))?;
            stmt.bind_text(7, &p.recorded_at_text)?;
            stmt.bind_text(8, &e.payload)?;
            stmt.bind_text(9, &p.metadata_text)?;
            stmt.bind_text(10, &e.prev_hash)?;
            stmt.bind_text(11, &e.hash)?;
            stmt.run()?;
            global_seqs.push(db.last_insert_rowid());
        }
    }
    if !idempotency.is_empty() {
        let created_at = created_at_now();
        let mut stmt = db.prepare(INSERT_IDEMPOTENCY_SQL)?;
        stmt.bind_text(1, authority)?;
        stmt.bind_text(6, &created_at)?;
        for record in idempotency {
            stmt.bind_text(2, &record.key)?;
            stmt.bind_text(3, &record.request_hash)?;
            stmt.bind_text(4, &record.response)?;
            stmt.bind_opt_i64(5, record.authority_seq)?;
            stmt.run()?;
        }
    }
    Ok(prepared
        .into_iter()
        .zip(global_seqs)
        .map(|(p, global_seq)| StoredEvent {
            global_seq,
            ..p.stored
        })
        .collect())
}

fn save_snapshot_on(
    db: &Db,
    authority: &str,
    authority_seq: i64,
    state: &[u8],
) -> Result<(), StoreError> {
    let head = head_on(db, authority)?;
    if authority_seq < 0 || authority_seq > head.authority_seq {
        return Err(StoreError::Other(format!(
            "snapshot at authority_seq {authority_seq} of {authority:?} is beyond the head {}",
            head.authority_seq
        )));
    }
    let mut stmt = db.prepare(
        "INSERT INTO snapshots (authority, authority_seq, state) VALUES (?1, ?2, ?3) \
         ON CONFLICT (authority, authority_seq) DO UPDATE SET state = excluded.state, created_at = excluded.created_at",
    )?;
    stmt.bind_text(1, authority)?;
    stmt.bind_i64(2, authority_seq)?;
    stmt.bind_blob(3, state)?;
    stmt.run()?;
    let mut stmt = db.prepare(
        "DELETE FROM snapshots WHERE authority = ?1 AND authority_seq < \
         (SELECT MIN(authority_seq) FROM (SELECT authority_seq FROM snapshots WHERE authority = ?1 \
          ORDER BY authority_seq DESC LIMIT ?2))",
    )?;
    stmt.bind_text(1, authority)?;
    stmt.bind_i64(2, SNAPSHOTS_KEPT)?;
    stmt.run()?;
    Ok(())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn head(&self, authority: &str) -> Result<ChainHead, StoreError> {
        self.with_reader(|db| head_on(db, authority)).await
    }

    async fn append(
        &self,
        authority: &str,
        events: Vec<NewEvent>,
        idempotency: Vec<IdempotencyRecord>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() && idempotency.is_empty() {
            return Ok(Vec::new());
        }
        self.with_write_transaction(|db| append_on(db, authority, events, &idempotency))
            .await
    }

    async fn idempotency(
        &self,
        authority: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.with_reader(|db| {
            let mut stmt = db.prepare(
                "SELECT key, request_hash, response, authority_seq FROM idempotency WHERE authority = ?1 AND key = ?2",
            )?;
            stmt.bind_text(1, authority)?;
            stmt.bind_text(2, key)?;
            if !stmt.step()? {
                return Ok(None);
            }
            Ok(Some(IdempotencyRecord {
                key: stmt.column_string(0).map_err(corrupt)?,
                request_hash: stmt.column_string(1).map_err(corrupt)?,
                response: stmt.column_string(2).map_err(corrupt)?,
                authority_seq: (!stmt.column_is_null(3)).then(|| stmt.column_i64(3)),
            }))
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
        self.with_reader(|db| {
            let mut events = Vec::with_capacity(limit.clamp(0, 10_000) as usize);
            read_page_on(db, authority, after_authority_seq, limit, |row| {
                events.push(read_event(authority, row).map_err(corrupt)?);
                Ok(())
            })?;
            Ok(events)
        })
        .await
    }

    async fn authorities(&self) -> Result<Vec<String>, StoreError> {
        let mut names = self
            .with_reader(|db| {
                let mut stmt = db.prepare(AUTHORITIES_SQL)?;
                let mut names = Vec::new();
                while stmt.step()? {
                    names.push(stmt.column_string(0).map_err(corrupt)?);
                }
                Ok(names)
            })
            .await?;
        names.sort();
        Ok(names)
    }

    async fn verify(&self, authority: &str) -> Result<VerifyOutcome, StoreError> {
        let mut checker = ChainChecker::new(authority);
        loop {
            // One page per lock, so a long chain does not hold a reader for the whole check.
            let (rows, broken) = self
                .with_reader(|db| {
                    let mut rows = 0i64;
                    let mut broken = None;
                    read_page_on(
                        db,
                        authority,
                        checker.last_authority_seq(),
                        VERIFY_PAGE_ROWS,
                        |row| {
                            rows += 1;
                            if broken.is_none() {
                                broken = match read_verify_row(row) {
                                    Ok(verify_row) => checker.check(&verify_row),
                                    Err(reason) => Some(VerifyOutcome::Broken {
                                        authority_seq: checker.last_authority_seq() + 1,
                                        global_seq: row.column_i64(0),
                                        reason: format!("undecodable row: {reason}"),
                                    }),
                                };
                            }
                            Ok(())
                        },
                    )?;
                    Ok((rows, broken))
                })
                .await?;
            if let Some(broken) = broken {
                return Ok(broken);
            }
            if rows < VERIFY_PAGE_ROWS {
                return Ok(checker.finish());
            }
        }
    }

    async fn save_snapshot(
        &self,
        authority: &str,
        authority_seq: i64,
        state: &[u8],
    ) -> Result<(), StoreError> {
        self.with_write_transaction(|db| save_snapshot_on(db, authority, authority_seq, state))
            .await
    }

    fn data_keys(&self) -> Option<&dyn crate::DataKeyStore> {
        Some(self)
    }

    async fn load_snapshot(&self, authority: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        self.with_reader(|db| {
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
        if let Ok(mut stop) = self.stop_checkpointer.lock() {
            stop.take();
        }
        let task = self
            .checkpointer_task
            .lock()
            .ok()
            .and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        if !self.in_memory {
            self.reader.close().await;
        }
        if let Ok(mut conn) = self.writer.acquire().await {
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await
            {
                tracing::warn!(%error, "SQLite WAL checkpoint on close failed");
            }
        }
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn created_at_has_the_column_default_format() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let default: (String,) = sqlx::query_as("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let ours = created_at_now();
        let shape = |text: &str| {
            text.chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect::<String>()
        };
        assert_eq!(shape(&ours), shape(&default.0), "{ours} vs {}", default.0);
        assert_eq!(shape(&ours), "9999-99-99T99:99:99.999Z");
    }
}

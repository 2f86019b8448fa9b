//! The SQLite event log: one file in WAL mode, one writer connection, a few readers.
//!
//! Every write runs on the single writer connection inside `BEGIN IMMEDIATE … COMMIT`, so
//! the write lock is taken before the chain head is read and `synchronous=FULL` syncs the
//! WAL once per commit. Rows go in as multi-row `INSERT`s of a few fixed sizes, so the
//! prepared statements stay in the connection's cache whatever the batch size.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection};

use crate::{
    chain_events, ChainChecker, ChainHead, EventStore, IdempotencyRecord, Metadata, NewEvent, StoreError,
    StoredEvent, VerifyOutcome, VerifyRow, SNAPSHOTS_KEPT, VERIFY_PAGE_ROWS,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row `INSERT`. A batch is cut greedily into these sizes, so at most five
/// statements per table are ever prepared. 256 events bind 2,816 parameters, far below
/// SQLite's limit of 32,766. The parameters are anonymous `?`: sqlx looks up the name of
/// every parameter, which costs a scan of all names when they are numbered (`?NNN`).
const CHUNK_ROWS: [usize; 5] = [256, 64, 16, 4, 1];

/// One page of an authority's chain, in `decode_event` / `decode_verify_row` column order.
const READ_PAGE_SQL: &str = "SELECT global_seq, authority_seq, stream_id, stream_version, event_type, \
    schema_version, recorded_at, payload, metadata, prev_hash, hash FROM events \
    WHERE authority = ?1 AND authority_seq > ?2 ORDER BY authority_seq LIMIT ?3";

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
}

impl SqliteStore {
    /// Opens (creating if missing) `sqlite://path.db`, `sqlite:path.db`, `sqlite::memory:`
    /// or a bare file path, and runs the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Other(format!("bad SQLite URL {url:?}: {e}")))?
        } else if url == ":memory:" {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| StoreError::Other(e.to_string()))?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let base = options
            .create_if_missing(true)
            .foreign_keys(false)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-65536");
        let writer_options = if in_memory {
            base.clone()
        } else {
            // A bigger WAL between checkpoints: fewer, larger checkpoints under a surge.
            base.clone().journal_mode(SqliteJournalMode::Wal).pragma("wal_autocheckpoint", "10000")
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
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(base)
                .await?
        };
        Ok(SqliteStore { writer, reader, in_memory })
    }

    /// The writer pool (one connection), for tests and tools that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    async fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        WriteTransaction::begin(self.writer.acquire().await?, !self.in_memory).await
    }
}

/// `BEGIN IMMEDIATE … COMMIT` on the writer connection, managed by hand rather than with
/// `sqlx::Transaction`: after `SQLITE_FULL` or `SQLITE_IOERR` SQLite may already have rolled
/// back, and the connection must still come out of it usable.
struct WriteTransaction {
    conn: PoolConnection<Sqlite>,
    open: bool,
    /// Close the connection if the transaction cannot be ended cleanly (a file database
    /// reopens; an in-memory one would be lost).
    may_close: bool,
}

impl WriteTransaction {
    async fn begin(mut conn: PoolConnection<Sqlite>, may_close: bool) -> Result<Self, StoreError> {
        if let Err(first) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            // A transaction left open by a cancelled call: end it and try once more.
            if !first.to_string().contains("within a transaction") {
                return Err(first.into());
            }
            sqlx::query("ROLLBACK").execute(&mut *conn).await?;
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        }
        Ok(WriteTransaction { conn, open: true, may_close })
    }

    fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        match sqlx::query("COMMIT").execute(&mut *self.conn).await {
            Ok(_) => {
                self.open = false;
                Ok(())
            }
            Err(error) => {
                self.rollback().await;
                Err(error.into())
            }
        }
    }

    async fn rollback(mut self) {
        match sqlx::query("ROLLBACK").execute(&mut *self.conn).await {
            Ok(_) => self.open = false,
            // SQLite already rolled back (it may after SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY).
            Err(error) if error.to_string().contains("no transaction is active") => self.open = false,
            Err(error) => tracing::warn!(%error, "SQLite ROLLBACK failed; closing the writer connection"),
        }
    }

    /// Runs `work`, then commits; rolls back if either fails.
    async fn finish<T>(self, work: Result<T, StoreError>) -> Result<T, StoreError> {
        match work {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(error) => {
                self.rollback().await;
                Err(error)
            }
        }
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        // Still open: the call was cancelled or ROLLBACK failed. Closing the connection
        // makes SQLite roll back; the pool opens a fresh one.
        if self.open && self.may_close {
            self.conn.close_on_drop();
        }
    }
}

fn events_insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        CHUNK_ROWS
            .iter()
            .map(|&n| {
                let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; n];
                format!(
                    "INSERT INTO events (authority, authority_seq, stream_id, stream_version, event_type, \
                     schema_version, recorded_at, payload, metadata, prev_hash, hash) VALUES {}",
                    values.join(", ")
                )
            })
            .collect()
    });
    &all[CHUNK_ROWS.iter().position(|&n| n == rows).expect("a chunk size")]
}

fn idempotency_insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        CHUNK_ROWS
            .iter()
            .map(|&n| {
                let values = vec!["(?, ?, ?, ?, ?)"; n];
                format!(
                    "INSERT INTO idempotency (authority, key, request_hash, response, authority_seq) VALUES {}",
                    values.join(", ")
                )
            })
            .collect()
    });
    &all[CHUNK_ROWS.iter().position(|&n| n == rows).expect("a chunk size")]
}

/// Cuts `total` rows into `CHUNK_ROWS` sizes, largest first.
fn chunk_sizes(mut total: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    for &size in &CHUNK_ROWS {
        while total >= size {
            sizes.push(size);
            total -= size;
        }
    }
    sizes
}

async fn head_on(conn: &mut SqliteConnection, authority: &str) -> Result<ChainHead, StoreError> {
    let row = sqlx::query("SELECT authority_seq, hash FROM events WHERE authority = ?1 ORDER BY authority_seq DESC LIMIT 1")
        .bind(authority)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => ChainHead { authority_seq: row.try_get(0)?, hash: row.try_get(1)? },
        None => ChainHead::genesis(),
    })
}

fn decode_event(authority: &str, row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let recorded_at: &str = row.try_get(6)?;
    let recorded_at = DateTime::parse_from_rfc3339(recorded_at)
        .map_err(|e| StoreError::Corrupt(format!("recorded_at {recorded_at:?}: {e}")))?
        .with_timezone(&Utc);
    let metadata: &str = row.try_get(8)?;
    let metadata: Metadata =
        serde_json::from_str(metadata).map_err(|e| StoreError::Corrupt(format!("metadata {metadata:?}: {e}")))?;
    Ok(StoredEvent {
        global_seq: row.try_get(0)?,
        authority: authority.to_string(),
        authority_seq: row.try_get(1)?,
        stream_id: row.try_get(2)?,
        stream_version: row.try_get(3)?,
        event_type: row.try_get(4)?,
        schema_version: row.try_get(5)?,
        recorded_at,
        payload: row.try_get(7)?,
        metadata,
        prev_hash: row.try_get(9)?,
        hash: row.try_get(10)?,
    })
}

fn decode_verify_row(row: &SqliteRow) -> Result<VerifyRow, sqlx::Error> {
    Ok(VerifyRow {
        global_seq: row.try_get(0)?,
        authority_seq: row.try_get(1)?,
        stream_id: row.try_get(2)?,
        stream_version: row.try_get(3)?,
        event_type: row.try_get(4)?,
        schema_version: row.try_get(5)?,
        recorded_at: row.try_get(6)?,
        payload: row.try_get(7)?,
        metadata: row.try_get(8)?,
        prev_hash: row.try_get(9)?,
        hash: row.try_get(10)?,
    })
}

async fn read_page(
    pool: &SqlitePool,
    authority: &str,
    after_authority_seq: i64,
    limit: i64,
) -> Result<Vec<SqliteRow>, StoreError> {
    Ok(sqlx::query(READ_PAGE_SQL).bind(authority).bind(after_authority_seq).bind(limit).fetch_all(pool).await?)
}

async fn insert_all(
    conn: &mut SqliteConnection,
    authority: &str,
    prepared: &mut [crate::PreparedEvent],
    idempotency: &[IdempotencyRecord],
) -> Result<(), StoreError> {
    let mut offset = 0;
    for size in chunk_sizes(prepared.len()) {
        let chunk = &mut prepared[offset..offset + size];
        let mut query = sqlx::query(events_insert_sql(size));
        for p in chunk.iter() {
            let e = &p.stored;
            query = query
                .bind(authority)
                .bind(e.authority_seq)
                .bind(e.stream_id.as_str())
                .bind(e.stream_version)
                .bind(e.event_type.as_str())
                .bind(e.schema_version)
                .bind(p.recorded_at_text.as_str())
                .bind(e.payload.as_str())
                .bind(p.metadata_text.as_str())
                .bind(e.prev_hash.as_str())
                .bind(e.hash.as_str());
        }
        // One statement on one connection holding the write lock: the rows got consecutive
        // rowids ending at the last one inserted.
        let last = query.execute(&mut *conn).await?.last_insert_rowid();
        let first = last - size as i64 + 1;
        for (i, p) in chunk.iter_mut().enumerate() {
            p.stored.global_seq = first + i as i64;
        }
        offset += size;
    }
    let mut offset = 0;
    for size in chunk_sizes(idempotency.len()) {
        let mut query = sqlx::query(idempotency_insert_sql(size));
        for r in &idempotency[offset..offset + size] {
            query = query
                .bind(authority)
                .bind(r.key.as_str())
                .bind(r.request_hash.as_str())
                .bind(r.response.as_str())
                .bind(r.authority_seq);
        }
        query.execute(&mut *conn).await?;
        offset += size;
    }
    Ok(())
}

async fn save_snapshot_on(
    conn: &mut SqliteConnection,
    authority: &str,
    authority_seq: i64,
    state: &[u8],
) -> Result<(), StoreError> {
    let head = head_on(conn, authority).await?;
    if authority_seq < 0 || authority_seq > head.authority_seq {
        return Err(StoreError::Other(format!(
            "snapshot at authority_seq {authority_seq} of {authority:?} is beyond the head {}",
            head.authority_seq
        )));
    }
    sqlx::query(
        "INSERT INTO snapshots (authority, authority_seq, state) VALUES (?1, ?2, ?3) \
         ON CONFLICT (authority, authority_seq) DO UPDATE SET state = excluded.state, created_at = excluded.created_at",
    )
    .bind(authority)
    .bind(authority_seq)
    .bind(state)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM snapshots WHERE authority = ?1 AND authority_seq < \
         (SELECT MIN(authority_seq) FROM (SELECT authority_seq FROM snapshots WHERE authority = ?1 \
          ORDER BY authority_seq DESC LIMIT ?2))",
    )
    .bind(authority)
    .bind(SNAPSHOTS_KEPT)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn head(&self, authority: &str) -> Result<ChainHead, StoreError> {
        let mut conn = self.reader.acquire().await?;
        head_on(&mut conn, authority).await
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
        let mut tx = self.begin_write().await?;
        let work = async {
            let head = head_on(tx.conn(), authority).await?;
            let mut prepared = chain_events(authority, &head, events);
            insert_all(tx.conn(), authority, &mut prepared, &idempotency).await?;
            Ok(prepared)
        }
        .await;
        let prepared = tx.finish(work).await?;
        Ok(prepared.into_iter().map(|p| p.stored).collect())
    }

    async fn idempotency(&self, authority: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT key, request_hash, response, authority_seq FROM idempotency WHERE authority = ?1 AND key = ?2",
        )
        .bind(authority)
        .bind(key)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(IdempotencyRecord {
                key: row.try_get(0)?,
                request_hash: row.try_get(1)?,
                response: row.try_get(2)?,
                authority_seq: row.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn read(&self, authority: &str, after_authority_seq: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = read_page(&self.reader, authority, after_authority_seq, limit).await?;
        rows.iter().map(|row| decode_event(authority, row)).collect()
    }

    async fn authorities(&self) -> Result<Vec<String>, StoreError> {
        // A skip scan over the (authority, authority_seq) index: one probe per authority.
        let mut names: Vec<String> = sqlx::query_scalar(
            "WITH RECURSIVE a(authority) AS ( \
               SELECT MIN(authority) FROM events \
               UNION ALL \
               SELECT (SELECT MIN(e.authority) FROM events e WHERE e.authority > a.authority) \
               FROM a WHERE a.authority IS NOT NULL) \
             SELECT authority FROM a WHERE authority IS NOT NULL",
        )
        .fetch_all(&self.reader)
        .await?;
        names.sort();
        Ok(names)
    }

    async fn verify(&self, authority: &str) -> Result<VerifyOutcome, StoreError> {
        let mut checker = ChainChecker::new(authority);
        loop {
            let rows = read_page(&self.reader, authority, checker.last_authority_seq(), VERIFY_PAGE_ROWS).await?;
            for row in &rows {
                let verify_row = match decode_verify_row(row) {
                    Ok(verify_row) => verify_row,
                    Err(error) => {
                        return Ok(VerifyOutcome::Broken {
                            authority_seq: checker.last_authority_seq() + 1,
                            global_seq: row.try_get(0).unwrap_or(-1),
                            reason: format!("undecodable row: {error}"),
                        })
                    }
                };
                if let Some(broken) = checker.check(&verify_row) {
                    return Ok(broken);
                }
            }
            if (rows.len() as i64) < VERIFY_PAGE_ROWS {
                return Ok(checker.finish());
            }
        }
    }

    async fn save_snapshot(&self, authority: &str, authority_seq: i64, state: &[u8]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let work = save_snapshot_on(tx.conn(), authority, authority_seq, state).await;
        tx.finish(work).await
    }

    async fn load_snapshot(&self, authority: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT authority_seq, state FROM snapshots WHERE authority = ?1 ORDER BY authority_seq DESC LIMIT 1",
        )
        .bind(authority)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row)
    }

    async fn close(&self) {
        if !self.in_memory {
            self.reader.close().await;
        }
        if let Ok(mut conn) = self.writer.acquire().await {
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await {
                tracing::warn!(%error, "SQLite WAL checkpoint on close failed");
            }
        }
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_cached_sizes() {
        assert_eq!(chunk_sizes(0), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1), vec![1]);
        assert_eq!(chunk_sizes(1000), vec![256, 256, 256, 64, 64, 64, 16, 16, 4, 4]);
        assert_eq!(chunk_sizes(1000).iter().sum::<usize>(), 1000);
        assert_eq!(events_insert_sql(256).matches('?').count(), 256 * 11);
        assert_eq!(idempotency_insert_sql(4).matches('?').count(), 4 * 5);
    }
}

//! The PostgreSQL event log: a normal connection pool, `synchronous_commit` left on.
//!
//! A batch is inserted with one `INSERT … SELECT FROM UNNEST(arrays)` per table, so a
//! thousand events cost the same few round trips as one.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};

use crate::{
    canonical_recorded_at, chain_events, ChainChecker, ChainHead, EventStore, IdempotencyRecord,
    Metadata, NewEvent, StoreError, StoredEvent, VerifyOutcome, VerifyRow, SNAPSHOTS_KEPT,
    VERIFY_PAGE_ROWS,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long `open` waits for the first connection before answering `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a running store waits for a pooled connection (sqlx keeps retrying a refused
/// connection until then) before answering `Unavailable`: short, so that while PostgreSQL
/// is away requests are refused within their timeout instead of queueing behind it.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

const READ_PAGE_SQL: &str =
    "SELECT global_seq, authority_seq, stream_id, stream_version, event_type, \
    schema_version, recorded_at, payload, metadata, prev_hash, hash FROM events \
    WHERE authority = $1 AND authority_seq > $2 ORDER BY authority_seq LIMIT $3";

/// The same page, bounded above as well: see `read_page`.
const READ_RANGE_SQL: &str =
    "SELECT global_seq, authority_seq, stream_id, stream_version, event_type, \
    schema_version, recorded_at, payload, metadata, prev_hash, hash FROM events \
    WHERE authority = $1 AND authority_seq > $2 AND authority_seq <= $3 ORDER BY authority_seq";

/// Function Scan yields the arrays in order, so `global_seq` follows `authority_seq`.
const INSERT_EVENTS_SQL: &str =
    "INSERT INTO events (authority, authority_seq, stream_id, stream_version, \
    event_type, schema_version, recorded_at, payload, metadata, prev_hash, hash) \
    SELECT $1::text, u.* FROM UNNEST($2::int8[], $3::text[], $4::int8[], $5::text[], $6::int4[], \
    $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[]) AS u \
    RETURNING global_seq, authority_seq";

const INSERT_IDEMPOTENCY_SQL: &str =
    "INSERT INTO idempotency (authority, key, request_hash, response, authority_seq) \
    SELECT $1::text, u.* FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[]) AS u";

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PgStore {
    pool: PgPool,
    /// Cluster mode ([`crate::cluster`]): the epochs this node holds; appends are fenced.
    fencing: std::sync::OnceLock<std::sync::Arc<crate::cluster::Fences>>,
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
        conn.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(PgStore {
            pool,
            fencing: std::sync::OnceLock::new(),
        })
    }

    /// Turns on fencing (cluster mode, for good): from now on an append for an authority
    /// succeeds only if this node holds it, at the epoch still recorded in
    /// `authority_owners`; otherwise it fails with [`StoreError::Fenced`] and writes
    /// nothing. Each append also notifies [`crate::cluster::NOTIFY_CHANNEL`] at commit.
    pub fn enable_fencing(&self) -> std::sync::Arc<crate::cluster::Fences> {
        self.fencing.get_or_init(Default::default).clone()
    }

    /// The connection pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn head_on(conn: &mut PgConnection, authority: &str) -> Result<ChainHead, StoreError> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT authority_seq, hash FROM events WHERE authority = $1 ORDER BY authority_seq DESC LIMIT 1",
    )
    .bind(authority)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some((authority_seq, hash)) => ChainHead {
            authority_seq,
            hash,
        },
        None => ChainHead::genesis(),
    })
}

fn decode_event(authority: &str, row: &PgRow) -> Result<StoredEvent, StoreError> {
    let metadata: &str = row.try_get(8)?;
    let metadata: Metadata = serde_json::from_str(metadata)
        .map_err(|e| StoreError::Corrupt(format!("metadata {metadata:?}: {e}")))?;
    Ok(StoredEvent {
        global_seq: row.try_get(0)?,
        authority: authority.to_string(),
        authority_seq: row.try_get(1)?,
        stream_id: row.try_get(2)?,
        stream_version: row.try_get(3)?,
        event_type: row.try_get(4)?,
        schema_version: row.try_get(5)?,
        recorded_at: row.try_get(6)?,
        payload: row.try_get(7)?,
        metadata,
        prev_hash: row.try_get(9)?,
        hash: row.try_get(10)?,
    })
}

fn decode_verify_row(row: &PgRow) -> Result<VerifyRow, sqlx::Error> {
    let recorded_at: DateTime<Utc> = row.try_get(6)?;
    Ok(VerifyRow {
        global_seq: row.try_get(0)?,
        authority_seq: row.try_get(1)?,
        stream_id: row.try_get(2)?,
        stream_version: row.try_get(3)?,
        event_type: row.try_get(4)?,
        schema_version: row.try_get(5)?,
        recorded_at: canonical_recorded_at(recorded_at),
        payload: row.try_get(7)?,
        metadata: row.try_get(8)?,
        prev_hash: row.try_get(9)?,
        hash: row.try_get(10)?,
    })
}

/// One page of the chain after `after_authority_seq`.
///
/// On a table whose statistics are stale (a fresh log filled in one go, exactly a replay
/// benchmark), PostgreSQL may answer `authority_seq > $2 ORDER BY … LIMIT` with a bitmap
/// scan and a sort of every later row, making a replay quadratic. Since the chain has no
/// gaps, the page is first asked for as the bounded range `(after, after + limit]`, which
/// costs O(limit) whatever the plan; only a short answer (the end of the chain, or a gap
/// in a damaged log) is completed with the open-ended query.
async fn read_page(
    pool: &PgPool,
    authority: &str,
    after_authority_seq: i64,
    limit: i64,
) -> Result<Vec<PgRow>, StoreError> {
    let mut rows = sqlx::query(READ_RANGE_SQL)
        .bind(authority)
        .bind(after_authority_seq)
        .bind(after_authority_seq.saturating_add(limit))
        .fetch_all(pool)
        .await?;
    let missing = limit - rows.len() as i64;
    if missing > 0 {
        let last = match rows.last() {
            Some(row) => row.try_get(1)?,
            None => after_authority_seq,
        };
        let rest = sqlx::query(READ_PAGE_SQL)
            .bind(authority)
            .bind(last)
            .bind(missing)
            .fetch_all(pool)
            .await?;
        rows.extend(rest);
    }
    Ok(rows)
}

async fn insert_all(
    conn: &mut PgConnection,
    authority: &str,
    prepared: &mut [crate::PreparedEvent],
    idempotency: &[IdempotencyRecord],
) -> Result<(), StoreError> {
    if let Some(first) = prepared.first() {
        let first_seq = first.stored.authority_seq;
        let rows: Vec<(i64, i64)> = sqlx::query_as(INSERT_EVENTS_SQL)
            .bind(authority)
            .bind(
                prepared
                    .iter()
                    .map(|p| p.stored.authority_seq)
                    .collect::<Vec<i64>>(),
            )
            .bind(
                prepared
                    .iter()
                    .map(|p| p.stored.stream_id.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                prepared
                    .iter()
                    .map(|p| p.stored.stream_version)
                    .collect::<Vec<i64>>(),
            )
            .bind(
                prepared
                    .iter()
                    .map(|p| p.stored.event_type.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                prepared
                    .iter()
                    .map(|p| p.stored.schema_version)
                    .collect::<Vec<i32>>(),
            )
            .bind(
                prepared
                    .iter()
                    .map(|p| p.stored.recorded_at)
                    .collect::<Vec<DateTime<Utc>>>(),
            )
            .bind(
                prepared
                    .iter()
                    .map(|p| p.stored.payload.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                prepared
                    .iter()
                    .map(|p| p.metadata_text.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                prepared
                    .iter()
                    .map(|p| p.stored.prev_hash.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                prepared
                    .iter()
                    .map(|p| p.stored.hash.as_str())
                    .collect::<Vec<&str>>(),
            )
            .fetch_all(&mut *conn)
            .await?;
        if rows.len() != prepared.len() {
            return Err(StoreError::Other(format!(
                "inserted {} events of {}",
                rows.len(),
                prepared.len()
            )));
        }
        for (global_seq, authority_seq) in rows {
            let index = usize::try_from(authority_seq - first_seq)
                .ok()
                .filter(|&i| i < prepared.len())
                .ok_or_else(|| {
                    StoreError::Other(format!("unexpected authority_seq {authority_seq} returned"))
                })?;
            prepared[index].stored.global_seq = global_seq;
        }
    }
    if !idempotency.is_empty() {
        sqlx::query(INSERT_IDEMPOTENCY_SQL)
            .bind(authority)
            .bind(
                idempotency
                    .iter()
                    .map(|r| r.key.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                idempotency
                    .iter()
                    .map(|r| r.request_hash.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                idempotency
                    .iter()
                    .map(|r| r.response.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                idempotency
                    .iter()
                    .map(|r| r.authority_seq)
                    .collect::<Vec<Option<i64>>>(),
            )
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl EventStore for PgStore {
    async fn head(&self, authority: &str) -> Result<ChainHead, StoreError> {
        let mut conn = self.pool.acquire().await?;
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
        // Cluster mode: the epoch this node took, checked below inside the transaction.
        let fence = match self.fencing.get() {
            Some(fences) => Some(fences.get(authority).ok_or_else(|| {
                StoreError::Fenced(format!("this node does not hold {authority:?}"))
            })?),
            None => None,
        };
        // On any error the transaction is dropped, which rolls it back.
        let mut tx = self.pool.begin().await?;
        if let Some(epoch) = fence {
            // FOR SHARE: a takeover's epoch bump waits until this transaction ends.
            let current: Option<i64> = sqlx::query_scalar(
                "SELECT epoch FROM authority_owners WHERE authority = $1 FOR SHARE",
            )
            .bind(authority)
            .fetch_optional(&mut *tx)
            .await?;
            if current != Some(epoch) {
                return Err(StoreError::Fenced(format!(
                    "{authority:?} was taken over (epoch {current:?}, this writer holds {epoch})"
                )));
            }
        }
        let head = head_on(&mut tx, authority).await?;
        let mut prepared = chain_events(authority, &head, events);
        insert_all(&mut tx, authority, &mut prepared, &idempotency).await?;
        if fence.is_some() {
            // Delivered by PostgreSQL when (and only if) the transaction commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::cluster::NOTIFY_CHANNEL)
                .bind(authority)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(prepared.into_iter().map(|p| p.stored).collect())
    }

    async fn idempotency(
        &self,
        authority: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row: Option<(String, String, String, Option<i64>)> = sqlx::query_as(
            "SELECT key, request_hash, response, authority_seq FROM idempotency WHERE authority = $1 AND key = $2",
        )
        .bind(authority)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(key, request_hash, response, authority_seq)| IdempotencyRecord {
                key,
                request_hash,
                response,
                authority_seq,
            },
        ))
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
        let rows = read_page(&self.pool, authority, after_authority_seq, limit).await?;
        rows.iter()
            .map(|row| decode_event(authority, row))
            .collect()
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
        .fetch_all(&self.pool)
        .await?;
        names.sort();
        Ok(names)
    }

    async fn verify(&self, authority: &str) -> Result<VerifyOutcome, StoreError> {
        let mut checker = ChainChecker::new(authority);
        loop {
            let rows = read_page(
                &self.pool,
                authority,
                checker.last_authority_seq(),
                VERIFY_PAGE_ROWS,
            )
            .await?;
            for row in &rows {
                let verify_row = decode_verify_row(row)?;
                if let Some(broken) = checker.check(&verify_row) {
                    return Ok(broken);
                }
            }
            if (rows.len() as i64) < VERIFY_PAGE_ROWS {
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
        let mut tx = self.pool.begin().await?;
        let head = head_on(&mut tx, authority).await?;
        if authority_seq < 0 || authority_seq > head.authority_seq {
            return Err(StoreError::Other(format!(
                "snapshot at authority_seq {authority_seq} of {authority:?} is beyond the head {}",
                head.authority_seq
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
        tx.commit().await?;
        Ok(())
    }

    fn data_keys(&self) -> Option<&dyn crate::DataKeyStore> {
        Some(self)
    }

    async fn load_snapshot(&self, authority: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT authority_seq, state FROM snapshots WHERE authority = $1 ORDER BY authority_seq DESC LIMIT 1",
        )
        .bind(authority)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

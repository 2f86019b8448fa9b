//! Fresh stores for tests: a SQLite file in a temporary directory, or a PostgreSQL schema of
//! its own (tests run in parallel), dropped when the harness is dropped.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use ochered_store::{EventStore, IdempotencyRecord, Metadata, NewEvent, PgStore, SqliteStore};
use sqlx::{Connection, Executor, PgConnection};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn pg_url() -> String {
    std::env::var("OCHERED_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

fn pg_required() -> bool {
    std::env::var("OCHERED_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// A name no other test of this run (or a run in parallel) uses.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

pub enum Raw {
    Sqlite(Arc<SqliteStore>),
    Pg(Arc<PgStore>),
}

pub struct Harness {
    pub store: Arc<dyn EventStore>,
    pub raw: Raw,
    /// The SQLite file; its directory is removed on drop.
    pub sqlite_path: Option<std::path::PathBuf>,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL schema to drop, with the URL to drop it through.
    pg_schema: Option<(String, String)>,
}

impl Harness {
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let store = Arc::new(SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap());
        Harness {
            store: store.clone(),
            raw: Raw::Sqlite(store),
            sqlite_path: Some(path),
            _dir: Some(dir),
            pg_schema: None,
        }
    }

    /// `None` (after a visible SKIPPED line) when PostgreSQL is not reachable, unless
    /// `OCHERED_REQUIRE_PG=1`, which makes that a failure.
    pub async fn postgres() -> Option<Harness> {
        let url = pg_url();
        let mut admin = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => return skip(&url, &error.to_string()),
            Err(_) => return skip(&url, "timed out"),
        };
        let schema = format!("t_{}", unique_suffix());
        admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
        admin.close().await.ok();
        let store = Arc::new(PgStore::open(&with_search_path(&url, &schema)).await.unwrap());
        Some(Harness {
            store: store.clone(),
            raw: Raw::Pg(store),
            sqlite_path: None,
            _dir: None,
            pg_schema: Some((url, schema)),
        })
    }

    /// Runs raw SQL (to tamper with the log); returns the rows affected.
    pub async fn exec(&self, sql: &str) -> u64 {
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.unwrap().rows_affected(),
            Raw::Pg(s) => sqlx::query(sql).execute(s.pool()).await.unwrap().rows_affected(),
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
            Raw::Pg(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let Some((url, schema)) = self.pg_schema.take() else { return };
        // Drop may run inside a runtime; do the async clean-up on a thread of its own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let _ = conn.execute("SET lock_timeout = '10s'").await;
                    let _ = conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str()).await;
                    conn.close().await.ok();
                }
            });
        })
        .join()
        .ok();
    }
}

fn skip(url: &str, why: &str) -> Option<Harness> {
    if pg_required() {
        panic!("PostgreSQL not reachable at {url} ({why}) and OCHERED_REQUIRE_PG=1");
    }
    // Straight to the stderr handle: libtest captures only the print macros.
    let _ = writeln!(std::io::stderr(), "SKIPPED: PostgreSQL not reachable at {url} ({why})");
    None
}

pub fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options[search_path]={schema}")
}

/// An event with a payload whose bytes a re-serializing store would change: keys out of
/// order, spaces, non-ASCII, an escaped character.
pub fn event(stream_id: &str, stream_version: i64) -> NewEvent {
    NewEvent {
        stream_id: stream_id.to_string(),
        stream_version,
        event_type: "ApplicationSubmitted".to_string(),
        schema_version: 1,
        recorded_at: Utc.timestamp_opt(1_740_816_000 + stream_version, 123_456_789).unwrap(),
        payload: format!(
            r#"{{"zeta": 1, "alpha":"Иванова Мария","stream":"{stream_id}","n":{stream_version},"esc":"a\"b\u00e9","arr":[3,1,2]}}"#
        ),
        metadata: Metadata {
            idempotency_key: Some(format!("{stream_id}-{stream_version}")),
            actor: Some("parent:42".to_string()),
            channel: Some("web".to_string()),
            correlation_id: None,
        },
    }
}

pub fn idempotency(key: &str, authority_seq: Option<i64>) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.to_string(),
        request_hash: format!("req-{key}"),
        response: format!(r#"{{"status":201,"key":"{key}"}}"#),
        authority_seq,
    }
}

/// `n` events of `n` different streams, numbered from `first`.
pub fn events(prefix: &str, first: i64, n: i64) -> Vec<NewEvent> {
    (first..first + n).map(|i| event(&format!("{prefix}-{i}"), 1)).collect()
}

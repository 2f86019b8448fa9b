//! Fresh stores for tests, here and in the crates above: a SQLite file in a temporary
//! directory, or a PostgreSQL schema of its own (tests run in parallel), dropped with the
//! harness.
//!
//! PostgreSQL comes from `OCHERED_TEST_PG_URL` (default [`DEFAULT_PG_URL`]). When it is not
//! reachable, [`Harness::postgres`] prints a `SKIPPED: …` line and returns `None`, unless
//! `OCHERED_REQUIRE_PG=1`, which makes it panic.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

use crate::{EventStore, PgStore, SqliteStore};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `OCHERED_TEST_PG_URL` or [`DEFAULT_PG_URL`].
pub fn pg_url() -> String {
    std::env::var("OCHERED_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

fn pg_required() -> bool {
    std::env::var("OCHERED_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// A name no other test of this run (or of a run in parallel) uses.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// `url` with its `search_path` set to `schema`.
pub fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options[search_path]={schema}")
}

/// The concrete store behind a harness, for raw SQL.
pub enum Raw {
    Sqlite(Arc<SqliteStore>),
    Pg(Arc<PgStore>),
}

pub struct Harness {
    pub store: Arc<dyn EventStore>,
    /// The URL that opens this same store (for a server under test).
    pub url: String,
    pub raw: Raw,
    /// The SQLite file (in a temporary directory removed on drop).
    pub sqlite_path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL URL and the schema to drop.
    pg_schema: Option<(String, String)>,
}

impl Harness {
    /// A store on a new SQLite file.
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("events.db");
        let store = Arc::new(
            SqliteStore::open(&format!("sqlite://{}", path.display()))
                .await
                .expect("open SQLite"),
        );
        Harness {
            store: store.clone(),
            url: format!("sqlite://{}", path.display()),
            raw: Raw::Sqlite(store),
            sqlite_path: Some(path),
            _dir: Some(dir),
            pg_schema: None,
        }
    }

    /// A store in a new PostgreSQL schema; `None` (after a visible `SKIPPED` line) when
    /// PostgreSQL is not reachable, unless `OCHERED_REQUIRE_PG=1`.
    pub async fn postgres() -> Option<Harness> {
        let url = pg_url();
        let mut admin =
            match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(error)) => return skip(&url, &error.to_string()),
                Err(_) => return skip(&url, "timed out"),
            };
        let schema = format!("t_{}", unique_suffix());
        admin
            .execute(format!("CREATE SCHEMA {schema}").as_str())
            .await
            .expect("create a test schema");
        admin.close().await.ok();
        let store = Arc::new(
            PgStore::open(&with_search_path(&url, &schema))
                .await
                .expect("open PostgreSQL"),
        );
        Some(Harness {
            store: store.clone(),
            url: with_search_path(&url, &schema),
            raw: Raw::Pg(store),
            sqlite_path: None,
            _dir: None,
            pg_schema: Some((url, schema)),
        })
    }

    /// Runs raw SQL (for instance to tamper with the log); returns the rows affected.
    pub async fn exec(&self, sql: &str) -> u64 {
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query(sql)
                .execute(s.pool())
                .await
                .expect("raw SQL")
                .rows_affected(),
            Raw::Pg(s) => sqlx::query(sql)
                .execute(s.pool())
                .await
                .expect("raw SQL")
                .rows_affected(),
        }
    }

    /// Runs a query returning one integer, such as `SELECT COUNT(*) …`.
    pub async fn count(&self, sql: &str) -> i64 {
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query_scalar(sql)
                .fetch_one(s.pool())
                .await
                .expect("raw SQL"),
            Raw::Pg(s) => sqlx::query_scalar(sql)
                .fetch_one(s.pool())
                .await
                .expect("raw SQL"),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let Some((url, schema)) = self.pg_schema.take() else {
            return;
        };
        // Drop may run inside a runtime: clean up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let _ = conn.execute("SET lock_timeout = '10s'").await;
                    let _ = conn
                        .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                        .await;
                    conn.close().await.ok();
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn skip(url: &str, why: &str) -> Option<Harness> {
    if pg_required() {
        panic!("PostgreSQL not reachable at {url} ({why}) and OCHERED_REQUIRE_PG=1");
    }
    // Straight to the stderr handle: libtest captures only the print macros.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: PostgreSQL not reachable at {url} ({why})"
    );
    None
}

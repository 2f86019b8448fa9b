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

/// Tampering with the log the way an attacker with write access to the database would,
/// whatever the backend: what `verify` must catch.
impl Harness {
    /// The `WHERE` clause of one authority's row at `seq`, for either backend.
    async fn row_where(&self, authority: &str, seq: i64) -> String {
        let id = self
            .count(&format!(
                "SELECT CAST(id AS BIGINT) FROM authority_ids WHERE name = '{}'",
                authority.replace('\'', "''")
            ))
            .await;
        match &self.raw {
            Raw::Sqlite(_) => format!("id = {}", (id << 40) | seq),
            Raw::Pg(_) => format!("authority = {id} AND authority_seq = {seq}"),
        }
    }

    /// The stored record bytes at `seq`.
    pub async fn stored_record(&self, authority: &str, seq: i64) -> Vec<u8> {
        let sql = format!(
            "SELECT record FROM log WHERE {}",
            self.row_where(authority, seq).await
        );
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query_scalar(&sql).fetch_one(s.pool()).await,
            Raw::Pg(s) => sqlx::query_scalar(&sql).fetch_one(s.pool()).await,
        }
        .expect("a stored record")
    }

    /// Replaces the stored record at `seq` (its stored hash is left as it was).
    pub async fn set_stored_record(&self, authority: &str, seq: i64, record: &[u8]) {
        let sql = format!(
            "UPDATE log SET record = $1 WHERE {}",
            self.row_where(authority, seq).await
        );
        let changed = match &self.raw {
            Raw::Sqlite(s) => sqlx::query(&sql.replace("$1", "?1"))
                .bind(record)
                .execute(s.pool())
                .await
                .map(|r| r.rows_affected()),
            Raw::Pg(s) => sqlx::query(&sql)
                .bind(record)
                .execute(s.pool())
                .await
                .map(|r| r.rows_affected()),
        }
        .expect("raw SQL");
        assert_eq!(changed, 1, "no event {seq} of {authority}");
    }

    /// Replaces the stored hash at `seq`.
    pub async fn set_stored_hash(&self, authority: &str, seq: i64, hash: &[u8; 32]) {
        let sql = format!(
            "UPDATE log SET hash = $1 WHERE {}",
            self.row_where(authority, seq).await
        );
        let changed = match &self.raw {
            Raw::Sqlite(s) => sqlx::query(&sql.replace("$1", "?1"))
                .bind(&hash[..])
                .execute(s.pool())
                .await
                .map(|r| r.rows_affected()),
            Raw::Pg(s) => sqlx::query(&sql)
                .bind(&hash[..])
                .execute(s.pool())
                .await
                .map(|r| r.rows_affected()),
        }
        .expect("raw SQL");
        assert_eq!(changed, 1, "no event {seq} of {authority}");
    }

    /// Deletes the events `from..=to`; returns how many there were.
    pub async fn delete_events(&self, authority: &str, from: i64, to: i64) -> u64 {
        let mut deleted = 0;
        for seq in from..=to {
            deleted += self
                .exec(&format!(
                    "DELETE FROM log WHERE {}",
                    self.row_where(authority, seq).await
                ))
                .await;
        }
        deleted
    }

    /// Swaps the rows at `a` and `b` (records and hashes): reordered events.
    pub async fn swap_events(&self, authority: &str, a: i64, b: i64) {
        let record_a = self.stored_record(authority, a).await;
        let record_b = self.stored_record(authority, b).await;
        let hash = |seq| async move {
            let sql = format!(
                "SELECT hash FROM log WHERE {}",
                self.row_where(authority, seq).await
            );
            let bytes: Vec<u8> = match &self.raw {
                Raw::Sqlite(s) => sqlx::query_scalar(&sql).fetch_one(s.pool()).await,
                Raw::Pg(s) => sqlx::query_scalar(&sql).fetch_one(s.pool()).await,
            }
            .expect("a stored hash");
            <[u8; 32]>::try_from(bytes).expect("32 bytes")
        };
        let (hash_a, hash_b) = (hash(a).await, hash(b).await);
        self.set_stored_record(authority, a, &record_b).await;
        self.set_stored_record(authority, b, &record_a).await;
        self.set_stored_hash(authority, a, &hash_b).await;
        self.set_stored_hash(authority, b, &hash_a).await;
    }

    /// What a forger who knows the algorithm does: changes the record at `seq` with `edit`
    /// and hashes it and every later event of the authority again, so that the chain
    /// verifies (only a checkpoint taken before catches it).
    pub async fn rewrite_and_rehash(
        &self,
        authority: &str,
        seq: i64,
        edit: impl FnOnce(&mut Vec<u8>),
    ) {
        let mut record = self.stored_record(authority, seq).await;
        edit(&mut record);
        self.set_stored_record(authority, seq, &record).await;
        let head = self
            .store
            .head(authority)
            .await
            .expect("a head")
            .authority_seq;
        let mut prev = if seq == 1 {
            crate::GENESIS
        } else {
            self.store.read(authority, seq - 2, 1).await.expect("read")[0].hash
        };
        for at in seq..=head {
            let record = self.stored_record(authority, at).await;
            let hash = crate::record::hash(&prev, authority, at, &record);
            self.set_stored_hash(authority, at, &hash).await;
            prev = hash;
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

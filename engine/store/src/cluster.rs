//! Several nodes on one PostgreSQL: who writes which authority, with what PostgreSQL already
//! provides.
//!
//! - **Ownership** is a session-level advisory lock per authority, held on one dedicated
//!   connection per node ([`ClusterLink`]). When the node dies its connection closes and
//!   PostgreSQL releases every lock it held; nothing has to expire.
//! - **Epochs** fence stale writers. Taking an authority bumps its row in `authority_owners`
//!   (`epoch`, `node_id`, `url`) in a transaction of its own, *after* the lock is won. Every
//!   append of a fencing [`PgStore`](crate::PgStore) first reads that row `FOR SHARE` in the
//!   append's own transaction and refuses with [`StoreError::Fenced`] unless the epoch is
//!   the one this node took. The share lock makes the takeover's `UPDATE` wait for an
//!   in-flight append of the old owner, so the new owner's replay (which starts after its
//!   update committed) sees every event the old owner committed, and an append that starts
//!   after the takeover sees the new epoch and fails. Two writers therefore never both
//!   commit for one authority, even when a node keeps running after losing its lock (a
//!   network partition from the database).
//! - **Change notification**: a fencing append also runs `pg_notify('ochered_events',
//!   authority)`, delivered by PostgreSQL at commit. Followers wake up on it but never trust
//!   it alone: they read `authority_seq > last` (gapless per authority), and also poll.
//!
//! Advisory lock keys are databases-wide, so the key of an authority is a 64-bit digest of
//! the schema and the authority name: two schemas of one database (tests, or two regions on
//! one server) never share locks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{Connection, PgConnection};

use crate::{PgStore, StoreError};

/// The `LISTEN`/`NOTIFY` channel of committed appends; the payload is the authority.
pub const NOTIFY_CHANNEL: &str = "ochered_events";

/// The epoch this node holds per authority; the fencing store refuses appends for others.
#[derive(Debug, Default)]
pub struct Fences(RwLock<HashMap<String, i64>>);

impl Fences {
    pub fn get(&self, authority: &str) -> Option<i64> {
        self.0.read().unwrap().get(authority).copied()
    }

    pub fn set(&self, authority: &str, epoch: i64) {
        self.0.write().unwrap().insert(authority.to_owned(), epoch);
    }

    pub fn remove(&self, authority: &str) {
        self.0.write().unwrap().remove(authority);
    }

    pub fn clear(&self) {
        self.0.write().unwrap().clear();
    }

    /// The authorities held, sorted.
    pub fn authorities(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.read().unwrap().keys().cloned().collect();
        names.sort();
        names
    }
}

/// A row of `authority_owners`: the last node that took the authority. Whether it still
/// holds it is told by the advisory lock ([`ClusterLink::locked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub authority: String,
    pub epoch: i64,
    pub node_id: String,
    pub url: String,
}

const CREATE_OWNERS_SQL: &str = "CREATE TABLE IF NOT EXISTS authority_owners ( \
    authority TEXT PRIMARY KEY, \
    epoch     BIGINT NOT NULL, \
    node_id   TEXT NOT NULL, \
    url       TEXT NOT NULL, \
    since     TIMESTAMPTZ NOT NULL DEFAULT now())";

/// Creates the cluster table if needed (serialised by a transaction-level advisory lock,
/// since concurrent `CREATE TABLE IF NOT EXISTS` can fail).
pub async fn ensure_schema(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(&schema, "\0ddl"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(CREATE_OWNERS_SQL).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The advisory lock key of an authority in a schema.
pub fn lock_key(schema: &str, authority: &str) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(b"ochered-authority\0");
    hasher.update(schema.as_bytes());
    hasher.update(b"\0");
    hasher.update(authority.as_bytes());
    let digest = hasher.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// One node's membership: its lock connection and the fences of its store.
pub struct ClusterLink {
    pool: PgPool,
    schema: String,
    node_id: String,
    url: String,
    /// `application_name` of the lock connection; nodes alive are counted by it.
    app_prefix: String,
    lock_conn: tokio::sync::Mutex<Option<PgConnection>>,
    fences: Arc<Fences>,
}

impl ClusterLink {
    /// Joins the cluster of `store`'s schema as `node_id`, reachable at `url`: creates the
    /// cluster table, turns on the store's fencing and opens the lock connection.
    pub async fn join(
        store: &PgStore,
        node_id: &str,
        url: &str,
    ) -> Result<ClusterLink, StoreError> {
        if node_id.is_empty()
            || node_id.len() > 32
            || !node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(StoreError::Other(format!(
                "node id {node_id:?}: use 1 to 32 letters, digits, '-' or '_'"
            )));
        }
        let pool = store.pool().clone();
        ensure_schema(&pool).await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&pool)
            .await?;
        let schema_digest = hex::encode(&Sha256::digest(schema.as_bytes())[..4]);
        let link = ClusterLink {
            pool,
            schema,
            node_id: node_id.to_owned(),
            url: url.to_owned(),
            app_prefix: format!("ochered:{schema_digest}:"),
            lock_conn: tokio::sync::Mutex::new(None),
            fences: store.enable_fencing(),
        };
        link.connect().await?;
        Ok(link)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The authorities this node holds (as far as it knows: see [`ClusterLink::check`]).
    pub fn owned(&self) -> Vec<String> {
        self.fences.authorities()
    }

    pub fn owns(&self, authority: &str) -> bool {
        self.fences.get(authority).is_some()
    }

    pub fn epoch(&self, authority: &str) -> Option<i64> {
        self.fences.get(authority)
    }

    async fn connect(&self) -> Result<(), StoreError> {
        let options = (*self.pool.connect_options())
            .clone()
            .application_name(&format!("{}{}", self.app_prefix, self.node_id));
        let conn = PgConnection::connect_with(&options).await?;
        *self.lock_conn.lock().await = Some(conn);
        Ok(())
    }

    /// Checks the lock connection. If it broke, every lock is gone (PostgreSQL released
    /// them): the fences are dropped so this node's appends fail at once, a new lock
    /// connection is opened, and the authorities that were held are returned (empty when
    /// the connection is fine).
    pub async fn check(&self) -> Result<Vec<String>, StoreError> {
        let mut guard = self.lock_conn.lock().await;
        let alive = match guard.as_mut() {
            Some(conn) => sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok(),
            None => false,
        };
        if alive {
            return Ok(Vec::new());
        }
        let lost = self.fences.authorities();
        self.fences.clear();
        *guard = None;
        drop(guard);
        self.connect().await?;
        Ok(lost)
    }

    /// The backend process id of the lock connection (tests terminate it to simulate a
    /// node cut off from the database).
    pub async fn lock_backend_pid(&self) -> Result<i32, StoreError> {
        let mut guard = self.lock_conn.lock().await;
        let conn = guard
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no lock connection".into()))?;
        Ok(sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await?)
    }

    /// Tries to become the writer of `authority`: takes its advisory lock (without
    /// waiting), then bumps its epoch and records this node. Returns the new epoch, or
    /// `None` when another node holds the lock. The caller starts its writer (replaying the
    /// log) only after this returned.
    pub async fn try_take(&self, authority: &str) -> Result<Option<i64>, StoreError> {
        if let Some(epoch) = self.fences.get(authority) {
            return Ok(Some(epoch));
        }
        let key = lock_key(&self.schema, authority);
        {
            let mut guard = self.lock_conn.lock().await;
            let conn = guard
                .as_mut()
                .ok_or_else(|| StoreError::Unavailable("no lock connection".into()))?;
            let won: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(conn)
                .await?;
            if !won {
                return Ok(None);
            }
        }
        // Waits for any append of the previous owner still holding the row FOR SHARE.
        let bumped: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO authority_owners (authority, epoch, node_id, url) VALUES ($1, 1, $2, $3) \
             ON CONFLICT (authority) DO UPDATE SET epoch = authority_owners.epoch + 1, \
             node_id = excluded.node_id, url = excluded.url, since = now() RETURNING epoch",
        )
        .bind(authority)
        .bind(&self.node_id)
        .bind(&self.url)
        .fetch_one(&self.pool)
        .await;
        match bumped {
            Ok(epoch) => {
                self.fences.set(authority, epoch);
                Ok(Some(epoch))
            }
            Err(e) => {
                self.unlock(key).await;
                Err(e.into())
            }
        }
    }

    /// Gives `authority` up: appends for it fail from now on, then the lock is released.
    pub async fn release(&self, authority: &str) {
        self.fences.remove(authority);
        self.unlock(lock_key(&self.schema, authority)).await;
    }

    async fn unlock(&self, key: i64) {
        let mut guard = self.lock_conn.lock().await;
        if let Some(conn) = guard.as_mut() {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(conn)
                .await;
        }
    }

    /// Which of `authorities` some node holds the lock of now (from `pg_locks`, one query).
    pub async fn locked(&self, authorities: &[String]) -> Result<HashSet<String>, StoreError> {
        let held: Vec<i64> = sqlx::query_scalar(
            "SELECT ((classid::bigint << 32) | objid::bigint) FROM pg_locks \
             WHERE locktype = 'advisory' AND objsubid = 1 AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_all(&self.pool)
        .await?;
        let held: HashSet<i64> = held.into_iter().collect();
        Ok(authorities
            .iter()
            .filter(|a| held.contains(&lock_key(&self.schema, a)))
            .cloned()
            .collect())
    }

    /// The recorded owner of every authority ever taken.
    pub async fn owners(&self) -> Result<Vec<Owner>, StoreError> {
        let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
            "SELECT authority, epoch, node_id, url FROM authority_owners ORDER BY authority",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(authority, epoch, node_id, url)| Owner {
                authority,
                epoch,
                node_id,
                url,
            })
            .collect())
    }

    /// The recorded owner of one authority.
    pub async fn owner(&self, authority: &str) -> Result<Option<Owner>, StoreError> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT epoch, node_id, url FROM authority_owners WHERE authority = $1")
                .bind(authority)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(epoch, node_id, url)| Owner {
            authority: authority.to_owned(),
            epoch,
            node_id,
            url,
        }))
    }

    /// Nodes of this cluster connected now (their lock connections, from
    /// `pg_stat_activity`): a killed node disappears at once, without a heartbeat timeout.
    pub async fn alive_nodes(&self) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT application_name) FROM pg_stat_activity \
             WHERE starts_with(application_name, $1)",
        )
        .bind(&self.app_prefix)
        .fetch_one(&self.pool)
        .await?;
        Ok((n as usize).max(1))
    }

    /// A listener on [`NOTIFY_CHANNEL`] (reconnects by itself; notifications sent while it
    /// was away are lost, which is why followers also poll).
    pub async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(listener)
    }
}

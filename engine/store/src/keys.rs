//! Per-applicant data keys, kept OUTSIDE the hash-chained log (table `data_keys`).
//!
//! The store only keeps opaque bytes: the caller (the writer crate's `privacy` module) makes
//! a random key, wraps (encrypts) it under the master key-encryption key and hands the
//! wrapped bytes here. Destroying a key deletes its row; sealed personal data in the log that
//! was encrypted under it becomes unreadable for good (crypto-shredding) while the log, and
//! so every hash of its chain, stays exactly as it was.
//!
//! Remnants: SQLite connections are opened with `PRAGMA secure_delete=ON`, and a destroy
//! ends with a `TRUNCATE` checkpoint, so the deleted bytes are overwritten in the database
//! file and the WAL is emptied. On PostgreSQL a deleted row stays in its page until VACUUM
//! and in the server's WAL until it is recycled; those bytes are still wrapped under the
//! master key, which never reaches the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::{PgStore, SqliteStore, StoreError};

/// One person's candidate key for [`DataKeyStore::data_keys_or_insert`]: stored only if
/// the person has no key yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCandidate<'a> {
    pub authority: &'a str,
    /// The hex of the person key.
    pub person: &'a str,
    /// The candidate key, wrapped.
    pub wrapped: &'a [u8],
}

/// A new person's data key that travels with the event that first needs it, to be stored
/// in the same transaction as that event ([`crate::EventStore::append_with_keys`]): inserted
/// only if the person has no key yet (`ON CONFLICT DO NOTHING`), so the same key carried by
/// several commands is stored once and the duplicates are no-ops.
///
/// A candidate may be **withdrawn** (the person's data was erased while the key was still
/// on its way): a transaction that finds it withdrawn does not insert it. On SQLite the
/// flag is read inside the write transaction, on the only writer connection, which the
/// erasure's `DELETE` also needs; an erasure sets the flag before its `DELETE`, so either the
/// key's transaction ran first (and the `DELETE` removes the key) or it sees the flag.
#[derive(Debug)]
pub struct NewDataKey {
    pub authority: String,
    /// The hex of the person key.
    pub person: String,
    /// The key, wrapped.
    pub wrapped: Vec<u8>,
    withdrawn: AtomicBool,
}

impl NewDataKey {
    pub fn new(authority: String, person: String, wrapped: Vec<u8>) -> Self {
        NewDataKey {
            authority,
            person,
            wrapped,
            withdrawn: AtomicBool::new(false),
        }
    }

    /// From now on no transaction stores this key.
    pub fn withdraw(&self) {
        self.withdrawn.store(true, Ordering::SeqCst);
    }

    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.load(Ordering::SeqCst)
    }

    /// The candidate form of [`DataKeyStore::data_keys_or_insert`].
    pub fn candidate(&self) -> KeyCandidate<'_> {
        KeyCandidate {
            authority: &self.authority,
            person: &self.person,
            wrapped: &self.wrapped,
        }
    }
}

/// Most candidates one transaction takes; larger slices are split into several
/// transactions.
pub const KEY_BATCH_MAX: usize = 1024;

/// The distinct (authority, person) of `candidates`, each with its first candidate, and for
/// every candidate the index of its distinct entry.
fn distinct<'a>(candidates: &[KeyCandidate<'a>]) -> (Vec<KeyCandidate<'a>>, Vec<usize>) {
    let mut index: HashMap<(&str, &str), usize> = HashMap::with_capacity(candidates.len());
    let mut unique = Vec::with_capacity(candidates.len());
    let slots = candidates
        .iter()
        .map(|c| {
            *index.entry((c.authority, c.person)).or_insert_with(|| {
                unique.push(*c);
                unique.len() - 1
            })
        })
        .collect();
    (unique, slots)
}

/// Times a batch re-inserts the candidates whose stored key vanished between its insert and
/// its read (a concurrent destroy, PostgreSQL only) before it gives up.
const VANISHED_RETRIES: usize = 8;

fn vanished() -> StoreError {
    StoreError::Other(
        "data keys kept being destroyed while they were being created; try again".to_owned(),
    )
}

/// Wrapped data keys per (authority, person). `person` is the hex of the person key.
#[async_trait]
pub trait DataKeyStore: Send + Sync {
    /// The wrapped key of the person, if one exists.
    async fn data_key(&self, authority: &str, person: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The person's wrapped key, storing `wrapped` first if the person has none: returns
    /// the key now stored (another caller's, if it got there first). Durable on return.
    async fn data_key_or_insert(
        &self,
        authority: &str,
        person: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let candidate = KeyCandidate {
            authority,
            person,
            wrapped,
        };
        let mut stored = self.data_keys_or_insert(&[candidate]).await?;
        stored.pop().ok_or_else(vanished)
    }

    /// The batch form of [`DataKeyStore::data_key_or_insert`], for many people at once in
    /// ONE durable transaction (per [`KEY_BATCH_MAX`] candidates): for every candidate, in
    /// order, the key now stored for its person, storing the candidate first if the person
    /// has none. Candidates of the same person get the same key (the first of them, when
    /// none was stored). All of them are durable on return.
    async fn data_keys_or_insert(
        &self,
        candidates: &[KeyCandidate<'_>],
    ) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Stores the new keys that are not withdrawn, each only if its person has no key yet,
    /// durably on return: the store-first path for a key made to travel with an event
    /// ([`NewDataKey`]). On SQLite the withdrawn flags are read inside the write transaction
    /// (see [`NewDataKey`]), so a key withdrawn by an erasure is never stored after it.
    async fn insert_new_keys(&self, keys: &[std::sync::Arc<NewDataKey>]) -> Result<(), StoreError> {
        let candidates: Vec<KeyCandidate<'_>> = keys
            .iter()
            .filter(|k| !k.is_withdrawn())
            .map(|k| k.candidate())
            .collect();
        if !candidates.is_empty() {
            self.data_keys_or_insert(&candidates).await?;
        }
        Ok(())
    }

    /// Deletes the person's key; `true` if there was one. Durable on return.
    async fn destroy_data_key(&self, authority: &str, person: &str) -> Result<bool, StoreError>;

    /// Whether only this process can change the keys, so that a copy of them kept in its
    /// memory stays exact: SQLite (the file belongs to one server). PostgreSQL: no, other
    /// nodes of a cluster destroy keys in the same table.
    fn single_process(&self) -> bool;
}

const SQLITE_DELETE: &str = "DELETE FROM data_keys WHERE authority = ?1 AND person = ?2";

#[async_trait]
impl DataKeyStore for SqliteStore {
    fn single_process(&self) -> bool {
        true
    }

    /// On a reader connection: a sealing that looks for a person's key never waits for the
    /// only writer connection, which the log's committer holds while it commits.
    async fn data_key(&self, authority: &str, person: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_data_key(authority, person).await
    }

    async fn data_keys_or_insert(
        &self,
        candidates: &[KeyCandidate<'_>],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let (unique, slots) = distinct(candidates);
        let mut stored = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(KEY_BATCH_MAX) {
            // The single writer connection, write-locked for the whole transaction: nothing
            // can change a key between the inserts and the reads, and one commit (one WAL
            // sync) makes the whole chunk durable.
            stored.extend(self.store_data_keys(chunk).await?);
        }
        Ok(slots.into_iter().map(|i| stored[i].clone()).collect())
    }

    async fn insert_new_keys(&self, keys: &[std::sync::Arc<NewDataKey>]) -> Result<(), StoreError> {
        self.insert_data_keys(keys).await
    }

    async fn destroy_data_key(&self, authority: &str, person: &str) -> Result<bool, StoreError> {
        // The writer pool's only connection: serialised with every write transaction, which
        // is what makes withdrawing a key before this DELETE safe ([`NewDataKey`]).
        let mut conn = self.pool().acquire().await?;
        let deleted = sqlx::query(SQLITE_DELETE)
            .bind(authority)
            .bind(person)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            > 0;
        if deleted {
            // secure_delete zeroed the row in the page; the WAL still holds earlier images
            // of that page until it is checkpointed and truncated.
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut *conn)
                .await?;
            if busy != 0 {
                tracing::warn!(
                    "destroyed a data key, but the WAL could not be truncated now (readers busy); the next checkpoint overwrites it"
                );
            }
        }
        Ok(deleted)
    }
}

const PG_SELECT: &str = "SELECT wrapped FROM data_keys WHERE authority = $1 AND person = $2";
const PG_INSERT_MANY: &str = "INSERT INTO data_keys (authority, person, wrapped) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[]) \
     ON CONFLICT (authority, person) DO NOTHING";
const PG_SELECT_MANY: &str = "SELECT k.authority, k.person, k.wrapped FROM data_keys k \
     JOIN UNNEST($1::text[], $2::text[]) AS w(authority, person) \
     ON k.authority = w.authority AND k.person = w.person";
const PG_DELETE: &str = "DELETE FROM data_keys WHERE authority = $1 AND person = $2";

#[async_trait]
impl DataKeyStore for PgStore {
    fn single_process(&self) -> bool {
        false
    }

    async fn data_key(&self, authority: &str, person: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(PG_SELECT)
            .bind(authority)
            .bind(person)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn data_keys_or_insert(
        &self,
        candidates: &[KeyCandidate<'_>],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let (unique, slots) = distinct(candidates);
        let mut stored: Vec<Vec<u8>> = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(KEY_BATCH_MAX) {
            let mut found: Vec<Option<Vec<u8>>> = vec![None; chunk.len()];
            let mut attempts = 0;
            // Each round inserts the candidates of the people still without a key and reads
            // the stored keys back, in one transaction. A row another transaction inserted
            // and committed first wins (the insert waits for it, then does nothing); the
            // read, a new snapshot under READ COMMITTED, sees it. Only a destroy committed
            // between the insert and the read leaves a person without a key: that person's
            // candidate goes in again in the next round.
            while found.iter().any(Option::is_none) {
                attempts += 1;
                if attempts > VANISHED_RETRIES {
                    return Err(vanished());
                }
                let missing: Vec<usize> =
                    (0..chunk.len()).filter(|&i| found[i].is_none()).collect();
                let authorities: Vec<&str> = missing.iter().map(|&i| chunk[i].authority).collect();
                let persons: Vec<&str> = missing.iter().map(|&i| chunk[i].person).collect();
                let wrapped: Vec<&[u8]> = missing.iter().map(|&i| chunk[i].wrapped).collect();
                let mut tx = self.pool().begin().await?;
                sqlx::query(PG_INSERT_MANY)
                    .bind(&authorities)
                    .bind(&persons)
                    .bind(&wrapped)
                    .execute(&mut *tx)
                    .await?;
                let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(PG_SELECT_MANY)
                    .bind(&authorities)
                    .bind(&persons)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                let rows: HashMap<(&str, &str), &Vec<u8>> = rows
                    .iter()
                    .map(|(a, p, w)| ((a.as_str(), p.as_str()), w))
                    .collect();
                for &i in &missing {
                    found[i] = rows
                        .get(&(chunk[i].authority, chunk[i].person))
                        .map(|w| (*w).clone());
                }
            }
            stored.extend(found.into_iter().map(|w| w.expect("every key found")));
        }
        Ok(slots.into_iter().map(|i| stored[i].clone()).collect())
    }

    async fn destroy_data_key(&self, authority: &str, person: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(PG_DELETE)
            .bind(authority)
            .bind(person)
            .execute(self.pool())
            .await?
            .rows_affected()
            > 0)
    }
}

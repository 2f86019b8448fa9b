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

use async_trait::async_trait;

use crate::{PgStore, SqliteStore, StoreError};

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
    ) -> Result<Vec<u8>, StoreError>;

    /// Deletes the person's key; `true` if there was one. Durable on return.
    async fn destroy_data_key(&self, authority: &str, person: &str) -> Result<bool, StoreError>;
}

const SQLITE_SELECT: &str = "SELECT wrapped FROM data_keys WHERE authority = ?1 AND person = ?2";
const SQLITE_INSERT: &str =
    "INSERT INTO data_keys (authority, person, wrapped) VALUES (?1, ?2, ?3) \
     ON CONFLICT (authority, person) DO NOTHING";
const SQLITE_DELETE: &str = "DELETE FROM data_keys WHERE authority = ?1 AND person = ?2";

#[async_trait]
impl DataKeyStore for SqliteStore {
    async fn data_key(&self, authority: &str, person: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(SQLITE_SELECT)
            .bind(authority)
            .bind(person)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn data_key_or_insert(
        &self,
        authority: &str,
        person: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        // The writer pool has one connection: the insert and the read see the same winner.
        let mut conn = self.pool().acquire().await?;
        sqlx::query(SQLITE_INSERT)
            .bind(authority)
            .bind(person)
            .bind(wrapped)
            .execute(&mut *conn)
            .await?;
        Ok(sqlx::query_scalar(SQLITE_SELECT)
            .bind(authority)
            .bind(person)
            .fetch_one(&mut *conn)
            .await?)
    }

    async fn destroy_data_key(&self, authority: &str, person: &str) -> Result<bool, StoreError> {
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
const PG_INSERT: &str = "INSERT INTO data_keys (authority, person, wrapped) VALUES ($1, $2, $3) \
     ON CONFLICT (authority, person) DO NOTHING";
const PG_DELETE: &str = "DELETE FROM data_keys WHERE authority = $1 AND person = $2";

#[async_trait]
impl DataKeyStore for PgStore {
    async fn data_key(&self, authority: &str, person: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(PG_SELECT)
            .bind(authority)
            .bind(person)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn data_key_or_insert(
        &self,
        authority: &str,
        person: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        sqlx::query(PG_INSERT)
            .bind(authority)
            .bind(person)
            .bind(wrapped)
            .execute(self.pool())
            .await?;
        // Committed rows only: whoever inserted first, this reads the stored key.
        Ok(sqlx::query_scalar(PG_SELECT)
            .bind(authority)
            .bind(person)
            .fetch_one(self.pool())
            .await?)
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

//! Signed tree heads, kept OUTSIDE the hash-chained log (table `tree_heads`, migration 0005).
//!
//! The store keeps each head as the JSON text the server publishes (a signed head with the
//! consistency proof from the authority's previous head, docs/TRANSPARENCY.md), with its size
//! and root beside it. It never signs, parses or checks a head: the server does
//! (`ochered_api::transparency`). What it guarantees is the rule that makes a head history
//! trustworthy across restarts: **one head per (authority, tree_size)**, never replaced. An
//! insert of a size that already has a head keeps the stored one and returns it, so a server
//! that restarts (or is killed between signing and storing) can never publish a second head
//! for a size with another root.

use async_trait::async_trait;

use crate::{Hash, PgStore, SqliteStore, StoreError};

/// A stored head: its size, its root, and the published JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHead {
    pub tree_size: i64,
    pub root_hash: Hash,
    pub head: String,
}

/// The table of published tree heads per authority.
#[async_trait]
pub trait TreeHeadStore: Send + Sync {
    /// Stores the head of `tree_size` unless the authority has a head of that size already;
    /// returns the head now stored for that size (the existing one, if any). Durable on
    /// return.
    async fn insert_tree_head(
        &self,
        authority: &str,
        tree_size: i64,
        root_hash: &Hash,
        head: &str,
    ) -> Result<StoredHead, StoreError>;

    /// At most `limit` heads of the authority with `tree_size > after_size`, smallest first.
    async fn tree_heads(
        &self,
        authority: &str,
        after_size: i64,
        limit: i64,
    ) -> Result<Vec<StoredHead>, StoreError>;

    /// The authority's largest head.
    async fn newest_tree_head(&self, authority: &str) -> Result<Option<StoredHead>, StoreError>;
}

fn stored(row: (i64, Vec<u8>, String)) -> Result<StoredHead, StoreError> {
    let (tree_size, root, head) = row;
    let root_hash: Hash = root
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("tree head {tree_size}: root is not 32 bytes")))?;
    Ok(StoredHead {
        tree_size,
        root_hash,
        head,
    })
}

/// The one implementation of [`TreeHeadStore`], for a backend and its SQL (the backends differ
/// only in their placeholders: `?N` on SQLite, `$N` on PostgreSQL).
macro_rules! tree_head_store {
    ($store:ty, insert: $insert:expr, one: $one:expr, after: $after:expr, newest: $newest:expr) => {
        #[async_trait]
        impl TreeHeadStore for $store {
            async fn insert_tree_head(
                &self,
                authority: &str,
                tree_size: i64,
                root_hash: &Hash,
                head: &str,
            ) -> Result<StoredHead, StoreError> {
                sqlx::query($insert)
                    .bind(authority)
                    .bind(tree_size)
                    .bind(&root_hash[..])
                    .bind(head)
                    .execute(self.pool())
                    .await?;
                let row: (i64, Vec<u8>, String) = sqlx::query_as($one)
                    .bind(authority)
                    .bind(tree_size)
                    .fetch_one(self.pool())
                    .await?;
                stored(row)
            }

            async fn tree_heads(
                &self,
                authority: &str,
                after_size: i64,
                limit: i64,
            ) -> Result<Vec<StoredHead>, StoreError> {
                let rows: Vec<(i64, Vec<u8>, String)> = sqlx::query_as($after)
                    .bind(authority)
                    .bind(after_size)
                    .bind(limit.max(0))
                    .fetch_all(self.pool())
                    .await?;
                rows.into_iter().map(stored).collect()
            }

            async fn newest_tree_head(
                &self,
                authority: &str,
            ) -> Result<Option<StoredHead>, StoreError> {
                let row: Option<(i64, Vec<u8>, String)> = sqlx::query_as($newest)
                    .bind(authority)
                    .fetch_optional(self.pool())
                    .await?;
                row.map(stored).transpose()
            }
        }
    };
}

tree_head_store!(
    SqliteStore,
    insert: "INSERT INTO tree_heads (authority, tree_size, root_hash, head) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (authority, tree_size) DO NOTHING",
    one: "SELECT tree_size, root_hash, head FROM tree_heads WHERE authority = ?1 AND tree_size = ?2",
    after: "SELECT tree_size, root_hash, head FROM tree_heads WHERE authority = ?1 AND tree_size > ?2 \
            ORDER BY tree_size LIMIT ?3",
    newest: "SELECT tree_size, root_hash, head FROM tree_heads WHERE authority = ?1 \
             ORDER BY tree_size DESC LIMIT 1"
);

tree_head_store!(
    PgStore,
    insert: "INSERT INTO tree_heads (authority, tree_size, root_hash, head) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (authority, tree_size) DO NOTHING",
    one: "SELECT tree_size, root_hash, head FROM tree_heads WHERE authority = $1 AND tree_size = $2",
    after: "SELECT tree_size, root_hash, head FROM tree_heads WHERE authority = $1 AND tree_size > $2 \
            ORDER BY tree_size LIMIT $3",
    newest: "SELECT tree_size, root_hash, head FROM tree_heads WHERE authority = $1 \
             ORDER BY tree_size DESC LIMIT 1"
);

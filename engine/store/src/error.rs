//! The store's error type and the mapping of SQLite and PostgreSQL failures onto it.

use sqlx::error::{DatabaseError, ErrorKind};

/// What went wrong in the store, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (stream version, authority_seq, idempotency
    /// key): another writer got there first. Nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or cannot store right now (connection refused, pool
    /// timeout, disk full, I/O error, locked). Nothing was written; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Cluster mode: this node no longer holds the authority (another node took it over
    /// with a newer epoch, or it never held it). Nothing was written; the writer must stop.
    #[error("fenced: {0}")]
    Fenced(String),
    /// Stored data cannot be read back as written (malformed file, undecodable column).
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// Anything else, e.g. a bad URL or a failed migration.
    #[error("store error: {0}")]
    Other(String),
}

impl StoreError {
    /// Whether trying the same call again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        let text = error.to_string();
        match error {
            E::Database(db) => from_database_error(db.as_ref(), text),
            E::Io(_)
            | E::Tls(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::WorkerCrashed
            | E::Protocol(_) => StoreError::Unavailable(text),
            E::ColumnDecode { .. } | E::Decode(_) => StoreError::Corrupt(text),
            E::Migrate(migrate) => match *migrate {
                sqlx::migrate::MigrateError::Execute(inner)
                | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => {
                    match StoreError::from(inner) {
                        StoreError::Other(inner) => {
                            StoreError::Other(format!("migration failed: {inner}"))
                        }
                        mapped => mapped,
                    }
                }
                other => StoreError::Other(format!("migration failed: {other}")),
            },
            _ => StoreError::Other(text),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::from(sqlx::Error::Migrate(Box::new(error)))
    }
}

fn from_database_error(db: &dyn DatabaseError, text: String) -> StoreError {
    if matches!(db.kind(), ErrorKind::UniqueViolation) {
        return StoreError::Conflict(text);
    }
    if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        let extended: i32 = sqlite.code().and_then(|c| c.parse().ok()).unwrap_or(0);
        return from_sqlite_code(extended, text);
    }
    if let Some(code) = db.code() {
        // PostgreSQL SQLSTATE.
        let code: &str = &code;
        return match code {
            // serialization_failure, deadlock_detected: another writer of the same rows.
            "40001" | "40P01" => StoreError::Conflict(text),
            // read_only_sql_transaction (a standby), admin/crash shutdown, cannot_connect_now.
            "25006" | "57P01" | "57P02" | "57P03" => StoreError::Unavailable(text),
            "XX001" | "XX002" => StoreError::Corrupt(text),
            // connection_exception, insufficient_resources (disk_full, out_of_memory,
            // too_many_connections), system_error (io_error).
            _ if code.starts_with("08") || code.starts_with("53") || code.starts_with("58") => {
                StoreError::Unavailable(text)
            }
            _ => StoreError::Other(text),
        };
    }
    StoreError::Other(text)
}

/// Maps an SQLite (extended) result code.
pub(crate) fn from_sqlite_code(extended: i32, text: String) -> StoreError {
    const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
    const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;
    match extended {
        SQLITE_CONSTRAINT_PRIMARYKEY | SQLITE_CONSTRAINT_UNIQUE => StoreError::Conflict(text),
        _ => match extended & 0xff {
            // BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL
            5 | 6 | 7 | 8 | 10 | 13 | 14 | 15 => StoreError::Unavailable(text),
            // CORRUPT, NOTADB
            11 | 26 => StoreError::Corrupt(text),
            _ => StoreError::Other(text),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(StoreError::from(sqlx::Error::Io(refused)).is_unavailable());
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StoreError::from(sqlx::Error::PoolClosed).is_unavailable());
    }

    #[test]
    fn sqlite_codes_are_sorted_by_what_to_do() {
        assert!(matches!(
            from_sqlite_code(2067, String::new()),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            from_sqlite_code(1555, String::new()),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            from_sqlite_code(13, String::new()),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_sqlite_code(10 | (4 << 8), String::new()),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_sqlite_code(5, String::new()),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_sqlite_code(26, String::new()),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            from_sqlite_code(1299, String::new()),
            StoreError::Other(_)
        ));
    }
}

//! Online backups of a SQLite log that carry a signed checkpoint of every chain head, and
//! restores that prove a copy complete before putting it in place.
//!
//! # Backup
//!
//! [`backup_sqlite`] copies the live file with `VACUUM INTO`: one read transaction on its own
//! connection, so the copy is the log at one moment, while the server's writer goes on
//! committing (WAL mode lets a reader and the writer run together). It then verifies every
//! chain in the copy, signs each authority's head with the checkpoint key
//! ([`crate::checkpoint`]) and stores that checkpoint inside the copy, in a table of its own
//! ([`BACKUP_TABLE`]), so the one file carries its own proof. The checkpoint's `created_at` is
//! the moment the backup began: everything acknowledged before it was committed before the
//! copy's read transaction started, so it is in the copy (which may hold a little more).
//!
//! # Restore
//!
//! [`restore_sqlite`] never touches the destination until the copy has proven itself: it
//! copies the backup beside the destination, checks the checkpoint's signature with the
//! public key the operator keeps, verifies every chain, and checks that each chain's head is
//! exactly the signed one; only then does it move the copy into place (an existing database
//! is moved aside, never deleted, and only with `force`). A database some process has open
//! (a running server) is never replaced.
//!
//! PostgreSQL has its own tools (`pg_dump`, base backups with point-in-time recovery); a
//! checkpoint taken with `ochered checkpoint` proves such a restore (docs/OPERATIONS.md).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::{EventStore, SqliteStore, StoreError, VerifyOutcome};

/// The table inside a backup file that holds its checkpoint; [`restore_sqlite`] drops it.
pub const BACKUP_TABLE: &str = "ochered_backup";

/// Why a backup or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The operator asked for something refused on purpose (overwrite a file, replace a
    /// database in use, back up PostgreSQL with this command).
    #[error("{0}")]
    Refused(String),
    /// The backup does not prove itself: no checkpoint, a bad signature, a broken chain, or
    /// heads that differ from the signed ones. Nothing was put in place.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for BackupError {
    fn from(error: sqlx::Error) -> Self {
        BackupError::Store(error.into())
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// What [`backup_sqlite`] wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    /// The checkpoint stored inside the file.
    pub checkpoint: Checkpoint,
}

/// What [`restore_sqlite`] did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub database: PathBuf,
    /// The backup's checkpoint, written beside the database for `ochered verify --checkpoint`.
    pub checkpoint_file: PathBuf,
    pub checkpoint: Checkpoint,
    /// Where the database that was there before went (with `force`).
    pub moved_aside: Option<PathBuf>,
}

/// The file of a SQLite database URL (`sqlite://path`, `sqlite:path` or a bare path); refuses
/// PostgreSQL and in-memory databases.
pub fn sqlite_path(url: &str) -> Result<PathBuf, BackupError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(BackupError::Refused(
            "this command copies SQLite logs; back up PostgreSQL with pg_dump or a base backup, and sign its heads with `ochered checkpoint` (docs/OPERATIONS.md)".into(),
        ));
    }
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(BackupError::Refused(
            "an in-memory database has no file to copy".into(),
        ));
    }
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| BackupError::Refused(format!("bad SQLite URL {url:?}: {e}")))?;
        Ok(options.get_filename().to_path_buf())
    } else {
        Ok(PathBuf::from(url))
    }
}

/// `path` with `suffix` appended to its file name (`a.db` + `-wal` = `a.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

async fn connect(path: &Path) -> Result<SqliteConnection, BackupError> {
    Ok(SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await?)
}

/// Flushes a file, or a directory's entries, to disk.
fn sync_path(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("failed to sync {}", path.display())))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Removes a file if it is there.
fn remove_if_present(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("failed to remove {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Copies the SQLite log at `database_url` into `out` while it may be in use, and stores a
/// checkpoint of every chain head of the copy inside it, signed with `key` and dated
/// `started_at` (take it just before calling). Never overwrites `out`.
pub async fn backup_sqlite(
    database_url: &str,
    out: &Path,
    key: &SigningKey,
    started_at: DateTime<Utc>,
) -> Result<BackupReport, BackupError> {
    let source = sqlite_path(database_url)?;
    if !source.is_file() {
        return Err(BackupError::Refused(format!(
            "there is no database at {}",
            source.display()
        )));
    }
    if out.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists; a backup never overwrites a file",
            out.display()
        )));
    }
    // Written under another name and renamed when complete, so `out` is either whole or absent.
    let partial = with_suffix(out, ".partial");
    remove_database_files(&partial)?;
    let copied = copy_and_sign(&source, &partial, key, started_at).await;
    let checkpoint = match copied {
        Ok(checkpoint) => checkpoint,
        Err(error) => {
            let _ = remove_database_files(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, out).map_err(io(format!(
        "failed to rename {} to {}",
        partial.display(),
        out.display()
    )))?;
    sync_path(&parent_dir(out))?;
    let bytes = std::fs::metadata(out)
        .map_err(io(format!("failed to read {}", out.display())))?
        .len();
    Ok(BackupReport {
        file: out.to_path_buf(),
        bytes,
        checkpoint,
    })
}

/// A database file and the files SQLite keeps beside it.
fn remove_database_files(path: &Path) -> Result<(), BackupError> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        remove_if_present(&with_suffix(path, suffix))?;
    }
    Ok(())
}

/// The copy, its checkpoint inside it, synced: everything but the final rename.
async fn copy_and_sign(
    source: &Path,
    partial: &Path,
    key: &SigningKey,
    started_at: DateTime<Utc>,
) -> Result<Checkpoint, BackupError> {
    let target = partial
        .to_str()
        .ok_or_else(|| BackupError::Refused(format!("{} is not valid UTF-8", partial.display())))?;
    // One read transaction: the log at one moment, however long the copy takes.
    let mut conn = connect(source).await?;
    sqlx::query("VACUUM INTO ?1")
        .bind(target)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    // The log it holds: readable by its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(partial, std::fs::Permissions::from_mode(0o600))
            .map_err(io(format!("failed to restrict {}", partial.display())))?;
    }

    let checkpoint = sign_copy(partial, key, started_at).await?;

    // The checkpoint goes inside the copy; the copy leaves WAL mode so that it is one file.
    let mut conn = connect(partial).await?;
    sqlx::query(&format!(
        "CREATE TABLE {BACKUP_TABLE} (checkpoint TEXT NOT NULL, source TEXT NOT NULL, finished_at TEXT NOT NULL)"
    ))
    .execute(&mut conn)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {BACKUP_TABLE} (checkpoint, source, finished_at) VALUES (?1, ?2, ?3)"
    ))
    .bind(checkpoint.to_json())
    .bind(source.display().to_string())
    .bind(Utc::now().to_rfc3339())
    .execute(&mut conn)
    .await?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode=DELETE")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(BackupError::Store(StoreError::Unavailable(format!(
            "{} is still in {mode} mode: another connection has it open",
            partial.display()
        ))));
    }
    for leftover in ["-wal", "-shm"] {
        remove_if_present(&with_suffix(partial, leftover))?;
    }
    // SQLite does not sync the file VACUUM INTO writes: do it before the rename makes it count.
    sync_path(partial)?;
    Ok(checkpoint)
}

/// Verifies every chain of the copy and signs its heads.
async fn sign_copy(
    copy: &Path,
    key: &SigningKey,
    started_at: DateTime<Utc>,
) -> Result<Checkpoint, BackupError> {
    let store = SqliteStore::open(&copy.display().to_string()).await?;
    let signed = Checkpoint::create(&store, key, started_at).await;
    store.close().await;
    match signed {
        Ok(checkpoint) => Ok(checkpoint),
        Err(CheckpointError::Store(error)) => Err(error.into()),
        Err(error) => Err(BackupError::Invalid(format!(
            "the log is already broken, refusing to vouch for it: {error}"
        ))),
    }
}

/// Whether another process has the SQLite database at `path` open: every connection to a
/// database in WAL mode holds a shared lock on the "DMS" byte of its `-shm` file (offset
/// 128; SQLite's unix VFS) for as long as it is open, so a write lock on that byte would
/// conflict. Locks held by this process are not seen.
#[cfg(unix)]
pub fn database_in_use(path: &Path) -> Result<bool, BackupError> {
    use std::os::fd::AsRawFd;
    let shm = with_suffix(path, "-shm");
    let file = match std::fs::File::open(&shm) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(format!("failed to open {}", shm.display()))(e)),
    };
    // SAFETY: `flock` is plain data, zero is a valid value for every field, and `fcntl`
    // with F_GETLK only writes into the struct it is given.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = 128;
    lock.l_len = 1;
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    if rc == -1 {
        return Err(
            io(format!("failed to test the locks of {}", shm.display()))(
                std::io::Error::last_os_error(),
            ),
        );
    }
    Ok(i32::from(lock.l_type) != libc::F_UNLCK)
}

/// Without POSIX locks nothing can be told; assume nobody has it open.
#[cfg(not(unix))]
pub fn database_in_use(_path: &Path) -> Result<bool, BackupError> {
    Ok(false)
}

/// Puts the backup `from` in place as the SQLite database at `database_url`, once its
/// checkpoint's signature holds under `public_key`, every chain in it verifies and every
/// chain head is exactly the signed one. Refuses a database some process has open; an
/// existing database is moved aside (to `<file>.before-restore-<now>`) only with `force`.
/// The checkpoint is also written beside the database (`<file>.backup-checkpoint.json`).
pub async fn restore_sqlite(
    from: &Path,
    database_url: &str,
    public_key: &VerifyingKey,
    force: bool,
    now: DateTime<Utc>,
) -> Result<RestoreReport, BackupError> {
    let dest = sqlite_path(database_url)?;
    if !from.is_file() {
        return Err(BackupError::Refused(format!(
            "there is no backup at {}",
            from.display()
        )));
    }
    if database_in_use(&dest)? {
        return Err(BackupError::Refused(format!(
            "{} is open in a running process (the server?): stop it before restoring",
            dest.display()
        )));
    }
    let aside = with_suffix(
        &dest,
        &format!(".before-restore-{}", now.format("%Y%m%dT%H%M%SZ")),
    );
    if dest.exists() && !force {
        return Err(BackupError::Refused(format!(
            "{} exists; --force moves it aside to {} and restores in its place",
            dest.display(),
            aside.display()
        )));
    }

    // A working copy beside the destination (the same file system, so the final rename is
    // atomic); the backup file itself is only read.
    let mut staging_name = std::ffi::OsString::from(".");
    staging_name.push(dest.file_name().unwrap_or_default());
    staging_name.push(".restoring");
    let staging = parent_dir(&dest).join(staging_name);
    for stale in [
        staging.clone(),
        with_suffix(&staging, "-wal"),
        with_suffix(&staging, "-shm"),
    ] {
        remove_if_present(&stale)?;
    }
    std::fs::copy(from, &staging).map_err(io(format!(
        "failed to copy {} to {}",
        from.display(),
        staging.display()
    )))?;
    let checked = check_copy(&staging, public_key).await;
    let checkpoint = match checked {
        Ok(checkpoint) => checkpoint,
        Err(error) => {
            for file in [
                staging.clone(),
                with_suffix(&staging, "-wal"),
                with_suffix(&staging, "-shm"),
            ] {
                let _ = remove_if_present(&file);
            }
            return Err(error);
        }
    };
    for leftover in ["-wal", "-shm"] {
        remove_if_present(&with_suffix(&staging, leftover))?;
    }
    sync_path(&staging)?;

    let mut moved_aside = None;
    if dest.exists() {
        for suffix in ["", "-wal", "-shm"] {
            let file = with_suffix(&dest, suffix);
            if file.exists() {
                std::fs::rename(&file, with_suffix(&aside, suffix))
                    .map_err(io(format!("failed to move {} aside", file.display())))?;
            }
        }
        moved_aside = Some(aside);
    }
    std::fs::rename(&staging, &dest).map_err(io(format!(
        "failed to rename {} to {}",
        staging.display(),
        dest.display()
    )))?;
    let checkpoint_file = with_suffix(&dest, ".backup-checkpoint.json");
    std::fs::write(&checkpoint_file, format!("{}\n", checkpoint.to_json()))
        .map_err(io(format!("failed to write {}", checkpoint_file.display())))?;
    sync_path(&parent_dir(&dest))?;
    Ok(RestoreReport {
        database: dest,
        checkpoint_file,
        checkpoint,
        moved_aside,
    })
}

/// Reads the checkpoint inside the copy, checks its signature, removes it from the copy, and
/// checks the copy's chains against it.
async fn check_copy(copy: &Path, public_key: &VerifyingKey) -> Result<Checkpoint, BackupError> {
    let mut conn = connect(copy).await?;
    let text: Option<String> =
        sqlx::query_scalar(&format!("SELECT checkpoint FROM {BACKUP_TABLE} LIMIT 1"))
            .fetch_optional(&mut conn)
            .await
            .map_err(|_| {
                BackupError::Invalid(format!(
                    "{} holds no checkpoint: not a file written by `ochered backup`",
                    copy.display()
                ))
            })?;
    let text =
        text.ok_or_else(|| BackupError::Invalid("the backup's checkpoint is empty".into()))?;
    let checkpoint = Checkpoint::parse(&text)
        .and_then(|c| c.verify_signature(public_key).map(|()| c))
        .map_err(|e: CheckpointError| {
            BackupError::Invalid(format!("the backup's checkpoint does not hold: {e}"))
        })?;
    sqlx::query(&format!("DROP TABLE {BACKUP_TABLE}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;

    let store = SqliteStore::open(&copy.display().to_string()).await?;
    let checked = check_against_heads(&store, &checkpoint).await;
    store.close().await;
    checked?;
    Ok(checkpoint)
}

/// Every chain verifies, and the authorities and their heads are exactly the signed ones.
async fn check_against_heads(
    store: &SqliteStore,
    checkpoint: &Checkpoint,
) -> Result<(), BackupError> {
    let authorities = store.authorities().await?;
    let signed: Vec<&str> = checkpoint
        .heads
        .iter()
        .map(|h| h.authority.as_str())
        .collect();
    if authorities != signed {
        return Err(BackupError::Invalid(format!(
            "the backup holds authorities {authorities:?}, its checkpoint signs {signed:?}"
        )));
    }
    for head in &checkpoint.heads {
        match store.verify(&head.authority).await? {
            VerifyOutcome::Ok { head: found, .. } => {
                if found.authority_seq != head.authority_seq || found.hash != head.hash {
                    return Err(BackupError::Invalid(format!(
                        "authority {}: the backup's head is authority_seq={} hash={}, its checkpoint signs authority_seq={} hash={}",
                        head.authority, found.authority_seq, found.hash, head.authority_seq, head.hash
                    )));
                }
            }
            VerifyOutcome::Broken {
                authority_seq,
                reason,
                ..
            } => {
                return Err(BackupError::Invalid(format!(
                    "authority {}: the backup's chain is broken at authority_seq={authority_seq}: {reason}",
                    head.authority
                )))
            }
        }
    }
    Ok(())
}

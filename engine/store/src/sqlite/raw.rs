//! A small safe layer over the SQLite C API, used on a connection borrowed from sqlx.
//!
//! sqlx hands every row through a channel from its worker thread and copies every value
//! twice, which caps a batch append near 50,000 events/s and a read near 100,000 rows/s.
//! Locking the connection (`SqliteConnection::lock_handle`) and stepping statements
//! directly removes that overhead; sqlx still owns the connection, the pool and the
//! migrations.
//!
//! Invariant: every statement prepared here is finalized before the lock is released (a
//! `Stmt` borrows its `Db`, which borrows the lock), because sqlx closes connections with
//! `sqlite3_close`, which refuses while statements are open.

use std::ffi::{c_char, c_int, CStr};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;
use sqlx::sqlite::LockedSqliteHandle;

use crate::StoreError;

/// An SQLite failure: the extended result code and the connection's message.
#[derive(Debug)]
pub(crate) struct RawError {
    pub code: c_int,
    pub message: String,
}

impl From<RawError> for StoreError {
    fn from(error: RawError) -> Self {
        crate::error::from_sqlite_code(
            error.code,
            format!("(code: {}) {}", error.code, error.message),
        )
    }
}

/// A locked connection.
pub(crate) struct Db<'lock> {
    handle: NonNull<ffi::sqlite3>,
    _lock: PhantomData<&'lock mut ()>,
}

impl<'lock> Db<'lock> {
    pub fn new(locked: &'lock mut LockedSqliteHandle<'_>) -> Self {
        Db {
            handle: locked.as_raw_handle(),
            _lock: PhantomData,
        }
    }

    fn error(&self, code: c_int) -> RawError {
        // SAFETY: the handle is a live connection while the lock is held.
        let message = unsafe {
            let text = ffi::sqlite3_errmsg(self.handle.as_ptr());
            if text.is_null() {
                String::from("unknown error")
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        let extended = unsafe { ffi::sqlite3_extended_errcode(self.handle.as_ptr()) };
        RawError {
            code: if extended != 0 { extended } else { code },
            message,
        }
    }

    pub fn prepare<'db, 'data>(&'db self, sql: &str) -> Result<Stmt<'db, 'data>, RawError> {
        let mut stmt = ptr::null_mut();
        let length = c_int::try_from(sql.len()).expect("short SQL");
        // SAFETY: `sql` is valid for `length` bytes; `stmt` receives the statement.
        let code = unsafe {
            ffi::sqlite3_prepare_v3(
                self.handle.as_ptr(),
                sql.as_ptr() as *const c_char,
                length,
                0,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if code != ffi::SQLITE_OK {
            return Err(self.error(code));
        }
        let stmt = NonNull::new(stmt).expect("a statement for non-empty SQL");
        Ok(Stmt {
            db: self,
            stmt,
            _data: PhantomData,
        })
    }

    /// Runs a statement that returns no rows.
    pub fn exec(&self, sql: &str) -> Result<(), RawError> {
        let mut stmt = self.prepare(sql)?;
        while stmt.step()? {}
        Ok(())
    }

    /// False while a transaction is open on the connection.
    pub fn autocommit(&self) -> bool {
        // SAFETY: a live connection.
        unsafe { ffi::sqlite3_get_autocommit(self.handle.as_ptr()) != 0 }
    }

    pub fn last_insert_rowid(&self) -> i64 {
        // SAFETY: a live connection.
        unsafe { ffi::sqlite3_last_insert_rowid(self.handle.as_ptr()) }
    }

    /// Runs `work` inside `BEGIN IMMEDIATE … COMMIT`, rolling back if it fails. The flag
    /// is true when the connection is left inside a transaction it could not end, and
    /// must be closed.
    pub fn write_transaction<T>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, StoreError>,
    ) -> (Result<T, StoreError>, bool) {
        if !self.autocommit() {
            // Left open by an earlier failure; nothing in it was acknowledged.
            let _ = self.exec("ROLLBACK");
        }
        let result = self
            .exec("BEGIN IMMEDIATE")
            .map_err(StoreError::from)
            .and_then(|()| work(self))
            .and_then(|value| {
                self.exec("COMMIT")?;
                Ok(value)
            });
        if result.is_err() && !self.autocommit() {
            // SQLite may already have rolled back by itself (SQLITE_FULL, SQLITE_IOERR…).
            if let Err(error) = self.exec("ROLLBACK") {
                tracing::warn!(code = error.code, message = %error.message, "SQLite ROLLBACK failed");
            }
        }
        let stuck = !self.autocommit();
        (result, stuck)
    }
}

/// A prepared statement; values bound to it borrow for `'data` and are not copied.
pub(crate) struct Stmt<'db, 'data> {
    db: &'db Db<'db>,
    stmt: NonNull<ffi::sqlite3_stmt>,
    _data: PhantomData<&'data [u8]>,
}

impl<'db, 'data> Stmt<'db, 'data> {
    fn check(&self, code: c_int) -> Result<(), RawError> {
        if code == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.db.error(code))
        }
    }

    /// Parameters are numbered from 1.
    pub fn bind_i64(&mut self, index: c_int, value: i64) -> Result<(), RawError> {
        // SAFETY: a live statement.
        self.check(unsafe { ffi::sqlite3_bind_int64(self.stmt.as_ptr(), index, value) })
    }

    pub fn bind_text(&mut self, index: c_int, value: &'data str) -> Result<(), RawError> {
        // SAFETY: SQLITE_STATIC: `value` outlives the statement (`'data`), and SQLite reads
        // it only until the parameter is rebound or the statement finalized.
        self.check(unsafe {
            ffi::sqlite3_bind_text64(
                self.stmt.as_ptr(),
                index,
                value.as_ptr() as *const c_char,
                value.len() as u64,
                ffi::SQLITE_STATIC(),
                ffi::SQLITE_UTF8 as u8,
            )
        })
    }

    /// Binds a copy of `value` (SQLITE_TRANSIENT), for values that do not outlive the
    /// statement (only the benchmarks' plain rows need it).
    #[cfg(feature = "testing")]
    pub fn bind_blob_transient(&mut self, index: c_int, value: &[u8]) -> Result<(), RawError> {
        // SAFETY: SQLite copies the bytes before this returns.
        self.check(unsafe {
            ffi::sqlite3_bind_blob64(
                self.stmt.as_ptr(),
                index,
                value.as_ptr() as *const std::ffi::c_void,
                value.len() as u64,
                ffi::SQLITE_TRANSIENT(),
            )
        })
    }

    pub fn bind_blob(&mut self, index: c_int, value: &'data [u8]) -> Result<(), RawError> {
        // SAFETY: as for `bind_text`.
        self.check(unsafe {
            ffi::sqlite3_bind_blob64(
                self.stmt.as_ptr(),
                index,
                value.as_ptr() as *const std::ffi::c_void,
                value.len() as u64,
                ffi::SQLITE_STATIC(),
            )
        })
    }

    /// One step: `true` when a row is ready, `false` when the statement is done.
    pub fn step(&mut self) -> Result<bool, RawError> {
        // SAFETY: a live statement.
        match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            code => Err(self.db.error(code)),
        }
    }

    /// Makes the statement ready to run again; bindings stay.
    pub fn reset(&mut self) {
        // SAFETY: a live statement. The error of the last step was already returned by `step`.
        unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
    }

    /// Steps an INSERT/UPDATE/DELETE to completion and resets it.
    pub fn run(&mut self) -> Result<(), RawError> {
        let result = self.step().map(|_| ());
        self.reset();
        result
    }

    /// Columns are numbered from 0.
    pub fn column_i64(&self, index: c_int) -> i64 {
        // SAFETY: a live statement positioned on a row.
        unsafe { ffi::sqlite3_column_int64(self.stmt.as_ptr(), index) }
    }

    /// The column as UTF-8 text (SQLite converts other types); an error names the column.
    pub fn column_text(&self, index: c_int) -> Result<&str, String> {
        let bytes = self.column_bytes(index, true);
        std::str::from_utf8(bytes).map_err(|e| format!("column {index} is not UTF-8: {e}"))
    }

    pub fn column_string(&self, index: c_int) -> Result<String, String> {
        self.column_text(index).map(str::to_owned)
    }

    pub fn column_blob(&self, index: c_int) -> &[u8] {
        self.column_bytes(index, false)
    }

    fn column_bytes(&self, index: c_int, text: bool) -> &[u8] {
        // SAFETY: a live statement on a row. The pointer is valid for `length` bytes until
        // the next step, reset or finalize (which need `&mut self`) or a conversion of the
        // same column to another encoding or type; every caller here reads each column
        // once, through one accessor, and copies or parses the slice at once.
        unsafe {
            let data = if text {
                ffi::sqlite3_column_text(self.stmt.as_ptr(), index)
            } else {
                ffi::sqlite3_column_blob(self.stmt.as_ptr(), index) as *const u8
            };
            let length = ffi::sqlite3_column_bytes(self.stmt.as_ptr(), index);
            if data.is_null() || length <= 0 {
                &[]
            } else {
                std::slice::from_raw_parts(data, length as usize)
            }
        }
    }
}

impl Drop for Stmt<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: finalized exactly once; its error repeats the last step's, already reported.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

/// Runs blocking SQLite work without stalling the other tasks of a multi-threaded runtime.
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

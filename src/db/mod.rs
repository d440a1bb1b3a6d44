//! The only module that knows SQLite. Each submodule owns the SQL of one table group;
//! callers get Atelier's own types and [`DbError`], never rusqlite rows or errors.

pub mod accounts;
pub mod alipay;
pub mod auth_codes;
pub mod billing;
pub mod growth;
pub mod health;
pub mod jobs;
pub mod ledger;
pub mod mail;
pub mod migrate;
pub mod packages;
pub mod pool;
pub mod rest;
pub mod sessions;
pub mod settings;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

pub use rusqlite::Connection as Conn;

/// A database failure, with enough words for the log.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had from the pool in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A UNIQUE/CHECK/FOREIGN KEY constraint refused the write.
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// The database is locked by another writer past the busy timeout.
    #[error("database busy: {0}")]
    Busy(String),
    /// Anything else.
    #[error("database error: {0}")]
    Other(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode as C;
        match err.sqlite_error_code() {
            Some(C::ConstraintViolation) => DbError::Constraint(err.to_string()),
            Some(C::DatabaseBusy) | Some(C::DatabaseLocked) => DbError::Busy(err.to_string()),
            _ => DbError::Other(err.to_string()),
        }
    }
}

impl From<r2d2::Error> for DbError {
    fn from(err: r2d2::Error) -> Self {
        DbError::Unavailable(err.to_string())
    }
}

impl From<DbError> for crate::domain::ApiError {
    fn from(err: DbError) -> Self {
        crate::domain::ApiError::internal().cause(err.to_string())
    }
}

/// Shorthand for database results.
pub type DbResult<T> = Result<T, DbError>;

/// How many times a write transaction tries to take the write lock.
pub const BEGIN_ATTEMPTS: u32 = 3;

/// The database: a pool of connections to one SQLite file.
#[derive(Clone)]
pub struct Db {
    pool: pool::Pool,
    path: PathBuf,
    pool_wait: prometheus::Histogram,
}

impl Db {
    /// Opens (creating if needed) the database file and migrates it to the current schema.
    pub fn open(path: &Path, pool_size: u32, busy_timeout: Duration) -> DbResult<Db> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbError::Other(format!("cannot create {}: {e}", dir.display())))?;
        }
        let pool_wait = pool::pool_wait_histogram();
        let pool = pool::open(path, pool_size, busy_timeout, pool_wait.clone())?;
        let db = Db {
            pool,
            path: path.to_path_buf(),
            pool_wait,
        };
        db.with_conn(migrate::migrate)?;
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled connection (blocking: call from a blocking context).
    pub fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> DbResult<T>) -> DbResult<T> {
        let conn = self.pool.get()?;
        f(&conn)
    }

    /// Runs `f` inside `BEGIN IMMEDIATE … COMMIT` (rolled back if `f` fails). Taking the
    /// write lock is tried [`BEGIN_ATTEMPTS`] times (each waits the busy timeout) before
    /// giving up, since `f` has not run yet and may carry work that cannot be redone
    /// (the ledger's batches).
    pub fn transaction<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        self.transaction_with(false, f)
    }

    /// [`Db::transaction`], committed with `synchronous=FULL` when `durable`: the commit
    /// survives a power loss, for answers to parties that will not ask again (Stripe).
    pub fn transaction_with<T, E>(
        &self,
        durable: bool,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let mut conn = self.pool.get().map_err(DbError::from)?;
        if durable {
            conn.execute_batch("PRAGMA synchronous = FULL")
                .map_err(DbError::from)?;
        }
        let result = Self::run_transaction(&mut conn, f);
        if durable {
            if let Err(err) = conn.execute_batch("PRAGMA synchronous = NORMAL") {
                tracing::warn!(error = %err, "cannot restore synchronous=NORMAL");
            }
        }
        result
    }

    fn run_transaction<T, E>(
        conn: &mut Connection,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let mut attempt = 1;
        let tx = loop {
            match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                Ok(tx) => break tx,
                Err(err) => match DbError::from(err) {
                    DbError::Busy(why) if attempt < BEGIN_ATTEMPTS => {
                        tracing::warn!(attempt, error = %why, "write lock busy; trying again");
                        attempt += 1;
                    }
                    other => return Err(E::from(other)),
                },
            }
        };
        let value = f(&tx)?;
        tx.commit().map_err(DbError::from)?;
        Ok(value)
    }

    /// [`Db::with_conn`] off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.with_conn(f))
            .await
            .map_err(|e| DbError::Other(format!("blocking task failed: {e}")))?
    }

    /// [`Db::transaction`] off the async runtime.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.transaction(f))
            .await
            .map_err(|e| E::from(DbError::Other(format!("blocking task failed: {e}"))))?
    }

    /// Waits for pooled connections so far (exposed on `/metrics`).
    pub fn pool_wait(&self) -> &prometheus::Histogram {
        &self.pool_wait
    }

    /// Proves the database is writable (for `/readyz`).
    pub fn heartbeat(&self) -> DbResult<()> {
        self.transaction(|conn| {
            conn.execute(
                "INSERT INTO heartbeat (id, beat_at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at",
                [crate::domain::time::now_ms()],
            )?;
            Ok::<_, DbError>(())
        })
    }
}

/// A new time-ordered id (UUIDv7) as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A durable transaction runs with `synchronous=FULL` and leaves its connection
    /// back at `NORMAL`.
    #[test]
    fn durable_transactions_commit_with_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), 2, Duration::from_millis(400)).unwrap();
        let sync = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        let inside = db
            .transaction_with(true, |conn| Ok::<_, DbError>(sync(conn)))
            .unwrap();
        assert_eq!(inside, 2, "FULL");
        db.with_conn(|a| {
            db.with_conn(|b| {
                assert_eq!((sync(a), sync(b)), (1, 1), "both back at NORMAL");
                Ok(())
            })
        })
        .unwrap();
    }

    /// A writer that holds the lock longer than one busy timeout does not make the next
    /// transaction fail: taking the lock is tried again.
    #[test]
    fn a_busy_write_lock_is_waited_for_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path, 2, Duration::from_millis(400)).unwrap();
        let blocker = Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            blocker.execute_batch("COMMIT").unwrap();
        });
        let started = std::time::Instant::now();
        let wrote = db.transaction(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO heartbeat (id, beat_at) VALUES (1, 1)",
                [],
            )
            .map_err(DbError::from)
        });
        release.join().unwrap();
        assert_eq!(wrote.unwrap(), 1);
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "it had to wait"
        );
    }
}

//! The r2d2 pool and the pragmas every connection runs with.

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;

use super::{DbError, DbResult};

/// A pool of SQLite connections.
pub type Pool = r2d2::Pool<SqliteConnectionManager>;

/// Opens a pool on `path` with WAL, `synchronous=NORMAL`, foreign keys and a busy timeout.
pub fn open(path: &Path, size: u32, busy_timeout: Duration) -> DbResult<Pool> {
    let busy_ms = busy_timeout.as_millis();
    let manager = SqliteConnectionManager::file(path).with_init(move |conn| {
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = {busy_ms};"
        ))
    });
    r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(busy_timeout.max(Duration::from_secs(5)))
        .build(manager)
        .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))
}

//! The r2d2 pool and the pragmas every connection runs with.

use std::path::Path;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts};
use r2d2_sqlite::SqliteConnectionManager;

use super::{DbError, DbResult};

/// A pool of SQLite connections.
pub type Pool = r2d2::Pool<SqliteConnectionManager>;

/// How long callers waited for a pooled connection (the `/metrics` exposition registers it).
pub fn pool_wait_histogram() -> Histogram {
    let opts = HistogramOpts::new(
        "atelier_db_pool_wait_seconds",
        "Time spent waiting for a database connection from the pool",
    )
    .buckets(vec![
        0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
    ]);
    Histogram::with_opts(opts).expect("constant, valid histogram options")
}

/// Records every checkout's wait into the histogram.
#[derive(Debug)]
struct CheckoutTimer(Histogram);

impl r2d2::HandleEvent for CheckoutTimer {
    fn handle_checkout(&self, event: r2d2::event::CheckoutEvent) {
        self.0.observe(event.duration().as_secs_f64());
    }
}

/// Opens a pool on `path` with WAL, `synchronous=NORMAL`, foreign keys and a busy timeout;
/// checkout waits go to `wait`.
pub fn open(path: &Path, size: u32, busy_timeout: Duration, wait: Histogram) -> DbResult<Pool> {
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
        .event_handler(Box::new(CheckoutTimer(wait)))
        .build(manager)
        .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))
}

//! The change feed behind `/realtime/v1`: one task that turns the job change feed (the
//! job ids the SSE endpoint listens to) and the ledger's commit signal into row changes
//! of the `/rest/v1` views, read once each and published in commit order to every
//! socket. Sockets decide who may hear a change; this feed never filters.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use crate::db::rest::{self, Relation};
use crate::db::Db;
use crate::domain::time::{now_ms, rfc3339};

/// One changed row.
#[derive(Debug, Clone)]
pub struct Change {
    pub relation: &'static Relation,
    /// `INSERT` or `UPDATE`.
    pub kind: &'static str,
    /// The user the row belongs to.
    pub owner: String,
    /// The whole row as `/rest/v1` answers it (storage URLs still relative).
    pub record: Map<String, Value>,
    pub commit_timestamp: String,
}

/// Room for changes a slow socket has not read yet.
const CAPACITY: usize = 4096;

/// Jobs whose last version is remembered (so a change is published once).
const REMEMBERED_JOBS: usize = 10_000;

/// Starts the feed; it ends when the ledger stops.
pub fn spawn(
    db: Db,
    jobs: broadcast::Receiver<String>,
    commits: watch::Receiver<u64>,
) -> broadcast::Sender<Arc<Change>> {
    let (tx, _) = broadcast::channel(CAPACITY);
    let out = tx.clone();
    tokio::spawn(async move { run(db, jobs, commits, out).await });
    tx
}

async fn run(
    db: Db,
    mut jobs: broadcast::Receiver<String>,
    mut commits: watch::Receiver<u64>,
    out: broadcast::Sender<Arc<Change>>,
) {
    let mut marks = match db.read(rest::account_marks).await {
        Ok(marks) => marks,
        Err(err) => {
            tracing::error!(error = %err, "change feed cannot start");
            return;
        }
    };
    let mut versions: HashMap<String, i64> = HashMap::new();
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Ok(id) => publish_job(&db, &id, &mut versions, &out).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "change feed lagged behind the job feed")
                }
                Err(RecvError::Closed) => return,
            },
            changed = commits.changed() => {
                if changed.is_err() {
                    return;
                }
                marks = publish_accounts(&db, marks, &out).await;
            }
        }
    }
}

async fn publish_job(
    db: &Db,
    id: &str,
    versions: &mut HashMap<String, i64>,
    out: &broadcast::Sender<Arc<Change>>,
) {
    let key = id.to_string();
    let row = match db
        .read(move |conn| rest::row_by_id(conn, &rest::GENERATION_JOBS, &key))
        .await
    {
        Ok(Some(row)) => row,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(job_id = id, error = %err, "change feed cannot read a job");
            return;
        }
    };
    let (owner, record) = row;
    let version = record.get("version").and_then(Value::as_i64).unwrap_or(0);
    let seen = versions.get(id).copied();
    if seen.is_some_and(|v| v >= version) {
        return;
    }
    // A job this feed has not seen yet and that was created moments ago is new: its
    // first change may already be past the insert (the supervisor claims at once), and
    // is published as the INSERT, with the row as it is now.
    let kind = if seen.is_none() && (version <= 1 || created_recently(&record)) {
        "INSERT"
    } else {
        "UPDATE"
    };
    if versions.len() >= REMEMBERED_JOBS {
        versions.clear();
    }
    versions.insert(id.to_string(), version);
    send(out, &rest::GENERATION_JOBS, kind, owner, record);
}

/// Whether the row's `created_at` is within the last [`NEW_JOB_WINDOW_MS`].
fn created_recently(record: &Map<String, Value>) -> bool {
    use time::format_description::well_known::Rfc3339;
    record
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(|t| time::OffsetDateTime::parse(t, &Rfc3339).ok())
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .is_some_and(|created| now_ms() - created < NEW_JOB_WINDOW_MS)
}

/// How young a job first seen by the feed must be to count as inserted.
const NEW_JOB_WINDOW_MS: i64 = 30_000;

/// Publishes the profile of every user whose ledger or subscription moved; returns the
/// new marks.
async fn publish_accounts(
    db: &Db,
    marks: (i64, i64),
    out: &broadcast::Sender<Arc<Change>>,
) -> (i64, i64) {
    let read = db
        .read(move |conn| {
            let (users, marks) = rest::changed_accounts(conn, marks)?;
            let mut rows = Vec::with_capacity(users.len());
            for user in users {
                rows.extend(rest::row_by_id(conn, &rest::PROFILES, &user)?);
            }
            Ok((rows, marks))
        })
        .await;
    match read {
        Ok((rows, marks)) => {
            for (owner, record) in rows {
                send(out, &rest::PROFILES, "UPDATE", owner, record);
            }
            marks
        }
        Err(err) => {
            tracing::warn!(error = %err, "change feed cannot read accounts");
            marks
        }
    }
}

fn send(
    out: &broadcast::Sender<Arc<Change>>,
    relation: &'static Relation,
    kind: &'static str,
    owner: String,
    record: Map<String, Value>,
) {
    // No socket listening is not an error.
    let _ = out.send(Arc::new(Change {
        relation,
        kind,
        owner,
        record,
        commit_timestamp: rfc3339(now_ms()),
    }));
}

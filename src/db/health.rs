//! The job-health reads: windowed job counts, durations, failed jobs with their owner,
//! stuck units, and the last success per provider.

use rusqlite::{params, Connection};

use super::DbResult;

/// Jobs created in the window, grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct CountRow {
    pub job_type: String,
    pub status: String,
    pub error_code: Option<String>,
    pub count: i64,
}

/// A failed job and its seller.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedJob {
    pub id: String,
    pub job_type: String,
    pub user_id: String,
    pub user_email: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A unit running longer than it should.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckUnit {
    pub task_id: String,
    pub job_id: String,
    pub user_email: String,
    pub provider: String,
    pub started_at: i64,
    pub lease_until: Option<i64>,
}

/// Most rows any one list answers.
pub const LIST_CAP: usize = 200;
/// Most durations read for the percentiles.
pub const DURATION_CAP: usize = 100_000;

/// Jobs created since `since` by type, status and error code.
pub fn counts(conn: &Connection, since: i64) -> DbResult<Vec<CountRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT type, status, error_code, COUNT(*) FROM generation_jobs
         WHERE created_at >= ?1 GROUP BY type, status, error_code",
    )?;
    let rows = stmt.query_map([since], |r| {
        Ok(CountRow {
            job_type: r.get(0)?,
            status: r.get(1)?,
            error_code: r.get(2)?,
            count: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `(type, duration_ms)` of the successful jobs created since `since`.
pub fn success_durations(conn: &Connection, since: i64) -> DbResult<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT type, duration_ms FROM generation_jobs
         WHERE created_at >= ?1 AND status = 'success' AND duration_ms IS NOT NULL
         LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, DURATION_CAP as i64], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest failed jobs created since `since`, with the seller's e-mail.
pub fn failed_jobs(conn: &Connection, since: i64, limit: usize) -> DbResult<Vec<FailedJob>> {
    let mut stmt = conn.prepare_cached(
        "SELECT j.id, j.type, j.user_id, COALESCE(u.email, ''), j.error_code, j.error_message,
                j.created_at, j.finished_at
         FROM generation_jobs j LEFT JOIN users u ON u.id = j.user_id
         WHERE j.created_at >= ?1 AND j.status = 'failed'
         ORDER BY j.created_at DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, limit.min(LIST_CAP) as i64], |r| {
        Ok(FailedJob {
            id: r.get(0)?,
            job_type: r.get(1)?,
            user_id: r.get(2)?,
            user_email: r.get(3)?,
            error_code: r.get(4)?,
            error_message: r.get(5)?,
            created_at: r.get(6)?,
            finished_at: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Running units past their lease at `now`, or started before `started_before`.
pub fn stuck_units(conn: &Connection, now: i64, started_before: i64) -> DbResult<Vec<StuckUnit>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, t.job_id, COALESCE(u.email, ''), t.provider, t.updated_at, t.lease_until
         FROM generation_tasks t LEFT JOIN users u ON u.id = t.user_id
         WHERE t.status = 'running' AND (t.lease_until < ?1 OR t.updated_at < ?2)
         ORDER BY t.updated_at LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![now, started_before, LIST_CAP as i64], |r| {
        Ok(StuckUnit {
            task_id: r.get(0)?,
            job_id: r.get(1)?,
            user_email: r.get(2)?,
            provider: r.get(3)?,
            started_at: r.get(4)?,
            lease_until: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When a unit of each provider last succeeded.
pub fn last_success_per_provider(conn: &Connection) -> DbResult<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider, MAX(updated_at) FROM generation_tasks
         WHERE status = 'success' GROUP BY provider",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

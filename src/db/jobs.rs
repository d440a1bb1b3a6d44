//! `generation_jobs` and `generation_tasks`: what sellers asked for and its units.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use super::{DbError, DbResult};

/// A job row.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub user_id: String,
    pub job_type: String,
    pub status: String,
    pub provider: String,
    pub model: String,
    pub payload: Value,
    pub result_data: Option<Value>,
    pub result_url: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub unit_cost: i64,
    pub units_total: i64,
    pub cost_amount: i64,
    pub held_amount: i64,
    pub trace_id: Option<String>,
    pub client_job_id: Option<String>,
    pub request_hash: Option<String>,
    pub fe_attempt: Option<i64>,
    pub duration_ms: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// When `result_data` was last written.
    pub snapshot_at: Option<i64>,
    /// When the owner cancelled it: from then on no unit is requeued or charged.
    pub cancelled_at: Option<i64>,
    /// Atelier's own idempotency key (an operator's retry), in a namespace of its own,
    /// apart from the sellers' `client_job_id`s and never forgotten.
    pub internal_key: Option<String>,
}

/// Unit counts of a job by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitCounts {
    pub total: u32,
    pub queued: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
}

/// A task row.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub job_id: String,
    pub user_id: String,
    pub unit_index: i64,
    pub provider: String,
    pub status: String,
    pub attempts: i64,
    pub run_after: i64,
    pub lease_until: Option<i64>,
    pub input: Value,
    pub result: Option<Value>,
    pub error_code: Option<String>,
    pub last_error: Option<String>,
    pub cost: i64,
}

fn json_col(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

const JOB_COLUMNS: &str = "id, user_id, type, status, provider, model, payload, result_data,
    result_url, error_code, error_message, unit_cost, units_total, cost_amount, held_amount,
    trace_id, client_job_id, request_hash, fe_attempt, duration_ms, version, created_at, updated_at,
    snapshot_at, cancelled_at, internal_key";

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        user_id: r.get(1)?,
        job_type: r.get(2)?,
        status: r.get(3)?,
        provider: r.get(4)?,
        model: r.get(5)?,
        payload: json_col(r.get(6)?).unwrap_or(Value::Null),
        result_data: json_col(r.get(7)?),
        result_url: r.get(8)?,
        error_code: r.get(9)?,
        error_message: r.get(10)?,
        unit_cost: r.get(11)?,
        units_total: r.get(12)?,
        cost_amount: r.get(13)?,
        held_amount: r.get(14)?,
        trace_id: r.get(15)?,
        client_job_id: r.get(16)?,
        request_hash: r.get(17)?,
        fe_attempt: r.get(18)?,
        duration_ms: r.get(19)?,
        version: r.get(20)?,
        created_at: r.get(21)?,
        updated_at: r.get(22)?,
        snapshot_at: r.get(23)?,
        cancelled_at: r.get(24)?,
        internal_key: r.get(25)?,
    })
}

const TASK_COLUMNS: &str = "id, job_id, user_id, unit_index, provider, status, attempts,
    run_after, lease_until, input, result, error_code, last_error, cost";

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: r.get(0)?,
        job_id: r.get(1)?,
        user_id: r.get(2)?,
        unit_index: r.get(3)?,
        provider: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        run_after: r.get(7)?,
        lease_until: r.get(8)?,
        input: json_col(r.get(9)?).unwrap_or(Value::Null),
        result: json_col(r.get(10)?),
        error_code: r.get(11)?,
        last_error: r.get(12)?,
        cost: r.get(13)?,
    })
}

/// Writes a new job (status `processing`).
pub fn insert_job(conn: &Connection, job: &Job) -> DbResult<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO generation_jobs ({JOB_COLUMNS}) VALUES
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
          ?20, ?21, ?22, ?23, ?24, ?25, ?26)"
    ))?
    .execute(params![
        job.id,
        job.user_id,
        job.job_type,
        job.status,
        job.provider,
        job.model,
        job.payload.to_string(),
        job.result_data.as_ref().map(Value::to_string),
        job.result_url,
        job.error_code,
        job.error_message,
        job.unit_cost,
        job.units_total,
        job.cost_amount,
        job.held_amount,
        job.trace_id,
        job.client_job_id,
        job.request_hash,
        job.fe_attempt,
        job.duration_ms,
        job.version,
        job.created_at,
        job.updated_at,
        job.snapshot_at,
        job.cancelled_at,
        job.internal_key,
    ])?;
    Ok(())
}

/// Writes a new queued task.
pub fn insert_task(conn: &Connection, task: &Task, now: i64) -> DbResult<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO generation_tasks ({TASK_COLUMNS}, created_at, updated_at) VALUES
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)"
    ))?
    .execute(params![
        task.id,
        task.job_id,
        task.user_id,
        task.unit_index,
        task.provider,
        task.status,
        task.attempts,
        task.run_after,
        task.lease_until,
        task.input.to_string(),
        task.result.as_ref().map(Value::to_string),
        task.error_code,
        task.last_error,
        task.cost,
        now,
    ])?;
    Ok(())
}

/// A job by id.
pub fn get_job(conn: &Connection, id: &str) -> DbResult<Option<Job>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM generation_jobs WHERE id = ?1"
        ))?
        .query_row([id], job_from_row)
        .optional()?)
}

/// The job a user created under a client idempotency key.
pub fn find_by_client_key(conn: &Connection, user_id: &str, key: &str) -> DbResult<Option<Job>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM generation_jobs WHERE user_id = ?1 AND client_job_id = ?2"
        ))?
        .query_row([user_id, key], job_from_row)
        .optional()?)
}

/// The job created under one of Atelier's own idempotency keys.
pub fn find_by_internal_key(conn: &Connection, key: &str) -> DbResult<Option<Job>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM generation_jobs WHERE internal_key = ?1"
        ))?
        .query_row([key], job_from_row)
        .optional()?)
}

/// Marks a processing job cancelled (once; later calls keep the first time).
pub fn mark_cancelled(conn: &Connection, job_id: &str, now: i64) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE generation_jobs SET cancelled_at = COALESCE(cancelled_at, ?2), updated_at = ?2
         WHERE id = ?1 AND status = 'processing'",
    )?
    .execute(params![job_id, now])?;
    Ok(())
}

/// Frees an old job's client key so that it can be used again (after 24 h).
pub fn forget_client_key(conn: &Connection, job_id: &str) -> DbResult<()> {
    conn.execute(
        "UPDATE generation_jobs SET client_job_id = NULL WHERE id = ?1",
        [job_id],
    )?;
    Ok(())
}

/// A user's jobs, newest first, filtered by type/status, older than `before` (a job id).
pub fn list_jobs(
    conn: &Connection,
    user_id: Option<&str>,
    job_type: Option<&str>,
    status: Option<&str>,
    limit: u32,
    before: Option<&str>,
) -> DbResult<Vec<Job>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM generation_jobs
         WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR type = ?2)
           AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT ?5"
    ))?;
    let rows = stmt.query_map(
        params![user_id, job_type, status, before, limit],
        job_from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Unit counts of one job.
pub fn unit_counts(conn: &Connection, job_id: &str) -> DbResult<UnitCounts> {
    let mut counts = UnitCounts::default();
    let mut stmt = conn.prepare_cached(
        "SELECT status, count(*) FROM generation_tasks WHERE job_id = ?1 GROUP BY status",
    )?;
    let rows = stmt.query_map([job_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
    })?;
    for row in rows {
        let (status, n) = row?;
        counts.total += n;
        match status.as_str() {
            "queued" => counts.queued = n,
            "running" => counts.running = n,
            "success" => counts.succeeded = n,
            "failed" => counts.failed = n,
            _ => counts.cancelled = n,
        }
    }
    Ok(counts)
}

/// Every task of a job, in unit order.
pub fn tasks_of_job(conn: &Connection, job_id: &str) -> DbResult<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM generation_tasks WHERE job_id = ?1 ORDER BY unit_index"
    ))?;
    let rows = stmt.query_map([job_id], task_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A task by id.
pub fn get_task(conn: &Connection, id: &str) -> DbResult<Option<Task>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM generation_tasks WHERE id = ?1"
        ))?
        .query_row([id], task_from_row)
        .optional()?)
}

/// A due unit with what its generator needs from the job.
#[derive(Debug, Clone, PartialEq)]
pub struct DueUnit {
    pub task: Task,
    pub model: String,
    pub job_type: String,
}

/// Users with queued units of a provider, in id order: one index probe per user
/// (a skip-scan), so the cost does not grow with the depth of the queue.
pub fn queued_users(conn: &Connection, provider: &str) -> DbResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE u(id) AS (
            SELECT MIN(user_id) FROM generation_tasks
             WHERE status = 'queued' AND provider = ?1
            UNION ALL
            SELECT (SELECT MIN(user_id) FROM generation_tasks
                     WHERE status = 'queued' AND provider = ?1 AND user_id > u.id)
              FROM u WHERE u.id IS NOT NULL)
         SELECT id FROM u WHERE id IS NOT NULL",
    )?;
    let rows = stmt.query_map([provider], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One user's due units of a provider, oldest first.
fn due_units_of_user(
    conn: &Connection,
    provider: &str,
    user_id: &str,
    now: i64,
    limit: usize,
) -> DbResult<Vec<DueUnit>> {
    let columns = TASK_COLUMNS
        .split(',')
        .map(|c| format!("t.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns}, j.model, j.type FROM generation_tasks t
           JOIN generation_jobs j ON j.id = t.job_id
          WHERE t.status = 'queued' AND t.provider = ?1 AND t.user_id = ?2 AND t.run_after <= ?3
          ORDER BY t.run_after, t.id LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![provider, user_id, now, limit as i64], |r| {
        Ok(DueUnit {
            task: task_from_row(r)?,
            model: r.get(14)?,
            job_type: r.get(15)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Due queued units of a provider, at most `limit`, taken round robin across users:
/// starting with the first user after `after_user` (the last one served), each user's
/// oldest unit, then each user's second, and so on.
pub fn due_tasks(
    conn: &Connection,
    provider: &str,
    now: i64,
    limit: usize,
    after_user: Option<&str>,
) -> DbResult<Vec<DueUnit>> {
    let mut users = queued_users(conn, provider)?;
    if users.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let start = after_user
        .map(|after| users.partition_point(|u| u.as_str() <= after) % users.len())
        .unwrap_or(0);
    users.rotate_left(start);
    let per_user = limit.div_ceil(users.len()).max(1);
    let mut queues = Vec::new();
    for user in &users {
        if queues.len() >= limit {
            break;
        }
        let units = due_units_of_user(conn, provider, user, now, per_user)?;
        if !units.is_empty() {
            queues.push(units.into_iter());
        }
    }
    let mut picked = Vec::with_capacity(limit);
    while picked.len() < limit {
        let before = picked.len();
        for queue in queues.iter_mut() {
            if picked.len() == limit {
                break;
            }
            if let Some(unit) = queue.next() {
                picked.push(unit);
            }
        }
        if picked.len() == before {
            break;
        }
    }
    Ok(picked)
}

/// Claims a queued task: `running`, one more attempt, a lease. False if it was taken.
pub fn claim_task(conn: &Connection, task_id: &str, lease_until: i64, now: i64) -> DbResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE generation_tasks SET status = 'running', attempts = attempts + 1,
                lease_until = ?2, updated_at = ?3
             WHERE id = ?1 AND status = 'queued'",
        )?
        .execute(params![task_id, lease_until, now])?;
    Ok(n == 1)
}

/// Marks a job changed (a unit started or was requeued): bumps its version.
pub fn touch_job(conn: &Connection, job_id: &str, now: i64) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE generation_jobs SET version = version + 1, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![job_id, now])?;
    Ok(())
}

/// Processing jobs of a type a user has.
pub fn count_active(conn: &Connection, user_id: &str, job_type: &str) -> DbResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM generation_jobs
             WHERE user_id = ?1 AND type = ?2 AND status = 'processing'",
        )?
        .query_row(params![user_id, job_type], |r| r.get(0))?)
}

/// Records that a user started a prompt stream (and forgets those older than a day).
pub fn record_prompt_stream(conn: &Connection, user_id: &str, now: i64) -> DbResult<()> {
    conn.prepare_cached("INSERT INTO prompt_streams (user_id, created_at) VALUES (?1, ?2)")?
        .execute(params![user_id, now])?;
    conn.prepare_cached("DELETE FROM prompt_streams WHERE user_id = ?1 AND created_at < ?2")?
        .execute(params![user_id, now - 24 * 3600 * 1000])?;
    Ok(())
}

/// Prompt streams a user started since `since`: `(count, oldest)`.
pub fn count_streams_since(
    conn: &Connection,
    user_id: &str,
    since: i64,
) -> DbResult<(i64, Option<i64>)> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), MIN(created_at) FROM prompt_streams
             WHERE user_id = ?1 AND created_at >= ?2",
        )?
        .query_row(params![user_id, since], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Jobs a user created since `since` (of one type, or of any): `(count, oldest created_at)`.
pub fn count_created_since(
    conn: &Connection,
    user_id: &str,
    since: i64,
    job_type: Option<&str>,
) -> DbResult<(i64, Option<i64>)> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), MIN(created_at) FROM generation_jobs
             WHERE user_id = ?1 AND created_at >= ?2 AND (?3 IS NULL OR type = ?3)",
        )?
        .query_row(params![user_id, since, job_type], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?)
}

/// How an attempt ends: the unit's new status, its result or error `(code, message)`,
/// and when a requeued unit may run again.
#[derive(Debug, Clone, Copy)]
pub struct AttemptEnd<'a> {
    pub status: &'a str,
    pub result: Option<&'a Value>,
    pub error: Option<(&'a str, &'a str)>,
    pub run_after: Option<i64>,
}

/// Ends a running attempt (identified by its attempt number, so a stale worker whose
/// lease was taken over cannot write). False if the attempt is no longer current.
pub fn end_attempt(
    conn: &Connection,
    task_id: &str,
    attempt: i64,
    end: &AttemptEnd<'_>,
    now: i64,
) -> DbResult<bool> {
    let AttemptEnd {
        status,
        result,
        error,
        run_after,
    } = *end;
    let n = conn
        .prepare_cached(
            "UPDATE generation_tasks SET status = ?3, result = ?4, error_code = ?5,
                last_error = ?6, run_after = COALESCE(?7, run_after), lease_until = NULL,
                updated_at = ?8
             WHERE id = ?1 AND attempts = ?2 AND status = 'running'",
        )?
        .execute(params![
            task_id,
            attempt,
            status,
            result.map(Value::to_string),
            error.map(|e| e.0),
            error.map(|e| e.1),
            run_after,
            now
        ])?;
    Ok(n == 1)
}

/// The payloads of every job whose payload mentions `needle` (e.g. `temp/`): where the
/// temp sweep looks for inputs to keep.
pub fn payloads_mentioning(conn: &Connection, needle: &str) -> DbResult<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT payload FROM generation_jobs WHERE instr(payload, ?1) > 0")?;
    let rows = stmt.query_map(params![needle], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Running tasks whose lease ended before `now` (all running ones with `now = i64::MAX`).
pub fn expired_leases(conn: &Connection, now: i64) -> DbResult<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM generation_tasks
         WHERE status = 'running' AND lease_until < ?1 ORDER BY lease_until LIMIT 1000"
    ))?;
    let rows = stmt.query_map([now], task_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Puts an expired running task back in the queue (its attempt stays counted).
pub fn requeue_expired(conn: &Connection, task_id: &str, attempt: i64, now: i64) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE generation_tasks SET status = 'queued', lease_until = NULL, run_after = ?3,
            last_error = 'lease expired', updated_at = ?3
         WHERE id = ?1 AND attempts = ?2 AND status = 'running'",
        params![task_id, attempt, now],
    )?;
    Ok(n == 1)
}

/// Ends a queued task as failed with `code` (e.g. its provider is no longer configured).
/// False if it was not queued.
pub fn fail_queued_task(
    conn: &Connection,
    task_id: &str,
    code: &str,
    message: &str,
    now: i64,
) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE generation_tasks SET status = 'failed', error_code = ?2, last_error = ?3,
            updated_at = ?4
         WHERE id = ?1 AND status = 'queued'",
        params![task_id, code, message, now],
    )?;
    Ok(n == 1)
}

/// Providers that have queued units.
pub fn queued_providers(conn: &Connection) -> DbResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT provider FROM generation_tasks WHERE status = 'queued' ORDER BY provider",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Up to `limit` queued units of one provider, oldest first.
pub fn queued_tasks_of_provider(
    conn: &Connection,
    provider: &str,
    limit: u32,
) -> DbResult<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM generation_tasks
         WHERE status = 'queued' AND provider = ?1 ORDER BY run_after, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![provider, limit], task_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks a queued task cancelled. False if it was not queued.
pub fn cancel_queued_task(conn: &Connection, task_id: &str, now: i64) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE generation_tasks SET status = 'cancelled', updated_at = ?2
         WHERE id = ?1 AND status = 'queued'",
        params![task_id, now],
    )?;
    Ok(n == 1)
}

/// Moves credits between the job's held and captured totals and bumps its version.
pub fn add_job_money(
    conn: &Connection,
    job_id: &str,
    captured: i64,
    released: i64,
    now: i64,
) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE generation_jobs SET cost_amount = cost_amount + ?2,
            held_amount = held_amount - ?2 - ?3, version = version + 1, updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![job_id, captured, released, now])?;
    Ok(())
}

/// Writes the progress snapshot (or final result) and bumps the version.
pub fn set_job_result(
    conn: &Connection,
    job_id: &str,
    result_data: &Value,
    result_url: Option<&str>,
    now: i64,
) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE generation_jobs SET result_data = ?2, result_url = COALESCE(?3, result_url),
            snapshot_at = ?4, version = version + 1, updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![job_id, result_data.to_string(), result_url, now])?;
    Ok(())
}

/// Ends a job: terminal status, error, duration.
pub fn finish_job(
    conn: &Connection,
    job_id: &str,
    status: &str,
    error_code: Option<&str>,
    error_message: Option<&str>,
    now: i64,
) -> DbResult<()> {
    let n = conn
        .prepare_cached(
            "UPDATE generation_jobs SET status = ?2, error_code = ?3, error_message = ?4,
                duration_ms = ?5 - created_at, finished_at = ?5, version = version + 1,
                updated_at = ?5
             WHERE id = ?1 AND status = 'processing'",
        )?
        .execute(params![job_id, status, error_code, error_message, now])?;
    if n == 0 {
        return Err(DbError::Other(format!("job {job_id} is not processing")));
    }
    Ok(())
}

/// Queue figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    /// Creation time of the oldest queued unit.
    pub oldest_queued_at: Option<i64>,
    pub running_per_provider: Vec<(String, i64)>,
}

/// Queued and running units, the oldest queued one, running units per provider.
pub fn queue_stats(conn: &Connection) -> DbResult<QueueStats> {
    let (queued, running, oldest): (i64, i64, Option<i64>) = conn.query_row(
        "SELECT COALESCE(SUM(status = 'queued'), 0), COALESCE(SUM(status = 'running'), 0),
                MIN(CASE WHEN status = 'queued' THEN created_at END)
         FROM generation_tasks WHERE status IN ('queued', 'running')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut stmt = conn.prepare(
        "SELECT provider, count(*) FROM generation_tasks WHERE status = 'running' GROUP BY provider",
    )?;
    let per_provider = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(QueueStats {
        queued,
        running,
        oldest_queued_at: oldest,
        running_per_provider: per_provider,
    })
}

/// Queued units whose time has come, per provider (the stall alarm's "work waiting").
pub fn due_per_provider(conn: &Connection, now: i64) -> DbResult<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT provider, count(*) FROM generation_tasks
         WHERE status = 'queued' AND run_after <= ?1 GROUP BY provider",
    )?;
    let rows = stmt
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// How many jobs there are of each `(type, status)`.
pub fn jobs_by_type_and_status(conn: &Connection) -> DbResult<Vec<(String, String, i64)>> {
    let mut stmt =
        conn.prepare("SELECT type, status, count(*) FROM generation_jobs GROUP BY type, status")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Jobs whose stored totals disagree with their tasks (for `atelier audit`):
/// `(job_id, problem)`.
pub fn audit_jobs(conn: &Connection) -> DbResult<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT j.id, j.status, j.units_total, j.unit_cost, j.cost_amount, j.held_amount,
                COUNT(t.id),
                COALESCE(SUM(t.status = 'success'), 0),
                COALESCE(SUM(t.status IN ('queued', 'running')), 0),
                COALESCE(SUM(CASE WHEN t.status = 'success' THEN t.cost END), 0),
                COALESCE(SUM(CASE WHEN t.status IN ('queued', 'running') THEN t.cost END), 0)
         FROM generation_jobs j LEFT JOIN generation_tasks t ON t.job_id = j.id
         GROUP BY j.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, i64>(7)?,
            r.get::<_, i64>(8)?,
            r.get::<_, i64>(9)?,
            r.get::<_, i64>(10)?,
        ))
    })?;
    let mut problems = Vec::new();
    for row in rows {
        let (
            id,
            status,
            total,
            _unit_cost,
            captured,
            held,
            tasks,
            succeeded,
            open,
            task_captured,
            task_held,
        ) = row?;
        if tasks != total {
            problems.push((id.clone(), format!("{tasks} tasks for {total} units")));
        }
        if captured != task_captured {
            problems.push((
                id.clone(),
                format!("captured {captured} but successful units cost {task_captured}"),
            ));
        }
        if held != task_held {
            problems.push((
                id.clone(),
                format!("holds {held} but open units cost {task_held}"),
            ));
        }
        if status == "processing" && open == 0 {
            problems.push((id.clone(), "processing with no open unit".into()));
        }
        if status != "processing" && open > 0 {
            problems.push((id.clone(), format!("{status} with {open} open units")));
        }
        if status == "success" && succeeded == 0 {
            problems.push((id, "success with no successful unit".into()));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::migrate::migrate;

    fn seed(conn: &Connection, users: &[(&str, usize)]) {
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        for (user, count) in users {
            let job = format!("job-{user}");
            conn.execute(
                "INSERT INTO generation_jobs (id, user_id, type, provider, model, payload,
                    unit_cost, units_total, created_at, updated_at)
                 VALUES (?1, ?2, 'IMAGE_GEN', 'local', 'local', '{}', 1, ?3, 0, 0)",
                params![job, user, *count as i64],
            )
            .unwrap();
            for i in 0..*count {
                conn.execute(
                    "INSERT INTO generation_tasks (id, job_id, user_id, unit_index, provider,
                        run_after, input, cost, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 'local', ?4, '{}', 1, 0, 0)",
                    params![format!("{user}-{i:03}"), job, user, i as i64],
                )
                .unwrap();
            }
        }
    }

    fn owners(units: &[DueUnit]) -> Vec<String> {
        units.iter().map(|u| u.task.user_id.clone()).collect()
    }

    #[test]
    fn units_are_taken_round_robin_across_users() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        seed(&conn, &[("a", 50), ("b", 2), ("c", 1)]);
        assert_eq!(queued_users(&conn, "local").unwrap(), vec!["a", "b", "c"]);
        let picked = due_tasks(&conn, "local", 1_000, 5, None).unwrap();
        assert_eq!(owners(&picked), vec!["a", "b", "c", "a", "b"]);
        assert_eq!(picked[0].task.id, "a-000");
        assert_eq!(picked[3].task.id, "a-001");
        // The next pass starts after the last user served.
        let picked = due_tasks(&conn, "local", 1_000, 2, Some("b")).unwrap();
        assert_eq!(owners(&picked), vec!["c", "a"]);
        let picked = due_tasks(&conn, "local", 1_000, 2, Some("c")).unwrap();
        assert_eq!(owners(&picked), vec!["a", "b"]);
    }

    #[test]
    fn units_in_backoff_wait() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        seed(&conn, &[("a", 3)]);
        let picked = due_tasks(&conn, "local", 1, 10, None).unwrap();
        assert_eq!(picked.len(), 2, "units with run_after 0 and 1 only");
    }
}

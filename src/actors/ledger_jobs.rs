//! Ledger operations that move credits together with job and task state: accepting a
//! job (job + units + hold), settling an attempt (capture, retry or release), cancelling.
//! Each runs inside the ledger actor's batch, in its own savepoint.

use rusqlite::Connection;
use serde_json::{json, Value};

use super::ledger::{balances_of, record};
use crate::config::JobLimits;
use crate::db::jobs::{self, AttemptEnd, Job, Task, UnitCounts};
use crate::db::ledger::NewEntry;
use crate::db::{accounts, new_id};
use crate::domain::credits::Deltas;
use crate::domain::jobs::{job_end, JobType, NextStep, RetryPolicy, UnitOutcome};
use crate::domain::results::{reference_fields, JobView, UnitView};
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};

/// Idempotency keys are honoured for this long.
const CLIENT_KEY_TTL_MS: i64 = 24 * 3600 * 1000;
/// A processing job's stored snapshot is rewritten at most this often.
const SNAPSHOT_EVERY_MS: i64 = 1000;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A job to accept.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub user_id: String,
    pub job_type: JobType,
    pub provider: String,
    pub model: String,
    pub payload: Value,
    pub unit_cost: i64,
    /// One input object per unit.
    pub units: Vec<Value>,
    pub trace_id: Option<String>,
    pub client_job_id: Option<String>,
    pub request_hash: Option<String>,
    pub fe_attempt: Option<i64>,
    /// Atelier's own idempotency key (never a seller's): a second request under it
    /// answers the first job, however late.
    pub internal_key: Option<String>,
    /// Checked in the same transaction as the hold.
    pub limits: JobLimits,
}

/// The answer to an accepted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobAck {
    pub job_id: String,
    /// True when an earlier request with the same idempotency key is answered again.
    pub replayed: bool,
}

/// What settling an attempt changed, for the supervisor and job watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub job_id: String,
    /// False when the attempt was stale (its lease had been taken over): nothing changed.
    pub applied: bool,
    pub job_finished: bool,
    pub retry_at: Option<i64>,
    /// The credit movement this attempt made: `capture` or `release`.
    pub movement: Option<&'static str>,
}

/// Accepts a job: writes it, its units and the hold, or refuses (`CONFLICT`, a limit's
/// 429, `INSUFFICIENT_CREDITS`) and writes nothing.
pub fn create_job(conn: &Connection, new: &NewJob) -> Result<JobAck, ApiError> {
    let now = now_ms();
    if new.units.is_empty() {
        return Err(ApiError::with_message(
            ErrorCode::BAD_REQUEST,
            "a job needs at least one unit",
        ));
    }
    if let Some(key) = &new.internal_key {
        if let Some(existing) = jobs::find_by_internal_key(conn, key)? {
            return Ok(JobAck {
                job_id: existing.id,
                replayed: true,
            });
        }
    }
    if let Some(key) = &new.client_job_id {
        if let Some(existing) = jobs::find_by_client_key(conn, &new.user_id, key)? {
            if now - existing.created_at < CLIENT_KEY_TTL_MS {
                if existing.request_hash == new.request_hash {
                    return Ok(JobAck {
                        job_id: existing.id,
                        replayed: true,
                    });
                }
                return Err(ApiError::with_message(
                    ErrorCode::CONFLICT,
                    "this idempotency key was already used with a different request",
                )
                .details(json!({"job_id": existing.id})));
            }
            jobs::forget_client_key(conn, &existing.id)?;
        }
    }
    check_limits(conn, new, now)?;
    let units = new.units.len() as i64;
    let required = new.unit_cost.saturating_mul(units);
    let balances = balances_of(conn, &new.user_id)?;
    if balances.available() < required {
        return Err(ApiError::new(ErrorCode::INSUFFICIENT_CREDITS)
            .details(json!({"required": required, "available": balances.available()})));
    }
    let job = Job {
        id: new_id(),
        user_id: new.user_id.clone(),
        job_type: new.job_type.as_str().to_string(),
        status: "processing".into(),
        provider: new.provider.clone(),
        model: new.model.clone(),
        payload: new.payload.clone(),
        result_data: None,
        result_url: None,
        error_code: None,
        error_message: None,
        unit_cost: new.unit_cost,
        units_total: units,
        cost_amount: 0,
        held_amount: required,
        trace_id: new.trace_id.clone(),
        client_job_id: new.client_job_id.clone(),
        request_hash: new.request_hash.clone(),
        fe_attempt: new.fe_attempt,
        duration_ms: None,
        version: 1,
        created_at: now,
        updated_at: now,
        snapshot_at: None,
        cancelled_at: None,
        internal_key: new.internal_key.clone(),
    };
    jobs::insert_job(conn, &job)?;
    for (index, input) in new.units.iter().enumerate() {
        let task = Task {
            id: new_id(),
            job_id: job.id.clone(),
            user_id: job.user_id.clone(),
            unit_index: index as i64,
            provider: job.provider.clone(),
            status: "queued".into(),
            attempts: 0,
            run_after: now,
            lease_until: None,
            input: input.clone(),
            result: None,
            error_code: None,
            last_error: None,
            cost: new.unit_cost,
        };
        jobs::insert_task(conn, &task, now)?;
    }
    if required > 0 {
        record(
            conn,
            &NewEntry {
                user_id: &job.user_id,
                kind: "hold",
                amount: required,
                deltas: Deltas {
                    held: required,
                    ..Deltas::default()
                },
                job_id: Some(&job.id),
                reason: Some(job.job_type.as_str()),
                idempotency_key: &format!("hold:{}", job.id),
                ..NewEntry::default()
            },
            now,
        )?;
    }
    Ok(JobAck {
        job_id: job.id,
        replayed: false,
    })
}

/// Refuses a job over one of the user's limits: processing jobs of its type, creations
/// in the last minute, analyses today (UTC).
fn check_limits(conn: &Connection, new: &NewJob, now: i64) -> Result<(), ApiError> {
    let limits = new.limits;
    let job_type = new.job_type.as_str();
    let active = jobs::count_active(conn, &new.user_id, job_type)?;
    if active >= i64::from(limits.active) {
        return Err(ApiError::new(ErrorCode::TOO_MANY_ACTIVE_JOBS)
            .details(json!({"active": active, "limit": limits.active})));
    }
    check_rate(conn, &new.user_id, limits.per_minute, now)?;
    if let Some(per_day) = limits.per_day {
        let today = now - now.rem_euclid(DAY_MS);
        let (count, _) = jobs::count_created_since(conn, &new.user_id, today, Some(job_type))?;
        if count >= i64::from(per_day) {
            return Err(ApiError::new(ErrorCode::DAILY_ANALYSIS_LIMIT_EXCEEDED)
                .details(json!({"count": count, "limit": per_day})));
        }
    }
    Ok(())
}

/// Refuses a request when the user started `per_minute` jobs and prompt streams in the
/// last minute (429 `RATE_LIMIT_EXCEEDED` with `Retry-After`).
fn check_rate(conn: &Connection, user_id: &str, per_minute: u32, now: i64) -> Result<(), ApiError> {
    let counted = jobs::count_created_since(conn, user_id, now - MINUTE_MS, None)?;
    rate_verdict(counted, per_minute, now)
}

/// 429 `RATE_LIMIT_EXCEEDED` once `count` reached `per_minute`, with the wait until the
/// oldest counted one leaves the minute.
fn rate_verdict(
    (count, oldest): (i64, Option<i64>),
    per_minute: u32,
    now: i64,
) -> Result<(), ApiError> {
    if count >= i64::from(per_minute) {
        let wait_ms = oldest.map_or(MINUTE_MS, |t| t + MINUTE_MS - now);
        return Err(ApiError::new(ErrorCode::RATE_LIMIT_EXCEEDED)
            .retry_after((wait_ms.max(1) as u64).div_ceil(1000))
            .details(json!({"count": count, "limit": per_minute})));
    }
    Ok(())
}

/// Starts a prompt stream if the stream limit allows it (run in a transaction). Streams
/// are counted apart from jobs: the reference counts jobs only.
pub fn start_prompt_stream(
    conn: &Connection,
    user_id: &str,
    per_minute: u32,
) -> Result<(), ApiError> {
    let now = now_ms();
    let counted = jobs::count_streams_since(conn, user_id, now - MINUTE_MS)?;
    rate_verdict(counted, per_minute, now)?;
    jobs::record_prompt_stream(conn, user_id, now)?;
    Ok(())
}

/// Records how attempt `attempt` of a task ended: success captures its cost, a
/// retryable failure requeues it with backoff, a final failure releases its cost.
/// Finishes the job when its last unit ends.
pub fn settle_attempt(
    conn: &Connection,
    task_id: &str,
    attempt: i64,
    outcome: &UnitOutcome,
    policy: &RetryPolicy,
    jitter: f64,
) -> Result<Settled, ApiError> {
    let now = now_ms();
    let task = jobs::get_task(conn, task_id)?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such task"))?;
    let stale = Settled {
        job_id: task.job_id.clone(),
        applied: false,
        job_finished: false,
        retry_at: None,
        movement: None,
    };
    if task.status != "running" || task.attempts != attempt {
        return Ok(stale);
    }
    let cancelled = jobs::get_job(conn, &task.job_id)?.is_some_and(|j| j.cancelled_at.is_some());
    let step = if cancelled {
        NextStep::Cancel
    } else {
        policy.next_step(outcome, attempt.max(0) as u32, now, jitter)
    };
    let mut retry_at = None;
    let mut movement = None;
    let applied = match step {
        NextStep::Cancel => {
            // The owner cancelled while this attempt ran: whatever it produced, the unit
            // ends cancelled and its hold goes back. No retry, no charge.
            let end = AttemptEnd {
                status: "cancelled",
                result: None,
                error: None,
                run_after: None,
            };
            end_and_release(conn, &task, attempt, &end, now, &mut movement)?
        }
        NextStep::Succeed => {
            let result = match outcome {
                UnitOutcome::Success { result } => result.clone(),
                _ => Value::Null,
            };
            let done = jobs::end_attempt(
                conn,
                task_id,
                attempt,
                &AttemptEnd {
                    status: "success",
                    result: Some(&result),
                    error: None,
                    run_after: None,
                },
                now,
            )?;
            if done {
                capture(conn, &task, now)?;
                movement = Some("capture");
            }
            done
        }
        NextStep::Retry { run_after } => {
            let (code, message) = outcome_error(outcome);
            retry_at = Some(run_after);
            jobs::end_attempt(
                conn,
                task_id,
                attempt,
                &AttemptEnd {
                    status: "queued",
                    result: None,
                    error: Some((code, &message)),
                    run_after: Some(run_after),
                },
                now,
            )?
        }
        NextStep::Fail {
            code,
            message,
            details,
        } => {
            let details = details.map(|d| json!({ ERROR_DETAILS: d }));
            let end = AttemptEnd {
                status: "failed",
                result: details.as_ref(),
                error: Some((code.as_str(), &message)),
                run_after: None,
            };
            end_and_release(conn, &task, attempt, &end, now, &mut movement)?
        }
    };
    if !applied {
        return Ok(stale);
    }
    let job_finished = refresh_job(conn, &task.job_id, now)?;
    Ok(Settled {
        job_id: task.job_id,
        applied: true,
        job_finished,
        retry_at,
        movement,
    })
}

/// Cancels a job: marks it cancelled and cancels its queued units (releasing their
/// holds); running units end cancelled and released when their attempt reports,
/// whatever it brought (see [`settle_attempt`]). A terminal job is a `CONFLICT`.
pub fn cancel_job(conn: &Connection, user_id: &str, job_id: &str) -> Result<bool, ApiError> {
    let now = now_ms();
    let job = jobs::get_job(conn, job_id)?
        .filter(|j| j.user_id == user_id)
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "job not found"))?;
    if job.status != "processing" {
        return Err(ApiError::with_message(
            ErrorCode::CONFLICT,
            "the job has already ended",
        ));
    }
    jobs::mark_cancelled(conn, job_id, now)?;
    for task in jobs::tasks_of_job(conn, job_id)? {
        if task.status == "queued" && jobs::cancel_queued_task(conn, &task.id, now)? {
            release(conn, &task, now)?;
        }
    }
    refresh_job(conn, job_id, now)
}

/// Most units [`fail_unroutable`] ends in one transaction.
const UNROUTABLE_BATCH: u32 = 500;

/// Ends queued units whose provider this server does not run (its key was removed, say)
/// as `MODEL_UNAVAILABLE`, releasing their holds, up to [`UNROUTABLE_BATCH`] at a time.
/// Returns the jobs changed; call again until it returns none.
pub fn fail_unroutable(conn: &Connection, known: &[String]) -> Result<Vec<String>, ApiError> {
    let now = now_ms();
    let mut changed = Vec::new();
    for provider in jobs::queued_providers(conn)? {
        if known.contains(&provider) {
            continue;
        }
        let message = format!("the {provider} provider is not configured on this server");
        for task in jobs::queued_tasks_of_provider(conn, &provider, UNROUTABLE_BATCH)? {
            let code = ErrorCode::MODEL_UNAVAILABLE.as_str();
            if jobs::fail_queued_task(conn, &task.id, code, &message, now)? {
                release(conn, &task, now)?;
                if !changed.contains(&task.job_id) {
                    changed.push(task.job_id.clone());
                }
            }
        }
        if !changed.is_empty() {
            break;
        }
    }
    for job_id in &changed {
        refresh_job(conn, job_id, now)?;
    }
    Ok(changed)
}

/// Ends a running attempt as failed or cancelled and gives its hold back; false (and
/// nothing released) when the attempt was no longer current.
fn end_and_release(
    conn: &Connection,
    task: &Task,
    attempt: i64,
    end: &AttemptEnd<'_>,
    now: i64,
    movement: &mut Option<&'static str>,
) -> Result<bool, ApiError> {
    let done = jobs::end_attempt(conn, &task.id, attempt, end, now)?;
    if done {
        release(conn, task, now)?;
        *movement = Some("release");
    }
    Ok(done)
}

fn outcome_error(outcome: &UnitOutcome) -> (&'static str, String) {
    match outcome {
        UnitOutcome::Success { .. } => ("", String::new()),
        UnitOutcome::Retryable { code, message, .. }
        | UnitOutcome::Permanent { code, message, .. } => (code.as_str(), message.clone()),
    }
}

/// Takes a successful unit's cost out of the buckets (subscription first) and its hold.
fn capture(conn: &Connection, task: &Task, now: i64) -> Result<(), ApiError> {
    if task.cost > 0 {
        let balances = accounts::credits(conn, &task.user_id)?.unwrap_or_default();
        let from_subscription = task.cost.min(balances.subscription);
        let from_purchased = task.cost - from_subscription;
        let bucket = match (from_subscription > 0, from_purchased > 0) {
            (true, false) => "subscription",
            (false, true) => "purchased",
            _ => "mixed",
        };
        record(
            conn,
            &NewEntry {
                user_id: &task.user_id,
                kind: "capture",
                amount: task.cost,
                bucket: Some(bucket),
                deltas: Deltas {
                    subscription: -from_subscription,
                    purchased: -from_purchased,
                    held: -task.cost,
                    debt: 0,
                },
                job_id: Some(&task.job_id),
                task_id: Some(&task.id),
                idempotency_key: &format!("capture:{}", task.id),
                ..NewEntry::default()
            },
            now,
        )?;
    }
    jobs::add_job_money(conn, &task.job_id, task.cost, 0, now)?;
    Ok(())
}

/// Gives a failed or cancelled unit's hold back.
fn release(conn: &Connection, task: &Task, now: i64) -> Result<(), ApiError> {
    if task.cost > 0 {
        record(
            conn,
            &NewEntry {
                user_id: &task.user_id,
                kind: "release",
                amount: task.cost,
                deltas: Deltas {
                    held: -task.cost,
                    ..Deltas::default()
                },
                job_id: Some(&task.job_id),
                task_id: Some(&task.id),
                idempotency_key: &format!("release:{}", task.id),
                ..NewEntry::default()
            },
            now,
        )?;
    }
    jobs::add_job_money(conn, &task.job_id, 0, task.cost, now)?;
    Ok(())
}

/// Records that a unit of the job changed: finishes the job (with its final snapshot)
/// when no unit is open, otherwise rewrites the stored progress snapshot at most once a
/// second (readers see the live one, see [`read_job`]). Returns whether the job finished.
fn refresh_job(conn: &Connection, job_id: &str, now: i64) -> Result<bool, ApiError> {
    let job = jobs::get_job(conn, job_id)?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "job not found"))?;
    let tasks = jobs::tasks_of_job(conn, job_id)?;
    let ended = tasks
        .iter()
        .all(|t| matches!(t.status.as_str(), "success" | "failed" | "cancelled"));
    let snapshot_due = job.snapshot_at.is_none_or(|t| now - t >= SNAPSHOT_EVERY_MS);
    if ended || snapshot_due {
        let (result_data, result_url) = result_snapshot(&job, &tasks);
        jobs::set_job_result(conn, job_id, &result_data, result_url.as_deref(), now)?;
    } else {
        jobs::touch_job(conn, job_id, now)?;
    }
    if !ended || job.status != "processing" {
        return Ok(false);
    }
    let count = |s: &str| tasks.iter().filter(|t| t.status == s).count() as u32;
    let last_failed = tasks
        .iter()
        .filter(|t| t.status == "failed")
        .max_by_key(|t| t.unit_index);
    let mut end = job_end(
        count("success"),
        count("failed"),
        count("cancelled"),
        last_failed.and_then(|t| t.error_code.as_deref()),
    );
    if end.status == "failed" && job.job_type == JobType::Analysis.as_str() && last_failed.is_some()
    {
        end.error_code = Some(ErrorCode::ANALYSIS_FAILED.as_str().to_string());
    }
    let message = match (end.status, last_failed) {
        (_, Some(t)) => t.last_error.clone(),
        ("failed", None) => Some("cancelled".into()),
        _ => None,
    };
    jobs::finish_job(
        conn,
        job_id,
        end.status,
        end.error_code.as_deref(),
        message.as_deref(),
        now,
    )?;
    Ok(true)
}

/// A job as readers see it, with its unit counts: a processing job carries its live
/// progress snapshot (the stored one may be up to a second old).
pub fn read_job(conn: &Connection, job_id: &str) -> crate::db::DbResult<Option<(Job, UnitCounts)>> {
    let Some(mut job) = jobs::get_job(conn, job_id)? else {
        return Ok(None);
    };
    let counts = jobs::unit_counts(conn, job_id)?;
    if job.status == "processing" {
        let tasks = jobs::tasks_of_job(conn, job_id)?;
        let (result_data, result_url) = result_snapshot(&job, &tasks);
        job.result_data = Some(result_data);
        job.result_url = result_url.or(job.result_url);
    }
    Ok(Some((job, counts)))
}

/// Where a failed unit's error details are kept in its `result` column.
const ERROR_DETAILS: &str = "error_details";

/// `result_data` for a job: the analysis object for ANALYSIS jobs, otherwise progress
/// `{total, done, failed, units, images}`; plus the first image's URL.
pub fn result_snapshot(job: &Job, tasks: &[Task]) -> (Value, Option<String>) {
    if job.job_type == JobType::Analysis.as_str() {
        if let Some(result) = tasks.iter().find_map(|t| t.result.clone()) {
            return (result, None);
        }
    }
    let mut images = Vec::new();
    let mut units = Vec::new();
    for t in tasks {
        let mut unit = json!({"unit": t.unit_index, "status": t.status, "attempts": t.attempts});
        if let Some(result) = &t.result {
            if let Some(obj) = result.as_object() {
                for (k, v) in obj.iter().filter(|(k, _)| *k != ERROR_DETAILS) {
                    unit[k] = v.clone();
                }
            }
            if result.get("url").is_some() {
                images.push(json!({
                    "url": result["url"], "width": result["width"], "height": result["height"],
                    "unit": t.unit_index,
                }));
            }
        }
        if let Some(code) = &t.error_code {
            unit["error"] = json!({"code": code, "message": t.last_error});
            if let Some(details) = t.result.as_ref().and_then(|r| r.get(ERROR_DETAILS)) {
                unit["error"]["details"] = details.clone();
            }
        }
        units.push(unit);
    }
    let done = tasks.iter().filter(|t| t.status == "success").count();
    let failed = tasks
        .iter()
        .filter(|t| matches!(t.status.as_str(), "failed" | "cancelled"))
        .count();
    let first_url = images
        .first()
        .and_then(|i| i["url"].as_str())
        .map(str::to_string);
    let mut data = json!({"total": tasks.len(), "done": done, "failed": failed, "units": units, "images": images});
    let views: Vec<UnitView<'_>> = tasks
        .iter()
        .map(|t| UnitView {
            index: t.unit_index,
            status: &t.status,
            input: &t.input,
            result: t.result.as_ref(),
            error_message: t.last_error.as_deref(),
        })
        .collect();
    let job_view = JobView {
        job_type: &job.job_type,
        provider: &job.provider,
        model: &job.model,
        payload: &job.payload,
    };
    if let Some(obj) = data.as_object_mut() {
        obj.extend(reference_fields(job_view, &views));
    }
    (data, first_url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::accounts::User;
    use crate::db::migrate::migrate;

    fn job_with_units(conn: &Connection, units: usize) -> String {
        let user = User {
            id: "u1".into(),
            email: "u1@example.com".into(),
            role: "authenticated".into(),
            user_metadata: json!({}),
            created_at: 0,
            updated_at: 0,
            email_confirmed_at: Some(0),
        };
        accounts::insert_user(conn, &user, "x").unwrap();
        let ack = create_job(
            conn,
            &NewJob {
                user_id: "u1".into(),
                job_type: JobType::ImageGen,
                provider: "local".into(),
                model: "local".into(),
                payload: json!({}),
                unit_cost: 0,
                units: vec![json!({}); units],
                trace_id: None,
                client_job_id: None,
                request_hash: None,
                fe_attempt: None,
                internal_key: None,
                limits: JobLimits::NONE,
            },
        )
        .unwrap();
        ack.job_id
    }

    fn succeed_next(conn: &Connection, job_id: &str) {
        let task = jobs::tasks_of_job(conn, job_id)
            .unwrap()
            .into_iter()
            .find(|t| t.status == "queued")
            .unwrap();
        assert!(jobs::claim_task(conn, &task.id, i64::MAX, now_ms()).unwrap());
        let outcome = UnitOutcome::Success {
            result: json!({"url": "/x.png", "width": 1, "height": 1}),
        };
        settle_attempt(conn, &task.id, 1, &outcome, &RetryPolicy::default(), 0.0).unwrap();
    }

    /// While a job runs, its stored snapshot is rewritten at most once a second; the
    /// final one is always written; readers always see the live one.
    #[test]
    fn progress_snapshots_are_written_at_most_once_a_second() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let id = job_with_units(&conn, 3);
        succeed_next(&conn, &id);
        let first = jobs::get_job(&conn, &id).unwrap().unwrap();
        assert_eq!(first.result_data.as_ref().unwrap()["done"], 1);
        succeed_next(&conn, &id);
        let stored = jobs::get_job(&conn, &id).unwrap().unwrap();
        assert_eq!(
            stored.snapshot_at, first.snapshot_at,
            "no second write within 1 s"
        );
        assert_eq!(stored.result_data.as_ref().unwrap()["done"], 1);
        assert!(
            stored.version > first.version,
            "the change is still visible to watchers"
        );
        let (live, counts) = read_job(&conn, &id).unwrap().unwrap();
        assert_eq!(live.result_data.unwrap()["done"], 2);
        assert_eq!(counts.succeeded, 2);
        succeed_next(&conn, &id);
        let done = jobs::get_job(&conn, &id).unwrap().unwrap();
        assert_eq!(done.status, "success");
        assert_eq!(
            done.result_data.unwrap()["done"],
            3,
            "the final snapshot is written"
        );
    }
}

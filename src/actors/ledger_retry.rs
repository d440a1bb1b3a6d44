//! An operator's retry of a finished job: its failed units run again as a new job of the
//! same user, held and charged like any job. The old job keeps its history, so no unit's
//! hold, capture or release is ever written twice.

use rusqlite::Connection;
use serde_json::Value;

use super::ledger_jobs::{create_job, JobAck, NewJob};
use crate::config::JobLimits;
use crate::db::jobs;
use crate::domain::jobs::JobType;
use crate::domain::{ApiError, ErrorCode};

/// Creates the retry job of `job_id` from its failed and cancelled units. Retrying the
/// same job again answers the same retry job, however late: its key `retry:<job_id>` is
/// an internal key, in a namespace no seller's `client_job_id` can reach.
/// A job still processing, or with nothing that failed, is a `CONFLICT`.
pub fn retry_failed_units(conn: &Connection, job_id: &str) -> Result<JobAck, ApiError> {
    let job = jobs::get_job(conn, job_id)?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "job not found"))?;
    if job.status == "processing" {
        return Err(ApiError::with_message(
            ErrorCode::CONFLICT,
            "the job is still processing",
        ));
    }
    let units: Vec<Value> = jobs::tasks_of_job(conn, job_id)?
        .into_iter()
        .filter(|t| matches!(t.status.as_str(), "failed" | "cancelled"))
        .map(|t| t.input)
        .collect();
    if units.is_empty() {
        return Err(ApiError::with_message(
            ErrorCode::CONFLICT,
            "the job has no failed units to retry",
        ));
    }
    let job_type = JobType::parse(&job.job_type)
        .ok_or_else(|| ApiError::internal().cause(format!("job {job_id} has an unknown type")))?;
    let mut payload = job.payload.clone();
    if let Some(object) = payload.as_object_mut() {
        object.insert("retry_of".into(), Value::from(job_id));
    }
    create_job(
        conn,
        &NewJob {
            user_id: job.user_id,
            job_type,
            provider: job.provider,
            model: job.model,
            payload,
            unit_cost: job.unit_cost,
            units,
            trace_id: job.trace_id,
            client_job_id: None,
            request_hash: None,
            fe_attempt: None,
            internal_key: Some(format!("retry:{job_id}")),
            limits: JobLimits::NONE,
        },
    )
}

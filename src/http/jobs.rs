//! Job reads for their owner: list, one, live events (SSE), cancel.

use std::collections::HashMap;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use warp::reply::Response;
use warp::Filter;

use super::paging::{next_cursor, page_limit};
use super::{authenticate, guard, reply, request, sse, with_state, Request, State};
use crate::actors::ledger_jobs::read_job;
use crate::db::jobs::{self, Job, UnitCounts};
use crate::domain::time::rfc3339;
use crate::domain::{ApiError, ErrorCode};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let list = warp::path!("v1" / "jobs")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .and(request(&state))
        .then(|state, query, req| guard(list_jobs(state, query, req)));
    let one = warp::path!("v1" / "jobs" / String)
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|id, state, req| guard(get_job(state, id, req)));
    let events = warp::path!("v1" / "jobs" / String / "events")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|id, state, req| guard(job_events(state, id, req)));
    let cancel = warp::path!("v1" / "jobs" / String / "cancel")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|id, state, req| guard(cancel_job(state, id, req)));
    list.or(one).unify().or(events).unify().or(cancel).unify()
}

async fn get_job(state: State, id: String, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let (job, counts) = owned_job(&state, user.id, id).await?;
        Ok(job_json(&job, &counts))
    };
    reply::result(result.await)
}

/// A job of `user_id` with its unit counts; another user's job is `NOT_FOUND`.
async fn owned_job(
    state: &State,
    user_id: String,
    id: String,
) -> Result<(Job, UnitCounts), ApiError> {
    state
        .db
        .read(move |conn| read_job(conn, &id))
        .await?
        .filter(|(job, _)| job.user_id == user_id)
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "job not found"))
}

async fn list_jobs(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        job_page(&state, Some(user.id), &query, false).await
    };
    reply::result(result.await)
}

/// `{jobs, next}`: one page of jobs (of `user_id`, or everyone's) filtered by the query's
/// `type` and `status`, after its `before` cursor, processing jobs with live progress;
/// `with_owner` adds each job's `user_id` (admin views).
pub(super) async fn job_page(
    state: &State,
    user_id: Option<String>,
    query: &HashMap<String, String>,
    with_owner: bool,
) -> Result<Value, ApiError> {
    let limit = page_limit(query)?;
    let job_type = query.get("type").cloned();
    let status = query.get("status").cloned();
    let before = query.get("before").cloned();
    let page = state
        .db
        .read(move |conn| {
            let jobs = jobs::list_jobs(
                conn,
                user_id.as_deref(),
                job_type.as_deref(),
                status.as_deref(),
                limit,
                before.as_deref(),
            )?;
            let mut page = Vec::with_capacity(jobs.len());
            for job in jobs {
                if job.status == "processing" {
                    page.extend(read_job(conn, &job.id)?);
                } else {
                    let counts = jobs::unit_counts(conn, &job.id)?;
                    page.push((job, counts));
                }
            }
            Ok(page)
        })
        .await?;
    let next = next_cursor(page.len(), limit, page.last().map(|(j, _)| &j.id));
    let jobs: Vec<Value> = page
        .iter()
        .map(|(job, counts)| {
            let mut value = job_json(job, counts);
            if with_owner {
                value["user_id"] = json!(job.user_id);
            }
            value
        })
        .collect();
    Ok(json!({"jobs": jobs, "next": next}))
}

/// `GET /v1/jobs/{id}/events`: the job now (unless `Last-Event-ID` says the client has
/// this version already) and after every change, `id:` = the job's version; the stream
/// ends after the terminal state. Changes that land between two reads are coalesced
/// into the newer snapshot.
async fn job_events(state: State, id: String, req: Request) -> Response {
    let user = match authenticate(&state, &req).await {
        Ok(user) => user,
        Err(err) => return reply::error(&err),
    };
    // Subscribe before the first read so that no change can slip in between.
    let mut changes = state.job_events.subscribe();
    let first = match owned_job(&state, user.id.clone(), id.clone()).await {
        Ok(found) => found,
        Err(err) => return reply::error(&err),
    };
    let mut sent_version = req
        .header("last-event-id")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let (mut out, response) = sse::channel();
    tokio::spawn(async move {
        let mut current = first;
        loop {
            let (job, counts) = &current;
            if job.version > sent_version {
                let data = job_json(job, counts).to_string();
                let version = job.version.to_string();
                if !out
                    .send(sse::frame(Some("job"), Some(&version), &data))
                    .await
                {
                    return;
                }
                sent_version = job.version;
            }
            if job.status != "processing" {
                return;
            }
            let changed = tokio::select! {
                _ = out.closed() => return,
                _ = tokio::time::sleep_until(out.keep_alive_at()) => {
                    if !out.keep_alive().await {
                        return;
                    }
                    false
                }
                event = changes.recv() => match event {
                    Ok(job_id) => job_id == id,
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                },
            };
            if changed {
                match owned_job(&state, user.id.clone(), id.clone()).await {
                    Ok(found) => current = found,
                    Err(err) => {
                        tracing::warn!(job_id = %id, error = %err, "job events stream stopped");
                        return;
                    }
                }
            }
        }
    });
    response
}

async fn cancel_job(state: State, id: String, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        state.ledger.cancel_job(user.id.clone(), id.clone()).await?;
        let _ = state.job_events.send(id.clone());
        let (job, counts) = owned_job(&state, user.id, id).await?;
        Ok(job_json(&job, &counts))
    };
    reply::result(result.await)
}

/// A job as `/v1/jobs/{id}` answers it.
pub fn job_json(job: &Job, counts: &UnitCounts) -> Value {
    json!({
        "id": job.id,
        "type": job.job_type,
        "status": job.status,
        "model": job.model,
        "payload": job.payload,
        "result_data": job.result_data,
        "result_url": job.result_url,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "cost_amount": job.cost_amount,
        "held_amount": job.held_amount,
        "units": {
            "total": counts.total, "succeeded": counts.succeeded, "failed": counts.failed,
            "cancelled": counts.cancelled, "queued": counts.queued, "running": counts.running,
        },
        "trace_id": job.trace_id,
        "client_job_id": job.client_job_id,
        "version": job.version,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
        "duration_ms": job.duration_ms,
    })
}

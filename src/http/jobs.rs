//! Job creation (the minimal `local` generate-image path), job reads, cancel, the ledger
//! history and serving stored images.

use std::collections::HashMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use warp::reply::Response;
use warp::Filter;

use super::{authenticate, guard, reply, request, with_state, Request, State};
use crate::actors::ledger_jobs::NewJob;
use crate::actors::supervisor::SupervisorMsg;
use crate::db::jobs::{self, Job, UnitCounts};
use crate::db::ledger;
use crate::domain::jobs::{parse_ratio, JobType};
use crate::domain::time::rfc3339;
use crate::domain::{ApiError, ErrorCode};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let generate = warp::path!("functions" / "v1" / "generate-image")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(generate_image(state, req)));
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
    let cancel = warp::path!("v1" / "jobs" / String / "cancel")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|id, state, req| guard(cancel_job(state, id, req)));
    let ledger = warp::path!("v1" / "ledger")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .and(request(&state))
        .then(|state, query, req| guard(list_ledger(state, query, req)));
    let storage = warp::path!("storage" / "v1" / "object" / "public" / String / ..)
        .and(warp::path::tail())
        .and(warp::get())
        .and(with_state(state))
        .then(|bucket, tail: warp::path::Tail, state| {
            guard(serve_object(state, bucket, tail.as_str().to_string()))
        });
    generate
        .or(list)
        .unify()
        .or(one)
        .unify()
        .or(cancel)
        .unify()
        .or(ledger)
        .unify()
        .or(storage)
        .unify()
}

/// The body of the minimal generate-image path (the full catalog and validation order
/// belong to the generation endpoints).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateImage {
    model: Option<String>,
    prompt: Option<String>,
    product_image: Option<String>,
    #[serde(default)]
    product_images: Vec<String>,
    image_count: Option<i64>,
    aspect_ratio: Option<String>,
    image_size: Option<String>,
    #[serde(rename = "client_job_id")]
    client_job_id: Option<String>,
    #[serde(rename = "trace_id")]
    trace_id: Option<String>,
    #[serde(rename = "fe_attempt")]
    fe_attempt: Option<i64>,
}

async fn generate_image(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let raw: Value = req.json()?;
        let body: GenerateImage = serde_json::from_value(raw.clone()).map_err(|e| {
            ApiError::with_message(ErrorCode::BAD_REQUEST, format!("invalid request body: {e}"))
        })?;
        let model = body
            .model
            .ok_or_else(|| ApiError::bad_field("model", "model is required"))?;
        let prompt = body.prompt.unwrap_or_default();
        if prompt.trim().is_empty() {
            return Err(ApiError::new(ErrorCode::IMAGE_INPUT_PROMPT_MISSING));
        }
        if model != "local" {
            return Err(ApiError::with_message(
                ErrorCode::MODEL_UNAVAILABLE,
                format!("model {model:?} is not available"),
            ));
        }
        let ratio = body.aspect_ratio.unwrap_or_else(|| "1:1".into());
        if parse_ratio(&ratio).is_none() {
            return Err(ApiError::new(ErrorCode::MODEL_RATIO_UNSUPPORTED));
        }
        let size = body.image_size.unwrap_or_else(|| "1K".into());
        if !matches!(size.as_str(), "1K" | "2K" | "4K") {
            return Err(ApiError::new(ErrorCode::IMAGE_SIZE_UNSATISFIED));
        }
        let product = body
            .product_image
            .or_else(|| body.product_images.first().cloned())
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::IMAGE_INPUT_SOURCE_MISSING))?;
        let count = body.image_count.unwrap_or(1).clamp(1, 9);
        let client_key = body
            .client_job_id
            .or_else(|| req.header("idempotency-key").map(str::to_string))
            .filter(|k| !k.is_empty());
        if client_key.as_ref().is_some_and(|k| k.len() > 128) {
            return Err(ApiError::bad_field(
                "client_job_id",
                "at most 128 characters",
            ));
        }
        let unit = json!({
            "prompt": prompt, "product_image": product, "aspect_ratio": ratio,
            "image_size": size, "background": "white",
        });
        let ack = state
            .ledger
            .create_job(NewJob {
                user_id: user.id,
                job_type: JobType::ImageGen,
                provider: "local".into(),
                model,
                payload: raw.clone(),
                unit_cost: 1,
                units: vec![unit; count as usize],
                trace_id: body.trace_id,
                client_job_id: client_key,
                request_hash: Some(request_hash(&raw)),
                fe_attempt: body.fe_attempt,
            })
            .await?;
        if !ack.replayed {
            let _ = state.job_events.send(ack.job_id.clone());
            let _ = state.supervisor.send_message(SupervisorMsg::Wake);
        }
        Ok(json!({"job_id": ack.job_id, "status": "processing"}))
    };
    reply::result(result.await)
}

/// A stable fingerprint of a request body (keys are sorted by serde_json's map).
fn request_hash(body: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(body.to_string().as_bytes()))
}

async fn get_job(state: State, id: String, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        owned_job_json(&state, user.id, id).await
    };
    reply::result(result.await)
}

/// A job of `user_id` with its unit counts, as JSON; another user's job is `NOT_FOUND`.
async fn owned_job_json(state: &State, user_id: String, id: String) -> Result<Value, ApiError> {
    let found = state
        .db
        .read(move |conn| {
            let Some(job) = jobs::get_job(conn, &id)?.filter(|j| j.user_id == user_id) else {
                return Ok(None);
            };
            let counts = jobs::unit_counts(conn, &id)?;
            Ok(Some(job_json(&job, &counts)))
        })
        .await?;
    found.ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "job not found"))
}

/// The `next` cursor of a page: the last id when the page is full.
fn next_cursor(page_len: usize, limit: u32, last_id: Option<&String>) -> Option<String> {
    (page_len as u32 == limit)
        .then(|| last_id.cloned())
        .flatten()
}

async fn list_jobs(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let limit = page_limit(&query)?;
        let job_type = query.get("type").cloned();
        let status = query.get("status").cloned();
        let before = query.get("before").cloned();
        let list = state
            .db
            .read(move |conn| {
                let jobs = jobs::list_jobs(
                    conn,
                    Some(&user.id),
                    job_type.as_deref(),
                    status.as_deref(),
                    limit,
                    before.as_deref(),
                )?;
                jobs.into_iter()
                    .map(|job| {
                        let counts = jobs::unit_counts(conn, &job.id)?;
                        Ok((job, counts))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let next = next_cursor(list.len(), limit, list.last().map(|(j, _)| &j.id));
        let jobs: Vec<Value> = list.iter().map(|(j, c)| job_json(j, c)).collect();
        Ok(json!({"jobs": jobs, "next": next}))
    };
    reply::result(result.await)
}

async fn cancel_job(state: State, id: String, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        state.ledger.cancel_job(user.id.clone(), id.clone()).await?;
        let _ = state.job_events.send(id.clone());
        owned_job_json(&state, user.id, id).await
    };
    reply::result(result.await)
}

async fn list_ledger(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let limit = page_limit(&query)?;
        let before = query.get("before").cloned();
        let entries = state
            .db
            .read(move |conn| ledger::list_for_user(conn, &user.id, limit, before.as_deref()))
            .await?;
        let next = next_cursor(entries.len(), limit, entries.last().map(|e| &e.id));
        let entries: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id, "kind": e.kind, "amount": e.amount, "bucket": e.bucket,
                    "job_id": e.job_id, "task_id": e.task_id, "stripe_event_id": e.stripe_event_id,
                    "reason": e.reason, "available_after": e.available_after,
                    "created_at": rfc3339(e.created_at),
                })
            })
            .collect();
        Ok(json!({"entries": entries, "next": next}))
    };
    reply::result(result.await)
}

async fn serve_object(state: State, bucket: String, key: String) -> Response {
    let storage = state.storage.clone();
    let read = tokio::task::spawn_blocking(move || storage.get(&bucket, &key)).await;
    match read {
        Ok(Ok(bytes)) => {
            let content_type = match bytes.get(..4) {
                Some([0x89, b'P', b'N', b'G']) => "image/png",
                Some([0xFF, 0xD8, 0xFF, _]) => "image/jpeg",
                _ => "application/octet-stream",
            };
            reply::with_body(200, content_type, bytes)
        }
        Ok(Err(crate::storage::StorageError::InvalidKey(why))) => reply::error(
            &ApiError::with_message(ErrorCode::BAD_REQUEST, format!("invalid object key: {why}")),
        ),
        _ => reply::error(&ApiError::with_message(
            ErrorCode::NOT_FOUND,
            "object not found",
        )),
    }
}

/// `limit` in 1..=100, default 20.
fn page_limit(query: &HashMap<String, String>) -> Result<u32, ApiError> {
    match query.get("limit") {
        None => Ok(20),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::bad_field("limit", "limit must be an integer from 1 to 100")),
    }
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
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
        "duration_ms": job.duration_ms,
    })
}

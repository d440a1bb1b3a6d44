//! Job-creating generation calls (`/functions/v1/…`) and the compatibility nudge.

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use warp::reply::Response;
use warp::Filter;

use super::{authenticate, guard, reply, request, with_state, Request, State};
use crate::actors::ledger_jobs::{JobAck, NewJob};
use crate::actors::supervisor::SupervisorMsg;
use crate::db::jobs;
use crate::domain::jobs::{parse_ratio, JobType};
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let generate = warp::path!("functions" / "v1" / "generate-image")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(generate_image(state, req)));
    let nudge = warp::path!("functions" / "v1" / "process-generation-job")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(process_generation_job(state, req)));
    generate.or(nudge).unify()
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
        let unit = json!({
            "prompt": prompt, "product_image": product, "aspect_ratio": ratio,
            "image_size": size, "background": "white",
        });
        let ack = submit_job(
            &state,
            &req,
            &raw,
            NewJob {
                user_id: user.id,
                job_type: JobType::ImageGen,
                provider: "local".into(),
                model,
                payload: raw.clone(),
                unit_cost: 1,
                units: vec![unit; count as usize],
                trace_id: body.trace_id,
                client_job_id: body.client_job_id,
                request_hash: None,
                fe_attempt: body.fe_attempt,
                limits: state.config.limits.for_job(JobType::ImageGen),
            },
        )
        .await?;
        Ok(json!({"job_id": ack.job_id, "status": "processing"}))
    };
    reply::result(result.await)
}

/// Hands a validated job to the ledger (idempotency key from `client_job_id` or the
/// `Idempotency-Key` header, fingerprinted by the body) and wakes the queue.
pub async fn submit_job(
    state: &State,
    req: &Request,
    body: &Value,
    mut job: NewJob,
) -> Result<JobAck, ApiError> {
    let key = job
        .client_job_id
        .take()
        .or_else(|| req.header("idempotency-key").map(str::to_string))
        .filter(|k| !k.is_empty());
    if key.as_ref().is_some_and(|k| k.len() > 128) {
        return Err(ApiError::bad_field(
            "client_job_id",
            "at most 128 characters",
        ));
    }
    job.client_job_id = key;
    job.request_hash = Some(request_hash(body));
    let ack = state.ledger.create_job(job).await?;
    if !ack.replayed {
        let _ = state.job_events.send(ack.job_id.clone());
        let _ = state.supervisor.send_message(SupervisorMsg::Wake);
    }
    Ok(ack)
}

/// A stable fingerprint of a request body (keys are sorted by serde_json's map).
fn request_hash(body: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(body.to_string().as_bytes()))
}

/// `process-generation-job`: clients of the reference call it after each ack. Atelier's
/// queue needs no nudge; this wakes it anyway and says where the job stands.
async fn process_generation_job(state: State, req: Request) -> Response {
    let result = async {
        let worker = worker_secret_matches(&state, &req);
        let caller = if worker {
            None
        } else {
            Some(authenticate(&state, &req).await?.id)
        };
        let body: Value = req.json()?;
        let job_id = body
            .get("job_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad_field("job_id", "job_id is required"))?
            .to_string();
        let id = job_id.clone();
        let found = state
            .db
            .read(move |conn| {
                let Some(job) = jobs::get_job(conn, &id)? else {
                    return Ok(None);
                };
                let due = jobs::tasks_of_job(conn, &id)?
                    .iter()
                    .filter(|t| t.status == "queued")
                    .map(|t| t.run_after)
                    .min();
                Ok(Some((job, due)))
            })
            .await?;
        let (job, next_due) = found
            .filter(|(job, _)| caller.as_ref().is_none_or(|c| *c == job.user_id))
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "job not found"))?;
        let status = match next_due {
            _ if job.status != "processing" => "already_terminal",
            None => "no_available_task",
            Some(run_after) if run_after > now_ms() => "requeued",
            Some(_) => "processed",
        };
        let _ = state.supervisor.send_message(SupervisorMsg::Wake);
        Ok(json!({"ok": true, "status": status, "job_id": job_id, "task_type": job.job_type}))
    };
    reply::result(result.await)
}

/// Whether the request carries the configured worker secret.
fn worker_secret_matches(state: &State, req: &Request) -> bool {
    match (
        &state.config.queue.worker_secret,
        req.header("x-worker-secret"),
    ) {
        (Some(secret), Some(sent)) => {
            Sha256::digest(secret.as_bytes()) == Sha256::digest(sent.as_bytes())
        }
        _ => false,
    }
}

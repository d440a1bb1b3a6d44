//! Job-creating generation calls (`/functions/v1/…`): analysis, image generation,
//! style replicate; and the compatibility nudge.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use warp::reply::Response;
use warp::Filter;

use super::{
    authenticate, authenticate_new_work, guard, reply, request, with_state, Request, State,
};
use crate::actors::ledger_jobs::{JobAck, NewJob};
use crate::actors::supervisor::SupervisorMsg;
use crate::catalog::{self, ResolvedModel, SizeRule};
use crate::config::{JobLimits, LimitsConfig};
use crate::db::{accounts, jobs};
use crate::domain::jobs::JobType;
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};
use crate::generation::fields::JobMeta;
use crate::generation::pipeline::GENERIC_REFINEMENT_PROMPT;
use crate::generation::requests::{AnalyzeProduct, GenerateImage, StyleMode, StyleReplicate};
use crate::generation::rules::{check_image_reference, MAX_UNITS_PER_JOB};

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
    let analyze = warp::path!("functions" / "v1" / "analyze-product-v2")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(analyze_product(state, req)));
    let single = warp::path!("functions" / "v1" / "analyze-single")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(analyze_single(state, req)));
    generate
        .or(nudge)
        .unify()
        .or(analyze)
        .unify()
        .or(single)
        .unify()
}

/// `generate-image` → an IMAGE_GEN job of `imageCount` units.
async fn generate_image(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate_new_work(&state, &req).await?;
        let raw: Value = req.json()?;
        let body = GenerateImage::parse(&raw)?;
        let model = catalog::resolve(
            &state.config,
            &body.model,
            user.is_admin(),
            body.image_size.as_deref(),
            SizeRule::Strict,
            &body.aspect_ratio,
            body.turbo,
        )?;
        if model.entry.requires_input_image && body.product_images.is_empty() {
            return Err(ApiError::new(ErrorCode::IMAGE_INPUT_SOURCE_MISSING));
        }
        check_images(&state, "productImages", &body.product_images)?;
        let unit = json!({
            "prompt": body.prompt, "product_image": body.product_images.first(),
            "product_images": body.product_images, "aspect_ratio": body.aspect_ratio,
            "image_size": model.size, "background": "white", "turbo": body.turbo,
            "workflow_mode": body.workflow_mode, "text_edits": body.text_edits,
            "style_constraint": body.style_constraint,
            "upstream_model": model.entry.upstream_model,
        });
        let units = (0..body.image_count)
            .map(|i| with_unit_index(&unit, i))
            .collect();
        let job = new_job(
            &user.id,
            JobType::ImageGen,
            &model,
            raw.clone(),
            units,
            body.meta,
        );
        accept(&state, &req, &raw, job, ErrorCode::IMAGE_JOB_CREATE_FAILED).await
    };
    reply::result(result.await)
}

/// `analyze-single` → a STYLE_REPLICATE job in single, batch or refinement mode.
async fn analyze_single(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate_new_work(&state, &req).await?;
        let raw: Value = req.json()?;
        let body = StyleReplicate::parse(&raw)?;
        let model = catalog::resolve(
            &state.config,
            &body.model,
            user.is_admin(),
            Some(&body.image_size),
            SizeRule::FallBackToLargest,
            &body.aspect_ratio,
            body.turbo,
        )?;
        let common = json!({
            "aspect_ratio": body.aspect_ratio, "image_size": model.size, "turbo": body.turbo,
            "style_constraint": body.style_constraint,
            "upstream_model": model.entry.upstream_model,
        });
        check_affordable(&state, &user.id, body.unit_count(), model.unit_cost).await?;
        let style_prompt = body.user_prompt.clone().unwrap_or_else(|| {
            "Recreate the reference photo's style, light and composition with this product.".into()
        });
        let unit = |fields: Value| {
            let mut unit = common.clone();
            if let (Some(unit), Some(fields)) = (unit.as_object_mut(), fields.as_object()) {
                unit.extend(fields.clone());
            }
            unit
        };
        let units: Vec<Value> = match &body.mode {
            StyleMode::Single {
                reference,
                products,
            } => {
                check_images(&state, "referenceImage", std::slice::from_ref(reference))?;
                check_images(&state, "productImages", products)?;
                products
                    .iter()
                    .enumerate()
                    .flat_map(|(pi, p)| (0..body.image_count).map(move |i| (pi, i, p)))
                    .map(|(pi, i, p)| {
                        unit(json!({"mode": "single", "prompt": style_prompt,
                            "product_image": p, "reference_image": reference,
                            "background": "gradient", "reference_index": 0,
                            "group_index": i, "product_index": pi}))
                    })
                    .collect()
            }
            StyleMode::Batch {
                references,
                product,
                groups,
            } => {
                check_images(&state, "referenceImages", references)?;
                check_images(&state, "productImage", std::slice::from_ref(product))?;
                references
                    .iter()
                    .enumerate()
                    .flat_map(|(ri, r)| (0..*groups).map(move |g| (ri, r, g)))
                    .map(|(ri, r, g)| {
                        unit(json!({"mode": "batch", "prompt": style_prompt,
                            "product_image": product, "reference_image": r, "group": g,
                            "background": "gradient", "reference_index": ri,
                            "group_index": g, "product_index": 0}))
                    })
                    .collect()
            }
            StyleMode::Refinement {
                products,
                background,
            } => products
                .iter()
                .enumerate()
                .map(|(pi, p)| {
                    unit(
                        json!({"mode": "refinement", "prompt": GENERIC_REFINEMENT_PROMPT,
                        "product_image": p, "background": background.as_str(),
                        "reference_index": 0, "group_index": 0, "product_index": pi}),
                    )
                })
                .collect(),
        };
        let units = units
            .iter()
            .zip(0..)
            .map(|(u, i)| with_unit_index(u, i))
            .collect();
        let job = new_job(
            &user.id,
            JobType::StyleReplicate,
            &model,
            raw.clone(),
            units,
            body.meta,
        );
        accept(
            &state,
            &req,
            &raw,
            job,
            ErrorCode::STYLE_REPLICATE_JOB_CREATE_FAILED,
        )
        .await
    };
    reply::result(result.await)
}

/// `analyze-product-v2` → a free ANALYSIS job (daily limit).
async fn analyze_product(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate_new_work(&state, &req).await?;
        let raw: Value = req.json()?;
        let body = AnalyzeProduct::parse(&raw)?;
        let entry = catalog::text_model(
            &state.config,
            state.config.generation.analysis_model.as_deref(),
        )
        .ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::MODEL_UNAVAILABLE,
                "no analysis model is available",
            )
        })?;
        check_images(&state, "productImage", &body.product_images)?;
        if let Some(model_image) = &body.model_image {
            check_images(&state, "modelImage", std::slice::from_ref(model_image))?;
        }
        let unit = json!({
            "product_images": body.product_images, "requirements": body.requirements,
            "image_count": body.image_count, "output_language": body.output_language,
            "prompt_profile": state.config.public.prompt_profile(&body.prompt_profile), "white_background": body.white_background,
            "style_constraint": body.style_constraint, "upstream_model": entry.upstream_model,
            "studio_type": body.studio_type, "clothing_mode": body.clothing_mode,
            "model_image": body.model_image, "ui_language": body.ui_language,
            "detail_closeup_count": body.detail_closeup_count,
            "selling_point_count": body.selling_point_count,
            "ecom_detail_modules": body.ecom_detail_modules,
        });
        let model = ResolvedModel {
            size: entry.default_size.clone(),
            entry,
            unit_cost: 0,
        };
        let job = new_job(
            &user.id,
            JobType::Analysis,
            &model,
            raw.clone(),
            vec![unit],
            body.meta,
        );
        accept(&state, &req, &raw, job, ErrorCode::ANALYSIS_CREATE_FAILED).await
    };
    reply::result(result.await)
}

/// Refuses, before any unit is built, a job over the unit cap or one the seller cannot
/// pay for (the ledger checks again, in the transaction that holds the credits).
async fn check_affordable(
    state: &State,
    user_id: &str,
    units: usize,
    unit_cost: i64,
) -> Result<(), ApiError> {
    if units > MAX_UNITS_PER_JOB {
        return Err(ApiError::with_message(
            ErrorCode::BATCH_INPUT_INVALID,
            format!("a job has at most {MAX_UNITS_PER_JOB} images; this one asks for {units}"),
        ));
    }
    let required = unit_cost.saturating_mul(units as i64);
    if required == 0 {
        return Ok(());
    }
    let id = user_id.to_string();
    let balances = state
        .db
        .read(move |conn| accounts::credits(conn, &id))
        .await?
        .unwrap_or_default();
    if balances.available() < required {
        return Err(ApiError::new(ErrorCode::INSUFFICIENT_CREDITS)
            .details(json!({"required": required, "available": balances.available()})));
    }
    Ok(())
}

/// Checks every data-URI image reference of a field (type, size).
fn check_images(state: &State, field: &str, references: &[String]) -> Result<(), ApiError> {
    let max = state.config.limits.image_max_bytes;
    references
        .iter()
        .try_for_each(|r| check_image_reference(field, r, max))
}

fn with_unit_index(unit: &Value, index: u32) -> Value {
    let mut unit = unit.clone();
    unit["unit"] = json!(index);
    unit
}

fn new_job(
    user_id: &str,
    job_type: JobType,
    model: &ResolvedModel,
    payload: Value,
    units: Vec<Value>,
    meta: JobMeta,
) -> NewJob {
    NewJob {
        user_id: user_id.to_string(),
        job_type,
        provider: model.entry.provider.clone(),
        model: model.entry.id.clone(),
        payload,
        unit_cost: model.unit_cost,
        units,
        trace_id: meta.trace_id,
        client_job_id: meta.client_job_id,
        request_hash: None,
        fe_attempt: meta.fe_attempt,
        internal_key: None,
        limits: JobLimits::NONE,
    }
}

/// Submits a job and answers its ack; a job that could not be written answers the
/// endpoint's own 500 code.
async fn accept(
    state: &State,
    req: &Request,
    raw: &Value,
    job: NewJob,
    create_code: ErrorCode,
) -> Result<Value, ApiError> {
    let ack = submit_job(state, req, raw, job, &state.config.limits)
        .await
        .map_err(|e| create_failed(e, create_code))?;
    Ok(ack_json(&ack))
}

/// A job that could not be written answers the endpoint's own 500 code.
fn create_failed(err: ApiError, code: ErrorCode) -> ApiError {
    if err.code == ErrorCode::INTERNAL_ERROR {
        ApiError { code, ..err }
    } else {
        err
    }
}

fn ack_json(ack: &JobAck) -> Value {
    json!({"job_id": ack.job_id, "status": "processing"})
}

/// Hands a validated job to the ledger (idempotency key from `client_job_id` or the
/// `Idempotency-Key` header, fingerprinted by the body) and wakes the queue.
pub async fn submit_job(
    state: &State,
    req: &Request,
    body: &Value,
    mut job: NewJob,
    limits: &LimitsConfig,
) -> Result<JobAck, ApiError> {
    job.limits = limits.for_job(job.job_type);
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
    let job_type = job.job_type.as_str();
    let ack = match state.ledger.create_job(job).await {
        Ok(ack) => ack,
        Err(err) => {
            if err.http_status() >= 500 {
                let in_a_row = state.health.accept_failed();
                tracing::error!(
                    code = err.code.as_str(),
                    in_a_row,
                    "a job could not be accepted"
                );
            }
            return Err(err);
        }
    };
    state.health.accept_succeeded();
    if !ack.replayed {
        state
            .metrics
            .jobs_created
            .with_label_values(&[job_type])
            .inc();
        state.metrics.ledger_movement("hold");
        let _ = state.job_events.send(ack.job_id.clone());
        let _ = state.supervisor.send_message(SupervisorMsg::Wake);
    }
    Ok(ack)
}

/// Body fields that describe a request's delivery, not its work: a client retry may
/// change them under the same idempotency key.
const DELIVERY_FIELDS: &[&str] = &["client_job_id", "trace_id", "fe_attempt"];

/// A stable fingerprint of the work a request body asks for (keys are sorted by
/// serde_json's map; the delivery fields are left out).
fn request_hash(body: &Value) -> String {
    let mut work = body.clone();
    if let Some(fields) = work.as_object_mut() {
        for field in DELIVERY_FIELDS {
            fields.remove(*field);
        }
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(work.to_string().as_bytes()))
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

//! Health, readiness (with the queue alarms), metrics, the OpenAPI document and the
//! public configuration.

use serde_json::{json, Value};
use warp::http::header::CONTENT_TYPE;
use warp::reply::Response;
use warp::Filter;

use super::{guard, reply, request, with_state, State};
use crate::domain::{ApiError, ErrorCode};
use crate::ops::alarm;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and(request(&state))
        .then(|_| guard(async { reply::ok(&json!({"status": "ok"})) }));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, _| guard(readyz(state)));
    let public_config = warp::path!("functions" / "v1" / "get-public-config")
        .and(warp::get().or(warp::post()).unify())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, _| guard(public_config(state)));
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(metrics(state, req)));
    let openapi = warp::path!("openapi.json")
        .and(warp::get())
        .and(request(&state))
        .then(|_| guard(async { reply::ok(&super::openapi::document()) }));
    healthz
        .or(readyz)
        .unify()
        .or(public_config)
        .unify()
        .or(metrics)
        .unify()
        .or(openapi)
        .unify()
}

/// `GET /readyz`: the database takes a write and no queue alarm is raised; otherwise 503
/// with the reasons in `details`.
async fn readyz(state: State) -> Response {
    let db = state.db.clone();
    let writable = tokio::task::spawn_blocking(move || db.heartbeat())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(why) = writable {
        return reply::error(
            &ApiError::internal()
                .status(503)
                .details(json!({"reason": "database not writable"}))
                .cause(why),
        );
    }
    match alarm::check(&state).await {
        Ok(report) if report.alarms.is_empty() => {
            reply::ok(&json!({"status": "ready", "queue": report.details()}))
        }
        Ok(report) => reply::error(
            &ApiError::with_message(ErrorCode::INTERNAL_ERROR, report.alarms.join("; "))
                .status(503)
                .details(json!({"reason": "queue alarm", "queue": report.details()})),
        ),
        Err(why) => reply::error(
            &ApiError::internal()
                .status(503)
                .details(json!({"reason": "queue not readable"}))
                .cause(why),
        ),
    }
}

/// `GET /metrics`: the Prometheus text exposition (gauges refreshed from the database).
async fn metrics(state: State, req: super::Request) -> Response {
    if let Some(token) = &state.config.server.metrics_token {
        if req.bearer() != Some(token.as_str()) {
            return reply::error(&ApiError::with_message(
                ErrorCode::UNAUTHORIZED,
                "metrics need the configured bearer token",
            ));
        }
    }
    if let Err(why) = alarm::check(&state).await {
        tracing::warn!(error = %why, "metrics: the queue gauges are stale");
    }
    if let Err(why) = crate::ops::health::update_metrics(&state).await {
        tracing::warn!(error = %why, "metrics: the job-health gauges are stale");
    }
    match state.metrics.render() {
        Ok(text) => {
            let mut response = Response::new(text.into());
            response.headers_mut().insert(
                CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        Err(why) => reply::error(&ApiError::internal().cause(why)),
    }
}

/// `GET|POST /functions/v1/get-public-config`: what a client needs before signing in,
/// with the reference's public keys (get-public-config/index.ts L6–13; types/index.ts
/// L986–999): `credit_costs`, `batch_concurrency`, `ta_pro_prompt_profile_enabled`,
/// `release_notes {en, zh}`, `platform_rules {version, rules[{value, minImages}]}`.
async fn public_config(state: State) -> Response {
    let config = &state.config;
    let maintenance = match state.maintenance.current(&state.db).await {
        Ok(current) => current,
        Err(why) => return reply::error(&ApiError::internal().cause(why.to_string())),
    };
    let public = &config.public;
    let rules: Vec<Value> = public
        .platform_min_images
        .iter()
        .map(|(platform, min)| json!({"value": platform, "minImages": min}))
        .collect();
    reply::ok(&json!({
        "maintenance": {"enabled": maintenance.enabled, "message": maintenance.message},
        "credit_costs": crate::catalog::credit_costs(config),
        "batch_concurrency": public.batch_concurrency,
        "ta_pro_prompt_profile_enabled": public.ta_pro_prompt_profile_enabled,
        "release_notes": {"en": public.release_notes.en, "zh": public.release_notes.zh},
        "platform_rules": {"version": public.platform_rules_version, "rules": rules},
        "models": crate::catalog::public_models(config),
        "signup_bonus_credits": config.auth.signup_bonus_credits,
        "limits": {
            "json_body_limit_bytes": config.server.json_body_limit_bytes,
            "image_max_bytes": config.limits.image_max_bytes,
            "job_creations_per_minute": config.limits.job_creations_per_minute,
            "prompt_streams_per_minute": config.limits.prompt_streams_per_minute,
            "daily_analysis": config.limits.daily_analysis,
            "active_jobs": {
                "ANALYSIS": config.limits.active_jobs_analysis,
                "IMAGE_GEN": config.limits.active_jobs_image_gen,
                "STYLE_REPLICATE": config.limits.active_jobs_style_replicate,
            },
        },
        "billing_mode": config.billing.mode,
        "alipay_enabled": state.alipay.configured() || state.alipay.simulated(),
    }))
}

//! Health, readiness and the public configuration.

use serde_json::json;
use warp::reply::Response;
use warp::Filter;

use super::{guard, reply, request, with_state, State};
use crate::domain::ApiError;

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
    healthz.or(readyz).unify().or(public_config).unify()
}

/// `GET /readyz`: the database takes a write.
async fn readyz(state: State) -> Response {
    let db = state.db.clone();
    let writable = tokio::task::spawn_blocking(move || db.heartbeat())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match writable {
        Ok(()) => reply::ok(&json!({"status": "ready"})),
        Err(why) => reply::error(
            &ApiError::internal()
                .status(503)
                .details(json!({"reason": "database not writable"}))
                .cause(why),
        ),
    }
}

/// `GET|POST /functions/v1/get-public-config`: what a client needs before signing in.
async fn public_config(state: State) -> Response {
    let config = &state.config;
    reply::ok(&json!({
        "models": crate::catalog::public_models(config),
        "signup_bonus_credits": config.auth.signup_bonus_credits,
        "limits": {
            "json_body_limit_bytes": config.server.json_body_limit_bytes,
            "image_max_bytes": config.limits.image_max_bytes,
            "job_creations_per_minute": config.limits.job_creations_per_minute,
            "daily_analysis": config.limits.daily_analysis,
            "active_jobs": {
                "ANALYSIS": config.limits.active_jobs_analysis,
                "IMAGE_GEN": config.limits.active_jobs_image_gen,
                "STYLE_REPLICATE": config.limits.active_jobs_style_replicate,
            },
        },
        "billing_mode": config.billing.mode,
    }))
}

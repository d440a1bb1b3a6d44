//! Operator endpoints for running a studio: maintenance mode and job health.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use warp::reply::Response;
use warp::Filter;

use super::admin::require_admin;
use super::{guard, reply, request, with_state, Request, State};
use crate::domain::ApiError;
use crate::ops::{health, maintenance};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let get_maintenance = warp::path!("v1" / "admin" / "maintenance")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(get_maintenance(state, req)));
    let set_maintenance = warp::path!("v1" / "admin" / "maintenance")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(set_maintenance(state, req)));
    let job_health = warp::path!("v1" / "admin" / "job-health")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|query, state, req| guard(job_health(state, query, req)));
    get_maintenance
        .or(set_maintenance)
        .unify()
        .or(job_health)
        .unify()
}

/// `GET /v1/admin/job-health?hours=1..168` (default 24): the window's figures.
async fn job_health(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        let hours = match query.get("hours").map(|h| h.trim()) {
            None | Some("") => 24,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|h| (1..=168).contains(h))
                .ok_or_else(|| ApiError::bad_field("hours", "hours must be 1 to 168"))?,
        };
        let snap = health::snapshot(&state, hours * 60)
            .await
            .map_err(|why| ApiError::internal().cause(why))?;
        Ok::<Value, ApiError>(snap.to_json(hours, &health::provider_names(&state)))
    };
    reply::result(result.await)
}

/// `GET /v1/admin/maintenance` → `{enabled, message, updated_at, updated_by}`.
async fn get_maintenance(state: State, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        let current = state.maintenance.current(&state.db).await?;
        Ok::<Value, ApiError>(current.to_json())
    };
    reply::result(result.await)
}

/// `POST /v1/admin/maintenance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetMaintenance {
    enabled: bool,
    message: Option<String>,
}

/// `POST /v1/admin/maintenance {enabled, message?}`: switches maintenance mode at once.
async fn set_maintenance(state: State, req: Request) -> Response {
    let result = async {
        let admin = require_admin(&state, &req).await?;
        let body: SetMaintenance = req.json()?;
        let message = maintenance::check_message(body.message.as_deref())
            .map_err(|why| ApiError::bad_field("message", why))?;
        let now = state
            .maintenance
            .set(&state.db, body.enabled, message, admin.email.clone())
            .await?;
        tracing::warn!(admin = %admin.email, enabled = now.enabled, message = %now.message,
            "maintenance mode changed");
        Ok::<Value, ApiError>(now.to_json())
    };
    reply::result(result.await)
}

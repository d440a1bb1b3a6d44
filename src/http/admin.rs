//! Operator endpoints (role `admin`): users, credit corrections, jobs and retries, and
//! the queue's state.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use warp::reply::Response;
use warp::Filter;

use super::account::{credits_json, entry_json, read_credits};
use super::jobs::job_page;
use super::paging::page_limit;
use super::{authenticate, guard, reply, request, with_state, Request, State};
use crate::actors::supervisor::SupervisorMsg;
use crate::db::accounts::{self, User};
use crate::db::billing;
use crate::db::jobs;
use crate::domain::credits;
use crate::domain::time::now_ms;
use crate::domain::time::rfc3339;
use crate::domain::{ApiError, ErrorCode};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let credits = warp::path!("v1" / "admin" / "credits")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(adjust_credits(state, req)));
    let queue = warp::path!("v1" / "admin" / "queue")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(queue(state, req)));
    let users = warp::path!("v1" / "admin" / "users")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|query, state, req| guard(list_users(state, query, req)));
    let jobs = warp::path!("v1" / "admin" / "jobs")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|query, state, req| guard(list_jobs(state, query, req)));
    let retry = warp::path!("v1" / "admin" / "jobs" / String / "retry")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|id, state, req| guard(retry_job(state, id, req)));
    let events = warp::path!("v1" / "admin" / "webhook-events")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|query, state, req| guard(webhook_events(state, query, req)));
    credits
        .or(events)
        .unify()
        .or(queue)
        .unify()
        .or(users)
        .unify()
        .or(jobs)
        .unify()
        .or(retry)
        .unify()
}

/// `GET /v1/admin/users?query=&limit=`: users whose email contains `query`, with credits.
async fn list_users(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        let limit = page_limit(&query)?;
        let text = query
            .get("query")
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty());
        if text.as_ref().is_some_and(|q| q.len() > 200) {
            return Err(ApiError::bad_field("query", "at most 200 characters"));
        }
        let users = state
            .db
            .read(move |conn| accounts::search(conn, text.as_deref(), limit))
            .await?;
        let users: Vec<Value> = users
            .iter()
            .map(|(user, credits)| {
                json!({"id": user.id, "email": user.email, "role": user.role,
                       "created_at": rfc3339(user.created_at),
                       "credits": credits_json(credits), "debt": credits.debt})
            })
            .collect();
        Ok(json!({ "users": users }))
    };
    reply::result(result.await)
}

/// `GET /v1/admin/webhook-events?limit=&result=parked`: the latest Stripe events and
/// what became of them (`applied`, `ignored`, `parked` until the object they refer to
/// arrives); `result=parked` lists only the waiting ones, oldest first, with what each
/// waits for and for how long.
async fn webhook_events(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        let limit = page_limit(&query)?;
        let parked_only = match query.get("result").map(String::as_str) {
            None | Some("") => false,
            Some("parked") => true,
            Some(_) => return Err(ApiError::bad_field("result", "result may only be parked")),
        };
        let events = state
            .db
            .read(move |conn| {
                if parked_only {
                    billing::parked_events(conn, limit)
                } else {
                    billing::recent_events(conn, limit)
                }
            })
            .await?;
        let now = now_ms();
        let events: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({"id": e.id, "type": e.kind, "result": e.status, "user_id": e.user_id,
                       "note": e.note, "received_at": rfc3339(e.received_at),
                       "applied_at": e.applied_at.map(rfc3339), "wait_for": e.wait_for,
                       "age_seconds": (now - e.received_at).max(0) / 1000})
            })
            .collect();
        Ok(json!({ "events": events }))
    };
    reply::result(result.await)
}

/// `GET /v1/admin/jobs?status=&type=&limit=&before=`: everyone's jobs, newest first.
async fn list_jobs(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        job_page(&state, None, &query, true).await
    };
    reply::result(result.await)
}

/// `POST /v1/admin/jobs/{id}/retry`: the job's failed units run again as a new job of
/// its owner (held and charged as usual); answers the new job's ack.
async fn retry_job(state: State, id: String, req: Request) -> Response {
    let result = async {
        let admin = require_admin(&state, &req).await?;
        let ack = state.ledger.retry_failed_units(id.clone()).await?;
        if !ack.replayed {
            tracing::info!(admin = %admin.email, job_id = %id, retry_job_id = %ack.job_id,
                "admin retried a job's failed units");
            state.metrics.ledger_movement("hold");
            let _ = state.job_events.send(ack.job_id.clone());
            let _ = state.supervisor.send_message(SupervisorMsg::Wake);
        }
        Ok(json!({"job_id": ack.job_id, "status": "processing", "retry_of": id}))
    };
    reply::result(result.await)
}

/// The signed-in user if an admin; 401 without a valid token, 403 otherwise.
async fn require_admin(state: &State, req: &Request) -> Result<User, ApiError> {
    let user = authenticate(state, req).await?;
    if !user.is_admin() {
        return Err(ApiError::with_message(
            ErrorCode::FORBIDDEN,
            "this needs an admin account",
        ));
    }
    Ok(user)
}

/// `POST /v1/admin/credits`.
#[derive(Debug, Deserialize)]
struct AdjustCredits {
    user_id: Option<String>,
    email: Option<String>,
    amount: i64,
    reason: String,
    idempotency_key: String,
}

async fn adjust_credits(state: State, req: Request) -> Response {
    let result = async {
        let admin = require_admin(&state, &req).await?;
        let body: AdjustCredits = req.json()?;
        credits::check_amount("amount", body.amount, true)?;
        if body.reason.trim().is_empty() || body.reason.len() > 500 {
            return Err(ApiError::bad_field(
                "reason",
                "reason must be 1 to 500 characters",
            ));
        }
        if body.idempotency_key.is_empty() || body.idempotency_key.len() > 128 {
            return Err(ApiError::bad_field(
                "idempotency_key",
                "idempotency_key must be 1 to 128 characters",
            ));
        }
        let (user_id, email) = (body.user_id.clone(), body.email.clone());
        let user = state
            .db
            .read(move |conn| match (user_id, email) {
                (Some(id), _) => accounts::find_by_id(conn, &id),
                (None, Some(email)) => {
                    accounts::find_by_email(conn, &email.trim().to_ascii_lowercase())
                }
                (None, None) => Ok(None),
            })
            .await?;
        let user = match (user, body.user_id.is_some() || body.email.is_some()) {
            (Some(user), _) => user,
            (None, true) => {
                return Err(ApiError::with_message(
                    ErrorCode::NOT_FOUND,
                    "user not found",
                ))
            }
            (None, false) => {
                return Err(ApiError::bad_field(
                    "user_id",
                    "user_id or email is required",
                ))
            }
        };
        let entry = state
            .ledger
            .adjust(
                user.id.clone(),
                body.amount,
                Some(body.idempotency_key.clone()),
                body.reason.clone(),
            )
            .await?;
        tracing::info!(admin = %admin.email, user = %user.email, amount = body.amount,
            reason = %body.reason, "admin credit adjustment");
        let credits = read_credits(&state, &user.id).await?;
        Ok(json!({
            "user_id": user.id,
            "entry": entry_json(&entry),
            "credits": credits_json(&credits),
        }))
    };
    reply::result(result.await)
}

/// `GET /v1/admin/queue`: depth, running units, the oldest queued unit's age, and
/// running units per provider against each provider's concurrency.
async fn queue(state: State, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        let stats = state.db.read(jobs::queue_stats).await?;
        let now = now_ms();
        let mut providers = Map::new();
        for (name, provider) in &state.providers {
            let (concurrency, _) = state.config.providers.unit_limits(name);
            let mut entry = json!({"in_flight": 0, "concurrency": concurrency});
            if let Some(metrics) = provider.metrics() {
                entry["upstream"] = metrics.snapshot();
            }
            providers.insert(name.clone(), entry);
        }
        for (name, running) in &stats.running_per_provider {
            let entry = providers
                .entry(name.clone())
                .or_insert_with(|| json!({"in_flight": 0, "concurrency": null}));
            entry["in_flight"] = Value::from(*running);
        }
        Ok(json!({
            "depth": stats.queued,
            "running": stats.running,
            "oldest_queued_age_ms": stats.oldest_queued_at.map(|t| (now - t).max(0)),
            "providers": providers,
            "prompt_streams": state.prompt_streams.load(std::sync::atomic::Ordering::SeqCst),
        }))
    };
    reply::result(result.await)
}

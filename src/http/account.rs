//! `/v1/me`, `/v1/packages` and `/v1/ledger`.

use std::collections::HashMap;

use serde_json::{json, Value};
use warp::reply::Response;
use warp::Filter;

use super::paging::{next_cursor, page_limit};
use super::{authenticate, guard, reply, request, with_state, Request, State};
use crate::db::ledger::{self, LedgerEntry};
use crate::db::{accounts, billing, packages};
use crate::domain::credits::Balances;
use crate::domain::time::rfc3339;
use crate::domain::ApiError;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let me = warp::path!("v1" / "me")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(me(state, req)));
    let packages = warp::path!("v1" / "packages")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, _| guard(list_packages(state)));
    let ledger = warp::path!("v1" / "ledger")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .and(request(&state))
        .then(|state, query, req| guard(list_ledger(state, query, req)));
    me.or(packages).unify().or(ledger).unify()
}

/// A user's balances now.
pub async fn read_credits(state: &State, user_id: &str) -> Result<Balances, ApiError> {
    let user_id = user_id.to_string();
    Ok(state
        .db
        .read(move |conn| accounts::credits(conn, &user_id))
        .await?
        .unwrap_or_default())
}

/// Balances as the API shows them.
pub fn credits_json(credits: &Balances) -> Value {
    json!({
        "subscription": credits.subscription,
        "purchased": credits.purchased,
        "held": credits.held,
        "debt": credits.debt,
        "available": credits.available(),
    })
}

/// A ledger row as the API shows it.
pub fn entry_json(e: &LedgerEntry) -> Value {
    json!({
        "id": e.id, "kind": e.kind, "amount": e.amount, "bucket": e.bucket,
        "job_id": e.job_id, "task_id": e.task_id, "stripe_event_id": e.stripe_event_id,
        "reason": e.reason, "available_after": e.available_after,
        "created_at": rfc3339(e.created_at),
    })
}

/// `GET /v1/ledger`: the caller's credit movements, newest first.
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
        let entries: Vec<Value> = entries.iter().map(entry_json).collect();
        Ok(json!({"entries": entries, "next": next}))
    };
    reply::result(result.await)
}

/// `GET /v1/me`: who I am and what I hold.
async fn me(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let credits = read_credits(&state, &user.id).await?;
        let subscription = subscription_json(&state, &user.id).await?;
        Ok::<_, ApiError>(json!({
            "id": user.id,
            "email": user.email,
            "role": user.role,
            "credits": credits_json(&credits),
            "subscription": subscription,
            "created_at": rfc3339(user.created_at),
        }))
    };
    reply::result(result.await)
}

/// The user's subscription `{plan, status, current_period_end}`, or null.
async fn subscription_json(state: &State, user_id: &str) -> Result<Value, ApiError> {
    let user_id = user_id.to_string();
    let found = state
        .db
        .read(move |conn| {
            let Some(profile) = billing::profile_by(conn, billing::ProfileKey::User, &user_id)?
            else {
                return Ok(None);
            };
            let plan = match &profile.package_id {
                Some(id) => packages::find(conn, id)?.map(|p| p.name),
                None => None,
            };
            Ok(Some((profile, plan)))
        })
        .await?;
    Ok(match found {
        Some((profile, plan)) if profile.subscription_id.is_some() => json!({
            "plan": plan,
            "package_id": profile.package_id,
            "status": profile.status,
            "current_period_end": profile.current_period_end.map(|s| rfc3339(s * 1000)),
        }),
        _ => Value::Null,
    })
}

/// `GET /v1/packages`: active packages in display order.
async fn list_packages(state: State) -> Response {
    let result = state.db.read(packages::list_active).await.map(|list| {
        let packages: Vec<_> = list
            .into_iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "name": p.name,
                    "type": p.kind,
                    "price_usd": p.price_usd_cents as f64 / 100.0,
                    "price_cny": p.price_cny_fen.map(|fen| fen as f64 / 100.0),
                    "credits": p.credits,
                    "first_sub_bonus": p.first_sub_bonus,
                    "is_popular": p.is_popular,
                    "sort_order": p.sort_order,
                })
            })
            .collect();
        json!({ "packages": packages })
    });
    reply::result(result.map_err(ApiError::from))
}

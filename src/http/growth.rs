//! Invite and redeem codes: the seller's `/v1/invite`, `/v1/invite/bind`, `/v1/redeem`,
//! and the operator's `/v1/admin/redeem-codes` and `/v1/admin/invite-bindings`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use warp::reply::Response;
use warp::Filter;

use super::admin::require_admin;
use super::paging::page_limit;
use super::{authenticate, guard, reply, request, with_state, Request, State};
use crate::actors::growth::{self, Bound, Claimed, NewRedeemCode};
use crate::db::accounts::User;
use crate::db::growth::{self as gdb, RedeemCode};
use crate::domain::time::{now_ms, parse_rfc3339, rfc3339};
use crate::domain::{ApiError, ErrorCode};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let invite = warp::path!("v1" / "invite")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(my_invite(state, req)));
    let bind = warp::path!("v1" / "invite" / "bind")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(bind(state, req)));
    let redeem = warp::path!("v1" / "redeem")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(redeem(state, req)));
    let create = warp::path!("v1" / "admin" / "redeem-codes")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(create_code(state, req)));
    let list = warp::path!("v1" / "admin" / "redeem-codes")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|query, state, req| guard(list_codes(state, query, req)));
    let deactivate = warp::path!("v1" / "admin" / "redeem-codes" / String / "deactivate")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|id, state, req| guard(deactivate(state, id, req)));
    let bindings = warp::path!("v1" / "admin" / "invite-bindings")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|query, state, req| guard(list_bindings(state, query, req)));
    invite
        .or(bind)
        .unify()
        .or(redeem)
        .unify()
        .or(create)
        .unify()
        .or(list)
        .unify()
        .or(deactivate)
        .unify()
        .or(bindings)
        .unify()
}

/// `{code}` of the bind and redeem calls (absent or empty → `INVALID_CODE`).
#[derive(Deserialize)]
struct CodeBody {
    #[serde(default)]
    code: Option<String>,
}

fn code_of(req: &Request) -> Result<String, ApiError> {
    let body: CodeBody = req.json()?;
    Ok(body.code.unwrap_or_default())
}

/// `an***@example.com`: enough for a seller to recognise an invitee, no more.
fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((name, domain)) => {
            let shown: String = name.chars().take(2).collect();
            format!("{shown}***@{domain}")
        }
        None => "***".into(),
    }
}

/// `GET /v1/invite`: the caller's code, whom they are bound to, their invitees and
/// the rewards those brought.
async fn my_invite(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let id = user.id.clone();
        let (code, bound, invitees) = state
            .db
            .read(move |conn| {
                Ok((
                    gdb::invite_code_of(conn, &id)?,
                    gdb::binding_of_invitee(conn, &id)?,
                    gdb::invitees_of(conn, &id)?,
                ))
            })
            .await?;
        let total: i64 = invitees
            .iter()
            .map(|b| b.reward_credits - b.reward_reversed)
            .sum();
        let invitees: Vec<Value> = invitees
            .iter()
            .map(|b| {
                json!({"email": mask_email(b.email.as_deref().unwrap_or("")),
                       "bound_at": rfc3339(b.created_at),
                       "rewarded_at": b.rewarded_at.map(rfc3339),
                       "reward_credits": b.reward_credits - b.reward_reversed})
            })
            .collect();
        Ok(json!({
            "invite_code": code,
            "invited": bound.map(|b| json!({"code": b.code, "bound_at": rfc3339(b.created_at)})),
            "invitees": invitees,
            "reward_credits_total": total,
            "reward_rate": state.config.billing.invite_reward_rate,
        }))
    };
    reply::result(result.await)
}

/// `POST /v1/invite/bind {code}` → `{success: true, inviter_user_id}`.
async fn bind(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let bound = bind_code(&state, &user, code_of(&req)?).await?;
        Ok(json!({"success": true, "inviter_user_id": bound.inviter_id}))
    };
    reply::result(result.await)
}

/// Binds `user` to the owner of the invite code `code` (for `/v1/invite/bind` and the
/// `bind_invite_code` RPC).
pub(super) async fn bind_code(state: &State, user: &User, code: String) -> Result<Bound, ApiError> {
    let bound = state
        .ledger
        .bind_invite_code(
            user.id.clone(),
            code,
            state.config.billing.invite_reward_rate,
        )
        .await?;
    tracing::info!(user_id = %user.id, inviter = %bound.inviter_id, "invite code bound");
    Ok(bound)
}

/// `POST /v1/redeem {code}` → `{success: true, claim_id, credits, available}`.
async fn redeem(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let claimed = redeem_code(&state, &user, code_of(&req)?).await?;
        Ok(
            json!({"success": true, "claim_id": claimed.claim_id, "credits": claimed.credits,
                  "available": claimed.available_after}),
        )
    };
    reply::result(result.await)
}

/// Claims the redeem code `code` for `user` (for `/v1/redeem` and the
/// `claim_redeem_code` RPC).
pub(super) async fn redeem_code(
    state: &State,
    user: &User,
    code: String,
) -> Result<Claimed, ApiError> {
    let claimed = state
        .ledger
        .claim_redeem_code(user.id.clone(), code)
        .await?;
    state.metrics.ledger_movement("grant");
    tracing::info!(user_id = %user.id, credits = claimed.credits, "redeem code claimed");
    Ok(claimed)
}

/// A redeem code as the admin API shows it.
pub fn code_json(c: &RedeemCode) -> Value {
    let now = now_ms();
    let state = if !c.active {
        "inactive"
    } else if c.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else if c.used_count >= c.max_uses {
        "exhausted"
    } else {
        "active"
    };
    json!({"id": c.id, "code": c.code, "credit_amount": c.credit_amount,
           "max_uses": c.max_uses, "used_count": c.used_count,
           "expires_at": c.expires_at.map(rfc3339), "active": c.active, "state": state,
           "note": c.note, "created_at": rfc3339(c.created_at),
           "updated_at": rfc3339(c.updated_at)})
}

/// Body of `POST /v1/admin/redeem-codes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    code: Option<String>,
    credit_amount: i64,
    #[serde(default = "one")]
    max_uses: i64,
    expires_at: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    note: Option<String>,
}

fn one() -> i64 {
    1
}

fn yes() -> bool {
    true
}

/// `POST /v1/admin/redeem-codes`: a new code (generated when `code` is absent).
async fn create_code(state: State, req: Request) -> Response {
    let result = async {
        let admin = require_admin(&state, &req).await?;
        let body: CreateBody = req.json()?;
        let expires_at = match body.expires_at.as_deref() {
            Some(text) => Some(parse_rfc3339(text).ok_or_else(|| {
                ApiError::bad_field("expires_at", "expires_at must be an RFC 3339 time")
            })?),
            None => None,
        };
        let new = NewRedeemCode {
            code: body.code,
            credit_amount: body.credit_amount,
            max_uses: body.max_uses,
            expires_at,
            active: body.active,
            note: body.note,
        };
        let code = state
            .db
            .write(move |conn| growth::create_redeem_code(conn, &new))
            .await?;
        tracing::info!(admin = %admin.email, code = %code.code, credits = code.credit_amount,
            max_uses = code.max_uses, "redeem code created");
        Ok(code_json(&code))
    };
    reply::result(result.await)
}

/// `GET /v1/admin/redeem-codes?limit=`: the newest codes first.
async fn list_codes(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        let limit = page_limit(&query)?;
        let codes = state
            .db
            .read(move |conn| gdb::list_redeem_codes(conn, limit))
            .await?;
        Ok(json!({"codes": codes.iter().map(code_json).collect::<Vec<_>>()}))
    };
    reply::result(result.await)
}

/// `POST /v1/admin/redeem-codes/{id}/deactivate`: no more claims of that code.
async fn deactivate(state: State, id: String, req: Request) -> Response {
    let result = async {
        let admin = require_admin(&state, &req).await?;
        let found = state
            .db
            .write(move |conn| {
                let Some(code) = gdb::find_redeem_code(conn, &id)? else {
                    return Ok::<_, ApiError>(None);
                };
                gdb::set_redeem_active(conn, &code.id, false, now_ms())?;
                Ok(gdb::find_redeem_code(conn, &code.id)?)
            })
            .await?;
        let code = found
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such redeem code"))?;
        tracing::info!(admin = %admin.email, code = %code.code, "redeem code deactivated");
        Ok(code_json(&code))
    };
    reply::result(result.await)
}

/// `GET /v1/admin/invite-bindings?limit=`: who invited whom, and the rewards.
async fn list_bindings(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        let limit = page_limit(&query)?;
        let rows = state
            .db
            .read(move |conn| gdb::recent_bindings(conn, limit))
            .await?;
        let bindings: Vec<Value> = rows
            .iter()
            .map(|r| {
                let b = &r.binding;
                json!({"id": b.id, "inviter": {"id": b.inviter_id, "email": r.inviter_email},
                       "invitee": {"id": b.invitee_id, "email": r.invitee_email},
                       "code": b.code, "reward_rate": b.reward_rate,
                       "bound_at": rfc3339(b.created_at),
                       "rewarded_at": b.rewarded_at.map(rfc3339),
                       "reward_credits": b.reward_credits,
                       "reward_reversed": b.reward_reversed})
            })
            .collect();
        Ok(json!({"bindings": bindings}))
    };
    reply::result(result.await)
}

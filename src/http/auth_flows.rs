//! `/auth/v1` confirmation and recovery, as supabase-js calls them: `POST /verify`,
//! `POST /resend`, `POST /recover`, `PUT /user`, and the service role's
//! `DELETE /admin/users/{id}` (`auth.admin.deleteUser`).

use serde_json::{json, Value};
use warp::reply::Response;
use warp::Filter;

use super::auth::{bearer_user, session_reply, user_json, Credentials};
use super::{guard, reply, request, with_state, Request, State};
use crate::auth::jwt::SERVICE_ROLE;
use crate::auth::{AuthError, UserUpdate};
use crate::domain::time::{now_ms, rfc3339};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let verify = warp::path!("auth" / "v1" / "verify")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(verify(state, req)));
    let resend = warp::path!("auth" / "v1" / "resend")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(resend(state, req)));
    let recover = warp::path!("auth" / "v1" / "recover")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(recover(state, req)));
    let update = warp::path!("auth" / "v1" / "user")
        .and(warp::put())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(update_user(state, req)));
    let delete = warp::path!("auth" / "v1" / "admin" / "users" / String)
        .and(warp::delete())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|id, state, req| guard(delete_user(state, id, req)));
    verify
        .or(resend)
        .unify()
        .or(recover)
        .unify()
        .or(update)
        .unify()
        .or(delete)
        .unify()
}

/// Counts the request against the per-IP limit of `/auth/v1`.
fn per_ip(state: &State, req: &Request) -> Result<(), AuthError> {
    state
        .auth
        .check_rate(req.client_ip(state.config.server.trust_forwarded_for))
}

/// `POST /verify {type, email, token}` → a session, or 403 `otp_expired` for a wrong,
/// expired or used-up code alike.
async fn verify(state: State, req: Request) -> Response {
    let result = async {
        per_ip(&state, &req)?;
        let body = Credentials::parse(&req)?;
        let kind = Credentials::text(&body.kind, "type")?;
        let email = Credentials::text(&body.email, "email")?;
        let token = Credentials::text(&body.token, "token")?;
        state.auth.verify(&kind, &email, &token).await
    };
    session_reply(result.await)
}

/// `POST /resend {type, email}` → `{}` whatever the address.
async fn resend(state: State, req: Request) -> Response {
    let result = async {
        per_ip(&state, &req)?;
        let body = Credentials::parse(&req)?;
        let kind = Credentials::text(&body.kind, "type")?;
        let email = Credentials::text(&body.email, "email")?;
        state.auth.resend(&kind, &email).await
    };
    empty_object(result.await)
}

/// `POST /recover {email}` → `{}` whatever the address.
async fn recover(state: State, req: Request) -> Response {
    let result = async {
        per_ip(&state, &req)?;
        let body = Credentials::parse(&req)?;
        let email = Credentials::text(&body.email, "email")?;
        state.auth.recover(&email).await
    };
    empty_object(result.await)
}

fn empty_object(result: Result<(), AuthError>) -> Response {
    match result {
        Ok(()) => reply::ok(&json!({})),
        Err(err) => reply::auth_error(&err),
    }
}

/// `PUT /user {email?, password?, data?}` (bearer) → the user; an address change waiting
/// for its code shows as `new_email`.
async fn update_user(state: State, req: Request) -> Response {
    let result = async {
        let (user, _) = bearer_user(&state, &req).await?;
        let body = Credentials::parse(&req)?;
        let optional = |value: &Option<Value>, name: &str| match value {
            None | Some(Value::Null) => Ok(None),
            some => Credentials::text(some, name).map(Some),
        };
        let update = UserUpdate {
            email: optional(&body.email, "email")?,
            password: optional(&body.password, "password")?,
            data: body.data.filter(|d| !d.is_null()),
        };
        state.auth.update_user(&user, update).await
    };
    match result.await {
        Ok((user, pending)) => {
            let mut body = user_json(&user);
            if let Some(new_email) = pending {
                body["new_email"] = json!(new_email);
                body["email_change_sent_at"] = json!(rfc3339(now_ms()));
            }
            reply::ok(&body)
        }
        Err(err) => reply::auth_error(&err),
    }
}

/// `DELETE /admin/users/{id}` with the service role key (or an admin's token) → the
/// deleted user.
async fn delete_user(state: State, id: String, req: Request) -> Response {
    let result = async {
        let token = req.bearer().ok_or_else(AuthError::not_admin)?;
        let allowed = match state.auth.keys().verify_key(token) {
            Ok(role) => role == SERVICE_ROLE,
            Err(_) => matches!(state.auth.authenticate(token).await, Ok((u, _)) if u.is_admin()),
        };
        if !allowed {
            return Err(AuthError::not_admin());
        }
        state.auth.delete_user(&id).await
    };
    match result.await {
        Ok(user) => reply::ok(&user_json(&user)),
        Err(err) => reply::auth_error(&err),
    }
}

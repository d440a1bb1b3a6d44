//! `/auth/v1`: GoTrue-shaped accounts so that supabase-js `auth.*` works unchanged.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use warp::reply::Response;
use warp::Filter;

use super::reply::{self, ErrorInfo};
use super::{guard, request, with_state, Request, State};
use crate::auth::{AuthError, Session, Signup};
use crate::db::accounts::User;
use crate::domain::time::{now_ms, rfc3339};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let signup = warp::path!("auth" / "v1" / "signup")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(signup(state, req)));
    let token = warp::path!("auth" / "v1" / "token")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .and(request(&state))
        .then(|state, query, req| guard(token(state, query, req)));
    let user = warp::path!("auth" / "v1" / "user")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(get_user(state, req)));
    let logout = warp::path!("auth" / "v1" / "logout")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .and(request(&state))
        .then(|state, query, req| guard(logout(state, query, req)));
    signup
        .or(token)
        .unify()
        .or(user)
        .unify()
        .or(logout)
        .unify()
        .or(super::auth_flows::routes(state))
        .unify()
}

/// Request bodies are read loosely (every field optional, any JSON type) so that every
/// defect gets GoTrue's `validation_failed` instead of a serde message.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Credentials {
    pub email: Option<Value>,
    pub password: Option<Value>,
    pub data: Option<Value>,
    pub refresh_token: Option<Value>,
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    pub token: Option<Value>,
}

impl Credentials {
    pub(super) fn parse(req: &Request) -> Result<Credentials, AuthError> {
        req.json::<Credentials>().map_err(|err| {
            let mut refused = AuthError::validation_failed(err.message.clone());
            refused.status = err.http_status();
            refused
        })
    }

    pub(super) fn text(value: &Option<Value>, name: &str) -> Result<String, AuthError> {
        match value {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) => {
                Err(AuthError::validation_failed(format!("{name} is required")))
            }
            Some(_) => Err(AuthError::validation_failed(format!(
                "{name} must be a string"
            ))),
        }
    }
}

async fn signup(state: State, req: Request) -> Response {
    let result = async {
        state
            .auth
            .check_rate(req.client_ip(state.config.server.trust_forwarded_for))?;
        let body = Credentials::parse(&req)?;
        let email = Credentials::text(&body.email, "email")?;
        let password = Credentials::text(&body.password, "password")?;
        refuse_in_maintenance(&state).await?;
        state
            .auth
            .signup(&email, &password, body.data.unwrap_or(Value::Null))
            .await
    };
    match result.await {
        Ok(Signup::Session(session)) => session_reply(Ok(session)),
        // GoTrue answers an account that waits for its code with the bare user.
        Ok(Signup::Pending(user)) => {
            let mut body = user_json(&user);
            body["confirmation_sent_at"] = json!(rfc3339(now_ms()));
            reply::ok(&body)
        }
        Err(err) => reply::auth_error(&err),
    }
}

/// Signups are refused while maintenance is on.
async fn refuse_in_maintenance(state: &State) -> Result<(), AuthError> {
    let refused = state.maintenance.refuse(&state.db, None).await;
    refused.map_err(|err| match err.code {
        crate::domain::ErrorCode::MAINTENANCE => AuthError::maintenance(err.message),
        _ => AuthError::internal(),
    })
}

async fn token(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        state
            .auth
            .check_rate(req.client_ip(state.config.server.trust_forwarded_for))?;
        let body = Credentials::parse(&req)?;
        match query.get("grant_type").map(String::as_str) {
            Some("password") => {
                let email = Credentials::text(&body.email, "email")?;
                let password = Credentials::text(&body.password, "password")?;
                state.auth.login_password(&email, &password).await
            }
            Some("refresh_token") => {
                let token = Credentials::text(&body.refresh_token, "refresh_token")?;
                state.auth.refresh(&token).await
            }
            Some(other) => Err(AuthError::validation_failed(format!(
                "unsupported grant_type {other:?}"
            ))),
            None => Err(AuthError::validation_failed("grant_type is required")),
        }
    };
    session_reply(result.await)
}

async fn get_user(state: State, req: Request) -> Response {
    match bearer_user(&state, &req).await {
        Ok((user, _)) => reply::ok(&user_json(&user)),
        Err(err) => reply::auth_error(&err),
    }
}

async fn logout(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        let (_, claims) = bearer_user(&state, &req).await?;
        let scope = query.get("scope").map(String::as_str).unwrap_or("global");
        if !matches!(scope, "global" | "local" | "others") {
            return Err(AuthError::validation_failed(
                "scope must be global, local or others",
            ));
        }
        state.auth.logout(&claims, scope).await
    };
    match result.await {
        Ok(()) => reply::empty(204),
        Err(err) => reply::auth_error(&err),
    }
}

pub(super) async fn bearer_user(
    state: &State,
    req: &Request,
) -> Result<(User, crate::auth::jwt::Claims), AuthError> {
    let token = req
        .bearer()
        .ok_or_else(|| AuthError::bad_jwt("This endpoint requires a Bearer token"))?;
    state.auth.authenticate(token).await.map_err(|why| {
        tracing::debug!(reason = %why, "bearer token refused");
        AuthError::bad_jwt("invalid JWT: unable to parse or verify signature, token is expired or the session has ended")
    })
}

pub(super) fn session_reply(result: Result<Session, AuthError>) -> Response {
    match result {
        Ok(session) => reply::ok(&json!({
            "access_token": session.access_token,
            "token_type": "bearer",
            "expires_in": session.expires_in,
            "expires_at": session.expires_at,
            "refresh_token": session.refresh_token,
            "user": user_json(&session.user),
        })),
        Err(err) => reply::auth_error(&err),
    }
}

/// A user in GoTrue's shape.
pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "aud": crate::auth::jwt::AUDIENCE,
        "role": user.role,
        "email": user.email,
        "email_confirmed_at": user.email_confirmed_at.map(rfc3339),
        "confirmed_at": user.email_confirmed_at.map(rfc3339),
        "created_at": rfc3339(user.created_at),
        "updated_at": rfc3339(user.updated_at),
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": user.user_metadata,
        "identities": [],
    })
}

/// Re-answers an envelope error (no route, wrong method, too large …) in GoTrue's shape.
pub fn gotrue_shape(response: Response) -> Response {
    let Some(info) = response.extensions().get::<ErrorInfo>().cloned() else {
        return response;
    };
    if info.code.chars().any(|c| c.is_ascii_lowercase()) {
        return response; // already GoTrue-shaped
    }
    let status = response.status().as_u16();
    let error_code = match info.code.as_str() {
        "NOT_FOUND" => "not_found",
        "UNAUTHORIZED" => "bad_jwt",
        "FORBIDDEN" => "not_admin",
        "BAD_REQUEST" => "validation_failed",
        "MAINTENANCE" => "MAINTENANCE",
        _ => "unexpected_failure",
    };
    let mut shaped = reply::json(
        status,
        &json!({"code": status, "error_code": error_code, "msg": info.message}),
    );
    shaped.extensions_mut().insert(info);
    for (name, value) in response.headers() {
        if name != warp::http::header::CONTENT_TYPE && name != warp::http::header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped
}

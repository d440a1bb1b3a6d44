//! Building responses: JSON bodies, the error envelope, GoTrue errors.

use bytes::Bytes;
use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::auth::AuthError;
use crate::domain::ApiError;

/// Attached to every error response so the request log can say what failed and why
/// (the cause is never sent to the client).
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    pub cause: Option<String>,
}

/// A JSON response with a status.
pub fn json<T: Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, "application/json", body),
        Err(err) => error(&ApiError::internal().cause(format!("cannot serialise response: {err}"))),
    }
}

/// `200 OK` with a JSON body.
pub fn ok<T: Serialize>(value: &T) -> Response {
    json(200, value)
}

/// A response with a body and content type.
pub fn with_body(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut response = Response::new(body.into().into());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An empty response with a status.
pub fn empty(status: u16) -> Response {
    let mut response = Response::new(Bytes::new().into());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    response
}

/// The error envelope for an [`ApiError`], with `Retry-After` when it has one.
pub fn error(err: &ApiError) -> Response {
    let body = serde_json::to_vec(&err.envelope()).unwrap_or_else(|_| {
        br#"{"error":{"code":"INTERNAL_ERROR","message":"Internal error"}}"#.to_vec()
    });
    let mut response = with_body(err.http_status(), "application/json", body);
    if let Some(seconds) = err.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response.extensions_mut().insert(ErrorInfo {
        code: err.code.as_str().to_string(),
        message: err.message.clone(),
        cause: err.cause.clone(),
    });
    response
}

/// GoTrue's error body `{"code", "error_code", "msg"}` (used under `/auth/v1`).
pub fn auth_error(err: &AuthError) -> Response {
    let mut response = json(
        err.status,
        &serde_json::json!({"code": err.status, "error_code": err.error_code, "msg": err.msg}),
    );
    response.extensions_mut().insert(ErrorInfo {
        code: err.error_code.to_string(),
        message: err.msg.clone(),
        cause: None,
    });
    response
}

/// Answers a handler's result: the value as JSON, or the error envelope.
pub fn result<T: Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(value) => ok(&value),
        Err(err) => error(&err),
    }
}

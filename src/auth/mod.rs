//! Accounts and sessions: signup, password and refresh-token grants, logout, and
//! verifying the bearer token of every other request.

pub mod jwt;
pub mod password;
mod service;

pub use service::{AuthService, Session};

/// An error in GoTrue's shape `{"code", "error_code", "msg"}` (only `/auth/v1` uses it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_code}: {msg}")]
pub struct AuthError {
    pub status: u16,
    pub error_code: &'static str,
    pub msg: String,
}

impl AuthError {
    fn new(status: u16, error_code: &'static str, msg: impl Into<String>) -> Self {
        AuthError {
            status,
            error_code,
            msg: msg.into(),
        }
    }

    pub fn invalid_credentials() -> Self {
        Self::new(400, "invalid_credentials", "Invalid login credentials")
    }

    pub fn validation_failed(msg: impl Into<String>) -> Self {
        Self::new(400, "validation_failed", msg)
    }

    pub fn user_already_exists() -> Self {
        Self::new(422, "user_already_exists", "User already registered")
    }

    pub fn weak_password(min: usize) -> Self {
        Self::new(
            422,
            "weak_password",
            format!("Password should be at least {min} characters."),
        )
    }

    pub fn refresh_token_not_found() -> Self {
        Self::new(
            400,
            "refresh_token_not_found",
            "Invalid Refresh Token: Refresh Token Not Found",
        )
    }

    pub fn refresh_token_already_used() -> Self {
        Self::new(
            400,
            "refresh_token_already_used",
            "Invalid Refresh Token: Already Used",
        )
    }

    pub fn bad_jwt(msg: impl Into<String>) -> Self {
        Self::new(401, "bad_jwt", msg)
    }

    pub fn rate_limited() -> Self {
        Self::new(429, "over_request_rate_limit", "Request rate limit reached")
    }

    /// Maintenance mode refuses signups (503, `MAINTENANCE`, the operator's message).
    pub fn maintenance(msg: impl Into<String>) -> Self {
        Self::new(503, "MAINTENANCE", msg)
    }

    pub fn signup_disabled() -> Self {
        Self::new(
            422,
            "signup_disabled",
            "Signups not allowed for this instance",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            500,
            "unexpected_failure",
            "Unexpected failure, please try again",
        )
    }
}

impl From<crate::db::DbError> for AuthError {
    fn from(err: crate::db::DbError) -> Self {
        tracing::error!(error = %err, "database error in auth");
        AuthError::internal()
    }
}

impl From<crate::domain::ApiError> for AuthError {
    fn from(err: crate::domain::ApiError) -> Self {
        tracing::error!(error = %err, "ledger error in auth");
        AuthError::internal()
    }
}

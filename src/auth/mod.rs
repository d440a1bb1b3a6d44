//! Accounts and sessions: signup, password and refresh-token grants, logout, and
//! verifying the bearer token of every other request.

mod flows;
pub mod jwt;
pub mod password;
mod service;

pub use flows::UserUpdate;
pub use service::{AuthService, Session, Signup};

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

    pub fn email_not_confirmed() -> Self {
        Self::new(400, "email_not_confirmed", "Email not confirmed")
    }

    pub fn otp_expired() -> Self {
        Self::new(403, "otp_expired", "Token has expired or is invalid")
    }

    pub fn email_rate_limited(secs: u64) -> Self {
        Self::new(
            429,
            "over_email_send_rate_limit",
            format!("For security purposes, you can only request this after {secs} seconds."),
        )
    }

    pub fn email_exists() -> Self {
        Self::new(
            422,
            "email_exists",
            "A user with this email address has already been registered",
        )
    }

    pub fn same_password() -> Self {
        Self::new(
            422,
            "same_password",
            "New password should be different from the old password.",
        )
    }

    pub fn not_admin() -> Self {
        Self::new(403, "not_admin", "User not allowed")
    }

    pub fn user_not_found() -> Self {
        Self::new(404, "user_not_found", "User not found")
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

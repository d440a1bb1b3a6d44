//! The document entries of GoTrue's confirmation and recovery (`http/auth_flows.rs`).

use serde_json::json;

use super::{object, op, reference, string, Op};

fn typed_email(kinds: &[&str]) -> serde_json::Value {
    object(
        json!({"type": {"enum": kinds}, "email": string()}),
        &["type", "email"],
    )
}

/// The operations of `http/auth_flows.rs`.
pub(super) fn operations() -> Vec<Op> {
    vec![
        op(
            "post",
            "/auth/v1/verify",
            "auth",
            "Spend a mailed 6-digit code (signup, recovery, email_change); returns a session. Wrong, expired or used-up codes: 403 otp_expired",
        )
        .public()
        .body(object(
            json!({"type": {"enum": ["signup", "email", "recovery", "email_change"]},
                   "email": string(), "token": string()}),
            &["type", "email", "token"],
        ))
        .answers(reference("Session")),
        op(
            "post",
            "/auth/v1/resend",
            "auth",
            "Mail a new code for a pending signup or address change; {} whatever the address",
        )
        .public()
        .body(typed_email(&["signup", "email_change"])),
        op(
            "post",
            "/auth/v1/recover",
            "auth",
            "Mail a password recovery code; {} whether or not the address has an account",
        )
        .public()
        .body(object(json!({"email": string()}), &["email"])),
        op(
            "put",
            "/auth/v1/user",
            "auth",
            "Change the password, merge user_metadata (data), or the address (confirmed by a code sent to it)",
        )
        .body(object(
            json!({"email": string(), "password": string(), "data": {"type": "object"}}),
            &[],
        )),
        op(
            "delete",
            "/auth/v1/admin/users/{id}",
            "auth",
            "Delete an account (service role key or an admin): address released, ledger kept, no second signup bonus",
        )
        .admin(),
    ]
}

//! The document entries of accounts' growth: invite codes, redeem codes, packages.

use serde_json::json;

use super::{object, op, string, Op};

fn code_body() -> serde_json::Value {
    object(json!({"code": string()}), &["code"])
}

fn package_body() -> serde_json::Value {
    let int = json!({"type": "integer"});
    object(
        json!({"name": string(), "type": {"enum": ["subscription", "one_time"]},
               "price_usd_cents": int, "credits": int, "first_sub_bonus": int,
               "is_popular": {"type": "boolean"}, "sort_order": int,
               "active": {"type": "boolean"}, "stripe_price_id": string(),
               "stripe_price_id_cny": string(), "stripe_price_id_hkd": string()}),
        &[],
    )
}

/// The operations of `http/growth.rs` and the package administration.
pub(super) fn operations() -> Vec<Op> {
    vec![
        op(
            "get",
            "/v1/admin/maintenance",
            "admin",
            "Maintenance mode: {enabled, message, updated_at, updated_by}",
        )
        .admin(),
        op(
            "post",
            "/v1/admin/maintenance",
            "admin",
            "Switch maintenance mode (new jobs, checkouts, signups get 503 MAINTENANCE)",
        )
        .admin()
        .body(object(
            json!({"enabled": {"type": "boolean"}, "message": string()}),
            &["enabled"],
        )),
        op(
            "get",
            "/v1/admin/job-health",
            "admin",
            "Job health over the last `hours` (1..168, default 24)",
        )
        .admin(),
        op(
            "get",
            "/v1/admin/mail-outbox",
            "admin",
            "The mail outbox: latest messages and their state",
        )
        .admin(),
        op(
            "post",
            "/v1/admin/mail/test",
            "admin",
            "Queue a test message",
        )
        .admin()
        .body(object(
            json!({"to": string(), "locale": {"enum": ["en", "zh"]}}),
            &["to"],
        )),
        op(
            "get",
            "/v1/invite",
            "growth",
            "The caller's invite code, invitees and rewards",
        ),
        op(
            "post",
            "/v1/invite/bind",
            "growth",
            "Bind an invite code (once, before paying)",
        )
        .body(code_body())
        .answers(object(
            json!({"success": {"const": true}, "inviter_user_id": string()}),
            &["success", "inviter_user_id"],
        )),
        op(
            "post",
            "/v1/redeem",
            "growth",
            "Claim a redeem code for purchased credits",
        )
        .body(code_body())
        .answers(object(
            json!({"success": {"const": true}, "claim_id": string(),
                       "credits": {"type": "integer"}, "available": {"type": "integer"}}),
            &["success", "claim_id", "credits"],
        )),
        op(
            "post",
            "/v1/admin/redeem-codes",
            "admin",
            "Create a redeem code",
        )
        .admin()
        .body(object(
            json!({"code": string(), "credit_amount": {"type": "integer", "minimum": 1},
                       "max_uses": {"type": "integer", "minimum": 1, "default": 1},
                       "expires_at": {"type": "string", "format": "date-time"},
                       "active": {"type": "boolean", "default": true}, "note": string()}),
            &["credit_amount"],
        )),
        op(
            "get",
            "/v1/admin/redeem-codes",
            "admin",
            "Redeem codes, newest first (limit)",
        )
        .admin(),
        op(
            "post",
            "/v1/admin/redeem-codes/{id}/deactivate",
            "admin",
            "Deactivate a redeem code (by id or code)",
        )
        .admin(),
        op(
            "get",
            "/v1/admin/invite-bindings",
            "admin",
            "Invite bindings and rewards (limit)",
        )
        .admin(),
        op(
            "get",
            "/v1/admin/packages",
            "admin",
            "Every package with its Stripe price ids",
        )
        .admin(),
        op("post", "/v1/admin/packages", "admin", "Add a package")
            .admin()
            .body(package_body()),
        op(
            "put",
            "/v1/admin/packages/{id}",
            "admin",
            "Change a package (fields given)",
        )
        .admin()
        .body(package_body()),
        op(
            "post",
            "/v1/admin/packages/reset-to-defaults",
            "admin",
            "Put the default package set on sale; deactivate the others",
        )
        .admin(),
    ]
}

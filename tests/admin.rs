//! Operator endpoints: credit corrections and the queue's state.

mod common;

use common::{json_with_status, spawn_app_with};
use serde_json::json;

/// Non-admins are refused; an admin's correction is idempotent and never overdraws.
#[tokio::test]
async fn admin_credit_adjustments() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.new_admin().await;
    let seller = app.new_user().await;
    let body = json!({"email": seller.email, "amount": 50, "reason": "goodwill",
                      "idempotency_key": "ticket-7"});

    let res = app
        .post_json("/v1/admin/credits", Some(&seller.access_token), &body)
        .await;
    common::assert_envelope(res, 403, "FORBIDDEN").await;
    let res = app.post_json("/v1/admin/credits", None, &body).await;
    common::assert_envelope(res, 401, "UNAUTHORIZED").await;

    let first = json_with_status(
        app.post_json("/v1/admin/credits", Some(&admin.access_token), &body)
            .await,
        200,
    )
    .await;
    assert_eq!(first["user_id"], seller.id);
    assert_eq!(first["entry"]["kind"], "adjust");
    assert_eq!(first["credits"]["available"], 80);
    let again = json_with_status(
        app.post_json("/v1/admin/credits", Some(&admin.access_token), &body)
            .await,
        200,
    )
    .await;
    assert_eq!(again["entry"]["id"], first["entry"]["id"]);
    assert_eq!(again["credits"]["available"], 80);

    let take = json!({"user_id": seller.id, "amount": -81, "reason": "chargeback",
                      "idempotency_key": "ticket-8"});
    let res = app
        .post_json("/v1/admin/credits", Some(&admin.access_token), &take)
        .await;
    let err = common::assert_envelope(res, 402, "INSUFFICIENT_CREDITS").await;
    assert_eq!(
        err["error"]["details"],
        json!({"required": 81, "available": 80})
    );
    let take = json!({"user_id": seller.id, "amount": -80, "reason": "chargeback",
                      "idempotency_key": "ticket-8"});
    let done = json_with_status(
        app.post_json("/v1/admin/credits", Some(&admin.access_token), &take)
            .await,
        200,
    )
    .await;
    assert_eq!(done["credits"]["available"], 0);

    for (bad, field) in [
        (
            json!({"email": "nobody@example.com", "amount": 5, "reason": "x", "idempotency_key": "k"}),
            None,
        ),
        (
            json!({"amount": 5, "reason": "x", "idempotency_key": "k"}),
            Some("user_id"),
        ),
        (
            json!({"user_id": seller.id, "amount": "5", "reason": "x", "idempotency_key": "k"}),
            Some("amount"),
        ),
        (
            json!({"user_id": seller.id, "amount": 0, "reason": "x", "idempotency_key": "k0"}),
            Some("amount"),
        ),
        (
            json!({"user_id": seller.id, "amount": 5, "reason": " ", "idempotency_key": "k"}),
            Some("reason"),
        ),
    ] {
        let res = app
            .post_json("/v1/admin/credits", Some(&admin.access_token), &bad)
            .await;
        match field {
            None => {
                common::assert_envelope(res, 404, "NOT_FOUND").await;
            }
            Some(field) => {
                let err = common::assert_envelope(res, 400, "BAD_REQUEST").await;
                assert_eq!(err["error"]["details"]["field"], field, "{bad}");
            }
        }
    }
    let me = json_with_status(app.get("/v1/me", Some(&seller.access_token)).await, 200).await;
    assert_eq!(me["credits"]["available"], 0);
    app.stop().await;
}

/// The queue view counts queued and running units and the oldest queued unit's age.
#[tokio::test]
async fn admin_queue_view() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 3_000;
        c.providers.local.concurrency = 1;
    })
    .await;
    let admin = app.new_admin().await;
    let seller = app.new_user().await;
    let res = app.get("/v1/admin/queue", Some(&seller.access_token)).await;
    common::assert_envelope(res, 403, "FORBIDDEN").await;
    let empty = json_with_status(
        app.get("/v1/admin/queue", Some(&admin.access_token)).await,
        200,
    )
    .await;
    assert_eq!(empty["depth"], 0);
    assert_eq!(empty["oldest_queued_age_ms"], json!(null));
    let body = json!({"model": "local", "prompt": "a box", "productImage": "https://example.com/a.png",
                      "imageCount": 3});
    json_with_status(
        app.post_json(
            "/functions/v1/generate-image",
            Some(&seller.access_token),
            &body,
        )
        .await,
        200,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let queue = json_with_status(
        app.get("/v1/admin/queue", Some(&admin.access_token)).await,
        200,
    )
    .await;
    assert_eq!(queue["running"], 1, "{queue}");
    assert_eq!(queue["depth"], 2, "{queue}");
    assert!(queue["oldest_queued_age_ms"].as_i64().unwrap() >= 200);
    assert_eq!(
        queue["providers"]["local"],
        json!({"in_flight": 1, "concurrency": 1})
    );
    app.stop().await;
}

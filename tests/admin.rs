//! Operator endpoints: credit corrections, users, jobs and retries, the queue's state.

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

/// Users are found by part of their email, with their credits; the admin job list shows
/// everyone's jobs with their owner, filtered by status.
#[tokio::test]
async fn admin_finds_users_and_jobs() {
    let app = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let admin = app.new_admin().await;
    let (a, b) = (app.new_user().await, app.new_user().await);
    let token = Some(admin.access_token.as_str());
    let at = a.email.find('@').unwrap();
    let part = a.email[at - 12..at].to_uppercase();
    let found = json_with_status(
        app.get(&format!("/v1/admin/users?query={part}"), token)
            .await,
        200,
    )
    .await;
    let users = found["users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "{found}");
    assert_eq!(users[0]["email"], a.email.as_str());
    assert_eq!(users[0]["credits"]["available"], 30);
    let wildcard = json_with_status(app.get("/v1/admin/users?query=%25", token).await, 200).await;
    assert_eq!(wildcard["users"], json!([]), "% is matched literally");
    let res = app.get("/v1/admin/users", Some(&a.access_token)).await;
    common::assert_envelope(res, 403, "FORBIDDEN").await;

    let body = json!({"model": "local", "prompt": "a box", "productImage": common::small_png()});
    for user in [&a, &b] {
        app.run_job(&user.access_token, "generate-image", &body)
            .await;
    }
    let list = json_with_status(app.get("/v1/admin/jobs?status=success", token).await, 200).await;
    let owners: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(owners, [b.id.as_str(), a.id.as_str()], "{list}");
    let none = json_with_status(app.get("/v1/admin/jobs?status=failed", token).await, 200).await;
    assert_eq!(none["jobs"], json!([]));
    app.stop().await;
}

/// Retry runs a finished job's failed units again as a new job of the same seller, held
/// and charged once; a second retry answers the same job; running jobs and jobs with
/// nothing failed are refused.
#[tokio::test]
async fn admin_retries_the_failed_units_of_a_job() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.fail_units = vec![1, 2];
        c.providers.local.fail_kind = "permanent".into();
    })
    .await;
    let admin = app.new_admin().await;
    let seller = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a box", "imageCount": 3,
                      "productImage": common::small_png()});
    let job = app
        .run_job(&seller.access_token, "generate-image", &body)
        .await;
    assert_eq!(job["error_code"], "BATCH_PARTIAL_FAILED", "{job}");
    assert_eq!(app.credits(&seller.access_token).await["available"], 29);

    let path = format!("/v1/admin/jobs/{}/retry", job["id"].as_str().unwrap());
    let res = app
        .post_json(&path, Some(&seller.access_token), &json!({}))
        .await;
    common::assert_envelope(res, 403, "FORBIDDEN").await;
    let retry = json_with_status(
        app.post_json(&path, Some(&admin.access_token), &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(retry["retry_of"], job["id"]);
    let again = json_with_status(
        app.post_json(&path, Some(&admin.access_token), &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(again["job_id"], retry["job_id"], "one retry job per job");
    let retried = app
        .wait_job(&seller.access_token, retry["job_id"].as_str().unwrap())
        .await;
    // The two units are units 0 and 1 of the new job: unit 1 fails again.
    assert_eq!(retried["units"]["total"], 2, "{retried}");
    assert_eq!(retried["units"]["succeeded"], 1, "{retried}");
    assert_eq!(retried["payload"]["retry_of"], job["id"]);
    assert_eq!(
        app.credits(&seller.access_token).await,
        json!({"subscription": 0, "purchased": 28, "held": 0, "debt": 0, "available": 28})
    );

    let done = json!({"model": "local", "prompt": "a box", "productImage": common::small_png()});
    let ok = app
        .run_job(&seller.access_token, "generate-image", &done)
        .await;
    let path = format!("/v1/admin/jobs/{}/retry", ok["id"].as_str().unwrap());
    let res = app
        .post_json(&path, Some(&admin.access_token), &json!({}))
        .await;
    common::assert_envelope(res, 409, "CONFLICT").await;
    let res = app
        .post_json(
            "/v1/admin/jobs/no-such-job/retry",
            Some(&admin.access_token),
            &json!({}),
        )
        .await;
    common::assert_envelope(res, 404, "NOT_FOUND").await;
    app.stop().await;
}

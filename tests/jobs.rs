//! The money-and-jobs core over HTTP with the offline `local` provider: holds, captures,
//! releases, retries, idempotency and concurrency, checked against the ledger.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use atelier::db::ledger;
use base64::Engine;
use common::{json_with_status, spawn_app_with, TestApp};
use serde_json::{json, Value};

/// A small real PNG as a data URI (the seller's product photo).
fn product_png() -> String {
    let img = image::RgbaImage::from_pixel(40, 30, image::Rgba([200, 30, 30, 255]));
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn image_body(count: i64, ratio: &str) -> Value {
    json!({"model": "local", "prompt": "a red box on white", "productImage": product_png(),
           "imageCount": count, "aspectRatio": ratio})
}

async fn wait_terminal(app: &TestApp, token: &str, job_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = json_with_status(
            app.get(&format!("/v1/jobs/{job_id}"), Some(token)).await,
            200,
        )
        .await;
        if job["status"] != "processing" {
            return job;
        }
        assert!(Instant::now() < deadline, "job never finished: {job}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Submits a generate-image body and returns the 200 ack.
async fn submit(app: &TestApp, token: &str, body: &Value) -> Value {
    json_with_status(
        app.post_json("/functions/v1/generate-image", Some(token), body)
            .await,
        200,
    )
    .await
}

/// `POST /v1/jobs/{id}/cancel` as `token`.
async fn cancel(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.post_json(&format!("/v1/jobs/{id}/cancel"), Some(token), &json!({}))
        .await
}

async fn credits(app: &TestApp, token: &str) -> Value {
    json_with_status(app.get("/v1/me", Some(token)).await, 200).await["credits"].clone()
}

/// Every account equals the sum of its ledger rows, and every job its tasks.
fn assert_audit_clean(app: &TestApp) {
    let db = &app.running.as_ref().unwrap().state.db;
    for (user, from_ledger, stored) in db.with_conn(ledger::recompute_all).unwrap() {
        assert_eq!(
            from_ledger, stored,
            "account {user} disagrees with its ledger"
        );
        assert!(stored.available() >= 0);
    }
    let problems = db.with_conn(atelier::db::jobs::audit_jobs).unwrap();
    assert!(problems.is_empty(), "job audit: {problems:?}");
}

/// Three units at 16:9 become three real 1024×576 PNGs; three credits captured.
#[tokio::test]
async fn image_job_produces_real_pngs_and_captures_each_unit() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    let ack = submit(&app, &user.access_token, &image_body(3, "16:9")).await;
    assert_eq!(ack["status"], "processing");
    let job = wait_terminal(&app, &user.access_token, ack["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["cost_amount"], 3);
    assert_eq!(job["held_amount"], 0);
    assert_eq!(job["units"]["succeeded"], 3);
    let images = job["result_data"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for img in images {
        let bytes = app
            .client
            .get(app.url(img["url"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(bytes.headers()["content-type"], "image/png");
        let decoded = image::load_from_memory(&bytes.bytes().await.unwrap()).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (1024, 576));
    }
    assert_eq!(
        credits(&app, &user.access_token).await,
        json!({"subscription": 0, "purchased": 27, "held": 0, "debt": 0, "available": 27})
    );
    let ledger = json_with_status(app.get("/v1/ledger", Some(&user.access_token)).await, 200).await;
    let kinds: Vec<&str> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["capture", "capture", "capture", "hold", "grant"]
    );
    assert_audit_clean(&app);
    app.stop().await;
}

/// 200 concurrent one-unit jobs against 30 credits: exactly 30 accepted, the rest 402.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_jobs_never_overspend() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        common::unlimited(c);
    })
    .await;
    let user = app.new_user().await;
    let body = image_body(1, "1:1");
    let mut handles = Vec::new();
    for _ in 0..200 {
        let (client, url, token, body) = (
            app.client.clone(),
            app.url("/functions/v1/generate-image"),
            user.access_token.clone(),
            body.clone(),
        );
        handles.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for h in handles {
        let (status, body) = h.await.unwrap();
        match status {
            200 => accepted += 1,
            402 => {
                refused += 1;
                assert_eq!(body["error"]["code"], "INSUFFICIENT_CREDITS");
                assert_eq!(body["error"]["details"]["required"], 1);
                assert_eq!(body["error"]["details"]["available"], 0);
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((accepted, refused), (30, 170));
    assert!(credits(&app, &user.access_token).await["available"] == 0);
    assert_audit_clean(&app);
    app.stop().await;
}

/// A provider that always fails retryably: three attempts, then failed and released.
#[tokio::test]
async fn retryable_failures_use_three_attempts_then_release() {
    let app = spawn_app_with(|c| {
        c.providers.local.fail_rate = 1.0;
        c.queue.backoff_base_ms = 10;
    })
    .await;
    let user = app.new_user().await;
    let ack = submit(&app, &user.access_token, &image_body(2, "1:1")).await;
    let job = wait_terminal(&app, &user.access_token, ack["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_code"], "UPSTREAM_ERROR");
    assert_eq!(job["cost_amount"], 0);
    for unit in job["result_data"]["units"].as_array().unwrap() {
        assert_eq!(unit["attempts"], 3, "{unit}");
    }
    assert_eq!(credits(&app, &user.access_token).await["available"], 30);
    assert_audit_clean(&app);
    app.stop().await;
}

/// A permanent failure is tried once.
#[tokio::test]
async fn permanent_failure_is_tried_once() {
    let app = spawn_app_with(|c| {
        c.providers.local.fail_rate = 1.0;
        c.providers.local.fail_kind = "permanent".into();
    })
    .await;
    let user = app.new_user().await;
    let ack = submit(&app, &user.access_token, &image_body(1, "1:1")).await;
    let job = wait_terminal(&app, &user.access_token, ack["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["result_data"]["units"][0]["attempts"], 1);
    assert_eq!(credits(&app, &user.access_token).await["held"], 0);
    assert_audit_clean(&app);
    app.stop().await;
}

/// The same client_job_id gives the same job and one hold; another body is a 409.
#[tokio::test]
async fn client_job_id_is_idempotent() {
    let app = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let user = app.new_user().await;
    let mut body = image_body(2, "1:1");
    body["client_job_id"] = json!("order-42");
    let first = submit(&app, &user.access_token, &body).await;
    let again = submit(&app, &user.access_token, &body).await;
    assert_eq!(first["job_id"], again["job_id"]);
    body["imageCount"] = json!(3);
    let res = app
        .post_json(
            "/functions/v1/generate-image",
            Some(&user.access_token),
            &body,
        )
        .await;
    common::assert_envelope(res, 409, "CONFLICT").await;
    let ledger = json_with_status(app.get("/v1/ledger", Some(&user.access_token)).await, 200).await;
    let holds = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "hold")
        .count();
    assert_eq!(holds, 1);
    wait_terminal(&app, &user.access_token, first["job_id"].as_str().unwrap()).await;
    assert_audit_clean(&app);
    app.stop().await;
}

/// Another user's job is a 404; a bad page limit is a 400.
#[tokio::test]
async fn jobs_are_private() {
    let app = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let (a, b) = (app.new_user().await, app.new_user().await);
    let ack = submit(&app, &a.access_token, &image_body(1, "1:1")).await;
    let res = app
        .get(
            &format!("/v1/jobs/{}", ack["job_id"].as_str().unwrap()),
            Some(&b.access_token),
        )
        .await;
    common::assert_envelope(res, 404, "NOT_FOUND").await;
    let res = app.get("/v1/jobs?limit=0", Some(&a.access_token)).await;
    common::assert_envelope(res, 400, "BAD_REQUEST").await;
    let list = json_with_status(app.get("/v1/jobs", Some(&b.access_token)).await, 200).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
    app.stop().await;
}

/// Five units, two of which always fail: the job succeeds with `BATCH_PARTIAL_FAILED`,
/// three units are captured and two released.
#[tokio::test]
async fn partly_failed_job_captures_only_its_successful_units() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.fail_units = vec![1, 3];
        c.providers.local.fail_kind = "permanent".into();
    })
    .await;
    let user = app.new_user().await;
    let ack = submit(&app, &user.access_token, &image_body(5, "1:1")).await;
    let job = wait_terminal(&app, &user.access_token, ack["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["error_code"], "BATCH_PARTIAL_FAILED");
    assert_eq!(job["cost_amount"], 3);
    assert_eq!(job["held_amount"], 0);
    assert_eq!(job["units"]["succeeded"], 3);
    assert_eq!(job["units"]["failed"], 2);
    let units = job["result_data"]["units"].as_array().unwrap();
    let failed: Vec<i64> = units
        .iter()
        .filter(|u| u["status"] == "failed")
        .map(|u| u["unit"].as_i64().unwrap())
        .collect();
    assert_eq!(failed, vec![1, 3]);
    assert_eq!(units[1]["error"]["code"], "UPSTREAM_ERROR");
    assert_eq!(job["result_data"]["images"].as_array().unwrap().len(), 3);
    let ledger = json_with_status(app.get("/v1/ledger", Some(&user.access_token)).await, 200).await;
    let count = |kind: &str| {
        ledger["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .count()
    };
    assert_eq!(
        (count("hold"), count("capture"), count("release")),
        (1, 3, 2)
    );
    assert_eq!(credits(&app, &user.access_token).await["available"], 27);
    assert_audit_clean(&app);
    app.stop().await;
}

/// Cancelling releases the queued units; a running unit finishes; cancelling a terminal
/// job is a 409.
#[tokio::test]
async fn cancel_releases_queued_units() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 400;
        c.providers.local.concurrency = 1;
    })
    .await;
    let user = app.new_user().await;
    let ack = submit(&app, &user.access_token, &image_body(4, "1:1")).await;
    let id = ack["job_id"].as_str().unwrap();
    let cancelled = json_with_status(cancel(&app, &user.access_token, id).await, 200).await;
    assert!(
        cancelled["units"]["cancelled"].as_u64().unwrap() >= 3,
        "{cancelled}"
    );
    let job = wait_terminal(&app, &user.access_token, id).await;
    let succeeded = job["units"]["succeeded"].as_i64().unwrap();
    assert!(succeeded <= 1, "{job}");
    assert_eq!(job["cost_amount"], succeeded);
    assert_eq!(job["held_amount"], 0);
    assert_eq!(
        credits(&app, &user.access_token).await["available"],
        30 - succeeded
    );
    let res = cancel(&app, &user.access_token, id).await;
    common::assert_envelope(res, 409, "CONFLICT").await;
    let other = app.new_user().await;
    let res = cancel(&app, &other.access_token, id).await;
    common::assert_envelope(res, 404, "NOT_FOUND").await;
    assert_audit_clean(&app);
    app.stop().await;
}

/// Per-type active job limit and per-minute creation limit answer 429 and change nothing.
#[tokio::test]
async fn job_limits_answer_429_and_hold_nothing() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 2_000;
        c.providers.local.concurrency = 1;
        c.limits.active_jobs_image_gen = 2;
        c.limits.job_creations_per_minute = 3;
    })
    .await;
    let user = app.new_user().await;
    let token = &user.access_token;
    submit(&app, token, &image_body(1, "1:1")).await;
    submit(&app, token, &image_body(1, "1:1")).await;
    let before = credits(&app, token).await;
    let res = app
        .post_json(
            "/functions/v1/generate-image",
            Some(token),
            &image_body(1, "1:1"),
        )
        .await;
    let body = common::assert_envelope(res, 429, "TOO_MANY_ACTIVE_JOBS").await;
    assert_eq!(body["error"]["details"], json!({"active": 2, "limit": 2}));
    assert_eq!(credits(&app, token).await, before);

    // Cancel both so that only the per-minute limit stands in the way.
    let list = json_with_status(app.get("/v1/jobs", Some(token)).await, 200).await;
    for job in list["jobs"].as_array().unwrap() {
        let id = job["id"].as_str().unwrap();
        cancel(&app, token, id).await;
        wait_terminal(&app, token, id).await;
    }
    submit(&app, token, &image_body(1, "1:1")).await;
    let before = credits(&app, token).await;
    let res = app
        .post_json(
            "/functions/v1/generate-image",
            Some(token),
            &image_body(1, "1:1"),
        )
        .await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let body = common::assert_envelope(res, 429, "RATE_LIMIT_EXCEEDED").await;
    assert_eq!(body["error"]["details"], json!({"count": 3, "limit": 3}));
    assert_eq!(credits(&app, token).await, before);
    let list = json_with_status(app.get("/v1/jobs", Some(token)).await, 200).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 3);
    app.stop().await;
}

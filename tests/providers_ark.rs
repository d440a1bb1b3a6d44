//! The Ark (Doubao Seedream) provider against a fake Ark image API: the documented
//! `images/generations` body with the exact size for ratio and tier, inline and URL
//! outputs, per-item and whole-request safety refusals, rate limits, unknown models.

mod common;

use std::time::Duration;

use common::fake_ark::{self as fake, FakeArk};
use common::fake_http::parse_data_uri;
use common::{
    assert_failed_and_released, first_unit_error, png_bytes, png_data_uri, provider_test_config,
    TestApp, TestUser,
};
use serde_json::{json, Value};

/// The app with Ark pointed at `fake`.
async fn app_with(fake: &FakeArk) -> TestApp {
    common::spawn_app_with(|c| {
        provider_test_config(c, 3);
        fake.configure(c);
    })
    .await
}

/// A one-unit Seedream 4.5 job.
fn image_body(ratio: &str, size: &str) -> Value {
    json!({"model": "volc-seedream-4.5", "prompt": "a sage mug on oak",
           "imageCount": 1, "aspectRatio": ratio, "imageSize": size,
           "productImage": png_data_uri(&png_bytes(40, 30, true))})
}

async fn run(app: &TestApp, user: &TestUser, body: &Value) -> Value {
    app.run_job(&user.access_token, "generate-image", body)
        .await
}

/// The request is Ark's documented body (model id, exact `WxH` for ratio and tier, the
/// product photo as a data URI, no watermark, base64 output); the JPEG is stored at
/// the size Ark made.
#[tokio::test]
async fn an_image_job_sends_the_documented_request_and_stores_the_jpeg() {
    let fake = FakeArk::start().await;
    let app = app_with(&fake).await;
    let user = app.new_user().await;
    let job = run(&app, &user, &image_body("16:9", "2K")).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["cost_amount"], 40, "{job}");
    let image = &job["result_data"]["images"][0];
    let url = image["url"].as_str().unwrap();
    assert!(url.ends_with(".jpg"), "{image}");
    // Ark made 2848×1600; the 2K edge is 2048, so the server scales it down as the
    // reference does (process-generation-job/index.ts L4612–4620).
    assert_eq!(app.image_size_as(url, "image/jpeg").await, (2048, 1151));
    assert_eq!(job["result_data"]["size_status"], "normalized_down");
    assert_eq!(
        job["result_data"]["actual_size"],
        json!({"w": 2848, "h": 1600})
    );

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].bearer(), Some(fake::KEY));
    let body = calls[0].body_json();
    assert_eq!(body["model"], fake::MODEL);
    assert_eq!(body["size"], "2848x1600");
    assert_eq!(body["response_format"], "b64_json");
    assert_eq!(body["watermark"], false);
    assert_eq!(body["sequential_image_generation"], "disabled");
    assert!(body["prompt"]
        .as_str()
        .unwrap()
        .contains("a sage mug on oak"));
    let images = body["image"].as_array().expect("image list");
    assert_eq!(images.len(), 1);
    let (mime, bytes) = parse_data_uri(images[0].as_str().unwrap());
    assert_eq!(
        (mime.as_str(), bytes),
        ("image/png", png_bytes(40, 30, true))
    );
    app.stop().await;
}

/// A `url` output is downloaded at once and stored (scaled to the requested edge).
#[tokio::test]
async fn a_url_output_is_downloaded_and_stored() {
    let fake = FakeArk::start().await;
    fake.push_url_image(2304, 1728);
    let app = app_with(&fake).await;
    let user = app.new_user().await;
    let job = run(&app, &user, &image_body("4:3", "2K")).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(fake.downloads().len(), 1);
    let url = job["result_data"]["images"][0]["url"].as_str().unwrap();
    assert!(
        !url.contains("X-Tos"),
        "served from Atelier's storage: {url}"
    );
    // Larger than the 2K edge: scaled down by the server as the reference does
    // (process-generation-job/index.ts L4612–4620), still a JPEG.
    assert_eq!(app.image_size_as(url, "image/jpeg").await, (2048, 1536));
    let data = &job["result_data"];
    assert_eq!(data["size_status"], "normalized_down", "{data}");
    assert_eq!(data["actual_size"], json!({"w": 2304, "h": 1728}));
    assert_eq!(data["delivered_size"], json!({"w": 2048, "h": 1536}));
    assert_eq!(data["normalized_by_server"], true);
    app.stop().await;
}

/// A sensitive-content refusal, whole-request or per item, is permanent.
#[tokio::test]
async fn sensitive_content_is_a_permanent_refusal() {
    for reply in [fake::output_sensitive(), fake::sensitive_item_reply()] {
        let fake = FakeArk::start().await;
        fake.push(reply);
        let app = app_with(&fake).await;
        let user = app.new_user().await;
        let job = run(&app, &user, &image_body("1:1", "2K")).await;
        assert_failed_and_released(
            &app,
            &user,
            &job,
            "PROMPT_BLOCKED_BY_PROVIDER_POLICY",
            (fake.calls().len(), 1),
        )
        .await;
        let error = &first_unit_error(&job);
        assert!(
            error["message"].as_str().unwrap().contains("safety filter"),
            "{error}"
        );
        assert_eq!(error["details"]["reason"], "content_rejected");
        app.stop().await;
    }
}

/// An RPM limit without `Retry-After` still waits Ark's minimum backoff, then succeeds.
#[tokio::test]
async fn a_rate_limit_is_retried_after_the_minimum_backoff() {
    let fake = FakeArk::start().await;
    fake.push(fake::rate_limited());
    let app = app_with(&fake).await;
    let user = app.new_user().await;
    let job = run(&app, &user, &image_body("1:1", "2K")).await;
    assert_eq!(job["status"], "success", "{job}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(1900));
    let kinds = app
        .ledger_kinds(&user.access_token, job["id"].as_str().unwrap())
        .await;
    assert_eq!(kinds, ["hold", "capture"]);
    app.stop().await;
}

/// `InvalidEndpointOrModel.NotFound` is `MODEL_UNAVAILABLE`; `InvalidParameter` is a
/// permanent error naming Ark's code.
#[tokio::test]
async fn unknown_models_and_bad_parameters_fail_permanently() {
    let fake = FakeArk::start().await;
    let app = app_with(&fake).await;
    let user = app.new_user().await;
    let body = common::with(
        &image_body("1:1", "2K"),
        json!({"model": "volc-seedream-5.0-lite"}),
    );
    let job = run(&app, &user, &body).await;
    assert_failed_and_released(
        &app,
        &user,
        &job,
        "MODEL_UNAVAILABLE",
        (fake.calls().len(), 1),
    )
    .await;
    app.stop().await;

    let fake = FakeArk::start().await;
    fake.push(fake::invalid_parameter());
    let app = app_with(&fake).await;
    let user = app.new_user().await;
    let job = run(&app, &user, &image_body("1:1", "2K")).await;
    assert_failed_and_released(
        &app,
        &user,
        &job,
        "UPSTREAM_REJECTED",
        (fake.calls().len(), 1),
    )
    .await;
    assert!(job.to_string().contains("InvalidParameter"), "{job}");
    app.stop().await;
}

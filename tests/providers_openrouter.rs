//! The OpenRouter provider against a fake that speaks OpenRouter's protocol: image jobs
//! (the exact request body, retries on 429 with `Retry-After`, permanent 400s, timeouts,
//! wrong-ratio outputs, moderation blocks, answers without an image, unknown models),
//! product analysis, and prompt streams relayed chunk by chunk, broken mid-way and
//! cancelled by the client.

mod common;

use std::time::{Duration, Instant};

use common::fake_http::{parse_data_uri, Gate, Reply};
use common::fake_openrouter::{self as fake, FakeOpenRouter};
use common::{
    assert_failed_and_released, first_unit_error, json_with_status, png_bytes, png_data_uri,
    provider_test_config, TestApp, TestUser,
};
use serde_json::{json, Value};

/// The app with OpenRouter pointed at `fake`, `attempts` attempts per unit.
async fn app_with(fake: &FakeOpenRouter, attempts: u32) -> TestApp {
    common::spawn_app_with(|c| {
        provider_test_config(c, attempts);
        fake.configure(c);
    })
    .await
}

/// A one-unit image job on Gemini 3.1 Flash through OpenRouter (30 credits).
fn image_body(ratio: &str, product: &str) -> Value {
    json!({"model": "or-gemini-3.1-flash", "prompt": "a sage mug on oak",
           "imageCount": 1, "aspectRatio": ratio, "imageSize": "1K", "productImage": product})
}

/// Runs an image job with `body` and returns the finished job.
async fn run_image(app: &TestApp, user: &TestUser, body: &Value) -> Value {
    app.run_job(&user.access_token, "generate-image", body)
        .await
}

/// A successful job: the image is stored at the requested edge, charged once, and the fake
/// saw exactly the request OpenRouter documents for image generation.
#[tokio::test]
async fn an_image_job_sends_the_documented_request_and_stores_the_image() {
    let fake = FakeOpenRouter::start().await;
    fake.push(fake::image_reply(1344, 768));
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let product = png_data_uri(&png_bytes(64, 48, true));
    let job = run_image(&app, &user, &image_body("16:9", &product)).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["cost_amount"], 30, "{job}");
    let image = &job["result_data"]["images"][0];
    // 1344×768 is over the 1K edge: delivered at 1024×585 as the reference does
    // (process-generation-job/index.ts L4612–4620).
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(1024), Some(585))
    );
    assert_eq!(job["result_data"]["size_status"], "normalized_down");
    assert_eq!(
        job["result_data"]["actual_size"],
        json!({"w": 1344, "h": 768})
    );
    assert_eq!(
        app.image_size(image["url"].as_str().unwrap()).await,
        (1024, 585)
    );

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.bearer(), Some(fake::KEY));
    assert_eq!(call.header("content-type"), Some("application/json"));
    let body = call.body_json();
    assert_eq!(body["model"], "google/gemini-3.1-flash-image-preview");
    assert_eq!(body["modalities"], json!(["image", "text"]));
    assert_eq!(
        body["image_config"],
        json!({"aspect_ratio": "16:9", "image_size": "1K"})
    );
    assert!(body.get("stream").is_none(), "{body}");
    let content = fake::user_message(body)["content"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(content[0]["type"], "text");
    assert!(content[0]["text"]
        .as_str()
        .unwrap()
        .contains("a sage mug on oak"));
    let urls = fake::image_urls(body);
    assert_eq!(urls.len(), 1, "{body}");
    let (mime, bytes) = parse_data_uri(&urls[0]);
    assert_eq!(mime, "image/png");
    assert_eq!(
        bytes,
        png_bytes(64, 48, true),
        "the product photo goes as sent"
    );
    assert_eq!(
        app.ledger_kinds(&user.access_token, job["id"].as_str().unwrap())
            .await,
        ["hold", "capture"]
    );
    app.stop().await;
}

/// A 429 with `Retry-After: 1` is retried after at least that long, then succeeds and
/// is charged once.
#[tokio::test]
async fn a_rate_limit_is_retried_after_retry_after_and_charged_once() {
    let fake = FakeOpenRouter::start().await;
    fake.push(fake::rate_limited(1));
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let job = run_image(&app, &user, &image_body("1:1", &common::small_png())).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["cost_amount"], 30);
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let waited = calls[1].at - calls[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    assert_eq!(
        calls[0].body_json(),
        calls[1].body_json(),
        "the same request again"
    );
    assert_eq!(
        app.ledger_kinds(&user.access_token, job["id"].as_str().unwrap())
            .await,
        ["hold", "capture"]
    );
    assert_eq!(app.credits(&user.access_token).await["available"], 970);
    let admin = app.new_admin().await;
    let queue = json_with_status(
        app.get("/v1/admin/queue", Some(&admin.access_token)).await,
        200,
    )
    .await;
    let counters = &queue["providers"]["openrouter"]["upstream"];
    assert_eq!(counters["requests"], 2, "{queue}");
    assert_eq!(counters["errors"]["retryable"], 1, "{queue}");
    assert_eq!(counters["errors"]["permanent"], 0, "{queue}");
    app.stop().await;
}

/// A 400 from the provider behind OpenRouter is permanent: one attempt, credits back.
#[tokio::test]
async fn a_bad_request_fails_after_one_attempt_and_releases_the_credits() {
    let fake = FakeOpenRouter::start().await;
    fake.push(fake::bad_request());
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let job = run_image(&app, &user, &image_body("1:1", &common::small_png())).await;
    // The reference's UPSTREAM_REJECTED (process-generation-job/index.ts L4106–4125).
    assert_failed_and_released(
        &app,
        &user,
        &job,
        "UPSTREAM_REJECTED",
        (fake.calls().len(), 1),
    )
    .await;
    let message = first_unit_error(&job)["message"].as_str().unwrap();
    assert!(message.contains("HTTP 400"), "{message}");
    app.stop().await;
}

/// An upstream slower than `image_timeout_secs` times out on every attempt and the unit
/// ends as `UPSTREAM_TIMEOUT`; the client gave up on each slow answer.
#[tokio::test]
async fn a_slow_upstream_ends_as_upstream_timeout() {
    let fake = FakeOpenRouter::start().await;
    fake.always(fake::image_reply(1024, 1024).delayed(Duration::from_secs(4)));
    let app = common::spawn_app_with(|c| {
        provider_test_config(c, 2);
        fake.configure(c);
        c.providers.openrouter.image_timeout_secs = 1;
    })
    .await;
    let user = app.new_user().await;
    let started = Instant::now();
    let job = run_image(&app, &user, &image_body("1:1", &common::small_png())).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_failed_and_released(
        &app,
        &user,
        &job,
        "UPSTREAM_TIMEOUT",
        (fake.calls().len(), 2),
    )
    .await;
    fake.server
        .wait_client_gone(1, Duration::from_secs(2))
        .await;
    app.stop().await;
}

/// An image at another ratio than asked for fails with `MODEL_RATIO_UNSUPPORTED`.
#[tokio::test]
async fn a_wrong_ratio_output_fails_with_model_ratio_unsupported() {
    let fake = FakeOpenRouter::start().await;
    fake.always(fake::image_reply(1024, 1024));
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let job = run_image(&app, &user, &image_body("16:9", &common::small_png())).await;
    assert_failed_and_released(
        &app,
        &user,
        &job,
        "MODEL_RATIO_UNSUPPORTED",
        (fake.calls().len(), 1),
    )
    .await;
    app.stop().await;
}

/// A moderation refusal is permanent and says why.
#[tokio::test]
async fn a_moderation_block_is_permanent_with_a_clear_message() {
    let fake = FakeOpenRouter::start().await;
    fake.push(fake::moderation_block());
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let job = run_image(&app, &user, &image_body("1:1", &common::small_png())).await;
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
    assert_eq!(error["details"]["reason"], "content_rejected", "{error}");
    app.stop().await;
}

/// A 200 without an image is tried once more, then fails, even with attempts left.
#[tokio::test]
async fn an_answer_without_an_image_is_retried_once_then_fails() {
    let fake = FakeOpenRouter::start().await;
    fake.always(fake::no_image_reply());
    let app = app_with(&fake, 4).await;
    let user = app.new_user().await;
    let job = run_image(&app, &user, &image_body("1:1", &common::small_png())).await;
    assert_failed_and_released(&app, &user, &job, "UPSTREAM_ERROR", (fake.calls().len(), 2)).await;
    let message = first_unit_error(&job)["message"].as_str().unwrap();
    assert!(message.contains("no image"), "{message}");
    app.stop().await;
}

/// A model OpenRouter does not know fails with `MODEL_UNAVAILABLE`; a wrong key is a
/// permanent failure that never shows the key.
#[tokio::test]
async fn unknown_models_and_wrong_keys_fail_permanently() {
    let fake = FakeOpenRouter::start().await;
    fake.push(fake::unknown_model());
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let job = run_image(&app, &user, &image_body("1:1", &common::small_png())).await;
    assert_failed_and_released(
        &app,
        &user,
        &job,
        "MODEL_UNAVAILABLE",
        (fake.calls().len(), 1),
    )
    .await;
    app.stop().await;

    let wrong_key = "sk-or-v1-wrong-9a8b7c";
    let fake = FakeOpenRouter::start().await;
    let app = common::spawn_app_with(|c| {
        provider_test_config(c, 3);
        fake.configure(c);
        c.providers.openrouter.api_key = wrong_key.into();
    })
    .await;
    let user = app.new_user().await;
    let job = run_image(&app, &user, &image_body("1:1", &common::small_png())).await;
    assert_failed_and_released(
        &app,
        &user,
        &job,
        "UPSTREAM_REJECTED",
        (fake.calls().len(), 1),
    )
    .await;
    assert_eq!(fake.calls()[0].bearer(), Some(wrong_key));
    assert!(!job.to_string().contains(wrong_key), "{job}");
    app.stop().await;
}

/// Product analysis asks for a JSON object with the photo attached and returns it.
#[tokio::test]
async fn product_analysis_asks_for_json_and_returns_the_object() {
    let fake = FakeOpenRouter::start().await;
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let body = json!({"productImage": common::small_png(), "requirements": "a mug",
                      "imageCount": 2, "outputLanguage": "en"});
    let job = app
        .run_job(&user.access_token, "analyze-product-v2", &body)
        .await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["result_data"]["product_name"], "Stoneware mug", "{job}");
    let call = &fake.calls()[0];
    let sent = call.body_json();
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    assert_eq!(sent["provider"], json!({"require_parameters": true}));
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(fake::image_urls(sent).len(), 1);
    app.stop().await;
}

/// Analysis JSON for prompt writing.
fn prompt_body() -> Value {
    json!({"analysisJson": fake::analysis_json(), "imageCount": 2, "outputLanguage": "en"})
}

/// Reads from `res` until the text read so far contains `needle` (5 s at most).
async fn read_until(res: &mut reqwest::Response, text: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("{needle:?} never came; so far: {text:?}"))
            .expect("readable")
            .unwrap_or_else(|| panic!("stream ended before {needle:?}: {text:?}"));
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
}

/// Each chunk reaches the client while the upstream is still streaming: the first text
/// arrives before the fake lets the second one go.
#[tokio::test]
async fn a_prompt_stream_is_relayed_chunk_by_chunk() {
    let fake = FakeOpenRouter::start().await;
    let gate = Gate::new();
    fake.push(
        Reply::event_stream()
            .write(fake::PROCESSING)
            .write(fake::chunk(
                r#"[{"prompt": "Prompt one: mug on linen.", "title": "A"}, "#,
            ))
            .wait(&gate)
            .write_split(
                fake::chunk(r#"{"prompt": "Prompt two: mug in steam."}]"#),
                30,
            )
            .write(fake::finish())
            .write(fake::DONE),
    );
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let mut res = app
        .call("generate-prompts-v2", &user.access_token, &prompt_body())
        .await;
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    read_until(&mut res, &mut text, "mug on linen").await;
    assert!(!gate.is_open());
    assert!(!text.contains("Prompt two"), "{text}");
    gate.open();
    read_until(&mut res, &mut text, "data: [DONE]").await;
    // The last frame's fullText is the whole array of prompt objects.
    let last = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|f| *f != "[DONE]")
        .last()
        .expect("a frame");
    let last: Value = serde_json::from_str(last).expect("JSON frame");
    let prompts: Vec<Value> = serde_json::from_str(last["fullText"].as_str().unwrap()).unwrap();
    assert_eq!(prompts.len(), 2, "{text}");
    assert_eq!(prompts[1]["prompt"], "Prompt two: mug in steam.");
    let sent = fake.calls()[0].body_json().clone();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["model"], "google/gemini-3.1-flash-image-preview");
    assert!(fake::all_text(&sent).contains("Stoneware mug"), "{sent}");
    app.stop().await;
}

/// A stream that breaks after its first chunk: the client gets that text, an error
/// event and `[DONE]`.
#[tokio::test]
async fn a_stream_breaking_midway_ends_with_an_error_event() {
    let fake = FakeOpenRouter::start().await;
    fake.push(
        Reply::event_stream()
            .write(fake::chunk(r#"[{"prompt": "Prompt one."}, "#))
            .pause(Duration::from_millis(50))
            .drop_connection(),
    );
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let mut res = app
        .call("generate-prompts-v2", &user.access_token, &prompt_body())
        .await;
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    read_until(&mut res, &mut text, "data: [DONE]").await;
    assert!(text.contains("Prompt one."), "{text}");
    assert!(text.contains("PROMPT_STREAM_FAILED"), "{text}");
    app.stop().await;
}

/// A mid-stream `error` event from OpenRouter ends the relay the same way.
#[tokio::test]
async fn an_error_event_in_the_stream_ends_the_relay() {
    let fake = FakeOpenRouter::start().await;
    fake.push(
        Reply::event_stream()
            .write(fake::chunk("Prompt one. "))
            .write(fake::stream_error()),
    );
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let mut res = app
        .call("generate-prompts-v2", &user.access_token, &prompt_body())
        .await;
    let mut text = String::new();
    read_until(&mut res, &mut text, "data: [DONE]").await;
    assert!(text.contains("PROMPT_STREAM_FAILED"), "{text}");
    assert!(text.contains("Provider disconnected"), "{text}");
    app.stop().await;
}

/// A stream refused before its first byte (a 429): the empty first frame has gone out
/// (as in the reference, generate-prompts-v2/index.ts L1425), so the refusal is the
/// error frame `{fullText, error, code}` and `[DONE]` (L1533).
#[tokio::test]
async fn a_stream_refused_upfront_ends_with_the_error_frame() {
    let fake = FakeOpenRouter::start().await;
    fake.push(fake::rate_limited(5));
    let app = app_with(&fake, 3).await;
    let user = app.new_user().await;
    let mut res = app
        .call("generate-prompts-v2", &user.access_token, &prompt_body())
        .await;
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    read_until(&mut res, &mut text, "data: [DONE]").await;
    let frames: Vec<&str> = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .collect();
    assert_eq!(frames.len(), 3, "{text}");
    let error: Value = serde_json::from_str(frames[1]).expect("JSON frame");
    assert_eq!(error["code"], "PROMPT_STREAM_FAILED", "{error}");
    assert!(error["error"].is_string(), "{error}");
    app.stop().await;
}

/// When the client leaves, the upstream connection is dropped within a second, even
/// while the upstream only sends keep-alive comments.
#[tokio::test]
async fn a_client_leaving_stops_the_upstream_read_within_a_second() {
    let fake = FakeOpenRouter::start().await;
    fake.push(fake::keep_alive(
        Reply::event_stream().write(fake::chunk(r#"[{"prompt": "Prompt one."}, "#)),
        Duration::from_millis(200),
        Duration::from_secs(20),
    ));
    let app = app_with(&fake, 3).await;
    let (user, admin) = (app.new_user().await, app.new_admin().await);
    let mut res = app
        .call("generate-prompts-v2", &user.access_token, &prompt_body())
        .await;
    let mut text = String::new();
    read_until(&mut res, &mut text, "Prompt one.").await;
    drop(res);
    let left = Instant::now();
    let gone = fake
        .server
        .wait_client_gone(0, Duration::from_secs(3))
        .await;
    let after = gone.saturating_duration_since(left);
    assert!(
        after < Duration::from_millis(1500),
        "upstream dropped after {after:?}"
    );
    let queue = json_with_status(
        app.get("/v1/admin/queue", Some(&admin.access_token)).await,
        200,
    )
    .await;
    assert_eq!(queue["prompt_streams"], 0, "{queue}");
    app.stop().await;
}

//! The Gemini provider against a fake Gemini API: the documented `generateContent` body
//! and `x-goog-api-key` auth, thinking models' interim images, `RetryInfo` on 429, safety
//! outcomes, a wrong key, and `alt=sse` prompt streams.

mod common;

use std::time::Duration;

use common::fake_gemini::{self as fake, FakeGemini};
use common::fake_http::{unb64, Gate, Reply};
use common::{
    assert_failed_and_released, first_unit_error, png_bytes, png_data_uri, provider_test_config,
    TestApp, TestUser,
};
use serde_json::{json, Value};

/// The app with Gemini pointed at `fake`; `ta-*` models are admin-only, so the tests
/// run as an admin.
async fn app_with(fake: &FakeGemini, tweak: impl FnOnce(&mut atelier::config::Config)) -> TestApp {
    common::spawn_app_with(|c| {
        provider_test_config(c, 3);
        fake.configure(c);
        tweak(c);
    })
    .await
}

/// A one-unit image job on Gemini 3.1 Flash Image, direct (30 credits).
fn image_body(ratio: &str) -> Value {
    json!({"model": "ta-gemini-3.1-flash", "prompt": "a sage mug on oak",
           "imageCount": 1, "aspectRatio": ratio, "imageSize": "1K",
           "productImage": png_data_uri(&png_bytes(40, 30, true))})
}

/// An admin with the signup bonus (admins start like sellers).
async fn admin(app: &TestApp) -> TestUser {
    app.new_admin().await
}

/// The request follows the Gemini API reference (path, key header, camelCase config,
/// inline image), and the final image is kept, not the interim "thought" one.
#[tokio::test]
async fn an_image_job_sends_the_documented_request_and_keeps_the_final_image() {
    let fake = FakeGemini::start().await;
    fake.push(fake::thought_then_image_reply((256, 256), (896, 1120)));
    let app = app_with(&fake, |_| {}).await;
    let user = admin(&app).await;
    let before = app.credits(&user.access_token).await["available"]
        .as_i64()
        .unwrap();
    let job = app
        .run_job(&user.access_token, "generate-image", &image_body("4:5"))
        .await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["cost_amount"], 30);
    let image = &job["result_data"]["images"][0];
    // 896×1120 is over the 1K edge: scaled to 819×1024 (reference L4612–4620).
    assert_eq!(
        app.image_size(image["url"].as_str().unwrap()).await,
        (819, 1024)
    );
    assert_eq!(
        job["result_data"]["actual_size"],
        json!({"w": 896, "h": 1120})
    );
    assert_eq!(
        app.credits(&user.access_token).await["available"],
        before - 30
    );

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        call.target,
        "/v1beta/models/gemini-3.1-flash-image-preview:generateContent"
    );
    assert_eq!(call.header("x-goog-api-key"), Some(fake::KEY));
    assert_eq!(
        call.header("authorization"),
        None,
        "the key goes in one header only"
    );
    let body = call.body_json();
    assert_eq!(
        body["generationConfig"],
        json!({"responseModalities": ["TEXT", "IMAGE"],
               "imageConfig": {"aspectRatio": "4:5", "imageSize": "1K"}})
    );
    assert!(fake::all_text(body).contains("a sage mug on oak"), "{body}");
    let images = fake::inline_images(body);
    assert_eq!(images.len(), 1, "{body}");
    assert_eq!(images[0]["mimeType"], "image/png");
    assert_eq!(
        unb64(images[0]["data"].as_str().unwrap()),
        png_bytes(40, 30, true)
    );
    app.stop().await;
}

/// 2.5 Flash Image takes no `imageSize`.
#[tokio::test]
async fn flash_2_5_gets_no_image_size() {
    let fake = FakeGemini::start().await;
    let app = app_with(&fake, |_| {}).await;
    let user = admin(&app).await;
    let body = common::with(&image_body("1:1"), json!({"model": "ta-gemini-2.5-flash"}));
    let job = app
        .run_job(&user.access_token, "generate-image", &body)
        .await;
    assert_eq!(job["status"], "success", "{job}");
    let sent = fake.calls()[0].body_json().clone();
    assert_eq!(
        sent["generationConfig"]["imageConfig"],
        json!({"aspectRatio": "1:1"})
    );
    app.stop().await;
}

/// A 429 with `RetryInfo.retryDelay` (and no `Retry-After`) waits that long, then
/// succeeds, charged once.
#[tokio::test]
async fn resource_exhausted_waits_for_retry_delay_and_charges_once() {
    let fake = FakeGemini::start().await;
    fake.push(fake::resource_exhausted("1.2s"));
    let app = app_with(&fake, |_| {}).await;
    let user = admin(&app).await;
    let job = app
        .run_job(&user.access_token, "generate-image", &image_body("1:1"))
        .await;
    assert_eq!(job["status"], "success", "{job}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let waited = calls[1].at - calls[0].at;
    assert!(
        waited >= Duration::from_millis(1150),
        "retried after {waited:?}"
    );
    let kinds = app
        .ledger_kinds(&user.access_token, job["id"].as_str().unwrap())
        .await;
    assert_eq!(kinds, ["hold", "capture"]);
    app.stop().await;
}

/// `IMAGE_SAFETY` and a blocked prompt are permanent refusals with a clear message;
/// `INVALID_ARGUMENT` is permanent too.
#[tokio::test]
async fn safety_outcomes_and_bad_requests_fail_at_once() {
    for (reply, reason) in [
        (
            fake::finished_without_content("IMAGE_SAFETY"),
            Some("IMAGE_SAFETY"),
        ),
        (
            fake::prompt_blocked("PROHIBITED_CONTENT"),
            Some("PROHIBITED_CONTENT"),
        ),
        (fake::invalid_argument(), None),
    ] {
        let fake = FakeGemini::start().await;
        fake.push(reply);
        let app = app_with(&fake, |_| {}).await;
        let user = admin(&app).await;
        let job = app
            .run_job(&user.access_token, "generate-image", &image_body("1:1"))
            .await;
        // A safety block is the reference's PROMPT_BLOCKED_BY_PROVIDER_POLICY, a 400 its
        // UPSTREAM_REJECTED (process-generation-job/index.ts L4125, L7317).
        let code = if reason.is_some() {
            "PROMPT_BLOCKED_BY_PROVIDER_POLICY"
        } else {
            "UPSTREAM_REJECTED"
        };
        assert_failed_and_released(&app, &user, &job, code, (fake.calls().len(), 1)).await;
        let error = &first_unit_error(&job);
        let message = error["message"].as_str().unwrap();
        match reason {
            Some(reason) => {
                assert!(
                    message.contains("safety filter") && message.contains(reason),
                    "{error}"
                );
                assert_eq!(error["details"]["reason"], "content_rejected", "{error}");
            }
            None => assert!(message.contains("Unable to process input image"), "{error}"),
        }
        app.stop().await;
    }
}

/// `NO_IMAGE` is retried once, then fails.
#[tokio::test]
async fn no_image_is_retried_once() {
    let fake = FakeGemini::start().await;
    fake.always(fake::finished_without_content("NO_IMAGE"));
    let app = app_with(&fake, |_| {}).await;
    let user = admin(&app).await;
    let job = app
        .run_job(&user.access_token, "generate-image", &image_body("1:1"))
        .await;
    assert_failed_and_released(&app, &user, &job, "UPSTREAM_ERROR", (fake.calls().len(), 2)).await;
    app.stop().await;
}

/// A wrong key is a permanent failure that names the setting, not the key; an unknown
/// model is `MODEL_UNAVAILABLE`.
#[tokio::test]
async fn a_wrong_key_and_an_unknown_model_fail_permanently() {
    let fake = FakeGemini::start().await;
    let app = app_with(&fake, |c| {
        c.providers.gemini.api_key = "AIza-wrong-key".into()
    })
    .await;
    let user = admin(&app).await;
    let job = app
        .run_job(&user.access_token, "generate-image", &image_body("1:1"))
        .await;
    assert_failed_and_released(
        &app,
        &user,
        &job,
        "UPSTREAM_REJECTED",
        (fake.calls().len(), 1),
    )
    .await;
    assert!(
        job.to_string().contains("providers.gemini.api_key"),
        "{job}"
    );
    assert!(!job.to_string().contains("AIza-wrong-key"), "{job}");
    app.stop().await;

    let fake = FakeGemini::start().await;
    let app = app_with(&fake, |c| {
        let model = c
            .models
            .iter_mut()
            .find(|m| m.id == "ta-gemini-3-pro")
            .expect("catalog entry");
        model.upstream_model = "gemini-9-image".into();
    })
    .await;
    let user = admin(&app).await;
    let body = common::with(&image_body("1:1"), json!({"model": "ta-gemini-3-pro"}));
    let job = app
        .run_job(&user.access_token, "generate-image", &body)
        .await;
    assert_failed_and_released(
        &app,
        &user,
        &job,
        "MODEL_UNAVAILABLE",
        (fake.calls().len(), 1),
    )
    .await;
    app.stop().await;
}

/// Prompt writing with a Gemini model streams `alt=sse` chunks through as they come.
#[tokio::test]
async fn a_prompt_stream_uses_alt_sse_and_is_relayed_as_it_arrives() {
    let fake = FakeGemini::start().await;
    let gate = Gate::new();
    fake.push(
        Reply::event_stream()
            .write(fake::text_chunk(
                r#"[{"prompt": "Prompt one: mug on linen."}, "#,
            ))
            .wait(&gate)
            .write_split(
                fake::last_chunk(r#"{"prompt": "Prompt two: mug in steam."}]"#),
                25,
            ),
    );
    let app = app_with(&fake, |c| {
        c.generation.prompt_model = Some("ta-gemini-3.1-flash".into());
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"analysisJson": {"product_name": "Stoneware mug"}, "imageCount": 2});
    let mut res = app
        .call("generate-prompts-v2", &user.access_token, &body)
        .await;
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    while !text.contains("mug on linen") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk())
            .await
            .expect("the first chunk comes before the gate opens")
            .expect("readable")
            .expect("open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    gate.open();
    while !text.contains("data: [DONE]") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk())
            .await
            .expect("the rest")
            .expect("readable")
            .unwrap_or_else(|| panic!("ended early: {text}"));
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("Prompt two: mug in steam."), "{text}");
    assert!(!text.contains("PROMPT_STREAM_FAILED"), "{text}");
    let call = &fake.calls()[0];
    assert_eq!(
        call.target,
        "/v1beta/models/gemini-3.1-flash-image-preview:streamGenerateContent?alt=sse"
    );
    assert!(fake::all_text(call.body_json()).contains("Stoneware mug"));
    app.stop().await;
}

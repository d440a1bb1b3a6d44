//! The generation functions end to end with the offline `local` provider: the public
//! model catalog, image jobs with real PNGs, the three style-replicate modes (with a
//! partial failure), prompt streaming over SSE (failures and client disconnects), product
//! analysis and style dimensions.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{json_with_status, small_png, spawn_app_with, TestApp, TestUser};
use reqwest::Response;
use serde_json::{json, Value};

/// Ratios every `local` size offers.
const LOCAL_RATIOS: [&str; 10] = [
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
];

/// An expected catalog entry: id, provider, sizes, credits per unit at every size (if the
/// contract fixes it), admin-only.
type CatalogRow = (
    &'static str,
    &'static str,
    &'static [&'static str],
    Option<i64>,
    bool,
);

/// Asserts a finished job's `result_data.images`: `count` images, one per unit, each
/// `width`×`height` as listed and as downloaded. Returns the images.
async fn assert_images(app: &TestApp, job: &Value, count: usize, size: (u32, u32)) -> Vec<Value> {
    let images = job["result_data"]["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images: {job}"))
        .clone();
    assert_eq!(images.len(), count, "{job}");
    let units: BTreeSet<i64> = images.iter().map(|i| i["unit"].as_i64().unwrap()).collect();
    assert_eq!(units.len(), count, "one image per unit: {job}");
    for img in &images {
        let listed = (
            img["width"].as_u64().unwrap(),
            img["height"].as_u64().unwrap(),
        );
        assert_eq!(listed, (u64::from(size.0), u64::from(size.1)), "{img}");
        let url = img["url"].as_str().expect("url");
        assert_eq!(app.image_size(url).await, size, "{url}");
    }
    assert_eq!(job["result_url"], images[0]["url"]);
    images
}

/// Asserts a job finished successfully with `units` units and `cost` credits captured.
fn assert_success(job: &Value, units: i64, cost: i64) {
    assert_eq!(job["status"], "success", "{job}");
    assert!(job["error_code"].is_null(), "{job}");
    assert_eq!(job["units"]["total"], units, "{job}");
    assert_eq!(job["units"]["succeeded"], units, "{job}");
    assert_eq!(job["cost_amount"], cost, "{job}");
    assert_eq!(job["held_amount"], 0, "{job}");
}

/// Runs a job to its end and returns it.
async fn run_job(app: &TestApp, user: &TestUser, function: &str, body: &Value) -> Value {
    let id = app.start_job(function, &user.access_token, body).await;
    app.wait_job(&user.access_token, &id).await
}

/// Asserts the caller's purchased credits (no subscription) and that nothing is held.
async fn assert_credits(app: &TestApp, user: &TestUser, available: i64) {
    assert_eq!(
        app.credits(&user.access_token).await,
        json!({"subscription": 0, "purchased": available, "held": 0, "debt": 0, "available": available})
    );
}

/// The catalog's defaults: prices, sizes, providers, who may use what, and that only
/// `local` is available without provider keys.
#[tokio::test]
async fn public_config_lists_the_model_catalog() {
    let app = spawn_app_with(|_| {}).await;
    let get = json_with_status(app.get("/functions/v1/get-public-config", None).await, 200).await;
    let post = json_with_status(
        app.post_json("/functions/v1/get-public-config", None, &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(get["models"], post["models"]);
    assert_eq!(get["signup_bonus_credits"], 30);
    assert_eq!(get["billing_mode"], "simulated");
    let models = get["models"].as_array().expect("models");
    let one_k = ["1K"].as_slice();
    let all = ["1K", "2K", "4K"].as_slice();
    let expected: [CatalogRow; 9] = [
        ("or-gemini-2.5-flash", "openrouter", one_k, Some(15), false),
        ("or-gemini-3.1-flash", "openrouter", one_k, Some(30), false),
        ("or-gemini-3-pro", "openrouter", one_k, Some(50), false),
        ("ta-gemini-2.5-flash", "gemini", one_k, Some(15), true),
        ("ta-gemini-3.1-flash", "gemini", one_k, Some(30), true),
        ("ta-gemini-3-pro", "gemini", one_k, Some(50), true),
        ("volc-seedream-4.5", "ark", all, None, false),
        ("volc-seedream-5.0-lite", "ark", all, None, false),
        ("local", "local", all, Some(1), false),
    ];
    let ids: BTreeSet<&str> = models.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected.iter().map(|e| e.0).collect());
    for (id, provider, sizes, cost, admin_only) in expected {
        let m = models.iter().find(|m| m["id"] == id).unwrap();
        assert!(m["label"].as_str().is_some_and(|l| !l.is_empty()), "{m}");
        assert_eq!(m["provider"], provider, "{m}");
        assert_eq!(m["sizes"], json!(sizes), "{m}");
        assert!(sizes.iter().any(|s| m["default_size"] == *s), "{m}");
        assert_eq!(m["admin_only"], admin_only, "{m}");
        assert_eq!(m["available"], id == "local", "{m}");
        let ratios = m["aspect_ratios"].as_array().expect("aspect_ratios");
        assert!(
            ratios.iter().all(Value::is_string) && !ratios.is_empty(),
            "{m}"
        );
        let costs = m["costs"].as_object().expect("costs");
        let priced: Vec<&str> = costs.keys().map(String::as_str).collect();
        assert_eq!(
            priced.iter().collect::<BTreeSet<_>>(),
            sizes.iter().collect()
        );
        for size in sizes {
            let credits = costs[*size].as_i64().expect("integer credits");
            assert!(credits > 0, "{m}");
            if let Some(cost) = cost {
                assert_eq!(credits, cost, "{id} at {size}");
            }
        }
    }
    let local = models.iter().find(|m| m["id"] == "local").unwrap();
    assert_eq!(local["default_size"], "1K");
    assert_eq!(local["aspect_ratios"], json!(LOCAL_RATIOS));
    app.stop().await;
}

/// Three units at 16:9 become three real 1024×576 PNGs; a turbo unit at 2K 9:16 is a
/// 1152×2048 PNG and costs 2.
#[tokio::test]
async fn generate_image_returns_real_pngs_at_the_requested_ratio() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a red box on white",
                      "productImage": small_png(), "imageCount": 3, "aspectRatio": "16:9"});
    let job = run_job(&app, &user, "generate-image", &body).await;
    assert_eq!(job["type"], "IMAGE_GEN");
    assert_success(&job, 3, 3);
    assert_images(&app, &job, 3, (1024, 576)).await;
    assert_credits(&app, &user, 27).await;

    let turbo = json!({"model": "local", "prompt": "a red box on white",
                       "productImages": [small_png()], "aspectRatio": "9:16",
                       "imageSize": "2K", "turboEnabled": true});
    let job = run_job(&app, &user, "generate-image", &turbo).await;
    assert_success(&job, 1, 2);
    assert_images(&app, &job, 1, (1152, 2048)).await;
    assert_credits(&app, &user, 25).await;
    app.stop().await;
}

/// A product photo URL that points at a private address is refused by the SSRF guard;
/// the unit fails with `IMAGE_INPUT_SOURCE_MISSING` and the reason as its own field, and
/// its credit is released.
#[tokio::test]
async fn a_refused_image_url_fails_the_unit_with_its_reason() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a red box",
                      "productImage": "http://10.0.0.7/product.png"});
    let job = run_job(&app, &user, "generate-image", &body).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_code"], "IMAGE_INPUT_SOURCE_MISSING", "{job}");
    let error = &job["result_data"]["units"][0]["error"];
    assert_eq!(error["code"], "IMAGE_INPUT_SOURCE_MISSING", "{job}");
    assert_eq!(error["details"]["reason"], "address_blocked", "{job}");
    assert!(
        !error["message"].as_str().unwrap_or("").contains("reason:"),
        "{job}"
    );
    assert_eq!(
        job["result_data"]["units"][0].get("error_details"),
        None,
        "{job}"
    );
    assert_credits(&app, &user, 30).await;
    app.stop().await;
}

/// Single mode: 2 products × 2 images = 4 units, at the default 2K.
#[tokio::test]
async fn single_mode_runs_products_times_image_count() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "referenceImage": small_png(),
                      "productImages": [small_png(), small_png()], "imageCount": 2,
                      "aspectRatio": "4:3"});
    let job = run_job(&app, &user, "analyze-single", &body).await;
    assert_eq!(job["type"], "STYLE_REPLICATE");
    assert_success(&job, 4, 4);
    assert_images(&app, &job, 4, (2048, 1536)).await;
    assert_credits(&app, &user, 26).await;
    app.stop().await;
}

/// Batch mode: 3 references × 2 groups = 6 units.
#[tokio::test]
async fn batch_mode_runs_references_times_groups() {
    let app = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let user = app.new_user().await;
    let body = json!({"mode": "batch", "model": "local", "productImage": small_png(),
                      "referenceImages": vec![small_png(); 3], "groupCount": 2});
    let job = run_job(&app, &user, "analyze-single", &body).await;
    assert_eq!(job["type"], "STYLE_REPLICATE");
    assert_success(&job, 6, 6);
    assert_images(&app, &job, 6, (16, 16)).await;
    assert_credits(&app, &user, 24).await;
    app.stop().await;
}

/// Refinement of four stored photos, one of which always fails: the job succeeds with
/// `BATCH_PARTIAL_FAILED`, three units are charged, and each unit says where its prompt
/// came from.
#[tokio::test]
async fn refinement_with_one_failing_image_is_a_partial_success() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.fail_marker = Some("refine/shoe-c.png".into());
        c.providers.local.fail_kind = "permanent".into();
    })
    .await;
    let user = app.new_user().await;
    let urls: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|k| common::write_upload(&app, &format!("refine/shoe-{k}.png")))
        .collect();
    let body = json!({"mode": "refinement", "model": "local", "productImages": urls,
                      "backgroundMode": "white"});
    let job = run_job(&app, &user, "analyze-single", &body).await;
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["error_code"], "BATCH_PARTIAL_FAILED");
    assert_eq!(job["cost_amount"], 3);
    assert_eq!(job["held_amount"], 0);
    assert_eq!(job["units"]["total"], 4);
    assert_eq!(job["units"]["succeeded"], 3);
    assert_eq!(job["units"]["failed"], 1);
    let units = job["result_data"]["units"].as_array().expect("units");
    assert_eq!(units.len(), 4, "{job}");
    for unit in units {
        let failed = unit["unit"] == 2;
        assert_eq!(
            unit["status"],
            if failed { "failed" } else { "success" },
            "{unit}"
        );
        let source = &unit["prompt_source"];
        if failed {
            assert!(
                source.is_null() || source == "analysis" || source == "fallback",
                "{unit}"
            );
        } else {
            assert_eq!(source, "analysis", "{unit}");
        }
    }
    let images = assert_images(&app, &job, 3, (16, 16)).await;
    assert!(images.iter().all(|i| i["unit"] != 2));
    assert_credits(&app, &user, 27).await;
    app.stop().await;
}

/// A `generate-prompts-v2` body for a small analysis.
fn prompt_body(count: u32) -> Value {
    json!({"analysisJson": {"product_name": "Ceramic mug", "category": "kitchen",
                            "selling_points": ["dishwasher safe"], "style": "minimal"},
           "imageCount": count, "module": "default", "outputLanguage": "en"})
}

/// A user's prompt stream request (SSE unless the body says `stream: false`).
async fn prompts(app: &TestApp, user: &TestUser, body: &Value) -> Response {
    app.call("generate-prompts-v2", &user.access_token, body)
        .await
}

/// Reads a prompt stream to its end and returns its `data:` payloads (comments skipped).
async fn read_frames(mut res: Response) -> Vec<String> {
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Some(chunk) = tokio::time::timeout_at(deadline, res.chunk())
        .await
        .expect("the stream ends")
        .expect("stream readable")
    {
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
    assert!(
        text.ends_with("\n\n"),
        "frames end with a blank line: {text:?}"
    );
    text.split("\n\n")
        .filter(|frame| !frame.is_empty() && !frame.starts_with(':'))
        .map(|frame| {
            frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {frame:?}"))
                .to_string()
        })
        .collect()
}

/// Each `fullText` of a frame list (all frames but the final `[DONE]`).
fn full_texts(frames: &[String]) -> Vec<String> {
    assert_eq!(
        frames.last().map(String::as_str),
        Some("[DONE]"),
        "{frames:?}"
    );
    frames[..frames.len() - 1]
        .iter()
        .map(|frame| {
            let event: Value = serde_json::from_str(frame).expect("JSON frame");
            event["fullText"]
                .as_str()
                .unwrap_or_else(|| panic!("no fullText: {frame}"))
                .to_string()
        })
        .collect()
}

/// The first event is an empty `fullText` (generate-prompts-v2/index.ts L1425); every
/// later one is the whole JSON array of prompt objects so far, each longer than the last;
/// `[DONE]` ends it. `stream: false` answers the same array at once. Prompts are free and
/// write no job.
#[tokio::test]
async fn prompts_stream_growing_full_text_then_done() {
    let app = spawn_app_with(|c| c.providers.local.delay_ms = 10).await;
    let user = app.new_user().await;
    let texts = full_texts(&read_frames(prompts(&app, &user, &prompt_body(3)).await).await);
    assert_eq!(texts[0], "", "{texts:?}");
    let counts: Vec<usize> = texts[1..]
        .iter()
        .map(|t| {
            serde_json::from_str::<Vec<Value>>(t)
                .unwrap_or_else(|e| panic!("fullText is a JSON array at every frame: {e}: {t}"))
                .len()
        })
        .collect();
    assert_eq!(counts, vec![1, 2, 3], "{texts:?}");
    let whole = json_with_status(
        prompts(
            &app,
            &user,
            &common::with(&prompt_body(3), json!({"stream": false})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(whole, json!({"fullText": texts.last().unwrap()}));

    let as_string = json!({"analysisJson": prompt_body(1)["analysisJson"].to_string(),
                           "stream": false});
    let whole = json_with_status(prompts(&app, &user, &as_string).await, 200).await;
    assert!(whole["fullText"].as_str().is_some_and(|t| !t.is_empty()));
    assert_credits(&app, &user, 30).await;
    assert_eq!(app.job_count(&user.access_token).await, 0);
    app.stop().await;
}

/// An upstream that fails before its first byte: the empty first frame has gone out, so
/// the failure is the reference's error frame `{fullText, error: "<message>", code}`
/// (generate-prompts-v2/index.ts L1533) and `[DONE]`.
#[tokio::test]
async fn prompt_stream_failing_before_the_first_byte_sends_the_error_frame() {
    let app = spawn_app_with(|c| c.providers.local.stream_fail_after_chunks = Some(0)).await;
    let user = app.new_user().await;
    let frames = read_frames(prompts(&app, &user, &prompt_body(3)).await).await;
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(frames[0], r#"{"fullText":""}"#);
    let error: Value = serde_json::from_str(&frames[1]).expect("JSON");
    assert_eq!(error["fullText"], "[]", "{error}");
    assert_eq!(error["code"], "PROMPT_STREAM_FAILED", "{error}");
    assert!(
        error["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{error}"
    );
    assert_eq!(frames[2], "[DONE]");
    assert_credits(&app, &user, 30).await;
    app.stop().await;
}

/// A stream that fails after one whole prompt object sends it, then one error frame whose
/// `error` is a string (the reference client tests `typeof error === 'string'`,
/// EcomStudioForm.tsx L665) and whose `fullText` still parses, then `[DONE]`.
#[tokio::test]
async fn prompt_stream_failing_mid_stream_sends_an_error_event() {
    let app = spawn_app_with(|c| c.providers.local.stream_fail_after_chunks = Some(3)).await;
    let user = app.new_user().await;
    let frames = read_frames(prompts(&app, &user, &prompt_body(3)).await).await;
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(frames[3], "[DONE]");
    let first: Value = serde_json::from_str(&frames[1]).expect("JSON");
    let so_far: Vec<Value> =
        serde_json::from_str(first["fullText"].as_str().unwrap()).expect("a JSON array");
    assert_eq!(so_far.len(), 1, "{first}");
    let error: Value = serde_json::from_str(&frames[2]).expect("JSON");
    assert_eq!(error["code"], "PROMPT_STREAM_FAILED", "{error}");
    assert_eq!(error["fullText"], first["fullText"], "{error}");
    assert!(
        error["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{error}"
    );
    app.stop().await;
}

/// The admin queue's count of prompt streams running now.
async fn prompt_streams(app: &TestApp, admin: &TestUser) -> i64 {
    let queue = json_with_status(
        app.get("/v1/admin/queue", Some(&admin.access_token)).await,
        200,
    )
    .await;
    queue["prompt_streams"]
        .as_i64()
        .unwrap_or_else(|| panic!("no prompt_streams: {queue}"))
}

/// A client that goes away mid-stream stops the upstream within a second.
#[tokio::test]
async fn prompt_stream_stops_when_the_client_disconnects() {
    let app = spawn_app_with(|c| c.providers.local.delay_ms = 300).await;
    let (user, admin) = (app.new_user().await, app.new_admin().await);
    assert_eq!(prompt_streams(&app, &admin).await, 0);
    let mut res = prompts(&app, &user, &prompt_body(15)).await;
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    while !text.contains("data: ") || !text.ends_with("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk())
            .await
            .expect("a first chunk")
            .expect("readable")
            .expect("the stream is still open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("fullText"), "{text}");
    assert_eq!(prompt_streams(&app, &admin).await, 1);
    drop(res);
    let deadline = Instant::now() + Duration::from_secs(1);
    while prompt_streams(&app, &admin).await != 0 {
        assert!(
            Instant::now() < deadline,
            "the prompt stream kept running after the client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// A product analysis is an ANALYSIS job whose result is the analysis JSON; it is free.
#[tokio::test]
async fn product_analysis_returns_the_analysis_json_for_free() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    let body = json!({"productImage": small_png(), "requirements": "a ceramic mug",
                      "imageCount": 2, "outputLanguage": "en"});
    let job = run_job(&app, &user, "analyze-product-v2", &body).await;
    assert_eq!(job["type"], "ANALYSIS");
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["cost_amount"], 0);
    let analysis = &job["result_data"];
    assert!(analysis.is_object(), "{job}");
    for field in ["product_name", "category"] {
        assert!(
            analysis[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {analysis}"
        );
    }
    for field in [
        "selling_points",
        "materials",
        "colors",
        "image_prompts_seed",
    ] {
        assert!(analysis[field].is_array(), "{field}: {analysis}");
    }
    for field in ["style", "design_specs"] {
        assert!(!analysis[field].is_null(), "{field}: {analysis}");
    }
    assert_credits(&app, &user, 30).await;
    app.stop().await;
}

/// Style dimensions answer at once from context text or an analysis (object or string),
/// free and without a job.
#[tokio::test]
async fn style_dimensions_answer_selections_with_confidence() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    let analysis = prompt_body(1)["analysisJson"].clone();
    for body in [
        json!({"contextText": "a ceramic mug for a minimal kitchen", "uiLanguage": "en"}),
        json!({"analysisJson": analysis.clone(), "module": "default"}),
        json!({"analysisJson": analysis.to_string(), "contextText": "warm light"}),
    ] {
        let res = app
            .call("analyze-style-dimensions", &user.access_token, &body)
            .await;
        let answer = json_with_status(res, 200).await;
        let selections = answer["selections"].as_object().expect("selections");
        assert!(selections.values().all(Value::is_string), "{answer}");
        let confidence = answer["confidence"].as_f64().expect("confidence");
        assert!((0.0..=1.0).contains(&confidence), "{answer}");
        // The reference's five dimensions and source (analyze-style-dimensions L5–15, L128).
        assert_eq!(selections.len(), 5, "{answer}");
        assert_eq!(answer["source"], "ai", "{answer}");
        assert!(answer.get("model").is_some(), "{answer}");
    }
    assert_credits(&app, &user, 30).await;
    assert_eq!(app.job_count(&user.access_token).await, 0);
    app.stop().await;
}

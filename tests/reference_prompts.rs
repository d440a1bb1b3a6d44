//! `generate-prompts-v2` as the reference answers it (issue 18, point 3): genesis prompts
//! built from the blueprint with no model call (generate-prompts-v2/index.ts L703–905,
//! L1427–1444), prompt objects parseable at every frame, and prompt streams counted apart
//! from job creations (the reference rate-limits jobs only).

mod common;

use common::fake_openrouter::FakeOpenRouter;
use common::{assert_envelope, json_with_status, small_png, spawn_app_with};
use serde_json::{json, Value};

/// A genesis blueprint of two images (the shape analyze-product-v2 writes).
fn blueprint() -> Value {
    json!({
        "images": [
            {"title": "Hero on oak", "description": "the mug on an oak board",
             "design_content": "centred, 60 % of the frame", "type": "hero",
             "scene_recipe": {"lighting": "soft window light", "background_surface": "oak"}},
            {"title": "Handle detail", "description": "close-up of the handle",
             "design_content": "macro", "type": "detail", "scene_recipe": {}}
        ],
        "design_specs": "# Colors\n- sage #9CAF88",
        "product_summary": "A sage stoneware mug",
        "product_visual_identity": {"primary_color": "sage #9CAF88", "material": "stoneware",
                                    "key_features": ["round handle"]},
        "_ai_meta": {"image_count": 2}
    })
}

/// The genesis module writes one prompt object per blueprint image without calling the
/// prompt model (an OpenRouter fake that sees no request), the same every time, each
/// object with the reference's five fields (L895–903).
#[tokio::test]
async fn genesis_prompts_come_from_the_blueprint_without_a_model() {
    let fake = FakeOpenRouter::start().await;
    let app = spawn_app_with(|c| {
        fake.configure(c);
        c.generation.prompt_model = Some("or-gemini-3.1-flash".into());
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"analysisJson": blueprint(), "module": "genesis", "stream": false,
                      "styleConstraint": {"prompt": "minimal, calm"}});
    let first = json_with_status(
        app.call("generate-prompts-v2", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    let again = json_with_status(
        app.call("generate-prompts-v2", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    assert_eq!(first, again, "deterministic");
    let prompts: Vec<Value> =
        serde_json::from_str(first["fullText"].as_str().expect("fullText")).expect("array");
    assert_eq!(prompts.len(), 2, "{first}");
    for p in &prompts {
        let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "marketing_hook",
                "negative_prompt",
                "priority",
                "prompt",
                "title"
            ],
            "{p}"
        );
        assert!(p["priority"].is_i64());
    }
    assert_eq!(prompts[0]["title"], "Hero on oak");
    let text = prompts[0]["prompt"].as_str().unwrap();
    for needle in [
        "sage #9CAF88",
        "soft window light",
        "minimal, calm",
        "stoneware",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    assert!(fake.calls().is_empty(), "no model call: {:?}", fake.calls());

    // Streamed: the empty frame, then one frame per prompt, each a whole JSON array.
    let streamed = json!({"analysisJson": blueprint(), "module": "genesis"});
    let text = app
        .call("generate-prompts-v2", &user.access_token, &streamed)
        .await
        .text()
        .await
        .unwrap();
    let frames: Vec<&str> = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .collect();
    assert_eq!(frames.first(), Some(&r#"{"fullText":""}"#), "{text}");
    assert_eq!(frames.last(), Some(&"[DONE]"), "{text}");
    for frame in &frames[1..frames.len() - 1] {
        let event: Value = serde_json::from_str(frame).unwrap();
        let array: Vec<Value> = serde_json::from_str(event["fullText"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {frame}"));
        assert!(!array.is_empty());
    }
    app.stop().await;
}

/// Prompt streams have their own per-minute limit and do not use up the job creation
/// limit: with 2 jobs and 3 streams a minute, 3 streams pass and the 4th is refused
/// with `RATE_LIMIT_EXCEEDED` and `Retry-After`, and both jobs are still accepted.
#[tokio::test]
async fn prompt_streams_are_counted_apart_from_jobs() {
    let app = spawn_app_with(|c| {
        c.limits.job_creations_per_minute = 2;
        c.limits.prompt_streams_per_minute = 3;
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"analysisJson": {"product_name": "mug"}, "stream": false});
    for _ in 0..3 {
        json_with_status(
            app.call("generate-prompts-v2", &user.access_token, &body)
                .await,
            200,
        )
        .await;
    }
    let refused = app
        .call("generate-prompts-v2", &user.access_token, &body)
        .await;
    assert!(refused.headers().contains_key("retry-after"));
    let error = assert_envelope(refused, 429, "RATE_LIMIT_EXCEEDED").await;
    assert_eq!(error["error"]["details"]["limit"], 3, "{error}");
    let image = json!({"model": "local", "prompt": "a mug", "productImage": small_png()});
    for _ in 0..2 {
        app.start_job("generate-image", &user.access_token, &image)
            .await;
    }
    let third = app.call("generate-image", &user.access_token, &image).await;
    assert_envelope(third, 429, "RATE_LIMIT_EXCEEDED").await;
    let config =
        json_with_status(app.get("/functions/v1/get-public-config", None).await, 200).await;
    assert_eq!(config["limits"]["prompt_streams_per_minute"], 3, "{config}");
    app.stop().await;
}

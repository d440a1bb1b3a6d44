//! `analyze-product-v2` as the reference answers it (issue 18, point 2): the blueprint
//! `{images:[{title, description, design_content, type, scene_recipe}], design_specs,
//! copy_analysis, product_summary, product_visual_identity, style_directions,
//! commercial_intent, subject_profile | garment_profile | tryon_strategy, _ai_meta}`
//! (process-generation-job/index.ts `AnalysisBlueprint` L73–84, `normalizeBlueprint`
//! L779–866, `_ai_meta` L6218–6233), its fallback on broken model JSON, and the caps the
//! reference client's own requests need.

mod common;

use common::fake_openrouter::{self as fake, FakeOpenRouter};
use common::{provider_test_config, small_png, spawn_app_with, TestApp};
use serde_json::{json, Value};

/// The keys every blueprint has.
const BLUEPRINT_KEYS: [&str; 8] = [
    "images",
    "design_specs",
    "copy_analysis",
    "product_summary",
    "product_visual_identity",
    "style_directions",
    "commercial_intent",
    "_ai_meta",
];

fn assert_blueprint(b: &Value, plans: usize) {
    for key in BLUEPRINT_KEYS {
        assert!(b.get(key).is_some(), "blueprint lacks {key}: {b}");
    }
    assert!(
        b["design_specs"].is_string(),
        "design_specs is a string (L75): {b}"
    );
    let images = b["images"].as_array().expect("images");
    assert_eq!(images.len(), plans, "{b}");
    for image in images {
        for key in [
            "title",
            "description",
            "design_content",
            "type",
            "scene_recipe",
        ] {
            assert!(image.get(key).is_some(), "plan lacks {key}: {image}");
        }
    }
}

async fn analysis(app: &TestApp, token: &str, body: Value) -> Value {
    let job = app.run_job(token, "analyze-product-v2", &body).await;
    assert_eq!(job["status"], "success", "{job}");
    job["result_data"].clone()
}

/// The `local` provider writes a deterministic blueprint of the same shape, honouring
/// `imageCount`, `whiteBackground`, `detailCloseupCount`, `sellingPointCount`, the
/// ecom-detail modules and the clothing mode's profile; the reference client's longest
/// `requirements` (687 characters) and an unknown `outputLanguage` (→ `en`) are accepted.
#[tokio::test]
async fn local_analysis_writes_the_reference_blueprint() {
    let app = spawn_app_with(common::unlimited).await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let long = "x".repeat(687);
    let genesis = json!({"productImage": small_png(), "studioType": "genesis",
        "imageCount": 4, "whiteBackground": true, "detailCloseupCount": 1,
        "sellingPointCount": 1, "requirements": long, "outputLanguage": "klingon",
        "uiLanguage": "en", "promptConfigKey": "x", "fe_attempt": 1});
    let b = analysis(&app, token, genesis.clone()).await;
    assert_blueprint(&b, 4);
    let types: Vec<&str> = b["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["white_background", "detail", "selling_point", "hero"]
    );
    assert!(b["subject_profile"].is_object(), "{b}");
    assert_eq!(b["_ai_meta"]["target_language"], "en");
    assert_eq!(b["_ai_meta"]["image_count"], 4);
    assert!(b["_ai_meta"]["parse_warning"].is_null());
    assert_eq!(b, analysis(&app, token, genesis).await, "deterministic");

    let detail = json!({"productImage": small_png(), "studioType": "ecom-detail",
        "ecomDetailModules": ["hero", "size_chart", "materials"]});
    let b = analysis(&app, token, detail).await;
    assert_blueprint(&b, 3);
    assert_eq!(b["images"][1]["type"], "size_chart");

    let tryon = json!({"productImage": small_png(), "studioType": "ecommerce",
        "clothingMode": "model_strategy", "modelImage": small_png(), "uiLanguage": "zh"});
    let b = analysis(&app, token, tryon).await;
    assert_blueprint(&b, 1);
    assert!(b["tryon_strategy"].is_object(), "{b}");
    assert_eq!(b["_ai_meta"]["model_image_used"], true);
    let garment = json!({"productImage": small_png(), "clothingMode": "product_analysis"});
    assert!(analysis(&app, token, garment).await["garment_profile"].is_object());
    app.stop().await;
}

/// A model answering broken JSON twice (first try and the repair): the job succeeds with
/// the fallback blueprint and `_ai_meta.parse_warning` (reference L6231), for free.
#[tokio::test]
async fn broken_model_json_twice_gives_the_fallback_blueprint() {
    let openrouter = FakeOpenRouter::start().await;
    openrouter.push(fake::text_reply(
        "Sure! Here is the analysis: {\"images\": [",
    ));
    openrouter.push(fake::text_reply("still not json"));
    let app = spawn_app_with(|c| {
        provider_test_config(c, 1);
        openrouter.configure(c);
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"productImage": small_png(), "imageCount": 2, "uiLanguage": "en"});
    let job = app
        .run_job(&user.access_token, "analyze-product-v2", &body)
        .await;
    assert_eq!(job["status"], "success", "{job}");
    assert!(job["error_code"].is_null(), "{job}");
    assert_eq!(job["cost_amount"], 0);
    let b = &job["result_data"];
    assert_blueprint(b, 2);
    assert_eq!(
        b["_ai_meta"]["parse_warning"],
        "ANALYSIS_JSON_PARSE_FAILED_FALLBACK_USED"
    );
    assert_eq!(b["_ai_meta"]["parse_failed"], true);
    assert_eq!(b["images"][0]["title"], "Image Concept 1");
    assert_eq!(openrouter.calls().len(), 2, "one try and one repair");
    app.stop().await;
}

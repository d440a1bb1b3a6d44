//! Job results in the reference product's shapes (issue 18, point 1), read field by field
//! against the reference's worker `supabase/functions/process-generation-job/index.ts`
//! (IMAGE_GEN L6612–6634, STYLE_REPLICATE L6898–6965, output items L4648–4663, sizes
//! L4576–4646), beside Atelier's own `units`/`images`.

mod common;

use common::fake_gemini::{self as fake, FakeGemini};
use common::{png_bytes, png_data_uri, provider_test_config, small_png, spawn_app_with, TestApp};
use serde_json::{json, Value};

/// Asserts every key the reference's IMAGE_GEN `result_data` has (L6612–6634).
fn assert_image_fields(data: &Value) {
    for key in [
        "provider",
        "model",
        "image_size",
        "requested_size",
        "provider_size",
        "actual_size",
        "delivered_size",
        "size_status",
        "normalized_by_server",
        "mime_type",
        "object_path",
        "metadata",
    ] {
        assert!(data.get(key).is_some(), "result_data lacks {key}: {data}");
    }
}

/// An IMAGE_GEN job on `local` answers the reference's fields, an exact size, and a
/// `result_url` that serves the image; Atelier's own `images[]` stay.
#[tokio::test]
async fn image_gen_result_has_the_reference_fields() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a red box", "productImage": small_png(),
                      "aspectRatio": "16:9", "imageSize": "1K", "promptProfile": "default"});
    let job = app
        .run_job(&user.access_token, "generate-image", &body)
        .await;
    assert_eq!(job["status"], "success", "{job}");
    let data = &job["result_data"];
    assert_image_fields(data);
    assert_eq!(data["provider"], "local");
    assert_eq!(data["model"], "local");
    assert_eq!(data["image_size"], "1K");
    // scaledRequestSize("16:9", "1K") of the reference (L4460): 2560x1440 → 1024x576.
    assert_eq!(data["requested_size"], "1024x576");
    assert_eq!(data["actual_size"], json!({"w": 1024, "h": 576}));
    assert_eq!(data["delivered_size"], json!({"w": 1024, "h": 576}));
    assert_eq!(data["size_status"], "exact");
    assert_eq!(data["normalized_by_server"], false);
    assert_eq!(data["mime_type"], "image/png");
    let object_path = data["object_path"].as_str().expect("object_path");
    assert!(object_path.starts_with("generated/"), "{object_path}");
    assert_eq!(data["metadata"]["prompt_profile"], "default");
    assert_eq!(data["metadata"]["input_transport"], "data_url");
    assert_eq!(data["metadata"]["input_image_count"], 1);
    let url = job["result_url"].as_str().expect("result_url");
    assert_eq!(app.image_size(url).await, (1024, 576));
    assert_eq!(
        data["images"][0]["url"], job["result_url"],
        "Atelier's images stay"
    );
    app.stop().await;
}

/// The app with Gemini pointed at `fake` (ta-* models are admin-only).
async fn gemini_app(fake: &FakeGemini) -> TestApp {
    spawn_app_with(|c| {
        provider_test_config(c, 1);
        fake.configure(c);
    })
    .await
}

/// An output larger than the requested edge is scaled down by the server
/// (`normalized_down`, L4612–4620); a smaller one is delivered as is (`too_small`,
/// L4603–4608). Both succeed and are charged.
#[tokio::test]
async fn oversized_outputs_are_scaled_down_and_small_ones_delivered() {
    for (size, status, delivered) in [
        ((2048, 2048), "normalized_down", (1024, 1024)),
        ((512, 512), "too_small", (512, 512)),
    ] {
        let gemini = FakeGemini::start().await;
        gemini.push(fake::image_reply(size.0, size.1));
        let app = gemini_app(&gemini).await;
        let admin = app.new_admin().await;
        let body = json!({"model": "ta-gemini-3.1-flash", "prompt": "a sage mug",
                          "aspectRatio": "1:1", "imageSize": "1K",
                          "productImage": png_data_uri(&png_bytes(40, 30, true))});
        let job = app
            .run_job(&admin.access_token, "generate-image", &body)
            .await;
        assert_eq!(job["status"], "success", "{job}");
        assert_eq!(job["cost_amount"], 30, "{job}");
        let data = &job["result_data"];
        assert_image_fields(data);
        assert_eq!(data["size_status"], status, "{data}");
        assert_eq!(data["normalized_by_server"], status == "normalized_down");
        assert_eq!(data["actual_size"], json!({"w": size.0, "h": size.1}));
        assert_eq!(
            data["delivered_size"],
            json!({"w": delivered.0, "h": delivered.1})
        );
        let url = job["result_url"].as_str().expect("result_url");
        assert_eq!(app.image_size(url).await, delivered);
        app.stop().await;
    }
}

/// The ratio check stays: a square answer to a 16:9 request fails the unit with
/// `MODEL_RATIO_UNSUPPORTED` even though its size would be normalised.
#[tokio::test]
async fn the_ratio_check_stays() {
    let gemini = FakeGemini::start().await;
    gemini.push(fake::image_reply(2048, 2048));
    let app = gemini_app(&gemini).await;
    let admin = app.new_admin().await;
    let body = json!({"model": "ta-gemini-3.1-flash", "prompt": "a sage mug",
                      "aspectRatio": "16:9", "imageSize": "1K",
                      "productImage": png_data_uri(&png_bytes(40, 30, true))});
    let job = app
        .run_job(&admin.access_token, "generate-image", &body)
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_code"], "MODEL_RATIO_UNSUPPORTED", "{job}");
    app.stop().await;
}

/// STYLE_REPLICATE: `outputs[]` with the reference's item keys and indexes (L4648–4663,
/// units built at L6775–6810), and `summary` (L6936–6942); in batch mode
/// `reference_index`/`group_index` name the unit.
#[tokio::test]
async fn style_replicate_result_has_outputs_and_summary() {
    let app = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let user = app.new_user().await;
    let body = json!({"mode": "batch", "model": "local", "productImage": small_png(),
                      "referenceImages": vec![small_png(); 2], "groupCount": 2});
    let job = app
        .run_job(&user.access_token, "analyze-single", &body)
        .await;
    assert_eq!(job["status"], "success", "{job}");
    let data = &job["result_data"];
    assert_image_fields(data);
    let outputs = data["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 4, "{data}");
    let mut pairs = Vec::new();
    for item in outputs {
        for key in [
            "url",
            "object_path",
            "mime_type",
            "provider_size",
            "actual_size",
            "delivered_size",
            "size_status",
            "prompt_source",
            "reference_index",
            "group_index",
            "product_index",
            "unit_status",
        ] {
            assert!(item.get(key).is_some(), "output lacks {key}: {item}");
        }
        assert_eq!(item["unit_status"], "success", "{item}");
        assert_eq!(item["size_status"], "too_small", "16-px outputs: {item}");
        assert_eq!(item["product_index"], 0);
        assert!(item["url"].is_string(), "{item}");
        pairs.push((
            item["reference_index"].as_i64().unwrap(),
            item["group_index"].as_i64().unwrap(),
        ));
    }
    pairs.sort_unstable();
    assert_eq!(pairs, vec![(0, 0), (0, 1), (1, 0), (1, 1)]);
    assert_eq!(
        data["summary"],
        json!({"requested_count": 4, "completed_count": 4, "success_count": 4,
               "failed_count": 0, "mode": "batch"})
    );
    assert_eq!(
        data["units"].as_array().map(Vec::len),
        Some(4),
        "Atelier's units stay"
    );
    app.stop().await;
}

/// A failed refinement unit is an output with `unit_status: failed` and its
/// `error_message`; the summary counts it; successful ones say where their prompt
/// came from (`prompt_source`).
#[tokio::test]
async fn a_failed_style_unit_is_an_output_with_its_error() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.fail_marker = Some("refine/bad.png".into());
        c.providers.local.fail_kind = "permanent".into();
    })
    .await;
    let user = app.new_user().await;
    let urls: Vec<String> = ["good", "bad"]
        .iter()
        .map(|k| common::write_upload(&app, &format!("refine/{k}.png")))
        .collect();
    let body = json!({"mode": "refinement", "model": "local", "productImages": urls});
    let job = app
        .run_job(&user.access_token, "analyze-single", &body)
        .await;
    assert_eq!(job["error_code"], "BATCH_PARTIAL_FAILED", "{job}");
    let data = &job["result_data"];
    let outputs = data["outputs"].as_array().expect("outputs");
    let good = outputs.iter().find(|o| o["product_index"] == 0).unwrap();
    let bad = outputs.iter().find(|o| o["product_index"] == 1).unwrap();
    assert_eq!(good["unit_status"], "success");
    assert_eq!(good["prompt_source"], "analysis");
    assert_eq!(bad["unit_status"], "failed");
    assert!(bad["url"].is_null(), "{bad}");
    assert!(
        bad["error_message"].as_str().is_some_and(|m| !m.is_empty()),
        "{bad}"
    );
    assert_eq!(data["summary"]["success_count"], 1);
    assert_eq!(data["summary"]["failed_count"], 1);
    assert_eq!(data["summary"]["mode"], "refinement");
    assert_eq!(data["metadata"]["background_mode"], "white");
    app.stop().await;
}

/// While a job runs its `result_data` already carries `outputs[]` (pending items) and a
/// `summary` that grows as units finish (the reference's progress writes, L6967–6995).
#[tokio::test]
async fn the_summary_is_updated_as_units_finish() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 300;
        c.providers.local.concurrency = 1;
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "referenceImage": small_png(),
                      "productImages": [small_png()], "imageCount": 3});
    let id = app
        .start_job("analyze-single", &user.access_token, &body)
        .await;
    let first = app.job(&user.access_token, &id).await;
    let summary = &first["result_data"]["summary"];
    assert_eq!(summary["requested_count"], 3, "{first}");
    assert!(summary["completed_count"].as_i64().unwrap() < 3, "{first}");
    let pending = first["result_data"]["outputs"]
        .as_array()
        .expect("outputs while processing")
        .iter()
        .filter(|o| o["unit_status"] == "pending")
        .count();
    assert!(pending > 0, "{first}");
    let done = app.wait_job(&user.access_token, &id).await;
    assert_eq!(
        done["result_data"]["summary"]["completed_count"], 3,
        "{done}"
    );
    assert_eq!(done["result_data"]["summary"]["mode"], "single");
    app.stop().await;
}

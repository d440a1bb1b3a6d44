//! What the generation functions refuse, over HTTP: every 400/402/403/409/429/503 code of
//! the Generation table (checking that a refusal holds no credit and writes no job), and
//! the boundaries of counts, formats and prompts.

mod common;

use common::{
    assert_envelope, json_with_status, small_png, spawn_app_with, with, write_upload, TestApp,
};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// A valid `generate-image` body for `model`.
fn image_body(model: &str) -> Value {
    json!({"model": model, "prompt": "a red box on white", "productImage": small_png(),
           "imageCount": 1, "aspectRatio": "1:1"})
}

/// A valid single-mode `analyze-single` body with the `local` model.
fn single_body() -> Value {
    json!({"mode": "single", "model": "local", "referenceImage": small_png(),
           "productImages": [small_png()], "imageCount": 1})
}

/// A valid batch-mode `analyze-single` body: `refs` reference images × `groupCount` 1.
fn batch_body(refs: usize) -> Value {
    json!({"mode": "batch", "model": "local", "referenceImages": vec![small_png(); refs],
           "productImage": small_png(), "groupCount": 1})
}

/// A refinement-mode `analyze-single` body over `urls`.
fn refine_body(urls: &[String]) -> Value {
    json!({"mode": "refinement", "model": "local", "productImages": urls})
}

/// Sends `body` to `function`, asserts the error envelope with `status` and `code`, and
/// that the caller's credits and job list did not change (so the caller must have no
/// unit that could finish meanwhile). Returns the error body and the response headers.
async fn refused(
    app: &TestApp,
    token: &str,
    function: &str,
    body: &Value,
    status: u16,
    code: &str,
) -> (Value, HeaderMap) {
    let (credits, jobs) = (app.credits(token).await, app.job_count(token).await);
    let res = app.call(function, token, body).await;
    let headers = res.headers().clone();
    let got = res.status().as_u16();
    if got != status {
        let text = res.text().await.unwrap_or_default();
        let sent: String = body.to_string().chars().take(300).collect();
        panic!("{function} {sent}…: expected {status} {code}, got {got}: {text}");
    }
    let error = assert_envelope(res, status, code).await;
    assert_eq!(
        app.credits(token).await,
        credits,
        "{code}: credits moved after a refusal"
    );
    assert_eq!(
        app.job_count(token).await,
        jobs,
        "{code}: a refused call wrote a job"
    );
    (error, headers)
}

/// One row of the refusal table.
struct Case {
    function: &'static str,
    body: Value,
    status: u16,
    code: &'static str,
    details: Option<Value>,
}

fn case(function: &'static str, body: Value, status: u16, code: &'static str) -> Case {
    Case {
        function,
        body,
        status,
        code,
        details: None,
    }
}

/// Refusals that need no earlier state: body shape, model checks (in the documented
/// order), per-mode inputs (wrong JSON types included), the image byte limit and the
/// credit hold. One row a line, so the table is kept as written.
#[rustfmt::skip]
fn stateless_cases(app: &TestApp) -> Vec<Case> {
    let (gi, single) = (image_body("local"), single_body());
    let big = common::png_data_uri(&common::png_bytes(64, 64, true));
    let url = |key: &str| write_upload(app, key);
    let (a, b) = (url("table/a.png"), url("table/b.jpg"));
    let refine = refine_body(&[a.clone(), b.clone()]);
    let mut rows = vec![
        // generate-image, in the order of §2.3.
        case("generate-image", with(&gi, json!({"model": null})), 400, "BAD_REQUEST"),
        case("generate-image", with(&gi, json!({"prompt": "   "})), 400, "IMAGE_INPUT_PROMPT_MISSING"),
        case("generate-image", with(&gi, json!({"model": "no-such-model", "prompt": " "})), 400, "IMAGE_INPUT_PROMPT_MISSING"),
        case("generate-image", image_body("no-such-model"), 400, "MODEL_UNAVAILABLE"),
        case("generate-image", image_body("ta-gemini-3-pro"), 403, "MODEL_RESTRICTED"),
        case("generate-image", with(&image_body("ta-gemini-2.5-flash"), json!({"imageSize": "8K"})), 403, "MODEL_RESTRICTED"),
        case("generate-image", image_body("or-gemini-3.1-flash"), 400, "MODEL_UNAVAILABLE"),
        case("generate-image", image_body("or-gemini-2.5-flash"), 400, "MODEL_UNAVAILABLE"),
        case("generate-image", image_body("volc-seedream-4.5"), 503, "MISSING_DOUBAO_IMAGE_API_KEY"),
        case("generate-image", with(&image_body("volc-seedream-5.0-lite"), json!({"imageSize": "8K"})), 503, "MISSING_DOUBAO_IMAGE_API_KEY"),
        case("generate-image", with(&gi, json!({"imageSize": "8K", "aspectRatio": "7:5"})), 400, "IMAGE_SIZE_UNSATISFIED"),
        case("generate-image", with(&gi, json!({"aspectRatio": "7:5", "productImage": null})), 400, "MODEL_RATIO_UNSUPPORTED"),
        case("generate-image", with(&gi, json!({"aspectRatio": "banana"})), 400, "MODEL_RATIO_UNSUPPORTED"),
        case("generate-image", with(&gi, json!({"productImage": null})), 400, "IMAGE_INPUT_SOURCE_MISSING"),
        case("generate-image", with(&gi, json!({"productImage": big.clone()})), 400, "IMAGE_INPUT_TOO_LARGE"),
        case("generate-image", with(&gi, json!({"productImage": null, "productImages": [big.clone()]})), 400, "IMAGE_INPUT_TOO_LARGE"),
        // analyze-single: model checks, then each mode's inputs.
        case("analyze-single", with(&single, json!({"model": null})), 400, "MODEL_UNAVAILABLE"),
        case("analyze-single", with(&single, json!({"model": "ta-gemini-3.1-flash"})), 403, "MODEL_RESTRICTED"),
        case("analyze-single", with(&single, json!({"model": "volc-seedream-4.5"})), 503, "MISSING_DOUBAO_IMAGE_API_KEY"),
        case("analyze-single", with(&single, json!({"aspectRatio": "7:5"})), 400, "MODEL_RATIO_UNSUPPORTED"),
        case("analyze-single", with(&single, json!({"mode": "collage"})), 400, "BAD_REQUEST"),
        case("analyze-single", with(&single, json!({"referenceImage": null})), 400, "STYLE_REFERENCE_IMAGE_MISSING"),
        case("analyze-single", with(&single, json!({"referenceImage": ""})), 400, "STYLE_REFERENCE_IMAGE_MISSING"),
        case("analyze-single", with(&single, json!({"productImages": null})), 400, "STYLE_PRODUCT_IMAGE_MISSING"),
        case("analyze-single", with(&single, json!({"productImages": []})), 400, "STYLE_PRODUCT_IMAGE_MISSING"),
        case("analyze-single", with(&single, json!({"productImages": [small_png(), ""]})), 400, "STYLE_PRODUCT_IMAGE_MISSING"),
        case("analyze-single", with(&single, json!({"referenceImage": 5})), 400, "STYLE_REFERENCE_IMAGE_MISSING"),
        case("analyze-single", with(&single, json!({"productImages": small_png()})), 400, "STYLE_PRODUCT_IMAGE_MISSING"),
        case("analyze-single", with(&single, json!({"productImages": [big]})), 400, "IMAGE_INPUT_TOO_LARGE"),
        case("analyze-single", with(&batch_body(1), json!({"referenceImages": null})), 400, "BATCH_REFERENCE_IMAGES_REQUIRED"),
        case("analyze-single", with(&batch_body(1), json!({"referenceImages": []})), 400, "BATCH_REFERENCE_IMAGES_REQUIRED"),
        case("analyze-single", with(&batch_body(1), json!({"referenceImages": [small_png(), ""]})), 400, "BATCH_INPUT_INVALID"),
        case("analyze-single", with(&batch_body(1), json!({"referenceImages": [small_png(), 7]})), 400, "BATCH_INPUT_INVALID"),
        case("analyze-single", with(&batch_body(2), json!({"groupCount": 0})), 400, "BATCH_INPUT_INVALID"),
        case("analyze-single", with(&batch_body(2), json!({"productImage": null})), 400, "BATCH_PRODUCT_IMAGE_REQUIRED"),
        case("analyze-single", refine_body(&[]), 400, "REFINEMENT_PRODUCT_IMAGES_REQUIRED"),
        case("analyze-single", with(&refine, json!({"productImages": null})), 400, "REFINEMENT_PRODUCT_IMAGES_REQUIRED"),
        case("analyze-single", refine_body(&[a.clone(), String::new()]), 400, "REFINEMENT_PRODUCT_IMAGES_REQUIRED"),
        case("analyze-single", with(&refine, json!({"backgroundMode": "black"})), 400, "REFINEMENT_BACKGROUND_MODE_INVALID"),
        case("analyze-single", with(&refine, json!({"backgroundMode": true})), 400, "REFINEMENT_BACKGROUND_MODE_INVALID"),
        case("analyze-single", refine_body(&[a, b, url("table/c.gif")]), 400, "REFINEMENT_IMAGE_FORMAT_UNSUPPORTED"),
        // The other functions' required fields.
        case("analyze-product-v2", json!({"requirements": "a mug"}), 400, "BAD_REQUEST"),
        case("generate-prompts-v2", json!({"imageCount": 2}), 400, "BAD_REQUEST"),
        // No context is a 200 with empty selections (reference_edges.rs); only a body
        // that is no object is refused, as the reference's `if (!body)` (L72).
        case("analyze-style-dimensions", json!(null), 400, "BAD_REQUEST"),
    ];
    // 4 products × 9 images = 36 units at 1 credit against 30 credits.
    let mut broke = case(
        "analyze-single",
        with(&single, json!({"productImages": vec![small_png(); 4], "imageCount": 9})),
        402,
        "INSUFFICIENT_CREDITS",
    );
    broke.details = Some(json!({"required": 36, "available": 30}));
    rows.push(broke);
    rows
}

/// A non-admin's refusal table, the admin's view of an admin-only model, then the
/// refusals that need earlier jobs: active jobs, the per-minute and daily limits, and an
/// idempotency key reused with another body.
#[tokio::test]
async fn every_generation_refusal_has_its_code_and_moves_nothing() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 3_000;
        c.providers.local.concurrency = 1;
        c.limits.active_jobs_style_replicate = 1;
        c.limits.job_creations_per_minute = 3;
        c.limits.daily_analysis = 2;
        c.limits.image_max_bytes = 1_024;
    })
    .await;
    let user = app.new_user().await;
    let token = &user.access_token;
    for row in stateless_cases(&app) {
        let (error, _) = refused(&app, token, row.function, &row.body, row.status, row.code).await;
        if let Some(details) = row.details {
            assert_eq!(error["error"]["details"], details, "{}", row.code);
        }
    }
    assert_eq!(
        app.credits(token).await,
        json!({"subscription": 0, "purchased": 30, "held": 0, "debt": 0, "available": 30})
    );

    // Admin-only is checked before availability: an admin gets past it.
    let admin = app.new_admin().await;
    let body = image_body("ta-gemini-3-pro");
    refused(
        &app,
        &admin.access_token,
        "generate-image",
        &body,
        400,
        "MODEL_UNAVAILABLE",
    )
    .await;

    // One running style job is this app's limit; its unit runs for 3 s.
    let busy = app.new_user().await;
    app.start_job("analyze-single", &busy.access_token, &single_body())
        .await;
    let (error, _) = refused(
        &app,
        &busy.access_token,
        "analyze-single",
        &single_body(),
        429,
        "TOO_MANY_ACTIVE_JOBS",
    )
    .await;
    assert_eq!(error["error"]["details"], json!({"active": 1, "limit": 1}));
    // The reference client's busy-queue retry matches this text (edge-functions.ts L166).
    let message = error["error"]["message"].as_str().unwrap().to_lowercase();
    assert!(message.contains("too_many_active_jobs"), "{message}");

    // Three creations a minute.
    let hasty = app.new_user().await;
    for _ in 0..3 {
        app.start_job("generate-image", &hasty.access_token, &image_body("local"))
            .await;
    }
    let (error, headers) = refused(
        &app,
        &hasty.access_token,
        "generate-image",
        &image_body("local"),
        429,
        "RATE_LIMIT_EXCEEDED",
    )
    .await;
    assert_eq!(error["error"]["details"], json!({"count": 3, "limit": 3}));
    let retry_after: u64 = headers
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");

    // Two analyses a day.
    let curious = app.new_user().await;
    let analysis = json!({"productImage": small_png()});
    for _ in 0..2 {
        app.start_job("analyze-product-v2", &curious.access_token, &analysis)
            .await;
    }
    let (error, _) = refused(
        &app,
        &curious.access_token,
        "analyze-product-v2",
        &analysis,
        429,
        "DAILY_ANALYSIS_LIMIT_EXCEEDED",
    )
    .await;
    assert_eq!(error["error"]["details"], json!({"count": 2, "limit": 2}));

    // The same client_job_id with another body.
    let twice = app.new_user().await;
    let first = with(&image_body("local"), json!({"client_job_id": "order-7"}));
    app.start_job("generate-image", &twice.access_token, &first)
        .await;
    let changed = with(&first, json!({"imageCount": 2}));
    refused(
        &app,
        &twice.access_token,
        "generate-image",
        &changed,
        409,
        "CONFLICT",
    )
    .await;
    app.stop().await;
}

/// A server with no per-user job limits and tiny outputs.
async fn roomy_app() -> TestApp {
    spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        common::unlimited(c);
    })
    .await
}

/// Starts a job and returns its `units.total`.
async fn accepted_units(app: &TestApp, token: &str, function: &str, body: &Value) -> i64 {
    let id = app.start_job(function, token, body).await;
    app.job(token, &id).await["units"]["total"]
        .as_i64()
        .expect("units.total")
}

/// The amounts of the caller's ledger holds, smallest first.
async fn hold_amounts(app: &TestApp, token: &str) -> Vec<i64> {
    let ledger = json_with_status(app.get("/v1/ledger?limit=100", Some(token)).await, 200).await;
    let mut holds: Vec<i64> = ledger["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "hold")
        .map(|e| e["amount"].as_i64().expect("amount"))
        .collect();
    holds.sort_unstable();
    holds
}

/// 12 reference images are a batch of 12 units; 13 are refused.
#[tokio::test]
async fn batch_takes_twelve_references_not_thirteen() {
    let app = roomy_app().await;
    let user = app.new_user().await;
    let token = &user.access_token;
    refused(
        &app,
        token,
        "analyze-single",
        &batch_body(13),
        400,
        "BATCH_REFERENCE_IMAGES_REQUIRED",
    )
    .await;
    assert_eq!(
        accepted_units(&app, token, "analyze-single", &batch_body(12)).await,
        12
    );
    app.stop().await;
}

/// `groupCount` is an integer 1..9; anything else, a string or a fraction included, is
/// `BATCH_INPUT_INVALID`.
#[tokio::test]
async fn batch_group_count_is_an_integer_from_one_to_nine() {
    let app = roomy_app().await;
    let user = app.new_user().await;
    let token = &user.access_token;
    for bad in [json!(0), json!(10), json!("3"), json!(2.5), json!(-1)] {
        let body = with(&batch_body(1), json!({ "groupCount": bad }));
        refused(
            &app,
            token,
            "analyze-single",
            &body,
            400,
            "BATCH_INPUT_INVALID",
        )
        .await;
    }
    for (groups, units) in [(1, 1), (9, 9)] {
        let body = with(&batch_body(1), json!({ "groupCount": groups }));
        assert_eq!(
            accepted_units(&app, token, "analyze-single", &body).await,
            units
        );
    }
    app.stop().await;
}

/// Refinement takes 50 images (50 units, paid for with admin-given credits) but not 51.
#[tokio::test]
async fn refinement_takes_fifty_images_not_fifty_one() {
    let app = roomy_app().await;
    let (user, admin) = (app.new_user().await, app.new_admin().await);
    app.grant_credits(&admin, &user.id, 100).await;
    let token = &user.access_token;
    let url = write_upload(&app, "fifty/product.png");
    refused(
        &app,
        token,
        "analyze-single",
        &refine_body(&vec![url.clone(); 51]),
        400,
        "REFINEMENT_PRODUCT_IMAGES_REQUIRED",
    )
    .await;
    let body = refine_body(&vec![url; 50]);
    assert_eq!(
        accepted_units(&app, token, "analyze-single", &body).await,
        50
    );
    assert_eq!(hold_amounts(&app, token).await, vec![50]);
    app.stop().await;
}

/// The extension is read from the URL's path, case-insensitively, without query and
/// fragment; a bad entry is named by its index.
#[tokio::test]
async fn refinement_formats_follow_the_url_path() {
    let app = roomy_app().await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let png = write_upload(&app, "formats/x.PNG");
    let jpg = write_upload(&app, "formats/y.jpeg");
    let webp = write_upload(&app, "formats/x.webp");
    for (urls, index) in [
        (vec![png.clone(), jpg.clone(), webp.clone()], 2),
        (vec![webp.clone(), png.clone()], 0),
        (vec![png.clone(), format!("{webp}?name=x.png#y.jpg")], 1),
        (vec![format!("{png}.webp")], 0),
    ] {
        let (error, _) = refused(
            &app,
            token,
            "analyze-single",
            &refine_body(&urls),
            400,
            "REFINEMENT_IMAGE_FORMAT_UNSUPPORTED",
        )
        .await;
        assert_eq!(error["error"]["details"]["index"], index, "{urls:?}");
    }
    // Accepted last: its units would move credits under the refusals' checks.
    let accepted = [
        format!("{png}?v=2#a"),
        format!("{}{}", app.base, write_upload(&app, "formats/z.JPG")),
        format!("{jpg}?as=.webp"),
    ];
    assert_eq!(
        accepted_units(&app, token, "analyze-single", &refine_body(&accepted)).await,
        3
    );
    app.stop().await;
}

/// `imageCount` outside 1..9 is clamped, not refused, in generate-image and
/// analyze-single; the hold follows the clamped count.
#[tokio::test]
async fn image_count_is_clamped_to_one_through_nine() {
    let app = roomy_app().await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let gi = image_body("local");
    for (count, units) in [(0, 1), (12, 9)] {
        let body = with(&gi, json!({ "imageCount": count }));
        assert_eq!(
            accepted_units(&app, token, "generate-image", &body).await,
            units
        );
    }
    let body = with(&single_body(), json!({"imageCount": 12}));
    assert_eq!(
        accepted_units(&app, token, "analyze-single", &body).await,
        9
    );
    assert_eq!(hold_amounts(&app, token).await, vec![1, 9, 9]);
    app.stop().await;
}

/// A prompt of only whitespace is `IMAGE_INPUT_PROMPT_MISSING`; one real character is
/// enough.
#[tokio::test]
async fn whitespace_prompts_are_refused() {
    let app = roomy_app().await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let gi = image_body("local");
    for prompt in ["", " ", "      ", "\t\n  \r\n"] {
        let body = with(&gi, json!({ "prompt": prompt }));
        refused(
            &app,
            token,
            "generate-image",
            &body,
            400,
            "IMAGE_INPUT_PROMPT_MISSING",
        )
        .await;
    }
    let body = with(&gi, json!({"prompt": "  x  "}));
    assert_eq!(
        accepted_units(&app, token, "generate-image", &body).await,
        1
    );
    app.stop().await;
}

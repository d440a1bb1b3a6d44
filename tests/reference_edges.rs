//! The reference's forgiving edges, job error codes, uploads and prompt texts (issue 18,
//! points 4–7), over HTTP with the `local` provider and the fake OpenRouter. Each check
//! cites the reference file (oscar-47/Oscar2 at 2f6e874) whose behaviour it pins.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::fake_openrouter::{self as fake, FakeOpenRouter};
use common::{json_with_status, png_bytes, provider_test_config, small_png, spawn_app_with};
use common::{TestApp, TestUser};
use serde_json::{json, Value};

/// An unknown field every body below carries.
fn surprise() -> Value {
    json!({"surprise": {"nested": [1, 2]}, "promptConfigKey": "x"})
}

/// `body` with the unknown fields added.
fn with_surprise(body: Value) -> Value {
    common::with(&body, surprise())
}

/// Ids of an active subscription and an active one-time package.
async fn package_ids(app: &TestApp) -> (String, String) {
    let list = json_with_status(app.get("/v1/packages", None).await, 200).await;
    let find = |kind: &str| {
        list["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["type"] == kind)
            .and_then(|p| p["id"].as_str())
            .unwrap_or_else(|| panic!("no {kind} package: {list}"))
            .to_string()
    };
    (find("subscription"), find("one_time"))
}

/// Unknown body fields are ignored (logged at debug), never a 400, on every reference
/// function Atelier serves; the reference reads only the fields it knows
/// (e.g. get-oss-sts/index.ts L5–10, create-credit-checkout/index.ts L24).
#[tokio::test]
async fn unknown_fields_are_ignored_by_every_reference_function() {
    let app = spawn_app_with(|c| {
        common::unlimited(c);
        c.providers.local.tiny_output = true;
    })
    .await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let (subscription, pack) = package_ids(&app).await;
    let image = small_png();
    let job = app
        .start_job(
            "generate-image",
            token,
            &with_surprise(json!({"model": "local", "prompt": "a mug", "productImage": image})),
        )
        .await;
    let cases = [
        (
            "analyze-product-v2",
            json!({"productImage": image, "uiLanguage": "en"}),
            200,
        ),
        (
            "generate-prompts-v2",
            json!({"analysisJson": {"product_name": "mug"}, "imageCount": 1, "stream": false}),
            200,
        ),
        (
            "analyze-single",
            json!({"model": "local", "referenceImage": image, "productImages": [image]}),
            200,
        ),
        (
            "analyze-style-dimensions",
            json!({"contextText": "a mug"}),
            200,
        ),
        (
            "get-oss-sts",
            json!({"prefix": "uploads", "bucket": "temp"}),
            200,
        ),
        ("get-public-config", json!({}), 200),
        ("process-generation-job", json!({"job_id": job}), 200),
        (
            "create-credit-checkout",
            json!({"packageId": subscription}),
            200,
        ),
        ("create-onetime-checkout", json!({"packageId": pack}), 200),
        // No billing account yet: the reference's 404 (create-portal-session L24), not 400.
        ("create-portal-session", json!({}), 404),
    ];
    for (function, body, status) in cases {
        let res = app.call(function, token, &with_surprise(body)).await;
        let answer = json_with_status(res, status).await;
        assert_ne!(
            answer["error"]["code"], "BAD_REQUEST",
            "{function}: {answer}"
        );
    }
    app.wait_job(token, &job).await;
    app.stop().await;
}

/// The five dimensions of analyze-style-dimensions/index.ts L8–14, in order.
const DIMENSIONS: [(&str, [&str; 5]); 5] = [
    (
        "sceneStyle",
        ["minimal", "natural", "urban", "luxury", "industrial"],
    ),
    ("lighting", ["natural", "warm", "cool", "dramatic", "soft"]),
    (
        "composition",
        ["front", "overhead45", "topDown", "closeUp", "wide"],
    ),
    (
        "colorTone",
        ["original", "warmTone", "coolTone", "monochrome", "vibrant"],
    ),
    ("material", ["default", "matte", "glossy", "wood", "marble"]),
];

/// `analyze-style-dimensions` answers the reference's five dimensions from their fixed
/// lists with `source: "ai"`; with no usable context, and when the model fails, 200
/// with empty selections (L80–82, L132–138).
#[tokio::test]
async fn style_dimensions_answer_the_reference_enums() {
    let app = spawn_app_with(|c| c.providers.local.fail_marker = Some("FAIL-ME".into())).await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let body = json!({"contextText": "warm light on a marble counter", "module": "ecommerce",
                      "uiLanguage": "zh"});
    let answer = json_with_status(
        app.call("analyze-style-dimensions", token, &body).await,
        200,
    )
    .await;
    let selections = answer["selections"].as_object().expect("selections");
    assert_eq!(selections.len(), 5, "{answer}");
    for (key, allowed) in DIMENSIONS {
        let value = selections[key].as_str().expect("a string");
        assert!(allowed.contains(&value), "{key}={value}: {answer}");
    }
    assert_eq!(selections["lighting"], "warm", "{answer}");
    assert_eq!(selections["material"], "marble", "{answer}");
    assert_eq!(answer["source"], "ai");
    assert_eq!(answer["model"], "local");
    assert!(answer["confidence"]
        .as_f64()
        .is_some_and(|c| (0.0..=1.0).contains(&c)));

    let empty = json!({"selections": {}, "confidence": 0, "source": "ai"});
    for body in [
        json!({}),
        json!({"contextText": "   ", "analysisJson": ""}),
        json!({"contextText": 5, "analysisJson": null, "uiLanguage": 3}),
    ] {
        let res = app.call("analyze-style-dimensions", token, &body).await;
        assert_eq!(json_with_status(res, 200).await, empty, "{body}");
    }
    let body = json!({"contextText": "FAIL-ME"});
    let res = app.call("analyze-style-dimensions", token, &body).await;
    assert_eq!(json_with_status(res, 200).await, empty);
    app.stop().await;
}

/// The system and user texts of a recorded chat call.
fn messages(call: &common::fake_http::Recorded) -> (String, String) {
    let body: Value = serde_json::from_slice(&call.body).expect("json body");
    let text = |role: &str| {
        body["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == role))
            .map(|m| fake::all_text(&json!({"messages": [m]})))
            .unwrap_or_default()
    };
    (text("system"), text("user"))
}

/// A model's off-list values and extra keys are dropped, the confidence clamped
/// (sanitizeSelections L37–50, clampConfidence L52–56); a zh request gets the reference's
/// zh prompt with the fixed enums.
#[tokio::test]
async fn style_dimensions_sanitise_the_model_answer() {
    let openrouter = FakeOpenRouter::start().await;
    openrouter.push(fake::text_reply(
        r#"Here: {"selections": {"sceneStyle": "luxury", "lighting": "neon", "mood": "calm",
            "composition": "wide", "material": 3}, "confidence": 7}"#,
    ));
    let app = spawn_app_with(|c| {
        provider_test_config(c, 1);
        openrouter.configure(c);
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"analysisJson": {"product_name": "vase"}, "uiLanguage": "zh-CN"});
    let res = app
        .call("analyze-style-dimensions", &user.access_token, &body)
        .await;
    let answer = json_with_status(res, 200).await;
    assert_eq!(
        answer["selections"],
        json!({"sceneStyle": "luxury", "composition": "wide"}),
        "{answer}"
    );
    assert_eq!(answer["confidence"], 1.0);
    assert_eq!(answer["source"], "ai");
    let (system, user_text) = messages(&openrouter.calls()[0]);
    assert!(system.contains("电商视觉风格顾问"), "{system}");
    assert!(
        user_text.contains("sceneStyle: minimal|natural|urban|luxury|industrial"),
        "{user_text}"
    );
    assert!(user_text.contains("vase"), "{user_text}");
    app.stop().await;
}

/// `get-public-config` serves the reference's public keys (get-public-config/index.ts
/// L6–13, types/index.ts L986–999) from `[public]` and the catalog.
#[tokio::test]
async fn public_config_serves_the_reference_keys() {
    let app = spawn_app_with(|c| {
        c.public.batch_concurrency = 3;
        c.public.ta_pro_prompt_profile_enabled = true;
        c.public.release_notes.en = "New: try-on".into();
        c.public.release_notes.zh = "新功能：试穿".into();
        c.public.platform_rules_version = "2026-03".into();
        c.public.platform_min_images.insert("taobao".into(), 5);
        c.public.platform_min_images.insert("amazon".into(), 7);
    })
    .await;
    let config =
        json_with_status(app.get("/functions/v1/get-public-config", None).await, 200).await;
    assert_eq!(config["batch_concurrency"], 3);
    assert_eq!(config["ta_pro_prompt_profile_enabled"], true);
    assert_eq!(
        config["release_notes"],
        json!({"en": "New: try-on", "zh": "新功能：试穿"})
    );
    assert_eq!(
        config["platform_rules"],
        json!({"version": "2026-03", "rules": [{"value": "amazon", "minImages": 7},
                                                 {"value": "taobao", "minImages": 5}]})
    );
    assert_eq!(config["signup_bonus_credits"], 30);
    let costs = config["credit_costs"].as_object().expect("credit_costs");
    assert!(
        costs["local"].is_number() || costs["local"].is_object(),
        "{config}"
    );
    assert!(costs.values().all(|c| c.is_number() || c.is_object()));
    app.stop().await;
}

/// Caps admit what the reference client sends: its longest style constraint
/// (types/index.ts buildStyleConstraintPrompt L953–972 with the longest tag of each
/// dimension) and an uncapped Aesthetic Mirror prompt (AestheticMirrorForm.tsx L603).
#[tokio::test]
async fn caps_admit_the_reference_clients_longest_fields() {
    let app = spawn_app_with(|c| {
        common::unlimited(c);
        c.providers.local.tiny_output = true;
    })
    .await;
    let user = app.new_user().await;
    let tags = [
        ("sceneStyle", "natural outdoor setting with plants"),
        ("lighting", "dramatic high-contrast lighting"),
        ("composition", "wide-angle environmental shot"),
        ("colorTone", "vibrant high-saturation colors"),
        ("material", "natural wood grain surface"),
    ];
    let mut lines = vec![
        "[STYLE CONSTRAINTS | HIGH PRIORITY]".to_string(),
        "Apply the following selected style constraints as explicit visual targets:".into(),
    ];
    lines.extend(tags.iter().map(|(k, t)| format!("- {k}: {t}")));
    lines.push(
        "If any default style conflicts with these constraints, these constraints must take precedence."
            .into(),
    );
    lines.push("[/STYLE CONSTRAINTS]".into());
    let prompt = lines.join("\n");
    assert!(prompt.len() > 400, "{}", prompt.len());
    let style = json!({"selections": {"sceneStyle": "natural"}, "prompt": prompt,
                       "source": "user_selected"});
    let image = small_png();
    let body = json!({"model": "local", "prompt": "a mug", "productImage": image,
                      "styleConstraint": style});
    app.start_job("generate-image", &user.access_token, &body)
        .await;
    let body = json!({"mode": "batch", "model": "local", "referenceImages": [image],
                      "productImage": image, "groupCount": 1, "userPrompt": "m".repeat(1500)});
    app.start_job("analyze-single", &user.access_token, &body)
        .await;
    app.stop().await;
}

/// Serves `answer` to every connection after `delay`.
fn raw_server(answer: Vec<u8>, delay: Duration) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut request = [0u8; 2048];
                let _ = stream.read(&mut request);
                std::thread::sleep(delay);
                let _ = stream.write_all(&answer);
            });
        }
    });
    addr
}

async fn failed_remote_job(app: &TestApp, user: &TestUser, url: &str) -> Value {
    let body = json!({"model": "local", "prompt": "a box", "productImage": url});
    let job = app
        .run_job(&user.access_token, "generate-image", &body)
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["cost_amount"], 0, "{job}");
    job
}

/// An input that is not an image is the reference's `IMAGE_INPUT_INVALID_CONTENT_TYPE`
/// (input-image-validation.ts L101), an input fetch that times out its
/// `IMAGE_INPUT_SOURCE_TIMEOUT` (L117; process-generation-job/index.ts L4752).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_images_of_a_wrong_type_or_too_slow_fail_with_the_reference_codes() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.storage.allow_private_fetch = true;
        c.storage.fetch_timeout_secs = 1;
    })
    .await;
    let user = app.new_user().await;
    let html = b"<html><body>not an image</body></html>".to_vec();
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        html.len()
    )
    .into_bytes();
    answer.extend(html);
    let addr = raw_server(answer, Duration::ZERO);
    let job = failed_remote_job(&app, &user, &format!("http://{addr}/page.html")).await;
    assert_eq!(
        job["error_code"], "IMAGE_INPUT_INVALID_CONTENT_TYPE",
        "{job}"
    );

    let png = png_bytes(16, 16, false);
    let mut slow = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\n\r\n",
        png.len()
    )
    .into_bytes();
    slow.extend(png);
    let addr = raw_server(slow, Duration::from_secs(4));
    let started = Instant::now();
    let job = failed_remote_job(&app, &user, &format!("http://{addr}/slow.png")).await;
    assert_eq!(job["error_code"], "IMAGE_INPUT_SOURCE_TIMEOUT", "{job}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the fetch waited"
    );
    assert_eq!(app.credits(&user.access_token).await["available"], 30);
    app.stop().await;
}

/// A unit whose lease expired without a report (here: the server stopped while it ran)
/// on its last attempt fails with the reference's `TASK_STALE_NO_HEARTBEAT`
/// (20260311100000_preserve_stale_task_reason.sql L30), its credits released.
#[tokio::test]
async fn a_unit_left_without_heartbeat_fails_with_task_stale_no_heartbeat() {
    let tweak = |c: &mut atelier::config::Config| {
        c.providers.local.delay_ms = 3000;
        c.providers.local.tiny_output = true;
        c.queue.max_attempts = 1;
    };
    let app = spawn_app_with(tweak).await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a mug", "productImage": small_png()});
    let job_id = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.job(&user.access_token, &job_id).await["result_data"]["units"][0]["status"]
        != "running"
    {
        assert!(Instant::now() < deadline, "the unit never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = app.stop_keeping_data().await;
    let mut config = common::test_config(dir.path());
    tweak(&mut config);
    let running = atelier::app::start(config).await.expect("restart");
    let app = TestApp::adopt(running, dir);
    let job = app.wait_job(&user.access_token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_code"], "TASK_STALE_NO_HEARTBEAT", "{job}");
    assert_eq!(
        common::first_unit_error(&job)["code"],
        "TASK_STALE_NO_HEARTBEAT"
    );
    assert_eq!(job["cost_amount"], 0);
    assert_eq!(app.credits(&user.access_token).await["available"], 30);
    app.stop().await;
}

/// Uploads a PNG the way the reference client does (lib/api/upload.ts L42–83): grant with
/// `{prefix: "uploads", key: "uploads/<ts>_<name>", bucket: "temp"}`, PUT to `uploadUrl`,
/// and address it as `endpoint + "/" + objectKey`.
async fn client_upload(app: &TestApp, token: &str, name: &str, bytes: &[u8]) -> String {
    let key = format!("uploads/{}_{name}", chrono_like_millis());
    let body = json!({"prefix": "uploads", "key": key, "bucket": "temp"});
    let grant = json_with_status(app.call("get-oss-sts", token, &body).await, 200).await;
    let res = app
        .client
        .put(grant["uploadUrl"].as_str().unwrap())
        .header("content-type", "image/png")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "upload: {}", res.status());
    let endpoint = grant["endpoint"].as_str().unwrap().trim_end_matches('/');
    let object_key = grant["objectKey"].as_str().unwrap().trim_start_matches('/');
    format!("{endpoint}/{object_key}")
}

fn chrono_like_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

async fn status_of(app: &TestApp, url: &str) -> u16 {
    app.client.get(url).send().await.unwrap().status().as_u16()
}

/// The client's upload URL serves the object and is a job input; the temp sweep deletes
/// only objects no job references, so a job re-run from that input after the sweep ran
/// still works (REFERENCE.md §7 #11).
#[tokio::test]
async fn uploads_addressed_like_the_client_outlive_the_temp_sweep() {
    let app = spawn_app_with(|c| {
        common::unlimited(c);
        c.providers.local.tiny_output = true;
        c.storage.temp_max_age_secs = 2;
        c.storage.sweep_interval_secs = 1;
    })
    .await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let png = png_bytes(24, 24, true);
    let used = client_upload(&app, token, "product.png", &png).await;
    let body = json!({"model": "local", "prompt": "a mug", "productImage": used});
    let first = app.run_job(token, "generate-image", &body).await;
    assert_eq!(first["status"], "success", "{first}");
    let served = app.client.get(&used).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().to_vec(), png);
    let unused = client_upload(&app, token, "draft.png", &png).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    while status_of(&app, &unused).await != 404 {
        assert!(
            Instant::now() < deadline,
            "the sweep never removed {unused}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status_of(&app, &used).await, 200, "a job's input was swept");
    let again = app.run_job(token, "generate-image", &body).await;
    assert_eq!(again["status"], "success", "{again}");
    app.stop().await;
}

/// The system text of the first recorded call.
fn first_system(openrouter: &FakeOpenRouter) -> String {
    messages(&openrouter.calls()[0]).0
}

async fn prompt_app(
    openrouter: &FakeOpenRouter,
    tweak: impl FnOnce(&mut atelier::config::Config),
) -> TestApp {
    spawn_app_with(|c| {
        provider_test_config(c, 1);
        openrouter.configure(c);
        tweak(c);
    })
    .await
}

/// Analysis and prompt writing use the zh or en built-in texts (`prompts/`) by
/// `uiLanguage` / `targetLanguage`, as the reference keeps both.
#[tokio::test]
async fn prompt_texts_follow_the_request_language() {
    for (language, analysis_lead, prompts_lead) in [
        ("zh", "你是电商产品视觉策划", "你为电商产品图撰写"),
        (
            "en",
            "You plan e-commerce product visuals",
            "You write 2 image prompts",
        ),
    ] {
        let openrouter = FakeOpenRouter::start().await;
        let app = prompt_app(&openrouter, |_| {}).await;
        let user = app.new_user().await;
        let body = json!({"productImage": small_png(), "uiLanguage": language});
        app.run_job(&user.access_token, "analyze-product-v2", &body)
            .await;
        assert!(
            first_system(&openrouter).starts_with(analysis_lead),
            "{language}: {}",
            first_system(&openrouter)
        );
        let body = json!({"analysisJson": {"product_name": "mug"}, "imageCount": 2,
                          "targetLanguage": language, "stream": false});
        json_with_status(
            app.call("generate-prompts-v2", &user.access_token, &body)
                .await,
            200,
        )
        .await;
        let (system, _) = messages(&openrouter.calls()[1]);
        assert!(system.starts_with(prompts_lead), "{language}: {system}");
        app.stop().await;
    }
}

/// `promptProfile: "ta-pro"` selects the ta-pro texts only while
/// `public.ta_pro_prompt_profile_enabled` is on (`_shared/prompt-profile.ts` L17–31), and
/// get-public-config says which.
#[tokio::test]
async fn the_ta_pro_profile_selects_its_variants_when_enabled() {
    for enabled in [true, false] {
        let openrouter = FakeOpenRouter::start().await;
        let app = prompt_app(&openrouter, |c| {
            c.public.ta_pro_prompt_profile_enabled = enabled
        })
        .await;
        let config =
            json_with_status(app.get("/functions/v1/get-public-config", None).await, 200).await;
        assert_eq!(config["ta_pro_prompt_profile_enabled"], enabled);
        let user = app.new_user().await;
        let body = json!({"productImage": small_png(), "promptProfile": "ta-pro"});
        app.run_job(&user.access_token, "analyze-product-v2", &body)
            .await;
        let body = json!({"analysisJson": {"product_name": "mug"}, "promptProfile": "ta-pro",
                          "stream": false});
        json_with_status(
            app.call("generate-prompts-v2", &user.access_token, &body)
                .await,
            200,
        )
        .await;
        for call in openrouter.calls() {
            let (system, _) = messages(&call);
            assert_eq!(system.contains("TA Pro"), enabled, "{enabled}: {system}");
        }
        app.stop().await;
    }
}

/// `generation.prompts_dir` replaces built-in texts at start, without a rebuild; a file
/// that names no prompt text stops the start with a clear error.
#[tokio::test]
async fn a_prompts_directory_overrides_the_built_in_texts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prompts.en.txt"),
        "OVERRIDE: write {count} prompts for the {module} module as a JSON array.\n",
    )
    .unwrap();
    let openrouter = FakeOpenRouter::start().await;
    let path = dir.path().to_path_buf();
    let app = prompt_app(&openrouter, |c| c.generation.prompts_dir = Some(path)).await;
    let user = app.new_user().await;
    let body = json!({"analysisJson": {"product_name": "mug"}, "imageCount": 3,
                      "module": "ecom-detail", "stream": false});
    json_with_status(
        app.call("generate-prompts-v2", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    assert_eq!(
        first_system(&openrouter).trim_end(),
        "OVERRIDE: write 3 prompts for the ecom-detail module as a JSON array."
    );
    app.stop().await;

    std::fs::write(dir.path().join("prompt.en.txt"), "typo").unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = common::test_config(data.path());
    config.generation.prompts_dir = Some(dir.path().to_path_buf());
    let err = atelier::app::start(config)
        .await
        .err()
        .expect("a misspelt override stops the start");
    assert!(err.to_string().contains("prompt.en.txt"), "{err}");
}

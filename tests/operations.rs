//! Operating a studio: maintenance mode (admin API and CLI).

mod common;

use std::time::{Duration, Instant};

use common::{assert_envelope, json_with_status, spawn_app_with, TestApp};
use serde_json::{json, Value};

const MESSAGE: &str = "Upgrading the studio, back at 18:00 UTC";

/// A quick image job's body.
fn image_body() -> Value {
    json!({"model": "local", "prompt": "a box", "productImage": common::small_png()})
}

/// The calls that start new work, each with a body that would be accepted (or at least
/// validated) outside maintenance.
fn new_work_calls() -> Vec<(&'static str, Value)> {
    vec![
        ("/functions/v1/generate-image", image_body()),
        (
            "/functions/v1/analyze-product-v2",
            json!({"productImage": common::small_png()}),
        ),
        (
            "/functions/v1/analyze-single",
            json!({"mode": "single", "referenceImage": common::small_png(),
                   "productImages": [common::small_png()], "model": "local"}),
        ),
        ("/functions/v1/create-onetime-checkout", json!({})),
        ("/functions/v1/create-credit-checkout", json!({})),
        ("/functions/v1/create-alipay-checkout", json!({})),
    ]
}

async fn set_maintenance(app: &TestApp, token: &str, body: Value) -> Value {
    json_with_status(
        app.post_json("/v1/admin/maintenance", Some(token), &body)
            .await,
        200,
    )
    .await
}

/// While maintenance is on, sellers' new jobs, checkouts and signups get 503
/// `MAINTENANCE` with the operator's message and nothing is held or written; the job
/// already queued finishes; reads and sign-ins go on; admins are not refused; the
/// public config reports it; switching it off lets everything in again.
#[tokio::test]
async fn maintenance_refuses_new_work_and_nothing_else() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 1_500;
        common::unlimited(c);
    })
    .await;
    let admin = app.new_admin().await;
    let seller = app.new_user().await;
    let token = seller.access_token.as_str();

    let before = json_with_status(
        app.get("/v1/admin/maintenance", Some(&admin.access_token))
            .await,
        200,
    )
    .await;
    assert_eq!(before["enabled"], false, "{before}");
    let config =
        json_with_status(app.get("/functions/v1/get-public-config", None).await, 200).await;
    assert_eq!(config["maintenance"]["enabled"], false, "{config}");

    // Work queued before the switch.
    let queued = app.start_job("generate-image", token, &image_body()).await;

    let res = app
        .post_json(
            "/v1/admin/maintenance",
            Some(token),
            &json!({"enabled": true}),
        )
        .await;
    assert_envelope(res, 403, "FORBIDDEN").await;
    let res = app.get("/v1/admin/maintenance", Some(token)).await;
    assert_envelope(res, 403, "FORBIDDEN").await;
    for bad in [
        json!({"message": "x"}),
        json!({"enabled": "yes"}),
        json!({"enabled": true, "message": "m".repeat(501)}),
        json!({"enabled": true, "colour": "red"}),
    ] {
        let res = app
            .post_json("/v1/admin/maintenance", Some(&admin.access_token), &bad)
            .await;
        assert_envelope(res, 400, "BAD_REQUEST").await;
    }

    let on = set_maintenance(
        &app,
        &admin.access_token,
        json!({"enabled": true, "message": MESSAGE}),
    )
    .await;
    assert_eq!(on["enabled"], true);
    assert_eq!(on["message"], MESSAGE);
    assert_eq!(on["updated_by"], admin.email.as_str());

    let credits = app.credits(token).await;
    let jobs = app.job_count(token).await;
    for (path, body) in new_work_calls() {
        let res = app.post_json(path, Some(token), &body).await;
        let err = assert_envelope(res, 503, "MAINTENANCE").await;
        assert_eq!(err["error"]["message"], MESSAGE, "{path}");
    }
    let res = app
        .signup("newcomer@example.com", "correct-horse-battery")
        .await;
    let err = common::assert_gotrue_error(res, 503, "MAINTENANCE").await;
    assert_eq!(err["msg"], MESSAGE);
    assert_eq!(app.credits(token).await, credits, "nothing held");
    assert_eq!(app.job_count(token).await, jobs, "no job written");

    // Reads, sign-ins and the public config go on, and the config says why.
    let res = app
        .post_json(
            "/auth/v1/token?grant_type=password",
            None,
            &json!({"email": seller.email, "password": seller.password}),
        )
        .await;
    json_with_status(res, 200).await;
    let config =
        json_with_status(app.get("/functions/v1/get-public-config", None).await, 200).await;
    assert_eq!(
        config["maintenance"],
        json!({"enabled": true, "message": MESSAGE})
    );

    // Admins are not refused.
    let admin_job = app
        .run_job(&admin.access_token, "generate-image", &image_body())
        .await;
    assert_eq!(admin_job["status"], "success", "{admin_job}");

    // The job queued before goes on to the end.
    let done = app.wait_job(token, &queued).await;
    assert_eq!(done["status"], "success", "{done}");

    let off = set_maintenance(&app, &admin.access_token, json!({"enabled": false})).await;
    assert_eq!(off["enabled"], false);
    let again = app.run_job(token, "generate-image", &image_body()).await;
    assert_eq!(again["status"], "success", "{again}");
    json_with_status(
        app.signup("newcomer@example.com", "correct-horse-battery")
            .await,
        200,
    )
    .await;
    app.stop().await;
}

/// Polls `generate-image` until it answers `status` (the server's cache of the switch
/// lasts seconds).
async fn wait_for_status(app: &TestApp, token: &str, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app
            .post_json("/functions/v1/generate-image", Some(token), &image_body())
            .await;
        let got = res.status().as_u16();
        let body: Value = res.json().await.expect("json");
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "still {got}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `atelier maintenance on|off` switches a running server through its data dir.
#[tokio::test]
async fn the_cli_switches_maintenance_on_a_running_server() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        common::unlimited(c);
    })
    .await;
    let seller = app.new_user().await;
    let config = app.data_dir.join("cli.toml");
    let data = app
        .data_dir
        .to_str()
        .expect("utf-8 path")
        .replace('\\', "\\\\");
    std::fs::write(&config, format!("[data]\ndir = \"{data}\"\n")).expect("config written");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_atelier"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("ATELIER_CONFIG")
            .output()
            .expect("run atelier");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(cli(&["maintenance", "status"]), "maintenance is off\n");
    let said = cli(&["maintenance", "on", "--message", "Moving house"]);
    assert_eq!(said, "maintenance is on: Moving house\n");
    let err = wait_for_status(&app, &seller.access_token, 503).await;
    assert_eq!(err["error"]["code"], "MAINTENANCE");
    assert_eq!(err["error"]["message"], "Moving house");
    assert_eq!(cli(&["maintenance", "off"]), "maintenance is off\n");
    wait_for_status(&app, &seller.access_token, 200).await;
    app.stop().await;
}

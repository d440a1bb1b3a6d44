//! Operating Atelier: `/metrics` (checked by promtool when present, always in CI), the
//! queue-stall alarm on `/readyz`, graceful shutdown that lets running units finish, and
//! an online backup taken under write load that restores to a database passing
//! `atelier audit`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::fake_http::{Gate, Part};
use common::fake_openrouter::{self as fake, FakeOpenRouter};
use common::{json_with_status, provider_test_config, small_png, spawn_app_with, TestApp};
use serde_json::{json, Value};

/// `GET /metrics` as text, asserting 200 and the Prometheus content type.
async fn scrape(app: &TestApp, token: Option<&str>) -> String {
    let res = app.get("/metrics", token).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    res.text().await.expect("text")
}

/// Runs `promtool check metrics` on `text`; `None` when promtool is not installed
/// (never acceptable in CI).
fn promtool(text: &str) -> Option<Output> {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(_) if std::env::var("CI").as_deref() != Ok("true") => return None,
        Err(e) => panic!("promtool is required in CI (Debian package prometheus): {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    Some(child.wait_with_output().expect("promtool runs"))
}

/// After a job and some requests, the exposition has every family with the right
/// values, and promtool finds nothing to complain about.
#[tokio::test]
async fn metrics_count_requests_jobs_and_credits_and_pass_promtool() {
    let app = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a box", "imageCount": 2,
                      "productImage": small_png()});
    let job = app
        .run_job(&user.access_token, "generate-image", &body)
        .await;
    assert_eq!(job["status"], "success", "{job}");
    app.get("/v1/jobs/not-a-job", Some(&user.access_token))
        .await;

    let text = scrape(&app, None).await;
    for line in [
        r#"atelier_jobs_created_total{type="IMAGE_GEN"} 1"#,
        r#"atelier_ledger_movements_total{kind="hold"} 1"#,
        r#"atelier_ledger_movements_total{kind="capture"} 2"#,
        r#"atelier_jobs{status="success",type="IMAGE_GEN"} 1"#,
        r#"atelier_http_requests_total{method="POST",route="/functions/v1/generate-image",status="200"} 1"#,
        r#"atelier_http_requests_total{method="GET",route="/v1/jobs/{id}",status="404"} 1"#,
        "atelier_queue_depth 0",
        "atelier_queue_running 0",
        "atelier_queue_stalled 0",
        "atelier_job_acceptance_failing 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    for family in [
        "atelier_http_request_duration_seconds_bucket",
        "atelier_db_pool_wait_seconds_count",
        "atelier_queue_oldest_queued_age_seconds",
    ] {
        assert!(text.contains(family), "missing {family} in:\n{text}");
    }
    assert!(!text.contains(&user.access_token), "no tokens in metrics");
    assert_promtool_accepts(&text);
    app.stop().await;
}

/// With `metrics_token` set, a scrape needs it.
#[tokio::test]
async fn metrics_can_require_a_token() {
    let app =
        spawn_app_with(|c| c.server.metrics_token = Some("scrape-me-0123456789".into())).await;
    let res = app.get("/metrics", None).await;
    common::assert_envelope(res, 401, "UNAUTHORIZED").await;
    let text = scrape(&app, Some("scrape-me-0123456789")).await;
    assert!(text.contains("atelier_queue_depth"));
    app.stop().await;
}

/// `/readyz` as `(status, body)`.
async fn readyz(app: &TestApp) -> (u16, Value) {
    let res = app.get("/readyz", None).await;
    let status = res.status().as_u16();
    (status, res.json().await.expect("json"))
}

/// A provider that never answers: units wait, none starts or finishes, and within
/// `stall_after` `/readyz` turns 503 with the reason and the metric is set. When the
/// provider answers again, the alarm clears.
#[tokio::test]
async fn a_stalled_queue_turns_readyz_503_until_it_moves_again() {
    let fake = FakeOpenRouter::start().await;
    let gate = Gate::new();
    let mut silent = fake::image_reply(1024, 1024);
    silent.parts.insert(0, Part::Wait(gate.clone()));
    fake.always(silent);
    let app = spawn_app_with(|c| {
        provider_test_config(c, 3);
        fake.configure(c);
        c.providers.openrouter.concurrency = 1;
        c.queue.stall_after_secs = 1;
    })
    .await;
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");

    let user = app.new_user().await;
    let job = app
        .start_job(
            "generate-image",
            &user.access_token,
            &json!({"model": "or-gemini-3.1-flash", "prompt": "a box", "imageCount": 3,
                    "productImage": small_png()}),
        )
        .await;
    fake.server.wait_requests(1, Duration::from_secs(5)).await;
    let started = Instant::now();
    let body = loop {
        let (status, body) = readyz(&app).await;
        if status == 503 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "no alarm after {:?}: {body}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("queue stalled"), "{body}");
    assert!(message.contains("2 units are waiting"), "{body}");
    assert_eq!(body["error"]["details"]["reason"], "queue alarm", "{body}");
    assert!(scrape(&app, None).await.contains("atelier_queue_stalled 1"));

    gate.open();
    let job = app.wait_job(&user.access_token, &job).await;
    assert_eq!(job["status"], "success", "{job}");
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200, "{body}");
    assert!(scrape(&app, None).await.contains("atelier_queue_stalled 0"));
    app.stop().await;
}

/// Shutdown lets the running unit finish (and captures it); the unit not yet started
/// stays queued and runs after the next start.
#[tokio::test]
async fn shutdown_lets_running_units_finish_and_leaves_the_rest_queued() {
    let app = spawn_app_with(|c| {
        c.providers.local.concurrency = 1;
        c.providers.local.delay_ms = 1500;
        c.providers.local.tiny_output = true;
        c.queue.shutdown_grace_secs = 10;
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a box", "imageCount": 2,
                      "productImage": small_png()});
    let job_id = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.job(&user.access_token, &job_id).await["result_data"]["units"][0]["status"]
        != "running"
    {
        assert!(Instant::now() < deadline, "the first unit never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = app.stop_keeping_data().await;

    let db = rusqlite::Connection::open(dir.path().join("atelier.db")).expect("db");
    let statuses: Vec<String> = db
        .prepare("SELECT status FROM generation_tasks WHERE job_id = ?1 ORDER BY unit_index")
        .unwrap()
        .query_map([&job_id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(statuses, ["success", "queued"]);
    drop(db);

    let mut config = common::test_config(dir.path());
    config.providers.local.tiny_output = true;
    let running = atelier::app::start(config).await.expect("restart");
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let job = loop {
        let job: Value = client
            .get(format!("{base}/v1/jobs/{job_id}"))
            .bearer_auth(&user.access_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] != "processing" {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["status"], "success", "{job}");
    assert_eq!(job["cost_amount"], 2, "{job}");
    assert_eq!(job["result_data"]["units"][1]["attempts"], 1, "{job}");
    running.stop().await;
}

/// `atelier --config <file> <args>` with a clean `ATELIER_*` environment.
fn atelier(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.arg("--config").arg(config).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("ATELIER_") {
            cmd.env_remove(name);
        }
    }
    cmd.output().expect("atelier runs")
}

fn assert_ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A backup taken by the CLI while the server accepts and runs jobs restores into a
/// fresh data dir whose ledger and jobs pass `atelier audit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_to_an_audited_database() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        common::unlimited(c);
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let live_config = work.path().join("live.toml");
    std::fs::write(
        &live_config,
        format!("[data]\ndir = {:?}\n", app.data_dir.to_str().unwrap()),
    )
    .unwrap();
    let users = [app.new_user().await, app.new_user().await];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for user in users.iter() {
        let (client, base, token, stop) = (
            app.client.clone(),
            app.base.clone(),
            user.access_token.clone(),
            stop.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut accepted = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let res = client
                    .post(format!("{base}/functions/v1/generate-image"))
                    .bearer_auth(&token)
                    .json(&json!({"model": "local", "prompt": "a box",
                                  "productImage": small_png()}))
                    .send()
                    .await
                    .unwrap();
                if res.status() == 200 {
                    accepted += 1;
                }
            }
            accepted
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = work.path().join("snapshot.db");
    let (config, target) = (live_config.clone(), out.clone());
    let backup = tokio::task::spawn_blocking(move || {
        atelier(&config, &["backup", "--out", target.to_str().unwrap()])
    })
    .await
    .unwrap();
    let said = assert_ok(&backup);
    assert!(said.contains("backup written"), "{said}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut accepted = 0;
    for task in load {
        accepted += task.await.unwrap();
    }
    assert!(accepted > 5, "the load ran ({accepted} jobs)");
    let again = atelier(&live_config, &["backup", "--out", out.to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing backup is never overwritten"
    );

    let restored_dir = work.path().join("restored");
    let restored_config = work.path().join("restored.toml");
    std::fs::write(
        &restored_config,
        format!("[data]\ndir = {:?}\n", restored_dir.to_str().unwrap()),
    )
    .unwrap();
    assert_ok(&atelier(
        &restored_config,
        &["restore", "--from", out.to_str().unwrap()],
    ));
    let audit = assert_ok(&atelier(&restored_config, &["audit"]));
    assert!(!audit.contains("MISMATCH"), "{audit}");
    let list = assert_ok(&atelier(&restored_config, &["user", "list"]));
    for user in &users {
        assert!(list.contains(&user.email), "{list}");
    }
    json_with_status(app.get("/healthz", None).await, 200).await;
    app.stop().await;
}

/// Asserts `promtool check metrics` accepts `text` (skipped without promtool outside CI).
fn assert_promtool_accepts(text: &str) {
    match promtool(text) {
        Some(out) => assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        None => eprintln!("promtool not installed: format check skipped (CI installs it)"),
    }
}

/// Job health over a window: counts by status, type and error code, the success rate,
/// durations, failed jobs with the seller's e-mail, the last success per provider; the
/// same figures on `/metrics` (promtool-checked); only admins, only 1..168 hours.
#[tokio::test]
async fn job_health_reports_the_window_over_http_and_metrics() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.fail_marker = Some("doomed".into());
        c.providers.local.fail_kind = "permanent".into();
        common::unlimited(c);
    })
    .await;
    let admin = app.new_admin().await;
    let (good, bad) = (app.new_user().await, app.new_user().await);
    for _ in 0..3 {
        let body = json!({"model": "local", "prompt": "a box", "productImage": small_png()});
        let job = app
            .run_job(&good.access_token, "generate-image", &body)
            .await;
        assert_eq!(job["status"], "success", "{job}");
    }
    let mut code = Value::Null;
    for _ in 0..2 {
        let body = json!({"model": "local", "prompt": "a doomed box", "productImage": small_png()});
        let job = app
            .run_job(&bad.access_token, "generate-image", &body)
            .await;
        assert_eq!(job["status"], "failed", "{job}");
        code = job["error_code"].clone();
    }
    let code = code.as_str().expect("an error code").to_string();

    let token = Some(admin.access_token.as_str());
    let health = json_with_status(app.get("/v1/admin/job-health?hours=1", token).await, 200).await;
    assert_eq!(health["hours"], 1);
    assert_eq!(health["total"], 5, "{health}");
    assert_eq!(
        health["by_status"],
        json!({"processing": 0, "success": 3, "failed": 2})
    );
    assert_eq!(
        health["by_type"],
        json!({"IMAGE_GEN": {"success": 3, "failed": 2}})
    );
    assert_eq!(health["by_error_code"], json!({ code.clone(): 2 }));
    assert_eq!(health["success_rate"], 60.0);
    let all = &health["duration"]["all"];
    assert_eq!(all["count"], 3, "{health}");
    assert!(all["p50_ms"].as_i64().unwrap() <= all["p95_ms"].as_i64().unwrap());
    assert_eq!(health["duration"]["by_type"]["IMAGE_GEN"]["count"], 3);
    let failed = health["failed_jobs"].as_array().expect("failed jobs");
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|j| j["user_email"] == bad.email.as_str()));
    assert!(failed.iter().all(|j| j["error_code"] == code.as_str()));
    assert_eq!(health["stuck_units"], json!([]));
    assert_eq!(health["acceptance_failures"], 0);
    let since = health["seconds_since_last_success"]["local"].as_i64();
    assert!(since.is_some_and(|s| s < 60), "{health}");

    let res = app
        .get("/v1/admin/job-health", Some(&good.access_token))
        .await;
    common::assert_envelope(res, 403, "FORBIDDEN").await;
    for hours in ["0", "169", "x", "-1"] {
        let res = app
            .get(&format!("/v1/admin/job-health?hours={hours}"), token)
            .await;
        let err = common::assert_envelope(res, 400, "BAD_REQUEST").await;
        assert_eq!(err["error"]["details"]["field"], "hours");
    }

    let text = scrape(&app, None).await;
    for line in [
        r#"atelier_health_window_jobs{status="success",type="IMAGE_GEN"} 3"#.to_string(),
        r#"atelier_health_window_jobs{status="failed",type="IMAGE_GEN"} 2"#.to_string(),
        format!(r#"atelier_health_failed_jobs_by_code{{code="{code}"}} 2"#),
        "atelier_health_success_ratio 0.6".to_string(),
        "atelier_health_stuck_units 0".to_string(),
        "atelier_health_acceptance_failures 0".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    for family in [
        r#"atelier_health_job_duration_seconds{percentile="p95",type="IMAGE_GEN"}"#,
        r#"atelier_health_seconds_since_last_success{provider="local"}"#,
    ] {
        assert!(text.contains(family), "missing {family} in:\n{text}");
    }
    assert_promtool_accepts(&text);
    app.stop().await;
}

/// Units running longer than `alerts.stuck_after_secs` are listed with their seller.
#[tokio::test]
async fn job_health_lists_stuck_units_with_their_seller() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 5_000;
        c.alerts.stuck_after_secs = 1;
    })
    .await;
    let admin = app.new_admin().await;
    let seller = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a box", "imageCount": 3,
                      "productImage": small_png()});
    let job = app
        .start_job("generate-image", &seller.access_token, &body)
        .await;
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let token = Some(admin.access_token.as_str());
    let health = json_with_status(app.get("/v1/admin/job-health?hours=1", token).await, 200).await;
    let stuck = health["stuck_units"].as_array().expect("stuck units");
    assert_eq!(stuck.len(), 3, "{health}");
    for unit in stuck {
        assert_eq!(unit["job_id"], job.as_str());
        assert_eq!(unit["user_email"], seller.email.as_str());
        assert_eq!(unit["provider"], "local");
        assert_eq!(unit["past_lease"], false);
        assert!(unit["running_seconds"].as_i64().unwrap() >= 1);
    }
    assert_eq!(health["by_status"]["processing"], 1);
    assert_eq!(health["success_rate"], Value::Null);
    let text = scrape(&app, None).await;
    assert!(text.contains("atelier_health_stuck_units 3"), "{text}");
    app.stop().await;
}

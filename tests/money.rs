//! Money under adversarial use, over HTTP against the real server: each defect of the
//! ledger that a hostile seller or a careless operator could reach, the class it
//! belongs to, and the invariants after each (`atelier audit`'s checks: balance = Σ
//! ledger with debt, nothing negative, nothing available while in debt, holds = what
//! the jobs hold, every unit settled once).

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use std::time::{Duration, Instant};

use atelier::config::Config;
use billing_support::*;
use common::{assert_envelope, json_with_status, spawn_app_with, TestApp, TestUser};
use fake_stripe::{event, now_secs, WEBHOOK_SECRET};
use serde_json::{json, Value};

/// Every unit of the offline model costs `cost` credits (any size, turbo or not).
fn price_local(config: &mut Config, cost: i64) {
    for model in config.models.iter_mut().filter(|m| m.id == "local") {
        for c in model.costs.values_mut() {
            *c = cost;
        }
        for c in model.turbo_surcharge.values_mut() {
            *c = 0;
        }
    }
}

/// Simulated billing with signed test webhooks, the local model at `cost` a unit.
fn money_config(config: &mut Config, cost: i64) {
    config.billing.webhook_secret = Some(WEBHOOK_SECRET.into());
    config.providers.local.tiny_output = true;
    common::unlimited(config);
    price_local(config, cost);
}

async fn buy_pack(app: &TestApp, user: &TestUser, session: &str) {
    deliver_ok(
        app,
        &completed(
            &format!("evt_{session}"),
            checkout_session(session, user, STARTER_PACK, "payment"),
        ),
    )
    .await;
}

fn full_refund(evt: &str, session: &str) -> Value {
    event(
        evt,
        "charge.refunded",
        now_secs(),
        json!({"id": format!("ch_{session}"), "object": "charge", "amount": 500,
               "amount_refunded": 500, "refunded": true,
               "payment_intent": format!("pi_{session}"), "currency": "usd"}),
    )
}

/// A refinement job of `units` units (one per copy of an uploaded photo).
fn refinement(app: &TestApp, units: usize) -> Value {
    let photo = common::write_upload(app, "product.png");
    json!({"mode": "refinement", "model": "local", "productImages": vec![photo; units]})
}

/// Polls until unit `index` of the job is running (10 s at most).
async fn wait_unit_running(app: &TestApp, token: &str, job_id: &str, index: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.job(token, job_id).await["result_data"]["units"][index]["status"] != "running" {
        assert!(Instant::now() < deadline, "unit {index} never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn cancel(app: &TestApp, token: &str, job_id: &str) -> reqwest::Response {
    app.post_json(
        &format!("/v1/jobs/{job_id}/cancel"),
        Some(token),
        &json!({}),
    )
    .await
}

async fn admin_credits(app: &TestApp, admin: &TestUser, body: Value) -> reqwest::Response {
    app.post_json("/v1/admin/credits", Some(&admin.access_token), &body)
        .await
}

async fn ledger_len(app: &TestApp, user: &TestUser) -> usize {
    ledger_entries(app, user).await.len()
}

/// Defect 1: 30 (signup) + 250 (pack) = 280; a job holds 270; the pack is refunded in
/// full; the job is cancelled. The seller keeps 30, not 270: the refund's shortfall is
/// debt, and the release of the held credits pays it before they become available.
#[tokio::test]
async fn a_refund_of_held_credits_sticks_after_the_cancel() {
    let app = spawn_app_with(|c| {
        money_config(c, 10);
        c.providers.local.delay_ms = 3000;
        c.providers.local.concurrency = 1;
    })
    .await;
    let user = app.new_user().await;
    buy_pack(&app, &user, "cs_h1").await;
    assert_eq!(app.credits(&user.access_token).await["available"], 280);
    let job_id = app
        .start_job("analyze-single", &user.access_token, &refinement(&app, 27))
        .await;
    assert_eq!(app.credits(&user.access_token).await["held"], 270);
    deliver_ok(&app, &full_refund("evt_h1_refund", "cs_h1")).await;
    let credits = app.credits(&user.access_token).await;
    assert_eq!(
        (&credits["available"], &credits["debt"]),
        (&json!(0), &json!(240)),
        "{credits}"
    );
    assert_audit_clean(&app);

    json_with_status(cancel(&app, &user.access_token, &job_id).await, 200).await;
    let job = app.wait_job(&user.access_token, &job_id).await;
    assert_eq!(job["cost_amount"], 0, "{job}");
    let credits = app.credits(&user.access_token).await;
    assert_eq!(
        credits,
        json!({"subscription": 0, "purchased": 30, "held": 0, "debt": 0, "available": 30})
    );
    // The debt and its repayment are movements of their own.
    let entries = ledger_entries(&app, &user).await;
    let debt_rows: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "debt").collect();
    let owed: i64 = debt_rows
        .iter()
        .filter(|e| e["bucket"].is_null())
        .map(|e| e["amount"].as_i64().unwrap())
        .sum();
    let repaid: i64 = debt_rows
        .iter()
        .filter(|e| e["bucket"] == "mixed")
        .map(|e| e["amount"].as_i64().unwrap())
        .sum();
    assert_eq!((owed, repaid), (240, 240), "{entries:#?}");
    assert_audit_clean(&app);
}

/// Defect 1, the other doors: a grant and an admin correction also pay debt first.
#[tokio::test]
async fn every_credit_that_arrives_pays_debt_first() {
    let app = spawn_app_with(|c| money_config(c, 1)).await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    buy_pack(&app, &user, "cs_d1").await;
    app.grant_credits(&admin, &user.id, -200).await; // 280 → 80 spent elsewhere
    deliver_ok(&app, &full_refund("evt_d1_refund", "cs_d1")).await;
    assert_eq!(app.credits(&user.access_token).await["debt"], 170);
    app.grant_credits(&admin, &user.id, 100).await;
    let credits = app.credits(&user.access_token).await;
    assert_eq!(
        (&credits["available"], &credits["debt"]),
        (&json!(0), &json!(70))
    );
    buy_pack(&app, &user, "cs_d2").await;
    let credits = app.credits(&user.access_token).await;
    assert_eq!(
        (&credits["available"], &credits["debt"]),
        (&json!(180), &json!(0))
    );
    assert_audit_clean(&app);
}

/// Defect 2: a cancel stops a running unit's retries. Unit 0 fails retryably while it
/// runs; cancelled meanwhile, it is not requeued (one attempt), nothing is charged, and
/// the hold goes back.
#[tokio::test]
async fn cancel_stops_a_running_unit_from_being_retried() {
    let app = spawn_app_with(|c| {
        money_config(c, 1);
        c.providers.local.delay_ms = 600;
        c.providers.local.concurrency = 1;
        c.providers.local.fail_units = vec![0];
        c.providers.local.fail_kind = "retryable".into();
        c.queue.max_attempts = 3;
        c.queue.backoff_base_ms = 10;
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a mug", "imageCount": 2,
                      "productImage": common::small_png()});
    let job_id = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    wait_unit_running(&app, &user.access_token, &job_id, 0).await;
    json_with_status(cancel(&app, &user.access_token, &job_id).await, 200).await;
    let job = app.wait_job(&user.access_token, &job_id).await;
    let units = job["result_data"]["units"].as_array().unwrap();
    assert_eq!(units[0]["status"], "cancelled", "{job}");
    assert_eq!(units[0]["attempts"], 1, "no retry after the cancel: {job}");
    assert_eq!(units[1]["status"], "cancelled", "{job}");
    assert_eq!(job["cost_amount"], 0);
    assert_eq!(
        app.ledger_kinds(&user.access_token, &job_id).await,
        ["hold", "release", "release"]
    );
    assert_eq!(app.credits(&user.access_token).await["available"], 30);
    assert_audit_clean(&app);
}

/// Defect 2: a late success after the cancel is not charged.
#[tokio::test]
async fn a_success_that_reports_after_the_cancel_is_released() {
    let app = spawn_app_with(|c| {
        money_config(c, 1);
        c.providers.local.delay_ms = 600;
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a mug", "productImage": common::small_png()});
    let job_id = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    wait_unit_running(&app, &user.access_token, &job_id, 0).await;
    json_with_status(cancel(&app, &user.access_token, &job_id).await, 200).await;
    let job = app.wait_job(&user.access_token, &job_id).await;
    assert_eq!(
        job["result_data"]["units"][0]["status"], "cancelled",
        "{job}"
    );
    assert_eq!(job["cost_amount"], 0);
    assert_eq!(
        app.ledger_kinds(&user.access_token, &job_id).await,
        ["hold", "release"]
    );
    assert_audit_clean(&app);
}

/// Defect 2, the lease-expiry path: a unit left running by a stopped server is
/// recovered at the next start; its job was cancelled, so it is released, not requeued.
#[tokio::test]
async fn a_cancelled_job_is_not_requeued_when_its_lease_is_recovered() {
    let tweak = |c: &mut Config| {
        money_config(c, 1);
        c.providers.local.delay_ms = 1500;
    };
    let app = spawn_app_with(tweak).await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a mug", "productImage": common::small_png()});
    let job_id = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    wait_unit_running(&app, &user.access_token, &job_id, 0).await;
    json_with_status(cancel(&app, &user.access_token, &job_id).await, 200).await;
    let dir = app.stop_keeping_data().await;
    let app = restart(dir, tweak).await;
    let job = app.wait_job(&user.access_token, &job_id).await;
    let unit = &job["result_data"]["units"][0];
    assert_eq!(
        (&unit["status"], &unit["attempts"]),
        (&json!("cancelled"), &json!(1)),
        "{job}"
    );
    assert_eq!(job["cost_amount"], 0);
    assert_eq!(app.credits(&user.access_token).await["available"], 30);
    assert_audit_clean(&app);
}

/// Starts a server again on a stopped one's data dir.
async fn restart(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = common::test_config(dir.path());
    tweak(&mut config);
    let running = atelier::app::start(config).await.expect("restart");
    TestApp::adopt(running, dir)
}

/// Defect 3: the same admin key with another body (opposite sign, another amount or
/// reason) is a 409 CONFLICT; only the very same request replays.
#[tokio::test]
async fn an_admin_key_reused_with_another_body_is_a_conflict() {
    let app = spawn_app_with(|c| money_config(c, 1)).await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let body = json!({"user_id": user.id, "amount": 10, "reason": "goodwill",
                      "idempotency_key": "K"});
    let first = json_with_status(admin_credits(&app, &admin, body.clone()).await, 200).await;
    let again = json_with_status(admin_credits(&app, &admin, body.clone()).await, 200).await;
    assert_eq!(again["entry"]["id"], first["entry"]["id"]);
    for other in [
        json!({"amount": -10}),
        json!({"amount": 11}),
        json!({"reason": "another reason"}),
    ] {
        let res = admin_credits(&app, &admin, common::with(&body, other.clone())).await;
        assert_envelope(res, 409, "CONFLICT").await;
    }
    assert_eq!(app.credits(&user.access_token).await["available"], 40);
    assert_audit_clean(&app);
}

/// Defect 3, keys shared across doors: `atelier credits grant --key K` and the API's
/// `idempotency_key: K` are one key, so the same correction made through both applies once.
#[tokio::test]
async fn the_cli_and_the_api_share_the_operators_key_namespace() {
    let app = spawn_app_with(|c| money_config(c, 1)).await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let config_path = app.data_dir.join("cli.toml");
    std::fs::write(
        &config_path,
        format!("[data]\ndir = {:?}\n", app.data_dir.to_str().unwrap()),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_atelier"))
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .output()
            .expect("run atelier")
    };
    let grant = [
        "credits",
        "grant",
        "--email",
        &user.email,
        "--amount",
        "25",
        "--reason",
        "promo",
        "--key",
        "promo-1",
    ];
    let out = cli(&grant);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = json!({"user_id": user.id, "amount": 25, "reason": "promo",
                      "idempotency_key": "promo-1"});
    json_with_status(admin_credits(&app, &admin, body).await, 200).await;
    let out = cli(&grant);
    assert!(out.status.success());
    assert_eq!(app.credits(&user.access_token).await["available"], 55);
    // Defect 5 at the CLI: out-of-range amounts are refused, nothing written.
    for amount in ["9223372036854775807", "-9223372036854775808", "0"] {
        let out = cli(&[
            "credits",
            "grant",
            "--email",
            &user.email,
            "--amount",
            amount,
            "--reason",
            "x",
        ]);
        assert!(!out.status.success(), "{amount} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--amount"),
            "{amount}"
        );
    }
    assert_eq!(app.credits(&user.access_token).await["available"], 55);
    assert_audit_clean(&app);
}

/// Defect 4: a seller's `client_job_id: "retry:<job>"` cannot take the operator's retry
/// key; the admin's retry still works, and a second one answers the same retry job even
/// after the 24 h that seller keys live.
#[tokio::test]
async fn a_seller_cannot_block_an_admin_retry() {
    let app = spawn_app_with(|c| {
        money_config(c, 1);
        c.providers.local.fail_units = vec![0];
        c.providers.local.fail_kind = "permanent".into();
    })
    .await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a mug", "productImage": common::small_png()});
    let failed = app
        .run_job(&user.access_token, "generate-image", &body)
        .await;
    assert_eq!(failed["status"], "failed");
    let failed_id = failed["id"].as_str().unwrap();
    let squatter = common::with(
        &body,
        json!({"client_job_id": format!("retry:{failed_id}")}),
    );
    let squat = app
        .start_job("generate-image", &user.access_token, &squatter)
        .await;
    let path = format!("/v1/admin/jobs/{failed_id}/retry");
    let retry = json_with_status(
        app.post_json(&path, Some(&admin.access_token), &json!({}))
            .await,
        200,
    )
    .await;
    assert_ne!(
        retry["job_id"],
        json!(squat),
        "the seller's job is not the retry"
    );
    assert_eq!(retry["retry_of"], failed["id"]);
    let retry_id = retry["job_id"].as_str().unwrap().to_string();
    app.wait_job(&user.access_token, &retry_id).await;
    // Two days later (the seller-key window is 24 h), the retry is still the same job.
    let db = &app.running.as_ref().unwrap().state.db;
    db.transaction(|conn| {
        conn.execute(
            "UPDATE generation_jobs SET created_at = created_at - 172800000 WHERE id = ?1",
            [&retry_id],
        )
        .map(|_| ())
        .map_err(atelier::db::DbError::from)
    })
    .unwrap();
    let again = json_with_status(
        app.post_json(&path, Some(&admin.access_token), &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(
        again["job_id"],
        json!(retry_id),
        "charged once, however late"
    );
    assert_audit_clean(&app);
}

/// Defect 5: amounts at the integer limits (and zero, and just over the cap) are a 400
/// naming the field, never a 500; nothing is written.
#[tokio::test]
async fn admin_amounts_are_range_checked() {
    let app = spawn_app_with(|c| money_config(c, 1)).await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let before = ledger_len(&app, &user).await;
    for amount in [
        json!(i64::MAX),
        json!(i64::MIN),
        json!(0),
        json!(1_000_000_001),
        json!(-1_000_000_001),
    ] {
        let body = json!({"user_id": user.id, "amount": amount, "reason": "limits",
                          "idempotency_key": format!("limit-{amount}")});
        let err =
            assert_envelope(admin_credits(&app, &admin, body).await, 400, "BAD_REQUEST").await;
        assert_eq!(
            err["error"]["details"]["field"], "amount",
            "{amount}: {err}"
        );
    }
    // Past i64 the body does not parse: still a 400.
    let res = app
        .client
        .post(app.url("/v1/admin/credits"))
        .bearer_auth(&admin.access_token)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"user_id":"{}","amount":9223372036854775808,"reason":"x","idempotency_key":"y"}}"#,
            user.id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // The largest allowed correction twice: no overflow, no float, the audit holds.
    for key in ["max-1", "max-2"] {
        let body = json!({"user_id": user.id, "amount": 1_000_000_000, "reason": "max",
                          "idempotency_key": key});
        json_with_status(admin_credits(&app, &admin, body).await, 200).await;
    }
    assert_eq!(ledger_len(&app, &user).await, before + 2);
    assert_eq!(
        app.credits(&user.access_token).await["available"],
        2_000_000_030i64
    );
    assert_audit_clean(&app);
}

/// Defect 6: a small body naming 20,000 products is refused at once, before any unit
/// is built; so is one over the cap; a job the seller cannot pay for is a 402 before
/// its units exist. Credits and jobs are unchanged after each.
#[tokio::test]
async fn huge_unit_counts_are_refused_before_any_work() {
    let app = spawn_app_with(|c| money_config(c, 1)).await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let started = Instant::now();
    let body = json!({"referenceImage": "x", "productImages": vec!["x"; 20_000],
                      "imageCount": 9, "model": "local"});
    let err = assert_envelope(
        app.call("analyze-single", token, &body).await,
        400,
        "BAD_REQUEST",
    )
    .await;
    assert_eq!(err["error"]["details"]["field"], "productImages");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let over = json!({"referenceImage": "x", "productImages": vec!["x"; 13], "model": "local"});
    assert_envelope(
        app.call("analyze-single", token, &over).await,
        400,
        "BAD_REQUEST",
    )
    .await;
    // 12 × 9 = 108 units at 1 credit: more than the 30 the seller has.
    let costly = json!({"referenceImage": "x", "productImages": vec!["x"; 12],
                        "imageCount": 9, "model": "local"});
    let err = assert_envelope(
        app.call("analyze-single", token, &costly).await,
        402,
        "INSUFFICIENT_CREDITS",
    )
    .await;
    assert_eq!(err["error"]["details"]["required"], 108);
    assert_eq!(app.job_count(token).await, 0);
    assert_eq!(app.credits(token).await["available"], 30);
}

/// Suspicion: a provider removed before a restart left its queued units queued forever
/// with credits held. Confirmed; they now fail `MODEL_UNAVAILABLE` at the next start
/// and their holds go back.
#[tokio::test]
async fn units_of_a_provider_that_is_gone_fail_and_release() {
    let tweak = |c: &mut Config| {
        money_config(c, 1);
        c.providers.local.delay_ms = 1000;
        c.providers.local.concurrency = 1;
    };
    let app = spawn_app_with(tweak).await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a mug", "imageCount": 3,
                      "productImage": common::small_png()});
    let job_id = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    wait_unit_running(&app, &user.access_token, &job_id, 0).await;
    let dir = app.stop_keeping_data().await;
    // The same database, with its queued units now naming a provider this server does
    // not run (as after an operator removed a provider's key).
    let db = rusqlite::Connection::open(dir.path().join("atelier.db")).unwrap();
    db.execute(
        "UPDATE generation_tasks SET provider = 'openrouter' WHERE job_id = ?1",
        [&job_id],
    )
    .unwrap();
    drop(db);
    let app = restart(dir, tweak).await;
    let job = app.wait_job(&user.access_token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_code"], "MODEL_UNAVAILABLE", "{job}");
    assert_eq!(app.credits(&user.access_token).await["held"], 0);
    assert_eq!(app.credits(&user.access_token).await["available"], 30);
    assert_audit_clean(&app);
}

/// Suspicion: the idempotency fingerprint covered `fe_attempt` and `trace_id`, so a
/// client retry that bumps its attempt got 409. Confirmed; now it replays the job.
#[tokio::test]
async fn a_client_retry_that_bumps_its_attempt_replays_the_job() {
    let app = spawn_app_with(|c| money_config(c, 1)).await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a mug", "productImage": common::small_png(),
                      "client_job_id": "ui-1", "fe_attempt": 1, "trace_id": "t-1"});
    let first = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    let retry = common::with(&body, json!({"fe_attempt": 2, "trace_id": "t-2"}));
    let second = app
        .start_job("generate-image", &user.access_token, &retry)
        .await;
    assert_eq!(first, second);
    let changed = common::with(&body, json!({"prompt": "a bowl"}));
    let res = app
        .call("generate-image", &user.access_token, &changed)
        .await;
    assert_envelope(res, 409, "CONFLICT").await;
    assert_eq!(app.job_count(&user.access_token).await, 1);
}

/// Suspicion: from Stripe API 2025-03-31 a renewal's invoice carries no payment intent
/// and its charge no invoice, so a refund naming only the payment intent stayed parked
/// forever. Confirmed; `invoice_payment.paid` now links them (in either order), and an
/// event parked past a day raises a `/readyz` alarm and shows in the admin view.
#[tokio::test]
async fn a_renewal_refund_in_the_newer_stripe_shape_is_applied() {
    let app = spawn_app_with(|c| money_config(c, 1)).await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    deliver_ok(
        &app,
        &completed(
            "evt_b1",
            checkout_session("cs_b1", &user, STARTER_SUB, "subscription"),
        ),
    )
    .await;
    let renewal = event(
        "evt_b_renew",
        "invoice.paid",
        now_secs(),
        json!({"id": "in_b_r1", "billing_reason": "subscription_cycle", "amount_paid": 500,
               "currency": "usd", "parent": {"subscription_details": {"subscription": "sub_cs_b1",
               "metadata": {"user_id": user.id, "package_id": STARTER_SUB}}}}),
    );
    let refund = event(
        "evt_b_refund",
        "charge.refunded",
        now_secs(),
        json!({"id": "ch_b_r1", "object": "charge", "amount": 500, "amount_refunded": 500,
               "refunded": true, "payment_intent": "pi_b_r1", "currency": "usd"}),
    );
    let link = event(
        "evt_b_link",
        "invoice_payment.paid",
        now_secs(),
        json!({"id": "inpay_b1", "object": "invoice_payment", "invoice": "in_b_r1",
               "payment": {"type": "payment_intent", "payment_intent": "pi_b_r1"},
               "status": "paid", "amount_paid": 500, "currency": "usd"}),
    );
    // The link first (before its invoice), then the refund, then the invoice.
    deliver_ok(&app, &link).await;
    deliver_ok(&app, &refund).await;
    let before = app.credits(&user.access_token).await["subscription"].clone();
    assert_eq!(before, 275, "first period and its bonus");
    deliver_ok(&app, &renewal).await;
    let credits = app.credits(&user.access_token).await;
    assert_eq!(
        credits["subscription"], 275,
        "renewed, then refunded: {credits}"
    );
    let events = json_with_status(
        app.get(
            "/v1/admin/webhook-events?result=parked",
            Some(&admin.access_token),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(events["events"], json!([]), "nothing left waiting");
    assert_audit_clean(&app);

    // A refund of a payment never seen waits; a day later it raises an alarm.
    let orphan = event(
        "evt_orphan",
        "charge.refunded",
        now_secs(),
        json!({"id": "ch_orphan", "object": "charge", "amount": 500, "amount_refunded": 500,
               "refunded": true, "payment_intent": "pi_never_seen"}),
    );
    deliver_ok(&app, &orphan).await;
    let ready = json_with_status(app.get("/readyz", None).await, 200).await;
    assert_eq!(ready["queue"]["stale_parked_stripe_events"], 0, "{ready}");
    let db = &app.running.as_ref().unwrap().state.db;
    db.transaction(|conn| {
        conn.execute(
            "UPDATE stripe_events SET received_at = received_at - 90000000 WHERE id = 'evt_orphan'",
            [],
        )
        .map(|_| ())
        .map_err(atelier::db::DbError::from)
    })
    .unwrap();
    let ready = app.get("/readyz", None).await;
    let body: Value = ready.json().await.unwrap();
    let alarms = body.to_string();
    assert!(alarms.contains("parked for over 24 h"), "{body}");
    let events = json_with_status(
        app.get(
            "/v1/admin/webhook-events?result=parked",
            Some(&admin.access_token),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(events["events"][0]["id"], "evt_orphan", "{events}");
    assert_eq!(events["events"][0]["wait_for"], "pi_never_seen");
    assert!(events["events"][0]["age_seconds"].as_i64().unwrap() >= 90_000);
}

/// Suspicion: a unit's timeout started when it got a provider slot, its lease at the
/// claim, so a unit waiting behind a call that had run out of time could outlive its
/// lease and be sent twice. Confirmed by reading; the timeout now covers the wait. Unit
/// 0 runs out of time at 1 s but holds the only slot until 2.5 s; unit 1, dispatched at
/// 1 s, ends at 2 s still waiting for the slot, within its lease (1 s + 30 s).
#[tokio::test]
async fn a_units_timeout_covers_its_wait_for_a_provider_slot() {
    let app = spawn_app_with(|c| {
        money_config(c, 1);
        c.providers.local.concurrency = 1;
        c.providers.local.timeout_secs = 1;
        c.providers.local.delay_ms = 2500;
        c.queue.max_attempts = 1;
    })
    .await;
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a mug", "imageCount": 2,
                      "productImage": common::small_png()});
    let job = app
        .run_job(&user.access_token, "generate-image", &body)
        .await;
    let units = job["result_data"]["units"].as_array().unwrap();
    let message = |i: usize| {
        units[i]["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(message(0).contains("did not answer within 1 s"), "{job}");
    assert!(
        message(1).contains("no free local slot within 1 s"),
        "{job}"
    );
    assert_eq!(app.credits(&user.access_token).await["available"], 30);
    assert_audit_clean(&app);
}

//! The package list: a new database sells the reference's current set, an existing one
//! keeps its own (price ids moved to their per-currency columns) until an operator resets
//! it; packages change from the admin API and the CLI with no restart; a pack's first
//! purchase bonus is granted once and reversed with its refund.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use billing_support::*;
use common::{assert_envelope, json_with_status, spawn_app_with, test_config, TestApp, TestUser};
use fake_stripe::{event, now_secs, WEBHOOK_SECRET};
use serde_json::{json, Value};

const TOPUP_5: &str = "0190a000-0000-7000-8000-000000000101";

async fn admin_packages(app: &TestApp, admin: &TestUser) -> Vec<Value> {
    let body = json_with_status(
        app.get("/v1/admin/packages", Some(&admin.access_token))
            .await,
        200,
    )
    .await;
    body["packages"].as_array().unwrap().clone()
}

async fn put(app: &TestApp, admin: &TestUser, id: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/admin/packages/{id}")))
        .bearer_auth(&admin.access_token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn public_names(app: &TestApp) -> Vec<String> {
    let body = json_with_status(app.get("/v1/packages", None).await, 200).await;
    body["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn packages_change_from_the_admin_api_without_a_restart() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.new_admin().await;
    let seller = app.new_user().await;
    assert_envelope(
        app.get("/v1/admin/packages", Some(&seller.access_token))
            .await,
        403,
        "FORBIDDEN",
    )
    .await;
    let all = admin_packages(&app, &admin).await;
    assert_eq!(all.len(), 6);
    assert!(all
        .iter()
        .all(|p| p["stripe_price_id"].is_null() && p["stripe_price_id_cny"].is_null()));

    let changed = json_with_status(
        put(
            &app,
            &admin,
            TOPUP_5,
            json!({"credits": 1500, "stripe_price_id_cny": "price_cny_5",
            "stripe_price_id_hkd": "price_hkd_5"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(changed["credits"], 1500);
    assert_eq!(changed["stripe_price_id_cny"], "price_cny_5");
    let public = json_with_status(app.get("/v1/packages", None).await, 200).await;
    assert_eq!(public["packages"][0]["credits"], 1500, "{public}");
    // A cleared price id; a bad value names its field; unknown packages are 404.
    let cleared = json_with_status(
        put(&app, &admin, "topup_5", json!({"stripe_price_id_hkd": ""})).await,
        200,
    )
    .await;
    assert!(cleared["stripe_price_id_hkd"].is_null());
    let bad = assert_envelope(
        put(&app, &admin, TOPUP_5, json!({"credits": 0})).await,
        400,
        "BAD_REQUEST",
    )
    .await;
    assert_eq!(bad["error"]["details"]["field"], "credits");
    assert_envelope(
        put(&app, &admin, "nope", json!({"credits": 5})).await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_envelope(
        put(&app, &admin, TOPUP_5, json!({"colour": "red"})).await,
        400,
        "BAD_REQUEST",
    )
    .await;

    let added = json_with_status(
        app.post_json(
            "/v1/admin/packages",
            Some(&admin.access_token),
            &json!({"name": "topup_100",
            "type": "one_time", "price_usd_cents": 10000, "credits": 25000, "sort_order": 3}),
        )
        .await,
        200,
    )
    .await;
    assert!(public_names(&app).await.contains(&"topup_100".to_string()));
    json_with_status(
        put(
            &app,
            &admin,
            added["id"].as_str().unwrap(),
            json!({"active": false}),
        )
        .await,
        200,
    )
    .await;
    assert!(!public_names(&app).await.contains(&"topup_100".to_string()));
    let reset = json_with_status(
        app.post_json(
            "/v1/admin/packages/reset-to-defaults",
            Some(&admin.access_token),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(reset["packages"][0]["credits"], 1250);
    assert_eq!(
        reset["packages"][0]["stripe_price_id_cny"], "price_cny_5",
        "price ids are kept"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_existing_database_keeps_its_packages_until_reset_to_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    // A database of the release before this one, with an operator's price id.
    {
        let conn = rusqlite::Connection::open(config.database_path()).unwrap();
        atelier::db::migrate::migrate_to(&conn, 7).unwrap();
        conn.execute(
            "UPDATE packages SET stripe_price_ids = '{\"usd\":\"price_old\",\"hkd\":\"price_old_hkd\"}'
             WHERE name = 'Starter'",
            [],
        )
        .unwrap();
    }
    let running = atelier::app::start(config).await.unwrap();
    let app = TestApp::adopt(running, dir);
    assert_eq!(
        public_names(&app).await,
        [
            "Starter",
            "Professional",
            "Enterprise",
            "Starter Pack",
            "Professional Pack",
            "Enterprise Pack"
        ]
    );
    let admin = app.new_admin().await;
    let all = admin_packages(&app, &admin).await;
    let starter = all.iter().find(|p| p["name"] == "Starter").unwrap();
    assert_eq!(starter["stripe_price_id"], "price_old");
    assert_eq!(starter["stripe_price_id_hkd"], "price_old_hkd");
    assert!(starter["stripe_price_id_cny"].is_null());
    json_with_status(
        app.post_json(
            "/v1/admin/packages/reset-to-defaults",
            Some(&admin.access_token),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        public_names(&app).await,
        [
            "topup_5",
            "topup_15",
            "topup_30",
            "monthly",
            "quarterly",
            "yearly"
        ]
    );
    assert_eq!(
        admin_packages(&app, &admin).await.len(),
        12,
        "the old ones are kept, inactive"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_packs_first_purchase_bonus_is_granted_once_and_reversed_with_its_refund() {
    let app = spawn_app_with(|c| c.billing.webhook_secret = Some(WEBHOOK_SECRET.into())).await;
    let admin = app.new_admin().await;
    json_with_status(
        put(&app, &admin, TOPUP_5, json!({"first_sub_bonus": 100})).await,
        200,
    )
    .await;
    let buyer = app.new_user().await;
    for n in 1..=2 {
        deliver_ok(
            &app,
            &completed(
                &format!("evt_fp_{n}"),
                checkout_session(&format!("cs_fp_{n}"), &buyer, TOPUP_5, "payment"),
            ),
        )
        .await;
    }
    assert_eq!(
        app.credits(&buyer.access_token).await["purchased"],
        30 + 1250 * 2 + 100
    );
    deliver_ok(
        &app,
        &event(
            "evt_fp_ref",
            "charge.refunded",
            now_secs(),
            json!({"id": "ch_fp",
        "object": "charge", "amount": 500, "amount_refunded": 500, "refunded": true,
        "payment_intent": "pi_cs_fp_1"}),
        ),
    )
    .await;
    assert_eq!(
        app.credits(&buyer.access_token).await["purchased"],
        30 + 1250
    );
    assert_audit_clean(&app);
    app.stop().await;
}

/// Runs `atelier` in `dir` with a clean `ATELIER_*` environment.
fn atelier(dir: &std::path::Path, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("ATELIER_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd.output().expect("run atelier");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "atelier {args:?} failed:\n{text}");
    text
}

#[test]
fn packages_and_codes_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| atelier(dir.path(), args);
    let list = run(&["packages", "list"]);
    assert!(
        list.contains("topup_5") && list.contains("29100 credits"),
        "{list}"
    );
    let out = run(&[
        "packages",
        "set",
        "--package",
        "yearly",
        "--credits",
        "30000",
        "--price-id",
        "price_y",
    ]);
    assert!(
        out.contains("30000 credits") && out.contains("usd=price_y"),
        "{out}"
    );
    let out = run(&[
        "packages",
        "add",
        "--name",
        "topup_100",
        "--type",
        "one_time",
        "--price-cents",
        "10000",
        "--credits",
        "25000",
    ]);
    assert!(out.contains("topup_100"), "{out}");
    let out = run(&["packages", "reset-to-defaults"]);
    assert!(
        out.contains("29100 credits") && out.contains("usd=price_y"),
        "{out}"
    );
    assert!(!out.contains("topup_100"), "{out}");

    let out = run(&[
        "codes",
        "create",
        "--code",
        "launch",
        "--credits",
        "40",
        "--max-uses",
        "3",
    ]);
    assert!(
        out.contains("LAUNCH (40 credits, 3 use(s)) created"),
        "{out}"
    );
    let generated = run(&["codes", "create", "--credits", "5"]);
    assert!(generated.starts_with("redeem code "), "{generated}");
    let list = run(&["codes", "list"]);
    assert!(
        list.contains("LAUNCH\t40 credits\t0/3 used\tactive"),
        "{list}"
    );
    run(&["codes", "deactivate", "launch"]);
    assert!(run(&["codes", "list"]).contains("LAUNCH\t40 credits\t0/3 used\tinactive"));
}

//! Shared helpers of the billing tests: apps in simulated and stripe mode, signed
//! deliveries, event builders, the audit invariant.
#![allow(dead_code)]

use crate::common::{json_with_status, spawn_app_with, TestApp, TestUser};
use crate::fake_stripe::{self, event, now_secs, sign, FakeStripe, SECRET_KEY, WEBHOOK_SECRET};
use atelier::config::Config;
use atelier::db::packages;
use serde_json::{json, Value};

pub const STARTER_SUB: &str = "0190a000-0000-7000-8000-000000000001";
pub const PRO_SUB: &str = "0190a000-0000-7000-8000-000000000002";
pub const STARTER_PACK: &str = "0190a000-0000-7000-8000-000000000004";
pub const PRO_PACK: &str = "0190a000-0000-7000-8000-000000000005";

/// The package set the billing tests are written against (Atelier's first defaults,
/// with first-subscription bonuses), put on sale the way an operator would.
pub fn fixture_packages(app: &TestApp) {
    let set: Vec<packages::Package> = [
        (
            STARTER_SUB,
            "Starter",
            "subscription",
            500,
            250,
            25,
            false,
            1,
        ),
        (
            PRO_SUB,
            "Professional",
            "subscription",
            2000,
            1200,
            120,
            true,
            2,
        ),
        (
            "0190a000-0000-7000-8000-000000000003",
            "Enterprise",
            "subscription",
            10000,
            7000,
            700,
            false,
            3,
        ),
        (
            STARTER_PACK,
            "Starter Pack",
            "one_time",
            500,
            250,
            0,
            false,
            4,
        ),
        (
            PRO_PACK,
            "Professional Pack",
            "one_time",
            2000,
            1200,
            0,
            true,
            5,
        ),
        (
            "0190a000-0000-7000-8000-000000000006",
            "Enterprise Pack",
            "one_time",
            10000,
            7000,
            0,
            false,
            6,
        ),
    ]
    .into_iter()
    .map(
        |(id, name, kind, price, credits, bonus, popular, sort)| packages::Package {
            id: id.into(),
            name: name.into(),
            kind: kind.into(),
            price_usd_cents: price,
            credits,
            first_sub_bonus: bonus,
            is_popular: popular,
            sort_order: sort,
            active: true,
            ..Default::default()
        },
    )
    .collect();
    let db = &app.running.as_ref().unwrap().state.db;
    db.transaction(|conn| {
        packages::replace_active_set(conn, &set, 1)?;
        // Their Alipay prices as migration 8 seeded them (7.2 × the USD cents), 30 days.
        for p in &set {
            let fen = (p.price_usd_cents > 0).then_some(p.price_usd_cents * 72 / 10);
            atelier::db::alipay::set_package_terms(conn, &p.id, fen, 30)?;
        }
        Ok::<_, atelier::db::DbError>(())
    })
    .expect("fixture packages");
}

/// Simulated mode with a known webhook secret, so tests can sign events.
pub async fn simulated_app() -> TestApp {
    let app = spawn_app_with(|c| c.billing.webhook_secret = Some(WEBHOOK_SECRET.into())).await;
    fixture_packages(&app);
    app
}

pub fn stripe_config(c: &mut Config, fake: &FakeStripe) {
    c.billing.mode = "stripe".into();
    c.billing.secret_key = Some(SECRET_KEY.into());
    c.billing.webhook_secret = Some(WEBHOOK_SECRET.into());
    c.billing.api_base = fake.base.clone();
    c.billing.app_url = "https://app.example".into();
}

/// `stripe` mode against a fresh fake, with usd prices on every package and hkd on two.
pub async fn stripe_app() -> (TestApp, FakeStripe) {
    let fake = fake_stripe::start().await;
    let app = spawn_app_with(|c| stripe_config(c, &fake)).await;
    fixture_packages(&app);
    let db = &app.running.as_ref().unwrap().state.db;
    for (id, currency, price) in [
        (STARTER_SUB, "usd", "price_starter_usd"),
        (PRO_SUB, "usd", "price_pro_usd"),
        (STARTER_PACK, "usd", "price_pack_usd"),
        (STARTER_PACK, "hkd", "price_pack_hkd"),
        (PRO_PACK, "usd", "price_missing_pro_pack"),
    ] {
        assert!(db
            .transaction(|conn| packages::set_stripe_price(conn, id, currency, price))
            .unwrap());
    }
    (app, fake)
}

pub async fn post_signed(app: &TestApp, payload: &[u8], header: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/functions/v1/stripe-webhook"))
        .header("content-type", "application/json")
        .body(payload.to_vec());
    if let Some(header) = header {
        req = req.header("stripe-signature", header);
    }
    req.send().await.expect("request")
}

/// Posts an event signed now with the test webhook secret.
pub async fn deliver(app: &TestApp, event: &Value) -> reqwest::Response {
    let payload = serde_json::to_vec(event).unwrap();
    let header = sign(&payload, WEBHOOK_SECRET, now_secs());
    post_signed(app, &payload, Some(&header)).await
}

pub async fn deliver_ok(app: &TestApp, event: &Value) {
    let body = json_with_status(deliver(app, event).await, 200).await;
    assert_eq!(body, json!({"ok": true}));
}

pub fn checkout_session(id: &str, user: &TestUser, package: &str, mode: &str) -> Value {
    let subscription = mode == "subscription";
    json!({
        "id": id, "object": "checkout.session", "mode": mode, "status": "complete",
        "payment_status": "paid", "customer": format!("cus_{id}"),
        "customer_details": {"email": user.email}, "client_reference_id": user.id,
        "subscription": if subscription { json!(format!("sub_{id}")) } else { Value::Null },
        "invoice": if subscription { json!(format!("in_first_{id}")) } else { Value::Null },
        "payment_intent": if subscription { Value::Null } else { json!(format!("pi_{id}")) },
        "amount_total": 500, "currency": "usd",
        "metadata": {"user_id": user.id, "package_id": package,
            "purchase_type": if subscription { "subscription" } else { "one_time" }},
    })
}

pub fn completed(evt: &str, session: Value) -> Value {
    event(evt, "checkout.session.completed", now_secs(), session)
}

/// The audit invariants (`atelier audit`'s checks): every account equals the sum of its
/// ledger rows, none negative, nothing available while in debt, holds match the jobs,
/// every unit settled once.
pub fn assert_audit_clean(app: &TestApp) {
    let db = &app.running.as_ref().unwrap().state.db;
    let report = db.with_conn(atelier::ops::audit::audit).unwrap();
    assert!(report.problems.is_empty(), "audit: {:#?}", report.problems);
}

pub async fn ledger_entries(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let body = json_with_status(
        app.get("/v1/ledger?limit=100", Some(&user.access_token))
            .await,
        200,
    )
    .await;
    body["entries"].as_array().unwrap().clone()
}

pub async fn transactions(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let body = json_with_status(
        app.get("/v1/billing/transactions", Some(&user.access_token))
            .await,
        200,
    )
    .await;
    body["transactions"].as_array().unwrap().clone()
}

pub async fn me(app: &TestApp, user: &TestUser) -> Value {
    json_with_status(app.get("/v1/me", Some(&user.access_token)).await, 200).await
}

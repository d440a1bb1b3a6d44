//! Billing over HTTP against the real server: the simulated checkout end to end, the
//! `stripe` mode against a fake Stripe (exact form fields, errors, idempotency), and
//! webhooks — signatures, exactly-once under 50 concurrent deliveries, out-of-order
//! events, refunds after spending (debt), subscription status.

mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use atelier::config::Config;
use atelier::db::{ledger, packages};
use common::{assert_envelope, json_with_status, spawn_app_with, TestApp, TestUser};
use fake_stripe::{event, now_secs, sign, FakeStripe, Scripted, SECRET_KEY, WEBHOOK_SECRET};
use serde_json::{json, Value};

const STARTER_SUB: &str = "0190a000-0000-7000-8000-000000000001";
const PRO_SUB: &str = "0190a000-0000-7000-8000-000000000002";
const STARTER_PACK: &str = "0190a000-0000-7000-8000-000000000004";
const PRO_PACK: &str = "0190a000-0000-7000-8000-000000000005";

/// Simulated mode with a known webhook secret, so tests can sign events.
async fn simulated_app() -> TestApp {
    spawn_app_with(|c| c.billing.webhook_secret = Some(WEBHOOK_SECRET.into())).await
}

fn stripe_config(c: &mut Config, fake: &FakeStripe) {
    c.billing.mode = "stripe".into();
    c.billing.secret_key = Some(SECRET_KEY.into());
    c.billing.webhook_secret = Some(WEBHOOK_SECRET.into());
    c.billing.api_base = fake.base.clone();
    c.billing.app_url = "https://app.example".into();
}

/// `stripe` mode against a fresh fake, with usd prices on every package and hkd on two.
async fn stripe_app() -> (TestApp, FakeStripe) {
    let fake = fake_stripe::start().await;
    let app = spawn_app_with(|c| stripe_config(c, &fake)).await;
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

async fn post_signed(app: &TestApp, payload: &[u8], header: Option<&str>) -> reqwest::Response {
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
async fn deliver(app: &TestApp, event: &Value) -> reqwest::Response {
    let payload = serde_json::to_vec(event).unwrap();
    let header = sign(&payload, WEBHOOK_SECRET, now_secs());
    post_signed(app, &payload, Some(&header)).await
}

async fn deliver_ok(app: &TestApp, event: &Value) {
    let body = json_with_status(deliver(app, event).await, 200).await;
    assert_eq!(body, json!({"ok": true}));
}

fn checkout_session(id: &str, user: &TestUser, package: &str, mode: &str) -> Value {
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

fn completed(evt: &str, session: Value) -> Value {
    event(evt, "checkout.session.completed", now_secs(), session)
}

/// The audit invariant: every account equals the sum of its ledger rows, none negative.
fn assert_audit_clean(app: &TestApp) {
    let db = &app.running.as_ref().unwrap().state.db;
    for (user, from_ledger, stored) in db.with_conn(ledger::recompute_all).unwrap() {
        assert_eq!(
            from_ledger, stored,
            "account {user} differs from its ledger"
        );
        assert!(stored.available() >= 0, "account {user} is negative");
    }
}

async fn ledger_entries(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let body = json_with_status(
        app.get("/v1/ledger?limit=100", Some(&user.access_token))
            .await,
        200,
    )
    .await;
    body["entries"].as_array().unwrap().clone()
}

async fn transactions(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let body = json_with_status(
        app.get("/v1/billing/transactions", Some(&user.access_token))
            .await,
        200,
    )
    .await;
    body["transactions"].as_array().unwrap().clone()
}

async fn me(app: &TestApp, user: &TestUser) -> Value {
    json_with_status(app.get("/v1/me", Some(&user.access_token)).await, 200).await
}

// ------------------------------------------------------------------ simulated mode

/// Simulated mode end to end over HTTP: checkout → page → Pay → credits in `/v1/me`.
#[tokio::test]
async fn simulated_checkout_pay_grants_credits() {
    let app = common::spawn_app().await;
    let user = app.new_user().await;
    let body = json!({"packageId": STARTER_PACK, "returnTo": "/studio"});
    let res = app
        .call("create-onetime-checkout", &user.access_token, &body)
        .await;
    let session = json_with_status(res, 200).await;
    let id = session["id"].as_str().unwrap();
    let url = session["url"].as_str().unwrap();
    assert!(id.starts_with("cs_sim_"), "{session}");
    assert_eq!(url, app.url(&format!("/dev/checkout/{id}")));

    let page = app.client.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Starter Pack") && html.contains("5.00 USD") && html.contains("250"));

    let pay = app.client.post(format!("{url}/pay")).send().await.unwrap();
    assert_eq!(pay.status(), 303);
    assert_eq!(
        pay.headers()["location"],
        "http://127.0.0.1:8787/studio?success=true"
    );
    let credits = app.credits(&user.access_token).await;
    assert_eq!(credits["purchased"], 30 + 250);
    assert_eq!(credits["available"], 280);

    // Pay again: nothing more; the page no longer offers Pay.
    let again = app.client.post(format!("{url}/pay")).send().await.unwrap();
    assert_eq!(again.status(), 303);
    assert_eq!(app.credits(&user.access_token).await["purchased"], 280);
    let html = app
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("/pay"));

    let list = transactions(&app, &user).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["type"], "one_time");
    assert_eq!(list[0]["credits"], 250);
    assert_eq!(list[0]["amount"], 500);
    let grant = ledger_entries(&app, &user).await;
    assert!(grant[0]["stripe_event_id"]
        .as_str()
        .unwrap()
        .starts_with("evt_sim_"));
    assert_audit_clean(&app);
}

/// A simulated subscription: credits, the first-subscription bonus, the plan in /v1/me,
/// the simulated portal; Cancel leads back without charging.
#[tokio::test]
async fn simulated_subscription_and_cancel() {
    let app = common::spawn_app().await;
    let user = app.new_user().await;
    let res = app
        .call("create-portal-session", &user.access_token, &json!({}))
        .await;
    assert_envelope(res, 404, "NO_SUBSCRIPTION").await;

    let body = json!({"packageId": PRO_SUB});
    let first = json_with_status(
        app.call("create-credit-checkout", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    let cancel = app
        .client
        .post(format!("{}/cancel", first["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 303);
    assert_eq!(
        cancel.headers()["location"],
        "http://127.0.0.1:8787/pricing?canceled=true"
    );
    let paid_after_cancel = app
        .client
        .post(format!("{}/pay", first["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_envelope(paid_after_cancel, 409, "CONFLICT").await;
    assert_eq!(app.credits(&user.access_token).await["subscription"], 0);

    let second = json_with_status(
        app.call("create-credit-checkout", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    let pay = app
        .client
        .post(format!("{}/pay", second["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status(), 303);
    let me = me(&app, &user).await;
    assert_eq!(me["credits"]["subscription"], 1200 + 120, "{me}");
    assert_eq!(me["subscription"]["plan"], "Professional");
    assert_eq!(me["subscription"]["status"], "active");

    let portal = json_with_status(
        app.call("create-portal-session", &user.access_token, &json!({}))
            .await,
        200,
    )
    .await;
    let page = app
        .client
        .get(portal["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("active"));
    assert_audit_clean(&app);
}

/// Checkout bodies and packages are checked before anything is created.
#[tokio::test]
async fn checkout_requests_are_validated() {
    let app = common::spawn_app().await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let cases = [
        (
            "create-onetime-checkout",
            json!({"packageId": STARTER_SUB}),
            404,
            "NOT_FOUND",
        ),
        (
            "create-credit-checkout",
            json!({"packageId": STARTER_PACK}),
            404,
            "NOT_FOUND",
        ),
        (
            "create-onetime-checkout",
            json!({"packageId": "0190a000-0000-7000-8000-0000000000ff"}),
            404,
            "NOT_FOUND",
        ),
        ("create-onetime-checkout", json!({}), 400, "BAD_REQUEST"),
        (
            "create-onetime-checkout",
            json!({"packageId": STARTER_PACK, "returnTo": "https://evil.example"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "create-onetime-checkout",
            json!({"packageId": STARTER_PACK, "returnTo": "//evil.example"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "create-onetime-checkout",
            json!({"packageId": STARTER_PACK, "currency": "eur"}),
            400,
            "BAD_REQUEST",
        ),
        (
            "create-onetime-checkout",
            json!({"packageId": STARTER_PACK, "coupon": "x"}),
            400,
            "BAD_REQUEST",
        ),
    ];
    for (function, body, status, code) in cases {
        let res = app.call(function, token, &body).await;
        assert_envelope(res, status, code).await;
    }
    let res = app
        .post_json(
            "/functions/v1/create-onetime-checkout",
            None,
            &json!({"packageId": STARTER_PACK}),
        )
        .await;
    assert_envelope(res, 401, "UNAUTHORIZED").await;
    let res = app.get("/v1/billing/transactions", None).await;
    assert_envelope(res, 401, "UNAUTHORIZED").await;
    let res = app
        .client
        .get(app.url("/dev/checkout/cs_sim_nope"))
        .send()
        .await
        .unwrap();
    assert_envelope(res, 404, "NOT_FOUND").await;
}

// ------------------------------------------------------------------ stripe mode

/// The exact form fields, headers and answers of a subscription and a pack checkout.
#[tokio::test]
async fn stripe_checkout_sends_the_exact_form() {
    let (app, fake) = stripe_app().await;
    let user = app.new_user().await;
    let body = json!({"packageId": STARTER_SUB, "returnTo": "/pricing?tab=plans"});
    let answer = json_with_status(
        app.call("create-credit-checkout", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    assert_eq!(
        answer,
        json!({"id": "cs_test_fake1",
        "url": "https://checkout.stripe.test/c/pay/cs_test_fake1"})
    );
    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/checkout/sessions");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk_test_fake_123")
    );
    assert_eq!(sent.header("stripe-version"), Some("2025-03-31.basil"));
    assert_eq!(
        sent.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(sent
        .header("idempotency-key")
        .is_some_and(|k| !k.is_empty() && k.len() <= 255));
    let u = user.id.as_str();
    let want: Vec<(&str, &str)> = vec![
        ("mode", "subscription"),
        ("line_items[0][price]", "price_starter_usd"),
        ("line_items[0][quantity]", "1"),
        (
            "success_url",
            "https://app.example/pricing?tab=plans&success=true",
        ),
        (
            "cancel_url",
            "https://app.example/pricing?tab=plans&canceled=true",
        ),
        ("client_reference_id", u),
        ("customer_email", &user.email),
        ("metadata[user_id]", u),
        ("metadata[package_id]", STARTER_SUB),
        ("metadata[purchase_type]", "subscription"),
        ("subscription_data[metadata][user_id]", u),
        ("subscription_data[metadata][package_id]", STARTER_SUB),
        ("subscription_data[metadata][purchase_type]", "subscription"),
    ];
    let got: Vec<(&str, &str)> = sent
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, want);

    let body = json!({"packageId": STARTER_PACK, "currency": "hkd"});
    json_with_status(
        app.call("create-onetime-checkout", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    let sent = &fake.requests()[1];
    assert_eq!(sent.field("mode"), Some("payment"));
    assert_eq!(sent.field("line_items[0][price]"), Some("price_pack_hkd"));
    assert_eq!(
        sent.field("payment_intent_data[metadata][user_id]"),
        Some(u)
    );
    assert_eq!(
        sent.field("payment_intent_data[metadata][purchase_type]"),
        Some("one_time")
    );
    assert_eq!(sent.field("customer_creation"), Some("always"));
    assert_eq!(sent.field("subscription_data[metadata][user_id]"), None);
    assert_eq!(
        sent.field("success_url"),
        Some("https://app.example/pricing?success=true")
    );
    assert_ne!(
        sent.header("idempotency-key"),
        fake.requests()[0].header("idempotency-key")
    );

    // No price for the currency: refused before calling Stripe.
    let body = json!({"packageId": STARTER_SUB, "currency": "cny"});
    let res = app
        .call("create-credit-checkout", &user.access_token, &body)
        .await;
    assert_envelope(res, 400, "STRIPE_PACKAGE_MISSING_PRICE").await;
    assert_eq!(fake.requests().len(), 2);
}

/// Stripe refusing → 502 without retry; a 503 is retried with the same Idempotency-Key;
/// an unreachable Stripe → 502.
#[tokio::test]
async fn stripe_failures_answer_502_and_retries_keep_the_key() {
    let (app, fake) = stripe_app().await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let res = app
        .call(
            "create-onetime-checkout",
            token,
            &json!({"packageId": PRO_PACK}),
        )
        .await;
    assert_envelope(res, 502, "STRIPE_CHECKOUT_CREATE_FAILED").await;
    assert_eq!(fake.requests().len(), 1, "a 400 is not retried");

    fake.script(vec![FakeStripe::error(
        503,
        "api_error",
        "api_error",
        "Try again",
    )]);
    let res = app
        .call(
            "create-onetime-checkout",
            token,
            &json!({"packageId": STARTER_PACK}),
        )
        .await;
    let answer = json_with_status(res, 200).await;
    assert!(answer["id"].as_str().unwrap().starts_with("cs_test_"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[1].header("idempotency-key"),
        requests[2].header("idempotency-key")
    );
    assert_eq!(requests[1].body, requests[2].body);

    fake.script(vec![Scripted {
        status: 402,
        body: json!({"error": {"type": "card_error", "message": "declined"}}),
        delay: std::time::Duration::ZERO,
    }]);
    let res = app
        .call(
            "create-credit-checkout",
            token,
            &json!({"packageId": STARTER_SUB}),
        )
        .await;
    assert_envelope(res, 502, "STRIPE_CHECKOUT_CREATE_FAILED").await;

    let down = spawn_app_with(|c| {
        stripe_config(c, &fake);
        c.billing.api_base = "http://127.0.0.1:9".into();
        c.billing.max_attempts = 2;
    })
    .await;
    let db = &down.running.as_ref().unwrap().state.db;
    db.transaction(|conn| packages::set_stripe_price(conn, STARTER_PACK, "usd", "price_x"))
        .unwrap();
    let other = down.new_user().await;
    let res = down
        .call(
            "create-onetime-checkout",
            &other.access_token,
            &json!({"packageId": STARTER_PACK}),
        )
        .await;
    assert_envelope(res, 502, "STRIPE_CHECKOUT_CREATE_FAILED").await;
}

/// After a checkout the customer is reused: the portal and the next checkout name it.
#[tokio::test]
async fn stripe_portal_and_checkout_reuse_the_customer() {
    let (app, fake) = stripe_app().await;
    let user = app.new_user().await;
    let token = &user.access_token;
    let res = app.call("create-portal-session", token, &json!({})).await;
    assert_envelope(res, 404, "NO_SUBSCRIPTION").await;

    deliver_ok(
        &app,
        &completed(
            "evt_c1",
            checkout_session("cs_1", &user, STARTER_SUB, "subscription"),
        ),
    )
    .await;
    let portal = json_with_status(
        app.call("create-portal-session", token, &json!({})).await,
        200,
    )
    .await;
    assert!(portal["url"]
        .as_str()
        .unwrap()
        .starts_with("https://billing.stripe.test/p/session/bps_"));
    let sent = fake.requests().last().unwrap().clone();
    assert_eq!(sent.path, "/v1/billing_portal/sessions");
    let got: Vec<(&str, &str)> = sent
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("customer", "cus_cs_1"),
            ("return_url", "https://app.example/pricing")
        ]
    );

    json_with_status(
        app.call(
            "create-onetime-checkout",
            token,
            &json!({"packageId": STARTER_PACK}),
        )
        .await,
        200,
    )
    .await;
    let sent = fake.requests().last().unwrap().clone();
    assert_eq!(sent.field("customer"), Some("cus_cs_1"));
    assert_eq!(sent.field("customer_email"), None);
    assert_eq!(sent.field("customer_creation"), None);

    fake.script(vec![FakeStripe::error(
        400,
        "invalid_request_error",
        "resource_missing",
        "No configuration provided",
    )]);
    let res = app.call("create-portal-session", token, &json!({})).await;
    assert_envelope(res, 502, "PORTAL_CREATE_FAILED").await;
}

// ------------------------------------------------------------------ webhooks

/// Signature checks over HTTP; a stripe-mode server without a webhook secret → 500.
#[tokio::test]
async fn webhook_signatures_are_checked() {
    let app = simulated_app().await;
    let user = app.new_user().await;
    let ev = completed(
        "evt_sig",
        checkout_session("cs_sig", &user, STARTER_PACK, "payment"),
    );
    let payload = serde_json::to_vec(&ev).unwrap();
    let t = now_secs();
    let good = sign(&payload, WEBHOOK_SECRET, t);
    let v1 = good.split("v1=").nth(1).unwrap().to_string();
    let mut tampered = payload.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 1;
    let bad_headers: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("nonsense".into()),
        Some(format!("t={t}")),
        Some(format!("t=soon,v1={v1}")),
        Some(format!("t={t},v0={v1}")),
        Some(sign(&payload, "whsec_wrong", t)),
        Some(sign(&payload, WEBHOOK_SECRET, t - 301)),
    ];
    for header in bad_headers {
        let res = post_signed(&app, &payload, header.as_deref()).await;
        assert_envelope(res, 400, "STRIPE_SIGNATURE_INVALID").await;
    }
    let res = post_signed(&app, &tampered, Some(&good)).await;
    assert_envelope(res, 400, "STRIPE_SIGNATURE_INVALID").await;
    assert_eq!(app.credits(&user.access_token).await["purchased"], 30);

    // Two v1 entries (secret rotation) where only the second matches.
    let rotated = format!("t={t},v1={},v1={v1}", "0".repeat(64));
    let res = post_signed(&app, &payload, Some(&rotated)).await;
    assert_eq!(json_with_status(res, 200).await, json!({"ok": true}));
    assert_eq!(app.credits(&user.access_token).await["purchased"], 280);

    let fake = fake_stripe::start().await;
    let unconfigured = spawn_app_with(|c| {
        stripe_config(c, &fake);
        c.billing.webhook_secret = None;
    })
    .await;
    let res = post_signed(&unconfigured, &payload, Some(&good)).await;
    assert_envelope(res, 500, "INTERNAL_ERROR").await;
}

/// One signed event posted 50 times at once: credits granted once, only 200/409.
#[tokio::test]
async fn the_same_event_fifty_times_concurrently_grants_once() {
    let app = simulated_app().await;
    let user = app.new_user().await;
    let ev = completed(
        "evt_dup",
        checkout_session("cs_dup", &user, STARTER_PACK, "payment"),
    );
    let payload = serde_json::to_vec(&ev).unwrap();
    let header = sign(&payload, WEBHOOK_SECRET, now_secs());
    let sends = (0..50).map(|_| post_signed(&app, &payload, Some(&header)));
    let answers = futures_util::future::join_all(sends).await;
    let mut ok = 0;
    for res in answers {
        match res.status().as_u16() {
            200 => ok += 1,
            409 => {
                assert_envelope(res, 409, "CONFLICT").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    eprintln!("fifty deliveries: {ok} x 200, {} x 409", 50 - ok);
    assert!(ok >= 1);
    // Whatever got a 409 is retried by Stripe later: still once.
    deliver_ok(&app, &ev).await;
    assert_eq!(app.credits(&user.access_token).await["purchased"], 30 + 250);
    let grants: Vec<Value> = ledger_entries(&app, &user)
        .await
        .into_iter()
        .filter(|e| e["stripe_event_id"] == "evt_dup")
        .collect();
    assert_eq!(grants.len(), 1);
    assert_eq!(transactions(&app, &user).await.len(), 1);
    assert_audit_clean(&app);
}

/// Refund after spending: the reversal takes what is available and records the rest
/// as debt; the next grant pays the debt first. Partial refunds are cumulative.
#[tokio::test]
async fn refund_after_spending_becomes_debt_paid_by_the_next_grant() {
    let app = simulated_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    deliver_ok(
        &app,
        &completed(
            "evt_buy1",
            checkout_session("cs_r1", &user, STARTER_PACK, "payment"),
        ),
    )
    .await;
    app.grant_credits(&admin, &user.id, -200).await; // spent: 280 → 80
    assert_eq!(app.credits(&user.access_token).await["available"], 80);

    let charge = |evt: &str, refunded: i64, full: bool| {
        event(
            evt,
            "charge.refunded",
            now_secs(),
            json!({"id": "ch_r1", "object": "charge",
            "amount": 500, "amount_refunded": refunded, "refunded": full,
            "payment_intent": "pi_cs_r1", "currency": "usd"}),
        )
    };
    deliver_ok(&app, &charge("evt_ref_full", 500, true)).await;
    let credits = app.credits(&user.access_token).await;
    assert_eq!(credits["available"], 0, "{credits}");
    let entries = ledger_entries(&app, &user).await;
    let reverse = &entries[0];
    assert_eq!(reverse["kind"], "reverse");
    assert_eq!(reverse["amount"], 250);
    assert_eq!(reverse["stripe_event_id"], "evt_ref_full");
    let db = &app.running.as_ref().unwrap().state.db;
    let debt = |db: &atelier::db::Db| {
        db.with_conn(|c| atelier::db::accounts::credits(c, &user.id))
            .unwrap()
            .unwrap()
            .debt
    };
    assert_eq!(debt(db), 170);
    let list = transactions(&app, &user).await;
    assert_eq!(list[0]["type"], "refund");
    assert_eq!(list[0]["credits"], 250);

    // The same refund again changes nothing.
    deliver_ok(&app, &charge("evt_ref_full_again", 500, true)).await;
    assert_eq!(debt(db), 170);

    deliver_ok(
        &app,
        &completed(
            "evt_buy2",
            checkout_session("cs_r2", &user, STARTER_PACK, "payment"),
        ),
    )
    .await;
    assert_eq!(debt(db), 0);
    assert_eq!(app.credits(&user.access_token).await["available"], 80);

    // Two partial refunds of the second payment, cumulative 100 then 300 of 500.
    let partial = |evt: &str, refunded: i64| {
        event(
            evt,
            "charge.refunded",
            now_secs(),
            json!({"id": "ch_r2", "object": "charge",
            "amount": 500, "amount_refunded": refunded, "refunded": false,
            "payment_intent": "pi_cs_r2"}),
        )
    };
    deliver_ok(&app, &partial("evt_p1", 100)).await;
    assert_eq!(app.credits(&user.access_token).await["available"], 30);
    deliver_ok(&app, &partial("evt_p2", 300)).await;
    let credits = app.credits(&user.access_token).await;
    assert_eq!(credits["available"], 0);
    assert_eq!(debt(db), 70, "150 reversed, 80 were available");
    assert_audit_clean(&app);
}

/// `invoice.paid` before `checkout.session.completed` loses nothing: a renewal with no
/// known subscription waits, the first invoice adds no credits of its own.
#[tokio::test]
async fn out_of_order_invoice_before_checkout_loses_nothing() {
    let app = simulated_app().await;
    let user = app.new_user().await;
    let first_invoice = event(
        "evt_inv_create",
        "invoice.paid",
        now_secs() - 5,
        json!({
        "id": "in_first_cs_o", "object": "invoice", "billing_reason": "subscription_create",
        "amount_paid": 500, "currency": "usd", "customer": "cus_cs_o",
        "parent": {"subscription_details": {"subscription": "sub_cs_o", "metadata": {}}},
        "payments": {"data": [{"payment": {"type": "payment_intent", "payment_intent": "pi_sub_o"}}]}}),
    );
    let renewal = event(
        "evt_inv_cycle",
        "invoice.paid",
        now_secs() - 4,
        json!({
        "id": "in_cycle_1", "object": "invoice", "billing_reason": "subscription_cycle",
        "amount_paid": 500, "currency": "usd", "customer": "cus_cs_o",
        "subscription": "sub_cs_o", "payment_intent": "pi_cycle_1",
        "lines": {"data": [{"period": {"start": 1, "end": 4102444800i64}}]}}),
    );
    deliver_ok(&app, &first_invoice).await;
    deliver_ok(&app, &renewal).await;
    assert_eq!(app.credits(&user.access_token).await["subscription"], 0);

    deliver_ok(
        &app,
        &completed(
            "evt_sub_o",
            checkout_session("cs_o", &user, STARTER_SUB, "subscription"),
        ),
    )
    .await;
    let me = me(&app, &user).await;
    assert_eq!(me["credits"]["subscription"], 250 + 25 + 250, "{me}");
    assert_eq!(me["subscription"]["status"], "active");
    assert_eq!(
        me["subscription"]["current_period_end"],
        "2100-01-01T00:00:00Z"
    );
    assert_eq!(transactions(&app, &user).await.len(), 2);

    // The parked events were applied; delivering them again changes nothing.
    deliver_ok(&app, &renewal).await;
    deliver_ok(&app, &first_invoice).await;
    assert_eq!(app.credits(&user.access_token).await["subscription"], 525);

    // The first invoice's payment intent (basil shape) now finds the subscription payment.
    deliver_ok(
        &app,
        &event(
            "evt_sub_refund",
            "charge.refunded",
            now_secs(),
            json!({
        "id": "ch_sub", "amount": 500, "amount_refunded": 500, "refunded": true,
        "payment_intent": "pi_sub_o"}),
        ),
    )
    .await;
    assert_eq!(
        app.credits(&user.access_token).await["subscription"],
        250,
        "plan and bonus reversed"
    );
    assert_audit_clean(&app);
}

/// Renewals grant once per invoice; the bonus comes with the first subscription only;
/// status follows updates (older ones ignored), deletion cancels.
#[tokio::test]
async fn renewals_bonus_and_subscription_status() {
    let app = simulated_app().await;
    let user = app.new_user().await;
    deliver_ok(
        &app,
        &completed(
            "evt_s1",
            checkout_session("cs_s1", &user, STARTER_SUB, "subscription"),
        ),
    )
    .await;
    let renewal = |evt: &str, invoice: &str| {
        event(
            evt,
            "invoice.paid",
            now_secs(),
            json!({
        "id": invoice, "billing_reason": "subscription_cycle", "amount_paid": 500,
        "currency": "usd", "parent": {"subscription_details": {"subscription": "sub_cs_s1",
            "metadata": {"user_id": user.id, "package_id": STARTER_SUB}}}}),
        )
    };
    deliver_ok(&app, &renewal("evt_r1", "in_r1")).await;
    deliver_ok(&app, &renewal("evt_r1_other_id", "in_r1")).await;
    assert_eq!(
        app.credits(&user.access_token).await["subscription"],
        250 + 25 + 250
    );

    let t = now_secs();
    let updated = |evt: &str, status: &str, created: i64| {
        event(
            evt,
            "customer.subscription.updated",
            created,
            json!({"id": "sub_cs_s1", "object": "subscription", "status": status,
            "items": {"data": [{"current_period_end": 4102444800i64}]}}),
        )
    };
    for (evt, status, created, want) in [
        ("evt_u1", "past_due", t + 10, "past_due"),
        ("evt_u_old", "active", t + 5, "past_due"),
        ("evt_u2", "trialing", t + 20, "active"),
        ("evt_u3", "unpaid", t + 30, "past_due"),
        ("evt_u4", "paused", t + 40, "canceled"),
        ("evt_u5", "active", t + 50, "active"),
    ] {
        deliver_ok(&app, &updated(evt, status, created)).await;
        assert_eq!(
            me(&app, &user).await["subscription"]["status"],
            want,
            "{evt}"
        );
    }
    let failed = event(
        "evt_f",
        "invoice.payment_failed",
        t + 60,
        json!({"id": "in_f",
        "subscription": "sub_cs_s1", "billing_reason": "subscription_cycle"}),
    );
    deliver_ok(&app, &failed).await;
    assert_eq!(me(&app, &user).await["subscription"]["status"], "past_due");
    let deleted = event(
        "evt_d",
        "customer.subscription.deleted",
        t + 70,
        json!({"id": "sub_cs_s1", "object": "subscription", "status": "canceled"}),
    );
    deliver_ok(&app, &deleted).await;
    assert_eq!(me(&app, &user).await["subscription"]["status"], "canceled");

    // A second subscription later: no second bonus.
    deliver_ok(
        &app,
        &completed(
            "evt_s2",
            checkout_session("cs_s2", &user, STARTER_SUB, "subscription"),
        ),
    )
    .await;
    assert_eq!(
        app.credits(&user.access_token).await["subscription"],
        525 + 250
    );
    assert_eq!(me(&app, &user).await["subscription"]["status"], "active");

    // Unknown types are recorded and acknowledged; unpaid sessions grant nothing.
    deliver_ok(
        &app,
        &event("evt_other", "customer.created", t, json!({"id": "cus_x"})),
    )
    .await;
    let mut unpaid = checkout_session("cs_unpaid", &user, STARTER_PACK, "payment");
    unpaid["payment_status"] = json!("unpaid");
    deliver_ok(&app, &completed("evt_unpaid", unpaid)).await;
    assert_eq!(app.credits(&user.access_token).await["purchased"], 30);
    assert_audit_clean(&app);
}

/// A failure mid-way rolls the whole event back: no credits, no record, so Stripe's
/// retry meets the same state.
#[tokio::test]
async fn a_failure_mid_way_rolls_everything_back() {
    let app = simulated_app().await;
    let user = app.new_user().await;
    deliver_ok(
        &app,
        &completed(
            "evt_a",
            checkout_session("cs_a", &user, STARTER_PACK, "payment"),
        ),
    )
    .await;
    // Another session claiming the same payment intent: the grant happens, then the
    // payment row is refused by its UNIQUE payment intent.
    let mut clash = checkout_session("cs_b", &user, STARTER_PACK, "payment");
    clash["payment_intent"] = json!("pi_cs_a");
    let ev = completed("evt_b", clash);
    for _ in 0..2 {
        let res = deliver(&app, &ev).await;
        assert_envelope(res, 500, "INTERNAL_ERROR").await;
        assert_eq!(app.credits(&user.access_token).await["purchased"], 280);
    }
    let db = &app.running.as_ref().unwrap().state.db;
    let recorded = db
        .with_conn(|c| atelier::db::billing::event_status(c, "evt_b"))
        .unwrap();
    assert_eq!(recorded, None);
    assert_audit_clean(&app);
}

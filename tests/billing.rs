//! Billing over HTTP against the real server: the simulated checkout end to end, and
//! the `stripe` mode against a fake Stripe (exact form fields, errors, idempotency,
//! customer reuse). Webhooks: `billing_webhooks.rs`.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use atelier::db::packages;
use billing_support::*;
use common::{assert_envelope, json_with_status, spawn_app_with};
use fake_stripe::{FakeStripe, Scripted};
use serde_json::json;

// ------------------------------------------------------------------ simulated mode

/// Simulated mode end to end over HTTP: checkout → page → Pay → credits in `/v1/me`.
#[tokio::test]
async fn simulated_checkout_pay_grants_credits() {
    let app = common::spawn_app().await;
    fixture_packages(&app);
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
        "http://127.0.0.1:8787/studio?success=true&type=onetime"
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
    let page = json_with_status(
        app.get("/v1/billing/transactions?limit=1", Some(&user.access_token))
            .await,
        200,
    )
    .await;
    assert_eq!(page["next"], list[0]["id"]);
    let path = format!(
        "/v1/billing/transactions?limit=1&before={}",
        list[0]["id"].as_str().unwrap()
    );
    let rest = json_with_status(app.get(&path, Some(&user.access_token)).await, 200).await;
    assert_eq!(rest["transactions"], json!([]));
    assert!(rest["next"].is_null());
    let res = app
        .get("/v1/billing/transactions?limit=0", Some(&user.access_token))
        .await;
    assert_envelope(res, 400, "BAD_REQUEST").await;
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
    fixture_packages(&app);
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
    fixture_packages(&app);
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
        ("allow_promotion_codes", "true"),
        ("client_reference_id", u),
        ("customer_email", &user.email),
        ("metadata[user_id]", u),
        ("metadata[package_id]", STARTER_SUB),
        ("metadata[purchase_type]", "subscription"),
        ("metadata[currency]", "usd"),
        ("subscription_data[metadata][user_id]", u),
        ("subscription_data[metadata][package_id]", STARTER_SUB),
        ("subscription_data[metadata][purchase_type]", "subscription"),
        ("subscription_data[metadata][currency]", "usd"),
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
        Some("https://app.example/pricing?success=true&type=onetime")
    );
    assert_ne!(
        sent.header("idempotency-key"),
        fake.requests()[0].header("idempotency-key")
    );

    // Forgiving as the reference (create-onetime-checkout/index.ts L37–38, L62–63): an
    // off-site or malformed returnTo falls back to /pricing, an unknown currency to usd,
    // unknown fields are ignored (logged at debug).
    for body in [
        json!({"packageId": STARTER_PACK, "returnTo": "https://evil.example", "currency": "eur"}),
        json!({"packageId": STARTER_PACK, "returnTo": "//evil.example", "coupon": "x"}),
        json!({"packageId": STARTER_PACK, "returnTo": 7, "currency": 3}),
    ] {
        let res = app
            .call("create-onetime-checkout", &user.access_token, &body)
            .await;
        json_with_status(res, 200).await;
        let sent = fake.requests().last().unwrap().clone();
        assert_eq!(
            sent.field("success_url"),
            Some("https://app.example/pricing?success=true&type=onetime"),
            "{body}"
        );
        assert_eq!(sent.field("metadata[currency]"), Some("usd"), "{body}");
    }

    // The simulated pages do not exist in stripe mode.
    let res = app
        .client
        .get(app.url("/dev/checkout/cs_test_fake1"))
        .send()
        .await
        .unwrap();
    assert_envelope(res, 404, "NOT_FOUND").await;
    let res = app
        .client
        .post(app.url("/dev/checkout/cs_test_fake1/pay"))
        .send()
        .await
        .unwrap();
    assert_envelope(res, 404, "NOT_FOUND").await;

    // No price for the currency: refused before calling Stripe.
    let body = json!({"packageId": STARTER_SUB, "currency": "cny"});
    let res = app
        .call("create-credit-checkout", &user.access_token, &body)
        .await;
    assert_envelope(res, 400, "STRIPE_PACKAGE_MISSING_PRICE").await;
    assert_eq!(
        fake.requests().len(),
        5,
        "2 checkouts and the 3 fallback ones"
    );
}

/// Stripe refusing → 500 (the reference's status, create-credit-checkout/index.ts L78)
/// without retry; a 503 is retried with the same Idempotency-Key; an unreachable
/// Stripe → 500.
#[tokio::test]
async fn stripe_failures_answer_500_and_retries_keep_the_key() {
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
    assert_envelope(res, 500, "STRIPE_CHECKOUT_CREATE_FAILED").await;
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
        headers: Vec::new(),
    }]);
    let res = app
        .call(
            "create-credit-checkout",
            token,
            &json!({"packageId": STARTER_SUB}),
        )
        .await;
    assert_envelope(res, 500, "STRIPE_CHECKOUT_CREATE_FAILED").await;

    // 429 is retried; Stripe-Should-Retry: false wins over a 503.
    let before = fake.requests().len();
    fake.script(vec![FakeStripe::error(
        429,
        "invalid_request_error",
        "rate_limit",
        "Too many",
    )]);
    let res = app
        .call(
            "create-onetime-checkout",
            token,
            &json!({"packageId": STARTER_PACK}),
        )
        .await;
    json_with_status(res, 200).await;
    assert_eq!(fake.requests().len(), before + 2);
    let mut no_retry = FakeStripe::error(503, "api_error", "api_error", "Do not retry");
    no_retry.headers = vec![("stripe-should-retry", "false")];
    fake.script(vec![no_retry]);
    let res = app
        .call(
            "create-onetime-checkout",
            token,
            &json!({"packageId": STARTER_PACK}),
        )
        .await;
    assert_envelope(res, 500, "STRIPE_CHECKOUT_CREATE_FAILED").await;
    assert_eq!(fake.requests().len(), before + 3);

    let down = spawn_app_with(|c| {
        stripe_config(c, &fake);
        c.billing.api_base = "http://127.0.0.1:9".into();
        c.billing.max_attempts = 2;
    })
    .await;
    fixture_packages(&down);
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
    assert_envelope(res, 500, "STRIPE_CHECKOUT_CREATE_FAILED").await;
}

/// A call that outlives the client timeout is retried with the same key: Stripe answers
/// 409 while the first is still executing, then replays its stored answer.
#[tokio::test]
async fn a_timed_out_checkout_is_retried_with_the_same_key() {
    let fake = fake_stripe::start().await;
    let app = spawn_app_with(|c| {
        stripe_config(c, &fake);
        c.billing.timeout_secs = 1;
        c.billing.max_attempts = 4;
    })
    .await;
    fixture_packages(&app);
    let db = &app.running.as_ref().unwrap().state.db;
    db.transaction(|conn| packages::set_stripe_price(conn, STARTER_PACK, "usd", "price_x"))
        .unwrap();
    let user = app.new_user().await;
    fake.slow_next(std::time::Duration::from_millis(2000));
    let res = app
        .call(
            "create-onetime-checkout",
            &user.access_token,
            &json!({"packageId": STARTER_PACK}),
        )
        .await;
    let answer = json_with_status(res, 200).await;
    assert_eq!(
        answer["id"], "cs_test_fake1",
        "the first execution's answer, replayed"
    );
    let requests = fake.requests();
    assert!(requests.len() >= 3, "{} requests", requests.len());
    let key = requests[0].header("idempotency-key");
    assert!(requests.iter().all(|r| r.header("idempotency-key") == key));
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
            ("return_url", "https://app.example/profile")
        ]
    );
    // returnTo is honoured; an off-site one falls back to /profile
    // (create-portal-session/index.ts L30–34).
    for (body, expected) in [
        (
            json!({"returnTo": "/studio?tab=1"}),
            "https://app.example/studio?tab=1",
        ),
        (
            json!({"returnTo": "//evil.example", "extra": 1}),
            "https://app.example/profile",
        ),
        (json!({"returnTo": 5}), "https://app.example/profile"),
    ] {
        json_with_status(app.call("create-portal-session", token, &body).await, 200).await;
        let sent = fake.requests().last().unwrap().clone();
        assert_eq!(sent.field("return_url"), Some(expected), "{body}");
    }

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
    assert_envelope(res, 500, "PORTAL_CREATE_FAILED").await;
}

/// The `[billing]` keys come from the environment too (`ATELIER_BILLING_*`).
#[test]
fn billing_keys_from_the_environment() {
    let env: Vec<(String, String)> = [
        ("ATELIER_BILLING_MODE", "stripe"),
        ("ATELIER_BILLING_SECRET_KEY", "sk_test_env"),
        ("ATELIER_BILLING_WEBHOOK_SECRET", "whsec_env"),
        ("ATELIER_BILLING_API_BASE", "http://127.0.0.1:1"),
        ("ATELIER_BILLING_APP_URL", "https://app.example"),
        ("ATELIER_BILLING_WEBHOOK_TOLERANCE_SECS", "120"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "").unwrap();
    let config = atelier::config::Config::load_from(Some(&path), &env).unwrap();
    let b = &config.billing;
    assert!(b.is_stripe());
    assert_eq!(b.secret_key.as_deref(), Some("sk_test_env"));
    assert_eq!(b.webhook_secret.as_deref(), Some("whsec_env"));
    assert_eq!(b.api_base, "http://127.0.0.1:1");
    assert_eq!(b.app_url, "https://app.example");
    assert_eq!(b.webhook_tolerance_secs, 120);
    let bad = [(
        "ATELIER_BILLING_APP_URL".to_string(),
        "app.example".to_string(),
    )];
    let err = atelier::config::Config::load_from(Some(&path), &bad).unwrap_err();
    assert!(err.to_string().contains("billing.app_url"), "{err}");
}

//! Stripe extras for the reference's market over HTTP against the real server and the
//! fake Stripe: promotion codes, Alipay and WeChat Pay on one-time checkouts, the price
//! of the chosen currency, and asynchronous payments (granted on
//! `async_payment_succeeded`, nothing on `unpaid` or `async_payment_failed`).

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use atelier::db::packages;
use billing_support::*;
use common::json_with_status;
use fake_stripe::{event, now_secs};
use serde_json::json;

fn form(sent: &fake_stripe::Recorded) -> Vec<(&str, &str)> {
    sent.form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A cny pack checkout: card + alipay + wechat_pay (client web), promotion codes, the
/// cny price, `type=onetime` on the success URL; usd: card + alipay only; subscriptions
/// take promotion codes but no payment method list.
#[tokio::test]
async fn one_time_checkouts_offer_alipay_wechat_pay_and_promotion_codes() {
    let (app, fake) = stripe_app().await;
    let db = &app.running.as_ref().unwrap().state.db;
    assert!(db
        .transaction(|c| packages::set_stripe_price(c, STARTER_PACK, "cny", "price_pack_cny"))
        .unwrap());
    let user = app.new_user().await;
    let u = user.id.as_str();
    let body = json!({"packageId": STARTER_PACK, "currency": "cny", "returnTo": "/pricing"});
    json_with_status(
        app.call("create-onetime-checkout", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    let want: Vec<(&str, &str)> = vec![
        ("mode", "payment"),
        ("payment_method_types[0]", "card"),
        ("payment_method_types[1]", "alipay"),
        ("payment_method_types[2]", "wechat_pay"),
        ("line_items[0][price]", "price_pack_cny"),
        ("line_items[0][quantity]", "1"),
        (
            "success_url",
            "https://app.example/pricing?success=true&type=onetime",
        ),
        ("cancel_url", "https://app.example/pricing?canceled=true"),
        ("allow_promotion_codes", "true"),
        ("payment_method_options[wechat_pay][client]", "web"),
        ("client_reference_id", u),
        ("customer_email", &user.email),
        ("metadata[user_id]", u),
        ("metadata[package_id]", STARTER_PACK),
        ("metadata[purchase_type]", "one_time"),
        ("metadata[currency]", "cny"),
        ("payment_intent_data[metadata][user_id]", u),
        ("payment_intent_data[metadata][package_id]", STARTER_PACK),
        ("payment_intent_data[metadata][purchase_type]", "one_time"),
        ("payment_intent_data[metadata][currency]", "cny"),
        ("customer_creation", "always"),
    ];
    assert_eq!(form(&fake.requests()[0]), want);

    let body = json!({"packageId": STARTER_PACK});
    json_with_status(
        app.call("create-onetime-checkout", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    let sent = &fake.requests()[1];
    assert_eq!(sent.field("line_items[0][price]"), Some("price_pack_usd"));
    assert_eq!(sent.field("payment_method_types[0]"), Some("card"));
    assert_eq!(sent.field("payment_method_types[1]"), Some("alipay"));
    assert_eq!(sent.field("payment_method_types[2]"), None);
    assert_eq!(
        sent.field("payment_method_options[wechat_pay][client]"),
        None
    );
    assert_eq!(sent.field("allow_promotion_codes"), Some("true"));

    let body = json!({"packageId": STARTER_SUB});
    json_with_status(
        app.call("create-credit-checkout", &user.access_token, &body)
            .await,
        200,
    )
    .await;
    let sent = &fake.requests()[2];
    assert_eq!(sent.field("mode"), Some("subscription"));
    assert_eq!(sent.field("allow_promotion_codes"), Some("true"));
    assert_eq!(sent.field("payment_method_types[0]"), None);
    assert_eq!(
        sent.field("success_url"),
        Some("https://app.example/pricing?success=true")
    );
}

/// Completed but `unpaid` (Alipay / WeChat Pay still pending) grants nothing; the later
/// `async_payment_succeeded` grants once with the amount and currency on the payment;
/// a failed asynchronous payment grants nothing, ever.
#[tokio::test]
async fn asynchronous_payments_grant_on_success_only() {
    let app = simulated_app().await;
    let user = app.new_user().await;
    let t = now_secs();
    let before = app.credits(&user.access_token).await["purchased"]
        .as_i64()
        .unwrap();

    let mut pending = checkout_session("cs_async", &user, STARTER_PACK, "payment");
    pending["payment_status"] = json!("unpaid");
    pending["amount_total"] = json!(3600);
    pending["currency"] = json!("cny");
    deliver_ok(&app, &completed("evt_a1", pending.clone())).await;
    assert_eq!(
        app.credits(&user.access_token).await["purchased"],
        before,
        "unpaid grants nothing"
    );
    assert!(transactions(&app, &user).await.is_empty());

    let mut paid = pending.clone();
    paid["payment_status"] = json!("paid");
    let succeeded = event(
        "evt_a2",
        "checkout.session.async_payment_succeeded",
        t + 60,
        paid.clone(),
    );
    deliver_ok(&app, &succeeded).await;
    deliver_ok(&app, &succeeded).await;
    // Another event id for the same session grants nothing more.
    deliver_ok(
        &app,
        &event(
            "evt_a3",
            "checkout.session.async_payment_succeeded",
            t + 61,
            paid,
        ),
    )
    .await;
    let after = app.credits(&user.access_token).await["purchased"]
        .as_i64()
        .unwrap();
    assert_eq!(after - before, 250);
    let list = transactions(&app, &user).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["amount"], 3600);
    assert_eq!(list[0]["currency"], "cny");
    assert_eq!(list[0]["credits"], 250);

    let mut failing = checkout_session("cs_async_fail", &user, STARTER_PACK, "payment");
    failing["payment_status"] = json!("unpaid");
    deliver_ok(&app, &completed("evt_f1", failing.clone())).await;
    deliver_ok(
        &app,
        &event(
            "evt_f2",
            "checkout.session.async_payment_failed",
            t + 90,
            failing,
        ),
    )
    .await;
    assert_eq!(
        app.credits(&user.access_token).await["purchased"]
            .as_i64()
            .unwrap(),
        after
    );
    assert_eq!(transactions(&app, &user).await.len(), 1);
    let db = &app.running.as_ref().unwrap().state.db;
    let status = db
        .with_conn(|c| atelier::db::billing::event_status(c, "evt_f2"))
        .unwrap();
    assert_eq!(status.as_deref(), Some("ignored"));
    assert_audit_clean(&app);
}

//! Receipts after payments, through the mail outbox: one per Stripe checkout and per
//! subscription invoice however often the webhook is replayed, in the payer's locale
//! (`user_metadata.locale`), naming the package, the amount and the credits.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use billing_support::*;
use common::{json_with_status, TestApp, TestUser};
use fake_stripe::{event, now_secs};
use serde_json::{json, Value};

/// The receipts queued for `to`, oldest first.
pub async fn receipts_to(app: &TestApp, admin: &TestUser, to: &str) -> Vec<Value> {
    let body = json_with_status(
        app.get("/v1/admin/mail-outbox?limit=100", Some(&admin.access_token))
            .await,
        200,
    )
    .await;
    let mut mine: Vec<Value> = body["mails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "receipt" && m["to"] == to)
        .cloned()
        .collect();
    mine.reverse();
    mine
}

#[tokio::test]
async fn a_checkout_and_each_renewal_send_one_receipt_across_replayed_webhooks() {
    let app = simulated_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let chinese = app.new_user().await;
    let res = app
        .client
        .put(app.url("/auth/v1/user"))
        .bearer_auth(&chinese.access_token)
        .json(&json!({"data": {"locale": "zh-CN"}}))
        .send()
        .await
        .unwrap();
    json_with_status(res, 200).await;

    let pack = completed(
        "evt_rc_1",
        checkout_session("cs_rc_1", &user, STARTER_PACK, "payment"),
    );
    for _ in 0..3 {
        deliver_ok(&app, &pack).await;
    }
    let mine = receipts_to(&app, &admin, &user.email).await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["locale"], "en");
    assert!(
        mine[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("Receipt: "),
        "{}",
        mine[0]
    );

    let sub = completed(
        "evt_rc_2",
        checkout_session("cs_rc_2", &chinese, STARTER_SUB, "subscription"),
    );
    deliver_ok(&app, &sub).await;
    let renewal = event(
        "evt_rc_3",
        "invoice.paid",
        now_secs(),
        json!({"id": "in_rc_3", "billing_reason": "subscription_cycle", "amount_paid": 500,
            "currency": "usd", "parent": {"subscription_details": {"subscription": "sub_cs_rc_2",
            "metadata": {"user_id": chinese.id, "package_id": STARTER_SUB}}}}),
    );
    deliver_ok(&app, &renewal).await;
    deliver_ok(&app, &renewal).await;
    let theirs = receipts_to(&app, &admin, &chinese.email).await;
    assert_eq!(theirs.len(), 2, "checkout + one renewal: {theirs:?}");
    for mail in &theirs {
        assert_eq!(mail["locale"], "zh");
        assert!(
            mail["subject"].as_str().unwrap().starts_with("付款收据"),
            "{mail}"
        );
    }
    // The bodies as sent: the offline transport wrote them as .eml files.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let texts = loop {
        let texts: Vec<String> = std::fs::read_dir(app.data_dir.join("mail"))
            .map(|dir| {
                dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if texts.len() >= 3 || std::time::Instant::now() > deadline {
            break texts;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(texts.len(), 3, "three receipts written");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("USD 5.00") && t.contains("credits were added")),
        "{texts:?}"
    );
    assert_audit_clean(&app);
    app.stop().await;
}

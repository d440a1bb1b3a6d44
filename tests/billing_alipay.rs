//! Alipay direct over HTTP against the real server and a fake Alipay gateway holding
//! its own RSA key pair: checkout URLs by User-Agent, notify verification (tampered,
//! re-ordered, wrong app id, wrong amount, foreign key, replayed), 50 concurrent
//! duplicates → one grant, a plan's period, an expired order paid late, reconcile of a
//! lost notify, refund with debt, and the simulated Alipay.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_alipay.rs"]
mod fake_alipay;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use std::time::Duration;

use billing_support::*;
use common::{assert_envelope, json_with_status, spawn_app, spawn_app_with, TestApp, TestUser};
use fake_alipay::{decode, encode, field, FakeAlipay, APP_ID};
use serde_json::{json, Value};

async fn alipay_app() -> (TestApp, FakeAlipay) {
    let fake = fake_alipay::start().await;
    let app = spawn_app_with(|c| {
        c.billing.alipay.app_id = Some(APP_ID.into());
        c.billing.alipay.private_key = Some(fake.merchant_private_pem());
        c.billing.alipay.public_key = Some(fake.alipay_public_pem());
        c.billing.alipay.gateway_url = fake.gateway.clone();
        c.billing.app_url = "https://app.example".into();
    })
    .await;
    fixture_packages(&app);
    (app, fake)
}

async fn checkout(app: &TestApp, user: &TestUser, package: &str, agent: &str) -> Value {
    let res = app
        .client
        .post(app.url("/functions/v1/create-alipay-checkout"))
        .bearer_auth(&user.access_token)
        .header("user-agent", agent)
        .json(&json!({"packageId": package, "returnTo": "/pricing"}))
        .send()
        .await
        .unwrap();
    json_with_status(res, 200).await
}

async fn post_notify(app: &TestApp, params: &[(String, String)]) -> (u16, String) {
    let res = app
        .client
        .post(app.url("/functions/v1/alipay-notify"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(params))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn purchased(app: &TestApp, user: &TestUser) -> i64 {
    app.credits(&user.access_token).await["purchased"]
        .as_i64()
        .unwrap()
}

const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0";
const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";

/// Desktop → `alipay.trade.page.pay`, phone → `alipay.trade.wap.pay`; the URL is the
/// gateway with every common parameter, signed by the merchant key (checked by the fake).
#[tokio::test]
async fn checkout_urls_are_signed_and_follow_the_user_agent() {
    let (app, fake) = alipay_app().await;
    let user = app.new_user().await;
    let answer = checkout(&app, &user, STARTER_PACK, DESKTOP).await;
    assert_eq!(answer["surface"], "page");
    let url = answer["url"].as_str().unwrap();
    let (base, query) = url.split_once('?').unwrap();
    assert_eq!(base, fake.gateway);
    let params = decode(query);
    assert!(fake.merchant_signed(&params), "merchant signature");
    assert_eq!(field(&params, "method"), Some("alipay.trade.page.pay"));
    assert_eq!(field(&params, "app_id"), Some(APP_ID));
    assert_eq!(field(&params, "sign_type"), Some("RSA2"));
    assert_eq!(field(&params, "charset"), Some("utf-8"));
    assert_eq!(field(&params, "version"), Some("1.0"));
    assert_eq!(
        field(&params, "notify_url").map(|u| u.ends_with("/functions/v1/alipay-notify")),
        Some(true)
    );
    assert_eq!(
        field(&params, "return_url"),
        Some("https://app.example/pricing?success=true&method=alipay")
    );
    let biz: Value = serde_json::from_str(field(&params, "biz_content").unwrap()).unwrap();
    assert_eq!(biz["out_trade_no"], answer["out_trade_no"]);
    assert_eq!(biz["total_amount"], "36.00");
    assert_eq!(biz["product_code"], "FAST_INSTANT_TRADE_PAY");
    assert_eq!(biz["timeout_express"], "30m");

    let answer = checkout(&app, &user, STARTER_SUB, PHONE).await;
    assert_eq!(answer["surface"], "wap");
    let params = decode(answer["url"].as_str().unwrap().split_once('?').unwrap().1);
    assert!(fake.merchant_signed(&params));
    assert_eq!(field(&params, "method"), Some("alipay.trade.wap.pay"));
    let biz: Value = serde_json::from_str(field(&params, "biz_content").unwrap()).unwrap();
    assert_eq!(biz["product_code"], "QUICK_WAP_WAY");

    // A package without a CNY price.
    let db = &app.running.as_ref().unwrap().state.db;
    db.transaction(|c| atelier::db::alipay::set_package_terms(c, PRO_PACK, None, 30))
        .unwrap();
    let res = app
        .client
        .post(app.url("/functions/v1/create-alipay-checkout"))
        .bearer_auth(&user.access_token)
        .json(&json!({"packageId": PRO_PACK}))
        .send()
        .await
        .unwrap();
    assert_envelope(res, 400, "ALIPAY_PACKAGE_MISSING_PRICE").await;
    let res = app
        .client
        .post(app.url("/functions/v1/create-alipay-checkout"))
        .json(&json!({"packageId": STARTER_PACK}))
        .send()
        .await
        .unwrap();
    assert_envelope(res, 401, "UNAUTHORIZED").await;
}

/// Forged, tampered, foreign-key, wrong-app and wrong-amount notifies get `fail` and
/// change nothing; a valid one (in any parameter order) grants once and `success`;
/// replays answer `success` and change nothing.
#[tokio::test]
async fn notifies_are_verified_and_applied_once() {
    let (app, fake) = alipay_app().await;
    let user = app.new_user().await;
    let before = purchased(&app, &user).await;
    let order = checkout(&app, &user, STARTER_PACK, DESKTOP).await;
    let no = order["out_trade_no"].as_str().unwrap();
    let good = fake.sign_notify(fake.notify_params(no, "36.00", "TRADE_SUCCESS"));

    let mut tampered = good.clone();
    for (k, v) in tampered.iter_mut() {
        if k == "total_amount" {
            *v = "0.01".into();
        }
    }
    let foreign = fake.sign_notify_with_other_key(fake.notify_params(no, "36.00", "TRADE_SUCCESS"));
    let mut wrong_app = fake.notify_params(no, "36.00", "TRADE_SUCCESS");
    for (k, v) in wrong_app.iter_mut() {
        if k == "app_id" {
            *v = "2021009999999999".into();
        }
    }
    let wrong_app = fake.sign_notify(wrong_app);
    let wrong_amount = fake.sign_notify(fake.notify_params(no, "3.60", "TRADE_SUCCESS"));
    let unsigned: Vec<(String, String)> =
        good.iter().filter(|(k, _)| k != "sign").cloned().collect();
    let mut rsa1: Vec<(String, String)> = good.clone();
    for (k, v) in rsa1.iter_mut() {
        if k == "sign_type" {
            *v = "RSA".into();
        }
    }
    let mut doubled = good.clone();
    doubled.push(("total_amount".into(), "0.01".into()));
    let unknown = fake.sign_notify(fake.notify_params("AT-unknown", "36.00", "TRADE_SUCCESS"));
    for (name, bad) in [
        ("tampered", &tampered),
        ("foreign key", &foreign),
        ("wrong app id", &wrong_app),
        ("wrong amount", &wrong_amount),
        ("unsigned", &unsigned),
        ("sign_type RSA", &rsa1),
        ("parameter twice", &doubled),
        ("unknown order", &unknown),
    ] {
        assert_eq!(post_notify(&app, bad).await, (400, "fail".into()), "{name}");
    }
    assert_eq!(purchased(&app, &user).await, before);

    // Re-ordered: the canonical string sorts, so the signature still holds.
    let mut reordered = good.clone();
    reordered.reverse();
    assert_eq!(post_notify(&app, &reordered).await, (200, "success".into()));
    assert_eq!(purchased(&app, &user).await, before + 250);
    for _ in 0..2 {
        assert_eq!(post_notify(&app, &good).await, (200, "success".into()));
    }
    let finished = fake.sign_notify(fake.notify_params(no, "36.00", "TRADE_FINISHED"));
    assert_eq!(post_notify(&app, &finished).await, (200, "success".into()));
    assert_eq!(purchased(&app, &user).await, before + 250);
    let list = transactions(&app, &user).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["amount"], 3600);
    assert_eq!(list[0]["currency"], "cny");
    assert_eq!(list[0]["type"], "one_time");
    assert_audit_clean(&app);
}

/// 50 concurrent copies of one notify: one grant, every answer `success`.
#[tokio::test]
async fn fifty_concurrent_notifies_grant_once() {
    let (app, fake) = alipay_app().await;
    let user = app.new_user().await;
    let before = purchased(&app, &user).await;
    let order = checkout(&app, &user, STARTER_PACK, DESKTOP).await;
    let no = order["out_trade_no"].as_str().unwrap();
    let good = fake.sign_notify(fake.notify_params(no, "36.00", "TRADE_SUCCESS"));
    let answers = futures_util::future::join_all((0..50).map(|_| post_notify(&app, &good))).await;
    assert!(
        answers.iter().all(|a| *a == (200, "success".to_string())),
        "{answers:?}"
    );
    assert_eq!(purchased(&app, &user).await, before + 250);
    let grants = ledger_entries(&app, &user)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "grant" && e["amount"] == 250)
        .count();
    assert_eq!(grants, 1);
    assert_audit_clean(&app);
}

/// A subscription paid by Alipay: plan credits, the first-subscription bonus, the
/// plan active with a 30-day period (90 days for a package so configured).
#[tokio::test]
async fn a_subscription_sets_its_period() {
    let (app, fake) = alipay_app().await;
    let user = app.new_user().await;
    let order = checkout(&app, &user, STARTER_SUB, DESKTOP).await;
    let no = order["out_trade_no"].as_str().unwrap();
    let notify = fake.sign_notify(fake.notify_params(no, "36.00", "TRADE_SUCCESS"));
    assert_eq!(post_notify(&app, &notify).await, (200, "success".into()));
    let me = me(&app, &user).await;
    assert_eq!(me["credits"]["subscription"], 250 + 25);
    assert_eq!(me["subscription"]["status"], "active");
    let end = me["subscription"]["current_period_end"].as_str().unwrap();
    let end =
        time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339).unwrap();
    let days = (end - time::OffsetDateTime::now_utc()).whole_hours() as f64 / 24.0;
    assert!((29.9..=30.1).contains(&days), "{days}");

    let db = &app.running.as_ref().unwrap().state.db;
    db.transaction(|c| atelier::db::alipay::set_package_terms(c, PRO_SUB, Some(14400), 90))
        .unwrap();
    let order = checkout(&app, &user, PRO_SUB, DESKTOP).await;
    let no = order["out_trade_no"].as_str().unwrap();
    let notify = fake.sign_notify(fake.notify_params(no, "144.00", "TRADE_SUCCESS"));
    assert_eq!(post_notify(&app, &notify).await, (200, "success".into()));
    let me = me_again(&app, &user).await;
    assert_eq!(me["credits"]["subscription"], 250 + 25 + 1200, "bonus once");
    let end = me["subscription"]["current_period_end"].as_str().unwrap();
    let end =
        time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339).unwrap();
    let days = (end - time::OffsetDateTime::now_utc()).whole_hours() as f64 / 24.0;
    assert!((89.9..=90.1).contains(&days), "{days}");
    assert_audit_clean(&app);
}

/// A 36-yuan order of `package`, paid at the fake Alipay and notified: its number.
async fn paid_order(app: &TestApp, fake: &FakeAlipay, user: &TestUser, package: &str) -> String {
    let order = checkout(app, user, package, DESKTOP).await;
    let no = order["out_trade_no"].as_str().unwrap().to_string();
    fake.pay(&no, "36.00");
    let notify = fake.sign_notify(fake.notify_params(&no, "36.00", "TRADE_SUCCESS"));
    assert_eq!(post_notify(app, &notify).await, (200, "success".into()));
    no
}

async fn me_again(app: &TestApp, user: &TestUser) -> Value {
    me(app, user).await
}

/// Reconcile: a paid order whose notify never came is granted from
/// `alipay.trade.query`; an order Alipay closed, past its 30 minutes, expires; when
/// that expired order's payment is reported after all (Alipay took the money), it is
/// granted once.
#[tokio::test]
async fn reconcile_finds_lost_notifies_and_expires_closed_orders() {
    let (app, fake) = alipay_app().await;
    let user = app.new_user().await;
    let before = purchased(&app, &user).await;
    let lost = checkout(&app, &user, STARTER_PACK, DESKTOP).await;
    let lost = lost["out_trade_no"].as_str().unwrap().to_string();
    let late = checkout(&app, &user, STARTER_PACK, DESKTOP).await;
    let late = late["out_trade_no"].as_str().unwrap().to_string();
    fake.pay(&lost, "36.00");
    fake.close(&late, "36.00");
    let state = &app.running.as_ref().unwrap().state;
    state
        .db
        .transaction(|c| atelier::db::alipay::set_order_expiry(c, &late, 0))
        .unwrap();
    let (paid, expired) = state.alipay.reconcile(Duration::ZERO).await.unwrap();
    assert_eq!((paid, expired), (1, 1));
    assert_eq!(purchased(&app, &user).await, before + 250);
    let query = fake
        .requests()
        .into_iter()
        .find(|r| field(r, "method") == Some("alipay.trade.query"))
        .unwrap();
    assert!(fake.merchant_signed(&query));
    let order = |no: &str| {
        state
            .db
            .with_conn(|c| atelier::db::alipay::find_order(c, no))
            .unwrap()
            .unwrap()
    };
    assert_eq!(order(&lost).status, "completed");
    assert_eq!(order(&late).status, "expired");
    // Nothing left to do.
    assert_eq!(
        state.alipay.reconcile(Duration::ZERO).await.unwrap(),
        (0, 0)
    );

    let notify = fake.sign_notify(fake.notify_params(&late, "36.00", "TRADE_SUCCESS"));
    assert_eq!(post_notify(&app, &notify).await, (200, "success".into()));
    assert_eq!(post_notify(&app, &notify).await, (200, "success".into()));
    assert_eq!(order(&late).status, "completed");
    assert_eq!(purchased(&app, &user).await, before + 500);
    assert_audit_clean(&app);
}

/// The admin refund calls `alipay.trade.refund` (signed) and reverses the credits;
/// what was spent becomes debt. Non-admins are refused.
#[tokio::test]
async fn refund_reverses_credits_and_spent_credits_become_debt() {
    let (app, fake) = alipay_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let no = paid_order(&app, &fake, &user, STARTER_PACK).await;
    let available = app.credits(&user.access_token).await["available"]
        .as_i64()
        .unwrap();
    app.grant_credits(&admin, &user.id, -(available - 50)).await; // spent all but 50

    let path = format!("/v1/admin/alipay/orders/{no}/refund");
    let res = app
        .post_json(&path, Some(&user.access_token), &json!({}))
        .await;
    assert_envelope(res, 403, "FORBIDDEN").await;
    let res = app
        .post_json(&path, Some(&admin.access_token), &json!({}))
        .await;
    let body = json_with_status(res, 200).await;
    assert_eq!(body["refunded"], 3600);
    let trade = fake.trade(&no).unwrap();
    assert_eq!(trade.refunded.len(), 1);
    assert_eq!(trade.refunded[0].1, "36.00");
    let refund = fake
        .requests()
        .into_iter()
        .find(|r| field(r, "method") == Some("alipay.trade.refund"))
        .unwrap();
    assert!(fake.merchant_signed(&refund));
    let credits = app.credits(&user.access_token).await;
    assert_eq!(credits["available"], 0, "{credits}");
    assert_eq!(credits["debt"], 200, "{credits}");
    let list = transactions(&app, &user).await;
    assert_eq!(list[0]["type"], "refund");
    assert_eq!(list[0]["credits"], 250);
    // Nothing left to refund.
    let res = app
        .post_json(&path, Some(&admin.access_token), &json!({}))
        .await;
    assert_envelope(res, 400, "BAD_REQUEST").await;
    assert_audit_clean(&app);
}

/// A plan refunded in part keeps its period; refunded in full it ends at once
/// (Alipay has no subscription of its own to cancel), and the profile says so.
#[tokio::test]
async fn refunding_a_plan_in_full_ends_its_period() {
    let (app, fake) = alipay_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let no = paid_order(&app, &fake, &user, STARTER_SUB).await;
    let path = format!("/v1/admin/alipay/orders/{no}/refund");
    let res = app
        .post_json(&path, Some(&admin.access_token), &json!({"amount": 1000}))
        .await;
    json_with_status(res, 200).await;
    let after_part = me(&app, &user).await;
    assert_eq!(
        after_part["subscription"]["status"], "active",
        "{after_part}"
    );

    let res = app
        .post_json(&path, Some(&admin.access_token), &json!({}))
        .await;
    assert_eq!(json_with_status(res, 200).await["refunded"], 3600);
    let after_full = me(&app, &user).await;
    assert_eq!(
        after_full["subscription"]["status"], "canceled",
        "{after_full}"
    );
    let end = after_full["subscription"]["current_period_end"]
        .as_str()
        .unwrap();
    let end =
        time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339).unwrap();
    let ago = time::OffsetDateTime::now_utc() - end;
    assert!(
        ago.whole_seconds() >= 0 && ago.whole_seconds() < 60,
        "{end}"
    );
    assert_eq!(after_full["credits"]["subscription"], 0, "{after_full}");
    assert_audit_clean(&app);
}

/// Without keys Alipay is simulated: its page's Pay posts a signed notify through the
/// same handler and grants once.
#[tokio::test]
async fn simulated_alipay_pays_through_the_notify_code() {
    let app = spawn_app().await;
    fixture_packages(&app);
    let user = app.new_user().await;
    let before = purchased(&app, &user).await;
    let order = checkout(&app, &user, STARTER_PACK, DESKTOP).await;
    let url = order["url"].as_str().unwrap().to_string();
    let no = order["out_trade_no"].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/dev/alipay/{no}?return_to=%2Fpricing")),
        "{url}"
    );
    let page = app.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("36.00 CNY"), "{page}");
    let pay_url = app.url(&format!("/dev/alipay/{no}/pay?return_to=%2Fpricing"));
    assert!(page.contains(&format!(
        "action=\"/dev/alipay/{no}/pay?return_to=%2Fpricing\""
    )));
    // A return path off the app is not followed: back to /pricing.
    let evil = app.url(&format!(
        "/dev/alipay/{no}/pay?return_to=%2F%2Fevil.example"
    ));
    let pay = app.client.post(&evil).send().await.unwrap();
    assert_eq!(pay.status(), 303);
    let location = pay.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.ends_with("/pricing?success=true&method=alipay") && !location.contains("evil"),
        "{location}"
    );
    assert_eq!(purchased(&app, &user).await, before + 250);
    let pay = app.client.post(&pay_url).send().await.unwrap();
    assert_eq!(pay.status(), 303);
    assert_eq!(purchased(&app, &user).await, before + 250);
    let list = transactions(&app, &user).await;
    assert_eq!(list[0]["currency"], "cny");
}

/// A server that takes real money (Stripe mode) and has no Alipay keys has no
/// simulated Alipay to pay for free: checkout is refused, the simulated page and its
/// Pay button do not exist, and a notify signed with any key grants nothing.
#[tokio::test]
async fn a_server_taking_real_money_has_no_simulated_alipay() {
    let (app, _stripe) = stripe_app().await;
    let user = app.new_user().await;
    let before = purchased(&app, &user).await;
    let res = app
        .client
        .post(app.url("/functions/v1/create-alipay-checkout"))
        .bearer_auth(&user.access_token)
        .header("user-agent", DESKTOP)
        .json(&json!({"packageId": STARTER_PACK, "returnTo": "/pricing"}))
        .send()
        .await
        .unwrap();
    assert_envelope(res, 503, "ALIPAY_CHECKOUT_FAILED").await;
    let page = app
        .client
        .get(app.url("/dev/alipay/AT0001"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    let pay = app
        .client
        .post(app.url("/dev/alipay/AT0001/pay"))
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status(), 404);
    let forger = fake_alipay::start().await;
    let notify = forger.sign_notify(forger.notify_params("AT0001", "36.00", "TRADE_SUCCESS"));
    let (status, body) = post_notify(&app, &notify).await;
    assert_eq!((status, body.as_str()), (400, "fail"));
    assert_eq!(purchased(&app, &user).await, before);
    assert_audit_clean(&app);
}

/// `atelier alipay reconcile`, run as an operator would on a stopped server's data:
/// the paid order whose notify was lost is granted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reconcile_grants_a_paid_order() {
    let (app, fake) = alipay_app().await;
    let user = app.new_user().await;
    let order = checkout(&app, &user, STARTER_PACK, DESKTOP).await;
    fake.pay(order["out_trade_no"].as_str().unwrap(), "36.00");
    let dir = app.stop_keeping_data().await;
    let run = |fake: FakeAlipay, data: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_atelier"));
            for (name, _) in std::env::vars() {
                if name.starts_with("ATELIER_") {
                    cmd.env_remove(name);
                }
            }
            let out = cmd
                .current_dir(&data)
                .args(["alipay", "reconcile"])
                .env("ATELIER_DATA_DIR", &data)
                .env("ATELIER_LOG_LEVEL", "warn")
                .env("ATELIER_BILLING_ALIPAY_APP_ID", APP_ID)
                .env(
                    "ATELIER_BILLING_ALIPAY_PRIVATE_KEY",
                    fake.merchant_private_pem(),
                )
                .env(
                    "ATELIER_BILLING_ALIPAY_PUBLIC_KEY",
                    fake.alipay_public_pem(),
                )
                .env("ATELIER_BILLING_ALIPAY_GATEWAY_URL", &fake.gateway)
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{text}");
            text
        })
    };
    let first = run(fake.clone(), dir.path().to_path_buf()).await.unwrap();
    assert!(first.contains("1 paid, 0 expired"), "{first}");
    let again = run(fake.clone(), dir.path().to_path_buf()).await.unwrap();
    assert!(again.contains("0 paid, 0 expired"), "{again}");
}

/// A paid Alipay order sends one receipt (in CNY), however often Alipay notifies.
#[tokio::test]
async fn a_paid_order_sends_one_receipt_across_repeated_notifies() {
    let (app, fake) = alipay_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let order = checkout(&app, &user, STARTER_PACK, DESKTOP).await;
    let no = order["out_trade_no"].as_str().unwrap();
    let good = fake.sign_notify(fake.notify_params(no, "36.00", "TRADE_SUCCESS"));
    for _ in 0..3 {
        assert_eq!(post_notify(&app, &good).await, (200, "success".into()));
    }
    let outbox = json_with_status(
        app.get("/v1/admin/mail-outbox?limit=100", Some(&admin.access_token))
            .await,
        200,
    )
    .await;
    let receipts: Vec<&Value> = outbox["mails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "receipt" && m["to"] == user.email.as_str())
        .collect();
    assert_eq!(receipts.len(), 1, "{outbox}");
    let mail = app.running.as_ref().unwrap().state.db.with_conn(|conn| {
        Ok(conn.query_row(
            "SELECT text_body FROM mail_outbox WHERE kind = 'receipt'",
            [],
            |r| r.get::<_, String>(0),
        )?)
    });
    assert!(mail.unwrap().contains("CNY 36.00"));
    app.stop().await;
}

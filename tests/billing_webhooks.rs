//! Stripe webhooks over HTTP against the real server: signatures, exactly once under 50
//! concurrent deliveries, refunds after spending (debt), out-of-order events, renewals
//! and subscription status, rollback of a failing event.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use billing_support::*;
use common::{assert_envelope, json_with_status, spawn_app_with};
use fake_stripe::{event, now_secs, sign, WEBHOOK_SECRET};
use serde_json::{json, Value};

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

    // Every delivery is counted by type and result.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let count = |result: &str| -> i64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("atelier_webhook_events_total{")
                    && l.contains(&format!("result=\"{result}\""))
                    && l.contains("type=\"checkout.session.completed\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    assert_eq!(count("applied"), 1, "{metrics}");
    assert_eq!(count("conflict"), 50 - ok, "{metrics}");
    assert_eq!(count("duplicate"), ok, "{metrics}");
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
    // Newest first: the shortfall as its own debt row, after the reversal.
    let entries = ledger_entries(&app, &user).await;
    let (owed, reverse) = (&entries[0], &entries[1]);
    assert_eq!(reverse["kind"], "reverse");
    assert_eq!(reverse["amount"], 250);
    assert_eq!(reverse["stripe_event_id"], "evt_ref_full");
    assert_eq!(owed["kind"], "debt");
    assert_eq!(owed["amount"], 170, "250 reversed, 80 were available");
    assert_eq!(owed["stripe_event_id"], "evt_ref_full");
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

/// `id result` of the latest webhook events, as the admin console lists them.
async fn event_results(app: &common::TestApp, admin_token: &str) -> Vec<String> {
    let list = json_with_status(
        app.get("/v1/admin/webhook-events?limit=10", Some(admin_token))
            .await,
        200,
    )
    .await;
    list["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["id"].as_str().unwrap(),
                e["result"].as_str().unwrap()
            )
        })
        .collect()
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
    let admin = app.new_admin().await;
    assert_eq!(
        event_results(&app, &admin.access_token).await,
        ["evt_inv_cycle parked", "evt_inv_create parked"],
        "the admin console lists parked events"
    );

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
    let mut listed = event_results(&app, &admin.access_token).await;
    listed.sort();
    assert_eq!(
        listed,
        [
            "evt_inv_create applied",
            "evt_inv_cycle applied",
            "evt_sub_o applied"
        ],
        "parked events are listed as applied once their checkout arrived"
    );
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
    let db = &app.running.as_ref().unwrap().state.db;
    for (id, want) in [
        ("evt_other", "ignored"),
        ("evt_unpaid", "ignored"),
        ("evt_r1", "applied"),
    ] {
        let status = db
            .with_conn(|c| atelier::db::billing::event_status(c, id))
            .unwrap();
        assert_eq!(status.as_deref(), Some(want), "{id}");
    }
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

/// A plan changed in the portal: the subscription's new price names the plan, and the
/// next renewal grants that plan's credits (pre-basil invoice line shape).
#[tokio::test]
async fn a_plan_change_follows_the_price() {
    let (app, _fake) = stripe_app().await;
    let user = app.new_user().await;
    deliver_ok(
        &app,
        &completed(
            "evt_pc",
            checkout_session("cs_pc", &user, STARTER_SUB, "subscription"),
        ),
    )
    .await;
    assert_eq!(me(&app, &user).await["subscription"]["plan"], "Starter");
    let upgrade = event(
        "evt_pc_up",
        "customer.subscription.updated",
        now_secs() + 5,
        json!({"id": "sub_cs_pc", "object": "subscription", "status": "active",
            "current_period_end": 4102444800i64,
            "items": {"data": [{"price": {"id": "price_pro_usd"}}]}}),
    );
    deliver_ok(&app, &upgrade).await;
    let profile = me(&app, &user).await["subscription"].clone();
    assert_eq!(profile["plan"], "Professional", "{profile}");
    assert_eq!(profile["current_period_end"], "2100-01-01T00:00:00Z");
    let renewal = event(
        "evt_pc_renew",
        "invoice.paid",
        now_secs() + 6,
        json!({"id": "in_pc_2", "billing_reason": "subscription_cycle", "amount_paid": 2000,
            "currency": "usd", "subscription": "sub_cs_pc",
            "lines": {"data": [{"price": {"id": "price_pro_usd"}}]}}),
    );
    deliver_ok(&app, &renewal).await;
    assert_eq!(
        app.credits(&user.access_token).await["subscription"],
        250 + 25 + 1200
    );
    assert_audit_clean(&app);
}

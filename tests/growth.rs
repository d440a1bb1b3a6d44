//! Invite codes and redeem codes over HTTP against the real server: codes at signup and
//! backfilled, the binding errors, the inviter's reward once across replayed webhooks
//! and reversed with the refund, redeem codes with every refusal, and exactly
//! `max_uses` grants under 20 concurrent claims.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use billing_support::*;
use common::{assert_envelope, json_with_status, spawn_app_with, test_config, TestApp, TestUser};
use fake_stripe::{event, now_secs};
use serde_json::{json, Value};

async fn invite(app: &TestApp, user: &TestUser) -> Value {
    json_with_status(app.get("/v1/invite", Some(&user.access_token)).await, 200).await
}

async fn bind(app: &TestApp, user: &TestUser, code: &str) -> reqwest::Response {
    app.post_json(
        "/v1/invite/bind",
        Some(&user.access_token),
        &json!({ "code": code }),
    )
    .await
}

/// The first active package of `kind` (`one_time` or `subscription`): `(id, credits)`.
async fn package(app: &TestApp, kind: &str) -> (String, i64) {
    let list = json_with_status(app.get("/v1/packages", None).await, 200).await;
    let p = list["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == kind)
        .cloned()
        .expect("a package");
    (
        p["id"].as_str().unwrap().to_string(),
        p["credits"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn every_profile_has_an_invite_code_and_binding_follows_the_reference_rules() {
    let app = simulated_app().await;
    let (inviter, invitee, other) = (
        app.new_user().await,
        app.new_user().await,
        app.new_user().await,
    );
    let mine = invite(&app, &inviter).await;
    let code = mine["invite_code"].as_str().expect("a code").to_string();
    assert_eq!(code.len(), 8, "{mine}");
    assert!(code
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    assert_ne!(
        invite(&app, &invitee).await["invite_code"],
        mine["invite_code"]
    );

    assert_envelope(bind(&app, &invitee, "").await, 400, "INVALID_CODE").await;
    assert_envelope(
        bind(&app, &invitee, "NOPE0000").await,
        404,
        "CODE_NOT_FOUND",
    )
    .await;
    assert_envelope(
        bind(&app, &inviter, &code).await,
        400,
        "SELF_BIND_NOT_ALLOWED",
    )
    .await;
    // Typed in lower case with spaces: still the code.
    let bound = json_with_status(
        bind(&app, &invitee, &format!("  {}  ", code.to_lowercase())).await,
        200,
    )
    .await;
    assert_eq!(
        bound,
        json!({"success": true, "inviter_user_id": inviter.id})
    );
    assert_envelope(bind(&app, &invitee, &code).await, 409, "ALREADY_BOUND").await;

    // A seller who has paid may not bind any more.
    let (pack, _) = package(&app, "one_time").await;
    deliver_ok(
        &app,
        &completed(
            "evt_paid",
            checkout_session("cs_paid", &other, &pack, "payment"),
        ),
    )
    .await;
    assert_envelope(
        bind(&app, &other, &code).await,
        403,
        "PAID_USER_NOT_ALLOWED",
    )
    .await;

    let mine = invite(&app, &inviter).await;
    let invitees = mine["invitees"].as_array().unwrap();
    assert_eq!(invitees.len(), 1, "{mine}");
    assert!(invitees[0]["email"]
        .as_str()
        .unwrap()
        .contains("***@example.com"));
    assert!(invitees[0]["rewarded_at"].is_null());
    assert_eq!(invite(&app, &invitee).await["invited"]["code"], code);
    assert_envelope(
        app.post_json("/v1/invite/bind", None, &json!({"code": code}))
            .await,
        401,
        "UNAUTHORIZED",
    )
    .await;

    let admin = app.new_admin().await;
    let list = json_with_status(
        app.get("/v1/admin/invite-bindings", Some(&admin.access_token))
            .await,
        200,
    )
    .await;
    assert_eq!(list["bindings"][0]["inviter"]["email"], inviter.email);
    assert_eq!(list["bindings"][0]["invitee"]["email"], invitee.email);
    assert_envelope(
        app.get("/v1/admin/invite-bindings", Some(&inviter.access_token))
            .await,
        403,
        "FORBIDDEN",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_inviter_is_rewarded_once_with_the_first_checkout_and_loses_it_with_the_refund() {
    let app = simulated_app().await;
    let (inviter, invitee) = (app.new_user().await, app.new_user().await);
    let code = invite(&app, &inviter).await["invite_code"]
        .as_str()
        .unwrap()
        .to_string();
    json_with_status(bind(&app, &invitee, &code).await, 200).await;
    let before = app.credits(&inviter.access_token).await["purchased"]
        .as_i64()
        .unwrap();
    let (pack, credits) = package(&app, "one_time").await;
    let reward = credits / 10;
    assert!(reward > 0);

    let first = completed(
        "evt_inv_1",
        checkout_session("cs_inv_1", &invitee, &pack, "payment"),
    );
    deliver_ok(&app, &first).await;
    deliver_ok(&app, &first).await; // Stripe retries: nothing more.
    let second = completed(
        "evt_inv_2",
        checkout_session("cs_inv_2", &invitee, &pack, "payment"),
    );
    deliver_ok(&app, &second).await;
    let after = app.credits(&inviter.access_token).await["purchased"]
        .as_i64()
        .unwrap();
    assert_eq!(
        after,
        before + reward,
        "one reward, for the first checkout only"
    );
    let entries = ledger_entries(&app, &inviter).await;
    let grant = entries
        .iter()
        .find(|e| e["reason"] == "invite reward")
        .expect("reward row");
    assert_eq!(grant["amount"], reward);
    assert_eq!(grant["stripe_event_id"], "evt_inv_1");
    let mine = invite(&app, &inviter).await;
    assert_eq!(mine["reward_credits_total"], reward, "{mine}");
    assert!(mine["invitees"][0]["rewarded_at"].is_string());

    // Refunding the second purchase leaves the reward; refunding the first takes it back.
    let refund = |evt: &str, pi: &str| {
        event(
            evt,
            "charge.refunded",
            now_secs(),
            json!({"id": format!("ch_{pi}"),
            "object": "charge", "amount": 500, "amount_refunded": 500, "refunded": true,
            "payment_intent": pi, "currency": "usd"}),
        )
    };
    deliver_ok(&app, &refund("evt_ref_2", "pi_cs_inv_2")).await;
    assert_eq!(
        app.credits(&inviter.access_token).await["purchased"],
        before + reward
    );
    deliver_ok(&app, &refund("evt_ref_1", "pi_cs_inv_1")).await;
    deliver_ok(&app, &refund("evt_ref_1", "pi_cs_inv_1")).await;
    assert_eq!(
        app.credits(&inviter.access_token).await["purchased"],
        before
    );
    let entries = ledger_entries(&app, &inviter).await;
    assert_eq!(entries[0]["kind"], "reverse");
    assert_eq!(entries[0]["amount"], reward);
    assert_eq!(invite(&app, &inviter).await["reward_credits_total"], 0);
    assert_audit_clean(&app);
    app.stop().await;
}

#[tokio::test]
async fn existing_profiles_get_their_invite_code_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let running = atelier::app::start(config.clone()).await.unwrap();
    let state = running.state.clone();
    let user = state
        .auth
        .create_account(
            "old@example.com",
            "correct-horse-battery",
            Value::Null,
            "authenticated",
        )
        .await
        .unwrap();
    // As a database from before invite codes would have it.
    state
        .db
        .with_conn(|c| {
            c.execute("UPDATE users SET invite_code = NULL", [])
                .map_err(atelier::db::DbError::from)
        })
        .unwrap();
    running.stop().await;
    let running = atelier::app::start(config).await.unwrap();
    let code = running
        .state
        .db
        .with_conn(|c| atelier::db::growth::invite_code_of(c, &user.id))
        .unwrap();
    assert_eq!(code.map(|c| c.len()), Some(8));
    running.stop().await;
}

async fn create_code(app: &TestApp, admin: &TestUser, body: Value) -> Value {
    json_with_status(
        app.post_json("/v1/admin/redeem-codes", Some(&admin.access_token), &body)
            .await,
        200,
    )
    .await
}

async fn redeem(app: &TestApp, user: &TestUser, code: &str) -> reqwest::Response {
    app.post_json(
        "/v1/redeem",
        Some(&user.access_token),
        &json!({ "code": code }),
    )
    .await
}

#[tokio::test]
async fn redeem_codes_grant_purchased_credits_once_per_user_with_the_reference_refusals() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.new_admin().await;
    let seller = app.new_user().await;
    assert_envelope(
        app.post_json(
            "/v1/admin/redeem-codes",
            Some(&seller.access_token),
            &json!({"credit_amount": 5}),
        )
        .await,
        403,
        "FORBIDDEN",
    )
    .await;
    let promo = create_code(
        &app,
        &admin,
        json!({"code": "spring-50", "credit_amount": 50, "max_uses": 3}),
    )
    .await;
    assert_eq!(promo["code"], "SPRING-50");
    assert_eq!(promo["state"], "active");
    let generated = create_code(&app, &admin, json!({"credit_amount": 10})).await;
    assert_eq!(generated["code"].as_str().unwrap().len(), 12);
    assert_eq!(generated["max_uses"], 1);
    assert_envelope(
        app.post_json(
            "/v1/admin/redeem-codes",
            Some(&admin.access_token),
            &json!({"code": "SPRING-50", "credit_amount": 5}),
        )
        .await,
        409,
        "CONFLICT",
    )
    .await;
    assert_envelope(
        app.post_json(
            "/v1/admin/redeem-codes",
            Some(&admin.access_token),
            &json!({"credit_amount": 0}),
        )
        .await,
        400,
        "BAD_REQUEST",
    )
    .await;

    let before = app.credits(&seller.access_token).await["purchased"]
        .as_i64()
        .unwrap();
    let claimed = json_with_status(redeem(&app, &seller, "spring-50").await, 200).await;
    assert_eq!(claimed["credits"], 50);
    assert_eq!(claimed["success"], true);
    assert_eq!(
        app.credits(&seller.access_token).await["purchased"],
        before + 50
    );
    assert_envelope(
        redeem(&app, &seller, "SPRING-50").await,
        409,
        "ALREADY_CLAIMED",
    )
    .await;
    assert_envelope(
        redeem(&app, &seller, "NO-SUCH").await,
        404,
        "CODE_NOT_FOUND",
    )
    .await;
    assert_envelope(redeem(&app, &seller, " ").await, 400, "INVALID_CODE").await;

    let expired = create_code(
        &app,
        &admin,
        json!({"code": "OLD", "credit_amount": 5,
        "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(expired["state"], "expired");
    assert_envelope(redeem(&app, &seller, "OLD").await, 400, "CODE_EXPIRED").await;
    let single = create_code(&app, &admin, json!({"code": "ONCE", "credit_amount": 5})).await;
    json_with_status(redeem(&app, &app.new_user().await, "ONCE").await, 200).await;
    assert_envelope(redeem(&app, &seller, "ONCE").await, 409, "CODE_EXHAUSTED").await;
    let off = json_with_status(
        app.post_json(
            &format!(
                "/v1/admin/redeem-codes/{}/deactivate",
                generated["id"].as_str().unwrap()
            ),
            Some(&admin.access_token),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(off["state"], "inactive");
    let text = generated["code"].as_str().unwrap();
    assert_envelope(redeem(&app, &seller, text).await, 400, "CODE_INACTIVE").await;

    let list = json_with_status(
        app.get("/v1/admin/redeem-codes", Some(&admin.access_token))
            .await,
        200,
    )
    .await;
    let codes = list["codes"].as_array().unwrap();
    assert_eq!(codes.len(), 4);
    let spring = codes.iter().find(|c| c["code"] == "SPRING-50").unwrap();
    assert_eq!(spring["used_count"], 1);
    assert_eq!(
        codes.iter().find(|c| c["id"] == single["id"]).unwrap()["state"],
        "exhausted"
    );
    let entries = ledger_entries(&app, &seller).await;
    assert_eq!(entries[0]["kind"], "grant");
    assert_eq!(entries[0]["reason"], "redeem code SPRING-50");
    assert_audit_clean(&app);
    app.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_claims_of_a_five_use_code_grant_exactly_five_times() {
    let app = spawn_app_with(|c| c.auth.rate_limit_per_minute = 1000).await;
    let admin = app.new_admin().await;
    create_code(
        &app,
        &admin,
        json!({"code": "RUSH", "credit_amount": 7, "max_uses": 5}),
    )
    .await;
    let mut users = Vec::new();
    for _ in 0..20 {
        users.push(app.new_user().await);
    }
    let claims = users.iter().map(|u| redeem(&app, u, "RUSH"));
    let answers = futures_util::future::join_all(claims).await;
    let mut granted = 0;
    for res in answers {
        match res.status().as_u16() {
            200 => granted += 1,
            409 => {
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "CODE_EXHAUSTED");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(granted, 5);
    let list = json_with_status(
        app.get("/v1/admin/redeem-codes", Some(&admin.access_token))
            .await,
        200,
    )
    .await;
    assert_eq!(list["codes"][0]["used_count"], 5);
    let mut credited = 0;
    for user in &users {
        credited += app.credits(&user.access_token).await["purchased"]
            .as_i64()
            .unwrap()
            - 30;
    }
    assert_eq!(credited, 5 * 7, "five grants of 7 beyond the signup bonus");
    assert_audit_clean(&app);
    app.stop().await;
}

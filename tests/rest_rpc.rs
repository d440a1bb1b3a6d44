//! `POST /rest/v1/rpc/<name>` over HTTP against the real server: the reference's
//! `bind_invite_code(p_code)` and `claim_redeem_code(p_code)`
//! (oscar-47/Oscar2 `supabase/migrations/20260302120000_referral_and_redeem.sql` L137 and
//! L219) answer its `{success, …}` shapes, run Atelier's ledger operations (credits
//! checked through the ledger and the audit), refuse callers without a user, and
//! unknown functions or argument names get PostgREST's 404.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use atelier::auth::jwt::{JwtKeys, SERVICE_ROLE};
use billing_support::{assert_audit_clean, ledger_entries};
use common::{json_with_status, spawn_app_with, TestApp, TestUser};
use serde_json::{json, Value};

const ANON_KEY: &str = "atelier-anon-key-for-the-rpc-test";

async fn rpc(app: &TestApp, name: &str, token: Option<&str>, args: &Value) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url(&format!("/rest/v1/rpc/{name}")))
        .header("apikey", ANON_KEY)
        .json(args);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("a JSON answer"))
}

/// An RPC that answers 200 with `{success: false, code}`.
async fn refused(app: &TestApp, name: &str, token: Option<&str>, code: &str, expect: &str) {
    let (status, body) = rpc(app, name, token, &json!({ "p_code": code })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], expect, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

fn service_key(app: &TestApp) -> String {
    let secret = std::fs::read_to_string(app.data_dir.join("jwt_secret")).expect("jwt secret");
    JwtKeys::new(secret.trim().as_bytes())
        .sign_key(SERVICE_ROLE, 1)
        .expect("signed")
}

async fn own_profile(app: &TestApp, user: &TestUser) -> Value {
    let res = app
        .client
        .get(app.url(&format!(
            "/rest/v1/profiles?select=invite_code,invited_by_user_id,invite_bound_at,purchased_credits&id=eq.{}",
            user.id
        )))
        .bearer_auth(&user.access_token)
        .header("accept", "application/vnd.pgrst.object+json")
        .send()
        .await
        .unwrap();
    json_with_status(res, 200).await
}

async fn available(app: &TestApp, user: &TestUser) -> i64 {
    app.credits(&user.access_token).await["available"]
        .as_i64()
        .expect("available")
}

#[tokio::test]
async fn bind_invite_code_binds_once_with_the_reference_answers() {
    let app = spawn_app_with(|c| c.auth.anon_key = Some(ANON_KEY.into())).await;
    let (inviter, invitee) = (app.new_user().await, app.new_user().await);
    let mine = own_profile(&app, &inviter).await;
    let code = mine["invite_code"].as_str().expect("a code").to_string();
    assert_eq!(code.len(), 8, "{mine}");
    assert_eq!(
        own_profile(&app, &invitee).await["invited_by_user_id"],
        Value::Null
    );

    let bind = "bind_invite_code";
    // Callers that are no user: `auth.uid()` is null in the reference.
    refused(&app, bind, None, &code, "UNAUTHORIZED").await;
    refused(&app, bind, Some(ANON_KEY), &code, "UNAUTHORIZED").await;
    refused(&app, bind, Some(&service_key(&app)), &code, "UNAUTHORIZED").await;
    let token = Some(invitee.access_token.as_str());
    refused(&app, bind, token, "", "INVALID_CODE").await;
    refused(&app, bind, token, "NOPE0000", "CODE_NOT_FOUND").await;
    refused(
        &app,
        bind,
        Some(&inviter.access_token),
        &code,
        "SELF_BIND_NOT_ALLOWED",
    )
    .await;
    let (status, body) = rpc(&app, bind, token, &json!({"p_code": null})).await;
    assert_eq!((status, &body["code"]), (200, &json!("INVALID_CODE")));
    assert_eq!(
        own_profile(&app, &invitee).await["invited_by_user_id"],
        Value::Null
    );

    // Typed in lower case with spaces: still the code.
    let (status, body) = rpc(
        &app,
        bind,
        token,
        &json!({"p_code": format!(" {} ", code.to_lowercase())}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"success": true, "inviter_user_id": inviter.id})
    );
    let bound = own_profile(&app, &invitee).await;
    assert_eq!(bound["invited_by_user_id"], inviter.id.as_str());
    assert!(bound["invite_bound_at"].is_string(), "{bound}");
    refused(&app, bind, token, &code, "ALREADY_BOUND").await;
    // The same binding as Atelier's own API sees it.
    let own = json_with_status(app.get("/v1/invite", token).await, 200).await;
    assert_eq!(own["invited"]["code"], code.as_str());
    // A binding moves no credits.
    assert_eq!(available(&app, &invitee).await, 30);
    assert_audit_clean(&app);
    app.stop().await;
}

#[tokio::test]
async fn claim_redeem_code_grants_through_the_ledger_max_uses_times() {
    let app = spawn_app_with(|c| {
        c.auth.anon_key = Some(ANON_KEY.into());
        common::unlimited(c);
    })
    .await;
    let admin = app.new_admin().await;
    let created = json_with_status(
        app.post_json(
            "/v1/admin/redeem-codes",
            Some(&admin.access_token),
            &json!({"code": "SPRING-40", "credit_amount": 40, "max_uses": 5}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(created["code"], "SPRING-40");
    let claim = "claim_redeem_code";
    refused(&app, claim, None, "SPRING-40", "UNAUTHORIZED").await;
    refused(
        &app,
        claim,
        Some(&service_key(&app)),
        "SPRING-40",
        "UNAUTHORIZED",
    )
    .await;

    let mut users = Vec::new();
    for _ in 0..8 {
        users.push(app.new_user().await);
    }
    refused(
        &app,
        claim,
        Some(&users[0].access_token),
        "NOPE",
        "CODE_NOT_FOUND",
    )
    .await;
    // Eight at once on a five-use code: exactly five grants.
    let answers = futures_util::future::join_all(users.iter().map(|u| {
        let app = &app;
        async move {
            rpc(
                app,
                claim,
                Some(&u.access_token),
                &json!({"p_code": "spring-40"}),
            )
            .await
        }
    }))
    .await;
    let mut granted = 0;
    for ((status, body), user) in answers.iter().zip(&users) {
        assert_eq!(*status, 200, "{body}");
        let grants: Vec<Value> = ledger_entries(&app, user)
            .await
            .into_iter()
            .filter(|e| {
                e["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("redeem code"))
            })
            .collect();
        if body["success"] == true {
            granted += 1;
            assert_eq!(body["credits"], 40, "{body}");
            assert!(body["claim_id"].is_string(), "{body}");
            let keys: Vec<&str> = body
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys.len(), 3, "the reference's shape: {body}");
            assert_eq!(grants.len(), 1, "{grants:?}");
            assert_eq!(grants[0]["amount"], 40, "{grants:?}");
            assert_eq!(available(&app, user).await, 30 + 40);
            assert_eq!(own_profile(&app, user).await["purchased_credits"], 70);
            refused(
                &app,
                claim,
                Some(&user.access_token),
                "SPRING-40",
                "ALREADY_CLAIMED",
            )
            .await;
        } else {
            assert_eq!(body["code"], "CODE_EXHAUSTED", "{body}");
            assert!(grants.is_empty(), "{grants:?}");
            assert_eq!(available(&app, user).await, 30);
        }
    }
    assert_eq!(granted, 5);
    let list = json_with_status(
        app.get("/v1/admin/redeem-codes", Some(&admin.access_token))
            .await,
        200,
    )
    .await;
    assert_eq!(list["codes"][0]["used_count"], 5, "{list}");
    assert_audit_clean(&app);
    app.stop().await;
}

/// PostgREST's errors: an unknown function or argument name is 404 `PGRST202`, GET on a
/// volatile function 405, a body that is not JSON 400 `PGRST102`, a bad token 401.
#[tokio::test]
async fn rpc_errors_are_postgrest_shaped() {
    let app = spawn_app_with(|c| c.auth.anon_key = Some(ANON_KEY.into())).await;
    let user = app.new_user().await;
    let token = Some(user.access_token.as_str());
    for (name, args, message) in [
        (
            "no_such_function",
            json!({"p_code": "X"}),
            "Could not find the function public.no_such_function in the schema cache",
        ),
        (
            "bind_invite_code",
            json!({"code": "X"}),
            "Could not find the function public.bind_invite_code(code) in the schema cache",
        ),
        (
            "claim_redeem_code",
            json!({}),
            "Could not find the function public.claim_redeem_code without parameters in the schema cache",
        ),
        (
            "claim_redeem_code",
            json!({"p_code": "X", "p_user_id": user.id}),
            "Could not find the function public.claim_redeem_code(p_code, p_user_id) in the schema cache",
        ),
    ] {
        let (status, body) = rpc(&app, name, token, &args).await;
        assert_eq!(status, 404, "{name}: {body}");
        assert_eq!(body["code"], "PGRST202", "{body}");
        assert_eq!(body["message"], message);
        for key in ["details", "hint"] {
            assert!(body.get(key).is_some(), "{body}");
        }
    }
    let res = app
        .client
        .get(app.url("/rest/v1/rpc/claim_redeem_code?p_code=X"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let res = app
        .client
        .post(app.url("/rest/v1/rpc/claim_redeem_code"))
        .bearer_auth(&user.access_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(json_with_status(res, 400).await["code"], "PGRST102");
    let (status, body) = rpc(
        &app,
        "claim_redeem_code",
        Some("not-a-jwt"),
        &json!({"p_code": "X"}),
    )
    .await;
    assert_eq!((status, &body["code"]), (401, &json!("PGRST301")), "{body}");
    // Nothing moved for anyone.
    assert_eq!(available(&app, &user).await, 30);
    assert_audit_clean(&app);
    app.stop().await;
}

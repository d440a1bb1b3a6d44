//! `/auth/v1` over real HTTP: the GoTrue-shaped session, the signup bonus, validation,
//! the password and refresh-token grants (rotation, reuse detection, races), the user
//! endpoint, logout, the per-IP rate limit and the `apikey` / anon key rules.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{
    assert_envelope, assert_gotrue_error, json_with_status, spawn_app, spawn_app_with, TestApp,
};
use reqwest::Response;
use serde_json::{json, Value};

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims of a JWT, read from its base64url middle part (no verification).
fn jwt_payload(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

async fn token_grant(app: &TestApp, grant_type: &str, body: &Value) -> Response {
    app.post_json(
        &format!("/auth/v1/token?grant_type={grant_type}"),
        None,
        body,
    )
    .await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    token_grant(
        app,
        "refresh_token",
        &json!({ "refresh_token": refresh_token }),
    )
    .await
}

async fn me(app: &TestApp, token: &str) -> Response {
    app.get("/v1/me", Some(token)).await
}

/// How many accounts the server's database holds.
async fn user_count(app: &TestApp) -> usize {
    let db = app.running.as_ref().expect("running").state.db.clone();
    db.read(atelier::db::accounts::list)
        .await
        .expect("list")
        .len()
}

fn parse_rfc3339(text: &str) -> i64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .unix_timestamp()
}

// ---------------------------------------------------------------- signup

/// Signup answers the exact GoTrue session, the email lowercased, `data` echoed as
/// `user_metadata`, and an access token with the documented claims.
#[tokio::test]
async fn signup_returns_the_session_shape() {
    let app = spawn_app().await;
    let before = now_secs();
    let res = app
        .post_json(
            "/auth/v1/signup",
            None,
            &json!({
                "email": "  Mixed.Case@Example.COM ",
                "password": "correct-horse-battery",
                "data": {"shop": "Atelier Test", "plan": 2}
            }),
        )
        .await;
    let body = json_with_status(res, 200).await;
    let after = now_secs();

    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_at",
            "expires_in",
            "refresh_token",
            "token_type",
            "user"
        ]
    );
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    let expires_at = body["expires_at"]
        .as_i64()
        .expect("expires_at is an integer");
    assert!(
        (before + 3600..=after + 3600).contains(&expires_at),
        "expires_at {expires_at} not ~now+3600"
    );
    let refresh_token = body["refresh_token"].as_str().expect("refresh_token");
    assert!(refresh_token.len() >= 32, "refresh token too short");

    let user = &body["user"];
    let id = user["id"].as_str().expect("user.id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id {id}");
    assert_eq!(user["aud"], "authenticated");
    assert_eq!(user["role"], "authenticated");
    assert_eq!(user["email"], "mixed.case@example.com");
    let created = parse_rfc3339(user["created_at"].as_str().expect("created_at"));
    assert!(
        (before - 1..=after + 1).contains(&created),
        "created_at {created}"
    );
    assert_eq!(user["app_metadata"]["provider"], "email");
    assert_eq!(
        user["user_metadata"],
        json!({"shop": "Atelier Test", "plan": 2})
    );

    let access = body["access_token"].as_str().expect("access_token");
    let claims = jwt_payload(access);
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["email"], "mixed.case@example.com");
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["aud"], "authenticated");
    let iat = claims["iat"].as_i64().expect("iat");
    assert!((before..=after).contains(&iat), "iat {iat}");
    assert_eq!(claims["exp"].as_i64(), Some(iat + 3600));
    assert_eq!(claims["exp"].as_i64(), Some(expires_at));
    let session = claims["session_id"].as_str().expect("session_id");
    assert!(
        uuid::Uuid::parse_str(session).is_ok(),
        "session_id {session}"
    );

    // The token works on the REST API.
    let me = json_with_status(me(&app, access).await, 200).await;
    assert_eq!(me["id"], id);
}

/// Without `data`, `user_metadata` is an empty object; every signup is its own session.
#[tokio::test]
async fn signup_without_data_has_empty_metadata_and_distinct_sessions() {
    let app = spawn_app().await;
    let a = json_with_status(app.signup("one@example.com", "long-enough-pw").await, 200).await;
    let b = json_with_status(app.signup("two@example.com", "long-enough-pw").await, 200).await;
    assert_eq!(a["user"]["user_metadata"], json!({}));
    assert_ne!(a["user"]["id"], b["user"]["id"]);
    let (ca, cb) = (
        jwt_payload(a["access_token"].as_str().unwrap()),
        jwt_payload(b["access_token"].as_str().unwrap()),
    );
    assert_ne!(ca["session_id"], cb["session_id"]);
    assert_ne!(a["refresh_token"], b["refresh_token"]);
}

/// The signup bonus: 30 purchased credits, nothing else, no subscription.
#[tokio::test]
async fn signup_bonus_shows_on_me() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let body = json_with_status(me(&app, &user.access_token).await, 200).await;
    assert_eq!(
        body["credits"],
        json!({"subscription": 0, "purchased": 30, "held": 0, "debt": 0, "available": 30})
    );
    assert!(body["subscription"].is_null(), "{body}");
    assert_eq!(body["id"], user.id.as_str());
    assert_eq!(body["email"], user.email.as_str());
    assert_eq!(body["role"], "authenticated");
}

/// A second signup with the same email in any case is 422 `user_already_exists`, and the
/// bonus is not granted twice.
#[tokio::test]
async fn duplicate_signup_is_refused_and_bonus_granted_once() {
    let app = spawn_app().await;
    let first = json_with_status(app.signup("dup@example.com", "long-enough-pw").await, 200).await;
    for email in ["dup@example.com", "DUP@Example.com", " dup@EXAMPLE.COM "] {
        let res = app.signup(email, "another-password").await;
        assert_gotrue_error(res, 422, "user_already_exists").await;
    }
    assert_eq!(user_count(&app).await, 1);
    let token = first["access_token"].as_str().unwrap();
    let body = json_with_status(me(&app, token).await, 200).await;
    assert_eq!(body["credits"]["purchased"], 30);
    assert_eq!(body["credits"]["available"], 30);
    // The original password still works; the duplicate's does not.
    let ok = token_grant(
        &app,
        "password",
        &json!({"email": "dup@example.com", "password": "long-enough-pw"}),
    )
    .await;
    json_with_status(ok, 200).await;
    let bad = token_grant(
        &app,
        "password",
        &json!({"email": "dup@example.com", "password": "another-password"}),
    )
    .await;
    assert_gotrue_error(bad, 400, "invalid_credentials").await;
}

/// A 7-character password is 422 `weak_password`; 8 is enough.
#[tokio::test]
async fn weak_password_is_refused() {
    let app = spawn_app().await;
    let res = app.signup("weak@example.com", "1234567").await;
    assert_gotrue_error(res, 422, "weak_password").await;
    assert_eq!(user_count(&app).await, 0);
    let res = app.signup("weak@example.com", "12345678").await;
    json_with_status(res, 200).await;
    assert_eq!(user_count(&app).await, 1);
}

/// Bad emails, missing fields and wrong JSON types are 400 `validation_failed`, and none
/// of them creates an account.
#[tokio::test]
async fn invalid_signups_are_validation_failed_and_create_nothing() {
    let app = spawn_app().await;
    let pw = "long-enough-pw";
    let bodies = [
        json!({"email": "not-an-email", "password": pw}),
        json!({"email": "a@b", "password": pw}),
        json!({"email": "@example.com", "password": pw}),
        json!({"email": "a b@example.com", "password": pw}),
        json!({"email": "", "password": pw}),
        json!({"password": pw}),
        json!({"email": "missing-pw@example.com"}),
        json!({}),
        json!({"email": null, "password": pw}),
        json!({"email": 42, "password": pw}),
        json!({"email": "types@example.com", "password": 12345678}),
        json!({"email": ["types@example.com"], "password": pw}),
        json!({"email": "types@example.com", "password": {"p": pw}}),
    ];
    for body in &bodies {
        let res = app.post_json("/auth/v1/signup", None, body).await;
        let status = res.status();
        let err = json_with_status(res, 400).await;
        assert_eq!(
            err["error_code"], "validation_failed",
            "{body} -> {status} {err}"
        );
        assert_eq!(err["code"], 400);
    }
    assert_eq!(user_count(&app).await, 0);
}

// ---------------------------------------------------------------- password grant

/// The password grant signs in (any email case) with a new session of the same user.
#[tokio::test]
async fn password_grant_signs_in() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let res = token_grant(
        &app,
        "password",
        &json!({"email": user.email.to_uppercase(), "password": user.password}),
    )
    .await;
    let body = json_with_status(res, 200).await;
    assert_eq!(body["user"]["id"], user.id.as_str());
    assert_eq!(body["token_type"], "bearer");
    let access = body["access_token"].as_str().unwrap();
    assert_ne!(
        jwt_payload(access)["session_id"],
        jwt_payload(&user.access_token)["session_id"]
    );
    json_with_status(me(&app, access).await, 200).await;
}

/// Wrong password and unknown email are the same 400 `invalid_credentials`.
#[tokio::test]
async fn password_grant_refuses_bad_credentials() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let wrong = token_grant(
        &app,
        "password",
        &json!({"email": user.email, "password": "wrong-password"}),
    )
    .await;
    let a = assert_gotrue_error(wrong, 400, "invalid_credentials").await;
    let unknown = token_grant(
        &app,
        "password",
        &json!({"email": "nobody@example.com", "password": user.password}),
    )
    .await;
    let b = assert_gotrue_error(unknown, 400, "invalid_credentials").await;
    assert_eq!(
        a["msg"], b["msg"],
        "messages must not tell which emails exist"
    );
}

/// A missing or unknown `grant_type` is 400 `validation_failed`.
#[tokio::test]
async fn token_requires_a_known_grant_type() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let creds = json!({"email": user.email, "password": user.password});
    let res = app.post_json("/auth/v1/token", None, &creds).await;
    assert_gotrue_error(res, 400, "validation_failed").await;
    for grant in ["client_credentials", "PASSWORD", ""] {
        let res = token_grant(&app, grant, &creds).await;
        assert_gotrue_error(res, 400, "validation_failed").await;
    }
}

// ---------------------------------------------------------------- refresh tokens

/// Refreshing rotates: a new refresh token and a working access token of the same
/// session; reusing the spent token is `refresh_token_already_used` and revokes the whole
/// family (the newest refresh token and the session's access tokens die too).
#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let r0 = user.refresh_token.clone();

    let first = json_with_status(refresh(&app, &r0).await, 200).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let a1 = first["access_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r0, "refresh token was not rotated");
    assert_eq!(first["user"]["id"], user.id.as_str());
    assert_eq!(
        jwt_payload(&a1)["session_id"],
        jwt_payload(&user.access_token)["session_id"],
        "a refresh continues the same session"
    );
    json_with_status(me(&app, &a1).await, 200).await;

    // The chain goes on while tokens are used once each.
    let second = json_with_status(refresh(&app, &r1).await, 200).await;
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r2, r1);

    // Reuse of a spent token.
    let res = refresh(&app, &r0).await;
    assert_gotrue_error(res, 400, "refresh_token_already_used").await;

    // The newest token of the family is now refused as well …
    let res = refresh(&app, &r2).await;
    assert_gotrue_error(res, 400, "refresh_token_not_found").await;
    // … and so are the session's access tokens.
    assert_envelope(me(&app, &a1).await, 401, "UNAUTHORIZED").await;

    // Another session of the same user is untouched.
    let login = token_grant(
        &app,
        "password",
        &json!({"email": user.email, "password": user.password}),
    )
    .await;
    let login = json_with_status(login, 200).await;
    let other = login["refresh_token"].as_str().unwrap();
    json_with_status(refresh(&app, other).await, 200).await;
}

/// Unknown, empty or missing refresh tokens.
#[tokio::test]
async fn unknown_refresh_tokens_are_not_found() {
    let app = spawn_app().await;
    let res = refresh(&app, "d2hhdGV2ZXItbm90LWEtcmVhbC10b2tlbi0xMjM0NTY3OA").await;
    assert_gotrue_error(res, 400, "refresh_token_not_found").await;
    let res = refresh(&app, "").await;
    assert_gotrue_error(res, 400, "refresh_token_not_found").await;
    let res = refresh(&app, &"x".repeat(10_000)).await;
    assert_gotrue_error(res, 400, "refresh_token_not_found").await;
    let res = token_grant(&app, "refresh_token", &json!({})).await;
    assert_gotrue_error(res, 400, "validation_failed").await;
    let res = token_grant(&app, "refresh_token", &json!({"refresh_token": 5})).await;
    assert_gotrue_error(res, 400, "validation_failed").await;
}

/// Ten simultaneous refreshes of one token: exactly one wins; the others are refused
/// (no 500, no second new session).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refresh_has_exactly_one_winner() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let url = app.url("/auth/v1/token?grant_type=refresh_token");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let client = app.client.clone();
            let url = url.clone();
            let body = json!({ "refresh_token": user.refresh_token });
            tokio::spawn(async move {
                let res = client.post(url).json(&body).send().await.expect("request");
                let status = res.status().as_u16();
                (status, res.json::<Value>().await.expect("json"))
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    let winners = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(winners, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 400, "{body}");
        let code = body["error_code"].as_str().unwrap_or_default();
        assert!(
            code == "refresh_token_already_used" || code == "refresh_token_not_found",
            "{body}"
        );
    }
}

// ---------------------------------------------------------------- user & logout

/// `GET /auth/v1/user` answers the GoTrue user for a good token, 401 `bad_jwt` otherwise.
#[tokio::test]
async fn get_user_requires_a_valid_token() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let body = json_with_status(
        app.get("/auth/v1/user", Some(&user.access_token)).await,
        200,
    )
    .await;
    assert_eq!(body["id"], user.id.as_str());
    assert_eq!(body["email"], user.email.as_str());
    assert_eq!(body["aud"], "authenticated");
    assert_eq!(body["role"], "authenticated");
    assert_eq!(body["app_metadata"]["provider"], "email");

    assert_gotrue_error(app.get("/auth/v1/user", None).await, 401, "bad_jwt").await;
    assert_gotrue_error(
        app.get("/auth/v1/user", Some("garbage")).await,
        401,
        "bad_jwt",
    )
    .await;
    let tampered = format!("{}x", user.access_token);
    assert_gotrue_error(
        app.get("/auth/v1/user", Some(&tampered)).await,
        401,
        "bad_jwt",
    )
    .await;
}

/// Logout is 204; then the refresh token is refused and the access token is dead on the
/// REST API (401 `UNAUTHORIZED` envelope) and on `/auth/v1/user`.
#[tokio::test]
async fn logout_revokes_refresh_and_access_tokens() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    json_with_status(me(&app, &user.access_token).await, 200).await;

    let res = app
        .post_json("/auth/v1/logout", Some(&user.access_token), &json!({}))
        .await;
    assert_eq!(res.status(), 204);
    assert!(res.bytes().await.unwrap().is_empty(), "204 has no body");

    let res = refresh(&app, &user.refresh_token).await;
    let err = json_with_status(res, 400).await;
    assert!(
        err["error_code"] == "refresh_token_not_found"
            || err["error_code"] == "refresh_token_already_used",
        "{err}"
    );
    assert_envelope(me(&app, &user.access_token).await, 401, "UNAUTHORIZED").await;
    let res = app.get("/auth/v1/user", Some(&user.access_token)).await;
    assert_gotrue_error(res, 401, "bad_jwt").await;
    // Logging out again with the dead token is refused.
    let res = app
        .post_json("/auth/v1/logout", Some(&user.access_token), &json!({}))
        .await;
    assert_gotrue_error(res, 401, "bad_jwt").await;
}

/// Logout without a bearer token is 401 `bad_jwt`.
#[tokio::test]
async fn logout_requires_a_token() {
    let app = spawn_app().await;
    let res = app.post_json("/auth/v1/logout", None, &json!({})).await;
    assert_gotrue_error(res, 401, "bad_jwt").await;
}

// ---------------------------------------------------------------- rate limit

/// With 3 requests per minute per IP, the 4th token request is 429
/// `over_request_rate_limit`; signup counts against the same budget.
#[tokio::test]
async fn token_requests_are_rate_limited_per_ip() {
    let app = spawn_app_with(|c| c.auth.rate_limit_per_minute = 3).await;
    let creds = json!({"email": "nobody@example.com", "password": "long-enough-pw"});
    for _ in 0..3 {
        let res = token_grant(&app, "password", &creds).await;
        assert_gotrue_error(res, 400, "invalid_credentials").await;
    }
    let res = token_grant(&app, "password", &creds).await;
    assert_gotrue_error(res, 429, "over_request_rate_limit").await;
    let res = app.signup("late@example.com", "long-enough-pw").await;
    assert_gotrue_error(res, 429, "over_request_rate_limit").await;
    assert_eq!(user_count(&app).await, 0);
    // Other routes are not limited.
    json_with_status(app.get("/healthz", None).await, 200).await;
}

// ---------------------------------------------------------------- apikey / anon key

/// The `apikey` header supabase-js sends is accepted and ignored.
#[tokio::test]
async fn apikey_header_is_ignored() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for path in ["/v1/me", "/auth/v1/user"] {
        let res = app
            .client
            .get(app.url(path))
            .header("apikey", "some-public-anon-key")
            .bearer_auth(&user.access_token)
            .send()
            .await
            .unwrap();
        json_with_status(res, 200).await;
    }
    // The apikey alone is no credential.
    let res = app
        .client
        .get(app.url("/v1/me"))
        .header("apikey", "some-public-anon-key")
        .send()
        .await
        .unwrap();
    assert_envelope(res, 401, "UNAUTHORIZED").await;
    // Signup with an apikey header works.
    let res = app
        .client
        .post(app.url("/auth/v1/signup"))
        .header("apikey", "some-public-anon-key")
        .json(&json!({"email": "apikey@example.com", "password": "long-enough-pw"}))
        .send()
        .await
        .unwrap();
    json_with_status(res, 200).await;
}

/// With an anon key configured, a request whose only credential is that key is
/// anonymous: 401 on `/v1/me`, while the public config still answers.
#[tokio::test]
async fn anon_key_as_bearer_is_anonymous() {
    let app = spawn_app_with(|c| c.auth.anon_key = Some("anon-key-xyz".into())).await;
    let res = app
        .client
        .get(app.url("/v1/me"))
        .header("apikey", "anon-key-xyz")
        .bearer_auth("anon-key-xyz")
        .send()
        .await
        .unwrap();
    assert_envelope(res, 401, "UNAUTHORIZED").await;
    let res = app.get("/auth/v1/user", Some("anon-key-xyz")).await;
    assert_gotrue_error(res, 401, "bad_jwt").await;

    let res = app
        .client
        .get(app.url("/functions/v1/get-public-config"))
        .header("apikey", "anon-key-xyz")
        .bearer_auth("anon-key-xyz")
        .send()
        .await
        .unwrap();
    let body = json_with_status(res, 200).await;
    assert_eq!(body["signup_bonus_credits"], 30);

    // A real user token next to the anon apikey still works.
    let user = app.new_user().await;
    let res = app
        .client
        .get(app.url("/v1/me"))
        .header("apikey", "anon-key-xyz")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    json_with_status(res, 200).await;
}

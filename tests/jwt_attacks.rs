//! Forged and broken bearer tokens on `/v1/me`: each must be a 401 `UNAUTHORIZED`
//! envelope. Tokens are minted with a known secret so that each differs from a working
//! token (checked first) in exactly one defect.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use atelier::auth::jwt::Claims;
use base64::Engine;
use common::{assert_envelope, json_with_status, spawn_app_with, TestApp, TestUser};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

const SECRET: &str = "test-secret-0123456789abcdef0123456789";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A server signing with [`SECRET`], and a real signed-up user.
async fn app_and_user() -> (TestApp, TestUser) {
    let app = spawn_app_with(|c| c.auth.jwt_secret = Some(SECRET.into())).await;
    let user = app.new_user().await;
    (app, user)
}

/// The session id the server put in the user's real access token.
fn session_id_of(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    let claims: Claims = serde_json::from_slice(&bytes).expect("claims");
    claims.session_id
}

/// Claims exactly like the server's own for `user`: valid for an hour.
fn good_claims(user: &TestUser) -> Claims {
    let now = now_secs();
    Claims {
        sub: user.id.clone(),
        email: user.email.clone(),
        role: "authenticated".into(),
        aud: "authenticated".into(),
        iat: now,
        exp: now + 3600,
        session_id: session_id_of(&user.access_token),
        jti: "forged-or-not".into(),
    }
}

fn mint(claims: &Claims, alg: Algorithm, secret: &str) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// `GET /v1/me` with a raw `Authorization` header value (or none).
async fn me_with_header(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url("/v1/me"));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    req.send().await.expect("request")
}

async fn assert_refused(app: &TestApp, authorization: Option<&str>, what: &str) {
    let res = me_with_header(app, authorization).await;
    let status = res.status();
    assert_eq!(status, 401, "{what}: expected 401, got {status}");
    assert_envelope(res, 401, "UNAUTHORIZED").await;
}

/// The minting helper is right: a token it signs with the server's secret, for a real
/// user and live session, is accepted. Every attack below is this token with one defect.
#[tokio::test]
async fn correctly_minted_token_is_accepted() {
    let (app, user) = app_and_user().await;
    let token = mint(&good_claims(&user), Algorithm::HS256, SECRET);
    let body = json_with_status(
        me_with_header(&app, Some(&format!("Bearer {token}"))).await,
        200,
    )
    .await;
    assert_eq!(body["id"], user.id.as_str());
    // The scheme is case-insensitive, as in RFC 7235.
    let res = me_with_header(&app, Some(&format!("bearer {token}"))).await;
    assert_eq!(res.status(), 200);
}

/// No header, an empty bearer, another scheme, and garbage.
#[tokio::test]
async fn missing_or_malformed_headers_are_refused() {
    let (app, user) = app_and_user().await;
    assert_refused(&app, None, "no header").await;
    assert_refused(&app, Some("Bearer "), "empty bearer").await;
    assert_refused(&app, Some("Bearer"), "scheme only").await;
    assert_refused(&app, Some("Basic xyz"), "basic scheme").await;
    let basic_with_token = format!("Basic {}", user.access_token);
    assert_refused(&app, Some(&basic_with_token), "real token under Basic").await;
    assert_refused(&app, Some("Bearer garbage"), "garbage").await;
    assert_refused(&app, Some("Bearer a.b.c"), "three garbage parts").await;
    assert_refused(&app, Some(&user.access_token), "token without a scheme").await;
}

/// `alg: none` with real-looking claims and an empty signature.
#[tokio::test]
async fn alg_none_is_refused() {
    let (app, user) = app_and_user().await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64.encode(serde_json::to_vec(&good_claims(&user)).unwrap());
    let token = format!("{header}.{payload}.");
    assert_refused(&app, Some(&format!("Bearer {token}")), "alg none").await;
    // The same with the real token's signature pasted on.
    let real_sig = user.access_token.rsplit('.').next().unwrap();
    let token = format!("{header}.{payload}.{real_sig}");
    assert_refused(&app, Some(&format!("Bearer {token}")), "alg none + sig").await;
}

/// Signed with another secret.
#[tokio::test]
async fn wrong_secret_is_refused() {
    let (app, user) = app_and_user().await;
    let token = mint(
        &good_claims(&user),
        Algorithm::HS256,
        "another-secret-0123456789abcdef012345",
    );
    assert_refused(&app, Some(&format!("Bearer {token}")), "wrong secret").await;
}

/// Right secret, but expired (by a minute, and by one second: no leeway).
#[tokio::test]
async fn expired_token_is_refused() {
    let (app, user) = app_and_user().await;
    for ago in [60, 1] {
        let mut claims = good_claims(&user);
        claims.iat = now_secs() - 3600;
        claims.exp = now_secs() - ago;
        let token = mint(&claims, Algorithm::HS256, SECRET);
        assert_refused(&app, Some(&format!("Bearer {token}")), "expired").await;
    }
}

/// Right secret, wrong audience.
#[tokio::test]
async fn wrong_audience_is_refused() {
    let (app, user) = app_and_user().await;
    for aud in ["service_role", "anon", ""] {
        let mut claims = good_claims(&user);
        claims.aud = aud.into();
        let token = mint(&claims, Algorithm::HS256, SECRET);
        assert_refused(
            &app,
            Some(&format!("Bearer {token}")),
            &format!("aud {aud:?}"),
        )
        .await;
    }
}

/// Right secret and a live session, but a user id that does not exist.
#[tokio::test]
async fn unknown_user_is_refused() {
    let (app, user) = app_and_user().await;
    let mut claims = good_claims(&user);
    claims.sub = uuid::Uuid::now_v7().to_string();
    let token = mint(&claims, Algorithm::HS256, SECRET);
    assert_refused(&app, Some(&format!("Bearer {token}")), "unknown user").await;
}

/// Right secret and user, but a session that does not exist.
#[tokio::test]
async fn unknown_session_is_refused() {
    let (app, user) = app_and_user().await;
    let mut claims = good_claims(&user);
    claims.session_id = uuid::Uuid::now_v7().to_string();
    let token = mint(&claims, Algorithm::HS256, SECRET);
    assert_refused(&app, Some(&format!("Bearer {token}")), "unknown session").await;
}

/// Right secret, real user and session, but HS512 (and HS384) instead of HS256.
#[tokio::test]
async fn other_hmac_algorithms_are_refused() {
    let (app, user) = app_and_user().await;
    for alg in [Algorithm::HS512, Algorithm::HS384] {
        let token = mint(&good_claims(&user), alg, SECRET);
        assert_refused(&app, Some(&format!("Bearer {token}")), &format!("{alg:?}")).await;
    }
}

/// A minted token stops working when its session is logged out: the server checks the
/// session, not only the signature.
#[tokio::test]
async fn minted_token_dies_with_its_session() {
    let (app, user) = app_and_user().await;
    let token = mint(&good_claims(&user), Algorithm::HS256, SECRET);
    let bearer = format!("Bearer {token}");
    assert_eq!(me_with_header(&app, Some(&bearer)).await.status(), 200);
    let res = app
        .post_json(
            "/auth/v1/logout",
            Some(&user.access_token),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_refused(&app, Some(&bearer), "logged-out session").await;
}

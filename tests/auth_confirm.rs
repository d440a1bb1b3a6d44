//! GoTrue's confirmation and recovery over HTTP, with mail delivered by SMTP to a fake
//! server on 127.0.0.1 and every code read from the received message: `auth.confirm_email`
//! signups, `/verify`, `/resend`, `/recover`, `PUT /user`, the signup bonus paid once per
//! address on confirmation (also after deletion and re-signup), wrong, expired and
//! used-up codes, the per-address and per-IP limits, and a down SMTP server.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_smtp.rs"]
mod fake_smtp;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use std::time::Duration;

use atelier::config::Config;
use billing_support::assert_audit_clean;
use common::{assert_gotrue_error, json_with_status, spawn_app_with, TestApp};
use fake_smtp::FakeSmtp;
use serde_json::{json, Value};

const PASSWORD: &str = "correct-horse-battery";

async fn confirming_app(tweak: impl FnOnce(&mut Config)) -> (TestApp, FakeSmtp) {
    let smtp = fake_smtp::start().await;
    let app = spawn_app_with(|c| {
        smtp.configure(c);
        c.auth.confirm_email = true;
        c.auth.email_interval_secs = 0;
        tweak(c);
    })
    .await;
    (app, smtp)
}

fn address(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::now_v7().simple())
}

async fn auth_post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.post_json(&format!("/auth/v1/{path}"), None, &body)
        .await
}

async fn signup(app: &TestApp, email: &str) -> Value {
    json_with_status(
        auth_post(app, "signup", json!({"email": email, "password": PASSWORD})).await,
        200,
    )
    .await
}

async fn verify(app: &TestApp, kind: &str, email: &str, token: &str) -> reqwest::Response {
    auth_post(
        app,
        "verify",
        json!({"type": kind, "email": email, "token": token}),
    )
    .await
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    auth_post(
        app,
        "token?grant_type=password",
        json!({"email": email, "password": password}),
    )
    .await
}

/// The `n`-th message (1-based) delivered to `to`, waiting for it (10 s at most).
async fn nth_mail_to(smtp: &FakeSmtp, to: &str, n: usize) -> fake_smtp::Received {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mine: Vec<_> = smtp
            .received()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .collect();
        if mine.len() >= n {
            return mine[n - 1].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} mails to {to} expected, {} arrived",
            mine.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The 6-digit code a message carries (after "code is").
fn code_in(mail: &fake_smtp::Received) -> String {
    let at = mail.data.find("code is ").expect("a code in the message") + "code is ".len();
    let code: String = mail.data[at..].chars().take(6).collect();
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{}", mail.data);
    code
}

async fn code_for(smtp: &FakeSmtp, to: &str, n: usize) -> String {
    code_in(&nth_mail_to(smtp, to, n).await)
}

fn wrong(code: &str) -> String {
    let last = code.as_bytes()[5] - b'0';
    format!("{}{}", &code[..5], (last + 1) % 10)
}

fn token_of(session: &Value) -> String {
    session["access_token"]
        .as_str()
        .expect("a session")
        .to_string()
}

/// `PUT /auth/v1/user` with `token`.
async fn put_user(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url("/auth/v1/user"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn purchased(app: &TestApp, token: &str) -> i64 {
    app.credits(token).await["purchased"].as_i64().unwrap()
}

#[tokio::test]
async fn a_signup_waits_for_its_mailed_code_and_is_paid_its_bonus_on_confirmation() {
    let (app, smtp) = confirming_app(|c| c.auth.signup_bonus_credits = 30).await;
    let email = address("new");
    let user = signup(&app, &email).await;
    assert!(user.get("access_token").is_none(), "no session yet: {user}");
    assert_eq!(user["email"], email.as_str());
    assert!(user["email_confirmed_at"].is_null(), "{user}");
    assert!(user["confirmation_sent_at"].is_string(), "{user}");
    let mail = nth_mail_to(&smtp, &email, 1).await;
    assert!(
        mail.data.contains("Subject: Confirm your e-mail address"),
        "{}",
        mail.data
    );
    let code = code_in(&mail);
    let stored: Vec<String> = app
        .running
        .as_ref()
        .unwrap()
        .state
        .db
        .with_conn(|conn| {
            let mut stmt = conn.prepare("SELECT code_hash FROM auth_codes")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0].contains(&code) && stored[0].len() == 64,
        "stored hashed"
    );

    assert_gotrue_error(
        login(&app, &email, PASSWORD).await,
        400,
        "email_not_confirmed",
    )
    .await;
    assert_gotrue_error(
        login(&app, &email, "wrong-password!").await,
        400,
        "invalid_credentials",
    )
    .await;
    assert_gotrue_error(
        verify(&app, "signup", &email, &wrong(&code)).await,
        403,
        "otp_expired",
    )
    .await;
    assert_gotrue_error(
        verify(&app, "signup", "nobody@example.com", &code).await,
        403,
        "otp_expired",
    )
    .await;
    assert_gotrue_error(
        verify(&app, "magic", &email, &code).await,
        400,
        "validation_failed",
    )
    .await;

    let session = json_with_status(verify(&app, "signup", &email, &code).await, 200).await;
    assert!(
        session["user"]["email_confirmed_at"].is_string(),
        "{session}"
    );
    let token = token_of(&session);
    assert_eq!(
        purchased(&app, &token).await,
        30,
        "the bonus, on confirmation"
    );
    assert_gotrue_error(
        verify(&app, "signup", &email, &code).await,
        403,
        "otp_expired",
    )
    .await;
    assert_eq!(purchased(&app, &token).await, 30, "a code confirms once");
    let again = json_with_status(login(&app, &email, PASSWORD).await, 200).await;
    assert_eq!(again["user"]["id"], user["id"]);

    // Signing up again with a confirmed address: a look-alike answer, no mail, no account.
    let lookalike = signup(&app, &email).await;
    assert_ne!(lookalike["id"], user["id"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(smtp.received().len(), 1);
    let ledger = billing_support::ledger_entries(
        &app,
        &common::TestUser {
            email: email.clone(),
            password: PASSWORD.into(),
            access_token: token.clone(),
            refresh_token: String::new(),
            id: user["id"].as_str().unwrap().into(),
        },
    )
    .await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["reason"], "signup bonus");
    assert_audit_clean(&app);
    app.stop().await;
}

#[tokio::test]
async fn five_wrong_tries_spend_a_code_an_expired_code_is_refused_and_resend_mails_a_new_one() {
    let (app, smtp) = confirming_app(|c| c.auth.code_ttl_secs = 2).await;
    let email = address("tries");
    signup(&app, &email).await;
    let code = code_for(&smtp, &email, 1).await;
    for _ in 0..5 {
        assert_gotrue_error(
            verify(&app, "signup", &email, &wrong(&code)).await,
            403,
            "otp_expired",
        )
        .await;
    }
    assert_gotrue_error(
        verify(&app, "signup", &email, &code).await,
        403,
        "otp_expired",
    )
    .await;

    assert_eq!(
        json_with_status(
            auth_post(&app, "resend", json!({"type": "signup", "email": email})).await,
            200
        )
        .await,
        json!({})
    );
    let fresh = code_for(&smtp, &email, 2).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_gotrue_error(
        verify(&app, "signup", &email, &fresh).await,
        403,
        "otp_expired",
    )
    .await;

    json_with_status(
        auth_post(&app, "resend", json!({"type": "signup", "email": email})).await,
        200,
    )
    .await;
    let third = code_for(&smtp, &email, 3).await;
    json_with_status(verify(&app, "signup", &email, &third).await, 200).await;
    // Nothing to resend for a confirmed address, or an unknown one: the same answer.
    for to in [email.as_str(), "unknown@example.com"] {
        json_with_status(
            auth_post(&app, "resend", json!({"type": "signup", "email": to})).await,
            200,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(smtp.received().len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn the_bonus_is_paid_once_per_address_even_after_deletion_and_a_new_signup() {
    let (app, smtp) = confirming_app(|c| c.auth.signup_bonus_credits = 30).await;
    let admin = app.new_admin().await;
    let email = address("once");
    let first = signup(&app, &email).await;
    let code = code_for(&smtp, &email, 1).await;
    let token = token_of(&json_with_status(verify(&app, "signup", &email, &code).await, 200).await);
    assert_eq!(purchased(&app, &token).await, 30);

    let id = first["id"].as_str().unwrap();
    let delete = |token: String| {
        let url = app.url(&format!("/auth/v1/admin/users/{id}"));
        let client = app.client.clone();
        async move { client.delete(url).bearer_auth(token).send().await.unwrap() }
    };
    assert_gotrue_error(delete(token.clone()).await, 403, "not_admin").await;
    let service = app
        .running
        .as_ref()
        .unwrap()
        .state
        .auth
        .keys()
        .sign_key(atelier::auth::jwt::SERVICE_ROLE, 1)
        .unwrap();
    let deleted = json_with_status(delete(service.clone()).await, 200).await;
    assert_eq!(deleted["id"], id);
    assert_gotrue_error(
        delete(admin.access_token.clone()).await,
        404,
        "user_not_found",
    )
    .await;
    assert_eq!(
        app.get("/v1/me", Some(&token)).await.status(),
        401,
        "sessions ended"
    );
    assert_gotrue_error(
        login(&app, &email, PASSWORD).await,
        400,
        "invalid_credentials",
    )
    .await;

    // The address signs up again (and a +tag of it): each confirms, neither is paid.
    let tagged = email.replace('@', "+again@");
    for (to, n) in [(email.as_str(), 2), (tagged.as_str(), 1)] {
        let again = signup(&app, to).await;
        assert_ne!(again["id"], first["id"]);
        let code = code_for(&smtp, to, n).await;
        let token = token_of(&json_with_status(verify(&app, "signup", to, &code).await, 200).await);
        assert_eq!(purchased(&app, &token).await, 0, "{to}: no second bonus");
    }
    // Another address is paid as usual.
    let other = address("other");
    signup(&app, &other).await;
    let code = code_for(&smtp, &other, 1).await;
    let token = token_of(&json_with_status(verify(&app, "signup", &other, &code).await, 200).await);
    assert_eq!(purchased(&app, &token).await, 30);
    assert_audit_clean(&app);
    app.stop().await;
}

#[tokio::test]
async fn recovery_mails_a_code_only_to_real_accounts_and_answers_the_same_for_all() {
    let (app, smtp) = confirming_app(|c| c.auth.confirm_email = false).await;
    let user = app.new_user().await;
    for to in [user.email.as_str(), "ghost@example.com"] {
        let body =
            json_with_status(auth_post(&app, "recover", json!({"email": to})).await, 200).await;
        assert_eq!(body, json!({}));
    }
    let mail = nth_mail_to(&smtp, &user.email, 1).await;
    assert!(
        mail.data.contains("Subject: Reset your password"),
        "{}",
        mail.data
    );
    let code = code_in(&mail);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.received().len(), 1, "nothing for an unknown address");
    assert_gotrue_error(
        verify(&app, "signup", &user.email, &code).await,
        403,
        "otp_expired",
    )
    .await;
    let session = json_with_status(verify(&app, "recovery", &user.email, &code).await, 200).await;
    let token = token_of(&session);

    assert_gotrue_error(
        put_user(&app, &token, json!({"password": user.password})).await,
        422,
        "same_password",
    )
    .await;
    assert_gotrue_error(
        put_user(&app, &token, json!({"password": "short"})).await,
        422,
        "weak_password",
    )
    .await;
    let updated = json_with_status(
        put_user(
            &app,
            &token,
            json!({"password": "a-brand-new-password", "data": {"full_name": "Ada Lovelace"}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(updated["user_metadata"]["full_name"], "Ada Lovelace");
    assert_gotrue_error(
        login(&app, &user.email, &user.password).await,
        400,
        "invalid_credentials",
    )
    .await;
    json_with_status(login(&app, &user.email, "a-brand-new-password").await, 200).await;
    let cleared = json_with_status(
        put_user(
            &app,
            &token,
            json!({"data": {"full_name": null, "company": "X"}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(cleared["user_metadata"], json!({"company": "X"}));
    assert_eq!(
        app.client
            .put(app.url("/auth/v1/user"))
            .json(&json!({"data": {}}))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "PUT /user needs a session"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_address_change_is_confirmed_by_a_code_sent_to_the_new_address() {
    let (app, smtp) = confirming_app(|_| {}).await;
    let email = address("old");
    signup(&app, &email).await;
    let code = code_for(&smtp, &email, 1).await;
    let token = token_of(&json_with_status(verify(&app, "signup", &email, &code).await, 200).await);
    let taken = address("taken");
    signup(&app, &taken).await;
    assert_gotrue_error(
        put_user(&app, &token, json!({"email": taken})).await,
        422,
        "email_exists",
    )
    .await;
    let new_email = address("new");
    let pending = json_with_status(
        put_user(&app, &token, json!({"email": new_email})).await,
        200,
    )
    .await;
    assert_eq!(
        pending["email"],
        email.as_str(),
        "unchanged until confirmed"
    );
    assert_eq!(pending["new_email"], new_email.as_str());
    let code = code_for(&smtp, &new_email, 1).await;
    assert_gotrue_error(
        verify(&app, "email_change", &email, &code).await,
        403,
        "otp_expired",
    )
    .await;
    let session =
        json_with_status(verify(&app, "email_change", &new_email, &code).await, 200).await;
    assert_eq!(session["user"]["email"], new_email.as_str());
    json_with_status(login(&app, &new_email, PASSWORD).await, 200).await;
    assert_gotrue_error(
        login(&app, &email, PASSWORD).await,
        400,
        "invalid_credentials",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn code_mails_are_limited_per_address_and_verification_per_ip() {
    let (app, smtp) = confirming_app(|c| {
        c.auth.email_interval_secs = 60;
        c.auth.rate_limit_per_minute = 8;
    })
    .await;
    let email = address("limited");
    signup(&app, &email).await;
    assert_gotrue_error(
        auth_post(&app, "resend", json!({"type": "signup", "email": email})).await,
        429,
        "over_email_send_rate_limit",
    )
    .await;
    // Unknown or not, a second request for one address within the interval is refused.
    json_with_status(
        auth_post(&app, "recover", json!({"email": "ghost@example.com"})).await,
        200,
    )
    .await;
    assert_gotrue_error(
        auth_post(&app, "recover", json!({"email": "GHOST@example.com"})).await,
        429,
        "over_email_send_rate_limit",
    )
    .await;
    let code = code_for(&smtp, &email, 1).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            verify(&app, "signup", &email, &wrong(&code))
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_gotrue_error(
        verify(&app, "signup", &email, &code).await,
        429,
        "over_request_rate_limit",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn with_the_smtp_server_down_the_signup_succeeds_and_its_code_arrives_later() {
    let (app, smtp) = confirming_app(|_| {}).await;
    smtp.down();
    let email = address("later");
    let started = std::time::Instant::now();
    let user = signup(&app, &email).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the signup did not wait"
    );
    assert!(user["email_confirmed_at"].is_null());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(smtp.received().is_empty());
    smtp.up();
    let code = code_for(&smtp, &email, 1).await;
    json_with_status(verify(&app, "signup", &email, &code).await, 200).await;
    app.stop().await;
}

#[tokio::test]
async fn without_confirm_email_a_signup_signs_in_at_once_with_its_bonus() {
    let (app, smtp) = confirming_app(|c| {
        c.auth.confirm_email = false;
        c.auth.signup_bonus_credits = 30;
    })
    .await;
    let user = app.new_user().await;
    assert_eq!(purchased(&app, &user.access_token).await, 30);
    let me = json_with_status(
        app.get("/auth/v1/user", Some(&user.access_token)).await,
        200,
    )
    .await;
    assert!(me["email_confirmed_at"].is_string(), "{me}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(smtp.received().is_empty(), "no mail without confirmation");
    app.stop().await;
}

//! E-mail over HTTP against the real server: the offline transport writes readable
//! `.eml` files; the SMTP transport delivers (with authentication) to a fake SMTP server
//! on 127.0.0.1; with the server down the outbox retries while the request that queued
//! the message has already succeeded.

mod common;
#[path = "common/fake_smtp.rs"]
mod fake_smtp;

use common::{assert_envelope, json_with_status, spawn_app, spawn_app_with, TestApp, TestUser};
use serde_json::{json, Value};

async fn send_test(app: &TestApp, admin: &TestUser, to: &str, locale: &str) -> Value {
    json_with_status(
        app.post_json(
            "/v1/admin/mail/test",
            Some(&admin.access_token),
            &json!({"to": to, "locale": locale}),
        )
        .await,
        200,
    )
    .await
}

async fn outbox(app: &TestApp, admin: &TestUser) -> Value {
    json_with_status(
        app.get("/v1/admin/mail-outbox", Some(&admin.access_token))
            .await,
        200,
    )
    .await
}

/// Polls the outbox until its newest message satisfies `done` (10 s at most).
async fn wait_outbox(app: &TestApp, admin: &TestUser, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = outbox(app, admin).await;
        if done(&body["mails"][0]) {
            return body["mails"][0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "outbox: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_a_mail_server_messages_become_readable_eml_files() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let seller = app.new_user().await;
    assert_envelope(
        app.post_json(
            "/v1/admin/mail/test",
            Some(&seller.access_token),
            &json!({"to": "a@b.co"}),
        )
        .await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_envelope(
        app.post_json(
            "/v1/admin/mail/test",
            Some(&admin.access_token),
            &json!({"to": "nobody"}),
        )
        .await,
        400,
        "BAD_REQUEST",
    )
    .await;
    send_test(&app, &admin, "ops@example.com", "zh").await;
    let mail = wait_outbox(&app, &admin, |m| m["status"] == "sent").await;
    assert_eq!(mail["kind"], "alert");
    assert!(mail["subject"].as_str().unwrap().contains("告警"), "{mail}");
    assert_eq!(outbox(&app, &admin).await["transport"], "file");
    let dir = app.data_dir.join("mail");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("To: ops@example.com"), "{text}");
    assert!(text.contains("From: Atelier <noreply@localhost>"), "{text}");
    assert!(
        text.contains("multipart/alternative") && text.contains("text/html"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn smtp_delivers_with_authentication() {
    let smtp = fake_smtp::start().await;
    let app = spawn_app_with(|c| {
        smtp.configure(c);
        c.mail.smtp_username = "atelier".into();
        c.mail.smtp_password = "s3cret".into();
        c.mail.from = "Studio <studio@example.com>".into();
    })
    .await;
    let admin = app.new_admin().await;
    send_test(&app, &admin, "ops@example.com", "en").await;
    let got = smtp.wait_for(1).await;
    assert!(got[0].authenticated);
    assert_eq!(got[0].to, ["ops@example.com"]);
    assert!(got[0].from.contains("studio@example.com"));
    assert!(
        got[0]
            .data
            .contains("Subject: [Atelier alert] Test message"),
        "{}",
        got[0].data
    );
    assert!(got[0].data.contains("Sent by"), "{}", got[0].data);
    let mail = wait_outbox(&app, &admin, |m| m["status"] == "sent").await;
    assert_eq!(mail["attempts"], 1);
    app.stop().await;
}

#[tokio::test]
async fn with_the_smtp_server_down_the_outbox_retries_and_the_request_still_succeeds() {
    let smtp = fake_smtp::start().await;
    smtp.down();
    let app = spawn_app_with(|c| smtp.configure(c)).await;
    let admin = app.new_admin().await;
    let started = std::time::Instant::now();
    assert_eq!(
        send_test(&app, &admin, "ops@example.com", "en").await["status"],
        "queued"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the request did not wait"
    );
    let failed = wait_outbox(&app, &admin, |m| m["attempts"].as_i64() >= Some(1)).await;
    assert_eq!(failed["status"], "queued", "{failed}");
    assert!(failed["last_error"].is_string(), "{failed}");
    assert!(smtp.received().is_empty());
    smtp.up();
    smtp.wait_for(1).await;
    let sent = wait_outbox(&app, &admin, |m| m["status"] == "sent").await;
    assert!(sent["attempts"].as_i64().unwrap() >= 2, "{sent}");
    app.stop().await;
}

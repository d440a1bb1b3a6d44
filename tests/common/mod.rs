//! Test harness: `spawn_app()` starts the real server on 127.0.0.1:0 with a fresh
//! SQLite file in a temp dir; tests talk to it over HTTP with a real client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use atelier::app::{self, RunningApp};
use atelier::config::Config;
use reqwest::{Client, Response};
use serde_json::{json, Value};

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: Client,
    pub data_dir: PathBuf,
    pub running: Option<RunningApp>,
    _dir: tempfile::TempDir,
}

/// The default test configuration: a temp data dir, an ephemeral port.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".into();
    config.data.dir = dir.to_path_buf();
    config.log.level = "warn".into();
    config
}

/// Lifts the per-user job limits (for tests about other rules).
pub fn unlimited(config: &mut Config) {
    config.limits.active_jobs_image_gen = 100_000;
    config.limits.active_jobs_analysis = 100_000;
    config.limits.active_jobs_style_replicate = 100_000;
    config.limits.job_creations_per_minute = 100_000;
}

/// Starts a server with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after `tweak` adjusted the test configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let running = app::start(config).await.expect("server starts");
    let addr = running.addr;
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        data_dir: dir.path().to_path_buf(),
        running: Some(running),
        _dir: dir,
    }
}

/// A signed-up user's session.
pub struct TestUser {
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
    pub id: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request")
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request")
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/auth/v1/signup",
            None,
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Signs up a fresh user and returns its session.
    pub async fn new_user(&self) -> TestUser {
        let email = format!("seller-{}@example.com", uuid::Uuid::now_v7().simple());
        let password = "correct-horse-battery".to_string();
        let res = self.signup(&email, &password).await;
        assert_eq!(res.status(), 200, "signup failed");
        let body: Value = res.json().await.expect("json");
        TestUser {
            email,
            password,
            access_token: body["access_token"].as_str().expect("token").to_string(),
            refresh_token: body["refresh_token"].as_str().expect("refresh").to_string(),
            id: body["user"]["id"].as_str().expect("id").to_string(),
        }
    }

    /// Creates an admin (as `atelier user create --admin` does) and signs it in.
    pub async fn new_admin(&self) -> TestUser {
        let email = format!("admin-{}@example.com", uuid::Uuid::now_v7().simple());
        let password = "correct-horse-battery".to_string();
        let state = &self.running.as_ref().expect("running").state;
        let user = state
            .auth
            .create_account(&email, &password, Value::Null, "admin")
            .await
            .expect("admin created");
        let res = self
            .post_json(
                "/auth/v1/token?grant_type=password",
                None,
                &json!({"email": email, "password": password}),
            )
            .await;
        let body = json_with_status(res, 200).await;
        TestUser {
            email,
            password,
            access_token: body["access_token"].as_str().expect("token").to_string(),
            refresh_token: body["refresh_token"].as_str().expect("refresh").to_string(),
            id: user.id,
        }
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// Reads a response as JSON, asserting the status first.
pub async fn json_with_status(res: Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.expect("body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Asserts the exact error envelope with `code` and `status`.
pub async fn assert_envelope(res: Response, status: u16, code: &str) -> Value {
    assert!(
        res.headers().contains_key("x-request-id"),
        "missing x-request-id"
    );
    let body = json_with_status(res, status).await;
    let error = body.get("error").expect("envelope has error");
    assert_eq!(error["code"], code, "body: {body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, vec!["error"], "envelope has only `error`");
    for key in error.as_object().expect("object").keys() {
        assert!(
            ["code", "message", "details"].contains(&key.as_str()),
            "extra key {key}"
        );
    }
    body
}

/// Asserts GoTrue's error shape with `error_code` and `status`.
pub async fn assert_gotrue_error(res: Response, status: u16, error_code: &str) -> Value {
    let body = json_with_status(res, status).await;
    assert_eq!(body["code"], status, "body: {body}");
    assert_eq!(body["error_code"], error_code, "body: {body}");
    assert!(body["msg"].as_str().is_some_and(|m| !m.is_empty()));
    body
}

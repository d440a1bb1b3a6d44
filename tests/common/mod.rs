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
    // Tests stop servers with units still running; waiting for them is tested on its own.
    config.queue.shutdown_grace_secs = 0;
    config
}

/// Lifts the per-user job limits (for tests about other rules).
pub fn unlimited(config: &mut Config) {
    config.limits.active_jobs_image_gen = 100_000;
    config.limits.active_jobs_analysis = 100_000;
    config.limits.active_jobs_style_replicate = 100_000;
    config.limits.job_creations_per_minute = 100_000;
    config.limits.prompt_streams_per_minute = 100_000;
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
    TestApp::adopt(running, dir)
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
    /// A test app around a server already started on `dir` (a restart on the data of a
    /// stopped one, see [`TestApp::stop_keeping_data`]).
    pub fn adopt(running: RunningApp, dir: tempfile::TempDir) -> TestApp {
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

    /// Stops the server and hands over its data dir (to restart on it or inspect it).
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        self._dir
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

// ---- Generation helpers (generation_validation.rs, generation_flows.rs) ----

/// A real PNG of `width`×`height`: one flat colour, or (`noisy`) pixels that do not
/// compress, so the file is about `width × height × 4` bytes.
pub fn png_bytes(width: u32, height: u32, noisy: bool) -> Vec<u8> {
    let mut state: u32 = 0x9E37_79B9;
    let img = image::RgbaImage::from_fn(width, height, |_, _| {
        if !noisy {
            return image::Rgba([200, 30, 30, 255]);
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [r, g, b, _] = state.to_le_bytes();
        image::Rgba([r, g, b, 255])
    });
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .expect("png encodes");
    bytes
}

/// `bytes` as a `data:image/png;base64,…` URI.
pub fn png_data_uri(bytes: &[u8]) -> String {
    use base64::Engine;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A small flat product photo as a data URI.
pub fn small_png() -> String {
    png_data_uri(&png_bytes(8, 8, false))
}

/// Writes a real PNG straight into the `uploads` bucket under `key` and returns its
/// public URL path (`/storage/v1/object/public/uploads/<key>`).
pub fn write_upload(app: &TestApp, key: &str) -> String {
    let path = app.data_dir.join("storage").join("uploads").join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("uploads dir");
    std::fs::write(&path, png_bytes(40, 30, false)).expect("upload written");
    format!("/storage/v1/object/public/uploads/{key}")
}

/// `base` with the fields of `extra` set (a `null` in `extra` removes the field).
pub fn with(base: &Value, extra: Value) -> Value {
    let mut out = base.clone();
    let fields = out.as_object_mut().expect("base is an object");
    for (key, value) in extra.as_object().expect("extra is an object") {
        if value.is_null() {
            fields.remove(key);
        } else {
            fields.insert(key.clone(), value.clone());
        }
    }
    out
}

impl TestApp {
    /// `POST /functions/v1/<function>` with a Bearer token.
    pub async fn call(&self, function: &str, token: &str, body: &Value) -> Response {
        self.post_json(&format!("/functions/v1/{function}"), Some(token), body)
            .await
    }

    /// Calls a job-creating function, asserts the ack and returns the job id.
    pub async fn start_job(&self, function: &str, token: &str, body: &Value) -> String {
        let ack = json_with_status(self.call(function, token, body).await, 200).await;
        assert_eq!(ack["status"], "processing", "{ack}");
        ack["job_id"].as_str().expect("job_id").to_string()
    }

    /// The caller's `credits` object from `GET /v1/me`.
    pub async fn credits(&self, token: &str) -> Value {
        json_with_status(self.get("/v1/me", Some(token)).await, 200).await["credits"].clone()
    }

    /// How many jobs `GET /v1/jobs` lists for the caller.
    pub async fn job_count(&self, token: &str) -> usize {
        let list = json_with_status(self.get("/v1/jobs?limit=100", Some(token)).await, 200).await;
        list["jobs"].as_array().expect("jobs").len()
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, token: &str, job_id: &str) -> Value {
        json_with_status(
            self.get(&format!("/v1/jobs/{job_id}"), Some(token)).await,
            200,
        )
        .await
    }

    /// Polls a job until it leaves `processing` (30 s at most).
    pub async fn wait_job(&self, token: &str, job_id: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let job = self.job(token, job_id).await;
            if job["status"] != "processing" {
                return job;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job never finished: {job}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// An admin gives `user_id` `amount` credits.
    pub async fn grant_credits(&self, admin: &TestUser, user_id: &str, amount: i64) {
        let body = json!({"user_id": user_id, "amount": amount, "reason": "test credits",
                          "idempotency_key": uuid::Uuid::now_v7().to_string()});
        let res = self
            .post_json("/v1/admin/credits", Some(&admin.access_token), &body)
            .await;
        json_with_status(res, 200).await;
    }

    /// Downloads a result PNG and returns its decoded `(width, height)`.
    pub async fn image_size(&self, url: &str) -> (u32, u32) {
        self.image_size_as(url, "image/png").await
    }

    /// Downloads a result image served as `content_type`; returns its decoded size.
    pub async fn image_size_as(&self, url: &str, content_type: &str) -> (u32, u32) {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            self.url(url)
        };
        let res = self.client.get(url).send().await.expect("request");
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], content_type);
        let bytes = res.bytes().await.expect("bytes");
        let img = image::load_from_memory(&bytes).expect("an image");
        (img.width(), img.height())
    }
}

// ---- Fake upstreams (providers_*.rs) ----

pub mod fake_ark;
pub mod fake_gemini;
pub mod fake_http;
pub mod fake_openrouter;

impl TestApp {
    /// Starts a job with `function` and waits for its end.
    pub async fn run_job(&self, token: &str, function: &str, body: &Value) -> Value {
        let id = self.start_job(function, token, body).await;
        self.wait_job(token, &id).await
    }

    /// The kinds of the caller's ledger rows for `job_id`, oldest first.
    pub async fn ledger_kinds(&self, token: &str, job_id: &str) -> Vec<String> {
        let ledger =
            json_with_status(self.get("/v1/ledger?limit=100", Some(token)).await, 200).await;
        let mut kinds: Vec<String> = ledger["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["job_id"] == job_id)
            .map(|e| e["kind"].as_str().expect("kind").to_string())
            .collect();
        kinds.reverse();
        kinds
    }
}

/// Asserts a provider test's job failed with `code` after `calls` upstream calls (the
/// fake saw `seen`), charged nothing and gave its whole hold back (1000 credits again).
pub async fn assert_failed_and_released(
    app: &TestApp,
    user: &TestUser,
    job: &Value,
    code: &str,
    (seen, calls): (usize, usize),
) {
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_code"], code, "{job}");
    assert_eq!(job["cost_amount"], 0, "{job}");
    assert_eq!(seen, calls, "upstream calls: {job}");
    let kinds = app
        .ledger_kinds(&user.access_token, job["id"].as_str().expect("id"))
        .await;
    assert_eq!(kinds, ["hold", "release"], "{job}");
    assert_eq!(app.credits(&user.access_token).await["available"], 1000);
}

/// The error of a job's first unit.
pub fn first_unit_error(job: &Value) -> &Value {
    &job["result_data"]["units"][0]["error"]
}

/// Quick retries for provider tests: `attempts` attempts, 50 ms base backoff, and a
/// signup bonus large enough for real model prices.
pub fn provider_test_config(config: &mut Config, attempts: u32) {
    config.queue.max_attempts = attempts;
    config.queue.backoff_base_ms = 50;
    config.auth.signup_bonus_credits = 1000;
    unlimited(config);
}

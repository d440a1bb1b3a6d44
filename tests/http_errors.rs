//! The HTTP layer over real sockets: the error envelope on every kind of failure (no
//! route, wrong method, too large, bad JSON, wrong media type, CORS), request ids, and the
//! small public endpoints (`/healthz`, `/readyz`, `/v1/packages`, `get-public-config`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{assert_envelope, assert_gotrue_error, json_with_status, spawn_app, spawn_app_with};
use reqwest::{Method, Response};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Asserts that an error response says it is JSON (never a text/plain body).
fn assert_json_content_type(res: &Response) {
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "error response content-type is {ct:?}, not application/json (status {})",
        res.status()
    );
}

/// [`assert_envelope`] plus the JSON content type.
async fn envelope(res: Response, status: u16, code: &str) -> Value {
    assert_json_content_type(&res);
    assert_envelope(res, status, code).await
}

/// [`assert_gotrue_error`] plus the JSON content type, x-request-id, and no envelope.
async fn gotrue(res: Response, status: u16, error_code: &str) -> Value {
    assert_json_content_type(&res);
    assert!(
        res.headers().contains_key("x-request-id"),
        "missing x-request-id"
    );
    let body = assert_gotrue_error(res, status, error_code).await;
    assert!(
        body.get("error").is_none(),
        "GoTrue errors have no envelope: {body}"
    );
    body
}

/// A JSON object body of at least `size` bytes.
fn big_json(size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({ "pad": "x".repeat(size) })).unwrap()
}

/// A response read off a raw socket.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `method path` with a `Transfer-Encoding: chunked` body (no Content-Length) over
/// a raw socket, `chunk` bytes per chunk, and reads the answer. reqwest here lacks its
/// `stream` feature, so this is how a body of unannounced length is sent.
async fn chunked_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    chunk: usize,
) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    for part in body.chunks(chunk) {
        wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        wire.extend_from_slice(part);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything; a failed write is fine.
    let (mut reader, mut writer) = stream.split();
    let write = async {
        let _ = writer.write_all(&wire).await;
    };
    let mut raw = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(write, read) })
        .await
        .expect("raw request timed out");
    parse_raw(&raw)
}

fn parse_raw(raw: &[u8]) -> RawResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

/// Asserts a raw response is the envelope with `code` and `status`.
fn raw_envelope(res: &RawResponse, status: u16, code: &str) {
    let body = res.json();
    assert_eq!(res.status, status, "body: {body}");
    assert!(
        res.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "content-type {:?}",
        res.header("content-type")
    );
    assert!(res.header("x-request-id").is_some(), "missing x-request-id");
    assert_eq!(body["error"]["code"], code, "body: {body}");
}

// ---------------------------------------------------------------- routing errors

/// An unknown path is a 404 `NOT_FOUND` envelope, not warp's text body.
#[tokio::test]
async fn unknown_route_is_404_envelope() {
    let app = spawn_app().await;
    for path in [
        "/nope",
        "/v1/nope",
        "/v1/me/extra",
        "/functions/v1/no-such-function",
    ] {
        let res = app.get(path, None).await;
        envelope(res, 404, "NOT_FOUND").await;
    }
    let res = app.post_json("/nope", None, &json!({})).await;
    envelope(res, 404, "NOT_FOUND").await;
}

/// A known path with the wrong method is 405 with the code `BAD_REQUEST`.
#[tokio::test]
async fn wrong_method_is_405_bad_request() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let res = app
        .post_json("/v1/me", Some(&user.access_token), &json!({}))
        .await;
    envelope(res, 405, "BAD_REQUEST").await;
    let res = app.client.delete(app.url("/healthz")).send().await.unwrap();
    envelope(res, 405, "BAD_REQUEST").await;
    let res = app
        .client
        .put(app.url("/v1/packages"))
        .send()
        .await
        .unwrap();
    envelope(res, 405, "BAD_REQUEST").await;
}

// ---------------------------------------------------------------- body size

/// How many accounts the server's database holds.
async fn user_count(app: &common::TestApp) -> usize {
    let db = app.running.as_ref().expect("running").state.db.clone();
    db.read(atelier::db::accounts::list)
        .await
        .expect("list users")
        .len()
}

/// A signup body (valid credentials) padded past `size` bytes in `data`.
fn padded_signup(email: &str, size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "email": email,
        "password": "long-enough-pw",
        "data": {"pad": "x".repeat(size)},
    }))
    .unwrap()
}

/// Under `/auth/v1` an oversized signup (announced by Content-Length or chunked, with a
/// lowered and the default limit) is a 413 in GoTrue's shape and creates no account, while
/// the same request under the limit succeeds.
#[tokio::test]
async fn oversized_signup_is_413_gotrue_shaped_and_creates_no_account() {
    for (limit, pad) in [(2048u64, 4096usize), (1024 * 1024, 1024 * 1024 + 16)] {
        let app = spawn_app_with(|c| c.server.json_body_limit_bytes = limit).await;
        let res = app
            .client
            .post(app.url("/auth/v1/signup"))
            .header("content-type", "application/json")
            .body(padded_signup("big1@example.com", pad))
            .send()
            .await
            .unwrap();
        gotrue(res, 413, "validation_failed").await;

        let res = chunked_request(
            app.addr,
            "POST",
            "/auth/v1/signup",
            &[],
            &padded_signup("big2@example.com", pad),
            64 * 1024,
        )
        .await;
        let body = res.json();
        assert_eq!(res.status, 413, "limit {limit}, chunked: {body}");
        assert_eq!(body["code"], 413, "{body}");
        assert_eq!(body["error_code"], "validation_failed", "{body}");
        assert_eq!(
            user_count(&app).await,
            0,
            "limit {limit}: an oversized signup created a user"
        );

        // Under the limit, chunked, the same route works (the helper is sound).
        let res = chunked_request(
            app.addr,
            "POST",
            "/auth/v1/signup",
            &[],
            &padded_signup("small@example.com", 64),
            16,
        )
        .await;
        assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
        assert_eq!(user_count(&app).await, 1);
    }
}

/// Over a lowered limit (2 KiB), a JSON body announced by Content-Length gets 413
/// `BAD_REQUEST` from `POST get-public-config`.
#[tokio::test]
async fn oversized_body_with_content_length_is_413_on_public_config() {
    let app = spawn_app_with(|c| c.server.json_body_limit_bytes = 2048).await;
    let res = app
        .client
        .post(app.url("/functions/v1/get-public-config"))
        .header("content-type", "application/json")
        .body(big_json(4096))
        .send()
        .await
        .unwrap();
    envelope(res, 413, "BAD_REQUEST").await;
    // A body under the limit is fine (proves the limit, not the method, is refused).
    let res = app
        .client
        .post(app.url("/functions/v1/get-public-config"))
        .header("content-type", "application/json")
        .body(big_json(512))
        .send()
        .await
        .unwrap();
    json_with_status(res, 200).await;
}

/// The same with a chunked body (no Content-Length): the server must count what it reads.
#[tokio::test]
async fn oversized_chunked_body_is_413_on_public_config() {
    let app = spawn_app_with(|c| c.server.json_body_limit_bytes = 2048).await;
    let res = chunked_request(
        app.addr,
        "POST",
        "/functions/v1/get-public-config",
        &[],
        &big_json(4096),
        512,
    )
    .await;
    raw_envelope(&res, 413, "BAD_REQUEST");
}

/// `/v1/me` reads the body (capped) but must also refuse an oversized one, whether
/// announced by Content-Length or chunked, even with a valid token.
#[tokio::test]
async fn oversized_body_is_413_on_me() {
    let app = spawn_app_with(|c| c.server.json_body_limit_bytes = 2048).await;
    let user = app.new_user().await;
    let res = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(&user.access_token)
        .header("content-type", "application/json")
        .body(big_json(4096))
        .send()
        .await
        .unwrap();
    envelope(res, 413, "BAD_REQUEST").await;
    let auth = format!("Bearer {}", user.access_token);
    let res = chunked_request(
        app.addr,
        "GET",
        "/v1/me",
        &[("Authorization", &auth)],
        &big_json(4096),
        512,
    )
    .await;
    raw_envelope(&res, 413, "BAD_REQUEST");
}

/// With the default limit (1 MiB), a body just over it is refused the same way.
#[tokio::test]
async fn oversized_body_over_default_1mib_limit_is_413() {
    let app = spawn_app().await;
    assert_eq!(
        app.running
            .as_ref()
            .unwrap()
            .state
            .config
            .server
            .json_body_limit_bytes,
        1024 * 1024
    );
    let body = big_json(1024 * 1024 + 16);
    let res = app
        .client
        .post(app.url("/functions/v1/get-public-config"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    envelope(res, 413, "BAD_REQUEST").await;
    let res = chunked_request(
        app.addr,
        "POST",
        "/functions/v1/get-public-config",
        &[],
        &body,
        64 * 1024,
    )
    .await;
    raw_envelope(&res, 413, "BAD_REQUEST");
}

// ---------------------------------------------------------------- /auth/v1 shapes

/// Broken JSON to signup is GoTrue's 400 `validation_failed` (not the envelope).
#[tokio::test]
async fn bad_json_to_signup_is_gotrue_validation_failed() {
    let app = spawn_app().await;
    for raw in [
        &b"{\"email\": "[..],
        b"not json at all",
        b"[1,2,3]",
        b"\"str\"",
    ] {
        let res = app
            .client
            .post(app.url("/auth/v1/signup"))
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .unwrap();
        gotrue(res, 400, "validation_failed").await;
    }
}

/// A 404 under `/auth/v1` is GoTrue-shaped as well; and a wrong method there too.
#[tokio::test]
async fn not_found_and_wrong_method_under_auth_are_gotrue_shaped() {
    let app = spawn_app().await;
    let res = app.get("/auth/v1/nope", None).await;
    gotrue(res, 404, "not_found").await;
    let res = app.get("/auth/v1/signup", None).await;
    gotrue(res, 405, "validation_failed").await;
}

/// A JSON body sent as `text/plain` to signup is 415, GoTrue-shaped, and creates no user.
#[tokio::test]
async fn wrong_content_type_to_signup_is_415_gotrue_shaped() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/auth/v1/signup"))
        .header("content-type", "text/plain")
        .body(r#"{"email":"ct@example.com","password":"long-enough-pw"}"#)
        .send()
        .await
        .unwrap();
    gotrue(res, 415, "validation_failed").await;
    assert_eq!(user_count(&app).await, 0);
}

// ---------------------------------------------------------------- request ids

/// Every response (success, envelope error, GoTrue error, 404) carries `x-request-id`;
/// generated ids differ; a client-sent id is echoed.
#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_clients() {
    let app = spawn_app().await;
    let mut seen = Vec::new();
    for res in [
        app.get("/healthz", None).await,
        app.get("/v1/me", None).await,
        app.get("/nope", None).await,
        app.get("/auth/v1/user", None).await,
        app.get("/v1/packages", None).await,
    ] {
        let id = res
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id on {}", res.url()))
            .to_str()
            .unwrap()
            .to_string();
        assert!(!id.is_empty());
        seen.push(id);
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "request ids repeat: {seen:?}");

    for path in ["/healthz", "/v1/me", "/nope", "/auth/v1/user"] {
        let res = app
            .client
            .get(app.url(path))
            .header("x-request-id", "abc-123")
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], "abc-123", "{path}");
    }
}

// ---------------------------------------------------------------- CORS

/// With the default `*`, a preflight is answered with `access-control-allow-origin`.
#[tokio::test]
async fn cors_preflight_is_answered() {
    let app = spawn_app().await;
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/v1/me"))
        .header("origin", "https://anywhere.example")
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let allow = res.headers()["access-control-allow-origin"]
        .to_str()
        .unwrap();
    assert!(
        allow == "*" || allow == "https://anywhere.example",
        "allow-origin {allow}"
    );
    assert!(res.headers().contains_key("x-request-id"));
    // A simple cross-origin GET gets the header too.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("access-control-allow-origin"));
}

/// With an explicit origin list, a preflight from another origin is a 403 `FORBIDDEN`
/// envelope (not warp's text), while the listed origin is allowed.
#[tokio::test]
async fn cors_refuses_unlisted_origin_with_envelope() {
    let app = spawn_app_with(|c| c.server.cors_origins = vec!["https://shop.example".into()]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/v1/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let res = preflight("https://evil.example").await.unwrap();
    envelope(res, 403, "FORBIDDEN").await;

    let res = preflight("https://shop.example").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
}

// ---------------------------------------------------------------- public endpoints

/// `/healthz` and `/readyz` answer 200 with their JSON.
#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let body = json_with_status(app.get("/healthz", None).await, 200).await;
    assert_eq!(body, json!({"status": "ok"}));
    let body = json_with_status(app.get("/readyz", None).await, 200).await;
    assert_eq!(body["status"], "ready");
}

/// `/v1/packages` lists the six default packages with every documented field.
#[tokio::test]
async fn packages_lists_the_six_defaults() {
    let app = spawn_app().await;
    let body = json_with_status(app.get("/v1/packages", None).await, 200).await;
    let packages = body["packages"].as_array().expect("packages array");
    assert_eq!(packages.len(), 6, "{body}");
    let fields = [
        "id",
        "name",
        "type",
        "price_usd",
        "credits",
        "first_sub_bonus",
        "is_popular",
        "sort_order",
    ];
    for p in packages {
        for f in fields {
            assert!(p.get(f).is_some(), "package lacks {f}: {p}");
        }
        assert!(uuid::Uuid::parse_str(p["id"].as_str().unwrap()).is_ok());
        assert!(p["price_usd"].is_number() && p["credits"].as_i64().unwrap() > 0);
        assert!(p["is_popular"].is_boolean(), "{p}");
    }
    let of_type = |t: &str| packages.iter().filter(|p| p["type"] == t).count();
    assert_eq!(of_type("subscription"), 3);
    assert_eq!(of_type("one_time"), 3);
    // Display order and the documented defaults (API.md §5).
    let order: Vec<i64> = packages
        .iter()
        .map(|p| p["sort_order"].as_i64().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "packages not in sort_order");
    // The reference's current set (20260307233500_refresh_pricing_packages.sql).
    let figures: Vec<(String, String, f64, i64, i64, bool)> = packages
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["type"].as_str().unwrap().to_string(),
                p["price_usd"].as_f64().unwrap(),
                p["credits"].as_i64().unwrap(),
                p["first_sub_bonus"].as_i64().unwrap(),
                p["is_popular"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("topup_5", "one_time", 5.0, 1250, 0, false),
        ("topup_15", "one_time", 15.0, 3750, 0, false),
        ("topup_30", "one_time", 30.0, 7500, 0, false),
        ("monthly", "subscription", 9.9, 2600, 0, false),
        ("quarterly", "subscription", 27.9, 7700, 0, false),
        ("yearly", "subscription", 99.0, 29100, 0, true),
    ]
    .map(|(n, t, p, c, b, pop)| (n.to_string(), t.to_string(), p, c, b, pop));
    assert_eq!(figures, expected);
}

/// `get-public-config` answers GET and POST without auth, with the signup bonus and the
/// billing mode.
#[tokio::test]
async fn public_config_get_and_post() {
    let app = spawn_app().await;
    let got = json_with_status(app.get("/functions/v1/get-public-config", None).await, 200).await;
    let posted = json_with_status(
        app.post_json("/functions/v1/get-public-config", None, &json!({}))
            .await,
        200,
    )
    .await;
    for body in [&got, &posted] {
        assert_eq!(body["signup_bonus_credits"], 30, "{body}");
        assert_eq!(body["billing_mode"], "simulated", "{body}");
        assert!(body["models"].is_array(), "{body}");
        assert!(body["limits"].is_object(), "{body}");
    }
    // The values come from the configuration, not constants.
    let app = spawn_app_with(|c| c.auth.signup_bonus_credits = 7).await;
    let body = json_with_status(app.get("/functions/v1/get-public-config", None).await, 200).await;
    assert_eq!(body["signup_bonus_credits"], 7);
}

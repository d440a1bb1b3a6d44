//! A fake Volcengine Ark image API (UPSTREAMS.md §3): `POST {base}/images/generations`
//! under `/api/v3` with `Authorization: Bearer <key>`; answers `b64_json` JPEGs (or PNGs)
//! whose `size` echoes the request, `url` outputs served by the fake itself, per-item
//! errors in `data[]`, and Ark's error bodies (`{"error": {"code", "message", "param",
//! "type"}}`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use atelier::config::Config;
use serde_json::{json, Value};

use super::fake_http::{b64, jpeg_bytes, FakeServer, Recorded, Reply, Script};
use super::png_bytes;

/// The key the fake accepts.
pub const KEY: &str = "ark-3c1d6f0e-test-key";
/// The path Atelier must call under the fake's base URL.
pub const PATH: &str = "/api/v3/images/generations";
/// The only model the fake knows.
pub const MODEL: &str = "doubao-seedream-4-5-251128";
const REQUEST_ID: &str = "021732550000000abcdef0123456789abcdef0123456789abcdef";

/// A running fake Ark.
pub struct FakeArk {
    pub server: FakeServer,
    pub script: Arc<Script>,
    /// Output images served at `/files/<name>` (url mode).
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl FakeArk {
    /// Starts the fake. Unscripted calls get one `b64_json` JPEG at the requested size.
    pub async fn start() -> FakeArk {
        let script = Arc::new(Script::new(echo_reply));
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let (routed, served) = (script.clone(), files.clone());
        let server = FakeServer::start(move |req: &Recorded| {
            if req.method == "GET" {
                if let Some(name) = req.path().strip_prefix("/files/") {
                    return match served.lock().unwrap().get(name) {
                        Some(bytes) => Reply::bytes(200, "image/jpeg", bytes.clone()),
                        None => Reply::bytes(404, "text/plain", b"NoSuchKey".to_vec()),
                    };
                }
            }
            if req.bearer() != Some(KEY) {
                return error(
                    401,
                    "AuthenticationError",
                    "The API key or AK/SK in the request is missing or invalid.",
                    "Unauthorized",
                );
            }
            if req.method != "POST" || req.path() != PATH {
                return error(
                    404,
                    "NotFound",
                    "The requested resource was not found.",
                    "NotFound",
                );
            }
            let Some(body) = &req.json else {
                return error(
                    400,
                    "InvalidParameter",
                    "The request body is not valid JSON.",
                    "BadRequest",
                );
            };
            if body["model"] != MODEL {
                return model_not_found(body["model"].as_str().unwrap_or_default());
            }
            if !body["prompt"].is_string() {
                return error(
                    400,
                    "MissingParameter",
                    "The required parameter `prompt` is missing.",
                    "BadRequest",
                );
            }
            routed.next(req)
        })
        .await;
        FakeArk {
            server,
            script,
            files,
        }
    }

    /// `http://127.0.0.1:<port>/api/v3`.
    pub fn base_url(&self) -> String {
        format!("{}/api/v3", self.server.url())
    }

    /// Points Atelier's Ark provider at this fake with the right key.
    pub fn configure(&self, config: &mut Config) {
        config.providers.ark.api_key = KEY.into();
        config.providers.ark.base_url = self.base_url();
    }

    /// The requests to `/images/generations`.
    pub fn calls(&self) -> Vec<Recorded> {
        self.server.requests_to(PATH)
    }

    pub fn push(&self, reply: Reply) {
        self.script.push(reply);
    }

    pub fn always(&self, reply: Reply) {
        self.script.always(reply);
    }

    /// The next call gets a `url` output (a `width`×`height` JPEG served by the fake at
    /// a signed-looking URL with `&` and `%` in its query).
    pub fn push_url_image(&self, width: u32, height: u32) {
        let files = self.files.clone();
        self.script.push_with(move |req: &Recorded| {
            let name = format!("out-{}.jpeg", req.index);
            files
                .lock()
                .unwrap()
                .insert(name.clone(), jpeg_bytes(width, height));
            let host = req.header("host").expect("Host header").to_string();
            let url = format!(
                "http://{host}/files/{name}?X-Tos-Algorithm=TOS4-HMAC-SHA256&X-Tos-Credential=AKLT%2F20251125%2Fcn-beijing%2Ftos%2Frequest&X-Tos-Expires=86400&X-Tos-Signature=9f2c"
            );
            generation(vec![json!({"url": url, "size": format!("{width}x{height}")})], 1)
        });
    }

    /// The `GET /files/…` downloads the fake served.
    pub fn downloads(&self) -> Vec<Recorded> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path().starts_with("/files/"))
            .collect()
    }
}

/// Ark's error body.
pub fn error(status: u16, code: &str, message: &str, kind: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"code": code, "message": format!("{message} Request id: {REQUEST_ID}"),
                          "param": "", "type": kind}}),
    )
}

/// 404 `InvalidEndpointOrModel.NotFound`.
pub fn model_not_found(model: &str) -> Reply {
    error(
        404,
        "InvalidEndpointOrModel.NotFound",
        &format!("The model or endpoint {model} does not exist or you do not have access to it."),
        "NotFound",
    )
}

/// 429 `RateLimitExceeded.EndpointRPMExceeded`, without `Retry-After`.
pub fn rate_limited() -> Reply {
    error(
        429,
        "RateLimitExceeded.EndpointRPMExceeded",
        "The request has exceeded the RPM rate limit of the endpoint. Please try again later.",
        "TooManyRequests",
    )
}

/// 400 `OutputImageSensitiveContentDetected` (a safety block of the whole request).
pub fn output_sensitive() -> Reply {
    error(
        400,
        "OutputImageSensitiveContentDetected",
        "The request failed because the output image may contain sensitive information.",
        "BadRequest",
    )
}

/// 400 `InvalidParameter` naming `size` (permanent).
pub fn invalid_parameter() -> Reply {
    let mut reply = error(
        400,
        "InvalidParameter",
        "The parameter `size` specified in the request is not valid.",
        "BadRequest",
    );
    if let Some(super::fake_http::Part::Bytes(body)) = reply.parts.first_mut() {
        let mut value: Value = serde_json::from_slice(body).expect("json");
        value["error"]["param"] = json!("size");
        *body = value.to_string().into_bytes();
    }
    reply
}

/// A 200 generation answer with these `data[]` items, billing `generated` images.
pub fn generation(items: Vec<Value>, generated: u64) -> Reply {
    let pixels: u64 = items
        .iter()
        .filter_map(|i| i["size"].as_str())
        .filter_map(parse_size)
        .map(|(w, h)| u64::from(w) * u64::from(h))
        .sum();
    Reply::json(
        200,
        &json!({"model": MODEL, "created": 1_732_550_000, "data": items,
                "usage": {"generated_images": generated, "output_tokens": pixels / 256,
                          "total_tokens": pixels / 256}}),
    )
}

/// One `b64_json` JPEG item of `width`×`height`.
pub fn jpeg_item(width: u32, height: u32) -> Value {
    json!({"b64_json": b64(&jpeg_bytes(width, height)), "size": format!("{width}x{height}")})
}

/// One `b64_json` PNG item of `width`×`height` (5.0 lite can answer PNG).
pub fn png_item(width: u32, height: u32) -> Value {
    json!({"b64_json": b64(&png_bytes(width, height, false)), "size": format!("{width}x{height}")})
}

/// A per-item failure inside a 200 answer.
pub fn item_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// A 200 with one JPEG of `width`×`height`.
pub fn image_reply(width: u32, height: u32) -> Reply {
    generation(vec![jpeg_item(width, height)], 1)
}

/// A 200 whose only item is a per-item `OutputImageSensitiveContentDetected` error.
pub fn sensitive_item_reply() -> Reply {
    generation(
        vec![item_error(
            "OutputImageSensitiveContentDetected",
            "The output image may contain sensitive information.",
        )],
        0,
    )
}

/// `WxH` → `(W, H)`.
pub fn parse_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// One JPEG at the request's `size` (`WxH` as asked; a tier `1K`/`2K`/`4K` → a square of
/// 1024/2048/4096).
pub fn echo_reply(req: &Recorded) -> Reply {
    let size = req
        .json
        .as_ref()
        .and_then(|b| b["size"].as_str())
        .unwrap_or("2048x2048");
    let (w, h) = parse_size(size).unwrap_or(match size {
        "1K" => (1024, 1024),
        "4K" => (4096, 4096),
        _ => (2048, 2048),
    });
    image_reply(w, h)
}

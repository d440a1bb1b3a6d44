//! A fake OpenRouter (UPSTREAMS.md §1): `POST {base}/chat/completions` with
//! `Authorization: Bearer <key>`; answers vision calls with JSON `content`, image calls
//! with `message.images[]` data URLs, streams with SSE (`: OPENROUTER PROCESSING`
//! comments, split lines, `finish_reason`, `data: [DONE]`), and errors with
//! `{"error": {"code": <status>, "message": …}}`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use atelier::config::Config;
use serde_json::{json, Value};

use super::fake_http::{b64, FakeServer, Recorded, Reply, Script};
use super::png_bytes;

/// The key the fake accepts.
pub const KEY: &str = "sk-or-v1-test-4f1e2d3c";
/// The path Atelier must call under the fake's base URL.
pub const PATH: &str = "/api/v1/chat/completions";
/// OpenRouter's keep-alive comment.
pub const PROCESSING: &str = ": OPENROUTER PROCESSING\n\n";
/// The end of an OpenRouter stream.
pub const DONE: &str = "data: [DONE]\n\n";

/// A running fake OpenRouter.
pub struct FakeOpenRouter {
    pub server: FakeServer,
    /// What `/chat/completions` answers (after the key check).
    pub script: Arc<Script>,
}

impl FakeOpenRouter {
    /// Starts the fake. Unscripted requests get: a 1024×1024 image for image calls
    /// (`modalities` present), a short stream for `stream: true`, else an analysis JSON.
    pub async fn start() -> FakeOpenRouter {
        let script = Arc::new(Script::new(|req: &Recorded| {
            let body = req.json.clone().unwrap_or(Value::Null);
            if body.get("modalities").is_some() {
                image_reply(1024, 1024)
            } else if body["stream"] == true {
                stream_reply(&["A ceramic mug ", "on warm oak."])
            } else {
                text_reply(&analysis_json().to_string())
            }
        }));
        let routed = script.clone();
        let server = FakeServer::start(move |req: &Recorded| {
            if req.bearer() != Some(KEY) {
                return error_reply(401, "No auth credentials found");
            }
            if req.method != "POST" || req.path() != PATH {
                return error_reply(404, "Not Found");
            }
            if req.json.is_none() {
                return error_reply(400, "Invalid JSON body");
            }
            routed.next(req)
        })
        .await;
        FakeOpenRouter { server, script }
    }

    /// `http://127.0.0.1:<port>/api/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/api/v1", self.server.url())
    }

    /// Points Atelier's OpenRouter provider at this fake with the right key.
    pub fn configure(&self, config: &mut Config) {
        config.providers.openrouter.api_key = KEY.into();
        config.providers.openrouter.base_url = self.base_url();
    }

    /// The requests to `/chat/completions` (with the right path; any key).
    pub fn calls(&self) -> Vec<Recorded> {
        self.server.requests_to(PATH)
    }

    /// Queues `reply` for the next call.
    pub fn push(&self, reply: Reply) {
        self.script.push(reply);
    }

    /// Every call beyond the queue gets `reply`.
    pub fn always(&self, reply: Reply) {
        self.script.always(reply);
    }
}

/// The analysis the fake's vision answer describes.
pub fn analysis_json() -> Value {
    json!({"product_name": "Stoneware mug", "category": "kitchen",
           "selling_points": ["hand glazed", "dishwasher safe"], "materials": ["stoneware"],
           "colors": ["sage green"], "style": "rustic minimal",
           "design_specs": {"capacity_ml": 350},
           "image_prompts_seed": ["mug on a linen cloth, morning light"]})
}

/// A non-streamed chat completion whose `message` is `message`.
pub fn completion(message: Value, finish_reason: &str) -> Value {
    json!({"id": "gen-1732550000-AbCdEfGh", "object": "chat.completion",
           "created": 1_732_550_000, "model": "google/gemini-2.5-flash-image",
           "provider": "Google",
           "choices": [{"index": 0, "logprobs": null, "finish_reason": finish_reason,
                        "native_finish_reason": "STOP", "message": message}],
           "usage": {"prompt_tokens": 1290, "completion_tokens": 1300, "total_tokens": 2590}})
}

/// A 200 with text `content` (a vision/JSON answer).
pub fn text_reply(content: &str) -> Reply {
    Reply::json(
        200,
        &completion(
            json!({"role": "assistant", "content": content, "refusal": null}),
            "stop",
        ),
    )
    .header("x-generation-id", "gen-1732550000-AbCdEfGh")
}

/// A 200 whose `message.images[0]` is a `width`×`height` PNG data URL.
pub fn image_reply(width: u32, height: u32) -> Reply {
    let url = format!(
        "data:image/png;base64,{}",
        b64(&png_bytes(width, height, false))
    );
    images_reply(&[url])
}

/// A 200 with these image data URLs in `message.images[]`.
pub fn images_reply(urls: &[String]) -> Reply {
    let images: Vec<Value> = urls
        .iter()
        .map(|url| json!({"type": "image_url", "image_url": {"url": url}}))
        .collect();
    Reply::json(
        200,
        &completion(
            json!({"role": "assistant", "content": "Here is your product photo.",
                   "images": images}),
            "stop",
        ),
    )
}

/// A 200 with a text-only answer and no `images` (a model that refused or forgot).
pub fn no_image_reply() -> Reply {
    text_reply("I can describe the scene, but I did not draw it this time.")
}

/// OpenRouter's error body with HTTP status = `error.code`.
pub fn error_reply(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"code": status, "message": message}}),
    )
}

/// A 429 rate limit with `Retry-After: <secs>` and the platform's rate-limit headers.
pub fn rate_limited(retry_after_secs: u64) -> Reply {
    Reply::json(
        429,
        &json!({"error": {"code": 429,
                          "message": "Rate limit exceeded: google/gemini-2.5-flash-image",
                          "metadata": {"headers": {"X-RateLimit-Limit": "20",
                                                   "X-RateLimit-Remaining": "0"}}}}),
    )
    .header("retry-after", &retry_after_secs.to_string())
    .header("x-ratelimit-limit", "20")
    .header("x-ratelimit-remaining", "0")
    .header("x-ratelimit-reset", "1732550060000")
}

/// A 400 from the provider behind OpenRouter (bad parameters): permanent.
pub fn bad_request() -> Reply {
    Reply::json(
        400,
        &json!({"error": {"code": 400, "message": "Provider returned error",
                          "metadata": {"provider_name": "Google AI Studio",
                                       "raw": "{\"error\":{\"code\":400,\"message\":\"Unable to process input image.\",\"status\":\"INVALID_ARGUMENT\"}}"}}}),
    )
}

/// A 403 moderation refusal (a safety block).
pub fn moderation_block() -> Reply {
    Reply::json(
        403,
        &json!({"error": {"code": 403, "message": "Your input was flagged by moderation",
                          "metadata": {"reasons": ["sexual/minors"],
                                       "flagged_input": "a photo of…",
                                       "provider_name": "Google",
                                       "model_slug": "google/gemini-2.5-flash-image"}}}),
    )
}

/// A 404 for a model OpenRouter does not know.
pub fn unknown_model() -> Reply {
    error_reply(404, "No endpoints found for google/gemini-9-image.")
}

/// One `data:` event of a stream carrying `text`.
pub fn chunk(text: &str) -> String {
    let event = json!({"id": "gen-1", "object": "chat.completion.chunk",
                       "created": 1_732_550_000, "model": "google/gemini-3.1-flash-image-preview",
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                                    "finish_reason": null}]});
    format!("data: {event}\n\n")
}

/// The last content event: empty delta, `finish_reason: stop`, usage.
pub fn finish() -> String {
    let event = json!({"id": "gen-1", "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                                    "native_finish_reason": "STOP"}],
                       "usage": {"prompt_tokens": 80, "completion_tokens": 12, "total_tokens": 92}});
    format!("data: {event}\n\n")
}

/// A mid-stream failure: HTTP stays 200, one event carries `error` and
/// `finish_reason: error`, then the stream ends.
pub fn stream_error() -> String {
    let event = json!({"id": "gen-1", "object": "chat.completion.chunk",
                       "error": {"code": "server_error", "message": "Provider disconnected"},
                       "choices": [{"index": 0, "delta": {"content": ""},
                                    "finish_reason": "error"}]});
    format!("data: {event}\n\n")
}

/// A complete, well-formed stream of `texts`: a processing comment first, every event
/// line but the first cut in half across two writes, `finish_reason`, `[DONE]`.
pub fn stream_reply(texts: &[&str]) -> Reply {
    let mut reply = Reply::event_stream().write(PROCESSING);
    for (i, text) in texts.iter().enumerate() {
        let event = chunk(text);
        reply = if i == 0 {
            reply.write(event)
        } else {
            let half = event.len() / 2;
            reply.write_split(event, half)
        };
    }
    reply.write(finish()).write(DONE)
}

/// Keep-alive comments every `every` for `total` (a silent upstream that stays alive).
pub fn keep_alive(mut reply: Reply, every: Duration, total: Duration) -> Reply {
    let mut waited = Duration::ZERO;
    while waited < total {
        reply = reply.pause(every).write(PROCESSING);
        waited += every;
    }
    reply
}

/// The message with role `user` (the last one).
pub fn user_message(body: &Value) -> &Value {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .unwrap_or_else(|| panic!("no user message: {body}"))
}

/// Every text of every message (string content or `text` parts), joined.
pub fn all_text(body: &Value) -> String {
    let mut out = String::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        match &message["content"] {
            Value::String(s) => out.push_str(s),
            Value::Array(parts) => {
                for part in parts.iter().filter(|p| p["type"] == "text") {
                    out.push_str(part["text"].as_str().unwrap_or_default());
                }
            }
            _ => {}
        }
        out.push('\n');
    }
    out
}

/// The `image_url.url`s of the user message, in order.
pub fn image_urls(body: &Value) -> Vec<String> {
    user_message(body)["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] == "image_url")
        .map(|p| p["image_url"]["url"].as_str().expect("url").to_string())
        .collect()
}

//! A fake Gemini API (UPSTREAMS.md §2): `POST {base}/models/{model}:generateContent` and
//! `…:streamGenerateContent?alt=sse` under a `/v1beta` base, `x-goog-api-key` auth
//! (anything else → 400 `INVALID_ARGUMENT` / `API_KEY_INVALID`), camelCase responses with
//! `inlineData` images, safety outcomes, SSE chunks ending in `\r\n\r\n` with no
//! `[DONE]`, and Google's error bodies (429 with `RetryInfo.retryDelay`).
#![allow(dead_code)]

use std::sync::Arc;

use atelier::config::Config;
use serde_json::{json, Value};

use super::fake_http::{b64, FakeServer, Recorded, Reply, Script};
use super::png_bytes;

/// The key the fake accepts.
pub const KEY: &str = "AIzaSyFAKE-test-key-0123456789";
/// The models the fake knows (others → 404 `NOT_FOUND`).
pub const MODELS: &[&str] = &[
    "gemini-2.5-flash-image",
    "gemini-3.1-flash-image-preview",
    "gemini-3-pro-image-preview",
    "gemini-2.5-flash",
];

/// Which method a request called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    Stream,
}

/// A running fake Gemini API.
pub struct FakeGemini {
    pub server: FakeServer,
    /// What a valid call answers (after the key, route and model checks).
    pub script: Arc<Script>,
}

impl FakeGemini {
    /// Starts the fake. Unscripted calls get: for `:generateContent`, a 1024×1024 image
    /// when image output was asked for, else the analysis JSON as text; for the stream,
    /// two text chunks.
    pub async fn start() -> FakeGemini {
        let script = Arc::new(Script::new(|req: &Recorded| {
            let body = req.json.clone().unwrap_or(Value::Null);
            let wants_image = body["generationConfig"]["responseModalities"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == "IMAGE"));
            match route(req) {
                Some((_, Method::Stream)) => {
                    stream_reply(&[&super::fake_openrouter::analysis_json().to_string()])
                }
                _ if wants_image => image_reply(1024, 1024),
                _ => text_reply(&super::fake_openrouter::analysis_json().to_string()),
            }
        }));
        let routed = script.clone();
        let server = FakeServer::start(move |req: &Recorded| {
            if req.header("x-goog-api-key") != Some(KEY) {
                return invalid_key();
            }
            let Some((model, method)) = route(req) else {
                return not_found("The requested URL was not found on this server.");
            };
            if method == Method::Stream && req.query() != Some("alt=sse") {
                // Without alt=sse Google streams a JSON array; Atelier must ask for SSE.
                return error(400, "INVALID_ARGUMENT", "streamGenerateContent needs alt=sse in this fake");
            }
            if !MODELS.contains(&model.as_str()) {
                return not_found(&format!(
                    "models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
                ));
            }
            if req.json.is_none() {
                return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
            }
            routed.next(req)
        })
        .await;
        FakeGemini { server, script }
    }

    /// `http://127.0.0.1:<port>/v1beta`.
    pub fn base_url(&self) -> String {
        format!("{}/v1beta", self.server.url())
    }

    /// Points Atelier's Gemini provider at this fake with the right key.
    pub fn configure(&self, config: &mut Config) {
        config.providers.gemini.api_key = KEY.into();
        config.providers.gemini.base_url = self.base_url();
    }

    /// Every request that reached the fake.
    pub fn calls(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    pub fn push(&self, reply: Reply) {
        self.script.push(reply);
    }

    pub fn always(&self, reply: Reply) {
        self.script.always(reply);
    }
}

/// `(model, method)` of a `POST /v1beta/models/{model}:{method}`.
pub fn route(req: &Recorded) -> Option<(String, Method)> {
    if req.method != "POST" {
        return None;
    }
    let rest = req.path().strip_prefix("/v1beta/models/")?;
    let (model, method) = rest.split_once(':')?;
    let method = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream,
        _ => return None,
    };
    Some((model.to_string(), method))
}

/// Google's error body.
pub fn error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// The answer to a missing or wrong `x-goog-api-key`.
pub fn invalid_key() -> Reply {
    Reply::json(
        400,
        &json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                          "status": "INVALID_ARGUMENT",
                          "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                       "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                                       "metadata": {"service": "generativelanguage.googleapis.com"}},
                                      {"@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                                       "locale": "en-US",
                                       "message": "API key not valid. Please pass a valid API key."}]}}),
    )
}

/// A 404 `NOT_FOUND`.
pub fn not_found(message: &str) -> Reply {
    error(404, "NOT_FOUND", message)
}

/// A 400 `INVALID_ARGUMENT` about the request (permanent).
pub fn invalid_argument() -> Reply {
    error(
        400,
        "INVALID_ARGUMENT",
        "Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    )
}

/// 429 `RESOURCE_EXHAUSTED` with a per-minute `QuotaFailure` and
/// `RetryInfo.retryDelay` — no `Retry-After` header.
pub fn resource_exhausted(retry_delay: &str) -> Reply {
    Reply::json(
        429,
        &json!({"error": {"code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                                 "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash-image"},
                                 "quotaValue": "10"}]},
                {"@type": "type.googleapis.com/google.rpc.Help",
                 "links": [{"description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]}}),
    )
}

/// `usageMetadata` of an answer.
fn usage() -> Value {
    json!({"promptTokenCount": 1290, "candidatesTokenCount": 1300, "totalTokenCount": 2590})
}

/// A GenerateContentResponse with one candidate of `parts`.
pub fn response(parts: Vec<Value>, finish_reason: &str) -> Value {
    json!({"candidates": [{"index": 0, "finishReason": finish_reason,
                           "content": {"role": "model", "parts": parts}}],
           "usageMetadata": usage(), "modelVersion": "gemini-2.5-flash-image",
           "responseId": "8mBFaeKdKpzZ7M8P"})
}

/// An `inlineData` part holding a `width`×`height` PNG.
pub fn image_part(width: u32, height: u32) -> Value {
    json!({"inlineData": {"mimeType": "image/png", "data": b64(&png_bytes(width, height, false))},
           "thoughtSignature": "CiQB0e2Kb1xYz"})
}

/// A 200 with a text part and a `width`×`height` PNG.
pub fn image_reply(width: u32, height: u32) -> Reply {
    Reply::json(
        200,
        &response(
            vec![
                json!({"text": "Here is the edited photo."}),
                image_part(width, height),
            ],
            "STOP",
        ),
    )
}

/// Gemini 3's thinking: an interim `thought: true` image of `thought` size first, then
/// the final image of `final_size`.
pub fn thought_then_image_reply(thought: (u32, u32), final_size: (u32, u32)) -> Reply {
    let mut interim = image_part(thought.0, thought.1);
    interim["thought"] = json!(true);
    Reply::json(
        200,
        &response(
            vec![
                json!({"text": "**Composing the scene**", "thought": true}),
                interim,
                json!({"text": "Done."}),
                image_part(final_size.0, final_size.1),
            ],
            "STOP",
        ),
    )
}

/// A 200 text answer (vision/JSON).
pub fn text_reply(text: &str) -> Reply {
    Reply::json(200, &response(vec![json!({"text": text})], "STOP"))
}

/// A blocked prompt: 200, no candidates, `promptFeedback.blockReason`.
pub fn prompt_blocked(reason: &str) -> Reply {
    Reply::json(
        200,
        &json!({"promptFeedback": {"blockReason": reason,
                                   "safetyRatings": [{"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT",
                                                      "probability": "HIGH", "blocked": true}]},
                "usageMetadata": {"promptTokenCount": 1290, "totalTokenCount": 1290},
                "modelVersion": "gemini-2.5-flash-image"}),
    )
}

/// A candidate without content that ended with `finish_reason` (`IMAGE_SAFETY`,
/// `NO_IMAGE`, …).
pub fn finished_without_content(finish_reason: &str) -> Reply {
    Reply::json(
        200,
        &json!({"candidates": [{"index": 0, "finishReason": finish_reason}],
                "usageMetadata": usage(), "modelVersion": "gemini-2.5-flash-image"}),
    )
}

/// One SSE event (`data: <chunk>` + CRLF blank line, as Google sends it).
pub fn sse_event(chunk: &Value) -> String {
    format!("data: {chunk}\r\n\r\n")
}

/// A text chunk of a stream (no `finishReason` yet).
pub fn text_chunk(text: &str) -> String {
    sse_event(&json!({"candidates": [{"index": 0,
                                      "content": {"role": "model", "parts": [{"text": text}]}}],
                      "modelVersion": "gemini-2.5-flash"}))
}

/// The last chunk: the last text, `finishReason: STOP`, usage.
pub fn last_chunk(text: &str) -> String {
    sse_event(&json!({"candidates": [{"index": 0, "finishReason": "STOP",
                                      "content": {"role": "model", "parts": [{"text": text}]}}],
                      "usageMetadata": usage(), "modelVersion": "gemini-2.5-flash"}))
}

/// A whole `alt=sse` stream of `texts`: the last carries `finishReason`; every event
/// after the first is cut in half across two writes; no `[DONE]`, then close.
pub fn stream_reply(texts: &[&str]) -> Reply {
    let mut reply = Reply::event_stream();
    for (i, text) in texts.iter().enumerate() {
        let event = if i + 1 == texts.len() {
            last_chunk(text)
        } else {
            text_chunk(text)
        };
        reply = if i == 0 {
            reply.write(event)
        } else {
            let half = event.len() / 2;
            reply.write_split(event, half)
        };
    }
    reply
}

/// Every `text` of every part of every `contents[]` entry and the system instruction.
pub fn all_text(body: &Value) -> String {
    let mut out = String::new();
    let system = body
        .get("systemInstruction")
        .or_else(|| body.get("system_instruction"));
    let contents = body["contents"].as_array().cloned().unwrap_or_default();
    for entry in system.into_iter().chain(contents.iter()) {
        for part in entry["parts"].as_array().into_iter().flatten() {
            if let Some(text) = part["text"].as_str() {
                out.push_str(text);
                out.push('\n');
            }
        }
    }
    out
}

/// The `inlineData` parts of the user's contents.
pub fn inline_images(body: &Value) -> Vec<Value> {
    body["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["parts"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.get("inlineData").cloned())
        .collect()
}

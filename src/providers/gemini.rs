//! Google Gemini API (`generativelanguage`): `generateContent` for vision → JSON and
//! images, `streamGenerateContent?alt=sse` for prompt writing.

use std::sync::Arc;

use serde_json::{json, Value};

use super::images::{decode_base64, ImageSource, InputImage};
use super::sse::{relay, EventStep, StreamSpec};
use super::upstream::{clip, status_error, Auth, CallKind, ProviderMetrics, Upstream};
use super::{
    image_prompt, no_image, safety_block, Provider, ProviderError, TextPurpose, TextRequest,
    TextSink, UnitRequest,
};
use crate::config::UpstreamConfig;
use crate::domain::jobs::UnitOutcome;
use crate::domain::ErrorCode;
use crate::ops::metrics::ProviderCounters;

/// Finish reasons that mean the output was refused; another attempt will not help.
const BLOCKING_FINISH: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
];

/// The Gemini provider.
pub struct Gemini {
    upstream: Arc<Upstream>,
    images: ImageSource,
}

impl Gemini {
    /// A provider talking to `config.base_url` (which includes the API version).
    pub fn new(config: UpstreamConfig, images: ImageSource, counters: ProviderCounters) -> Self {
        Gemini {
            upstream: Arc::new(Upstream::new("gemini", config, Auth::GoogApiKey, counters)),
            images,
        }
    }

    fn generate(&self, model: &str, body: &Value, kind: CallKind) -> Result<Value, ProviderError> {
        let path = format!("models/{model}:generateContent");
        let reply = self.upstream.post_json(&path, model, body, kind)?;
        if reply.status != 200 {
            return Err(self.upstream.read_error(reply, model, classify_error));
        }
        let answer = self.upstream.read_json(reply, model)?;
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            let status = error["code"].as_u64().unwrap_or(502) as u16;
            return Err(classify_error(status, None, answer.to_string().as_bytes()));
        }
        check_blocked(&answer)?;
        Ok(answer)
    }
}

/// The user turn: text, then each image as `inlineData`.
fn contents(text: &str, images: &[InputImage]) -> Value {
    let mut parts = vec![json!({"text": text})];
    parts.extend(
        images
            .iter()
            .map(|img| json!({"inlineData": {"mimeType": img.mime, "data": img.base64()}})),
    );
    json!([{"role": "user", "parts": parts}])
}

/// The request body of an image unit.
pub fn image_body(unit: &UnitRequest, images: &[InputImage]) -> Value {
    let mut image_config = json!({
        "aspectRatio": unit.input["aspect_ratio"].as_str().unwrap_or("1:1"),
    });
    // 2.5 Flash Image has fixed sizes and takes no imageSize; the others want "1K" etc.
    if !unit.model.starts_with("gemini-2.5-flash-image") {
        let size = unit.input["image_size"].as_str().unwrap_or("1K");
        image_config["imageSize"] = json!(size.to_ascii_uppercase());
    }
    json!({
        "contents": contents(&image_prompt(&unit.input), images),
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": image_config,
        },
    })
}

/// The request body of a text call.
pub fn text_body(request: &TextRequest, images: &[InputImage]) -> Value {
    let mut config = json!({"maxOutputTokens": 2048});
    if request.purpose.wants_json() {
        config["responseMimeType"] = json!("application/json");
    }
    json!({
        "systemInstruction": {"parts": [{"text": request.system}]},
        "contents": contents(&request.user, images),
        "generationConfig": config,
    })
}

/// A blocked prompt (`promptFeedback.blockReason`) is a permanent refusal.
fn check_blocked(answer: &Value) -> Result<(), ProviderError> {
    match answer["promptFeedback"]["blockReason"].as_str() {
        Some(reason) if answer["candidates"].as_array().is_none_or(Vec::is_empty) => Err(
            safety_block("gemini", &format!("the prompt was blocked ({reason})")),
        ),
        _ => Ok(()),
    }
}

/// Every non-thought part of the first candidate.
fn answer_parts(answer: &Value) -> Vec<&Value> {
    answer["candidates"][0]["content"]["parts"]
        .as_array()
        .map(|parts| parts.iter().filter(|p| p["thought"] != true).collect())
        .unwrap_or_default()
}

/// The text of an answer (JSON may be split over parts).
fn answer_text(answer: &Value) -> String {
    answer_parts(answer)
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect()
}

/// The last non-thought image of an answer, decoded.
fn answer_image(answer: &Value) -> Option<Vec<u8>> {
    answer_parts(answer)
        .iter()
        .rev()
        .find_map(|p| {
            let inline = p.get("inlineData").or_else(|| p.get("inline_data"))?;
            inline["data"].as_str()
        })
        .and_then(decode_base64)
}

/// Why an answer without an image failed: a refusal (permanent) or a miss (retry once).
fn missing_image(answer: &Value, attempt: i64) -> ProviderError {
    let finish = answer["candidates"][0]["finishReason"]
        .as_str()
        .unwrap_or("STOP");
    if BLOCKING_FINISH.contains(&finish) {
        return safety_block("gemini", &format!("the image was not produced ({finish})"));
    }
    no_image("gemini", attempt, &answer_text(answer))
}

/// The wait a `google.rpc.RetryInfo` detail asks for (`"36s"`, `"3.95s"`).
fn retry_delay_ms(error: &Value) -> Option<u64> {
    error["details"].as_array()?.iter().find_map(|d| {
        let delay = d["retryDelay"].as_str()?.trim().strip_suffix('s')?;
        let secs: f64 = delay.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64)
    })
}

/// Classifies an error answer: `{"error": {"code", "message", "status", "details"}}`.
pub fn classify_error(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> ProviderError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let message = error["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let rpc_status = error["status"].as_str().unwrap_or_default();
    let details = error["details"].as_array().cloned().unwrap_or_default();
    let has_reason = |reason: &str| details.iter().any(|d| d["reason"] == reason);
    if has_reason("API_KEY_INVALID") {
        return ProviderError::permanent(
            ErrorCode::UPSTREAM_REJECTED,
            "gemini rejected the API key (check providers.gemini.api_key)",
        );
    }
    if status == 404 || rpc_status == "NOT_FOUND" {
        return ProviderError::permanent(
            ErrorCode::MODEL_UNAVAILABLE,
            format!("gemini does not offer this model: {}", clip(&message, 200)),
        );
    }
    if status == 429 {
        let per_day = details.iter().any(|d| {
            d["violations"].as_array().is_some_and(|v| {
                v.iter()
                    .any(|v| v["quotaId"].as_str().is_some_and(|q| q.contains("PerDay")))
            })
        });
        if per_day {
            tracing::error!(
                provider = "gemini",
                "the daily quota is exhausted; units fail until it resets"
            );
            return ProviderError::permanent(
                ErrorCode::UPSTREAM_ERROR,
                format!("gemini's daily quota is exhausted: {}", clip(&message, 200)),
            );
        }
        return ProviderError {
            retry_after_ms: retry_delay_ms(error).or(retry_after_ms),
            ..ProviderError::retryable(
                ErrorCode::UPSTREAM_ERROR,
                format!("gemini is rate limiting: {}", clip(&message, 200)),
            )
        };
    }
    status_error("gemini", status, retry_after_ms, &message)
}

/// One `alt=sse` chunk (a whole `GenerateContentResponse`).
pub fn parse_stream_event(data: &str) -> Result<EventStep, ProviderError> {
    let chunk: Value = serde_json::from_str(data).map_err(|e| {
        ProviderError::retryable(
            ErrorCode::UPSTREAM_ERROR,
            format!("gemini sent a malformed stream chunk: {e}"),
        )
    })?;
    if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
        let status = error["code"].as_u64().unwrap_or(502) as u16;
        return Err(classify_error(status, None, chunk.to_string().as_bytes()));
    }
    check_blocked(&chunk)?;
    let finish = chunk["candidates"][0]["finishReason"].as_str();
    if let Some(reason) = finish.filter(|r| BLOCKING_FINISH.contains(r)) {
        return Err(safety_block(
            "gemini",
            &format!("the answer was stopped ({reason})"),
        ));
    }
    let text = answer_text(&chunk);
    Ok(EventStep {
        text: (!text.is_empty()).then_some(text),
        finished: finish.is_some(),
        done: false,
    })
}

impl Provider for Gemini {
    fn name(&self) -> &str {
        "gemini"
    }

    fn metrics(&self) -> Option<Arc<ProviderMetrics>> {
        Some(self.upstream.metrics())
    }

    fn run_unit(&self, unit: &UnitRequest) -> UnitOutcome {
        let images = match self.images.load_for_unit(unit) {
            Ok(images) => images,
            Err(e) => return e.into_outcome(),
        };
        match self.generate(&unit.model, &image_body(unit, &images), CallKind::Image) {
            Ok(answer) => match answer_image(&answer) {
                Some(bytes) => self.images.store_output(unit, &bytes),
                None => missing_image(&answer, unit.attempt).into_outcome(),
            },
            Err(e) => e.into_outcome(),
        }
    }

    fn stream_text(
        &self,
        request: &TextRequest,
        sink: &mut dyn TextSink,
    ) -> Result<(), ProviderError> {
        let images = self.images.load_all(&request.images)?;
        let body = text_body(request, &images);
        if request.purpose == TextPurpose::Prompts {
            let spec = StreamSpec {
                path: format!("models/{}:streamGenerateContent?alt=sse", request.model),
                model: request.model.clone(),
                body,
                parse_event: parse_stream_event,
                classify_error,
            };
            return relay(&self.upstream, spec, sink);
        }
        let answer = self.generate(&request.model, &body, CallKind::Text)?;
        let text = answer_text(&answer);
        if text.trim().is_empty() {
            let finish = answer["candidates"][0]["finishReason"]
                .as_str()
                .unwrap_or("");
            if BLOCKING_FINISH.contains(&finish) {
                return Err(safety_block(
                    "gemini",
                    &format!("the answer was stopped ({finish})"),
                ));
            }
            return Err(ProviderError::retryable(
                ErrorCode::UPSTREAM_ERROR,
                "gemini returned no text",
            ));
        }
        sink.delta(&text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_from_real_bodies_are_classified() {
        let quota = classify_error(429, None, br#"{"error": {"code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"}]}}"#);
        assert!(quota.retryable);
        assert_eq!(quota.retry_after_ms, Some(36_000));
        let daily = classify_error(429, None, br#"{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}"#);
        assert!(!daily.retryable);
        let key = classify_error(400, None, br#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}"#);
        assert!(!key.retryable && key.message.contains("API key"));
        let model = classify_error(404, None, br#"{"error": {"code": 404, "message": "models/gemini-9 is not found for API version v1beta", "status": "NOT_FOUND"}}"#);
        assert_eq!(model.code, ErrorCode::MODEL_UNAVAILABLE);
        let busy = classify_error(503, None, br#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#);
        assert!(busy.retryable);
        let region = classify_error(400, None, br#"{"error": {"code": 400, "message": "User location is not supported for the API use.", "status": "FAILED_PRECONDITION"}}"#);
        assert!(!region.retryable);
    }

    #[test]
    fn refusals_and_misses_are_told_apart() {
        let blocked = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}});
        let err = check_blocked(&blocked).unwrap_err();
        assert!(!err.retryable && err.message.contains("PROHIBITED_CONTENT"));
        let safety = json!({"candidates": [{"finishReason": "IMAGE_SAFETY"}]});
        assert!(!missing_image(&safety, 1).retryable);
        let miss = json!({"candidates": [{"finishReason": "NO_IMAGE"}]});
        assert!(missing_image(&miss, 1).retryable);
        assert!(!missing_image(&miss, 2).retryable);
    }

    #[test]
    fn the_last_non_thought_image_is_taken() {
        let answer = json!({"candidates": [{"finishReason": "STOP", "content": {"parts": [
            {"inlineData": {"mimeType": "image/png", "data": "dGhvdWdodA=="}, "thought": true},
            {"text": "Here it is."},
            {"inline_data": {"mime_type": "image/png", "data": "ZmluYWw="}}]}}]});
        assert_eq!(answer_image(&answer), Some(b"final".to_vec()));
        assert_eq!(answer_text(&answer), "Here it is.");
    }

    #[test]
    fn stream_chunks_give_text_and_finish() {
        let step = parse_stream_event(r#"{"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}]}"#).unwrap();
        assert_eq!(step.text.as_deref(), Some("Hel"));
        let last = parse_stream_event(r#"{"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}], "usageMetadata": {"totalTokenCount": 9}}"#).unwrap();
        assert!(last.finished);
        assert!(parse_stream_event(r#"{"candidates": [{"finishReason": "SAFETY"}]}"#).is_err());
    }
}

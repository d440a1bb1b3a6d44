//! OpenRouter (OpenAI-compatible `chat/completions`): vision → JSON, streamed prompt
//! writing, and Gemini image models through `modalities` + `image_config`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::images::{decode_data_uri, ImageSource, InputImage};
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

const PATH: &str = "chat/completions";

/// The OpenRouter provider.
pub struct OpenRouter {
    upstream: Arc<Upstream>,
    images: ImageSource,
}

impl OpenRouter {
    /// A provider talking to `config.base_url` with `config.api_key`.
    pub fn new(config: UpstreamConfig, images: ImageSource, counters: ProviderCounters) -> Self {
        OpenRouter {
            upstream: Arc::new(Upstream::new("openrouter", config, Auth::Bearer, counters)),
            images,
        }
    }

    fn call(&self, model: &str, body: &Value, kind: CallKind) -> Result<Value, ProviderError> {
        let reply = self.upstream.post_json(PATH, model, body, kind)?;
        if reply.status != 200 {
            return Err(self.upstream.read_error(reply, model, classify_error));
        }
        let answer = self.upstream.read_json(reply, model)?;
        if answer.get("error").is_some_and(|e| !e.is_null()) {
            return Err(error_in_body(&answer));
        }
        Ok(answer)
    }
}

/// The chat message content: the text first, then each image as an `image_url` part.
fn user_content(text: &str, images: &[InputImage]) -> Value {
    let mut parts = vec![json!({"type": "text", "text": text})];
    parts.extend(
        images
            .iter()
            .map(|img| json!({"type": "image_url", "image_url": {"url": img.data_uri()}})),
    );
    Value::Array(parts)
}

/// The request body of an image unit.
pub fn image_body(unit: &UnitRequest, images: &[InputImage]) -> Value {
    let mut image_config = json!({
        "aspect_ratio": unit.input["aspect_ratio"].as_str().unwrap_or("1:1"),
    });
    if !unit.model.contains("gemini-2.5-flash-image") {
        image_config["image_size"] = json!(unit.input["image_size"].as_str().unwrap_or("1K"));
    }
    json!({
        "model": unit.model,
        "modalities": ["image", "text"],
        "image_config": image_config,
        "messages": [{"role": "user", "content": user_content(&image_prompt(&unit.input), images)}],
    })
}

/// The request body of a text call.
pub fn text_body(request: &TextRequest, images: &[InputImage], stream: bool) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": [
            {"role": "system", "content": request.system},
            {"role": "user", "content": user_content(&request.user, images)},
        ],
        "max_tokens": 2000,
    });
    if request.purpose.wants_json() {
        body["response_format"] = json!({"type": "json_object"});
        body["provider"] = json!({"require_parameters": true});
    }
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// The first image of an image answer, decoded.
fn answer_image(answer: &Value) -> Option<Vec<u8>> {
    let message = &answer["choices"][0]["message"];
    message["images"]
        .as_array()?
        .iter()
        .find_map(|img| img["image_url"]["url"].as_str().and_then(decode_data_uri))
}

/// Classifies an error answer: `{"error": {"code", "message", "metadata"}}`.
pub fn classify_error(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> ProviderError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let message = error["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let metadata = &error["metadata"];
    if status == 402
        && retry_after_ms.is_some()
        && metadata["limit_source"] == "openrouter_in_flight_budget"
    {
        return ProviderError {
            retry_after_ms,
            ..ProviderError::retryable(ErrorCode::UPSTREAM_ERROR, format!("openrouter: {message}"))
        };
    }
    if status == 403 && metadata.get("reasons").is_some() {
        let reasons = metadata["reasons"].to_string();
        return safety_block(
            "openrouter",
            &format!("moderation flagged the input {reasons}"),
        );
    }
    if status == 404 || (status == 400 && message.contains("not a valid model")) {
        return ProviderError::permanent(
            ErrorCode::MODEL_UNAVAILABLE,
            format!(
                "openrouter does not know this model: {}",
                clip(&message, 200)
            ),
        );
    }
    status_error("openrouter", status, retry_after_ms, &message)
}

/// A 200 answer that carries an `error` instead of choices.
fn error_in_body(answer: &Value) -> ProviderError {
    let code = answer["error"]["code"].as_u64().unwrap_or(502) as u16;
    let status = if (400..600).contains(&code) {
        code
    } else {
        502
    };
    classify_error(status, None, answer.to_string().as_bytes())
}

/// One streamed chunk: text, the finish reason, `[DONE]`, or a mid-stream error.
pub fn parse_stream_event(data: &str) -> Result<EventStep, ProviderError> {
    if data.trim() == "[DONE]" {
        return Ok(EventStep {
            done: true,
            ..EventStep::default()
        });
    }
    let chunk: Value = serde_json::from_str(data).map_err(|e| {
        ProviderError::retryable(
            ErrorCode::UPSTREAM_ERROR,
            format!("openrouter sent a malformed stream chunk: {e}"),
        )
    })?;
    if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
        let message = error["message"].as_str().unwrap_or("stream failed");
        return Err(ProviderError::retryable(
            ErrorCode::UPSTREAM_ERROR,
            format!("openrouter stream failed: {}", clip(message, 200)),
        ));
    }
    let choice = &chunk["choices"][0];
    let finish = choice["finish_reason"].as_str();
    if finish == Some("content_filter") {
        return Err(safety_block("openrouter", "the answer was filtered"));
    }
    Ok(EventStep {
        text: choice["delta"]["content"].as_str().map(str::to_string),
        finished: finish.is_some(),
        done: false,
    })
}

impl Provider for OpenRouter {
    fn name(&self) -> &str {
        "openrouter"
    }

    fn metrics(&self) -> Option<Arc<ProviderMetrics>> {
        Some(self.upstream.metrics())
    }

    fn run_unit(&self, unit: &UnitRequest) -> UnitOutcome {
        let images = match self.images.load_for_unit(unit) {
            Ok(images) => images,
            Err(e) => return e.into_outcome(),
        };
        let answer = match self.call(&unit.model, &image_body(unit, &images), CallKind::Image) {
            Ok(answer) => answer,
            Err(e) => return e.into_outcome(),
        };
        if let Some(bytes) = answer_image(&answer) {
            return self.images.store_output(unit, &bytes);
        }
        let finish = answer["choices"][0]["finish_reason"].as_str().unwrap_or("");
        if finish == "content_filter" {
            return safety_block("openrouter", "the image was filtered").into_outcome();
        }
        let said = answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("");
        no_image("openrouter", unit.attempt, said).into_outcome()
    }

    fn stream_text(
        &self,
        request: &TextRequest,
        sink: &mut dyn TextSink,
    ) -> Result<(), ProviderError> {
        let images = self.images.load_all(&request.images)?;
        if request.purpose == TextPurpose::Prompts {
            let spec = StreamSpec {
                path: PATH.into(),
                model: request.model.clone(),
                body: text_body(request, &images, true),
                parse_event: parse_stream_event,
                classify_error,
            };
            return relay(&self.upstream, spec, sink);
        }
        let answer = self.call(
            &request.model,
            &text_body(request, &images, false),
            CallKind::Text,
        )?;
        let choice = &answer["choices"][0];
        if choice["finish_reason"] == "content_filter" {
            return Err(safety_block("openrouter", "the answer was filtered"));
        }
        match choice["message"]["content"].as_str() {
            Some(text) if !text.trim().is_empty() => {
                sink.delta(text);
                Ok(())
            }
            _ => Err(ProviderError::retryable(
                ErrorCode::UPSTREAM_ERROR,
                "openrouter returned no content",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_from_real_bodies_are_classified() {
        let rate = classify_error(
            429,
            Some(3000),
            br#"{"error":{"code":429,"message":"Rate limit exceeded: free-models-per-min"}}"#,
        );
        assert!(rate.retryable);
        assert_eq!(rate.retry_after_ms, Some(3000));
        let bad = classify_error(
            400,
            None,
            br#"{"error":{"code":400,"message":"image_config.aspect_ratio is invalid"}}"#,
        );
        assert!(!bad.retryable);
        assert!(bad.message.contains("aspect_ratio"));
        let key = classify_error(
            401,
            None,
            br#"{"error":{"code":401,"message":"No auth credentials found"}}"#,
        );
        assert!(!key.retryable);
        let model = classify_error(
            400,
            None,
            br#"{"error":{"code":400,"message":"google/nope is not a valid model ID"}}"#,
        );
        assert_eq!(model.code, ErrorCode::MODEL_UNAVAILABLE);
        let missing = classify_error(
            404,
            None,
            br#"{"error":{"code":404,"message":"No endpoints found"}}"#,
        );
        assert_eq!(missing.code, ErrorCode::MODEL_UNAVAILABLE);
        let moderated = classify_error(
            403,
            None,
            br#"{"error":{"code":403,"message":"flagged","metadata":{"reasons":["violence"],"flagged_input":"..","provider_name":"x","model_slug":"y"}}}"#,
        );
        assert!(!moderated.retryable && moderated.message.contains("content rejected"));
        let down = classify_error(502, None, br#"{"error":{"code":502,"message":"Provider returned error","metadata":{"provider_name":"Google","raw":"..."}}}"#);
        assert!(down.retryable);
        let budget = classify_error(
            402,
            Some(1000),
            br#"{"error":{"code":402,"message":"in flight","metadata":{"limit_source":"openrouter_in_flight_budget"}}}"#,
        );
        assert!(budget.retryable);
        assert!(
            !classify_error(
                402,
                None,
                br#"{"error":{"code":402,"message":"Insufficient credits"}}"#
            )
            .retryable
        );
    }

    #[test]
    fn stream_chunks_give_text_finish_and_done() {
        let step = parse_stream_event(r#"{"id":"gen-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#).unwrap();
        assert_eq!(step.text.as_deref(), Some("Hel"));
        assert!(!step.finished);
        let end =
            parse_stream_event(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#)
                .unwrap();
        assert!(end.finished && end.text.is_none());
        assert!(parse_stream_event("[DONE]").unwrap().done);
        let usage = parse_stream_event(r#"{"choices":[],"usage":{"total_tokens":3}}"#).unwrap();
        assert_eq!(usage, EventStep::default());
        let failed = parse_stream_event(r#"{"id":"gen-1","object":"chat.completion.chunk","error":{"code":"server_error","message":"Provider disconnected"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#).unwrap_err();
        assert!(failed.retryable && failed.message.contains("Provider disconnected"));
    }

    #[test]
    fn image_bodies_follow_the_documented_shape() {
        let unit = UnitRequest {
            task_id: "t".into(),
            job_id: "j".into(),
            unit_index: 0,
            attempt: 1,
            job_type: crate::domain::jobs::JobType::ImageGen,
            provider: "openrouter".into(),
            model: "google/gemini-3-pro-image-preview".into(),
            input: json!({"prompt": "a bottle", "aspect_ratio": "4:5", "image_size": "2K"}),
        };
        let img = InputImage {
            bytes: b"x".to_vec(),
            mime: "image/png",
        };
        let body = image_body(&unit, &[img]);
        assert_eq!(body["modalities"], json!(["image", "text"]));
        assert_eq!(
            body["image_config"],
            json!({"aspect_ratio": "4:5", "image_size": "2K"})
        );
        let parts = &body["messages"][0]["content"];
        assert_eq!(parts[0]["type"], "text");
        assert_eq!(parts[1]["image_url"]["url"], "data:image/png;base64,eA==");
        let flash = UnitRequest {
            model: "google/gemini-2.5-flash-image".into(),
            ..unit
        };
        assert!(image_body(&flash, &[])["image_config"]
            .get("image_size")
            .is_none());
    }
}

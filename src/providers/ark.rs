//! Volcengine Ark — Doubao Seedream image generation (`images/generations`). Ark has
//! no text models here: text calls are refused (refinement falls back to its generic
//! prompt).

use std::sync::Arc;

use serde_json::{json, Value};

use super::images::{decode_base64, ImageSource, InputImage};
use super::upstream::{
    clip, status_error, transport_error, Auth, CallKind, ProviderMetrics, Upstream,
};
use super::{
    image_prompt, no_image, safety_block, Provider, ProviderError, TextRequest, TextSink,
    UnitRequest,
};
use crate::config::UpstreamConfig;
use crate::domain::jobs::UnitOutcome;
use crate::domain::ErrorCode;
use crate::ops::metrics::ProviderCounters;

const PATH: &str = "images/generations";
/// Largest image downloaded from a returned `url`.
const MAX_IMAGE_BYTES: u64 = 32 * 1024 * 1024;
/// Ark documents no `Retry-After`; wait at least this long before trying again.
const MIN_BACKOFF_MS: u64 = 2000;

/// The Ark provider.
pub struct Ark {
    upstream: Arc<Upstream>,
    images: ImageSource,
}

impl Ark {
    /// A provider talking to `config.base_url` with `config.api_key`.
    pub fn new(config: UpstreamConfig, images: ImageSource, counters: ProviderCounters) -> Self {
        Ark {
            upstream: Arc::new(Upstream::new("ark", config, Auth::Bearer, counters)),
            images,
        }
    }

    /// The first image of the answer: inline base64, or downloaded at once from `url`
    /// (Ark's links expire after 24 h).
    fn output_image(&self, item: &Value, model: &str) -> Result<Vec<u8>, ProviderError> {
        if let Some(b64) = item["b64_json"].as_str() {
            return decode_base64(b64).ok_or_else(|| {
                ProviderError::retryable(ErrorCode::UPSTREAM_ERROR, "ark sent malformed base64")
            });
        }
        let url = item["url"].as_str().unwrap_or_default();
        let started = std::time::Instant::now();
        let download = ureq::get(url)
            .config()
            .timeout_global(Some(self.upstream.timeout(CallKind::Image)))
            .build()
            .call()
            .and_then(|mut r| {
                r.body_mut()
                    .with_config()
                    .limit(MAX_IMAGE_BYTES)
                    .read_to_vec()
            });
        match download {
            Ok(bytes) => {
                self.upstream
                    .finish(model, Some(200), bytes.len(), started, None);
                Ok(bytes)
            }
            Err(e) => {
                let error = transport_error("ark's image link", &e);
                self.upstream.finish(model, None, 0, started, Some(&error));
                Err(error)
            }
        }
    }
}

/// The exact `WxH` Ark is asked for: Seedream 4.5's recommended sizes for the ratio
/// (2K, or 4K). 1K is below what 4.5 and 5.0 accept, so it is sent as 2K.
pub fn ark_size(ratio: &str, tier: &str) -> Option<&'static str> {
    let four_k = tier.eq_ignore_ascii_case("4K");
    let (two, four) = match ratio {
        "1:1" => ("2048x2048", "4096x4096"),
        "4:3" => ("2304x1728", "4704x3520"),
        "3:4" => ("1728x2304", "3520x4704"),
        "16:9" => ("2848x1600", "5504x3040"),
        "9:16" => ("1600x2848", "3040x5504"),
        "3:2" => ("2496x1664", "4992x3328"),
        "2:3" => ("1664x2496", "3328x4992"),
        "21:9" => ("3136x1344", "6240x2656"),
        _ => return None,
    };
    Some(if four_k { four } else { two })
}

/// The request body of an image unit.
pub fn image_body(unit: &UnitRequest, images: &[InputImage]) -> Result<Value, ProviderError> {
    let ratio = unit.input["aspect_ratio"].as_str().unwrap_or("1:1");
    let tier = unit.input["image_size"].as_str().unwrap_or("2K");
    let size = ark_size(ratio, tier).ok_or_else(|| {
        ProviderError::permanent(
            ErrorCode::MODEL_RATIO_UNSUPPORTED,
            format!("Seedream has no size for the ratio {ratio}"),
        )
    })?;
    let mut body = json!({
        "model": unit.model,
        "prompt": image_prompt(&unit.input),
        "size": size,
        "sequential_image_generation": "disabled",
        "response_format": "b64_json",
        "watermark": false,
        "stream": false,
    });
    if !images.is_empty() {
        body["image"] = json!(images.iter().map(InputImage::data_uri).collect::<Vec<_>>());
    }
    Ok(body)
}

/// Classifies an error by Ark's `error.code`, then by status.
pub fn classify_error(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> ProviderError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    classify_code(
        status,
        retry_after_ms,
        parsed["error"]["code"].as_str().unwrap_or_default(),
        parsed["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
            .as_str(),
    )
}

fn classify_code(
    status: u16,
    retry_after_ms: Option<u64>,
    code: &str,
    message: &str,
) -> ProviderError {
    let detail = clip(message, 200);
    if code.contains("SensitiveContentDetected") {
        return safety_block("ark", &format!("{code}: {detail}"));
    }
    if code.starts_with("InvalidEndpointOrModel") || code == "ModelNotOpen" {
        tracing::error!(
            provider = "ark",
            code,
            "the configured Seedream model is not available to this account"
        );
        return ProviderError::permanent(
            ErrorCode::MODEL_UNAVAILABLE,
            format!("ark cannot use this model ({code}): {detail}"),
        );
    }
    if code == "QuotaExceeded" || code == "AccountOverdueError" {
        return ProviderError::permanent(
            ErrorCode::UPSTREAM_ERROR,
            format!("ark refused ({code}): {detail}"),
        );
    }
    if code.starts_with("RateLimitExceeded") || code == "ServerOverloaded" || status == 429 {
        return ProviderError {
            retry_after_ms: Some(retry_after_ms.unwrap_or(0).max(MIN_BACKOFF_MS)),
            ..ProviderError::retryable(
                ErrorCode::UPSTREAM_ERROR,
                format!("ark is rate limiting ({code}): {detail}"),
            )
        };
    }
    let described = if code.is_empty() {
        detail
    } else {
        format!("{code}: {detail}")
    };
    status_error("ark", status, retry_after_ms, &described)
}

impl Provider for Ark {
    fn name(&self) -> &str {
        "ark"
    }

    fn metrics(&self) -> Option<Arc<ProviderMetrics>> {
        Some(self.upstream.metrics())
    }

    fn run_unit(&self, unit: &UnitRequest) -> UnitOutcome {
        let attempt = || -> Result<Vec<u8>, ProviderError> {
            let images = self.images.load_for_unit(unit)?;
            let body = image_body(unit, &images)?;
            let reply = self
                .upstream
                .post_json(PATH, &unit.model, &body, CallKind::Image)?;
            if reply.status != 200 {
                return Err(self.upstream.read_error(reply, &unit.model, classify_error));
            }
            let answer = self.upstream.read_json(reply, &unit.model)?;
            let Some(item) = answer["data"].as_array().and_then(|d| d.first()) else {
                return Err(no_image("ark", unit.attempt, ""));
            };
            if let Some(error) = item.get("error").filter(|e| !e.is_null()) {
                return Err(classify_code(
                    502,
                    None,
                    error["code"].as_str().unwrap_or_default(),
                    error["message"].as_str().unwrap_or("the image failed"),
                ));
            }
            self.output_image(item, &unit.model)
        };
        match attempt() {
            Ok(bytes) => self.images.store_output(unit, &bytes),
            Err(e) => e.into_outcome(),
        }
    }

    fn stream_text(
        &self,
        _request: &TextRequest,
        _sink: &mut dyn TextSink,
    ) -> Result<(), ProviderError> {
        Err(ProviderError::permanent(
            ErrorCode::MODEL_UNAVAILABLE,
            "Seedream models write no text; choose a text model for analysis and prompts",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_from_real_bodies_are_classified() {
        let sensitive = classify_error(400, None, br#"{"error": {"code": "OutputImageSensitiveContentDetected", "message": "The request failed because the output image may contain sensitive information. Request ID: 0217", "param": "", "type": "BadRequest"}}"#);
        assert!(!sensitive.retryable && sensitive.message.contains("content rejected"));
        let model = classify_error(404, None, br#"{"error": {"code": "InvalidEndpointOrModel.NotFound", "message": "The model or endpoint doesubao does not exist or you do not have access to it.", "type": "NotFound"}}"#);
        assert_eq!(model.code, ErrorCode::MODEL_UNAVAILABLE);
        let rpm = classify_error(429, None, br#"{"error": {"code": "RateLimitExceeded.EndpointRPMExceeded", "message": "The request has exceeded the RPM limit", "type": "TooManyRequests"}}"#);
        assert!(rpm.retryable);
        assert_eq!(rpm.retry_after_ms, Some(MIN_BACKOFF_MS));
        let auth = classify_error(401, None, br#"{"error": {"code": "AuthenticationError", "message": "the API key or AK/SK in the request is missing or invalid", "type": "Unauthorized"}}"#);
        assert!(!auth.retryable);
        let param = classify_error(400, None, br#"{"error": {"code": "InvalidParameter", "message": "the size is invalid", "param": "size", "type": "BadRequest"}}"#);
        assert!(!param.retryable && param.message.contains("InvalidParameter"));
        let internal = classify_error(
            500,
            None,
            br#"{"error": {"code": "InternalServiceError", "message": "internal"}}"#,
        );
        assert!(internal.retryable);
        assert!(
            !classify_error(
                429,
                None,
                br#"{"error": {"code": "QuotaExceeded", "message": "quota"}}"#
            )
            .retryable
        );
    }

    #[test]
    fn sizes_follow_the_ratio_table() {
        assert_eq!(ark_size("4:3", "2K"), Some("2304x1728"));
        assert_eq!(ark_size("9:16", "4K"), Some("3040x5504"));
        assert_eq!(ark_size("1:1", "1K"), Some("2048x2048"));
        assert_eq!(ark_size("4:5", "2K"), None);
    }
}

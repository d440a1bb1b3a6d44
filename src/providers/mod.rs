//! Upstream providers. Each does one unit of work at a time on a blocking thread; the
//! `GeneratorActor` in front of it adds the concurrency limit and the timeout.

pub mod ark;
pub mod gemini;
pub mod images;
pub mod local;
pub mod openrouter;
pub mod sse;
pub mod upstream;

use serde_json::Value;

use crate::domain::jobs::{JobType, UnitOutcome};
use crate::domain::ErrorCode;

/// One unit of work handed to a provider.
#[derive(Debug, Clone)]
pub struct UnitRequest {
    pub task_id: String,
    pub job_id: String,
    pub unit_index: i64,
    pub attempt: i64,
    pub job_type: JobType,
    /// The provider's name (`local`, `openrouter`, …).
    pub provider: String,
    /// The upstream model id (from the catalog).
    pub model: String,
    /// The unit's own input (prompt, image references, ratio, size …).
    pub input: Value,
}

/// What a text call is for (providers that are not real models answer by purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPurpose {
    /// A product analysis as one JSON object.
    ProductAnalysis,
    /// A second try at turning broken model output into that JSON object.
    RepairJson,
    /// Image prompts for the seller, streamed.
    Prompts,
    /// A product-specific prompt for one refinement unit.
    RefinementPrompt,
    /// Style dimension selections as one JSON object.
    StyleDimensions,
}

impl TextPurpose {
    /// Whether the answer must be one JSON object.
    pub fn wants_json(self) -> bool {
        matches!(
            self,
            TextPurpose::ProductAnalysis | TextPurpose::RepairJson | TextPurpose::StyleDimensions
        )
    }
}

/// A text (chat) call: instructions, the user's message, images to look at.
#[derive(Debug, Clone)]
pub struct TextRequest {
    pub purpose: TextPurpose,
    /// The upstream model id.
    pub model: String,
    pub system: String,
    pub user: String,
    /// Image references the model should see.
    pub images: Vec<String>,
    /// The structured input the text was written from.
    pub input: Value,
}

/// Why an upstream call failed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderError {
    pub code: ErrorCode,
    pub message: String,
    /// 429, 5xx, timeouts, connection errors.
    pub retryable: bool,
    pub retry_after_ms: Option<u64>,
    /// Structured detail for the unit's error (`{"reason": …}`).
    pub details: Option<Value>,
}

impl ProviderError {
    /// A failure that another attempt will not fix.
    pub fn permanent(code: ErrorCode, message: impl Into<String>) -> Self {
        ProviderError {
            code,
            message: message.into(),
            retryable: false,
            retry_after_ms: None,
            details: None,
        }
    }

    /// A failure worth another attempt.
    pub fn retryable(code: ErrorCode, message: impl Into<String>) -> Self {
        ProviderError {
            retryable: true,
            ..ProviderError::permanent(code, message)
        }
    }

    /// Adds `details.reason`: a short machine-readable why.
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.details = Some(serde_json::json!({ "reason": reason }));
        self
    }

    /// The unit outcome this failure means.
    pub fn into_outcome(self) -> UnitOutcome {
        if self.retryable {
            UnitOutcome::Retryable {
                code: self.code,
                message: self.message,
                retry_after_ms: self.retry_after_ms,
            }
        } else {
            UnitOutcome::Permanent {
                code: self.code,
                message: self.message,
                details: self.details,
            }
        }
    }
}

/// Where streamed text goes.
pub trait TextSink {
    /// Takes the next piece of text; false when nobody listens any more (stop).
    fn delta(&mut self, text: &str) -> bool;
    /// Whether the listener has gone (checked while waiting on the upstream).
    fn cancelled(&self) -> bool;
}

/// A provider of generation work. Its methods block; they are never called on the
/// async runtime's worker threads.
pub trait Provider: Send + Sync + 'static {
    /// The provider's name in the catalog (`local`, `openrouter`, …).
    fn name(&self) -> &str;
    /// Requests, errors and latency of the upstream (none for `local`).
    fn metrics(&self) -> Option<std::sync::Arc<upstream::ProviderMetrics>> {
        None
    }
    /// Makes one image and says how it went.
    fn run_unit(&self, unit: &UnitRequest) -> UnitOutcome;
    /// Writes text, handing it to `sink` piece by piece as the upstream streams it.
    fn stream_text(
        &self,
        request: &TextRequest,
        sink: &mut dyn TextSink,
    ) -> Result<(), ProviderError>;
}

/// The text an image model gets for a unit: its prompt, then the seller's style
/// constraint and text edits when there are any.
pub fn image_prompt(input: &Value) -> String {
    let mut prompt = input["prompt"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    if let Some(style) = input["style_constraint"]["prompt"].as_str() {
        prompt.push_str(&format!("\nStyle: {}", style.trim()));
    }
    if let Some(edits) = input["text_edits"].as_object().filter(|e| !e.is_empty()) {
        prompt.push_str(&format!(
            "\nText on the image: {}",
            Value::Object(edits.clone())
        ));
    }
    prompt
}

/// A refusal by the provider's safety filter: permanent, with a message a seller can act
/// on, as the reference's `PROMPT_BLOCKED_BY_PROVIDER_POLICY` (read by the client's
/// `lib/job-errors.ts` L16–18).
pub fn safety_block(provider: &str, why: &str) -> ProviderError {
    ProviderError::permanent(
        ErrorCode::PROMPT_BLOCKED_BY_PROVIDER_POLICY,
        format!("content rejected by {provider}'s safety filter: {why}"),
    )
    .with_reason("content_rejected")
}

/// A successful answer without an image: worth one more attempt, then a failure.
pub fn no_image(provider: &str, attempt: i64, said: &str) -> ProviderError {
    let message = if said.trim().is_empty() {
        format!("{provider} returned no image")
    } else {
        format!(
            "{provider} returned no image; it said: {}",
            upstream::clip(said, 200)
        )
    };
    if attempt >= 2 {
        ProviderError::permanent(ErrorCode::UPSTREAM_ERROR, message).with_reason("no_image")
    } else {
        ProviderError::retryable(ErrorCode::UPSTREAM_ERROR, message)
    }
}

/// Collects a whole text answer.
pub fn complete_text(
    provider: &dyn Provider,
    request: &TextRequest,
) -> Result<String, ProviderError> {
    struct Collect(String);
    impl TextSink for Collect {
        fn delta(&mut self, text: &str) -> bool {
            self.0.push_str(text);
            true
        }
        fn cancelled(&self) -> bool {
            false
        }
    }
    let mut sink = Collect(String::new());
    provider.stream_text(request, &mut sink)?;
    Ok(sink.0)
}

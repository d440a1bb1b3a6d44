//! Every error code of `ERROR_CODES.md`, with its HTTP status and default message.
//!
//! [`ErrorCode`] is the one place that knows the table; [`ApiError`] is an error that
//! carries a code, a message for people and optional structured details, and is what
//! handlers and services return.

use serde::Serialize;
use serde_json::Value;

macro_rules! error_codes {
    ($( $variant:ident => ($status:expr, $message:expr) ),+ $(,)?) => {
        /// A stable, machine-read error code (`ERROR_CODES.md`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum ErrorCode {
            $( $variant ),+
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$( ErrorCode::$variant ),+];

            /// The wire spelling, e.g. `INSUFFICIENT_CREDITS`.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => stringify!($variant) ),+ }
            }

            /// The HTTP status answered when this code is the response.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status ),+ }
            }

            /// The message used when a caller gives none.
            pub fn default_message(self) -> &'static str {
                match self { $( ErrorCode::$variant => $message ),+ }
            }

            /// Looks a code up by its wire spelling.
            pub fn parse(code: &str) -> Option<ErrorCode> {
                match code { $( stringify!($variant) => Some(ErrorCode::$variant), )+ _ => None }
            }
        }
    };
}

error_codes! {
    // Common
    UNAUTHORIZED => (401, "Missing or invalid access token"),
    FORBIDDEN => (403, "You are not allowed to do this"),
    BAD_REQUEST => (400, "The request is not valid"),
    NOT_FOUND => (404, "Not found"),
    CONFLICT => (409, "The request conflicts with the current state"),
    INSUFFICIENT_CREDITS => (402, "Not enough credits"),
    UPSTREAM_ERROR => (502, "The upstream service failed"),
    INTERNAL_ERROR => (500, "Internal error"),
    // Stripe
    STRIPE_SIGNATURE_INVALID => (400, "Stripe signature is missing or invalid"),
    STRIPE_PACKAGE_MISSING_PRICE => (400, "The package has no Stripe price for this currency"),
    STRIPE_CHECKOUT_CREATE_FAILED => (500, "Stripe could not create the checkout session"),
    NO_SUBSCRIPTION => (404, "No subscription found"),
    PORTAL_CREATE_FAILED => (500, "Stripe could not create the portal session"),
    // Alipay
    ALIPAY_PACKAGE_MISSING_PRICE => (400, "The package has no Alipay (CNY) price"),
    ALIPAY_REFUND_FAILED => (502, "Alipay refused or could not be reached for the refund"),
    ALIPAY_CHECKOUT_FAILED => (503, "Alipay checkout is not available"),
    // Generation
    ANALYSIS_CREATE_FAILED => (500, "The analysis job could not be created"),
    ANALYSIS_FAILED => (502, "Product analysis failed"),
    PROMPT_STREAM_FAILED => (502, "Prompt generation failed"),
    IMAGE_JOB_CREATE_FAILED => (500, "The image job could not be created"),
    IMAGE_INPUT_SOURCE_MISSING => (400, "No usable source image"),
    IMAGE_INPUT_PROMPT_MISSING => (400, "The prompt is empty"),
    IMAGE_INPUT_TOO_LARGE => (400, "An input image is too large"),
    TASK_CLAIM_FAILED => (500, "The queue could not claim a task"),
    STYLE_REPLICATE_JOB_CREATE_FAILED => (500, "The style-replicate job could not be created"),
    BATCH_INPUT_INVALID => (400, "Batch input is invalid"),
    BATCH_PRODUCT_IMAGE_REQUIRED => (400, "Batch mode needs a product image"),
    BATCH_REFERENCE_IMAGES_REQUIRED => (400, "Batch mode needs 1 to 12 reference images"),
    STYLE_REFERENCE_IMAGE_MISSING => (400, "A reference image is required"),
    STYLE_PRODUCT_IMAGE_MISSING => (400, "At least one product image is required"),
    REFINEMENT_PRODUCT_IMAGES_REQUIRED => (400, "Refinement needs 1 to 50 product images"),
    REFINEMENT_BACKGROUND_MODE_INVALID => (400, "backgroundMode must be white or original"),
    REFINEMENT_IMAGE_FORMAT_UNSUPPORTED => (400, "Refinement images must be .jpg, .jpeg or .png"),
    MODEL_RATIO_UNSUPPORTED => (400, "The aspect ratio is not supported by this model"),
    MODEL_UNAVAILABLE => (400, "The model is not available"),
    MODEL_RESTRICTED => (403, "This model is restricted to administrators"),
    IMAGE_SIZE_UNSATISFIED => (400, "The image size is not supported by this model"),
    MISSING_DOUBAO_IMAGE_API_KEY => (503, "The Doubao (Ark) API key is not configured"),
    UPSTREAM_TIMEOUT => (504, "The upstream service timed out"),
    // Job error codes of the reference that its client maps (lib/job-errors.ts,
    // process-generation-job/index.ts L4125, L4737–4752, L7317).
    UPSTREAM_REJECTED => (502, "The upstream refused the request before generating"),
    PROMPT_BLOCKED_BY_PROVIDER_POLICY => (400, "The provider's content policy blocked the request"),
    IMAGE_INPUT_INVALID_CONTENT_TYPE => (400, "An input is not a PNG, JPEG or WebP image"),
    IMAGE_INPUT_SOURCE_TIMEOUT => (400, "Fetching an input image timed out"),
    TASK_STALE_NO_HEARTBEAT => (500, "The worker stopped heartbeating while the unit ran"),
    BATCH_PARTIAL_FAILED => (200, "Some units failed"),
    RATE_LIMIT_EXCEEDED => (429, "Too many requests; try again later"),
    // The reference client retries when the message contains too_many_active_jobs
    // (lib/api/edge-functions.ts L166–171).
    TOO_MANY_ACTIVE_JOBS => (429, "TOO_MANY_ACTIVE_JOBS: too many active jobs of this type; retry shortly"),
    DAILY_ANALYSIS_LIMIT_EXCEEDED => (429, "Daily analysis limit reached"),
    // Growth: invite and redeem codes
    INVALID_CODE => (400, "A code is required"),
    CODE_NOT_FOUND => (404, "No such code"),
    ALREADY_BOUND => (409, "An invite code is already bound to this account"),
    PAID_USER_NOT_ALLOWED => (403, "Accounts that have paid cannot bind an invite code"),
    SELF_BIND_NOT_ALLOWED => (400, "You cannot bind your own invite code"),
    CODE_INACTIVE => (400, "This code is no longer active"),
    CODE_EXPIRED => (400, "This code has expired"),
    CODE_EXHAUSTED => (409, "This code has been used up"),
    ALREADY_CLAIMED => (409, "You have already claimed this code"),
    // Operations
    MAINTENANCE => (503, "The studio is under maintenance; try again later"),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a code, a human message and optional details: the body of every
/// non-2xx answer outside `/auth/v1`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429s).
    pub retry_after: Option<u64>,
    /// The HTTP status when it differs from the code's own (405, 413, 415 are `BAD_REQUEST`).
    pub status_override: Option<u16>,
    /// What really went wrong, for the request log only; never sent to the client.
    pub cause: Option<String>,
}

impl ApiError {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        Self::with_message(code, code.default_message())
    }

    /// An error with a specific message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            status_override: None,
            cause: None,
        }
    }

    /// `BAD_REQUEST` naming the offending field in `details.field`.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self::with_message(ErrorCode::BAD_REQUEST, message)
            .details(serde_json::json!({ "field": field }))
    }

    /// An unexpected failure; the cause is logged by the caller, never sent.
    pub fn internal() -> Self {
        Self::new(ErrorCode::INTERNAL_ERROR)
    }

    /// Attaches structured details.
    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Sets a `Retry-After` in seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Answers with another status than the code's (used for 405/413/415 `BAD_REQUEST`).
    pub fn status(mut self, status: u16) -> Self {
        self.status_override = Some(status);
        self
    }

    /// Records the underlying cause for the log.
    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// The HTTP status of the answer.
    pub fn http_status(&self) -> u16 {
        self.status_override.unwrap_or(self.code.http_status())
    }

    /// The wire body: `{"error":{"code","message","details"}}`.
    pub fn envelope(&self) -> Envelope<'_> {
        Envelope {
            error: EnvelopeBody {
                code: self.code.as_str(),
                message: &self.message,
                details: self.details.as_ref(),
            },
        }
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::new(code)
    }
}

/// The serialised error envelope.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    pub error: EnvelopeBody<'a>,
}

/// The inside of the envelope.
#[derive(Debug, Serialize)]
pub struct EnvelopeBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<&'a Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_spelling() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
        assert_eq!(ErrorCode::ALL.len(), 58);
    }

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(ErrorCode::INSUFFICIENT_CREDITS.http_status(), 402);
        assert_eq!(ErrorCode::MODEL_RESTRICTED.http_status(), 403);
        assert_eq!(ErrorCode::MISSING_DOUBAO_IMAGE_API_KEY.http_status(), 503);
        assert_eq!(ErrorCode::PORTAL_CREATE_FAILED.http_status(), 500);
        assert_eq!(ErrorCode::NO_SUBSCRIPTION.http_status(), 404);
        assert_eq!(ErrorCode::ALIPAY_PACKAGE_MISSING_PRICE.http_status(), 400);
        assert_eq!(ErrorCode::ALIPAY_REFUND_FAILED.http_status(), 502);
        assert_eq!(ErrorCode::ALIPAY_CHECKOUT_FAILED.http_status(), 503);
    }

    #[test]
    fn envelope_has_the_exact_shape() {
        let err = ApiError::with_message(ErrorCode::INSUFFICIENT_CREDITS, "need more")
            .details(serde_json::json!({"required": 3, "available": 1}));
        let body = serde_json::to_value(err.envelope()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "INSUFFICIENT_CREDITS", "message": "need more",
                "details": {"required": 3, "available": 1}}})
        );
        let bare = serde_json::to_value(ApiError::new(ErrorCode::NOT_FOUND).envelope()).unwrap();
        assert!(bare["error"].get("details").is_none());
    }

    #[test]
    fn method_and_size_errors_keep_bad_request_with_their_own_status() {
        let err = ApiError::new(ErrorCode::BAD_REQUEST).status(405);
        assert_eq!(err.http_status(), 405);
        assert_eq!(err.code, ErrorCode::BAD_REQUEST);
    }
}

//! The Stripe API client: form-encoded POSTs with an `Idempotency-Key`, reused on every
//! retry. Blocking (ureq): call it from a blocking thread, never on the async runtime.

use std::time::Duration;

use serde_json::Value;

use crate::config::BillingConfig;

/// Largest answer read from Stripe.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// How a Stripe call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error body (`{"error":{"type","code","message",…}}`).
    #[error("stripe refused ({status}): {message}")]
    Refused {
        status: u16,
        kind: String,
        code: Option<String>,
        message: String,
    },
    /// No usable answer: connection failed, timed out, or the body was not JSON.
    #[error("stripe unreachable: {0}")]
    Unreachable(String),
    /// No secret key is configured.
    #[error("stripe is not configured (billing.secret_key)")]
    NotConfigured,
}

/// A configured Stripe API client.
#[derive(Clone)]
pub struct StripeClient {
    agent: ureq::Agent,
    base: String,
    secret_key: Option<String>,
    version: String,
    max_attempts: u32,
    backoff: Duration,
}

impl StripeClient {
    /// A client for `config` (its own connection pool).
    pub fn new(config: &BillingConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(config.timeout_secs)))
            .http_status_as_error(false)
            .user_agent(concat!("atelier/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        StripeClient {
            agent,
            base: config.api_base.trim_end_matches('/').to_string(),
            secret_key: config.secret_key.clone().filter(|k| !k.is_empty()),
            version: config.api_version.clone(),
            max_attempts: config.max_attempts.max(1),
            backoff: Duration::from_millis(250),
        }
    }

    /// `POST {base}{path}` with `form` (bracket keys, in order) and `Idempotency-Key`;
    /// connection errors, 409, 429 and 5xx are retried with the same key unless Stripe
    /// says `Stripe-Should-Retry: false`.
    pub fn post_form(
        &self,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        let key = self.secret_key.as_ref().ok_or(StripeError::NotConfigured)?;
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let mut attempt = 1;
        loop {
            let outcome = self.post_once(&url, key, form, idempotency_key);
            let retry = match &outcome {
                Ok(_) => false,
                Err((_, should_retry)) => *should_retry,
            };
            if !retry || attempt >= self.max_attempts {
                return outcome.map_err(|(err, _)| err);
            }
            tracing::warn!(
                path,
                attempt,
                "stripe call failed; retrying with the same key"
            );
            std::thread::sleep(self.backoff * 2u32.pow(attempt - 1));
            attempt += 1;
        }
    }

    /// One attempt: the answer, or the error and whether to try again.
    fn post_once(
        &self,
        url: &str,
        key: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, (StripeError, bool)> {
        let sent = self
            .agent
            .post(url)
            .header("Authorization", format!("Bearer {key}"))
            .header("Stripe-Version", &self.version)
            .header("Idempotency-Key", idempotency_key)
            .send_form(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return Err((StripeError::Unreachable(e.to_string()), true)),
        };
        let status = response.status().as_u16();
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        let request_id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body: Result<Value, _> = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_json();
        tracing::info!(url, status, request_id, "stripe call");
        let retryable = should_retry.unwrap_or(status == 409 || status == 429 || status >= 500);
        match body {
            Ok(value) if (200..300).contains(&status) => Ok(value),
            Ok(value) => Err((refused(status, &value), retryable)),
            Err(e) => Err((
                StripeError::Unreachable(format!("unreadable answer ({status}): {e}")),
                retryable || (200..300).contains(&status),
            )),
        }
    }
}

/// Reads Stripe's error body.
fn refused(status: u16, body: &Value) -> StripeError {
    let error = &body["error"];
    let text = |k: &str| error[k].as_str().map(str::to_string);
    StripeError::Refused {
        status,
        kind: text("type").unwrap_or_else(|| "api_error".into()),
        code: text("code"),
        message: text("message").unwrap_or_else(|| format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_error_bodies_are_read() {
        let body = serde_json::json!({"error": {"type": "invalid_request_error",
            "code": "resource_missing", "message": "No such price: 'price_x'"}});
        assert_eq!(
            refused(400, &body),
            StripeError::Refused {
                status: 400,
                kind: "invalid_request_error".into(),
                code: Some("resource_missing".into()),
                message: "No such price: 'price_x'".into(),
            }
        );
    }

    #[test]
    fn no_key_means_not_configured() {
        let client = StripeClient::new(&BillingConfig::default());
        assert_eq!(
            client.post_form("/v1/checkout/sessions", &[], "k"),
            Err(StripeError::NotConfigured)
        );
    }
}

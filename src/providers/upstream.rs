//! What the three real providers share: a ureq agent with the configured timeouts, JSON
//! posts with the provider's auth header, bounded body reads, transport-error
//! classification, `Retry-After`, one log line per request, and in-memory metrics.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::ProviderError;
use crate::config::UpstreamConfig;
use crate::domain::ErrorCode;
use crate::ops::metrics::ProviderCounters;

/// Largest JSON answer read from an upstream (4K images inline as base64 are ~20 MB).
pub const MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;
/// Largest error body read (they are small; the rest is not worth keeping).
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// How a provider authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth {
    /// `Authorization: Bearer <key>` (OpenRouter, Ark).
    Bearer,
    /// `x-goog-api-key: <key>` (Gemini; never `?key=`, which ends up in logs).
    GoogApiKey,
}

/// Which timeout a call gets.
#[derive(Debug, Clone, Copy)]
pub enum CallKind {
    Text,
    Image,
}

/// One upstream: where it is, how to authenticate, and its counters.
pub struct Upstream {
    name: &'static str,
    config: UpstreamConfig,
    auth: Auth,
    agent: ureq::Agent,
    metrics: Arc<ProviderMetrics>,
}

/// An answer whose headers have arrived.
pub struct Reply {
    pub status: u16,
    /// `Retry-After`, in milliseconds, when the upstream sent one.
    pub retry_after_ms: Option<u64>,
    pub body: ureq::Body,
    started: Instant,
}

impl Upstream {
    /// An upstream with its own connection pool, counting into `counters`.
    pub fn new(
        name: &'static str,
        config: UpstreamConfig,
        auth: Auth,
        counters: ProviderCounters,
    ) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(config.connect_timeout_secs)))
            .http_status_as_error(false)
            .user_agent(concat!("atelier/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Upstream {
            name,
            config,
            auth,
            agent,
            metrics: Arc::new(ProviderMetrics::new(counters)),
        }
    }

    /// The provider's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its counters.
    pub fn metrics(&self) -> Arc<ProviderMetrics> {
        self.metrics.clone()
    }

    /// The timeout of a call of this kind.
    pub fn timeout(&self, kind: CallKind) -> Duration {
        Duration::from_secs(match kind {
            CallKind::Text => self.config.text_timeout_secs,
            CallKind::Image => self.config.image_timeout_secs,
        })
    }

    /// `base_url` joined with `path`, with exactly one slash between them.
    pub fn url(&self, path: &str) -> String {
        join_url(&self.config.base_url, path)
    }

    /// POSTs `body` as JSON to `path`; returns once the status and headers are in.
    /// Transport failures (refused, reset, timed out) come back classified.
    pub fn post_json(
        &self,
        path: &str,
        model: &str,
        body: &Value,
        kind: CallKind,
    ) -> Result<Reply, ProviderError> {
        let started = Instant::now();
        let mut request = self
            .agent
            .post(self.url(path))
            .header("Content-Type", "application/json");
        request = match self.auth {
            Auth::Bearer => {
                request.header("Authorization", format!("Bearer {}", self.config.api_key))
            }
            Auth::GoogApiKey => request.header("x-goog-api-key", &self.config.api_key),
        };
        let sent = request
            .config()
            .timeout_global(Some(self.timeout(kind)))
            .build()
            .send_json(body);
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after_ms = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                Ok(Reply {
                    status,
                    retry_after_ms,
                    body: response.into_body(),
                    started,
                })
            }
            Err(e) => {
                let error = transport_error(self.name, &e);
                self.finish(model, None, 0, started, Some(&error));
                Err(error)
            }
        }
    }

    /// Reads a whole JSON answer (at most `MAX_JSON_BYTES`).
    pub fn read_json(&self, reply: Reply, model: &str) -> Result<Value, ProviderError> {
        let Reply {
            status,
            mut body,
            started,
            ..
        } = reply;
        let bytes = match body.with_config().limit(MAX_JSON_BYTES).read_to_vec() {
            Ok(bytes) => bytes,
            Err(e) => {
                let error = transport_error(self.name, &e);
                self.finish(model, Some(status), 0, started, Some(&error));
                return Err(error);
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(value) => {
                self.finish(model, Some(status), bytes.len(), started, None);
                Ok(value)
            }
            Err(e) => {
                let error = ProviderError::retryable(
                    ErrorCode::UPSTREAM_ERROR,
                    format!("{} answered with malformed JSON: {e}", self.name),
                );
                self.finish(model, Some(status), bytes.len(), started, Some(&error));
                Err(error)
            }
        }
    }

    /// Reads an error body (bounded) and classifies it with the provider's own rule.
    pub fn read_error(
        &self,
        reply: Reply,
        model: &str,
        classify: impl Fn(u16, Option<u64>, &[u8]) -> ProviderError,
    ) -> ProviderError {
        let Reply {
            status,
            retry_after_ms,
            mut body,
            started,
        } = reply;
        let mut bytes = Vec::new();
        let _ = body
            .as_reader()
            .take(MAX_ERROR_BYTES)
            .read_to_end(&mut bytes);
        let error = classify(status, retry_after_ms, &bytes);
        self.finish(model, Some(status), bytes.len(), started, Some(&error));
        error
    }

    /// Logs one finished request and counts it.
    pub fn finish(
        &self,
        model: &str,
        status: Option<u16>,
        bytes: usize,
        started: Instant,
        error: Option<&ProviderError>,
    ) {
        let latency = started.elapsed();
        self.metrics.record(latency, error);
        let latency_ms = latency.as_millis() as u64;
        match error {
            None => tracing::info!(
                provider = self.name,
                model,
                status,
                latency_ms,
                bytes,
                "upstream request"
            ),
            Some(e) => tracing::warn!(provider = self.name, model, status, latency_ms, bytes,
                code = e.code.as_str(), retryable = e.retryable, error = %e.message,
                "upstream request failed"),
        }
    }

    /// A reply's start time (for streams that log when they end).
    pub fn started(reply: &Reply) -> Instant {
        reply.started
    }
}

/// `base` and `path` with exactly one slash between them.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Classifies a failure below HTTP: timeouts, refused or reset connections.
pub fn transport_error(provider: &str, e: &ureq::Error) -> ProviderError {
    let timed_out = match e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        _ => false,
    };
    if timed_out {
        ProviderError::retryable(
            ErrorCode::UPSTREAM_TIMEOUT,
            format!("{provider} did not answer in time"),
        )
    } else {
        ProviderError::retryable(
            ErrorCode::UPSTREAM_ERROR,
            format!("could not reach {provider}: {}", transport_reason(e)),
        )
    }
}

/// A short, secret-free description of a transport error.
fn transport_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("connection error ({:?})", io.kind()),
        ureq::Error::ConnectionFailed => "connection refused".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::BodyExceedsLimit(limit) => format!("answer larger than {limit} bytes"),
        other => other.to_string(),
    }
}

/// The common status rule of UPSTREAMS.md: 408, 429 and 5xx are worth another attempt;
/// other statuses are not. Providers refine it with their error codes.
pub fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429) || status >= 500
}

/// A failure classified by status alone, with the upstream's own message.
pub fn status_error(
    provider: &str,
    status: u16,
    retry_after_ms: Option<u64>,
    detail: &str,
) -> ProviderError {
    let detail = clip(detail, 300);
    let message = if detail.is_empty() {
        format!("{provider} answered HTTP {status}")
    } else {
        format!("{provider} answered HTTP {status}: {detail}")
    };
    if status_is_retryable(status) {
        ProviderError {
            retry_after_ms,
            ..ProviderError::retryable(ErrorCode::UPSTREAM_ERROR, message)
        }
    } else if status == 404 {
        ProviderError::permanent(ErrorCode::MODEL_UNAVAILABLE, message)
    } else if (400..500).contains(&status) {
        // The reference's UPSTREAM_REJECTED: the upstream refused the request before any
        // generation (process-generation-job/index.ts L4106–4108, L4125).
        ProviderError::permanent(ErrorCode::UPSTREAM_REJECTED, message)
    } else {
        ProviderError::permanent(ErrorCode::UPSTREAM_ERROR, message)
    }
}

/// `Retry-After` as seconds or an HTTP date, in milliseconds from `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default().as_millis() as u64)
}

/// At most `max` characters of `text`, on one line.
pub fn clip(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    match trimmed.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

/// Requests, errors by class and latency of one provider since start: the shared
/// Prometheus counters, plus the slowest request for the admin view.
pub struct ProviderMetrics {
    counters: ProviderCounters,
    latency_ms_max: AtomicU64,
}

impl ProviderMetrics {
    /// Metrics kept in `counters`.
    pub fn new(counters: ProviderCounters) -> Self {
        ProviderMetrics {
            counters,
            latency_ms_max: AtomicU64::new(0),
        }
    }

    fn record(&self, latency: Duration, error: Option<&ProviderError>) {
        let c = &self.counters;
        c.requests.inc();
        c.latency.observe(latency.as_secs_f64());
        self.latency_ms_max
            .fetch_max(latency.as_millis() as u64, Ordering::Relaxed);
        match error {
            Some(e) if e.code == ErrorCode::UPSTREAM_TIMEOUT => c.timeouts.inc(),
            Some(e) if e.retryable => c.retryable.inc(),
            Some(_) => c.permanent.inc(),
            None => {}
        }
    }

    /// The counters as JSON (for the admin queue view).
    pub fn snapshot(&self) -> Value {
        let c = &self.counters;
        let requests = c.requests.get();
        let total_ms = (c.latency.get_sample_sum() * 1000.0) as u64;
        serde_json::json!({
            "requests": requests,
            "errors": {
                "retryable": c.retryable.get(),
                "permanent": c.permanent.get(),
                "timeout": c.timeouts.get(),
            },
            "latency_ms": {
                "mean": total_ms.checked_div(requests).unwrap_or(0),
                "max": self.latency_ms_max.load(Ordering::Relaxed),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_one_slash() {
        assert_eq!(
            join_url("http://x/api/v1/", "/chat/completions"),
            "http://x/api/v1/chat/completions"
        );
        assert_eq!(
            join_url("http://x/v1beta", "models/m:generateContent"),
            "http://x/v1beta/models/m:generateContent"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_767);
        assert_eq!(parse_retry_after("2", now), Some(2000));
        assert_eq!(parse_retry_after(" 1.5 ", now), Some(1500));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(10_000)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn statuses_split_into_retryable_and_permanent() {
        for status in [408, 429, 500, 502, 503, 504, 524, 529] {
            assert!(status_error("x", status, None, "").retryable, "{status}");
        }
        for status in [400, 401, 402, 403, 422] {
            let e = status_error("x", status, None, "no");
            assert!(!e.retryable, "{status}");
            assert_eq!(e.code, ErrorCode::UPSTREAM_REJECTED);
        }
        assert_eq!(
            status_error("x", 404, None, "").code,
            ErrorCode::MODEL_UNAVAILABLE
        );
    }

    #[test]
    fn clip_keeps_messages_short_and_on_one_line() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}

//! Job and unit rules: kinds and states, retry backoff, how a job ends, output sizes.

use crate::domain::ErrorCode;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobType {
    Analysis,
    ImageGen,
    StyleReplicate,
}

impl JobType {
    /// Every job type.
    pub const ALL: [JobType; 3] = [
        JobType::Analysis,
        JobType::ImageGen,
        JobType::StyleReplicate,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Analysis => "ANALYSIS",
            JobType::ImageGen => "IMAGE_GEN",
            JobType::StyleReplicate => "STYLE_REPLICATE",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<JobType> {
        JobType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// How one attempt at a unit ended.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitOutcome {
    /// The unit produced its result (JSON stored on the task and folded into the job).
    Success { result: serde_json::Value },
    /// Worth another attempt (429, 5xx, timeout, connection error).
    Retryable {
        code: ErrorCode,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// Not worth another attempt (bad input, safety block, 4xx). `details` (e.g.
    /// `{"reason": "blocked_address"}`) is shown with the unit's error.
    Permanent {
        code: ErrorCode,
        message: String,
        details: Option<serde_json::Value>,
    },
}

/// What happens to a unit after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    Succeed,
    /// The job was cancelled: the unit ends cancelled and its hold is released,
    /// whatever the attempt brought.
    Cancel,
    /// Back to the queue, to run again at `run_after` (unix ms).
    Retry {
        run_after: i64,
    },
    Fail {
        code: ErrorCode,
        message: String,
        details: Option<serde_json::Value>,
    },
}

/// Retry policy: `base_ms × 2^attempt` plus up to 25 % jitter, at least the
/// upstream's `Retry-After`, for at most `max_attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_ms: 2000,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1`, given `jitter` in `0.0..1.0`.
    pub fn backoff_ms(&self, attempts: u32, jitter: f64, retry_after_ms: Option<u64>) -> u64 {
        let exp = self.base_ms.saturating_mul(1u64 << attempts.min(20));
        let jittered = exp + (exp as f64 * 0.25 * jitter.clamp(0.0, 1.0)) as u64;
        jittered.max(retry_after_ms.unwrap_or(0))
    }

    /// Decides the next step after attempt number `attempts` (1-based) ended in `outcome`.
    pub fn next_step(
        &self,
        outcome: &UnitOutcome,
        attempts: u32,
        now: i64,
        jitter: f64,
    ) -> NextStep {
        match outcome {
            UnitOutcome::Success { .. } => NextStep::Succeed,
            UnitOutcome::Permanent {
                code,
                message,
                details,
            } => NextStep::Fail {
                code: *code,
                message: message.clone(),
                details: details.clone(),
            },
            UnitOutcome::Retryable {
                code,
                message,
                retry_after_ms,
            } => {
                if attempts >= self.max_attempts {
                    NextStep::Fail {
                        code: *code,
                        message: message.clone(),
                        details: None,
                    }
                } else {
                    let delay = self.backoff_ms(attempts, jitter, *retry_after_ms);
                    NextStep::Retry {
                        run_after: now + delay as i64,
                    }
                }
            }
        }
    }
}

/// How a job ends once none of its units is queued or running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    pub status: &'static str,
    pub error_code: Option<String>,
}

/// Success if at least one unit succeeded (`BATCH_PARTIAL_FAILED` when some failed or
/// were cancelled); failed otherwise, with the last failed unit's code — none when every
/// unit was cancelled, `UPSTREAM_ERROR` when a failure left no code.
pub fn job_end(succeeded: u32, failed: u32, cancelled: u32, last_error: Option<&str>) -> JobEnd {
    if succeeded > 0 {
        JobEnd {
            status: "success",
            error_code: (failed + cancelled > 0)
                .then(|| ErrorCode::BATCH_PARTIAL_FAILED.as_str().to_string()),
        }
    } else {
        JobEnd {
            status: "failed",
            error_code: match last_error {
                Some(code) => Some(code.to_string()),
                None if failed == 0 && cancelled > 0 => None,
                None => Some(ErrorCode::UPSTREAM_ERROR.as_str().to_string()),
            },
        }
    }
}

/// Output pixel size for a `W:H` ratio and a size label (1K/2K/4K = long side 1024/2048/4096).
pub fn output_dimensions(ratio: &str, size: &str) -> Option<(u32, u32)> {
    let long = match size {
        "1K" => 1024u32,
        "2K" => 2048,
        "4K" => 4096,
        _ => return None,
    };
    let (w, h) = parse_ratio(ratio)?;
    Some(if w >= h {
        (
            long,
            ((long as f64) * h as f64 / w as f64).round().max(1.0) as u32,
        )
    } else {
        (
            ((long as f64) * w as f64 / h as f64).round().max(1.0) as u32,
            long,
        )
    })
}

/// Parses `W:H` with positive integers up to 100 each.
pub fn parse_ratio(ratio: &str) -> Option<(u32, u32)> {
    let (w, h) = ratio.trim().split_once(':')?;
    let (w, h): (u32, u32) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (w > 0 && h > 0 && w <= 100 && h <= 100).then_some((w, h))
}

/// Relative difference between an image's ratio and the requested one.
pub fn ratio_error(width: u32, height: u32, ratio: &str) -> Option<f64> {
    let (w, h) = parse_ratio(ratio)?;
    if width == 0 || height == 0 {
        return None;
    }
    let want = w as f64 / h as f64;
    let got = width as f64 / height as f64;
    Some(((got - want) / want).abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ms(1, 0.0, None), 4000);
        assert_eq!(p.backoff_ms(2, 0.0, None), 8000);
        assert_eq!(p.backoff_ms(1, 1.0, None), 5000);
        assert_eq!(p.backoff_ms(1, 0.0, Some(30_000)), 30_000);
    }

    #[test]
    fn retryable_until_attempts_are_used() {
        let p = RetryPolicy::default();
        let retry = UnitOutcome::Retryable {
            code: ErrorCode::UPSTREAM_ERROR,
            message: "429".into(),
            retry_after_ms: None,
        };
        assert!(matches!(
            p.next_step(&retry, 1, 0, 0.0),
            NextStep::Retry { run_after: 4000 }
        ));
        assert!(matches!(
            p.next_step(&retry, 3, 0, 0.0),
            NextStep::Fail { .. }
        ));
        let permanent = UnitOutcome::Permanent {
            code: ErrorCode::BAD_REQUEST,
            message: "no".into(),
            details: None,
        };
        assert!(matches!(
            p.next_step(&permanent, 1, 0, 0.0),
            NextStep::Fail { .. }
        ));
    }

    #[test]
    fn job_end_rules() {
        assert_eq!(
            job_end(3, 0, 0, None),
            JobEnd {
                status: "success",
                error_code: None
            }
        );
        assert_eq!(
            job_end(3, 2, 0, Some("X")).error_code.as_deref(),
            Some("BATCH_PARTIAL_FAILED")
        );
        assert_eq!(
            job_end(0, 0, 3, None),
            JobEnd {
                status: "failed",
                error_code: None
            }
        );
        assert_eq!(
            job_end(0, 2, 0, Some("UPSTREAM_TIMEOUT")),
            JobEnd {
                status: "failed",
                error_code: Some("UPSTREAM_TIMEOUT".into())
            }
        );
    }

    #[test]
    fn dimensions_follow_ratio_and_size() {
        assert_eq!(output_dimensions("1:1", "1K"), Some((1024, 1024)));
        assert_eq!(output_dimensions("16:9", "1K"), Some((1024, 576)));
        assert_eq!(output_dimensions("9:16", "2K"), Some((1152, 2048)));
        assert_eq!(output_dimensions("21:9", "4K"), Some((4096, 1755)));
        assert_eq!(output_dimensions("1:1", "8K"), None);
        assert_eq!(output_dimensions("0:1", "1K"), None);
        assert!(ratio_error(1536, 672, "21:9").unwrap() < 0.03);
        assert!(ratio_error(1024, 1024, "16:9").unwrap() > 0.03);
    }
}

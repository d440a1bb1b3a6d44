//! `[alerts]`: the job-health window and the alert rules (the reference's defaults),
//! how often they are evaluated, and where alerts go.

use serde::{Deserialize, Serialize};

use crate::domain::health::Thresholds;

/// `[alerts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Evaluate the rules in the background (off: job health is still served).
    pub enabled: bool,
    /// Seconds between evaluations.
    pub interval_secs: u64,
    /// The rules look at jobs created this many minutes back (also the metrics' window).
    pub window_minutes: u64,
    /// A rule that notified stays quiet this long (seconds) unless it resolves.
    pub cooldown_secs: u64,
    /// `success_rate`: fires below this percent of successful finished jobs …
    pub min_success_rate: f64,
    /// … over at least this many finished jobs.
    pub min_samples: i64,
    /// `type_failures`: this many failed jobs of one type.
    pub type_failures: i64,
    /// `stuck_units`: this many units stuck …
    pub stuck_units: i64,
    /// … running longer than this (seconds), or past their lease.
    pub stuck_after_secs: u64,
    /// `error_code_spike`: one error code this many times.
    pub error_code_spike: i64,
    /// `acceptance_failures`: this many failed job submissions.
    pub acceptance_failures: i64,
    /// `generation_drought`: no unit succeeded for this many minutes while work waits.
    pub drought_minutes: i64,
    /// Who is e-mailed; empty means every admin account.
    pub email_to: Vec<String>,
    /// Signed JSON webhook (none when empty).
    pub webhook_url: String,
    /// HMAC-SHA256 key of the webhook signature (hidden in `atelier config check`).
    pub webhook_secret: String,
    /// Attempts per webhook delivery.
    pub webhook_max_attempts: u32,
    /// First webhook retry delay in milliseconds; doubles with each attempt.
    pub webhook_backoff_ms: u64,
    /// Longest webhook request, in seconds.
    pub webhook_timeout_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            interval_secs: 60,
            window_minutes: 15,
            cooldown_secs: 3600,
            min_success_rate: 75.0,
            min_samples: 20,
            type_failures: 10,
            stuck_units: 3,
            stuck_after_secs: 600,
            error_code_spike: 8,
            acceptance_failures: 3,
            drought_minutes: 30,
            email_to: Vec::new(),
            webhook_url: String::new(),
            webhook_secret: String::new(),
            webhook_max_attempts: 5,
            webhook_backoff_ms: 1000,
            webhook_timeout_secs: 10,
        }
    }
}

impl AlertsConfig {
    /// The rules' thresholds.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            min_success_rate: self.min_success_rate,
            min_samples: self.min_samples,
            type_failures: self.type_failures,
            stuck_units: self.stuck_units,
            error_code_spike: self.error_code_spike,
            acceptance_failures: self.acceptance_failures,
            drought_minutes: self.drought_minutes,
        }
    }

    /// Checks the rules serde cannot express: `(key, why)` on the first problem.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.interval_secs == 0 {
            return Err(("alerts.interval_secs", "must be at least 1"));
        }
        if !(1..=10_080).contains(&self.window_minutes) {
            return Err(("alerts.window_minutes", "must be 1 to 10080"));
        }
        if !(0.0..=100.0).contains(&self.min_success_rate) {
            return Err(("alerts.min_success_rate", "must be 0 to 100"));
        }
        if self.stuck_after_secs == 0 {
            return Err(("alerts.stuck_after_secs", "must be at least 1"));
        }
        let url = self.webhook_url.trim();
        if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(("alerts.webhook_url", "must be an http:// or https:// URL"));
        }
        if !url.is_empty() && self.webhook_secret.len() < 16 {
            return Err((
                "alerts.webhook_secret",
                "must be at least 16 bytes when a webhook_url is set",
            ));
        }
        if self.webhook_max_attempts == 0 {
            return Err(("alerts.webhook_max_attempts", "must be at least 1"));
        }
        if self.webhook_timeout_secs == 0 {
            return Err(("alerts.webhook_timeout_secs", "must be at least 1"));
        }
        Ok(())
    }
}

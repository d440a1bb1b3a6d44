//! The job-health gauges (over `alerts.window_minutes`), refreshed at scrape time.

use prometheus::{Gauge, GaugeVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Job health as Prometheus gauges.
pub struct HealthMetrics {
    /// Successful share of the jobs finished in the window (NaN when none finished).
    pub success_ratio: Gauge,
    /// Jobs created in the window by type and status.
    pub window_jobs: IntGaugeVec,
    /// Failed jobs in the window by error code.
    pub failures_by_code: IntGaugeVec,
    /// Duration quantiles of successful jobs by type, in seconds.
    pub duration: GaugeVec,
    /// Units running past their lease or longer than `alerts.stuck_after_secs`.
    pub stuck_units: IntGauge,
    /// Job submissions that failed in the window.
    pub acceptance_failures: IntGauge,
    /// Seconds since each provider's last successful unit.
    pub since_last_success: GaugeVec,
}

fn register<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, metric: M) -> M {
    r.register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl HealthMetrics {
    /// Registers every job-health gauge in `r`.
    pub fn new(r: &Registry) -> HealthMetrics {
        let opts = |name: &str, help: &str| Opts::new(name, help);
        HealthMetrics {
            success_ratio: register(
                r,
                Gauge::with_opts(opts(
                    "atelier_health_success_ratio",
                    "Successful share of the jobs finished in the alert window",
                ))
                .expect("valid"),
            ),
            window_jobs: register(
                r,
                IntGaugeVec::new(
                    opts(
                        "atelier_health_window_jobs",
                        "Jobs created in the alert window by type and status",
                    ),
                    &["type", "status"],
                )
                .expect("valid"),
            ),
            failures_by_code: register(
                r,
                IntGaugeVec::new(
                    opts(
                        "atelier_health_failed_jobs_by_code",
                        "Failed jobs in the alert window by error code",
                    ),
                    &["code"],
                )
                .expect("valid"),
            ),
            duration: register(
                r,
                GaugeVec::new(
                    opts(
                        "atelier_health_job_duration_seconds",
                        "Duration quantiles of the successful jobs in the alert window",
                    ),
                    &["type", "percentile"],
                )
                .expect("valid"),
            ),
            stuck_units: register(
                r,
                IntGauge::with_opts(opts(
                    "atelier_health_stuck_units",
                    "Units running past their lease or longer than alerts.stuck_after_secs",
                ))
                .expect("valid"),
            ),
            acceptance_failures: register(
                r,
                IntGauge::with_opts(opts(
                    "atelier_health_acceptance_failures",
                    "Job submissions that failed in the alert window",
                ))
                .expect("valid"),
            ),
            since_last_success: register(
                r,
                GaugeVec::new(
                    opts(
                        "atelier_health_seconds_since_last_success",
                        "Seconds since each provider's last successful unit",
                    ),
                    &["provider"],
                )
                .expect("valid"),
            ),
        }
    }
}

//! Prometheus metrics: counters and histograms updated where things happen, gauges read
//! from the database at scrape time, exposed on `GET /metrics` in the text format.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets (seconds) for HTTP handlers and upstream calls.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Every metric Atelier exports, in one registry (one per running app, so tests that
/// start several apps in one process do not share counts).
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route template, method and status.
    pub http_requests: IntCounterVec,
    /// HTTP handler latency by route template.
    pub http_latency: HistogramVec,
    /// Jobs accepted, by type.
    pub jobs_created: IntCounterVec,
    /// Credit movements made by the queue: `hold`, `capture`, `release`.
    pub ledger_movements: IntCounterVec,
    /// Stripe webhook events by type and result (`applied`, `duplicate`, `conflict`, …).
    pub webhook_events: IntCounterVec,
    /// Upstream requests by provider.
    pub provider_requests: IntCounterVec,
    /// Upstream failures by provider and class (`retryable`, `permanent`, `timeout`).
    pub provider_errors: IntCounterVec,
    /// Upstream latency by provider.
    pub provider_latency: HistogramVec,
    /// Jobs in the database by type and status (read at scrape time).
    pub jobs: IntGaugeVec,
    /// Units queued (due or not).
    pub queue_depth: IntGauge,
    /// Units running now.
    pub queue_running: IntGauge,
    /// Age of the oldest queued unit, in seconds (0 when none).
    pub oldest_queued_age: Gauge,
    /// 1 while the queue-stall alarm is raised.
    pub queue_stalled: IntGauge,
    /// Consecutive job acceptances that failed on our side.
    pub acceptance_failures: IntGauge,
    /// 1 while the acceptance-failure alarm is raised.
    pub acceptance_failing: IntGauge,
    /// The job-health gauges.
    pub health: super::health_metrics::HealthMetrics,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("valid histogram");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid gauge");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// A fresh registry with every metric; `pool_wait` is the database's own histogram.
    pub fn new(pool_wait: &Histogram) -> Metrics {
        let r = Registry::new();
        let oldest_queued_age = Gauge::new(
            "atelier_queue_oldest_queued_age_seconds",
            "Age of the oldest queued unit",
        )
        .expect("valid gauge");
        r.register(Box::new(oldest_queued_age.clone()))
            .expect("unique");
        r.register(Box::new(pool_wait.clone())).expect("unique");
        let jobs = IntGaugeVec::new(
            Opts::new("atelier_jobs", "Jobs in the database by type and status"),
            &["type", "status"],
        )
        .expect("valid gauge");
        r.register(Box::new(jobs.clone())).expect("unique");
        Metrics {
            http_requests: counter(
                &r,
                "atelier_http_requests_total",
                "HTTP requests by route, method and status",
                &["route", "method", "status"],
            ),
            http_latency: histogram(
                &r,
                "atelier_http_request_duration_seconds",
                "HTTP request latency by route",
                &["route"],
            ),
            jobs_created: counter(
                &r,
                "atelier_jobs_created_total",
                "Jobs accepted, by type",
                &["type"],
            ),
            ledger_movements: counter(
                &r,
                "atelier_ledger_movements_total",
                "Credit holds, captures and releases made for jobs",
                &["kind"],
            ),
            webhook_events: counter(
                &r,
                "atelier_webhook_events_total",
                "Stripe webhook deliveries by event type and result",
                &["type", "result"],
            ),
            provider_requests: counter(
                &r,
                "atelier_provider_requests_total",
                "Upstream requests by provider",
                &["provider"],
            ),
            provider_errors: counter(
                &r,
                "atelier_provider_errors_total",
                "Upstream failures by provider and class",
                &["provider", "class"],
            ),
            provider_latency: histogram(
                &r,
                "atelier_provider_request_duration_seconds",
                "Upstream request latency by provider",
                &["provider"],
            ),
            jobs,
            queue_depth: gauge(&r, "atelier_queue_depth", "Units waiting in the queue"),
            queue_running: gauge(&r, "atelier_queue_running", "Units running now"),
            oldest_queued_age,
            queue_stalled: gauge(
                &r,
                "atelier_queue_stalled",
                "1 while units wait but none started or finished for stall_after",
            ),
            acceptance_failures: gauge(
                &r,
                "atelier_job_acceptance_consecutive_failures",
                "Job acceptances in a row that failed on the server's side",
            ),
            acceptance_failing: gauge(
                &r,
                "atelier_job_acceptance_failing",
                "1 while job acceptance keeps failing",
            ),
            health: super::health_metrics::HealthMetrics::new(&r),
            registry: r,
        }
    }

    /// A metrics set that nobody scrapes (unit tests, command-line tools).
    pub fn detached() -> Metrics {
        Metrics::new(&crate::db::pool::pool_wait_histogram())
    }

    /// Counts one credit movement of `kind`.
    pub fn ledger_movement(&self, kind: &str) {
        self.ledger_movements.with_label_values(&[kind]).inc();
    }

    /// The upstream counters of one provider.
    pub fn provider(&self, name: &str) -> ProviderCounters {
        let class = |c: &str| self.provider_errors.with_label_values(&[name, c]);
        ProviderCounters {
            requests: self.provider_requests.with_label_values(&[name]),
            retryable: class("retryable"),
            permanent: class("permanent"),
            timeouts: class("timeout"),
            latency: self.provider_latency.with_label_values(&[name]),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Result<String, String> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| e.to_string())?;
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

/// One provider's handles into the shared upstream metrics.
#[derive(Clone)]
pub struct ProviderCounters {
    pub requests: IntCounter,
    pub retryable: IntCounter,
    pub permanent: IntCounter,
    pub timeouts: IntCounter,
    pub latency: Histogram,
}

/// The route template of a request path, so labels stay few: ids and object keys become
/// `{id}` / `{key}`; unknown paths are `other`.
pub fn route_label(path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let known = match segments.as_slice() {
        [""] => "/".to_string(),
        ["healthz" | "readyz" | "metrics" | "openapi.json"] => path.to_string(),
        ["auth", "v1", name] => format!("/auth/v1/{name}"),
        ["functions", "v1", name] => format!("/functions/v1/{name}"),
        ["v1", "jobs", _] => "/v1/jobs/{id}".into(),
        ["v1", "jobs", _, action] => format!("/v1/jobs/{{id}}/{action}"),
        ["v1", rest @ ..] if rest.len() <= 2 => path.to_string(),
        ["storage", "v1", "object", kind, ..] => format!("/storage/v1/object/{kind}/{{key}}"),
        ["dev", "checkout", ..] => "/dev/checkout/{id}".into(),
        ["admin"] => "/admin".into(),
        ["assets", ..] => "/assets/{path}".into(),
        _ => "other".into(),
    };
    // Names come from the path: keep only the ones a route could have.
    if known
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/{}-_.".contains(c))
        && known.len() <= 64
    {
        known
    } else {
        "other".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_become_templates() {
        assert_eq!(route_label("/v1/jobs/0190-abc"), "/v1/jobs/{id}");
        assert_eq!(route_label("/assets/js/studio.js"), "/assets/{path}");
        assert_eq!(
            route_label("/v1/jobs/0190-abc/events"),
            "/v1/jobs/{id}/events"
        );
        assert_eq!(
            route_label("/storage/v1/object/public/generated/a/b.png"),
            "/storage/v1/object/public/{key}"
        );
        assert_eq!(
            route_label("/functions/v1/generate-image"),
            "/functions/v1/generate-image"
        );
        assert_eq!(route_label("/v1/admin/queue"), "/v1/admin/queue");
        assert_eq!(route_label("/wp-admin/x/y/z/w"), "other");
        assert_eq!(route_label("/functions/v1/<script>"), "other");
    }

    #[test]
    fn the_exposition_names_every_family() {
        let metrics = Metrics::detached();
        metrics.ledger_movement("hold");
        metrics.provider("openrouter").requests.inc();
        let text = metrics.render().unwrap();
        for name in [
            "atelier_ledger_movements_total{kind=\"hold\"} 1",
            "atelier_provider_requests_total{provider=\"openrouter\"} 1",
            "atelier_queue_depth 0",
            "atelier_db_pool_wait_seconds_count",
        ] {
            assert!(text.contains(name), "{name} missing in:\n{text}");
        }
    }
}

//! The queue-stall and acceptance alarms. The reference product once accepted no image
//! work for hours without anyone noticing; Atelier says so on `/readyz`, in a metric and
//! in an ERROR log line every minute until it recovers.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::db::{billing, jobs};
use crate::domain::time::now_ms;
use crate::http::State;

/// How often the watchdog looks at the queue.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often a raised alarm is logged again.
const LOG_EVERY_MS: i64 = 60_000;

/// Signs of life the queue and the job endpoints leave behind.
#[derive(Debug)]
pub struct QueueHealth {
    last_progress_ms: AtomicI64,
    accept_failures: AtomicU32,
    /// When the latest job creations failed (at most [`FAILURE_TIMES_KEPT`]).
    failure_times: std::sync::Mutex<std::collections::VecDeque<i64>>,
}

/// How many acceptance failure times are kept for the job-health window.
const FAILURE_TIMES_KEPT: usize = 1000;

impl QueueHealth {
    /// Fresh marks: the queue counts as having moved just now.
    pub fn new() -> Self {
        QueueHealth {
            last_progress_ms: AtomicI64::new(now_ms()),
            accept_failures: AtomicU32::new(0),
            failure_times: Default::default(),
        }
    }

    /// A unit started or finished.
    pub fn progress(&self) {
        self.last_progress_ms.fetch_max(now_ms(), Ordering::Relaxed);
    }

    /// A job was accepted.
    pub fn accept_succeeded(&self) {
        self.accept_failures.store(0, Ordering::Relaxed);
    }

    /// A job creation failed on the server's side; returns the failures in a row.
    pub fn accept_failed(&self) -> u32 {
        let mut times = self.failure_times.lock().unwrap_or_else(|p| p.into_inner());
        if times.len() == FAILURE_TIMES_KEPT {
            times.pop_front();
        }
        times.push_back(now_ms());
        drop(times);
        self.accept_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// When a unit last started or finished.
    pub fn last_progress_ms(&self) -> i64 {
        self.last_progress_ms.load(Ordering::Relaxed)
    }

    /// Job creations that failed on the server's side since `since` (ms).
    pub fn accept_failures_since(&self, since: i64) -> i64 {
        let times = self.failure_times.lock().unwrap_or_else(|p| p.into_inner());
        times.iter().filter(|t| **t >= since).count() as i64
    }

    /// Job creations that failed in a row.
    pub fn accept_failures(&self) -> u32 {
        self.accept_failures.load(Ordering::Relaxed)
    }
}

impl Default for QueueHealth {
    fn default() -> Self {
        QueueHealth::new()
    }
}

/// What the alarms look at.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueView {
    /// Units due now whose provider is configured.
    pub due_units: i64,
    /// Milliseconds since a unit last started or finished.
    pub idle_ms: i64,
    pub accept_failures: u32,
    /// Stripe events parked (waiting for an object) for longer than [`PARKED_TOO_LONG_MS`].
    pub stale_parked_events: i64,
}

/// A Stripe event parked this long waits for something that is not coming (a lost
/// event, an object Atelier cannot link): an operator must look.
pub const PARKED_TOO_LONG_MS: i64 = 24 * 3600 * 1000;

/// The alarms' thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub stall_after_ms: i64,
    pub accept_failures: u32,
}

impl QueueView {
    /// Units wait and none started or finished for `stall_after`.
    pub fn stalled(&self, limits: Thresholds) -> bool {
        self.due_units > 0 && self.idle_ms >= limits.stall_after_ms
    }

    /// Job creations keep failing on the server's side.
    pub fn acceptance_failing(&self, limits: Thresholds) -> bool {
        self.accept_failures >= limits.accept_failures
    }
}

/// The alarms raised by `view`, each as a sentence an operator can act on.
pub fn raised_alarms(view: &QueueView, limits: Thresholds) -> Vec<String> {
    let mut alarms = Vec::new();
    if view.stalled(limits) {
        alarms.push(format!(
            "queue stalled: {} units are waiting and none started or finished for {} s",
            view.due_units,
            view.idle_ms / 1000
        ));
    }
    if view.acceptance_failing(limits) {
        alarms.push(format!(
            "job acceptance failing: the last {} job creations failed",
            view.accept_failures
        ));
    }
    if view.stale_parked_events > 0 {
        alarms.push(format!(
            "{} Stripe event(s) parked for over {} h, waiting for an object that never came \
             (a refund may not be applied): see /v1/admin/webhook-events?result=parked",
            view.stale_parked_events,
            PARKED_TOO_LONG_MS / 3_600_000
        ));
    }
    alarms
}

/// The queue as the alarms and `/metrics` see it now.
pub struct QueueReport {
    pub view: QueueView,
    pub alarms: Vec<String>,
    pub stats: jobs::QueueStats,
    pub jobs: Vec<(String, String, i64)>,
}

impl QueueReport {
    /// The report as JSON for `/readyz`.
    pub fn details(&self) -> Value {
        json!({"alarms": self.alarms, "due_units": self.view.due_units,
               "idle_seconds": self.view.idle_ms / 1000,
               "acceptance_failures": self.view.accept_failures,
               "stale_parked_stripe_events": self.view.stale_parked_events})
    }
}

/// Reads the queue, evaluates the alarms and updates the gauges.
pub async fn check(state: &State) -> Result<QueueReport, String> {
    let now = now_ms();
    let (stats, due, jobs, stale_parked_events) = state
        .db
        .read(move |conn| {
            Ok((
                jobs::queue_stats(conn)?,
                jobs::due_per_provider(conn, now)?,
                jobs::jobs_by_type_and_status(conn)?,
                billing::count_parked_before(conn, now - PARKED_TOO_LONG_MS)?,
            ))
        })
        .await
        .map_err(|e| e.to_string())?;
    let due_units = due
        .iter()
        .filter(|(provider, _)| state.providers.contains_key(provider))
        .map(|(_, n)| n)
        .sum();
    let view = QueueView {
        due_units,
        idle_ms: (now - state.health.last_progress_ms()).max(0),
        accept_failures: state.health.accept_failures(),
        stale_parked_events,
    };
    let limits = thresholds(state);
    let alarms = raised_alarms(&view, limits);
    update_gauges(state, &view, limits, &stats, &jobs, now);
    Ok(QueueReport {
        view,
        alarms,
        stats,
        jobs,
    })
}

fn thresholds(state: &State) -> Thresholds {
    Thresholds {
        stall_after_ms: (state.config.queue.stall_after_secs * 1000) as i64,
        accept_failures: state.config.queue.acceptance_failure_alarm,
    }
}

fn update_gauges(
    state: &State,
    view: &QueueView,
    limits: Thresholds,
    stats: &jobs::QueueStats,
    jobs: &[(String, String, i64)],
    now: i64,
) {
    let m = &state.metrics;
    m.queue_depth.set(stats.queued);
    m.queue_running.set(stats.running);
    let age = stats.oldest_queued_at.map_or(0, |at| (now - at).max(0));
    m.oldest_queued_age.set(age as f64 / 1000.0);
    m.queue_stalled.set(i64::from(view.stalled(limits)));
    m.acceptance_failures.set(i64::from(view.accept_failures));
    m.acceptance_failing
        .set(i64::from(view.acceptance_failing(limits)));
    m.jobs.reset();
    for (job_type, status, n) in jobs {
        m.jobs.with_label_values(&[job_type, status]).set(*n);
    }
}

/// Checks the queue every few seconds; logs a raised alarm at ERROR once a minute and
/// its end at INFO. Ends when the app is gone.
pub fn spawn_watchdog(state: &State) {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECK_EVERY);
        let mut last_logged: Option<i64> = None;
        loop {
            every.tick().await;
            let Some(state) = weak.upgrade() else {
                return;
            };
            let report = match check(&state).await {
                Ok(report) => report,
                Err(err) => {
                    tracing::warn!(error = %err, "the queue watchdog could not read the queue");
                    continue;
                }
            };
            let now = now_ms();
            if report.alarms.is_empty() {
                if last_logged.take().is_some() {
                    tracing::info!("queue alarm cleared: the queue is moving again");
                }
            } else if last_logged.is_none_or(|at| now - at >= LOG_EVERY_MS) {
                last_logged = Some(now);
                for alarm in &report.alarms {
                    tracing::error!(alarm = %alarm, "queue alarm");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        stall_after_ms: 120_000,
        accept_failures: 5,
    };

    fn view(due_units: i64, idle_ms: i64, accept_failures: u32) -> QueueView {
        QueueView {
            due_units,
            idle_ms,
            accept_failures,
            stale_parked_events: 0,
        }
    }

    #[test]
    fn a_queue_with_work_and_no_progress_is_stalled() {
        assert!(raised_alarms(&view(3, 119_999, 0), LIMITS).is_empty());
        let alarms = raised_alarms(&view(3, 120_000, 0), LIMITS);
        assert_eq!(alarms.len(), 1);
        assert!(alarms[0].contains("3 units are waiting"), "{alarms:?}");
    }

    #[test]
    fn stripe_events_parked_too_long_raise_an_alarm() {
        let mut v = view(0, 0, 0);
        assert!(raised_alarms(&v, LIMITS).is_empty());
        v.stale_parked_events = 2;
        let alarms = raised_alarms(&v, LIMITS);
        assert!(
            alarms[0].starts_with("2 Stripe event(s) parked"),
            "{alarms:?}"
        );
    }

    #[test]
    fn an_idle_empty_queue_is_fine() {
        assert!(raised_alarms(&view(0, 10_000_000, 0), LIMITS).is_empty());
    }

    #[test]
    fn failing_acceptances_raise_their_own_alarm() {
        assert!(raised_alarms(&view(0, 0, 4), LIMITS).is_empty());
        let alarms = raised_alarms(&view(0, 0, 5), LIMITS);
        assert!(
            alarms[0].starts_with("job acceptance failing"),
            "{alarms:?}"
        );
        let health = QueueHealth::new();
        assert_eq!(health.accept_failed(), 1);
        assert_eq!(health.accept_failed(), 2);
        health.accept_succeeded();
        assert_eq!(health.accept_failures(), 0);
    }
}

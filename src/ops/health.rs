//! The job-health snapshot over a window: success rate, durations, counts by status,
//! type and error code, failed jobs with their seller, stuck units, acceptance
//! failures and each provider's last success. Served by `GET /v1/admin/job-health`,
//! exported as metrics and read by the alert rules.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::db::health::{self as hdb, CountRow, FailedJob, StuckUnit};
use crate::db::jobs;
use crate::domain::health::{duration_stats, success_rate, DurationStats, Figures};
use crate::domain::time::{now_ms, rfc3339};
use crate::http::State;

/// Failed jobs listed in a snapshot.
pub const FAILED_LISTED: usize = 50;

/// Everything read for one window.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub since: i64,
    pub now: i64,
    pub counts: Vec<CountRow>,
    pub durations: Vec<(String, i64)>,
    pub failed: Vec<FailedJob>,
    pub stuck: Vec<StuckUnit>,
    pub last_success: Vec<(String, i64)>,
    pub queued_units: i64,
    pub acceptance_failures: i64,
}

/// Reads the window of the last `minutes` minutes.
pub async fn snapshot(state: &State, minutes: i64) -> Result<Snapshot, String> {
    let now = now_ms();
    let since = now - minutes * 60_000;
    let stuck_before = now - (state.config.alerts.stuck_after_secs as i64) * 1000;
    let (counts, durations, failed, stuck, last_success, queue) = state
        .db
        .read(move |conn| {
            Ok((
                hdb::counts(conn, since)?,
                hdb::success_durations(conn, since)?,
                hdb::failed_jobs(conn, since, FAILED_LISTED)?,
                hdb::stuck_units(conn, now, stuck_before)?,
                hdb::last_success_per_provider(conn)?,
                jobs::queue_stats(conn)?,
            ))
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Snapshot {
        since,
        now,
        counts,
        durations,
        failed,
        stuck,
        last_success,
        queued_units: queue.queued,
        acceptance_failures: state.health.accept_failures_since(since),
    })
}

impl Snapshot {
    fn total(&self, status: &str) -> i64 {
        self.counts
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.count)
            .sum()
    }

    /// Failed jobs by error code (`UNKNOWN` when none was recorded).
    pub fn failed_by_code(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for c in self.counts.iter().filter(|c| c.status == "failed") {
            let code = c.error_code.clone().unwrap_or_else(|| "UNKNOWN".into());
            *out.entry(code).or_insert(0) += c.count;
        }
        out
    }

    /// Jobs by type and status.
    pub fn by_type(&self) -> BTreeMap<String, BTreeMap<String, i64>> {
        let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for c in &self.counts {
            *out.entry(c.job_type.clone())
                .or_default()
                .entry(c.status.clone())
                .or_insert(0) += c.count;
        }
        out
    }

    /// Durations of successful jobs, overall and by type.
    pub fn durations(&self) -> (Option<DurationStats>, BTreeMap<String, DurationStats>) {
        let all = duration_stats(self.durations.iter().map(|(_, d)| *d).collect());
        let mut grouped: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (kind, d) in &self.durations {
            grouped.entry(kind.clone()).or_default().push(*d);
        }
        let by_type = grouped
            .into_iter()
            .filter_map(|(k, v)| duration_stats(v).map(|s| (k, s)))
            .collect();
        (all, by_type)
    }

    /// Seconds since each configured provider's last successful unit (`None`: never).
    pub fn since_last_success(&self, providers: &[String]) -> BTreeMap<String, Option<i64>> {
        providers
            .iter()
            .map(|p| {
                let at = self.last_success.iter().find(|(n, _)| n == p).map(|x| x.1);
                (p.clone(), at.map(|at| (self.now - at).max(0) / 1000))
            })
            .collect()
    }

    /// The figures the alert rules read.
    pub fn figures(&self, queue_alarms: Vec<String>) -> Figures {
        let mut failed_by_type = BTreeMap::new();
        for (kind, statuses) in self.by_type() {
            if let Some(n) = statuses.get("failed") {
                failed_by_type.insert(kind, *n);
            }
        }
        let last = self.last_success.iter().map(|x| x.1).max();
        Figures {
            success: self.total("success"),
            failed: self.total("failed"),
            failed_by_type,
            failed_by_code: self.failed_by_code(),
            stuck_units: self.stuck.len() as i64,
            acceptance_failures: self.acceptance_failures,
            minutes_since_success: last.map(|at| (self.now - at).max(0) / 60_000),
            queued_units: self.queued_units,
            queue_alarms,
        }
    }

    /// The snapshot as `GET /v1/admin/job-health` answers it.
    pub fn to_json(&self, hours: i64, providers: &[String]) -> Value {
        let mut by_status = Map::new();
        for status in ["processing", "success", "failed"] {
            by_status.insert(status.into(), self.total(status).into());
        }
        let (success, failed) = (self.total("success"), self.total("failed"));
        let (all, by_type) = self.durations();
        let stats =
            |s: &DurationStats| json!({"count": s.count, "p50_ms": s.p50_ms, "p95_ms": s.p95_ms});
        let failed_jobs: Vec<Value> = self
            .failed
            .iter()
            .map(|j| {
                json!({"id": j.id, "type": j.job_type, "user_id": j.user_id,
                       "user_email": j.user_email, "error_code": j.error_code,
                       "error_message": j.error_message, "created_at": rfc3339(j.created_at),
                       "finished_at": j.finished_at.map(rfc3339)})
            })
            .collect();
        let stuck: Vec<Value> = self
            .stuck
            .iter()
            .map(|u| {
                json!({"task_id": u.task_id, "job_id": u.job_id, "user_email": u.user_email,
                       "provider": u.provider, "started_at": rfc3339(u.started_at),
                       "running_seconds": (self.now - u.started_at).max(0) / 1000,
                       "lease_until": u.lease_until.map(rfc3339),
                       "past_lease": u.lease_until.is_some_and(|l| l < self.now)})
            })
            .collect();
        json!({
            "hours": hours,
            "window_start": rfc3339(self.since),
            "window_end": rfc3339(self.now),
            "total": self.counts.iter().map(|c| c.count).sum::<i64>(),
            "success_rate": success_rate(success, failed),
            "by_status": by_status,
            "by_type": self.by_type(),
            "by_error_code": self.failed_by_code(),
            "duration": {
                "all": all.as_ref().map(stats),
                "by_type": by_type.iter().map(|(k, s)| (k.clone(), stats(s))).collect::<Map<_, _>>(),
            },
            "failed_jobs": failed_jobs,
            "stuck_units": stuck,
            "acceptance_failures": self.acceptance_failures,
            "queued_units": self.queued_units,
            "seconds_since_last_success": self.since_last_success(providers),
        })
    }
}

/// The configured providers' names, sorted.
pub fn provider_names(state: &State) -> Vec<String> {
    let mut names: Vec<String> = state.providers.keys().cloned().collect();
    names.sort();
    names
}

/// Refreshes the job-health gauges from the alert window.
pub async fn update_metrics(state: &State) -> Result<(), String> {
    let minutes = state.config.alerts.window_minutes as i64;
    let snap = snapshot(state, minutes).await?;
    let m = &state.metrics.health;
    let (success, failed) = (snap.total("success"), snap.total("failed"));
    m.success_ratio
        .set(success_rate(success, failed).map_or(f64::NAN, |r| r / 100.0));
    m.window_jobs.reset();
    for (kind, statuses) in snap.by_type() {
        for (status, n) in statuses {
            m.window_jobs.with_label_values(&[&kind, &status]).set(n);
        }
    }
    m.failures_by_code.reset();
    for (code, n) in snap.failed_by_code() {
        m.failures_by_code.with_label_values(&[&code]).set(n);
    }
    m.duration.reset();
    let (_, by_type) = snap.durations();
    for (kind, s) in by_type {
        for (q, v) in [("p50", s.p50_ms), ("p95", s.p95_ms)] {
            m.duration
                .with_label_values(&[&kind, q])
                .set(v as f64 / 1000.0);
        }
    }
    m.stuck_units.set(snap.stuck.len() as i64);
    m.acceptance_failures.set(snap.acceptance_failures);
    m.since_last_success.reset();
    for (provider, secs) in snap.since_last_success(&provider_names(state)) {
        if let Some(secs) = secs {
            m.since_last_success
                .with_label_values(&[&provider])
                .set(secs as f64);
        }
    }
    Ok(())
}

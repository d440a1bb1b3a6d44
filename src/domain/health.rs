//! Job-health figures and the alert rules evaluated over them: plain functions over
//! numbers read from the database.

use std::collections::BTreeMap;

use serde::Serialize;

/// Durations of finished jobs: how many, the median and the 95th percentile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DurationStats {
    pub count: usize,
    pub p50_ms: i64,
    pub p95_ms: i64,
}

/// The nearest-rank percentile `q` (0..=1) of `sorted` (ascending, not empty).
pub fn percentile(sorted: &[i64], q: f64) -> i64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median and p95 of `values`; `None` when there are none.
pub fn duration_stats(mut values: Vec<i64>) -> Option<DurationStats> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(DurationStats {
        count: values.len(),
        p50_ms: percentile(&values, 0.5),
        p95_ms: percentile(&values, 0.95),
    })
}

/// Successes among finished jobs, in percent with one decimal; `None` when none finished.
pub fn success_rate(success: i64, failed: i64) -> Option<f64> {
    let finished = success + failed;
    (finished > 0).then(|| (success as f64 * 1000.0 / finished as f64).round() / 10.0)
}

/// The thresholds of the alert rules (`[alerts]`; the defaults are the reference's).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// `success_rate`: fires below this percent …
    pub min_success_rate: f64,
    /// … once this many jobs finished in the window.
    pub min_samples: i64,
    /// `type_failures`: this many failed jobs of one type.
    pub type_failures: i64,
    /// `stuck_units`: this many units stuck.
    pub stuck_units: i64,
    /// `error_code_spike`: one error code this many times.
    pub error_code_spike: i64,
    /// `acceptance_failures`: this many job submissions failed.
    pub acceptance_failures: i64,
    /// `generation_drought`: no success for this many minutes while work is queued.
    pub drought_minutes: i64,
}

/// What the rules look at (over the alert window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub success: i64,
    pub failed: i64,
    pub failed_by_type: BTreeMap<String, i64>,
    pub failed_by_code: BTreeMap<String, i64>,
    pub stuck_units: i64,
    pub acceptance_failures: i64,
    /// Minutes since any unit last succeeded (`None`: never).
    pub minutes_since_success: Option<i64>,
    /// Units waiting in the queue now.
    pub queued_units: i64,
    /// The `/readyz` queue alarms raised now.
    pub queue_alarms: Vec<String>,
}

/// A rule that fires: its name and the sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub rule: &'static str,
    pub summary: String,
}

/// Every rule's name, in evaluation order.
pub const RULES: [&str; 7] = [
    "success_rate",
    "type_failures",
    "stuck_units",
    "error_code_spike",
    "acceptance_failures",
    "generation_drought",
    "queue_alarm",
];

/// The rules that fire for `f` (each at most once).
pub fn evaluate(f: &Figures, t: &Thresholds) -> Vec<Firing> {
    let mut out = Vec::new();
    let mut fire = |rule, summary: String| out.push(Firing { rule, summary });
    let finished = f.success + f.failed;
    if let Some(rate) = success_rate(f.success, f.failed) {
        if finished >= t.min_samples && rate < t.min_success_rate {
            fire(
                "success_rate",
                format!(
                    "success rate {rate:.1} % ({} of {finished} jobs) is below {} %",
                    f.success, t.min_success_rate
                ),
            );
        }
    }
    if let Some((kind, n)) = top(&f.failed_by_type).filter(|(_, n)| *n >= t.type_failures) {
        fire("type_failures", format!("{n} {kind} jobs failed"));
    }
    if f.stuck_units >= t.stuck_units {
        fire(
            "stuck_units",
            format!("{} units are stuck running", f.stuck_units),
        );
    }
    if let Some((code, n)) = top(&f.failed_by_code).filter(|(_, n)| *n >= t.error_code_spike) {
        fire(
            "error_code_spike",
            format!("error code {code} seen {n} times"),
        );
    }
    if f.acceptance_failures >= t.acceptance_failures {
        fire(
            "acceptance_failures",
            format!("{} job submissions failed", f.acceptance_failures),
        );
    }
    let dry = f
        .minutes_since_success
        .is_none_or(|m| m >= t.drought_minutes);
    if f.queued_units > 0 && dry {
        let since = match f.minutes_since_success {
            Some(m) => format!("for {m} min"),
            None => "ever".into(),
        };
        fire(
            "generation_drought",
            format!(
                "no unit succeeded {since} while {} units are queued",
                f.queued_units
            ),
        );
    }
    if !f.queue_alarms.is_empty() {
        fire("queue_alarm", f.queue_alarms.join("; "));
    }
    out
}

/// The largest count (ties: the first name).
fn top(counts: &BTreeMap<String, i64>) -> Option<(&str, i64)> {
    counts
        .iter()
        .fold(None, |best: Option<(&str, i64)>, (k, v)| match best {
            Some((_, n)) if n >= *v => best,
            _ => Some((k.as_str(), *v)),
        })
}

/// What to do about one rule after an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to say.
    Quiet,
    /// Open an incident; notify unless the rule spoke within the cooldown.
    Open { notify: bool },
    /// The open incident still fires; remind when the cooldown has passed.
    Continue { remind: bool },
    /// The open incident no longer fires: resolve it (and say so if it was told).
    Resolve,
}

/// The step for a rule that `fires` (or not), given its open incident's last
/// notification (`open`: `Some(last_notified_at)`, 0 when never told) and when the rule
/// last notified at all.
pub fn step(
    fires: bool,
    open: Option<i64>,
    last_notified: Option<i64>,
    now: i64,
    cooldown_ms: i64,
) -> Step {
    let cooled = |at: Option<i64>| at.is_none_or(|at| now - at >= cooldown_ms);
    match (fires, open) {
        (false, None) => Step::Quiet,
        (false, Some(_)) => Step::Resolve,
        (true, None) => Step::Open {
            notify: cooled(last_notified),
        },
        (true, Some(told)) => Step::Continue {
            remind: cooled(Some(told).filter(|t| *t > 0).or(last_notified)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Thresholds {
        Thresholds {
            min_success_rate: 75.0,
            min_samples: 20,
            type_failures: 10,
            stuck_units: 3,
            error_code_spike: 8,
            acceptance_failures: 3,
            drought_minutes: 30,
        }
    }

    fn rules(f: &Figures) -> Vec<&'static str> {
        evaluate(f, &defaults()).iter().map(|x| x.rule).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = duration_stats((1..=100).collect()).unwrap();
        assert_eq!((s.count, s.p50_ms, s.p95_ms), (100, 50, 95));
        let one = duration_stats(vec![7]).unwrap();
        assert_eq!((one.p50_ms, one.p95_ms), (7, 7));
        assert_eq!(duration_stats(vec![]), None);
        assert_eq!(success_rate(3, 1), Some(75.0));
        assert_eq!(success_rate(0, 0), None);
        assert_eq!(success_rate(2, 1), Some(66.7));
    }

    #[test]
    fn the_success_rate_needs_enough_samples() {
        let mut f = Figures {
            success: 14,
            failed: 5,
            ..Figures::default()
        };
        assert!(rules(&f).is_empty(), "19 samples are too few");
        f.success = 15;
        assert!(rules(&f).is_empty(), "75 % is not below 75 %");
        f.failed = 6;
        assert_eq!(rules(&f), ["success_rate"]);
    }

    #[test]
    fn counts_fire_at_their_thresholds() {
        let mut f = Figures::default();
        f.failed_by_type.insert("IMAGE_GEN".into(), 9);
        f.failed_by_code.insert("UPSTREAM_ERROR".into(), 7);
        f.stuck_units = 2;
        f.acceptance_failures = 2;
        assert!(rules(&f).is_empty());
        f.failed_by_type.insert("IMAGE_GEN".into(), 10);
        f.failed_by_code.insert("UPSTREAM_ERROR".into(), 8);
        f.stuck_units = 3;
        f.acceptance_failures = 3;
        assert_eq!(
            rules(&f),
            [
                "type_failures",
                "stuck_units",
                "error_code_spike",
                "acceptance_failures"
            ]
        );
    }

    #[test]
    fn a_drought_needs_queued_work() {
        let mut f = Figures {
            minutes_since_success: Some(45),
            ..Figures::default()
        };
        assert!(rules(&f).is_empty());
        f.queued_units = 2;
        assert_eq!(rules(&f), ["generation_drought"]);
        f.minutes_since_success = Some(29);
        assert!(rules(&f).is_empty());
        f.minutes_since_success = None;
        assert_eq!(rules(&f), ["generation_drought"]);
    }

    #[test]
    fn cooldown_and_resolve() {
        let cool = 60_000;
        assert_eq!(step(false, None, None, 0, cool), Step::Quiet);
        assert_eq!(step(true, None, None, 0, cool), Step::Open { notify: true });
        assert_eq!(
            step(true, None, Some(10_000), 50_000, cool),
            Step::Open { notify: false },
            "the rule spoke 40 s ago"
        );
        assert_eq!(
            step(true, Some(1_000), Some(1_000), 30_000, cool),
            Step::Continue { remind: false }
        );
        assert_eq!(
            step(true, Some(1_000), Some(1_000), 61_000, cool),
            Step::Continue { remind: true }
        );
        assert_eq!(step(false, Some(1_000), None, 2_000, cool), Step::Resolve);
    }
}

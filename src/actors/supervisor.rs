//! `JobSupervisor`: claims due units, hands them to the providers' generators, records
//! each outcome through the ledger, retries with backoff, sweeps expired leases and
//! recovers what a previous process left running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::broadcast;

use super::generator::GeneratorMsg;
use super::ledger::LedgerHandle;
use crate::db::jobs::{self, DueUnit};
use crate::db::Db;
use crate::domain::jobs::{JobType, RetryPolicy, UnitOutcome};
use crate::domain::time::now_ms;
use crate::domain::ErrorCode;
use crate::ops::alarm::QueueHealth;
use crate::ops::metrics::Metrics;
use crate::providers::UnitRequest;

/// How often expired leases and due retries are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Messages of the supervisor.
pub enum SupervisorMsg {
    /// New work may be due (a job was accepted, a unit ended, a retry is due).
    Wake,
    /// Claim and dispatch now (coalesces many `Wake`s into one pass).
    Dispatch,
    /// Periodic: requeue expired leases, then dispatch.
    Sweep,
    /// Shutting down: start no more units (running ones still report).
    Drain,
    /// A generator finished an attempt.
    UnitFinished {
        provider: String,
        task_id: String,
        attempt: i64,
        outcome: UnitOutcome,
    },
}

/// A provider as the supervisor sees it.
pub struct ProviderSlot {
    pub generator: ActorRef<GeneratorMsg>,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// What the supervisor needs.
pub struct SupervisorArgs {
    pub db: Db,
    pub ledger: LedgerHandle,
    pub providers: HashMap<String, ProviderSlot>,
    pub policy: RetryPolicy,
    /// Job ids are published here after every change (SSE watchers listen).
    pub events: broadcast::Sender<String>,
    /// Counts captures and releases.
    pub metrics: Arc<Metrics>,
    /// Marked whenever a unit starts or finishes (the stall alarm reads it).
    pub health: Arc<QueueHealth>,
}

/// The actor.
pub struct JobSupervisor;

/// Its state.
pub struct SupervisorState {
    args: SupervisorArgs,
    in_flight: HashMap<String, usize>,
    dispatch_scheduled: bool,
    /// The user served last per provider: the next dispatch starts after them.
    last_user: HashMap<String, String>,
    /// Set on shutdown: nothing new is dispatched.
    draining: bool,
}

impl Actor for JobSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let state = SupervisorState {
            in_flight: args.providers.keys().map(|k| (k.clone(), 0)).collect(),
            args,
            dispatch_scheduled: false,
            last_user: HashMap::new(),
            draining: false,
        };
        // Whatever is `running` now was left by a process that died: recover it.
        recover_expired(&state.args, i64::MAX, "interrupted by a restart").await;
        fail_unroutable(&state.args).await;
        myself.send_interval(SWEEP_EVERY, || SupervisorMsg::Sweep);
        myself.send_message(SupervisorMsg::Wake)?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Wake => {
                if !state.dispatch_scheduled {
                    state.dispatch_scheduled = true;
                    myself.send_message(SupervisorMsg::Dispatch)?;
                }
            }
            SupervisorMsg::Dispatch => {
                state.dispatch_scheduled = false;
                dispatch(&myself, state).await;
            }
            SupervisorMsg::Sweep => {
                recover_expired(&state.args, now_ms(), "lease expired").await;
                dispatch(&myself, state).await;
            }
            SupervisorMsg::Drain => state.draining = true,
            SupervisorMsg::UnitFinished {
                provider,
                task_id,
                attempt,
                outcome,
            } => {
                if let Some(n) = state.in_flight.get_mut(&provider) {
                    *n = n.saturating_sub(1);
                }
                state.args.health.progress();
                let metrics = state.args.metrics.clone();
                let ledger = state.args.ledger.clone();
                let events = state.args.events.clone();
                let policy = state.args.policy;
                let me = myself.clone();
                tokio::spawn(async move {
                    match ledger
                        .settle_attempt(task_id.clone(), attempt, outcome, policy)
                        .await
                    {
                        Ok(settled) => {
                            if let Some(kind) = settled.movement {
                                metrics.ledger_movement(kind);
                            }
                            if settled.applied {
                                let _ = events.send(settled.job_id);
                            }
                            if let Some(at) = settled.retry_at {
                                let wait = (at - now_ms()).max(0) as u64;
                                me.send_after(Duration::from_millis(wait), || SupervisorMsg::Wake);
                            }
                        }
                        Err(err) => {
                            tracing::error!(%task_id, error = %err, cause = ?err.cause, "could not record a unit's outcome; its lease will expire and it will be retried");
                        }
                    }
                    let _ = me.send_message(SupervisorMsg::Wake);
                });
                myself.send_message(SupervisorMsg::Wake)?;
            }
        }
        Ok(())
    }
}

/// Claims as many due units as each provider has free slots and dispatches them.
async fn dispatch(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
    if state.draining {
        return;
    }
    for (name, slot) in &state.args.providers {
        let busy = state.in_flight.get(name).copied().unwrap_or(0);
        let free = slot.concurrency.saturating_sub(busy);
        if free == 0 {
            continue;
        }
        let lease_ms = slot.timeout.as_millis() as i64 + 30_000;
        let provider = name.clone();
        let db = state.args.db.clone();
        let after = state.last_user.get(name).cloned();
        // Choose on a read connection (no write lock held while ranking), then claim
        // in one short write transaction; a unit cancelled in between is skipped.
        let claimed = tokio::task::spawn_blocking(move || {
            let due = db.with_conn(|conn| {
                jobs::due_tasks(conn, &provider, now_ms(), free, after.as_deref())
            })?;
            if due.is_empty() {
                return Ok(due);
            }
            db.transaction(|conn| {
                let now = now_ms();
                let mut claimed = Vec::with_capacity(due.len());
                for unit in due {
                    if jobs::claim_task(conn, &unit.task.id, now + lease_ms, now)? {
                        jobs::touch_job(conn, &unit.task.job_id, now)?;
                        claimed.push(unit);
                    }
                }
                Ok::<_, crate::db::DbError>(claimed)
            })
        })
        .await;
        let claimed = match claimed {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(err)) => {
                tracing::error!(provider = %name, error = %err, code = %ErrorCode::TASK_CLAIM_FAILED, "claiming units failed");
                continue;
            }
            Err(err) => {
                tracing::error!(provider = %name, error = %err, "claim task panicked");
                continue;
            }
        };
        if let Some(last) = claimed.last() {
            state
                .last_user
                .insert(name.clone(), last.task.user_id.clone());
            state.args.health.progress();
        }
        for due in claimed {
            *state.in_flight.entry(name.clone()).or_insert(0) += 1;
            let _ = state.args.events.send(due.task.job_id.clone());
            let unit = unit_request(due);
            if let Err(err) = slot.generator.send_message(GeneratorMsg::Run {
                unit,
                report_to: myself.clone(),
            }) {
                tracing::error!(provider = %name, error = %err, "generator unavailable; the unit's lease will expire");
            }
        }
    }
}

fn unit_request(due: DueUnit) -> UnitRequest {
    let DueUnit {
        task,
        model,
        job_type,
    } = due;
    UnitRequest {
        job_type: JobType::parse(&job_type).unwrap_or(JobType::ImageGen),
        provider: task.provider,
        task_id: task.id,
        job_id: task.job_id,
        unit_index: task.unit_index,
        attempt: task.attempts + 1,
        model: task.input["upstream_model"]
            .as_str()
            .map(str::to_string)
            .unwrap_or(model),
        input: task.input,
    }
}

/// Ends the queued units of providers this server does not run (a provider whose key
/// was removed before a restart): they fail `MODEL_UNAVAILABLE` and their holds go back,
/// instead of waiting forever with credits held.
async fn fail_unroutable(args: &SupervisorArgs) {
    let known: Vec<String> = args.providers.keys().cloned().collect();
    loop {
        match args.ledger.fail_unroutable(known.clone()).await {
            Ok(jobs) if jobs.is_empty() => return,
            Ok(jobs) => {
                tracing::warn!(
                    jobs = jobs.len(),
                    "failed queued units of a provider that is not configured (MODEL_UNAVAILABLE)"
                );
                for job_id in jobs {
                    let _ = args.events.send(job_id);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "could not end the units of unconfigured providers");
                return;
            }
        }
    }
}

/// Settles every running unit whose lease ended before `now` as retryable
/// `TASK_STALE_NO_HEARTBEAT`.
async fn recover_expired(args: &SupervisorArgs, now: i64, why: &str) {
    let db = args.db.clone();
    let expired = match db.read(move |conn| jobs::expired_leases(conn, now)).await {
        Ok(tasks) => tasks,
        Err(err) => {
            tracing::error!(error = %err, "could not look for expired leases");
            return;
        }
    };
    for task in expired {
        tracing::warn!(task_id = %task.id, attempt = task.attempts, reason = why, "recovering a unit");
        // The reference's code for a task whose worker stopped heartbeating
        // (20260311100000_preserve_stale_task_reason.sql L30); retried while attempts last.
        let outcome = UnitOutcome::Retryable {
            code: ErrorCode::TASK_STALE_NO_HEARTBEAT,
            message: format!("TASK_STALE_NO_HEARTBEAT: the unit's lease expired ({why})"),
            retry_after_ms: None,
        };
        match args
            .ledger
            .settle_attempt(task.id.clone(), task.attempts, outcome, args.policy)
            .await
        {
            Ok(settled) if settled.applied => {
                let _ = args.events.send(settled.job_id);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(task_id = %task.id, error = %err, "could not recover a unit")
            }
        }
    }
}

//! `GeneratorActor`: one per provider. Runs units on blocking threads, at most
//! `concurrency` at once, each under a timeout, and reports every outcome to the
//! supervisor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Semaphore;

use super::supervisor::SupervisorMsg;
use crate::domain::jobs::UnitOutcome;
use crate::domain::ErrorCode;
use crate::generation::pipeline::{self, PipelineSettings};
use crate::providers::{Provider, UnitRequest};

/// Messages of a generator.
pub enum GeneratorMsg {
    /// Run one unit and tell `report_to` how it went.
    Run {
        unit: UnitRequest,
        report_to: ActorRef<SupervisorMsg>,
    },
}

/// How a generator is set up.
pub struct GeneratorArgs {
    pub provider: Arc<dyn Provider>,
    pub concurrency: usize,
    pub timeout: Duration,
    pub settings: PipelineSettings,
}

/// The actor.
pub struct GeneratorActor;

/// Its state.
pub struct GeneratorState {
    provider: Arc<dyn Provider>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    settings: PipelineSettings,
}

impl Actor for GeneratorActor {
    type Msg = GeneratorMsg;
    type State = GeneratorState;
    type Arguments = GeneratorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: GeneratorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(GeneratorState {
            provider: args.provider,
            permits: Arc::new(Semaphore::new(args.concurrency.max(1))),
            timeout: args.timeout,
            settings: args.settings,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let GeneratorMsg::Run { unit, report_to } = message;
        let provider = state.provider.clone();
        let permits = state.permits.clone();
        let (timeout, settings) = (state.timeout, state.settings.clone());
        tokio::spawn(async move {
            let outcome =
                run_with_timeout(provider, unit.clone(), timeout, settings, permits).await;
            let _ = report_to.send_message(SupervisorMsg::UnitFinished {
                provider: unit.provider.clone(),
                task_id: unit.task_id,
                attempt: unit.attempt,
                outcome,
            });
        });
        Ok(())
    }
}

/// Waits for a slot and runs the unit, all within `timeout` from the dispatch: the
/// supervisor's lease (`timeout` + a margin, taken at the claim) always outlasts it, so
/// a unit waiting for a slot behind an abandoned call is never sent twice.
async fn run_with_timeout(
    provider: Arc<dyn Provider>,
    unit: UnitRequest,
    timeout: Duration,
    settings: PipelineSettings,
    permits: Arc<Semaphore>,
) -> UnitOutcome {
    let name = provider.name().to_string();
    let label = name.clone();
    let started = Arc::new(AtomicBool::new(false));
    let started_in = started.clone();
    let work = async move {
        let Ok(permit) = permits.acquire_owned().await else {
            return UnitOutcome::Retryable {
                code: ErrorCode::UPSTREAM_ERROR,
                message: "generator is shutting down".into(),
                retry_after_ms: None,
            };
        };
        started_in.store(true, Ordering::Relaxed);
        let call = tokio::task::spawn_blocking(move || {
            let outcome = pipeline::run_unit(provider.as_ref(), &unit, settings);
            drop(permit);
            outcome
        });
        match call.await {
            Ok(outcome) => outcome,
            Err(join) => {
                tracing::error!(provider = %label, error = %join, "provider call panicked");
                UnitOutcome::Permanent {
                    code: ErrorCode::UPSTREAM_ERROR,
                    message: "the provider failed unexpectedly".into(),
                    details: None,
                }
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let message = if started.load(Ordering::Relaxed) {
                format!("{name} did not answer within {} s", timeout.as_secs())
            } else {
                // Every slot was still taken by calls that had run out of time.
                format!("no free {name} slot within {} s", timeout.as_secs())
            };
            UnitOutcome::Retryable {
                code: ErrorCode::UPSTREAM_TIMEOUT,
                message,
                retry_after_ms: None,
            }
        }
    }
}

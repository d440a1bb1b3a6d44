//! Upstream providers. Each does one unit of work at a time on a blocking thread; the
//! `GeneratorActor` in front of it adds the concurrency limit and the timeout.

pub mod local;

use serde_json::Value;

use crate::domain::jobs::{JobType, UnitOutcome};

/// One unit of work handed to a provider.
#[derive(Debug, Clone)]
pub struct UnitRequest {
    pub task_id: String,
    pub job_id: String,
    pub unit_index: i64,
    pub attempt: i64,
    pub job_type: JobType,
    /// The provider's name (`local`, `openrouter`, …).
    pub provider: String,
    /// The upstream model id (from the catalog).
    pub model: String,
    /// The unit's own input (prompt, image references, ratio, size …).
    pub input: Value,
}

/// A provider of generation work. `run_unit` blocks; it is never called on the async
/// runtime's worker threads.
pub trait Provider: Send + Sync + 'static {
    /// The provider's name in the catalog (`local`, `openrouter`, …).
    fn name(&self) -> &str;
    /// Does the unit and says how it went.
    fn run_unit(&self, unit: &UnitRequest) -> UnitOutcome;
}

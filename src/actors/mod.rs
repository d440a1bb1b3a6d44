//! Ractor actors, each owning one responsibility.

pub mod generator;
pub mod ledger;
pub mod ledger_jobs;
pub mod supervisor;

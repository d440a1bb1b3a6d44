//! Ractor actors, each owning one responsibility.

pub mod ledger;

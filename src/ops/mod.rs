//! Running Atelier: Prometheus metrics, the queue-stall and acceptance alarms, the
//! money audit, backups.

pub mod alarm;
pub mod audit;
pub mod backup;
pub mod metrics;

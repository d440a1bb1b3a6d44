//! Running Atelier: Prometheus metrics, the queue-stall and acceptance alarms, backups.

pub mod alarm;
pub mod backup;
pub mod metrics;

//! Running Atelier: Prometheus metrics, the queue-stall and acceptance alarms, the
//! money audit, backups.

pub mod alarm;
pub mod alerts_config;
pub mod audit;
pub mod backup;
pub mod health;
pub mod health_metrics;
pub mod maintenance;
pub mod metrics;

//! Ractor actors, each owning one responsibility.

pub mod accounts;
pub mod alipay;
pub mod alipay_apply;
pub mod billing;
pub mod billing_apply;
pub mod changes;
pub mod generator;
pub mod growth;
pub mod ledger;
pub mod ledger_jobs;
pub mod ledger_retry;
pub mod mailer;
pub mod pricing;
pub mod supervisor;

//! Stripe: webhook signatures, the API client, event payload reading, and the
//! simulated Stripe used when no keys are configured.

pub mod client;
pub mod event;
pub mod forms;
pub mod signature;
pub mod simulated;

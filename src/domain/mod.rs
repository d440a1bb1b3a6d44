//! Pure product rules: no I/O, no framework types. The easiest place to read and test
//! what Atelier does.

pub mod billing;
pub mod credits;
pub mod error;
pub mod health;
pub mod hex;
pub mod jobs;
pub mod otp;
pub mod phoenix;
pub mod postgrest;
pub mod results;
pub mod time;

pub use error::{ApiError, ErrorCode};

//! Generation: request types for each endpoint, the rules they follow, and the unit
//! pipeline that turns a queued unit into provider calls.

pub mod blueprint;
pub mod fields;
pub mod pipeline;
pub mod prompt_objects;
pub mod prompts;
pub mod requests;
pub mod rules;

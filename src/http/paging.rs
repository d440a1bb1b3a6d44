//! Cursor pages of list endpoints: `limit` (1..=100, default 20) and `before`.

use std::collections::HashMap;

use crate::domain::ApiError;

/// `limit` from the query: 1..=100, default 20.
pub fn page_limit(query: &HashMap<String, String>) -> Result<u32, ApiError> {
    match query.get("limit") {
        None => Ok(20),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::bad_field("limit", "limit must be an integer from 1 to 100")),
    }
}

/// The `next` cursor of a page: the last id when the page is full.
pub fn next_cursor(page_len: usize, limit: u32, last_id: Option<&String>) -> Option<String> {
    (page_len as u32 == limit)
        .then(|| last_id.cloned())
        .flatten()
}

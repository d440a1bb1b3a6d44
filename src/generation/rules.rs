//! Generation rules as plain functions: unit counts, clamps, image reference checks.

use base64::Engine;
use serde_json::{json, Value};

use crate::domain::{ApiError, ErrorCode};

/// Most units of one image request.
pub const MAX_IMAGE_COUNT: i64 = 9;
/// Most reference images in batch mode.
pub const MAX_BATCH_REFERENCES: usize = 12;
/// Most product images in single style-replicate mode: the same cap as batch mode's
/// references (the reference product sets none; 12 × 9 images is already the largest
/// job any of its studios submits, and each product is a separate upload).
pub const MAX_SINGLE_PRODUCTS: usize = 12;
/// Most units one job may have (12 products or references × 9 images); checked before
/// any unit is built.
pub const MAX_UNITS_PER_JOB: usize = 108;
/// Most product images in refinement mode.
pub const MAX_REFINEMENT_IMAGES: usize = 50;
/// Most prompts one prompt-writing call produces.
pub const MAX_PROMPT_COUNT: i64 = 15;

/// A count clamped into `1..=max` (absent: 1).
pub fn clamp_count(value: Option<i64>, max: i64) -> u32 {
    value.unwrap_or(1).clamp(1, max) as u32
}

/// `groupCount`: an integer 1..=9, else `BATCH_INPUT_INVALID` (a string, a fraction,
/// 0 and 10 included).
pub fn group_count(value: Option<&Value>) -> Result<u32, ApiError> {
    let invalid = || {
        ApiError::with_message(
            ErrorCode::BATCH_INPUT_INVALID,
            "groupCount must be an integer from 1 to 9",
        )
    };
    match value {
        None | Some(Value::Null) => Ok(1),
        Some(v) => v
            .as_i64()
            .filter(|n| (1..=MAX_IMAGE_COUNT).contains(n))
            .map(|n| n as u32)
            .ok_or_else(invalid),
    }
}

/// Whether a refinement image URL names a JPEG or PNG: its path, with the query and
/// fragment stripped, ends in `.jpg`, `.jpeg` or `.png` (any case).
pub fn has_refinement_format(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let lower = path.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Checks what can be checked of an image reference before a job is accepted: a data
/// URI must be a base64 PNG, JPEG or WebP whose decoded size is within `max_bytes`.
/// URLs and storage references are read when the unit runs.
pub fn check_image_reference(field: &str, reference: &str, max_bytes: u64) -> Result<(), ApiError> {
    let Some(data) = reference.strip_prefix("data:") else {
        return Ok(());
    };
    let (media, b64) = data
        .split_once(";base64,")
        .ok_or_else(|| ApiError::bad_field(field, format!("{field} is not a base64 data URI")))?;
    if !["image/png", "image/jpeg", "image/webp"].contains(&media) {
        return Err(ApiError::bad_field(
            field,
            format!("{field} must be a png, jpeg or webp image"),
        ));
    }
    let decoded = (b64.trim_end_matches('=').len() as u64 * 3) / 4;
    if decoded > max_bytes {
        return Err(ApiError::new(ErrorCode::IMAGE_INPUT_TOO_LARGE)
            .details(json!({"field": field, "bytes": decoded, "limit": max_bytes})));
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ApiError::bad_field(field, format!("{field} is not valid base64")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_clamp_into_range() {
        assert_eq!(clamp_count(None, 9), 1);
        assert_eq!(clamp_count(Some(0), 9), 1);
        assert_eq!(clamp_count(Some(12), 9), 9);
        assert_eq!(clamp_count(Some(20), MAX_PROMPT_COUNT), 15);
    }

    #[test]
    fn group_count_is_strict() {
        for ok in [json!(1), json!(9)] {
            assert!(group_count(Some(&ok)).is_ok());
        }
        for bad in [json!(0), json!(10), json!("3"), json!(2.5), json!(true)] {
            assert_eq!(
                group_count(Some(&bad)).unwrap_err().code,
                ErrorCode::BATCH_INPUT_INVALID,
                "{bad}"
            );
        }
    }

    #[test]
    fn refinement_formats_ignore_query_fragment_and_case() {
        assert!(has_refinement_format("https://x/a/x.PNG?v=2#a"));
        assert!(has_refinement_format(
            "/storage/v1/object/public/uploads/a.jpeg"
        ));
        assert!(!has_refinement_format("https://x/a.webp"));
        assert!(!has_refinement_format("https://x/a.png.webp?x=.png"));
    }

    #[test]
    fn data_uris_are_checked_for_type_and_size() {
        let small = format!("data:image/png;base64,{}", "A".repeat(8));
        assert!(check_image_reference("productImage", &small, 100).is_ok());
        let big = format!("data:image/png;base64,{}", "A".repeat(400));
        assert_eq!(
            check_image_reference("productImage", &big, 100)
                .unwrap_err()
                .code,
            ErrorCode::IMAGE_INPUT_TOO_LARGE
        );
        assert!(check_image_reference("productImage", "data:text/plain;base64,AAAA", 100).is_err());
        assert!(check_image_reference("productImage", "https://x/a.png", 1).is_ok());
    }
}

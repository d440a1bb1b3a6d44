//! Images going to and coming from providers: input references (data URIs, stored
//! objects, remote URLs through the SSRF guard) read into bytes with their size checked,
//! and output images decoded, measured and stored.

use std::io::Cursor;
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::{ProviderError, UnitRequest};
use crate::domain::jobs::UnitOutcome;
use crate::domain::results::{delivery, size_json, SizeStatus};
use crate::domain::ErrorCode;
use crate::fetch::{FetchError, Fetcher};
use crate::storage::{parse_reference, sniff_image, Storage, StorageError};

/// Largest decoded input image side, to keep a decompression bomb out.
pub const MAX_INPUT_SIDE: u32 = 8192;
/// Largest decoded input image area (40 megapixels).
pub const MAX_INPUT_PIXELS: u64 = 40_000_000;

/// An input image read into memory.
#[derive(Debug, Clone)]
pub struct InputImage {
    pub bytes: Vec<u8>,
    /// `image/png`, `image/jpeg` or `image/webp`.
    pub mime: &'static str,
}

impl InputImage {
    /// The image as a `data:` URI (OpenRouter, Ark).
    pub fn data_uri(&self) -> String {
        format!("data:{};base64,{}", self.mime, self.base64())
    }

    /// The bytes as standard padded base64 (Gemini `inlineData.data`).
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }
}

/// Reads input images for providers: data URIs without any I/O, stored objects from the
/// configured storage only (its directory, or the operator's S3 endpoint — never a host
/// named in the reference), and http(s) URLs through the SSRF-safe fetcher.
#[derive(Clone)]
pub struct ImageSource {
    storage: Arc<dyn Storage>,
    fetcher: Fetcher,
}

impl ImageSource {
    /// Reads from `storage`, and from the web through `fetcher`.
    pub fn new(storage: Arc<dyn Storage>, fetcher: Fetcher) -> Self {
        ImageSource { storage, fetcher }
    }

    /// Where outputs go.
    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// Reads one reference, checks it is a png/jpeg/webp image within the size limits.
    pub fn load(&self, reference: &str) -> Result<InputImage, ProviderError> {
        let missing = |reason: &str, message: String| {
            ProviderError::permanent(
                ErrorCode::IMAGE_INPUT_SOURCE_MISSING,
                format!("the input image could not be read: {message}"),
            )
            .with_reason(reason)
        };
        // The reference's IMAGE_INPUT_INVALID_CONTENT_TYPE (input-image-validation.ts L101).
        let invalid_type = |message: String| {
            ProviderError::permanent(
                ErrorCode::IMAGE_INPUT_INVALID_CONTENT_TYPE,
                format!("the input image could not be read: {message}"),
            )
            .with_reason("not_an_image")
        };
        let bytes = if let Some(data) = reference.strip_prefix("data:") {
            let (_, b64) = data
                .split_once(";base64,")
                .ok_or_else(|| missing("bad_data_uri", "not a base64 data URI".into()))?;
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| missing("bad_data_uri", format!("bad base64: {e}")))?
        } else if let Some((bucket, key)) = parse_reference(reference) {
            self.storage.get(&bucket, &key).map_err(|e| match e {
                // The store itself (S3) failing is worth another attempt.
                StorageError::Io(why) => ProviderError::retryable(
                    ErrorCode::UPSTREAM_ERROR,
                    format!("the stored input image could not be read: {why}"),
                )
                .with_reason("storage_unavailable"),
                other => missing("not_stored", other.to_string()),
            })?
        } else if reference.starts_with("http://") || reference.starts_with("https://") {
            self.fetcher
                .fetch_image(reference)
                .map_err(|e| match e {
                    FetchError::Timeout => ProviderError::permanent(
                        ErrorCode::IMAGE_INPUT_SOURCE_TIMEOUT,
                        format!("the input image could not be read: {e}"),
                    )
                    .with_reason(e.reason()),
                    FetchError::NotAnImage => invalid_type(e.to_string()),
                    other => missing(other.reason(), other.to_string()),
                })?
                .bytes
        } else {
            return Err(missing(
                "unsupported_reference",
                "not a URL, data URI or stored object".into(),
            ));
        };
        let mime = sniff_image(&bytes)
            .ok_or_else(|| invalid_type("not a png, jpeg or webp image".into()))?;
        check_dimensions(&bytes).map_err(|why| match why {
            DimensionError::Unreadable(e) => missing("not_an_image", e),
            DimensionError::TooLarge(message) => {
                ProviderError::permanent(ErrorCode::IMAGE_INPUT_TOO_LARGE, message)
                    .with_reason("too_many_pixels")
            }
        })?;
        Ok(InputImage { bytes, mime })
    }

    /// Reads a unit's images: its product photos, then its style reference.
    pub fn load_for_unit(&self, unit: &UnitRequest) -> Result<Vec<InputImage>, ProviderError> {
        self.load_all(&unit_images(&unit.input))
    }

    /// Reads every reference in order.
    pub fn load_all(&self, references: &[String]) -> Result<Vec<InputImage>, ProviderError> {
        references.iter().map(|r| self.load(r)).collect()
    }

    /// Stores an output image of `unit` and describes it as the unit's result. An output
    /// whose longest edge exceeds the requested size's is scaled down first
    /// (`size_status: normalized_down`); a smaller one is kept as is (`too_small`).
    pub fn store_output(&self, unit: &UnitRequest, bytes: &[u8]) -> UnitOutcome {
        let unreadable = || {
            ProviderError::retryable(
                ErrorCode::UPSTREAM_ERROR,
                format!("{} returned an image that cannot be read", unit.provider),
            )
            .into_outcome()
        };
        let Some(mime) = sniff_image(bytes) else {
            return ProviderError::retryable(
                ErrorCode::UPSTREAM_ERROR,
                format!("{} returned data that is not an image", unit.provider),
            )
            .into_outcome();
        };
        let Some(actual) = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok())
        else {
            return unreadable();
        };
        let image_size = unit.input["image_size"].as_str().unwrap_or("1K");
        let (status, delivered) = delivery(actual, image_size);
        let (stored, mime) = if status == SizeStatus::NormalizedDown {
            match downscale(bytes, mime, delivered) {
                Some(scaled) => scaled,
                None => return unreadable(),
            }
        } else {
            (bytes.to_vec(), mime)
        };
        let ext = match mime {
            "image/jpeg" => "jpg",
            "image/webp" => "webp",
            _ => "png",
        };
        let key = format!("{}/{}-{}.{ext}", unit.job_id, unit.unit_index, unit.attempt);
        if let Err(e) = self.storage.put("generated", &key, &stored, mime) {
            return ProviderError::retryable(
                ErrorCode::UPSTREAM_ERROR,
                format!("could not store the image: {e}"),
            )
            .into_outcome();
        }
        UnitOutcome::Success {
            result: json!({
                "url": self.storage.url_for("generated", &key),
                "width": delivered.0,
                "height": delivered.1,
                "bytes": stored.len(),
                "mime_type": mime,
                "model": unit.model,
                "object_path": format!("generated/{key}"),
                "provider_size": Value::Null,
                "actual_size": size_json(actual),
                "delivered_size": size_json(delivered),
                "size_status": status.as_str(),
                "normalized_by_server": status == SizeStatus::NormalizedDown,
            }),
        }
    }
}

/// Scales an output image to `to` pixels: JPEG stays JPEG, anything else becomes PNG
/// (as the reference does, L4566).
fn downscale(bytes: &[u8], mime: &'static str, to: (u32, u32)) -> Option<(Vec<u8>, &'static str)> {
    let decoded = image::load_from_memory(bytes).ok()?;
    let scaled = decoded.resize_exact(to.0, to.1, image::imageops::FilterType::Lanczos3);
    let (format, mime) = if mime == "image/jpeg" {
        (image::ImageFormat::Jpeg, "image/jpeg")
    } else {
        (image::ImageFormat::Png, "image/png")
    };
    let mut out = Vec::new();
    let encoded = if format == image::ImageFormat::Jpeg {
        image::DynamicImage::ImageRgb8(scaled.to_rgb8())
            .write_to(&mut Cursor::new(&mut out), format)
    } else {
        scaled.write_to(&mut Cursor::new(&mut out), format)
    };
    encoded.ok()?;
    Some((out, mime))
}

enum DimensionError {
    Unreadable(String),
    TooLarge(String),
}

/// Reads the declared dimensions (header only, nothing decoded) and applies the caps.
fn check_dimensions(bytes: &[u8]) -> Result<(u32, u32), DimensionError> {
    let (w, h) = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DimensionError::Unreadable(e.to_string()))?
        .into_dimensions()
        .map_err(|e| DimensionError::Unreadable(format!("unreadable image: {e}")))?;
    if w > MAX_INPUT_SIDE || h > MAX_INPUT_SIDE || u64::from(w) * u64::from(h) > MAX_INPUT_PIXELS {
        return Err(DimensionError::TooLarge(format!(
            "input image is {w}×{h}; the limit is {MAX_INPUT_SIDE} px per side and 40 MP"
        )));
    }
    Ok((w, h))
}

/// Decodes `data:<mime>;base64,<data>` (OpenRouter image outputs).
pub fn decode_data_uri(uri: &str) -> Option<Vec<u8>> {
    let (_, data) = uri.strip_prefix("data:")?.split_once(";base64,")?;
    decode_base64(data)
}

/// Decodes standard base64, padded or not, ignoring whitespace.
pub fn decode_base64(data: &str) -> Option<Vec<u8>> {
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(clean.as_bytes()))
        .ok()
}

/// The image references of a unit: the product photo first, then the style reference.
pub fn unit_images(input: &Value) -> Vec<String> {
    let mut refs: Vec<String> = Vec::new();
    let mut push = |v: &Value| {
        if let Some(s) = v.as_str().filter(|s| !s.trim().is_empty()) {
            if !refs.iter().any(|r| r == s) {
                refs.push(s.to_string());
            }
        }
    };
    match input["product_images"].as_array() {
        Some(all) => all.iter().for_each(&mut push),
        None => push(&input["product_image"]),
    }
    push(&input["reference_image"]);
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_uris_and_bare_base64_decode() {
        assert_eq!(
            decode_data_uri("data:image/png;base64,aGk="),
            Some(b"hi".to_vec())
        );
        assert_eq!(decode_base64("aGk"), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("aG\nk="), Some(b"hi".to_vec()));
        assert_eq!(decode_data_uri("https://x/y.png"), None);
    }

    #[test]
    fn unit_images_lists_product_then_reference_once() {
        let input =
            json!({"product_image": "a", "product_images": ["a", "b"], "reference_image": "r"});
        assert_eq!(unit_images(&input), vec!["a", "b", "r"]);
        let single = json!({"product_image": "p", "reference_image": "p"});
        assert_eq!(unit_images(&single), vec!["p"]);
    }
}

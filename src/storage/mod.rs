//! Where images live, behind one [`Storage`] trait: a directory under the data dir
//! ([`LocalStorage`], the default) or an S3-compatible bucket ([`S3Storage`]). Either way
//! objects are served by Atelier at `/storage/v1/object/public/<bucket>/<key>`, and
//! uploads arrive through signed single-object URLs ([`UploadSigner`]).
//!
//! Every method blocks (file or network I/O): call them from blocking threads, never on
//! the async runtime.

mod local;
mod s3;
mod signing;

use std::collections::HashSet;
use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub use local::LocalStorage;
pub use s3::S3Storage;
pub use signing::{UploadSigner, UploadUrlError};

use crate::config::Config;

/// Buckets Atelier writes to.
pub const BUCKETS: &[&str] = &["temp", "uploads", "generated"];

/// The path under which objects are served.
pub const PUBLIC_PREFIX: &str = "/storage/v1/object/public";

/// What is percent-encoded in a key inside a URL: all but unreserved characters and `/`.
const KEY_IN_URL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    #[error("object not found")]
    NotFound,
    #[error("storage i/o: {0}")]
    Io(String),
}

/// What [`Storage::stat`] tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub len: u64,
    /// Last write, since the Unix epoch.
    pub modified: Duration,
    /// A quoted validator that changes whenever the object is rewritten.
    pub etag: String,
}

/// Stored objects, addressed by one of [`BUCKETS`] and a key validated by
/// [`validate_key`].
pub trait Storage: Send + Sync {
    /// `local` or `s3`.
    fn backend(&self) -> &'static str;

    /// Checks once, at start, that the storage can be reached (the directory can be
    /// created, the bucket exists and the credentials are accepted).
    fn check(&self) -> Result<(), StorageError>;

    /// Stores `bytes` under `bucket/key`, replacing what was there.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<(), StorageError>;

    /// Reads the whole object.
    fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, StorageError>;

    /// Size, modification time and ETag of the object.
    fn stat(&self, bucket: &str, key: &str) -> Result<ObjectMeta, StorageError>;

    /// Reads `len` bytes of the object from `start` (fewer at its end).
    fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError>;

    /// Deletes the object (a missing object is not an error).
    fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError>;

    /// Deletes every object of `bucket` last written more than `max_age` ago, except the
    /// keys in `keep`; returns how many went.
    fn sweep(
        &self,
        bucket: &str,
        max_age: Duration,
        keep: &HashSet<String>,
    ) -> Result<usize, StorageError>;

    /// The public URL path of `bucket/key` (served by Atelier whatever the backend).
    fn url_for(&self, bucket: &str, key: &str) -> String {
        format!("{PUBLIC_PREFIX}/{bucket}/{}", encode_key(key))
    }
}

/// The storage `config.storage.backend` names: `local` under `<data.dir>/storage`, or
/// `s3` with the settings of `[storage.s3]`.
pub fn from_config(config: &Config) -> Result<Arc<dyn Storage>, StorageError> {
    match config.storage.backend.as_str() {
        "s3" => Ok(Arc::new(S3Storage::new(&config.storage.s3)?)),
        _ => Ok(Arc::new(LocalStorage::new(config.data.dir.join("storage")))),
    }
}

/// Checks that `bucket` is one of [`BUCKETS`].
pub fn check_bucket(bucket: &str) -> Result<(), StorageError> {
    if BUCKETS.contains(&bucket) {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(format!("unknown bucket {bucket}")))
    }
}

/// Checks the bucket and key of an object.
pub fn check_object(bucket: &str, key: &str) -> Result<(), StorageError> {
    check_bucket(bucket)?;
    validate_key(key)
}

/// A key as it appears in a URL path: percent-encoded, `/` kept.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_IN_URL).to_string()
}

/// A key from a URL path: percent-decoded (to UTF-8) and validated, so that `%2e%2e`,
/// `%00` or `%5c` are refused like their plain spellings.
pub fn decode_key(raw: &str) -> Result<String, StorageError> {
    let key = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| StorageError::InvalidKey("not UTF-8".into()))?
        .into_owned();
    validate_key(&key)?;
    Ok(key)
}

/// Splits a storage URL or `bucket/key` reference into `(bucket, key)`.
pub fn parse_reference(reference: &str) -> Option<(String, String)> {
    let marker = format!("{PUBLIC_PREFIX}/");
    let rest = match reference.find(&marker) {
        Some(i) => &reference[i + marker.len()..],
        None if !reference.contains("://") => reference.trim_start_matches('/'),
        None => return None,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (bucket, key) = rest.split_once('/')?;
    let key = decode_key(key).ok()?;
    check_object(bucket, &key)
        .is_ok()
        .then(|| (bucket.to_string(), key))
}

/// The keys of `bucket` that the JSON `payloads` reference (as storage URLs or
/// `bucket/key`), wherever they sit in the JSON: the inputs a job keeps alive.
pub fn referenced_keys(payloads: &[String], bucket: &str) -> HashSet<String> {
    fn walk(value: &serde_json::Value, bucket: &str, out: &mut HashSet<String>) {
        match value {
            serde_json::Value::String(s) => {
                if let Some((b, key)) = parse_reference(s) {
                    if b == bucket {
                        out.insert(key);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, bucket, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| walk(v, bucket, out)),
            _ => {}
        }
    }
    let mut keys = HashSet::new();
    for payload in payloads {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(payload) {
            walk(&value, bucket, &mut keys);
        }
    }
    keys
}

/// The image type of `bytes` from their magic numbers: PNG, JPEG or WebP.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some("image/png"),
        [0xFF, 0xD8, 0xFF, ..] => Some("image/jpeg"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some("image/webp"),
        _ => None,
    }
}

/// Keys are relative paths of plain segments: no `..`, no absolute paths, no NUL,
/// control characters or backslashes.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = |why: &str| Err(StorageError::InvalidKey(why.to_string()));
    if key.is_empty() || key.len() > 512 {
        return bad("empty or too long");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("control character or backslash");
    }
    let path = Path::new(key);
    if !path.components().all(|c| matches!(c, Component::Normal(_)))
        || key.ends_with('/')
        || key.contains("//")
    {
        return bad("not a plain relative path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_escape_the_root() {
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            "a//",
            "a//b",
            "./a",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key("user/2026/photo.png").is_ok());
    }

    #[test]
    fn references_parse() {
        assert_eq!(
            parse_reference("http://h/storage/v1/object/public/uploads/a/b.png?v=1"),
            Some(("uploads".into(), "a/b.png".into()))
        );
        assert_eq!(
            parse_reference("uploads/a.png"),
            Some(("uploads".into(), "a.png".into()))
        );
        assert_eq!(parse_reference("https://cdn.example/a.png"), None);
        assert_eq!(parse_reference("uploads/../x"), None);
        assert_eq!(parse_reference("secrets/x.png"), None);
        assert_eq!(
            parse_reference("/storage/v1/object/public/uploads/u/a%20photo%20%C3%BC.png"),
            Some(("uploads".into(), "u/a photo ü.png".into()))
        );
        assert_eq!(parse_reference("uploads/%2e%2e/x"), None);
    }

    #[test]
    fn keys_are_encoded_in_urls_and_decoded_back() {
        let key = "u/a photo ü#1?.png";
        let encoded = encode_key(key);
        assert_eq!(encoded, "u/a%20photo%20%C3%BC%231%3F.png");
        assert_eq!(decode_key(&encoded).unwrap(), key);
        for bad in ["%2e%2e/x", "a%00b", "a%5cb", "%2Fetc", "a%ff"] {
            assert!(decode_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images_are_sniffed_from_their_bytes() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"GIF89a"), None);
        assert_eq!(sniff_image(b"<svg"), None);
    }
}

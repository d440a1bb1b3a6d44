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

use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

pub use local::LocalStorage;
pub use s3::S3Storage;
pub use signing::{UploadSigner, UploadUrlError};

use crate::config::Config;

/// Buckets Atelier writes to.
pub const BUCKETS: &[&str] = &["temp", "uploads", "generated"];

/// The path under which objects are served.
pub const PUBLIC_PREFIX: &str = "/storage/v1/object/public";

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

    /// Deletes every object of `bucket` last written more than `max_age` ago; returns
    /// how many went.
    fn sweep(&self, bucket: &str, max_age: Duration) -> Result<usize, StorageError>;

    /// The public URL path of `bucket/key` (served by Atelier whatever the backend).
    fn url_for(&self, bucket: &str, key: &str) -> String {
        format!("{PUBLIC_PREFIX}/{bucket}/{key}")
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

/// Checks the bucket and key of an object.
pub fn check_object(bucket: &str, key: &str) -> Result<(), StorageError> {
    if !BUCKETS.contains(&bucket) {
        return Err(StorageError::InvalidKey(format!("unknown bucket {bucket}")));
    }
    validate_key(key)
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
    check_object(bucket, key)
        .is_ok()
        .then(|| (bucket.to_string(), key.to_string()))
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

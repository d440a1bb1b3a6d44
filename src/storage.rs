//! Where images live: a directory under the data dir, served at
//! `/storage/v1/object/public/<bucket>/<key>`.

use std::path::{Component, Path, PathBuf};

/// Buckets Atelier writes to.
pub const BUCKETS: &[&str] = &["temp", "uploads", "generated"];

/// Local-directory storage.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

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

impl LocalStorage {
    /// Storage rooted at `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        LocalStorage { root }
    }

    /// Stores bytes under `bucket/key`.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path_of(bucket, key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::Io(e.to_string()))?;
        }
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bytes).map_err(|e| StorageError::Io(e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|e| StorageError::Io(e.to_string()))
    }

    /// Reads `bucket/key`.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, StorageError> {
        let path = self.path_of(bucket, key)?;
        let meta = std::fs::symlink_metadata(&path).map_err(|_| StorageError::NotFound)?;
        if !meta.is_file() {
            return Err(StorageError::NotFound);
        }
        std::fs::read(&path).map_err(|e| StorageError::Io(e.to_string()))
    }

    /// The public URL path of `bucket/key`.
    pub fn url_for(&self, bucket: &str, key: &str) -> String {
        format!("/storage/v1/object/public/{bucket}/{key}")
    }

    /// Splits a storage URL or `bucket/key` reference into `(bucket, key)`.
    pub fn parse_reference(reference: &str) -> Option<(String, String)> {
        let rest = match reference.find("/storage/v1/object/public/") {
            Some(i) => &reference[i + "/storage/v1/object/public/".len()..],
            None if !reference.contains("://") => reference.trim_start_matches('/'),
            None => return None,
        };
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (bucket, key) = rest.split_once('/')?;
        (BUCKETS.contains(&bucket) && validate_key(key).is_ok())
            .then(|| (bucket.to_string(), key.to_string()))
    }

    fn path_of(&self, bucket: &str, key: &str) -> Result<PathBuf, StorageError> {
        if !BUCKETS.contains(&bucket) {
            return Err(StorageError::InvalidKey(format!("unknown bucket {bucket}")));
        }
        validate_key(key)?;
        Ok(self.root.join(bucket).join(key))
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
    if !path.components().all(|c| matches!(c, Component::Normal(_))) || key.ends_with('/') {
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
            "./a",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key("user/2026/photo.png").is_ok());
    }

    #[test]
    fn references_parse() {
        assert_eq!(
            LocalStorage::parse_reference("http://h/storage/v1/object/public/uploads/a/b.png?v=1"),
            Some(("uploads".into(), "a/b.png".into()))
        );
        assert_eq!(
            LocalStorage::parse_reference("uploads/a.png"),
            Some(("uploads".into(), "a.png".into()))
        );
        assert_eq!(
            LocalStorage::parse_reference("https://cdn.example/a.png"),
            None
        );
        assert_eq!(LocalStorage::parse_reference("uploads/../x"), None);
    }
}

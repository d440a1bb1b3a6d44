//! Where images live: a directory under the data dir, served at
//! `/storage/v1/object/public/<bucket>/<key>`; plus signed single-object upload URLs.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

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

    /// Size and modification time of `bucket/key` (regular files only; a symlink is
    /// never followed).
    pub fn stat(&self, bucket: &str, key: &str) -> Result<ObjectMeta, StorageError> {
        let path = self.path_of(bucket, key)?;
        let meta = std::fs::symlink_metadata(&path).map_err(|_| StorageError::NotFound)?;
        if !meta.is_file() {
            return Err(StorageError::NotFound);
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        Ok(ObjectMeta {
            len: meta.len(),
            modified,
        })
    }

    /// Reads `len` bytes of `bucket/key` from `start`.
    pub fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let path = self.path_of(bucket, key)?;
        self.stat(bucket, key)?;
        let io = |e: std::io::Error| StorageError::Io(e.to_string());
        let mut file = std::fs::File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut out = Vec::with_capacity(len.min(64 * 1024 * 1024) as usize);
        file.take(len).read_to_end(&mut out).map_err(io)?;
        Ok(out)
    }

    /// Deletes `bucket/key` (a missing object is not an error).
    pub fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        match std::fs::remove_file(self.path_of(bucket, key)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StorageError::Io(e.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Deletes every object of `bucket` last written more than `max_age` ago; returns
    /// how many went.
    pub fn sweep(&self, bucket: &str, max_age: Duration) -> Result<usize, StorageError> {
        if !BUCKETS.contains(&bucket) {
            return Err(StorageError::InvalidKey(format!("unknown bucket {bucket}")));
        }
        let cutoff = SystemTime::now().checked_sub(max_age).unwrap_or(UNIX_EPOCH);
        let mut removed = 0;
        let mut dirs = vec![self.root.join(bucket)];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else if meta.is_file()
                    && meta.modified().is_ok_and(|t| t <= cutoff)
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
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

/// What [`LocalStorage::stat`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    pub len: u64,
    /// Since the Unix epoch.
    pub modified: Duration,
}

impl ObjectMeta {
    /// A validator that changes whenever the object is rewritten.
    pub fn etag(&self) -> String {
        format!("\"{:x}-{:x}\"", self.len, self.modified.as_nanos())
    }
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

/// Signs and checks single-object upload URLs: HMAC-SHA256 over bucket, key, expiry and
/// the byte limit, so none of them can be changed by the holder of the URL.
#[derive(Clone)]
pub struct UploadSigner {
    key: Vec<u8>,
}

/// Why an upload URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadUrlError {
    Expired,
    BadSignature,
}

impl UploadSigner {
    /// A signer whose key is derived from `secret` (the server's token secret).
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"atelier upload urls");
        UploadSigner {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, bucket: &str, key: &str, expires: i64, max_bytes: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(format!("{bucket}\n{key}\n{expires}\n{max_bytes}").as_bytes());
        mac
    }

    /// The signature (URL-safe base64) for these parameters.
    pub fn sign(&self, bucket: &str, key: &str, expires: i64, max_bytes: u64) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            self.mac(bucket, key, expires, max_bytes)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a signature (in constant time) and the expiry (unix seconds).
    pub fn verify(
        &self,
        bucket: &str,
        key: &str,
        expires: i64,
        max_bytes: u64,
        signature: &str,
        now_secs: i64,
    ) -> Result<(), UploadUrlError> {
        use base64::Engine;
        let sent = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| UploadUrlError::BadSignature)?;
        self.mac(bucket, key, expires, max_bytes)
            .verify_slice(&sent)
            .map_err(|_| UploadUrlError::BadSignature)?;
        if now_secs > expires {
            return Err(UploadUrlError::Expired);
        }
        Ok(())
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

    #[test]
    fn upload_urls_cannot_be_altered_or_used_late() {
        let signer = UploadSigner::new(b"secret");
        let sig = signer.sign("temp", "a/b.png", 1000, 10);
        assert_eq!(
            signer.verify("temp", "a/b.png", 1000, 10, &sig, 999),
            Ok(())
        );
        assert_eq!(
            signer.verify("temp", "a/b.png", 1000, 10, &sig, 1001),
            Err(UploadUrlError::Expired)
        );
        for (bucket, key, expires, max) in [
            ("uploads", "a/b.png", 1000, 10),
            ("temp", "a/c.png", 1000, 10),
            ("temp", "a/b.png", 2000, 10),
            ("temp", "a/b.png", 1000, 11),
        ] {
            assert_eq!(
                signer.verify(bucket, key, expires, max, &sig, 0),
                Err(UploadUrlError::BadSignature)
            );
        }
        let other = UploadSigner::new(b"other");
        assert_eq!(
            other.verify("temp", "a/b.png", 1000, 10, &sig, 0),
            Err(UploadUrlError::BadSignature)
        );
    }

    #[test]
    fn images_are_sniffed_from_their_bytes() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"GIF89a"), None);
        assert_eq!(sniff_image(b"<svg"), None);
    }

    #[test]
    fn the_temp_sweep_removes_old_objects_only() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().to_path_buf());
        storage.put("temp", "a/old.png", b"x").unwrap();
        storage.put("uploads", "keep.png", b"x").unwrap();
        assert_eq!(storage.sweep("temp", Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(storage.sweep("temp", Duration::ZERO).unwrap(), 1);
        assert!(storage.get("temp", "a/old.png").is_err());
        assert!(storage.get("uploads", "keep.png").is_ok());
    }

    #[test]
    fn ranges_read_part_of_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().to_path_buf());
        storage.put("uploads", "r.bin", b"0123456789").unwrap();
        assert_eq!(
            storage.read_range("uploads", "r.bin", 2, 3).unwrap(),
            b"234"
        );
        assert_eq!(storage.stat("uploads", "r.bin").unwrap().len, 10);
    }
}

//! [`Storage`] in a directory: `<root>/<bucket>/<key>`, written atomically, symlinks
//! never followed.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{check_bucket, check_object, ObjectMeta, Storage, StorageError};

/// Local-directory storage (the default), under `<data.dir>/storage`.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

fn io(e: std::io::Error) -> StorageError {
    StorageError::Io(e.to_string())
}

impl LocalStorage {
    /// Storage rooted at `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        LocalStorage { root }
    }

    fn path_of(&self, bucket: &str, key: &str) -> Result<PathBuf, StorageError> {
        check_object(bucket, key)?;
        Ok(self.root.join(bucket).join(key))
    }

    /// The regular file at `bucket/key` and its metadata; a symlink, a directory, or a
    /// file reached through a symlinked directory outside the root is "not found".
    fn regular_file(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(PathBuf, std::fs::Metadata), StorageError> {
        let path = self.path_of(bucket, key)?;
        let meta = std::fs::symlink_metadata(&path).map_err(|_| StorageError::NotFound)?;
        if !meta.is_file() {
            return Err(StorageError::NotFound);
        }
        let real = path.canonicalize().map_err(|_| StorageError::NotFound)?;
        let root = self
            .root
            .canonicalize()
            .map_err(|_| StorageError::NotFound)?;
        if !real.starts_with(root) {
            return Err(StorageError::NotFound);
        }
        Ok((path, meta))
    }
}

impl Storage for LocalStorage {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn check(&self) -> Result<(), StorageError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| StorageError::Io(format!("cannot create {}: {e}", self.root.display())))
    }

    fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: &[u8],
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let path = self.path_of(bucket, key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, StorageError> {
        let (path, _) = self.regular_file(bucket, key)?;
        std::fs::read(&path).map_err(io)
    }

    fn stat(&self, bucket: &str, key: &str) -> Result<ObjectMeta, StorageError> {
        let (_, meta) = self.regular_file(bucket, key)?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        Ok(ObjectMeta {
            len: meta.len(),
            modified,
            etag: format!("\"{:x}-{:x}\"", meta.len(), modified.as_nanos()),
        })
    }

    fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let (path, _) = self.regular_file(bucket, key)?;
        let mut file = std::fs::File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut out = Vec::with_capacity(len.min(64 * 1024 * 1024) as usize);
        file.take(len).read_to_end(&mut out).map_err(io)?;
        Ok(out)
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        match std::fs::remove_file(self.path_of(bucket, key)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    fn sweep(
        &self,
        bucket: &str,
        max_age: Duration,
        keep: &HashSet<String>,
    ) -> Result<usize, StorageError> {
        check_bucket(bucket)?;
        let cutoff = SystemTime::now().checked_sub(max_age).unwrap_or(UNIX_EPOCH);
        let mut removed = 0;
        let base = self.root.join(bucket);
        let kept = |path: &std::path::Path| {
            path.strip_prefix(&base).ok().is_some_and(|rel| {
                let key: Vec<_> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect();
                keep.contains(&key.join("/"))
            })
        };
        let mut dirs = vec![base.clone()];
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
                    && !kept(&entry.path())
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, LocalStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path().to_path_buf());
        (dir, storage)
    }

    #[test]
    fn the_temp_sweep_removes_old_objects_only() {
        let (_dir, storage) = storage();
        storage.put("temp", "a/old.png", b"x", "image/png").unwrap();
        storage
            .put("temp", "a/used.png", b"x", "image/png")
            .unwrap();
        storage
            .put("uploads", "keep.png", b"x", "image/png")
            .unwrap();
        let keep = HashSet::from(["a/used.png".to_string()]);
        assert_eq!(
            storage
                .sweep("temp", Duration::from_secs(3600), &keep)
                .unwrap(),
            0
        );
        assert_eq!(storage.sweep("temp", Duration::ZERO, &keep).unwrap(), 1);
        assert!(storage.get("temp", "a/old.png").is_err());
        assert!(storage.get("temp", "a/used.png").is_ok());
        assert!(storage.get("uploads", "keep.png").is_ok());
    }

    #[test]
    fn ranges_read_part_of_an_object() {
        let (_dir, storage) = storage();
        storage.put("uploads", "r.bin", b"0123456789", "x").unwrap();
        assert_eq!(
            storage.read_range("uploads", "r.bin", 2, 3).unwrap(),
            b"234"
        );
        assert_eq!(storage.stat("uploads", "r.bin").unwrap().len, 10);
    }

    #[test]
    fn delete_is_idempotent_and_unknown_buckets_are_refused() {
        let (_dir, storage) = storage();
        storage.put("uploads", "d.png", b"x", "image/png").unwrap();
        storage.delete("uploads", "d.png").unwrap();
        storage.delete("uploads", "d.png").unwrap();
        assert!(matches!(
            storage.get("uploads", "d.png"),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            storage.put("secrets", "x", b"x", "x"),
            Err(StorageError::InvalidKey(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed() {
        let (dir, storage) = storage();
        std::fs::write(dir.path().join("outside"), b"secret").unwrap();
        std::fs::create_dir_all(dir.path().join("uploads")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("outside"),
            dir.path().join("uploads/link.png"),
        )
        .unwrap();
        assert!(matches!(
            storage.get("uploads", "link.png"),
            Err(StorageError::NotFound)
        ));
        assert!(storage.read_range("uploads", "link.png", 0, 3).is_err());
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        std::fs::write(dir.path().join("elsewhere/x.png"), b"secret").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("uploads")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), root.join("uploads/dir")).unwrap();
        let rooted = LocalStorage::new(root);
        assert!(matches!(
            rooted.get("uploads", "dir/x.png"),
            Err(StorageError::NotFound)
        ));
    }
}

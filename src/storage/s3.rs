//! [`Storage`] in an S3-compatible bucket (AWS S3, MinIO, R2, …). Requests are
//! presigned with SigV4 by `rusty-s3` and sent with a blocking `ureq` agent. Atelier's
//! buckets become key prefixes: `uploads/<key>` in the configured bucket.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{check_bucket, check_object, ObjectMeta, Storage, StorageError};
use crate::config::S3Config;

/// How long a presigned request stays valid (it is sent at once).
const SIGNED_FOR: Duration = Duration::from_secs(300);
/// Largest object read into memory.
const MAX_OBJECT_BYTES: u64 = 256 * 1024 * 1024;
/// Largest listing or error document read.
const MAX_DOCUMENT_BYTES: u64 = 16 * 1024 * 1024;

/// One page of a listing: `(name, last modified)` pairs and the continuation token.
type ListPage = (Vec<(String, String)>, Option<String>);

/// An S3-compatible bucket.
pub struct S3Storage {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
}

/// Shows where, never the keys.
impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("base_url", &self.bucket.base_url().as_str())
            .field("region", &self.bucket.region())
            .finish_non_exhaustive()
    }
}

fn io(what: impl std::fmt::Display) -> StorageError {
    StorageError::Io(format!("s3: {what}"))
}

impl S3Storage {
    /// A client for the bucket of `config` (no request is made yet).
    pub fn new(config: &S3Config) -> Result<Self, StorageError> {
        let endpoint: url::Url = config
            .endpoint
            .parse()
            .map_err(|e| io(format!("bad endpoint {}: {e}", config.endpoint)))?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| io(format!("bad bucket settings: {e}")))?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(config.timeout_secs.max(1))))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("atelier/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(S3Storage {
            bucket,
            credentials: Credentials::new(config.access_key.clone(), config.secret_key.clone()),
            agent,
        })
    }

    /// The S3 object name of `bucket/key`.
    fn name(bucket: &str, key: &str) -> Result<String, StorageError> {
        check_object(bucket, key)?;
        Ok(format!("{bucket}/{key}"))
    }

    fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), name)
            .sign(SIGNED_FOR);
        let response = self.agent.delete(url.as_str()).call().map_err(io)?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(failure("DELETE", response)),
        }
    }

    /// One page of the names under `prefix` with their modification times.
    fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<ListPage, StorageError> {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
        action.with_prefix(prefix.to_string());
        if let Some(token) = token {
            action.with_continuation_token(token.to_string());
        }
        let url = action.sign(SIGNED_FOR);
        let response = self.agent.get(url.as_str()).call().map_err(io)?;
        if response.status().as_u16() != 200 {
            return Err(failure("LIST", response));
        }
        let text = response
            .into_body()
            .with_config()
            .limit(MAX_DOCUMENT_BYTES)
            .read_to_string()
            .map_err(io)?;
        let page = ListObjectsV2::parse_response(&text).map_err(io)?;
        let names = page
            .contents
            .into_iter()
            .map(|c| (c.key, c.last_modified))
            .collect();
        Ok((names, page.next_continuation_token))
    }
}

/// An error for a non-success answer, naming the S3 error code when there is one.
fn failure(op: &str, response: ureq::http::Response<ureq::Body>) -> StorageError {
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| format!(" ({code})"))
        .unwrap_or_default();
    io(format!("{op} answered {status}{code}"))
}

fn header<'a>(response: &'a ureq::http::Response<ureq::Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

impl Storage for S3Storage {
    fn backend(&self) -> &'static str {
        "s3"
    }

    fn check(&self) -> Result<(), StorageError> {
        let url = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(SIGNED_FOR);
        let response = self.agent.head(url.as_str()).call().map_err(io)?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(io(format!(
                "bucket {} not found at {}",
                self.bucket.name(),
                self.bucket.base_url()
            ))),
            status => Err(io(format!(
                "bucket {} at {} answered {status} (check the keys and region)",
                self.bucket.name(),
                self.bucket.base_url()
            ))),
        }
    }

    fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<(), StorageError> {
        let name = Self::name(bucket, key)?;
        let url = self
            .bucket
            .put_object(Some(&self.credentials), &name)
            .sign(SIGNED_FOR);
        let response = self
            .agent
            .put(url.as_str())
            .header("content-type", content_type)
            .send(bytes)
            .map_err(io)?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(failure("PUT", response)),
        }
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, StorageError> {
        let name = Self::name(bucket, key)?;
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &name)
            .sign(SIGNED_FOR);
        let response = self.agent.get(url.as_str()).call().map_err(io)?;
        match response.status().as_u16() {
            200 => response
                .into_body()
                .with_config()
                .limit(MAX_OBJECT_BYTES)
                .read_to_vec()
                .map_err(io),
            404 => Err(StorageError::NotFound),
            _ => Err(failure("GET", response)),
        }
    }

    fn stat(&self, bucket: &str, key: &str) -> Result<ObjectMeta, StorageError> {
        let name = Self::name(bucket, key)?;
        let url = self
            .bucket
            .head_object(Some(&self.credentials), &name)
            .sign(SIGNED_FOR);
        let response = self.agent.head(url.as_str()).call().map_err(io)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Err(StorageError::NotFound),
            status => return Err(io(format!("HEAD answered {status}"))),
        }
        let len = header(&response, "content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| io("HEAD answered without a content-length"))?;
        let modified = header(&response, "last-modified")
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let etag = match header(&response, "etag").map(str::trim) {
            Some(tag) if tag.starts_with('"') || tag.starts_with("W/") => tag.to_string(),
            Some(tag) if !tag.is_empty() => format!("\"{tag}\""),
            _ => format!("\"{:x}-{:x}\"", len, modified.as_nanos()),
        };
        Ok(ObjectMeta {
            len,
            modified,
            etag,
        })
    }

    fn read_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let name = Self::name(bucket, key)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &name)
            .sign(SIGNED_FOR);
        let last = start.saturating_add(len - 1);
        let response = self
            .agent
            .get(url.as_str())
            .header("range", format!("bytes={start}-{last}"))
            .call()
            .map_err(io)?;
        let body = |response: ureq::http::Response<ureq::Body>, limit: u64| {
            response
                .into_body()
                .with_config()
                .limit(limit)
                .read_to_vec()
                .map_err(io)
        };
        match response.status().as_u16() {
            206 => body(response, len),
            // A server that ignores ranges sends the whole object.
            200 => {
                let all = body(response, MAX_OBJECT_BYTES)?;
                let from = usize::try_from(start).unwrap_or(usize::MAX).min(all.len());
                let to = usize::try_from(last.saturating_add(1))
                    .unwrap_or(usize::MAX)
                    .min(all.len());
                Ok(all[from..to].to_vec())
            }
            404 => Err(StorageError::NotFound),
            416 => Ok(Vec::new()),
            _ => Err(failure("GET range", response)),
        }
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        self.delete_name(&Self::name(bucket, key)?)
    }

    fn sweep(
        &self,
        bucket: &str,
        max_age: Duration,
        keep: &HashSet<String>,
    ) -> Result<usize, StorageError> {
        check_bucket(bucket)?;
        let cutoff = SystemTime::now()
            .checked_sub(max_age)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        let prefix = format!("{bucket}/");
        let mut removed = 0;
        let mut token: Option<String> = None;
        loop {
            let (names, next) = self.list_page(&prefix, token.as_deref())?;
            for (name, modified) in names {
                let old = OffsetDateTime::parse(&modified, &Rfc3339)
                    .is_ok_and(|t| t.unix_timestamp_nanos() <= cutoff);
                let kept = name
                    .strip_prefix(&prefix)
                    .is_some_and(|key| keep.contains(key));
                if old && !kept && self.delete_name(&name).is_ok() {
                    removed += 1;
                }
            }
            match next {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(removed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path_style: bool) -> S3Config {
        S3Config {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "photos".into(),
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            path_style,
            ..S3Config::default()
        }
    }

    #[test]
    fn objects_live_under_their_bucket_prefix() {
        assert_eq!(
            S3Storage::name("uploads", "u/a.png").unwrap(),
            "uploads/u/a.png"
        );
        assert!(S3Storage::name("uploads", "../a.png").is_err());
        assert!(S3Storage::name("other", "a.png").is_err());
    }

    #[test]
    fn presigned_urls_follow_the_url_style() {
        let path = S3Storage::new(&config(true)).unwrap();
        let url = path
            .bucket
            .get_object(Some(&path.credentials), "uploads/a b.png")
            .sign(SIGNED_FOR);
        assert!(
            url.as_str()
                .starts_with("http://127.0.0.1:9000/photos/uploads/a%20b.png?"),
            "{url}"
        );
        assert!(url.as_str().contains("X-Amz-Signature="), "{url}");
        let host = S3Storage::new(&S3Config {
            endpoint: "https://s3.example.com".into(),
            ..config(false)
        })
        .unwrap();
        let url = host
            .bucket
            .get_object(None, "generated/x.png")
            .sign(SIGNED_FOR);
        assert!(
            url.as_str()
                .starts_with("https://photos.s3.example.com/generated/x.png"),
            "{url}"
        );
    }

    #[test]
    fn debug_never_shows_the_keys() {
        let storage = S3Storage::new(&config(true)).unwrap();
        let shown = format!("{storage:?} {:?}", config(true));
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(shown.contains("127.0.0.1:9000"), "{shown}");
    }

    #[test]
    fn bad_endpoints_are_refused() {
        assert!(S3Storage::new(&S3Config {
            endpoint: "not a url".into(),
            ..config(true)
        })
        .is_err());
    }
}

//! Files: `get-oss-sts` hands out signed single-object upload URLs, `PUT` stores the
//! bytes (sniffed, size-capped), and `GET|HEAD /storage/v1/object/public/<bucket>/<key>`
//! serves objects with ETag, Cache-Control and ranges. Whatever the storage backend
//! (local directory or S3), objects are served through Atelier, so ranges, ETags and
//! HEAD behave the same and the bucket itself can stay private.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::extract;
use super::{authenticate, guard, reply, request, with_state, Request, State};
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};
use crate::generation::fields::ignore_unknown;
use crate::storage::{
    decode_key, encode_key, sniff_image, validate_key, StorageError, UploadUrlError, PUBLIC_PREFIX,
};

const UPLOAD_PREFIX: &str = "/storage/v1/object/upload";

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let sts = warp::path!("functions" / "v1" / "get-oss-sts")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(get_oss_sts(state, req)));
    let upload = warp::path!("storage" / "v1" / "object" / "upload" / String / ..)
        .and(warp::path::tail())
        .and(warp::put())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .and(extract::request(state.config.storage.upload_max_bytes))
        .then(|bucket, tail: warp::path::Tail, state, query, req| {
            guard(upload(state, bucket, tail.as_str().to_string(), query, req))
        });
    let serve = warp::path!("storage" / "v1" / "object" / "public" / String / ..)
        .and(warp::path::tail())
        .and(
            warp::get()
                .map(|| false)
                .or(warp::head().map(|| true))
                .unify(),
        )
        .and(warp::header::headers_cloned())
        .and(with_state(state))
        .then(
            |bucket, tail: warp::path::Tail, head_only, headers, state| {
                guard(serve_object(
                    state,
                    bucket,
                    tail.as_str().to_string(),
                    head_only,
                    headers,
                ))
            },
        );
    sts.or(upload).unify().or(serve).unify()
}

/// `get-oss-sts` body (other fields are ignored, as the reference ignores them).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StsRequest {
    bucket: Option<String>,
    prefix: Option<String>,
    key: Option<String>,
    expires_in: Option<i64>,
}

/// The public base URL: configured, or from the request's `Host`.
pub(super) fn base_url(state: &State, req: &Request) -> String {
    match &state.config.server.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!(
            "http://{}",
            req.header("host").unwrap_or(&state.config.server.bind)
        ),
    }
}

async fn get_oss_sts(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let raw: Value = req.json()?;
        ignore_unknown(
            "get-oss-sts",
            &raw,
            &["bucket", "prefix", "key", "expiresIn"],
        );
        let body: StsRequest = serde_json::from_value(raw).map_err(|e| {
            ApiError::with_message(ErrorCode::BAD_REQUEST, format!("invalid request body: {e}"))
        })?;
        let bucket = body.bucket.unwrap_or_else(|| "temp".into());
        if !["temp", "uploads"].contains(&bucket.as_str()) {
            return Err(ApiError::bad_field(
                "bucket",
                "bucket must be temp or uploads",
            ));
        }
        // As the reference (get-oss-sts/index.ts L45–49): prefix defaults to
        // temp/uploads, expiresIn is clamped to 60..3600 seconds.
        let prefix = body
            .prefix
            .map(|p| p.trim_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "temp/uploads".into());
        let expires_in = body.expires_in.unwrap_or(900).clamp(60, 3600);
        // Every user writes under their own folder, so one seller cannot overwrite
        // another's objects.
        let key = match body.key {
            Some(key) => key.trim_start_matches('/').to_string(),
            None => format!("{prefix}/{}.png", uuid::Uuid::now_v7()),
        };
        let key = format!("{}/{key}", user.id);
        validate_key(&key).map_err(|e| ApiError::bad_field("key", e.to_string()))?;
        let expire = now_ms() / 1000 + expires_in;
        let max = state.config.storage.upload_max_bytes;
        let signature = state.upload_signer.sign(&bucket, &key, expire, max);
        let base = base_url(&state, &req);
        Ok(json!({
            "provider": "local",
            "uploadMethod": "PUT",
            "bucket": bucket,
            "endpoint": format!("{base}{PUBLIC_PREFIX}/{bucket}"),
            "pathPrefix": prefix,
            "objectKey": key,
            "region": "",
            "expire": expire,
            "accessKeyId": "",
            "policy": "",
            "signature": "",
            "securityToken": "",
            "uploadUrl": format!(
                "{base}{UPLOAD_PREFIX}/{bucket}/{}?expires={expire}&max={max}&sig={signature}",
                encode_key(&key)
            ),
            "formFields": {},
        }))
    };
    reply::result(result.await)
}

/// `PUT` of a signed upload URL: the body is the image.
async fn upload(
    state: State,
    bucket: String,
    raw_key: String,
    query: HashMap<String, String>,
    req: Request,
) -> Response {
    let result = async {
        let key = decode_key(&raw_key).map_err(storage_error)?;
        let forbidden = |why: &str| ApiError::with_message(ErrorCode::FORBIDDEN, why.to_string());
        let number = |name: &str| query.get(name).and_then(|v| v.parse::<i64>().ok());
        let (Some(expires), Some(max), Some(sig)) =
            (number("expires"), number("max"), query.get("sig"))
        else {
            return Err(forbidden("the upload URL is incomplete"));
        };
        let max = max.max(0) as u64;
        state
            .upload_signer
            .verify(&bucket, &key, expires, max, sig, now_ms() / 1000)
            .map_err(|e| match e {
                UploadUrlError::Expired => forbidden("the upload URL has expired"),
                UploadUrlError::BadSignature => forbidden("the upload URL is not valid"),
            })?;
        if req.body.len() as u64 > max {
            return Err(ApiError::with_message(
                ErrorCode::BAD_REQUEST,
                format!("the upload is larger than {max} bytes"),
            )
            .status(413));
        }
        let Some(mime) = sniff_image(&req.body) else {
            return Err(ApiError::with_message(
                ErrorCode::BAD_REQUEST,
                "only png, jpeg and webp images can be uploaded",
            )
            .status(415));
        };
        let storage = state.storage.clone();
        let (b, k, bytes) = (bucket.clone(), key.clone(), req.body.clone());
        tokio::task::spawn_blocking(move || storage.put(&b, &k, &bytes, mime))
            .await
            .map_err(|e| ApiError::internal().cause(e.to_string()))?
            .map_err(storage_error)?;
        let url = format!(
            "{}{}",
            base_url(&state, &req),
            state.storage.url_for(&bucket, &key)
        );
        Ok(json!({"key": key, "url": url}))
    };
    reply::result(result.await)
}

fn storage_error(err: StorageError) -> ApiError {
    match err {
        StorageError::InvalidKey(why) => {
            ApiError::with_message(ErrorCode::BAD_REQUEST, format!("invalid object key: {why}"))
        }
        StorageError::NotFound => ApiError::with_message(ErrorCode::NOT_FOUND, "object not found"),
        StorageError::Io(why) => ApiError::internal().cause(why),
    }
}

/// A byte range of an object of `len` bytes: `(start, length)`; `None` when the
/// header is not one satisfiable `bytes=` range.
pub fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    let (first, last) = if start.is_empty() {
        let suffix: u64 = end.parse().ok()?;
        (len.saturating_sub(suffix), len - 1)
    } else {
        let first: u64 = start.parse().ok()?;
        let last = if end.is_empty() {
            len - 1
        } else {
            end.parse::<u64>().ok()?.min(len - 1)
        };
        (first, last)
    };
    (first <= last && first < len).then(|| (first, last - first + 1))
}

async fn serve_object(
    state: State,
    bucket: String,
    raw_key: String,
    head_only: bool,
    headers: warp::http::HeaderMap,
) -> Response {
    let key = match decode_key(&raw_key) {
        Ok(key) => key,
        Err(err) => return reply::error(&storage_error(err)),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let storage = state.storage.clone();
    let (b, k) = (bucket.clone(), key.clone());
    let meta = match tokio::task::spawn_blocking(move || storage.stat(&b, &k)).await {
        Ok(Ok(meta)) => meta,
        Ok(Err(err)) => return reply::error(&storage_error(err)),
        Err(err) => return reply::error(&ApiError::internal().cause(err.to_string())),
    };
    let etag = meta.etag.clone();
    if header("if-none-match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return with_object_headers(reply::empty(304), &etag, &bucket, None);
    }
    let range = match header("range") {
        None => None,
        Some(value) => match parse_range(value, meta.len) {
            Some(range) => Some(range),
            None => {
                let mut response = reply::error(
                    &ApiError::with_message(ErrorCode::BAD_REQUEST, "range not satisfiable")
                        .status(416),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.len)) {
                    response.headers_mut().insert("content-range", v);
                }
                return response;
            }
        },
    };
    let (start, len) = range.unwrap_or((0, meta.len));
    let storage = state.storage.clone();
    let (b, k) = (bucket.clone(), key.clone());
    let bytes = if head_only {
        tokio::task::spawn_blocking(move || storage.read_range(&b, &k, 0, 16)).await
    } else {
        tokio::task::spawn_blocking(move || storage.read_range(&b, &k, start, len)).await
    };
    let bytes = match bytes {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => return reply::error(&storage_error(err)),
        Err(err) => return reply::error(&ApiError::internal().cause(err.to_string())),
    };
    let content_type = if head_only || start == 0 {
        sniff_image(&bytes).unwrap_or("application/octet-stream")
    } else {
        content_type_of(&key)
    };
    let status = if range.is_some() { 206 } else { 200 };
    let body = if head_only { Vec::new() } else { bytes };
    let mut response = reply::with_body(status, content_type, body);
    if head_only {
        if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
            response.headers_mut().insert("content-length", v);
        }
    }
    let content_range = range.map(|(s, l)| format!("bytes {s}-{}/{}", s + l - 1, meta.len));
    with_object_headers(response, &etag, &bucket, content_range)
}

/// A content type from the key's extension (for ranges that do not start at 0).
fn content_type_of(key: &str) -> &'static str {
    let lower = key.to_ascii_lowercase();
    if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        "image/jpeg"
    } else if lower.ends_with(".webp") {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

fn with_object_headers(
    mut response: Response,
    etag: &str,
    bucket: &str,
    content_range: Option<String>,
) -> Response {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert("etag", v);
    }
    // Generated images never change under their key; uploads may be replaced.
    let cache = if bucket == "generated" {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    headers.insert("cache-control", HeaderValue::from_static(cache));
    headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    if let Some(v) = content_range.and_then(|r| HeaderValue::from_str(&r).ok()) {
        headers.insert("content-range", v);
    }
    if response.status() == StatusCode::NOT_MODIFIED {
        response.headers_mut().remove("content-type");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert_eq!(parse_range("bytes=0-3", 10), Some((0, 4)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 5)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 3)));
        assert_eq!(parse_range("bytes=8-100", 10), Some((8, 2)));
        assert_eq!(parse_range("bytes=10-12", 10), None);
        assert_eq!(parse_range("bytes=4-2", 10), None);
        assert_eq!(parse_range("bytes=0-1,4-5", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
    }
}

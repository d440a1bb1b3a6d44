//! What handlers get from a request: headers, client address, a size-capped body, and
//! helpers to parse JSON and find the bearer token.

use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use warp::http::{header, HeaderMap};
use warp::{Filter, Rejection};

use crate::domain::{ApiError, ErrorCode};

/// One request, as a handler sees it.
pub struct Request {
    pub headers: HeaderMap,
    pub remote: Option<SocketAddr>,
    /// The body (never over the limit: a larger one is refused before the handler).
    pub body: Bytes,
}

impl Request {
    /// A header as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of `Authorization: Bearer <token>`.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header(header::AUTHORIZATION.as_str())?;
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// The client address: the socket peer, or the first `X-Forwarded-For` hop when
    /// the server is configured to trust its proxy.
    pub fn client_ip(&self, trust_forwarded_for: bool) -> Option<IpAddr> {
        if trust_forwarded_for {
            let forwarded = self
                .header("x-forwarded-for")
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok());
            if forwarded.is_some() {
                return forwarded;
            }
        }
        self.remote.map(|addr| addr.ip())
    }

    /// The body parsed as JSON into `T` (an empty body reads as `{}`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return parse_json(b"{}");
        }
        check_json_content_type(self.header(header::CONTENT_TYPE.as_str()))?;
        parse_json(&self.body)
    }
}

/// A body that could not be read (too large, broken): answered before any handler runs.
#[derive(Debug)]
pub struct BodyRejected(pub ApiError);

impl warp::reject::Reject for BodyRejected {}

/// The request for a handler, with the body read up to `limit` bytes; a larger body
/// is refused with 413 whether or not the handler would have read it.
pub fn request(limit: u64) -> impl Filter<Extract = (Request,), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .and_then(move |headers: HeaderMap, remote, body| async move {
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = match declared {
                Some(n) if n > limit => Err(too_large(limit)),
                _ => read_capped(body, limit).await,
            };
            match body {
                Ok(body) => Ok(Request {
                    headers,
                    remote,
                    body,
                }),
                Err(err) => Err(warp::reject::custom(BodyRejected(err))),
            }
        })
}

fn too_large(limit: u64) -> ApiError {
    ApiError::with_message(
        ErrorCode::BAD_REQUEST,
        format!("request body is larger than {limit} bytes"),
    )
    .status(413)
}

/// Reads a body stream, stopping as soon as it passes `limit` bytes.
async fn read_capped<S, B>(body: S, limit: u64) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError::with_message(ErrorCode::BAD_REQUEST, "could not read the request body")
                .cause(e.to_string())
        })?;
        if out.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// A JSON body must say so; anything else is 415.
fn check_json_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let Some(value) = content_type else {
        return Ok(());
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::with_message(
            ErrorCode::BAD_REQUEST,
            format!("expected Content-Type application/json, got {mime}"),
        )
        .status(415))
    }
}

/// Parses JSON into `T`; a wrong type names the field in `details.field`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::with_message(ErrorCode::BAD_REQUEST, "the request body is not valid JSON")
                .cause(inner.to_string())
        } else if path.is_empty() || path == "." {
            ApiError::with_message(
                ErrorCode::BAD_REQUEST,
                format!(
                    "invalid request body: {}",
                    strip_position(&inner.to_string())
                ),
            )
            .details(missing_field(&inner.to_string()))
        } else {
            ApiError::bad_field(
                &path,
                format!(
                    "invalid value for {path}: {}",
                    strip_position(&inner.to_string())
                ),
            )
        }
    })
}

/// `details.field` for serde's "missing field `x`" errors, `{}` otherwise.
fn missing_field(message: &str) -> serde_json::Value {
    match message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        Some(field) => serde_json::json!({ "field": field }),
        None => serde_json::json!({}),
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        count: Option<u32>,
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse_json::<Body>(br#"{"email":"a","count":"3"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BAD_REQUEST);
        assert_eq!(err.details.unwrap()["field"], "count");
    }

    #[test]
    fn missing_field_and_syntax_errors() {
        let err = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(err.details.unwrap()["field"], "email");
        let err = parse_json::<Body>(br#"{"email":"#).unwrap_err();
        assert_eq!(err.message, "the request body is not valid JSON");
    }

    #[test]
    fn content_type_rules() {
        assert!(check_json_content_type(None).is_ok());
        assert!(check_json_content_type(Some("application/json; charset=utf-8")).is_ok());
        assert_eq!(
            check_json_content_type(Some("text/plain"))
                .unwrap_err()
                .http_status(),
            415
        );
    }
}

//! The studio (`/`) and the admin console (`/admin`): the pages, stylesheet and ES
//! modules of `src/web/`, embedded at compile time and served with ETag, caching and a
//! strict Content-Security-Policy.
//!
//! Pages and modules refer to each other as `…?v=__V__`; `__V__` is replaced by a hash
//! of all assets, so a versioned URL is cached for a year and a new build gets new URLs.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};
use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::Filter;

use super::{reply, with_state, State};
use crate::domain::{ApiError, ErrorCode};

#[derive(RustEmbed)]
#[folder = "src/web/"]
struct Assets;

/// One servable file.
struct Asset {
    bytes: Bytes,
    etag: String,
    content_type: &'static str,
}

/// Every asset, with the version that stands in for `__V__`.
struct Bundle {
    version: String,
    files: HashMap<String, Asset>,
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn bundle() -> &'static Bundle {
    static BUNDLE: OnceLock<Bundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let mut names: Vec<String> = Assets::iter().map(|n| n.to_string()).collect();
        names.sort();
        let mut all = Sha256::new();
        for name in &names {
            if let Some(file) = Assets::get(name) {
                all.update(name.as_bytes());
                all.update(&file.data);
            }
        }
        let version = crate::domain::hex::encode(&all.finalize()[..6]);
        let mut files = HashMap::new();
        for name in names {
            let Some(file) = Assets::get(&name) else {
                continue;
            };
            let content_type = content_type(&name);
            let bytes = if name.ends_with(".html") || name.ends_with(".js") {
                let text = String::from_utf8_lossy(&file.data).replace("__V__", &version);
                Bytes::from(text)
            } else {
                Bytes::from(file.data.into_owned())
            };
            let etag = format!(
                "\"{}\"",
                crate::domain::hex::encode(&Sha256::digest(&bytes)[..10])
            );
            files.insert(
                name,
                Asset {
                    bytes,
                    etag,
                    content_type,
                },
            );
        }
        Bundle { version, files }
    })
}

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let get_or_head = || {
        warp::get()
            .map(|| false)
            .or(warp::head().map(|| true))
            .unify()
    };
    let studio = warp::path!()
        .and(get_or_head())
        .and(warp::header::optional::<String>("if-none-match"))
        .and(with_state(state.clone()))
        .map(|head, etag, state: State| page(&state, "index.html", head, etag));
    let admin = warp::path!("admin")
        .and(get_or_head())
        .and(warp::header::optional::<String>("if-none-match"))
        .and(with_state(state))
        .map(|head, etag, state: State| page(&state, "admin.html", head, etag));
    let assets = warp::path!("assets" / ..)
        .and(warp::path::tail())
        .and(get_or_head())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("if-none-match"))
        .map(|tail: warp::path::Tail, head, query, etag| asset(tail.as_str(), head, &query, etag));
    studio.or(admin).unify().or(assets).unify()
}

/// The Content-Security-Policy of the pages: everything from this origin (and the
/// configured public URL, which upload URLs and stored images use), no inline script.
fn content_security_policy(state: &State) -> String {
    let extra = state
        .config
        .server
        .public_url
        .as_deref()
        .and_then(origin_of)
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; \
         img-src 'self' data: blob:{extra}; connect-src 'self'{extra}; font-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// `https://host:port` of a URL, if it is an http(s) URL with no unsafe characters.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split('/').next()?;
    let safe = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    safe.then(|| format!("{scheme}://{host}"))
}

fn page(state: &State, name: &str, head: bool, if_none_match: Option<String>) -> Response {
    let mut response = serve(name, head, if_none_match, "no-cache");
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(state)) {
        headers.insert("content-security-policy", csp);
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

fn asset(
    path: &str,
    head: bool,
    query: &HashMap<String, String>,
    if_none_match: Option<String>,
) -> Response {
    let versioned = query.get("v") == Some(&bundle().version);
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    serve(path, head, if_none_match, cache)
}

/// An embedded file (304 when the client has it), or 404 `NOT_FOUND`.
fn serve(name: &str, head: bool, if_none_match: Option<String>, cache: &'static str) -> Response {
    let Some(asset) = bundle().files.get(name) else {
        return reply::error(&ApiError::with_message(
            ErrorCode::NOT_FOUND,
            "no such asset",
        ));
    };
    let fresh = if_none_match
        .as_deref()
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let mut response = if fresh {
        reply::empty(304)
    } else if head {
        let mut r = reply::with_body(200, asset.content_type, Bytes::new());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(asset.bytes.len()));
        r
    } else {
        reply::with_body(200, asset.content_type, asset.bytes.clone())
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_and_module_is_embedded_with_its_version_filled_in() {
        let bundle = bundle();
        for name in [
            "index.html",
            "admin.html",
            "app.css",
            "js/studio.js",
            "js/admin.js",
        ] {
            let asset = bundle.files.get(name).expect(name);
            let text = String::from_utf8_lossy(&asset.bytes);
            assert!(!text.contains("__V__"), "{name} still has __V__");
        }
        assert_eq!(content_type("a.js"), "text/javascript; charset=utf-8");
    }

    #[test]
    fn origins_are_taken_only_from_plain_http_urls() {
        assert_eq!(
            origin_of("https://studio.example.com/base").as_deref(),
            Some("https://studio.example.com")
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("https://a.example.com;script-src *"), None);
    }
}

//! URL handling for the fetcher: parsing a request target, resolving redirects.

use std::net::Ipv6Addr;

use ureq::http::Uri;

use super::FetchError;

/// A parsed, validated request target.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) uri: Uri,
    /// Lower-cased host without brackets.
    pub(super) host: String,
    pub(super) port: u16,
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Target, FetchError> {
        // The fragment is never sent.
        let url = url.split('#').next().unwrap_or_default();
        let scheme_end = url
            .find(':')
            .ok_or(FetchError::InvalidUrl("not an absolute URL"))?;
        let scheme = url[..scheme_end].to_ascii_lowercase();
        if !is_scheme(&scheme) {
            return Err(FetchError::InvalidUrl("not an absolute URL"));
        }
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(FetchError::SchemeNotAllowed),
        };
        let uri: Uri = url
            .parse()
            .map_err(|_| FetchError::InvalidUrl("malformed URL"))?;
        let authority = uri
            .authority()
            .ok_or(FetchError::InvalidUrl("missing host"))?
            .as_str();
        if authority.contains('@') {
            return Err(FetchError::InvalidUrl(
                "credentials in URLs are not accepted",
            ));
        }
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() || host.contains('%') {
            return Err(FetchError::InvalidUrl("invalid host"));
        }
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(FetchError::InvalidUrl("invalid port"))?,
        };
        let host = host.to_ascii_lowercase();
        Ok(Target { uri, host, port })
    }

    fn scheme(&self) -> &str {
        self.uri.scheme_str().unwrap_or("http")
    }
}

/// `true` for an RFC 3986 scheme: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
pub(super) fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Splits `host[:port]` / `[v6][:port]`, returning the host without brackets.
pub(super) fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), FetchError> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or(FetchError::InvalidUrl("invalid host"))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(FetchError::InvalidUrl("invalid host")),
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(FetchError::InvalidUrl("invalid IPv6 host"));
        }
        Ok((host, port))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => Ok((h, Some(p))),
            None => Ok((authority, None)),
        }
    }
}

/// Resolves a redirect `Location` against the current target (RFC 3986 §5.2, without
/// fragments). Only `http`/`https` results are allowed.
pub(super) fn resolve_reference(base: &Target, location: &str) -> Result<String, FetchError> {
    let location = location.trim();
    let location = location.split('#').next().unwrap_or_default();
    if location.is_empty() {
        return Err(FetchError::InvalidUrl("empty redirect location"));
    }
    if let Some((scheme, _)) = location.split_once(':') {
        if is_scheme(scheme) {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(FetchError::SchemeNotAllowed);
            }
            return Ok(location.to_owned());
        }
    }
    let scheme = base.scheme();
    if location.starts_with("//") {
        return Ok(format!("{scheme}:{location}"));
    }
    let authority = base.uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let base_path = base.uri.path();
    let (path, query) = match location.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (location, None),
    };
    let merged = if path.is_empty() {
        // `?x` keeps the base path.
        base_path.to_owned()
    } else if path.starts_with('/') {
        remove_dot_segments(path)
    } else {
        let dir = match base_path.rfind('/') {
            Some(i) => &base_path[..=i],
            None => "/",
        };
        remove_dot_segments(&format!("{dir}{path}"))
    };
    let mut out = format!("{scheme}://{authority}{merged}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path.
pub(super) fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::from("/");
    result.push_str(&out.join("/"));
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

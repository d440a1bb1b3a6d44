//! SSRF-safe fetching of user-supplied image URLs.
//!
//! A seller may hand the studio a URL instead of uploading a photo. Fetching it from the
//! server is a classic server-side request forgery hole: the URL may point at the
//! loopback interface, the cloud metadata service (`169.254.169.254`), a private network,
//! or be spelt to dodge a naive check (`http://2130706433/`, `http://0x7f.1/`,
//! `http://[::ffff:127.0.0.1]/`). [`Fetcher::fetch_image`] closes that hole:
//!
//! * only `http` and `https` URLs, without credentials, are accepted;
//! * the host is turned into addresses first — numeric spellings are parsed the way a
//!   browser or libc would ([`parse_host_ip`]), names go through a [`HostResolver`] —
//!   and the request is refused if **any** address is [blocked](is_blocked);
//! * the connection is made to exactly the addresses that were checked (ureq's own name
//!   lookup is replaced by a pinned resolver), so DNS rebinding between check and
//!   connect is impossible, while the `Host` header (and TLS SNI) still carry the URL's
//!   host name;
//! * redirects are followed by hand, every hop re-checked, at most
//!   [`FetchPolicy::max_redirects`];
//! * one deadline ([`FetchPolicy::timeout`]) covers name lookups, connects, redirects and
//!   the body;
//! * the body is streamed and reading stops (and the connection is dropped) as soon as it
//!   passes [`FetchPolicy::max_bytes`];
//! * the content must be a PNG, JPEG or WebP image by its magic bytes, whatever the
//!   server's `Content-Type` says.
//!
//! [`Fetcher::fetch_image`] blocks; call it from async code through
//! `tokio::task::spawn_blocking`.
//!
//! Note: `https` URLs need a TLS backend in ureq (its `rustls` or `native-tls`
//! feature). When the build has none, such fetches fail with `connect_failed`.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Recognises PNG, JPEG and WebP by their magic bytes (defined with storage).
pub use crate::storage::sniff_image;

/// The `Accept` header sent with every request.
const ACCEPT: &str = "image/png, image/jpeg, image/webp";

/// How many addresses of one host are kept (ureq's own limit).
const MAX_ADDRS: usize = 16;

/// Bytes needed to recognise every supported image format.
const SNIFF_LEN: usize = 12;

/// Limits applied to one [`Fetcher::fetch_image`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Lift the address rule entirely (loopback, private, link-local … become reachable).
    /// For local development only.
    pub allow_private: bool,
    /// Deadline for the whole fetch: name lookups, connects, every redirect and the body.
    pub timeout: Duration,
    /// Largest accepted body in bytes; reading stops as soon as it is exceeded.
    pub max_bytes: u64,
    /// Redirects followed at most; one more is refused with `too_many_redirects`.
    pub max_redirects: u8,
}

impl Default for FetchPolicy {
    /// `allow_private: false`, 10 s, 10 MiB, 3 redirects.
    fn default() -> Self {
        FetchPolicy {
            allow_private: false,
            timeout: Duration::from_secs(10),
            max_bytes: 10 * 1024 * 1024,
            max_redirects: 3,
        }
    }
}

/// An image fetched by [`Fetcher::fetch_image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedImage {
    /// The body, exactly as served.
    pub bytes: Vec<u8>,
    /// The type found by sniffing the bytes: `image/png`, `image/jpeg` or `image/webp`.
    pub content_type: &'static str,
    /// The URL the image was finally served from, after redirects.
    pub final_url: String,
}

/// Why a fetch was refused or failed.
///
/// [`FetchError::reason`] is a stable machine-readable code; the `Display` text is meant
/// for the user and never contains URL credentials, query strings or resolved internal
/// addresses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL (or a redirect's `Location`) could not be parsed, carries credentials or
    /// has an invalid host.
    #[error("invalid image URL: {0}")]
    InvalidUrl(&'static str),
    /// The URL's scheme is neither `http` nor `https`.
    #[error("only http and https image URLs are allowed")]
    SchemeNotAllowed,
    /// The host is, or resolves to, a loopback, private, link-local or otherwise reserved
    /// address.
    #[error("the address of {host} is not allowed")]
    AddressBlocked {
        /// The host name (or literal) from the URL.
        host: String,
    },
    /// The host name could not be resolved.
    #[error("could not resolve {host}")]
    DnsFailed {
        /// The host name from the URL.
        host: String,
    },
    /// More redirects than [`FetchPolicy::max_redirects`].
    #[error("too many redirects (at most {max} are followed)")]
    TooManyRedirects {
        /// The limit that was exceeded.
        max: u8,
    },
    /// The body is larger than [`FetchPolicy::max_bytes`].
    #[error("the image is larger than {max_bytes} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        max_bytes: u64,
    },
    /// The fetch did not finish within [`FetchPolicy::timeout`].
    #[error("fetching the image timed out")]
    Timeout,
    /// The content is not a PNG, JPEG or WebP image.
    #[error("the URL does not point to a PNG, JPEG or WebP image")]
    NotAnImage,
    /// The server answered with a status other than success or redirect.
    #[error("the image server answered with HTTP status {status}")]
    HttpStatus {
        /// The HTTP status code.
        status: u16,
    },
    /// No connection could be made (refused, unreachable, TLS unavailable …).
    #[error("could not connect to {host}")]
    ConnectFailed {
        /// The host name from the URL.
        host: String,
    },
    /// The connection broke or the server spoke malformed HTTP.
    #[error("the image server sent a malformed or incomplete response")]
    Upstream,
}

impl FetchError {
    /// A stable, machine-readable code: `invalid_url`, `scheme_not_allowed`,
    /// `address_blocked`, `dns_failed`, `too_many_redirects`, `too_large`, `timeout`,
    /// `not_an_image`, `http_status`, `connect_failed` or `upstream_error`.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl(_) => "invalid_url",
            FetchError::SchemeNotAllowed => "scheme_not_allowed",
            FetchError::AddressBlocked { .. } => "address_blocked",
            FetchError::DnsFailed { .. } => "dns_failed",
            FetchError::TooManyRedirects { .. } => "too_many_redirects",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Timeout => "timeout",
            FetchError::NotAnImage => "not_an_image",
            FetchError::HttpStatus { .. } => "http_status",
            FetchError::ConnectFailed { .. } => "connect_failed",
            FetchError::Upstream => "upstream_error",
        }
    }
}

/// Turns a host name into IP addresses. Pluggable so tests (or deployments with their
/// own name service) can decide what a name means.
pub trait HostResolver: Send + Sync {
    /// All addresses of `host` (never bracketed, never a numeric literal — those are
    /// parsed by the fetcher itself). `port` is informational.
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver (`getaddrinfo` through [`ToSocketAddrs`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        Ok((host, port).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// A fixed table from host name to addresses; unknown names fail to resolve. Meant for
/// tests: `StaticResolver::new().with("images.example.com", [127.0.0.1])`.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    map: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the addresses of `host` (matched case-insensitively).
    pub fn with(mut self, host: &str, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.insert(host, ips);
        self
    }

    /// Adds (or replaces) the addresses of `host` (matched case-insensitively).
    pub fn insert(&mut self, host: &str, ips: impl IntoIterator<Item = IpAddr>) {
        self.map
            .insert(host.to_ascii_lowercase(), ips.into_iter().collect());
    }
}

impl HostResolver for StaticResolver {
    fn resolve(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        self.map
            .get(&host.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host not in table"))
    }
}

/// Fetches user-supplied image URLs under a [`FetchPolicy`]. Cheap to share: clone the
/// `Arc` or keep one per server.
#[derive(Clone)]
pub struct Fetcher {
    policy: FetchPolicy,
    resolver: Arc<dyn HostResolver>,
    allowed_ips: Vec<IpAddr>,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("policy", &self.policy)
            .field("allowed_ips", &self.allowed_ips)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher using the system resolver.
    pub fn new(policy: FetchPolicy) -> Self {
        Self::with_resolver(policy, Arc::new(SystemResolver))
    }

    /// A fetcher resolving names through `resolver`.
    pub fn with_resolver(policy: FetchPolicy, resolver: Arc<dyn HostResolver>) -> Self {
        Fetcher {
            policy,
            resolver,
            allowed_ips: Vec::new(),
        }
    }

    /// Exempts these exact addresses from the address rule (e.g. one internal image
    /// host you trust). Every other address is still checked with [`is_blocked`]. An
    /// IPv4 entry also covers its IPv4-mapped IPv6 form.
    pub fn with_allowed_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.allowed_ips
            .extend(ips.into_iter().map(|ip| ip.to_canonical()));
        self
    }

    /// The policy this fetcher applies.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Whether a connection to `ip` is permitted under this fetcher's policy.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.policy.allow_private
            || self.allowed_ips.contains(&ip.to_canonical())
            || !is_blocked(ip)
    }

    /// Fetches `url` and returns the image, following at most
    /// [`FetchPolicy::max_redirects`] redirects, every hop checked against the address
    /// rule. Blocks the calling thread for at most about [`FetchPolicy::timeout`].
    pub fn fetch_image(&self, url: &str) -> Result<FetchedImage, FetchError> {
        let deadline = Instant::now() + self.policy.timeout;
        let mut target = Target::parse(url.trim())?;
        let mut redirects: u8 = 0;
        loop {
            let addrs = self.checked_addrs(&target, deadline)?;
            match self.exchange(&target, addrs, deadline)? {
                Hop::Image(bytes, content_type) => {
                    return Ok(FetchedImage {
                        bytes,
                        content_type,
                        final_url: target.uri.to_string(),
                    })
                }
                Hop::Redirect(location) => {
                    if redirects >= self.policy.max_redirects {
                        return Err(FetchError::TooManyRedirects {
                            max: self.policy.max_redirects,
                        });
                    }
                    redirects += 1;
                    let next = resolve_reference(&target, &location)?;
                    target = Target::parse(&next)?;
                }
            }
        }
    }

    /// Resolves the target's host (or parses its numeric spelling) and checks every
    /// address; these are the only addresses the request may then connect to.
    fn checked_addrs(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<ResolvedSocketAddrs, FetchError> {
        let ips = match parse_host_ip(&target.host) {
            Some(ip) => vec![ip],
            None => {
                if ends_in_number(&target.host) {
                    // `1.2.3.999`, `0x1g`, `99999999999`: a browser rejects these; a
                    // resolver might do anything with them.
                    return Err(FetchError::InvalidUrl("malformed numeric host"));
                }
                self.resolve_with_deadline(target, deadline)?
            }
        };
        if ips.is_empty() {
            return Err(FetchError::DnsFailed {
                host: target.host.clone(),
            });
        }
        if let Some(bad) = ips.iter().find(|ip| !self.is_allowed(**ip)) {
            tracing::debug!(host = %target.host, ip = %bad, "image fetch refused: blocked address");
            return Err(FetchError::AddressBlocked {
                host: target.host.clone(),
            });
        }
        let mut out = ResolvedSocketAddrs::from_fn(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut seen: Vec<IpAddr> = Vec::new();
        for ip in ips {
            if seen.contains(&ip) || seen.len() >= MAX_ADDRS {
                continue;
            }
            seen.push(ip);
            out.push(SocketAddr::new(ip, target.port));
        }
        Ok(out)
    }

    /// Runs the resolver on a helper thread so a hanging lookup cannot outlive the
    /// deadline.
    fn resolve_with_deadline(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, FetchError> {
        let remaining = remaining(deadline)?;
        let dns_failed = || FetchError::DnsFailed {
            host: target.host.clone(),
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let resolver = Arc::clone(&self.resolver);
        let host = target.host.clone();
        let port = target.port;
        thread::Builder::new()
            .name("image-fetch-dns".into())
            .spawn(move || {
                let _ = tx.send(resolver.resolve(&host, port));
            })
            .map_err(|_| dns_failed())?;
        match rx.recv_timeout(remaining) {
            Ok(Ok(ips)) => Ok(ips),
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => Err(dns_failed()),
            Err(RecvTimeoutError::Timeout) => Err(FetchError::Timeout),
        }
    }

    /// One request/response to pre-checked addresses.
    fn exchange(
        &self,
        target: &Target,
        addrs: ResolvedSocketAddrs,
        deadline: Instant,
    ) -> Result<Hop, FetchError> {
        let config = Config::builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .accept(ACCEPT)
            .max_idle_connections(0)
            .timeout_global(Some(remaining(deadline)?))
            .build();
        let agent =
            ureq::Agent::with_parts(config, DefaultConnector::new(), PinnedResolver { addrs });
        let response = agent
            .get(target.uri.clone())
            .call()
            .map_err(|e| map_call_error(e, target))?;

        let status = response.status();
        if status.is_redirection() {
            if let Some(location) = response.headers().get(ureq::http::header::LOCATION) {
                let location = location
                    .to_str()
                    .map_err(|_| FetchError::InvalidUrl("malformed redirect location"))?;
                return Ok(Hop::Redirect(location.to_owned()));
            }
        }
        if !status.is_success() {
            return Err(FetchError::HttpStatus {
                status: status.as_u16(),
            });
        }

        let max_bytes = self.policy.max_bytes;
        let declared = response
            .headers()
            .get(ureq::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_bytes) {
            return Err(FetchError::TooLarge { max_bytes });
        }

        let mut reader = response.into_body().into_reader();
        let capacity = declared.unwrap_or(64 * 1024).min(max_bytes);
        let mut bytes: Vec<u8> = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        let mut chunk = vec![0u8; 16 * 1024];
        let mut content_type = None;
        loop {
            remaining(deadline)?;
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(map_body_error(e)),
            };
            if bytes.len() as u64 + n as u64 > max_bytes {
                // Dropping the reader here closes the connection unread.
                return Err(FetchError::TooLarge { max_bytes });
            }
            bytes.extend_from_slice(&chunk[..n]);
            if content_type.is_none() && bytes.len() >= SNIFF_LEN {
                // Refuse early rather than download megabytes of HTML.
                content_type = Some(sniff_image(&bytes).ok_or(FetchError::NotAnImage)?);
            }
        }
        let content_type = match content_type {
            Some(ct) => ct,
            None => sniff_image(&bytes).ok_or(FetchError::NotAnImage)?,
        };
        Ok(Hop::Image(bytes, content_type))
    }
}

/// What one hop produced.
enum Hop {
    Image(Vec<u8>, &'static str),
    Redirect(String),
}

/// Time left before `deadline`, or the timeout error.
fn remaining(deadline: Instant) -> Result<Duration, FetchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(FetchError::Timeout)
    } else {
        Ok(left)
    }
}

fn is_timeout(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ),
        _ => false,
    }
}

fn map_call_error(e: ureq::Error, target: &Target) -> FetchError {
    if is_timeout(&e) {
        return FetchError::Timeout;
    }
    tracing::debug!(host = %target.host, error = %e, "image fetch failed");
    match e {
        ureq::Error::Protocol(_)
        | ureq::Error::LargeResponseHeader(..)
        | ureq::Error::BodyStalled
        | ureq::Error::Http(_) => FetchError::Upstream,
        ureq::Error::Io(ref io)
            if matches!(
                io.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            FetchError::Upstream
        }
        _ => FetchError::ConnectFailed {
            host: target.host.clone(),
        },
    }
}

fn map_body_error(e: io::Error) -> FetchError {
    let e = ureq::Error::from(e);
    if is_timeout(&e) {
        FetchError::Timeout
    } else {
        tracing::debug!(error = %e, "image body read failed");
        FetchError::Upstream
    }
}

/// A ureq resolver that ignores the URI and returns the addresses checked beforehand.
#[derive(Debug)]
struct PinnedResolver {
    addrs: ResolvedSocketAddrs,
}

impl Resolver for PinnedResolver {
    fn resolve(
        &self,
        _uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if self.addrs.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        let mut out = self.empty();
        for addr in self.addrs.iter() {
            out.push(*addr);
        }
        Ok(out)
    }
}

/// A parsed, validated request target.
#[derive(Debug)]
struct Target {
    uri: Uri,
    /// Lower-cased host without brackets.
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Target, FetchError> {
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
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Splits `host[:port]` / `[v6][:port]`, returning the host without brackets.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), FetchError> {
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
fn resolve_reference(base: &Target, location: &str) -> Result<String, FetchError> {
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
fn remove_dot_segments(path: &str) -> String {
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

/// Parses a URL host that is an IP address in any spelling a browser or libc accepts:
/// IPv6 literals with or without brackets (`[::ffff:127.0.0.1]`), and IPv4 in the
/// WHATWG/`inet_aton` forms — one to four dot-separated parts, each decimal, octal
/// (leading `0`) or hex (`0x`), the last part filling the remaining bytes
/// (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`), with one trailing dot allowed.
/// Returns `None` for host names (and for malformed numbers).
pub fn parse_host_ip(host: &str) -> Option<IpAddr> {
    let host = host.trim();
    if let Some(inner) = host.strip_prefix('[') {
        return inner
            .strip_suffix(']')?
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6);
    }
    if host.contains(':') {
        return host.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    parse_ipv4(host).map(IpAddr::V4)
}

/// The WHATWG URL standard's IPv4 parser (which matches `inet_aton`).
fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        numbers.push(parse_ipv4_number(part)?);
    }
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|n| *n > 255) {
        return None;
    }
    let last_bits = 8 * (5 - numbers.len() as u32);
    if last_bits < 64 && *last >= 1u64 << last_bits {
        return None;
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value += n << (8 * (3 - i as u32));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// One IPv4 part: decimal, `0`-prefixed octal or `0x`-prefixed hex.
fn parse_ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// WHATWG "ends in a number": the last label is all digits or `0x`+hex. Such a host
/// must be a valid IPv4 address, never a name.
fn ends_in_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or_default();
    if !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Blocked IPv4 ranges as (network, prefix length).
const BLOCKED_V4: &[(u32, u32)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network", incl. unspecified
    (0x0A00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 CGNAT
    (0x7F00_0000, 8),  // 127.0.0.0/8 loopback
    (0xA9FE_0000, 16), // 169.254.0.0/16 link-local (cloud metadata)
    (0xAC10_0000, 12), // 172.16.0.0/12 private
    (0xC000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xC000_0200, 24), // 192.0.2.0/24 TEST-NET-1
    (0xC058_6300, 24), // 192.88.99.0/24 6to4 relay anycast
    (0xC0A8_0000, 16), // 192.168.0.0/16 private
    (0xC612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xC633_6400, 24), // 198.51.100.0/24 TEST-NET-2
    (0xCB00_7100, 24), // 203.0.113.0/24 TEST-NET-3
    (0xE000_0000, 4),  // 224.0.0.0/4 multicast
    (0xF000_0000, 4),  // 240.0.0.0/4 reserved, incl. 255.255.255.255 broadcast
];

/// Blocked ranges inside IPv6 global unicast (2000::/3), as (network, prefix length).
const BLOCKED_V6_GLOBAL: &[(u128, u32)] = &[
    (0x2001_0000 << 96, 23), // 2001::/23 IETF protocol assignments, incl. Teredo
    (0x2001_0db8 << 96, 32), // 2001:db8::/32 documentation
    (0x3fff_0000_0000_0000 << 64, 20), // 3fff::/20 documentation
];

fn in_v4(ip: u32, net: u32, prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    ip & mask == net & mask
}

fn in_v6(ip: u128, net: u128, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    ip & mask == net & mask
}

/// Whether `ip` must not be fetched from: loopback, private, CGNAT, link-local,
/// unspecified, "this network", multicast, broadcast, reserved and documentation ranges
/// (IPv4); and for IPv6 everything outside global unicast `2000::/3` (loopback,
/// unspecified, unique-local `fc00::/7`, link-local `fe80::/10`, multicast, discard,
/// IPv4-compatible `::/96` …) plus the IETF, Teredo and documentation blocks. IPv6 forms
/// that embed an IPv4 address — mapped `::ffff:0:0/96`, translated `::ffff:0:0:0/96`,
/// NAT64 `64:ff9b::/96` and 6to4 `2002::/16` — are judged by the embedded address.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => is_blocked_v6(v6),
    }
}

fn is_blocked_v4(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    BLOCKED_V4
        .iter()
        .any(|(net, prefix)| in_v4(n, *net, *prefix))
}

fn is_blocked_v6(ip: Ipv6Addr) -> bool {
    let n = u128::from(ip);
    let low32 = Ipv4Addr::from((n & 0xFFFF_FFFF) as u32);
    // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (SIIT translated).
    if in_v6(n, 0xFFFF << 32, 96) || in_v6(n, 0xFFFF << 48, 96) {
        return is_blocked_v4(low32);
    }
    // 64:ff9b::a.b.c.d, the NAT64 well-known prefix.
    if in_v6(n, 0x0064_ff9b << 96, 96) {
        return is_blocked_v4(low32);
    }
    // Only global unicast is fetchable; this covers ::, ::1, ::/96 (IPv4-compatible),
    // 64:ff9b:1::/48, 100::/64, fc00::/7, fe80::/10, fec0::/10, ff00::/8 and the rest.
    if !in_v6(n, 0x2000 << 112, 3) {
        return true;
    }
    // 2002:AABB:CCDD::/48 is 6to4 for AA.BB.CC.DD.
    if in_v6(n, 0x2002 << 112, 16) {
        return is_blocked_v4(Ipv4Addr::from(((n >> 80) & 0xFFFF_FFFF) as u32));
    }
    BLOCKED_V6_GLOBAL
        .iter()
        .any(|(net, prefix)| in_v6(n, *net, *prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        parse_host_ip(s).unwrap_or_else(|| panic!("test literal {s} should parse"))
    }

    #[test]
    fn blocked_addresses() {
        let blocked = [
            // IPv4 ranges, edges included.
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "192.168.255.255",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // Numeric spellings of loopback / private.
            "2130706433",
            "0x7f.1",
            "0x7f000001",
            "0177.0.0.1",
            "0177.1",
            "127.1",
            "127.0.1",
            "0x7F.0.0.0x1",
            "017700000001",
            "127.0.0.1.",
            "0",
            "0x0",
            "3232235521", // 192.168.0.1
            "0xa9.0xfe.0xa9.0xfe",
            "0251.0376.0251.0376", // 169.254.169.254 in octal
            // IPv6.
            "::",
            "::1",
            "[::1]",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "64:ff9b:1::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "3fff::1",
            // IPv4-mapped, translated, compatible, NAT64 and 6to4 forms.
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
            "::ffff:7f00:1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:192.168.1.1",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::ffff:255.255.255.255",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::8.8.8.8",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2002:a9fe:a9fe::",
        ];
        for s in blocked {
            assert!(is_blocked(ip(s)), "{s} must be blocked");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "0x08080808",
            "134744072", // 8.8.8.8
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1",
            "[2606:4700:4700::1111]",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ];
        for s in public {
            assert!(!is_blocked(ip(s)), "{s} must be allowed");
        }
    }

    #[test]
    fn numeric_spellings_parse_like_a_browser() {
        let cases = [
            ("2130706433", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
            ("1.2.3.4.", "1.2.3.4"),
            ("0x", "0.0.0.0"),
            ("192.168.257", "192.168.1.1"),
            ("10.0x10203", "10.1.2.3"),
            ("4294967295", "255.255.255.255"),
        ];
        for (host, want) in cases {
            let want: IpAddr = want.parse().unwrap();
            assert_eq!(parse_host_ip(host), Some(want), "{host}");
        }
        assert_eq!(
            parse_host_ip("[::ffff:127.0.0.1]"),
            Some(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()))
        );
    }

    #[test]
    fn names_and_malformed_numbers_are_not_ips() {
        for host in [
            "images.example.com",
            "localhost",
            "0x7f.example",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "4294967296",
            "08.0.0.1",
            "0x1g",
            "99999999999999999999999",
            "",
            "[::1",
            "[not-v6]",
        ] {
            assert_eq!(parse_host_ip(host), None, "{host:?}");
        }
        assert!(ends_in_number("1.2.3.256"));
        assert!(ends_in_number("example.0x10"));
        assert!(ends_in_number("99999999999999999999999"));
        assert!(!ends_in_number("images.example.com"));
        assert!(!ends_in_number("0x1g"));
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            sniff_image(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some("image/png")
        );
        assert_eq!(
            sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Some("image/jpeg")
        );
        assert_eq!(sniff_image(b"RIFF\x24\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"RIFF\x24\0\0\0WAVEfmt "), None);
        assert_eq!(sniff_image(b"<!doctype html>"), None);
        assert_eq!(sniff_image(b"GIF89a......"), None);
        assert_eq!(sniff_image(b""), None);
    }

    #[test]
    fn target_parsing() {
        let t = Target::parse("http://Images.Example.com:8080/a.png?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("images.example.com", 8080));
        let t = Target::parse("https://[::ffff:127.0.0.1]/a.png").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::ffff:127.0.0.1", 443));
        let t = Target::parse("http://0x7f.1/").unwrap();
        assert_eq!(parse_host_ip(&t.host), Some(ip("127.0.0.1")));

        let reason = |u: &str| Target::parse(u).map(|_| ()).unwrap_err().reason();
        assert_eq!(reason("ftp://example.com/a.png"), "scheme_not_allowed");
        assert_eq!(reason("file:///etc/passwd"), "scheme_not_allowed");
        assert_eq!(reason("gopher://127.0.0.1:6379/_x"), "scheme_not_allowed");
        assert_eq!(reason("data:image/png;base64,AAAA"), "scheme_not_allowed");
        assert_eq!(reason("/relative.png"), "invalid_url");
        assert_eq!(reason("http://user:secret@example.com/"), "invalid_url");
        assert_eq!(reason("http://:80/"), "invalid_url");
        assert_eq!(reason("http://example.com:0/"), "invalid_url");
        assert_eq!(reason("http://example.com:99999/"), "invalid_url");
        assert_eq!(reason("http://%31%32%37.0.0.1/"), "invalid_url");

        let err = Target::parse("http://user:hunter2@example.com/").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn redirect_references() {
        let base = Target::parse("http://a.example:81/dir/sub/img.png?q=1").unwrap();
        let r = |loc: &str| resolve_reference(&base, loc).unwrap();
        assert_eq!(r("http://b.example/x.png"), "http://b.example/x.png");
        assert_eq!(r("//c.example/y.png"), "http://c.example/y.png");
        assert_eq!(r("/z.png?k=v"), "http://a.example:81/z.png?k=v");
        assert_eq!(r("other.png"), "http://a.example:81/dir/sub/other.png");
        assert_eq!(r("../up.png"), "http://a.example:81/dir/up.png");
        assert_eq!(r("./same/"), "http://a.example:81/dir/sub/same/");
        assert_eq!(r("?k=2"), "http://a.example:81/dir/sub/img.png?k=2");
        assert_eq!(r("/../../x#frag"), "http://a.example:81/x");
        assert_eq!(
            resolve_reference(&base, "file:///etc/passwd")
                .unwrap_err()
                .reason(),
            "scheme_not_allowed"
        );
        assert_eq!(
            resolve_reference(&base, "").unwrap_err().reason(),
            "invalid_url"
        );
    }

    #[test]
    fn fetcher_allowlist_and_allow_private() {
        let f = Fetcher::new(FetchPolicy::default());
        assert!(!f.is_allowed(ip("127.0.0.2")));
        assert!(f.is_allowed(ip("8.8.8.8")));
        let f = f.with_allowed_ips([ip("127.0.0.2")]);
        assert!(f.is_allowed(ip("127.0.0.2")));
        assert!(f.is_allowed(ip("::ffff:127.0.0.2")));
        assert!(!f.is_allowed(ip("127.0.0.1")));
        let f = Fetcher::new(FetchPolicy {
            allow_private: true,
            ..FetchPolicy::default()
        });
        assert!(f.is_allowed(ip("127.0.0.1")));
    }

    #[test]
    fn literal_hosts_are_checked_without_resolving() {
        // A resolver that would say "public" for anything: literals must not reach it.
        struct Liar;
        impl HostResolver for Liar {
            fn resolve(&self, _: &str, _: u16) -> io::Result<Vec<IpAddr>> {
                Ok(vec![IpAddr::from([8, 8, 8, 8])])
            }
        }
        let f = Fetcher::with_resolver(FetchPolicy::default(), Arc::new(Liar));
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            let err = f.fetch_image(url).unwrap_err();
            assert_eq!(err.reason(), "address_blocked", "{url}");
        }
        assert_eq!(
            f.fetch_image("http://1.2.3.999/").unwrap_err().reason(),
            "invalid_url"
        );
    }
}

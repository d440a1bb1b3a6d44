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
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
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

mod address;
#[cfg(test)]
mod tests;
mod url;

use address::ends_in_number;
pub use address::{is_blocked, parse_host_ip};
use url::{resolve_reference, Target};

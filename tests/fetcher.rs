//! The SSRF-safe image fetcher against real sockets on the loopback interface.
//!
//! Every server here is a tiny HTTP/1.1 responder on a `std::net::TcpListener` in a
//! thread; no external service is contacted. Host names are mapped to addresses by an
//! injected [`StaticResolver`], so `images.example.com` can point at `127.0.0.1`.
//!
//! Redirect tests need a first hop that is *allowed* and a second that is *blocked*,
//! while both servers necessarily live on loopback. They use the fetcher's explicit
//! allowlist ([`Fetcher::with_allowed_ips`]): exactly `127.0.0.2` is exempted — standing
//! in for a public CDN — and every other address, `127.0.0.1` included, still goes
//! through the real `is_blocked` rule. (On Linux the whole of `127.0.0.0/8` is bound to
//! `lo`, so a listener on `127.0.0.2` needs no setup.)

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use atelier::fetch::{FetchError, FetchPolicy, Fetcher, HostResolver, StaticResolver};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const FAKE_PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    host: String,
}

type Handler = dyn Fn(&Seen, &mut TcpStream) + Send + Sync;

struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn port(&self) -> u16 {
        self.addr.port()
    }
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }
}

/// Serves every connection on `ip` with `handler`, one thread per connection.
fn serve(ip: IpAddr, handler: impl Fn(&Seen, &mut TcpStream) + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind((ip, 0)).expect("bind test listener");
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let handler: Arc<Handler> = Arc::new(handler);
    {
        let connections = connections.clone();
        let requests = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let requests = requests.clone();
                let handler = handler.clone();
                thread::spawn(move || {
                    let Some(seen) = read_head(&mut stream) else {
                        return;
                    };
                    requests.lock().unwrap().push(seen.clone());
                    handler(&seen, &mut stream);
                    let _ = stream.flush();
                    let _ = stream.shutdown(Shutdown::Write);
                });
            }
        });
    }
    Server {
        addr,
        connections,
        requests,
    }
}

/// Reads the request head; returns the path and Host header.
fn read_head(stream: &mut TcpStream) -> Option<Seen> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    Some(Seen { path, host })
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(body);
}

fn redirect(stream: &mut TcpStream, location: &str) {
    respond(stream, "302 Found", &[("Location", location)], b"");
}

/// A real PNG of noise (~48 KiB, so the body spans many reads).
fn png_bytes() -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    let img = image::RgbImage::from_fn(128, 128, |_, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let [a, b, c, _] = state.to_be_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode test PNG");
    out.into_inner()
}

fn png_server(ip: IpAddr) -> (Server, Vec<u8>) {
    let png = png_bytes();
    let body = png.clone();
    let server = serve(ip, move |_, s| {
        respond(s, "200 OK", &[("Content-Type", "image/png")], &body)
    });
    (server, png)
}

fn policy(allow_private: bool) -> FetchPolicy {
    FetchPolicy {
        allow_private,
        timeout: Duration::from_secs(5),
        ..FetchPolicy::default()
    }
}

fn fetcher(policy: FetchPolicy, resolver: StaticResolver) -> Fetcher {
    Fetcher::with_resolver(policy, Arc::new(resolver))
}

fn reason(result: Result<atelier::fetch::FetchedImage, FetchError>) -> &'static str {
    match result {
        Ok(img) => panic!("expected an error, fetched {} bytes", img.bytes.len()),
        Err(e) => e.reason(),
    }
}

// (1) A public-looking name that resolves to loopback is refused before connecting.
#[test]
fn public_name_resolving_to_loopback_is_blocked() {
    let (server, _) = png_server(LOCALHOST);
    let resolver = StaticResolver::new().with("images.example.com", [LOCALHOST]);
    let f = fetcher(policy(false), resolver);
    let url = format!("http://images.example.com:{}/photo.png", server.port());

    let err = f.fetch_image(&url).unwrap_err();
    assert_eq!(err.reason(), "address_blocked");
    let msg = err.to_string();
    assert!(msg.contains("images.example.com"), "{msg}");
    assert!(!msg.contains("127.0.0.1"), "resolved address leaked: {msg}");
    assert_eq!(
        server.connections(),
        0,
        "the server must never be contacted"
    );

    // A name resolving to several addresses is refused if any one is blocked.
    let resolver =
        StaticResolver::new().with("mixed.example.com", ["8.8.8.8".parse().unwrap(), LOCALHOST]);
    let f = fetcher(policy(false), resolver);
    let url = format!("http://mixed.example.com:{}/photo.png", server.port());
    assert_eq!(reason(f.fetch_image(&url)), "address_blocked");
    assert_eq!(server.connections(), 0);
}

// (2) With allow_private the same fetch succeeds, byte-identical, Host header intact.
#[test]
fn allow_private_fetches_the_png_byte_identical() {
    let (server, png) = png_server(LOCALHOST);
    let resolver = StaticResolver::new().with("images.example.com", [LOCALHOST]);
    let f = fetcher(policy(true), resolver);
    let url = format!("http://images.example.com:{}/photo.png", server.port());

    let img = f.fetch_image(&url).expect("fetch with allow_private");
    assert_eq!(img.bytes, png);
    assert_eq!(img.content_type, "image/png");
    assert_eq!(img.final_url, url);
    let seen = server.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/photo.png");
    assert_eq!(
        seen[0].host,
        format!("images.example.com:{}", server.port()),
        "the Host header carries the URL's name, not the pinned address"
    );
}

// The connection goes to the address that was checked: the agent never looks the name
// up again (the name does not exist in any real DNS, and the resolver would answer
// differently the second time).
#[test]
fn connects_to_the_checked_address_without_a_second_lookup() {
    struct Rebinder(AtomicUsize);
    impl HostResolver for Rebinder {
        fn resolve(&self, _: &str, _: u16) -> std::io::Result<Vec<IpAddr>> {
            let first = self.0.fetch_add(1, Ordering::SeqCst) == 0;
            Ok(vec![if first { FAKE_PUBLIC } else { LOCALHOST }])
        }
    }
    let (cdn, png) = png_server(FAKE_PUBLIC);
    let resolver = Arc::new(Rebinder(AtomicUsize::new(0)));
    let f = Fetcher::with_resolver(policy(false), resolver.clone()).with_allowed_ips([FAKE_PUBLIC]);
    let url = format!("http://rebind.invalid:{}/a.png", cdn.port());

    let img = f.fetch_image(&url).expect("fetch from the pinned address");
    assert_eq!(img.bytes, png);
    assert_eq!(resolver.0.load(Ordering::SeqCst), 1);
    assert_eq!(cdn.paths(), vec!["/a.png"]);
}

// (3) A redirect from an allowed server to a private address is refused.
#[test]
fn redirect_to_a_private_address_is_refused() {
    let (internal, _) = png_server(LOCALHOST);
    let ip_port = internal.port();
    let cdn = serve(FAKE_PUBLIC, move |seen, s| {
        let location = match seen.path.as_str() {
            "/to-name" => format!("http://internal.example.com:{ip_port}/secret.png"),
            "/to-ip" => format!("http://127.0.0.1:{ip_port}/secret.png"),
            "/to-hex" => format!("http://0x7f.1:{ip_port}/secret.png"),
            "/to-decimal" => format!("http://2130706433:{ip_port}/secret.png"),
            "/to-octal" => format!("http://0177.0.0.1:{ip_port}/secret.png"),
            "/to-mapped" => format!("http://[::ffff:127.0.0.1]:{ip_port}/secret.png"),
            "/to-metadata" => "http://169.254.169.254/latest/meta-data/".to_owned(),
            "/to-file" => "file:///etc/passwd".to_owned(),
            "/to-self" => "/ok.png".to_owned(),
            _ => {
                return respond(s, "200 OK", &[], &png_bytes());
            }
        };
        redirect(s, &location);
    });
    let resolver = StaticResolver::new()
        .with("cdn.example.com", [FAKE_PUBLIC])
        .with("internal.example.com", [LOCALHOST]);
    let f = fetcher(policy(false), resolver.clone()).with_allowed_ips([FAKE_PUBLIC]);
    let base = format!("http://cdn.example.com:{}", cdn.port());

    // Control: the first hop really is allowed, and redirects on it are followed.
    let ok = f
        .fetch_image(&format!("{base}/to-self"))
        .expect("same-host redirect");
    assert_eq!(ok.final_url, format!("{base}/ok.png"));

    for path in [
        "/to-name",
        "/to-ip",
        "/to-hex",
        "/to-decimal",
        "/to-octal",
        "/to-mapped",
        "/to-metadata",
    ] {
        let r = f.fetch_image(&format!("{base}{path}"));
        assert_eq!(reason(r), "address_blocked", "{path}");
    }
    assert_eq!(
        reason(f.fetch_image(&format!("{base}/to-file"))),
        "scheme_not_allowed"
    );
    assert_eq!(
        internal.connections(),
        0,
        "the private server must never be reached"
    );

    // Control: with the rule lifted the same redirect does reach the private server,
    // so the refusal above was the address rule and nothing else.
    let open = fetcher(policy(true), resolver);
    open.fetch_image(&format!("{base}/to-name"))
        .expect("redirect with allow_private");
    assert_eq!(internal.paths(), vec!["/secret.png"]);
}

// (4) A body past max_bytes is refused and the connection dropped mid-body.
#[test]
fn oversized_body_is_cut_off_while_streaming() {
    const TOTAL: usize = 64 * 1024 * 1024;
    let (tx, rx) = mpsc::channel::<(usize, bool)>();
    let tx = Mutex::new(tx);
    let server = serve(LOCALHOST, move |_, s| {
        // No Content-Length: the size is only discovered by reading.
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n");
        let mut chunk = vec![0x42u8; 64 * 1024];
        chunk[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
        let mut written = 0;
        let mut completed = true;
        while written < TOTAL {
            if s.write_all(&chunk).is_err() {
                completed = false;
                break;
            }
            written += chunk.len();
            chunk[..8].fill(0x42);
        }
        let _ = tx.lock().unwrap().send((written, completed));
    });
    let f = fetcher(
        FetchPolicy {
            max_bytes: 100_000,
            ..policy(true)
        },
        StaticResolver::new(),
    );

    let started = Instant::now();
    let err = f
        .fetch_image(&format!("http://127.0.0.1:{}/huge.png", server.port()))
        .unwrap_err();
    assert_eq!(err.reason(), "too_large");
    assert!(started.elapsed() < Duration::from_secs(3));

    let (written, completed) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server should notice the closed connection");
    assert!(!completed, "the server managed to send the whole body");
    assert!(written < TOTAL, "wrote {written} of {TOTAL}");

    // A declared Content-Length over the cap is refused without reading the body.
    let declared = serve(LOCALHOST, |_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n\x89PNG\r\n\x1a\n",
        );
    });
    let r = f.fetch_image(&format!("http://127.0.0.1:{}/big.png", declared.port()));
    assert_eq!(reason(r), "too_large");

    // Exactly max_bytes is fine.
    let mut exact = vec![0u8; 100_000];
    exact[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
    let body = exact.clone();
    let fits = serve(LOCALHOST, move |_, s| respond(s, "200 OK", &[], &body));
    let img = f
        .fetch_image(&format!("http://127.0.0.1:{}/fits.jpg", fits.port()))
        .expect("a body of exactly max_bytes");
    assert_eq!(img.content_type, "image/jpeg");
    assert_eq!(img.bytes, exact);
}

// (5) Content that is not PNG/JPEG/WebP is refused, whatever the Content-Type says.
#[test]
fn non_image_content_is_refused() {
    let server = serve(LOCALHOST, |seen, s| {
        let body: &[u8] = match seen.path.as_str() {
            "/page.png" => b"<!doctype html><html><body>not a picture</body></html>",
            "/anim.gif" => b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
            "/short" => b"\x89PN",
            "/empty" => b"",
            _ => b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00",
        };
        respond(s, "200 OK", &[("Content-Type", "image/png")], body);
    });
    let f = fetcher(policy(true), StaticResolver::new());
    let base = format!("http://127.0.0.1:{}", server.port());
    for path in ["/page.png", "/anim.gif", "/short", "/empty"] {
        assert_eq!(
            reason(f.fetch_image(&format!("{base}{path}"))),
            "not_an_image",
            "{path}"
        );
    }
    let webp = f.fetch_image(&format!("{base}/ok.webp")).expect("webp");
    assert_eq!(webp.content_type, "image/webp");
}

// (6) The 4th redirect is refused; 3 are followed.
#[test]
fn fourth_redirect_is_too_many() {
    // /cK/N redirects to /cK/N+1 until N == K, which serves the image.
    let server = serve(LOCALHOST, |seen, s| {
        let parsed = seen
            .path
            .strip_prefix("/c")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(k, n)| Some((k.parse::<u32>().ok()?, n.parse::<u32>().ok()?)));
        match parsed {
            Some((k, n)) if n < k => redirect(s, &format!("/c{k}/{}", n + 1)),
            _ => respond(s, "200 OK", &[], &png_bytes()),
        }
    });
    let resolver = StaticResolver::new().with("hops.example.com", [LOCALHOST]);
    let f = fetcher(policy(true), resolver);
    let base = format!("http://hops.example.com:{}", server.port());

    let img = f
        .fetch_image(&format!("{base}/c3/0"))
        .expect("three redirects are followed");
    assert_eq!(img.final_url, format!("{base}/c3/3"));

    let err = f.fetch_image(&format!("{base}/c4/0")).unwrap_err();
    assert_eq!(err.reason(), "too_many_redirects");
    let paths = server.paths();
    assert!(paths.contains(&"/c4/3".to_owned()));
    assert!(
        !paths.contains(&"/c4/4".to_owned()),
        "the 4th redirect must not be followed: {paths:?}"
    );

    let none = fetcher(
        FetchPolicy {
            max_redirects: 0,
            ..policy(true)
        },
        StaticResolver::new().with("hops.example.com", [LOCALHOST]),
    );
    assert_eq!(
        reason(none.fetch_image(&format!("{base}/c1/0"))),
        "too_many_redirects"
    );
}

// (7) A slow server (or resolver) runs into the configured timeout.
#[test]
fn slow_server_times_out() {
    let server = serve(LOCALHOST, |seen, s| {
        if seen.path == "/stall-body" {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n\x89PNG\r\n\x1a\n",
            );
            let _ = s.flush();
        }
        thread::sleep(Duration::from_secs(6));
        respond(s, "200 OK", &[], &png_bytes());
    });
    let timeout = Duration::from_secs(1);
    let f = fetcher(
        FetchPolicy {
            timeout,
            ..policy(true)
        },
        StaticResolver::new(),
    );
    for path in ["/stall-headers", "/stall-body"] {
        let started = Instant::now();
        let r = f.fetch_image(&format!("http://127.0.0.1:{}{path}", server.port()));
        let took = started.elapsed();
        assert_eq!(reason(r), "timeout", "{path}");
        assert!(
            took >= timeout - Duration::from_millis(50),
            "{path}: {took:?}"
        );
        assert!(took < Duration::from_millis(2500), "{path}: {took:?}");
    }

    struct SlowDns;
    impl HostResolver for SlowDns {
        fn resolve(&self, _: &str, _: u16) -> std::io::Result<Vec<IpAddr>> {
            thread::sleep(Duration::from_secs(6));
            Ok(vec![LOCALHOST])
        }
    }
    let f = Fetcher::with_resolver(
        FetchPolicy {
            timeout,
            ..policy(true)
        },
        Arc::new(SlowDns),
    );
    let started = Instant::now();
    assert_eq!(
        reason(f.fetch_image("http://slow-dns.example.com/a.png")),
        "timeout"
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
}

// The remaining reasons: scheme, DNS, HTTP status, refused connection.
#[test]
fn other_refusals_have_their_reasons() {
    let server = serve(LOCALHOST, |_, s| respond(s, "404 Not Found", &[], b"nope"));
    let f = fetcher(
        policy(true),
        StaticResolver::new().with("images.example.com", [LOCALHOST]),
    );
    for url in [
        "ftp://images.example.com/a.png",
        "file:///etc/passwd",
        "gopher://images.example.com/",
    ] {
        assert_eq!(reason(f.fetch_image(url)), "scheme_not_allowed", "{url}");
    }
    assert_eq!(
        reason(f.fetch_image("http://unknown.example.com/a.png")),
        "dns_failed"
    );
    let err = f
        .fetch_image(&format!(
            "http://images.example.com:{}/gone.png",
            server.port()
        ))
        .unwrap_err();
    assert_eq!(err.reason(), "http_status");
    assert!(err.to_string().contains("404"));

    let closed_port = {
        let l = TcpListener::bind((LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    assert_eq!(
        reason(f.fetch_image(&format!("http://127.0.0.1:{closed_port}/a.png"))),
        "connect_failed"
    );

    let err = f
        .fetch_image("http://user:hunter2@images.example.com/a.png")
        .unwrap_err();
    assert_eq!(err.reason(), "invalid_url");
    assert!(!err.to_string().contains("hunter2"));
}

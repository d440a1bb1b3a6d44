use std::net::Ipv4Addr;

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

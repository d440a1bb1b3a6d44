//! Which addresses the fetcher may connect to, and how numeric hosts are spelt.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
pub(super) fn ends_in_number(host: &str) -> bool {
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

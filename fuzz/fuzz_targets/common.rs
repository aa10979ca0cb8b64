//! What the datagram fuzz targets share: how fuzz input becomes a sequence of datagrams from a
//! few exporters (included by `datagram.rs` and `decoder_diff.rs` with `#[path]`).
//!
//! Input layout: pieces separated by `#DG#`; the first piece is the target's own configuration,
//! each further piece one datagram (at most [`MAX_DATAGRAMS`]) from one of [`exporters`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const MARKER: &[u8] = b"#DG#";
pub const MAX_DATAGRAMS: usize = 64;

pub fn exporters() -> [SocketAddr; 8] {
    let v4 = |a, b, c, d, port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port);
    let v6 = |s: &str, port| SocketAddr::new(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()), port);
    [
        v4(192, 0, 2, 1, 2055),
        v4(192, 0, 2, 2, 2055),
        // Same address, another port: another template scope, same sampler.
        v4(192, 0, 2, 1, 9995),
        v6("2001:db8::1", 4739),
        // IPv4-mapped form of exporter 0 (a dual-stack socket): sampler 192.0.2.1.
        v6("::ffff:192.0.2.1", 2055),
        v4(10, 0, 0, 1, 2055),
        v4(198, 51, 100, 7, 4739),
        v6("2001:db8::2", 2055),
    ]
}

pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(MARKER.len()).position(|w| w == MARKER) {
        pieces.push(&rest[..i]);
        rest = &rest[i + MARKER.len()..];
    }
    pieces.push(rest);
    pieces
}

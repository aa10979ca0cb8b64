//! goflow2 JSON lines → [`Flow`] records.
//!
//! Owns the mapping from goflow2's JSON keys and renderings to the flow record. It does not read
//! lines (that is [`crate::input::stdin`]) and does not count anything (errors are returned as an
//! [`ErrorType`]).
//!
//! What goflow2 (v2.x, `-format json`) prints, as far as this module relies on it: one compact
//! JSON object per line; without a `-mapping` file all 50 keys, always in the order of
//! `GOFLOW2_ORDER`, zero and empty values included. Addresses are strings, `""` when absent;
//! `proto` is an IANA keyword (`"TCP"`, `"IPv6-ICMP"`; v2.0-v2.1 used a few other names);
//! `time_*_ns` are integers above 2^53; `bytes`/`packets` are unscaled and `sampling_rate` 0
//! means unknown (the consumer scales). goflow v1 printed CamelCase keys (`SrcAddr`, `Bytes`),
//! times in seconds, and `Type`/`Proto` as numbers.
//!
//! Decisions:
//! - Keys are matched by name, in any order; unknown keys are skipped and missing keys take their
//!   zero value, because a goflow2 `-mapping` file can rename, drop or add keys.
//! - Values are deserialized borrowed from the line: addresses are parsed straight from the JSON
//!   string slice and names are matched in place, so a line costs no heap allocation.
//! - `proto` and `type` are accepted as names or numbers (mappings and goflow v1 emit numbers).
//!   goflow v1's CamelCase keys are accepted as aliases; its times are in seconds.
//! - Two objects on one line (`}{`, possible with goflow2's unlocked file writes) are both decoded.
//! - A hand-written fast path (`decode_fast`) tries each line first: one compact object with plain
//!   strings and integers, keys checked against goflow2's fixed key order before being matched by
//!   name. It exists for throughput: the stdin path targets 1M lines/s per core, and serde's
//!   struct dispatch, key matching and string skipping took about 60% of the time. It only says
//!   "this flow" or "not sure"; on "not sure" the serde path runs, which stays the reference for
//!   what a line means and the only place where errors are classified.
//! - Not a SIMD JSON crate instead of both paths: `sonic-rs` (serde derive) and `simd-json`
//!   (serde, or its tape walked by hand) each measured about 0.5M lines/s on the stdin
//!   benchmark, no faster than serde_json alone and 0.23-0.42 of the fast path in the same runs
//!   (BENCHMARKS.md, "stdin path"): on ~1 KB lines of 50 short values the per-key and per-value
//!   work dominates, not the scanning that SIMD speeds up.

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::ErrorType;
use crate::flow::{Flow, FlowType, unmap_v4};
use crate::names::protocol_from_name;

/// Decodes one line (without its `\n`) and appends its flows to `out`.
///
/// A line normally holds one object; `}{`-joined objects each give a flow. On error the flows
/// decoded before the bad object are kept in `out` and the error is returned.
pub fn decode_line(line: &[u8], out: &mut Vec<Flow>) -> Result<(), ErrorType> {
    let text = std::str::from_utf8(line).map_err(|_| ErrorType::InvalidUtf8)?;
    if let Some(flow) = decode_fast(text) {
        out.push(flow);
        return Ok(());
    }
    decode_serde(text, out)
}

/// The reference decoder (serde): any number of `}{`-joined objects, with error classification.
fn decode_serde(text: &str, out: &mut Vec<Flow>) -> Result<(), ErrorType> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Line<'_>>();
    let mut first = true;
    loop {
        // Only objects are flows. Checking the first byte of every value keeps `123` or `[..]`
        // from being reported as a field error by serde's "invalid type: expected struct", and
        // an array after an object (`{..}[..]`) from being decoded as a flow: serde maps a
        // sequence onto the struct's fields in order. (Found by the json_line fuzz target.)
        let rest = text[stream.byte_offset()..].trim_start_matches([' ', '\t', '\n', '\r']);
        match rest.as_bytes().first() {
            Some(b'{') => {}
            None if !first => return Ok(()),
            _ => return Err(ErrorType::InvalidJson),
        }
        first = false;
        match stream.next() {
            Some(Ok(line)) => out.push(line.into_flow()),
            Some(Err(e)) => {
                return Err(match e.classify() {
                    serde_json::error::Category::Data => ErrorType::InvalidField,
                    _ => ErrorType::InvalidJson,
                });
            }
            None => return Ok(()),
        }
    }
}

/// The keys we use, borrowed from the line. Everything else is skipped by serde.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Line<'a> {
    #[serde(rename = "type", alias = "Type")]
    flow_type: TypeField,
    time_received_ns: Nanos,
    #[serde(rename = "TimeReceived")]
    v1_time_received_s: u64,
    #[serde(alias = "SamplingRate")]
    sampling_rate: u64,
    #[serde(alias = "SamplerAddress", borrow)]
    sampler_address: Addr<'a>,
    time_flow_start_ns: Nanos,
    #[serde(rename = "TimeFlowStart")]
    v1_time_flow_start_s: u64,
    time_flow_end_ns: Nanos,
    #[serde(rename = "TimeFlowEnd")]
    v1_time_flow_end_s: u64,
    #[serde(alias = "Bytes")]
    bytes: u64,
    #[serde(alias = "Packets")]
    packets: u64,
    #[serde(alias = "SrcAddr", borrow)]
    src_addr: Addr<'a>,
    #[serde(alias = "DstAddr", borrow)]
    dst_addr: Addr<'a>,
    #[serde(alias = "Proto")]
    proto: ProtoField,
    #[serde(alias = "SrcPort")]
    src_port: u16,
    #[serde(alias = "DstPort")]
    dst_port: u16,
    #[serde(alias = "InIf")]
    in_if: u32,
    #[serde(alias = "OutIf")]
    out_if: u32,
    #[serde(alias = "TCPFlags")]
    tcp_flags: u16,
    observation_domain_id: u32,
    #[serde(alias = "SrcAS")]
    src_as: u32,
    #[serde(alias = "DstAS")]
    dst_as: u32,
}

impl Line<'_> {
    fn into_flow(self) -> Flow {
        const NS: u64 = 1_000_000_000;
        let pick = |ns: Nanos, v1_s: u64| {
            if ns.0 != 0 {
                ns.0
            } else {
                v1_s.saturating_mul(NS)
            }
        };
        Flow {
            flow_type: self.flow_type.0,
            sampler: self.sampler_address.ip.map(unmap_v4),
            src_addr: self.src_addr.ip,
            dst_addr: self.dst_addr.ip,
            proto: self.proto.0,
            src_port: self.src_port,
            dst_port: self.dst_port,
            bytes: self.bytes,
            packets: self.packets,
            sampling_rate: self.sampling_rate,
            time_flow_start_ns: pick(self.time_flow_start_ns, self.v1_time_flow_start_s),
            time_flow_end_ns: pick(self.time_flow_end_ns, self.v1_time_flow_end_s),
            time_received_ns: pick(self.time_received_ns, self.v1_time_received_s),
            in_if: self.in_if,
            out_if: self.out_if,
            tcp_flags: self.tcp_flags,
            observation_domain: self.observation_domain_id,
            src_as: self.src_as,
            dst_as: self.dst_as,
        }
    }
}

/// An IP address rendered as a string; `""` (goflow2's "absent") is `None`.
///
/// The lifetime ties it to the borrowed line so serde never offers an owned `String`.
#[derive(Default)]
struct Addr<'a> {
    ip: Option<IpAddr>,
    _line: std::marker::PhantomData<&'a str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Addr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<IpAddr>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an IP address string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse::<IpAddr>()
                    .map(Some)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        Ok(Addr {
            ip: d.deserialize_str(V)?,
            _line: std::marker::PhantomData,
        })
    }
}

/// `proto` as goflow2's IANA keyword or as a number. Unknown names are `None` (label `unknown`):
/// a name is not an error, only a number out of range is.
#[derive(Default)]
struct ProtoField(Option<u8>);

impl<'de> Deserialize<'de> for ProtoField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Option<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a protocol name or a number 0-255")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(protocol_from_name(s))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                u8::try_from(n)
                    .map(Some)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                u8::try_from(n)
                    .map(Some)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
        }
        d.deserialize_any(V).map(ProtoField)
    }
}

/// `type` as goflow2's name or as goflow v1's protobuf enum number.
#[derive(Default)]
struct TypeField(FlowType);

impl<'de> Deserialize<'de> for TypeField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FlowType;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a flow type name or number")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(FlowType::from_goflow(s))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(flow_type_from_v1(n))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(FlowType::Unknown)
            }
        }
        d.deserialize_any(V).map(TypeField)
    }
}

/// A nanosecond timestamp: an integer, or a string when a `-mapping` file renders times as text
/// (RFC 3339). Times do not feed any metric, so a string is accepted and recorded as unknown (0).
#[derive(Default, Clone, Copy)]
struct Nanos(u64);

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a timestamp")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(n)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(0)
            }
        }
        d.deserialize_any(V).map(Nanos)
    }
}

// ---------------------------------------------------------------------------------------------
// Fast path
// ---------------------------------------------------------------------------------------------
//
// A strict subset of JSON, parsed by hand: `{`, then `"key":value` pairs separated by `,` with no
// whitespace between tokens, then `}`, with only ASCII whitespace around the object. Strings
// must not contain a backslash or a control character. Kept keys take exactly the values the
// serde visitors accept without error (plain integers in range, strings); anything else (a
// duplicate kept key, a negative or out-of-range number, a float, `null`, an escape, nesting
// deeper than `MAX_SKIP_DEPTH` in a skipped value, trailing bytes) makes it answer `None`, and
// serde decides. So whenever it answers `Some`, serde would have produced the same flow.

/// Nesting allowed inside a skipped value (goflow2 prints flat arrays only); deeper goes to serde.
const MAX_SKIP_DEPTH: u32 = 8;

/// The kept keys; the discriminant is the bit in the duplicate mask. Aliases share a variant,
/// as they share a field in [`Line`] (serde reports `bytes` + `Bytes` as a duplicate).
#[derive(Clone, Copy)]
enum Key {
    Type,
    TimeReceivedNs,
    V1TimeReceived,
    SamplingRate,
    SamplerAddress,
    TimeFlowStartNs,
    V1TimeFlowStart,
    TimeFlowEndNs,
    V1TimeFlowEnd,
    Bytes,
    Packets,
    SrcAddr,
    DstAddr,
    Proto,
    SrcPort,
    DstPort,
    InIf,
    OutIf,
    TcpFlags,
    ObservationDomainId,
    SrcAs,
    DstAs,
}

/// The kept key a JSON key names (same names and aliases as the `Line` derive), or `None`.
#[inline]
const fn key_of(k: &[u8]) -> Option<Key> {
    Some(match k {
        b"type" | b"Type" => Key::Type,
        b"time_received_ns" => Key::TimeReceivedNs,
        b"TimeReceived" => Key::V1TimeReceived,
        b"sampling_rate" | b"SamplingRate" => Key::SamplingRate,
        b"sampler_address" | b"SamplerAddress" => Key::SamplerAddress,
        b"time_flow_start_ns" => Key::TimeFlowStartNs,
        b"TimeFlowStart" => Key::V1TimeFlowStart,
        b"time_flow_end_ns" => Key::TimeFlowEndNs,
        b"TimeFlowEnd" => Key::V1TimeFlowEnd,
        b"bytes" | b"Bytes" => Key::Bytes,
        b"packets" | b"Packets" => Key::Packets,
        b"src_addr" | b"SrcAddr" => Key::SrcAddr,
        b"dst_addr" | b"DstAddr" => Key::DstAddr,
        b"proto" | b"Proto" => Key::Proto,
        b"src_port" | b"SrcPort" => Key::SrcPort,
        b"dst_port" | b"DstPort" => Key::DstPort,
        b"in_if" | b"InIf" => Key::InIf,
        b"out_if" | b"OutIf" => Key::OutIf,
        b"tcp_flags" | b"TCPFlags" => Key::TcpFlags,
        b"observation_domain_id" => Key::ObservationDomainId,
        b"src_as" | b"SrcAS" => Key::SrcAs,
        b"dst_as" | b"DstAS" => Key::DstAs,
        _ => return None,
    })
}

/// One expected `"key":` of a goflow2 line, padded to 32 bytes, with the mask of its length.
struct Expected {
    pattern: [u128; 2],
    mask: [u128; 2],
    len: usize,
    key: Option<Key>,
}

impl Expected {
    const fn new(name: &str) -> Expected {
        let name = name.as_bytes();
        let len = name.len() + 3;
        assert!(len <= 32);
        let mut pattern = [0u8; 32];
        let mut mask = [0u8; 32];
        let mut k = 0;
        while k < len {
            pattern[k] = match k {
                0 => b'"',
                _ if k == len - 2 => b'"',
                _ if k == len - 1 => b':',
                _ => name[k - 1],
            };
            mask[k] = 0xff;
            k += 1;
        }
        const fn halves(a: &[u8; 32]) -> [u128; 2] {
            let (lo, hi) = (a.first_chunk::<16>(), a.last_chunk::<16>());
            [
                u128::from_le_bytes(*lo.unwrap()),
                u128::from_le_bytes(*hi.unwrap()),
            ]
        }
        Expected {
            pattern: halves(&pattern),
            mask: halves(&mask),
            len,
            key: key_of(name),
        }
    }

    /// Whether `b[i..]` starts with this `"key":` (two masked 16-byte compares, no scan).
    #[inline]
    fn is_at(&self, b: &[u8], i: usize) -> bool {
        let Some(chunk) = b.get(i..i + 32) else {
            return false;
        };
        let (lo, hi) = chunk.split_at(16);
        let (Ok(lo), Ok(hi)) = (lo.try_into(), hi.try_into()) else {
            return false;
        };
        let lo = u128::from_le_bytes(lo) ^ self.pattern[0];
        let hi = u128::from_le_bytes(hi) ^ self.pattern[1];
        (lo & self.mask[0]) | (hi & self.mask[1]) == 0
    }
}

/// goflow2 v2's keys in the order it prints them: without a `-mapping` file every line has all
/// 50, in this order. The fast path checks for the expected key first, which costs one compare
/// instead of a scan for the key's end and a match on its name.
static GOFLOW2_ORDER: [Expected; 50] = {
    const NAMES: [&str; 50] = [
        "type",
        "time_received_ns",
        "sequence_num",
        "sampling_rate",
        "sampler_address",
        "time_flow_start_ns",
        "time_flow_end_ns",
        "bytes",
        "packets",
        "src_addr",
        "dst_addr",
        "etype",
        "proto",
        "src_port",
        "dst_port",
        "in_if",
        "out_if",
        "src_mac",
        "dst_mac",
        "src_vlan",
        "dst_vlan",
        "vlan_id",
        "ip_tos",
        "forwarding_status",
        "ip_ttl",
        "ip_flags",
        "tcp_flags",
        "icmp_type",
        "icmp_code",
        "ipv6_flow_label",
        "fragment_id",
        "fragment_offset",
        "src_as",
        "dst_as",
        "next_hop",
        "next_hop_as",
        "src_net",
        "dst_net",
        "bgp_next_hop",
        "bgp_communities",
        "as_path",
        "mpls_ttl",
        "mpls_label",
        "mpls_ip",
        "observation_domain_id",
        "observation_point_id",
        "layer_stack",
        "layer_size",
        "ipv6_routing_header_addresses",
        "ipv6_routing_header_seg_left",
    ];
    let mut table = [const { Expected::new("") }; 50];
    let mut k = 0;
    while k < 50 {
        table[k] = Expected::new(NAMES[k]);
        k += 1;
    }
    table
};

/// A kept key's value, as far as the fast path understands values.
enum Value<'a> {
    Str(&'a str),
    Int(u64),
}

/// Decodes `text` if it is one object in the fast path's subset; `None` means "ask serde".
/// Never errors and never allocates.
fn decode_fast(text: &str) -> Option<Flow> {
    let is_ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let all = text.as_bytes();
    let start = all.iter().position(|c| !is_ws(c))?;
    let end = all.iter().rposition(|c| !is_ws(c))? + 1;
    // Indices below are into `b`, which starts where `text` does, so `text[i..j]` slices agree.
    let b = &all[..end];
    let mut i = start;
    if b[i] != b'{' {
        return None;
    }
    i += 1;
    let mut line = Line::default();
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        let mut seen = 0u32;
        // Index in `GOFLOW2_ORDER` of the key expected next; past its end once the order differs.
        let mut expect = 0;
        loop {
            let (key, value_at) = next_key(b, i, &mut expect)?;
            i = value_at;
            match key {
                None => i = skip_value(b, i)?,
                Some(k) => {
                    let bit = 1u32 << k as u32;
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    let (v, next) = kept_value(text, b, i)?;
                    set_field(&mut line, k, v)?;
                    i = next;
                }
            }
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (i == b.len()).then(|| line.into_flow())
}

/// The `"key":` at `b[i]`: the kept key it names (`None` for a skipped key) and the index of its
/// value. `expect` is the index in [`GOFLOW2_ORDER`] of the key expected next: goflow2's key is
/// checked with one compare; once a key differs the order is abandoned (`expect` set past the
/// end) and every further key is scanned and matched by name.
#[inline]
fn next_key(b: &[u8], i: usize, expect: &mut usize) -> Option<(Option<Key>, usize)> {
    if let Some(e) = GOFLOW2_ORDER.get(*expect).filter(|e| e.is_at(b, i)) {
        *expect += 1;
        return Some((e.key, i + e.len));
    }
    *expect = GOFLOW2_ORDER.len();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let key_end = string_end(b, i + 1)?;
    if b.get(key_end + 1) != Some(&b':') {
        return None;
    }
    Some((key_of(&b[i + 1..key_end]), key_end + 2))
}

/// Stores a kept key's value with the semantics of the serde visitors; `None` where serde would
/// report an error (or where the fast path does not want to decide).
#[inline]
fn set_field<'a>(line: &mut Line<'a>, k: Key, v: Value<'a>) -> Option<()> {
    use Value::{Int, Str};
    let addr = |v: Value<'_>| -> Option<Addr<'a>> {
        let Str(s) = v else { return None };
        let ip = if s.is_empty() {
            None
        } else if let Some(v4) = parse_ipv4(s.as_bytes()) {
            Some(IpAddr::V4(v4))
        } else {
            Some(s.parse::<IpAddr>().ok()?)
        };
        Some(Addr {
            ip,
            _line: std::marker::PhantomData,
        })
    };
    let int = |v: Value<'_>| match v {
        Int(n) => Some(n),
        Str(_) => None,
    };
    let nanos = |v: Value<'_>| match v {
        Int(n) => Nanos(n),
        Str(_) => Nanos(0),
    };
    match k {
        Key::Type => {
            line.flow_type = TypeField(match v {
                Str(s) => FlowType::from_goflow(s),
                Int(n) => flow_type_from_v1(n),
            })
        }
        Key::TimeReceivedNs => line.time_received_ns = nanos(v),
        Key::V1TimeReceived => line.v1_time_received_s = int(v)?,
        Key::SamplingRate => line.sampling_rate = int(v)?,
        Key::SamplerAddress => line.sampler_address = addr(v)?,
        Key::TimeFlowStartNs => line.time_flow_start_ns = nanos(v),
        Key::V1TimeFlowStart => line.v1_time_flow_start_s = int(v)?,
        Key::TimeFlowEndNs => line.time_flow_end_ns = nanos(v),
        Key::V1TimeFlowEnd => line.v1_time_flow_end_s = int(v)?,
        Key::Bytes => line.bytes = int(v)?,
        Key::Packets => line.packets = int(v)?,
        Key::SrcAddr => line.src_addr = addr(v)?,
        Key::DstAddr => line.dst_addr = addr(v)?,
        Key::Proto => {
            line.proto = ProtoField(match v {
                Str(s) => protocol_from_name(s),
                Int(n) => Some(u8::try_from(n).ok()?),
            })
        }
        Key::SrcPort => line.src_port = u16::try_from(int(v)?).ok()?,
        Key::DstPort => line.dst_port = u16::try_from(int(v)?).ok()?,
        Key::InIf => line.in_if = u32::try_from(int(v)?).ok()?,
        Key::OutIf => line.out_if = u32::try_from(int(v)?).ok()?,
        Key::TcpFlags => line.tcp_flags = u16::try_from(int(v)?).ok()?,
        Key::ObservationDomainId => line.observation_domain_id = u32::try_from(int(v)?).ok()?,
        Key::SrcAs => line.src_as = u32::try_from(int(v)?).ok()?,
        Key::DstAs => line.dst_as = u32::try_from(int(v)?).ok()?,
    }
    Some(())
}

/// A dotted-quad IPv4 address in the exact form `Ipv4Addr::from_str` accepts (four decimal
/// octets of 1-3 digits, no leading zeros, each <= 255), or `None` (then std's parser decides).
#[inline]
fn parse_ipv4(s: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let from = i;
        let mut v = 0u32;
        while let Some(d) = s.get(i).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
            v = v * 10 + u32::from(d);
            i += 1;
            if i - from > 3 {
                return None;
            }
        }
        if i == from || (s[from] == b'0' && i - from > 1) {
            return None;
        }
        *octet = u8::try_from(v).ok()?;
    }
    (i == s.len()).then_some(std::net::Ipv4Addr::from(octets))
}

/// A kept key's value at `b[i]`: a plain string or a non-negative integer that fits a `u64`.
/// Returns it and the index just past it.
#[inline]
fn kept_value<'a>(text: &'a str, b: &[u8], i: usize) -> Option<(Value<'a>, usize)> {
    match *b.get(i)? {
        b'"' => {
            let end = string_end(b, i + 1)?;
            Some((Value::Str(text.get(i + 1..end)?), end + 1))
        }
        b'0' => {
            // JSON has no leading zeros; `0` followed by `.`/`e` fails the caller's `,`/`}` test.
            if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            Some((Value::Int(0), i + 1))
        }
        b'1'..=b'9' => {
            let end = digits_end(b, i);
            let digits = &b[i..end];
            // Up to 19 digits cannot overflow a u64; longer numbers take the checked path.
            let n = if digits.len() <= 19 {
                digits
                    .iter()
                    .fold(0u64, |n, &c| n * 10 + u64::from(c - b'0'))
            } else {
                digits.iter().try_fold(0u64, |n, &c| {
                    n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
                })?
            };
            Some((Value::Int(n), end))
        }
        _ => None,
    }
}

/// Index of the first non-digit at or after `b[i]` (or `b.len()`).
#[inline]
fn digits_end(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// Index of the `"` closing a string whose contents start at `b[i]`; `None` if a backslash or a
/// control character comes first (serde unescapes or rejects those) or the string is unterminated.
#[inline]
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u128 = u128::MAX / 255;
    const HIGH: u128 = ONES * 0x80;
    // Sixteen bytes at a time (SWAR): flag bytes equal to `"`, and bytes equal to `\` or below
    // 0x20. In each mask the lowest flag is exact (borrows only run upwards, so false flags only
    // appear above a true one): a quote is the end if no other special byte is flagged below it.
    while let Some(chunk) = b.get(i..i + 16) {
        let x = u128::from_le_bytes(chunk.try_into().ok()?);
        let q = x ^ (ONES * u128::from(b'"'));
        let s = x ^ (ONES * u128::from(b'\\'));
        let quote = q.wrapping_sub(ONES) & !q & HIGH;
        let bad = ((s.wrapping_sub(ONES) & !s) | (x.wrapping_sub(ONES * 0x20) & !x)) & HIGH;
        if quote != 0 {
            let first = quote & quote.wrapping_neg();
            return (bad & (first - 1) == 0).then(|| i + (quote.trailing_zeros() / 8) as usize);
        }
        if bad != 0 {
            return None;
        }
        i += 16;
    }
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => return Some(i),
            b'\\' | 0..=0x1f => return None,
            _ => i += 1,
        }
    }
    None
}

/// Skips the value of an ignored key at `b[i]`; returns the index just past it. The shapes
/// goflow2 prints (`0`, `"..."`, `[]`) are handled inline, the rest by [`skip_nested`].
#[inline]
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => Some(string_end(b, i + 1)? + 1),
        b'0'..=b'9' if !matches!(b.get(i + 1), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) => {
            Some(i + 1)
        }
        b'[' if b.get(i + 1) == Some(&b']') => Some(i + 2),
        _ => skip_nested(b, i, 0),
    }
}

/// Skips any JSON value at `b[i]` with at most `MAX_SKIP_DEPTH - depth` levels of nesting.
fn skip_nested(b: &[u8], mut i: usize, depth: u32) -> Option<usize> {
    match *b.get(i)? {
        b'"' => Some(string_end(b, i + 1)? + 1),
        b'-' | b'0'..=b'9' => skip_number(b, i),
        b't' => skip_literal(b, i, b"true"),
        b'f' => skip_literal(b, i, b"false"),
        b'n' => skip_literal(b, i, b"null"),
        b'[' => {
            if depth >= MAX_SKIP_DEPTH {
                return None;
            }
            i += 1;
            if b.get(i) == Some(&b']') {
                return Some(i + 1);
            }
            loop {
                i = skip_nested(b, i, depth + 1)?;
                match b.get(i)? {
                    b',' => i += 1,
                    b']' => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        b'{' => {
            if depth >= MAX_SKIP_DEPTH {
                return None;
            }
            i += 1;
            if b.get(i) == Some(&b'}') {
                return Some(i + 1);
            }
            loop {
                if b.get(i) != Some(&b'"') {
                    return None;
                }
                i = string_end(b, i + 1)? + 1;
                if b.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_nested(b, i + 1, depth + 1)?;
                match b.get(i)? {
                    b',' => i += 1,
                    b'}' => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        _ => None,
    }
}

/// Skips a JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) at `b[i]`.
fn skip_number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |i: usize| {
        let end = digits_end(b, i);
        (end > i).then_some(end)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits_end(b, i),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

fn skip_literal(b: &[u8], i: usize, lit: &[u8]) -> Option<usize> {
    (b.get(i..i + lit.len())? == lit).then_some(i + lit.len())
}

/// goflow's protobuf enum: 0 unknown, 1 SFLOW_5, 2 NETFLOW_V5, 3 NETFLOW_V9, 4 IPFIX.
fn flow_type_from_v1(n: u64) -> FlowType {
    match n {
        1 => FlowType::Sflow5,
        2 => FlowType::NetflowV5,
        3 => FlowType::NetflowV9,
        4 => FlowType::Ipfix,
        _ => FlowType::Unknown,
    }
}

/// goflow2 v2.2.6's line for a hand-made v5 datagram with header sampling 100 (the output of a
/// real goflow2 run): parsed by this module's tests, written back byte for byte by
/// `flows_out::format`'s.
#[cfg(test)]
pub(crate) const GOFLOW2_V5: &str = r#"{"type":"NETFLOW_V5","time_received_ns":1704067205123456789,"sequence_num":42,"sampling_rate":100,"sampler_address":"192.0.2.1","time_flow_start_ns":1704067200500000000,"time_flow_end_ns":1704067204500000000,"bytes":5000,"packets":10,"src_addr":"192.168.88.10","dst_addr":"1.1.1.1","etype":"IPv4","proto":"TCP","src_port":51000,"dst_port":443,"in_if":2,"out_if":1,"src_mac":"00:00:00:00:00:00","dst_mac":"00:00:00:00:00:00","src_vlan":0,"dst_vlan":0,"vlan_id":0,"ip_tos":0,"forwarding_status":0,"ip_ttl":0,"ip_flags":0,"tcp_flags":27,"icmp_type":0,"icmp_code":0,"ipv6_flow_label":0,"fragment_id":0,"fragment_offset":0,"src_as":0,"dst_as":13335,"next_hop":"10.0.0.1","next_hop_as":0,"src_net":"192.168.88.0/24","dst_net":"1.1.1.0/24","bgp_next_hop":"","bgp_communities":[],"as_path":[],"mpls_ttl":[],"mpls_label":[],"mpls_ip":[],"observation_domain_id":0,"observation_point_id":0,"layer_stack":[],"layer_size":[],"ipv6_routing_header_addresses":[],"ipv6_routing_header_seg_left":0}"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Flow {
        let mut out = Vec::new();
        decode_line(line.as_bytes(), &mut out).expect("decodes");
        assert_eq!(out.len(), 1);
        out[0]
    }

    fn err(line: &[u8]) -> ErrorType {
        let mut out = Vec::new();
        decode_line(line, &mut out).expect_err("must fail")
    }

    #[test]
    fn decodes_the_documented_example() {
        let f = one(GOFLOW2_V5);
        assert_eq!(
            f,
            Flow {
                flow_type: FlowType::NetflowV5,
                sampler: Some("192.0.2.1".parse().unwrap()),
                src_addr: Some("192.168.88.10".parse().unwrap()),
                dst_addr: Some("1.1.1.1".parse().unwrap()),
                proto: Some(6),
                src_port: 51000,
                dst_port: 443,
                bytes: 5000,
                packets: 10,
                sampling_rate: 100,
                time_flow_start_ns: 1704067200500000000,
                time_flow_end_ns: 1704067204500000000,
                time_received_ns: 1704067205123456789,
                in_if: 2,
                out_if: 1,
                tcp_flags: 27,
                dst_as: 13335,
                ..Flow::default()
            }
        );
    }

    #[test]
    fn keys_in_any_order_missing_or_extra() {
        let f = one(
            r#"{"extra":{"nested":[1,2,{"x":"y"}]},"bytes":7,"type":"IPFIX","dst_addr":"2001:db8::2"}"#,
        );
        assert_eq!(f.flow_type, FlowType::Ipfix);
        assert_eq!(f.bytes, 7);
        assert_eq!(f.packets, 0);
        assert_eq!(f.src_addr, None);
        assert_eq!(f.dst_addr, Some("2001:db8::2".parse().unwrap()));
        assert_eq!(f.sampler, None);
        assert_eq!(f.proto, None);
    }

    #[test]
    fn proto_as_name_or_number() {
        assert_eq!(one(r#"{"proto":"UDP"}"#).proto, Some(17));
        assert_eq!(one(r#"{"proto":17}"#).proto, Some(17));
        assert_eq!(one(r#"{"proto":"ICMPv6"}"#).proto, Some(58));
        assert_eq!(one(r#"{"proto":"IPv6-ICMP"}"#).proto, Some(58));
        assert_eq!(one(r#"{"proto":""}"#).proto, None);
        assert_eq!(one(r#"{"proto":"GRE"}"#).proto, Some(47));
        assert_eq!(err(br#"{"proto":256}"#), ErrorType::InvalidField);
        assert_eq!(err(br#"{"proto":-1}"#), ErrorType::InvalidField);
    }

    #[test]
    fn sampler_ipv4_mapped_is_unwrapped() {
        let f = one(r#"{"sampler_address":"::ffff:192.0.2.1","src_addr":"::ffff:10.0.0.1"}"#);
        assert_eq!(f.sampler, Some("192.0.2.1".parse().unwrap()));
        // Only the sampler is unwrapped: that is what goflow2 does for `sampler_address`.
        assert_eq!(f.src_addr, Some("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn goflow_v1_camel_case() {
        let f = one(
            r#"{"Type":"NETFLOW_V9","TimeReceived":1704067205,"SamplingRate":64,"SamplerAddress":"192.0.2.9","TimeFlowStart":1704067200,"TimeFlowEnd":1704067204,"Bytes":1500,"Packets":3,"SrcAddr":"10.0.0.1","DstAddr":"10.0.0.2","Etype":2048,"Proto":6,"SrcPort":1234,"DstPort":80,"InIf":1,"OutIf":2,"TCPFlags":2}"#,
        );
        assert_eq!(f.flow_type, FlowType::NetflowV9);
        assert_eq!(f.sampling_rate, 64);
        assert_eq!(f.bytes, 1500);
        assert_eq!(f.packets, 3);
        assert_eq!(f.proto, Some(6));
        assert_eq!(f.time_received_ns, 1_704_067_205_000_000_000);
        assert_eq!(f.time_flow_start_ns, 1_704_067_200_000_000_000);
        assert_eq!(f.sampler, Some("192.0.2.9".parse().unwrap()));
        assert_eq!(f.dst_port, 80);
        assert_eq!(f.tcp_flags, 2);
    }

    #[test]
    fn type_as_v1_enum_number() {
        assert_eq!(one(r#"{"Type":4}"#).flow_type, FlowType::Ipfix);
        assert_eq!(one(r#"{"type":"SFLOW_5"}"#).flow_type, FlowType::Sflow5);
        assert_eq!(one(r#"{"type":"NEW_THING"}"#).flow_type, FlowType::Unknown);
    }

    #[test]
    fn times_above_2_pow_53_are_exact() {
        let f = one(r#"{"time_received_ns":1795683951315942931}"#);
        assert_eq!(f.time_received_ns, 1795683951315942931);
        let f = one(r#"{"time_received_ns":"2026-11-26T10:00:00Z"}"#);
        assert_eq!(f.time_received_ns, 0);
    }

    #[test]
    fn only_objects_become_flows_even_after_a_first_object() {
        // An array after an object would be mapped onto the struct's fields by serde.
        for line in [
            &br#"{}[]"#[..],
            br#"{"bytes":1}["IPFIX",1,2,100]"#,
            br#"{"bytes":1} 5"#,
        ] {
            let mut out = Vec::new();
            assert_eq!(decode_line(line, &mut out), Err(ErrorType::InvalidJson));
            assert_eq!(out.len(), 1, "the first object is kept");
        }
        let mut out = Vec::new();
        decode_line(br#"{"bytes":1}  "#, &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn joined_objects_both_decode() {
        let mut out = Vec::new();
        decode_line(br#"{"bytes":1}{"bytes":2}"#, &mut out).unwrap();
        assert_eq!(out.iter().map(|f| f.bytes).collect::<Vec<_>>(), [1, 2]);

        // A good object followed by a truncated one: the first is kept, the error reported.
        let mut out = Vec::new();
        let e = decode_line(br#"{"bytes":1}{"bytes":"#, &mut out).unwrap_err();
        assert_eq!(e, ErrorType::InvalidJson);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(err(b"\xff\xfe{}"), ErrorType::InvalidUtf8);
        assert_eq!(err(b"{\"src_addr\":\"caf\xc3\"}"), ErrorType::InvalidUtf8);
        assert_eq!(err(b"not json"), ErrorType::InvalidJson);
        assert_eq!(err(b"12345"), ErrorType::InvalidJson);
        assert_eq!(err(b"[1,2]"), ErrorType::InvalidJson);
        assert_eq!(err(br#"{"bytes":12"#), ErrorType::InvalidJson);
        assert_eq!(err(br#"{"bytes":"12"}"#), ErrorType::InvalidField);
        assert_eq!(err(br#"{"bytes":-5}"#), ErrorType::InvalidField);
        assert_eq!(err(br#"{"bytes":1.5}"#), ErrorType::InvalidField);
        assert_eq!(err(br#"{"bytes":1e400}"#), ErrorType::InvalidJson);
        assert_eq!(
            err(br#"{"bytes":18446744073709551616}"#),
            ErrorType::InvalidField
        );
        assert_eq!(err(br#"{"src_port":65536}"#), ErrorType::InvalidField);
        assert_eq!(err(br#"{"src_addr":"300.1.1.1"}"#), ErrorType::InvalidField);
        assert_eq!(err(br#"{"src_addr":5}"#), ErrorType::InvalidField);
        assert_eq!(err(br#"{"bytes":1,"bytes":2}"#), ErrorType::InvalidField);
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let deep = |key: &str| {
            format!(
                r#"{{"{key}":{}{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
        };
        // Under an unknown key the value is skipped (iteratively, by serde_json).
        let mut out = Vec::new();
        decode_line(deep("extra").as_bytes(), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        // Where a number is expected it is a field error.
        assert_eq!(err(deep("bytes").as_bytes()), ErrorType::InvalidField);
        // Unclosed nesting is truncated JSON.
        let open = format!(r#"{{"extra":{}"#, "[".repeat(100_000));
        assert_eq!(err(open.as_bytes()), ErrorType::InvalidJson);
    }

    /// The serde path alone: the reference the fast path is checked against.
    fn serde_only(line: &str) -> Result<Vec<Flow>, ErrorType> {
        let mut out = Vec::new();
        decode_serde(line, &mut out).map(|()| out)
    }

    /// The fast path either declines or agrees exactly with serde (one flow, no error).
    fn assert_fast_agrees(line: &str) -> bool {
        match decode_fast(line) {
            None => false,
            Some(flow) => {
                assert_eq!(
                    serde_only(line),
                    Ok(vec![flow]),
                    "fast path differs on {line:?}"
                );
                true
            }
        }
    }

    /// The `"key":value` pairs of a compact object without nested commas (the example line).
    fn pairs(line: &str) -> Vec<String> {
        let body = &line[1..line.len() - 1];
        body.split(",\"")
            .enumerate()
            .map(|(n, p)| {
                if n == 0 {
                    p.to_string()
                } else {
                    format!("\"{p}")
                }
            })
            .collect()
    }

    fn object(pairs: &[String]) -> String {
        format!("{{{}}}", pairs.join(","))
    }

    fn golden_lines() -> Vec<Vec<u8>> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/golden.jsonl");
        std::fs::read(path)
            .expect("golden.jsonl")
            .split(|&c| c == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn fast_path_accepts_goflow2_lines() {
        assert!(assert_fast_agrees(GOFLOW2_V5));
        assert_eq!(decode_fast(GOFLOW2_V5), Some(one(GOFLOW2_V5)));
        let mut accepted = 0;
        for line in golden_lines() {
            let Ok(text) = std::str::from_utf8(&line) else {
                continue;
            };
            // Every golden line that is one object serde decodes is in the fast path's subset.
            if serde_only(text).is_ok_and(|flows| flows.len() == 1) {
                assert!(assert_fast_agrees(text), "fast path declined {text:?}");
                accepted += 1;
            } else {
                assert_eq!(decode_fast(text), None, "{text:?}");
            }
        }
        assert!(accepted >= 10, "only {accepted} golden lines accepted");
    }

    #[test]
    fn goflow2_order_matches_the_documented_line() {
        // Every key of a goflow2 v2 line is found by the one-compare check, in order.
        let line = GOFLOW2_V5.as_bytes();
        let mut at = 1;
        for (n, pair) in pairs(GOFLOW2_V5).iter().enumerate() {
            let expected = &GOFLOW2_ORDER[n];
            assert!(expected.is_at(line, at), "key {n} at {pair}");
            assert_eq!(
                &line[at..at + expected.len],
                &pair.as_bytes()[..expected.len]
            );
            let name = &pair[1..expected.len - 2];
            assert_eq!(expected.key.is_some(), key_of(name.as_bytes()).is_some());
            at += pair.len() + 1;
        }
        assert_eq!(at, line.len());
        // Only the whole `"key":` matches: not a prefix, not another key, not without 32 bytes.
        let padded = |s: &str| format!("{s}{}", " ".repeat(32));
        assert!(GOFLOW2_ORDER[0].is_at(padded(r#""type":"#).as_bytes(), 0));
        assert!(!GOFLOW2_ORDER[0].is_at(padded(r#""types":"#).as_bytes(), 0));
        assert!(!GOFLOW2_ORDER[0].is_at(padded(r#""Type":"#).as_bytes(), 0));
        assert!(!GOFLOW2_ORDER[0].is_at(padded(r#""type" :"#).as_bytes(), 0));
        assert!(!GOFLOW2_ORDER[0].is_at(br#""type":0}"#, 0));
        assert!(GOFLOW2_ORDER[49].is_at(br#""ipv6_routing_header_seg_left":0"#, 0));
    }

    /// Hand-picked lines around the fast path's subset: whitespace, numbers, strings, escapes,
    /// nesting, duplicates, aliases, truncation.
    const CORPUS: &[&str] = &[
        GOFLOW2_V5,
        "{}",
        " {} ",
        "\t{\"bytes\":1}\r\n",
        "{ }",
        "{\"bytes\": 1}",
        "{\"bytes\" :1}",
        "{\"bytes\":1 }",
        "{\"bytes\":1,}",
        "{,\"bytes\":1}",
        "{\"bytes\":1}{\"bytes\":2}",
        "{\"bytes\":1} {\"bytes\":2}",
        "{\"bytes\":1}x",
        "{\"bytes\":1}}",
        "{\"bytes\":1",
        "{\"bytes\":",
        "{\"bytes\"",
        "{\"bytes",
        "{",
        "",
        "   ",
        "[]",
        "123",
        "\u{feff}{\"bytes\":1}",
        "\u{a0}{\"bytes\":1}",
        "{\"bytes\":0}",
        "{\"bytes\":00}",
        "{\"bytes\":01}",
        "{\"bytes\":-0}",
        "{\"bytes\":-1}",
        "{\"bytes\":+1}",
        "{\"bytes\":1.0}",
        "{\"bytes\":1.5}",
        "{\"bytes\":1e3}",
        "{\"bytes\":1E3}",
        "{\"bytes\":1e400}",
        "{\"bytes\":18446744073709551615}",
        "{\"bytes\":18446744073709551616}",
        "{\"bytes\":99999999999999999999}",
        "{\"bytes\":000000000000000000001}",
        "{\"bytes\":9999999999999999999}",
        "{\"bytes\":\"12\"}",
        "{\"bytes\":null}",
        "{\"bytes\":true}",
        "{\"bytes\":[]}",
        "{\"bytes\":{}}",
        "{\"bytes\":1,\"bytes\":2}",
        "{\"bytes\":1,\"Bytes\":2}",
        "{\"Bytes\":1,\"Bytes\":2}",
        "{\"type\":\"IPFIX\",\"Type\":4}",
        "{\"time_received_ns\":1,\"TimeReceived\":2}",
        "{\"TimeReceived\":2,\"time_received_ns\":0}",
        "{\"src_port\":65535}",
        "{\"src_port\":65536}",
        "{\"dst_port\":-1}",
        "{\"in_if\":4294967295}",
        "{\"in_if\":4294967296}",
        "{\"out_if\":4294967296}",
        "{\"tcp_flags\":65536}",
        "{\"observation_domain_id\":4294967295}",
        "{\"observation_domain_id\":4294967296}",
        "{\"proto\":\"TCP\"}",
        "{\"proto\":\"tcp\"}",
        "{\"proto\":\"\"}",
        "{\"proto\":\"GRE\"}",
        "{\"proto\":255}",
        "{\"proto\":256}",
        "{\"proto\":-1}",
        "{\"proto\":6.0}",
        "{\"proto\":null}",
        "{\"Proto\":17}",
        "{\"type\":\"SFLOW_5\"}",
        "{\"type\":\"NEW_THING\"}",
        "{\"type\":\"\"}",
        "{\"type\":0}",
        "{\"type\":3}",
        "{\"type\":5}",
        "{\"type\":18446744073709551615}",
        "{\"type\":18446744073709551616}",
        "{\"type\":-1}",
        "{\"type\":null}",
        "{\"type\":[]}",
        "{\"Type\":2}",
        "{\"time_received_ns\":\"2026-11-26T10:00:00Z\"}",
        "{\"time_received_ns\":\"\"}",
        "{\"time_received_ns\":1795683951315942931}",
        "{\"time_received_ns\":-1}",
        "{\"time_received_ns\":1.5}",
        "{\"time_received_ns\":null}",
        "{\"time_flow_start_ns\":\"x\",\"time_flow_end_ns\":7}",
        "{\"TimeReceived\":1704067205}",
        "{\"TimeReceived\":18446744073709551615}",
        "{\"TimeReceived\":\"1\"}",
        "{\"TimeFlowStart\":1,\"TimeFlowEnd\":2}",
        "{\"time_flow_end_ns\":5,\"TimeFlowEnd\":2}",
        "{\"src_addr\":\"\"}",
        "{\"src_addr\":\"10.0.0.1\"}",
        "{\"src_addr\":\"010.0.0.1\"}",
        "{\"src_addr\":\"10.0.0.01\"}",
        "{\"src_addr\":\"10.0.0.0\"}",
        "{\"src_addr\":\"0.0.0.0\"}",
        "{\"src_addr\":\"255.255.255.255\"}",
        "{\"src_addr\":\"256.0.0.1\"}",
        "{\"src_addr\":\"300.1.1.1\"}",
        "{\"src_addr\":\"1.2.3\"}",
        "{\"src_addr\":\"1.2.3.4.5\"}",
        "{\"src_addr\":\"1.2.3.4.\"}",
        "{\"src_addr\":\"1..3.4\"}",
        "{\"src_addr\":\"1.2.3.1234\"}",
        "{\"src_addr\":\"1.2.3.4 \"}",
        "{\"src_addr\":\" 1.2.3.4\"}",
        "{\"src_addr\":\"2001:db8::1\"}",
        "{\"src_addr\":\"::ffff:10.0.0.1\"}",
        "{\"src_addr\":\"::\"}",
        "{\"src_addr\":\"fe80::1%eth0\"}",
        "{\"src_addr\":\"2001:db8::g\"}",
        "{\"src_addr\":5}",
        "{\"src_addr\":null}",
        "{\"src_addr\":[]}",
        "{\"dst_addr\":\"1.1.1.1\",\"DstAddr\":\"1.1.1.1\"}",
        "{\"sampler_address\":\"::ffff:192.0.2.1\"}",
        "{\"SamplerAddress\":\"::ffff:192.0.2.1\"}",
        "{\"sampler_address\":\"::ffff:c000:201\"}",
        "{\"sampler_address\":\"192.0.2.1\",\"src_addr\":\"::ffff:10.0.0.1\"}",
        "{\"sampling_rate\":0}",
        "{\"sampling_rate\":\"100\"}",
        "{\"SamplingRate\":64,\"sampling_rate\":64}",
        "{\"src_addr\":\"10.0.0.1\\u0000\"}",
        "{\"src_addr\":\"10.0.0.\\u0031\"}",
        "{\"by\\u0074es\":5}",
        "{\"extra\":\"a\\\"b\",\"bytes\":5}",
        "{\"extra\":\"a\\\\\",\"bytes\":5}",
        "{\"extra\":\"tab\there\",\"bytes\":5}",
        "{\"extra\":\"nl\nhere\",\"bytes\":5}",
        "{\"extra\":\"\u{1}\",\"bytes\":5}",
        "{\"extra\":\"\u{7f}\u{80}é€😀\",\"bytes\":5}",
        "{\"extra\":\"0123456789abcdef0123456789abcdef\",\"bytes\":5}",
        "{\"extra\":\"0123456789abcde\\\"\",\"bytes\":5}",
        "{\"extra\":\"0123456789abcdef\",\"bytes\":5}",
        "{\"extra\":\"0123456789abcdefghijklmnopqrstu\\\\\",\"bytes\":5}",
        "{\"0123456789abcdef0123456789\":1,\"bytes\":5}",
        "{\"extra\":{\"nested\":[1,2,{\"x\":\"y\"}]},\"bytes\":7,\"type\":\"IPFIX\"}",
        "{\"extra\":[[[[[[[1]]]]]]],\"bytes\":7}",
        "{\"extra\":[[[[[[[[1]]]]]]]],\"bytes\":7}",
        "{\"extra\":[[[[[[[[[1]]]]]]]]],\"bytes\":7}",
        "{\"extra\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{}}}}}}}},\"bytes\":7}",
        "{\"extra\":[1,],\"bytes\":7}",
        "{\"extra\":[,1],\"bytes\":7}",
        "{\"extra\":[1 2],\"bytes\":7}",
        "{\"extra\":{\"a\"},\"bytes\":7}",
        "{\"extra\":{\"a\":},\"bytes\":7}",
        "{\"extra\":{1:2},\"bytes\":7}",
        "{\"extra\":{\"a\":1,},\"bytes\":7}",
        "{\"extra\":[true,false,null],\"bytes\":7}",
        "{\"extra\":tru,\"bytes\":7}",
        "{\"extra\":nul,\"bytes\":7}",
        "{\"extra\":True,\"bytes\":7}",
        "{\"extra\":-0.5e-3,\"bytes\":7}",
        "{\"extra\":1.5E+30,\"bytes\":7}",
        "{\"extra\":1e400,\"bytes\":7}",
        "{\"extra\":-1,\"bytes\":7}",
        "{\"extra\":-,\"bytes\":7}",
        "{\"extra\":-a,\"bytes\":7}",
        "{\"extra\":01,\"bytes\":7}",
        "{\"extra\":1.,\"bytes\":7}",
        "{\"extra\":.5,\"bytes\":7}",
        "{\"extra\":1e,\"bytes\":7}",
        "{\"extra\":1e+,\"bytes\":7}",
        "{\"extra\":+1,\"bytes\":7}",
        "{\"extra\":0x10,\"bytes\":7}",
        "{\"extra\":99999999999999999999999999999,\"bytes\":7}",
        "{\"extra\":1,\"extra\":2,\"bytes\":7}",
        "{\"extra\":,\"bytes\":7}",
        "{\"extra\":\"unterminated,\"bytes\":7}",
        "{\"bytes\":7,\"extra\":[]}",
        "{\"bytes\":7,\"extra\":[]",
        "{\"bytes\":7,\"extra\":\"",
        "{\"bytes\":7,\"extra\":0",
        "{\"bytes\":7,\"extra\":\"x\"}",
        "{\"bytes\":7,\"extra\":0}",
        "{\"bytes\":7,\"extra\":[]}   ",
        "{\"\":1,\"bytes\":7}",
        "{\"bytes\":7,\"\":\"\"}",
        r#"{"proto":"UDP","dst_addr":"1.1.1.1","src_addr":"192.168.88.11","packets":3,"bytes":300,"sampler_address":"::ffff:192.0.2.1","sampling_rate":100,"type":"NETFLOW_V5","src_port":40000,"dst_port":53}"#,
        r#"{"Type":"NETFLOW_V9","TimeReceived":1704067205,"SamplingRate":64,"SamplerAddress":"192.0.2.9","TimeFlowStart":1704067200,"TimeFlowEnd":1704067204,"Bytes":1500,"Packets":3,"SrcAddr":"10.0.0.1","DstAddr":"10.0.0.2","Etype":2048,"Proto":6,"SrcPort":1234,"DstPort":80,"InIf":1,"OutIf":2,"TCPFlags":2}"#,
        r#"{"Type":4,"TimeReceived":18446744073709551615,"TimeFlowStart":18446744073,"TimeFlowEnd":18446744074}"#,
    ];

    /// Variants of the documented example: keys reordered, dropped, duplicated, spaced, preceded
    /// by a nested value, renamed to their goflow v1 alias; the line joined, padded, cut; and
    /// the golden lines.
    fn derived_corpus() -> Vec<String> {
        let mut corpus = Vec::new();
        let kv = pairs(GOFLOW2_V5);
        assert_eq!(kv.len(), 50);
        // Reordered: reversed, rotated, and each key dropped or duplicated in turn.
        let mut rev = kv.clone();
        rev.reverse();
        corpus.push(object(&rev));
        for n in 0..kv.len() {
            let mut rot = kv.clone();
            rot.rotate_left(n);
            corpus.push(object(&rot));
            let mut missing = kv.clone();
            missing.remove(n);
            corpus.push(object(&missing));
            let mut dup = kv.clone();
            dup.push(kv[n].clone());
            corpus.push(object(&dup));
            let mut spaced = kv.clone();
            spaced[n] = spaced[n].replacen(':', ": ", 1);
            corpus.push(object(&spaced));
            // An extra nested value in front of each key.
            let mut nested = kv.clone();
            nested.insert(
                n,
                r#""x":{"a":[1,-2.5e3,"s",true,null,{}],"b":{}}"#.to_string(),
            );
            corpus.push(object(&nested));
        }
        // Kept keys in their CamelCase alias as well as the snake_case name.
        let camel = kv
            .iter()
            .map(|p| {
                p.replace("\"bytes\"", "\"Bytes\"")
                    .replace("\"packets\"", "\"Packets\"")
                    .replace("\"src_addr\"", "\"SrcAddr\"")
            })
            .collect::<Vec<_>>();
        corpus.push(object(&camel));
        let mut both = camel.clone();
        both.push(r#""bytes":1"#.to_string());
        corpus.push(object(&both));
        // Joined, padded and truncated forms of the example.
        corpus.push(format!("{GOFLOW2_V5}{GOFLOW2_V5}"));
        corpus.push(format!(" \t{GOFLOW2_V5}\r"));
        corpus.push(format!("{GOFLOW2_V5},"));
        for cut in (0..GOFLOW2_V5.len()).step_by(7) {
            corpus.push(GOFLOW2_V5[..cut].to_string());
        }
        for line in golden_lines() {
            if let Ok(text) = String::from_utf8(line) {
                corpus.push(text);
            }
        }
        corpus
    }

    #[test]
    fn fast_path_agrees_with_serde_on_a_corpus() {
        let mut corpus: Vec<String> = CORPUS.iter().map(|s| s.to_string()).collect();
        corpus.extend(derived_corpus());

        let mut accepted = 0;
        for line in &corpus {
            accepted += usize::from(assert_fast_agrees(line));
            // And the whole decoder gives the serde result, fast path or not.
            let mut out = Vec::new();
            let got = decode_line(line.as_bytes(), &mut out).map(|()| out);
            let want = serde_only(line);
            match (&got, &want) {
                // On error the flows before the bad object are kept; compare the error only.
                (Err(a), Err(b)) => assert_eq!(a, b, "{line:?}"),
                _ => assert_eq!(got, want, "{line:?}"),
            }
        }
        assert!(accepted > 150, "fast path accepted only {accepted} lines");
    }

    #[test]
    fn fast_path_agrees_with_serde_on_mutations() {
        const ALPHABET: &[u8] = b"\"\\{}[],:-+.eE0123456789 \t\nanrtuxf\x00\x1f\x7f";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % bound
        };
        let base = GOFLOW2_V5.as_bytes();
        let (mut checked, mut accepted) = (0, 0);
        for _ in 0..5000 {
            let mut line = base.to_vec();
            for _ in 0..1 + next(3) {
                let at = next(line.len() + 1);
                let byte = if next(2) == 0 {
                    ALPHABET[next(ALPHABET.len())]
                } else {
                    next(256) as u8
                };
                match next(3) {
                    0 if at < line.len() => line[at] = byte,
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    _ => line.insert(at, byte),
                }
            }
            let mut out = Vec::new();
            let result = decode_line(&line, &mut out);
            let Ok(text) = std::str::from_utf8(&line) else {
                assert_eq!(result, Err(ErrorType::InvalidUtf8));
                continue;
            };
            checked += 1;
            accepted += usize::from(assert_fast_agrees(text));
            match serde_only(text) {
                Ok(flows) => assert_eq!(result.map(|()| out), Ok(flows), "{text:?}"),
                Err(e) => assert_eq!(result, Err(e), "{text:?}"),
            }
        }
        // Most mutants hit an ignored value or make the line invalid; some still decode fast.
        assert!(checked > 2500 && accepted > 500, "{checked} {accepted}");
    }
}

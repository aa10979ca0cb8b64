//! goflow2 JSON lines → [`Flow`] records.
//!
//! Owns the mapping from goflow2's JSON keys and renderings (see `../shared/docs/goflow2-json.md`)
//! to the flow record. It does not read lines (that is [`crate::input::stdin`]) and does not
//! count anything (errors are returned as an [`ErrorType`]).
//!
//! Decisions:
//! - Keys are matched by name, in any order; unknown keys are skipped and missing keys take their
//!   zero value, because a goflow2 `-mapping` file can rename, drop or add keys.
//! - Values are deserialized borrowed from the line: addresses are parsed straight from the JSON
//!   string slice and names are matched in place, so a line costs no heap allocation.
//! - `proto`, `etype` and `type` are accepted as names or numbers (mappings and goflow v1 emit
//!   numbers). goflow v1's CamelCase keys are accepted as aliases; its times are in seconds.
//! - Two objects on one line (`}{`, possible with goflow2's unlocked file writes) are both decoded.

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
    // Only objects are flows. Checking the first byte keeps `123` or `[..]` from being reported as
    // a field error by serde's "invalid type: expected struct".
    if text.trim_start().as_bytes().first() != Some(&b'{') {
        return Err(ErrorType::InvalidJson);
    }
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Line<'_>>();
    for item in stream {
        match item {
            Ok(line) => out.push(line.into_flow()),
            Err(e) => {
                return Err(match e.classify() {
                    serde_json::error::Category::Data => ErrorType::InvalidField,
                    _ => ErrorType::InvalidJson,
                });
            }
        }
    }
    Ok(())
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
                // goflow's protobuf enum: 0 unknown, 1 SFLOW_5, 2 NETFLOW_V5, 3 NETFLOW_V9, 4 IPFIX.
                Ok(match n {
                    1 => FlowType::Sflow5,
                    2 => FlowType::NetflowV5,
                    3 => FlowType::NetflowV9,
                    4 => FlowType::Ipfix,
                    _ => FlowType::Unknown,
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOFLOW2_V5: &str = r#"{"type":"NETFLOW_V5","time_received_ns":1704067205123456789,"sequence_num":42,"sampling_rate":100,"sampler_address":"192.0.2.1","time_flow_start_ns":1704067200500000000,"time_flow_end_ns":1704067204500000000,"bytes":5000,"packets":10,"src_addr":"192.168.88.10","dst_addr":"1.1.1.1","etype":"IPv4","proto":"TCP","src_port":51000,"dst_port":443,"in_if":2,"out_if":1,"src_mac":"00:00:00:00:00:00","dst_mac":"00:00:00:00:00:00","src_vlan":0,"dst_vlan":0,"vlan_id":0,"ip_tos":0,"forwarding_status":0,"ip_ttl":0,"ip_flags":0,"tcp_flags":27,"icmp_type":0,"icmp_code":0,"ipv6_flow_label":0,"fragment_id":0,"fragment_offset":0,"src_as":0,"dst_as":13335,"next_hop":"10.0.0.1","next_hop_as":0,"src_net":"192.168.88.0/24","dst_net":"1.1.1.0/24","bgp_next_hop":"","bgp_communities":[],"as_path":[],"mpls_ttl":[],"mpls_label":[],"mpls_ip":[],"observation_domain_id":0,"observation_point_id":0,"layer_stack":[],"layer_size":[],"ipv6_routing_header_addresses":[],"ipv6_routing_header_seg_left":0}"#;

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
                observation_domain: 0,
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
}

//! One flow as one goflow2 v2.2.6 `-format json` line: the 50 keys in goflow2's order, its value
//! renderings, no spaces, `\n`-terminated.
//!
//! Written by hand into a reused buffer rather than through serde: a line is ~1 KB of mostly
//! constant keys, and the hot path must not allocate (the peer figure, `serde_json::to_writer` of
//! an equivalent struct, is to be measured beside it in BENCHMARKS.md). Renderings, from goflow2's
//! source and its real output (`docs/goflow2-json.md` in the shared reference material):
//! - `type`: `NETFLOW_V5`, `NETFLOW_V9`, `IPFIX`, `SFLOW_5`;
//! - addresses as strings, `""` when absent (`next_hop` of a v5 record is always present);
//! - `etype`: `IPv4`, `IPv6`, `ARP`, any other value `""`; `proto`: the IANA keyword table
//!   shared with the `protocol` label ([`crate::names`]), `HOPOPT` when the record has none (0);
//! - MACs `aa:bb:cc:dd:ee:ff`; `src_net`/`dst_net` the address masked to its prefix length
//!   (`0.0.0.0/0` for length 0), `invalid Prefix` without an address;
//! - arrays `[]` when empty; every other value a plain decimal integer.

use std::io::Write;
use std::net::IpAddr;

use crate::flow::{Flow, FlowDetail, FlowType};
use crate::names;

/// Appends the line of `flow` and its `detail` (with its `\n`) to `out`.
// One statement per key, in goflow2's order: the function is the line's schema, read whole
// against goflow2's 50 keys (docs/goflow2-json.md); split into groups it would hide the order.
#[allow(clippy::too_many_lines)]
pub fn write_line(out: &mut Vec<u8>, flow: &Flow, d: &FlowDetail) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(type_name(flow.flow_type).as_bytes());
    out.push(b'"');
    key_u64(out, "time_received_ns", flow.time_received_ns);
    key_u64(out, "sequence_num", u64::from(d.sequence_num));
    key_u64(out, "sampling_rate", flow.sampling_rate);
    key_addr(out, "sampler_address", flow.sampler);
    key_u64(out, "time_flow_start_ns", flow.time_flow_start_ns);
    key_u64(out, "time_flow_end_ns", flow.time_flow_end_ns);
    key_u64(out, "bytes", flow.bytes);
    key_u64(out, "packets", flow.packets);
    key_addr(out, "src_addr", flow.src_addr);
    // As exported, also when `--nat-attribution` made the flow's the one after NAT.
    let dst_addr = d.exported_dst.or(flow.dst_addr);
    key_addr(out, "dst_addr", dst_addr);
    key_str(out, "etype", etype_name(d.etype));
    // goflow2's proto is a number that defaults to 0: a record without one says HOPOPT.
    key_str(
        out,
        "proto",
        names::protocol_name(Some(flow.proto.unwrap_or(0))),
    );
    key_u64(out, "src_port", u64::from(flow.src_port));
    key_u64(out, "dst_port", u64::from(flow.dst_port));
    key_u64(out, "in_if", u64::from(flow.in_if));
    key_u64(out, "out_if", u64::from(flow.out_if));
    key_mac(out, "src_mac", &d.src_mac);
    key_mac(out, "dst_mac", &d.dst_mac);
    key_u64(out, "src_vlan", u64::from(d.src_vlan));
    key_u64(out, "dst_vlan", u64::from(d.dst_vlan));
    key_u64(out, "vlan_id", u64::from(d.vlan_id));
    key_u64(out, "ip_tos", u64::from(d.ip_tos));
    key_u64(out, "forwarding_status", u64::from(d.forwarding_status));
    key_u64(out, "ip_ttl", u64::from(d.ip_ttl));
    key_u64(out, "ip_flags", u64::from(d.ip_flags));
    key_u64(out, "tcp_flags", u64::from(flow.tcp_flags));
    key_u64(out, "icmp_type", u64::from(d.icmp_type));
    key_u64(out, "icmp_code", u64::from(d.icmp_code));
    key_u64(out, "ipv6_flow_label", u64::from(d.ipv6_flow_label));
    key_u64(out, "fragment_id", u64::from(d.fragment_id));
    key_u64(out, "fragment_offset", u64::from(d.fragment_offset));
    key_u64(out, "src_as", u64::from(flow.src_as));
    key_u64(out, "dst_as", u64::from(flow.dst_as));
    key_addr(out, "next_hop", d.next_hop);
    key_u64(out, "next_hop_as", u64::from(d.next_hop_as));
    key_net(out, "src_net", flow.src_addr, d.src_mask);
    key_net(out, "dst_net", dst_addr, d.dst_mask);
    key_addr(out, "bgp_next_hop", d.bgp_next_hop);
    // sFlow-only in goflow2 (BGP communities, AS path): always empty from NetFlow/IPFIX.
    out.extend_from_slice(b",\"bgp_communities\":[],\"as_path\":[]");
    // goflow2 fills mpls_ttl and mpls_ip only from sFlow; NetFlow/IPFIX give labels only.
    out.extend_from_slice(b",\"mpls_ttl\":[]");
    out.extend_from_slice(b",\"mpls_label\":[");
    let labels = &d.mpls_labels[..usize::from(d.mpls_count).min(d.mpls_labels.len())];
    for (i, label) in labels.iter().enumerate() {
        if i != 0 {
            out.push(b',');
        }
        push_u64(out, u64::from(*label));
    }
    out.extend_from_slice(b"],\"mpls_ip\":[]");
    key_u64(
        out,
        "observation_domain_id",
        u64::from(flow.observation_domain),
    );
    key_u64(
        out,
        "observation_point_id",
        u64::from(d.observation_point_id),
    );
    // Decoded packet layers and IPv6 routing headers: sFlow raw samples only.
    out.extend_from_slice(
        b",\"layer_stack\":[],\"layer_size\":[],\"ipv6_routing_header_addresses\":[],\
          \"ipv6_routing_header_seg_left\":0}\n",
    );
}

/// goflow2's `type`. An unknown type cannot come from the native decoder; it is written as
/// goflow2 names its own unknown type.
fn type_name(t: FlowType) -> &'static str {
    match t {
        FlowType::Unknown => "FLOWUNKNOWN",
        known => known.as_str(),
    }
}

fn etype_name(etype: u16) -> &'static str {
    match etype {
        0x0800 => "IPv4",
        0x86dd => "IPv6",
        0x0806 => "ARP",
        _ => "",
    }
}

/// `,"key":`
fn key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn key_u64(out: &mut Vec<u8>, name: &str, value: u64) {
    key(out, name);
    push_u64(out, value);
}

fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A string that needs no escaping (names and addresses only).
fn key_str(out: &mut Vec<u8>, name: &str, value: &str) {
    key(out, name);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

fn key_addr(out: &mut Vec<u8>, name: &str, addr: Option<IpAddr>) {
    key(out, name);
    out.push(b'"');
    if let Some(a) = addr {
        push_addr(out, a);
    }
    out.push(b'"');
}

/// An address as `Display` writes it; IPv4 by hand (six addresses a line: std's formatter was a
/// fifth of the line's time).
fn push_addr(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            for (i, octet) in a.octets().iter().enumerate() {
                if i != 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(*octet));
            }
        }
        // Writing to a Vec cannot fail.
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

fn key_mac(out: &mut Vec<u8>, name: &str, mac: &[u8; 6]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    key(out, name);
    out.push(b'"');
    for (i, b) in mac.iter().enumerate() {
        if i != 0 {
            out.push(b':');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}

/// goflow2 builds the prefix from the address and the mask length: the address masked, `/len`.
fn key_net(out: &mut Vec<u8>, name: &str, addr: Option<IpAddr>, len: u8) {
    key(out, name);
    out.push(b'"');
    match addr.and_then(|a| ipnet::IpNet::new(a, len).ok()) {
        Some(net) => {
            push_addr(out, net.network());
            out.push(b'/');
            push_u64(out, u64::from(net.prefix_len()));
        }
        None => out.extend_from_slice(b"invalid Prefix"),
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    use crate::decode::goflow_json::{GOFLOW2_V5, decode_line};

    /// The flow of goflow2's documented example line, as the stdin input reads it, and the detail
    /// fields the line carries beyond it.
    fn v5_flow() -> (Flow, FlowDetail) {
        let mut flows = Vec::new();
        decode_line(GOFLOW2_V5.as_bytes(), &mut flows).unwrap();
        let detail = FlowDetail {
            sequence_num: 42,
            etype: 0x0800,
            next_hop: ip("10.0.0.1"),
            src_mask: 24,
            dst_mask: 24,
            ..FlowDetail::default()
        };
        (flows[0], detail)
    }

    #[test]
    fn a_v5_flow_is_written_as_goflow2_writes_it() {
        let mut out = Vec::new();
        let (flow, detail) = v5_flow();
        write_line(&mut out, &flow, &detail);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{GOFLOW2_V5}\n"));
    }

    #[test]
    fn the_fifty_keys_in_goflow2_order_whatever_the_values() {
        let want: Vec<String> = {
            let v: serde_json::Value = serde_json::from_str(GOFLOW2_V5).unwrap();
            let mut keys: Vec<(usize, String)> = v
                .as_object()
                .unwrap()
                .keys()
                .map(|k| (GOFLOW2_V5.find(&format!("\"{k}\":")).unwrap(), k.clone()))
                .collect();
            keys.sort();
            keys.into_iter().map(|(_, k)| k).collect()
        };
        assert_eq!(want.len(), 50);
        let (mut f, _) = v5_flow();
        f.flow_type = FlowType::Ipfix;
        f.src_addr = ip("2001:db8::1");
        f.dst_addr = None;
        f.proto = None;
        let d = FlowDetail {
            etype: 0x86dd,
            src_mac: [0xaa, 0xbb, 0xcc, 0x01, 0x02, 0xff],
            mpls_labels: [16, 17, 18, 0, 0, 0, 0, 0, 0, 0],
            mpls_count: 3,
            src_mask: 48,
            ..FlowDetail::default()
        };
        let mut out = Vec::new();
        write_line(&mut out, &f, &d);
        let line = std::str::from_utf8(&out).unwrap();
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let got: Vec<String> = {
            let mut keys: Vec<(usize, String)> = want
                .iter()
                .map(|k| (line.find(&format!("\"{k}\":")).unwrap(), k.clone()))
                .collect();
            keys.sort();
            keys.into_iter().map(|(_, k)| k).collect()
        };
        assert_eq!(got, want);
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 50);
        assert_eq!(v["type"], "IPFIX");
        assert_eq!(v["src_addr"], "2001:db8::1");
        assert_eq!(v["dst_addr"], "");
        assert_eq!(v["etype"], "IPv6");
        assert_eq!(v["proto"], "HOPOPT");
        assert_eq!(v["src_mac"], "aa:bb:cc:01:02:ff");
        assert_eq!(v["src_net"], "2001:db8::/48");
        assert_eq!(v["dst_net"], "invalid Prefix");
        assert_eq!(v["next_hop"], "");
        assert_eq!(v["mpls_label"], serde_json::json!([16, 17, 18]));
        // Times above 2^53 stay exact integers.
        assert!(line.contains("\"time_received_ns\":1704067205123456789,"));
    }

    #[test]
    fn renderings_of_edge_values() {
        let (mut f, mut d) = v5_flow();
        d.src_mask = 0;
        d.etype = 0x8847; // MPLS: goflow2 has no name for it
        f.proto = Some(200);
        let mut out = Vec::new();
        write_line(&mut out, &f, &d);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["src_net"], "0.0.0.0/0");
        assert_eq!(v["etype"], "");
        assert_eq!(v["proto"], "unassigned");
        assert_eq!(v["bytes"], 5000);
    }
}

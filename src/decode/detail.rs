//! The goflow2 detail fields of flow records ([`FlowDetail`]): what a goflow2 JSON line carries
//! beyond the metrics' needs. Read only when flow lines are written (`--flows-out`, issue 11), so
//! the metrics' hot path never pays for them: the decoder first decodes a set's flows as always,
//! then, when asked, this module reads the same records again for their details.
//!
//! The mapping is goflow2 v2.2.6's (`docs/goflow2-flow-lines.md`), including its width rules:
//! integers of 0 to 8 bytes, truncated to the field's width; the last field of the template wins.

use std::net::{IpAddr, Ipv4Addr};

use super::netflow::{set_addr, v4_or_v6, v5_records};
use super::template::{self, DetailPlan, DetailTarget, Kind, Layout, Shape};
use crate::flow::{Flow, FlowDetail, MPLS_DEPTH};

const IPV4: u16 = 0x0800;
const IPV6: u16 = 0x86DD;

/// The details of a v5 datagram's records, in record order, as goflow2 fills them: the header's
/// flow sequence; per record the next hop (always an address: `0.0.0.0` when zero), ToS, AS
/// numbers and prefix lengths; EtherType IPv4. Appends nothing for a datagram the decoder
/// refuses (`netflow::v5_records`), so the details line up with its flows.
pub fn v5(datagram: &[u8], out: &mut Vec<FlowDetail>) {
    let Some(records) = v5_records(datagram) else {
        return;
    };
    let be32 = |r: &[u8], i: usize| u32::from_be_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    // `v5_records` checked the 24-byte header is there.
    let sequence_num = be32(datagram, 16);
    out.extend(records.chunks_exact(48).map(|r| FlowDetail {
        sequence_num,
        etype: IPV4,
        next_hop: Some(IpAddr::V4(Ipv4Addr::from(be32(r, 8)))),
        ip_tos: r[39],
        src_mask: r[44],
        dst_mask: r[45],
        ..FlowDetail::default()
    }));
}

/// The details of the records of one v9/IPFIX data set, one per flow the decoder took from it
/// (`flows`, in record order), appended to `out`. `sequence` is the message header's.
pub fn records(
    layout: &Layout,
    body: &[u8],
    sequence: u32,
    flows: &[Flow],
    out: &mut Vec<FlowDetail>,
) {
    if layout.kind != Kind::Data || flows.is_empty() {
        return;
    }
    let plan = &layout.detail;
    let start = out.len();
    match &layout.shape {
        Shape::Fixed { record_len, .. } => {
            for (r, flow) in body.chunks_exact((*record_len).max(1)).zip(flows) {
                let mut d = FlowDetail::default();
                let mut ip_version = None;
                for op in plan.ops.iter() {
                    if let Some(v) = r.get(op.offset..op.offset + op.len) {
                        apply(&mut d, &mut ip_version, op.target, v);
                    }
                }
                out.push(finish(d, plan, ip_version, sequence, flow));
            }
        }
        Shape::Variable { fields, min_len } => {
            let mut rest = body;
            for flow in flows {
                let (mut d, mut ip_version) = (FlowDetail::default(), None);
                let mut next_op = 0;
                let walked = template::walk_variable(fields, *min_len, rest, |i, v| {
                    // Ops are in template order: at most one per field.
                    if let Some(op) = plan.ops.get(next_op).filter(|op| op.index == i) {
                        apply(&mut d, &mut ip_version, op.target, v);
                        next_op += 1;
                    }
                });
                // The decoder made a flow of this record, so it was whole.
                let Ok(Some(len)) = walked else { break };
                rest = &rest[len..];
                out.push(finish(d, plan, ip_version, sequence, flow));
            }
        }
    }
    // One detail per flow whatever happened above (it cannot differ: same records, same walk).
    out.resize(start + flows.len(), FlowDetail::default());
}

/// Applies one field value as goflow2 does.
fn apply(d: &mut FlowDetail, ip_version: &mut Option<u16>, target: DetailTarget, v: &[u8]) {
    use DetailTarget as D;
    // goflow2 refuses the whole datagram over an integer wider than 8 bytes; the decoder keeps
    // the datagram's flows, so such a field reads as 0 here.
    let n = uint(v);
    match target {
        D::Tos => d.ip_tos = n as u8,
        D::Ttl => d.ip_ttl = n as u8,
        D::IpFlags => d.ip_flags = (n as u8) >> 5,
        D::ForwardingStatus => d.forwarding_status = n as u32,
        D::IcmpTypeCode => {
            let tc = n as u16;
            d.icmp_type = (tc >> 8) as u8;
            d.icmp_code = tc as u8;
        }
        D::IcmpType => d.icmp_type = n as u8,
        D::IcmpCode => d.icmp_code = n as u8,
        D::FlowLabel => d.ipv6_flow_label = n as u32,
        D::FragmentId => d.fragment_id = n as u32,
        D::FragmentOffset => d.fragment_offset = n as u32,
        D::NextHop => d.next_hop = v4_or_v6(v),
        D::BgpNextHop => d.bgp_next_hop = v4_or_v6(v),
        D::SrcMask => d.src_mask = n as u8,
        D::DstMask => d.dst_mask = n as u8,
        D::SrcMac => d.src_mac = mac(n),
        D::DstMac => d.dst_mac = mac(n),
        D::SrcVlan => {
            d.vlan_id = n as u16;
            d.src_vlan = n as u16;
        }
        D::DstVlan => d.dst_vlan = n as u16,
        D::Mpls(depth) => {
            let depth = usize::from(depth).min(MPLS_DEPTH - 1);
            // The 20-bit label above the 3 EXP bits and the bottom-of-stack bit; deeper entries
            // make the stack grow (zero-filled), as in goflow2.
            d.mpls_labels[depth] = (n as u32) >> 4;
            d.mpls_count = d.mpls_count.max(depth as u8 + 1);
        }
        D::IpVersion => match v.first() {
            Some(4) => *ip_version = Some(IPV4),
            Some(6) => *ip_version = Some(IPV6),
            _ => {}
        },
        D::ObservationPointId => d.observation_point_id = n as u32,
        // Addresses: a non-zero value wins over zero, as for the flow's own.
        D::NatSrc => set_addr(&mut d.post_nat_src, v4_or_v6(v)),
        D::NatDst => set_addr(&mut d.post_nat_dst, v4_or_v6(v)),
        D::NatSrcPort => d.post_nat_src_port = n as u16,
        D::NatDstPort => d.post_nat_dst_port = n as u16,
        D::Dst => set_addr(&mut d.exported_dst, v4_or_v6(v)),
    }
}

/// The record's `etype` and header fields. goflow2 sets `etype` at each effective address write
/// and at IE 60, in template order: the family of the flow's addresses (the destination's when
/// both are there; exporters send one family per record), unless IE 60 comes after them.
fn finish(
    mut d: FlowDetail,
    plan: &DetailPlan,
    ip_version: Option<u16>,
    sequence: u32,
    flow: &Flow,
) -> FlowDetail {
    let family = flow.dst_addr.or(flow.src_addr).map(|a| match a {
        IpAddr::V4(_) => IPV4,
        IpAddr::V6(_) => IPV6,
    });
    d.etype = match (ip_version, family) {
        (Some(v), _) if plan.ip_version_last => v,
        (_, Some(f)) => f,
        (v, None) => v.unwrap_or(0),
    };
    d.sequence_num = sequence;
    // Kept only when the decoder replaced the flow's destination (`--nat-attribution`).
    if d.exported_dst == flow.dst_addr {
        d.exported_dst = None;
    }
    d
}

/// An unsigned big-endian integer of 0 to 8 bytes (0 bytes read as 0, as goflow2 does); wider
/// values as 0.
fn uint(v: &[u8]) -> u64 {
    if v.len() > 8 {
        return 0;
    }
    v.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

/// A MAC from its integer value: the low 6 bytes.
fn mac(n: u64) -> [u8; 6] {
    let b = n.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::netflow::{DatagramDecoder, DecoderLimits, NetflowDecoder};
    use crate::testkit::{ipfix, set, template, v9};

    /// Decodes `datagrams` from one exporter; the flows and details of the last one.
    fn decode(datagrams: &[Vec<u8>]) -> (Vec<Flow>, Vec<FlowDetail>) {
        let mut decoder = NetflowDecoder::new(DecoderLimits::default());
        let exporter = "192.0.2.1:2055".parse().unwrap();
        let (mut flows, mut details) = (Vec::new(), Vec::new());
        for d in datagrams {
            flows.clear();
            details.clear();
            decoder.decode_detailed(exporter, d, 1, &mut flows, Some(&mut details));
        }
        assert_eq!(flows.len(), details.len());
        (flows, details)
    }

    /// Every detail IE in one fixed-length IPFIX template, in goflow2's renderings of them.
    #[test]
    fn every_detail_ie_as_goflow2_maps_it() {
        #[rustfmt::skip]
        let fields: &[(u16, u16)] = &[
            (8, 4), (12, 4),        // addresses
            (5, 1), (52, 1),        // ToS, minimum TTL
            (197, 1), (89, 1),      // fragment flags, forwarding status
            (32, 2),                // ICMP type and code
            (31, 4), (54, 4), (88, 2),
            (16, 4), (17, 2),       // AS numbers, 4 and 2 bytes
            (15, 4), (18, 4),       // next hop, BGP next hop
            (9, 1), (13, 1),        // prefix lengths
            (56, 6), (80, 6),       // MACs
            (58, 2), (59, 2),       // VLANs
            (71, 3),                // second MPLS label only
            (138, 4),
        ];
        #[rustfmt::skip]
        let record = [
            10, 0, 0, 1, 10, 0, 0, 2,
            0xB8, 63,
            0x40, 0x42,
            3, 1,
            0, 0x0A, 0xBC, 0xDE, 0, 0, 0x12, 0x34, 0x05, 0xB9,
            0, 0, 0xFD, 0xE8, 0xFB, 0xF0,
            192, 0, 2, 254, 198, 51, 100, 1,
            24, 16,
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
            0, 100, 0, 200,
            0x03, 0xE8, 0x01,
            0, 0, 0, 7,
        ];
        let (flows, details) = decode(&[ipfix(
            0,
            &[set(2, &template(300, fields)), set(300, &record)],
        )]);
        let d = details[0];
        assert_eq!(d.sequence_num, 1);
        assert_eq!(d.etype, IPV4);
        assert_eq!((d.ip_tos, d.ip_ttl), (0xB8, 63));
        // DF (0x40) is goflow2's 2; the status byte whole.
        assert_eq!((d.ip_flags, d.forwarding_status), (2, 0x42));
        assert_eq!((d.icmp_type, d.icmp_code), (3, 1));
        assert_eq!(d.ipv6_flow_label, 0x000A_BCDE);
        assert_eq!((d.fragment_id, d.fragment_offset), (0x1234, 0x05B9));
        // AS numbers are the flow's own (they feed `--asn-db`'s families).
        assert_eq!((flows[0].src_as, flows[0].dst_as), (65_000, 64_496));
        assert_eq!(d.next_hop, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254))));
        assert_eq!(
            d.bgp_next_hop,
            Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)))
        );
        assert_eq!((d.src_mask, d.dst_mask), (24, 16));
        assert_eq!(d.src_mac, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(d.dst_mac, [0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF]);
        assert_eq!((d.vlan_id, d.src_vlan, d.dst_vlan), (100, 100, 200));
        // Label 16000 (0x03E80 << 4 | S bit) at depth 1: the stack is [0, 16000].
        assert_eq!(&d.mpls_labels[..usize::from(d.mpls_count)], &[0, 16_000]);
        assert_eq!(d.observation_point_id, 7);
    }

    /// `etype`: the addresses' family, unless IE 60 comes after them; IE 60 alone; neither.
    #[test]
    fn etype_follows_goflow2s_order_of_writes() {
        type Fields = &'static [(u16, u16)];
        let cases: [(Fields, &[u8], u16); 4] = [
            (&[(60, 1), (27, 16)], &[4; 17], IPV6),
            (&[(27, 16), (60, 1)], &[4; 17], IPV4),
            (&[(60, 1), (1, 4)], &[6, 0, 0, 0, 1], IPV6),
            (&[(1, 4)], &[0, 0, 0, 1], 0),
        ];
        for (fields, record, etype) in cases {
            let (_, details) =
                decode(&[v9(0, &[set(0, &template(300, fields)), set(300, record)])]);
            assert_eq!(details[0].etype, etype, "{fields:?}");
        }
    }

    /// Variable-length templates are walked too, and a damaged record ends both flows and
    /// details at the same place.
    #[test]
    fn variable_length_records_line_up_with_their_flows() {
        let fields: &[(u16, u16)] = &[(8, 4), (82, 0xFFFF), (5, 1)];
        let mut records = Vec::new();
        for tos in [1u8, 2] {
            records.extend_from_slice(&[10, 0, 0, tos, 2, b'e', b'0', tos]);
        }
        records.extend_from_slice(&[10, 0, 0, 3, 9, b'x']); // announces 9 bytes, has 1
        let (flows, details) = decode(&[ipfix(
            0,
            &[set(2, &template(300, fields)), set(300, &records)],
        )]);
        assert_eq!(flows.len(), 2);
        let tos: Vec<u8> = details.iter().map(|d| d.ip_tos).collect();
        assert_eq!(tos, [1, 2]);
    }
}

#[cfg(test)]
mod nat_tests {
    use super::*;
    use crate::decode::netflow::{DatagramDecoder, DecoderLimits, NetflowDecoder};
    use crate::flows_out::format::write_line;
    use crate::testkit::{ipfix, set, template};

    /// RouterOS template 258's address fields: a reply to the router's outside address, and a
    /// record whose destination after NAT is zero.
    fn datagram() -> Vec<u8> {
        let fields: &[(u16, u16)] = &[(8, 4), (12, 4), (225, 4), (226, 4), (227, 2), (228, 2)];
        #[rustfmt::skip]
        let records = [
            192, 168, 35, 143, 192, 168, 230, 216, 192, 168, 35, 143, 10, 10, 6, 11, 0x1f, 0x90, 0, 80,
            192, 168, 35, 143, 192, 168, 230, 216, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        ipfix(0, &[set(2, &template(258, fields)), set(258, &records)])
    }

    fn decode(nat: bool) -> (Vec<Flow>, Vec<FlowDetail>) {
        let mut d = NetflowDecoder::new(DecoderLimits::default()).with_nat_attribution(nat);
        let (mut flows, mut details) = (Vec::new(), Vec::new());
        let exporter = "192.0.2.1:2055".parse().unwrap();
        d.decode_detailed(exporter, &datagram(), 1, &mut flows, Some(&mut details));
        (flows, details)
    }

    #[test]
    fn nat_attribution_takes_the_destination_after_nat_and_lines_keep_the_exported_one() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let (flows, details) = decode(true);
        assert_eq!(flows[0].dst_addr, ip("10.10.6.11"));
        assert_eq!(flows[0].src_addr, ip("192.168.35.143"));
        // Zero after NAT: the destination as exported.
        assert_eq!(flows[1].dst_addr, ip("192.168.230.216"));
        let d = details[0];
        assert_eq!(
            (d.post_nat_src, d.post_nat_dst),
            (ip("192.168.35.143"), ip("10.10.6.11"))
        );
        assert_eq!((d.post_nat_src_port, d.post_nat_dst_port), (8080, 80));
        assert_eq!(d.exported_dst, ip("192.168.230.216"));
        assert_eq!(details[1].exported_dst, None);
        let mut line = Vec::new();
        write_line(&mut line, &flows[0], &d);
        let line = String::from_utf8(line).unwrap();
        assert!(line.contains(r#""dst_addr":"192.168.230.216""#), "{line}");

        // Without the flag: the flow as exported, the same line.
        let (plain, plain_details) = decode(false);
        assert_eq!(plain[0].dst_addr, ip("192.168.230.216"));
        assert_eq!(plain_details[0].exported_dst, None);
        let mut plain_line = Vec::new();
        write_line(&mut plain_line, &plain[0], &plain_details[0]);
        assert_eq!(String::from_utf8(plain_line).unwrap(), line);
    }
}

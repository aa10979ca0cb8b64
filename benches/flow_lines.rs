//! goflow2 JSON flow lines written per second on one core (issue 11): the product formatter
//! (`flows_out::format::write_line`, hand-written into a reused buffer) side by side with the peer
//! way of doing it, `serde_json::to_writer` of a 50-field `#[derive(Serialize)]` struct holding
//! the same values (addresses, MACs, names and prefixes as strings, built per line as a serde
//! caller would).
//!
//! Both write the same 100,000 distinct flows (half IPv4, half IPv6, varied ports, protocols,
//! MACs and MPLS labels) into a `Vec` that is cleared every 1,000 lines, so the figure is the
//! formatting alone (no I/O). The first lines of both are checked to parse to the same JSON.
//!
//! Run: `cargo bench --bench flow_lines -- [SECONDS_PER_CASE]` (default 2). Prints lines/s and
//! MB/s for each, best of 3 runs, and the ratio.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use goflow2_exporter::flow::{Flow, FlowDetail, FlowType, MPLS_DEPTH};
use goflow2_exporter::flows_out::format::write_line;
use goflow2_exporter::names::protocol_name;
use serde::Serialize;

fn flows(n: u32) -> Vec<(Flow, FlowDetail)> {
    (0..n)
        .map(|i| {
            let v6 = i % 2 == 1;
            let (src, dst): (IpAddr, IpAddr) = if v6 {
                (
                    Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(i))
                        .into(),
                    Ipv6Addr::from(0x2001_0db8_ffff_0000_0000_0000_0000_0001u128).into(),
                )
            } else {
                (
                    Ipv4Addr::from(0x0a00_0000 | i).into(),
                    Ipv4Addr::new(198, 51, 100, (i % 250) as u8).into(),
                )
            };
            let flow = Flow {
                flow_type: if i % 3 == 0 {
                    FlowType::NetflowV9
                } else {
                    FlowType::Ipfix
                },
                sampler: Some(Ipv4Addr::new(192, 0, 2, 1).into()),
                src_addr: Some(src),
                dst_addr: Some(dst),
                proto: Some([6, 17, 1, 58][(i % 4) as usize]),
                src_port: (i % 65536) as u16,
                dst_port: 443,
                bytes: 1500 * u64::from(i % 1000),
                packets: u64::from(i % 1000),
                sampling_rate: 1,
                time_flow_start_ns: 1_764_147_600_000_000_000 + u64::from(i) * 1_000_000,
                time_flow_end_ns: 1_764_147_601_000_000_000 + u64::from(i) * 1_000_000,
                time_received_ns: 1_764_147_602_123_456_789,
                in_if: i % 24,
                out_if: 1,
                tcp_flags: (i % 64) as u16,
                observation_domain: 7,
                src_as: 64_512 + i % 100,
                dst_as: 15_169,
            };
            let mut mpls_labels = [0; MPLS_DEPTH];
            mpls_labels[0] = 16 + i % 1000;
            let detail = FlowDetail {
                sequence_num: i,
                etype: if v6 { 0x86dd } else { 0x0800 },
                src_mac: [0x02, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                dst_mac: [0x02, 0xff, 0, 0, 0, 1],
                src_vlan: 10,
                ip_tos: (i % 4) as u8,
                ip_ttl: 64,
                next_hop: Some(Ipv4Addr::new(10, 255, 0, 1).into()),
                src_mask: if v6 { 64 } else { 24 },
                dst_mask: if v6 { 48 } else { 24 },
                mpls_labels,
                mpls_count: (i % 2) as u8,
                ..FlowDetail::default()
            };
            (flow, detail)
        })
        .collect()
}

/// The peer: the same line as a 50-field struct for serde.
#[derive(Serialize)]
struct Line {
    r#type: &'static str,
    time_received_ns: u64,
    sequence_num: u32,
    sampling_rate: u64,
    sampler_address: String,
    time_flow_start_ns: u64,
    time_flow_end_ns: u64,
    bytes: u64,
    packets: u64,
    src_addr: String,
    dst_addr: String,
    etype: &'static str,
    proto: &'static str,
    src_port: u16,
    dst_port: u16,
    in_if: u32,
    out_if: u32,
    src_mac: String,
    dst_mac: String,
    src_vlan: u16,
    dst_vlan: u16,
    vlan_id: u16,
    ip_tos: u8,
    forwarding_status: u32,
    ip_ttl: u8,
    ip_flags: u8,
    tcp_flags: u16,
    icmp_type: u8,
    icmp_code: u8,
    ipv6_flow_label: u32,
    fragment_id: u32,
    fragment_offset: u32,
    src_as: u32,
    dst_as: u32,
    next_hop: String,
    next_hop_as: u32,
    src_net: String,
    dst_net: String,
    bgp_next_hop: String,
    bgp_communities: [u32; 0],
    as_path: [u32; 0],
    mpls_ttl: [u32; 0],
    mpls_label: Vec<u32>,
    mpls_ip: [u32; 0],
    observation_domain_id: u32,
    observation_point_id: u32,
    layer_stack: [u32; 0],
    layer_size: [u32; 0],
    ipv6_routing_header_addresses: [u32; 0],
    ipv6_routing_header_seg_left: u32,
}

fn addr(a: Option<IpAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_default()
}

fn mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn net(a: Option<IpAddr>, len: u8) -> String {
    match a.and_then(|a| ipnet::IpNet::new(a, len).ok()) {
        Some(n) => format!("{}/{}", n.network(), n.prefix_len()),
        None => "invalid Prefix".to_string(),
    }
}

fn peer_line(f: &Flow, d: &FlowDetail) -> Line {
    Line {
        r#type: f.flow_type.as_str(),
        time_received_ns: f.time_received_ns,
        sequence_num: d.sequence_num,
        sampling_rate: f.sampling_rate,
        sampler_address: addr(f.sampler),
        time_flow_start_ns: f.time_flow_start_ns,
        time_flow_end_ns: f.time_flow_end_ns,
        bytes: f.bytes,
        packets: f.packets,
        src_addr: addr(f.src_addr),
        dst_addr: addr(f.dst_addr),
        etype: match d.etype {
            0x0800 => "IPv4",
            0x86dd => "IPv6",
            0x0806 => "ARP",
            _ => "",
        },
        proto: protocol_name(Some(f.proto.unwrap_or(0))),
        src_port: f.src_port,
        dst_port: f.dst_port,
        in_if: f.in_if,
        out_if: f.out_if,
        src_mac: mac(&d.src_mac),
        dst_mac: mac(&d.dst_mac),
        src_vlan: d.src_vlan,
        dst_vlan: d.dst_vlan,
        vlan_id: d.vlan_id,
        ip_tos: d.ip_tos,
        forwarding_status: d.forwarding_status,
        ip_ttl: d.ip_ttl,
        ip_flags: d.ip_flags,
        tcp_flags: f.tcp_flags,
        icmp_type: d.icmp_type,
        icmp_code: d.icmp_code,
        ipv6_flow_label: d.ipv6_flow_label,
        fragment_id: d.fragment_id,
        fragment_offset: d.fragment_offset,
        src_as: f.src_as,
        dst_as: f.dst_as,
        next_hop: addr(d.next_hop),
        next_hop_as: d.next_hop_as,
        src_net: net(f.src_addr, d.src_mask),
        dst_net: net(f.dst_addr, d.dst_mask),
        bgp_next_hop: addr(d.bgp_next_hop),
        bgp_communities: [],
        as_path: [],
        mpls_ttl: [],
        mpls_label: d.mpls_labels[..usize::from(d.mpls_count)].to_vec(),
        mpls_ip: [],
        observation_domain_id: f.observation_domain,
        observation_point_id: d.observation_point_id,
        layer_stack: [],
        layer_size: [],
        ipv6_routing_header_addresses: [],
        ipv6_routing_header_seg_left: 0,
    }
}

/// Lines/s and bytes/s of `write` over `flows`, looped for `secs`.
fn measure(
    flows: &[(Flow, FlowDetail)],
    secs: f64,
    mut write: impl FnMut(&mut Vec<u8>, &Flow, &FlowDetail),
) -> (f64, f64) {
    let mut out = Vec::with_capacity(1 << 20);
    let (mut lines, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs_f64(secs) {
        for chunk in flows.chunks(1000) {
            out.clear();
            for (f, d) in chunk {
                write(&mut out, f, d);
            }
            lines += chunk.len() as u64;
            bytes += out.len() as u64;
            std::hint::black_box(&out);
        }
    }
    let t = start.elapsed().as_secs_f64();
    (lines as f64 / t, bytes as f64 / t)
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let flows = flows(100_000);
    // Same JSON from both (the peer is a fair comparison, not a different output).
    for (f, d) in flows.iter().take(1000) {
        let mut ours = Vec::new();
        write_line(&mut ours, f, d);
        let a: serde_json::Value = serde_json::from_slice(&ours).unwrap();
        let b = serde_json::to_value(peer_line(f, d)).unwrap();
        assert_eq!(a, b, "the two writers disagree");
    }
    let best = |w: &mut dyn FnMut(&mut Vec<u8>, &Flow, &FlowDetail)| {
        (0..3)
            .map(|_| measure(&flows, secs, &mut *w))
            .fold((0.0f64, 0.0f64), |b, r| if r.0 > b.0 { r } else { b })
    };
    let ours = best(&mut |out, f, d| write_line(out, f, d));
    let peer = best(&mut |out, f, d| {
        serde_json::to_writer(&mut *out, &peer_line(f, d)).unwrap();
        out.push(b'\n');
    });
    println!(
        "write_line          {:>10.0} lines/s  {:>6.0} MB/s",
        ours.0,
        ours.1 / 1e6
    );
    println!(
        "serde_json peer     {:>10.0} lines/s  {:>6.0} MB/s",
        peer.0,
        peer.1 / 1e6
    );
    println!("ratio {:.2}x", ours.0 / peer.0);
}

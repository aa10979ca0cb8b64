//! The flow record: the one value every input produces and the aggregator consumes.
//!
//! Both inputs (goflow2 JSON on stdin, native NetFlow/IPFIX over UDP) normalize into [`Flow`].
//! It is a plain `Copy` value with no heap data, so batches of flows live in reused `Vec`s and
//! filling one costs no allocation of its own. What the decoders allocate is their state, not
//! flows: the native decoder allocates when it learns a template, an exporter or an interface name,
//! and nothing per record once it knows them (`tests/decode_alloc.rs` counts it); the stdin
//! decoder reads every value borrowed from the line.

use std::net::IpAddr;

/// The kind of export a flow came from, rendered as goflow2's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FlowType {
    NetflowV5,
    NetflowV9,
    Ipfix,
    Sflow5,
    /// A `type` we do not know (a `-mapping` file can render anything): kept, not dropped.
    #[default]
    Unknown,
}

impl FlowType {
    /// Every variant, in label order (used to pre-create and to test label sets).
    pub const ALL: [FlowType; 5] = [
        FlowType::NetflowV5,
        FlowType::NetflowV9,
        FlowType::Ipfix,
        FlowType::Sflow5,
        FlowType::Unknown,
    ];

    /// The `flow_type` label value: goflow2's rendering of `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowType::NetflowV5 => "NETFLOW_V5",
            FlowType::NetflowV9 => "NETFLOW_V9",
            FlowType::Ipfix => "IPFIX",
            FlowType::Sflow5 => "SFLOW_5",
            FlowType::Unknown => "UNKNOWN",
        }
    }

    /// Parses goflow2's `type` rendering; anything else is [`FlowType::Unknown`].
    pub fn from_goflow(s: &str) -> FlowType {
        match s {
            "NETFLOW_V5" => FlowType::NetflowV5,
            "NETFLOW_V9" => FlowType::NetflowV9,
            "IPFIX" => FlowType::Ipfix,
            "SFLOW_5" => FlowType::Sflow5,
            _ => FlowType::Unknown,
        }
    }
}

/// One flow, normalized. Counters are raw (unscaled): sampling correction happens in aggregation,
/// where per-sampler overrides are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    pub flow_type: FlowType,
    /// The router that exported the flow (NetFlow/IPFIX: the datagram's source IP, IPv4-mapped
    /// form unwrapped; sFlow: the agent address). `None` when unknown.
    pub sampler: Option<IpAddr>,
    pub src_addr: Option<IpAddr>,
    pub dst_addr: Option<IpAddr>,
    /// IP protocol number; `None` when unknown.
    pub proto: Option<u8>,
    pub src_port: u16,
    pub dst_port: u16,
    /// Raw byte counter as exported (not multiplied by the sampling rate).
    pub bytes: u64,
    /// Raw packet counter as exported.
    pub packets: u64,
    /// Sampling rate carried by the flow: 1 in N packets. 0 means unknown.
    pub sampling_rate: u64,
    /// Flow start and end, Unix time in nanoseconds (0 when unknown).
    pub time_flow_start_ns: u64,
    pub time_flow_end_ns: u64,
    /// When the collector received the flow, Unix time in nanoseconds (0 when unknown).
    pub time_received_ns: u64,
    pub in_if: u32,
    pub out_if: u32,
    pub tcp_flags: u16,
    /// NetFlow v9 source id / IPFIX observation domain id (0 when absent).
    pub observation_domain: u32,
    /// The AS numbers the record carries (v5 `src_as`/`dst_as`, IE 16/17), 0 when it has none:
    /// they win over `--asn-db`.
    pub src_as: u32,
    pub dst_as: u32,
}

/// The fields of a goflow2 flow line that no metric family uses (issue 11): the export's sequence
/// number and the record's layer 2, IP header, routing and MPLS fields. Zero or `None` when the
/// record does not carry them.
///
/// Kept beside [`Flow`] (120 bytes), not inside it: a `Flow` with these 140 bytes more made the
/// in-process decode + aggregate rate 13-15 % slower (`cargo bench --bench flood`, random
/// addresses 4.8-5.2 M vs 5.8-5.9 M flows/s, 50 addresses 8.9-10.4 M vs 10.8-12.0 M) although no
/// metric reads them. A decoder fills details only when a flow line is to be written. The post-NAT
/// fields are details too: `--nat-attribution` is applied by the decoder to `Flow::dst_addr`,
/// so the metrics never need them per flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowDetail {
    /// The export header's sequence number (v5: flows, v9: datagrams, IPFIX: data records).
    pub sequence_num: u32,
    /// EtherType: 0x0800 IPv4, 0x86DD IPv6, 0x0806 ARP; 0 unknown.
    pub etype: u16,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_vlan: u16,
    pub dst_vlan: u16,
    pub vlan_id: u16,
    pub ip_tos: u8,
    pub ip_ttl: u8,
    pub ip_flags: u8,
    pub forwarding_status: u32,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub ipv6_flow_label: u32,
    pub fragment_id: u32,
    pub fragment_offset: u32,
    pub next_hop: Option<IpAddr>,
    pub next_hop_as: u32,
    /// Prefix lengths of the source and destination networks (goflow2's `src_net`/`dst_net`).
    pub src_mask: u8,
    pub dst_mask: u8,
    pub bgp_next_hop: Option<IpAddr>,
    /// MPLS label stack entries, top first: the 20-bit label of each; `mpls_count` are used.
    pub mpls_labels: [u32; MPLS_DEPTH],
    pub mpls_count: u8,
    pub observation_point_id: u32,
    /// The addresses and ports after NAT (IE 225/281, 226/282, 227, 228; RouterOS and other NAT
    /// devices send them), `None`/0 when the record has none.
    pub post_nat_src: Option<IpAddr>,
    pub post_nat_dst: Option<IpAddr>,
    pub post_nat_src_port: u16,
    pub post_nat_dst_port: u16,
    /// The destination as exported, when the decoder replaced the flow's destination by the one
    /// after NAT (`--nat-attribution`): flow lines show what was exported, as goflow2 does.
    pub exported_dst: Option<IpAddr>,
}

/// MPLS label stack entries a flow record can carry (IE 70-79).
pub const MPLS_DEPTH: usize = 10;

/// Unwraps an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) to plain IPv4, as goflow2 shows
/// sampler addresses. Other addresses are returned unchanged.
pub fn unmap_v4(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_type_round_trips() {
        for t in FlowType::ALL {
            if t != FlowType::Unknown {
                assert_eq!(FlowType::from_goflow(t.as_str()), t);
            }
        }
        assert_eq!(FlowType::from_goflow("NETFLOW_V7"), FlowType::Unknown);
    }

    #[test]
    fn unmaps_only_v4_mapped() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(unmap_v4(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(unmap_v4(v6), v6);
        // IPv4-compatible (deprecated ::a.b.c.d) is not IPv4-mapped and stays IPv6.
        let compat: IpAddr = "::192.0.2.1".parse().unwrap();
        assert_eq!(unmap_v4(compat), compat);
    }
}

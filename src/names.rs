//! Protocol names: goflow2's rendering of IP protocol numbers.
//!
//! goflow2 v2.2.0+ renders `proto` with the IANA protocol-number *keywords* (`TCP`, `IPv6-ICMP`,
//! ...), with `unassigned` for 146-252, `experimental` for 253-254 and `reserved` for 255. Our
//! `protocol` label uses the same table so that a number seen natively and a name seen on stdin give
//! the same series. This file owns the table and its inverse; nothing else.

/// The label value used when the protocol is not known (absent, or `""` from goflow2 < v2.2).
pub const UNKNOWN: &str = "unknown";

/// goflow2's `ProtoName` table, indexed by protocol number.
static PROTO_NAMES: [&str; 256] = [
    "HOPOPT",
    "ICMP",
    "IGMP",
    "GGP",
    "IPv4",
    "ST",
    "TCP",
    "CBT", // 0-7
    "EGP",
    "IGP",
    "BBN-RCC-MON",
    "NVP-II",
    "PUP",
    "ARGUS",
    "EMCON",
    "XNET", // 8-15
    "CHAOS",
    "UDP",
    "MUX",
    "DCN-MEAS",
    "HMP",
    "PRM",
    "XNS-IDP",
    "TRUNK-1", // 16-23
    "TRUNK-2",
    "LEAF-1",
    "LEAF-2",
    "RDP",
    "IRTP",
    "ISO-TP4",
    "NETBLT",
    "MFE-NSP", // 24-31
    "MERIT-INP",
    "DCCP",
    "3PC",
    "IDPR",
    "XTP",
    "DDP",
    "IDPR-CMTP",
    "TP++", // 32-39
    "IL",
    "IPv6",
    "SDRP",
    "IPv6-Route",
    "IPv6-Frag",
    "IDRP",
    "RSVP",
    "GRE", // 40-47
    "DSR",
    "BNA",
    "ESP",
    "AH",
    "I-NLSP",
    "SWIPE",
    "NARP",
    "Min-IPv4", // 48-55
    "TLSP",
    "SKIP",
    "IPv6-ICMP",
    "IPv6-NoNxt",
    "IPv6-Opts",
    "any-host-internal-protocol",
    "CFTP",
    "any-local-network", // 56-63
    "SAT-EXPAK",
    "KRYPTOLAN",
    "RVD",
    "IPPC",
    "any-distributed-file-system",
    "SAT-MON",
    "VISA",
    "IPCV", // 64-71
    "CPNX",
    "CPHB",
    "WSN",
    "PVP",
    "BR-SAT-MON",
    "SUN-ND",
    "WB-MON",
    "WB-EXPAK", // 72-79
    "ISO-IP",
    "VMTP",
    "SECURE-VMTP",
    "VINES",
    "IPTM",
    "NSFNET-IGP",
    "DGP",
    "TCF", // 80-87
    "EIGRP",
    "OSPFIGP",
    "Sprite-RPC",
    "LARP",
    "MTP",
    "AX.25",
    "IPIP",
    "MICP", // 88-95
    "SCC-SP",
    "ETHERIP",
    "ENCAP",
    "any-private-encryption-scheme",
    "GMTP",
    "IFMP",
    "PNNI",
    "PIM", // 96-103
    "ARIS",
    "SCPS",
    "QNX",
    "A/N",
    "IPComp",
    "SNP",
    "Compaq-Peer",
    "IPX-in-IP", // 104-111
    "VRRP",
    "PGM",
    "any-0-hop-protocol",
    "L2TP",
    "DDX",
    "IATP",
    "STP",
    "SRP", // 112-119
    "UTI",
    "SMP",
    "SM",
    "PTP",
    "ISIS over IPv4",
    "FIRE",
    "CRTP",
    "CRUDP", // 120-127
    "SSCOPMCE",
    "IPLT",
    "SPS",
    "PIPE",
    "SCTP",
    "FC",
    "RSVP-E2E-IGNORE",
    "Mobility Header", // 128-135
    "UDPLite",
    "MPLS-in-IP",
    "manet",
    "HIP",
    "Shim6",
    "WESP",
    "ROHC",
    "Ethernet", // 136-143
    "AGGFRAG",
    "NSH",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 144-151
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 152-159
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 160-167
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 168-175
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 176-183
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 184-191
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 192-199
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 200-207
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 208-215
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 216-223
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 224-231
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 232-239
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned", // 240-247
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "unassigned",
    "experimental",
    "experimental",
    "reserved", // 248-255
];

/// The label value for a protocol number (`None` is unknown).
pub fn protocol_name(proto: Option<u8>) -> &'static str {
    match proto {
        Some(p) => PROTO_NAMES[usize::from(p)],
        None => UNKNOWN,
    }
}

/// Maps a goflow2 `proto` name back to a number that renders as the same name.
///
/// The range names (`unassigned`, `experimental`, `reserved`) map to the first number of their
/// range: the label is what matters and it round-trips. `ICMPv6` is goflow2 v2.0-v2.1's name for 58.
/// `""` (goflow2 < v2.2 for any number it had no name for) and unknown names give `None`.
pub fn protocol_from_name(name: &str) -> Option<u8> {
    // The common names first: this runs once per flow on the stdin path.
    match name {
        "TCP" => return Some(6),
        "UDP" => return Some(17),
        "ICMP" => return Some(1),
        "IPv6-ICMP" | "ICMPv6" => return Some(58),
        "" => return None,
        _ => {}
    }
    PROTO_NAMES
        .iter()
        .position(|&n| n == name)
        .and_then(|p| u8::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_goflow2() {
        assert_eq!(protocol_name(Some(0)), "HOPOPT");
        assert_eq!(protocol_name(Some(6)), "TCP");
        assert_eq!(protocol_name(Some(17)), "UDP");
        assert_eq!(protocol_name(Some(47)), "GRE");
        assert_eq!(protocol_name(Some(50)), "ESP");
        assert_eq!(protocol_name(Some(58)), "IPv6-ICMP");
        assert_eq!(protocol_name(Some(124)), "ISIS over IPv4");
        assert_eq!(protocol_name(Some(132)), "SCTP");
        assert_eq!(protocol_name(Some(145)), "NSH");
        assert_eq!(protocol_name(Some(146)), "unassigned");
        assert_eq!(protocol_name(Some(252)), "unassigned");
        assert_eq!(protocol_name(Some(253)), "experimental");
        assert_eq!(protocol_name(Some(254)), "experimental");
        assert_eq!(protocol_name(Some(255)), "reserved");
        assert_eq!(protocol_name(None), "unknown");
    }

    #[test]
    fn every_name_round_trips() {
        for p in 0..=255u8 {
            let name = protocol_name(Some(p));
            let back = protocol_from_name(name).expect("every table name maps back");
            assert_eq!(protocol_name(Some(back)), name, "protocol {p}");
        }
        assert_eq!(protocol_from_name("ICMPv6"), Some(58));
        assert_eq!(protocol_from_name(""), None);
        assert_eq!(protocol_from_name("no-such-protocol"), None);
    }
}

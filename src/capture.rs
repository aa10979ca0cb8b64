//! Packet captures → UDP datagrams: the bytes of a classic pcap or pcapng file in, the UDP
//! datagrams it holds out, for `--replay FILE` (captured NetFlow/IPFIX exports go through the same
//! decode path as live UDP) and for the test harness (which re-sends them over loopback).
//!
//! # What it owns
//! The capture container (classic pcap in both byte orders with microsecond or nanosecond
//! timestamps; pcapng sections, interfaces, enhanced and simple packet blocks), the link layers
//! exporters are captured on (Ethernet with stacked 802.1Q/802.1ad tags, Linux cooked SLL and
//! SLL2, raw IP, BSD loopback), IPv4/IPv6 and UDP.
//!
//! # What it does not
//! No NetFlow/IPFIX decoding and no I/O: the caller reads the file and passes its bytes, every
//! payload borrows from them (zero copy). Nothing here allocates per packet beyond the result
//! `Vec`.
//!
//! # Decisions
//! - **Lenient inside, strict at the door.** The only errors are about the file as a whole: not a
//!   capture (bad magic, or fewer than 4 bytes), a cut or unusable file/section header, or a
//!   file in which *every* interface has a link type we do not parse. Everything after the header
//!   is best effort: a packet that is not UDP, a fragment, or anything malformed is skipped and
//!   counted in [`CaptureStats`]; a record or block cut short by the end of the file, or a pcapng
//!   block whose lengths are inconsistent, stops reading there (`truncated`), keeping what came
//!   before.
//! - **The UDP length field decides.** The payload is the `length - 8` bytes after the UDP header,
//!   so Ethernet padding and FCS bytes are never part of it; a UDP length larger than the bytes
//!   present (a snaplen-cut packet) makes the packet malformed rather than a short datagram.
//!   An IP total/payload length of 0 (what TSO/GSO offload shows for locally sent packets) is
//!   read as "up to the end of the captured bytes".
//! - **No reassembly.** IPv4 fragments (MF set or non-zero offset) and IPv6 packets with a
//!   fragment header are counted as fragments, whatever they carry; an IPv6 *atomic* fragment
//!   (offset 0, M clear; RFC 6946) is a whole packet and is read through.
//! - **No checksum checks.** Captures of locally sent packets routinely carry offloaded (wrong)
//!   IPv4 and UDP checksums; the exporter cannot do anything useful with the difference.
//! - IPv6 extension headers walked: hop-by-hop (0), routing (43), destination options (60) and the
//!   fragment header (44, see above). Anything else (AH, ESP, mobility, no-next-header) is
//!   "not UDP".
//! - Classic pcap: the link type is the low 16 bits of the header's link-type field (the high
//!   bits carry FCS information); `thiszone` is ignored. pcapng: `if_tsresol` (default
//!   microseconds) and `if_tsoffset` are honoured; simple packet blocks use interface 0 and have
//!   timestamp 0; each section header resets the interface list.
//! - Link types: 1 Ethernet, 113 SLL, 276 SLL2, 101 (and 12, 14: DLT_RAW as written by some BSDs)
//!   raw IP, 228 raw IPv4, 229 raw IPv6, 0 BSD loopback (family in the writer's byte order,
//!   detected per packet), 108 OpenBSD loopback (family in network order). Packets of an
//!   interface with another link type are counted in `skipped_link_type`.
//! - Every read goes through `get(..)` and checked arithmetic: no input can make this panic.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One UDP datagram found in a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The UDP payload (exactly UDP length − 8 bytes), borrowed from the file bytes.
    pub payload: &'a [u8],
    /// Capture time in nanoseconds since the Unix epoch (0 when the capture records none, as for
    /// pcapng simple packet blocks).
    pub timestamp_ns: u64,
}

/// Why a file could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureError {
    /// The file does not start with a classic pcap or pcapng magic number (or is shorter than 4
    /// bytes).
    NotACapture,
    /// The file ends inside its pcap file header or its first pcapng section header block.
    Truncated,
    /// A classic pcap major version other than 2, or a pcapng major version other than 1.
    UnsupportedVersion { major: u16, minor: u16 },
    /// The first pcapng section header block has an impossible length or byte-order magic.
    BadSectionHeader,
    /// Every interface in the file has a link type this module does not parse (the value is the
    /// first such link type).
    UnsupportedLinkType(u32),
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::NotACapture => {
                f.write_str("not a pcap or pcapng capture file (unrecognized magic number)")
            }
            CaptureError::Truncated => {
                f.write_str("the capture file ends inside its file header or section header")
            }
            CaptureError::UnsupportedVersion { major, minor } => {
                write!(f, "unsupported capture file format version {major}.{minor}")
            }
            CaptureError::BadSectionHeader => {
                f.write_str("the pcapng section header block is malformed")
            }
            CaptureError::UnsupportedLinkType(lt) => write!(
                f,
                "unsupported link type {lt}: only Ethernet, Linux cooked (SLL/SLL2), raw IP and \
                 BSD loopback captures can be read"
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

/// What reading a capture found. Every packet record is counted in `packets` and in exactly one
/// of the other counters: `packets == udp_datagrams + skipped_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packet records seen (classic records, pcapng enhanced and simple packet blocks), including
    /// one cut short by the end of the file.
    pub packets: u64,
    /// UDP datagrams returned.
    pub udp_datagrams: u64,
    /// Valid IP packets that are not UDP, and frames that are not IP (ARP, LLC, ...).
    pub skipped_non_udp: u64,
    /// IPv4 fragments and non-atomic IPv6 fragments (no reassembly).
    pub skipped_fragments: u64,
    /// Malformed or cut packets: bad headers, a UDP length beyond the bytes present, a record
    /// cut by the end of the file, a packet of an unknown or malformed pcapng interface.
    pub skipped_malformed: u64,
    /// Packets of an interface whose link type is not parsed.
    pub skipped_link_type: u64,
    /// Reading stopped before the end of the file: the last record or block was cut short, or a
    /// pcapng block had inconsistent lengths (what came before is kept).
    pub truncated: bool,
}

/// Parses the whole file.
///
/// `Err` only if the file is not a pcap/pcapng capture at all (bad magic), its global header or
/// first section header is cut or unusable, or every interface has an unsupported link type. A
/// truncated last record and malformed packets are skipped and counted, not fatal.
pub fn read_datagrams(file: &[u8]) -> Result<(Vec<Datagram<'_>>, CaptureStats), CaptureError> {
    let magic = array::<4>(file, 0).ok_or(CaptureError::NotACapture)?;
    let mut out = Reader::default();
    match magic {
        PCAPNG_SHB_MAGIC => read_pcapng(file, &mut out)?,
        _ => {
            let (endian, nanos) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
                (PCAP_MAGIC_US, _) => (Endian::Little, false),
                (PCAP_MAGIC_NS, _) => (Endian::Little, true),
                (_, PCAP_MAGIC_US) => (Endian::Big, false),
                (_, PCAP_MAGIC_NS) => (Endian::Big, true),
                _ => return Err(CaptureError::NotACapture),
            };
            read_classic(file, endian, nanos, &mut out)?;
        }
    }
    Ok((out.datagrams, out.stats))
}

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
/// The pcapng section header block type, a palindrome: the same bytes in both byte orders.
const PCAPNG_SHB_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

const BLOCK_IDB: u32 = 1;
const BLOCK_SPB: u32 = 3;
const BLOCK_EPB: u32 = 6;
const BLOCK_SHB: u32 = 0x0a0d_0d0a;

const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The bytes `off..off + N` of `b`, if present.
fn array<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..)?.first_chunk::<N>().copied()
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    array(b, off).map(u16::from_be_bytes)
}

fn byte(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

/// `b[start..start + len]`, if present.
fn slice(b: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    b.get(start..start.checked_add(len)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8], off: usize) -> Option<u16> {
        let a = array(b, off)?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        })
    }

    fn u32(self, b: &[u8], off: usize) -> Option<u32> {
        let a = array(b, off)?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        })
    }

    fn i64(self, b: &[u8], off: usize) -> Option<i64> {
        let a = array(b, off)?;
        Some(match self {
            Endian::Little => i64::from_le_bytes(a),
            Endian::Big => i64::from_be_bytes(a),
        })
    }
}

/// A link layer this module parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Ethernet,
    Sll,
    Sll2,
    /// IPv4 or IPv6, told apart by the version nibble.
    RawIp,
    RawIpv4,
    RawIpv6,
    /// BSD loopback: a 4-byte address family in the writer's byte order.
    Null,
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    Loop,
}

impl Link {
    fn from_linktype(linktype: u32) -> Option<Link> {
        Some(match linktype {
            0 => Link::Null,
            1 => Link::Ethernet,
            12 | 14 | 101 => Link::RawIp,
            108 => Link::Loop,
            113 => Link::Sll,
            228 => Link::RawIpv4,
            229 => Link::RawIpv6,
            276 => Link::Sll2,
            _ => return None,
        })
    }
}

/// What one packet turned out to be.
enum Packet<'a> {
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
        payload: &'a [u8],
    },
    NonUdp,
    Fragment,
    Malformed,
}

/// The network layer a link-layer header announced.
enum Network {
    Ipv4,
    Ipv6,
    /// Either, by the version nibble.
    Ip,
    Other,
}

/// Decodes one captured frame down to its UDP payload.
fn parse_frame(link: Link, frame: &[u8]) -> Packet<'_> {
    let Some((network, rest)) = strip_link(link, frame) else {
        return Packet::Malformed;
    };
    let version = byte(rest, 0).map(|b| b >> 4);
    match (network, version) {
        (Network::Other, _) => Packet::NonUdp,
        (_, None) => Packet::Malformed,
        (Network::Ipv4 | Network::Ip, Some(4)) => parse_ipv4(rest),
        (Network::Ipv6 | Network::Ip, Some(6)) => parse_ipv6(rest),
        _ => Packet::Malformed,
    }
}

/// Removes the link-layer header: the network protocol it announces and the bytes after it.
fn strip_link(link: Link, frame: &[u8]) -> Option<(Network, &[u8])> {
    let ethertype = |t: u16| match t {
        ETHERTYPE_IPV4 => Network::Ipv4,
        ETHERTYPE_IPV6 => Network::Ipv6,
        _ => Network::Other,
    };
    let family = |f: u32| match f {
        2 => Network::Ipv4,
        24 | 28 | 30 => Network::Ipv6,
        _ => Network::Other,
    };
    match link {
        Link::Ethernet => {
            let mut off = 12;
            let mut t = be16(frame, off)?;
            while ETHERTYPE_VLAN.contains(&t) {
                off = off.checked_add(4)?;
                t = be16(frame, off)?;
            }
            Some((ethertype(t), frame.get(off.checked_add(2)?..)?))
        }
        Link::Sll => Some((ethertype(be16(frame, 14)?), frame.get(16..)?)),
        Link::Sll2 => Some((ethertype(be16(frame, 0)?), frame.get(20..)?)),
        Link::RawIp => Some((Network::Ip, frame)),
        Link::RawIpv4 => Some((Network::Ipv4, frame)),
        Link::RawIpv6 => Some((Network::Ipv6, frame)),
        Link::Null => {
            // Host order of the machine that wrote the capture, which need not be the file's:
            // families are small, so a value with high bits set is the other byte order.
            let le = u32::from_le_bytes(array(frame, 0)?);
            let f = if le & 0xffff_0000 != 0 {
                le.swap_bytes()
            } else {
                le
            };
            Some((family(f), frame.get(4..)?))
        }
        Link::Loop => Some((
            family(u32::from_be_bytes(array(frame, 0)?)),
            frame.get(4..)?,
        )),
    }
}

/// The bytes an IP header says its packet has, limited to what was captured; a length of 0 means
/// "unknown" (TSO/GSO, jumbograms) and yields everything captured.
fn ip_extent(packet: &[u8], claimed: usize) -> &[u8] {
    if claimed == 0 {
        packet
    } else {
        packet.get(..claimed).unwrap_or(packet)
    }
}

fn parse_ipv4(packet: &[u8]) -> Packet<'_> {
    let (Some(ver_ihl), Some(total), Some(frag), Some(proto), Some(src), Some(dst)) = (
        byte(packet, 0),
        be16(packet, 2),
        be16(packet, 6),
        byte(packet, 9),
        array::<4>(packet, 12),
        array::<4>(packet, 16),
    ) else {
        return Packet::Malformed;
    };
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    let total = usize::from(total);
    if ver_ihl >> 4 != 4 || header_len < 20 || (total != 0 && total < header_len) {
        return Packet::Malformed;
    }
    let Some(body) = ip_extent(packet, total).get(header_len..) else {
        return Packet::Malformed;
    };
    if frag & 0x3fff != 0 {
        return Packet::Fragment;
    }
    if proto != IPPROTO_UDP {
        return Packet::NonUdp;
    }
    parse_udp(
        IpAddr::V4(Ipv4Addr::from(src)),
        IpAddr::V4(Ipv4Addr::from(dst)),
        body,
    )
}

fn parse_ipv6(packet: &[u8]) -> Packet<'_> {
    let (Some(ver), Some(payload_len), Some(mut next), Some(src), Some(dst)) = (
        byte(packet, 0),
        be16(packet, 4),
        byte(packet, 6),
        array::<16>(packet, 8),
        array::<16>(packet, 24),
    ) else {
        return Packet::Malformed;
    };
    if ver >> 4 != 6 {
        return Packet::Malformed;
    }
    let Some(mut rest) = packet.get(40..) else {
        return Packet::Malformed;
    };
    rest = ip_extent(rest, usize::from(payload_len));
    // Each step consumes at least 8 bytes, so the walk ends.
    loop {
        match next {
            IPPROTO_UDP => break,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let (Some(n), Some(len)) = (byte(rest, 0), byte(rest, 1)) else {
                    return Packet::Malformed;
                };
                let Some(r) = rest.get((usize::from(len) + 1) * 8..) else {
                    return Packet::Malformed;
                };
                next = n;
                rest = r;
            }
            IPPROTO_FRAGMENT => {
                let (Some(n), Some(off_m), Some(r)) = (byte(rest, 0), be16(rest, 2), rest.get(8..))
                else {
                    return Packet::Malformed;
                };
                // Offset (13 bits) and M flag both zero: an atomic fragment, a whole packet.
                if off_m & 0xfff9 != 0 {
                    return Packet::Fragment;
                }
                next = n;
                rest = r;
            }
            _ => return Packet::NonUdp,
        }
    }
    parse_udp(
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
        rest,
    )
}

fn parse_udp(src: IpAddr, dst: IpAddr, segment: &[u8]) -> Packet<'_> {
    let (Some(sport), Some(dport), Some(len)) =
        (be16(segment, 0), be16(segment, 2), be16(segment, 4))
    else {
        return Packet::Malformed;
    };
    let Some(payload) = usize::from(len)
        .checked_sub(8)
        .and_then(|n| slice(segment, 8, n))
    else {
        return Packet::Malformed;
    };
    Packet::Udp {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload,
    }
}

/// Accumulates the result.
#[derive(Default)]
struct Reader<'a> {
    datagrams: Vec<Datagram<'a>>,
    stats: CaptureStats,
}

impl<'a> Reader<'a> {
    fn packet(&mut self, link: Link, frame: &'a [u8], timestamp_ns: u64) {
        self.stats.packets += 1;
        match parse_frame(link, frame) {
            Packet::Udp { src, dst, payload } => {
                self.stats.udp_datagrams += 1;
                self.datagrams.push(Datagram {
                    src,
                    dst,
                    payload,
                    timestamp_ns,
                });
            }
            Packet::NonUdp => self.stats.skipped_non_udp += 1,
            Packet::Fragment => self.stats.skipped_fragments += 1,
            Packet::Malformed => self.stats.skipped_malformed += 1,
        }
    }

    /// A packet record that could not be read at all (cut, or of an unusable interface).
    fn malformed_record(&mut self) {
        self.stats.packets += 1;
        self.stats.skipped_malformed += 1;
    }

    fn unsupported_link(&mut self) {
        self.stats.packets += 1;
        self.stats.skipped_link_type += 1;
    }
}

fn read_classic<'a>(
    file: &'a [u8],
    endian: Endian,
    nanos: bool,
    out: &mut Reader<'a>,
) -> Result<(), CaptureError> {
    const HEADER: usize = 24;
    const RECORD: usize = 16;
    let (Some(major), Some(minor), Some(network)) = (
        endian.u16(file, 4),
        endian.u16(file, 6),
        endian.u32(file, 20),
    ) else {
        return Err(CaptureError::Truncated);
    };
    if major != 2 {
        return Err(CaptureError::UnsupportedVersion { major, minor });
    }
    let linktype = network & 0xffff;
    let link = Link::from_linktype(linktype).ok_or(CaptureError::UnsupportedLinkType(linktype))?;
    let frac_scale = if nanos { 1 } else { 1_000 };

    let mut pos = HEADER;
    while pos < file.len() {
        let (Some(sec), Some(frac), Some(incl_len)) = (
            endian.u32(file, pos),
            endian.u32(file, pos + 4),
            endian.u32(file, pos + 8),
        ) else {
            out.malformed_record();
            out.stats.truncated = true;
            break;
        };
        let data_start = pos + RECORD;
        let Some(frame) = usize::try_from(incl_len)
            .ok()
            .and_then(|n| slice(file, data_start, n))
        else {
            out.malformed_record();
            out.stats.truncated = true;
            break;
        };
        let ts = u64::from(sec)
            .saturating_mul(NANOS_PER_SEC)
            .saturating_add(u64::from(frac).saturating_mul(frac_scale));
        out.packet(link, frame, ts);
        pos = data_start + frame.len();
    }
    Ok(())
}

/// One pcapng interface (from an interface description block).
#[derive(Debug, Clone, Copy)]
struct Interface {
    kind: InterfaceKind,
    snaplen: u32,
    /// The raw `if_tsresol` value: bit 7 clear, 10^-v seconds; set, 2^-(v & 0x7f) seconds.
    tsresol: u8,
    /// `if_tsoffset`: seconds added to every timestamp.
    tsoffset: i64,
}

#[derive(Debug, Clone, Copy)]
enum InterfaceKind {
    Supported(Link),
    Unsupported(u32),
    /// A description block too short to hold a link type.
    Malformed,
}

/// Converts a pcapng timestamp in `tsresol` units (plus `tsoffset` seconds) to nanoseconds,
/// saturating at 0 and `u64::MAX`.
fn pcapng_ts_ns(ts: u64, tsresol: u8, tsoffset: i64) -> u64 {
    const NS: u128 = NANOS_PER_SEC as u128;
    let ts = u128::from(ts);
    let exp = u32::from(tsresol & 0x7f);
    let ns = if tsresol & 0x80 != 0 {
        // ts < 2^64 and 1e9 < 2^30: the product fits, and exp < 128.
        (ts * NS) >> exp
    } else if exp <= 9 {
        ts * 10u128.pow(9 - exp)
    } else {
        10u128.checked_pow(exp - 9).map_or(0, |d| ts / d)
    };
    let total = i128::try_from(ns)
        .unwrap_or(i128::MAX)
        .saturating_add(i128::from(tsoffset) * NS as i128);
    u64::try_from(total).unwrap_or(if total < 0 { 0 } else { u64::MAX })
}

/// Where a pcapng block's body is, or why it cannot be read.
enum BlockBounds {
    Ok {
        body_start: usize,
        end: usize,
    },
    /// The block's lengths are inconsistent (or its byte-order magic, for a section header).
    Invalid,
    /// The block claims more bytes than the file has left.
    Cut,
}

/// Validates the block at `pos`: total length a multiple of 4, at least 12 (28 for a section
/// header), within the file, and the trailing copy equal to the leading one.
fn block_bounds(file: &[u8], pos: usize, endian: Endian, min_len: u32) -> BlockBounds {
    let Some(total) = endian.u32(file, pos + 4) else {
        return BlockBounds::Cut;
    };
    if total % 4 != 0 || total < min_len {
        return BlockBounds::Invalid;
    }
    let Some(end) = usize::try_from(total)
        .ok()
        .and_then(|t| pos.checked_add(t))
        .filter(|&end| end <= file.len())
    else {
        return BlockBounds::Cut;
    };
    if endian.u32(file, end - 4) != Some(total) {
        return BlockBounds::Invalid;
    }
    BlockBounds::Ok {
        body_start: pos + 8,
        end,
    }
}

fn read_pcapng<'a>(file: &'a [u8], out: &mut Reader<'a>) -> Result<(), CaptureError> {
    let mut endian = Endian::Little;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut first_unsupported: Option<u32> = None;
    let mut any_supported = false;
    let mut pos = 0;
    while pos < file.len() {
        let first = pos == 0;
        let Some(type_bytes) = array::<4>(file, pos) else {
            out.stats.truncated = true;
            break;
        };
        let block_type;
        let min_len;
        if type_bytes == PCAPNG_SHB_MAGIC {
            // The byte order of this section is told by its magic, before its length is read.
            endian = match array::<4>(file, pos + 8) {
                Some(m) if u32::from_le_bytes(m) == PCAPNG_BYTE_ORDER_MAGIC => Endian::Little,
                Some(m) if u32::from_be_bytes(m) == PCAPNG_BYTE_ORDER_MAGIC => Endian::Big,
                Some(_) if first => return Err(CaptureError::BadSectionHeader),
                None if first => return Err(CaptureError::Truncated),
                _ => {
                    out.stats.truncated = true;
                    break;
                }
            };
            block_type = BLOCK_SHB;
            min_len = 28;
        } else {
            let Some(t) = endian.u32(file, pos) else {
                out.stats.truncated = true;
                break;
            };
            block_type = t;
            min_len = 12;
        }

        let (body_start, end) = match block_bounds(file, pos, endian, min_len) {
            BlockBounds::Ok { body_start, end } => (body_start, end),
            BlockBounds::Cut if first => return Err(CaptureError::Truncated),
            BlockBounds::Invalid if first => return Err(CaptureError::BadSectionHeader),
            BlockBounds::Cut => {
                if matches!(block_type, BLOCK_EPB | BLOCK_SPB) {
                    out.malformed_record();
                }
                out.stats.truncated = true;
                break;
            }
            BlockBounds::Invalid => {
                out.stats.truncated = true;
                break;
            }
        };
        // Within the file: `block_bounds` checked `end <= file.len()` and `end >= pos + 12`.
        let body = file.get(body_start..end - 4).unwrap_or_default();
        pos = end;

        match block_type {
            BLOCK_SHB => {
                // At least 28 bytes long, so the version is there; 0 would be refused anyway.
                let major = endian.u16(body, 4).unwrap_or(0);
                let minor = endian.u16(body, 6).unwrap_or(0);
                if major != 1 {
                    if first {
                        return Err(CaptureError::UnsupportedVersion { major, minor });
                    }
                    // A later section we cannot read: stop, keeping what came before.
                    out.stats.truncated = true;
                    break;
                }
                interfaces.clear();
            }
            BLOCK_IDB => {
                let interface = parse_idb(body, endian);
                match interface.kind {
                    InterfaceKind::Supported(_) => any_supported = true,
                    InterfaceKind::Unsupported(lt) => {
                        first_unsupported.get_or_insert(lt);
                    }
                    InterfaceKind::Malformed => {}
                }
                interfaces.push(interface);
            }
            BLOCK_EPB => {
                let (Some(id), Some(ts_hi), Some(ts_lo), Some(cap_len)) = (
                    endian.u32(body, 0),
                    endian.u32(body, 4),
                    endian.u32(body, 8),
                    endian.u32(body, 12),
                ) else {
                    out.malformed_record();
                    continue;
                };
                let interface = usize::try_from(id).ok().and_then(|i| interfaces.get(i));
                let frame = usize::try_from(cap_len)
                    .ok()
                    .and_then(|n| slice(body, 20, n));
                let ts = (u64::from(ts_hi) << 32) | u64::from(ts_lo);
                match (interface, frame) {
                    (Some(i), Some(frame)) => {
                        deliver(out, i, frame, pcapng_ts_ns(ts, i.tsresol, i.tsoffset))
                    }
                    _ => out.malformed_record(),
                }
            }
            BLOCK_SPB => {
                let (Some(interface), Some(orig_len), Some(data)) =
                    (interfaces.first(), endian.u32(body, 0), body.get(4..))
                else {
                    out.malformed_record();
                    continue;
                };
                // The captured length is not recorded: the original length, capped by the
                // interface's snap length and by the block (whose data is padded to 4 bytes).
                let mut len = usize::try_from(orig_len).unwrap_or(usize::MAX);
                if interface.snaplen != 0 {
                    len = len.min(usize::try_from(interface.snaplen).unwrap_or(usize::MAX));
                }
                let frame = data.get(..len).unwrap_or(data);
                deliver(out, interface, frame, 0);
            }
            _ => {}
        }
    }
    match first_unsupported {
        Some(lt) if !any_supported => Err(CaptureError::UnsupportedLinkType(lt)),
        _ => Ok(()),
    }
}

fn deliver<'a>(out: &mut Reader<'a>, interface: &Interface, frame: &'a [u8], ts: u64) {
    match interface.kind {
        InterfaceKind::Supported(link) => out.packet(link, frame, ts),
        InterfaceKind::Unsupported(_) => out.unsupported_link(),
        InterfaceKind::Malformed => out.malformed_record(),
    }
}

fn parse_idb(body: &[u8], endian: Endian) -> Interface {
    let mut interface = Interface {
        kind: InterfaceKind::Malformed,
        snaplen: 0,
        tsresol: 6,
        tsoffset: 0,
    };
    let (Some(linktype), Some(snaplen)) = (endian.u16(body, 0), endian.u32(body, 4)) else {
        return interface;
    };
    let linktype = u32::from(linktype);
    interface.kind = match Link::from_linktype(linktype) {
        Some(link) => InterfaceKind::Supported(link),
        None => InterfaceKind::Unsupported(linktype),
    };
    interface.snaplen = snaplen;
    // Options: code, length, value padded to 4 bytes. A malformed option list ends the options
    // (the interface itself stays usable).
    let mut off = 8;
    while let (Some(code), Some(len)) = (endian.u16(body, off), endian.u16(body, off + 2)) {
        let len = usize::from(len);
        let Some(value) = slice(body, off + 4, len) else {
            break;
        };
        match code {
            OPT_END => break,
            OPT_IF_TSRESOL if len == 1 => interface.tsresol = value.first().copied().unwrap_or(6),
            OPT_IF_TSOFFSET if len == 8 => {
                interface.tsoffset = endian.i64(value, 0).unwrap_or(0);
            }
            _ => {}
        }
        off += 4 + len.next_multiple_of(4);
    }
    interface
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_shared::shared_dir;
    use std::path::{Path, PathBuf};

    // ---- builders -------------------------------------------------------------------------

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&sport.to_be_bytes());
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&(payload.len() as u16 + 8).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(payload);
        v
    }

    fn ipv4_with(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x45, 0];
        v.extend_from_slice(&(body.len() as u16 + 20).to_be_bytes());
        v.extend_from_slice(&[0x12, 0x34]);
        v.extend_from_slice(&frag.to_be_bytes());
        v.extend_from_slice(&[64, proto, 0, 0]);
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(body);
        v
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], body: &[u8]) -> Vec<u8> {
        ipv4_with(src, dst, IPPROTO_UDP, 0x4000, body)
    }

    fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(&[next, 64]);
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(body);
        v
    }

    fn eth(tags: &[u16], ethertype: u16, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for (i, tpid) in tags.iter().enumerate() {
            v.extend_from_slice(&tpid.to_be_bytes());
            v.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    struct Record {
        sec: u32,
        frac: u32,
        data: Vec<u8>,
        orig_len: Option<u32>,
    }

    fn rec(sec: u32, frac: u32, data: Vec<u8>) -> Record {
        Record {
            sec,
            frac,
            data,
            orig_len: None,
        }
    }

    fn put32(v: &mut Vec<u8>, le: bool, x: u32) {
        v.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() });
    }

    fn put16(v: &mut Vec<u8>, le: bool, x: u16) {
        v.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() });
    }

    fn pcap(le: bool, nanos: bool, linktype: u32, records: &[Record]) -> Vec<u8> {
        let mut v = Vec::new();
        put32(
            &mut v,
            le,
            if nanos { PCAP_MAGIC_NS } else { PCAP_MAGIC_US },
        );
        put16(&mut v, le, 2);
        put16(&mut v, le, 4);
        put32(&mut v, le, 0);
        put32(&mut v, le, 0);
        put32(&mut v, le, 65535);
        put32(&mut v, le, linktype);
        for r in records {
            put32(&mut v, le, r.sec);
            put32(&mut v, le, r.frac);
            put32(&mut v, le, r.data.len() as u32);
            put32(&mut v, le, r.orig_len.unwrap_or(r.data.len() as u32));
            v.extend_from_slice(&r.data);
        }
        v
    }

    /// A pcapng writer in one byte order.
    struct Ng {
        le: bool,
        buf: Vec<u8>,
    }

    impl Ng {
        fn new(le: bool) -> Ng {
            let mut ng = Ng {
                le,
                buf: Vec::new(),
            };
            ng.shb();
            ng
        }

        fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Ng {
            let mut padded = body.to_vec();
            padded.resize(body.len().next_multiple_of(4), 0);
            let total = padded.len() as u32 + 12;
            let le = self.le;
            put32(&mut self.buf, le, block_type);
            put32(&mut self.buf, le, total);
            self.buf.extend_from_slice(&padded);
            put32(&mut self.buf, le, total);
            self
        }

        fn shb(&mut self) -> &mut Ng {
            let le = self.le;
            let mut b = Vec::new();
            put32(&mut b, le, PCAPNG_BYTE_ORDER_MAGIC);
            put16(&mut b, le, 1);
            put16(&mut b, le, 0);
            b.extend_from_slice(&[0xff; 8]); // section length: unknown
            self.block(BLOCK_SHB, &b)
        }

        /// `options`: (code, value) pairs, terminated by opt_endofopt.
        fn idb(&mut self, linktype: u16, options: &[(u16, &[u8])]) -> &mut Ng {
            let le = self.le;
            let mut b = Vec::new();
            put16(&mut b, le, linktype);
            put16(&mut b, le, 0);
            put32(&mut b, le, 0);
            for (code, value) in options {
                put16(&mut b, le, *code);
                put16(&mut b, le, value.len() as u16);
                b.extend_from_slice(value);
                b.resize(b.len().next_multiple_of(4), 0);
            }
            if !options.is_empty() {
                b.extend_from_slice(&[0; 4]);
            }
            self.block(BLOCK_IDB, &b)
        }

        fn epb(&mut self, interface: u32, ts: u64, data: &[u8]) -> &mut Ng {
            let le = self.le;
            let mut b = Vec::new();
            put32(&mut b, le, interface);
            put32(&mut b, le, (ts >> 32) as u32);
            put32(&mut b, le, ts as u32);
            put32(&mut b, le, data.len() as u32);
            put32(&mut b, le, data.len() as u32);
            b.extend_from_slice(data);
            self.block(BLOCK_EPB, &b)
        }

        fn spb(&mut self, data: &[u8]) -> &mut Ng {
            let le = self.le;
            let mut b = Vec::new();
            put32(&mut b, le, data.len() as u32);
            b.extend_from_slice(data);
            self.block(BLOCK_SPB, &b)
        }
    }

    const A: [u8; 4] = [192, 0, 2, 1];
    const B: [u8; 4] = [192, 0, 2, 100];

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    /// Every packet is counted exactly once.
    fn check_stats(s: &CaptureStats) {
        assert_eq!(
            s.packets,
            s.udp_datagrams
                + s.skipped_non_udp
                + s.skipped_fragments
                + s.skipped_malformed
                + s.skipped_link_type,
            "{s:?}"
        );
    }

    fn read_ok(file: &[u8]) -> (Vec<Datagram<'_>>, CaptureStats) {
        let (d, s) = read_datagrams(file).expect("readable capture");
        check_stats(&s);
        assert_eq!(d.len() as u64, s.udp_datagrams);
        d.iter()
            .for_each(|d| assert!(is_subslice(file, d.payload), "payload not borrowed"));
        (d, s)
    }

    fn is_subslice(outer: &[u8], inner: &[u8]) -> bool {
        let o = outer.as_ptr_range();
        let i = inner.as_ptr_range();
        inner.is_empty() || (o.start <= i.start && i.end <= o.end)
    }

    fn stats(packets: u64, udp: u64) -> CaptureStats {
        CaptureStats {
            packets,
            udp_datagrams: udp,
            ..CaptureStats::default()
        }
    }

    fn simple_capture(le: bool, nanos: bool) -> Vec<u8> {
        pcap(
            le,
            nanos,
            1,
            &[
                rec(
                    1_700_000_000,
                    123_456,
                    eth(&[], 0x0800, &ipv4(A, B, &udp(40000, 2055, b"hello"))),
                ),
                rec(
                    1_700_000_001,
                    7,
                    eth(&[], 0x0800, &ipv4(B, A, &udp(4739, 9995, b""))),
                ),
            ],
        )
    }

    // ---- classic pcap ---------------------------------------------------------------------

    #[test]
    fn classic_pcap_little_endian_microseconds() {
        let file = simple_capture(true, false);
        let (d, s) = read_ok(&file);
        assert_eq!(s, stats(2, 2));
        assert_eq!(d[0].src, sa("192.0.2.1:40000"));
        assert_eq!(d[0].dst, sa("192.0.2.100:2055"));
        assert_eq!(d[0].payload, b"hello");
        assert_eq!(d[0].timestamp_ns, 1_700_000_000_123_456_000);
        assert_eq!(d[1].src, sa("192.0.2.100:4739"));
        assert_eq!(d[1].dst, sa("192.0.2.1:9995"));
        assert_eq!(d[1].payload, b"");
        assert_eq!(d[1].timestamp_ns, 1_700_000_001_000_007_000);
    }

    #[test]
    fn classic_pcap_big_endian_microseconds() {
        let file = simple_capture(false, false);
        assert_eq!(&file[..4], &[0xa1, 0xb2, 0xc3, 0xd4]);
        let (d, s) = read_ok(&file);
        assert_eq!(s, stats(2, 2));
        assert_eq!(d[0].payload, b"hello");
        assert_eq!(d[0].timestamp_ns, 1_700_000_000_123_456_000);
        assert_eq!(d[1].dst, sa("192.0.2.1:9995"));
    }

    #[test]
    fn classic_pcap_nanosecond_magic_in_both_byte_orders() {
        for le in [true, false] {
            let file = simple_capture(le, true);
            let (d, s) = read_ok(&file);
            assert_eq!(s, stats(2, 2));
            assert_eq!(d[0].timestamp_ns, 1_700_000_000_000_123_456);
            assert_eq!(d[1].timestamp_ns, 1_700_000_001_000_000_007);
            assert_eq!(d[0].payload, b"hello");
        }
    }

    #[test]
    fn classic_pcap_link_type_high_bits_are_ignored() {
        // FCS-length bits in the link-type field: still Ethernet, and the 4 FCS bytes after the
        // UDP datagram are not payload.
        let mut frame = eth(&[], 0x0800, &ipv4(A, B, &udp(1, 2, b"x")));
        frame.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let file = pcap(true, false, 0x2400_0001, &[rec(0, 0, frame)]);
        let (d, _) = read_ok(&file);
        assert_eq!(d[0].payload, b"x");
    }

    #[test]
    fn truncated_final_record_is_skipped_and_earlier_ones_kept() {
        let full = simple_capture(true, false);
        // Cut inside the second record's data, then inside its header.
        let second_record = 24 + 16 + (14 + 20 + 8 + 5);
        for cut in [full.len() - 1, second_record + 16 + 3, second_record + 5] {
            let (d, s) = read_ok(&full[..cut]);
            assert_eq!(d.len(), 1, "cut at {cut}");
            assert_eq!(d[0].payload, b"hello");
            assert_eq!(
                s,
                CaptureStats {
                    packets: 2,
                    udp_datagrams: 1,
                    skipped_malformed: 1,
                    truncated: true,
                    ..CaptureStats::default()
                }
            );
        }
        // Cut exactly between records: nothing is truncated.
        let (d, s) = read_ok(&full[..second_record]);
        assert_eq!(d.len(), 1);
        assert_eq!(s, stats(1, 1));
    }

    #[test]
    fn udp_length_beyond_captured_bytes_is_malformed() {
        // Snaplen cut: incl_len < orig_len and the UDP payload is incomplete.
        let frame = eth(&[], 0x0800, &ipv4(A, B, &udp(1, 2, b"0123456789")));
        let cut = frame[..frame.len() - 4].to_vec();
        let mut r = rec(0, 0, cut);
        r.orig_len = Some(frame.len() as u32);
        // A UDP length field larger than the IP packet.
        let mut bad = udp(1, 2, b"abc");
        bad[4..6].copy_from_slice(&100u16.to_be_bytes());
        // A UDP length below the header size.
        let mut tiny = udp(1, 2, b"abc");
        tiny[4..6].copy_from_slice(&7u16.to_be_bytes());
        let file = pcap(
            true,
            false,
            1,
            &[
                r,
                rec(0, 0, eth(&[], 0x0800, &ipv4(A, B, &bad))),
                rec(0, 0, eth(&[], 0x0800, &ipv4(A, B, &tiny))),
                rec(0, 0, eth(&[], 0x0800, &ipv4(A, B, &udp(1, 2, b"ok")))),
            ],
        );
        let (d, s) = read_ok(&file);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].payload, b"ok");
        assert_eq!(
            s,
            CaptureStats {
                packets: 4,
                udp_datagrams: 1,
                skipped_malformed: 3,
                ..CaptureStats::default()
            }
        );
    }

    #[test]
    fn snaplen_cut_after_the_udp_payload_is_fine() {
        // Only Ethernet padding was cut: the UDP datagram is whole.
        let mut frame = eth(&[], 0x0800, &ipv4(A, B, &udp(1, 2, b"p")));
        let whole = frame.len();
        frame.extend_from_slice(&[0; 20]);
        let mut r = rec(0, 0, frame[..whole].to_vec());
        r.orig_len = Some(frame.len() as u32);
        let file = pcap(true, false, 1, &[r]);
        let (d, s) = read_ok(&file);
        assert_eq!(s, stats(1, 1));
        assert_eq!(d[0].payload, b"p");
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut frame = eth(&[], 0x0800, &ipv4(A, B, &udp(5, 6, b"ab")));
        frame.resize(60, 0xee);
        let file = pcap(true, false, 1, &[rec(0, 0, frame)]);
        let (d, s) = read_ok(&file);
        assert_eq!(s, stats(1, 1));
        assert_eq!(d[0].payload, b"ab");
    }

    #[test]
    fn udp_length_shorter_than_ip_payload_limits_the_payload() {
        let mut body = udp(5, 6, b"abcdef");
        body[4..6].copy_from_slice(&10u16.to_be_bytes());
        let file = pcap(true, false, 101, &[rec(0, 0, ipv4(A, B, &body))]);
        let (d, _) = read_ok(&file);
        assert_eq!(d[0].payload, b"ab");
    }

    #[test]
    fn ipv4_total_length_zero_means_captured_length() {
        let mut packet = ipv4(A, B, &udp(5, 6, b"tso"));
        packet[2..4].copy_from_slice(&[0, 0]);
        let file = pcap(true, false, 228, &[rec(0, 0, packet)]);
        let (d, _) = read_ok(&file);
        assert_eq!(d[0].payload, b"tso");
    }

    #[test]
    fn non_udp_and_non_ip_packets_are_skipped() {
        let tcp = vec![0u8; 20];
        let arp = vec![0u8; 28];
        let file = pcap(
            true,
            false,
            1,
            &[
                rec(0, 0, eth(&[], 0x0800, &ipv4_with(A, B, 6, 0x4000, &tcp))),
                rec(0, 0, eth(&[], 0x0806, &arp)),
                rec(
                    0,
                    0,
                    eth(
                        &[],
                        0x86dd,
                        &ipv6(v6("2001:db8::1"), v6("2001:db8::2"), 58, &[0; 8]),
                    ),
                ),
                rec(0, 0, eth(&[], 0x0800, &ipv4(A, B, &udp(1, 2, b"u")))),
            ],
        );
        let (d, s) = read_ok(&file);
        assert_eq!(d.len(), 1);
        assert_eq!(
            s,
            CaptureStats {
                packets: 4,
                udp_datagrams: 1,
                skipped_non_udp: 3,
                ..CaptureStats::default()
            }
        );
    }

    #[test]
    fn ipv4_fragments_are_skipped() {
        let body = udp(1, 2, b"fragment");
        let file = pcap(
            true,
            false,
            1,
            &[
                // MF set, offset 0: the first fragment.
                rec(0, 0, eth(&[], 0x0800, &ipv4_with(A, B, 17, 0x2000, &body))),
                // Offset non-zero, MF clear: the last fragment.
                rec(
                    0,
                    0,
                    eth(&[], 0x0800, &ipv4_with(A, B, 17, 0x0003, &body[..8])),
                ),
                // DF only: a whole packet.
                rec(0, 0, eth(&[], 0x0800, &ipv4_with(A, B, 17, 0x4000, &body))),
            ],
        );
        let (d, s) = read_ok(&file);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].payload, b"fragment");
        assert_eq!(
            s,
            CaptureStats {
                packets: 3,
                udp_datagrams: 1,
                skipped_fragments: 2,
                ..CaptureStats::default()
            }
        );
    }

    #[test]
    fn malformed_ipv4_headers_are_skipped() {
        let good = ipv4(A, B, &udp(1, 2, b"x"));
        let mut bad_version = good.clone();
        bad_version[0] = 0x55;
        let mut short_ihl = good.clone();
        short_ihl[0] = 0x44;
        let mut total_below_ihl = good.clone();
        total_below_ihl[2..4].copy_from_slice(&19u16.to_be_bytes());
        let mut long_ihl = good.clone();
        long_ihl[0] = 0x4f; // 60-byte header, but the packet is 29 bytes
        let cases = [
            bad_version,
            short_ihl,
            total_below_ihl,
            long_ihl,
            good[..10].to_vec(),
        ];
        let records: Vec<Record> = cases
            .into_iter()
            .map(|p| rec(0, 0, eth(&[], 0x0800, &p)))
            .collect();
        let file = pcap(true, false, 1, &records);
        let (d, s) = read_ok(&file);
        assert!(d.is_empty());
        assert_eq!(s.skipped_malformed, 5);
    }

    #[test]
    fn ipv4_options_are_skipped_over() {
        let mut packet = ipv4(A, B, &[]);
        packet[0] = 0x46;
        packet.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        packet.extend_from_slice(&udp(7, 8, b"opt"));
        let total = packet.len() as u16;
        packet[2..4].copy_from_slice(&total.to_be_bytes());
        let file = pcap(true, false, 101, &[rec(0, 0, packet)]);
        let (d, _) = read_ok(&file);
        assert_eq!(d[0].payload, b"opt");
        assert_eq!(d[0].dst, sa("192.0.2.100:8"));
    }

    // ---- link layers ----------------------------------------------------------------------

    #[test]
    fn vlan_tags_single_and_stacked() {
        let ip = ipv4(A, B, &udp(1000, 2055, b"vlan"));
        let file = pcap(
            true,
            false,
            1,
            &[
                rec(1, 0, eth(&[0x8100], 0x0800, &ip)),
                rec(2, 0, eth(&[0x88a8, 0x8100], 0x0800, &ip)),
                rec(3, 0, eth(&[0x9100, 0x8100, 0x8100], 0x0800, &ip)),
            ],
        );
        let (d, s) = read_ok(&file);
        assert_eq!(s, stats(3, 3));
        for (i, d) in d.iter().enumerate() {
            assert_eq!(d.payload, b"vlan");
            assert_eq!(d.src, sa("192.0.2.1:1000"));
            assert_eq!(d.timestamp_ns, (i as u64 + 1) * NANOS_PER_SEC);
        }
        // A frame that ends inside its tags.
        let cut = eth(&[0x8100], 0x0800, &[])[..15].to_vec();
        let file = pcap(true, false, 1, &[rec(0, 0, cut)]);
        let (_, s) = read_ok(&file);
        assert_eq!(s.skipped_malformed, 1);
    }

    fn sll(protocol: u16, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 1, 0, 0];
        v.extend_from_slice(&protocol.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn sll2(protocol: u16, body: &[u8]) -> Vec<u8> {
        let mut v = protocol.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 1, 0, 0]);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn linux_cooked_sll_and_sll2() {
        let ip = ipv4(A, B, &udp(3000, 2055, b"cooked"));
        let ip6 = ipv6(
            v6("2001:db8::1"),
            v6("2001:db8::2"),
            17,
            &udp(3001, 4739, b"six"),
        );
        for (linktype, wrap) in [(113, sll as fn(u16, &[u8]) -> Vec<u8>), (276, sll2)] {
            let file = pcap(
                true,
                false,
                linktype,
                &[
                    rec(0, 0, wrap(0x0800, &ip)),
                    rec(0, 0, wrap(0x86dd, &ip6)),
                    rec(0, 0, wrap(0x0806, &[0; 28])),
                ],
            );
            let (d, s) = read_ok(&file);
            assert_eq!(s.udp_datagrams, 2, "link type {linktype}");
            assert_eq!(s.skipped_non_udp, 1);
            assert_eq!(d[0].payload, b"cooked");
            assert_eq!(d[0].src, sa("192.0.2.1:3000"));
            assert_eq!(d[1].payload, b"six");
            assert_eq!(d[1].src, sa("[2001:db8::1]:3001"));
            assert_eq!(d[1].dst, sa("[2001:db8::2]:4739"));
        }
    }

    #[test]
    fn raw_ip_link_types() {
        let ip = ipv4(A, B, &udp(1, 2055, b"raw4"));
        let ip6 = ipv6(v6("::1"), v6("::2"), 17, &udp(1, 2055, b"raw6"));
        for linktype in [101, 12, 14] {
            let file = pcap(
                true,
                false,
                linktype,
                &[rec(0, 0, ip.clone()), rec(0, 0, ip6.clone())],
            );
            let (d, s) = read_ok(&file);
            assert_eq!(s, stats(2, 2), "link type {linktype}");
            assert_eq!(d[0].payload, b"raw4");
            assert_eq!(d[1].payload, b"raw6");
        }
        // 228 is IPv4 only, 229 IPv6 only: the other version is malformed.
        let file = pcap(
            true,
            false,
            228,
            &[rec(0, 0, ip.clone()), rec(0, 0, ip6.clone())],
        );
        let (d, s) = read_ok(&file);
        assert_eq!((d[0].payload, s.skipped_malformed), (&b"raw4"[..], 1));
        let file = pcap(
            true,
            false,
            229,
            &[rec(0, 0, ip.clone()), rec(0, 0, ip6.clone())],
        );
        let (d, s) = read_ok(&file);
        assert_eq!((d[0].payload, s.skipped_malformed), (&b"raw6"[..], 1));
        // An empty frame, and one that is neither version.
        let file = pcap(
            true,
            false,
            101,
            &[rec(0, 0, vec![]), rec(0, 0, vec![0x50; 40])],
        );
        let (_, s) = read_ok(&file);
        assert_eq!(s.skipped_malformed, 2);
    }

    #[test]
    fn bsd_loopback_family_in_either_byte_order() {
        let ip = ipv4(A, B, &udp(1, 2055, b"lo4"));
        let ip6 = ipv6(v6("::1"), v6("::1"), 17, &udp(1, 2055, b"lo6"));
        let with = |family: [u8; 4], body: &[u8]| {
            let mut v = family.to_vec();
            v.extend_from_slice(body);
            v
        };
        let file = pcap(
            false,
            false,
            0,
            &[
                rec(0, 0, with(2u32.to_le_bytes(), &ip)),
                rec(0, 0, with(2u32.to_be_bytes(), &ip)),
                rec(0, 0, with(24u32.to_le_bytes(), &ip6)),
                rec(0, 0, with(28u32.to_be_bytes(), &ip6)),
                rec(0, 0, with(30u32.to_le_bytes(), &ip6)),
                rec(0, 0, with(7u32.to_le_bytes(), &ip)),
            ],
        );
        let (d, s) = read_ok(&file);
        assert_eq!(s.udp_datagrams, 5);
        assert_eq!(s.skipped_non_udp, 1);
        assert_eq!(d[1].payload, b"lo4");
        assert_eq!(d[4].payload, b"lo6");
        assert_eq!(d[4].src, sa("[::1]:1"));
        // OpenBSD loopback (108): network byte order.
        let file = pcap(
            true,
            false,
            108,
            &[rec(0, 0, with(2u32.to_be_bytes(), &ip))],
        );
        let (d, _) = read_ok(&file);
        assert_eq!(d[0].payload, b"lo4");
    }

    #[test]
    fn unsupported_link_type_in_classic_pcap_is_an_error() {
        let file = pcap(true, false, 105, &[rec(0, 0, vec![0; 40])]);
        assert_eq!(
            read_datagrams(&file).unwrap_err(),
            CaptureError::UnsupportedLinkType(105)
        );
    }

    // ---- IPv6 -----------------------------------------------------------------------------

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let src = v6("2001:db8::a");
        let dst = v6("2001:db8::b");
        let dgram = udp(50000, 4739, b"ipfix");
        // Destination options (8 bytes: next, len 0, PadN).
        let mut dstopts = vec![17, 0, 1, 4, 0, 0, 0, 0];
        dstopts.extend_from_slice(&dgram);
        // Hop-by-hop (16 bytes) -> routing (8 bytes) -> destination options -> UDP.
        let mut chain = vec![43, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        chain.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        chain.extend_from_slice(&dstopts);
        // Atomic fragment (offset 0, M clear) -> UDP.
        let mut atomic = vec![17, 0, 0, 0, 0, 0, 0, 1];
        atomic.extend_from_slice(&dgram);
        let file = pcap(
            true,
            false,
            1,
            &[
                rec(10, 1, eth(&[], 0x86dd, &ipv6(src, dst, 60, &dstopts))),
                rec(10, 2, eth(&[], 0x86dd, &ipv6(src, dst, 0, &chain))),
                rec(10, 3, eth(&[], 0x86dd, &ipv6(src, dst, 44, &atomic))),
            ],
        );
        let (d, s) = read_ok(&file);
        assert_eq!(s, stats(3, 3));
        for (i, d) in d.iter().enumerate() {
            assert_eq!(d.src, sa("[2001:db8::a]:50000"));
            assert_eq!(d.dst, sa("[2001:db8::b]:4739"));
            assert_eq!(d.payload, b"ipfix");
            assert_eq!(d.timestamp_ns, 10_000_000_000 + (i as u64 + 1) * 1000);
        }
    }

    #[test]
    fn ipv6_fragments_and_bad_extension_headers_are_skipped() {
        let src = v6("2001:db8::a");
        let dst = v6("2001:db8::b");
        let dgram = udp(1, 2, b"frag");
        // First fragment: offset 0, M set.
        let mut first = vec![17, 0, 0, 1, 0, 0, 0, 9];
        first.extend_from_slice(&dgram);
        // Later fragment: offset 2 (in 8-byte units), M clear.
        let mut later = vec![17, 0, 0, 16, 0, 0, 0, 9];
        later.extend_from_slice(b"tail....");
        // Destination options claiming more bytes than there are.
        let overlong = vec![17, 5, 0, 0, 0, 0, 0, 0];
        let file = pcap(
            true,
            false,
            229,
            &[
                rec(0, 0, ipv6(src, dst, 44, &first)),
                rec(0, 0, ipv6(src, dst, 44, &later)),
                rec(0, 0, ipv6(src, dst, 60, &overlong)),
                rec(0, 0, ipv6(src, dst, 44, &[17, 0])),
                rec(0, 0, ipv6(src, dst, 17, &dgram)[..39].to_vec()),
                rec(0, 0, ipv6(src, dst, 51, &[0; 16])),
            ],
        );
        let (d, s) = read_ok(&file);
        assert!(d.is_empty());
        assert_eq!(
            s,
            CaptureStats {
                packets: 6,
                skipped_fragments: 2,
                skipped_malformed: 3,
                skipped_non_udp: 1,
                ..CaptureStats::default()
            }
        );
    }

    // ---- pcapng ---------------------------------------------------------------------------

    #[test]
    fn pcapng_two_interfaces_with_tsresol() {
        let ip = ipv4(A, B, &udp(40000, 2055, b"eth0"));
        let ip_raw = ipv4(B, A, &udp(2055, 40000, b"raw1"));
        for le in [true, false] {
            let offset = if le {
                100i64.to_le_bytes()
            } else {
                100i64.to_be_bytes()
            };
            let mut ng = Ng::new(le);
            ng.idb(1, &[])
                // Nanosecond resolution, and an offset of 100 s.
                .idb(
                    101,
                    &[
                        (2, b"tun0"),
                        (OPT_IF_TSRESOL, &[9]),
                        (OPT_IF_TSOFFSET, &offset),
                    ],
                )
                // A name resolution block and a custom block, skipped.
                .block(4, &[0, 0, 0, 0])
                .block(0x0000_0bad, &[1, 2, 3, 4, 5, 6, 7])
                .epb(0, 1_700_000_000_000_001, &eth(&[], 0x0800, &ip))
                .epb(1, 1_700_000_000_000_000_002, &ip_raw)
                .spb(&eth(&[], 0x0800, &ip));
            let (d, s) = read_ok(&ng.buf);
            assert_eq!(s, stats(3, 3), "le={le}");
            assert_eq!(d[0].payload, b"eth0");
            assert_eq!(d[0].src, sa("192.0.2.1:40000"));
            assert_eq!(d[0].dst, sa("192.0.2.100:2055"));
            assert_eq!(d[0].timestamp_ns, 1_700_000_000_000_001_000);
            assert_eq!(d[1].payload, b"raw1");
            assert_eq!(d[1].src, sa("192.0.2.100:2055"));
            assert_eq!(d[1].timestamp_ns, 1_700_000_100_000_000_002);
            // Simple packet block: interface 0, no timestamp.
            assert_eq!(d[2].payload, b"eth0");
            assert_eq!(d[2].timestamp_ns, 0);
        }
    }

    #[test]
    fn pcapng_timestamp_resolutions() {
        assert_eq!(pcapng_ts_ns(1, 6, 0), 1_000);
        assert_eq!(pcapng_ts_ns(1, 0, 0), NANOS_PER_SEC);
        assert_eq!(pcapng_ts_ns(12_345, 12, 0), 12);
        assert_eq!(pcapng_ts_ns(u64::MAX, 127, 0), 0);
        assert_eq!(pcapng_ts_ns(1 << 20, 0x80 | 20, 0), NANOS_PER_SEC);
        assert_eq!(pcapng_ts_ns(u64::MAX, 0x80 | 127, 0), 0);
        assert_eq!(pcapng_ts_ns(u64::MAX, 0, 0), u64::MAX);
        assert_eq!(pcapng_ts_ns(5, 0, -10), 0);
        assert_eq!(pcapng_ts_ns(5, 0, i64::MAX), u64::MAX);
        // Milliseconds, through a real interface description block.
        let mut ng = Ng::new(true);
        ng.idb(101, &[(OPT_IF_TSRESOL, &[3])])
            .epb(0, 1_500, &ipv4(A, B, &udp(1, 2, b"ms")));
        let (d, _) = read_ok(&ng.buf);
        assert_eq!(d[0].timestamp_ns, 1_500_000_000);
    }

    #[test]
    fn pcapng_sections_reset_interfaces_and_may_change_byte_order() {
        let ip = ipv4(A, B, &udp(1, 2, b"s"));
        let mut first = Ng::new(true);
        first.idb(1, &[]).epb(0, 1, &eth(&[], 0x0800, &ip));
        let mut second = Ng::new(false);
        second
            .idb(101, &[])
            .epb(0, 2, &ip)
            // Interface 1 does not exist in this section.
            .epb(1, 3, &ip);
        let mut file = first.buf.clone();
        file.extend_from_slice(&second.buf);
        let (d, s) = read_ok(&file);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].timestamp_ns, d[1].timestamp_ns), (1_000, 2_000));
        assert_eq!(s.skipped_malformed, 1);
    }

    #[test]
    fn pcapng_unsupported_interfaces() {
        let ip = ipv4(A, B, &udp(1, 2, b"ok"));
        // One unsupported interface among supported ones: its packets are counted, not fatal.
        let mut ng = Ng::new(true);
        ng.idb(105, &[])
            .idb(101, &[])
            .epb(0, 0, &[0; 40])
            .epb(1, 0, &ip);
        let (d, s) = read_ok(&ng.buf);
        assert_eq!(d.len(), 1);
        assert_eq!(s.skipped_link_type, 1);
        // Every interface unsupported: an error naming the first link type.
        let mut ng = Ng::new(true);
        ng.idb(105, &[]).idb(127, &[]).epb(0, 0, &[0; 40]);
        assert_eq!(
            read_datagrams(&ng.buf).unwrap_err(),
            CaptureError::UnsupportedLinkType(105)
        );
        // No interface at all: an empty capture, not an error.
        let file = Ng::new(false).buf;
        let (d, s) = read_ok(&file);
        assert!(d.is_empty());
        assert_eq!(s, CaptureStats::default());
        // A packet before any interface, and a too-short interface block.
        let mut ng = Ng::new(true);
        ng.epb(0, 0, &ip)
            .spb(&ip)
            .block(BLOCK_IDB, &[1, 0])
            .epb(0, 0, &ip);
        let (_, s) = read_ok(&ng.buf);
        assert_eq!(s.skipped_malformed, 3);
    }

    #[test]
    fn pcapng_invalid_blocks_stop_reading_safely() {
        let ip = ipv4(A, B, &udp(1, 2, b"kept"));
        let mut ng = Ng::new(true);
        ng.idb(101, &[]).epb(0, 0, &ip);
        let valid = ng.buf.clone();
        let tail = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut file = valid.clone();
            let mut extra = Ng::new(true);
            extra.buf.clear();
            extra.epb(0, 0, &ip);
            f(&mut extra.buf);
            file.extend_from_slice(&extra.buf);
            file
        };
        let set_len = |b: &mut Vec<u8>, len: u32| b[4..8].copy_from_slice(&len.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "length not a multiple of 4",
                tail(&|b| set_len(b, 13)),
                false,
            ),
            ("length below 12", tail(&|b| set_len(b, 8)), false),
            (
                "trailing length differs",
                tail(&|b| {
                    let n = b.len();
                    b[n - 4] ^= 0x04;
                }),
                false,
            ),
            (
                "block cut by end of file",
                tail(&|b| b.truncate(b.len() - 1)),
                true,
            ),
            ("block header cut", tail(&|b| b.truncate(6)), true),
            ("block type cut", tail(&|b| b.truncate(3)), false),
            ("zero length", tail(&|b| set_len(b, 0)), false),
            ("huge length", tail(&|b| set_len(b, u32::MAX - 3)), true),
        ];
        for (what, file, counted) in cases {
            let (d, s) = read_ok(&file);
            assert_eq!(d.len(), 1, "{what}");
            assert_eq!(d[0].payload, b"kept", "{what}");
            assert!(s.truncated, "{what}");
            assert_eq!(s.skipped_malformed, u64::from(counted), "{what}");
        }
        // An EPB whose captured length exceeds its block: malformed, reading continues.
        let mut ng = Ng::new(true);
        ng.idb(101, &[]).epb(0, 0, &ip);
        let start = ng.buf.len() - (12 + 20 + ip.len().next_multiple_of(4));
        let cap_len_at = start + 8 + 12;
        ng.buf[cap_len_at..cap_len_at + 4].copy_from_slice(&1000u32.to_le_bytes());
        ng.epb(0, 0, &ip);
        let (d, s) = read_ok(&ng.buf);
        assert_eq!((d.len(), s.skipped_malformed, s.truncated), (1, 1, false));
        // A later section header with an unknown version or byte-order magic stops reading.
        for (offset, value) in [(12, 2u16), (8, 0x1234)] {
            let mut file = valid.clone();
            let mut next = Ng::new(true);
            next.buf[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
            next.idb(101, &[]).epb(0, 0, &ip);
            file.extend_from_slice(&next.buf);
            let (d, s) = read_ok(&file);
            assert_eq!(d.len(), 1);
            assert!(s.truncated);
        }
    }

    #[test]
    fn pcapng_bad_first_section_header_is_an_error() {
        let good = Ng::new(true).buf;
        let mut bad_magic = good.clone();
        bad_magic[8..12].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            read_datagrams(&bad_magic),
            Err(CaptureError::BadSectionHeader)
        );
        let mut bad_version = good.clone();
        bad_version[12..14].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            read_datagrams(&bad_version),
            Err(CaptureError::UnsupportedVersion { major: 2, minor: 0 })
        );
        let mut bad_len = good.clone();
        bad_len[4..8].copy_from_slice(&24u32.to_le_bytes());
        assert_eq!(
            read_datagrams(&bad_len),
            Err(CaptureError::BadSectionHeader)
        );
        assert_eq!(read_datagrams(&good[..10]), Err(CaptureError::Truncated));
        assert_eq!(read_datagrams(&good[..27]), Err(CaptureError::Truncated));
    }

    // ---- whole-file errors ----------------------------------------------------------------

    #[test]
    fn garbage_and_empty_files_are_not_captures() {
        assert_eq!(read_datagrams(b""), Err(CaptureError::NotACapture));
        assert_eq!(read_datagrams(b"\xd4\xc3"), Err(CaptureError::NotACapture));
        assert_eq!(
            read_datagrams(b"{\"type\":\"NETFLOW_V5\"}\n"),
            Err(CaptureError::NotACapture)
        );
        assert_eq!(read_datagrams(&[0; 64]), Err(CaptureError::NotACapture));
    }

    #[test]
    fn classic_header_errors() {
        let file = simple_capture(true, false);
        assert_eq!(read_datagrams(&file[..4]), Err(CaptureError::Truncated));
        assert_eq!(read_datagrams(&file[..23]), Err(CaptureError::Truncated));
        let mut old = file.clone();
        old[4..6].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(
            read_datagrams(&old),
            Err(CaptureError::UnsupportedVersion { major: 1, minor: 4 })
        );
        // A header with no records is an empty capture.
        let (d, s) = read_ok(&file[..24]);
        assert!(d.is_empty());
        assert_eq!(s, CaptureStats::default());
    }

    #[test]
    fn errors_display_as_sentences() {
        let all = [
            CaptureError::NotACapture,
            CaptureError::Truncated,
            CaptureError::UnsupportedVersion { major: 3, minor: 1 },
            CaptureError::BadSectionHeader,
            CaptureError::UnsupportedLinkType(105),
        ];
        for e in all {
            let s = e.to_string();
            assert!(s.len() > 20 && !s.ends_with('.'), "{s}");
        }
        assert!(all[2].to_string().contains("3.1"));
        assert!(all[4].to_string().contains("105"));
    }

    // ---- real captures --------------------------------------------------------------------

    fn real_captures(shared: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for sub in ["captures", "goflow2-samples"] {
            let Ok(entries) = std::fs::read_dir(shared.join(sub)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "pcap") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    #[test]
    fn real_captures_are_read() {
        let Some(shared) = shared_dir() else {
            return;
        };
        let files = real_captures(&shared);
        assert!(
            !files.is_empty(),
            "no .pcap files under {}",
            shared.display()
        );
        for path in &files {
            let bytes = std::fs::read(path).unwrap();
            let (d, s) =
                read_datagrams(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            check_stats(&s);
            assert!(!d.is_empty(), "{}: no datagrams ({s:?})", path.display());
            assert!(!s.truncated, "{}: {s:?}", path.display());
            eprintln!(
                "{}: {} datagrams, first {} -> {} at {} ns; {s:?}",
                path.display(),
                d.len(),
                d[0].src,
                d[0].dst,
                d[0].timestamp_ns
            );
        }

        let read = |name: &str| std::fs::read(shared.join("captures").join(name)).unwrap();
        let mikrotik = read("mikrotik-ros6.39.2-ipfix-t258-t259.pcap");
        let (d, _) = read_datagrams(&mikrotik).unwrap();
        assert_eq!(d.len(), 3);
        for d in &d {
            assert_eq!(d.payload.get(..2), Some(&[0x00, 0x0a][..]));
            // The IPFIX message length is the whole datagram.
            assert_eq!(usize::from(be16(d.payload, 2).unwrap()), d.payload.len());
        }
        let juniper = read("juniper-mx80-netflow5-sampled.pcap");
        let (d, _) = read_datagrams(&juniper).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].payload.get(..2), Some(&[0x00, 0x05][..]));
        // 24-byte header + 29 records of 48 bytes.
        assert_eq!(d[0].payload.len(), 24 + 29 * 48);
    }

    // ---- robustness -----------------------------------------------------------------------

    /// A deterministic linear congruential generator (Knuth's MMIX constants).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn hand_built_corpus() -> Vec<Vec<u8>> {
        let ip = ipv4(A, B, &udp(1, 2055, b"mutate me"));
        let ip6 = ipv6(v6("2001:db8::1"), v6("2001:db8::2"), 60, &{
            let mut v = vec![17, 0, 1, 4, 0, 0, 0, 0];
            v.extend_from_slice(&udp(1, 4739, b"six"));
            v
        });
        let mut ng = Ng::new(true);
        ng.idb(1, &[(OPT_IF_TSRESOL, &[9])])
            .idb(113, &[])
            .epb(0, 1, &eth(&[0x8100], 0x0800, &ip))
            .epb(1, 2, &sll(0x86dd, &ip6))
            .spb(&eth(&[], 0x86dd, &ip6));
        ng.shb().idb(276, &[]).epb(0, 3, &sll2(0x0800, &ip));
        vec![
            pcap(
                true,
                false,
                1,
                &[
                    rec(1, 2, eth(&[0x88a8, 0x8100], 0x0800, &ip)),
                    rec(3, 4, eth(&[], 0x86dd, &ip6)),
                ],
            ),
            pcap(
                false,
                true,
                101,
                &[rec(1, 2, ip.clone()), rec(3, 4, ip6.clone())],
            ),
            pcap(
                true,
                false,
                0,
                &[rec(1, 2, [&2u32.to_le_bytes()[..], &ip].concat())],
            ),
            ng.buf,
        ]
    }

    #[test]
    fn mutated_and_truncated_inputs_never_panic() {
        let mut corpus = hand_built_corpus();
        if let Some(shared) = shared_dir() {
            for name in [
                "captures/mikrotik-ros6.39.2-ipfix-t258-t259.pcap",
                "goflow2-samples/synthetic.pcap",
            ] {
                if let Ok(bytes) = std::fs::read(shared.join(name)) {
                    corpus.push(bytes);
                }
            }
        }
        let mut rng = Lcg(0x5eed_c0ff_ee00);
        let mut accepted = 0;
        let mut datagrams = 0;
        for base in &corpus {
            for round in 0..1500 {
                let mut file = base.clone();
                let mutations = 1 + rng.below(8);
                for _ in 0..mutations {
                    if file.is_empty() {
                        break;
                    }
                    let at = rng.below(file.len());
                    match rng.below(4) {
                        0 => file[at] = rng.next() as u8,
                        1 => file[at] ^= 1 << rng.below(8),
                        // Interesting values at an aligned offset: lengths, zero, all ones.
                        2 => {
                            let at = at & !3;
                            let v = [0u32, 1, 8, 12, 0xffff_ffff, 0x7fff_ffff][rng.below(6)];
                            for (i, b) in v.to_le_bytes().iter().enumerate() {
                                if let Some(x) = file.get_mut(at + i) {
                                    *x = *b;
                                }
                            }
                        }
                        _ => file.truncate(at),
                    }
                }
                if round % 5 == 0 {
                    file.truncate(rng.below(file.len() + 1));
                }
                if let Ok((d, s)) = read_datagrams(&file) {
                    accepted += 1;
                    datagrams += d.len();
                    check_stats(&s);
                    for d in &d {
                        assert!(is_subslice(&file, d.payload));
                    }
                }
            }
        }
        eprintln!(
            "{accepted} of {} mutated files readable, {datagrams} datagrams",
            corpus.len() * 1500
        );
        // The mutations must leave most files readable, or the test only exercises the header.
        assert!(
            accepted > corpus.len() * 1500 / 2,
            "only {accepted} mutated files were readable"
        );
    }
}

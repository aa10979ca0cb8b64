//! Packet captures → UDP datagrams, streamed: a classic pcap or pcapng file read through any
//! `Read`, its datagrams handed out one at a time, for `--replay FILE` and the tests.
//! `pcap-parser` reads the containers (classic pcap: both byte orders, µs, ns, "modified"; pcapng
//! sections, interfaces, enhanced and simple packet blocks), `etherparse` the headers (Ethernet,
//! up to three VLAN tags, IPv4, IPv6 extension headers, UDP). Owned here: Linux cooked and BSD
//! loopback headers (no lax entry in etherparse), timestamps, and these decisions:
//! - **Bounded memory**: one [`BUFFER`]-byte buffer, refilled as blocks are consumed.
//! - **Strict at the door, lenient inside**: [`CaptureReader::new`] refuses a file without a
//!   readable header (of version 2.x or pcapng 1.x) or of a classic link type not read here. Then
//!   all is counted ([`CaptureStats`]); a record cut by the end of the file, larger than the buffer
//!   or refused by the crate stops the reading (`truncated`), keeping every datagram before it.
//! - **The UDP length field decides**: the payload is `length - 8` bytes (never Ethernet padding);
//!   beyond the captured bytes (snaplen), malformed. An IP total length of 0 (TSO/GSO offload on
//!   the capturing host; below the header's too, as etherparse reads it) means "to the end". No
//!   reassembly: fragments are counted apart (an atomic IPv6 one is whole). No checksum checks:
//!   offloaded ones are wrong in captures of locally sent packets.
//! - Link types 1 Ethernet, 113/276 SLL/SLL2, 101/12/14/228/229 raw IP, 0 BSD loopback (family in
//!   the writer's byte order, told per packet), 108 OpenBSD loopback. pcapng `if_tsresol` and
//!   `if_tsoffset` are honoured; simple packet blocks use interface 0 and timestamp 0.

use std::io::Read;
use std::net::SocketAddr;

use etherparse::ip_number::UDP;
use etherparse::{EtherType, LaxIpSlice, LaxNetSlice, LaxSlicedPacket, LenSource, TransportSlice};
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Block, Linktype, PcapBlockOwned, PcapError, create_reader};

/// The read buffer: four times libpcap's largest snap length.
pub const BUFFER: usize = 1 << 20;

/// One UDP datagram found in a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The UDP payload (exactly UDP length − 8 bytes).
    pub payload: &'a [u8],
    /// Capture time in nanoseconds since the Unix epoch (0 when none is recorded).
    pub timestamp_ns: u64,
    /// Where `payload` starts in the file.
    pub offset: u64,
}

/// Why a file cannot be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureError {
    /// No magic number, a cut, bad or unreadable header (pcap-parser keeps no I/O error), or
    /// a version other than 2.x (classic) or 1.x (pcapng).
    NotACapture,
    UnsupportedLinkType(u32),
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotACapture => write!(f, "not a pcap or pcapng capture file (no file header)"),
            Self::UnsupportedLinkType(lt) => write!(f, "unsupported link type {lt}"),
        }
    }
}

impl std::error::Error for CaptureError {}

/// What reading found: `packets` = `udp_datagrams` + the `skipped_*` counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub packets: u64,
    pub udp_datagrams: u64,
    pub skipped_non_udp: u64,
    pub skipped_fragments: u64,
    pub skipped_malformed: u64,
    pub skipped_link_type: u64,
    pub truncated: bool,
}

/// The link type, `Err` if not read here (classic pcap keeps FCS information in the high bits).
fn link(lt: Linktype) -> Result<u32, u32> {
    let lt = (lt.0 & 0xffff) as u32;
    let ok = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276].contains(&lt);
    if ok { Ok(lt) } else { Err(lt) }
}

/// Streams one capture: [`new`](Self::new) reads its header, [`for_each`](Self::for_each) the rest.
pub struct CaptureReader<'r> {
    inner: Box<dyn PcapReaderIterator + Send + 'r>,
    /// The section's (classic: one): link, `if_tsresol`, `if_tsoffset`.
    interfaces: Vec<(Result<u32, u32>, u8, i64)>,
    /// Classic: nanoseconds per unit of a record's fraction; pcapng: its byte order.
    frac_ns: u64,
    big_endian: bool,
    stats: CaptureStats,
}

impl<'r> CaptureReader<'r> {
    pub fn new<R: Read + Send + 'r>(reader: R) -> Result<Self, CaptureError> {
        let inner = create_reader(BUFFER, reader).map_err(|_| CaptureError::NotACapture)?;
        let mut me = CaptureReader {
            inner,
            interfaces: Vec::new(),
            frac_ns: 0,
            big_endian: false,
            stats: CaptureStats::default(),
        };
        let (len, header) = me.inner.next().map_err(|_| CaptureError::NotACapture)?;
        let ng = match header {
            PcapBlockOwned::LegacyHeader(h) if h.version_major == 2 => {
                let lt = link(h.network).map_err(CaptureError::UnsupportedLinkType)?;
                me.interfaces.push((Ok(lt), 0, 0));
                me.frac_ns = if h.is_nanosecond_precision() { 1 } else { 1000 };
                false
            }
            PcapBlockOwned::NG(Block::SectionHeader(s)) if s.major_version == 1 => true,
            _ => return Err(CaptureError::NotACapture),
        };
        // A section header stays in the buffer: `step` reads it again (for its byte order).
        me.inner.consume(if ng { 0 } else { len });
        Ok(me)
    }

    /// Calls `f` with every datagram, in file order, then returns what reading found.
    pub fn for_each(&mut self, mut f: impl FnMut(&Datagram<'_>)) -> CaptureStats {
        while self.step(&mut f) {}
        self.stats
    }

    fn step(&mut self, f: &mut dyn FnMut(&Datagram<'_>)) -> bool {
        if self.short_process_information_block() {
            return self.recover(); // reads to the end of the buffer's space, then stops
        }
        let (base, at) = (self.inner.data().as_ptr() as usize, self.inner.consumed());
        let (len, block) = match self.inner.next() {
            Ok(next) => next,
            Err(PcapError::Eof) => return false,
            Err(_) => return self.recover(),
        };
        use PcapBlockOwned::{Legacy, NG};
        let (frame, interface, timestamp_ns) = match block {
            Legacy(b) => {
                let ts = u64::from(b.ts_sec) * 1_000_000_000 + u64::from(b.ts_usec) * self.frac_ns;
                (Some(b.data), self.interfaces.first(), ts)
            }
            NG(Block::EnhancedPacket(b)) => {
                let i = self.interfaces.get(b.if_id as usize);
                let ts = i.map_or(0, |i| ng_ns(b.ts_high, b.ts_low, i.1, i.2));
                (b.data.get(..b.caplen as usize), i, ts)
            }
            // Its length is the original one, capped by the block (with 0 to 3 bytes of padding).
            NG(Block::SimplePacket(b)) => {
                let data = b.data.get(..b.origlen as usize).unwrap_or(b.data);
                (Some(data), self.interfaces.first(), 0)
            }
            NG(Block::SectionHeader(s)) => {
                (self.big_endian, self.stats.truncated) = (s.big_endian(), s.major_version != 1);
                self.interfaces.clear();
                return s.major_version == 1 && self.consume(len);
            }
            NG(Block::InterfaceDescription(b)) => {
                // pcap-parser reads if_tsoffset little-endian whatever the section's order.
                let o = [b.if_tsoffset, b.if_tsoffset.swap_bytes()][usize::from(self.big_endian)];
                self.interfaces.push((link(b.linktype), b.if_tsresol, o));
                return self.consume(len);
            }
            _ => return self.consume(len),
        };
        let s = &mut self.stats;
        s.packets += 1;
        match (frame, interface.map(|i| i.0)) {
            (Some(frame), Some(Ok(link))) => match parse_frame(link, frame) {
                Packet::Udp(src, dst, payload) => {
                    s.udp_datagrams += 1;
                    f(&Datagram {
                        src,
                        dst,
                        payload,
                        timestamp_ns,
                        // `payload` lies in the buffer, whose first byte is the file's byte `at`.
                        offset: (at + (payload.as_ptr() as usize - base)) as u64,
                    });
                }
                Packet::NonUdp => s.skipped_non_udp += 1,
                Packet::Fragment => s.skipped_fragments += 1,
                Packet::Malformed => s.skipped_malformed += 1,
            },
            (Some(_), Some(Err(_))) => s.skipped_link_type += 1,
            // Data beyond its block, or no such interface.
            _ => s.skipped_malformed += 1,
        }
        self.consume(len)
    }

    /// Whether a pcapng process information block under 12 bytes is next (pcap-parser panics).
    fn short_process_information_block(&self) -> bool {
        let read: fn([u8; 4]) -> u32 = match self.big_endian {
            true => u32::from_be_bytes,
            false => u32::from_le_bytes,
        };
        let word = |i: usize| Some(read(*self.inner.data().get(i..)?.first_chunk()?));
        self.frac_ns == 0 && word(0) == Some(0x8000_0001) && word(4).is_some_and(|n| n < 12)
    }

    fn consume(&mut self, len: usize) -> bool {
        self.inner.consume(len);
        true
    }

    /// After `next` failed: read more and retry while that reads anything, else stop.
    fn recover(&mut self) -> bool {
        let have = self.inner.data().len();
        let more = self.inner.refill().is_ok() && self.inner.data().len() > have;
        // pcap-parser reports the end after a partly consumed buffer as unexpected.
        self.stats.truncated = !(more || have == 0 && self.inner.reader_exhausted());
        more
    }
}

/// A pcapng timestamp in `tsresol` units plus `tsoffset` seconds, in nanoseconds (saturating).
fn ng_ns(high: u32, low: u32, tsresol: u8, tsoffset: i64) -> u64 {
    let ts = (u128::from(high) << 32 | u128::from(low)) * 1_000_000_000;
    let exp = u32::from(tsresol & 0x7f);
    let ns = match tsresol & 0x80 {
        0 => 10u128.checked_pow(exp).map_or(0, |unit| ts / unit),
        _ => ts.checked_shr(exp).unwrap_or(0),
    };
    let total = ns as i128 + i128::from(tsoffset) * 1_000_000_000;
    total.clamp(0, i128::from(u64::MAX)) as u64
}

enum Packet<'a> {
    Udp(SocketAddr, SocketAddr, &'a [u8]),
    NonUdp,
    Fragment,
    Malformed,
}

fn parse_frame(link: u32, frame: &[u8]) -> Packet<'_> {
    let sliced = match link {
        1 => LaxSlicedPacket::from_ethernet(frame).ok(),
        113 | 276 => {
            // Linux cooked, SLL and SLL2: where the protocol field and the payload start.
            let (t, at) = if link == 113 { (14, 16) } else { (0, 20) };
            match (frame.get(t..t + 2), frame.get(at..)) {
                (Some(&[a, b]), Some(rest)) => {
                    let t = EtherType(u16::from_be_bytes([a, b]));
                    Some(LaxSlicedPacket::from_ether_type(t, rest))
                }
                _ => None,
            }
        }
        0 | 108 => {
            let Some((family, rest)) = frame.split_first_chunk::<4>() else {
                return Packet::Malformed;
            };
            let (be, le) = (u32::from_be_bytes(*family), u32::from_le_bytes(*family));
            // The writer's byte order (families are small: high bits set, the other one); 108: BE.
            let family = if link == 108 || le > 0xffff { be } else { le };
            // AF_INET; AF_INET6 as numbered by NetBSD/OpenBSD, FreeBSD and macOS.
            if !matches!(family, 2 | 24 | 28 | 30) {
                return Packet::NonUdp;
            }
            LaxSlicedPacket::from_ip(rest).ok()
        }
        _ => LaxSlicedPacket::from_ip(frame).ok(),
    };
    let Some(p) = sliced else {
        return Packet::Malformed;
    };
    let ip = match p.net {
        Some(LaxNetSlice::Ipv4(v4)) => LaxIpSlice::Ipv4(v4),
        Some(LaxNetSlice::Ipv6(v6)) => LaxIpSlice::Ipv6(v6),
        // A cut VLAN tag or IP header; ARP and other protocols.
        None if p.stop_err.is_some() => return Packet::Malformed,
        _ => return Packet::NonUdp,
    };
    let (src, dst) = (ip.source_addr(), ip.destination_addr());
    match &p.transport {
        _ if ip.payload().fragmented => Packet::Fragment,
        Some(TransportSlice::Udp(u)) if u.payload_len_source() == LenSource::UdpHeaderLen => {
            let src = SocketAddr::new(src, u.source_port());
            Packet::Udp(src, SocketAddr::new(dst, u.destination_port()), u.payload())
        }
        _ if ip.payload_ip_number() == UDP => Packet::Malformed,
        _ => Packet::NonUdp,
    }
}

/// Every datagram of an in-memory capture, the payloads borrowed from `file`.
pub fn read_datagrams(file: &[u8]) -> Result<(Vec<Datagram<'_>>, CaptureStats), CaptureError> {
    let mut out = Vec::new();
    let stats = CaptureReader::new(file)?.for_each(|d| {
        let at = usize::try_from(d.offset).unwrap_or(usize::MAX);
        if let Some(payload) = file.get(at..).and_then(|p| p.get(..d.payload.len())) {
            out.push(Datagram { payload, ..*d });
        }
    });
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &str = "03e80807000a00000707"; // 1000 → 2055, length 10, payload 07 07
    const IP4: &str = "4500001e0000000040110000c0000201c0000202"; // 192.0.2.1 → .2, UDP
    const V6: &str = "20010db800000000000000000000000120010db8000000000000000000000002";
    const ETH: &str = "aaaaaaaaaaaabbbbbbbbbbbb";

    fn hex(s: &str) -> Vec<u8> {
        let byte = |i| u8::from_str_radix(&s[i..i + 2], 16).unwrap();
        (0..s.len()).step_by(2).map(byte).collect()
    }

    fn pcap(linktype: u32, frames: &[&[u8]]) -> Vec<u8> {
        let f = [0xa1b2_c3d4, 0x4_0002, 0, 0, 0, linktype].map(u32::to_le_bytes);
        let mut f = f.concat();
        for (i, frame) in frames.iter().enumerate() {
            let n = frame.len() as u32;
            f.extend([i as u32, 7, n, n].map(u32::to_le_bytes).concat());
            f.extend(*frame);
        }
        f
    }

    #[test]
    fn link_types_and_what_counts_as_a_datagram() {
        let (ip, z) = (format!("{IP4}{UDP}"), "00".repeat(18));
        let v6 = |n, e: &str| format!("6000000000{:02x}{n}40", 10 + e.len() / 2) + V6 + e + UDP;
        let hop = v6("00", "3c000104000000001100010400000000");
        for (lt, frame, want) in [
            (1, format!("{ETH}8100000588a800060800{ip}00000000"), 'u'), // tags, padding
            (113, format!("{}0800{ip}", &z[8..]), 'u'),
            (276, format!("0800{z}{ip}"), 'u'),
            (0, format!("00000002{ip}"), 'u'), // the other byte order
            (108, format!("0000001e{hop}"), 'u'), // hop-by-hop and destination options
            (229, v6("2c", "1100000000000001"), 'u'), // an atomic fragment
            (229, v6("2c", "1100000100000001"), 'f'),
            (101, format!("45000000{}{UDP}", &IP4[8..]), 'u'), // total length 0 (TSO)
            (228, format!("4500001e00002000{}{UDP}", &IP4[16..]), 'f'),
            (12, format!("{}06{}{UDP}", &IP4[..18], &IP4[20..]), 'n'), // TCP
            (14, format!("{IP4}{}0b{}", &UDP[..10], &UDP[12..]), 'm'), // UDP length too long
            (1, format!("{ETH}0800{}", &IP4[..20]), 'm'),
        ] {
            let file = pcap(lt, &[&[], &hex(&frame)]); // after an empty (malformed) record
            let (d, s) = read_datagrams(&file).unwrap();
            let (m, f) = (s.skipped_malformed - 1, s.skipped_fragments); // -1: the empty record
            let n = [s.udp_datagrams, s.skipped_non_udp, f, m];
            assert_eq!(n.iter().position(|&n| n == 1), "unfm".find(want), "{frame}");
            let d = d.first().map(|d| (d.src.port(), d.payload, d.timestamp_ns));
            assert!(d.is_none_or(|d| d == (1000, &[7, 7][..], 1_000_007_000)));
        }
    }

    #[test]
    fn pcapng_interfaces_timestamps_and_truncation() {
        let block = |ty: u32, body: &[u8]| {
            let n = (12 + body.len().next_multiple_of(4) as u32).to_le_bytes();
            let pad = &[0; 3][..(4 - body.len() % 4) % 4];
            [&ty.to_le_bytes()[..], &n, body, pad, &n].concat()
        };
        let f = hex(&format!("{ETH}0800{IP4}{UDP}"));
        let epb = |i: u32, ts, n| [[i, 0, ts, n, n].map(u32::to_le_bytes).concat(), f.clone()];
        let epb = |i, ts, n| block(6, &epb(i, ts, n).concat());
        let opts = "09000100090000000e0008000a0000000000000000000000"; // ns, 10 s offset
        let file = [
            block(0x0a0d_0d0a, &hex("4d3c2b1a01000000ffffffffffffffff")),
            block(1, &hex(&format!("0100000000000000{opts}"))),
            block(1, &[147, 0, 0, 0, 0, 0, 0, 0]),
            [epb(0, 5, 44), epb(1, 0, 44), epb(7, 0, 44)].concat(),
            block(3, &[&[44, 0, 0, 0][..], &f].concat()), // a simple packet block
            epb(0, 6, 44),
            vec![1, 0, 0, 0x80, 8, 0, 0, 0], // an 8-byte process information block: the end
            epb(0, 0, 44),
        ]
        .concat();
        let (d, s) = read_datagrams(&file).unwrap();
        let n = (s.packets, s.udp_datagrams, s.skipped_link_type);
        assert_eq!((n, s.skipped_malformed, s.truncated), ((5, 3, 1), 1, true));
        let ts: Vec<_> = d.iter().map(|d| d.timestamp_ns).collect();
        assert_eq!(ts, [10_000_000_005, 0, 10_000_000_006]);
    }

    #[test]
    fn streams_a_file_larger_than_the_buffer_and_refuses_non_captures() {
        let frame = hex(&(format!("450005c0{}03e8080705ac0000", &IP4[8..]) + &"07".repeat(1444)));
        let frames = vec![&frame[..]; 3 * BUFFER / frame.len()];
        let file = pcap(101, &frames);
        let (d, s) = read_datagrams(&file).unwrap();
        assert_eq!((d.len(), s.truncated), (frames.len(), false));
        assert!(d.iter().all(|d| d.payload == &frame[28..]));
        let (cut, s) = read_datagrams(&file[..file.len() - 700]).unwrap();
        assert_eq!((cut.len() + 1, s.truncated), (frames.len(), true));
        let v3 = [&[0xd4, 0xc3, 0xb2, 0xa1, 3, 0, 4, 0][..], &[0; 16]].concat();
        for bad in [&b""[..], b"GET / HTTP/1.1\r\n", &file[..20], &v3] {
            assert_eq!(read_datagrams(bad), Err(CaptureError::NotACapture));
        }
        let lt147 = Err(CaptureError::UnsupportedLinkType(147));
        assert_eq!(read_datagrams(&pcap(147, &[])), lt147);
    }
}

//! The goflow2 detail fields of flow records ([`FlowDetail`]): what a goflow2 JSON line carries
//! beyond the metrics' needs. Read only when flow lines are written (`--flows-out`, issue 11), so
//! the metrics' hot path never pays for them.
//!
//! Done: NetFlow v5. To do: v9 and IPFIX data records (the mapping, from goflow2 v2.2.6's
//! source, is in `docs/goflow2-flow-lines.md`).

use std::net::{IpAddr, Ipv4Addr};

use super::netflow::v5_records;
use crate::flow::FlowDetail;

/// The details of a v5 datagram's records, in record order, as goflow2 fills them: the header's
/// flow sequence; per record the next hop (always an address: `0.0.0.0` when zero), ToS, AS
/// numbers and prefix lengths; EtherType IPv4. Appends nothing for a datagram the decoder
/// refuses (`netflow::v5_records`), so the details line up with its flows.
pub fn v5(datagram: &[u8], out: &mut Vec<FlowDetail>) {
    let Some(records) = v5_records(datagram) else {
        return;
    };
    let be16 = |r: &[u8], i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
    let be32 = |r: &[u8], i: usize| u32::from_be_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    // `v5_records` checked the 24-byte header is there.
    let sequence_num = be32(datagram, 16);
    out.extend(records.chunks_exact(48).map(|r| FlowDetail {
        sequence_num,
        etype: 0x0800,
        next_hop: Some(IpAddr::V4(Ipv4Addr::from(be32(r, 8)))),
        ip_tos: r[39],
        src_as: u32::from(be16(r, 40)),
        dst_as: u32::from(be16(r, 42)),
        src_mask: r[44],
        dst_mask: r[45],
        ..FlowDetail::default()
    }));
}

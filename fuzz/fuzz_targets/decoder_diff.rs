//! Fuzz target: the product decoder (`NetflowDecoder`) against the `netflow_parser` reference
//! (`NetflowParserDecoder`) on the same datagram sequences.
//!
//! Input format: that of the `datagram` target (see `fuzz/fuzz_targets/datagram.rs`): pieces
//! separated by `#DG#`; the first one is configuration (ignored here: both decoders run with the
//! default limits, since their eviction orders under tiny limits differ by design); every further
//! piece is `[control byte][UDP payload]`, bits 0-2 of the control byte choosing one of 8
//! exporters. Fresh decoders per input.
//!
//! Checks, per datagram: the product decoder does not panic, its report's flow count equals the
//! flows it appended and its version is the header's; and wherever `KnownDifferences` does not
//! flag the datagram (see `src/decode/reference.rs` for the documented places where
//! `netflow_parser` 1.0.6 is wrong), both reports and every field of every flow are identical.

#![no_main]

use goflow2_exporter::decode::netflow::{DatagramDecoder, DecoderLimits, NetflowDecoder};
use goflow2_exporter::decode::reference::{KnownDifferences, NetflowParserDecoder};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::{MAX_DATAGRAMS, exporters, split};

fuzz_target!(|data: &[u8]| {
    let pieces = split(data);
    let datagrams = &pieces[1..pieces.len().min(MAX_DATAGRAMS + 1)];
    let limits = DecoderLimits::default();
    let mut product = NetflowDecoder::new(limits);
    let mut reference = NetflowParserDecoder::new(limits);
    let mut known = KnownDifferences::new(limits);
    let exporters = exporters();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, piece) in datagrams.iter().enumerate() {
        let (ctl, datagram) = match piece.split_first() {
            Some((c, d)) => (*c, d),
            None => (0, &[][..]),
        };
        let exporter = exporters[usize::from(ctl & 7)];
        let received_ns = 1_700_000_000_000_000_000 + i as u64;
        let verdict = known.check(exporter, datagram);
        a.clear();
        b.clear();
        let ra = product.decode(exporter, datagram, received_ns, &mut a);
        let rb = reference.decode(exporter, datagram, received_ns, &mut b);
        assert_eq!(ra.flows, a.len(), "report.flows != flows appended");
        let version = datagram
            .get(..2)
            .map_or(0, |v| u16::from_be_bytes([v[0], v[1]]));
        assert_eq!(ra.version, version);
        if verdict.is_ok() {
            assert_eq!(ra, rb, "datagram {i}: reports differ");
            assert_eq!(a, b, "datagram {i}: flows differ");
        }
    }
});

//! Shows that the product NetFlow decoder allocates nothing per record or per set once it knows
//! the templates: dhat's counting allocator (testing mode) around a decode loop over real
//! exports and a variable-length datagram. Its own test binary, because the counting allocator
//! replaces the global one for everything in the binary.

use std::net::SocketAddr;

use goflow2_exporter::capture::read_datagrams;
use goflow2_exporter::decode::netflow::{DatagramDecoder, DecoderLimits, NetflowDecoder};
use goflow2_exporter::decode::reference::NetflowParserDecoder;
use goflow2_exporter::testkit::{ipfix, set, template};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Whether a v9/IPFIX datagram carries a template set (learning may allocate).
fn has_template_set(d: &[u8]) -> bool {
    let version = u16::from_be_bytes([d[0], d[1]]);
    let mut at = if version == 9 { 20 } else { 16 };
    while at + 4 <= d.len() {
        let id = u16::from_be_bytes([d[at], d[at + 1]]);
        let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
        if id <= 3 {
            return true;
        }
        if len < 4 {
            break;
        }
        at += len;
    }
    false
}

/// (exporter, datagram) of several fixtures and a variable-length IPFIX exchange.
fn workload() -> Vec<(SocketAddr, Vec<u8>)> {
    let mut all = Vec::new();
    for name in [
        "softflowd-v5",
        "softflowd-v9",
        "softflowd-ipfix",
        "pmacct-v9-sampled4",
        "pmacct-ipfix-sampled10",
        "mixed-v9-3exporters",
    ] {
        let path = format!(
            "{}/testdata/fixtures/{name}.pcap",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap();
        let (datagrams, _) = read_datagrams(&bytes).unwrap();
        all.extend(datagrams.iter().map(|d| (d.src, d.payload.to_vec())));
    }
    let varlen: &[(u16, u16)] = &[(8, 4), (82, 0xFFFF), (1, 4)];
    let mut records = Vec::new();
    for name in [&b"ether1"[..], b"", &[b'x'; 300]] {
        records.extend_from_slice(&[10, 0, 0, 1]);
        if name.len() < 255 {
            records.push(name.len() as u8);
        } else {
            records.push(255);
            records.extend_from_slice(&(name.len() as u16).to_be_bytes());
        }
        records.extend_from_slice(name);
        records.extend_from_slice(&7u32.to_be_bytes());
    }
    let exporter: SocketAddr = "192.0.2.1:4739".parse().unwrap();
    all.push((exporter, ipfix(0, &[set(2, &template(300, varlen))])));
    all.push((exporter, ipfix(0, &[set(300, &records)])));
    all
}

#[test]
fn steady_state_decoding_allocates_nothing() {
    let workload = workload();
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut decoder = NetflowDecoder::new(DecoderLimits::default());
    let mut out = Vec::with_capacity(4096);
    // Warm-up: every template learned, every scope created.
    for (exporter, d) in &workload {
        decoder.decode(*exporter, d, 0, &mut out);
        out.clear();
    }
    let data: Vec<_> = workload
        .iter()
        .filter(|(_, d)| !has_template_set(d))
        .collect();
    let before = dhat::HeapStats::get();
    let (mut records, mut sets) = (0, 0);
    for _ in 0..5 {
        for (exporter, d) in &data {
            let report = decoder.decode(*exporter, d, 0, &mut out);
            records += report.flows;
            sets += 1;
            out.clear();
        }
    }
    let after = dhat::HeapStats::get();
    assert!(records > 10_000, "{records} records decoded");
    assert_eq!(
        after.total_blocks - before.total_blocks,
        0,
        "allocations while decoding {records} records in {sets} datagrams"
    );
    eprintln!("{records} records, {sets} datagrams, 0 allocations");

    // The counter is live: the netflow_parser reference allocates per record on the same loop.
    let mut reference = NetflowParserDecoder::new(DecoderLimits::default());
    for (exporter, d) in &workload {
        reference.decode(*exporter, d, 0, &mut out);
        out.clear();
    }
    let before = dhat::HeapStats::get();
    for (exporter, d) in &data {
        reference.decode(*exporter, d, 0, &mut out);
        out.clear();
    }
    let reference_blocks = dhat::HeapStats::get().total_blocks - before.total_blocks;
    assert!(reference_blocks > 2000, "{reference_blocks}");
    eprintln!("reference decoder on one pass: {reference_blocks} allocations");
}

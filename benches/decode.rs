//! Decode-only throughput on one core: NetFlow v9 datagrams of ~30 records through the product
//! decoder (`NetflowDecoder`) and the `netflow_parser` reference (`NetflowParserDecoder`), no
//! aggregation. Two workloads: the datagrams of `testdata/fixtures/softflowd-v9.pcap` looped
//! (real softflowd templates, IPv4 and IPv6, ~27 records per datagram), and a synthetic v9
//! datagram of 30 records with an 18-field IPv4 template (a router's usual layout).
//!
//! Run: `cargo bench --bench decode -- [SECONDS_PER_CASE]` (default 2). Prints records/s for each
//! decoder and workload (best of 3 runs) and the ratio.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use goflow2_exporter::capture::read_datagrams;
use goflow2_exporter::decode::netflow::{DatagramDecoder, DecoderLimits, NetflowDecoder};
use goflow2_exporter::decode::reference::NetflowParserDecoder;
use goflow2_exporter::flow::Flow;
use goflow2_exporter::testkit::{set, template, v9};

/// An 18-field IPv4 template: src, dst, next hop, in/out interface, packets, bytes, first/last
/// switched, ports, TCP flags, proto, ToS, AS numbers, masks.
const ROUTER: &[(u16, u16)] = &[
    (8, 4),
    (12, 4),
    (15, 4),
    (10, 2),
    (14, 2),
    (2, 4),
    (1, 4),
    (22, 4),
    (21, 4),
    (7, 2),
    (11, 2),
    (6, 1),
    (4, 1),
    (5, 1),
    (16, 2),
    (17, 2),
    (9, 1),
    (13, 1),
];

/// The synthetic workload: one template datagram, then one data datagram of 30 records.
fn synthetic() -> Vec<Vec<u8>> {
    let record_len: usize = ROUTER.iter().map(|&(_, l)| usize::from(l)).sum();
    let mut records = Vec::new();
    for i in 0..30u8 {
        let mut r = vec![0u8; record_len];
        r[..4].copy_from_slice(&[10, 0, 0, i]);
        r[4..8].copy_from_slice(&[192, 0, 2, i]);
        r[16..20].copy_from_slice(&u32::from(i + 1).to_be_bytes()); // packets
        r[20..24].copy_from_slice(&(u32::from(i) * 100 + 40).to_be_bytes()); // bytes
        r[24..28].copy_from_slice(&9_000u32.to_be_bytes()); // first switched
        r[28..32].copy_from_slice(&9_500u32.to_be_bytes()); // last switched
        r[37] = 6; // proto
        records.extend_from_slice(&r);
    }
    vec![
        v9(0, &[set(0, &template(256, ROUTER))]),
        v9(0, &[set(256, &records)]),
    ]
}

/// The softflowd workload: its UDP payloads, in capture order.
fn softflowd() -> (SocketAddr, Vec<Vec<u8>>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/fixtures/softflowd-v9.pcap"
    );
    let bytes = std::fs::read(path).expect("testdata/fixtures/softflowd-v9.pcap");
    let (datagrams, _) = read_datagrams(&bytes).expect("a capture");
    let exporter = datagrams[0].src;
    (
        exporter,
        datagrams.iter().map(|d| d.payload.to_vec()).collect(),
    )
}

/// Records per second decoding `datagrams` in a loop for `budget` (best of 3). The first pass
/// (templates learned, buffers grown) is not timed.
fn measure(
    decoder: &mut dyn DatagramDecoder,
    exporter: SocketAddr,
    datagrams: &[Vec<u8>],
    budget: Duration,
) -> f64 {
    let mut out: Vec<Flow> = Vec::with_capacity(64);
    for d in datagrams {
        decoder.decode(exporter, d, 0, &mut out);
        out.clear();
    }
    let mut best = 0f64;
    for _ in 0..3 {
        let (start, mut records) = (Instant::now(), 0usize);
        while start.elapsed() < budget {
            // Check the clock every 1000 datagrams only: reading it is not free either.
            for d in datagrams.iter().cycle().take(1000) {
                records += decoder.decode(exporter, d, 0, &mut out).flows;
                out.clear();
            }
        }
        best = best.max(records as f64 / start.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds / 3.0);
    let (softflowd_exporter, softflowd) = softflowd();
    let synthetic_exporter: SocketAddr = "192.0.2.1:2055".parse().unwrap();
    let cases = [
        ("softflowd-v9.pcap looped", softflowd_exporter, softflowd),
        ("synthetic v9, 30 records", synthetic_exporter, synthetic()),
    ];
    for (name, exporter, datagrams) in &cases {
        let limits = DecoderLimits::default();
        let new = measure(
            &mut NetflowDecoder::new(limits),
            *exporter,
            datagrams,
            budget,
        );
        let reference = measure(
            &mut NetflowParserDecoder::new(limits),
            *exporter,
            datagrams,
            budget,
        );
        println!(
            "{name}: NetflowDecoder {:.1} M records/s, NetflowParserDecoder {:.2} M records/s, ratio {:.1}x",
            new / 1e6,
            reference / 1e6,
            new / reference
        );
    }
}

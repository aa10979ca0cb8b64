//! Fuzz target: the datagram decode path (`NetflowDecoder`: set walk, template caches,
//! sampling engine, options data), with state that persists across the datagrams of one input so
//! that template → data and options → data sequences are reached.
//!
//! Input format (see `scripts/fuzz-corpus.sh`, which writes seeds in it): pieces separated by the
//! 4-byte marker `#DG#`. The first piece is configuration: its first byte selects the decoder
//! limits (bit 0: tiny limits, so eviction paths run) and whether the whole sequence is replayed
//! into a second decoder to check determinism (bit 1, default limits only). Every further piece is one datagram: its
//! first byte is a control byte (bits 0-2: which of 8 exporter addresses sent it; bit 3:
//! `prune_idle(0)` before it; bit 4: check `templates_per_exporter()` after it; bit 5: decode it
//! with the detail fields of flow lines, and check one detail per flow and every line JSON with
//! goflow2's 50 keys), the rest is the
//! UDP payload. A fresh decoder per input keeps crashes reproducible from the input alone.
//!
//! Checks, per datagram: the report's flow count equals the flows appended and flows already in
//! `out` are untouched; the version is the header's; every flow has the exporter (unmapped) as
//! sampler, the datagram's receive time, the flow type of the version and (v9/IPFIX) the header's
//! source id / observation domain; v5 flows carry a 14-bit sampling interval and, when nothing
//! was malformed, exactly the header's count; no record comes from nothing (flows <= bytes);
//! other versions give no flow and exactly one error. After `prune_idle(0)` no template is left.

#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use goflow2_exporter::decode::netflow::{
    DatagramDecoder, DatagramReport, DecoderLimits, NetflowDecoder,
};
use goflow2_exporter::flow::{Flow, FlowType, unmap_v4};
use goflow2_exporter::flows_out::format::write_line;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::{MAX_DATAGRAMS, exporters, split};

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn limits(config: u8) -> DecoderLimits {
    if config & 1 == 0 {
        return DecoderLimits::default();
    }
    DecoderLimits {
        max_exporters: 2,
        max_templates: 2,
        max_fields_per_template: 8,
        max_template_bytes: 64,
        template_ttl: Duration::from_secs(3600),
        max_samplers_per_exporter: 2,
    }
}

fn check(
    exporter: SocketAddr,
    datagram: &[u8],
    received_ns: u64,
    report: &DatagramReport,
    flows: &[Flow],
) {
    assert_eq!(report.flows, flows.len(), "report.flows != flows appended");
    assert_eq!(report.version, be16(datagram, 0).unwrap_or(0));
    let sampler = Some(unmap_v4(exporter.ip()));
    for f in flows {
        assert_eq!(f.sampler, sampler);
        assert_eq!(f.time_received_ns, received_ns);
    }
    // Every set header is 4 bytes: no more errors than places where a set could start.
    let sets = datagram.len() / 4 + 2;
    assert!(
        (report.malformed + report.missing_template) as usize <= sets,
        "{report:?}"
    );
    match report.version {
        5 => {
            let count = usize::from(be16(datagram, 2).unwrap_or(0));
            assert!(flows.len() <= datagram.len().saturating_sub(24) / 48);
            if report.malformed == 0 {
                assert_eq!(flows.len(), count, "v5 without error: one flow per record");
            }
            assert_eq!(
                (report.unsupported_version, report.missing_template),
                (0, 0)
            );
            for f in flows {
                assert_eq!(f.flow_type, FlowType::NetflowV5);
                assert!(f.sampling_rate <= 0x3fff);
                assert_eq!(f.observation_domain, 0);
                assert!(matches!(f.src_addr, Some(IpAddr::V4(_))));
                assert!(matches!(f.dst_addr, Some(IpAddr::V4(_))));
                assert!(f.proto.is_some());
                assert!(f.in_if <= 0xffff && f.out_if <= 0xffff && f.tcp_flags <= 0xff);
            }
        }
        9 | 10 => {
            let (flow_type, domain) = if report.version == 9 {
                (FlowType::NetflowV9, be32(datagram, 16))
            } else {
                (FlowType::Ipfix, be32(datagram, 12))
            };
            assert_eq!(report.unsupported_version, 0);
            // A record is at least one byte (all-zero-length templates are refused).
            assert!(
                flows.len() <= datagram.len(),
                "{} flows from {} bytes",
                flows.len(),
                datagram.len()
            );
            for f in flows {
                assert_eq!(f.flow_type, flow_type);
                assert_eq!(Some(f.observation_domain), domain);
            }
        }
        _ => {
            assert!(flows.is_empty());
            assert_eq!(
                report.malformed + report.unsupported_version + report.missing_template,
                1,
                "{report:?}"
            );
        }
    }
}

/// Runs the whole sequence into a fresh decoder; returns every flow produced, in order.
fn run(config: u8, datagrams: &[&[u8]]) -> Vec<Flow> {
    let limits = limits(config);
    let exporters = exporters();
    let mut decoder = NetflowDecoder::new(limits);
    let mut all = Vec::new();
    let mut out = Vec::new();
    let (mut details, mut line) = (Vec::new(), Vec::new());
    let marker = Flow {
        bytes: 0x5eed,
        ..Flow::default()
    };
    for (i, piece) in datagrams.iter().enumerate() {
        let (ctl, datagram) = match piece.split_first() {
            Some((c, d)) => (*c, d),
            None => (0, &[][..]),
        };
        let exporter = exporters[usize::from(ctl & 7)];
        if ctl & 8 != 0 {
            decoder.prune_idle(Duration::ZERO);
            let left: usize = decoder
                .templates_per_exporter()
                .iter()
                .map(|(_, n)| n)
                .sum();
            assert_eq!(left, 0, "templates left after prune_idle(0)");
        }
        let received_ns = 1_700_000_000_000_000_000 + i as u64 * 1_000_000_007;
        out.clear();
        out.push(marker);
        // Every other datagram also with the detail fields of flow lines (--flows-out): one
        // detail per flow, and every line valid JSON with goflow2's 50 keys.
        let report = if ctl & 32 != 0 {
            details.clear();
            let r = decoder.decode_detailed(
                exporter,
                datagram,
                received_ns,
                &mut out,
                Some(&mut details),
            );
            assert_eq!(details.len(), out.len() - 1, "one detail per flow");
            for (f, d) in out[1..].iter().zip(&details) {
                line.clear();
                write_line(&mut line, f, d);
                let v: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&line).expect("a flow line is JSON");
                assert_eq!(v.len(), 50, "goflow2's 50 keys");
            }
            r
        } else {
            decoder.decode(exporter, datagram, received_ns, &mut out)
        };
        assert_eq!(out[0], marker, "decode modified flows already in `out`");
        check(exporter, datagram, received_ns, &report, &out[1..]);
        all.extend_from_slice(&out[1..]);
        if ctl & 16 != 0 {
            let per = decoder.templates_per_exporter();
            let known: Vec<IpAddr> = exporters.iter().map(|e| unmap_v4(e.ip())).collect();
            // max_templates per scope, max_exporters scopes.
            let bound = limits.max_exporters * limits.max_templates;
            let mut total = 0;
            for (ip, n) in &per {
                assert!(known.contains(ip), "templates for unknown exporter {ip}");
                total += n;
            }
            assert!(total <= bound, "{total} templates > {bound}");
            let mut ips: Vec<_> = per.iter().map(|(ip, _)| *ip).collect();
            ips.sort();
            ips.dedup();
            assert_eq!(ips.len(), per.len(), "an exporter listed twice");
        }
    }
    all
}

fuzz_target!(|data: &[u8]| {
    let pieces = split(data);
    let config = pieces[0].first().copied().unwrap_or(0);
    let datagrams = &pieces[1..pieces.len().min(MAX_DATAGRAMS + 1)];
    let first = run(config, datagrams);
    // Only with the default limits: with tiny ones, the decoder evicts the scope seen least
    // recently by `Instant`, and two scopes seen within one clock tick would be a false alarm.
    if config & 3 == 2 {
        let second = run(config, datagrams);
        assert_eq!(
            first, second,
            "same datagrams, fresh decoder, different flows"
        );
    }
});

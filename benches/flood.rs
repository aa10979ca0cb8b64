//! Cardinality flood: N flows with random source and destination addresses (half IPv4, half
//! IPv6) through the native decode path (IPFIX datagrams into the same `DatagramPipeline` the UDP
//! collector uses, without the socket) or through the stdin path (goflow2 JSON lines into
//! `input::stdin::run`), at default settings (series caps, TTL, active-flow cap).
//!
//! Run: `cargo bench --bench flood -- native|stdin random|low [FLOWS]`
//! `low` uses 50 source and 50 destination addresses: the low-cardinality rate to compare with.
//! Prints flows/s, the exposed series after the flood, the time of one scrape (publish + render)
//! and the process's peak RSS. Run each case in its own process: peak RSS is per process.

use std::io::{BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use goflow2_exporter::Clock;
use goflow2_exporter::aggregate::{AggregatorConfig, Publisher};
use goflow2_exporter::decode::netflow::{DecoderLimits, NetflowDecoder};
use goflow2_exporter::input::datagram::{DatagramPipeline, PipelineConfig};
use goflow2_exporter::input::stdin;
use goflow2_exporter::telemetry::Registry;

/// Deterministic addresses: random (LCG) or from a pool of 50.
struct Addrs {
    state: u64,
    low: bool,
}

impl Addrs {
    fn next(&mut self) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.state >> 11
    }

    fn v4(&mut self) -> Ipv4Addr {
        let r = self.next();
        let r = if self.low { r % 50 } else { r };
        Ipv4Addr::from((0x0a00_0000 | (r as u32 & 0x00ff_ffff)) ^ ((r >> 24) as u32 & 0x1f00_0000))
    }

    fn v6(&mut self) -> Ipv6Addr {
        let r = self.next();
        let r = if self.low { r % 50 } else { r };
        Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(r))
    }
}

const RECORDS_PER_DATAGRAM: usize = 30;

/// An IPFIX template message: 256 = IPv4 (8, 12, 4, 7, 11, 1, 2), 257 = IPv6 (27, 28, 4, 7, 11,
/// 1, 2).
fn templates() -> Vec<u8> {
    let mut set = Vec::new();
    for (id, src, dst, len) in [(256u16, 8u16, 12u16, 4u16), (257, 27, 28, 16)] {
        set.extend_from_slice(&id.to_be_bytes());
        set.extend_from_slice(&7u16.to_be_bytes());
        for (ie, l) in [
            (src, len),
            (dst, len),
            (4, 1),
            (7, 2),
            (11, 2),
            (1, 4),
            (2, 4),
        ] {
            set.extend_from_slice(&ie.to_be_bytes());
            set.extend_from_slice(&l.to_be_bytes());
        }
    }
    message(2, &set)
}

fn message(set_id: u16, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0x00, 0x0a];
    m.extend_from_slice(&((16 + 4 + body.len()) as u16).to_be_bytes());
    m.extend_from_slice(&[0; 12]);
    m.extend_from_slice(&set_id.to_be_bytes());
    m.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// One data datagram of 30 records, alternating IPv4 and IPv6 datagrams.
fn data(addrs: &mut Addrs, v6: bool, body: &mut Vec<u8>) -> Vec<u8> {
    body.clear();
    for i in 0..RECORDS_PER_DATAGRAM {
        if v6 {
            body.extend_from_slice(&addrs.v6().octets());
            body.extend_from_slice(&addrs.v6().octets());
        } else {
            body.extend_from_slice(&addrs.v4().octets());
            body.extend_from_slice(&addrs.v4().octets());
        }
        body.push(if i % 3 == 0 { 17 } else { 6 });
        body.extend_from_slice(&(1024 + i as u16).to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        body.extend_from_slice(&1500u32.to_be_bytes());
        body.extend_from_slice(&3u32.to_be_bytes());
    }
    message(if v6 { 257 } else { 256 }, body)
}

/// goflow2 v2.2.6-shaped JSON lines, generated as they are read.
struct JsonLines {
    addrs: Addrs,
    left: u64,
    line: Vec<u8>,
    pos: usize,
}

impl Read for JsonLines {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.line.len() {
            if self.left == 0 {
                return Ok(0);
            }
            self.left -= 1;
            let v6 = self.left.is_multiple_of(2);
            let (src, dst) = if v6 {
                (self.addrs.v6().to_string(), self.addrs.v6().to_string())
            } else {
                (self.addrs.v4().to_string(), self.addrs.v4().to_string())
            };
            self.line.clear();
            use std::io::Write;
            write!(
                self.line,
                r#"{{"type":"IPFIX","time_received_ns":1795683951315942931,"sequence_num":1,"sampling_rate":0,"sampler_address":"192.0.2.1","time_flow_start_ns":1764147599561000000,"time_flow_end_ns":1764147599651000000,"bytes":1500,"packets":3,"src_addr":"{src}","dst_addr":"{dst}","etype":"{}","proto":"TCP","src_port":1024,"dst_port":443,"in_if":0,"out_if":0,"src_mac":"00:00:00:00:00:00","dst_mac":"00:00:00:00:00:00","src_vlan":0,"dst_vlan":0,"vlan_id":0,"ip_tos":0,"forwarding_status":0,"ip_ttl":0,"ip_flags":0,"tcp_flags":30,"icmp_type":0,"icmp_code":0,"ipv6_flow_label":0,"fragment_id":0,"fragment_offset":0,"src_as":0,"dst_as":0,"next_hop":"","next_hop_as":0,"src_net":"0.0.0.0/0","dst_net":"0.0.0.0/0","bgp_next_hop":"","bgp_communities":[],"as_path":[],"mpls_ttl":[],"mpls_label":[],"mpls_ip":[],"observation_domain_id":0,"observation_point_id":0,"layer_stack":[],"layer_size":[],"ipv6_routing_header_addresses":[],"ipv6_routing_header_seg_left":0}}"#,
                if v6 { "IPv6" } else { "IPv4" }
            )?;
            self.line.push(b'\n');
            self.pos = 0;
        }
        let n = out.len().min(self.line.len() - self.pos);
        out[..n].copy_from_slice(&self.line[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let path = args.first().map_or("native", String::as_str).to_string();
    let low = args.get(1).is_some_and(|a| a == "low");
    let flows: u64 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);

    let config = AggregatorConfig::default();
    let registry = Arc::new(Registry::new(Some(std::time::Duration::from_secs(
        config.series_ttl_secs,
    ))));
    let publisher = Arc::new(Publisher::new(registry.clone(), config, Clock::default()));
    let addrs = Addrs { state: 42, low };

    let start = Instant::now();
    let decoded = match path.as_str() {
        "native" => flood_native(&publisher, addrs, flows),
        "stdin" => flood_stdin(&publisher, addrs, flows),
        other => panic!("unknown path {other:?}: native or stdin"),
    };
    let secs = start.elapsed().as_secs_f64();
    let case = if low {
        "low-cardinality"
    } else {
        "random-addresses"
    };
    report(
        &format!("{path} {case}"),
        decoded,
        secs,
        &publisher,
        &registry,
    );
}

/// IPFIX datagrams through a `DatagramPipeline` until `flows` are decoded; returns how many were.
fn flood_native(publisher: &Publisher, mut addrs: Addrs, flows: u64) -> u64 {
    let mut pipeline = DatagramPipeline::new(
        Arc::new(|| Box::new(NetflowDecoder::new(DecoderLimits::default()))),
        PipelineConfig {
            allowed_exporters: Vec::new(),
            exporter_idle: std::time::Duration::from_secs(3600),
        },
        publisher.accumulator(),
    );
    let exporter: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    pipeline.handle(exporter, &templates(), 0);
    let mut body = Vec::with_capacity(2048);
    let mut decoded = 0u64;
    let mut i = 0u64;
    let mut last_publish = Instant::now();
    while decoded < flows {
        let d = data(&mut addrs, i % 2 == 1, &mut body);
        decoded += pipeline.handle(exporter, &d, 0).flows as u64;
        i += 1;
        if i.is_multiple_of(32) {
            // One thread does it all, so the figure is per core: what the socket thread
            // does per receive batch, then the publisher's merge, inline.
            let now = Instant::now();
            if pipeline.accumulator().due(now) {
                pipeline.accumulator().try_ship(now);
                publisher.drain();
            }
            if last_publish.elapsed().as_secs() >= 1 {
                publisher.publish();
                last_publish = Instant::now();
            }
        }
    }
    pipeline.accumulator().ship();
    decoded
}

/// `flows` JSON lines through `input::stdin::run`; returns the flows it counted.
fn flood_stdin(publisher: &Arc<Publisher>, addrs: Addrs, flows: u64) -> u64 {
    let reader = BufReader::with_capacity(
        256 * 1024,
        JsonLines {
            addrs,
            left: flows,
            line: Vec::new(),
            pos: 0,
        },
    );
    // The publisher thread merges as the stdin thread ships, as in the exporter.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let thread = {
        let (publisher, shutdown) = (publisher.clone(), shutdown.clone());
        std::thread::spawn(move || publisher.run(&shutdown, || publisher.publish()))
    };
    let mut accumulator = publisher.accumulator();
    let summary = stdin::run(reader, 1 << 20, &mut accumulator).unwrap();
    shutdown.cancel();
    thread.join().unwrap();
    assert_eq!(summary.errors, 0);
    summary.flows
}

/// Times one scrape (publish + render) and prints the case's figures.
fn report(case: &str, decoded: u64, secs: f64, publisher: &Publisher, registry: &Registry) {
    let scrape = Instant::now();
    publisher.publish();
    let body = registry.render();
    let scrape_secs = scrape.elapsed().as_secs_f64();
    let series = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    println!(
        "{case} flows={decoded} time={secs:.2}s rate={:.0} flows/s series={series} body={:.1}MiB scrape={:.3}s peak_rss={:.0}MiB",
        decoded as f64 / secs,
        body.len() as f64 / 1048576.0,
        scrape_secs,
        peak_rss_mib()
    );
}

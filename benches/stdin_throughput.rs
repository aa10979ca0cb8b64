//! Throughput of the stdin path on one core: goflow2 v2.2.6-shaped JSON lines (all 50 keys)
//! from memory through line splitting, decoding, sampling correction and aggregation (the same
//! `input::stdin::run` the binary uses), with a scrape-equivalent publish at the end.
//!
//! Run: `cargo bench --bench stdin_throughput -- [LINES] [DISTINCT_HOSTS] [--dump FILE]`
//! Prints lines/s and MB/s, best of 5 runs. One thread does all the work, so lines/s is per core.
//! `--dump FILE` writes the generated input instead, for a peer to read the same lines.

use std::io::BufReader;
use std::sync::Arc;
use std::time::Instant;

use goflow2_exporter::Clock;
use goflow2_exporter::aggregate::{AggregatorConfig, Publisher};
use goflow2_exporter::input::stdin;
use goflow2_exporter::telemetry::Registry;
use tokio_util::sync::CancellationToken;

/// One line as goflow2 v2.2.6 prints it for a NetFlow v9 flow (keys in goflow2's order).
fn line(i: u64, hosts: u64) -> String {
    let h = i % hosts;
    let src = format!("10.{}.{}.{}", (h >> 16) & 255, (h >> 8) & 255, h & 255);
    let dst = format!("203.0.113.{}", i % 200);
    let proto = ["TCP", "UDP", "ICMP", "TCP"][(i % 4) as usize];
    format!(
        r#"{{"type":"NETFLOW_V9","time_received_ns":1795683951315942931,"sequence_num":{seq},"sampling_rate":{rate},"sampler_address":"192.0.2.{r}","time_flow_start_ns":1764147599561000000,"time_flow_end_ns":1764147599651000000,"bytes":{bytes},"packets":{pk},"src_addr":"{src}","dst_addr":"{dst}","etype":"IPv4","proto":"{proto}","src_port":{sp},"dst_port":443,"in_if":2,"out_if":1,"src_mac":"00:00:00:00:00:00","dst_mac":"00:00:00:00:00:00","src_vlan":0,"dst_vlan":0,"vlan_id":0,"ip_tos":0,"forwarding_status":0,"ip_ttl":0,"ip_flags":0,"tcp_flags":30,"icmp_type":0,"icmp_code":0,"ipv6_flow_label":0,"fragment_id":0,"fragment_offset":0,"src_as":0,"dst_as":0,"next_hop":"","next_hop_as":0,"src_net":"0.0.0.0/0","dst_net":"0.0.0.0/0","bgp_next_hop":"","bgp_communities":[],"as_path":[],"mpls_ttl":[],"mpls_label":[],"mpls_ip":[],"observation_domain_id":0,"observation_point_id":0,"layer_stack":[],"layer_size":[],"ipv6_routing_header_addresses":[],"ipv6_routing_header_seg_left":0}}"#,
        seq = i / 30,
        rate = i % 3,
        r = i % 4,
        bytes = 40 + i % 1460,
        pk = 1 + i % 10,
        sp = 1024 + i % 60000,
    )
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let lines = args.first().copied().unwrap_or(1_000_000);
    let hosts = args.get(1).copied().unwrap_or(1_000);
    let mut input = String::new();
    for i in 0..lines {
        input.push_str(&line(i, hosts));
        input.push('\n');
    }
    let input = input.into_bytes();
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--dump") {
        let path = argv.get(i + 1).expect("--dump FILE");
        std::fs::write(path, &input).expect("write the input");
        println!("wrote {} bytes to {path}", input.len());
        return;
    }
    println!(
        "input: {lines} lines, {hosts} distinct source hosts, {:.1} MB ({} bytes/line)",
        input.len() as f64 / 1e6,
        input.len() as u64 / lines
    );
    let mut best = f64::MAX;
    for run in 1..=5 {
        let secs = one_run(&input, lines);
        println!(
            "run {run}: {:.3} s, {:.0} lines/s, {:.0} MB/s",
            secs,
            lines as f64 / secs,
            input.len() as f64 / secs / 1e6
        );
        best = best.min(secs);
    }
    println!(
        "best: {:.0} lines/s ({:.0} MB/s)",
        lines as f64 / best,
        input.len() as f64 / best / 1e6
    );
}

/// One run over `input` (which holds `lines` lines) with a fresh publisher; returns seconds.
fn one_run(input: &[u8], lines: u64) -> f64 {
    let registry = Arc::new(Registry::new(None));
    let publisher = Arc::new(Publisher::new(
        registry.clone(),
        AggregatorConfig::default(),
        Clock::default(),
    ));
    // The publisher thread merges what the stdin thread ships, as in the exporter.
    let shutdown = CancellationToken::new();
    let thread = {
        let (publisher, shutdown) = (publisher.clone(), shutdown.clone());
        std::thread::spawn(move || publisher.run(&shutdown, || publisher.publish()))
    };
    let mut accumulator = publisher.accumulator();
    let start = Instant::now();
    let summary = stdin::run(
        BufReader::with_capacity(256 * 1024, input),
        1 << 20,
        &mut accumulator,
    )
    .unwrap();
    shutdown.cancel();
    thread.join().unwrap();
    publisher.publish();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(summary.flows, lines);
    assert_eq!(summary.errors, 0);
    secs
}

//! Spoofed exporters flooding templates: memory stays bounded and real traffic still decodes.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::common::{Exporter, family};

/// An IPFIX message from domain 0 with `n` templates (ids 256..) of 16 four-byte fields each.
fn template_flood(n: u16) -> Vec<u8> {
    let mut set = Vec::new();
    for t in 0..n {
        set.extend_from_slice(&(256 + t).to_be_bytes()); // template id
        set.extend_from_slice(&16u16.to_be_bytes()); // field count
        for ie in 0..16u16 {
            set.extend_from_slice(&(100 + ie).to_be_bytes()); // IE
            set.extend_from_slice(&4u16.to_be_bytes()); // length
        }
    }
    let mut msg = vec![0x00, 0x0a]; // IPFIX
    msg.extend_from_slice(&((16 + 4 + set.len()) as u16).to_be_bytes()); // length
    msg.extend_from_slice(&1_700_000_000u32.to_be_bytes()); // export time
    msg.extend_from_slice(&1u32.to_be_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_be_bytes()); // domain
    msg.extend_from_slice(&2u16.to_be_bytes()); // template set
    msg.extend_from_slice(&((4 + set.len()) as u16).to_be_bytes());
    msg.extend_from_slice(&set);
    msg
}

/// A v5 datagram with one flow of `bytes` bytes from 10.0.0.1 to 10.0.0.2 (TCP).
fn v5_flow(bytes: u32) -> Vec<u8> {
    let mut d = vec![0x00, 0x05, 0x00, 0x01]; // version 5, count 1
    d.extend_from_slice(&[0; 20]); // uptime, secs, nsecs, sequence, engine, sampling 0
    d.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0]); // src, dst, next hop
    d.extend_from_slice(&[0, 1, 0, 2]); // input, output
    d.extend_from_slice(&1u32.to_be_bytes()); // packets
    d.extend_from_slice(&bytes.to_be_bytes()); // bytes
    d.extend_from_slice(&[0; 8]); // first, last
    d.extend_from_slice(&[0x04, 0x00, 0x01, 0xbb, 0, 0, 6, 0]); // ports, pad, flags, proto 6, tos
    d.extend_from_slice(&[0; 8]); // as, masks, pad
    d
}

#[test]
fn ten_thousand_spoofed_exporters_with_64_templates_each() {
    let exporter = Exporter::start(&[
        "--stdin",
        "off",
        "--listen",
        "netflow://127.0.0.1:0",
        "--rcvbuf",
        "8388608",
    ]);
    let target: SocketAddr = exporter.udp_addr();
    let flood = template_flood(64);
    let before = exporter.peak_rss_kib();
    let spoofed = 10_000u32;
    let received = |m: &crate::common::MetricMap| {
        family(m, "goflow_exporter_datagrams_total")
            .values()
            .sum::<f64>()
    };
    for i in 0..spoofed {
        // 127.1.0.0/16 on loopback: every address is a distinct exporter.
        let src = Ipv4Addr::new(127, 1, (i >> 8) as u8, i as u8);
        let sock = UdpSocket::bind((src, 0)).expect("bind a loopback source");
        sock.send_to(&flood, target).unwrap();
        if (i + 1).is_multiple_of(500) {
            // Paced by the exporter's progress: this test is about memory, not overload.
            exporter.scrape_until(Duration::from_secs(60), |m| received(m) >= f64::from(i + 1));
        }
    }
    let m = exporter.scrape_settled(Duration::from_secs(60), |m| {
        received(m) >= f64::from(spoofed)
    });
    assert_eq!(
        m["goflow_udp_kernel_drops_total{listener=\"netflow://127.0.0.1:0\"}"],
        0.0
    );
    // Per-exporter series are capped (1000 by default), the rest counted as "other".
    let series = family(&m, "goflow_exporter_datagrams_total");
    assert_eq!(series.len(), 1001, "1000 exporters + other");
    assert_eq!(series.values().sum::<f64>(), f64::from(spoofed));

    // Real traffic still decodes.
    let real = UdpSocket::bind("127.0.0.1:0").unwrap();
    real.send_to(&v5_flow(1234), target).unwrap();
    exporter.scrape_until(Duration::from_secs(10), |m| {
        m.get(r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.1"}"#) == Some(&1234.0)
    });

    let peak = exporter.peak_rss_kib();
    eprintln!("spoofed-exporter flood: peak RSS {before} KiB before, {peak} KiB after");
    // Documented bound (README, "Memory bounds"): 128 MiB whatever the sources.
    assert!(peak < 128 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_65000_byte_datagram_is_received_whole() {
    let exporter = Exporter::start(&["--stdin", "off", "--listen", "netflow://127.0.0.1:0"]);
    // IPFIX: template 256 = src v4, dst v4, bytes (4); then one data set of 5,415 12-byte records.
    let records = 5_415u32;
    let mut data = Vec::new();
    for i in 0..records {
        data.extend_from_slice(&[10, 1, (i >> 8) as u8, i as u8]); // src
        data.extend_from_slice(&[10, 2, 0, 1]); // dst
        data.extend_from_slice(&10u32.to_be_bytes()); // bytes
    }
    let template = [
        0x00, 0x02, 0x00, 0x14, // template set, length 20
        0x01, 0x00, 0x00, 0x03, // template 256, 3 fields
        0x00, 0x08, 0x00, 0x04, // IE 8 sourceIPv4Address
        0x00, 0x0c, 0x00, 0x04, // IE 12 destinationIPv4Address
        0x00, 0x01, 0x00, 0x04, // IE 1 octetDeltaCount
    ];
    let len = 16 + template.len() + 4 + data.len();
    assert!(len > 65_000 && len <= 65_507, "{len}");
    let mut msg = vec![0x00, 0x0a]; // IPFIX
    msg.extend_from_slice(&(len as u16).to_be_bytes());
    msg.extend_from_slice(&[0; 12]); // export time, sequence, domain
    msg.extend_from_slice(&template);
    msg.extend_from_slice(&0x0100u16.to_be_bytes()); // data set 256
    msg.extend_from_slice(&((4 + data.len()) as u16).to_be_bytes());
    msg.extend_from_slice(&data);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&msg, exporter.udp_addr()).unwrap();
    let m = exporter.scrape_settled(Duration::from_secs(10), |m| {
        m.get(r#"goflow_exporter_bytes_total{sampler_address="127.0.0.1"}"#) == Some(&(len as f64))
    });
    assert_eq!(
        m[r#"goflow_flows_total{flow_type="IPFIX",sampler_address="127.0.0.1"}"#],
        5_415.0
    );
    assert_eq!(
        m[r#"goflow_bytes_by_dst_addr_total{dst_addr="10.2.0.1"}"#],
        54_150.0
    );
}

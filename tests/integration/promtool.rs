//! `promtool check metrics` on a real scrape, plain and gzip-compressed: the exposition passes
//! Prometheus's own linter.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Exporter, MetricMap, available, has_tool, parse_exposition, repo_path};

fn has_promtool() -> bool {
    available(has_tool("promtool"), "promtool (Debian package prometheus)")
}

/// Runs `promtool check metrics` on `body`: its success and everything it printed.
fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

#[test]
fn promtool_check_metrics_reports_nothing() {
    if !has_promtool() {
        return;
    }
    let data = std::fs::read(repo_path("testdata/golden.jsonl")).unwrap();
    // The opt-in families too (issue 12): directions, named interfaces and ASNs.
    let mut exporter = Exporter::start(&[
        "--stdin",
        "on",
        "--max-line-bytes",
        "4096",
        "--local-net",
        "192.168.88.0/24",
        "--interface-name",
        "1=ether1-wan",
        "--asn-db",
        "testdata/asn-test.mmdb",
    ]);
    exporter.feed_and_close(&data);
    exporter.scrape_until(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total") == Some(&16.0)
    });
    let body = exporter.scrape_text();
    for family in [
        "goflow_bytes_by_src_addr_total",
        "goflow_bytes_by_direction_total",
        "goflow_bytes_by_interface_total",
        "goflow_bytes_by_src_asn_total",
    ] {
        assert!(body.contains(family), "a full scrape: {family}");
    }
    let (ok, report) = promtool_check(&body);
    assert!(ok, "promtool failed:\n{report}");
    assert_eq!(report.trim(), "", "promtool reported problems");
}

/// A scrape that asks for gzip gets gzip (Prometheus always asks); it decompresses to the same
/// exposition, which promtool accepts. Without the header the body is plain text.
#[test]
fn gzip_scrapes_are_compressed_and_lint_clean() {
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    let data = std::fs::read(repo_path("testdata/sample.jsonl")).unwrap();
    let lines = data.iter().filter(|b| **b == b'\n').count() as f64;
    exporter.feed_and_close(&data);
    let plain = exporter.scrape_settled(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total") == Some(&lines)
    });
    let (head, body) = get_raw(exporter.addr, "Accept-Encoding: gzip\r\n");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        body.len() * 4 < text.len(),
        "{} compressed bytes for {} bytes of text",
        body.len(),
        text.len()
    );
    // The same series and values (but for the receive-gap gauge, which is per publish period).
    let stable = |m: MetricMap| -> MetricMap {
        m.into_iter()
            .filter(|(k, _)| !k.starts_with("goflow_udp_receive_gap"))
            .collect()
    };
    assert_eq!(stable(parse_exposition(&text)), stable(plain));
    let (head, plain_body) = get_raw(exporter.addr, "");
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert!(
        String::from_utf8(plain_body)
            .unwrap()
            .contains("goflow_flows_total")
    );

    if !has_promtool() {
        return;
    }
    let (ok, report) = promtool_check(&text);
    assert!(ok, "promtool failed:\n{report}");
    assert_eq!(report.trim(), "", "promtool reported problems");
}

/// GET /metrics with extra header lines: (response head, raw body bytes).
fn get_raw(addr: SocketAddr, headers: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    (head, raw[split + 4..].to_vec())
}

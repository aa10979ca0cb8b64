//! `--asn-db` (issue 12): flows and bytes by source and destination AS from a test MMDB
//! (`testdata/asn-test*.mmdb`, written by `scripts/make-asn-test-db.py`), AS numbers the flow
//! carries winning, `goflow_asn_info` names, and SIGHUP reloads (good and corrupt files).

use std::io::Write;
use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use crate::common::{Exporter, MetricMap, family, repo_path, run_to_exit};

fn line(src: &str, dst: &str, bytes: u64, rate: u64, src_as: u32, dst_as: u32) -> String {
    format!(
        r#"{{"type":"NETFLOW_V9","sampler_address":"192.0.2.1","src_addr":"{src}","dst_addr":"{dst}","bytes":{bytes},"packets":1,"sampling_rate":{rate},"proto":"TCP","src_as":{src_as},"dst_as":{dst_as}}}"#
    )
}

fn asn_families(m: &MetricMap) -> MetricMap {
    m.iter()
        .filter(|(k, _)| k.contains("_asn_total{") || k.starts_with("goflow_asn_info{"))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// A v5 datagram of one flow from 192.0.2.10 to `dst` (`bytes`), no AS numbers.
fn v5(dst: [u8; 4], bytes: u32) -> Vec<u8> {
    let mut d = vec![0x00, 0x05, 0x00, 0x01];
    d.extend_from_slice(&10_000u32.to_be_bytes());
    d.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    d.extend_from_slice(&[0; 12]);
    d.extend_from_slice(&[192, 0, 2, 10]);
    d.extend_from_slice(&dst);
    d.extend_from_slice(&[0; 8]); // next hop, interfaces
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&bytes.to_be_bytes());
    d.extend_from_slice(&9_000u32.to_be_bytes());
    d.extend_from_slice(&10_000u32.to_be_bytes());
    d.extend_from_slice(&[0x04, 0x00, 0x01, 0xbb, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    d
}

/// The five flow lines of the test, AS numbers from the database but for one.
fn flow_lines() -> [String; 5] {
    [
        line("192.0.2.10", "198.51.100.7", 1000, 1, 0, 0),
        line("203.0.113.9", "192.0.2.10", 2000, 1, 0, 0),
        line("2001:db8:1::5", "2001:db8:2::1", 300, 1, 0, 0),
        // Carried AS numbers win over the database (198.51.100.8 is AS64500 there).
        line("192.0.2.11", "198.51.100.8", 50, 1, 65001, 65002),
        // Scaled by the sampling rate like every bytes family.
        line("198.51.100.9", "203.0.113.1", 7, 10, 0, 0),
    ]
}

/// The AS families [`flow_lines`] make with `testdata/asn-test.mmdb`.
fn expected_asn_families() -> MetricMap {
    [
        (r#"goflow_flows_by_src_asn_total{src_asn="0"}"#, 1.0),
        (r#"goflow_flows_by_src_asn_total{src_asn="64500"}"#, 1.0),
        (r#"goflow_flows_by_src_asn_total{src_asn="64501"}"#, 1.0),
        (r#"goflow_flows_by_src_asn_total{src_asn="64502"}"#, 1.0),
        (r#"goflow_flows_by_src_asn_total{src_asn="65001"}"#, 1.0),
        (r#"goflow_bytes_by_src_asn_total{src_asn="0"}"#, 1000.0),
        (r#"goflow_bytes_by_src_asn_total{src_asn="64500"}"#, 70.0),
        (r#"goflow_bytes_by_src_asn_total{src_asn="64501"}"#, 2000.0),
        (r#"goflow_bytes_by_src_asn_total{src_asn="64502"}"#, 300.0),
        (r#"goflow_bytes_by_src_asn_total{src_asn="65001"}"#, 50.0),
        (r#"goflow_flows_by_dst_asn_total{dst_asn="0"}"#, 2.0),
        (r#"goflow_flows_by_dst_asn_total{dst_asn="64500"}"#, 1.0),
        (r#"goflow_flows_by_dst_asn_total{dst_asn="64501"}"#, 1.0),
        (r#"goflow_flows_by_dst_asn_total{dst_asn="65002"}"#, 1.0),
        (r#"goflow_bytes_by_dst_asn_total{dst_asn="0"}"#, 2300.0),
        (r#"goflow_bytes_by_dst_asn_total{dst_asn="64500"}"#, 1000.0),
        (r#"goflow_bytes_by_dst_asn_total{dst_asn="64501"}"#, 70.0),
        (r#"goflow_bytes_by_dst_asn_total{dst_asn="65002"}"#, 50.0),
        (
            r#"goflow_asn_info{as_name="Example Transit",asn="64500"}"#,
            1.0,
        ),
        (
            r#"goflow_asn_info{as_name="Example Content",asn="64501"}"#,
            1.0,
        ),
        (r#"goflow_asn_info{as_name="Example Six",asn="64502"}"#, 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// SIGHUP with a changed file (`asn-test-v2.mmdb`: 198.51.100.0/24 is now AS64510): a flow to
/// 198.51.100.7 (400 bytes) counts for AS64510, which gets its name.
fn a_reload_renumbers(exporter: &Exporter, db: &Path, udp: &UdpSocket) {
    std::fs::copy(repo_path("testdata/asn-test-v2.mmdb"), db).unwrap();
    exporter.signal("HUP");
    exporter.scrape_until(Duration::from_secs(10), |_| {
        exporter.logs().contains("reloaded the --asn-db file")
    });
    udp.send_to(&v5([198, 51, 100, 7], 400), exporter.udp_addr())
        .unwrap();
    let m = exporter.scrape_settled(Duration::from_secs(10), |m| {
        m.get(r#"goflow_bytes_by_dst_asn_total{dst_asn="64510"}"#) == Some(&400.0)
    });
    assert_eq!(
        m.get(r#"goflow_asn_info{as_name="Renumbered Transit",asn="64510"}"#),
        Some(&1.0)
    );
}

/// A corrupt file at reload: logged, counted, the database in use stays (a flow of 600 bytes to
/// 198.51.100.7 still counts for AS64510).
fn a_corrupt_reload_keeps_the_database(exporter: &Exporter, db: &Path, udp: &UdpSocket) {
    std::fs::write(db, b"not a database").unwrap();
    exporter.signal("HUP");
    exporter.scrape_until(Duration::from_secs(10), |m| {
        m.get("goflow_asn_db_reload_errors_total") == Some(&1.0)
    });
    udp.send_to(&v5([198, 51, 100, 7], 600), exporter.udp_addr())
        .unwrap();
    exporter.scrape_settled(Duration::from_secs(10), |m| {
        m.get(r#"goflow_bytes_by_dst_asn_total{dst_asn="64510"}"#) == Some(&1000.0)
    });
    assert!(
        exporter
            .logs()
            .contains("the database loaded before stays in use")
    );
}

#[test]
fn asn_families_from_the_database_and_the_flow_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("asn.mmdb");
    std::fs::copy(repo_path("testdata/asn-test.mmdb"), &db).unwrap();
    let mut exporter = Exporter::start(&[
        "--stdin",
        "on",
        "--listen",
        "netflow://127.0.0.1:0",
        "--asn-db",
        db.to_str().unwrap(),
    ]);
    let mut stdin = exporter.child.stdin.take().unwrap();
    for l in &flow_lines() {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let m = exporter.scrape_settled(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total") == Some(&5.0)
    });
    assert_eq!(asn_families(&m), expected_asn_families());
    assert_eq!(m.get("goflow_asn_db_reload_errors_total"), Some(&0.0));

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    a_reload_renumbers(&exporter, &db, &udp);
    a_corrupt_reload_keeps_the_database(&exporter, &db, &udp);
    let flows: f64 = family(&exporter.scrape(), "goflow_flows_total")
        .values()
        .sum();
    assert_eq!(flows, 7.0);
}

#[test]
fn a_missing_or_corrupt_database_at_start_is_a_clear_error() {
    let run = run_to_exit(&["--stdin", "on", "--asn-db", "/nonexistent/asn.mmdb"]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("cannot read --asn-db file /nonexistent/asn.mmdb"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.mmdb");
    std::fs::write(&corrupt, b"not a database").unwrap();
    let run = run_to_exit(&["--stdin", "on", "--asn-db", corrupt.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("cannot read --asn-db file"));
}

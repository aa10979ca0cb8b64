//! Series expiry end to end: with a short `--series-ttl`, an idle series disappears from
//! `/metrics` while an active one keeps counting, and an address that comes back starts again.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::Exporter;

fn line(src: &str, bytes: u64) -> String {
    format!(
        r#"{{"type":"IPFIX","sampler_address":"192.0.2.1","sampling_rate":1,"bytes":{bytes},"packets":1,"src_addr":"{src}","dst_addr":"198.51.100.1","proto":"TCP"}}"#
    )
}

#[test]
fn idle_series_disappear_active_ones_keep_counting() {
    let mut exporter = Exporter::start(&["--stdin", "on", "--series-ttl", "1s"]);
    let idle = r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.1"}"#;
    let busy = r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.2"}"#;
    writeln!(exporter.stdin(), "{}", line("10.0.0.1", 100)).unwrap();
    let mut busy_total = 0.0;
    let start = Instant::now();
    let mut seen_idle = false;
    let gone = loop {
        writeln!(exporter.stdin(), "{}", line("10.0.0.2", 10)).unwrap();
        exporter.stdin().flush().unwrap();
        busy_total += 10.0;
        std::thread::sleep(Duration::from_millis(250));
        let m = exporter.scrape();
        seen_idle |= m.get(idle) == Some(&100.0);
        if seen_idle && !m.contains_key(idle) {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "idle series never expired"
        );
    };
    // Expired after the TTL (1 s) plus the recorder's margin (5 s), not before.
    assert!(
        start.elapsed() >= Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    // The busy series was never interrupted and counted every flow.
    assert_eq!(gone.get(busy), Some(&busy_total));
    // The idle address comes back: a new series from 0 (a counter reset for Prometheus).
    writeln!(exporter.stdin(), "{}", line("10.0.0.1", 7)).unwrap();
    exporter.stdin().flush().unwrap();
    exporter.scrape_until(Duration::from_secs(5), |m| m.get(idle) == Some(&7.0));
}

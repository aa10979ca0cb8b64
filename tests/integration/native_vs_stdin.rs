//! goflow2's own decoding as the reference: for each `../shared/goflow2-samples/*.export.pcap`,
//! the native path (`--replay`) gives the same flows, bytes and packets per address, protocol
//! and sampler as piping goflow2's JSON output for the same datagrams (`*.jsonl`) into stdin.

use std::time::Duration;

use crate::common::{Exporter, MetricMap, available, scrape_replayed, shared_dir};

/// The flow families both paths must agree on.
fn flow_families(m: &MetricMap) -> MetricMap {
    m.iter()
        .filter(|(k, _)| {
            [
                "goflow_flows_total",
                "goflow_bytes_total",
                "goflow_packets_total",
                "goflow_flows_by_",
                "goflow_bytes_by_",
                "goflow_packets_by_",
                "goflow_sampling_rate",
            ]
            .iter()
            .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[test]
fn native_decoding_matches_goflow2_json() {
    let Some(shared) = shared_dir() else {
        available(false, "../shared (goflow2 samples)");
        return;
    };
    let dir = shared.join("goflow2-samples");
    for name in ["netflow-v5", "netflow-v9", "ipfix", "ipfix-biflow"] {
        let pcap = dir.join(format!("{name}.export.pcap"));
        let jsonl = std::fs::read(dir.join(format!("{name}.jsonl"))).unwrap();
        let lines = jsonl.iter().filter(|&&b| b == b'\n').count() as f64;

        let mut stdin = Exporter::start(&["--stdin", "on"]);
        stdin.feed_and_close(&jsonl);
        let from_json = stdin.scrape_settled(Duration::from_secs(10), |m| {
            m.get("goflow_stdin_lines_total") == Some(&lines)
        });

        let native = Exporter::start(&["--stdin", "off", "--replay", pcap.to_str().unwrap()]);
        let from_native = scrape_replayed(&native, &pcap);
        let native_errors: f64 = from_native
            .iter()
            .filter(|(k, _)| k.starts_with("goflow_parse_errors_total"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(native_errors, 0.0, "{name}: native decoding errors");
        // Documented exception: none for these samples. (goflow2 keeps only the forward
        // direction of an RFC 5103 biflow; the native decoder ignores reverse elements too.)
        assert_eq!(
            flow_families(&from_native),
            flow_families(&from_json),
            "{name}"
        );
        assert!(
            from_native
                .keys()
                .any(|k| k.starts_with("goflow_bytes_by_src_addr_total")),
            "{name}: the comparison saw flows"
        );
    }
}

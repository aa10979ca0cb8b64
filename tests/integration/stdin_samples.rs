//! Real goflow2 v2.2.6 output (`../shared/goflow2-samples/*.jsonl`) through stdin: every family's
//! totals equal sums computed here from the JSON with `serde_json::Value`, independently of the
//! exporter's decoder (bytes and packets × max(sampling_rate, 1)).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Exporter, MetricMap, available, family, repo_path, shared_dir};

fn label(v: &Value) -> String {
    match v.as_str() {
        Some("") | None => "unknown".to_string(),
        Some(s) => s.to_string(),
    }
}

fn expected(jsonl: &str) -> MetricMap {
    let mut m = MetricMap::new();
    let mut add = |k: String, v: f64| *m.entry(k).or_insert(0.0) += v;
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let f: Value = serde_json::from_str(line).expect("sample line is JSON");
        let rate = f["sampling_rate"].as_u64().unwrap().max(1);
        let bytes = (f["bytes"].as_u64().unwrap() * rate) as f64;
        let packets = (f["packets"].as_u64().unwrap() * rate) as f64;
        let sampler = label(&f["sampler_address"]);
        let ty = f["type"].as_str().unwrap();
        let st = format!(r#"flow_type="{ty}",sampler_address="{sampler}""#);
        add(format!("goflow_flows_total{{{st}}}"), 1.0);
        add(format!("goflow_bytes_total{{{st}}}"), bytes);
        add(format!("goflow_packets_total{{{st}}}"), packets);
        let s = format!(r#"sampler_address="{sampler}""#);
        add(format!("goflow_flows_by_sampler_total{{{s}}}"), 1.0);
        add(format!("goflow_bytes_by_sampler_total{{{s}}}"), bytes);
        add(format!("goflow_packets_by_sampler_total{{{s}}}"), packets);
        let p = format!(r#"protocol="{}""#, label(&f["proto"]));
        add(format!("goflow_flows_by_protocol_total{{{p}}}"), 1.0);
        add(format!("goflow_bytes_by_protocol_total{{{p}}}"), bytes);
        add(format!("goflow_packets_by_protocol_total{{{p}}}"), packets);
        let src = format!(r#"src_addr="{}""#, label(&f["src_addr"]));
        add(format!("goflow_flows_by_src_addr_total{{{src}}}"), 1.0);
        add(format!("goflow_bytes_by_src_addr_total{{{src}}}"), bytes);
        let dst = format!(r#"dst_addr="{}""#, label(&f["dst_addr"]));
        add(format!("goflow_flows_by_dst_addr_total{{{dst}}}"), 1.0);
        add(format!("goflow_bytes_by_dst_addr_total{{{dst}}}"), bytes);
    }
    m
}

/// Pipes `path` into a fresh exporter and compares every flow family with [`expected`].
fn check_file(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text.lines().count() as f64;
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    exporter.feed_and_close(text.as_bytes());
    let got = exporter.scrape_settled(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total") == Some(&lines)
    });
    let flow_families: MetricMap = got
        .iter()
        .filter(|(k, _)| k.contains("_total"))
        .filter(|(k, _)| {
            !k.starts_with("goflow_parse_errors")
                && !k.starts_with("goflow_stdin")
                && !k.starts_with("goflow_active_flows_overflow")
                && !k.starts_with("goflow_flows_unknown_sampling_rate")
                && !k.starts_with("goflow_metric_")
                && !k.starts_with("goflow_replay_")
                && !k.starts_with("goflow_exporter_rejected")
                && !k.starts_with("goflow_publisher_panics")
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(flow_families, expected(&text), "{}", path.display());
    let errors: f64 = family(&got, "goflow_parse_errors_total").values().sum();
    assert_eq!(errors, 0.0, "{}: no line is an error", path.display());
}

#[test]
fn shared_goflow2_samples_sum_exactly() {
    let Some(shared) = shared_dir() else {
        available(false, "../shared (goflow2 samples)");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(shared.join("goflow2-samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the 4 sample files, found {files:?}"
    );
    for path in files {
        check_file(&path);
    }
}

/// The quick start's bundled data decodes without an error and sums exactly.
#[test]
fn bundled_sample_sums_exactly() {
    check_file(&repo_path("testdata/sample.jsonl"));
}

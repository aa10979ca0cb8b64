//! Golden end-to-end test of the stdin path: `testdata/golden.jsonl` piped in, the whole scrape
//! compared with a map written by hand (see `testdata/README.md` for the arithmetic).

use std::time::Duration;

use crate::common::{Exporter, MetricMap, repo_path};

/// The expected scrape, put together family by family: a key put twice is a mistake in the
/// expectation.
#[derive(Default)]
struct Expected(MetricMap);

impl Expected {
    fn put(&mut self, k: &str, v: f64) {
        assert!(
            self.0.insert(k.to_string(), v).is_none(),
            "{k} twice in the expectation"
        );
    }
}

fn expected() -> MetricMap {
    let mut e = Expected::default();
    per_sampler_and_flow_type(&mut e);
    per_protocol(&mut e);
    per_address(&mut e);
    per_sampler_state(&mut e);
    label_sets_per_family(&mut e);
    errors_and_inputs(&mut e);
    e.0
}

fn per_sampler_and_flow_type(e: &mut Expected) {
    // Per sampler and flow type. Rates: 192.0.2.1 x100 (header), 192.0.2.2 x2 (unknown -> the
    // default 2) / x1 / x3, 198.51.100.7 x4 (override wins over 1000 and 0), 2001:db8::ff x1.
    for (labels, flows, bytes, packets) in [
        (
            r#"flow_type="NETFLOW_V5",sampler_address="192.0.2.1""#,
            2.0,
            530_000.0,
            1_300.0,
        ),
        (
            r#"flow_type="NETFLOW_V9",sampler_address="192.0.2.2""#,
            6.0,
            3_705.0,
            16.0,
        ),
        (
            r#"flow_type="IPFIX",sampler_address="198.51.100.7""#,
            2.0,
            4_160.0,
            24.0,
        ),
        (
            r#"flow_type="SFLOW_5",sampler_address="2001:db8::ff""#,
            1.0,
            1_500.0,
            1.0,
        ),
    ] {
        e.put(&format!("goflow_flows_total{{{labels}}}"), flows);
        e.put(&format!("goflow_bytes_total{{{labels}}}"), bytes);
        e.put(&format!("goflow_packets_total{{{labels}}}"), packets);
        let sampler = labels.split(',').nth(1).unwrap();
        e.put(
            &format!("goflow_flows_by_sampler_total{{{sampler}}}"),
            flows,
        );
        e.put(
            &format!("goflow_bytes_by_sampler_total{{{sampler}}}"),
            bytes,
        );
        e.put(
            &format!("goflow_packets_by_sampler_total{{{sampler}}}"),
            packets,
        );
    }
}

fn per_protocol(e: &mut Expected) {
    for (proto, flows, bytes, packets) in [
        ("TCP", 3.0, 504_500.0, 1_005.0),
        ("UDP", 4.0, 30_620.0, 308.0),
        ("ICMP", 1.0, 64.0, 1.0),
        ("IPv6-ICMP", 1.0, 4_000.0, 20.0),
        ("GRE", 1.0, 160.0, 4.0),
        ("unknown", 1.0, 21.0, 3.0),
    ] {
        e.put(
            &format!(r#"goflow_flows_by_protocol_total{{protocol="{proto}"}}"#),
            flows,
        );
        e.put(
            &format!(r#"goflow_bytes_by_protocol_total{{protocol="{proto}"}}"#),
            bytes,
        );
        e.put(
            &format!(r#"goflow_packets_by_protocol_total{{protocol="{proto}"}}"#),
            packets,
        );
    }
}

/// By source and destination address.
fn per_address(e: &mut Expected) {
    for (addr, flows, bytes) in [
        ("192.168.88.10", 1.0, 500_000.0),
        ("192.168.88.11", 1.0, 30_000.0),
        ("10.0.0.1", 3.0, 3_600.0),
        ("10.0.0.2", 1.0, 64.0),
        ("2001:db8::1", 2.0, 5_500.0),
        ("203.0.113.5", 1.0, 160.0),
        ("10.0.0.9", 1.0, 20.0),
        ("unknown", 1.0, 21.0),
    ] {
        e.put(
            &format!(r#"goflow_flows_by_src_addr_total{{src_addr="{addr}"}}"#),
            flows,
        );
        e.put(
            &format!(r#"goflow_bytes_by_src_addr_total{{src_addr="{addr}"}}"#),
            bytes,
        );
    }
    for (addr, flows, bytes) in [
        ("1.1.1.1", 2.0, 530_000.0),
        ("10.0.0.2", 1.0, 3_000.0),
        ("10.0.0.1", 2.0, 84.0),
        ("2001:db8::2", 1.0, 4_000.0),
        ("unknown", 2.0, 181.0),
        ("2001:db8::3", 1.0, 1_500.0),
        ("10.0.0.3", 2.0, 600.0),
    ] {
        e.put(
            &format!(r#"goflow_flows_by_dst_addr_total{{dst_addr="{addr}"}}"#),
            flows,
        );
        e.put(
            &format!(r#"goflow_bytes_by_dst_addr_total{{dst_addr="{addr}"}}"#),
            bytes,
        );
    }
}

/// Active flows, sampling rates, flows without a rate.
fn per_sampler_state(e: &mut Expected) {
    // Distinct 5-tuples per sampler (the two joined objects share one).
    for (sampler, n) in [
        ("192.0.2.1", 2.0),
        ("192.0.2.2", 5.0),
        ("198.51.100.7", 2.0),
        ("2001:db8::ff", 1.0),
    ] {
        e.put(
            &format!(r#"goflow_active_flows{{sampler_address="{sampler}"}}"#),
            n,
        );
    }
    // The rate last applied per sampler (file order: 192.0.2.2's last line has rate 3).
    for (sampler, rate) in [
        ("192.0.2.1", 100.0),
        ("192.0.2.2", 3.0),
        ("198.51.100.7", 4.0),
        ("2001:db8::ff", 1.0),
    ] {
        e.put(
            &format!(r#"goflow_sampling_rate{{sampler_address="{sampler}"}}"#),
            rate,
        );
    }
    // Rate 0 without an override: lines 3, 9a, 9b and 15 (line 6 is overridden).
    e.put("goflow_flows_unknown_sampling_rate_total", 4.0);
    e.put("goflow_active_flows_overflow_total", 0.0);
}

fn label_sets_per_family(e: &mut Expected) {
    // Label sets per family (no cap reached, so nothing folded into "other").
    for (metrics, series) in [
        (
            &[
                "goflow_flows_total",
                "goflow_bytes_total",
                "goflow_packets_total",
            ][..],
            4.0,
        ),
        (
            &[
                "goflow_flows_by_protocol_total",
                "goflow_bytes_by_protocol_total",
                "goflow_packets_by_protocol_total",
            ],
            6.0,
        ),
        (
            &[
                "goflow_flows_by_src_addr_total",
                "goflow_bytes_by_src_addr_total",
            ],
            8.0,
        ),
        (
            &[
                "goflow_flows_by_dst_addr_total",
                "goflow_bytes_by_dst_addr_total",
            ],
            7.0,
        ),
        (
            &[
                "goflow_flows_by_sampler_total",
                "goflow_bytes_by_sampler_total",
                "goflow_packets_by_sampler_total",
            ],
            4.0,
        ),
    ] {
        for metric in metrics {
            e.put(
                &format!(r#"goflow_metric_series{{metric="{metric}"}}"#),
                series,
            );
            e.put(
                &format!(r#"goflow_metric_overflow_total{{metric="{metric}"}}"#),
                0.0,
            );
        }
    }
}

/// Parse errors, and the input and self metrics.
fn errors_and_inputs(e: &mut Expected) {
    for (error_type, n) in [
        ("invalid_json", 2.0),
        ("invalid_field", 1.0),
        ("invalid_utf8", 1.0),
        ("line_too_long", 1.0),
        ("malformed_datagram", 0.0),
        ("unsupported_version", 0.0),
        ("missing_template", 0.0),
        ("decoder_panic", 0.0),
        ("implausible_value", 0.0),
    ] {
        e.put(
            &format!(r#"goflow_parse_errors_total{{error_type="{error_type}"}}"#),
            n,
        );
    }
    e.put("goflow_stdin_lines_total", 16.0);
    e.put("goflow_replay_datagrams_total", 0.0);
    // Input self metrics exist in every mode, so the exposition's shape does not depend on it.
    e.put("goflow_exporter_rejected_total", 0.0);
    e.put("goflow_udp_receive_gap_max_seconds", 0.0);
    e.put("goflow_publisher_panics_total", 0.0);
    let input_len = std::fs::metadata(repo_path("testdata/golden.jsonl"))
        .unwrap()
        .len() as f64;
    e.put("goflow_stdin_bytes_total", input_len);
}

#[test]
fn golden_scrape_equals_hand_computed_map() {
    let data = std::fs::read(repo_path("testdata/golden.jsonl")).unwrap();
    let mut exporter = Exporter::start(&[
        "--stdin",
        "on",
        "--max-line-bytes",
        "4096",
        "--sampling-rate-default",
        "2",
        "--sampling-rate-override",
        "198.51.100.0/24=4",
    ]);
    exporter.feed_and_close(&data);
    let got = exporter.scrape_settled(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total") == Some(&16.0)
    });
    let want = expected();
    if got != want {
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(v))
            .collect();
        panic!(
            "scrape differs\nexpected but not got: {missing:#?}\ngot but not expected: {extra:#?}"
        );
    }
    // The process keeps serving after EOF (no --exit-on-eof).
    assert!(exporter.child.try_wait().unwrap().is_none());
}

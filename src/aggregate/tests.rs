//! Aggregator tests with an injected clock (the `now` seconds passed in): what the registry
//! renders is read back as data.

use std::collections::BTreeMap;

use super::*;
use std::sync::Arc;

use crate::cardinality::AddrPolicy;
use crate::flow::Flow;
use crate::flow::FlowType;
use crate::telemetry::Registry;

fn scrape(registry: &Registry) -> BTreeMap<String, f64> {
    crate::testkit::render_map(registry)
}

fn flow(src: &str, bytes: u64) -> Flow {
    Flow {
        flow_type: FlowType::Ipfix,
        sampler: Some("192.0.2.1".parse().unwrap()),
        src_addr: Some(src.parse().unwrap()),
        dst_addr: Some("198.51.100.1".parse().unwrap()),
        proto: Some(6),
        bytes,
        packets: 1,
        sampling_rate: 1,
        ..Flow::default()
    }
}

fn aggregator(config: AggregatorConfig) -> (Arc<Registry>, Aggregator) {
    let registry = Arc::new(Registry::new(Some(std::time::Duration::from_secs(
        config.series_ttl_secs,
    ))));
    let agg = Aggregator::new(registry.clone(), config);
    (registry, agg)
}

#[test]
fn a_full_family_folds_new_values_into_other_and_totals_stay_exact() {
    let (registry, mut agg) = aggregator(AggregatorConfig {
        max_series_per_metric: 3,
        ..AggregatorConfig::default()
    });
    let flows: Vec<Flow> = (1..=5)
        .map(|i| flow(&format!("10.0.0.{i}"), 10 * i))
        .collect();
    // One delta per flow: which addresses of one delta win the last places is unordered.
    for f in &flows {
        agg.record(std::slice::from_ref(f), 0);
    }
    agg.publish(0);
    let m = scrape(&registry);
    let src = |a: &str| m[&format!(r#"goflow_bytes_by_src_addr_total{{src_addr="{a}"}}"#)];
    assert_eq!(
        (src("10.0.0.1"), src("10.0.0.2"), src("10.0.0.3")),
        (10.0, 20.0, 30.0)
    );
    assert_eq!(src("other"), 40.0 + 50.0);
    assert!(!m.contains_key(r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.4"}"#));
    // The family's total equals the input's total.
    let total: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("goflow_bytes_by_src_addr_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 150.0);
    assert_eq!(
        m[r#"goflow_metric_overflow_total{metric="goflow_flows_by_src_addr_total"}"#],
        2.0
    );
    assert_eq!(
        m[r#"goflow_metric_series{metric="goflow_bytes_by_src_addr_total"}"#], 4.0,
        "3 addresses + other"
    );
    // The destination family has one value: nothing folded.
    assert_eq!(
        m[r#"goflow_metric_overflow_total{metric="goflow_flows_by_dst_addr_total"}"#],
        0.0
    );
}

#[test]
fn idle_label_sets_expire_and_an_increment_right_after_expiry_is_not_lost() {
    let (registry, mut agg) = aggregator(AggregatorConfig {
        series_ttl_secs: 10,
        ..AggregatorConfig::default()
    });
    let series = |r: &Registry| scrape(r)[r#"goflow_metric_series{metric="goflow_flows_by_src_addr_total"}"#];
    agg.record(&[flow("10.0.0.1", 100), flow("10.0.0.2", 7)], 0);
    agg.publish(0);
    assert_eq!(series(&registry), 2.0);
    // 10.0.0.2 keeps being updated; 10.0.0.1 goes quiet.
    agg.record(&[flow("10.0.0.2", 7)], 8);
    agg.publish(9);
    assert_eq!(series(&registry), 2.0, "not idle for 10 s yet");
    agg.publish(10);
    assert_eq!(
        series(&registry),
        1.0,
        "10.0.0.1 dropped by its owner after 10 s"
    );
    // Right after the owner dropped its handles (the recorder keeps the series for the margin
    // of EXPIRY_MARGIN longer), the address comes back: its increment lands on the same series.
    agg.record(&[flow("10.0.0.1", 50)], 11);
    agg.publish(11);
    let m = scrape(&registry);
    assert_eq!(
        m[r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.1"}"#],
        150.0
    );
    assert_eq!(
        m[r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.2"}"#],
        14.0
    );
    assert_eq!(series(&registry), 2.0);
}

#[test]
fn addresses_follow_local_nets_and_remote_prefixes() {
    let (registry, mut agg) = aggregator(AggregatorConfig {
        addresses: AddrPolicy::new(vec!["10.0.0.0/24".parse().unwrap()], 24, 64),
        ..AggregatorConfig::default()
    });
    agg.record(
        &[
            flow("10.0.0.1", 1),
            flow("10.0.0.2", 2),
            flow("203.0.113.7", 4),
            flow("203.0.113.200", 8),
            flow("2001:db8:1:2:3::4", 16),
        ],
        0,
    );
    agg.publish(0);
    let m = scrape(&registry);
    let src = |a: &str| {
        m.get(&format!(
            r#"goflow_bytes_by_src_addr_total{{src_addr="{a}"}}"#
        ))
    };
    assert_eq!(src("10.0.0.1"), Some(&1.0));
    assert_eq!(src("10.0.0.2"), Some(&2.0));
    assert_eq!(src("203.0.113.0/24"), Some(&12.0));
    assert_eq!(src("2001:db8:1:2::/64"), Some(&16.0));
    assert_eq!(src("203.0.113.7"), None);
    // The destination 198.51.100.1 is remote too.
    assert_eq!(
        m.get(r#"goflow_bytes_by_dst_addr_total{dst_addr="198.51.100.0/24"}"#),
        Some(&31.0)
    );
}

#[test]
fn active_flows_count_distinct_keys_within_the_window() {
    let (registry, mut agg) = aggregator(AggregatorConfig {
        active_window_secs: 60,
        active_max_keys: 3,
        ..AggregatorConfig::default()
    });
    let active = |r: &Registry| scrape(r)[r#"goflow_active_flows{sampler_address="192.0.2.1"}"#];
    agg.record(
        &[
            flow("10.0.0.1", 1),
            flow("10.0.0.1", 1),
            flow("10.0.0.2", 1),
        ],
        0,
    );
    agg.publish(0);
    assert_eq!(active(&registry), 2.0);
    // Two more keys: the cap (3) lets one in, the other is counted as overflow.
    agg.record(&[flow("10.0.0.3", 1), flow("10.0.0.4", 1)], 30);
    agg.publish(30);
    assert_eq!(active(&registry), 3.0);
    assert_eq!(scrape(&registry)["goflow_active_flows_overflow_total"], 1.0);
    // At 61 s the first two keys are out of the window.
    agg.publish(61);
    assert_eq!(active(&registry), 1.0);
    agg.publish(100);
    assert_eq!(active(&registry), 0.0);
}

/// A flow lasting `seconds` (times set) or of unknown duration (`None`).
fn timed(bytes: u64, packets: u64, rate: u64, seconds: Option<u64>) -> Flow {
    let start = 1_700_000_000_000_000_000u64;
    Flow {
        bytes,
        packets,
        sampling_rate: rate,
        time_flow_start_ns: seconds.map_or(0, |_| start),
        time_flow_end_ns: seconds.map_or(0, |s| start + s * 1_000_000_000),
        ..flow("10.0.0.1", 0)
    }
}

#[test]
fn records_no_link_can_carry_are_implausible() {
    use crate::aggregate::delta::{MAX_BYTES_PER_SECOND, MAX_PACKETS_PER_SECOND, plausible};
    let ok = |f: Flow| plausible(&f, f.sampling_rate).is_some();
    // 400 Gb/s for the flow's duration (at least one second), else for an hour.
    assert!(ok(timed(MAX_BYTES_PER_SECOND, 1, 1, Some(1))));
    assert!(!ok(timed(MAX_BYTES_PER_SECOND + 1, 1, 1, Some(1))));
    assert!(ok(timed(MAX_BYTES_PER_SECOND * 10, 1, 1, Some(10))));
    assert!(
        ok(timed(MAX_BYTES_PER_SECOND, 1, 1, Some(0))),
        "0 s counts as 1 s"
    );
    assert!(ok(timed(MAX_BYTES_PER_SECOND * 3600, 1, 1, None)));
    assert!(!ok(timed(MAX_BYTES_PER_SECOND * 3600 + 1, 1, 1, None)));
    assert!(
        !ok(timed(MAX_BYTES_PER_SECOND * 3600 + 1, 1, 1, Some(100_000))),
        "an hour at most"
    );
    assert!(!ok(timed(1, MAX_PACKETS_PER_SECOND + 1, 1, Some(1))));
    // Scaled by the rate; a product that overflows is implausible, never wrapped.
    assert!(!ok(timed(u64::MAX / 2, 1, 3, None)));
    assert!(!ok(timed(u32::MAX.into(), 1, 65_535, None)));
    assert!(ok(timed(u32::MAX.into(), 1, 1, None)));
    assert_eq!(
        plausible(&timed(1500, 3, 10, Some(5)), 10),
        Some((15_000, 30))
    );
}

#[test]
fn implausible_flows_are_counted_and_added_nowhere() {
    let (registry, mut agg) = aggregator(AggregatorConfig::default());
    agg.record(
        &[
            timed(u64::MAX, 1, 1, None),
            flow("10.0.0.1", 100),
            timed(1 << 63, 1, 1, Some(1)),
        ],
        0,
    );
    agg.publish(0);
    let m = scrape(&registry);
    assert_eq!(
        m[r#"goflow_parse_errors_total{error_type="implausible_value"}"#],
        2.0
    );
    assert_eq!(
        m[r#"goflow_flows_total{sampler_address="192.0.2.1",flow_type="IPFIX"}"#],
        1.0
    );
    assert_eq!(
        m[r#"goflow_bytes_total{sampler_address="192.0.2.1",flow_type="IPFIX"}"#],
        100.0
    );
}

/// Reads one series of the exposition at integer precision (f64 would round near 2^64).
fn exact(registry: &Registry, series: &str) -> u128 {
    let text = registry.render();
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("{series} in\n{text}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

#[test]
fn counters_saturate_instead_of_wrapping_even_across_expiry() {
    let (registry, mut agg) = aggregator(AggregatorConfig {
        series_ttl_secs: 10,
        ..AggregatorConfig::default()
    });
    let bytes = r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.1"}"#;
    // Plausible records (an hour each at 400 Gb/s) add up past 2^64 after ~100,000 of them.
    let big = timed(super::delta::MAX_BYTES_PER_SECOND * 3600, 1, 1, None);
    let batch = vec![big; 1000];
    let mut last = 0u128;
    for second in 0..120 {
        agg.record(&batch, second);
        agg.publish(second);
        let now = exact(&registry, bytes);
        assert!(now >= last, "went backwards at {second}: {last} -> {now}");
        last = now;
    }
    assert_eq!(last, u128::from(u64::MAX), "saturated");
    // Idle past the TTL: the label set is dropped; it comes back while the registry still holds
    // its series, and the series stays at its ceiling instead of wrapping.
    agg.publish(200);
    agg.record(&batch, 201);
    agg.publish(201);
    assert_eq!(exact(&registry, bytes), u128::from(u64::MAX));
}

/// A flood of samplers while the publisher is behind: one delta tells apart at most
/// DELTA_MAX_SAMPLERS of them and counts the rest as `other`, so its memory is bounded; the
/// totals stay exact.
#[test]
fn a_delta_holds_a_bounded_number_of_samplers_and_exporters() {
    use super::delta::{DELTA_MAX_SAMPLERS, Delta};
    let (registry, mut agg) = aggregator(AggregatorConfig::default());
    let policy = agg.policy();
    let mut delta = Delta::new();
    let n = DELTA_MAX_SAMPLERS + 10;
    for i in 0..n as u32 {
        let sampler = std::net::IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        delta.record(
            &[Flow {
                sampler: Some(sampler),
                ..flow("10.0.0.1", 1)
            }],
            &policy,
        );
        delta.count_datagram(sampler, 100);
    }
    assert_eq!(delta.by_sampler_type.len(), DELTA_MAX_SAMPLERS);
    assert_eq!(delta.exporters.len(), DELTA_MAX_SAMPLERS);
    assert_eq!(delta.sampler_other[FlowType::Ipfix as usize][0], 10);
    assert_eq!(delta.exporters_other, [10, 1000]);
    assert_eq!(delta.active.len(), DELTA_MAX_SAMPLERS);
    assert_eq!(delta.active_dropped, 10);
    agg.merge(&mut delta, 0, 0);
    agg.publish(0);
    let m = scrape(&registry);
    let sum = |prefix: &str| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(sum("goflow_flows_total{"), n as f64);
    assert_eq!(sum("goflow_exporter_datagrams_total{"), n as f64);
    assert_eq!(
        m[r#"goflow_flows_total{sampler_address="other",flow_type="IPFIX"}"#],
        (n - 1000) as f64,
        "1,000 routers of their own, the rest other"
    );
}

/// `--local-net`: each flow lands in exactly one direction of its router; bytes and packets are
/// scaled by the sampling rate. (`--nat-attribution` is the decoder's: the flows arrive here
/// with their destination after NAT.)
#[test]
fn directions() {
    let (registry, mut agg) = aggregator(AggregatorConfig {
        addresses: AddrPolicy::new(vec!["10.0.0.0/8".parse().unwrap()], 32, 128),
        ..AggregatorConfig::default()
    });
    let ip = |s: &str| Some(s.parse().unwrap());
    let f = |src: &str, dst: &str, bytes: u64| Flow {
        dst_addr: ip(dst),
        sampling_rate: 10,
        ..flow(src, bytes)
    };
    let flows = [
        f("10.0.0.5", "203.0.113.9", 100),   // upload
        f("203.0.113.9", "10.0.0.5", 1000),  // download
        f("203.0.113.9", "198.51.100.1", 7), // transit
        f("10.0.0.5", "10.0.0.6", 20),       // internal
    ];
    agg.record(&flows, 0);
    agg.publish(0);
    let m = scrape(&registry);
    let dir = |family: &str, d: &str| {
        m.get(&format!(
            r#"goflow_{family}_by_direction_total{{sampler_address="192.0.2.1",direction="{d}"}}"#
        ))
        .copied()
    };
    assert_eq!(dir("flows", "outbound"), Some(1.0));
    assert_eq!(dir("bytes", "outbound"), Some(1000.0));
    assert_eq!(dir("bytes", "inbound"), Some(10_000.0));
    assert_eq!(dir("packets", "inbound"), Some(10.0));
    assert_eq!(dir("flows", "external"), Some(1.0));
    assert_eq!(dir("bytes", "internal"), Some(200.0));
    let flows_by_dir: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("goflow_flows_by_direction_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(flows_by_dir, 4.0);
}

/// Without `--local-net` there is no direction series at all.
#[test]
fn no_direction_families_without_local_nets() {
    let (registry, mut agg) = aggregator(AggregatorConfig::default());
    agg.record(&[flow("10.0.0.1", 5)], 0);
    agg.publish(0);
    assert!(
        scrape(&registry)
            .keys()
            .all(|k| !k.contains("_by_direction_total{"))
    );
}

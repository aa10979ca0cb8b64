//! Metric names, their HELP text, and the registry every metric lives in.
//!
//! Metric names are the product's public interface: they are constants here and nowhere else,
//! each described once. [`Registry`] wraps the Prometheus recorder that is passed explicitly to
//! whoever registers series (no global recorder), so tests build their own registry and read it
//! back as data. Series are registered once per label set and the returned handles are cached by
//! the caller; nothing here is on the per-flow path.

use metrics::{Counter, Gauge, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use std::sync::Mutex;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;

use crate::sync::lock;

pub const FLOWS: &str = "goflow_flows_total";
pub const BYTES: &str = "goflow_bytes_total";
pub const PACKETS: &str = "goflow_packets_total";
pub const FLOWS_BY_PROTOCOL: &str = "goflow_flows_by_protocol_total";
pub const BYTES_BY_PROTOCOL: &str = "goflow_bytes_by_protocol_total";
pub const PACKETS_BY_PROTOCOL: &str = "goflow_packets_by_protocol_total";
pub const FLOWS_BY_SRC_ADDR: &str = "goflow_flows_by_src_addr_total";
pub const BYTES_BY_SRC_ADDR: &str = "goflow_bytes_by_src_addr_total";
pub const FLOWS_BY_DST_ADDR: &str = "goflow_flows_by_dst_addr_total";
pub const BYTES_BY_DST_ADDR: &str = "goflow_bytes_by_dst_addr_total";
pub const FLOWS_BY_SAMPLER: &str = "goflow_flows_by_sampler_total";
pub const BYTES_BY_SAMPLER: &str = "goflow_bytes_by_sampler_total";
pub const PACKETS_BY_SAMPLER: &str = "goflow_packets_by_sampler_total";
pub const SAMPLING_RATE: &str = "goflow_sampling_rate";
pub const FLOWS_BY_SRC_ASN: &str = "goflow_flows_by_src_asn_total";
pub const BYTES_BY_SRC_ASN: &str = "goflow_bytes_by_src_asn_total";
pub const FLOWS_BY_DST_ASN: &str = "goflow_flows_by_dst_asn_total";
pub const BYTES_BY_DST_ASN: &str = "goflow_bytes_by_dst_asn_total";
pub const ASN_INFO: &str = "goflow_asn_info";
pub const ASN_DB_RELOAD_ERRORS: &str = "goflow_asn_db_reload_errors_total";
pub const FLOWS_BY_INTERFACE: &str = "goflow_flows_by_interface_total";
pub const BYTES_BY_INTERFACE: &str = "goflow_bytes_by_interface_total";
pub const PACKETS_BY_INTERFACE: &str = "goflow_packets_by_interface_total";
pub const FLOWS_BY_DIRECTION: &str = "goflow_flows_by_direction_total";
pub const BYTES_BY_DIRECTION: &str = "goflow_bytes_by_direction_total";
pub const PACKETS_BY_DIRECTION: &str = "goflow_packets_by_direction_total";
pub const UNKNOWN_SAMPLING_RATE: &str = "goflow_flows_unknown_sampling_rate_total";
pub const EXPORTER_DATAGRAMS: &str = "goflow_exporter_datagrams_total";
pub const EXPORTER_BYTES: &str = "goflow_exporter_bytes_total";
pub const EXPORTER_TEMPLATES: &str = "goflow_exporter_templates";
pub const EXPORTER_REJECTED: &str = "goflow_exporter_rejected_total";
pub const UDP_KERNEL_DROPS: &str = "goflow_udp_kernel_drops_total";
pub const REPLAY_DATAGRAMS: &str = "goflow_replay_datagrams_total";
pub const UDP_RECEIVE_GAP_MAX: &str = "goflow_udp_receive_gap_max_seconds";
pub const PUBLISHER_PANICS: &str = "goflow_publisher_panics_total";
pub const METRIC_SERIES: &str = "goflow_metric_series";
pub const METRIC_OVERFLOW: &str = "goflow_metric_overflow_total";
pub const ACTIVE_FLOWS: &str = "goflow_active_flows";
pub const ACTIVE_FLOWS_OVERFLOW: &str = "goflow_active_flows_overflow_total";
pub const PARSE_ERRORS: &str = "goflow_parse_errors_total";
pub const STDIN_LINES: &str = "goflow_stdin_lines_total";
pub const STDIN_BYTES: &str = "goflow_stdin_bytes_total";
pub const FLOWS_OUT_LINES: &str = "goflow_flows_out_lines_total";
pub const FLOWS_OUT_DROPPED: &str = "goflow_flows_out_dropped_total";

/// The counters of each family, in the order of its cells: flows, bytes[, packets].
pub const BY_SAMPLER_TYPE: [&str; 3] = [FLOWS, BYTES, PACKETS];
pub const BY_PROTOCOL: [&str; 3] = [FLOWS_BY_PROTOCOL, BYTES_BY_PROTOCOL, PACKETS_BY_PROTOCOL];
pub const BY_SAMPLER: [&str; 3] = [FLOWS_BY_SAMPLER, BYTES_BY_SAMPLER, PACKETS_BY_SAMPLER];
pub const BY_DIRECTION: [&str; 3] = [FLOWS_BY_DIRECTION, BYTES_BY_DIRECTION, PACKETS_BY_DIRECTION];
pub const BY_INTERFACE: [&str; 3] = [FLOWS_BY_INTERFACE, BYTES_BY_INTERFACE, PACKETS_BY_INTERFACE];

pub const BY_SRC_ADDR: [&str; 2] = [FLOWS_BY_SRC_ADDR, BYTES_BY_SRC_ADDR];
pub const BY_DST_ADDR: [&str; 2] = [FLOWS_BY_DST_ADDR, BYTES_BY_DST_ADDR];
pub const BY_SRC_ASN: [&str; 2] = [FLOWS_BY_SRC_ASN, BYTES_BY_SRC_ASN];
pub const BY_DST_ASN: [&str; 2] = [FLOWS_BY_DST_ASN, BYTES_BY_DST_ASN];

/// Label value for an absent address or sampler.
pub const UNKNOWN: &str = "unknown";

enum Kind {
    Counter,
    Gauge,
}

/// Every metric with its kind, unit and HELP text.
const DESCRIPTIONS: &[(&str, Kind, Option<Unit>, &str)] = &[
    (
        FLOWS_BY_SRC_ASN,
        Kind::Counter,
        None,
        "With --asn-db: flows by source AS number (the one the flow carries, else the database's; 0 unknown or private).",
    ),
    (
        BYTES_BY_SRC_ASN,
        Kind::Counter,
        Some(Unit::Bytes),
        "With --asn-db: bytes by source AS number, multiplied by the sampling rate.",
    ),
    (
        FLOWS_BY_DST_ASN,
        Kind::Counter,
        None,
        "With --asn-db: flows by destination AS number (the one the flow carries, else the database's; 0 unknown or private).",
    ),
    (
        BYTES_BY_DST_ASN,
        Kind::Counter,
        Some(Unit::Bytes),
        "With --asn-db: bytes by destination AS number, multiplied by the sampling rate.",
    ),
    (
        ASN_INFO,
        Kind::Gauge,
        None,
        "With --asn-db: 1 per AS number seen, with its organization name (join on asn).",
    ),
    (
        ASN_DB_RELOAD_ERRORS,
        Kind::Counter,
        None,
        "With --asn-db: reloads (SIGHUP) that failed; the database loaded before stays in use.",
    ),
    (
        FLOWS_BY_INTERFACE,
        Kind::Counter,
        None,
        "Flows by router and interface (name from --interface-name, else the index), direction in (the flow's input interface) or out (its output interface).",
    ),
    (
        BYTES_BY_INTERFACE,
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes by router, interface and direction (in/out), multiplied by the sampling rate.",
    ),
    (
        PACKETS_BY_INTERFACE,
        Kind::Counter,
        None,
        "Packets by router, interface and direction (in/out), multiplied by the sampling rate.",
    ),
    (
        FLOWS_BY_DIRECTION,
        Kind::Counter,
        None,
        "Flows by router and direction across --local-net: outbound (source local), inbound (destination local), internal (both), external (neither).",
    ),
    (
        BYTES_BY_DIRECTION,
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes by router and direction across --local-net, multiplied by the sampling rate.",
    ),
    (
        PACKETS_BY_DIRECTION,
        Kind::Counter,
        None,
        "Packets by router and direction across --local-net, multiplied by the sampling rate.",
    ),
    (
        FLOWS_OUT_LINES,
        Kind::Counter,
        None,
        "Flow lines written by --flows-out (goflow2 JSON, one per flow of the native collector).",
    ),
    (
        FLOWS_OUT_DROPPED,
        Kind::Counter,
        None,
        "Flow lines not written by --flows-out: reason queue_full (the writer fell behind the traffic; reception never waits) or write_error (e.g. a closed pipe).",
    ),
    (
        FLOWS,
        Kind::Counter,
        None,
        "Flows received, by sampler and flow type (never scaled by sampling).",
    ),
    (
        BYTES,
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes by sampler and flow type, multiplied by the sampling rate.",
    ),
    (
        PACKETS,
        Kind::Counter,
        None,
        "Packets by sampler and flow type, multiplied by the sampling rate.",
    ),
    (
        FLOWS_BY_PROTOCOL,
        Kind::Counter,
        None,
        "Flows received, by IP protocol (goflow2's IANA keyword).",
    ),
    (
        BYTES_BY_PROTOCOL,
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes by IP protocol, multiplied by the sampling rate.",
    ),
    (
        PACKETS_BY_PROTOCOL,
        Kind::Counter,
        None,
        "Packets by IP protocol, multiplied by the sampling rate.",
    ),
    (
        FLOWS_BY_SRC_ADDR,
        Kind::Counter,
        None,
        "Flows received, by source address.",
    ),
    (
        BYTES_BY_SRC_ADDR,
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes by source address, multiplied by the sampling rate.",
    ),
    (
        FLOWS_BY_DST_ADDR,
        Kind::Counter,
        None,
        "Flows received, by destination address.",
    ),
    (
        BYTES_BY_DST_ADDR,
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes by destination address, multiplied by the sampling rate.",
    ),
    (
        FLOWS_BY_SAMPLER,
        Kind::Counter,
        None,
        "Flows received, by sampler (exporting router).",
    ),
    (
        BYTES_BY_SAMPLER,
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes by sampler, multiplied by the sampling rate.",
    ),
    (
        PACKETS_BY_SAMPLER,
        Kind::Counter,
        None,
        "Packets by sampler, multiplied by the sampling rate.",
    ),
    (
        SAMPLING_RATE,
        Kind::Gauge,
        None,
        "Sampling rate (1 in N) last applied to a flow of the sampler, after overrides and the default.",
    ),
    (
        UNKNOWN_SAMPLING_RATE,
        Kind::Counter,
        None,
        "Flows whose sampling rate was unknown (0, no override): --sampling-rate-default was applied.",
    ),
    (
        EXPORTER_DATAGRAMS,
        Kind::Counter,
        None,
        "UDP datagrams received per exporter (native collector and --replay).",
    ),
    (
        EXPORTER_BYTES,
        Kind::Counter,
        Some(Unit::Bytes),
        "UDP payload bytes received per exporter (native collector and --replay).",
    ),
    (
        EXPORTER_TEMPLATES,
        Kind::Gauge,
        None,
        "v9/IPFIX templates currently known per exporter (all source ids / domains).",
    ),
    (
        EXPORTER_REJECTED,
        Kind::Counter,
        None,
        "UDP datagrams dropped before decoding because their source is outside --allow-exporter.",
    ),
    (
        UDP_KERNEL_DROPS,
        Kind::Counter,
        None,
        "Datagrams the kernel dropped on a listener's sockets because the receive buffer was full (the sockets' drops in /proc/net/udp).",
    ),
    (
        REPLAY_DATAGRAMS,
        Kind::Counter,
        None,
        "UDP datagrams read from the --replay capture.",
    ),
    (
        UDP_RECEIVE_GAP_MAX,
        Kind::Gauge,
        Some(Unit::Seconds),
        "Longest time a UDP socket thread spent away from its socket (decoding and counting one receive batch) since the previous publish.",
    ),
    (
        PUBLISHER_PANICS,
        Kind::Counter,
        None,
        "Merges or publishes of the publisher that panicked (a bug): logged, the step's data dropped, the publisher went on.",
    ),
    (
        METRIC_SERIES,
        Kind::Gauge,
        None,
        "Label sets a flow metric family holds now (the family's exposed series, 'other' included).",
    ),
    (
        METRIC_OVERFLOW,
        Kind::Counter,
        None,
        "Flows counted under the label value 'other' because the family reached --max-series-per-metric.",
    ),
    (
        ACTIVE_FLOWS,
        Kind::Gauge,
        None,
        "Distinct (src addr, dst addr, src port, dst port, protocol) keys of a sampler seen within the active window.",
    ),
    (
        ACTIVE_FLOWS_OVERFLOW,
        Kind::Counter,
        None,
        "Flows not tracked for goflow_active_flows because the tracked-key cap was reached.",
    ),
    (
        PARSE_ERRORS,
        Kind::Counter,
        None,
        "Inputs that could not be decoded, by bounded error type.",
    ),
    (
        STDIN_LINES,
        Kind::Counter,
        None,
        "Lines read from stdin (blank lines included).",
    ),
    (
        STDIN_BYTES,
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes read from stdin.",
    ),
];

/// Static metadata for registrations: the recorder ignores it, but the API requires one.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The Prometheus registry and its renderer. Cheap to share behind an `Arc`.
///
/// Series expiry: with a series TTL, the recorder removes a series idle for longer than the
/// TTL plus [`EXPIRY_MARGIN`] at render time. A cached handle whose series was removed would be
/// orphaned (its increments lost), so every handle is one of two kinds:
/// - *expiring* ([`Registry::expiring_counter`]): the caller (the aggregator's families) drops
///   the handle after the TTL, before the recorder removes the series, and registers again if
///   the label set comes back;
/// - *persistent* ([`Registry::counter`], [`Registry::gauge`]): kept alive by
///   [`Registry::keepalive`] (a zero increment every publish), so it is never removed. Used for
///   bounded series: error types, self metrics, per-exporter series (capped).
pub struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    persistent_counters: Mutex<Vec<Counter>>,
    persistent_gauges: Mutex<Vec<Gauge>>,
}

/// How much longer than the series TTL the recorder waits before it removes a series: covers
/// the one-second publish period in which the owner drops its handle.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

impl Default for Registry {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Registry {
    /// A fresh registry with every metric described; `series_ttl` enables idle expiry.
    pub fn new(series_ttl: Option<Duration>) -> Self {
        let mut builder = PrometheusBuilder::new();
        if let Some(ttl) = series_ttl {
            builder = builder.idle_timeout(
                MetricKindMask::COUNTER | MetricKindMask::GAUGE,
                Some(ttl + EXPIRY_MARGIN),
            );
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        for (name, kind, unit, help) in DESCRIPTIONS {
            let key = KeyName::from_const_str(name);
            let help = SharedString::const_str(help);
            match kind {
                Kind::Counter => recorder.describe_counter(key, *unit, help),
                Kind::Gauge => recorder.describe_gauge(key, *unit, help),
            }
        }
        Registry {
            recorder,
            handle,
            persistent_counters: Mutex::new(Vec::new()),
            persistent_gauges: Mutex::new(Vec::new()),
        }
    }

    /// Registers (or finds) a persistent counter series. Call once per label set and keep the
    /// handle. Only for bounded label sets: it is never removed.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        let c = self.expiring_counter(name, labels);
        lock(&self.persistent_counters).push(c.clone());
        c
    }

    /// Registers (or finds) a persistent gauge series (see [`Registry::counter`]).
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        let g = self.expiring_gauge(name, labels);
        lock(&self.persistent_gauges).push(g.clone());
        g
    }

    /// Registers (or finds) a counter series whose handle the caller drops within the series TTL
    /// of its last update.
    pub fn expiring_counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// Registers (or finds) a gauge series the caller updates at least every publish while it
    /// holds the handle, and drops when the label set expires.
    pub fn expiring_gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    /// Marks every persistent series as updated, so idle expiry never removes it. Called with
    /// every publish (at least once a second).
    pub fn keepalive(&self) {
        for c in lock(&self.persistent_counters).iter() {
            c.increment(0);
        }
        for g in lock(&self.persistent_gauges).iter() {
            g.increment(0.0);
        }
    }

    /// Renders the Prometheus text exposition. Cost grows with the number of series: call it off
    /// the async executor.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Housekeeping the recorder needs on a timer (it does not start its own).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect();
    Key::from_parts(name, labels)
}

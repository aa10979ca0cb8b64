//! Metric names, their HELP text, and the registry every metric lives in.
//!
//! Metric names are the product's public interface: they are constants here and nowhere else,
//! each described once. [`Registry`] wraps the Prometheus recorder that is passed explicitly to
//! whoever registers series (no global recorder), so tests build their own registry and read it
//! back as data. Series are registered once per label set and the returned handles are cached by
//! the caller; nothing here is on the per-flow path.

use metrics::{Counter, Gauge, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

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
pub const UNKNOWN_SAMPLING_RATE: &str = "goflow_flows_unknown_sampling_rate_total";
pub const EXPORTER_DATAGRAMS: &str = "goflow_exporter_datagrams_total";
pub const EXPORTER_BYTES: &str = "goflow_exporter_bytes_total";
pub const EXPORTER_TEMPLATES: &str = "goflow_exporter_templates";
pub const UDP_KERNEL_DROPS: &str = "goflow_udp_kernel_drops_total";
pub const REPLAY_DATAGRAMS: &str = "goflow_replay_datagrams_total";
pub const ACTIVE_FLOWS: &str = "goflow_active_flows";
pub const ACTIVE_FLOWS_OVERFLOW: &str = "goflow_active_flows_overflow_total";
pub const PARSE_ERRORS: &str = "goflow_parse_errors_total";
pub const STDIN_LINES: &str = "goflow_stdin_lines_total";
pub const STDIN_BYTES: &str = "goflow_stdin_bytes_total";

/// Label value for an absent address or sampler.
pub const UNKNOWN: &str = "unknown";

enum Kind {
    Counter,
    Gauge,
}

/// Every metric with its kind, unit and HELP text.
const DESCRIPTIONS: &[(&str, Kind, Option<Unit>, &str)] = &[
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
        UDP_KERNEL_DROPS,
        Kind::Counter,
        None,
        "Datagrams the kernel dropped on a listener's sockets because the receive buffer was full (SO_RXQ_OVFL).",
    ),
    (
        REPLAY_DATAGRAMS,
        Kind::Counter,
        None,
        "UDP datagrams read from the --replay capture.",
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
pub struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A fresh registry with every metric described.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        for (name, kind, unit, help) in DESCRIPTIONS {
            let key = KeyName::from_const_str(name);
            let help = SharedString::const_str(help);
            match kind {
                Kind::Counter => recorder.describe_counter(key, *unit, help),
                Kind::Gauge => recorder.describe_gauge(key, *unit, help),
            }
        }
        Registry { recorder, handle }
    }

    /// Registers (or finds) a counter series. Call once per label set and keep the handle.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// Registers (or finds) a gauge series. Call once per label set and keep the handle.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
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

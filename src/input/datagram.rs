//! The shared back half of the UDP and replay inputs: one datagram → decoder → this input's
//! accumulator.
//!
//! Owns the decoder instance of its input (one owner for template and sampling state), the
//! allow-list check, the error tally and its rate-limited warning, and the decoder's housekeeping
//! (idle-exporter pruning, the templates snapshot). It does no I/O and takes no lock: the UDP
//! loop and the replay reader hand it payloads, and it counts into its own [`Accumulator`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{error, info, warn};

use crate::aggregate::Accumulator;
use crate::decode::ErrorType;
use crate::decode::netflow::{DatagramDecoder, DatagramReport, InterfaceNameFact};
use crate::flow::{Flow, unmap_v4};
use crate::flows_out::LineBatcher;
use crate::input::ErrorTally;
use crate::warn_limit::WarnLimit;

/// How often the decoder is pruned and its templates snapshot sent.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);

/// Makes a fresh decoder: at start, and after a decoder panicked (its state is not trusted).
pub type DecoderFactory = Arc<dyn Fn() -> Box<dyn DatagramDecoder> + Send + Sync>;

/// Settings of a datagram pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// `--allow-exporter`: when not empty, datagrams from other source addresses are dropped
    /// before decoding (and counted).
    pub allowed_exporters: Vec<IpNet>,
    /// Exporters silent for this long lose their templates and sampling state.
    pub exporter_idle: Duration,
}

/// Decoder + error accounting + accumulator for one input.
pub struct DatagramPipeline {
    factory: DecoderFactory,
    decoder: Box<dyn DatagramDecoder>,
    config: PipelineConfig,
    flows: Vec<Flow>,
    /// Interface names the decoder learned from the last datagram (rarely any).
    names: Vec<InterfaceNameFact>,
    accumulator: Accumulator,
    /// `--flows-out`: this input's lines (the decoder then also reads the detail fields).
    lines: Option<LineBatcher>,
    last_housekeeping: Instant,
    /// The warning about undecodable datagrams.
    undecodable: WarnLimit,
}

impl DatagramPipeline {
    pub fn new(factory: DecoderFactory, config: PipelineConfig, accumulator: Accumulator) -> Self {
        DatagramPipeline {
            decoder: factory(),
            factory,
            config,
            flows: Vec::with_capacity(256),
            names: Vec::new(),
            accumulator,
            lines: None,
            last_housekeeping: Instant::now(),
            undecodable: WarnLimit::default(),
        }
    }

    /// Also writes this input's flows as lines (`--flows-out`).
    pub fn with_lines(mut self, lines: LineBatcher) -> Self {
        self.lines = Some(lines);
        self
    }

    /// Hands over the flow lines batched so far (at the end of an input).
    pub fn flush_lines(&mut self) {
        if let Some(lines) = &mut self.lines {
            lines.flush();
        }
    }

    /// This input's accumulator (the input loop decides when to ship).
    pub fn accumulator(&mut self) -> &mut Accumulator {
        &mut self.accumulator
    }

    /// Decodes one datagram from `from` and counts its flows. Returns the decoder's report.
    pub fn handle(&mut self, from: SocketAddr, payload: &[u8], received_ns: u64) -> DatagramReport {
        let ip = unmap_v4(from.ip());
        if !self.config.allowed_exporters.is_empty()
            && !self
                .config
                .allowed_exporters
                .iter()
                .any(|n| n.contains(&ip))
        {
            // Before decoding: a spoofed or unwanted source costs no parser state and no series.
            self.accumulator.delta().inputs().rejected_datagrams += 1;
            return DatagramReport::default();
        }
        let report = self.decode(from, payload, received_ns);
        self.decoder.drain_interface_names(&mut self.names);
        if !self.names.is_empty() {
            self.accumulator
                .delta()
                .add_interface_names(&mut self.names);
        }
        self.accumulator.record(&self.flows);
        if let Some(lines) = &mut self.lines {
            lines.add(&self.flows);
        }
        self.flows.clear();
        self.accumulator.delta().count_datagram(ip, payload.len());
        self.count_errors(from, &report);
        report
    }

    /// Decodes into `self.flows`; a decoder panic is counted and the decoder replaced.
    fn decode(&mut self, from: SocketAddr, payload: &[u8], received_ns: u64) -> DatagramReport {
        let decoder = &mut self.decoder;
        let flows = &mut self.flows;
        let details = self.lines.as_mut().map(LineBatcher::details);
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.decode_detailed(from, payload, received_ns, flows, details)
        }));
        decoded.unwrap_or_else(|_| {
            // A bug, not bad input: keep serving, but say so loudly (the panic message is
            // already on stderr) and start this input's decoder afresh.
            error!(
                exporter = %from,
                len = payload.len(),
                "the datagram decoder panicked; datagram dropped, decoder state reset (please report)"
            );
            self.decoder = (self.factory)();
            self.flows.clear();
            if let Some(lines) = &mut self.lines {
                lines.discard();
            }
            DatagramReport {
                version: payload
                    .get(..2)
                    .map_or(0, |v| u16::from_be_bytes([v[0], v[1]])),
                panicked: 1,
                ..DatagramReport::default()
            }
        })
    }

    /// Runs housekeeping when it is due (inputs call it once per batch and when idle).
    pub fn tick(&mut self, now: Instant) {
        if let Some(lines) = &mut self.lines {
            lines.tick(now);
        }
        if now.duration_since(self.last_housekeeping) >= HOUSEKEEPING_EVERY {
            self.housekeeping(now);
        }
    }

    fn count_errors(&mut self, from: SocketAddr, report: &DatagramReport) {
        let mut tally: ErrorTally = [0; ErrorType::ALL.len()];
        let mut total = 0u64;
        for (kind, n) in report.errors() {
            tally[kind.index()] += u64::from(n);
            total += u64::from(n);
        }
        if total == 0 {
            return;
        }
        self.accumulator.delta().count_errors(&tally);
        if let Some(errors) = self.undecodable.ready(total) {
            // Never the packet itself: only its source and the kinds of trouble.
            warn!(
                exporter = %from,
                version = report.version,
                malformed = report.malformed,
                panicked = report.panicked,
                unsupported_version = report.unsupported_version,
                missing_template = report.missing_template,
                errors_since_last_warning = errors,
                "datagram could not be fully decoded; see goflow_parse_errors_total (next warning in 10s at the earliest)"
            );
        }
    }

    /// Prunes idle exporters and sends the templates-known snapshot.
    pub fn housekeeping(&mut self, now: Instant) {
        self.last_housekeeping = now;
        let pruned = self.decoder.prune_idle(self.config.exporter_idle);
        if pruned > 0 {
            info!(
                pruned,
                "forgot idle exporters (templates and sampling state)"
            );
        }
        let known = self.decoder.templates_per_exporter();
        self.accumulator.delta().set_templates(known);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use super::*;
    use crate::Clock;
    use crate::aggregate::{AggregatorConfig, Publisher};
    use crate::flow::FlowType;
    use crate::telemetry::Registry;

    /// A decoder that yields one flow per datagram and panics on a datagram starting with 0xFF.
    struct Fake;

    impl DatagramDecoder for Fake {
        fn decode_detailed(
            &mut self,
            exporter: SocketAddr,
            datagram: &[u8],
            _: u64,
            out: &mut Vec<Flow>,
            _: Option<&mut Vec<crate::flow::FlowDetail>>,
        ) -> DatagramReport {
            out.push(Flow {
                flow_type: FlowType::Ipfix,
                sampler: Some(exporter.ip()),
                bytes: 10,
                ..Flow::default()
            });
            assert_ne!(datagram.first(), Some(&0xFF), "a decoder bug");
            DatagramReport {
                version: 10,
                flows: 1,
                ..DatagramReport::default()
            }
        }
        fn prune_idle(&mut self, _: Duration) -> usize {
            0
        }
        fn templates_per_exporter(&self) -> Vec<(IpAddr, usize)> {
            Vec::new()
        }
    }

    fn pipeline(allowed: Vec<IpNet>) -> (Arc<Registry>, Publisher, DatagramPipeline) {
        let registry = Arc::new(Registry::new(None));
        let publisher = Publisher::new(
            registry.clone(),
            AggregatorConfig::default(),
            Clock::default(),
        );
        let p = DatagramPipeline::new(
            Arc::new(|| Box::new(Fake)),
            PipelineConfig {
                allowed_exporters: allowed,
                exporter_idle: Duration::from_secs(60),
            },
            publisher.accumulator(),
        );
        (registry, publisher, p)
    }

    fn scrape(
        registry: &Registry,
        publisher: &Publisher,
        p: &mut DatagramPipeline,
    ) -> BTreeMap<String, f64> {
        assert!(p.accumulator().ship());
        publisher.publish();
        crate::testkit::render_map(registry)
    }

    #[test]
    fn a_decoder_panic_is_counted_and_the_input_goes_on() {
        let (registry, publisher, mut p) = pipeline(Vec::new());
        let from: SocketAddr = "192.0.2.1:2055".parse().unwrap();
        p.handle(from, &[0x00, 0x0a], 0);
        let r = p.handle(from, &[0xFF, 0x0a], 0);
        assert_eq!(r.panicked, 1);
        p.handle(from, &[0x00, 0x0a], 0);
        let m = scrape(&registry, &publisher, &mut p);
        assert_eq!(
            m[r#"goflow_parse_errors_total{error_type="decoder_panic"}"#],
            1.0
        );
        // The flow pushed before the panic was discarded: 2 flows, not 3.
        assert_eq!(
            m[r#"goflow_flows_total{sampler_address="192.0.2.1",flow_type="IPFIX"}"#],
            2.0
        );
        assert_eq!(
            m[r#"goflow_exporter_datagrams_total{sampler_address="192.0.2.1"}"#],
            3.0
        );
    }

    #[test]
    fn exporters_outside_the_allowlist_are_dropped_before_decoding() {
        let (registry, publisher, mut p) = pipeline(vec!["192.0.2.0/24".parse().unwrap()]);
        p.handle("192.0.2.7:2055".parse().unwrap(), &[0, 10], 0);
        p.handle("[::ffff:192.0.2.8]:2055".parse().unwrap(), &[0, 10], 0);
        p.handle("198.51.100.1:2055".parse().unwrap(), &[0xFF], 0);
        p.handle("[2001:db8::1]:2055".parse().unwrap(), &[0, 10], 0);
        let m = scrape(&registry, &publisher, &mut p);
        assert_eq!(m["goflow_exporter_rejected_total"], 2.0);
        assert_eq!(
            m[r#"goflow_flows_by_sampler_total{sampler_address="192.0.2.7"}"#],
            1.0
        );
        assert_eq!(
            m[r#"goflow_flows_by_sampler_total{sampler_address="::ffff:192.0.2.8"}"#],
            1.0
        );
        assert!(
            !m.keys()
                .any(|k| k.contains("198.51.100.1") || k.contains("2001:db8::1"))
        );
        // The rejected datagram that would have panicked never reached the decoder.
        assert_eq!(
            m[r#"goflow_parse_errors_total{error_type="decoder_panic"}"#],
            0.0
        );
    }
}

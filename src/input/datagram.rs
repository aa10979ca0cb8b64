//! The shared back half of the UDP and replay inputs: one datagram → decoder → counters →
//! aggregator.
//!
//! Owns the decoder instance of its input (one owner for template and sampling state), the
//! per-exporter self metrics (datagrams, bytes, templates known) and the decoder's housekeeping
//! (idle-exporter pruning). It does no I/O: the UDP loop and the replay reader hand it payloads.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use ipnet::IpNet;
use metrics::{Counter, Gauge};
use tracing::{error, info, warn};

use crate::aggregate::addr_label;
use crate::decode::ErrorType;
use crate::decode::netflow::{DatagramDecoder, DatagramReport};
use crate::flow::{Flow, unmap_v4};
use crate::input::{ErrorTally, ParseErrors};
use crate::telemetry::{self as t, Registry};
use crate::{Clock, SharedAggregator};

/// How often the decoder is pruned and the templates gauge refreshed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);
/// How often at most a warning about undecodable datagrams is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Makes a fresh decoder: at start, and after a decoder panicked (its state is not trusted).
pub type DecoderFactory = Arc<dyn Fn() -> Box<dyn DatagramDecoder> + Send + Sync>;

/// Settings of a datagram pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// `--allow-exporter`: when not empty, datagrams from other source addresses are dropped
    /// before decoding (and counted).
    pub allowed_exporters: Vec<IpNet>,
    /// Exporters with their own `sampler_address` series in the per-exporter self metrics; more
    /// are counted under `other` (spoofed sources must not grow the exposition without bound).
    pub max_exporter_series: usize,
    /// Exporters silent for this long lose their templates and sampling state.
    pub exporter_idle: Duration,
}

struct ExporterSeries {
    datagrams: Counter,
    bytes: Counter,
}

/// Decoder + counters + aggregator hand-off for one input.
pub struct DatagramPipeline {
    factory: DecoderFactory,
    decoder: Box<dyn DatagramDecoder>,
    rejected: Counter,
    config: PipelineConfig,
    flows: Vec<Flow>,
    aggregator: SharedAggregator,
    clock: Clock,
    registry: Arc<Registry>,
    errors: ParseErrors,
    exporters: HashMap<IpAddr, ExporterSeries>,
    other: Option<ExporterSeries>,
    templates: HashMap<IpAddr, Gauge>,
    last_housekeeping: Instant,
    last_warn: Option<Instant>,
    errors_since_warn: u64,
}

impl DatagramPipeline {
    pub fn new(
        factory: DecoderFactory,
        config: PipelineConfig,
        registry: Arc<Registry>,
        aggregator: SharedAggregator,
        clock: Clock,
    ) -> Self {
        DatagramPipeline {
            decoder: factory(),
            factory,
            rejected: registry.counter(t::EXPORTER_REJECTED, &[]),
            config,
            flows: Vec::with_capacity(256),
            aggregator,
            clock,
            errors: ParseErrors::new(&registry),
            registry,
            exporters: HashMap::new(),
            other: None,
            templates: HashMap::new(),
            last_housekeeping: Instant::now(),
            last_warn: None,
            errors_since_warn: 0,
        }
    }

    /// Decodes one datagram from `from` and records its flows. Returns the decoder's report.
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
            self.rejected.increment(1);
            return DatagramReport::default();
        }
        let decoder = &mut self.decoder;
        let flows = &mut self.flows;
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.decode(from, payload, received_ns, flows)
        }));
        let report = match decoded {
            Ok(report) => report,
            Err(_) => {
                // A bug, not bad input: keep serving, but say so loudly (the panic message is
                // already on stderr) and start this input's decoder afresh.
                error!(
                    exporter = %from,
                    len = payload.len(),
                    "the datagram decoder panicked; datagram dropped, decoder state reset (please report)"
                );
                self.decoder = (self.factory)();
                self.flows.clear();
                DatagramReport {
                    version: payload
                        .get(..2)
                        .map_or(0, |v| u16::from_be_bytes([v[0], v[1]])),
                    panicked: 1,
                    ..DatagramReport::default()
                }
            }
        };
        if !self.flows.is_empty() {
            let now = self.clock.now_secs();
            crate::lock(&self.aggregator).record(&self.flows, now);
            self.flows.clear();
        }
        self.count_exporter(from, payload.len(), report.version);
        self.count_errors(from, &report);
        self.tick();
        report
    }

    /// Runs housekeeping when it is due (inputs call it when idle, too).
    pub fn tick(&mut self) {
        if self.last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
            self.housekeeping();
        }
    }

    fn count_exporter(&mut self, from: SocketAddr, len: usize, version: u16) {
        let ip = unmap_v4(from.ip());
        let series = match self.exporters.get(&ip) {
            Some(s) => s,
            None if self.exporters.len() < self.config.max_exporter_series => {
                info!(exporter = %from, version, "new exporter");
                let label = addr_label(Some(ip));
                let labels = [("sampler_address", label.as_str())];
                let s = ExporterSeries {
                    datagrams: self.registry.counter(t::EXPORTER_DATAGRAMS, &labels),
                    bytes: self.registry.counter(t::EXPORTER_BYTES, &labels),
                };
                self.exporters.entry(ip).or_insert(s)
            }
            None => {
                let registry = &self.registry;
                self.other.get_or_insert_with(|| {
                    warn!(
                        max = self.config.max_exporter_series,
                        "more exporters than per-exporter series allowed; the rest are counted as sampler_address=\"other\""
                    );
                    let labels = [("sampler_address", "other")];
                    ExporterSeries {
                        datagrams: registry.counter(t::EXPORTER_DATAGRAMS, &labels),
                        bytes: registry.counter(t::EXPORTER_BYTES, &labels),
                    }
                })
            }
        };
        series.datagrams.increment(1);
        series.bytes.increment(len as u64);
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
        self.errors.add(&tally);
        self.errors_since_warn += total;
        if self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            // Never the packet itself: only its source and the kinds of trouble.
            warn!(
                exporter = %from,
                version = report.version,
                malformed = report.malformed,
                panicked = report.panicked,
                unsupported_version = report.unsupported_version,
                missing_template = report.missing_template,
                errors_since_last_warning = self.errors_since_warn,
                "datagram could not be fully decoded; see goflow_parse_errors_total (next warning in 10s at the earliest)"
            );
            self.last_warn = Some(Instant::now());
            self.errors_since_warn = 0;
        }
    }

    /// Prunes idle exporters and refreshes the templates-known gauge.
    pub fn housekeeping(&mut self) {
        self.last_housekeeping = Instant::now();
        let pruned = self.decoder.prune_idle(self.config.exporter_idle);
        if pruned > 0 {
            info!(
                pruned,
                "forgot idle exporters (templates and sampling state)"
            );
        }
        let known = self.decoder.templates_per_exporter();
        for gauge in self.templates.values() {
            gauge.set(0.0);
        }
        for (ip, n) in known {
            if !self.templates.contains_key(&ip)
                && self.templates.len() >= self.config.max_exporter_series
            {
                continue;
            }
            let registry = &self.registry;
            self.templates
                .entry(ip)
                .or_insert_with(|| {
                    let label = addr_label(Some(ip));
                    registry.gauge(t::EXPORTER_TEMPLATES, &[("sampler_address", &label)])
                })
                .set(n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::aggregate::{Aggregator, AggregatorConfig};
    use crate::flow::FlowType;

    /// A decoder that yields one flow per datagram and panics on a datagram starting with 0xFF.
    struct Fake;

    impl DatagramDecoder for Fake {
        fn decode(
            &mut self,
            exporter: SocketAddr,
            datagram: &[u8],
            _: u64,
            out: &mut Vec<Flow>,
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

    fn pipeline(allowed: Vec<IpNet>) -> (Arc<Registry>, SharedAggregator, DatagramPipeline) {
        let registry = Arc::new(Registry::new(None));
        let aggregator = Arc::new(Mutex::new(Aggregator::new(
            registry.clone(),
            AggregatorConfig::default(),
        )));
        let p = DatagramPipeline::new(
            Arc::new(|| Box::new(Fake)),
            PipelineConfig {
                allowed_exporters: allowed,
                max_exporter_series: 10,
                exporter_idle: Duration::from_secs(60),
            },
            registry.clone(),
            aggregator.clone(),
            Clock::default(),
        );
        (registry, aggregator, p)
    }

    fn scrape(registry: &Registry, aggregator: &SharedAggregator) -> BTreeMap<String, f64> {
        crate::lock(aggregator).publish(0);
        crate::testkit::render_map(registry)
    }

    #[test]
    fn a_decoder_panic_is_counted_and_the_input_goes_on() {
        let (registry, aggregator, mut p) = pipeline(Vec::new());
        let from: SocketAddr = "192.0.2.1:2055".parse().unwrap();
        p.handle(from, &[0x00, 0x0a], 0);
        let r = p.handle(from, &[0xFF, 0x0a], 0);
        assert_eq!(r.panicked, 1);
        p.handle(from, &[0x00, 0x0a], 0);
        let m = scrape(&registry, &aggregator);
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
        let (registry, aggregator, mut p) = pipeline(vec!["192.0.2.0/24".parse().unwrap()]);
        p.handle("192.0.2.7:2055".parse().unwrap(), &[0, 10], 0);
        p.handle("[::ffff:192.0.2.8]:2055".parse().unwrap(), &[0, 10], 0);
        p.handle("198.51.100.1:2055".parse().unwrap(), &[0xFF], 0);
        p.handle("[2001:db8::1]:2055".parse().unwrap(), &[0, 10], 0);
        let m = scrape(&registry, &aggregator);
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

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
use metrics::{Counter, Gauge};
use tracing::{info, warn};

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

/// Settings of a datagram pipeline.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
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
    decoder: Box<dyn DatagramDecoder>,
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
        decoder: Box<dyn DatagramDecoder>,
        config: PipelineConfig,
        registry: Arc<Registry>,
        aggregator: SharedAggregator,
        clock: Clock,
    ) -> Self {
        DatagramPipeline {
            decoder,
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
        let report = self
            .decoder
            .decode(from, payload, received_ns, &mut self.flows);
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

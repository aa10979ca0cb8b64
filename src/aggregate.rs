//! Aggregation: the only place flow metrics are written.
//!
//! Owns the per-label-set state of every flow family (pending deltas and cached registry
//! handles, in capped, expiring [`Family`] tables) and the active-flows tracker. Inputs hand it
//! batches of [`Flow`]s; [`publish`] moves the pending deltas into the registry, expires idle
//! label sets and refreshes the gauges. It is called by the scrape handler right before rendering
//! and by a one-second ticker, so a flow is visible in `/metrics` as soon as its batch is
//! recorded.
//!
//! Hot path ([`Aggregator::record`]): per flow, a few hash-map lookups keyed by compact binary keys
//! (`Option<IpAddr>`, [`AddrKey`], protocol number, flow type) and plain `u64` additions. No
//! allocation, no label strings, no registry lookup: those happen once per new label set, when
//! its handles are created.
//!
//! [`publish`]: Aggregator::publish

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashMap};
use metrics::{Counter, Gauge};

use crate::cardinality::{AddrKey, AddrPolicy, Cell, Family, FamilyLimits, Slot};
use crate::flow::{Flow, FlowType};
use crate::names::protocol_name;
use crate::sampling::SamplingPolicy;
use crate::telemetry::{self as t, Registry};

/// Settings of the aggregator that come from the command line.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    pub sampling: SamplingPolicy,
    /// A flow key counts as active for this many seconds after it was last seen.
    pub active_window_secs: u64,
    /// Cap on tracked active-flow keys across all samplers.
    pub active_max_keys: usize,
    /// Address granularity (`--local-net`, `--remote-prefix-v4/-v6`).
    pub addresses: AddrPolicy,
    /// Label sets per family (`--max-series-per-metric`).
    pub max_series_per_metric: usize,
    /// Seconds without an update before a label set is dropped (`--series-ttl`).
    pub series_ttl_secs: u64,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            sampling: SamplingPolicy::new(1, Vec::new()),
            active_window_secs: 60,
            active_max_keys: 1_000_000,
            addresses: AddrPolicy::default(),
            max_series_per_metric: DEFAULT_MAX_SERIES_PER_METRIC,
            series_ttl_secs: 15 * 60,
        }
    }
}

/// Label sets per address family. Two address families (source, destination) of two metrics
/// each (flows, bytes): 4 × 25,000 = 100,000 series at most from addresses, the bulk of any
/// exposition, which renders in about 0.4 s (`../shared/docs/metrics-costs.md`).
pub const DEFAULT_MAX_SERIES_PER_METRIC: usize = 25_000;

/// The label value of an optional address (no granularity rules: samplers are shown as they are).
pub fn addr_label(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| t::UNKNOWN.to_string(), |a| a.to_string())
}

/// Per-sampler state: the family's cell plus the rate last applied and the active-flows gauge.
struct SamplerCell {
    cell: Cell<3>,
    last_rate: u64,
    rate_gauge: Gauge,
    active_gauge: Gauge,
}

impl Slot for SamplerCell {
    fn flush(&mut self) {
        self.cell.flush();
        self.rate_gauge.set(self.last_rate as f64);
    }
}

/// Distinct active 5-tuples per sampler, bounded by a key cap.
///
/// A key is stored as a 64-bit fingerprint of (sampler, src, dst, ports, protocol) with a small
/// sampler index: 16 bytes per tracked flow instead of ~70, so the default million keys fit in
/// about 35 MiB. Two distinct keys share a fingerprint with probability ~n²/2⁶⁵ (about 3·10⁻⁸ at
/// a million keys): negligible for a gauge.
///
/// Times are the aggregator's monotonic seconds (when a flow was *received*), never the flow's own
/// timestamps, so exporter clock jumps cannot break the gauge.
struct ActiveFlows {
    window_secs: u64,
    max_keys: usize,
    hasher: DefaultHashBuilder,
    /// fingerprint → (last seen, sampler index)
    last_seen: HashMap<u64, (u32, u32)>,
    samplers: HashMap<Option<IpAddr>, u32>,
    sampler_list: Vec<Option<IpAddr>>,
    overflow_pending: u64,
    overflow: Counter,
    /// Per-sampler counts of the last sweep, by sampler index.
    counts: Vec<u64>,
}

impl ActiveFlows {
    #[inline]
    fn record(&mut self, flow: &Flow, now: u64) {
        let fingerprint = self.hasher.hash_one((
            flow.sampler,
            flow.src_addr,
            flow.dst_addr,
            flow.src_port,
            flow.dst_port,
            flow.proto,
        ));
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        if let Some(seen) = self.last_seen.get_mut(&fingerprint) {
            seen.0 = now;
            return;
        }
        if self.last_seen.len() >= self.max_keys {
            // Keys are freed by the sweep in `publish`; until then new keys are counted, not
            // tracked, so memory stays bounded.
            self.overflow_pending += 1;
            return;
        }
        let index = match self.samplers.get(&flow.sampler) {
            Some(i) => *i,
            None => {
                let i = u32::try_from(self.sampler_list.len()).unwrap_or(u32::MAX);
                self.samplers.insert(flow.sampler, i);
                self.sampler_list.push(flow.sampler);
                i
            }
        };
        self.last_seen.insert(fingerprint, (now, index));
    }

    /// Drops keys older than the window and counts the rest per sampler.
    fn sweep(&mut self, now: u64) {
        let window = self.window_secs;
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        self.counts.clear();
        self.counts.resize(self.sampler_list.len(), 0);
        let counts = &mut self.counts;
        self.last_seen.retain(|_, (seen, sampler)| {
            let keep = u64::from(now.saturating_sub(*seen)) < window;
            if keep && let Some(c) = counts.get_mut(*sampler as usize) {
                *c += 1;
            }
            keep
        });
        if self.last_seen.capacity() > 1024 && self.last_seen.len() < self.last_seen.capacity() / 4
        {
            self.last_seen.shrink_to_fit();
        }
        if self.last_seen.is_empty() {
            // Forget sampler indexes too, or spoofed samplers would grow the table forever.
            self.samplers.clear();
            self.sampler_list.clear();
            self.counts.clear();
        }
        if self.overflow_pending != 0 {
            self.overflow.increment(self.overflow_pending);
            self.overflow_pending = 0;
        }
    }

    fn active_of(&self, sampler: Option<IpAddr>) -> u64 {
        self.samplers
            .get(&sampler)
            .and_then(|i| self.counts.get(*i as usize))
            .copied()
            .unwrap_or(0)
    }
}

/// Every flow family's state. One instance per process, shared by the inputs behind a mutex that
/// is taken once per batch.
pub struct Aggregator {
    registry: Arc<Registry>,
    sampling: SamplingPolicy,
    addresses: AddrPolicy,
    by_sampler_type: Family<(Option<IpAddr>, FlowType), Cell<3>>,
    by_protocol: Family<Option<u8>, Cell<3>>,
    by_src: Family<AddrKey, Cell<2>>,
    by_dst: Family<AddrKey, Cell<2>>,
    by_sampler: Family<Option<IpAddr>, SamplerCell>,
    /// Flows whose rate was unknown (0 on the wire, no override): the default was applied.
    unknown_rate_pending: u64,
    unknown_rate: Counter,
    active: ActiveFlows,
}

impl Aggregator {
    pub fn new(registry: Arc<Registry>, config: AggregatorConfig) -> Self {
        let limits = FamilyLimits {
            cap: config.max_series_per_metric.max(1),
            ttl_secs: config.series_ttl_secs.max(1),
        };
        // 257 protocol keys at most (256 numbers and unknown): never capped.
        let protocols = FamilyLimits { cap: 257, ..limits };
        let reg = &*registry;
        Aggregator {
            sampling: config.sampling,
            addresses: config.addresses,
            by_sampler_type: Family::new(reg, &[t::FLOWS, t::BYTES, t::PACKETS], limits),
            by_protocol: Family::new(
                reg,
                &[
                    t::FLOWS_BY_PROTOCOL,
                    t::BYTES_BY_PROTOCOL,
                    t::PACKETS_BY_PROTOCOL,
                ],
                protocols,
            ),
            by_src: Family::new(reg, &[t::FLOWS_BY_SRC_ADDR, t::BYTES_BY_SRC_ADDR], limits),
            by_dst: Family::new(reg, &[t::FLOWS_BY_DST_ADDR, t::BYTES_BY_DST_ADDR], limits),
            by_sampler: Family::new(
                reg,
                &[
                    t::FLOWS_BY_SAMPLER,
                    t::BYTES_BY_SAMPLER,
                    t::PACKETS_BY_SAMPLER,
                ],
                limits,
            ),
            unknown_rate_pending: 0,
            unknown_rate: reg.counter(t::UNKNOWN_SAMPLING_RATE, &[]),
            active: ActiveFlows {
                window_secs: config.active_window_secs.max(1),
                max_keys: config.active_max_keys,
                hasher: DefaultHashBuilder::default(),
                last_seen: HashMap::new(),
                samplers: HashMap::new(),
                sampler_list: Vec::new(),
                overflow_pending: 0,
                overflow: reg.counter(t::ACTIVE_FLOWS_OVERFLOW, &[]),
                counts: Vec::new(),
            },
            registry,
        }
    }

    /// Adds a batch of flows received at monotonic second `now`. The hot path.
    pub fn record(&mut self, flows: &[Flow], now: u64) {
        for flow in flows {
            self.record_one(flow, now);
        }
    }

    #[inline]
    fn record_one(&mut self, flow: &Flow, now: u64) {
        let reg = &*self.registry;
        let (rate, known) = self.sampling.resolve(flow.sampler, flow.sampling_rate);
        self.unknown_rate_pending += u64::from(!known);
        let bytes = flow.bytes.saturating_mul(rate);
        let packets = flow.packets.saturating_mul(rate);

        let sampler_type = |s: &str, ty: &str| {
            let labels = [("sampler_address", s), ("flow_type", ty)];
            Cell::new([
                reg.expiring_counter(t::FLOWS, &labels),
                reg.expiring_counter(t::BYTES, &labels),
                reg.expiring_counter(t::PACKETS, &labels),
            ])
        };
        self.by_sampler_type
            .slot(
                (flow.sampler, flow.flow_type),
                now,
                |(s, ty)| sampler_type(&addr_label(*s), ty.as_str()),
                || sampler_type("other", "other"),
            )
            .add([1, bytes, packets]);

        let sampler = |s: &str| {
            let labels = [("sampler_address", s)];
            SamplerCell {
                cell: Cell::new([
                    reg.expiring_counter(t::FLOWS_BY_SAMPLER, &labels),
                    reg.expiring_counter(t::BYTES_BY_SAMPLER, &labels),
                    reg.expiring_counter(t::PACKETS_BY_SAMPLER, &labels),
                ]),
                last_rate: 0,
                rate_gauge: reg.expiring_gauge(t::SAMPLING_RATE, &labels),
                active_gauge: reg.expiring_gauge(t::ACTIVE_FLOWS, &labels),
            }
        };
        let s = self.by_sampler.slot(
            flow.sampler,
            now,
            |s| sampler(&addr_label(*s)),
            || sampler("other"),
        );
        s.cell.add([1, bytes, packets]);
        s.last_rate = rate;

        let protocol = |p: &str| {
            let labels = [("protocol", p)];
            Cell::new([
                reg.expiring_counter(t::FLOWS_BY_PROTOCOL, &labels),
                reg.expiring_counter(t::BYTES_BY_PROTOCOL, &labels),
                reg.expiring_counter(t::PACKETS_BY_PROTOCOL, &labels),
            ])
        };
        self.by_protocol
            .slot(
                flow.proto,
                now,
                |p| protocol(protocol_name(*p)),
                || protocol("other"),
            )
            .add([1, bytes, packets]);

        let src = |a: &str| {
            let labels = [("src_addr", a)];
            Cell::new([
                reg.expiring_counter(t::FLOWS_BY_SRC_ADDR, &labels),
                reg.expiring_counter(t::BYTES_BY_SRC_ADDR, &labels),
            ])
        };
        self.by_src
            .slot(
                self.addresses.key(flow.src_addr),
                now,
                |k| src(&k.label()),
                || src("other"),
            )
            .add([1, bytes]);
        let dst = |a: &str| {
            let labels = [("dst_addr", a)];
            Cell::new([
                reg.expiring_counter(t::FLOWS_BY_DST_ADDR, &labels),
                reg.expiring_counter(t::BYTES_BY_DST_ADDR, &labels),
            ])
        };
        self.by_dst
            .slot(
                self.addresses.key(flow.dst_addr),
                now,
                |k| dst(&k.label()),
                || dst("other"),
            )
            .add([1, bytes]);
        self.active.record(flow, now);
    }

    /// Moves every pending delta into the registry, expires idle label sets and refreshes the
    /// gauges.
    pub fn publish(&mut self, now: u64) {
        self.active.sweep(now);
        self.by_sampler_type.publish(now, |_, _| {});
        let active = &self.active;
        self.by_sampler.publish(now, |sampler, cell| {
            cell.active_gauge.set(active.active_of(*sampler) as f64);
        });
        self.by_protocol.publish(now, |_, _| {});
        self.by_src.publish(now, |_, _| {});
        self.by_dst.publish(now, |_, _| {});
        for family in [&mut self.by_src, &mut self.by_dst] {
            family.shrink();
        }
        if self.unknown_rate_pending != 0 {
            self.unknown_rate.increment(self.unknown_rate_pending);
            self.unknown_rate_pending = 0;
        }
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;

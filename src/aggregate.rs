//! Aggregation: the only place flow metrics are written.
//!
//! Owns the per-label-set state of every flow family: a pending (not yet published) delta and the
//! cached registry handles for that label set. Inputs hand it batches of [`Flow`]s; [`publish`]
//! moves the pending deltas into the registry and refreshes the active-flows gauge. It is called by
//! the scrape handler right before rendering and by a one-second ticker, so a flow is visible in
//! `/metrics` as soon as its batch is recorded.
//!
//! Hot path ([`Aggregator::record`]): per flow, a few hash-map lookups keyed by compact binary keys
//! (`Option<IpAddr>`, protocol number, flow type) and plain `u64` additions. No allocation, no label
//! strings, no registry lookup: those happen once per new label set, when its handles are created.
//!
//! [`publish`]: Aggregator::publish

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;
use metrics::{Counter, Gauge};

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
}

/// Pending deltas plus the cached handles of one label set.
struct Cell<const N: usize> {
    pending: [u64; N],
    handles: [Counter; N],
}

impl<const N: usize> Cell<N> {
    fn new(handles: [Counter; N]) -> Self {
        Cell {
            pending: [0; N],
            handles,
        }
    }

    #[inline]
    fn add(&mut self, values: [u64; N]) {
        for (p, v) in self.pending.iter_mut().zip(values) {
            *p = p.saturating_add(v);
        }
    }

    fn flush(&mut self) {
        for (p, h) in self.pending.iter_mut().zip(&self.handles) {
            if *p != 0 {
                h.increment(*p);
                *p = 0;
            }
        }
    }
}

/// Adds `values` to the cell of `key`, creating the cell's handles on first sight only.
#[inline]
fn bump<K, const N: usize>(
    map: &mut HashMap<K, Cell<N>>,
    key: K,
    values: [u64; N],
    create: impl FnOnce(&K) -> [Counter; N],
) where
    K: std::hash::Hash + Eq,
{
    match map.get_mut(&key) {
        Some(cell) => cell.add(values),
        None => {
            let mut cell = Cell::new(create(&key));
            cell.add(values);
            map.insert(key, cell);
        }
    }
}

/// The label value of an optional address.
pub fn addr_label(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| t::UNKNOWN.to_string(), |a| a.to_string())
}

/// One active-flow key: the 5-tuple of a sampler.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ActiveKey {
    sampler: Option<IpAddr>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    src_port: u16,
    dst_port: u16,
    proto: Option<u8>,
}

/// Distinct active 5-tuples per sampler, bounded by a key cap.
///
/// Times are the aggregator's monotonic seconds (the time a flow was *received*), never the
/// flow's own timestamps, so exporter clock jumps cannot break the gauge.
struct ActiveFlows {
    window_secs: u64,
    max_keys: usize,
    last_seen: HashMap<ActiveKey, u64>,
    overflow_pending: u64,
    overflow: Counter,
    gauges: HashMap<Option<IpAddr>, Gauge>,
}

impl ActiveFlows {
    #[inline]
    fn record(&mut self, flow: &Flow, now: u64) {
        let key = ActiveKey {
            sampler: flow.sampler,
            src: flow.src_addr,
            dst: flow.dst_addr,
            src_port: flow.src_port,
            dst_port: flow.dst_port,
            proto: flow.proto,
        };
        if let Some(seen) = self.last_seen.get_mut(&key) {
            *seen = now;
        } else if self.last_seen.len() < self.max_keys {
            self.last_seen.insert(key, now);
        } else {
            // Keys are only freed by the sweep in `publish`; until then new keys are counted, not
            // tracked, so memory stays bounded.
            self.overflow_pending += 1;
        }
    }

    fn publish(&mut self, registry: &Registry, now: u64) {
        let window = self.window_secs;
        self.last_seen
            .retain(|_, seen| now.saturating_sub(*seen) < window);
        let mut per_sampler: HashMap<Option<IpAddr>, u64> = HashMap::new();
        for key in self.last_seen.keys() {
            *per_sampler.entry(key.sampler).or_default() += 1;
        }
        for (sampler, n) in &per_sampler {
            self.gauges
                .entry(*sampler)
                .or_insert_with(|| {
                    registry.gauge(
                        t::ACTIVE_FLOWS,
                        &[("sampler_address", &addr_label(*sampler))],
                    )
                })
                .set(*n as f64);
        }
        // A sampler with no active key left reads 0, not its last value.
        for (sampler, gauge) in &self.gauges {
            if !per_sampler.contains_key(sampler) {
                gauge.set(0.0);
            }
        }
        if self.overflow_pending != 0 {
            self.overflow.increment(self.overflow_pending);
            self.overflow_pending = 0;
        }
    }
}

/// Per-sampler state: the sampler family's cell plus the rate last applied.
struct SamplerCell {
    cell: Cell<3>,
    last_rate: u64,
    rate_gauge: Gauge,
}

/// Every flow family's state. One instance per process, shared by the inputs behind a mutex that
/// is taken once per batch.
pub struct Aggregator {
    registry: Arc<Registry>,
    sampling: SamplingPolicy,
    by_sampler_type: HashMap<(Option<IpAddr>, FlowType), Cell<3>>,
    /// Indexed by protocol number; index 256 is "unknown". An array: 257 possible keys.
    by_protocol: Vec<Option<Cell<3>>>,
    by_src: HashMap<Option<IpAddr>, Cell<2>>,
    by_dst: HashMap<Option<IpAddr>, Cell<2>>,
    by_sampler: HashMap<Option<IpAddr>, SamplerCell>,
    /// Flows whose rate was unknown (0 on the wire, no override): the default was applied.
    unknown_rate_pending: u64,
    unknown_rate: Counter,
    active: ActiveFlows,
}

impl Aggregator {
    pub fn new(registry: Arc<Registry>, config: AggregatorConfig) -> Self {
        let overflow = registry.counter(t::ACTIVE_FLOWS_OVERFLOW, &[]);
        let unknown_rate = registry.counter(t::UNKNOWN_SAMPLING_RATE, &[]);
        Aggregator {
            sampling: config.sampling,
            by_sampler_type: HashMap::new(),
            by_protocol: (0..257).map(|_| None).collect(),
            by_src: HashMap::new(),
            by_dst: HashMap::new(),
            by_sampler: HashMap::new(),
            unknown_rate_pending: 0,
            unknown_rate,
            active: ActiveFlows {
                window_secs: config.active_window_secs.max(1),
                max_keys: config.active_max_keys,
                last_seen: HashMap::new(),
                overflow_pending: 0,
                overflow,
                gauges: HashMap::new(),
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

        bump(
            &mut self.by_sampler_type,
            (flow.sampler, flow.flow_type),
            [1, bytes, packets],
            |(s, ty)| {
                let s = addr_label(*s);
                let labels = [("sampler_address", s.as_str()), ("flow_type", ty.as_str())];
                [
                    reg.counter(t::FLOWS, &labels),
                    reg.counter(t::BYTES, &labels),
                    reg.counter(t::PACKETS, &labels),
                ]
            },
        );
        match self.by_sampler.get_mut(&flow.sampler) {
            Some(s) => {
                s.cell.add([1, bytes, packets]);
                s.last_rate = rate;
            }
            None => {
                let s = addr_label(flow.sampler);
                let labels = [("sampler_address", s.as_str())];
                let mut cell = Cell::new([
                    reg.counter(t::FLOWS_BY_SAMPLER, &labels),
                    reg.counter(t::BYTES_BY_SAMPLER, &labels),
                    reg.counter(t::PACKETS_BY_SAMPLER, &labels),
                ]);
                cell.add([1, bytes, packets]);
                let rate_gauge = reg.gauge(t::SAMPLING_RATE, &labels);
                self.by_sampler.insert(
                    flow.sampler,
                    SamplerCell {
                        cell,
                        last_rate: rate,
                        rate_gauge,
                    },
                );
            }
        }
        let slot = &mut self.by_protocol[flow.proto.map_or(256, usize::from)];
        slot.get_or_insert_with(|| {
            let labels = [("protocol", protocol_name(flow.proto))];
            Cell::new([
                reg.counter(t::FLOWS_BY_PROTOCOL, &labels),
                reg.counter(t::BYTES_BY_PROTOCOL, &labels),
                reg.counter(t::PACKETS_BY_PROTOCOL, &labels),
            ])
        })
        .add([1, bytes, packets]);
        bump(&mut self.by_src, flow.src_addr, [1, bytes], |a| {
            let a = addr_label(*a);
            let labels = [("src_addr", a.as_str())];
            [
                reg.counter(t::FLOWS_BY_SRC_ADDR, &labels),
                reg.counter(t::BYTES_BY_SRC_ADDR, &labels),
            ]
        });
        bump(&mut self.by_dst, flow.dst_addr, [1, bytes], |a| {
            let a = addr_label(*a);
            let labels = [("dst_addr", a.as_str())];
            [
                reg.counter(t::FLOWS_BY_DST_ADDR, &labels),
                reg.counter(t::BYTES_BY_DST_ADDR, &labels),
            ]
        });
        self.active.record(flow, now);
    }

    /// Moves every pending delta into the registry and refreshes the active-flows gauges.
    pub fn publish(&mut self, now: u64) {
        self.by_sampler_type.values_mut().for_each(Cell::flush);
        for s in self.by_sampler.values_mut() {
            s.cell.flush();
            s.rate_gauge.set(s.last_rate as f64);
        }
        if self.unknown_rate_pending != 0 {
            self.unknown_rate.increment(self.unknown_rate_pending);
            self.unknown_rate_pending = 0;
        }
        self.by_protocol.iter_mut().flatten().for_each(Cell::flush);
        self.by_src.values_mut().for_each(Cell::flush);
        self.by_dst.values_mut().for_each(Cell::flush);
        self.active.publish(&self.registry, now);
    }
}

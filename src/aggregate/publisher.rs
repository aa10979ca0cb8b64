//! The publisher side of aggregation: the only writer of flow metrics.
//!
//! Owns, for every flow family, the label sets with their cached registry handles (in capped,
//! expiring [`Family`] tables), the active-flows tracker, and the per-exporter and per-input self
//! metrics. [`Aggregator::merge`] folds an input's [`Delta`] in (one table operation per distinct
//! key of the delta, not per flow); [`Aggregator::publish`] moves pending values into the
//! registry, expires idle label sets and refreshes the gauges.
//!
//! Only the publisher thread and the scrape handler touch an `Aggregator`, behind
//! [`Publisher`]'s mutex: socket threads never take that lock, so registering series, sweeping
//! active flows or rendering cannot hold up receiving.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hashbrown::DefaultHashBuilder;
use metrics::{Counter, Gauge};
use tokio_util::sync::CancellationToken;

use super::AggregatorConfig;
use super::accumulator::{Accumulator, Shipment};
use super::active::ActiveFlows;
use super::asn_families::{AddrCell, AsnFamilies, Side};
use super::delta::{Delta, Direction, FlowPolicy, IfSide, InputCounts};
use super::interfaces::{Interface, Interfaces};
use super::routers::{Router, Routers};
use crate::Clock;
use crate::cardinality::{AddrKey, Cell, Family, FamilyLimits, Published, Slot};
use crate::flow::{Flow, FlowType};
use crate::input::ParseErrors;
use crate::names::protocol_name;
use crate::sync::lock;
use crate::telemetry::{self as t, Registry};

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

    fn published(&self) -> Published {
        self.cell.published()
    }

    fn resume(&mut self, published: Published) {
        self.cell.resume(published);
    }
}

/// The inputs' own counters, flushed after the flows so that a scrape seeing an input's count
/// sees its flows too.
struct InputCounters {
    pending: InputCounts,
    errors_pending: crate::input::ErrorTally,
    errors: ParseErrors,
    stdin_lines: Counter,
    stdin_bytes: Counter,
    replay_datagrams: Counter,
    rejected: Counter,
    receive_gap_max_ns: u64,
    receive_gap: Gauge,
}

impl InputCounters {
    fn new(reg: &Registry) -> Self {
        InputCounters {
            pending: InputCounts::default(),
            errors_pending: Default::default(),
            errors: ParseErrors::new(reg),
            stdin_lines: reg.counter(t::STDIN_LINES, &[]),
            stdin_bytes: reg.counter(t::STDIN_BYTES, &[]),
            replay_datagrams: reg.counter(t::REPLAY_DATAGRAMS, &[]),
            rejected: reg.counter(t::EXPORTER_REJECTED, &[]),
            receive_gap_max_ns: 0,
            receive_gap: reg.gauge(t::UDP_RECEIVE_GAP_MAX, &[]),
        }
    }

    fn merge(&mut self, delta: &Delta) {
        let (p, d) = (&mut self.pending, &delta.inputs);
        p.stdin_lines += d.stdin_lines;
        p.stdin_bytes += d.stdin_bytes;
        p.replay_datagrams += d.replay_datagrams;
        p.rejected_datagrams += d.rejected_datagrams;
        for (sum, n) in self.errors_pending.iter_mut().zip(&delta.errors) {
            *sum += n;
        }
        self.receive_gap_max_ns = self.receive_gap_max_ns.max(delta.receive_gap_max_ns);
    }

    fn flush(&mut self) {
        let p = std::mem::take(&mut self.pending);
        for (counter, n) in [
            (&self.stdin_lines, p.stdin_lines),
            (&self.stdin_bytes, p.stdin_bytes),
            (&self.replay_datagrams, p.replay_datagrams),
            (&self.rejected, p.rejected_datagrams),
        ] {
            if n != 0 {
                counter.increment(n);
            }
        }
        self.errors.add(&std::mem::take(&mut self.errors_pending));
        // The longest gap since the previous publish: a gauge over the last period.
        self.receive_gap
            .set(std::mem::take(&mut self.receive_gap_max_ns) as f64 / 1e9);
    }
}

/// Every flow family's state. One instance per process, owned by the [`Publisher`].
pub struct Aggregator {
    registry: Arc<Registry>,
    policy: FlowPolicy,
    by_sampler_type: Family<(Router, FlowType), Cell<3>>,
    by_protocol: Family<Option<u8>, Cell<3>>,
    by_src: Family<AddrKey, AddrCell>,
    by_dst: Family<AddrKey, AddrCell>,
    by_sampler: Family<Router, SamplerCell>,
    /// Only with `--local-net` (its `goflow_metric_series` rows too).
    by_direction: Option<Family<(Router, Direction), Cell<3>>>,
    /// Only with `--interfaces` (its `goflow_metric_series` rows too).
    by_interface: Option<Family<(Router, Interface, IfSide), Cell<3>>>,
    interfaces: Interfaces,
    /// Only with `--asn-db`.
    asn: Option<AsnFamilies>,
    /// Seconds without traffic before an interface gives up its place (the series TTL).
    interface_ttl_secs: u64,
    unknown_rate: Counter,
    active: ActiveFlows,
    routers: Routers,
    inputs: InputCounters,
    /// Scratch delta of [`Aggregator::record`].
    scratch: Box<Delta>,
    /// When (monotonic seconds) the last render of the registry began.
    rendered: u64,
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
        let directions = config.addresses.has_local_nets();
        Aggregator {
            policy: FlowPolicy {
                sampling: config.sampling,
                addresses: config.addresses,
                hasher: DefaultHashBuilder::default(),
                interfaces: config.interfaces,
                asn: config.asn_db.is_some(),
            },
            by_sampler_type: Family::new(reg, &t::BY_SAMPLER_TYPE, limits),
            by_protocol: Family::new(reg, &t::BY_PROTOCOL, protocols),
            by_src: Family::new(reg, &t::BY_SRC_ADDR, limits),
            by_dst: Family::new(reg, &t::BY_DST_ADDR, limits),
            by_sampler: Family::new(reg, &t::BY_SAMPLER, limits),
            by_direction: directions.then(|| Family::new(reg, &t::BY_DIRECTION, limits)),
            by_interface: config
                .interfaces
                .then(|| Family::new(reg, &t::BY_INTERFACE, limits)),
            interfaces: Interfaces::new(&config.interface_names),
            asn: config
                .asn_db
                .map(|(db, reload)| AsnFamilies::new(reg, db, reload, limits)),
            interface_ttl_secs: limits.ttl_secs,
            unknown_rate: reg.counter(t::UNKNOWN_SAMPLING_RATE, &[]),
            active: ActiveFlows::new(
                config.active_window_secs,
                config.active_max_keys,
                reg.counter(t::ACTIVE_FLOWS_OVERFLOW, &[]),
            ),
            routers: Routers::new(config.max_exporter_series, config.router_idle_secs),
            inputs: InputCounters::new(reg),
            scratch: Box::new(Delta::new()),
            rendered: 0,
            registry,
        }
    }

    /// The per-flow rules, for the inputs' accumulators (one fingerprint seed for all).
    pub fn policy(&self) -> FlowPolicy {
        self.policy.clone()
    }

    /// Counts `flows` directly, as an input would through an accumulator (single-threaded
    /// users: tests and benchmarks).
    pub fn record(&mut self, flows: &[Flow], now: u64) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.record(flows, &self.policy);
        self.merge(&mut scratch, now, 0);
        self.scratch = scratch;
    }

    /// Folds an input's delta in at monotonic second `now`, leaving the delta empty. `input`
    /// identifies the sender for its templates snapshot.
    pub fn merge(&mut self, delta: &mut Delta, now: u64, input: usize) {
        let sizes = delta.sizes();
        self.merge_sampler_types(delta, now);
        self.merge_directions(delta, now);
        self.merge_interfaces(delta, now);
        self.merge_protocols(delta, now);
        let mut asn = self.asn.as_mut();
        merge_addresses(
            &mut self.by_src,
            &self.registry,
            delta.by_src.other,
            delta.by_src.drain(),
            now,
            AddrFamily::Src,
            asn.as_deref_mut(),
        );
        merge_addresses(
            &mut self.by_dst,
            &self.registry,
            delta.by_dst.other,
            delta.by_dst.drain(),
            now,
            AddrFamily::Dst,
            asn.as_deref_mut(),
        );
        if let Some(asn) = asn {
            for (side, table) in [
                (Side::Src, &mut delta.carried_src),
                (Side::Dst, &mut delta.carried_dst),
            ] {
                for ((key, carried), values) in table.drain() {
                    asn.carried(side, key, carried, values);
                }
            }
            asn.flush(&self.registry, now);
        }
        let (routers, samplers) = (&mut self.routers, &delta.active_samplers);
        self.active
            .merge(delta, now, |i| routers.label(samplers[i], now));
        if delta.unknown_rate != 0 {
            self.unknown_rate.increment(delta.unknown_rate);
        }
        for (ip, values) in delta.exporters.drain() {
            self.routers
                .count_datagrams(&self.registry, Some(ip), values, now);
        }
        if delta.exporters_other[0] != 0 {
            self.routers
                .count_datagrams(&self.registry, None, delta.exporters_other, now);
        }
        if let Some(snapshot) = delta.templates.take() {
            self.routers.set_templates(input, snapshot);
        }
        self.inputs.merge(delta);
        delta.clear(sizes);
    }

    fn merge_sampler_types(&mut self, delta: &mut Delta, now: u64) {
        // Samplers the delta could not tell apart (a flood while the publisher was behind) are
        // `other` whatever the router table says.
        let overflow = FlowType::ALL
            .into_iter()
            .zip(delta.sampler_other)
            .filter(|(_, cell)| cell[0] != 0)
            .map(|(ty, cell)| (Router::Other, ty, cell));
        let cells: Vec<(Router, FlowType, [u64; 4])> = delta
            .by_sampler_type
            .drain()
            .map(|((sampler, ty), cell)| (self.routers.label(sampler, now), ty, cell))
            .chain(overflow)
            .collect();
        for (router, flow_type, [flows, bytes, packets, rate]) in cells {
            self.add_sampler_type(router, flow_type, [flows, bytes, packets], rate, now);
        }
    }

    /// Adds to the (router, flow type) family and to the by-router family.
    fn add_sampler_type(
        &mut self,
        router: Router,
        flow_type: FlowType,
        values: [u64; 3],
        rate: u64,
        now: u64,
    ) {
        let reg = &*self.registry;
        let create = |s: &str, ty: &str| {
            Cell::register(
                reg,
                &t::BY_SAMPLER_TYPE,
                &[("sampler_address", s), ("flow_type", ty)],
            )
        };
        self.by_sampler_type
            .slot(
                (router, flow_type),
                now,
                |(r, ty)| create(&r.label(), ty.as_str()),
                || create("other", "other"),
            )
            .add(values);
        let create = |s: &str| {
            let labels = [("sampler_address", s)];
            SamplerCell {
                cell: Cell::register(reg, &t::BY_SAMPLER, &labels),
                last_rate: 0,
                rate_gauge: reg.expiring_gauge(t::SAMPLING_RATE, &labels),
                active_gauge: reg.expiring_gauge(t::ACTIVE_FLOWS, &labels),
            }
        };
        let cell = self
            .by_sampler
            .slot(router, now, |r| create(&r.label()), || create("other"));
        cell.cell.add(values);
        cell.last_rate = rate;
    }

    /// The direction families (`--local-net`): one table operation per (router, direction) of
    /// the delta.
    fn merge_directions(&mut self, delta: &mut Delta, now: u64) {
        let Some(family) = &mut self.by_direction else {
            return;
        };
        let reg = &*self.registry;
        let create = |s: &str, d: &str| {
            Cell::register(
                reg,
                &t::BY_DIRECTION,
                &[("sampler_address", s), ("direction", d)],
            )
        };
        let routers = &mut self.routers;
        let cells = delta
            .by_direction
            .drain()
            .map(|(sampler, sums)| (routers.label(sampler, now), sums))
            .chain(std::iter::once((Router::Other, delta.direction_other)));
        for (router, sums) in cells {
            for (direction, values) in Direction::ALL.into_iter().zip(sums) {
                if values[0] == 0 {
                    continue;
                }
                family
                    .slot(
                        (router, direction),
                        now,
                        |(r, d)| create(&r.label(), d.as_str()),
                        || create("other", "other"),
                    )
                    .add(values);
            }
        }
    }

    /// The interface families: one table operation per (router, interface, side) of the delta.
    fn merge_interfaces(&mut self, delta: &mut Delta, now: u64) {
        let Some(family) = &mut self.by_interface else {
            return;
        };
        let reg = &*self.registry;
        let create = |s: &str, i: &str, side: &str| {
            let labels = [
                ("sampler_address", s),
                ("interface", i),
                ("direction", side),
            ];
            Cell::register(reg, &t::BY_INTERFACE, &labels)
        };
        let overflow = [IfSide::In, IfSide::Out]
            .into_iter()
            .zip(delta.interface_other)
            .filter(|(_, sums)| sums[0] != 0)
            .map(|(side, sums)| (Router::Other, Interface::Other, side, sums));
        for fact in delta.interface_names.drain(..) {
            self.interfaces.learn(fact.exporter, fact.index, &fact.name);
        }
        let (routers, interfaces) = (&mut self.routers, &mut self.interfaces);
        let cells: Vec<_> = delta
            .by_interface
            .drain()
            .map(|((sampler, index, side), sums)| {
                let router = routers.label(sampler, now);
                (router, interfaces.admit(router, index, now), side, sums)
            })
            .chain(overflow)
            .collect();
        let interfaces = &self.interfaces;
        for (router, interface, side, sums) in cells {
            family
                .slot(
                    (router, interface, side),
                    now,
                    |(r, i, d)| create(&r.label(), &interfaces.label(*r, *i), d.as_str()),
                    || create("other", "other", "other"),
                )
                .add(sums);
        }
    }

    fn merge_protocols(&mut self, delta: &Delta, now: u64) {
        let reg = &*self.registry;
        let create = |p: &str| Cell::register(reg, &t::BY_PROTOCOL, &[("protocol", p)]);
        for (i, values) in delta.by_protocol.iter().enumerate() {
            if values[0] == 0 {
                continue;
            }
            let proto = u8::try_from(i).ok();
            self.by_protocol
                .slot(
                    proto,
                    now,
                    |p| create(protocol_name(*p)),
                    || create("other"),
                )
                .add(*values);
        }
    }

    /// Moves every pending value into the registry, expires idle label sets and refreshes the
    /// gauges. The inputs' own counters go last (see `InputCounters`).
    pub fn publish(&mut self, now: u64) {
        let rendered = self.rendered;
        self.active.sweep(now);
        self.by_sampler_type.publish(now, rendered, |_, _| {});
        let active = &self.active;
        self.by_sampler.publish(now, rendered, |sampler, cell| {
            cell.active_gauge.set(active.active_of(*sampler) as f64);
        });
        self.by_protocol.publish(now, rendered, |_, _| {});
        if let Some(family) = &mut self.by_direction {
            family.publish(now, rendered, |_, _| {});
        }
        if let Some(family) = &mut self.by_interface {
            family.publish(now, rendered, |_, _| {});
        }
        if let Some(asn) = &mut self.asn {
            asn.publish(now, rendered);
        }
        self.interfaces.expire(now, self.interface_ttl_secs);
        // A reloaded database: every address label set looks its AS up again.
        let reloaded = self.asn.as_mut().is_some_and(AsnFamilies::reload_if_asked);
        let asn = self.asn.as_ref();
        for family in [&mut self.by_src, &mut self.by_dst] {
            family.publish(now, rendered, |key, cell| {
                if let (true, Some(asn), Some(_)) = (reloaded, asn, cell.asn) {
                    cell.asn = Some(asn.db_number(key));
                }
            });
        }
        for family in [&mut self.by_src, &mut self.by_dst] {
            family.shrink();
        }
        self.routers.publish(&self.registry, now);
        self.inputs.flush();
    }
}

#[derive(Clone, Copy)]
enum AddrFamily {
    Src,
    Dst,
}

/// Adds a delta's address cells to one address family, and with `--asn-db` each cell's sums to the
/// AS its label set knows (the `other` label set's cells are looked up through the cache).
fn merge_addresses(
    family: &mut Family<AddrKey, AddrCell>,
    registry: &Registry,
    other: [u64; 2],
    cells: impl Iterator<Item = (AddrKey, [u64; 2])>,
    now: u64,
    which: AddrFamily,
    mut asn: Option<&mut AsnFamilies>,
) {
    let (label, names) = match which {
        AddrFamily::Src => ("src_addr", t::BY_SRC_ADDR),
        AddrFamily::Dst => ("dst_addr", t::BY_DST_ADDR),
    };
    let create = |a: &str| Cell::register(registry, &names, &[(label, a)]);
    let side = match which {
        AddrFamily::Src => Side::Src,
        AddrFamily::Dst => Side::Dst,
    };
    for (key, values) in cells {
        let lookup = asn.as_deref();
        let slot = family.slot(
            key,
            now,
            |k| AddrCell {
                cell: create(&k.label()),
                asn: lookup.map(|a| a.db_number(k)),
            },
            || AddrCell {
                cell: create("other"),
                asn: None,
            },
        );
        slot.cell.add(values);
        if let Some(asn) = asn.as_deref_mut() {
            let n = match slot.asn {
                Some(n) => n,
                None => asn.number(key),
            };
            asn.add(side, Some(n), values);
        }
    }
    if other[0] != 0 {
        family
            .other(now, other[0], || AddrCell {
                cell: create("other"),
                asn: None,
            })
            .cell
            .add(other);
        if let Some(asn) = asn {
            asn.add(side, None, other);
        }
    }
}

/// Shipments the channel holds: room for every input's deltas ([`accumulator`]'s bound) for up
/// to 64 inputs; more inputs keep counting while it is full.
///
/// [`accumulator`]: super::accumulator
const INBOX: usize = 256;

/// How often the publisher thread publishes into the registry when nobody scrapes.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The aggregator behind its lock, with the channel the inputs ship into. Shared by the publisher
/// thread and the scrape handler; never touched by a socket thread.
pub struct Publisher {
    aggregator: Mutex<Aggregator>,
    /// Held by the publisher thread while it runs; tests and benchmarks drain it directly.
    inbox: Mutex<Receiver<Shipment>>,
    outbox: SyncSender<Shipment>,
    policy: FlowPolicy,
    next_input: AtomicUsize,
    clock: Clock,
    registry: Arc<Registry>,
    panics: Counter,
}

impl Publisher {
    pub fn new(registry: Arc<Registry>, config: AggregatorConfig, clock: Clock) -> Self {
        let aggregator = Aggregator::new(registry.clone(), config);
        let (outbox, inbox) = sync_channel(INBOX);
        Publisher {
            policy: aggregator.policy(),
            aggregator: Mutex::new(aggregator),
            inbox: Mutex::new(inbox),
            outbox,
            next_input: AtomicUsize::new(0),
            clock,
            panics: registry.counter(t::PUBLISHER_PANICS, &[]),
            registry,
        }
    }

    /// A new input's accumulator, shipping to this publisher.
    pub fn accumulator(&self) -> Accumulator {
        let input = self.next_input.fetch_add(1, Ordering::Relaxed);
        Accumulator::new(self.policy.clone(), self.outbox.clone(), input)
    }

    fn aggregator(&self) -> MutexGuard<'_, Aggregator> {
        lock(&self.aggregator)
    }

    fn merge(&self, shipment: Shipment) {
        let Shipment {
            mut delta,
            reply,
            input,
        } = shipment;
        let now = self.clock.now_secs();
        let merged = self.guarded("merge", || {
            self.aggregator().merge(&mut delta, now, input);
        });
        if merged {
            // Back to its input, cleared, for reuse; an input that is gone drops it.
            let _ = reply.try_send(delta);
        }
    }

    /// Runs a step of the publisher; a panic in it (a bug) is logged and counted in
    /// `goflow_publisher_panics_total` instead of ending the thread, and the step's input is
    /// dropped (a merge: its delta; a publish: nothing, the next one flushes what was pending).
    /// Counters never decrease whatever was half done: they only grow. Returns whether `f` ran
    /// to its end.
    fn guarded(&self, step: &'static str, f: impl FnOnce()) -> bool {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(()) => true,
            Err(_) => {
                tracing::error!(
                    step,
                    "the publisher panicked; the step's data was dropped and the publisher goes on (please report)"
                );
                self.panics.increment(1);
                false
            }
        }
    }

    /// Merges every delta that has arrived (tests and benchmarks; the publisher thread merges as
    /// deltas arrive). Does nothing while the publisher thread runs.
    pub fn drain(&self) {
        let Ok(inbox) = self.inbox.try_lock() else {
            return;
        };
        while let Ok(shipment) = inbox.try_recv() {
            self.merge(shipment);
        }
    }

    /// Publishes merged values into the registry: what a scrape and the periodic tick do.
    pub fn publish(&self) {
        self.drain();
        let now = self.clock.now_secs();
        self.guarded("publish", || self.aggregator().publish(now));
        self.registry.keepalive();
    }

    /// The publisher thread: merges deltas as they arrive and calls `tick` every
    /// [`PUBLISH_EVERY`], until `shutdown`.
    pub fn run(&self, shutdown: &CancellationToken, mut tick: impl FnMut()) {
        let inbox = lock(&self.inbox);
        let mut next_tick = Instant::now() + PUBLISH_EVERY;
        while !shutdown.is_cancelled() {
            // Short waits, so shutdown is noticed promptly.
            let wait = next_tick
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            match inbox.recv_timeout(wait) {
                Ok(shipment) => self.merge(shipment),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_tick {
                self.guarded("publish", &mut tick);
                next_tick = Instant::now() + PUBLISH_EVERY;
            }
        }
        // What arrived before shutdown is merged (the inputs' final shipments).
        while let Ok(shipment) = inbox.try_recv() {
            self.merge(shipment);
        }
    }

    /// Notes that a render of the registry begins now (the scrape handler, after publishing).
    pub fn rendering(&self) {
        let now = self.clock.now_secs();
        self.aggregator().rendered = now;
    }

    /// Runs `f` on the aggregator (tests).
    pub fn with<R>(&self, f: impl FnOnce(&mut Aggregator) -> R) -> R {
        f(&mut self.aggregator())
    }
}

#[cfg(test)]
mod panic_tests {
    use super::*;

    #[test]
    fn a_panicking_step_is_counted_and_the_publisher_goes_on() {
        let registry = Arc::new(Registry::new(None));
        let p = Publisher::new(
            registry.clone(),
            AggregatorConfig::default(),
            Clock::default(),
        );
        assert!(!p.guarded("merge", || panic!("a bug")));
        assert!(p.guarded("publish", || {}));
        p.publish();
        let m = crate::testkit::render_map(&registry);
        assert_eq!(m["goflow_publisher_panics_total"], 1.0);
    }
}

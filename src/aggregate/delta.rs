//! A [`Delta`]: what one input counted since it last handed its counts to the publisher.
//!
//! Owns the per-flow hot path ([`Delta::record`]): sampling correction, the label keys of every
//! flow family and plain `u64` additions into small tables keyed by compact binary keys. No
//! registry, no label strings, no lock, no allocation once the tables have grown to the traffic's
//! working set (they keep their capacity from one shipment to the next).
//!
//! A delta also carries the input's own counters (datagrams per exporter, lines read, parse
//! errors): they travel with the flows they describe, so a scrape that sees an input's counter
//! has every flow counted before it (tests rely on this to know a replay is complete).

use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::{DefaultHashBuilder, HashMap};

use crate::cardinality::{AddrKey, AddrPolicy};
use crate::decode::ErrorType;
use crate::decode::netflow::InterfaceNameFact;
use crate::flow::{Flow, FlowType};
use crate::input::ErrorTally;
use crate::sampling::SamplingPolicy;

/// Address cells one delta logs per direction; flows beyond it count under `other` (exact
/// totals, bounded memory while the publisher is behind).
pub const DELTA_MAX_ADDRESSES: usize = 1 << 20;

/// Slots of the fold cache of an [`AddrTally`]: 512 cells of 40 bytes, 20 KB per direction.
const FOLD_SLOTS: usize = 512;

/// Address cells logged (per direction) past which a delta is shipped early: the publisher looks
/// each one up in its families, and a short log is still in cache when it does.
pub const SHIP_AT_LOGGED: usize = 2048;

/// Distinct samplers or exporters per table past which a delta is shipped early, so that its
/// tables stay in a core's L2 cache, which the kernel's copies of datagrams and the publisher's
/// large tables share with it. (Addresses once had tables of their own under the same bound: 512
/// measured best, socket-thread CPU seconds for 9 M flows at 3 M/s 1.73-2.02 at 4k, 1.57-1.69 at
/// 1k, 1.48-1.50 at 512; they now use the fold cache and log of `AddrTally`.)
pub const CACHE_ADDRESSES: usize = 512;

/// Samplers (and exporters) one delta tells apart; beyond, they count as `other`. Far above
/// [`CACHE_ADDRESSES`], at which a delta is shipped: reached only while the publisher is behind.
pub const DELTA_MAX_SAMPLERS: usize = 1 << 16;

/// (address, carried AS) keys one delta holds per side for `--asn-db`.
pub const DELTA_MAX_CARRIED: usize = 1 << 16;

/// Interface names one delta carries; more are dropped (exporters announce a few, rarely).
pub const DELTA_MAX_NAMES: usize = 1024;

/// Flow keys one delta carries for the active-flows gauge; beyond it they count as overflow.
pub const DELTA_MAX_ACTIVE_KEYS: usize = 1 << 21;

/// Active-flow keys (one per flow, 16 bytes) past which a delta is shipped early: 4 MiB per
/// delta, 16 MiB for an input's four. Shipping by time alone let a fast `--replay` (19 M flows/s,
/// faster than any socket) fill deltas with up to [`DELTA_MAX_ACTIVE_KEYS`]: a 1 GiB replay's
/// peak RSS varied from 10 to 40 MiB with the timing of the publisher, and overflowed the gauge.
/// A socket at 5 M flows/s reaches it every 50 ms, twice the shipments of [`SHIP_EVERY`].
///
/// [`SHIP_EVERY`]: super::SHIP_EVERY
pub const SHIP_AT_ACTIVE_KEYS: usize = 1 << 18;

/// Index of "protocol unknown" in [`Delta::by_protocol`].
const NO_PROTOCOL: usize = 256;

/// A run of flows with one (sampler, flow type): [flows, bytes, packets, last rate].
type SamplerRun = ((Option<IpAddr>, FlowType), [u64; 4]);

/// Which way a flow crosses the `--local-net` boundary (the `direction` label of the
/// `goflow_*_by_direction_total` families), decided on the addresses after NAT attribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Source local, destination not: upload.
    Outbound,
    /// Destination local, source not: download.
    Inbound,
    /// Both local.
    Internal,
    /// Neither local (transit, or traffic of the router itself seen from outside).
    External,
}

impl Direction {
    pub const ALL: [Direction; 4] = [
        Direction::Outbound,
        Direction::Inbound,
        Direction::Internal,
        Direction::External,
    ];

    pub fn of(src_local: bool, dst_local: bool) -> Direction {
        match (src_local, dst_local) {
            (true, false) => Direction::Outbound,
            (false, true) => Direction::Inbound,
            (true, true) => Direction::Internal,
            (false, false) => Direction::External,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
            Direction::Internal => "internal",
            Direction::External => "external",
        }
    }
}

/// [flows, bytes, packets] per [`Direction`] of one sampler.
pub type DirectionSums = [[u64; 3]; 4];

/// Which of a flow's interfaces: the input (IE 10, v5 `input`) or the output (IE 14, `output`);
/// the `direction` label of the `goflow_*_by_interface_total` families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IfSide {
    In,
    Out,
}

impl IfSide {
    pub fn as_str(self) -> &'static str {
        match self {
            IfSide::In => "in",
            IfSide::Out => "out",
        }
    }
}

/// Interface sums of one run of flows (one sampler), before they go to the delta's table: a
/// datagram's flows cross a handful of interfaces, so a short array scanned linearly folds them
/// without hashing per flow.
struct InterfaceRun {
    /// (interface index << 1 | side, [flows, bytes, packets]); `len` used.
    cells: [(u64, [u64; 3]); 8],
    len: usize,
}

impl InterfaceRun {
    const EMPTY: InterfaceRun = InterfaceRun {
        cells: [(0, [0; 3]); 8],
        len: 0,
    };

    /// Adds to the cell of `key`; `false` when the run is full and the key new (flush first).
    #[inline]
    fn add(&mut self, key: u64, values: &[u64; 3]) -> bool {
        for cell in &mut self.cells[..self.len] {
            if cell.0 == key {
                add(&mut cell.1, values);
                return true;
            }
        }
        if self.len == self.cells.len() {
            return false;
        }
        self.cells[self.len] = (key, *values);
        self.len += 1;
        true
    }
}

fn interface_key(index: u32, side: IfSide) -> u64 {
    (u64::from(index) << 1) | u64::from(side == IfSide::Out)
}

/// What [`Delta::record`] sums for the current run of flows before adding it to the delta's
/// tables once. The flows of one datagram share their sampler and type: each run of them is
/// summed here and added to the sampler table once, and the sampler's active-flows index is
/// looked up once.
struct Run {
    /// The run's key and [flows, bytes, packets, last rate].
    sums: Option<SamplerRun>,
    /// `--local-net`: count directions.
    directions: bool,
    /// The run's sums per direction (sampler only: the flow type does not split them).
    direction_sums: DirectionSums,
    interfaces: InterfaceRun,
    /// (sampler, its slot in this delta; `None` when the delta is full of samplers).
    slot: Option<(Option<IpAddr>, Option<u32>)>,
}

impl Run {
    fn new(directions: bool) -> Self {
        Run {
            sums: None,
            directions,
            direction_sums: [[0; 3]; 4],
            interfaces: InterfaceRun::EMPTY,
            slot: None,
        }
    }
}

/// The per-flow rules every input applies: shared, read-only, cloned into each input.
#[derive(Debug, Clone)]
pub struct FlowPolicy {
    pub sampling: SamplingPolicy,
    pub addresses: AddrPolicy,
    /// One seed for every input, so the same flow key has the same fingerprint wherever it is
    /// counted.
    pub hasher: DefaultHashBuilder,
    /// `--interfaces`: count the interface families.
    pub interfaces: bool,
    /// `--asn-db`: count the ASN tallies.
    pub asn: bool,
}

/// Counters of the inputs themselves, published after the flows of the same delta.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputCounts {
    pub stdin_lines: u64,
    pub stdin_bytes: u64,
    pub replay_datagrams: u64,
    pub rejected_datagrams: u64,
}

/// Counts of one input since its last shipment. See the module doc.
#[derive(Debug, Default)]
pub struct Delta {
    /// (sampler, flow type) → [flows, bytes, packets, last rate applied].
    pub(crate) by_sampler_type: HashMap<(Option<IpAddr>, FlowType), [u64; 4]>,
    /// [flows, bytes, packets] by protocol number; index 256 is "unknown".
    pub(crate) by_protocol: Vec<[u64; 3]>,
    /// Sampler → sums per direction (only with `--local-net`).
    pub(crate) by_direction: HashMap<Option<IpAddr>, DirectionSums>,
    /// Sums per direction of samplers beyond [`DELTA_MAX_SAMPLERS`].
    pub(crate) direction_other: DirectionSums,
    /// (sampler, interface index, side) → [flows, bytes, packets].
    pub(crate) by_interface: HashMap<(Option<IpAddr>, u32, IfSide), [u64; 3]>,
    /// Sums per side of samplers beyond [`DELTA_MAX_SAMPLERS`].
    pub(crate) interface_other: [[u64; 3]; 2],
    /// Interface names learned from options data (at most [`DELTA_MAX_NAMES`]).
    pub(crate) interface_names: Vec<InterfaceNameFact>,
    pub(crate) by_src: AddrTally,
    pub(crate) by_dst: AddrTally,
    /// `--asn-db`: per side, the flows that carry an AS number, by (address key, AS number). The
    /// ASN families take every other flow from the address tallies (each address label set
    /// knows its AS from the database); these move the carried ones to their own AS. At most
    /// [`DELTA_MAX_CARRIED`] keys; beyond, a flow counts for its address's AS.
    pub(crate) carried_src: HashMap<(AddrKey, u32), [u64; 2]>,
    pub(crate) carried_dst: HashMap<(AddrKey, u32), [u64; 2]>,
    pub(crate) unknown_rate: u64,
    /// (fingerprint of the flow key, index into `active_samplers`) per flow.
    pub(crate) active: Vec<(u64, u32)>,
    pub(crate) active_samplers: Vec<Option<IpAddr>>,
    /// Sampler → its index in `active_samplers`; at most [`DELTA_MAX_SAMPLERS`].
    sampler_slots: HashMap<Option<IpAddr>, u32>,
    /// [flows, bytes, packets, rate] by flow type of samplers beyond [`DELTA_MAX_SAMPLERS`].
    pub(crate) sampler_other: [[u64; 4]; FlowType::ALL.len()],
    pub(crate) active_dropped: u64,
    /// Exporter address → [datagrams, payload bytes].
    pub(crate) exporters: HashMap<IpAddr, [u64; 2]>,
    /// Datagrams of exporters beyond [`DELTA_MAX_SAMPLERS`].
    pub(crate) exporters_other: [u64; 2],
    /// Templates known per exporter, from the input's decoder (a full snapshot, when sent).
    pub(crate) templates: Option<Vec<(IpAddr, usize)>>,
    pub(crate) errors: ErrorTally,
    pub(crate) inputs: InputCounts,
    /// Longest time the input spent away from its socket since the last shipment (ns).
    pub(crate) receive_gap_max_ns: u64,
    /// Anything recorded since the last shipment.
    pub(crate) dirty: bool,
}

impl Delta {
    pub fn new() -> Self {
        Delta {
            by_protocol: vec![[0; 3]; NO_PROTOCOL + 1],
            ..Delta::default()
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether the address logs have reached [`SHIP_AT_LOGGED`] cells, the sampler tables hold
    /// more keys than fit in a CPU cache ([`CACHE_ADDRESSES`]), or the active-flow keys
    /// [`SHIP_AT_ACTIVE_KEYS`].
    #[inline]
    pub fn is_large(&self) -> bool {
        self.by_src.logged().max(self.by_dst.logged()) >= SHIP_AT_LOGGED
            || self.carried_src.len().max(self.carried_dst.len()) >= CACHE_ADDRESSES
            || self.exporters.len().max(self.sampler_slots.len()) >= CACHE_ADDRESSES
            || self.active.len() >= SHIP_AT_ACTIVE_KEYS
    }

    /// Counts a batch of flows. The hot path: per flow, two slots of the address fold caches, a
    /// sampler slot looked up once per run of one sampler, an array index for the protocol and a
    /// fingerprint for active flows. The helpers it calls per flow are `#[inline]`: out of line,
    /// such small functions have cost this loop 15-25 % before.
    pub fn record(&mut self, flows: &[Flow], policy: &FlowPolicy) {
        if flows.is_empty() {
            return;
        }
        self.dirty = true;
        let mut run = Run::new(policy.addresses.has_local_nets());
        for flow in flows {
            let (rate, known) = policy.sampling.resolve(flow.sampler, flow.sampling_rate);
            let Some((bytes, packets)) = plausible(flow, rate) else {
                self.errors[ErrorType::ImplausibleValue.index()] += 1;
                continue;
            };
            self.unknown_rate += u64::from(!known);
            let slot = self.run_slot(&mut run, flow.sampler);
            let values = [1, bytes, packets];
            self.add_to_run(&mut run, (flow.sampler, flow.flow_type), values, rate);
            let proto = flow.proto.map_or(NO_PROTOCOL, usize::from);
            add(&mut self.by_protocol[proto], &values);
            if policy.interfaces {
                self.add_to_interface_run(&mut run, flow, &values);
            }
            if run.directions {
                let a = &policy.addresses;
                let d = Direction::of(a.is_local(flow.src_addr), a.is_local(flow.dst_addr));
                add(&mut run.direction_sums[d as usize], &values);
            }
            self.add_addresses(flow, bytes, policy);
            self.note_active(flow, slot, policy);
        }
        if let Some(done) = run.sums.take() {
            self.end_run(done, &mut run);
        }
    }

    /// The slot of `sampler` (see [`Delta::sampler_slot`]), looked up once per run of flows of
    /// one sampler.
    #[inline]
    fn run_slot(&mut self, run: &mut Run, sampler: Option<IpAddr>) -> Option<u32> {
        match run.slot {
            Some((s, i)) if s == sampler => i,
            _ => {
                let i = self.sampler_slot(sampler);
                run.slot = Some((sampler, i));
                i
            }
        }
    }

    /// Adds a flow's `values` to the run of `key`; a flow of another key ends the run first.
    #[inline]
    fn add_to_run(
        &mut self,
        run: &mut Run,
        key: (Option<IpAddr>, FlowType),
        values: [u64; 3],
        rate: u64,
    ) {
        match &mut run.sums {
            Some((k, sums)) if *k == key => {
                add(&mut sums[..3], &values);
                sums[3] = rate;
            }
            _ => {
                let [flows, bytes, packets] = values;
                if let Some(done) = run.sums.replace((key, [flows, bytes, packets, rate])) {
                    self.end_run(done, run);
                }
            }
        }
    }

    /// Adds a flow's `values` to the run's cells of its two interfaces (`--interfaces`); a full
    /// run array is moved to the sampler's cells first.
    #[inline]
    fn add_to_interface_run(&mut self, run: &mut Run, flow: &Flow, values: &[u64; 3]) {
        for (index, side) in [(flow.in_if, IfSide::In), (flow.out_if, IfSide::Out)] {
            let key = interface_key(index, side);
            if !run.interfaces.add(key, values) {
                self.add_interfaces(flow.sampler, &mut run.interfaces);
                run.interfaces.add(key, values);
            }
        }
    }

    /// Moves the sums of an ended run (`done`, and the per-direction and per-interface sums of
    /// `run`) to the delta's tables.
    #[inline]
    fn end_run(&mut self, done: SamplerRun, run: &mut Run) {
        let sampler = done.0.0;
        if run.directions {
            self.add_directions(sampler, &mut run.direction_sums);
        }
        self.add_interfaces(sampler, &mut run.interfaces);
        self.add_sampler_run(done);
    }

    /// A flow's bytes in the address tallies, and with `--asn-db` in the carried-AS tables.
    #[inline]
    fn add_addresses(&mut self, flow: &Flow, bytes: u64, policy: &FlowPolicy) {
        let src = policy.addresses.key(flow.src_addr);
        self.by_src.add(src, policy.hasher.hash_one(src), bytes);
        let dst = policy.addresses.key(flow.dst_addr);
        self.by_dst.add(dst, policy.hasher.hash_one(dst), bytes);
        // Exporters that carry AS numbers are BGP routers; MikroTik never does, and then
        // this costs one comparison per side.
        if policy.asn && (flow.src_as | flow.dst_as) != 0 {
            self.add_carried([(src, flow.src_as), (dst, flow.dst_as)], bytes);
        }
    }

    /// A flow that carries an AS number, by (address key, AS) per side (source, destination);
    /// a side without one (0), or a new key in a full table, is left to the address's AS.
    fn add_carried(&mut self, sides: [(AddrKey, u32); 2], bytes: u64) {
        let tables = [&mut self.carried_src, &mut self.carried_dst];
        for (table, (key, asn)) in tables.into_iter().zip(sides) {
            let full = table.len() >= DELTA_MAX_CARRIED;
            if asn == 0 || (full && !table.contains_key(&(key, asn))) {
                continue;
            }
            add(table.entry((key, asn)).or_insert([0; 2]), &[1, bytes]);
        }
    }

    /// A flow's fingerprint for the active-flows gauge, under its sampler's `slot`; counted as
    /// dropped without a slot or past [`DELTA_MAX_ACTIVE_KEYS`].
    #[inline]
    fn note_active(&mut self, flow: &Flow, slot: Option<u32>, policy: &FlowPolicy) {
        let Some(index) = slot.filter(|_| self.active.len() < DELTA_MAX_ACTIVE_KEYS) else {
            self.active_dropped += 1;
            return;
        };
        let fingerprint = policy.hasher.hash_one((
            flow.sampler,
            flow.src_addr,
            flow.dst_addr,
            flow.src_port,
            flow.dst_port,
            flow.proto,
        ));
        self.active.push((fingerprint, index));
    }

    /// Moves a run's interface sums to its sampler's cells (or the overflow cells, as for
    /// [`Delta::add_sampler_run`]) and empties the run.
    fn add_interfaces(&mut self, sampler: Option<IpAddr>, run: &mut InterfaceRun) {
        let known = self.sampler_slots.contains_key(&sampler);
        for &(key, values) in &run.cells[..run.len] {
            let side = if key & 1 == 1 {
                IfSide::Out
            } else {
                IfSide::In
            };
            let cell = if known {
                self.by_interface
                    .entry((sampler, (key >> 1) as u32, side))
                    .or_insert([0; 3])
            } else {
                &mut self.interface_other[side as usize]
            };
            add(cell, &values);
        }
        run.len = 0;
    }

    /// Adds a run's sums per direction to its sampler's cell (or the overflow cell, as for
    /// [`Delta::add_sampler_run`]) and zeroes them for the next run.
    fn add_directions(&mut self, sampler: Option<IpAddr>, sums: &mut DirectionSums) {
        let cell = if self.sampler_slots.contains_key(&sampler) {
            self.by_direction.entry(sampler).or_insert([[0; 3]; 4])
        } else {
            &mut self.direction_other
        };
        for (total, run) in cell.iter_mut().zip(sums.iter_mut()) {
            add(total, run);
            *run = [0; 3];
        }
    }

    /// Adds a run's sums to its sampler's cell, or to the overflow cell of its flow type when
    /// the delta holds [`DELTA_MAX_SAMPLERS`] samplers already.
    fn add_sampler_run(&mut self, ((sampler, flow_type), sums): SamplerRun) {
        let cell = if self.sampler_slots.contains_key(&sampler) {
            self.by_sampler_type
                .entry((sampler, flow_type))
                .or_insert([0; 4])
        } else {
            &mut self.sampler_other[flow_type as usize]
        };
        add(&mut cell[..3], &sums[..3]);
        cell[3] = sums[3];
    }

    /// The slot of `sampler` in this delta (its index in `active_samplers`), made on first
    /// sight; `None` once the delta holds [`DELTA_MAX_SAMPLERS`] (a flood of spoofed sources
    /// while the publisher is behind: the rest count as `other`, memory stays bounded).
    fn sampler_slot(&mut self, sampler: Option<IpAddr>) -> Option<u32> {
        if let Some(i) = self.sampler_slots.get(&sampler) {
            return Some(*i);
        }
        if self.sampler_slots.len() >= DELTA_MAX_SAMPLERS {
            return None;
        }
        let i = self.active_samplers.len() as u32;
        self.active_samplers.push(sampler);
        self.sampler_slots.insert(sampler, i);
        Some(i)
    }

    /// Takes interface names learned by the input's decoder (leaves `names` empty).
    pub fn add_interface_names(&mut self, names: &mut Vec<InterfaceNameFact>) {
        self.dirty = true;
        let room = DELTA_MAX_NAMES.saturating_sub(self.interface_names.len());
        self.interface_names.extend(names.drain(..).take(room));
        names.clear();
    }

    /// Counts one datagram of `len` bytes from `exporter`.
    pub fn count_datagram(&mut self, exporter: IpAddr, len: usize) {
        self.dirty = true;
        let cell = if self.exporters.len() < DELTA_MAX_SAMPLERS {
            self.exporters.entry(exporter).or_insert([0; 2])
        } else {
            match self.exporters.get_mut(&exporter) {
                Some(cell) => cell,
                None => &mut self.exporters_other,
            }
        };
        add(cell, &[1, len as u64]);
    }

    /// Adds a tally of parse errors.
    pub fn count_errors(&mut self, tally: &ErrorTally) {
        for (sum, n) in self.errors.iter_mut().zip(tally) {
            *sum += n;
        }
        self.dirty |= tally.iter().any(|n| *n != 0);
    }

    /// Adds one parse error.
    pub fn count_error(&mut self, error: ErrorType) {
        self.errors[error.index()] += 1;
        self.dirty = true;
    }

    /// The input's own counters, to add to.
    pub fn inputs(&mut self) -> &mut InputCounts {
        self.dirty = true;
        &mut self.inputs
    }

    /// Replaces the input's snapshot of templates known per exporter.
    pub fn set_templates(&mut self, templates: Vec<(IpAddr, usize)>) {
        self.templates = Some(templates);
        self.dirty = true;
    }

    /// Notes how long the input was away from its socket.
    pub fn note_receive_gap(&mut self, ns: u64) {
        self.receive_gap_max_ns = self.receive_gap_max_ns.max(ns);
    }

    /// What the tables held before they were drained: the size to keep for the next round.
    pub(crate) fn sizes(&self) -> [usize; 3] {
        [
            self.by_src.logged(),
            self.by_dst.logged(),
            self.active.len(),
        ]
    }

    /// Empties the delta for reuse. Tables keep their capacity (no regrowth next round), unless
    /// a burst left one far larger than `sizes` (from `Delta::sizes` before draining) needs.
    pub fn clear(&mut self, sizes: [usize; 3]) {
        self.by_src.clear(sizes[0]);
        self.by_dst.clear(sizes[1]);
        self.carried_src.clear();
        self.carried_dst.clear();
        shrink_if_oversized(&mut self.carried_src, 1024);
        shrink_if_oversized(&mut self.carried_dst, 1024);
        if self.active.capacity() > 4 * sizes[2].max(1 << 16) {
            self.active = Vec::with_capacity(sizes[2]);
        }
        self.active.clear();
        // Tables keyed by sampler or exporter grow only in floods: give the memory back.
        self.by_sampler_type.clear();
        self.by_direction.clear();
        self.direction_other = Default::default();
        self.by_interface.clear();
        self.interface_other = Default::default();
        self.interface_names.clear();
        self.exporters.clear();
        self.sampler_slots.clear();
        self.active_samplers.clear();
        shrink_if_oversized(&mut self.by_sampler_type, 64);
        shrink_if_oversized(&mut self.by_direction, 64);
        shrink_if_oversized(&mut self.by_interface, 1024);
        shrink_if_oversized(&mut self.exporters, 64);
        shrink_if_oversized(&mut self.sampler_slots, 64);
        self.active_samplers.shrink_to(64);
        self.by_protocol.iter_mut().for_each(|c| *c = [0; 3]);
        self.sampler_other = Default::default();
        self.exporters_other = [0; 2];
        self.templates = None;
        self.unknown_rate = 0;
        self.active_dropped = 0;
        self.errors = [0; ErrorType::ALL.len()];
        self.inputs = InputCounts::default();
        self.receive_gap_max_ns = 0;
        self.dirty = false;
    }
}

/// Bytes per second of the fastest link a flow can cross: 400 Gb/s.
pub const MAX_BYTES_PER_SECOND: u64 = 400_000_000_000 / 8;
/// Packets per second of that link at its smallest frames (84 bytes on the wire).
pub const MAX_PACKETS_PER_SECOND: u64 = 400_000_000_000 / 8 / 84;
/// The longest a flow is taken to last: its duration when the record gives one (at least a
/// second), else an hour (longer than any exporter's active timeout).
const MAX_FLOW_SECONDS: u64 = 3600;

/// The flow's bytes and packets scaled by `rate`, or `None` when either is more than a 400 Gb/s
/// link carries in the flow's duration: a record no link can produce (a lying or broken
/// exporter). Such a record is counted as `implausible_value` and added nowhere, so no counter
/// can be pushed to its limit by one record; sums of plausible records saturate at the publisher
/// instead of wrapping.
#[inline]
pub fn plausible(flow: &Flow, rate: u64) -> Option<(u64, u64)> {
    let seconds = match flow.time_flow_end_ns.checked_sub(flow.time_flow_start_ns) {
        Some(ns) if flow.time_flow_start_ns != 0 => {
            ns.div_ceil(1_000_000_000).clamp(1, MAX_FLOW_SECONDS)
        }
        _ => MAX_FLOW_SECONDS,
    };
    let bytes = flow.bytes.checked_mul(rate)?;
    let packets = flow.packets.checked_mul(rate)?;
    (bytes <= MAX_BYTES_PER_SECOND * seconds && packets <= MAX_PACKETS_PER_SECOND * seconds)
        .then_some((bytes, packets))
}

/// One direction's address counts in a delta: a small direct-mapped cache that folds repeated
/// addresses in place, and a log of the cells it evicts, written in order.
///
/// Why not a hash table of every address: with many distinct addresses (a scan, a busy edge
/// router) each insert into the table missed the CPU cache (a delta comes back from the publisher
/// cold), and the publisher looked every address up again anyway. The cache stays hot (20 KB) and
/// the log is written sequentially; with few addresses the cache folds nearly every flow, so the
/// publisher still sees one cell per address per shipment. Measured in BENCHMARKS.md (issue 9).
#[derive(Debug)]
pub(crate) struct AddrTally {
    /// (key, [flows, bytes]); a slot with 0 flows is empty.
    slots: Box<[(AddrKey, [u64; 2])]>,
    log: Vec<(AddrKey, [u64; 2])>,
    /// Cells evicted while the log held [`DELTA_MAX_ADDRESSES`]: counted under `other`.
    pub(crate) other: [u64; 2],
}

impl Default for AddrTally {
    fn default() -> Self {
        AddrTally {
            slots: vec![Default::default(); FOLD_SLOTS].into_boxed_slice(),
            log: Vec::new(),
            other: [0; 2],
        }
    }
}

impl AddrTally {
    /// Counts one flow of `bytes` for `key` (`hash` is its hash: the slot is its top bits).
    #[inline]
    fn add(&mut self, key: AddrKey, hash: u64, bytes: u64) {
        const SHIFT: u32 = u64::BITS - FOLD_SLOTS.trailing_zeros();
        let slot = &mut self.slots[(hash >> SHIFT) as usize];
        if slot.1[0] != 0 {
            if slot.0 == key {
                add(&mut slot.1, &[1, bytes]);
                return;
            }
            if self.log.len() < DELTA_MAX_ADDRESSES {
                self.log.push(*slot);
            } else {
                add(&mut self.other, &slot.1);
            }
        }
        *slot = (key, [1, bytes]);
    }

    /// Cells in the log.
    #[inline]
    pub(crate) fn logged(&self) -> usize {
        self.log.len()
    }

    /// Every cell: the log, then the cache (a key may appear more than once; each cell is to be
    /// added). Leaves the tally empty but for `other`.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (AddrKey, [u64; 2])> + '_ {
        let cached = self
            .slots
            .iter_mut()
            .filter(|s| s.1[0] != 0)
            .map(std::mem::take);
        self.log.drain(..).chain(cached)
    }

    /// Empties the tally; the log keeps its capacity unless a burst left it far larger than
    /// `used` (what it held before it was drained) needs.
    fn clear(&mut self, used: usize) {
        self.slots.fill(Default::default());
        if self.log.capacity() > 4 * used.max(SHIP_AT_LOGGED) {
            self.log = Vec::with_capacity(used.max(SHIP_AT_LOGGED));
        }
        self.log.clear();
        self.other = [0; 2];
    }
}

/// Saturating addition of `values` into `cells`: a counter may stop, never wrap.
#[inline]
fn add(cells: &mut [u64], values: &[u64]) {
    for (c, v) in cells.iter_mut().zip(values) {
        *c = c.saturating_add(*v);
    }
}

/// Releases a table that grew far past `used` (after a burst): above 4,096 entries of capacity
/// and eight times what is used.
fn shrink_if_oversized<K: std::hash::Hash + Eq, V>(table: &mut HashMap<K, V>, used: usize) {
    if table.capacity() > 4096 && used < table.capacity() / 8 {
        table.shrink_to(used * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cardinality::AddrPolicy;

    fn key(i: u32) -> AddrKey {
        AddrPolicy::default().key(Some(IpAddr::V4(i.into())))
    }

    /// Sums what a drain yields per key.
    fn drained(t: &mut AddrTally) -> HashMap<AddrKey, [u64; 2]> {
        let mut sums = HashMap::new();
        for (k, [flows, bytes]) in t.drain() {
            let e = sums.entry(k).or_insert([0, 0]);
            e[0] += flows;
            e[1] += bytes;
        }
        sums
    }

    #[test]
    fn the_fold_cache_folds_repeats_and_logs_what_it_evicts() {
        let hasher = DefaultHashBuilder::default();
        let mut t = AddrTally::default();
        // Few keys, many flows: folded in place, nothing logged.
        for round in 0..100u64 {
            for i in 0..8 {
                t.add(key(i), hasher.hash_one(key(i)), round);
            }
        }
        let few = drained(&mut t);
        assert_eq!(few.len(), 8);
        assert!(few.values().all(|v| *v == [100, (0..100).sum::<u64>()]));
        // Many keys (each seen three times): evictions go to the log, and every flow is in the
        // drain exactly once whatever the collisions.
        t.clear(0);
        let n = 10 * FOLD_SLOTS as u32;
        for _ in 0..3 {
            for i in 0..n {
                t.add(key(i), hasher.hash_one(key(i)), u64::from(i));
            }
        }
        assert!(
            t.logged() > 2 * n as usize,
            "most cells evicted: {}",
            t.logged()
        );
        let many = drained(&mut t);
        assert_eq!(many.len(), n as usize);
        assert!(many.iter().all(|(k, v)| {
            *v == [
                3,
                3 * u64::from(k.label().parse::<std::net::Ipv4Addr>().unwrap().to_bits()),
            ]
        }));
        // Drained means empty.
        assert_eq!(t.logged(), 0);
        assert_eq!(t.drain().count(), 0);
    }

    #[test]
    fn a_full_log_counts_under_other() {
        let hasher = DefaultHashBuilder::default();
        let mut t = AddrTally::default();
        let n = (DELTA_MAX_ADDRESSES + 4 * FOLD_SLOTS) as u32;
        for i in 0..n {
            t.add(key(i), hasher.hash_one(key(i)), 10);
        }
        assert_eq!(t.logged(), DELTA_MAX_ADDRESSES);
        let cells: u64 = t.drain().map(|(_, v)| v[0]).sum();
        // Nothing lost: what the log could not take is in `other`.
        assert_eq!(cells + t.other[0], u64::from(n));
        assert_eq!(t.other[1], 10 * t.other[0]);
        assert!(t.other[0] > 0);
    }
}

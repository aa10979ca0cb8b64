//! NetFlow v5 / v9 / IPFIX datagrams → [`Flow`] records: the [`DatagramDecoder`] trait and its
//! product implementation, [`NetflowDecoder`].
//!
//! Owns everything between "these bytes came from that exporter" and flow records: exporter
//! scopes and their compiled templates, the sampling state learned from options data, the set
//! walk, the conversion of field values (as goflow2 maps them) and flow times. It does no I/O and
//! writes no metrics: the UDP and replay inputs call [`DatagramDecoder::decode`] and count what it
//! reports. Template records and layouts are [`super::template`]'s; the `netflow_parser` based
//! decoder it replaced is kept as a test oracle in [`super::reference`].
//!
//! Decisions:
//! - The rest of the program sees only the [`DatagramDecoder`] trait.
//! - Zero allocation per record and per set once templates are known: a template is compiled
//!   once into a layout (offsets for fixed-length templates, a field walk for variable-length
//!   ones), looked up once per set, and records are read in place from the datagram. The clock
//!   is read once per v9/IPFIX datagram (scope idleness, template TTL), never per record.
//! - Per-set loss accounting: a bad or unknown set costs only itself (one `malformed` or one
//!   `missing_template`), a zero-filled tail stops the walk cleanly, a record running past its
//!   set is `malformed` (the records before it count).
//! - Bounded memory against spoofed sources: caps on exporter scopes (least recently seen
//!   evicted), templates per scope (least recently used evicted), fields per template, template
//!   size and samplers per scope; idle scopes are pruned on a timer. A datagram without templates
//!   creates no state at all.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use super::ErrorType;
use super::detail;
use super::template::{
    self, Damaged, FixedPlan, Kind, Layout, Shape, Slot, Target, TemplateRecord, TemplateRecords,
    TimeUnit,
};
use crate::flow::{Flow, FlowDetail, FlowType, unmap_v4};

/// What decoding one datagram went through, for the caller's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DatagramReport {
    /// NetFlow version from the header (0 when too short to have one).
    pub version: u16,
    pub flows: usize,
    pub malformed: u32,
    pub unsupported_version: u32,
    /// Data sets whose template is not known (yet): their records are not decoded.
    pub missing_template: u32,
    /// The decoder panicked (set by the caller that caught it).
    pub panicked: u32,
}

impl DatagramReport {
    /// The report's errors as `(error_type, count)` pairs.
    pub fn errors(&self) -> [(ErrorType, u32); 4] {
        [
            (ErrorType::MalformedDatagram, self.malformed),
            (ErrorType::UnsupportedVersion, self.unsupported_version),
            (ErrorType::MissingTemplate, self.missing_template),
            (ErrorType::DecoderPanic, self.panicked),
        ]
    }
}

/// Decodes datagrams from many exporters. One instance is owned by one task (per socket):
/// template and sampling state is never shared.
pub trait DatagramDecoder: Send {
    /// Decodes one UDP payload from `exporter`, received at `received_ns` (Unix ns), appending its
    /// flows to `out`.
    fn decode(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        received_ns: u64,
        out: &mut Vec<Flow>,
    ) -> DatagramReport {
        self.decode_detailed(exporter, datagram, received_ns, out, None)
    }

    /// [`decode`](Self::decode), and with `details` also the goflow2 detail fields of each flow
    /// (for flow lines): [`NetflowDecoder`] appends exactly one [`FlowDetail`] per flow it
    /// appends, in the same order. Without `details` nothing but the flows is read.
    fn decode_detailed(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        received_ns: u64,
        out: &mut Vec<Flow>,
        details: Option<&mut Vec<FlowDetail>>,
    ) -> DatagramReport;

    /// Forgets exporters idle for longer than `idle`. Returns how many were removed.
    fn prune_idle(&mut self, idle: Duration) -> usize;

    /// Moves the interface names learned from options data since the last call (new or
    /// changed ones only) to `out`. Decoders that learn none leave it alone.
    fn drain_interface_names(&mut self, _out: &mut Vec<InterfaceNameFact>) {}

    /// Templates currently known per exporter address (all versions and domains together).
    fn templates_per_exporter(&self) -> Vec<(IpAddr, usize)>;
}

/// An interface name an exporter announced in options data (IE 82 with the interface as scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceNameFact {
    pub exporter: IpAddr,
    pub index: u32,
    pub name: Box<str>,
}

/// Interface names remembered per exporter scope (to announce only new or changed ones), in all
/// scopes together (a spoofed source can bring templates and options in one datagram: the total
/// keeps that at ~0.5 MB), and waiting to be drained: beyond these, new names are ignored.
const MAX_NAMES_PER_SCOPE: usize = 1024;
const MAX_NAMES: usize = 4096;
const MAX_PENDING_NAMES: usize = 1024;
/// Longest interface name kept, in bytes.
const MAX_NAME_BYTES: usize = 64;

/// Limits that keep memory bounded whatever arrives on the port.
#[derive(Debug, Clone, Copy)]
pub struct DecoderLimits {
    /// Exporter scopes (address:port × version × source id / domain) with template caches.
    pub max_exporters: usize,
    /// Templates per exporter scope, data and options templates together (the reference decoder
    /// applies it per template kind instead: 2 caches per v9 scope, 4 per IPFIX scope).
    pub max_templates: usize,
    pub max_fields_per_template: usize,
    pub max_template_bytes: usize,
    /// Templates not refreshed for this long are dropped.
    pub template_ttl: Duration,
    /// Sampler ids remembered per exporter scope (IE 48 rows of options data).
    pub max_samplers_per_exporter: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        // 64 templates and 128 fields per template: a spoofed source flooding 1000 large
        // templates was measured to hold 0.16 MiB with these bounds, against 191 MiB with
        // `netflow_parser`'s defaults. Real exporters use 2-10 templates of 10-40 fields.
        DecoderLimits {
            max_exporters: 1000,
            max_templates: 64,
            max_fields_per_template: 128,
            max_template_bytes: 2048,
            template_ttl: Duration::from_secs(3600),
            max_samplers_per_exporter: 64,
        }
    }
}

/// Scope of templates and options state: (exporter, version, source id / observation domain).
type ScopeKey = (SocketAddr, u16, u32);

/// A compiled template and its bookkeeping.
struct Template {
    layout: Layout,
    /// When it was last (re)defined: templates not refreshed within the TTL are dropped.
    learned: Instant,
    /// The decoder's datagram counter when it was last used: the least recently used template is
    /// evicted when a scope is full.
    used: u64,
}

/// Sampling and time facts learned from options data.
#[derive(Debug, Default)]
struct Sampling {
    /// Rate from the most recent options record (any sampler).
    last_rate: u64,
    /// Rates by sampler id (IE 48 / 302 in options data). A short list, scanned linearly:
    /// exporters run one to a few samplers, and a scan of a few entries beats hashing per record.
    by_sampler: Vec<(u64, u64)>,
    /// systemInitTimeMilliseconds (IE 160) from options data (softflowd sends it there).
    sys_init_ms: Option<u64>,
    /// Interface names from options data (IE 82), at most [`MAX_NAMES_PER_SCOPE`].
    if_names: HashMap<u32, Box<str>>,
}

impl Sampling {
    fn rate_of(&self, sampler_id: u64) -> Option<u64> {
        self.by_sampler
            .iter()
            .find(|(id, _)| *id == sampler_id)
            .map(|(_, rate)| *rate)
    }
}

/// One exporter scope: its templates and options state.
struct Scope {
    templates: HashMap<u16, Template>,
    sampling: Sampling,
    last_seen: Instant,
    /// Datagrams seen (saturating): 1 means on probation (see `scope_or_insert`).
    datagrams: u32,
}

/// What every set and record of one v9/IPFIX message shares.
struct Message {
    version: u16,
    key: ScopeKey,
    /// The flow fields every record of the message starts from (type, sampler, domain, receive
    /// time).
    base: Flow,
    /// Export time of the message, Unix ms, and in ns (computed once per message).
    export_ms: i128,
    export_ns: u64,
    /// v9 header sysUptime (ms); IPFIX has none.
    sys_uptime_ms: Option<i128>,
    /// The header's sequence number (a detail field of flow lines).
    sequence: u32,
    /// `--nat-attribution` (the decoder's setting).
    nat_attribution: bool,
    now: Instant,
}

/// The product [`DatagramDecoder`]: hand-written, compiled templates, no allocation per record.
pub struct NetflowDecoder {
    limits: DecoderLimits,
    scopes: HashMap<ScopeKey, Scope>,
    /// Scopes in the order they were created, for eviction among those on probation.
    probation: VecDeque<ScopeKey>,
    /// Datagrams decoded so far: the clock of template LRU eviction (no clock read needed).
    tick: u64,
    /// `--nat-attribution`: a flow's destination is the one after NAT when the record has one.
    nat_attribution: bool,
    /// Interface names learned and not yet drained (at most [`MAX_PENDING_NAMES`]).
    pending_names: Vec<InterfaceNameFact>,
    /// Names remembered in all scopes (at most [`MAX_NAMES`]).
    names_total: usize,
}

impl NetflowDecoder {
    pub fn new(limits: DecoderLimits) -> Self {
        NetflowDecoder {
            limits,
            scopes: HashMap::new(),
            probation: VecDeque::new(),
            tick: 0,
            nat_attribution: false,
            pending_names: Vec::new(),
            names_total: 0,
        }
    }

    /// With `--nat-attribution`: each flow's destination is its destination after NAT (IE 226 /
    /// 282) when the record carries a non-zero one, so a reply to the router's outside address
    /// is the inside host's. The exported destination stays in the flow's details (flow lines).
    pub fn with_nat_attribution(mut self, on: bool) -> Self {
        self.nat_attribution = on;
        self
    }

    /// The scope of `msg`, created if needed. When the table is full, only a scope still on
    /// probation (it has sent one datagram) makes room, oldest first: a flood of spoofed
    /// sources, one datagram each, churns among themselves and never evicts an exporter that has
    /// been sending. `None` when every scope is established (the datagram's templates are not
    /// learned; its exporter's data counts as `missing_template` until a scope frees up).
    fn scope_or_insert(&mut self, msg: &Message) -> Option<&mut Scope> {
        let max = self.limits.max_exporters.max(1);
        if !self.scopes.contains_key(&msg.key) {
            if self.scopes.len() >= max {
                let victim = loop {
                    let key = self.probation.pop_front()?;
                    if self.scopes.get(&key).is_some_and(|s| s.datagrams <= 1) {
                        break key;
                    }
                };
                if let Some(gone) = self.scopes.remove(&victim) {
                    self.names_total -= gone.sampling.if_names.len();
                }
            }
            if self.probation.len() >= 4 * max {
                // Keys of scopes since established or gone: dropped, so the queue stays bounded.
                let scopes = &self.scopes;
                self.probation
                    .retain(|k| scopes.get(k).is_some_and(|s| s.datagrams <= 1));
            }
            self.probation.push_back(msg.key);
        }
        Some(self.scopes.entry(msg.key).or_insert_with(|| Scope {
            templates: HashMap::new(),
            sampling: Sampling::default(),
            last_seen: msg.now,
            datagrams: 1,
        }))
    }

    /// Reads a v9 (20 bytes) or IPFIX (16 bytes) header; returns the message facts and the bytes
    /// holding its sets.
    fn header<'d>(
        exporter: SocketAddr,
        datagram: &'d [u8],
        received_ns: u64,
        report: &mut DatagramReport,
    ) -> Option<(Message, &'d [u8])> {
        let version = report.version;
        let (header_len, end) = if version == 9 {
            (20, datagram.len())
        } else {
            // IPFIX: the header's length bounds the message; a datagram shorter than it is
            // truncated (decode the complete sets, count the loss).
            let declared = usize::from(be16(datagram, 2).unwrap_or(0));
            if declared < 16 {
                report.malformed += 1;
                return None;
            }
            if declared > datagram.len() {
                report.malformed += 1;
            }
            (16, declared.min(datagram.len()))
        };
        let Some(sets) = datagram.get(header_len..end) else {
            report.malformed += 1;
            return None;
        };
        // v9: bytes 12..16 (after unix_secs); IPFIX: 8..12 (after export time).
        let sequence = be32(datagram, if version == 9 { 12 } else { 8 }).unwrap_or(0);
        let (flow_type, domain, export_s, sys_uptime_ms) = if version == 9 {
            let uptime = be32(datagram, 4).unwrap_or(0);
            let secs = be32(datagram, 8).unwrap_or(0);
            let source_id = be32(datagram, 16).unwrap_or(0);
            (
                FlowType::NetflowV9,
                source_id,
                secs,
                Some(i128::from(uptime)),
            )
        } else {
            let secs = be32(datagram, 4).unwrap_or(0);
            let domain = be32(datagram, 12).unwrap_or(0);
            (FlowType::Ipfix, domain, secs, None)
        };
        let base = Flow {
            flow_type,
            sampler: Some(unmap_v4(exporter.ip())),
            time_received_ns: received_ns,
            observation_domain: domain,
            ..Flow::default()
        };
        let msg = Message {
            version,
            key: (exporter, version, domain),
            base,
            export_ms: i128::from(export_s) * 1000,
            export_ns: ms_to_ns(i128::from(export_s) * 1000),
            sys_uptime_ms,
            sequence,
            nat_attribution: false,
            now: Instant::now(),
        };
        Some((msg, sets))
    }

    /// Decodes a v9 or IPFIX message set by set.
    fn decode_sets(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        received_ns: u64,
        out: &mut Vec<Flow>,
        mut details: Option<&mut Vec<FlowDetail>>,
        report: &mut DatagramReport,
    ) {
        let Some((mut msg, mut rest)) = Self::header(exporter, datagram, received_ns, report)
        else {
            return;
        };
        msg.nat_attribution = self.nat_attribution;
        self.tick += 1;
        if let Some(scope) = self.scopes.get_mut(&msg.key) {
            scope.last_seen = msg.now;
            scope.datagrams = scope.datagrams.saturating_add(1);
        }
        while !rest.is_empty() {
            let set_len = be16(rest, 2).map_or(0, usize::from);
            if rest.len() < 4 || set_len < 4 {
                // A zero-filled tail (seen from exporters padding to a fixed size) ends the
                // message; anything else there is damage.
                if rest.iter().any(|&b| b != 0) {
                    report.malformed += 1;
                }
                break;
            }
            if set_len > rest.len() {
                report.malformed += 1;
                break;
            }
            let (set, tail) = rest.split_at(set_len);
            rest = tail;
            let set_id = be16(set, 0).unwrap_or(0);
            let body = &set[4..];
            if template::template_set_kind(msg.version, set_id).is_some() {
                self.learn(&msg, set_id, body, report);
            } else if set_id >= 256 {
                self.data_set(&msg, set_id, body, out, details.as_deref_mut(), report);
            }
            // Other set ids are reserved (v9 2-255, IPFIX 0-1 and 4-255): skipped, not errors.
        }
    }

    /// Learns (or withdraws) the templates of one template set. The set is malformed when it
    /// yields no usable template and withdraws nothing.
    fn learn(&mut self, msg: &Message, set_id: u16, body: &[u8], report: &mut DatagramReport) {
        let Some(records) = TemplateRecords::new(msg.version, set_id, body) else {
            return;
        };
        let limits = self.limits;
        let tick = self.tick;
        let Some(scope) = self.scope_or_insert(msg) else {
            return;
        };
        let (mut usable, mut withdrawn) = (0usize, false);
        for record in records {
            match record {
                TemplateRecord::Define(spec) => {
                    match template::compile(msg.version, &spec, &limits) {
                        Ok(layout) => {
                            usable += 1;
                            // Ids below 256 name sets, never data: valid, but never used.
                            if spec.id >= 256 {
                                let t = Template {
                                    layout,
                                    learned: msg.now,
                                    used: tick,
                                };
                                insert_template(scope, spec.id, t, limits.max_templates);
                            }
                        }
                        // An unusable redefinition must not leave the old layout decoding the
                        // new records into garbage: the id is forgotten.
                        Err(_) => {
                            scope.templates.remove(&spec.id);
                        }
                    }
                }
                TemplateRecord::Withdraw { id, kind } => {
                    withdrawn = true;
                    withdraw(scope, id, kind, set_id);
                }
            }
        }
        if usable == 0 && !withdrawn {
            report.malformed += 1;
        }
    }

    /// Decodes one data or options data set with its compiled template.
    fn data_set(
        &mut self,
        msg: &Message,
        set_id: u16,
        body: &[u8],
        out: &mut Vec<Flow>,
        details: Option<&mut Vec<FlowDetail>>,
        report: &mut DatagramReport,
    ) {
        let ttl = self.limits.template_ttl;
        let max_samplers = self.limits.max_samplers_per_exporter;
        let Some(Scope {
            templates,
            sampling,
            ..
        }) = self.scopes.get_mut(&msg.key)
        else {
            report.missing_template += 1;
            return;
        };
        let Some(t) = templates.get_mut(&set_id) else {
            report.missing_template += 1;
            return;
        };
        if msg.now.saturating_duration_since(t.learned) > ttl {
            templates.remove(&set_id);
            report.missing_template += 1;
            return;
        }
        t.used = self.tick;
        let before = out.len();
        let names = Names {
            pending: &mut self.pending_names,
            total: &mut self.names_total,
        };
        let walked = decode_records(&t.layout, body, msg, sampling, max_samplers, out, names);
        report.flows += out.len() - before;
        if let Some(details) = details {
            detail::records(&t.layout, body, msg.sequence, &out[before..], details);
        }
        if walked.is_err() {
            report.malformed += 1;
        }
    }

    /// v5: 24-byte header, 48-byte records ([`v5_records`]).
    fn decode_v5(
        exporter: SocketAddr,
        datagram: &[u8],
        received_ns: u64,
        out: &mut Vec<Flow>,
        report: &mut DatagramReport,
    ) {
        let Some(records) = v5_records(datagram) else {
            report.malformed += 1;
            return;
        };
        let count = records.len() / 48;
        let field = |at| be32(datagram, at).map_or(0, i128::from);
        let uptime = field(4);
        // Export time in ns, the header's nanoseconds included (goflow2 keeps them too).
        let export_ns = field(8) * 1_000_000_000 + field(12);
        let rate = u64::from(be16(datagram, 22).unwrap_or(0) & 0x3FFF);
        let base = Flow {
            flow_type: FlowType::NetflowV5,
            sampler: Some(unmap_v4(exporter.ip())),
            sampling_rate: rate,
            time_received_ns: received_ns,
            ..Flow::default()
        };
        // Signed arithmetic: a first/last after sysUptime (clock skew) lands slightly in the
        // future instead of ~49.7 days in the past as with goflow2's u32 wrap-around.
        let at = |switched: u32| ns(export_ns - (uptime - i128::from(switched)) * 1_000_000);
        for r in records.chunks_exact(48) {
            let b = |i: usize| r[i];
            let w = |i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
            let d = |i: usize| u32::from_be_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
            out.push(Flow {
                src_addr: Some(IpAddr::V4(Ipv4Addr::from(d(0)))),
                dst_addr: Some(IpAddr::V4(Ipv4Addr::from(d(4)))),
                in_if: u32::from(w(12)),
                out_if: u32::from(w(14)),
                packets: u64::from(d(16)),
                bytes: u64::from(d(20)),
                time_flow_start_ns: at(d(24)),
                time_flow_end_ns: at(d(28)),
                src_port: w(32),
                dst_port: w(34),
                tcp_flags: u16::from(b(37)),
                proto: Some(b(38)),
                src_as: u32::from(w(40)),
                dst_as: u32::from(w(42)),
                ..base
            });
        }
        report.flows += count;
    }
}

/// Decodes the records of one set with its template: data records into flows appended to
/// `out`, options records into `sampling`.
fn decode_records(
    layout: &Layout,
    body: &[u8],
    msg: &Message,
    sampling: &mut Sampling,
    max_samplers: usize,
    out: &mut Vec<Flow>,
    names: Names<'_>,
) -> Result<(), Damaged> {
    match (layout.kind, &layout.shape) {
        (
            Kind::Data,
            Shape::Fixed {
                record_len, plan, ..
            },
        ) => {
            // `compile` guarantees records of at least one byte.
            let records = body.chunks_exact((*record_len).max(1));
            out.extend(records.map(|r| fixed_flow(plan, r, msg, sampling)));
            Ok(())
        }
        (Kind::Data, shape) => {
            let mut sink = DataSink {
                msg,
                sampling,
                out,
                record: RecordValues::default(),
            };
            walk_records(shape, body, &mut sink)
        }
        (Kind::Options, shape) => {
            let mut sink = OptionsSink {
                sampling,
                max_samplers,
                record: OptionValues::default(),
                exporter: msg.key.0.ip(),
                names,
            };
            walk_records(shape, body, &mut sink)
        }
    }
}

/// Stores a compiled template; when the scope is full, the least recently used template makes
/// room (a flood of new templates cannot lock out the ones in use for long).
fn insert_template(scope: &mut Scope, id: u16, t: Template, max_templates: usize) {
    if !scope.templates.contains_key(&id)
        && scope.templates.len() >= max_templates.max(1)
        && let Some(lru) = scope
            .templates
            .iter()
            .min_by_key(|(_, t)| t.used)
            .map(|(id, _)| *id)
    {
        scope.templates.remove(&lru);
    }
    scope.templates.insert(id, t);
}

/// IPFIX template withdrawal (RFC 7011 §8.1): one template of the set's kind, or all of them
/// when the id is the set id itself.
fn withdraw(scope: &mut Scope, id: u16, kind: Kind, set_id: u16) {
    if id == set_id {
        scope.templates.retain(|_, t| t.layout.kind != kind);
    } else if scope
        .templates
        .get(&id)
        .is_some_and(|t| t.layout.kind == kind)
    {
        scope.templates.remove(&id);
    }
}

/// Receives the mapped values of each record of a set.
trait RecordSink {
    fn begin(&mut self);
    fn apply(&mut self, target: Target, value: &[u8]);
    fn end(&mut self);
}

/// Walks every record of `body` into `sink`. Trailing bytes too short for a record are padding;
/// a variable-length record that runs past the set ends the walk as [`Damaged`].
fn walk_records<S: RecordSink>(shape: &Shape, body: &[u8], sink: &mut S) -> Result<(), Damaged> {
    match shape {
        Shape::Fixed {
            record_len, ops, ..
        } => {
            // `compile` guarantees a record of at least one byte and ops within it.
            for record in body.chunks_exact((*record_len).max(1)) {
                sink.begin();
                for op in ops.iter() {
                    if let Some(value) = record.get(op.offset..op.offset + op.len) {
                        sink.apply(op.target, value);
                    }
                }
                sink.end();
            }
            Ok(())
        }
        Shape::Variable { fields, min_len } => {
            let mut rest = body;
            loop {
                sink.begin();
                let visit = |i: usize, v: &[u8]| {
                    if let Some(t) = fields[i].target {
                        sink.apply(t, v);
                    }
                };
                match template::walk_variable(fields, *min_len, rest, visit)? {
                    Some(len) => {
                        sink.end();
                        rest = &rest[len..];
                    }
                    None => return Ok(()),
                }
            }
        }
    }
}

/// The time facts of one data record.
#[derive(Default)]
struct TimeFacts {
    /// IE 22 / 21: ms since the exporter booted.
    uptime_start_ms: Option<u64>,
    uptime_end_ms: Option<u64>,
    /// IE 150-157: absolute, Unix ms.
    abs_start_ms: Option<u64>,
    abs_end_ms: Option<u64>,
    /// IE 160 inside the record (RouterOS 7).
    sys_init_ms: Option<u64>,
}

impl TimeFacts {
    /// Flow start and end, Unix ns. Absolute IEs (150-157) win; else v9 subtracts the switch
    /// times (IE 22/21) from the header's uptime and export time, and IPFIX adds them to the
    /// boot time (IE 160, in the record or from options data); else the export time.
    fn times(&self, msg: &Message, sampling: &Sampling) -> (u64, u64) {
        if let (Some(start), Some(end)) = (self.abs_start_ms, self.abs_end_ms) {
            return (ms_to_ns(i128::from(start)), ms_to_ns(i128::from(end)));
        }
        let (Some(first), Some(last)) = (self.uptime_start_ms, self.uptime_end_ms) else {
            return (msg.export_ns, msg.export_ns);
        };
        let (first, last) = (i128::from(first), i128::from(last));
        if let Some(uptime) = msg.sys_uptime_ms {
            // v9: export time minus how long before the export the switch happened.
            return (
                ms_to_ns(msg.export_ms - (uptime - first)),
                ms_to_ns(msg.export_ms - (uptime - last)),
            );
        }
        // IPFIX 21/22 need the boot time: in the record (RouterOS 7) or from options data
        // (softflowd). Without it (RouterOS 6.39) the export time is all we know.
        match self.sys_init_ms.or(sampling.sys_init_ms) {
            Some(init) => {
                let init = i128::from(init);
                (ms_to_ns(init + first), ms_to_ns(init + last))
            }
            None => (msg.export_ns, msg.export_ns),
        }
    }
}

/// A data record's rate: from the record, else its sampler's options row, else the scope's most
/// recent options rate.
fn pick_rate(rate_in_record: u64, sampler_id: Option<u64>, sampling: &Sampling) -> u64 {
    if rate_in_record > 0 {
        rate_in_record
    } else if let Some(rate) = sampler_id.and_then(|id| sampling.rate_of(id)) {
        rate
    } else {
        sampling.last_rate
    }
}

/// Decodes one record of a fixed-length data template: the hot path, straight-line reads at
/// compiled offsets. Same result as applying the template's ops in order (see [`FixedPlan`]).
#[inline]
fn fixed_flow(p: &FixedPlan, r: &[u8], msg: &Message, sampling: &Sampling) -> Flow {
    let at = |s: Option<Slot>| s.and_then(|s| r.get(s.offset..s.offset + s.len));
    let num = |s: Option<Slot>| at(s).and_then(uint);
    let mut f = msg.base;
    f.bytes = num(p.bytes).unwrap_or(0);
    f.packets = num(p.packets).unwrap_or(0);
    f.proto = num(p.proto).and_then(|v| u8::try_from(v).ok());
    f.tcp_flags = at(p.tcp_flags).map_or(0, tcp_flags);
    f.src_port = num(p.src_port).map_or(0, |v| v as u16);
    f.dst_port = num(p.dst_port).map_or(0, |v| v as u16);
    f.in_if = num(p.in_if).map_or(0, |v| v as u32);
    f.out_if = num(p.out_if).map_or(0, |v| v as u32);
    f.src_as = num(p.src_as).map_or(0, |v| v as u32);
    f.dst_as = num(p.dst_as).map_or(0, |v| v as u32);
    let mut nat_dst = None;
    for op in p.addrs.iter() {
        let v = r.get(op.offset..op.offset + op.len);
        match op.target {
            Target::SrcV4 => set_addr(&mut f.src_addr, v.and_then(v4)),
            Target::DstV4 => set_addr(&mut f.dst_addr, v.and_then(v4)),
            Target::SrcV6 => set_addr(&mut f.src_addr, v.and_then(v6)),
            Target::NatDst if msg.nat_attribution => {
                set_addr(&mut nat_dst, v.and_then(v4_or_v6));
            }
            Target::NatDst => {}
            _ => set_addr(&mut f.dst_addr, v.and_then(v6)),
        }
    }
    attribute(&mut f, nat_dst);
    let mut rate_in_record = 0;
    for op in p.rates.iter() {
        if let Some(rate) = r
            .get(op.offset..op.offset + op.len)
            .and_then(uint)
            .filter(|&r| r > 0)
        {
            rate_in_record = rate;
        }
    }
    let unix = |s: Option<(Slot, TimeUnit)>| s.and_then(|(s, u)| unix_ms(u, at(Some(s))?));
    let time = TimeFacts {
        uptime_start_ms: num(p.uptime_start),
        uptime_end_ms: num(p.uptime_end),
        abs_start_ms: unix(p.abs_start),
        abs_end_ms: unix(p.abs_end),
        sys_init_ms: unix(p.sys_init.map(|s| (s, TimeUnit::Millis))),
    };
    f.sampling_rate = pick_rate(rate_in_record, num(p.sampler_id), sampling);
    (f.time_flow_start_ns, f.time_flow_end_ns) = time.times(msg, sampling);
    f
}

/// One data record's mapped values, applied field by field (variable-length templates).
#[derive(Default)]
struct RecordValues {
    bytes: u64,
    packets: u64,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: Option<u8>,
    src_port: u16,
    dst_port: u16,
    in_if: u32,
    out_if: u32,
    tcp_flags: u16,
    src_as: u32,
    dst_as: u32,
    /// IE 226 / 282 (read with `--nat-attribution` only).
    nat_dst: Option<IpAddr>,
    nat_attribution: bool,
    /// IE 34 / 50 inside the data record (MikroTik, Huawei).
    rate_in_record: u64,
    sampler_id: Option<u64>,
    time: TimeFacts,
}

impl RecordValues {
    /// Applies one value. Counters and scalars: the last one in the template wins (as in
    /// goflow2), even when it is unreadable (it then reads as 0 / unknown). Addresses: a
    /// non-zero value wins over zero (exporters that send both families zero the unused one).
    fn apply(&mut self, target: Target, v: &[u8]) {
        match target {
            Target::Bytes => self.bytes = uint(v).unwrap_or(0),
            Target::Packets => self.packets = uint(v).unwrap_or(0),
            Target::Proto => self.proto = uint(v).and_then(|p| u8::try_from(p).ok()),
            Target::TcpFlags => self.tcp_flags = tcp_flags(v),
            Target::SrcPort => self.src_port = uint(v).map_or(0, |p| p as u16),
            Target::DstPort => self.dst_port = uint(v).map_or(0, |p| p as u16),
            Target::SrcV4 => set_addr(&mut self.src, v4(v)),
            Target::DstV4 => set_addr(&mut self.dst, v4(v)),
            Target::SrcV6 => set_addr(&mut self.src, v6(v)),
            Target::DstV6 => set_addr(&mut self.dst, v6(v)),
            Target::InIf => self.in_if = uint(v).map_or(0, |i| i as u32),
            Target::OutIf => self.out_if = uint(v).map_or(0, |i| i as u32),
            Target::RateInRecord => {
                if let Some(r) = uint(v).filter(|&r| r > 0) {
                    self.rate_in_record = r;
                }
            }
            Target::SamplerId => self.sampler_id = uint(v),
            Target::UptimeStart => self.time.uptime_start_ms = uint(v),
            Target::UptimeEnd => self.time.uptime_end_ms = uint(v),
            Target::AbsStart(unit) => self.time.abs_start_ms = unix_ms(unit, v),
            Target::AbsEnd(unit) => self.time.abs_end_ms = unix_ms(unit, v),
            Target::SysInit => self.time.sys_init_ms = unix_ms(TimeUnit::Millis, v),
            Target::NatDst if self.nat_attribution => set_addr(&mut self.nat_dst, v4_or_v6(v)),
            Target::NatDst => {}
            Target::SrcAs => self.src_as = uint(v).map_or(0, |a| a as u32),
            Target::DstAs => self.dst_as = uint(v).map_or(0, |a| a as u32),
            // Options targets are never compiled into data layouts.
            Target::OptInterval
            | Target::OptPacketInterval
            | Target::OptPacketSpace
            | Target::OptSamplerId
            | Target::OptSysInit
            | Target::OptIfIndex
            | Target::OptIfName => {}
        }
    }

    fn finish(&self, msg: &Message, sampling: &Sampling) -> Flow {
        let (start, end) = self.time.times(msg, sampling);
        let mut f = Flow {
            src_addr: self.src,
            dst_addr: self.dst,
            proto: self.proto,
            src_port: self.src_port,
            dst_port: self.dst_port,
            bytes: self.bytes,
            packets: self.packets,
            sampling_rate: pick_rate(self.rate_in_record, self.sampler_id, sampling),
            time_flow_start_ns: start,
            time_flow_end_ns: end,
            in_if: self.in_if,
            out_if: self.out_if,
            tcp_flags: self.tcp_flags,
            src_as: self.src_as,
            dst_as: self.dst_as,
            ..msg.base
        };
        attribute(&mut f, self.nat_dst);
        f
    }
}

/// Data records → flows appended to `out`.
struct DataSink<'a> {
    msg: &'a Message,
    sampling: &'a Sampling,
    out: &'a mut Vec<Flow>,
    record: RecordValues,
}

impl RecordSink for DataSink<'_> {
    fn begin(&mut self) {
        self.record = RecordValues {
            nat_attribution: self.msg.nat_attribution,
            ..RecordValues::default()
        };
    }

    fn apply(&mut self, target: Target, value: &[u8]) {
        self.record.apply(target, value);
    }

    fn end(&mut self) {
        self.out.push(self.record.finish(self.msg, self.sampling));
    }
}

/// Sampling facts of one options data record.
#[derive(Default)]
struct OptionValues {
    interval_34_50: Option<u64>,
    packet_interval: Option<u64>,
    packet_space: Option<u64>,
    sampler_id: Option<u64>,
    sys_init_ms: Option<u64>,
    if_index: Option<u32>,
    /// IE 82, up to [`MAX_NAME_BYTES`] (fixed-length fields are padded with NULs).
    if_name: Option<([u8; MAX_NAME_BYTES], usize)>,
}

impl OptionValues {
    /// The rate this record announces: IE 305 + 306 first, then IE 34 / 50.
    fn rate(&self) -> Option<u64> {
        if let Some(interval) = self.packet_interval.filter(|&i| i > 0) {
            let space = self.packet_space.unwrap_or(0);
            // (interval + space) / interval, rounded to the nearest whole rate: the flow record
            // carries whole rates, like goflow2's `sampling_rate`.
            let total = interval.saturating_add(space);
            return Some(((total + interval / 2) / interval).max(1));
        }
        self.interval_34_50.filter(|&r| r > 0)
    }
}

/// Options data records → the scope's sampling state.
struct OptionsSink<'a> {
    sampling: &'a mut Sampling,
    max_samplers: usize,
    record: OptionValues,
    exporter: IpAddr,
    names: Names<'a>,
}

/// Where an options set's interface names go, and the decoder's count of names remembered.
struct Names<'a> {
    pending: &'a mut Vec<InterfaceNameFact>,
    total: &'a mut usize,
}

impl RecordSink for OptionsSink<'_> {
    fn begin(&mut self) {
        self.record = OptionValues::default();
    }

    fn apply(&mut self, target: Target, v: &[u8]) {
        let r = &mut self.record;
        match target {
            Target::OptInterval => r.interval_34_50 = uint(v),
            Target::OptPacketInterval => r.packet_interval = uint(v),
            Target::OptPacketSpace => r.packet_space = uint(v),
            Target::OptSamplerId => r.sampler_id = uint(v),
            Target::OptSysInit => r.sys_init_ms = unix_ms(TimeUnit::Millis, v),
            Target::OptIfIndex => r.if_index = uint(v).map(|i| i as u32),
            Target::OptIfName => {
                let v = &v[..v.len().min(MAX_NAME_BYTES)];
                let mut name = [0; MAX_NAME_BYTES];
                name[..v.len()].copy_from_slice(v);
                r.if_name = Some((name, v.len()));
            }
            _ => {}
        }
    }

    fn end(&mut self) {
        self.learn_name();
        let s = &mut *self.sampling;
        if let Some(init) = self.record.sys_init_ms {
            s.sys_init_ms = Some(init);
        }
        let Some(rate) = self.record.rate() else {
            return;
        };
        s.last_rate = rate;
        if let Some(id) = self.record.sampler_id {
            if let Some(row) = s.by_sampler.iter_mut().find(|(known, _)| *known == id) {
                row.1 = rate;
            } else if s.by_sampler.len() < self.max_samplers {
                s.by_sampler.push((id, rate));
            }
        }
    }
}

impl OptionsSink<'_> {
    /// An interface-name row: remembered for the scope and announced when new or changed
    /// (exporters repeat them every few minutes; only a change allocates).
    fn learn_name(&mut self) {
        let (Some(index), Some((bytes, len))) = (self.record.if_index, self.record.if_name) else {
            return;
        };
        let raw = &bytes[..len];
        let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        let name = String::from_utf8_lossy(raw);
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        let known = &mut self.sampling.if_names;
        if known.get(&index).is_some_and(|n| &**n == name) {
            return;
        }
        if !known.contains_key(&index) {
            if known.len() >= MAX_NAMES_PER_SCOPE || *self.names.total >= MAX_NAMES {
                return;
            }
            *self.names.total += 1;
        }
        known.insert(index, name.into());
        if self.names.pending.len() < MAX_PENDING_NAMES {
            self.names.pending.push(InterfaceNameFact {
                exporter: unmap_v4(self.exporter),
                index,
                name: name.into(),
            });
        }
    }
}

impl DatagramDecoder for NetflowDecoder {
    fn decode_detailed(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        received_ns: u64,
        out: &mut Vec<Flow>,
        details: Option<&mut Vec<FlowDetail>>,
    ) -> DatagramReport {
        let mut report = DatagramReport {
            version: be16(datagram, 0).unwrap_or(0),
            ..DatagramReport::default()
        };
        match report.version {
            5 => {
                Self::decode_v5(exporter, datagram, received_ns, out, &mut report);
                if let Some(details) = details {
                    detail::v5(datagram, details);
                }
            }
            9 | 10 => self.decode_sets(exporter, datagram, received_ns, out, details, &mut report),
            _ if datagram.len() < 2 => report.malformed += 1,
            _ => report.unsupported_version += 1,
        }
        report
    }

    fn prune_idle(&mut self, idle: Duration) -> usize {
        let now = Instant::now();
        let before = self.scopes.len();
        let total = &mut self.names_total;
        self.scopes.retain(|_, s| {
            let keep = now.saturating_duration_since(s.last_seen) < idle;
            if !keep {
                *total -= s.sampling.if_names.len();
            }
            keep
        });
        let scopes = &self.scopes;
        self.probation.retain(|k| scopes.contains_key(k));
        if self.scopes.capacity() > 64 && self.scopes.len() < self.scopes.capacity() / 4 {
            // Memory of a spoof flood is returned once its scopes have gone idle.
            self.scopes.shrink_to_fit();
            self.probation.shrink_to_fit();
        }
        before - self.scopes.len()
    }

    fn drain_interface_names(&mut self, out: &mut Vec<InterfaceNameFact>) {
        out.append(&mut self.pending_names);
    }

    fn templates_per_exporter(&self) -> Vec<(IpAddr, usize)> {
        let mut per: HashMap<IpAddr, usize> = HashMap::new();
        for ((exporter, _, _), scope) in &self.scopes {
            *per.entry(unmap_v4(exporter.ip())).or_default() += scope.templates.len();
        }
        per.into_iter().collect()
    }
}

/// `--nat-attribution`: a non-zero destination after NAT (the inside host a reply was forwarded
/// to) replaces the flow's destination; the source is already the inside one (before NAT).
#[inline]
fn attribute(f: &mut Flow, nat_dst: Option<IpAddr>) {
    if let Some(nat) = nat_dst.filter(|a| !a.is_unspecified()) {
        f.dst_addr = Some(nat);
    }
}

/// Sets `slot` unless it already holds a non-zero address and `new` is zero.
pub(crate) fn set_addr(slot: &mut Option<IpAddr>, new: Option<IpAddr>) {
    if let Some(new) = new
        && (slot.is_none() || !new.is_unspecified())
    {
        *slot = Some(new);
    }
}

/// An unsigned big-endian integer of 0 to 8 bytes (RFC 7011 §6.2 reduced-size encoding). Wider
/// values are not integers we can carry: `None`.
fn uint(v: &[u8]) -> Option<u64> {
    match *v {
        [a] => Some(u64::from(a)),
        [a, b] => Some(u64::from(u16::from_be_bytes([a, b]))),
        [a, b, c, d] => Some(u64::from(u32::from_be_bytes([a, b, c, d]))),
        [a, b, c, d, e, f, g, h] => Some(u64::from_be_bytes([a, b, c, d, e, f, g, h])),
        _ if v.len() <= 8 => Some(v.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))),
        _ => None,
    }
}

/// TCP flags: a 2-byte value keeps the 9 flag bits (its top bits are the header-length and
/// reserved bits of RFC 7125); other widths are read as integers.
fn tcp_flags(v: &[u8]) -> u16 {
    match v.len() {
        2 => uint(v).map_or(0, |f| f as u16 & 0x01FF),
        _ => uint(v).map_or(0, |f| f as u16),
    }
}

fn v4(v: &[u8]) -> Option<IpAddr> {
    let octets: [u8; 4] = v.try_into().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// An address IE whose family is given by its length (the post-NAT IEs of both families share
/// one target).
pub(crate) fn v4_or_v6(v: &[u8]) -> Option<IpAddr> {
    v4(v).or_else(|| v6(v))
}

fn v6(v: &[u8]) -> Option<IpAddr> {
    let octets: [u8; 16] = v.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(octets)))
}

/// An absolute time (IE 150-157, 160) as Unix ms. Seconds and milliseconds are 2, 4 or 8 bytes;
/// NTP timestamps (154-157) are 8 bytes counting from 1900, truncated to the millisecond. Other
/// widths, and NTP times before 1970, are unknown.
fn unix_ms(unit: TimeUnit, v: &[u8]) -> Option<u64> {
    const NTP_TO_UNIX_MS: u64 = 2_208_988_800_000;
    match unit {
        TimeUnit::Seconds if matches!(v.len(), 2 | 4 | 8) => uint(v)?.checked_mul(1000),
        TimeUnit::Millis if matches!(v.len(), 2 | 4 | 8) => uint(v),
        TimeUnit::Ntp if v.len() == 8 => {
            let secs = u64::from(be32(v, 0)?);
            let fraction = u64::from(be32(v, 4)?);
            (secs * 1000 + ((fraction * 1000) >> 32)).checked_sub(NTP_TO_UNIX_MS)
        }
        _ => None,
    }
}

/// The 48-byte records of a v5 datagram (24-byte header, at most 30 records: Cisco's limit, a
/// larger count is damage, as for the reference decoder), or `None` when the count is 0, over 30,
/// or more than the datagram holds. Bytes after `count` records are ignored. Shared by the flow
/// decoder and the detail fields (`decode::detail`), so both accept the same datagrams.
pub(crate) fn v5_records(datagram: &[u8]) -> Option<&[u8]> {
    let count = usize::from(be16(datagram, 2)?);
    if count == 0 || count > 30 {
        return None;
    }
    datagram.get(24..24 + 48 * count)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Unix ms → Unix ns, clamped to the representable range (0 for times before 1970).
fn ms_to_ns(ms: i128) -> u64 {
    u64::try_from(ms.saturating_mul(1_000_000).max(0)).unwrap_or(u64::MAX)
}

/// Nanoseconds as a flow time: clamped to 0..=u64::MAX.
fn ns(ns: i128) -> u64 {
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "netflow_tests.rs"]
mod tests;

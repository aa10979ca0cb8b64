//! The reference decoder: [`NetflowParserDecoder`], the `netflow_parser` 1.0.6 based
//! [`DatagramDecoder`] the exporter used before [`super::netflow::NetflowDecoder`].
//!
//! Kept as an oracle, compiled normally so that the differential tests and the `decoder_diff`
//! fuzz target can run every datagram through both decoders and compare the flows. It owns its
//! own template caches (inside `netflow_parser`), sampling state and field mapping, written
//! against `netflow_parser`'s typed field values: an implementation independent of the
//! hand-written decoder, which is what makes the comparison worth something.
//!
//! Decisions (unchanged from when it was the product decoder):
//! - `netflow_parser` 1.0.6 loses a whole v9 datagram when one set fails to parse, and ends an
//!   IPFIX message silently at the first bad set. We therefore walk the set headers ourselves and
//!   hand the parser one set at a time (behind a copy of the message header): a bad or unknown set
//!   costs only itself, a zero-filled tail stops the walk cleanly, and every loss is counted.
//! - Bounded memory against spoofed sources: caps on exporters (LRU), templates per exporter,
//!   fields per template and template size; idle exporters are pruned on a timer.
//!
//! # Where `netflow_parser` 1.0.6 is wrong (and the new decoder right)
//! The differential tests and the fuzz target compare flows everywhere else; these cases are
//! excluded explicitly:
//! - **Variable-length fields.** A zero-length value (allowed by RFC 7011 §7) makes it drop that
//!   record and the rest of its set (counted as malformed here); a v9 template with a 65535-length
//!   field (H3C) is refused whole (malformed, then its data counts as missing template).
//! - **More than 1024 records in a set.** It stops at 1024 silently; this wrapper cuts large
//!   fixed-length sets into pieces to work around it, but a variable-length set of more than
//!   1024 records still loses the rest (counted as malformed).
//! - **IPFIX options template withdrawal.** It reads 6 bytes for the 4-byte withdrawal record of
//!   RFC 7011 §8.1, so it withdraws nothing: the options template stays in use. (Data template
//!   withdrawals are also left out of comparisons: it applies all withdrawals of a set before
//!   its definitions, the new decoder goes in order.)
//! - **An IPFIX template set without a usable template** (all cut short, refused or empty): it
//!   fails to parse, and `netflow_parser` ends an IPFIX message at a set that fails with
//!   `error == None`, so nothing is counted (the new decoder counts it as malformed, as both do
//!   for v9).
//! - **Templates with ids below 256.** It learns them and then decodes sets with those reserved
//!   ids (v9 2-255, IPFIX 4-255) as data; the new decoder skips reserved sets.
//! - **v9-style sets (ids 0 and 1) inside IPFIX.** It accepts them as templates; RFC 7011
//!   reserves those set ids, and the new decoder skips them like any reserved set.
//! - **Redefinition with an unusable template.** It keeps decoding with the old layout; the new
//!   decoder forgets the old one (data then counts as missing template, not as garbage flows).
//! - **Counters wider than 8 bytes.** It reads a 16-byte unsigned value that fits in 64 bits
//!   for some IEs and not for others (by its type table); the new decoder treats any mapped
//!   integer over 8 bytes as absent (RFC 7011 §6.2 reduced-size encoding only shrinks).
//! - **A v9 IE 95 (applicationId) of length 0.** Its typed parse fails and the rest of the set is
//!   lost.
//! - **Template cache bounds.** It keeps one LRU cache per template kind (2 per v9 scope, 4 per
//!   IPFIX scope); the new decoder bounds all templates of a scope together.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use netflow_parser::variable_versions::field_value::DurationValue;
use netflow_parser::variable_versions::ipfix::FlowSetBody as IpfixBody;
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::variable_versions::v9::FlowSetBody as V9Body;
use netflow_parser::{
    AutoScopedParser, DataNumber, FieldValue, NetflowPacket, NetflowParser, TtlConfig, V9Field,
};

use super::netflow::{DatagramDecoder, DatagramReport, DecoderLimits};
use crate::flow::{Flow, FlowDetail, FlowType, unmap_v4};

/// Sampling and time state learned from options data, per exporter scope.
#[derive(Debug, Default)]
struct ScopeState {
    /// Rate from the most recent options record (any sampler).
    last_rate: u64,
    /// Rates by sampler id (IE 48 / 302 in options data).
    by_sampler: HashMap<u64, u64>,
    /// systemInitTimeMilliseconds (IE 160) from options data (softflowd sends it there).
    sys_init_ms: Option<u64>,
    /// Field lengths of each (options) template, to count the records of a set ourselves (see
    /// `decode_sets`).
    layouts: HashMap<u16, Layout>,
    last_seen: Option<Instant>,
}

/// A template's record layout, as far as counting records needs it.
#[derive(Debug)]
enum Layout {
    /// Every record has this many bytes.
    Fixed(usize),
    /// Field lengths, 0xFFFF for a variable-length field (1- or 3-byte length prefix).
    Variable(Vec<u16>),
}

impl Layout {
    /// How many whole records `body` holds (what a correct parser must return), and whether a
    /// record starts but does not fit (damage, not padding).
    fn count(&self, body: &[u8]) -> (usize, bool) {
        match self {
            Layout::Fixed(len) => (body.len() / len, false),
            Layout::Variable(fields) => {
                let min: usize = fields
                    .iter()
                    .map(|&l| if l == 0xFFFF { 1 } else { usize::from(l) })
                    .sum();
                let (mut pos, mut records) = (0usize, 0usize);
                while body.len() - pos >= min.max(1) {
                    let mut p = pos;
                    for &l in fields {
                        let len = if l == 0xFFFF {
                            let Some(&short) = body.get(p) else {
                                return (records, true);
                            };
                            p += 1;
                            if short == 255 {
                                let Some(long) = be16(body, p) else {
                                    return (records, true);
                                };
                                p += 2;
                                usize::from(long)
                            } else {
                                usize::from(short)
                            }
                        } else {
                            usize::from(l)
                        };
                        p += len;
                    }
                    if p > body.len() {
                        return (records, true);
                    }
                    if p == pos {
                        break;
                    }
                    pos = p;
                    records += 1;
                }
                (records, false)
            }
        }
    }
}

/// What a set holds, by our own count.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// No layout known (e.g. data before its template).
    Unknown,
    Records(usize),
    /// A record runs past the end of the set.
    Damaged,
}

/// (header length, end of the message) of a v9 or IPFIX datagram; `None` when it cannot hold one.
fn message_bounds(datagram: &[u8], report: &mut DatagramReport) -> Option<(usize, usize)> {
    if report.version == 9 {
        return Some((20, datagram.len()));
    }
    // IPFIX: the header's length bounds the message; a datagram shorter than it is truncated
    // (decode the complete sets, count the loss).
    let declared = usize::from(be16(datagram, 2).unwrap_or(0));
    if declared < 16 {
        report.malformed += 1;
        return None;
    }
    if declared > datagram.len() {
        report.malformed += 1;
    }
    Some((16, declared.min(datagram.len())))
}

/// Cuts a set body into what the parser is handed, with what each piece holds by our count.
fn pieces<'b>(layout: Option<&Layout>, body: &'b [u8]) -> Vec<(&'b [u8], Expect)> {
    match layout {
        Some(Layout::Fixed(len)) if body.len() > len * PARSER_MAX_RECORDS_PER_SET => body
            .chunks(len * PARSER_MAX_RECORDS_PER_SET)
            .map(|c| (c, Expect::Records(c.len() / len)))
            .collect(),
        Some(l) => match l.count(body) {
            // A record that runs past its set: damage, whatever the parser makes of it.
            (_, true) => vec![(body, Expect::Damaged)],
            (records, false) => vec![(body, Expect::Records(records))],
        },
        None => vec![(body, Expect::Unknown)],
    }
}

/// Data and options records the parser returned in `packet`.
fn records_in(packet: &NetflowPacket) -> usize {
    match packet {
        NetflowPacket::V9(v9) => v9
            .flowsets
            .iter()
            .map(|fs| match &fs.body {
                V9Body::Data(d) => d.fields.len(),
                V9Body::OptionsData(o) => o.fields.len(),
                _ => 0,
            })
            .sum(),
        NetflowPacket::IPFix(ipfix) => ipfix
            .flowsets
            .iter()
            .map(|fs| match &fs.body {
                IpfixBody::Data(d) => d.fields.len(),
                IpfixBody::OptionsData(o) => o.fields.len(),
                IpfixBody::V9Data(d) => d.fields.len(),
                IpfixBody::V9OptionsData(o) => o.fields.len(),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// What every piece of one set shares, for [`NetflowParserDecoder::parse_set`].
struct SetInput<'a> {
    exporter: SocketAddr,
    /// The message header, copied in front of each set handed to the parser.
    header: &'a [u8],
    set_id: u16,
    received_ns: u64,
    scope_key: ScopeKey,
}

/// Scope of options state: (exporter, version, source id / observation domain).
type ScopeKey = (SocketAddr, u16, u32);

/// [`DatagramDecoder`] on top of `netflow_parser`'s per-source template caches.
pub struct NetflowParserDecoder {
    parser: AutoScopedParser,
    limits: DecoderLimits,
    scopes: HashMap<ScopeKey, ScopeState>,
    /// Reused buffer holding "message header + one set" for the parser.
    scratch: Vec<u8>,
}

impl NetflowParserDecoder {
    pub fn new(limits: DecoderLimits) -> Self {
        let parser = NetflowParser::builder()
            .with_cache_size(limits.max_templates.max(1))
            .with_max_field_count(limits.max_fields_per_template.max(1))
            .with_max_template_total_size(limits.max_template_bytes.max(4))
            .with_ttl(TtlConfig::new(
                limits.template_ttl.max(Duration::from_secs(1)),
            ))
            .try_multi_source()
            .and_then(|p| p.with_max_sources(limits.max_exporters.max(1)))
            .expect("limits are clamped to valid values");
        NetflowParserDecoder {
            parser,
            limits,
            scopes: HashMap::new(),
            scratch: Vec::with_capacity(65_535),
        }
    }

    fn scope(&mut self, key: ScopeKey) -> &mut ScopeState {
        if !self.scopes.contains_key(&key) && self.scopes.len() >= self.limits.max_exporters {
            // Same bound as the parser's sources: drop the least recently seen scope.
            if let Some(oldest) = self
                .scopes
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
            {
                self.scopes.remove(&oldest);
            }
        }
        let s = self.scopes.entry(key).or_default();
        s.last_seen = Some(Instant::now());
        s
    }

    fn decode_v5(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        received_ns: u64,
        out: &mut Vec<Flow>,
        report: &mut DatagramReport,
    ) {
        // 24-byte header, 48-byte records. Bytes after `count` records would be parsed as another
        // packet by the crate and reported as a bogus error: cut them off.
        let count = usize::from(be16(datagram, 2).unwrap_or(0));
        let need = 24 + 48 * count;
        if count == 0 || datagram.len() < need {
            report.malformed += 1;
            return;
        }
        let result = self.parser.parse_from_source(exporter, &datagram[..need]);
        if result.error.is_some() {
            report.malformed += 1;
        }
        let sampler = Some(unmap_v4(exporter.ip()));
        for packet in &result.packets {
            let NetflowPacket::V5(v5) = packet else {
                continue;
            };
            let h = &v5.header;
            let rate = u64::from(h.sampling_interval & 0x3FFF);
            let export_ns = i128::from(h.unix_secs) * 1_000_000_000 + i128::from(h.unix_nsecs);
            let uptime = i128::from(h.sys_up_time);
            // Signed arithmetic: a first/last after sysUptime (clock skew) lands slightly in the
            // future instead of ~49.7 days in the past as with u32 wrap-around.
            let at = |switched: u32| {
                let ns = export_ns - (uptime - i128::from(switched)) * 1_000_000;
                u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
            };
            for r in &v5.flowsets {
                out.push(Flow {
                    flow_type: FlowType::NetflowV5,
                    sampler,
                    src_addr: Some(IpAddr::V4(r.src_addr)),
                    dst_addr: Some(IpAddr::V4(r.dst_addr)),
                    proto: Some(r.protocol_number),
                    src_port: r.src_port,
                    dst_port: r.dst_port,
                    bytes: u64::from(r.d_octets),
                    packets: u64::from(r.d_pkts),
                    sampling_rate: rate,
                    time_flow_start_ns: at(r.first),
                    time_flow_end_ns: at(r.last),
                    time_received_ns: received_ns,
                    in_if: u32::from(r.input),
                    out_if: u32::from(r.output),
                    tcp_flags: u16::from(r.tcp_flags),
                    src_as: u32::from(r.src_as),
                    dst_as: u32::from(r.dst_as),
                    ..Flow::default()
                });
                report.flows += 1;
            }
        }
    }

    /// Decodes a v9 or IPFIX message set by set.
    fn decode_sets(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        received_ns: u64,
        out: &mut Vec<Flow>,
        report: &mut DatagramReport,
    ) {
        let version = report.version;
        let Some((header_len, end)) = message_bounds(datagram, report) else {
            return;
        };
        let Some(header) = datagram.get(..header_len) else {
            report.malformed += 1;
            return;
        };
        let domain = be32(datagram, if version == 9 { 16 } else { 12 }).unwrap_or(0);
        let scope_key: ScopeKey = (exporter, version, domain);
        let mut offset = header_len;
        while offset < end {
            let rest = &datagram[offset..end];
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
            let set = &rest[..set_len];
            offset += set_len;
            let set_id = be16(set, 0).unwrap_or(0);
            let body = &set[4..];
            if is_template_set(version, set_id) {
                self.learn_layouts(scope_key, version, set_id, body);
            }
            // netflow_parser 1.0.6 stops at 1024 records per set without a word, whatever it is
            // configured to (some of its parse paths use the default constant), and drops the
            // rest of a set after a zero-length variable-length value. Knowing the layout, we cut
            // large fixed-length sets into pieces it decodes whole, and count what it returns
            // against what the set holds, so any loss is counted, never silent.
            let layout = self
                .scopes
                .get(&scope_key)
                .and_then(|s| s.layouts.get(&set_id));
            let pieces = pieces(layout, body);
            let input = SetInput {
                exporter,
                header,
                set_id,
                received_ns,
                scope_key,
            };
            for (piece, expected) in pieces {
                self.parse_set(&input, piece, expected, out, report);
            }
        }
    }

    /// Hands the parser one set (`input.set_id`, `body`) behind a copy of the message header and
    /// maps what comes back.
    fn parse_set(
        &mut self,
        input: &SetInput,
        body: &[u8],
        expected: Expect,
        out: &mut Vec<Flow>,
        report: &mut DatagramReport,
    ) {
        let version = report.version;
        self.scratch.clear();
        self.scratch.extend_from_slice(input.header);
        self.scratch.extend_from_slice(&input.set_id.to_be_bytes());
        let set_len = u16::try_from(body.len() + 4).unwrap_or(u16::MAX);
        self.scratch.extend_from_slice(&set_len.to_be_bytes());
        self.scratch.extend_from_slice(body);
        if version == 10 {
            // The copied header must announce the one-set message length.
            let len = u16::try_from(self.scratch.len()).unwrap_or(u16::MAX);
            self.scratch[2..4].copy_from_slice(&len.to_be_bytes());
        } else {
            // v9 count: records in the message; the crate ignores it, but keep it plausible.
            self.scratch[2..4].copy_from_slice(&1u16.to_be_bytes());
        }
        let result = self.parser.parse_from_source(input.exporter, &self.scratch);
        let returned: usize = result.packets.iter().map(records_in).sum();
        let missing_template = result.packets.iter().any(has_no_template);
        let lost = match expected {
            Expect::Damaged => true,
            Expect::Records(n) => !missing_template && returned < n,
            Expect::Unknown => false,
        };
        // One count per set, whether the parser said so or we found the loss.
        if result.error.is_some() || lost {
            report.malformed += 1;
        }
        for packet in &result.packets {
            match packet {
                NetflowPacket::V9(v9) => self.map_v9(input, v9, out, report),
                NetflowPacket::IPFix(ipfix) => self.map_ipfix(input, ipfix, out, report),
                _ => {}
            }
        }
    }

    fn map_v9(
        &mut self,
        input: &SetInput,
        v9: &netflow_parser::variable_versions::v9::V9,
        out: &mut Vec<Flow>,
        report: &mut DatagramReport,
    ) {
        let h = &v9.header;
        let ctx = RecordContext {
            flow_type: FlowType::NetflowV9,
            sampler: Some(unmap_v4(input.exporter.ip())),
            domain: h.source_id,
            received_ns: input.received_ns,
            export_ms: i128::from(h.unix_secs) * 1000,
            sys_uptime_ms: Some(i128::from(h.sys_up_time)),
        };
        let scope_key = input.scope_key;
        for fs in &v9.flowsets {
            match &fs.body {
                V9Body::Data(data) => {
                    let records = data.fields.iter().map(Vec::as_slice);
                    let scope = self.scope(scope_key);
                    report.flows += data_records(records, v9_ie, &ctx, scope, out);
                }
                V9Body::OptionsData(options) => {
                    let max = self.limits.max_samplers_per_exporter;
                    let records = options.fields.iter().map(|r| r.options_fields.as_slice());
                    options_records(records, v9_ie, self.scope(scope_key), max);
                }
                V9Body::NoTemplate(_) => report.missing_template += 1,
                V9Body::Template(_) | V9Body::OptionsTemplate(_) => {
                    self.scope(scope_key);
                }
                V9Body::Empty => {}
            }
        }
    }

    fn map_ipfix(
        &mut self,
        input: &SetInput,
        ipfix: &netflow_parser::variable_versions::ipfix::IPFix,
        out: &mut Vec<Flow>,
        report: &mut DatagramReport,
    ) {
        let h = &ipfix.header;
        let ctx = RecordContext {
            flow_type: FlowType::Ipfix,
            sampler: Some(unmap_v4(input.exporter.ip())),
            domain: h.observation_domain_id,
            received_ns: input.received_ns,
            export_ms: i128::from(h.export_time) * 1000,
            sys_uptime_ms: None,
        };
        let scope_key = input.scope_key;
        let max = self.limits.max_samplers_per_exporter;
        for fs in &ipfix.flowsets {
            match &fs.body {
                IpfixBody::Data(data) => {
                    let records = data.fields.iter().map(Vec::as_slice);
                    let scope = self.scope(scope_key);
                    report.flows += data_records(records, ipfix_ie, &ctx, scope, out);
                }
                IpfixBody::V9Data(data) => {
                    let records = data.fields.iter().map(Vec::as_slice);
                    let scope = self.scope(scope_key);
                    report.flows += data_records(records, v9_ie, &ctx, scope, out);
                }
                IpfixBody::OptionsData(options) => {
                    let records = options.fields.iter().map(Vec::as_slice);
                    options_records(records, ipfix_ie, self.scope(scope_key), max);
                }
                IpfixBody::V9OptionsData(options) => {
                    let records = options.fields.iter().map(|r| r.options_fields.as_slice());
                    options_records(records, v9_ie, self.scope(scope_key), max);
                }
                IpfixBody::NoTemplate(_) => report.missing_template += 1,
                _ => {
                    self.scope(scope_key);
                }
            }
        }
    }

    /// Remembers the layout of each template in a (options) template set.
    fn learn_layouts(&mut self, key: ScopeKey, version: u16, set_id: u16, body: &[u8]) {
        let max = self.limits.max_templates.saturating_mul(4);
        let scope = self.scope(key);
        let mut p = 0;
        while p + 4 <= body.len() {
            let Some(id) = be16(body, p) else { break };
            let count = |at: usize| be16(body, at).map_or(0, usize::from);
            let (mut q, fields) = match (version, set_id) {
                (9, 1) => (p + 6, (count(p + 2) + count(p + 4)) / 4),
                (10, 3) => (p + 6, count(p + 2)),
                _ => (p + 4, count(p + 2)),
            };
            if id < 256 {
                break; // padding
            }
            let mut lengths = Vec::with_capacity(fields.min(128));
            for _ in 0..fields {
                let (Some(ie), Some(len)) = (be16(body, q), be16(body, q + 2)) else {
                    return; // truncated: the parser will report it
                };
                q += 4;
                if version == 10 && ie & 0x8000 != 0 {
                    q += 4; // enterprise number
                }
                lengths.push(len);
            }
            if q > body.len() {
                return;
            }
            let total: usize = lengths.iter().map(|&l| usize::from(l)).sum();
            let layout = if lengths.contains(&0xFFFF) {
                Some(Layout::Variable(lengths))
            } else if total > 0 {
                Some(Layout::Fixed(total))
            } else {
                None
            };
            match layout {
                Some(l) if scope.layouts.len() < max || scope.layouts.contains_key(&id) => {
                    scope.layouts.insert(id, l);
                }
                _ => {
                    scope.layouts.remove(&id);
                }
            }
            p = q;
        }
    }
}

/// Whether the parser reported a set without a known template (counted as such, not as a loss).
fn has_no_template(packet: &NetflowPacket) -> bool {
    match packet {
        NetflowPacket::V9(v9) => v9
            .flowsets
            .iter()
            .any(|fs| matches!(fs.body, V9Body::NoTemplate(_))),
        NetflowPacket::IPFix(ipfix) => ipfix
            .flowsets
            .iter()
            .any(|fs| matches!(fs.body, IpfixBody::NoTemplate(_))),
        _ => false,
    }
}

/// Template and options template set ids (v9: 0, 1; IPFIX: 2, 3).
fn is_template_set(version: u16, set_id: u16) -> bool {
    matches!((version, set_id), (9, 0 | 1) | (10, 2 | 3))
}

/// Records per set that `netflow_parser` 1.0.6 decodes at most.
const PARSER_MAX_RECORDS_PER_SET: usize = 1024;

impl DatagramDecoder for NetflowParserDecoder {
    /// Appends no details: this decoder is the oracle of the flow fields only, never the source of
    /// flow lines.
    fn decode_detailed(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        received_ns: u64,
        out: &mut Vec<Flow>,
        _details: Option<&mut Vec<FlowDetail>>,
    ) -> DatagramReport {
        let mut report = DatagramReport {
            version: be16(datagram, 0).unwrap_or(0),
            ..DatagramReport::default()
        };
        match report.version {
            5 => self.decode_v5(exporter, datagram, received_ns, out, &mut report),
            9 | 10 => self.decode_sets(exporter, datagram, received_ns, out, &mut report),
            _ if datagram.len() < 2 => report.malformed += 1,
            _ => report.unsupported_version += 1,
        }
        report
    }

    fn prune_idle(&mut self, idle: Duration) -> usize {
        let now = Instant::now();
        self.scopes
            .retain(|_, s| s.last_seen.is_some_and(|t| now.duration_since(t) < idle));
        self.parser.prune_idle_sources(idle)
    }

    fn templates_per_exporter(&self) -> Vec<(IpAddr, usize)> {
        let mut per: HashMap<IpAddr, usize> = HashMap::new();
        for (key, info) in self.parser.ipfix_info() {
            *per.entry(unmap_v4(key.addr.ip())).or_default() +=
                info.ipfix.current_size + info.v9.current_size;
        }
        for (key, info) in self.parser.v9_info() {
            *per.entry(unmap_v4(key.addr.ip())).or_default() +=
                info.ipfix.current_size + info.v9.current_size;
        }
        per.into_iter().collect()
    }
}

/// Per-message facts every record of the message shares.
struct RecordContext {
    flow_type: FlowType,
    sampler: Option<IpAddr>,
    domain: u32,
    received_ns: u64,
    /// Export time of the message, Unix ms.
    export_ms: i128,
    /// v9 header sysUptime (ms); IPFIX has none.
    sys_uptime_ms: Option<i128>,
}

/// Collects one data record's fields by information element number.
#[derive(Default)]
struct RecordBuilder {
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
    /// IE 34 / 50 inside the data record (MikroTik, Huawei).
    rate_in_record: u64,
    sampler_id: Option<u64>,
    /// IE 22 / 21: ms since the exporter booted.
    uptime_start_ms: Option<u64>,
    uptime_end_ms: Option<u64>,
    /// IE 150-157: absolute, Unix ms.
    abs_start_ms: Option<u64>,
    abs_end_ms: Option<u64>,
    /// IE 160 inside the record (RouterOS 7).
    sys_init_ms: Option<u64>,
    src_as: u32,
    dst_as: u32,
}

/// Sets `slot` unless it already holds a non-zero address and `new` is zero: a non-zero value
/// wins over zero (exporters that send both families zero the unused one).
fn set_addr(slot: &mut Option<IpAddr>, new: Option<IpAddr>) {
    if let Some(new) = new
        && (slot.is_none() || !new.is_unspecified())
    {
        *slot = Some(new);
    }
}

impl RecordBuilder {
    fn apply(&mut self, ie: u16, v: &FieldValue) {
        match ie {
            // The last counter in the template wins, as in goflow2.
            1 | 23 => self.bytes = fv_u64(v).unwrap_or(0),
            2 | 24 => self.packets = fv_u64(v).unwrap_or(0),
            4 => self.proto = fv_u64(v).and_then(|p| u8::try_from(p).ok()),
            6 => self.tcp_flags = fv_u64(v).map_or(0, |f| f as u16),
            7 => self.src_port = fv_u64(v).map_or(0, |p| p as u16),
            11 => self.dst_port = fv_u64(v).map_or(0, |p| p as u16),
            8 | 27 => set_addr(&mut self.src, fv_ip(v)),
            12 | 28 => set_addr(&mut self.dst, fv_ip(v)),
            10 => self.in_if = fv_u64(v).map_or(0, |i| i as u32),
            14 => self.out_if = fv_u64(v).map_or(0, |i| i as u32),
            34 | 50 => {
                if let Some(r) = fv_u64(v).filter(|&r| r > 0) {
                    self.rate_in_record = r;
                }
            }
            48 | 302 => self.sampler_id = fv_u64(v),
            22 => self.uptime_start_ms = fv_u64(v),
            21 => self.uptime_end_ms = fv_u64(v),
            150 | 152 | 154 | 156 => self.abs_start_ms = fv_unix_ms(v),
            151 | 153 | 155 | 157 => self.abs_end_ms = fv_unix_ms(v),
            160 => self.sys_init_ms = fv_unix_ms(v),
            16 => self.src_as = fv_u64(v).map_or(0, |a| a as u32),
            17 => self.dst_as = fv_u64(v).map_or(0, |a| a as u32),
            _ => {}
        }
    }

    fn finish(self, ctx: &RecordContext, scope: &ScopeState) -> Flow {
        let rate = if self.rate_in_record > 0 {
            self.rate_in_record
        } else if let Some(rate) = self.sampler_id.and_then(|id| scope.by_sampler.get(&id)) {
            *rate
        } else {
            scope.last_rate
        };
        let (start, end) = self.times(ctx, scope);
        Flow {
            flow_type: ctx.flow_type,
            sampler: ctx.sampler,
            src_addr: self.src,
            dst_addr: self.dst,
            proto: self.proto,
            src_port: self.src_port,
            dst_port: self.dst_port,
            bytes: self.bytes,
            packets: self.packets,
            sampling_rate: rate,
            time_flow_start_ns: start,
            time_flow_end_ns: end,
            time_received_ns: ctx.received_ns,
            in_if: self.in_if,
            out_if: self.out_if,
            tcp_flags: self.tcp_flags,
            observation_domain: ctx.domain,
            src_as: self.src_as,
            dst_as: self.dst_as,
        }
    }

    /// Flow start and end, Unix ns. Absolute IEs (150-157) win; else v9 subtracts the switch
    /// times (IE 22/21) from the header's uptime and export time, and IPFIX adds them to the
    /// boot time (IE 160, in the record or from options data); else the export time.
    fn times(&self, ctx: &RecordContext, scope: &ScopeState) -> (u64, u64) {
        let export = ms_to_ns(ctx.export_ms);
        if let (Some(start), Some(end)) = (self.abs_start_ms, self.abs_end_ms) {
            return (ms_to_ns(i128::from(start)), ms_to_ns(i128::from(end)));
        }
        let (Some(first), Some(last)) = (self.uptime_start_ms, self.uptime_end_ms) else {
            return (export, export);
        };
        let (first, last) = (i128::from(first), i128::from(last));
        if let Some(uptime) = ctx.sys_uptime_ms {
            // v9: export time minus how long before the export the switch happened.
            return (
                ms_to_ns(ctx.export_ms - (uptime - first)),
                ms_to_ns(ctx.export_ms - (uptime - last)),
            );
        }
        // IPFIX 21/22 need the boot time: in the record (RouterOS 7) or from options data
        // (softflowd). Without it (RouterOS 6.39) the export time is all we know.
        match self.sys_init_ms.or(scope.sys_init_ms) {
            Some(init) => {
                let init = i128::from(init);
                (ms_to_ns(init + first), ms_to_ns(init + last))
            }
            None => (export, export),
        }
    }
}

/// Sampling facts of one options data record.
#[derive(Default)]
struct OptionsBuilder {
    interval_34_50: Option<u64>,
    packet_interval: Option<u64>,
    packet_space: Option<u64>,
    sampler_id: Option<u64>,
    sys_init_ms: Option<u64>,
}

impl OptionsBuilder {
    fn apply(&mut self, ie: u16, v: &FieldValue) {
        match ie {
            34 | 50 => self.interval_34_50 = fv_u64(v),
            305 => self.packet_interval = fv_u64(v),
            306 => self.packet_space = fv_u64(v),
            48 | 302 => self.sampler_id = fv_u64(v),
            160 => self.sys_init_ms = fv_unix_ms(v),
            _ => {}
        }
    }

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

    fn store(self, scope: &mut ScopeState, max_samplers: usize) {
        if let Some(init) = self.sys_init_ms {
            scope.sys_init_ms = Some(init);
        }
        let Some(rate) = self.rate() else {
            return;
        };
        scope.last_rate = rate;
        if let Some(id) = self.sampler_id
            && (scope.by_sampler.contains_key(&id) || scope.by_sampler.len() < max_samplers)
        {
            scope.by_sampler.insert(id, rate);
        }
    }
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

/// Any unsigned integer rendering, including 5-7 byte counters that arrive as raw bytes, and
/// durations in their own unit.
fn fv_u64(v: &FieldValue) -> Option<u64> {
    let fold =
        |b: &[u8]| (b.len() <= 8).then(|| b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)));
    match v {
        FieldValue::DataNumber(DataNumber::Vec(b)) | FieldValue::Vec(b) => fold(b),
        FieldValue::DataNumber(d) => d.as_u64(),
        FieldValue::ProtocolType(p) => Some(u64::from(u8::from(*p))),
        FieldValue::TcpControlBits(bits, _) => Some(u64::from(u16::from(*bits))),
        FieldValue::Duration(DurationValue::Seconds { value, .. })
        | FieldValue::Duration(DurationValue::Millis { value, .. }) => Some(*value),
        _ => None,
    }
}

fn fv_ip(v: &FieldValue) -> Option<IpAddr> {
    match v {
        FieldValue::Ip4Addr(a) => Some(IpAddr::V4(*a)),
        FieldValue::Ip6Addr(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// An absolute time (IE 150-157, 160) as Unix ms. 154-157 count from 1900 (NTP).
fn fv_unix_ms(v: &FieldValue) -> Option<u64> {
    const NTP_TO_UNIX_MS: u64 = 2_208_988_800_000;
    match v {
        FieldValue::Duration(DurationValue::Seconds { value, .. }) => value.checked_mul(1000),
        FieldValue::Duration(DurationValue::Millis { value, .. }) => Some(*value),
        FieldValue::Duration(
            d @ (DurationValue::MicrosNtp { .. } | DurationValue::NanosNtp { .. }),
        ) => u64::try_from(d.as_duration().as_millis())
            .ok()?
            .checked_sub(NTP_TO_UNIX_MS),
        FieldValue::DataNumber(n) => n.as_u64(),
        _ => None,
    }
}

/// The IE number of a v9 field (the crate's raw-bytes rendering of 305/306 is folded into
/// numbers by [`fv_u64`] at the use site).
fn v9_ie(f: &V9Field) -> Option<u16> {
    Some(u16::from(*f))
}

/// Maps data records to flows (appended to `out`); returns how many.
fn data_records<'a, F: 'a>(
    records: impl Iterator<Item = &'a [(F, FieldValue)]>,
    ie: impl Fn(&F) -> Option<u16>,
    ctx: &RecordContext,
    scope: &ScopeState,
    out: &mut Vec<Flow>,
) -> usize {
    let before = out.len();
    for record in records {
        let mut b = RecordBuilder::default();
        for (field, value) in record {
            if let Some(ie) = ie(field) {
                b.apply(ie, value);
            }
        }
        out.push(b.finish(ctx, scope));
    }
    out.len() - before
}

/// Learns sampling rates and boot times from options data records.
fn options_records<'a, F: 'a>(
    records: impl Iterator<Item = &'a [(F, FieldValue)]>,
    ie: impl Fn(&F) -> Option<u16>,
    scope: &mut ScopeState,
    max_samplers: usize,
) {
    for record in records {
        let mut o = OptionsBuilder::default();
        for (field, value) in record {
            if let Some(ie) = ie(field) {
                o.apply(ie, value);
            }
        }
        o.store(scope, max_samplers);
    }
}

/// The IANA IE number of an IPFIX field, for the elements we map. Enterprise fields are `None`.
fn ipfix_ie(f: &IPFixField) -> Option<u16> {
    use IANAIPFixField as I;
    let IPFixField::IANA(i) = f else {
        return None;
    };
    Some(match i {
        I::OctetDeltaCount => 1,
        I::PacketDeltaCount => 2,
        I::ProtocolIdentifier => 4,
        I::TcpControlBits => 6,
        I::SourceTransportPort => 7,
        I::SourceIpv4address => 8,
        I::IngressInterface => 10,
        I::DestinationTransportPort => 11,
        I::DestinationIpv4address => 12,
        I::EgressInterface => 14,
        I::FlowEndSysUpTime => 21,
        I::FlowStartSysUpTime => 22,
        I::PostOctetDeltaCount => 23,
        I::PostPacketDeltaCount => 24,
        I::SourceIpv6address => 27,
        I::DestinationIpv6address => 28,
        I::SamplingInterval => 34,
        I::SamplerId => 48,
        I::SamplerRandomInterval => 50,
        I::FlowStartSeconds => 150,
        I::FlowEndSeconds => 151,
        I::FlowStartMilliseconds => 152,
        I::FlowEndMilliseconds => 153,
        I::FlowStartMicroseconds => 154,
        I::FlowEndMicroseconds => 155,
        I::FlowStartNanoseconds => 156,
        I::FlowEndNanoseconds => 157,
        I::SystemInitTimeMilliseconds => 160,
        I::BgpSourceAsNumber => 16,
        I::BgpDestinationAsNumber => 17,
        I::SelectorId => 302,
        I::SamplingPacketInterval => 305,
        I::SamplingPacketSpace => 306,
        I::Unknown(n) => *n,
        _ => return None,
    })
}

/// Tells, datagram by datagram, whether the reference decoder is known to decode it wrongly
/// (the cases listed in this module's doc), so that differential tests compare flows and reports
/// everywhere else. It follows the templates of the sequence itself, with the product decoder's
/// template parser ([`super::template`]); give it every datagram, in order, before comparing.
pub struct KnownDifferences {
    limits: DecoderLimits,
    scopes: HashMap<ScopeKey, DiffScope>,
}

/// What the tracker knows of one exporter scope.
#[derive(Default)]
struct DiffScope {
    templates: HashMap<u16, DiffTemplate>,
    /// Set once the two decoders' template state may differ for good.
    poisoned: Option<&'static str>,
}

/// A template as the tracker sees it.
struct DiffTemplate {
    /// `None` when the product decoder refused it.
    layout: Option<super::template::Layout>,
    fields: usize,
    /// Why its data cannot be compared at all, if so.
    reason: Option<&'static str>,
    /// The reference refused this redefinition and still has the previous template.
    stale: bool,
}

const RESERVED_SET: &str = "reserved set id decoded as data";
const IPFIX_BAD_TEMPLATE_SET: &str = "IPFIX template set without a usable template";

/// Field values per message `netflow_parser` 1.0.6 decodes at most (its output budget); a set
/// needing more fails whole.
const PARSER_MAX_VALUES: usize = 65_536;

impl KnownDifferences {
    pub fn new(limits: DecoderLimits) -> Self {
        KnownDifferences {
            limits,
            scopes: HashMap::new(),
        }
    }

    /// `Err(reason)` when the reference is known to get this datagram (or the state it leaves)
    /// wrong.
    pub fn check(&mut self, exporter: SocketAddr, datagram: &[u8]) -> Result<(), &'static str> {
        let version = be16(datagram, 0).unwrap_or(0);
        if version != 9 && version != 10 {
            return Ok(());
        }
        let (header_len, end) = if version == 9 {
            (20, datagram.len())
        } else {
            let declared = usize::from(be16(datagram, 2).unwrap_or(0));
            (16, declared.min(datagram.len()))
        };
        let Some(mut rest) = datagram.get(header_len..end) else {
            return Ok(());
        };
        let domain = be32(datagram, if version == 9 { 16 } else { 12 }).unwrap_or(0);
        let limits = self.limits;
        let scope = self.scopes.entry((exporter, version, domain)).or_default();
        let mut verdict = Ok(());
        while rest.len() >= 4 {
            let set_len = be16(rest, 2).map_or(0, usize::from);
            if set_len < 4 || set_len > rest.len() {
                break;
            }
            let (set, tail) = rest.split_at(set_len);
            rest = tail;
            let set_id = be16(set, 0).unwrap_or(0);
            let result = if version == 10 && set_id < 2 {
                // The reference takes these as v9 templates: it may now know templates we
                // do not.
                scope.poisoned = Some("v9-style template set inside IPFIX");
                Ok(())
            } else if super::template::template_set_kind(version, set_id).is_some() {
                scope.learn(version, set_id, &set[4..], &limits)
            } else if set_id >= 256 {
                scope.data(set_id, &set[4..])
            } else if scope.templates.contains_key(&set_id) {
                // The reference decodes a reserved set id with a template of that id (its
                // options data may even feed its sampling state).
                scope.poisoned = Some(RESERVED_SET);
                Err(RESERVED_SET)
            } else {
                Ok(())
            };
            verdict = verdict.and(result);
        }
        match scope.poisoned {
            Some(reason) => Err(reason),
            None => verdict,
        }
    }
}

impl DiffScope {
    fn learn(
        &mut self,
        version: u16,
        set_id: u16,
        body: &[u8],
        limits: &DecoderLimits,
    ) -> Result<(), &'static str> {
        use super::template::{self, TemplateRecord, VARIABLE_LENGTH};
        let Some(records) = template::TemplateRecords::new(version, set_id, body) else {
            return Ok(());
        };
        let mut verdict = Ok(());
        // The reference wrapper's own layout table stops at a template id below 256.
        let mut after_reserved = false;
        let mut usable = false;
        for record in records {
            let spec = match record {
                TemplateRecord::Define(spec) => spec,
                TemplateRecord::Withdraw { kind, .. } => {
                    self.poisoned = Some(match kind {
                        template::Kind::Options => "IPFIX options template withdrawal",
                        // Not wrong, but it applies a set's withdrawals before its definitions
                        // and the product decoder in order: not worth modelling.
                        template::Kind::Data => "IPFIX template withdrawal",
                    });
                    continue;
                }
            };
            let layout = template::compile(version, &spec, limits).ok();
            usable |= layout.is_some();
            let variable = spec.fields.iter().any(|f| f.len == VARIABLE_LENGTH);
            // The reference keeps decoding an id it refuses to redefine with its old template:
            // its data may then even feed the reference's sampling state.
            let stale = self.templates.contains_key(&spec.id);
            let reason = if layout.is_none() && self.templates.contains_key(&spec.id) {
                Some("redefinition with an unusable template")
            } else if version == 9 && variable && layout.is_some() {
                // Refused whole by the reference: the template set's counts differ too.
                verdict = Err("v9 variable-length template");
                Some("v9 variable-length template")
            } else if after_reserved {
                Some("template after a reserved id in its set")
            } else {
                template_reason(version, &spec, layout.as_ref())
            };
            after_reserved |= spec.id < 256;
            let fields = spec.fields.len();
            let stale = stale && (layout.is_none() || (version == 9 && variable));
            self.templates.insert(
                spec.id,
                DiffTemplate {
                    layout,
                    fields,
                    reason,
                    stale,
                },
            );
            if self.templates.len() > limits.max_templates {
                self.poisoned = Some("template cache bounds");
            }
        }
        if version == 10 && !usable && self.poisoned.is_none() {
            return Err(IPFIX_BAD_TEMPLATE_SET);
        }
        verdict
    }

    fn data(&mut self, set_id: u16, body: &[u8]) -> Result<(), &'static str> {
        let Some(t) = self.templates.get(&set_id) else {
            return Ok(());
        };
        if t.stale {
            self.poisoned = Some("data for a template the reference did not redefine");
            return Err("data for a template the reference did not redefine");
        }
        let options = t
            .layout
            .as_ref()
            .is_some_and(|l| l.kind == super::template::Kind::Options);
        let verdict = match t.reason {
            Some(reason) => Err(reason),
            None => t.set_ok(body),
        };
        if let (Err(reason), true) = (verdict, options) {
            // Options data one decoder used and the other did not: their sampling states may
            // differ from now on.
            self.poisoned = Some(reason);
        }
        verdict
    }
}

impl DiffTemplate {
    /// Whether the reference decodes this template's set `body` right.
    fn set_ok(&self, body: &[u8]) -> Result<(), &'static str> {
        use super::template::Shape;
        let t = self;
        match t.layout.as_ref().map(|l| &l.shape) {
            Some(Shape::Fixed { record_len, .. }) => {
                // The wrapper cuts fixed-length sets into pieces of 1024 records.
                let records = (body.len() / record_len).min(PARSER_MAX_RECORDS_PER_SET);
                if records * t.fields > PARSER_MAX_VALUES {
                    return Err("output budget");
                }
                Ok(())
            }
            Some(Shape::Variable { fields, min_len }) => variable_set_ok(fields, *min_len, body),
            None => Ok(()),
        }
    }
}

/// Why the reference cannot be compared on a template's data, judging by the template alone.
fn template_reason(
    version: u16,
    spec: &super::template::TemplateSpec,
    layout: Option<&super::template::Layout>,
) -> Option<&'static str> {
    match layout {
        Some(l) if has_wide_integer(l) => Some("integer wider than 8 bytes"),
        _ if version == 9 && spec.fields.iter().any(|f| f.ie == 95 && f.len == 0) => {
            Some("v9 IE 95 of length 0")
        }
        // Refused by both, but the wrapper's own layout table (which does not check limits) may
        // still count a set of it as damaged on top of missing template.
        None => Some("data for a refused template"),
        Some(_) => None,
    }
}

/// Whether a mapped field other than an address or a name is a fixed-length value wider than 8
/// bytes.
fn has_wide_integer(layout: &super::template::Layout) -> bool {
    use super::template::{Shape, Target, VARIABLE_LENGTH};
    let wide = |len: usize, target: Target| {
        len > 8
            && !matches!(
                target,
                Target::SrcV6 | Target::DstV6 | Target::NatDst | Target::OptIfName
            )
    };
    match &layout.shape {
        Shape::Fixed { ops, .. } => ops.iter().any(|op| wide(op.len, op.target)),
        Shape::Variable { fields, .. } => fields.iter().any(|f| {
            f.len != VARIABLE_LENGTH && f.target.is_some_and(|t| wide(usize::from(f.len), t))
        }),
    }
}

/// An IPFIX variable-length set the reference decodes right: no zero-length value, at most 1024
/// records, within its output budget.
fn variable_set_ok(
    fields: &[super::template::WalkField],
    min_len: usize,
    body: &[u8],
) -> Result<(), &'static str> {
    use super::template::VARIABLE_LENGTH;
    let (mut at, mut records) = (0usize, 0usize);
    while body.len() - at >= min_len.max(1) {
        for f in fields {
            let len = if f.len == VARIABLE_LENGTH {
                let Some(&short) = body.get(at) else {
                    return Ok(()); // damaged: both count it
                };
                at += 1;
                let len = if short == 255 {
                    let Some(long) = be16(body, at) else {
                        return Ok(());
                    };
                    at += 2;
                    usize::from(long)
                } else {
                    usize::from(short)
                };
                if len == 0 {
                    return Err("zero-length variable-length value");
                }
                len
            } else {
                usize::from(f.len)
            };
            at += len;
        }
        if at > body.len() {
            return Ok(());
        }
        records += 1;
    }
    if records > PARSER_MAX_RECORDS_PER_SET {
        return Err("variable-length set of more than 1024 records");
    }
    if records * fields.len() > PARSER_MAX_VALUES {
        return Err("output budget");
    }
    Ok(())
}

//! Pure: v9 / IPFIX (options) template records → compiled record layouts.
//!
//! Owns the wire format of template records (RFC 3954 §5.2 and §6.1, RFC 7011 §3.4 and §8.1), the
//! rules that make a template usable, which information elements (IEs) the flow record takes from
//! data and options records (goflow2's mapping), and the compiled layout the decoder walks:
//! - a template whose fields all have a fixed length becomes a record length plus one
//!   `(offset, length, target)` operation per mapped field, so a record is decoded by reading the
//!   datagram in place at known offsets;
//! - a template with variable-length fields (length 0xFFFF; RFC 7011 §7, also sent inside v9 by
//!   H3C) keeps its field list, and each record is walked field by field;
//! - a data template also gets a [`DetailPlan`]: where the goflow2 fields that only flow lines
//!   need sit (read by [`super::detail`], never on the metrics' path).
//!
//! It does not own where templates live (exporter scopes, limits, TTL) nor what a value means for
//! the flow (conversions, rates, times): that is [`super::netflow`].

use super::netflow::DecoderLimits;

/// The field length that announces a variable-length field (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 0xFFFF;

/// Whether a template describes data records (flows) or options records (sampling, boot time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data,
    Options,
}

/// The unit of an absolute time IE (150-157, 160).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Millis,
    /// NTP timestamp (seconds since 1900 + 2^-32 fractions): IE 154/155 and 156/157.
    Ntp,
}

/// Where the value of a mapped field goes. Data records use the first group, options records the
/// `Opt*` group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// IE 1 octetDeltaCount, IE 23 postOctetDeltaCount.
    Bytes,
    /// IE 2 packetDeltaCount, IE 24 postPacketDeltaCount.
    Packets,
    /// IE 4.
    Proto,
    /// IE 6.
    TcpFlags,
    /// IE 7.
    SrcPort,
    /// IE 11.
    DstPort,
    /// IE 8.
    SrcV4,
    /// IE 12.
    DstV4,
    /// IE 27.
    SrcV6,
    /// IE 28.
    DstV6,
    /// IE 10.
    InIf,
    /// IE 14.
    OutIf,
    /// IE 34 / 50 inside a data record (MikroTik, Huawei, H3C).
    RateInRecord,
    /// IE 48 / 302 inside a data record: joins the record to its sampler's options row.
    SamplerId,
    /// IE 22 flowStartSysUpTime (ms since boot).
    UptimeStart,
    /// IE 21 flowEndSysUpTime.
    UptimeEnd,
    /// IE 150 / 152 / 154 / 156.
    AbsStart(TimeUnit),
    /// IE 151 / 153 / 155 / 157.
    AbsEnd(TimeUnit),
    /// IE 160 systemInitTimeMilliseconds inside a data record (RouterOS 7).
    SysInit,
    /// IE 226 postNATDestinationIPv4Address / 282 postNATDestinationIPv6Address: the flow's
    /// destination with `--nat-attribution`.
    NatDst,
    /// IE 16 bgpSourceAsNumber.
    SrcAs,
    /// IE 17 bgpDestinationAsNumber.
    DstAs,
    /// Options IE 34 samplingInterval / 50 samplerRandomInterval.
    OptInterval,
    /// Options IE 305 samplingPacketInterval.
    OptPacketInterval,
    /// Options IE 306 samplingPacketSpace.
    OptPacketSpace,
    /// Options IE 48 samplerId / 302 selectorId.
    OptSamplerId,
    /// Options IE 160 (softflowd).
    OptSysInit,
    /// Options scope IE 10 / 14 (IPFIX) or scope type 2 "interface" (v9): the interface a row
    /// describes.
    OptIfIndex,
    /// Options IE 82 interfaceName.
    OptIfName,
}

/// The data record mapping: what `RecordBuilder::apply` of the reference decoder maps.
fn data_target(ie: u16) -> Option<Target> {
    use Target as T;
    Some(match ie {
        1 | 23 => T::Bytes,
        2 | 24 => T::Packets,
        4 => T::Proto,
        6 => T::TcpFlags,
        7 => T::SrcPort,
        11 => T::DstPort,
        8 => T::SrcV4,
        12 => T::DstV4,
        27 => T::SrcV6,
        28 => T::DstV6,
        10 => T::InIf,
        14 => T::OutIf,
        34 | 50 => T::RateInRecord,
        48 | 302 => T::SamplerId,
        22 => T::UptimeStart,
        21 => T::UptimeEnd,
        150 => T::AbsStart(TimeUnit::Seconds),
        152 => T::AbsStart(TimeUnit::Millis),
        154 | 156 => T::AbsStart(TimeUnit::Ntp),
        151 => T::AbsEnd(TimeUnit::Seconds),
        153 => T::AbsEnd(TimeUnit::Millis),
        155 | 157 => T::AbsEnd(TimeUnit::Ntp),
        160 => T::SysInit,
        226 | 282 => T::NatDst,
        16 => T::SrcAs,
        17 => T::DstAs,
        _ => return None,
    })
}

/// The options record mapping: what `OptionsBuilder::apply` of the reference decoder maps.
fn options_target(ie: u16) -> Option<Target> {
    use Target as T;
    Some(match ie {
        34 | 50 => T::OptInterval,
        305 => T::OptPacketInterval,
        306 => T::OptPacketSpace,
        48 | 302 => T::OptSamplerId,
        160 => T::OptSysInit,
        10 | 14 => T::OptIfIndex,
        82 => T::OptIfName,
        _ => return None,
    })
}

/// Where a data record field goes among the goflow2 detail fields ([`crate::flow::FlowDetail`]),
/// the fields only flow lines (`--flows-out`) need. The mapping is goflow2 v2.2.6's
/// (`docs/goflow2-flow-lines.md` §2.2): what it maps that the flow record does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailTarget {
    /// IE 5 ipClassOfService.
    Tos,
    /// IE 52 minimumTTL.
    Ttl,
    /// IE 197 fragmentFlags (goflow2 keeps the top 3 bits).
    IpFlags,
    /// IE 89 forwardingStatus.
    ForwardingStatus,
    /// IE 32 / 139 icmpTypeCode: type in the high byte, code in the low one.
    IcmpTypeCode,
    /// IE 176 / 178.
    IcmpType,
    /// IE 177 / 179.
    IcmpCode,
    /// IE 31 flowLabelIPv6.
    FlowLabel,
    /// IE 54 fragmentIdentification.
    FragmentId,
    /// IE 88 fragmentOffset.
    FragmentOffset,
    /// IE 15 / 62 ipNextHop.
    NextHop,
    /// IE 18 / 63 bgpNextHop.
    BgpNextHop,
    /// IE 9 / 29 source prefix length.
    SrcMask,
    /// IE 13 / 30 destination prefix length.
    DstMask,
    /// IE 56 / 81 source MAC.
    SrcMac,
    /// IE 80 / 57 destination MAC.
    DstMac,
    /// IE 58 vlanId (goflow2 writes it to `vlan_id` and `src_vlan`).
    SrcVlan,
    /// IE 59 postVlanId.
    DstVlan,
    /// IE 70, 71, 72: the MPLS label stack entry at this depth (0 = top).
    Mpls(u8),
    /// IE 60 ipVersion.
    IpVersion,
    /// IE 138 observationPointId.
    ObservationPointId,
    /// IE 225 / 281 postNATSource address.
    NatSrc,
    /// IE 226 / 282 postNATDestination address.
    NatDst,
    /// IE 227 postNAPTSourceTransportPort.
    NatSrcPort,
    /// IE 228 postNAPTDestinationTransportPort.
    NatDstPort,
    /// IE 12 / 28: the destination as exported (kept for flow lines when `--nat-attribution`
    /// replaced the flow's).
    Dst,
}

fn detail_target(ie: u16) -> Option<DetailTarget> {
    use DetailTarget as D;
    Some(match ie {
        5 => D::Tos,
        52 => D::Ttl,
        197 => D::IpFlags,
        89 => D::ForwardingStatus,
        32 | 139 => D::IcmpTypeCode,
        176 | 178 => D::IcmpType,
        177 | 179 => D::IcmpCode,
        31 => D::FlowLabel,
        54 => D::FragmentId,
        88 => D::FragmentOffset,
        15 | 62 => D::NextHop,
        18 | 63 => D::BgpNextHop,
        9 | 29 => D::SrcMask,
        13 | 30 => D::DstMask,
        56 | 81 => D::SrcMac,
        80 | 57 => D::DstMac,
        58 => D::SrcVlan,
        59 => D::DstVlan,
        70 => D::Mpls(0),
        71 => D::Mpls(1),
        72 => D::Mpls(2),
        60 => D::IpVersion,
        138 => D::ObservationPointId,
        225 | 281 => D::NatSrc,
        226 | 282 => D::NatDst,
        227 => D::NatSrcPort,
        228 => D::NatDstPort,
        12 | 28 => D::Dst,
        _ => return None,
    })
}

/// The detail fields of a data template, compiled with it (cheap, once per template) and read
/// only when flow lines are written. `ops` hold, per mapped field in template order, the field's
/// index in the template and, for fixed-length templates, its offset in the record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailPlan {
    pub ops: Box<[DetailOp]>,
    /// IE 60 comes after every address field of the template: its version decides `etype` over
    /// the addresses' family (goflow2 sets `etype` at each effective write, in template order).
    pub ip_version_last: bool,
}

/// One detail field of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetailOp {
    /// Position among the template's fields.
    pub index: usize,
    /// Offset in the record (fixed-length templates; 0 otherwise).
    pub offset: usize,
    pub len: usize,
    pub target: DetailTarget,
}

impl DetailPlan {
    fn new(version: u16, fields: &[FieldSpec]) -> Self {
        let mut ops = Vec::new();
        let (mut offset, mut fixed) = (0, true);
        let (mut last_addr, mut last_ip_version) = (None, None);
        for (index, f) in fields.iter().enumerate() {
            let mapped = f.enterprise.is_none() && !(version == 9 && f.scope);
            if mapped && matches!(f.ie, 8 | 12 | 27 | 28) {
                last_addr = Some(index);
            }
            if let Some(target) = detail_target(f.ie).filter(|_| mapped) {
                if target == DetailTarget::IpVersion {
                    last_ip_version = Some(index);
                }
                ops.push(DetailOp {
                    index,
                    offset: if fixed { offset } else { 0 },
                    len: usize::from(f.len),
                    target,
                });
            }
            fixed &= f.len != VARIABLE_LENGTH;
            offset += usize::from(f.len);
        }
        DetailPlan {
            ops: ops.into_boxed_slice(),
            ip_version_last: last_ip_version > last_addr,
        }
    }
}

/// One field specifier as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// IE number without the enterprise bit.
    pub ie: u16,
    /// Length in bytes, or [`VARIABLE_LENGTH`].
    pub len: u16,
    /// IPFIX private enterprise number: the IE is not an IANA one and is never mapped.
    pub enterprise: Option<u32>,
    /// A scope field of an options template.
    pub scope: bool,
}

/// One record of a template set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRecord {
    Define(TemplateSpec),
    /// IPFIX template withdrawal (field count 0). `id` equal to the set id (2 or 3) withdraws
    /// every template of that kind.
    Withdraw {
        id: u16,
        kind: Kind,
    },
}

/// A template definition as read from the wire, not yet checked against limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub id: u16,
    pub kind: Kind,
    pub fields: Vec<FieldSpec>,
    /// The header's own consistency: v9 options lengths are multiples of 4 and announce at
    /// least one scope field; an IPFIX options template has at least one scope field and one
    /// non-scope field (RFC 7011 §3.4.2.2).
    pub header_ok: bool,
}

/// Template set ids: v9 0 (templates) and 1 (options templates); IPFIX 2 and 3.
pub fn template_set_kind(version: u16, set_id: u16) -> Option<Kind> {
    match (version, set_id) {
        (9, 0) | (10, 2) => Some(Kind::Data),
        (9, 1) | (10, 3) => Some(Kind::Options),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The records of one template set body, in order. A record cut short by the end of the set ends
/// the walk: what follows is padding (RFC 3954 §5.2, RFC 7011 §3.3.1), as are fewer than 4 bytes.
pub struct TemplateRecords<'a> {
    version: u16,
    kind: Kind,
    body: &'a [u8],
    pos: usize,
}

impl<'a> TemplateRecords<'a> {
    /// `None` when `set_id` is not a template set id of `version`.
    pub fn new(version: u16, set_id: u16, body: &'a [u8]) -> Option<Self> {
        Some(TemplateRecords {
            version,
            kind: template_set_kind(version, set_id)?,
            body,
            pos: 0,
        })
    }

    /// Reads `count` field specifiers at `self.pos`; `None` when the set ends first.
    fn fields(&mut self, count: usize, scope_count: usize) -> Option<Vec<FieldSpec>> {
        // Each specifier takes at least 4 bytes: a count beyond that is cut short anyway, and
        // the capacity stays bounded by the set size.
        let mut fields = Vec::with_capacity(count.min((self.body.len() - self.pos) / 4));
        for i in 0..count {
            let raw = be16(self.body, self.pos)?;
            let len = be16(self.body, self.pos + 2)?;
            self.pos += 4;
            // The enterprise bit exists only in IPFIX; v9 numbers above 32767 are plain IEs.
            let enterprise = if self.version == 10 && raw & 0x8000 != 0 {
                let pen = be32(self.body, self.pos)?;
                self.pos += 4;
                Some(pen)
            } else {
                None
            };
            let ie = if enterprise.is_some() {
                raw & 0x7FFF
            } else {
                raw
            };
            fields.push(FieldSpec {
                ie,
                len,
                enterprise,
                scope: i < scope_count,
            });
        }
        Some(fields)
    }

    fn next_v9_options(&mut self, id: u16) -> Option<TemplateRecord> {
        let scope_len = usize::from(be16(self.body, self.pos + 2)?);
        let options_len = usize::from(be16(self.body, self.pos + 4)?);
        self.pos += 6;
        let scope_count = scope_len / 4;
        let fields = self.fields(scope_count + options_len / 4, scope_count)?;
        let header_ok = scope_len % 4 == 0 && options_len % 4 == 0 && scope_count > 0;
        Some(TemplateRecord::Define(TemplateSpec {
            id,
            kind: Kind::Options,
            fields,
            header_ok,
        }))
    }
}

impl Iterator for TemplateRecords<'_> {
    type Item = TemplateRecord;

    fn next(&mut self) -> Option<TemplateRecord> {
        let start = self.pos;
        let id = be16(self.body, start)?;
        let count = usize::from(be16(self.body, start + 2)?);
        let record = match (self.version, self.kind) {
            (9, Kind::Options) => self.next_v9_options(id),
            (10, kind) if count == 0 => {
                // A withdrawal is 4 bytes in both set kinds (RFC 7011 §8.1).
                self.pos += 4;
                Some(TemplateRecord::Withdraw { id, kind })
            }
            (10, Kind::Options) => {
                let scope_count = usize::from(be16(self.body, start + 4)?);
                self.pos += 6;
                let fields = self.fields(count, scope_count)?;
                let header_ok = scope_count > 0 && scope_count < count;
                Some(TemplateRecord::Define(TemplateSpec {
                    id,
                    kind: Kind::Options,
                    fields,
                    header_ok,
                }))
            }
            (_, kind) => {
                self.pos += 4;
                let fields = self.fields(count, 0)?;
                Some(TemplateRecord::Define(TemplateSpec {
                    id,
                    kind,
                    fields,
                    header_ok: true,
                }))
            }
        };
        if record.is_none() {
            // Cut short: the rest of the set is padding; stop for good.
            self.pos = self.body.len();
        }
        record
    }
}

/// Why a template definition is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// No fields, inconsistent options header, a record of 0 bytes, or (IPFIX) a field of fixed
    /// length 0.
    Malformed,
    /// More fields than `max_fields_per_template`, or more fixed bytes than
    /// `max_template_bytes`.
    OverLimits,
}

/// One operation of a fixed-length layout: the value at `offset..offset + len` of each record goes
/// to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub offset: usize,
    pub len: usize,
    pub target: Target,
}

/// Where one value sits in a fixed-length record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub offset: usize,
    pub len: usize,
}

/// A fixed-length data template resolved per flow field at compile time, so that a record is
/// decoded by straight-line code (no dispatch per field). For the fields where the last one in
/// the template wins, only the last one is kept: decoding it alone gives the same flow. Addresses
/// ("non-zero wins over zero") and in-record rates ("zero does not override") depend on every
/// occurrence, so those keep all of theirs, in template order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixedPlan {
    pub bytes: Option<Slot>,
    pub packets: Option<Slot>,
    pub proto: Option<Slot>,
    pub tcp_flags: Option<Slot>,
    pub src_port: Option<Slot>,
    pub dst_port: Option<Slot>,
    pub in_if: Option<Slot>,
    pub out_if: Option<Slot>,
    pub sampler_id: Option<Slot>,
    pub uptime_start: Option<Slot>,
    pub uptime_end: Option<Slot>,
    pub abs_start: Option<(Slot, TimeUnit)>,
    pub abs_end: Option<(Slot, TimeUnit)>,
    pub sys_init: Option<Slot>,
    pub src_as: Option<Slot>,
    pub dst_as: Option<Slot>,
    /// [`Target::SrcV4`], [`Target::DstV4`], [`Target::SrcV6`], [`Target::DstV6`] and
    /// [`Target::NatDst`] operations.
    pub addrs: Box<[Op]>,
    /// [`Target::RateInRecord`] operations.
    pub rates: Box<[Op]>,
}

impl FixedPlan {
    fn new(ops: &[Op]) -> Self {
        let mut plan = FixedPlan::default();
        let (mut addrs, mut rates) = (Vec::new(), Vec::new());
        for op in ops {
            let slot = Some(Slot {
                offset: op.offset,
                len: op.len,
            });
            match op.target {
                Target::Bytes => plan.bytes = slot,
                Target::Packets => plan.packets = slot,
                Target::Proto => plan.proto = slot,
                Target::TcpFlags => plan.tcp_flags = slot,
                Target::SrcPort => plan.src_port = slot,
                Target::DstPort => plan.dst_port = slot,
                Target::InIf => plan.in_if = slot,
                Target::OutIf => plan.out_if = slot,
                Target::SamplerId => plan.sampler_id = slot,
                Target::UptimeStart => plan.uptime_start = slot,
                Target::UptimeEnd => plan.uptime_end = slot,
                Target::AbsStart(unit) => plan.abs_start = slot.map(|s| (s, unit)),
                Target::AbsEnd(unit) => plan.abs_end = slot.map(|s| (s, unit)),
                Target::SysInit => plan.sys_init = slot,
                Target::SrcAs => plan.src_as = slot,
                Target::DstAs => plan.dst_as = slot,
                Target::SrcV4 | Target::DstV4 | Target::SrcV6 | Target::DstV6 | Target::NatDst => {
                    addrs.push(*op)
                }
                Target::RateInRecord => rates.push(*op),
                // Options targets: options records go through `ops`.
                Target::OptInterval
                | Target::OptPacketInterval
                | Target::OptPacketSpace
                | Target::OptSamplerId
                | Target::OptSysInit
                | Target::OptIfIndex
                | Target::OptIfName => {}
            }
        }
        plan.addrs = addrs.into_boxed_slice();
        plan.rates = rates.into_boxed_slice();
        plan
    }
}

/// One field of a variable-length layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkField {
    /// Length in bytes, or [`VARIABLE_LENGTH`].
    pub len: u16,
    pub target: Option<Target>,
}

/// How the records of a template are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Every record has `record_len` bytes; `ops` are the mapped fields in template order
    /// (applied in order, they give "the last counter in the template wins"); `plan` is the same
    /// resolved per flow field, for data records.
    Fixed {
        record_len: usize,
        ops: Box<[Op]>,
        plan: Box<FixedPlan>,
    },
    /// At least one variable-length field: records are walked field by field. `min_len` is the
    /// shortest possible record (1 byte per variable-length field): less than that at the end of
    /// a set is padding.
    Variable {
        fields: Box<[WalkField]>,
        min_len: usize,
    },
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub kind: Kind,
    pub shape: Shape,
    /// The goflow2 detail fields of data records (empty for options templates).
    pub detail: DetailPlan,
}

/// Checks `spec` against the rules and `limits`, and compiles it.
///
/// The rules are those of `netflow_parser` 1.0.6 where they are sound (so that the reference
/// decoder and this one agree on which templates exist): at least one field, at most
/// `max_fields_per_template` fields and `max_template_bytes` fixed bytes; v9 records of at least
/// one byte (single zero-length fields are allowed there); IPFIX fields of fixed length 0 are
/// refused. Unlike `netflow_parser`, v9 templates may have variable-length fields (H3C sends
/// them).
pub fn compile(
    version: u16,
    spec: &TemplateSpec,
    limits: &DecoderLimits,
) -> Result<Layout, Rejected> {
    let fields = &spec.fields;
    if fields.len() > limits.max_fields_per_template {
        return Err(Rejected::OverLimits);
    }
    if fields.is_empty() || !spec.header_ok {
        return Err(Rejected::Malformed);
    }
    if version == 10 && fields.iter().any(|f| f.len == 0) {
        return Err(Rejected::Malformed);
    }
    let fixed_bytes: usize = fields
        .iter()
        .filter(|f| f.len != VARIABLE_LENGTH)
        .map(|f| usize::from(f.len))
        .sum();
    if fixed_bytes > limits.max_template_bytes {
        return Err(Rejected::OverLimits);
    }
    let variable = fields.iter().filter(|f| f.len == VARIABLE_LENGTH).count();
    if fixed_bytes + variable == 0 {
        // A record of 0 bytes would never advance: refuse it rather than loop.
        return Err(Rejected::Malformed);
    }
    let detail = match spec.kind {
        Kind::Data => DetailPlan::new(version, fields),
        Kind::Options => DetailPlan::default(),
    };
    Ok(Layout {
        kind: spec.kind,
        shape: shape(version, spec, fixed_bytes + variable, variable > 0),
        detail,
    })
}

/// The layout of a checked template whose shortest record has `min_len` bytes.
fn shape(version: u16, spec: &TemplateSpec, min_len: usize, variable: bool) -> Shape {
    let target = |f: &FieldSpec| field_target(version, spec.kind, f);
    if variable {
        return Shape::Variable {
            fields: spec
                .fields
                .iter()
                .map(|f| WalkField {
                    len: f.len,
                    target: target(f),
                })
                .collect(),
            min_len,
        };
    }
    let mut offset = 0;
    let mut ops = Vec::new();
    for f in &spec.fields {
        let len = usize::from(f.len);
        if let Some(target) = target(f) {
            ops.push(Op {
                offset,
                len,
                target,
            });
        }
        offset += len;
    }
    Shape::Fixed {
        record_len: offset,
        plan: Box::new(FixedPlan::new(&ops)),
        ops: ops.into_boxed_slice(),
    }
}

/// What a field of a template feeds, if anything. Enterprise fields are never IANA elements; v9
/// options scope fields number scopes (1 = system, 2 = interface, ...), not IEs: only the
/// interface scope is mapped there, while IPFIX maps scope fields as IEs (e.g. selectorId as the
/// scope of a sampler row, ingressInterface as the scope of an interface-name row).
fn field_target(version: u16, kind: Kind, f: &FieldSpec) -> Option<Target> {
    if f.enterprise.is_some() {
        return None;
    }
    if version == 9 && f.scope {
        // v9 scope type 2 is "interface": its value is the interface index (RFC 3954 §6.1).
        return (kind == Kind::Options && f.ie == 2).then_some(Target::OptIfIndex);
    }
    match kind {
        Kind::Data => data_target(f.ie),
        Kind::Options => options_target(f.ie),
    }
}

/// A record of a variable-length layout could not be read: it runs past the end of its set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damaged;

/// Reads one variable-length value's length prefix at `at`: one byte, or 255 followed by two
/// bytes (RFC 7011 §7). Returns (value start, value length).
fn variable_length(rest: &[u8], at: usize) -> Option<(usize, usize)> {
    let short = *rest.get(at)?;
    if short < 255 {
        return Some((at + 1, usize::from(short)));
    }
    Some((at + 3, usize::from(be16(rest, at + 1)?)))
}

/// Walks the variable-length record at the start of `rest`, calling `visit` with each field's
/// index in the template and its value (in template order). Returns the record's length,
/// `Ok(None)` when `rest` is shorter than any record (padding), or [`Damaged`] when a record
/// starts but does not fit. Values are visited before the end is known: on `Damaged` the caller
/// discards them.
pub fn walk_variable(
    fields: &[WalkField],
    min_len: usize,
    rest: &[u8],
    mut visit: impl FnMut(usize, &[u8]),
) -> Result<Option<usize>, Damaged> {
    if rest.len() < min_len.max(1) {
        return Ok(None);
    }
    let mut at = 0;
    for (index, f) in fields.iter().enumerate() {
        let (start, len) = if f.len == VARIABLE_LENGTH {
            variable_length(rest, at).ok_or(Damaged)?
        } else {
            (at, usize::from(f.len))
        };
        let value = rest.get(start..start + len).ok_or(Damaged)?;
        visit(index, value);
        at = start + len;
    }
    Ok(Some(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(version: u16, set_id: u16, body: &[u8]) -> Vec<TemplateRecord> {
        TemplateRecords::new(version, set_id, body)
            .unwrap()
            .collect()
    }

    #[test]
    fn ipfix_enterprise_specifier_skips_its_pen_and_is_never_mapped() {
        #[rustfmt::skip]
        let body = [
            0x01, 0x00,             // template id 256
            0x00, 0x02,             // 2 fields
            0x80, 0x01, 0x00, 0x04, // enterprise bit + element 1, 4 bytes
            0x00, 0x00, 0x30, 0x39, // PEN 12345
            0x00, 0x01, 0x00, 0x08, // IE 1 octetDeltaCount, 8 bytes
        ];
        let records = spec(10, 2, &body);
        let [TemplateRecord::Define(t)] = records.as_slice() else {
            panic!("{records:?}");
        };
        assert_eq!(t.fields[0].enterprise, Some(12345));
        let layout = compile(10, t, &DecoderLimits::default()).unwrap();
        let Shape::Fixed {
            record_len, ops, ..
        } = layout.shape
        else {
            panic!("fixed");
        };
        assert_eq!(record_len, 12);
        assert_eq!(
            &*ops,
            &[Op {
                offset: 4,
                len: 8,
                target: Target::Bytes
            }]
        );
    }

    #[test]
    fn ipfix_withdrawals_and_v9_zero_field_templates() {
        #[rustfmt::skip]
        let withdraw = [
            0x01, 0x01, 0x00, 0x00, // template 257, field count 0: withdrawal
            0x00, 0x02, 0x00, 0x00, // template 2, field count 0: withdraw all data templates
        ];
        assert_eq!(
            spec(10, 2, &withdraw),
            [
                TemplateRecord::Withdraw {
                    id: 257,
                    kind: Kind::Data
                },
                TemplateRecord::Withdraw {
                    id: 2,
                    kind: Kind::Data
                },
            ]
        );
        // In v9 the same bytes are two templates with no fields: unusable.
        for r in spec(9, 0, &withdraw) {
            let TemplateRecord::Define(t) = r else {
                panic!("v9 has no withdrawal");
            };
            assert_eq!(
                compile(9, &t, &DecoderLimits::default()),
                Err(Rejected::Malformed)
            );
        }
    }

    #[test]
    fn a_cut_record_ends_the_set_as_padding() {
        #[rustfmt::skip]
        let body = [
            0x01, 0x00, 0x00, 0x01, // template 256, 1 field
            0x00, 0x08, 0x00, 0x04, // IE 8, 4 bytes
            0x01, 0x01, 0x00, 0x02, // template 257, 2 fields ...
            0x00, 0x08,             // ... cut short
        ];
        assert_eq!(spec(9, 0, &body).len(), 1);
    }

    #[test]
    fn limits_and_zero_length_rules() {
        let limits = DecoderLimits {
            max_fields_per_template: 2,
            max_template_bytes: 8,
            ..DecoderLimits::default()
        };
        let t = |fields: &[(u16, u16)]| TemplateSpec {
            id: 256,
            kind: Kind::Data,
            fields: fields
                .iter()
                .map(|&(ie, len)| FieldSpec {
                    ie,
                    len,
                    enterprise: None,
                    scope: false,
                })
                .collect(),
            header_ok: true,
        };
        let c = |version, fields: &[(u16, u16)]| compile(version, &t(fields), &limits);
        assert_eq!(c(9, &[(1, 4), (2, 4), (4, 1)]), Err(Rejected::OverLimits));
        assert_eq!(c(9, &[(1, 8), (2, 4)]), Err(Rejected::OverLimits));
        assert_eq!(c(9, &[(1, 0), (2, 0)]), Err(Rejected::Malformed));
        assert!(c(9, &[(1, 0), (2, 4)]).is_ok());
        assert_eq!(c(10, &[(1, 0), (2, 4)]), Err(Rejected::Malformed));
        // Variable-length bytes do not count against max_template_bytes.
        assert!(c(10, &[(1, 8), (82, VARIABLE_LENGTH)]).is_ok());
        assert!(c(9, &[(1, 8), (82, VARIABLE_LENGTH)]).is_ok());
    }

    #[test]
    fn variable_walk_reads_short_and_long_lengths() {
        let fields = [
            WalkField {
                len: VARIABLE_LENGTH,
                target: Some(Target::Bytes),
            },
            WalkField {
                len: 1,
                target: Some(Target::Proto),
            },
        ];
        let mut seen = Vec::new();
        #[rustfmt::skip]
        let short = [
            0x02, 0xAA, 0xBB, // 1-byte length 2, value
            0x06,             // proto
        ];
        let n = walk_variable(&fields, 2, &short, |i, v| seen.push((i, v.to_vec()))).unwrap();
        assert_eq!(n, Some(4));
        assert_eq!(seen, [(0, vec![0xAA, 0xBB]), (1, vec![0x06])]);
        #[rustfmt::skip]
        let long = [
            0xFF, 0x00, 0x01, 0xCC, // 255, then 2-byte length 1, value
            0x11,                   // proto
        ];
        assert_eq!(walk_variable(&fields, 2, &long, |_, _| {}), Ok(Some(5)));
        // Cut inside the long length, inside the value, before the fixed field.
        for cut in [2, 3, 4] {
            assert_eq!(
                walk_variable(&fields, 2, &long[..cut], |_, _| {}),
                Err(Damaged)
            );
        }
        assert_eq!(walk_variable(&fields, 2, &long[..1], |_, _| {}), Ok(None));
    }
}

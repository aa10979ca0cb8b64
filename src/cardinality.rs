//! Cardinality control: address granularity, per-family series caps and idle expiry.
//!
//! Owns the rules that keep the exposition bounded whatever the traffic:
//! - [`AddrPolicy`]: addresses inside `--local-net` keep host granularity, others are aggregated
//!   to `--remote-prefix-v4` / `--remote-prefix-v6` (a label such as `203.0.113.0/24`).
//! - [`Family`]: the label sets of one metric family, with their cached handles. At most `cap`
//!   label sets; past it, new values are counted under `other`, so totals stay exact. A label set
//!   not updated for `ttl` is dropped (its handles with it); the registry removes the series a
//!   little later (see [`crate::telemetry::Registry`]), so no cached handle is ever orphaned.
//!
//! It knows nothing about flows: the aggregator decides which key a flow has.

use std::hash::Hash;
use std::net::IpAddr;

use hashbrown::HashMap;
use ipnet::IpNet;
use metrics::{Counter, Gauge};

use crate::telemetry::{self as t, Registry};

/// The label identity of an address after granularity rules: unknown, a host, or a network
/// (host bits zero) with its prefix length.
///
/// Stored as two machine words and two bytes rather than an enum over `IpAddr`: every flow builds,
/// hashes and compares two keys in its input and two at the publisher, and the enum (alignment 1,
/// written byte by byte) cost a store-forwarding stall on each copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey {
    /// The address as a 128-bit number (IPv4 in the low 32 bits): high and low halves.
    hi: u64,
    lo: u64,
    /// 0 unknown, 4 IPv4, 6 IPv6.
    family: u8,
    /// Prefix length of a network; 255 for a host.
    prefix: u8,
}

const HOST: u8 = u8::MAX;

impl Default for AddrKey {
    fn default() -> Self {
        AddrKey::UNKNOWN
    }
}

impl AddrKey {
    const UNKNOWN: AddrKey = AddrKey {
        hi: 0,
        lo: 0,
        family: 0,
        prefix: HOST,
    };

    #[inline]
    fn new(addr: IpAddr, prefix: u8) -> Self {
        let (bits, family) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 4),
            IpAddr::V6(a) => (u128::from(a), 6),
        };
        AddrKey {
            hi: (bits >> 64) as u64,
            lo: bits as u64,
            family,
            prefix,
        }
    }

    /// The address (a network's first address for an aggregated key); `None` for `unknown`.
    pub fn addr(&self) -> Option<IpAddr> {
        let bits = (u128::from(self.hi) << 64) | u128::from(self.lo);
        match self.family {
            4 => Some(IpAddr::V4((bits as u32).into())),
            6 => Some(IpAddr::V6(bits.into())),
            _ => None,
        }
    }

    /// The label value: `unknown`, `192.0.2.1`, or `203.0.113.0/24`.
    pub fn label(&self) -> String {
        match (self.addr(), self.prefix) {
            (None, _) => t::UNKNOWN.to_string(),
            (Some(a), HOST) => a.to_string(),
            (Some(a), len) => format!("{a}/{len}"),
        }
    }
}

/// `--local-net`, `--remote-prefix-v4`, `--remote-prefix-v6`.
#[derive(Debug, Clone)]
pub struct AddrPolicy {
    local: Vec<IpNet>,
    v4_prefix: u8,
    v6_prefix: u8,
}

impl Default for AddrPolicy {
    fn default() -> Self {
        AddrPolicy::new(Vec::new(), 32, 128)
    }
}

impl AddrPolicy {
    pub fn new(local: Vec<IpNet>, v4_prefix: u8, v6_prefix: u8) -> Self {
        AddrPolicy {
            local,
            v4_prefix: v4_prefix.min(32),
            v6_prefix: v6_prefix.min(128),
        }
    }

    /// The key of `addr`. Per flow: a few comparisons, no allocation.
    #[inline]
    /// Whether `--local-net` was given (the direction families exist only then).
    pub fn has_local_nets(&self) -> bool {
        !self.local.is_empty()
    }

    /// Whether `addr` is in a `--local-net` network.
    #[inline]
    pub fn is_local(&self, addr: Option<IpAddr>) -> bool {
        addr.is_some_and(|a| self.local.iter().any(|n| n.contains(&a)))
    }

    // `#[inline]` because it runs per flow in `Delta::record`, in another module: without it,
    // whether it is inlined depends on how rustc splits the crate into codegen units, and an
    // unrelated addition to this file once moved it out of reach (flood bench 25 % slower with 50
    // addresses, 15 % with random ones; measured best of 5 alternated runs).
    #[inline]
    pub fn key(&self, addr: Option<IpAddr>) -> AddrKey {
        let Some(addr) = addr else {
            return AddrKey::UNKNOWN;
        };
        let prefix = match addr {
            IpAddr::V4(_) => self.v4_prefix,
            IpAddr::V6(_) => self.v6_prefix,
        };
        let full = if addr.is_ipv4() { 32 } else { 128 };
        if prefix == full || self.local.iter().any(|n| n.contains(&addr)) {
            return AddrKey::new(addr, HOST);
        }
        // `prefix` is in range for the family, so `IpNet::new` cannot fail.
        match IpNet::new(addr, prefix) {
            Ok(net) => AddrKey::new(net.network(), prefix),
            Err(_) => AddrKey::new(addr, HOST),
        }
    }
}

/// What a family keeps per label set: pending deltas and cached handles.
pub trait Slot {
    /// Moves pending deltas into the registry.
    fn flush(&mut self);
    /// What has been added to each counter handle so far.
    fn published(&self) -> Published;
    /// Takes over what the previous holder of the same series had published.
    fn resume(&mut self, published: Published);
}

/// What a label set has added to each of its counters (up to three; unused ones 0).
pub type Published = [u64; 3];

/// Pending deltas plus the cached counter handles of one label set.
///
/// A counter must never go backwards, and the registry's counters wrap at 2⁶⁴: each cell keeps
/// what it has added to each handle and stops at `u64::MAX` (saturates) instead of wrapping.
pub struct Cell<const N: usize> {
    pending: [u64; N],
    published: [u64; N],
    handles: [Counter; N],
}

impl<const N: usize> Cell<N> {
    pub fn new(handles: [Counter; N]) -> Self {
        Cell {
            pending: [0; N],
            published: [0; N],
            handles,
        }
    }

    /// A cell of the counters `names` (flows, bytes[, packets]) of one label set, registered as
    /// expiring series: what every family makes when it admits a new label set.
    pub fn register(
        registry: &Registry,
        names: &[&'static str; N],
        labels: &[(&'static str, &str)],
    ) -> Self {
        Cell::new(names.map(|name| registry.expiring_counter(name, labels)))
    }

    #[inline]
    pub fn add(&mut self, values: [u64; N]) {
        for (p, v) in self.pending.iter_mut().zip(values) {
            *p = p.saturating_add(v);
        }
    }

    /// Marks the series as updated without changing them, so the registry's idle expiry leaves
    /// them alone while this cell holds their handles.
    pub fn keep_alive(&self) {
        self.handles.iter().for_each(|h| h.increment(0));
    }
}

impl<const N: usize> Slot for Cell<N> {
    fn flush(&mut self) {
        for ((p, total), h) in self
            .pending
            .iter_mut()
            .zip(&mut self.published)
            .zip(&self.handles)
        {
            let add = (*p).min(u64::MAX - *total);
            if add != 0 {
                h.increment(add);
                *total += add;
            }
            *p = 0;
        }
    }

    fn published(&self) -> Published {
        let mut out = [0; 3];
        for (o, p) in out.iter_mut().zip(self.published) {
            *o = p;
        }
        out
    }

    fn resume(&mut self, published: Published) {
        for (p, o) in self.published.iter_mut().zip(published) {
            *p = o;
        }
    }
}

struct Entry<V> {
    slot: V,
    last_update: u64,
}

/// Limits of a [`Family`].
#[derive(Debug, Clone, Copy)]
pub struct FamilyLimits {
    /// Label sets before new values go to `other`.
    pub cap: usize,
    /// Seconds without an update before a label set is dropped.
    pub ttl_secs: u64,
}

/// The label sets of one family (one or more metrics sharing a label set, e.g. flows and bytes
/// by source address), capped and expiring.
pub struct Family<K, V> {
    limits: FamilyLimits,
    entries: HashMap<K, Entry<V>>,
    /// The `other` label set, outside the cap.
    other: Option<Entry<V>>,
    /// Label sets dropped while the registry may still hold their series (it removes an idle
    /// series at the first render after the TTL plus [`EXPIRY_MARGIN`]): what they had published,
    /// and when they were dropped. A label set that comes back in that time continues its
    /// series, so saturation bookkeeping continues too. At most one TTL's worth of the cap.
    ///
    /// [`EXPIRY_MARGIN`]: crate::telemetry::EXPIRY_MARGIN
    dropped: HashMap<K, (u64, Published)>,
    other_dropped: Option<(u64, Published)>,
    overflow_pending: u64,
    /// `goflow_metric_overflow_total` and `goflow_metric_series` of each metric of the family.
    overflow: Vec<Counter>,
    series: Vec<Gauge>,
}

impl<K: Hash + Eq + Copy, V: Slot> Family<K, V> {
    /// `metrics` are the names of the family's metrics: the values of the `metric` label of
    /// `goflow_metric_series` and `goflow_metric_overflow_total`.
    pub fn new(registry: &Registry, metrics: &[&'static str], limits: FamilyLimits) -> Self {
        Family {
            limits,
            entries: HashMap::new(),
            other: None,
            dropped: HashMap::new(),
            other_dropped: None,
            overflow_pending: 0,
            overflow: metrics
                .iter()
                .map(|m| registry.counter(t::METRIC_OVERFLOW, &[("metric", m)]))
                .collect(),
            series: metrics
                .iter()
                .map(|m| registry.gauge(t::METRIC_SERIES, &[("metric", m)]))
                .collect(),
        }
    }

    /// The slot of `key`, created by `create` on first sight (or the `other` slot, created by
    /// `create_other`, when the family is full). The hot path: one hash lookup when the key
    /// exists.
    #[inline]
    pub fn slot(
        &mut self,
        key: K,
        now: u64,
        create: impl FnOnce(&K) -> V,
        create_other: impl FnOnce() -> V,
    ) -> &mut V {
        let room = self.entries.len() < self.limits.cap;
        let Family {
            entries,
            dropped,
            other,
            other_dropped,
            overflow_pending,
            ..
        } = self;
        // One hash lookup whether the label set exists, is created, or goes to `other`.
        match entries.entry(key) {
            hashbrown::hash_map::Entry::Occupied(e) => {
                let e = e.into_mut();
                e.last_update = now;
                &mut e.slot
            }
            hashbrown::hash_map::Entry::Vacant(v) if room => {
                let mut slot = create(&key);
                if let Some((_, published)) = dropped.remove(&key) {
                    slot.resume(published);
                }
                let e = v.insert(Entry {
                    slot,
                    last_update: now,
                });
                &mut e.slot
            }
            hashbrown::hash_map::Entry::Vacant(_) => {
                other_slot(other, other_dropped, overflow_pending, now, 1, create_other)
            }
        }
    }

    /// The `other` slot (created by `create_other` when absent), for `flows` that were folded
    /// before they reached the family (they count as overflow).
    pub fn other(&mut self, now: u64, flows: u64, create_other: impl FnOnce() -> V) -> &mut V {
        other_slot(
            &mut self.other,
            &mut self.other_dropped,
            &mut self.overflow_pending,
            now,
            flows,
            create_other,
        )
    }

    /// Flushes every slot, drops label sets idle for `ttl`, and updates the family's gauges.
    /// `visit` sees every slot that stays (after its flush), e.g. to set per-slot gauges.
    /// `rendered` is when the last render of the registry began: label sets dropped more than
    /// [`EXPIRY_MARGIN`](crate::telemetry::EXPIRY_MARGIN) before it are gone from the registry.
    pub fn publish(&mut self, now: u64, rendered: u64, mut visit: impl FnMut(&K, &mut V)) {
        let ttl = self.limits.ttl_secs;
        let dropped = &mut self.dropped;
        // Flush before dropping: an expiring slot's last deltas are published, never lost.
        self.entries.retain(|k, e| {
            e.slot.flush();
            let keep = now.saturating_sub(e.last_update) < ttl;
            if keep {
                visit(k, &mut e.slot);
            } else {
                dropped.insert(*k, (now, e.slot.published()));
            }
            keep
        });
        if let Some(e) = &mut self.other {
            e.slot.flush();
            if now.saturating_sub(e.last_update) >= ttl {
                self.other_dropped = Some((now, e.slot.published()));
                self.other = None;
            }
        }
        let gone = |(at, _): &(u64, Published)| {
            at.saturating_add(crate::telemetry::EXPIRY_MARGIN.as_secs() + 1) <= rendered
        };
        self.dropped.retain(|_, d| !gone(d));
        if self.other_dropped.as_ref().is_some_and(gone) {
            self.other_dropped = None;
        }
        let series = (self.entries.len() + usize::from(self.other.is_some())) as f64;
        self.series.iter().for_each(|g| g.set(series));
        if self.overflow_pending != 0 {
            self.overflow
                .iter()
                .for_each(|c| c.increment(self.overflow_pending));
            self.overflow_pending = 0;
        }
    }

    /// Label sets now (without `other`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Releases the memory of dropped label sets once the table is mostly empty (hash tables do
    /// not shrink by themselves).
    pub fn shrink(&mut self) {
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
        if self.dropped.capacity() > 64 && self.dropped.len() < self.dropped.capacity() / 4 {
            self.dropped.shrink_to_fit();
        }
    }
}

/// The `other` slot of a family (see [`Family::other`]), on the fields it needs, so that
/// [`Family::slot`] can reach it while it holds an entry of the table.
fn other_slot<'a, V: Slot>(
    other: &'a mut Option<Entry<V>>,
    dropped: &mut Option<(u64, Published)>,
    overflow_pending: &mut u64,
    now: u64,
    flows: u64,
    create_other: impl FnOnce() -> V,
) -> &'a mut V {
    *overflow_pending += flows;
    let e = other.get_or_insert_with(|| {
        let mut slot = create_other();
        if let Some((_, published)) = dropped.take() {
            slot.resume(published);
        }
        Entry {
            slot,
            last_update: now,
        }
    });
    e.last_update = now;
    &mut e.slot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn local_nets_keep_hosts_remote_addresses_are_aggregated() {
        let p = AddrPolicy::new(
            vec![
                "192.168.88.0/24".parse().unwrap(),
                "2001:db8:88::/48".parse().unwrap(),
            ],
            24,
            48,
        );
        assert_eq!(p.key(ip("192.168.88.10")).label(), "192.168.88.10");
        assert_eq!(p.key(ip("203.0.113.77")).label(), "203.0.113.0/24");
        assert_eq!(p.key(ip("198.51.100.1")).label(), "198.51.100.0/24");
        assert_eq!(p.key(ip("2001:db8:88::5")).label(), "2001:db8:88::5");
        assert_eq!(
            p.key(ip("2001:db8:ffff:1234::1")).label(),
            "2001:db8:ffff::/48"
        );
        assert_eq!(p.key(None).label(), "unknown");
        // Same network, same key: the label set is shared.
        assert_eq!(p.key(ip("203.0.113.1")), p.key(ip("203.0.113.254")));
    }

    #[test]
    fn defaults_keep_every_address() {
        let p = AddrPolicy::default();
        assert_eq!(p.key(ip("203.0.113.77")).label(), "203.0.113.77");
        assert_eq!(p.key(ip("2001:db8::1")).label(), "2001:db8::1");
        let p = AddrPolicy::new(vec![], 0, 0);
        assert_eq!(p.key(ip("203.0.113.77")).label(), "0.0.0.0/0");
        assert_eq!(p.key(ip("2001:db8::1")).label(), "::/0");
        let p = AddrPolicy::new(vec![], 16, 64);
        assert_eq!(p.key(ip("10.1.2.3")).label(), "10.1.0.0/16");
        assert_eq!(p.key(ip("2001:db8:1:2:3::4")).label(), "2001:db8:1:2::/64");
    }
}

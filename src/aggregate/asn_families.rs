//! The ASN families (`--asn-db`): flows and bytes by source and destination AS number, and one
//! `goflow_asn_info{asn, as_name} 1` per AS seen.
//!
//! Owned by the publisher. The inputs tally, per side, either the AS number the flow carries or
//! the flow's address key ([`crate::aggregate::Delta`]'s `asn_src`/`asn_dst`); here each distinct
//! address of a delta is looked up in the database once, through a cache, never once per flow.
//! SIGHUP sets a flag; the next publish reloads the file (a failure is logged and counted, the
//! database in use stays).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::HashMap;
use metrics::{Counter, Gauge};
use tracing::{error, info};

use crate::asn::AsnDb;
use crate::cardinality::{AddrKey, Cell, Family, FamilyLimits, Published, Slot};
use crate::telemetry::{self as t, Registry};

/// Addresses whose AS number is cached; when full the cache starts over.
const CACHE_ADDRESSES: usize = 1 << 20;
/// Organization names remembered (one per AS seen); beyond, new ASes get no `goflow_asn_info`.
const MAX_NAMES: usize = 1 << 17;

/// `goflow_asn_info`: a gauge at 1 for as long as the AS is seen.
pub struct InfoCell(Gauge);

impl Slot for InfoCell {
    fn flush(&mut self) {
        self.0.set(1.0);
    }

    fn published(&self) -> Published {
        [0; 3]
    }

    fn resume(&mut self, _: Published) {}
}

/// See the module doc.
pub struct AsnFamilies {
    db: Arc<AsnDb>,
    reload: Arc<AtomicBool>,
    reload_errors: Counter,
    cache: HashMap<AddrKey, u32>,
    names: HashMap<u32, String>,
    by_src: Family<u32, Cell<2>>,
    by_dst: Family<u32, Cell<2>>,
    info: Family<u32, InfoCell>,
}

/// Which side of the flow a tally is.
#[derive(Clone, Copy)]
pub enum Side {
    Src,
    Dst,
}

impl AsnFamilies {
    pub fn new(
        registry: &Registry,
        db: Arc<AsnDb>,
        reload: Arc<AtomicBool>,
        limits: FamilyLimits,
    ) -> Self {
        AsnFamilies {
            db,
            reload,
            reload_errors: registry.counter(t::ASN_DB_RELOAD_ERRORS, &[]),
            cache: HashMap::new(),
            names: HashMap::new(),
            by_src: Family::new(
                registry,
                &[t::FLOWS_BY_SRC_ASN, t::BYTES_BY_SRC_ASN],
                limits,
            ),
            by_dst: Family::new(
                registry,
                &[t::FLOWS_BY_DST_ASN, t::BYTES_BY_DST_ASN],
                limits,
            ),
            info: Family::new(registry, &[t::ASN_INFO], limits),
        }
    }

    /// The AS number of a tally key: the one the flow carried, else the database's for the
    /// address (0 when it has none).
    fn number(&mut self, key: AddrKey) -> u32 {
        if let Some(n) = key.carried_asn() {
            return n;
        }
        if let Some(n) = self.cache.get(&key) {
            return *n;
        }
        let found = key.addr().and_then(|a| self.db.lookup(a));
        let n = found.map_or(0, |(n, _)| n);
        if let Some((n, name)) = found
            && !name.is_empty()
            && self.names.len() < MAX_NAMES
        {
            self.names.entry(n).or_insert_with(|| name.to_string());
        }
        if self.cache.len() >= CACHE_ADDRESSES {
            self.cache.clear();
        }
        self.cache.insert(key, n);
        n
    }

    /// Adds one side's tally of a delta (`other`: what the delta could not key).
    pub fn merge(
        &mut self,
        registry: &Registry,
        side: Side,
        cells: impl Iterator<Item = (AddrKey, [u64; 2])>,
        other: [u64; 2],
        now: u64,
    ) {
        let (label, flows, bytes) = match side {
            Side::Src => ("src_asn", t::FLOWS_BY_SRC_ASN, t::BYTES_BY_SRC_ASN),
            Side::Dst => ("dst_asn", t::FLOWS_BY_DST_ASN, t::BYTES_BY_DST_ASN),
        };
        let create = |a: &str| {
            let labels = [(label, a)];
            Cell::new([
                registry.expiring_counter(flows, &labels),
                registry.expiring_counter(bytes, &labels),
            ])
        };
        let mut sums: HashMap<u32, [u64; 2]> = HashMap::new();
        for (key, values) in cells {
            let n = self.number(key);
            let s = sums.entry(n).or_insert([0; 2]);
            s[0] = s[0].saturating_add(values[0]);
            s[1] = s[1].saturating_add(values[1]);
        }
        let family = match side {
            Side::Src => &mut self.by_src,
            Side::Dst => &mut self.by_dst,
        };
        for (n, values) in &sums {
            family
                .slot(*n, now, |n| create(&n.to_string()), || create("other"))
                .add(*values);
        }
        if other[0] != 0 {
            family
                .slot(u32::MAX, now, |_| create("other"), || create("other"))
                .add(other);
        }
        for n in sums.keys().filter(|n| **n != 0) {
            let Some(name) = self.names.get(n) else {
                continue;
            };
            let create = |n: &u32| {
                let g = registry
                    .expiring_gauge(t::ASN_INFO, &[("asn", &n.to_string()), ("as_name", name)]);
                g.set(1.0);
                InfoCell(g)
            };
            self.info.slot(*n, now, create, || {
                InfoCell(
                    registry.expiring_gauge(t::ASN_INFO, &[("asn", "other"), ("as_name", "other")]),
                )
            });
        }
    }

    /// Publishes the families, and reloads the database when SIGHUP asked for it.
    pub fn publish(&mut self, now: u64, rendered: u64) {
        self.by_src.publish(now, rendered, |_, _| {});
        self.by_dst.publish(now, rendered, |_, _| {});
        self.info.publish(now, rendered, |_, _| {});
        if self.reload.swap(false, Ordering::Relaxed) {
            match AsnDb::open(self.db.path()) {
                Ok(db) => {
                    info!(file = %db.path().display(), "SIGHUP: reloaded the --asn-db file");
                    self.db = Arc::new(db);
                    self.cache.clear();
                    self.names.clear();
                }
                Err(e) => {
                    self.reload_errors.increment(1);
                    error!("SIGHUP: {e:#}; the database loaded before stays in use");
                }
            }
        }
    }
}

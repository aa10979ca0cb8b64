//! The ASN families (`--asn-db`): flows and bytes by source and destination AS number, and one
//! `goflow_asn_info{asn, as_name} 1` per AS seen.
//!
//! Owned by the publisher. Flows that carry no AS number are taken from the address families: each
//! address label set looks its AS up once, when it is made ([`AddrCell`]), so a merge adds each
//! address's sums to its AS with no further lookup. Flows that carry one are tallied apart by the
//! inputs (`Delta::carried_src`/`carried_dst`) and moved from their address's AS to their own.
//! SIGHUP sets a flag; the next publish reloads the file (a failure is logged and counted, the
//! database in use stays).

use std::cell::RefCell;
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
    /// AS numbers of addresses without a label set of their own (the family's `other`) and of
    /// carried-AS corrections; bounded, starts over when full.
    cache: HashMap<AddrKey, u32>,
    /// Organization names, recorded as lookups find them (also from `&self` lookups).
    names: RefCell<HashMap<u32, String>>,
    by_src: Family<u32, Cell<2>>,
    by_dst: Family<u32, Cell<2>>,
    info: Family<u32, InfoCell>,
    /// This merge's sums per AS, per side, before they go to the families.
    pending: [HashMap<u32, [u64; 2]>; 2],
}

/// Which side of the flow.
#[derive(Clone, Copy)]
pub enum Side {
    Src = 0,
    Dst = 1,
}

/// The key of the `other` AS label (the delta could not key the flows).
const OTHER: u32 = u32::MAX;

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
            names: RefCell::new(HashMap::new()),
            by_src: Family::new(registry, &t::BY_SRC_ASN, limits),
            by_dst: Family::new(registry, &t::BY_DST_ASN, limits),
            info: Family::new(registry, &[t::ASN_INFO], limits),
            pending: [HashMap::new(), HashMap::new()],
        }
    }

    /// The database's AS number of an address key (0 when it has none), looked up now: for a
    /// new address label set, which keeps it.
    pub fn db_number(&self, key: &AddrKey) -> u32 {
        let Some((n, name)) = key.addr().and_then(|a| self.db.lookup(a)) else {
            return 0;
        };
        let mut names = self.names.borrow_mut();
        if !name.is_empty() && names.len() < MAX_NAMES && !names.contains_key(&n) {
            names.insert(n, name.to_string());
        }
        n
    }

    /// [`AsnFamilies::db_number`] through the cache.
    pub fn number(&mut self, key: AddrKey) -> u32 {
        if let Some(n) = self.cache.get(&key) {
            return *n;
        }
        let n = self.db_number(&key);
        if self.cache.len() >= CACHE_ADDRESSES {
            self.cache.clear();
        }
        self.cache.insert(key, n);
        n
    }

    /// Adds flows and bytes to AS `n` (`None`: `other`) of `side` in this merge.
    pub fn add(&mut self, side: Side, n: Option<u32>, values: [u64; 2]) {
        let s = self.pending[side as usize]
            .entry(n.unwrap_or(OTHER))
            .or_insert([0; 2]);
        s[0] = s[0].saturating_add(values[0]);
        s[1] = s[1].saturating_add(values[1]);
    }

    /// Moves flows that carry AS `carried` off the AS their address has in the database (the
    /// address tallies counted them there) onto `carried`.
    pub fn carried(&mut self, side: Side, key: AddrKey, carried: u32, values: [u64; 2]) {
        let db = self.number(key);
        if let Some(s) = self.pending[side as usize].get_mut(&db) {
            s[0] = s[0].saturating_sub(values[0]);
            s[1] = s[1].saturating_sub(values[1]);
        }
        self.add(side, Some(carried), values);
    }

    /// Adds this merge's sums to the families (and `goflow_asn_info` for each named AS).
    pub fn flush(&mut self, registry: &Registry, now: u64) {
        for side in [Side::Src, Side::Dst] {
            let (label, names) = match side {
                Side::Src => ("src_asn", t::BY_SRC_ASN),
                Side::Dst => ("dst_asn", t::BY_DST_ASN),
            };
            let create = |a: &str| Cell::register(registry, &names, &[(label, a)]);
            let family = match side {
                Side::Src => &mut self.by_src,
                Side::Dst => &mut self.by_dst,
            };
            let names = self.names.borrow();
            for (n, values) in self.pending[side as usize].drain() {
                if values[0] == 0 {
                    continue;
                }
                let label = |n: &u32| {
                    if *n == OTHER {
                        "other".to_string()
                    } else {
                        n.to_string()
                    }
                };
                family
                    .slot(n, now, |n| create(&label(n)), || create("other"))
                    .add(values);
                let Some(name) = names.get(&n).filter(|_| n != 0 && n != OTHER) else {
                    continue;
                };
                let create_info = |n: &u32| {
                    let g = registry
                        .expiring_gauge(t::ASN_INFO, &[("asn", &n.to_string()), ("as_name", name)]);
                    g.set(1.0);
                    InfoCell(g)
                };
                self.info.slot(n, now, create_info, || {
                    InfoCell(
                        registry
                            .expiring_gauge(t::ASN_INFO, &[("asn", "other"), ("as_name", "other")]),
                    )
                });
            }
        }
    }

    /// Reloads the database when SIGHUP asked for it; `true` when a new one is in use (the
    /// address label sets must then look their AS up again).
    pub fn reload_if_asked(&mut self) -> bool {
        if !self.reload.swap(false, Ordering::Relaxed) {
            return false;
        }
        match AsnDb::open(self.db.path()) {
            Ok(db) => {
                info!(file = %db.path().display(), "SIGHUP: reloaded the --asn-db file");
                self.db = Arc::new(db);
                self.cache.clear();
                self.names.borrow_mut().clear();
                true
            }
            Err(e) => {
                self.reload_errors.increment(1);
                error!("SIGHUP: {e:#}; the database loaded before stays in use");
                false
            }
        }
    }

    /// Publishes the families.
    pub fn publish(&mut self, now: u64, rendered: u64) {
        self.by_src.publish(now, rendered, |_, _| {});
        self.by_dst.publish(now, rendered, |_, _| {});
        self.info.publish(now, rendered, |_, _| {});
    }
}

/// An address label set with, under `--asn-db`, the AS number the database gives its address
/// (looked up once, when the label set is made): the ASN families take it from here instead of
/// looking each address up again. `None` for the `other` label set and without `--asn-db`.
pub struct AddrCell {
    pub cell: Cell<2>,
    pub asn: Option<u32>,
}

impl Slot for AddrCell {
    fn flush(&mut self) {
        self.cell.flush();
    }

    fn published(&self) -> Published {
        self.cell.published()
    }

    fn resume(&mut self, published: Published) {
        self.cell.resume(published);
    }
}

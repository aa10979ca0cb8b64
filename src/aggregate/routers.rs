//! Routers: the one bound on `sampler_address` label values, and the per-router self metrics.
//!
//! Owns which routers (flow samplers, NetFlow/IPFIX exporters) have labels of their own. Every
//! family labelled by `sampler_address` asks [`Routers::label`], so all of them, fed by every
//! socket, thread and input, share one limit (`--max-exporters`): a spoofed source beyond it is
//! counted under `other` everywhere, and the totals stay exact. A router not heard from for
//! `--exporter-idle` is forgotten, with its per-router series, so the table and the exposition
//! return to their size after a spoof flood. Established routers are never displaced by
//! newcomers: when the table is full, newcomers wait (as `other`) until a slot expires.
//!
//! Also owns the per-router self metrics (`goflow_exporter_datagrams_total`,
//! `goflow_exporter_bytes_total`, `goflow_exporter_templates`).

use std::net::IpAddr;

use hashbrown::HashMap;
use metrics::Gauge;
use tracing::{info, warn};

use crate::cardinality::{Cell, Slot};
use crate::telemetry::{self as t, Registry};

/// A `sampler_address` label: a router with a label of its own (or `unknown` for flows without
/// one), or `other` beyond the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Router {
    Addr(Option<IpAddr>),
    Other,
}

impl Router {
    pub fn label(self) -> String {
        match self {
            Router::Addr(a) => super::addr_label(a),
            Router::Other => "other".into(),
        }
    }
}

/// What the table keeps per router.
struct Entry {
    last_seen: u64,
    /// `goflow_exporter_{datagrams,bytes}_total`, once it sent a datagram (stdin samplers never
    /// do).
    datagrams: Option<Cell<2>>,
    templates: Option<Gauge>,
}

/// See the module doc.
pub struct Routers {
    max: usize,
    idle_secs: u64,
    table: HashMap<IpAddr, Entry>,
    /// `goflow_exporter_*_total{sampler_address="other"}` and when it was last counted into.
    other_datagrams: Option<(Cell<2>, u64)>,
    warned_full: bool,
    /// Each input's latest snapshot of templates per exporter, by input.
    snapshots: HashMap<usize, Vec<(IpAddr, usize)>>,
}

impl Routers {
    pub fn new(max: usize, idle_secs: u64) -> Self {
        Routers {
            max: max.max(1),
            idle_secs: idle_secs.max(1),
            table: HashMap::new(),
            other_datagrams: None,
            warned_full: false,
            snapshots: HashMap::new(),
        }
    }

    /// The label of `sampler` at monotonic second `now`, admitting it while there is room.
    /// Called per distinct sampler of a delta, never per flow.
    pub fn label(&mut self, sampler: Option<IpAddr>, now: u64) -> Router {
        let Some(ip) = sampler else {
            return Router::Addr(None);
        };
        if let Some(e) = self.table.get_mut(&ip) {
            e.last_seen = now;
            return Router::Addr(Some(ip));
        }
        if self.table.len() < self.max {
            info!(router = %ip, "new router (sampler_address)");
            self.table.insert(
                ip,
                Entry {
                    last_seen: now,
                    datagrams: None,
                    templates: None,
                },
            );
            return Router::Addr(Some(ip));
        }
        if !std::mem::replace(&mut self.warned_full, true) {
            warn!(
                max = self.max,
                "more routers than --max-exporters: the rest are counted as sampler_address=\"other\" until known routers go idle (--exporter-idle)"
            );
        }
        Router::Other
    }

    /// Counts datagrams and payload bytes of `exporter` (`None`: exporters an input could not
    /// tell apart in a flood, counted as `other`).
    pub fn count_datagrams(
        &mut self,
        registry: &Registry,
        exporter: Option<IpAddr>,
        values: [u64; 2],
        now: u64,
    ) {
        let router = match exporter {
            Some(ip) => self.label(Some(ip), now),
            None => Router::Other,
        };
        let cell = match router {
            Router::Addr(Some(ip)) => self.table.get_mut(&ip).map(|e| {
                e.datagrams
                    .get_or_insert_with(|| datagram_cell(registry, &ip.to_string()))
            }),
            Router::Addr(None) => None,
            Router::Other => {
                let (cell, seen) = self
                    .other_datagrams
                    .get_or_insert_with(|| (datagram_cell(registry, "other"), now));
                *seen = now;
                Some(cell)
            }
        };
        if let Some(cell) = cell {
            cell.add(values);
        }
    }

    /// Replaces `input`'s snapshot of templates per exporter.
    pub fn set_templates(&mut self, input: usize, snapshot: Vec<(IpAddr, usize)>) {
        self.snapshots.insert(input, snapshot);
    }

    /// Publishes the per-router self metrics and forgets routers idle for `--exporter-idle`.
    /// Returns the routers forgotten.
    pub fn publish(&mut self, registry: &Registry, now: u64) -> Vec<IpAddr> {
        let idle = self.idle_secs;
        let mut gone = Vec::new();
        self.table.retain(|ip, e| {
            let keep = now.saturating_sub(e.last_seen) < idle;
            if !keep {
                gone.push(*ip);
            }
            keep
        });
        if !gone.is_empty() {
            info!(
                routers = gone.len(),
                "forgot routers idle for --exporter-idle (their per-router series expire)"
            );
            self.warned_full = false;
            if self.table.capacity() > 64 && self.table.len() < self.table.capacity() / 4 {
                self.table.shrink_to_fit();
            }
        }
        for e in self.table.values_mut() {
            if let Some(c) = &mut e.datagrams {
                c.flush();
                // Held handles are kept alive, so the registry never removes a series we still
                // count into; dropped with the router, the series expires with the series TTL.
                c.keep_alive();
            }
        }
        if let Some((c, seen)) = &mut self.other_datagrams {
            c.flush();
            if now.saturating_sub(*seen) < idle {
                c.keep_alive();
            } else {
                self.other_datagrams = None;
            }
        }
        self.publish_templates(registry);
        gone
    }

    /// Sets each templates gauge to the sum over the inputs' latest snapshots, in place: a live
    /// router's gauge never reads 0 between two snapshots.
    fn publish_templates(&mut self, registry: &Registry) {
        let mut totals: HashMap<IpAddr, usize> = HashMap::new();
        for (ip, n) in self.snapshots.values().flatten() {
            *totals.entry(*ip).or_default() += n;
        }
        for (ip, e) in &mut self.table {
            let n = totals.get(ip).copied().unwrap_or(0);
            if e.templates.is_none() && n == 0 {
                continue;
            }
            e.templates
                .get_or_insert_with(|| {
                    let label = ip.to_string();
                    registry.expiring_gauge(t::EXPORTER_TEMPLATES, &[("sampler_address", &label)])
                })
                .set(n as f64);
        }
    }

    /// Routers with labels of their own now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

fn datagram_cell(registry: &Registry, label: &str) -> Cell<2> {
    let names = [t::EXPORTER_DATAGRAMS, t::EXPORTER_BYTES];
    Cell::register(registry, &names, &[("sampler_address", label)])
}

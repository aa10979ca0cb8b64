//! The active-flows tracker behind `goflow_active_flows`: distinct flow keys per router seen
//! within `--active-window`, bounded by `--active-flows-max`.
//!
//! A key is stored as the 64-bit fingerprint the input computed of (sampler, src, dst, ports,
//! protocol) with a small router index: 16 bytes per tracked flow instead of ~70, so the default
//! million keys fit in about 35 MiB. Two distinct keys share a fingerprint with probability
//! ~n²/2⁶⁵ (about 3·10⁻⁸ at a million keys): negligible for a gauge.
//!
//! Times are the publisher's monotonic seconds (when a flow was merged, within a shipment period
//! of its arrival), never the flow's own timestamps, so exporter clock jumps cannot break the
//! gauge. A router with no live key gives its index back at the sweep, so spoofed samplers cannot
//! grow the index table.

use hashbrown::HashMap;
use metrics::Counter;

use super::delta::Delta;
use super::routers::Router;

pub struct ActiveFlows {
    window_secs: u64,
    max_keys: usize,
    /// fingerprint → (last seen, router index)
    last_seen: HashMap<u64, (u32, u32)>,
    indexes: HashMap<Router, u32>,
    /// Router of each index; `None` for a free index.
    routers: Vec<Option<Router>>,
    free: Vec<u32>,
    overflow_pending: u64,
    overflow: Counter,
    /// Live keys per router index at the last sweep.
    counts: Vec<u64>,
    /// Scratch: the delta's sampler indexes mapped to ours.
    remap: Vec<u32>,
}

impl ActiveFlows {
    pub fn new(window_secs: u64, max_keys: usize, overflow: Counter) -> Self {
        ActiveFlows {
            window_secs: window_secs.max(1),
            max_keys,
            last_seen: HashMap::new(),
            indexes: HashMap::new(),
            routers: Vec::new(),
            free: Vec::new(),
            overflow_pending: 0,
            overflow,
            counts: Vec::new(),
            remap: Vec::new(),
        }
    }

    fn index(&mut self, router: Router) -> u32 {
        if let Some(i) = self.indexes.get(&router) {
            return *i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.routers[i as usize] = Some(router);
                i
            }
            None => {
                self.routers.push(Some(router));
                u32::try_from(self.routers.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.indexes.insert(router, i);
        i
    }

    /// Merges the delta's flow keys, its samplers already mapped to router labels by `label`.
    pub fn merge(&mut self, delta: &Delta, now: u64, mut label: impl FnMut(usize) -> Router) {
        self.overflow_pending += delta.active_dropped;
        self.remap.clear();
        for s in 0..delta.active_samplers.len() {
            let i = self.index(label(s));
            self.remap.push(i);
        }
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        for &(fingerprint, local) in &delta.active {
            if let Some(seen) = self.last_seen.get_mut(&fingerprint) {
                seen.0 = now;
            } else if self.last_seen.len() >= self.max_keys {
                // Keys are freed by the sweep; until then new keys are counted, not tracked, so
                // memory stays bounded.
                self.overflow_pending += 1;
            } else {
                let index = self.remap.get(local as usize).copied().unwrap_or(u32::MAX);
                self.last_seen.insert(fingerprint, (now, index));
            }
        }
    }

    /// Drops keys older than the window, counts the rest per router, and frees the indexes of
    /// routers with none left.
    pub fn sweep(&mut self, now: u64) {
        let window = self.window_secs;
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        self.counts.clear();
        self.counts.resize(self.routers.len(), 0);
        let counts = &mut self.counts;
        self.last_seen.retain(|_, (seen, router)| {
            let keep = u64::from(now.saturating_sub(*seen)) < window;
            if keep && let Some(c) = counts.get_mut(*router as usize) {
                *c += 1;
            }
            keep
        });
        if self.last_seen.capacity() > 1024 && self.last_seen.len() < self.last_seen.capacity() / 4
        {
            self.last_seen.shrink_to_fit();
        }
        for (i, slot) in self.routers.iter_mut().enumerate() {
            if self.counts[i] == 0
                && let Some(router) = slot.take()
            {
                self.indexes.remove(&router);
                self.free.push(i as u32);
            }
        }
        if self.indexes.is_empty() {
            self.routers.clear();
            self.free.clear();
            self.counts.clear();
        }
        if self.overflow_pending != 0 {
            self.overflow.increment(self.overflow_pending);
            self.overflow_pending = 0;
        }
    }

    /// Live keys of `router` at the last sweep.
    pub fn active_of(&self, router: Router) -> u64 {
        self.indexes
            .get(&router)
            .and_then(|i| self.counts.get(*i as usize))
            .copied()
            .unwrap_or(0)
    }
}

//! Aggregation: flows in, flow metrics out, with no lock on the per-flow path.
//!
//! Two sides, one channel between them:
//! - [`Accumulator`] (one per input thread, owned by it): counts flows into a [`Delta`], a set of
//!   small tables keyed by compact binary keys, and every 100 ms swaps the delta out and ships
//!   it ([`accumulator`]).
//! - [`Publisher`] (one per process): merges shipped deltas into the [`Aggregator`], which owns
//!   every label set with its cached registry handles, the series caps and expiry, and the
//!   active-flows tracker; once a second and before each scrape it publishes into the registry
//!   ([`publisher`]).
//!
//! Totals stay exact across the hand-off: a delta is in exactly one place at a time (the input,
//! the channel or the publisher), and a full channel makes the input keep counting, never drop.

pub mod accumulator;
pub mod active;
pub mod asn_families;
pub mod delta;
pub mod interfaces;
pub mod publisher;
pub mod routers;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use accumulator::{Accumulator, SHIP_EVERY, Shipment};
pub use delta::{Delta, FlowPolicy};
pub use publisher::{Aggregator, Publisher};

use crate::cardinality::AddrPolicy;
use crate::sampling::SamplingPolicy;
use crate::telemetry as t;

/// Settings of the aggregator that come from the command line.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    pub sampling: SamplingPolicy,
    /// A flow key counts as active for this many seconds after it was last seen.
    pub active_window_secs: u64,
    /// Cap on tracked active-flow keys across all samplers.
    pub active_max_keys: usize,
    /// Address granularity (`--local-net`, `--remote-prefix-v4/-v6`).
    pub addresses: AddrPolicy,
    /// Label sets per family (`--max-series-per-metric`).
    pub max_series_per_metric: usize,
    /// Seconds without an update before a label set is dropped (`--series-ttl`).
    pub series_ttl_secs: u64,
    /// Routers with `sampler_address` labels of their own, shared by every family, socket and
    /// input (`--max-exporters`); more are counted under `other`.
    pub max_exporter_series: usize,
    /// A router silent for this long loses its labels (`--exporter-idle`), in seconds.
    pub router_idle_secs: u64,
    /// `--interfaces` (or any `--interface-name`): the interface families.
    pub interfaces: bool,
    /// `--interface-name`: names of interface indices (every router, or one).
    pub interface_names: Vec<interfaces::InterfaceName>,
    /// `--asn-db`: the database opened at start, and the flag SIGHUP sets to reload it.
    pub asn_db: Option<(Arc<crate::asn::AsnDb>, Arc<AtomicBool>)>,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            sampling: SamplingPolicy::new(1, Vec::new()),
            active_window_secs: 60,
            active_max_keys: 1_000_000,
            addresses: AddrPolicy::default(),
            max_series_per_metric: DEFAULT_MAX_SERIES_PER_METRIC,
            series_ttl_secs: 15 * 60,
            max_exporter_series: 1000,
            router_idle_secs: 3600,
            interfaces: false,
            interface_names: Vec::new(),
            asn_db: None,
        }
    }
}

/// Label sets per address family. Two address families (source, destination) of two metrics
/// each (flows, bytes): 4 × 25,000 = 100,000 series at most from addresses, the bulk of any
/// exposition, which renders in about 0.4 s.
pub const DEFAULT_MAX_SERIES_PER_METRIC: usize = 25_000;

/// The label value of an optional address (no granularity rules: samplers are shown as they are).
pub fn addr_label(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| t::UNKNOWN.to_string(), |a| a.to_string())
}

#[cfg(test)]
mod tests;

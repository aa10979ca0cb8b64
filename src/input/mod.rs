//! Inputs: the I/O loops that turn bytes from the outside into batches for the aggregator.
//!
//! Each input does I/O plus one call into a pure decoder per unit (line or datagram), tallies
//! errors per batch, and records the batch's flows in its own
//! [`Accumulator`](crate::aggregate::Accumulator), which hands them to the publisher without a
//! lock on the input's side.

pub mod datagram;
pub mod replay;
pub mod stdin;
pub mod udp;

use metrics::Counter;

use crate::decode::ErrorType;
use crate::telemetry::{PARSE_ERRORS, Registry};

/// Per-batch error tally, indexed by [`ErrorType::index`].
pub type ErrorTally = [u64; ErrorType::ALL.len()];

/// Cached handles of `goflow_parse_errors_total`, one per error type.
///
/// Creating it registers every `error_type` series at 0, so dashboards and alerts see them
/// before the first error.
#[derive(Clone)]
pub struct ParseErrors {
    counters: [Counter; ErrorType::ALL.len()],
}

impl ParseErrors {
    pub fn new(registry: &Registry) -> Self {
        ParseErrors {
            counters: ErrorType::ALL
                .map(|e| registry.counter(PARSE_ERRORS, &[("error_type", e.as_str())])),
        }
    }

    /// Adds a batch's tally.
    pub fn add(&self, tally: &ErrorTally) {
        for (counter, n) in self.counters.iter().zip(tally) {
            if *n != 0 {
                counter.increment(*n);
            }
        }
    }
}

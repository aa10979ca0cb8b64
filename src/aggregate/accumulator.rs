//! The input side of aggregation: each input thread owns one [`Accumulator`].
//!
//! Owns the input's current [`Delta`] and its hand-off to the publisher. Flows are counted into
//! the delta with no lock and no registry access; every [`SHIP_EVERY`] (or when the input asks)
//! the whole delta is swapped for an empty one and sent to the publisher over a bounded channel.
//! The publisher clears it and sends it back, so the tables keep their capacity and the steady
//! state allocates nothing.
//!
//! Decisions:
//! - Socket threads never wait for the publisher ([`Accumulator::try_ship`]): when the channel is
//!   full they keep counting into the same delta and try again later, so a slow publish, a
//!   scrape or a burst of new series cannot make a socket drop a datagram, and nothing is lost
//!   or counted twice at a swap (a delta is in exactly one place at a time).
//! - Finite inputs (stdin, replay) may wait ([`Accumulator::ship`]): waiting only slows the
//!   reading of a pipe or a file, and it guarantees that what they read is shipped before they
//!   report their end.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use super::delta::{Delta, FlowPolicy};
use crate::flow::Flow;

/// How often a busy input hands its delta to the publisher: often enough that a flow is visible
/// in `/metrics` well within a second, rarely enough that each shipment folds many flows per key.
pub const SHIP_EVERY: Duration = Duration::from_millis(100);

/// How long a finite input waits for the publisher to return a delta before it gives up shipping
/// (and keeps counting).
const STUCK: Duration = Duration::from_secs(5);

/// Deltas one input may have in circulation (its own, in the channel, at the publisher). Few,
/// so that they stay in the CPU cache as they go round (16 measured no better, with 5 MiB of cold
/// memory); more than two, so that a busy socket thread has an empty one while the publisher
/// merges.
const DELTAS_PER_INPUT: usize = 4;

/// A delta on its way to the publisher, with the way back to its input.
pub struct Shipment {
    pub delta: Box<Delta>,
    pub reply: SyncSender<Box<Delta>>,
    /// The input's identity (for its snapshot of templates per exporter).
    pub input: usize,
}

/// Where inputs send deltas: one channel, many senders, bounded.
pub fn channel(inputs: usize) -> (SyncSender<Shipment>, Receiver<Shipment>) {
    sync_channel(inputs.max(1) * DELTAS_PER_INPUT)
}

/// One input's counting state. See the module doc.
pub struct Accumulator {
    policy: FlowPolicy,
    input: usize,
    delta: Box<Delta>,
    outbox: SyncSender<Shipment>,
    reply: SyncSender<Box<Delta>>,
    returned: Receiver<Box<Delta>>,
    /// Deltas allocated so far (at most [`DELTAS_PER_INPUT`]).
    allocated: usize,
    last_ship: Instant,
}

impl Accumulator {
    /// `input` is a number unique to this input within the process.
    pub fn new(policy: FlowPolicy, outbox: SyncSender<Shipment>, input: usize) -> Self {
        let (reply, returned) = sync_channel(DELTAS_PER_INPUT);
        Accumulator {
            policy,
            input,
            delta: Box::new(Delta::new()),
            outbox,
            reply,
            returned,
            allocated: 1,
            last_ship: Instant::now(),
        }
    }

    /// Counts a batch of flows.
    #[inline]
    pub fn record(&mut self, flows: &[Flow]) {
        self.delta.record(flows, &self.policy);
    }

    /// The current delta, for the input's own counters.
    pub fn delta(&mut self) -> &mut Delta {
        &mut self.delta
    }

    /// Whether [`SHIP_EVERY`] has passed since the last shipment, or the delta's address tables
    /// have outgrown the CPU cache (many distinct addresses: folding more flows into them gains
    /// nothing, and every insert would miss the cache).
    #[inline]
    pub fn due(&self, now: Instant) -> bool {
        self.delta.is_large() || now.duration_since(self.last_ship) >= SHIP_EVERY
    }

    /// Ships the delta when it is [`due`](Self::due). Never waits.
    #[inline]
    pub fn maybe_ship(&mut self, now: Instant) {
        if self.due(now) {
            self.try_ship(now);
        }
    }

    /// Ships the delta if it holds anything and the channel has room; otherwise keeps counting
    /// into it. Never waits. Returns whether the delta was shipped (or was empty).
    pub fn try_ship(&mut self, now: Instant) -> bool {
        if !self.delta.is_dirty() {
            self.last_ship = now;
            return true;
        }
        let Some(empty) = self.empty_delta() else {
            return false;
        };
        let full = std::mem::replace(&mut self.delta, empty);
        match self.outbox.try_send(self.shipment(full)) {
            Ok(()) => {
                self.last_ship = now;
                true
            }
            Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                // The delta we swapped in is empty: swapping back loses and repeats nothing.
                let empty = std::mem::replace(&mut self.delta, back.delta);
                let _ = self.reply.try_send(empty);
                false
            }
        }
    }

    /// Ships the delta, waiting for room in the channel (finite inputs only: see the module
    /// doc). Returns `false` when nothing could be shipped: the publisher is gone or has not
    /// returned a delta for 5 s (`STUCK`); the input then keeps counting into the same delta.
    pub fn ship(&mut self) -> bool {
        if !self.delta.is_dirty() {
            return true;
        }
        let empty = match self.empty_delta() {
            Some(d) => d,
            // Every delta is in the channel or at the publisher, which returns each it merges.
            None => match self.returned.recv_timeout(STUCK) {
                Ok(d) => d,
                Err(_) => return false,
            },
        };
        let full = std::mem::replace(&mut self.delta, empty);
        self.last_ship = Instant::now();
        match self.outbox.send(self.shipment(full)) {
            Ok(()) => true,
            Err(back) => {
                let empty = std::mem::replace(&mut self.delta, back.0.delta);
                let _ = self.reply.try_send(empty);
                false
            }
        }
    }

    fn shipment(&self, delta: Box<Delta>) -> Shipment {
        Shipment {
            delta,
            reply: self.reply.clone(),
            input: self.input,
        }
    }

    /// A cleared delta: one the publisher returned, or a new one while fewer than
    /// [`DELTAS_PER_INPUT`] exist.
    fn empty_delta(&mut self) -> Option<Box<Delta>> {
        match self.returned.try_recv() {
            Ok(d) => Some(d),
            Err(TryRecvError::Empty | TryRecvError::Disconnected)
                if self.allocated < DELTAS_PER_INPUT =>
            {
                self.allocated += 1;
                Some(Box::new(Delta::new()))
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::delta::SHIP_AT_ACTIVE_KEYS;
    use crate::cardinality::AddrPolicy;
    use crate::sampling::SamplingPolicy;

    fn policy() -> FlowPolicy {
        FlowPolicy {
            sampling: SamplingPolicy::new(1, Vec::new()),
            addresses: AddrPolicy::default(),
            hasher: Default::default(),
            interfaces: false,
            asn: false,
        }
    }

    fn flow() -> Flow {
        Flow {
            bytes: 10,
            src_addr: Some("192.0.2.1".parse().unwrap()),
            ..Flow::default()
        }
    }

    /// Flows counted in deltas, summed over what arrived at the receiving end.
    fn flows_in(rx: &Receiver<Shipment>) -> u64 {
        let mut n = 0;
        while let Ok(s) = rx.try_recv() {
            n += s.delta.by_sampler_type.values().map(|c| c[0]).sum::<u64>();
            let mut d = s.delta;
            d.clear(d.sizes());
            let _ = s.reply.try_send(d);
        }
        n
    }

    #[test]
    fn a_full_channel_keeps_counting_and_nothing_is_lost_or_repeated() {
        let (tx, rx) = sync_channel(1);
        let mut acc = Accumulator::new(policy(), tx, 0);
        let now = Instant::now();
        acc.record(&[flow()]);
        assert!(acc.try_ship(now), "room for one");
        acc.record(&[flow(), flow()]);
        assert!(!acc.try_ship(now), "the channel is full");
        acc.record(&[flow()]);
        assert_eq!(flows_in(&rx), 1, "the first shipment");
        assert!(acc.try_ship(now));
        assert_eq!(
            flows_in(&rx),
            3,
            "the flows kept while the channel was full"
        );
        assert!(acc.try_ship(now), "nothing to ship is not a failure");
        assert_eq!(flows_in(&rx), 0);
    }

    #[test]
    fn a_delta_with_many_active_flow_keys_is_due_before_its_time() {
        let (tx, _rx) = sync_channel(1);
        let mut acc = Accumulator::new(policy(), tx, 0);
        let now = Instant::now();
        let flows = vec![
            Flow {
                sampler: Some("192.0.2.9".parse().unwrap()),
                ..flow()
            };
            1024
        ];
        for _ in 0..SHIP_AT_ACTIVE_KEYS / flows.len() - 1 {
            acc.record(&flows);
        }
        assert!(!acc.due(now), "not yet: {} keys", acc.delta.active.len());
        acc.record(&flows);
        assert!(acc.due(now), "{} keys", acc.delta.active.len());
        assert_eq!(acc.delta.active_dropped, 0);
    }

    #[test]
    fn deltas_are_recycled_and_bounded_per_input() {
        let (tx, rx) = sync_channel(16);
        let mut acc = Accumulator::new(policy(), tx, 0);
        let now = Instant::now();
        // Nobody returns deltas: after DELTAS_PER_INPUT - 1 shipments the input keeps its own.
        for _ in 0..DELTAS_PER_INPUT + 2 {
            acc.record(&[flow()]);
            acc.try_ship(now);
        }
        assert_eq!(acc.allocated, DELTAS_PER_INPUT);
        assert_eq!(
            flows_in(&rx),
            (DELTAS_PER_INPUT - 1) as u64,
            "shipped so far"
        );
        // Once returned, the kept flows go out in a recycled delta.
        assert!(acc.try_ship(now));
        assert_eq!(flows_in(&rx), 3);
        assert_eq!(acc.allocated, DELTAS_PER_INPUT);
    }
}

//! The crate's one rule for its few `std::sync::Mutex`es: a poisoned lock is taken over.
//!
//! Owns [`lock`] and nothing else. The locks are few and off the per-flow path (the publisher's
//! aggregator and inbox, the kernel drop readers, the registry's lists of persistent series).

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the lock over when a thread panicked while holding it.
///
/// What these locks guard stays worth using after a panic: counters only grow, the registry's
/// lists are only appended to, a channel's receiver has no invariant to break. Propagating the
/// poison instead would turn one bug (logged and counted where its panic is caught, see
/// `Publisher::guarded`) into a publisher or a /metrics that fails from then on.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_over_with_its_value() {
        let m = Mutex::new(vec![1]);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut v = m.lock().unwrap();
            v.push(2);
            panic!("poison the lock");
        }));
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), vec![1, 2]);
    }
}

//! Rate-limited warnings: trouble that can repeat at packet rate (undecodable datagrams and
//! lines, receive errors, failed flow-line writes) is counted in a metric every time but logged
//! at most once per [`WARN_EVERY`], so bad input cannot flood the log as well.
//!
//! Owns [`WarnLimit`], the one limiter every such warning uses; the warnings themselves (their
//! fields and wording) stay with the code that knows the trouble.

use std::time::{Duration, Instant};

/// How often at most one kind of warning is logged (the messages say "next warning in 10s").
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// When one kind of warning may be logged next, and how many events it will stand for.
#[derive(Debug)]
pub struct WarnLimit {
    every: Duration,
    last: Option<Instant>,
    /// Events noted since the last warning, those of the next one included.
    since_last: u64,
}

impl Default for WarnLimit {
    fn default() -> Self {
        WarnLimit::new(WARN_EVERY)
    }
}

impl WarnLimit {
    pub const fn new(every: Duration) -> Self {
        WarnLimit {
            every,
            last: None,
            since_last: 0,
        }
    }

    /// Notes `events` more events. When a warning may be logged now (the first one, or `every`
    /// after the last), returns how many events happened since the last warning, these
    /// included, and starts the next interval; otherwise `None`.
    pub fn ready(&mut self, events: u64) -> Option<u64> {
        self.since_last = self.since_last.saturating_add(events);
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since_last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_warning_goes_out_and_the_next_waits_with_the_count() {
        let mut limit = WarnLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.ready(3), Some(3));
        assert_eq!(limit.ready(2), None);
        assert_eq!(limit.ready(5), None);
        // What was held back is reported with the next warning.
        limit.last = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(limit.ready(1), Some(8));
        assert_eq!(limit.ready(1), None);
    }

    #[test]
    fn without_an_interval_every_warning_goes_out() {
        let mut limit = WarnLimit::new(Duration::ZERO);
        assert_eq!(limit.ready(1), Some(1));
        assert_eq!(limit.ready(4), Some(4));
    }
}

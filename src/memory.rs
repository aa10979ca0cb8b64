//! Giving freed memory back to the operating system.
//!
//! Owns one decision: after a spoof flood expires, glibc's malloc keeps the freed memory in the
//! arena of the thread that freed it, and other threads (each has an arena of its own) do not
//! reuse it. Three floods of 50,000 spoofed sources, each expired before the next, peaked at
//! 22.6, 23.4 and 34.6 MB (2 runs of 3 under CPU contention broke issue 10's "third within 10 %
//! of the first"). Two remedies were measured:
//! - one arena for the whole process (`mallopt(M_ARENA_MAX, 1)`): the floods stayed within 4 %,
//!   but the socket thread then waited on the arena lock while a scrape rendered (its longest
//!   receive gap went from 0.5-0.9 ms to 1.8-4.6 ms);
//! - `malloc_trim(0)` every [`RELEASE_EVERY`] from the publisher thread, which returns the free
//!   pages of every arena: the floods stay within 10 % and the socket threads keep their own
//!   arenas. This is what runs. (mimalloc as the global allocator peaked at ~96 MB on the same
//!   test.)
//!
//! The other half of the same fix is in src/main.rs: scrapes render on one long-lived thread, so
//! render memory is reused from one arena instead of growing one arena per render thread (a
//! clean-clone CI run with trimming alone still peaked 6 MB higher from the second flood on:
//! 20,988 / 26,804 / 26,948 KiB).
//!
//! Other C libraries (musl in the Alpine image) keep no per-thread arenas: nothing to do there.

use std::time::Duration;

/// How often the publisher returns free memory: within a `--exporter-idle` of 10 s (the shortest
/// anyone sets), and rarely enough that its cost (a walk of the free lists) does not matter.
pub const RELEASE_EVERY: Duration = Duration::from_secs(10);

/// Returns the free pages of every malloc arena to the operating system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes an integer and only releases pages the allocator holds free; it
    // takes each arena's lock, so it is safe to call while other threads allocate.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns the free pages of every malloc arena to the operating system (nothing to do here).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

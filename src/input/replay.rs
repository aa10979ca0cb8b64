//! `--replay FILE`: the UDP datagrams of a pcap/pcapng capture through the same decode path as
//! live traffic, with the capture's source addresses as exporters.
//!
//! Owns loading and validating the file (a clear error at start-up for a file that is not a
//! capture) and the replay loop. Container parsing is [`crate::capture`]; decoding, counting and
//! aggregation are the [`DatagramPipeline`]'s, exactly as for the UDP collector.

use std::path::Path;

use std::time::Instant;

use anyhow::{Context, bail};

use crate::capture::{self, CaptureStats};
use crate::input::datagram::DatagramPipeline;

/// A capture file read into memory and checked to be a capture.
pub struct Capture {
    pub bytes: Vec<u8>,
    pub stats: CaptureStats,
}

/// Reads and validates `path`.
pub fn load(path: &Path) -> anyhow::Result<Capture> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read --replay file {}", path.display()))?;
    let stats = match capture::read_datagrams(&bytes) {
        Ok((_, stats)) => stats,
        Err(e) => bail!("--replay file {}: {e}", path.display()),
    };
    Ok(Capture { bytes, stats })
}

/// Totals of one replay, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplaySummary {
    pub datagrams: u64,
    pub flows: u64,
    pub errors: u64,
}

/// Feeds every UDP datagram of `capture` through `pipeline`, and ships everything counted before
/// returning.
pub fn run(capture: &Capture, pipeline: &mut DatagramPipeline) -> ReplaySummary {
    let mut summary = ReplaySummary::default();
    // Validated by `load`: only an unreadable capture errors, and that was ruled out there.
    let Ok((list, _)) = capture::read_datagrams(&capture.bytes) else {
        return summary;
    };
    for (i, d) in list.iter().enumerate() {
        let report = pipeline.handle(d.src, d.payload, d.timestamp_ns);
        pipeline.accumulator().delta().inputs().replay_datagrams += 1;
        if i % 64 == 63 {
            // A file, not a socket: waiting for the publisher loses nothing.
            let now = Instant::now();
            pipeline.tick(now);
            if pipeline.accumulator().due(now) {
                pipeline.accumulator().ship();
            }
        }
        summary.datagrams += 1;
        summary.flows += report.flows as u64;
        summary.errors += report
            .errors()
            .iter()
            .map(|(_, n)| u64::from(*n))
            .sum::<u64>();
    }
    pipeline.accumulator().ship();
    pipeline.flush_lines();
    summary
}

//! `--replay FILE`: the UDP datagrams of a pcap/pcapng capture through the same decode path as
//! live traffic, with the capture's source addresses as exporters.
//!
//! Owns opening and validating the file (a clear error at start-up for a file that is not a
//! capture) and the replay loop. Container parsing is [`crate::capture`]; decoding, counting and
//! aggregation are the [`DatagramPipeline`]'s, exactly as for the UDP collector.
//!
//! The file is streamed: each datagram goes through the pipeline as it is read from the capture
//! reader's bounded buffer, so a replay's memory does not grow with the file, and the file is
//! read once.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use tracing::warn;

use crate::capture::{CaptureReader, CaptureStats};
use crate::input::datagram::DatagramPipeline;

/// A capture file opened and checked to be a capture (its header read), ready to stream.
pub struct Capture {
    reader: CaptureReader<'static>,
}

/// Opens `path` and reads its header.
pub fn load(path: &Path) -> anyhow::Result<Capture> {
    let file = File::open(path)
        .with_context(|| format!("cannot read --replay file {}", path.display()))?;
    match CaptureReader::new(file) {
        Ok(reader) => Ok(Capture { reader }),
        Err(e) => {
            // pcap-parser keeps no read error: an unreadable file (a directory opens, and fails
            // at the first read) is told apart by reading it again.
            let again = File::open(path).and_then(|mut f| f.read(&mut [0; 1]));
            if let Err(io) = again {
                bail!("cannot read --replay file {}: {io}", path.display());
            }
            bail!("--replay file {}: {e}", path.display())
        }
    }
}

/// Totals of one replay, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplaySummary {
    pub datagrams: u64,
    pub flows: u64,
    pub errors: u64,
    /// What the capture reader found (skipped packets, a cut end).
    pub capture: CaptureStats,
}

/// Feeds every UDP datagram of `capture` through `pipeline` as it is read, and ships everything
/// counted before returning.
pub fn run(mut capture: Capture, pipeline: &mut DatagramPipeline) -> ReplaySummary {
    let mut summary = ReplaySummary::default();
    summary.capture = capture.reader.for_each(|d| {
        let report = pipeline.handle(d.src, d.payload, d.timestamp_ns);
        pipeline.accumulator().delta().inputs().replay_datagrams += 1;
        summary.datagrams += 1;
        summary.flows += report.flows as u64;
        summary.errors += report
            .errors()
            .iter()
            .map(|(_, n)| u64::from(*n))
            .sum::<u64>();
        if summary.datagrams % 64 == 0 {
            // A file, not a socket: waiting for the publisher loses nothing.
            let now = Instant::now();
            pipeline.tick(now);
            if pipeline.accumulator().due(now) {
                pipeline.accumulator().ship();
            }
        }
    });
    if summary.capture.truncated {
        warn!(
            packets = summary.capture.packets,
            "--replay file: reading stopped at a cut or unreadable record; the datagrams before \
             it were replayed"
        );
    }
    pipeline.accumulator().ship();
    pipeline.flush_lines();
    summary
}

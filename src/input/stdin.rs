//! The stdin input: goflow2 JSON lines from a reader, in batches, into its accumulator.
//!
//! Owns line splitting (with the line-length cap) and per-batch error tallies. Decoding is
//! [`crate::decode::goflow_json`]; counting is the [`Accumulator`]'s, metrics the publisher's.
//!
//! Decisions:
//! - It runs on a dedicated OS thread, not a tokio task: a tokio stdin read cannot be cancelled
//!   and would hang shutdown. The thread is simply left behind when the process exits.
//! - A batch is whatever one `fill_buf` returned (up to the buffer size), and each batch is
//!   shipped to the publisher before the next read may block, so a line is visible in `/metrics`
//!   as soon as it has been read. Shipping may wait for the publisher: that only slows the pipe.
//! - A line longer than the cap is counted and skipped as it streams past: memory stays bounded
//!   by the cap whatever the input.

use std::io::{self, BufRead};

use tracing::warn;

use crate::aggregate::Accumulator;
use crate::decode::{ErrorType, goflow_json};
use crate::flow::Flow;
use crate::input::ErrorTally;
use crate::warn_limit::WarnLimit;

/// Default cap on one line: goflow2 lines are about 1 KiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// What [`LineSplitter`] found in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A complete line without its `\n`.
    Line(&'a [u8]),
    /// A line over the cap; its bytes were (or will be) skipped.
    TooLong,
}

/// Splits a byte stream into lines with a cap on line length and no per-line allocation.
///
/// Lines that fit in the reader's buffer are handed out as slices of it; only a line that spans
/// two reads is copied into `pending`, which never grows past the cap.
pub struct LineSplitter<R> {
    reader: R,
    max_line: usize,
    pending: Vec<u8>,
    /// Inside an over-long line, until its `\n`.
    skipping: bool,
}

impl<R: BufRead> LineSplitter<R> {
    pub fn new(reader: R, max_line: usize) -> Self {
        LineSplitter {
            reader,
            max_line,
            pending: Vec::new(),
            skipping: false,
        }
    }

    /// Reads one buffer's worth and calls `on_event` for each line it completes. Returns the
    /// number of bytes read; 0 means end of input (the last unterminated line was handed out).
    pub fn next_chunk(&mut self, mut on_event: impl FnMut(LineEvent<'_>)) -> io::Result<usize> {
        let LineSplitter {
            reader,
            max_line,
            pending,
            skipping,
        } = self;
        let buf = loop {
            match reader.fill_buf() {
                Ok(buf) => break buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        let n = buf.len();
        if n == 0 {
            if !*skipping && !pending.is_empty() {
                on_event(LineEvent::Line(pending));
            }
            pending.clear();
            *skipping = false;
            return Ok(0);
        }
        let mut rest = buf;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let part = &rest[..i];
            rest = &rest[i + 1..];
            if std::mem::take(skipping) {
                continue; // The end of a line already counted as too long.
            }
            if pending.is_empty() {
                if part.len() > *max_line {
                    on_event(LineEvent::TooLong);
                } else {
                    on_event(LineEvent::Line(part));
                }
            } else {
                if pending.len() + part.len() > *max_line {
                    on_event(LineEvent::TooLong);
                } else {
                    pending.extend_from_slice(part);
                    on_event(LineEvent::Line(pending));
                }
                pending.clear();
            }
        }
        if !*skipping && !rest.is_empty() {
            if pending.len() + rest.len() > *max_line {
                on_event(LineEvent::TooLong);
                pending.clear();
                // Release a buffer grown near the cap by an earlier partial line.
                pending.shrink_to(64 * 1024);
                *skipping = true;
            } else {
                pending.extend_from_slice(rest);
            }
        }
        reader.consume(n);
        Ok(n)
    }
}

/// Totals of one stdin run, for the log line at EOF.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StdinSummary {
    pub lines: u64,
    pub bytes: u64,
    pub flows: u64,
    pub errors: u64,
}

/// Decodes a line; a panic in the decoder (a bug) drops the line as `decoder_panic` instead of
/// ending the input. The cost is nil unless a panic happens.
fn decode_guarded(line: &[u8], flows: &mut Vec<Flow>) -> Result<(), ErrorType> {
    let before = flows.len();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        goflow_json::decode_line(line, flows)
    })) {
        Ok(result) => result,
        Err(_) => {
            flows.truncate(before);
            tracing::error!(
                len = line.len(),
                "the JSON decoder panicked; line dropped (please report)"
            );
            Err(ErrorType::DecoderPanic)
        }
    }
}

/// Reads lines until EOF, decoding and recording them batch by batch.
pub fn run<R: BufRead>(
    reader: R,
    max_line: usize,
    accumulator: &mut Accumulator,
) -> io::Result<StdinSummary> {
    let mut splitter = LineSplitter::new(reader, max_line);
    let mut flows: Vec<Flow> = Vec::with_capacity(1024);
    let mut summary = StdinSummary::default();
    let mut warn_limit = WarnLimit::default();
    loop {
        let mut tally: ErrorTally = [0; ErrorType::ALL.len()];
        let mut lines = 0u64;
        let n = splitter.next_chunk(|event| {
            lines += 1;
            let result = match event {
                LineEvent::TooLong => Err(ErrorType::LineTooLong),
                LineEvent::Line(line) => {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        Ok(())
                    } else {
                        decode_guarded(line, &mut flows)
                    }
                }
            };
            if let Err(e) = result {
                tally[e.index()] += 1;
            }
        })?;
        accumulator.record(&flows);
        summary.flows += flows.len() as u64;
        flows.clear();
        let errors: u64 = tally.iter().sum();
        let delta = accumulator.delta();
        delta.count_errors(&tally);
        let counts = delta.inputs();
        counts.stdin_lines += lines;
        counts.stdin_bytes += n as u64;
        accumulator.ship();
        summary.lines += lines;
        summary.bytes += n as u64;
        summary.errors += errors;
        if errors != 0 && warn_limit.ready(errors).is_some() {
            let worst = ErrorType::ALL
                .into_iter()
                .max_by_key(|e| tally[e.index()])
                .map_or("", ErrorType::as_str);
            warn!(
                errors_in_batch = errors,
                errors_total = summary.errors,
                most_common = worst,
                "stdin lines could not be decoded; see goflow_parse_errors_total (next warning in 10s at the earliest)"
            );
        }
        if n == 0 {
            return Ok(summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// Splits `input` read through a buffer of `buf` bytes and returns the events as owned data.
    fn split(input: &[u8], buf: usize, max: usize) -> Vec<Option<Vec<u8>>> {
        let mut s = LineSplitter::new(BufReader::with_capacity(buf, input), max);
        let mut out = Vec::new();
        loop {
            let n = s
                .next_chunk(|e| {
                    out.push(match e {
                        LineEvent::Line(l) => Some(l.to_vec()),
                        LineEvent::TooLong => None,
                    })
                })
                .unwrap();
            if n == 0 {
                return out;
            }
        }
    }

    fn line(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_lines_across_buffer_boundaries() {
        for buf in [1, 2, 3, 5, 64] {
            assert_eq!(
                split(b"ab\ncde\n\nf", buf, 100),
                [line("ab"), line("cde"), line(""), line("f")],
                "buffer {buf}"
            );
        }
    }

    #[test]
    fn over_long_lines_are_reported_once_and_skipped() {
        for buf in [1, 4, 7, 64] {
            assert_eq!(
                split(b"1234\n123456789\n12\n123456\n", buf, 5),
                [line("1234"), None, line("12"), None],
                "buffer {buf}"
            );
        }
        // An unterminated over-long last line.
        assert_eq!(split(b"ok\n123456789", 4, 5), [line("ok"), None]);
        // Exactly at the cap is accepted.
        assert_eq!(split(b"12345\n", 2, 5), [line("12345")]);
    }

    #[test]
    fn pending_buffer_stays_bounded() {
        let mut input = vec![b'x'; 10 << 20];
        input.extend_from_slice(b"\n{}\n");
        let mut s = LineSplitter::new(BufReader::with_capacity(64 * 1024, &input[..]), 1 << 20);
        let mut events = 0;
        let mut peak = 0;
        while s.next_chunk(|_| events += 1).unwrap() != 0 {
            peak = peak.max(s.pending.capacity());
        }
        assert_eq!(events, 2);
        assert!(peak <= 2 << 20, "pending grew to {peak} bytes");
    }
}

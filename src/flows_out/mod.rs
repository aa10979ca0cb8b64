//! `--flows-out` (issue 11): the native collector's flows as goflow2 v2.2.6 JSON lines, so one
//! process can replace goflow2 for people who ship its lines to files, Loki or Kafka.
//!
//! Owns the output (a file or standard output), the writer thread, and the bounded queue between
//! it and the inputs. The line format is [`format`](mod@format); the goflow2 fields beyond the
//! flow record come from the decoder ([`crate::decode::detail`]).
//!
//! ```text
//! input thread (UDP socket / replay)        writer thread ("flows-out")
//!   decode_detailed → flows + details
//!   LineBatcher: batches of BATCH flows  ──(bounded queue)──→  format::write_line → write(2)
//!                                         ←─(empty batches)──
//! ```
//!
//! Decisions:
//! - The inputs never format text and never wait for the writer: a UDP input hands over a full
//!   batch with `try_send`, and when the queue is full the batch is dropped and counted
//!   (`goflow_flows_out_dropped_total{reason="queue_full"}`): a slow consumer costs lines, never
//!   reception or metrics. `--replay` reads a file, so it waits instead and loses nothing.
//! - Batches are recycled (returned empty to their input), so steady state allocates nothing.
//! - A write error (a closed pipe, a full disk) is logged and the batch counted under
//!   `reason="write_error"`; the metrics go on. Standard output is given up after a broken pipe
//!   (nobody reads it any more); a file is retried with every batch, and reopened on SIGHUP (log
//!   rotation: move the file, send SIGHUP, the exporter creates a new one).

pub mod format;

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use metrics::Counter;
use tracing::{error, info, warn};

use crate::flow::{Flow, FlowDetail};
use crate::telemetry::{FLOWS_OUT_DROPPED, FLOWS_OUT_LINES, Registry};
use crate::warn_limit::WarnLimit;

/// Flows per batch: large enough that queue operations and write calls are rare per flow, small
/// enough (~260 KiB) that a batch is out within a few hundred microseconds of formatting.
pub const BATCH: usize = 1024;
/// A partly filled batch is handed over after this long, so lines of light traffic appear promptly.
const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// How often the writer wakes without lines (SIGHUP reopen, shutdown).
const WAKE_EVERY: Duration = Duration::from_millis(200);

/// Flows and their details, one line each.
#[derive(Debug, Default)]
struct Batch {
    flows: Vec<Flow>,
    details: Vec<FlowDetail>,
    /// Where the writer returns the emptied batch (its input's pool).
    home: Option<Sender<Batch>>,
}

impl Batch {
    fn with_capacity(home: Sender<Batch>) -> Batch {
        Batch {
            flows: Vec::with_capacity(BATCH),
            details: Vec::with_capacity(BATCH),
            home: Some(home),
        }
    }

    fn len(&self) -> usize {
        self.flows.len()
    }
}

/// Where lines go: `-` is standard output, anything else a file (created, appended to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

impl Destination {
    pub fn parse(s: &std::ffi::OsStr) -> Destination {
        if s == "-" {
            Destination::Stdout
        } else {
            Destination::File(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Stdout => f.write_str("standard output"),
            Destination::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// An opened destination (opened at start-up, so a bad path ends start-up with a clear error).
pub struct Output {
    destination: Destination,
    sink: Box<dyn Write + Send>,
}

impl Output {
    pub fn open(destination: Destination) -> anyhow::Result<Output> {
        let sink: Box<dyn Write + Send> = match &destination {
            Destination::Stdout => stdout()?,
            Destination::File(path) => Box::new(open_file(path)?),
        };
        Ok(Output { destination, sink })
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }
}

fn open_file(path: &Path) -> anyhow::Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open --flows-out file {}", path.display()))
}

/// Standard output without the standard library's line buffering (the writer writes whole
/// batches): a duplicate of file descriptor 1.
#[cfg(unix)]
fn stdout() -> anyhow::Result<Box<dyn Write + Send>> {
    use std::os::fd::AsFd;
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot use standard output for --flows-out")?;
    Ok(Box::new(File::from(fd)))
}

#[cfg(not(unix))]
fn stdout() -> anyhow::Result<Box<dyn Write + Send>> {
    Ok(Box::new(std::io::stdout()))
}

/// The writer side, started once; [`FlowsOut::batcher`] makes the sending side of each input.
pub struct FlowsOut {
    queue: SyncSender<Batch>,
    queue_full: Counter,
    thread: JoinHandle<()>,
}

impl FlowsOut {
    /// Starts the writer thread with a queue of `buffer_flows` flows (rounded up to whole
    /// batches). `reopen` is set by the SIGHUP handler.
    pub fn start(
        output: Output,
        buffer_flows: usize,
        registry: &Registry,
        reopen: Arc<AtomicBool>,
    ) -> anyhow::Result<FlowsOut> {
        let (queue, rx) = mpsc::sync_channel(buffer_flows.div_ceil(BATCH).max(1));
        let lines = registry.counter(FLOWS_OUT_LINES, &[]);
        let queue_full = registry.counter(FLOWS_OUT_DROPPED, &[("reason", "queue_full")]);
        let write_error = registry.counter(FLOWS_OUT_DROPPED, &[("reason", "write_error")]);
        info!(destination = %output.destination, "writing goflow2 JSON flow lines (--flows-out)");
        let mut writer = Writer {
            output,
            lines,
            write_error,
            buf: Vec::with_capacity(BATCH * 1024),
            broken: false,
            write_failed: WarnLimit::default(),
        };
        let thread = std::thread::Builder::new()
            .name("flows-out".into())
            .spawn(move || writer.run(&rx, &reopen))
            .context("cannot start the --flows-out writer thread")?;
        Ok(FlowsOut {
            queue,
            queue_full,
            thread,
        })
    }

    /// The sending side for one input. `wait_when_full`: wait for the writer instead of dropping
    /// (for `--replay`, which reads a file and loses nothing by waiting).
    pub fn batcher(&self, wait_when_full: bool) -> LineBatcher {
        let (home, pool) = mpsc::channel();
        LineBatcher {
            queue: self.queue.clone(),
            batch: Batch::with_capacity(home.clone()),
            home,
            pool,
            details: Vec::with_capacity(256),
            since: None,
            wait_when_full,
            queue_full: self.queue_full.clone(),
        }
    }

    /// Waits (at most `patience`) until every batcher is gone and the writer has written what
    /// they handed over.
    pub fn finish(self, patience: Duration) {
        drop(self.queue);
        let deadline = Instant::now() + patience;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !self.thread.is_finished() {
            warn!(
                "--flows-out: exiting before the writer finished (an input is still running or the output is blocked)"
            );
        } else if self.thread.join().is_err() {
            error!("the --flows-out writer thread panicked");
        }
    }
}

/// One input's sending side: collects its flows and their details into batches and hands them
/// to the writer.
pub struct LineBatcher {
    queue: SyncSender<Batch>,
    batch: Batch,
    home: Sender<Batch>,
    /// Emptied batches returned by the writer.
    pool: Receiver<Batch>,
    /// The decoder's details of the current datagram.
    details: Vec<FlowDetail>,
    /// When the current batch got its first flow.
    since: Option<Instant>,
    wait_when_full: bool,
    queue_full: Counter,
}

impl LineBatcher {
    /// Where the decoder appends the details of the current datagram.
    pub fn details(&mut self) -> &mut Vec<FlowDetail> {
        &mut self.details
    }

    /// Takes the datagram's `flows` and the details the decoder appended (a decoder that gives
    /// none gets empty details), handing over every batch that fills.
    pub fn add(&mut self, flows: &[Flow]) {
        self.details.resize(flows.len(), FlowDetail::default());
        let mut at = 0;
        while at < flows.len() {
            let room = BATCH.saturating_sub(self.batch.len()).max(1);
            let end = flows.len().min(at + room);
            self.batch.flows.extend_from_slice(&flows[at..end]);
            self.batch.details.extend_from_slice(&self.details[at..end]);
            self.since.get_or_insert_with(Instant::now);
            at = end;
            if self.batch.len() >= BATCH {
                self.hand_over();
            }
        }
        self.details.clear();
    }

    /// Drops the current datagram's details (its decoder panicked; its flows are gone too).
    pub fn discard(&mut self) {
        self.details.clear();
    }

    /// Hands over a partly filled batch once it has waited 100 ms (`FLUSH_AFTER`).
    pub fn tick(&mut self, now: Instant) {
        if self
            .since
            .is_some_and(|t| now.saturating_duration_since(t) >= FLUSH_AFTER)
        {
            self.hand_over();
        }
    }

    /// Hands over whatever is batched (at the end of an input).
    pub fn flush(&mut self) {
        self.hand_over();
    }

    fn hand_over(&mut self) {
        self.since = None;
        if self.batch.len() == 0 {
            return;
        }
        let fresh = self
            .pool
            .try_recv()
            .unwrap_or_else(|_| Batch::with_capacity(self.home.clone()));
        let full = std::mem::replace(&mut self.batch, fresh);
        let refused = if self.wait_when_full {
            self.queue.send(full).err().map(|e| e.0)
        } else {
            match self.queue.try_send(full) {
                Ok(()) => None,
                Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => Some(b),
            }
        };
        if let Some(mut b) = refused {
            self.queue_full.increment(b.len() as u64);
            b.flows.clear();
            b.details.clear();
            // Keep the allocation: the next batch reuses it.
            self.batch = b;
        }
    }
}

impl Drop for LineBatcher {
    /// An input that ends hands over its last lines.
    fn drop(&mut self) {
        self.flush();
    }
}

/// The writer thread's state.
struct Writer {
    output: Output,
    lines: Counter,
    write_error: Counter,
    /// The formatted batch (reused).
    buf: Vec<u8>,
    /// Standard output's reader went away: nothing more is written there.
    broken: bool,
    /// The warning about failed writes.
    write_failed: WarnLimit,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Batch>, reopen: &AtomicBool) {
        loop {
            let received = rx.recv_timeout(WAKE_EVERY);
            if reopen.swap(false, Ordering::Relaxed) {
                self.reopen();
            }
            match received {
                Ok(mut batch) => {
                    self.write(&batch);
                    batch.flows.clear();
                    batch.details.clear();
                    if let Some(home) = batch.home.clone() {
                        // The input may be gone: then the batch is simply freed.
                        let _ = home.send(batch);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.output.sink.flush();
    }

    fn write(&mut self, batch: &Batch) {
        let n = batch.len() as u64;
        if self.broken {
            self.write_error.increment(n);
            return;
        }
        self.buf.clear();
        for (flow, detail) in batch.flows.iter().zip(&batch.details) {
            format::write_line(&mut self.buf, flow, detail);
        }
        match self.output.sink.write_all(&self.buf) {
            Ok(()) => self.lines.increment(n),
            Err(e) => {
                self.write_error.increment(n);
                if e.kind() == ErrorKind::BrokenPipe
                    && self.output.destination == Destination::Stdout
                {
                    self.broken = true;
                    error!(
                        "--flows-out: the reader of standard output went away (broken pipe); flow lines are dropped from now on and counted in goflow_flows_out_dropped_total{{reason=\"write_error\"}}; metrics are not affected"
                    );
                } else if self.write_failed.ready(1).is_some() {
                    warn!(
                        destination = %self.output.destination,
                        error = %e,
                        "--flows-out: cannot write flow lines; they are dropped and counted in goflow_flows_out_dropped_total{{reason=\"write_error\"}} (next warning in 10s at the earliest)"
                    );
                }
            }
        }
    }

    /// SIGHUP: a file is opened again by its name (after log rotation moved it away).
    fn reopen(&mut self) {
        let Destination::File(path) = &self.output.destination else {
            info!("SIGHUP: --flows-out writes to standard output, nothing to reopen");
            return;
        };
        let _ = self.output.sink.flush();
        match open_file(path) {
            Ok(file) => {
                self.output.sink = Box::new(file);
                info!(file = %path.display(), "SIGHUP: reopened the --flows-out file");
            }
            Err(e) => error!("SIGHUP: {e:#}; still writing to the file opened before"),
        }
    }
}

//! goflow2-exporter: NetFlow/IPFIX flows → Prometheus metrics.
//!
//! # Layout
//! Data flows one way, top to bottom:
//!
//! ```text
//! stdin (input::stdin, own OS thread)     I/O only: lines, batches, error tallies
//!   → decode::goflow_json                 pure: one line → Flow records or an ErrorType
//! UDP (input::udp, a thread per socket)   I/O only: recvmmsg batches of datagrams
//! --replay (input::replay + capture)      datagrams of a pcap/pcapng file
//!   → input::datagram                     per-input decoder owner, allow-list, error tallies
//!   → decode::netflow                     one datagram + exporter state → Flow records
//!   → flow::Flow                          the one record every input produces
//!   → aggregate::Accumulator              per input, no lock: counts into a Delta, ships it every 100 ms
//!   → aggregate::Publisher                one thread: merges deltas, owns label sets and handles
//!   → telemetry::Registry                 metric names, HELP, the Prometheus recorder
//!   → http                                /metrics (publish, render, gzip) and /healthz
//!
//! --flows-out (flows_out)                 the datagram inputs' flows, with their goflow2 detail
//!                                         fields, as goflow2 JSON lines: a writer thread
//!                                         behind a bounded queue, off the metrics' path
//! ```
//!
//! Around it: [`cli`] turns flags into a [`Config`], [`sampling`] holds the rate rule, [`names`]
//! goflow2's protocol names, [`cardinality`] the series caps and expiry, `sync` the one rule for
//! the few mutexes (a poisoned lock is taken over), `warn_limit` the one limiter of the warnings
//! that can repeat at packet rate. [`run`] wires the pieces together, as named steps, and owns
//! shutdown: one [`CancellationToken`] that SIGINT/SIGTERM (in `main`) or the end of stdin (with
//! `--exit-on-eof`) cancels.
//!
//! Threads and what they own: each UDP socket thread owns its decoder and its accumulator; the
//! stdin and replay threads likewise; the publisher thread owns merging and the periodic publish;
//! the scrape handler publishes, then renders, on tokio's blocking pool. Only the publisher and
//! the scrape handler share a lock (the aggregator's): no input ever waits for a scrape.

pub mod aggregate;
pub mod asn;
pub mod capture;
pub mod cardinality;
pub mod cli;
pub mod decode;
pub mod flow;
pub mod flows_out;
pub mod http;
pub mod input;
pub mod memory;
pub mod names;
pub mod sampling;
mod sync;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod test_shared;
// Test builds only: unit tests (cfg(test)), integration tests and benches (the `testkit` feature,
// which Cargo.toml's dev-dependency on this package turns on).
#[cfg(any(test, feature = "testkit"))]
#[doc(hidden)]
pub mod testkit;
mod warn_limit;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::aggregate::{AggregatorConfig, Publisher};
use crate::decode::netflow::{DecoderLimits, NetflowDecoder};
use crate::input::datagram::{DatagramPipeline, DecoderFactory, PipelineConfig};
use crate::input::replay::Capture;
use crate::input::stdin::StdinSummary;
use crate::input::udp::{BoundListener, KernelDrops, ListenSpec};
use crate::telemetry::Registry;

/// Monotonic seconds since start-up: the time base of the active-flows window and series expiry.
/// Monotonic so that wall-clock jumps cannot expire or freeze flow keys.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Default for Clock {
    fn default() -> Self {
        Clock(Instant::now())
    }
}

impl Clock {
    pub fn now_secs(&self) -> u64 {
        self.0.elapsed().as_secs()
    }
}

/// Validated configuration (see [`cli::Cli`] for the flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub read_stdin: bool,
    /// UDP listeners of the native collector (empty: none).
    pub listen: Vec<ListenSpec>,
    /// Receive buffer requested per UDP socket (`--rcvbuf`).
    pub rcvbuf: usize,
    pub replay: Option<PathBuf>,
    pub decoder: DecoderLimits,
    pub pipeline: PipelineConfig,
    pub metrics_addr: SocketAddr,
    pub exit_on_eof: bool,
    pub max_line_bytes: usize,
    pub aggregator: AggregatorConfig,
    /// `--flows-out`: where the native collector's flows go as goflow2 JSON lines.
    pub flows_out: Option<flows_out::Destination>,
    /// `--flows-out-buffer`: flows queued for the line writer at most.
    pub flows_out_buffer: usize,
    /// `--nat-attribution`: flows' destinations after NAT (the decoder applies it).
    pub nat_attribution: bool,
    /// `--asn-db`: opened by `main` into `aggregator.asn_db`.
    pub asn_db: Option<PathBuf>,
}

/// How long in-flight HTTP requests get after shutdown starts (the whole exit must fit in 2 s).
const HTTP_DRAIN: Duration = Duration::from_millis(1500);
/// How long the `--flows-out` writer gets to write what the inputs handed over, after they ended.
const LINES_DRAIN: Duration = Duration::from_millis(1000);

/// Binds the metrics listener, with an error that names the address.
pub async fn bind_metrics(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for /metrics on {addr} (--metrics-addr)"))
}

/// Everything the exporter reads, opened before [`run`] so that start-up errors (a port in use,
/// a file that is not a capture) end the program before anything else starts.
pub struct Inputs {
    pub metrics: TcpListener,
    /// The stdin reader, when `config.read_stdin` (tests pass any reader).
    pub stdin: Option<Box<dyn std::io::BufRead + Send>>,
    pub udp: Vec<BoundListener>,
    pub replay: Option<Capture>,
    /// The `--flows-out` destination, opened.
    pub flows_out: Option<flows_out::Output>,
}

/// Binds the UDP listeners of `config`, with errors that name the listener.
pub fn bind_udp(config: &Config) -> anyhow::Result<Vec<BoundListener>> {
    config
        .listen
        .iter()
        .map(|spec| {
            input::udp::bind(spec, config.rcvbuf)
                .with_context(|| format!("cannot listen on {spec} (--listen)"))
        })
        .collect()
}

/// Runs the exporter until `shutdown` is cancelled (or, with `--exit-on-eof`, until stdin and
/// the replay file are done).
pub async fn run(
    config: Config,
    inputs: Inputs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Inputs {
        metrics,
        stdin,
        udp,
        replay,
        flows_out,
    } = inputs;
    let state = shared_state(&config, &udp);
    // Before the address is logged (tests and users act on that line): SIGHUP is handled by then.
    let lines = start_flows_out_and_sighup(flows_out, &config, &state)?;
    let http_task = serve_metrics(metrics, &state, &shutdown)?;
    let publisher_thread = start_publisher(&state, &shutdown)?;
    let udp_threads = start_udp(&config, &state, lines.as_ref(), udp, &shutdown)?;
    let finite = start_finite_inputs(stdin, replay, &config, &state, lines.as_ref())?;

    wait_for_end(&config, finite, &shutdown).await;
    shutdown.cancel();
    stop(http_task, udp_threads, lines, publisher_thread).await;
    info!("stopped");
    Ok(())
}

/// The registry, the publisher and the kernel drop readers: what the HTTP handlers, the
/// publisher thread and every input share.
fn shared_state(config: &Config, udp: &[BoundListener]) -> http::AppState {
    let series_ttl = Duration::from_secs(config.aggregator.series_ttl_secs);
    let registry = Arc::new(Registry::new(Some(series_ttl)));
    let publisher = Arc::new(Publisher::new(
        registry.clone(),
        config.aggregator.clone(),
        Clock::default(),
    ));
    for listener in udp {
        input::udp::log_bound(listener, config.rcvbuf);
    }
    http::AppState {
        kernel_drops: Arc::new(Mutex::new(KernelDrops::new(udp, &registry))),
        registry,
        publisher,
    }
}

/// The `--flows-out` writer, if asked for, then the SIGHUP handler for what SIGHUP acts on (the
/// flow-lines file, the `--asn-db` database).
fn start_flows_out_and_sighup(
    output: Option<flows_out::Output>,
    config: &Config,
    state: &http::AppState,
) -> anyhow::Result<Option<flows_out::FlowsOut>> {
    let mut hangup: Vec<Arc<AtomicBool>> = config
        .aggregator
        .asn_db
        .iter()
        .map(|(_, reload)| reload.clone())
        .collect();
    let lines = match output {
        Some(output) => Some(start_flows_out(output, config, state, &mut hangup)?),
        None => None,
    };
    handle_sighup(hangup)?;
    Ok(lines)
}

/// Logs the metrics address (the line tests and users wait for) and serves HTTP on it.
fn serve_metrics(
    listener: TcpListener,
    state: &http::AppState,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let addr = listener.local_addr()?;
    info!(%addr, "serving metrics on http://{addr}/metrics");
    Ok(tokio::spawn(http::serve(
        listener,
        state.clone(),
        shutdown.clone(),
    )))
}

/// The inputs that end (stdin, the replay file), started; [`wait_for_end`] hears of their ends.
struct FiniteInputs {
    started: usize,
    done: UnboundedReceiver<&'static str>,
}

/// Starts stdin (when read) and the replay (when given); warns when there is no input at all.
fn start_finite_inputs(
    stdin: Option<Box<dyn std::io::BufRead + Send>>,
    replay: Option<Capture>,
    config: &Config,
    state: &http::AppState,
    lines: Option<&flows_out::FlowsOut>,
) -> anyhow::Result<FiniteInputs> {
    let (done_tx, done) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let mut started = 0;
    if config.read_stdin
        && let Some(reader) = stdin
    {
        start_stdin(reader, config, state, done_tx.clone())?;
        started += 1;
    } else if config.listen.is_empty() && replay.is_none() {
        warn!(
            "no input: stdin is not read (--stdin off, or a terminal) and no --listen; serving metrics only"
        );
    }
    if let Some(capture) = replay {
        start_replay(capture, config, state, lines, done_tx)?;
        started += 1;
    }
    Ok(FiniteInputs { started, done })
}

/// Stops in order: HTTP drains, the UDP threads end, the flow lines are written, the publisher
/// merges the inputs' last shipments and ends.
async fn stop(
    http_task: tokio::task::JoinHandle<std::io::Result<()>>,
    udp_threads: Vec<JoinHandle<()>>,
    lines: Option<flows_out::FlowsOut>,
    publisher_thread: JoinHandle<()>,
) {
    match tokio::time::timeout(HTTP_DRAIN, http_task).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server ended with an error"),
        Err(_) => warn!("HTTP server did not drain in time"),
        _ => {}
    }
    // UDP threads notice the token within one receive timeout (200 ms); the publisher merges
    // their last shipments on its way out.
    for t in udp_threads {
        let _ = t.join();
    }
    if let Some(lines) = lines {
        lines.finish(LINES_DRAIN);
    }
    let _ = publisher_thread.join();
}

/// The publisher thread: merges the inputs' deltas as they arrive and, every second, publishes
/// (so the active-flows window keeps moving and expiry runs when nobody scrapes).
fn start_publisher(
    state: &http::AppState,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let (state, shutdown) = (state.clone(), shutdown.clone());
    std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let mut next_release = std::time::Instant::now() + memory::RELEASE_EVERY;
            state.publisher.run(&shutdown, || {
                state.publish();
                state.registry.run_upkeep();
                if std::time::Instant::now() >= next_release {
                    memory::release_free_memory();
                    next_release = std::time::Instant::now() + memory::RELEASE_EVERY;
                }
            })
        })
        .context("cannot start the publisher thread")
}

/// The `--flows-out` writer, and SIGHUP (reopen its file) while it runs.
fn start_flows_out(
    output: flows_out::Output,
    config: &Config,
    state: &http::AppState,
    hangup: &mut Vec<Arc<AtomicBool>>,
) -> anyhow::Result<flows_out::FlowsOut> {
    let reopen = Arc::new(AtomicBool::new(false));
    if matches!(output.destination(), flows_out::Destination::File(_)) {
        hangup.push(reopen.clone());
    }
    flows_out::FlowsOut::start(output, config.flows_out_buffer, &state.registry, reopen)
}

/// SIGHUP sets every flag of `flags` (file reopening, database reload), when there are any:
/// installing the handler replaces SIGHUP's default action (terminate), which is kept otherwise.
fn handle_sighup(flags: Vec<Arc<AtomicBool>>) -> anyhow::Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler (--flows-out file, --asn-db)")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            for flag in &flags {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    Ok(())
}

/// The decoder every datagram input uses.
fn decoder_factory(config: &Config) -> DecoderFactory {
    let (limits, nat) = (config.decoder, config.nat_attribution);
    Arc::new(move || Box::new(NetflowDecoder::new(limits).with_nat_attribution(nat)))
}

/// A datagram pipeline for one input: its own decoder and its own accumulator, and with
/// `--flows-out` its own line batcher (`wait_when_full` for a file input).
fn pipeline(
    config: &Config,
    state: &http::AppState,
    lines: Option<&flows_out::FlowsOut>,
    wait_when_full: bool,
) -> DatagramPipeline {
    let pipeline = DatagramPipeline::new(
        decoder_factory(config),
        config.pipeline.clone(),
        state.publisher.accumulator(),
    );
    match lines {
        Some(lines) => pipeline.with_lines(lines.batcher(wait_when_full)),
        None => pipeline,
    }
}

/// The native collector: one thread, one decoder and one accumulator per socket.
fn start_udp(
    config: &Config,
    state: &http::AppState,
    lines: Option<&flows_out::FlowsOut>,
    listeners: Vec<BoundListener>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for listener in listeners {
        for (i, socket) in listener.sockets.into_iter().enumerate() {
            let pipeline = pipeline(config, state, lines, false);
            let shutdown = shutdown.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("udp-{i}"))
                    .spawn(move || input::udp::run_socket(socket, pipeline, shutdown))
                    .context("cannot start a UDP thread")?,
            );
        }
    }
    Ok(threads)
}

/// The stdin reader on its own OS thread (a tokio stdin read cannot be cancelled). It is left
/// behind at exit: it may be blocked in read().
fn start_stdin(
    reader: Box<dyn std::io::BufRead + Send>,
    config: &Config,
    state: &http::AppState,
    done: UnboundedSender<&'static str>,
) -> anyhow::Result<()> {
    let (max_line, mut accumulator) = (config.max_line_bytes, state.publisher.accumulator());
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            info!("reading goflow2 JSON lines from stdin");
            match input::stdin::run(reader, max_line, &mut accumulator) {
                Ok(s) => log_eof(&s),
                Err(e) => error!(error = %e, "reading stdin failed; stdin input stopped"),
            }
            let _ = done.send("stdin");
        })
        .context("cannot start the stdin thread")?;
    Ok(())
}

/// `--replay`: the capture's datagrams through the same pipeline as live traffic.
fn start_replay(
    capture: Capture,
    config: &Config,
    state: &http::AppState,
    lines: Option<&flows_out::FlowsOut>,
    done: UnboundedSender<&'static str>,
) -> anyhow::Result<()> {
    // A file loses nothing by waiting for the line writer.
    let mut pipeline = pipeline(config, state, lines, true);
    let path = config.replay.clone().unwrap_or_default();
    std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || {
            let s = input::replay::run(capture, &mut pipeline);
            info!(
                file = %path.display(),
                datagrams = s.datagrams,
                flows = s.flows,
                errors = s.errors,
                skipped_packets = s.capture.packets - s.capture.udp_datagrams,
                "replay finished; all datagrams of the file are counted"
            );
            let _ = done.send("replay");
        })
        .context("cannot start the replay thread")?;
    Ok(())
}

/// Waits for shutdown, or with `--exit-on-eof` for every finite input to end.
async fn wait_for_end(config: &Config, finite: FiniteInputs, shutdown: &CancellationToken) {
    let FiniteInputs { started, mut done } = finite;
    if !(config.exit_on_eof && started > 0) {
        shutdown.cancelled().await;
        return;
    }
    let all_done = async {
        for _ in 0..started {
            done.recv().await;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = all_done => info!("--exit-on-eof: all finite inputs are done, exiting"),
    }
}

fn log_eof(s: &StdinSummary) {
    info!(
        lines = s.lines,
        bytes = s.bytes,
        flows = s.flows,
        errors = s.errors,
        "stdin reached end of file; all lines read are counted"
    );
}

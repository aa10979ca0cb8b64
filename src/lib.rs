//! goflow2-exporter: NetFlow/IPFIX flows → Prometheus metrics.
//!
//! # Layout
//! Data flows one way, top to bottom:
//!
//! ```text
//! stdin (input::stdin, own OS thread)     I/O only: lines, batches, error tallies
//!   → decode::goflow_json                 pure: one line → Flow records or an ErrorType
//! UDP (input::udp, a thread per socket)   I/O only: datagrams, kernel drop counts
//! --replay (input::replay + capture)      datagrams of a pcap/pcapng file
//!   → input::datagram                     per-input decoder owner, per-exporter counters
//!   → decode::netflow                     one datagram + exporter state → Flow records
//!   → flow::Flow                          the one record every input produces
//!   → aggregate::Aggregator               the only writer of flow metrics (pending deltas + cached handles)
//!   → telemetry::Registry                 metric names, HELP, the Prometheus recorder
//!   → http                                /metrics (publish, then render) and /healthz
//! ```
//!
//! Around it: [`cli`] turns flags into a [`Config`], [`sampling`] holds the rate rule, [`names`]
//! goflow2's protocol names. [`run`] wires the pieces together and owns shutdown: one
//! [`CancellationToken`] that SIGINT/SIGTERM (in `main`) or the end of stdin (with
//! `--exit-on-eof`) cancels.

pub mod aggregate;
pub mod capture;
pub mod cardinality;
pub mod cli;
pub mod decode;
pub mod flow;
pub mod http;
pub mod input;
pub mod names;
pub mod sampling;
pub mod telemetry;
#[doc(hidden)]
pub mod testkit;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::aggregate::{Aggregator, AggregatorConfig};
use crate::decode::netflow::{DecoderLimits, NetflowDecoder};
use crate::input::datagram::{DatagramPipeline, DecoderFactory, PipelineConfig};
use crate::input::replay::Capture;
use crate::input::stdin::{StdinSink, StdinSummary};
use crate::input::udp::{BoundListener, ListenSpec};
use crate::telemetry::Registry;

/// The aggregator shared by the inputs and the scrape handler. A std mutex: it is held for one
/// batch or one publish, never across an `.await`, and the stdin thread is not a tokio task.
pub type SharedAggregator = Arc<Mutex<Aggregator>>;

/// Locks the aggregator. A panic while holding the lock cannot leave the counters in a state worth
/// refusing (they only grow), so a poisoned lock is taken over rather than propagated.
pub fn lock(aggregator: &SharedAggregator) -> MutexGuard<'_, Aggregator> {
    aggregator.lock().unwrap_or_else(|p| p.into_inner())
}

/// Monotonic seconds since start-up: the time base of the active-flows window. Monotonic so that
/// wall-clock jumps cannot expire or freeze flow keys.
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
    pub rcvbuf: Option<usize>,
    pub replay: Option<PathBuf>,
    pub decoder: DecoderLimits,
    pub pipeline: PipelineConfig,
    pub metrics_addr: SocketAddr,
    pub exit_on_eof: bool,
    pub max_line_bytes: usize,
    pub aggregator: AggregatorConfig,
}

/// How long in-flight HTTP requests get after shutdown starts (the whole exit must fit in 2 s).
const HTTP_DRAIN: Duration = Duration::from_millis(1500);

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
    let series_ttl = Duration::from_secs(config.aggregator.series_ttl_secs);
    let registry = Arc::new(Registry::new(Some(series_ttl)));
    let clock = Clock::default();
    let aggregator: SharedAggregator = Arc::new(Mutex::new(Aggregator::new(
        registry.clone(),
        config.aggregator.clone(),
    )));
    // Registers the stdin self metrics and every parse-error series at 0 whatever the mode, so
    // the exposition's shape does not depend on it.
    let stdin_sink = StdinSink::new(&registry, aggregator.clone(), clock);
    let replay_datagrams = registry.counter(telemetry::REPLAY_DATAGRAMS, &[]);
    let limits = config.decoder;
    let factory: DecoderFactory = Arc::new(move || Box::new(NetflowDecoder::new(limits)));
    let pipeline = || {
        DatagramPipeline::new(
            factory.clone(),
            config.pipeline.clone(),
            registry.clone(),
            aggregator.clone(),
            clock,
        )
    };

    let state = http::AppState {
        registry: registry.clone(),
        aggregator: aggregator.clone(),
        clock,
    };
    for listener in &inputs.udp {
        input::udp::log_bound(listener, config.rcvbuf);
    }
    let addr = inputs.metrics.local_addr()?;
    info!(%addr, "serving metrics on http://{addr}/metrics");
    let http_task = tokio::spawn(http::serve(inputs.metrics, state.clone(), shutdown.clone()));

    // Publishes pending deltas every second even when nobody scrapes, so the active-flows window
    // keeps moving and upkeep runs.
    let ticker = {
        let shutdown = shutdown.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let state = state.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            state.publish();
                            state.registry.run_upkeep();
                        })
                        .await;
                    }
                }
            }
        })
    };

    // Native collector: one thread and one decoder per socket.
    let mut udp_threads = Vec::new();
    for listener in inputs.udp {
        let label = listener.spec.to_string();
        let drops = registry.counter(telemetry::UDP_KERNEL_DROPS, &[("listener", &label)]);
        for (i, socket) in listener.sockets.into_iter().enumerate() {
            let (pipeline, drops, shutdown) = (pipeline(), drops.clone(), shutdown.clone());
            udp_threads.push(
                std::thread::Builder::new()
                    .name(format!("udp-{i}"))
                    .spawn(move || input::udp::run_socket(socket, pipeline, drops, shutdown))
                    .context("cannot start a UDP thread")?,
            );
        }
    }

    // Finite inputs (stdin, replay) report their end on this channel.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let mut finite = 0;
    match (config.read_stdin, inputs.stdin) {
        (true, Some(reader)) => {
            finite += 1;
            let (max_line, done) = (config.max_line_bytes, done_tx.clone());
            std::thread::Builder::new()
                .name("stdin".into())
                .spawn(move || {
                    info!("reading goflow2 JSON lines from stdin");
                    match input::stdin::run(reader, max_line, &stdin_sink) {
                        Ok(s) => log_eof(&s),
                        Err(e) => error!(error = %e, "reading stdin failed; stdin input stopped"),
                    }
                    let _ = done.send("stdin");
                })
                .context("cannot start the stdin thread")?;
        }
        _ if config.listen.is_empty() && inputs.replay.is_none() => {
            warn!(
                "no input: stdin is not read (--stdin off, or a terminal) and no --listen; serving metrics only"
            );
        }
        _ => {}
    }
    if let Some(capture) = inputs.replay {
        finite += 1;
        let (mut pipeline, done) = (pipeline(), done_tx.clone());
        let path = config.replay.clone().unwrap_or_default();
        std::thread::Builder::new()
            .name("replay".into())
            .spawn(move || {
                let s = input::replay::run(&capture, &mut pipeline, &replay_datagrams);
                info!(
                    file = %path.display(),
                    datagrams = s.datagrams,
                    flows = s.flows,
                    errors = s.errors,
                    skipped_packets = capture.stats.skipped_non_udp
                        + capture.stats.skipped_fragments
                        + capture.stats.skipped_malformed,
                    "replay finished; all datagrams of the file are counted"
                );
                let _ = done.send("replay");
            })
            .context("cannot start the replay thread")?;
    }
    drop(done_tx);

    if config.exit_on_eof && finite > 0 {
        let all_done = async {
            for _ in 0..finite {
                done_rx.recv().await;
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = all_done => info!("--exit-on-eof: all finite inputs are done, exiting"),
        }
    } else {
        shutdown.cancelled().await;
    }
    shutdown.cancel();
    let _ = ticker.await;
    match tokio::time::timeout(HTTP_DRAIN, http_task).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server ended with an error"),
        Err(_) => warn!("HTTP server did not drain in time"),
        _ => {}
    }
    // UDP threads notice the token within one receive timeout (200 ms).
    for t in udp_threads {
        let _ = t.join();
    }
    info!("stopped");
    Ok(())
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

//! goflow2-exporter: NetFlow/IPFIX flows → Prometheus metrics.
//!
//! # Layout
//! Data flows one way, top to bottom:
//!
//! ```text
//! stdin (input::stdin, own OS thread)     I/O only: lines, batches, error tallies
//!   → decode::goflow_json                 pure: one line → Flow records or an ErrorType
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
pub mod cli;
pub mod decode;
pub mod flow;
pub mod http;
pub mod input;
pub mod names;
pub mod sampling;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::aggregate::{Aggregator, AggregatorConfig};
use crate::input::stdin::{StdinSink, StdinSummary};
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

/// Runs the exporter until `shutdown` is cancelled (or stdin ends, with `--exit-on-eof`).
///
/// `stdin` is the reader for the stdin input when `config.read_stdin` is set; tests pass any
/// reader.
pub async fn run(
    config: Config,
    metrics_listener: TcpListener,
    stdin: Option<Box<dyn std::io::BufRead + Send>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::new());
    let clock = Clock::default();
    let aggregator: SharedAggregator = Arc::new(Mutex::new(Aggregator::new(
        registry.clone(),
        config.aggregator.clone(),
    )));
    // Registers the stdin self metrics and every parse-error series at 0 even when stdin is off,
    // so the exposition's shape does not depend on the mode.
    let stdin_sink = StdinSink::new(&registry, aggregator.clone(), clock);

    let state = http::AppState {
        registry: registry.clone(),
        aggregator: aggregator.clone(),
        clock,
    };
    let addr = metrics_listener.local_addr()?;
    info!(%addr, "serving metrics on http://{addr}/metrics");
    let http_task = tokio::spawn(http::serve(
        metrics_listener,
        state.clone(),
        shutdown.clone(),
    ));

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

    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    match (config.read_stdin, stdin) {
        (true, Some(reader)) => {
            let max_line = config.max_line_bytes;
            std::thread::Builder::new()
                .name("stdin".into())
                .spawn(move || {
                    info!("reading goflow2 JSON lines from stdin");
                    match input::stdin::run(reader, max_line, &stdin_sink) {
                        Ok(s) => log_eof(&s),
                        Err(e) => error!(error = %e, "reading stdin failed; stdin input stopped"),
                    }
                    let _ = eof_tx.send(());
                })
                .context("cannot start the stdin thread")?;
        }
        _ => {
            warn!("no input: stdin is not read (--stdin off, or a terminal); serving metrics only");
            drop(eof_tx);
        }
    }

    if config.exit_on_eof && config.read_stdin {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = eof_rx => info!("--exit-on-eof: stdin is done, exiting"),
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

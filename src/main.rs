//! Entry point: parse flags, start logging, bind the metrics port, run until a signal.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use goflow2_exporter::cli::Cli;
use goflow2_exporter::{Config, Inputs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(msg) => {
            error!("invalid configuration: {msg}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(config));
    // The stdin thread may still be blocked in read(): do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: stdout is left alone, and stdin may be a pipe from goflow2.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The tokio runtime. Scrapes render on the blocking pool: one long-lived thread, not one new
/// thread per scrape after each idle spell, nor several taking turns. glibc gives every thread
/// that allocates a malloc arena of its own, and memory freed in one arena is not reused by
/// another: with four render threads, each arena grew to a render's peak in turn, and the second
/// of three spoof floods peaked 6 MB above the first (a clean-clone CI run). Concurrent scrapes
/// wait for each other (a render of 100,000 series takes ~0.2 s).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(1)
        .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
        .build()
}

/// Opens the inputs, installs the signal handlers and runs the exporter until a signal.
async fn serve(mut config: Config) -> anyhow::Result<()> {
    // Open everything first: a port in use or a bad capture file ends start-up with exit 1.
    let inputs = open_inputs(&mut config).await?;
    let shutdown = CancellationToken::new();
    // The handlers are installed here, before anything is served: a SIGINT that arrives
    // once the metrics address is logged must find them (the default action would kill the
    // process with no clean exit).
    let signals = install_signal_handlers();
    tokio::spawn(cancel_on_signal(signals, shutdown.clone()));
    goflow2_exporter::run(config, inputs, shutdown).await
}

/// Binds the sockets and opens the files of `config`; the `--asn-db` database goes into
/// `config.aggregator`.
async fn open_inputs(config: &mut Config) -> anyhow::Result<Inputs> {
    let metrics = goflow2_exporter::bind_metrics(config.metrics_addr).await?;
    let udp = goflow2_exporter::bind_udp(config)?;
    let replay = match &config.replay {
        Some(path) => Some(goflow2_exporter::input::replay::load(path)?),
        None => None,
    };
    if let Some(path) = &config.asn_db {
        let db = goflow2_exporter::asn::AsnDb::open(path)?;
        config.aggregator.asn_db = Some((Arc::new(db), Arc::new(AtomicBool::new(false))));
    }
    let flows_out = match &config.flows_out {
        Some(d) => Some(goflow2_exporter::flows_out::Output::open(d.clone())?),
        None => None,
    };
    let stdin: Option<Box<dyn std::io::BufRead + Send>> = config.read_stdin.then(|| {
        Box::new(std::io::BufReader::with_capacity(
            256 * 1024,
            std::io::stdin(),
        )) as Box<dyn std::io::BufRead + Send>
    });
    Ok(Inputs {
        metrics,
        stdin,
        udp,
        replay,
        flows_out,
    })
}

type Signals = Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;

/// Installs the SIGTERM and SIGINT handlers (synchronously: `signal` registers on the call).
fn install_signal_handlers() -> Signals {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => {
            error!("cannot install signal handlers; stop the process with SIGKILL");
            None
        }
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn cancel_on_signal(signals: Signals, shutdown: CancellationToken) {
    let Some((mut term, mut int)) = signals else {
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = int.recv() => info!("SIGINT received, shutting down"),
    }
    shutdown.cancel();
}

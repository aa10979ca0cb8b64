//! Entry point: parse flags, start logging, bind the metrics port, run until a signal.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use goflow2_exporter::cli::Cli;

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    // Logs go to stderr: stdout is left alone, and stdin may be a pipe from goflow2.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(msg) => {
            error!("invalid configuration: {msg}");
            return ExitCode::from(2);
        }
    };
    // Scrapes render on the blocking pool. A few long-lived threads, not one new thread per
    // scrape after each idle spell (thread stacks and per-thread caches come and go otherwise).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Open everything first: a port in use or a bad capture file ends start-up with exit 1.
        let metrics = goflow2_exporter::bind_metrics(config.metrics_addr).await?;
        let udp = goflow2_exporter::bind_udp(&config)?;
        let replay = match &config.replay {
            Some(path) => Some(goflow2_exporter::input::replay::load(path)?),
            None => None,
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let stdin: Option<Box<dyn std::io::BufRead + Send>> = config.read_stdin.then(|| {
            Box::new(std::io::BufReader::with_capacity(
                256 * 1024,
                std::io::stdin(),
            )) as Box<dyn std::io::BufRead + Send>
        });
        let inputs = goflow2_exporter::Inputs {
            metrics,
            stdin,
            udp,
            replay,
        };
        goflow2_exporter::run(config, inputs, shutdown).await
    });
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

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop the process with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = int.recv() => info!("SIGINT received, shutting down"),
    }
    shutdown.cancel();
}

/// Makes glibc's malloc use one arena for every thread (as `MALLOC_ARENA_MAX=1` would), unless the
/// environment already sets `MALLOC_ARENA_MAX`.
///
/// Why: by default each busy thread gets an arena of its own, and memory freed in one arena is
/// not reused by allocations in another. The socket threads, the publisher and the scrape threads
/// all grow and free tables during a spoof flood, so each flood could leave the next one a
/// different arena to fill: three floods of 50,000 spoofed sources, each expired before the next,
/// peaked at 22.6, 23.4 and 34.6 MB (2 runs of 3 under CPU contention broke issue 10's "third
/// within 10 % of the first"); with one arena, 21.7, 21.3 and 22.3 MB (3 of 3 within 4 %). The
/// cost is nil here: the per-datagram path does not allocate, and glibc's per-thread caches serve
/// small allocations without taking the arena's lock. (mimalloc was tried instead and peaked at
/// ~96 MB on the same test.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes two integers and only sets an allocator parameter; it is called
        // first thing in `main`, before this process starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Other C libraries (musl in the Alpine image) have no per-thread arenas to limit.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

//! The command line: flags (each also an environment variable) → validated [`Config`].
//!
//! Owns flag names, defaults, help text and validation. Everything after start-up works from
//! [`Config`], never from the raw flags.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::Config;
use ipnet::IpNet;

use crate::aggregate::interfaces::InterfaceName;
use crate::aggregate::{AggregatorConfig, DEFAULT_MAX_SERIES_PER_METRIC};
use crate::cardinality::AddrPolicy;
use crate::decode::netflow::DecoderLimits;
use crate::flows_out::Destination;
use crate::input::datagram::PipelineConfig;
use crate::input::stdin::DEFAULT_MAX_LINE_BYTES;
use crate::input::udp::ListenSpec;
use crate::sampling::{RateOverride, SamplingPolicy};

/// Whether to read goflow2 JSON lines from stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StdinMode {
    /// Read stdin when it is a pipe or a file, not when it is a terminal.
    Auto,
    /// Always read stdin (e.g. `docker run -i`).
    On,
    /// Never read stdin.
    Off,
}

/// Turns NetFlow/IPFIX flows into Prometheus metrics.
///
/// Reads goflow2's JSON lines on stdin (`goflow2 -listen netflow://:2055 | goflow2-exporter`) or
/// collects NetFlow v5/v9/IPFIX itself on UDP (`--listen netflow://:2055`), and serves flows,
/// bytes and packets per sampler, protocol and address, scaled by the sampling rate, on
/// /metrics. Every flag can also be set through the environment variable shown.
#[derive(Debug, Parser)]
#[command(name = "goflow2-exporter", version, about, long_about)]
pub struct Cli {
    /// Read goflow2 JSON lines from stdin: auto reads it when it is not a terminal.
    #[arg(long, value_enum, default_value_t = StdinMode::Auto, env = "GOFLOW2_EXPORTER_STDIN")]
    pub stdin: StdinMode,

    /// Native NetFlow v5/v9/IPFIX collector, goflow2 syntax:
    /// `netflow://HOST:PORT[?count=N][&reuseport=true]` (count: N sockets and threads share the port
    /// with SO_REUSEPORT; reuseport=true: other exporter processes may join the port).
    /// Repeatable. Default: netflow://0.0.0.0:2055 unless stdin is read or --replay is given.
    #[arg(
        long,
        value_name = "URL",
        env = "GOFLOW2_EXPORTER_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<ListenSpec>,

    /// Receive buffer per UDP socket, in bytes. Run as root (CAP_NET_ADMIN), the exporter gets it
    /// whatever net.core.rmem_max says (SO_RCVBUFFORCE); otherwise the kernel caps it at
    /// net.core.rmem_max (raise it: sysctl -w net.core.rmem_max=33554432). The granted size is
    /// logged.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = crate::input::udp::DEFAULT_RCVBUF,
        value_parser = clap::value_parser!(u64).range(4096..=(1 << 31)),
        env = "GOFLOW2_EXPORTER_RCVBUF"
    )]
    pub rcvbuf: u64,

    /// Decode the UDP datagrams of a pcap/pcapng capture (any port, IPv4 and IPv6) as if they
    /// arrived from their original source addresses, then keep serving metrics (with
    /// --exit-on-eof: exit after the file).
    #[arg(long, value_name = "FILE", env = "GOFLOW2_EXPORTER_REPLAY")]
    pub replay: Option<PathBuf>,

    /// Accept NetFlow/IPFIX only from exporters in this network (repeatable); datagrams from
    /// elsewhere are dropped before decoding and counted in goflow_exporter_rejected_total.
    /// Default: every source.
    #[arg(
        long,
        value_name = "CIDR",
        env = "GOFLOW2_EXPORTER_ALLOW_EXPORTER",
        value_delimiter = ','
    )]
    pub allow_exporter: Vec<IpNet>,

    /// Most exporters (address:port × version × source id) whose templates are kept, least
    /// recently seen evicted first; also the most exporters with their own per-exporter series.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000),
        env = "GOFLOW2_EXPORTER_MAX_EXPORTERS"
    )]
    pub max_exporters: u64,

    /// An exporter silent for this long loses its templates and sampling state.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1h",
        value_parser = parse_window,
        env = "GOFLOW2_EXPORTER_EXPORTER_IDLE"
    )]
    pub exporter_idle: Duration,

    /// Address to serve /metrics and /healthz on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:9090",
        env = "GOFLOW2_EXPORTER_METRICS_ADDR"
    )]
    pub metrics_addr: SocketAddr,

    /// Exit (status 0) once stdin and the --replay file are done and everything read is counted,
    /// instead of serving until SIGINT/SIGTERM.
    #[arg(
        long,
        env = "GOFLOW2_EXPORTER_EXIT_ON_EOF",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub exit_on_eof: bool,

    /// Sampling rate (1 in N) for flows whose rate is unknown (0).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u64).range(1..),
        env = "GOFLOW2_EXPORTER_SAMPLING_RATE_DEFAULT"
    )]
    pub sampling_rate_default: u64,

    /// Sampling rate for samplers in a network, winning over the rate the flow carries, e.g.
    /// 192.0.2.0/24=512 (repeatable; comma-separated in the environment variable). The most
    /// specific network wins.
    #[arg(
        long,
        value_name = "CIDR=N",
        env = "GOFLOW2_EXPORTER_SAMPLING_RATE_OVERRIDE",
        value_delimiter = ','
    )]
    pub sampling_rate_override: Vec<RateOverride>,

    /// A flow key (src/dst address, ports, protocol) counts in goflow_active_flows for this long
    /// after it was last received, e.g. 60s, 5m.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse_window,
        env = "GOFLOW2_EXPORTER_ACTIVE_WINDOW"
    )]
    pub active_window: Duration,

    /// Cap on the flow keys tracked for goflow_active_flows, all samplers together; flows beyond
    /// it are counted in goflow_active_flows_overflow_total.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        env = "GOFLOW2_EXPORTER_ACTIVE_FLOWS_MAX"
    )]
    pub active_flows_max: usize,

    /// A network whose addresses keep host granularity in the src_addr/dst_addr labels
    /// (repeatable, e.g. 192.168.88.0/24); other addresses are aggregated to the remote prefixes.
    #[arg(
        long,
        value_name = "CIDR",
        env = "GOFLOW2_EXPORTER_LOCAL_NET",
        value_delimiter = ','
    )]
    pub local_net: Vec<IpNet>,

    /// Count each flow's destination after NAT (IPFIX IE 226 / 282, which RouterOS sends) in the
    /// address families when the record carries one: replies to the router's outside address are
    /// counted for the inside host they were forwarded to.
    #[arg(
        long,
        env = "GOFLOW2_EXPORTER_NAT_ATTRIBUTION",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub nat_attribution: bool,

    /// Count flows, bytes and packets per router interface (goflow_*_by_interface_total, labels
    /// sampler_address, interface, direction in/out): up to 1,024 interfaces per router, about
    /// 6 series each in use. Implied by --interface-name.
    #[arg(
        long,
        env = "GOFLOW2_EXPORTER_INTERFACES",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub interfaces: bool,

    /// A name for an interface index in the goflow_*_by_interface_total families: INDEX=NAME for
    /// every router, INDEX@ROUTER=NAME for one (e.g. 1=ether1-wan, 7@192.0.2.1=bridge-lan; the
    /// router's own name wins). Repeatable. Interfaces without a name are labelled by index.
    #[arg(
        long,
        value_name = "INDEX[@ROUTER]=NAME",
        env = "GOFLOW2_EXPORTER_INTERFACE_NAME",
        value_delimiter = ','
    )]
    pub interface_name: Vec<InterfaceName>,

    /// An MMDB file with AS numbers (GeoLite2-ASN, DB-IP's free ASN database): flows and bytes
    /// by source and destination AS (goflow_*_by_{src,dst}_asn_total) and goflow_asn_info with
    /// the AS names. An AS number the flow carries wins. Reloaded on SIGHUP.
    #[arg(long, value_name = "PATH", env = "GOFLOW2_EXPORTER_ASN_DB")]
    pub asn_db: Option<PathBuf>,

    /// Prefix length that IPv4 addresses outside --local-net are aggregated to (32: none).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 32,
        value_parser = clap::value_parser!(u8).range(0..=32),
        env = "GOFLOW2_EXPORTER_REMOTE_PREFIX_V4"
    )]
    pub remote_prefix_v4: u8,

    /// Prefix length that IPv6 addresses outside --local-net are aggregated to (128: none).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 128,
        value_parser = clap::value_parser!(u8).range(0..=128),
        env = "GOFLOW2_EXPORTER_REMOTE_PREFIX_V6"
    )]
    pub remote_prefix_v6: u8,

    /// Label values per flow metric family (e.g. source addresses); once full, new values are
    /// counted under "other". The default keeps all families together near 100,000 series.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_SERIES_PER_METRIC as u64,
        value_parser = clap::value_parser!(u64).range(1..=10_000_000),
        env = "GOFLOW2_EXPORTER_MAX_SERIES_PER_METRIC"
    )]
    pub max_series_per_metric: u64,

    /// A flow label set not updated for this long is removed from /metrics and its memory
    /// released; if it comes back it starts from 0 (a counter reset for Prometheus).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "15m",
        value_parser = parse_window,
        env = "GOFLOW2_EXPORTER_SERIES_TTL"
    )]
    pub series_ttl: Duration,

    /// Also write every flow of the native collector (UDP and --replay) as a goflow2 v2.2.6 JSON
    /// line (`goflow2 -format json`) to this file, or to standard output with `-`. Lines that
    /// cannot keep up with the traffic are dropped and counted, never slowing reception. A file is
    /// appended to, and reopened on SIGHUP (log rotation).
    #[arg(
        long,
        value_name = "PATH",
        env = "GOFLOW2_EXPORTER_FLOWS_OUT",
        value_parser = clap::value_parser!(std::ffi::OsString)
    )]
    pub flows_out: Option<std::ffi::OsString>,

    /// Flows queued for the --flows-out writer at most (~260 bytes each); beyond it UDP flows'
    /// lines are dropped and counted in goflow_flows_out_dropped_total{reason="queue_full"}.
    #[arg(
        long,
        value_name = "FLOWS",
        default_value_t = 65_536,
        value_parser = clap::value_parser!(u64).range(1024..=(1 << 24)),
        env = "GOFLOW2_EXPORTER_FLOWS_OUT_BUFFER"
    )]
    pub flows_out_buffer: u64,

    /// Longest stdin line accepted, in bytes; longer lines are counted as line_too_long and
    /// skipped without being buffered whole.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_LINE_BYTES,
        value_parser = parse_max_line,
        env = "GOFLOW2_EXPORTER_MAX_LINE_BYTES"
    )]
    pub max_line_bytes: usize,
}

fn parse_max_line(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (2..=1 << 30).contains(&n) => Ok(n),
        _ => Err("must be a whole number of bytes from 2 to 1073741824".into()),
    }
}

fn parse_window(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 60s or 5m)"))?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

impl StdinMode {
    /// Whether stdin is read: `auto` reads it when it is not a terminal.
    fn reads_stdin(self) -> bool {
        match self {
            StdinMode::On => true,
            StdinMode::Off => false,
            StdinMode::Auto => !std::io::stdin().is_terminal(),
        }
    }
}

impl Cli {
    /// Validates the flags into a [`Config`]. The error is a sentence for the user.
    pub fn into_config(mut self) -> Result<Config, String> {
        let read_stdin = self.stdin.reads_stdin();
        let listen = self.listen_or_default(read_stdin);
        let flows_out = self.flows_out.as_deref().map(Destination::parse);
        if flows_out.is_some() && listen.is_empty() && self.replay.is_none() {
            return Err(
                "--flows-out writes the flows of the native collector, and none runs: add --listen \
                 (e.g. netflow://:2055) or --replay (goflow2's lines on stdin are goflow2's already)"
                    .into(),
            );
        }
        let aggregator = self.aggregator_config();
        let max_exporters = self.max_exporters();
        Ok(Config {
            read_stdin,
            listen,
            rcvbuf: usize::try_from(self.rcvbuf).unwrap_or(usize::MAX),
            replay: self.replay,
            decoder: DecoderLimits {
                max_exporters,
                ..DecoderLimits::default()
            },
            pipeline: PipelineConfig {
                allowed_exporters: self.allow_exporter.into_iter().map(|n| n.trunc()).collect(),
                exporter_idle: self.exporter_idle,
            },
            metrics_addr: self.metrics_addr,
            exit_on_eof: self.exit_on_eof,
            max_line_bytes: self.max_line_bytes,
            aggregator,
            flows_out,
            flows_out_buffer: usize::try_from(self.flows_out_buffer).unwrap_or(usize::MAX),
            nat_attribution: self.nat_attribution,
            asn_db: self.asn_db,
        })
    }

    /// The `--listen` listeners. Never fight goflow2 for its port: the default listener only
    /// when nothing else is read.
    fn listen_or_default(&mut self, read_stdin: bool) -> Vec<ListenSpec> {
        if self.listen.is_empty() && !read_stdin && self.replay.is_none() {
            vec![ListenSpec {
                addr: SocketAddr::from(([0, 0, 0, 0], 2055)),
                count: 1,
                reuse_port: false,
            }]
        } else {
            std::mem::take(&mut self.listen)
        }
    }

    fn max_exporters(&self) -> usize {
        usize::try_from(self.max_exporters).unwrap_or(usize::MAX)
    }

    /// The aggregation flags: sampling, active flows, addresses, series caps, interfaces.
    fn aggregator_config(&mut self) -> AggregatorConfig {
        let interface_names = std::mem::take(&mut self.interface_name);
        AggregatorConfig {
            sampling: SamplingPolicy::new(
                self.sampling_rate_default,
                std::mem::take(&mut self.sampling_rate_override),
            ),
            active_window_secs: self.active_window.as_secs(),
            active_max_keys: self.active_flows_max,
            addresses: AddrPolicy::new(
                self.local_net.iter().map(|n| n.trunc()).collect(),
                self.remote_prefix_v4,
                self.remote_prefix_v6,
            ),
            max_series_per_metric: usize::try_from(self.max_series_per_metric)
                .unwrap_or(usize::MAX),
            series_ttl_secs: self.series_ttl.as_secs(),
            max_exporter_series: self.max_exporters(),
            router_idle_secs: self.exporter_idle.as_secs(),
            interfaces: self.interfaces || !interface_names.is_empty(),
            interface_names,
            // Opened by `main` (a file error is a start-up error, exit 1).
            asn_db: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_repeated_overrides_and_durations() {
        let cli = Cli::try_parse_from([
            "goflow2-exporter",
            "--sampling-rate-override",
            "192.0.2.0/24=512",
            "--sampling-rate-override",
            "2001:db8::/32=64,198.51.100.7=2",
            "--active-window",
            "5m",
        ])
        .unwrap();
        assert_eq!(cli.sampling_rate_override.len(), 3);
        assert_eq!(cli.active_window, Duration::from_secs(300));
    }

    fn config(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("goflow2-exporter").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap().into_config()
    }

    #[test]
    fn into_config_defaults_the_listener_only_when_nothing_else_is_read() {
        let c = config(&["--stdin", "off"]).unwrap();
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.listen[0].addr, SocketAddr::from(([0, 0, 0, 0], 2055)));
        let c = config(&["--stdin", "on"]).unwrap();
        assert!(c.listen.is_empty());
        let c = config(&[
            "--stdin",
            "off",
            "--listen",
            "netflow://127.0.0.1:9995?count=2",
        ])
        .unwrap();
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.listen[0].addr, SocketAddr::from(([127, 0, 0, 1], 9995)));
        assert_eq!(c.listen[0].count, 2);
    }

    #[test]
    fn into_config_carries_the_aggregation_flags() {
        let c = config(&[
            "--stdin",
            "off",
            "--interface-name",
            "1=wan,7@192.0.2.1=lan",
            "--local-net",
            "10.0.0.0/8",
            "--max-exporters",
            "2000",
        ])
        .unwrap();
        assert!(
            c.aggregator.interfaces,
            "--interface-name implies --interfaces"
        );
        assert_eq!(c.aggregator.interface_names.len(), 2);
        assert!(c.aggregator.addresses.has_local_nets());
        assert_eq!(c.decoder.max_exporters, 2000);
        assert_eq!(c.aggregator.max_exporter_series, 2000);
        assert!(!config(&["--stdin", "off"]).unwrap().aggregator.interfaces);
    }

    #[test]
    fn flows_out_needs_a_native_input() {
        let err = config(&["--stdin", "on", "--flows-out", "-"]).unwrap_err();
        assert!(err.contains("--flows-out"), "{err}");
        assert!(
            config(&[
                "--stdin",
                "on",
                "--flows-out",
                "-",
                "--listen",
                "netflow://:0"
            ])
            .is_ok()
        );
    }

    #[test]
    fn rejects_bad_values() {
        for args in [
            &["--sampling-rate-default", "0"][..],
            &["--sampling-rate-override", "192.0.2.0/24"],
            &["--active-window", "0s"],
            &["--active-window", "soon"],
            &["--metrics-addr", "localhost"],
            &["--stdin", "maybe"],
        ] {
            let argv = std::iter::once("goflow2-exporter").chain(args.iter().copied());
            assert!(
                Cli::try_parse_from(argv).is_err(),
                "{args:?} must be rejected"
            );
        }
    }
}

//! The native UDP collector: `--listen netflow://HOST:PORT?count=N&reuseport=true` sockets, one
//! OS thread each.
//!
//! Owns listener parsing, socket options (SO_REUSEPORT, the receive buffer), the receive loop
//! and the kernel's drop counters. Each socket's thread owns its own [`DatagramPipeline`] (its
//! decoder and its accumulator): with SO_REUSEPORT the kernel hashes an exporter's address and
//! port to one socket, so an exporter's templates always meet its data, and nothing is shared or
//! locked per datagram.
//!
//! Decisions:
//! - Blocking sockets on OS threads with a short receive timeout (to notice shutdown), not tokio
//!   tasks: the loop is CPU-bound decoding.
//! - `recvmmsg` with MSG_WAITFORONE: one system call returns every datagram waiting (up to
//!   [`BATCH`]), and the clock is read once per batch. Each slot holds a whole 65,535-byte
//!   datagram.
//! - Kernel drops are read from `/proc/net/udp` (the socket's `drops` column, by inode) by the
//!   publisher, not from SO_RXQ_OVFL control messages: `recvmmsg` headers lose their control
//!   buffer length after the first empty receive, and reading them off the socket thread keeps
//!   the count exact at no cost to receiving.
//! - A large receive buffer by default ([`DEFAULT_RCVBUF`]): the buffer absorbs bursts while the
//!   thread decodes, and 212 KB (Linux's default) overflows in milliseconds at flood rates.

use std::fmt;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::Counter;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::input::datagram::DatagramPipeline;
use crate::telemetry::{self as t, Registry};
use crate::warn_limit::WarnLimit;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams one receive call returns at most.
pub const BATCH: usize = 32;
/// How long a receive waits before the loop checks for shutdown.
const POLL: Duration = Duration::from_millis(200);
/// Receive buffer requested by default: 32 MiB, about 0.4 s of a 1 M flows/s v9 stream.
pub const DEFAULT_RCVBUF: u64 = 32 << 20;

/// One `--listen` URL: `netflow://HOST:PORT[?count=N]`, goflow2's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    pub addr: SocketAddr,
    /// Sockets sharing the port through SO_REUSEPORT.
    pub count: usize,
    /// SO_REUSEPORT even for one socket, so that other exporter processes can join the port
    /// (scale-out across processes; the kernel keeps each exporter on one of them).
    pub reuse_port: bool,
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "netflow://{}", self.addr)?;
        let mut sep = '?';
        if self.count > 1 {
            write!(f, "{sep}count={}", self.count)?;
            sep = '&';
        }
        if self.reuse_port {
            write!(f, "{sep}reuseport=true")?;
        }
        Ok(())
    }
}

impl FromStr for ListenSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = match s.split_once("://") {
            Some(("netflow", rest)) => rest,
            Some(("sflow" | "flow", _)) => {
                return Err(format!(
                    "{s:?}: sFlow is not decoded natively; run goflow2 and pipe its JSON to stdin"
                ));
            }
            _ => {
                return Err(format!(
                    "{s:?}: expected netflow://HOST:PORT[?count=N][&reuseport=true]"
                ));
            }
        };
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let addr = if let Some(port) = hostport.strip_prefix(':') {
            // goflow2's `netflow://:2055`: every IPv4 address.
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("{s:?}: bad port {port:?}"))?;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
        } else {
            hostport
                .parse::<SocketAddr>()
                .map_err(|_| format!("{s:?}: {hostport:?} is not IP:PORT (IPv6 as [::]:2055)"))?
        };
        let mut count = 1;
        let mut reuse_port = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("count", n)) => {
                    count = n
                        .parse::<usize>()
                        .ok()
                        .filter(|c| (1..=64).contains(c))
                        .ok_or_else(|| format!("{s:?}: count must be 1 to 64"))?;
                }
                Some(("reuseport", v)) => {
                    reuse_port = match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("{s:?}: reuseport must be true or false")),
                    };
                }
                _ => {
                    return Err(format!(
                        "{s:?}: unknown option {pair:?} (count=N, reuseport=true)"
                    ));
                }
            }
        }
        Ok(ListenSpec {
            addr,
            count,
            reuse_port,
        })
    }
}

/// A bound listener: its spec and its sockets.
pub struct BoundListener {
    pub spec: ListenSpec,
    pub sockets: Vec<UdpSocket>,
}

impl BoundListener {
    /// The address actually bound (resolves port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sockets[0].local_addr()
    }
}

/// Binds the sockets of `spec` with a receive buffer of `rcvbuf` bytes.
pub fn bind(spec: &ListenSpec, rcvbuf: usize) -> std::io::Result<BoundListener> {
    let mut sockets = Vec::with_capacity(spec.count);
    let mut addr = spec.addr;
    for _ in 0..spec.count {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if spec.count > 1 || spec.reuse_port {
            // Only when asked: SO_REUSEPORT on a lone socket would let another process share
            // the port silently.
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            // [::] receives IPv4 too (as IPv4-mapped addresses, unwrapped downstream).
            socket.set_only_v6(false)?;
        }
        set_receive_buffer(&socket, rcvbuf)?;
        socket.bind(&addr.into())?;
        let socket: UdpSocket = socket.into();
        // With port 0 and count > 1, the siblings must join the port the first one got.
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(BoundListener {
        spec: spec.clone(),
        sockets,
    })
}

/// SO_RCVBUFFORCE where permitted (root or CAP_NET_ADMIN: the size asked for, whatever
/// net.core.rmem_max says), else SO_RCVBUF (capped at net.core.rmem_max by the kernel).
fn set_receive_buffer(socket: &Socket, size: usize) -> std::io::Result<()> {
    if setsockopt(socket, sockopt::RcvBufForce, &size).is_ok() {
        return Ok(());
    }
    socket.set_recv_buffer_size(size)
}

/// Receives datagrams on `socket` until `shutdown`, feeding `pipeline`. Runs on its own thread.
pub fn run_socket(socket: UdpSocket, mut pipeline: DatagramPipeline, shutdown: CancellationToken) {
    if let Err(e) = socket.set_read_timeout(Some(POLL)) {
        warn!(error = %e, "cannot set a receive timeout; shutdown may wait for a datagram");
    }
    let mut receiver = BatchReceiver::new();
    let mut receive_failed = WarnLimit::default();
    while !shutdown.is_cancelled() {
        match receiver.receive(&socket) {
            Ok(0) | Err(Errno::EAGAIN | Errno::EINTR) => {
                // Idle: what was counted becomes visible without waiting for more traffic.
                let now = Instant::now();
                pipeline.accumulator().try_ship(now);
                pipeline.tick(now);
            }
            Ok(_) => {
                let received_at = Instant::now();
                let received_ns = unix_now_ns();
                for (from, payload) in receiver.datagrams() {
                    pipeline.handle(from, payload, received_ns);
                }
                let now = Instant::now();
                pipeline.tick(now);
                let accumulator = pipeline.accumulator();
                accumulator.maybe_ship(now);
                let away = now.duration_since(received_at);
                accumulator
                    .delta()
                    .note_receive_gap(u64::try_from(away.as_nanos()).unwrap_or(u64::MAX));
            }
            Err(e) => {
                if receive_failed.ready(1).is_some() {
                    warn!(error = %e, "receive failed");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // What was counted before shutdown is handed over (the publisher merges it on its way out).
    pipeline.accumulator().try_ship(Instant::now());
    pipeline.flush_lines();
}

/// Buffers and headers for `recvmmsg`, allocated once per socket thread.
struct BatchReceiver {
    buffers: Vec<u8>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Source and length of each datagram of the last batch.
    received: Vec<(Option<SocketAddr>, usize)>,
}

impl BatchReceiver {
    fn new() -> Self {
        BatchReceiver {
            buffers: vec![0; BATCH * MAX_DATAGRAM],
            headers: MultiHeaders::preallocate(BATCH, None),
            received: Vec::with_capacity(BATCH),
        }
    }

    /// Waits (up to the socket's timeout) for a datagram, then takes every datagram waiting, up
    /// to [`BATCH`]. Returns how many.
    fn receive(&mut self, socket: &UdpSocket) -> nix::Result<usize> {
        self.received.clear();
        let mut slots = self.buffers.chunks_exact_mut(MAX_DATAGRAM);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or_default())]);
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        for msg in results {
            let from = msg.address.as_ref().and_then(to_socket_addr);
            self.received.push((from, msg.bytes));
        }
        Ok(self.received.len())
    }

    /// The datagrams of the last batch, in order (a datagram without a source address, which
    /// UDP cannot produce, is skipped).
    fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.received
            .iter()
            .enumerate()
            .filter_map(|(i, (from, len))| {
                let start = i * MAX_DATAGRAM;
                Some(((*from)?, self.buffers.get(start..start + len)?))
            })
    }
}

/// Logs the receive buffer the kernel granted (it doubles the request; without SO_RCVBUFFORCE it
/// caps it at net.core.rmem_max first).
pub fn log_bound(listener: &BoundListener, requested: usize) {
    let granted = listener.sockets[0]
        .try_clone()
        .ok()
        .and_then(|s| Socket::from(s).recv_buffer_size().ok());
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    info!(
        listener = %listener.spec,
        sockets = listener.sockets.len(),
        rcvbuf_requested = requested,
        rcvbuf_granted = granted,
        "listening for NetFlow/IPFIX on udp://{addr}"
    );
    if let Some(got) = granted
        && got < requested
    {
        warn!(
            requested,
            granted = got,
            "the kernel granted a smaller receive buffer than requested; run as root or raise net.core.rmem_max (see --help for --rcvbuf)"
        );
    }
}

/// The kernel's drop counters of the listeners' sockets, read from `/proc/net/udp` and
/// `/proc/net/udp6` (the `drops` column of each socket's row, found by inode).
pub struct KernelDrops {
    sockets: Vec<SocketDrops>,
    warned: bool,
}

struct SocketDrops {
    inode: u64,
    counter: Counter,
    /// The kernel's cumulative count at the last update.
    seen: u64,
}

impl KernelDrops {
    /// Registers `goflow_udp_kernel_drops_total` for every listener (at 0).
    pub fn new(listeners: &[BoundListener], registry: &Registry) -> Self {
        let mut sockets = Vec::new();
        for listener in listeners {
            let label = listener.spec.to_string();
            let counter = registry.counter(t::UDP_KERNEL_DROPS, &[("listener", &label)]);
            for socket in &listener.sockets {
                match socket_inode(socket) {
                    Ok(inode) => sockets.push(SocketDrops {
                        inode,
                        counter: counter.clone(),
                        seen: 0,
                    }),
                    Err(e) => {
                        warn!(error = %e, listener = %label, "cannot identify a socket; its kernel drops are not counted")
                    }
                }
            }
        }
        KernelDrops {
            sockets,
            warned: false,
        }
    }

    /// Adds what the kernel dropped since the last update. Off the socket threads: the publisher
    /// calls it every second and before each scrape.
    pub fn update(&mut self) {
        if self.sockets.is_empty() {
            return;
        }
        let tables = ["/proc/self/net/udp", "/proc/self/net/udp6"].map(std::fs::read_to_string);
        if tables.iter().all(Result::is_err) {
            if !std::mem::replace(&mut self.warned, true) {
                warn!("/proc/self/net/udp is unreadable: kernel drops are not counted");
            }
            return;
        }
        for table in tables.iter().flatten() {
            for (inode, drops) in table.lines().skip(1).filter_map(parse_udp_row) {
                if let Some(s) = self.sockets.iter_mut().find(|s| s.inode == inode) {
                    // The kernel's counter is 32 bits wide and may wrap.
                    let delta = (drops.wrapping_sub(s.seen)) & 0xFFFF_FFFF;
                    if delta != 0 {
                        s.counter.increment(delta);
                    }
                    s.seen = drops;
                }
            }
        }
    }
}

/// The socket inode of `socket` (what `/proc/net/udp` names it by).
fn socket_inode(socket: &UdpSocket) -> std::io::Result<u64> {
    let fd: OwnedFd = socket.try_clone()?.into();
    Ok(std::fs::File::from(fd).metadata()?.ino())
}

/// (inode, drops) of a `/proc/net/udp` row: `sl local rem st tx:rx tr:when retrnsmt uid timeout
/// inode ref pointer drops`.
fn parse_udp_row(line: &str) -> Option<(u64, u64)> {
    let fields: [&str; 13] = {
        let mut it = line.split_whitespace();
        std::array::from_fn(|_| it.next().unwrap_or(""))
    };
    Some((fields[9].parse().ok()?, fields[12].parse().ok()?))
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    let v6 = a.as_sockaddr_in6()?;
    Some(SocketAddr::V6(SocketAddrV6::new(
        v6.ip(),
        v6.port(),
        v6.flowinfo(),
        v6.scope_id(),
    )))
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_goflow2_listen_urls() {
        let s: ListenSpec = "netflow://:2055".parse().unwrap();
        assert_eq!(s.addr, "0.0.0.0:2055".parse().unwrap());
        assert_eq!(s.count, 1);
        let s: ListenSpec = "netflow://[::]:4739?count=4".parse().unwrap();
        assert_eq!(s.addr, "[::]:4739".parse().unwrap());
        assert_eq!(s.count, 4);
        assert_eq!(s.to_string(), "netflow://[::]:4739?count=4");
        let s: ListenSpec = "netflow://127.0.0.1:2055?reuseport=true".parse().unwrap();
        assert!(s.reuse_port);
        assert_eq!(s.count, 1);
        assert_eq!(s.to_string(), "netflow://127.0.0.1:2055?reuseport=true");
        for bad in [
            "sflow://:6343",
            "netflow://localhost:2055",
            "netflow://:99999",
            "netflow://:2055?count=0",
            "netflow://:2055?workers=2",
            "netflow://:2055?reuseport=maybe",
            "udp://:2055",
            "2055",
        ] {
            assert!(bad.parse::<ListenSpec>().is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn count_sockets_share_one_port() {
        let spec: ListenSpec = "netflow://127.0.0.1:0?count=3".parse().unwrap();
        let l = bind(&spec, 1 << 20).unwrap();
        let ports: Vec<u16> = l
            .sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
    }

    #[test]
    fn port_in_use_is_an_error() {
        let spec: ListenSpec = "netflow://127.0.0.1:0".parse().unwrap();
        let first = bind(&spec, 1 << 20).unwrap();
        let again = ListenSpec {
            addr: first.local_addr().unwrap(),
            count: 1,
            reuse_port: false,
        };
        let err = bind(&again, 1 << 20).err().expect("second bind fails");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}

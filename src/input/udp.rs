//! The native UDP collector: `--listen netflow://HOST:PORT?count=N` sockets, one OS thread each.
//!
//! Owns listener parsing, socket options (SO_REUSEPORT for `count > 1`, SO_RCVBUF, SO_RXQ_OVFL)
//! and the receive loop. Each socket's thread owns its own [`DatagramPipeline`] (and so its own
//! decoder): with SO_REUSEPORT the kernel hashes an exporter's address and port to one socket,
//! so an exporter's templates always meet its data, and no parser state is shared or locked.
//!
//! Decisions:
//! - Blocking sockets on OS threads with a short receive timeout (to notice shutdown), not tokio
//!   tasks: the loop is CPU-bound decoding, and `recvmsg` gives the kernel's drop counter in a
//!   control message.
//! - A datagram of up to 65,535 bytes is received whole.

use std::fmt;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::Counter;
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::input::datagram::DatagramPipeline;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// How long a receive waits before the loop checks for shutdown.
const POLL: Duration = Duration::from_millis(200);

/// One `--listen` URL: `netflow://HOST:PORT[?count=N]`, goflow2's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    pub addr: SocketAddr,
    /// Sockets sharing the port through SO_REUSEPORT.
    pub count: usize,
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "netflow://{}", self.addr)?;
        if self.count > 1 {
            write!(f, "?count={}", self.count)?;
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
            _ => return Err(format!("{s:?}: expected netflow://HOST:PORT[?count=N]")),
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
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("count", n)) => {
                    count = n
                        .parse::<usize>()
                        .ok()
                        .filter(|c| (1..=64).contains(c))
                        .ok_or_else(|| format!("{s:?}: count must be 1 to 64"))?;
                }
                _ => return Err(format!("{s:?}: unknown option {pair:?} (only count=N)")),
            }
        }
        Ok(ListenSpec { addr, count })
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

/// Binds the sockets of `spec`, with SO_RCVBUF `rcvbuf` when given.
pub fn bind(spec: &ListenSpec, rcvbuf: Option<usize>) -> std::io::Result<BoundListener> {
    let mut sockets = Vec::with_capacity(spec.count);
    let mut addr = spec.addr;
    for _ in 0..spec.count {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if spec.count > 1 {
            // Only when asked: SO_REUSEPORT on a lone socket would let another process share
            // the port silently.
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            // [::] receives IPv4 too (as IPv4-mapped addresses, unwrapped downstream).
            socket.set_only_v6(false)?;
        }
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size)?;
        }
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

/// Receives datagrams on `socket` until `shutdown`, feeding `pipeline`. Runs on its own thread.
pub fn run_socket(
    socket: UdpSocket,
    mut pipeline: DatagramPipeline,
    kernel_drops: Counter,
    shutdown: CancellationToken,
) {
    if let Err(e) = socket.set_read_timeout(Some(POLL)) {
        warn!(error = %e, "cannot set a receive timeout; shutdown may wait for a datagram");
    }
    let drops_enabled = setsockopt(&socket, sockopt::RxqOvfl, &1).is_ok();
    if !drops_enabled {
        warn!("SO_RXQ_OVFL unavailable: kernel drops on this socket are not counted");
    }
    let fd = socket.as_raw_fd();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut cmsg = nix::cmsg_space!(u32);
    let mut last_drops: Option<u32> = None;
    let mut last_warn = None::<std::time::Instant>;
    while !shutdown.is_cancelled() {
        let received = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
                Ok(msg) => {
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::RxqOvfl(total) = c {
                                // The kernel's cumulative count for this socket (wrapping u32).
                                let delta = total.wrapping_sub(last_drops.unwrap_or(0));
                                if delta > 0 {
                                    kernel_drops.increment(u64::from(delta));
                                }
                                last_drops = Some(total);
                            }
                        }
                    }
                    msg.address
                        .as_ref()
                        .and_then(to_socket_addr)
                        .map(|a| (a, msg.bytes))
                }
                Err(Errno::EAGAIN | Errno::EINTR) => None,
                Err(e) => {
                    if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        warn!(error = %e, "receive failed");
                        last_warn = Some(std::time::Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    None
                }
            }
        };
        match received {
            Some((from, len)) => {
                pipeline.handle(from, &buf[..len], unix_now_ns());
            }
            None => pipeline.tick(),
        }
    }
}

/// Logs the receive buffer the kernel granted (it doubles the request and caps it at
/// net.core.rmem_max).
pub fn log_bound(listener: &BoundListener, requested: Option<usize>) {
    let granted = Socket::from(listener.sockets[0].try_clone().expect("dup socket"))
        .recv_buffer_size()
        .ok();
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
    if let (Some(req), Some(got)) = (requested, granted)
        && got < req
    {
        warn!(
            requested = req,
            granted = got,
            "the kernel granted a smaller receive buffer than --rcvbuf; raise net.core.rmem_max"
        );
    }
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
        for bad in [
            "sflow://:6343",
            "netflow://localhost:2055",
            "netflow://:99999",
            "netflow://:2055?count=0",
            "netflow://:2055?workers=2",
            "udp://:2055",
            "2055",
        ] {
            assert!(bad.parse::<ListenSpec>().is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn count_sockets_share_one_port() {
        let spec: ListenSpec = "netflow://127.0.0.1:0?count=3".parse().unwrap();
        let l = bind(&spec, Some(1 << 20)).unwrap();
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
        let first = bind(&spec, None).unwrap();
        let again = ListenSpec {
            addr: first.local_addr().unwrap(),
            count: 1,
        };
        let err = bind(&again, None).err().expect("second bind fails");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}

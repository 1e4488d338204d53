//! Outgoing connections through an agent that is not on this host (Kubernetes): a relay.
//!
//! A local agent hands over sockets it made inside the target's network (`sockets.rs`); a
//! remote one cannot, so the bytes travel over the agent's `OpenConnection` stream instead, and
//! the program's own socket is pointed at a daemon endpoint on loopback:
//!
//! - **TCP `connect`**: the agent connects first (its result — `ECONNREFUSED`, `ETIMEDOUT` — is
//!   the program's result, and the program's socket is left untouched on failure). Then the
//!   daemon connects the program's very socket (a `pidfd_getfd` duplicate shares it) to a
//!   one-shot listener on loopback, accepts the other end and pumps it to the stream. The
//!   program keeps its descriptor, flags and options; `connect` answers 0, or `EINPROGRESS` for
//!   a non-blocking socket (which is writable at once). EOF half-closes the remote side; a reset
//!   there resets the program's connection.
//! - **Connected UDP** (`connect` on a datagram socket: glibc's resolver, Go's): the program's
//!   socket is connected to a daemon UDP socket on loopback whose datagrams go over the stream.
//! - **`sendto`/`sendmsg` with a destination** (musl's resolver, Node's dgram): the datagram is
//!   taken from the program's memory and sent over a stream per (socket, destination); answers
//!   come back to the program's socket from a daemon UDP socket that stands for that
//!   destination.
//!
//! The program must not see the loopback stand-ins: `getpeername` and `getsockname` of a relayed
//! socket, and the source address of `recvfrom`/`recvmsg` on a relayed UDP socket, are answered
//! with the original addresses (glibc and musl drop DNS answers that do not come from the
//! nameserver). These four calls are trapped only in sessions whose agent cannot pass sockets
//! ([`TRAPPED`]), and they continue in the kernel at once unless the socket is relayed: a
//! `recvfrom` without an address buffer, or any of them while nothing is relayed, costs only the
//! trap. A `recvfrom` that needs its address rewritten is performed by the daemon on the shared
//! socket (blocking, non-blocking, `SO_RCVTIMEO` and the program's death honoured) and its data
//! and address written into the program.
//!
//! Not covered: ancillary data of relayed UDP receives (`IP_PKTINFO`, timestamps: control
//! length 0), `recvmmsg` address rewriting, IPv6-only (`IPV6_V6ONLY`) datagram sockets, and
//! urgent data.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use tether_protocol::agent::{ConnectClient, ConnectOpen, ConnectServer, Transport, connect_client, connect_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Answer, Call, Notif, Stats, memory, proc};

/// The calls relayed sessions trap in addition to the base set.
pub const TRAPPED: [u32; 4] =
    [libc::SYS_getpeername as u32, libc::SYS_getsockname as u32, libc::SYS_recvfrom as u32, libc::SYS_recvmsg as u32];

/// A UDP relay with no datagram in either direction for this long is closed.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// A relayed socket, by its inode: what the program must see.
#[derive(Clone, Debug)]
struct Relayed {
    /// The original destination (`getpeername`); `None` for unconnected UDP.
    peer: Option<SocketAddr>,
    /// The local address the agent's socket got (`getsockname`).
    local: Option<SocketAddr>,
    udp: bool,
    domain: i32,
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<u64, Relayed>,
    /// Loopback address of a daemon UDP socket -> the destination it stands for.
    stand_ins: HashMap<SocketAddr, SocketAddr>,
    /// Unconnected UDP flows: (socket inode, destination) -> datagrams to send.
    flows: HashMap<(u64, SocketAddr), mpsc::Sender<Vec<u8>>>,
    /// Live relays (pumps) per socket: the socket is forgotten when its last one ends.
    live: HashMap<u64, usize>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);
/// Fast check for the hot path: is anything relayed at all?
static ANY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static ANY_UDP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn refresh_flags(r: &Registry) {
    use std::sync::atomic::Ordering::Relaxed;
    ANY.store(!r.sockets.is_empty(), Relaxed);
    ANY_UDP.store(r.sockets.values().any(|s| s.udp), Relaxed);
}

/// A relay of socket `inode` ended; the socket is forgotten with its last relay.
fn release(r: &mut Registry, inode: u64) {
    let left = r.live.get(&inode).copied().unwrap_or(1).saturating_sub(1);
    if left == 0 {
        r.live.remove(&inode);
        r.sockets.remove(&inode);
        r.flows.retain(|(i, _), _| *i != inode);
    } else {
        r.live.insert(inode, left);
    }
    refresh_flags(r);
}

/// The inode of descriptor `fd` of `tid` when it is a socket (`socket:[123]`).
fn socket_inode(tid: u32, fd: RawFd) -> Option<u64> {
    let link = proc::readlink(&format!("/proc/{tid}/fd/{fd}"))?;
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

fn fstat_inode(fd: RawFd) -> Option<u64> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
}

/// Whether a trapped call of [`TRAPPED`] is the relay's to answer: `recvfrom`/`recvmsg` (only
/// relayed sessions trap them), and `getpeername`/`getsockname` of a relayed socket (others may
/// trap those too, e.g. for incoming traffic, and get the rest).
pub(super) fn owns(n: &Notif) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let nr = n.nr as u32;
    if nr == libc::SYS_recvfrom as u32 || nr == libc::SYS_recvmsg as u32 {
        return true;
    }
    ANY.load(Relaxed) && socket_inode(n.tid, n.args[0] as RawFd).and_then(relayed).is_some()
}

fn relayed(inode: u64) -> Option<Relayed> {
    REGISTRY.lock().unwrap().sockets.get(&inode).cloned()
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
    (r == 0).then_some(v)
}

/// A `sockaddr` for `addr` as a socket of `domain` expects it (IPv4 in an IPv6 socket is
/// v4-mapped).
pub fn encode(addr: SocketAddr, domain: i32) -> Vec<u8> {
    let v6 = |ip: Ipv6Addr, port: u16, flow: u32, scope: u32| {
        let mut b = vec![0u8; 28];
        b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&flow.to_be_bytes());
        b[8..24].copy_from_slice(&ip.octets());
        b[24..28].copy_from_slice(&scope.to_ne_bytes());
        b
    };
    match (addr, domain) {
        (SocketAddr::V4(a), libc::AF_INET6) => v6(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
        (SocketAddr::V4(a), _) => {
            let mut b = vec![0u8; 16];
            b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            b
        }
        (SocketAddr::V6(a), _) => v6(*a.ip(), a.port(), a.flowinfo(), a.scope_id()),
    }
}

/// Parses a `sockaddr_in`/`sockaddr_in6`; v4-mapped IPv6 addresses come back as IPv4.
pub fn decode(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?) as i32;
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(4..8)?).ok()?)), port))
        }
        libc::AF_INET6 => {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(b.get(8..24)?).ok()?);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                None => SocketAddr::new(IpAddr::V6(ip), port),
            })
        }
        _ => None,
    }
}

fn sock_name(fd: RawFd, peer: bool) -> io::Result<SocketAddr> {
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut storage as *mut libc::sockaddr_storage).cast();
    let r = unsafe { if peer { libc::getpeername(fd, p, &mut len) } else { libc::getsockname(fd, p, &mut len) } };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes =
        unsafe { std::slice::from_raw_parts((&storage as *const libc::sockaddr_storage).cast::<u8>(), len as usize) };
    decode(bytes).ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

fn connect_fd(fd: RawFd, addr: SocketAddr, domain: i32) -> io::Result<()> {
    let raw = encode(addr, domain);
    let r = unsafe { libc::connect(fd, raw.as_ptr().cast(), raw.len() as libc::socklen_t) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn bind_fd(fd: RawFd, addr: SocketAddr, domain: i32) -> io::Result<()> {
    let raw = encode(addr, domain);
    let r = unsafe { libc::bind(fd, raw.as_ptr().cast(), raw.len() as libc::socklen_t) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn poll_fd(fd: RawFd, events: i16, ms: i32) -> io::Result<i16> {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
    }
    Ok(p.revents)
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Loopback as a socket of `domain` reaches it (IPv4 loopback works for dual-stack IPv6 sockets).
fn loopback(domain: i32, v6only: bool) -> IpAddr {
    if domain == libc::AF_INET6 && v6only { IpAddr::V6(Ipv6Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) }
}

/// Opens a relayed connection to `dest`; answers the agent's connect result and the two halves.
async fn open(
    agent: &crate::agent::Agent,
    transport: Transport,
    dest: SocketAddr,
) -> Result<(ConnectResultParts, mpsc::Sender<ConnectClient>, tonic::Streaming<ConnectServer>), i32> {
    let (tx, rx) = mpsc::channel::<ConnectClient>(16);
    let open = ConnectClient {
        msg: Some(connect_client::Msg::Open(ConnectOpen {
            transport: transport as i32,
            address: dest.to_string(),
            timeout_ms: 0,
        })),
    };
    tx.send(open).await.map_err(|_| libc::EIO)?;
    let mut inbound = agent
        .client()
        .open_connection(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| {
            tracing::debug!(%dest, "OpenConnection refused: {}", s.message());
            libc::ECONNREFUSED
        })?
        .into_inner();
    match inbound.message().await {
        Ok(Some(ConnectServer { msg: Some(connect_server::Msg::Result(r)) })) => {
            if r.errno != 0 {
                return Err(r.errno);
            }
            let parts = ConnectResultParts { local: r.local_address.parse().ok() };
            Ok((parts, tx, inbound))
        }
        Ok(_) => Err(libc::EIO),
        Err(s) => Err(status_errno(&s)),
    }
}

struct ConnectResultParts {
    local: Option<SocketAddr>,
}

fn status_errno(s: &tonic::Status) -> i32 {
    s.metadata()
        .get("tether-errno")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(libc::ECONNRESET)
}

fn data(bytes: Vec<u8>) -> ConnectClient {
    ConnectClient { msg: Some(connect_client::Msg::Data(bytes)) }
}

impl Call {
    /// `connect`, `sendto` or `sendmsg` to a remote destination when the agent cannot pass
    /// sockets (the hook in `sockets.rs`).
    pub(super) fn relay_outgoing(self, fd: RawFd, dest: SocketAddr, tcp: bool, udp: bool, datagram_only: bool) {
        let rt = self.scope.rt.clone();
        let inner = rt.clone();
        rt.spawn_blocking(move || {
            let answer = self.relay_setup(&inner, fd, dest, tcp, udp, datagram_only).unwrap_or_else(|e| {
                self.scope.stats.error(format!("outgoing {dest} (relayed): {e}"));
                Answer::Errno(errno_of(&e))
            });
            self.answer(answer);
        });
    }

    fn relay_setup(
        &self,
        rt: &tokio::runtime::Handle,
        fd: RawFd,
        dest: SocketAddr,
        tcp: bool,
        udp: bool,
        datagram_only: bool,
    ) -> io::Result<Answer> {
        let theirs = match proc::take_fd(self.n.tid, fd) {
            Ok(s) => s,
            Err(_) => return Ok(Answer::Continue),
        };
        let s = theirs.as_raw_fd();
        let (Some(ty), Some(domain)) =
            (getsockopt_int(s, libc::SOL_SOCKET, libc::SO_TYPE), getsockopt_int(s, libc::SOL_SOCKET, libc::SO_DOMAIN))
        else {
            return Ok(Answer::Continue);
        };
        if domain != libc::AF_INET && domain != libc::AF_INET6 {
            return Ok(Answer::Continue);
        }
        let inode = fstat_inode(s).unwrap_or(0);
        let v6only = domain == libc::AF_INET6 && getsockopt_int(s, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == Some(1);
        match ty {
            libc::SOCK_STREAM if tcp && !datagram_only => {
                if relayed(inode).is_some() {
                    return Ok(Answer::Continue); // connected already: the kernel says EISCONN
                }
                self.relay_tcp(rt, theirs, inode, domain, v6only, dest)
            }
            libc::SOCK_DGRAM if udp => {
                if v6only {
                    self.scope.stats.error(format!("outgoing {dest}: IPv6-only UDP sockets are not relayed"));
                    return Ok(Answer::Continue);
                }
                if datagram_only {
                    self.relay_datagram(rt, theirs, inode, domain, dest)
                } else {
                    self.relay_udp_connect(rt, theirs, inode, domain, dest)
                }
            }
            _ => Ok(Answer::Continue),
        }
    }

    fn relay_tcp(
        &self,
        rt: &tokio::runtime::Handle,
        theirs: OwnedFd,
        inode: u64,
        domain: i32,
        v6only: bool,
        dest: SocketAddr,
    ) -> io::Result<Answer> {
        let s = theirs.as_raw_fd();
        let nonblocking = unsafe { libc::fcntl(s, libc::F_GETFL) } & libc::O_NONBLOCK != 0;
        let agent = self.scope.agent.clone();
        let (parts, tx, inbound) = match rt.block_on(async { open(&agent, Transport::Tcp, dest).await }) {
            Ok(x) => x,
            Err(errno) => return Ok(Answer::Errno(errno)),
        };
        if !self.listener.is_valid(self.n.id) {
            return Ok(Answer::Continue); // the program gave up; the stream ends with `tx`
        }
        // The program's socket -> a one-shot listener on loopback.
        let listener = TcpListener::bind(SocketAddr::new(loopback(domain, v6only), 0))?;
        let at = listener.local_addr()?;
        match connect_fd(s, at, domain) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                let ready = poll_fd(s, libc::POLLOUT, 2000)?;
                if ready & libc::POLLOUT == 0 {
                    return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
                }
                if let Some(err) = getsockopt_int(s, libc::SOL_SOCKET, libc::SO_ERROR).filter(|e| *e != 0) {
                    return Err(io::Error::from_raw_os_error(err));
                }
            }
            Err(e) => return Err(e),
        }
        let theirs_local = sock_name(s, false)?;
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        let accepted = loop {
            match listener.accept() {
                Ok((conn, peer)) if peer == theirs_local => break conn,
                Ok(_) => continue, // someone else: not ours
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    poll_fd(listener.as_raw_fd(), libc::POLLIN, 100)?;
                }
                Err(e) => return Err(e),
            }
        };
        drop(listener);
        accepted.set_nonblocking(true)?;
        let _ = accepted.set_nodelay(true);
        {
            let mut r = REGISTRY.lock().unwrap();
            r.sockets.insert(inode, Relayed { peer: Some(dest), local: parts.local, udp: false, domain });
            *r.live.entry(inode).or_default() += 1;
            refresh_flags(&r);
        }
        Stats::count(&self.scope.stats.connections);
        let stream = tokio::net::TcpStream::from_std(accepted).map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
        rt.spawn(pump_tcp(stream, tx, inbound, inode));
        tracing::debug!(%dest, "TCP connection relayed through the agent");
        Ok(if nonblocking { Answer::Errno(libc::EINPROGRESS) } else { Answer::Value(0) })
    }

    fn relay_udp_connect(
        &self,
        rt: &tokio::runtime::Handle,
        theirs: OwnedFd,
        inode: u64,
        domain: i32,
        dest: SocketAddr,
    ) -> io::Result<Answer> {
        let s = theirs.as_raw_fd();
        let agent = self.scope.agent.clone();
        let (parts, tx, inbound) = match rt.block_on(async { open(&agent, Transport::Udp, dest).await }) {
            Ok(x) => x,
            Err(errno) => return Ok(Answer::Errno(errno)),
        };
        let stand_in = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let stand_in_addr = stand_in.local_addr()?;
        if !self.listener.is_valid(self.n.id) {
            return Ok(Answer::Continue);
        }
        connect_fd(s, stand_in_addr, domain)?;
        let theirs_local = sock_name(s, false)?;
        stand_in.connect(theirs_local)?;
        stand_in.set_nonblocking(true)?;
        {
            // A socket connected again replaces its entry; the old relay idles out (the
            // program's socket no longer accepts its datagrams).
            let mut r = REGISTRY.lock().unwrap();
            r.sockets.insert(inode, Relayed { peer: Some(dest), local: parts.local, udp: true, domain });
            r.stand_ins.insert(stand_in_addr, dest);
            *r.live.entry(inode).or_default() += 1;
            refresh_flags(&r);
        }
        Stats::count(&self.scope.stats.connections);
        if dest.port() == 53 {
            Stats::count(&self.scope.stats.dns_lookups);
        }
        let sock = tokio::net::UdpSocket::from_std(stand_in).map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
        rt.spawn(pump_udp(sock, tx, inbound, None, stand_in_addr, inode));
        tracing::debug!(%dest, "UDP socket relayed through the agent");
        Ok(Answer::Value(0))
    }

    /// `sendto`/`sendmsg` with a destination on a datagram socket.
    fn relay_datagram(
        &self,
        rt: &tokio::runtime::Handle,
        theirs: OwnedFd,
        inode: u64,
        domain: i32,
        dest: SocketAddr,
    ) -> io::Result<Answer> {
        let s = theirs.as_raw_fd();
        let payload = match self.outgoing_payload() {
            Ok(p) => p,
            Err(_) => return Ok(Answer::Continue), // a bad pointer: the kernel reports it
        };
        let existing = REGISTRY.lock().unwrap().flows.get(&(inode, dest)).cloned();
        let flow = match existing.filter(|f| !f.is_closed()) {
            Some(f) => f,
            None => {
                // Answers arrive on the program's socket: it needs a port.
                let mut local = sock_name(s, false)?;
                if local.port() == 0 {
                    let any = if domain == libc::AF_INET6 {
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    };
                    bind_fd(s, SocketAddr::new(any, 0), domain)?;
                    local = sock_name(s, false)?;
                }
                if local.ip().is_unspecified() {
                    local.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
                }
                let agent = self.scope.agent.clone();
                let (parts, tx, inbound) = match rt.block_on(async { open(&agent, Transport::Udp, dest).await }) {
                    Ok(x) => x,
                    Err(errno) => return Ok(Answer::Errno(errno)),
                };
                let stand_in = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
                let stand_in_addr = stand_in.local_addr()?;
                stand_in.connect(local)?;
                stand_in.set_nonblocking(true)?;
                let (ftx, frx) = mpsc::channel::<Vec<u8>>(64);
                {
                    let mut r = REGISTRY.lock().unwrap();
                    r.sockets.entry(inode).or_insert(Relayed { peer: None, local: parts.local, udp: true, domain });
                    r.stand_ins.insert(stand_in_addr, dest);
                    r.flows.insert((inode, dest), ftx.clone());
                    *r.live.entry(inode).or_default() += 1;
                    refresh_flags(&r);
                }
                Stats::count(&self.scope.stats.connections);
                let sock =
                    tokio::net::UdpSocket::from_std(stand_in).map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
                rt.spawn(pump_udp(sock, tx, inbound, Some(frx), stand_in_addr, inode));
                ftx
            }
        };
        if dest.port() == 53 {
            Stats::count(&self.scope.stats.dns_lookups);
        }
        let n = payload.len();
        if flow.try_send(payload).is_err() {
            // A full queue drops the datagram, as a full socket buffer would.
            tracing::debug!(%dest, "relayed datagram dropped");
        }
        Ok(Answer::Value(n as i64))
    }

    /// The bytes of the trapped `sendto` or `sendmsg`.
    fn outgoing_payload(&self) -> io::Result<Vec<u8>> {
        let a = self.n.args;
        let tid = self.n.tid;
        if self.n.nr as u32 == libc::SYS_sendto as u32 {
            let len = (a[2] as usize).min(65536);
            return if len == 0 { Ok(Vec::new()) } else { memory::read(tid, a[1], len) };
        }
        let head = memory::read(tid, a[1], 56)?;
        let iov = u64::from_ne_bytes(head[16..24].try_into().unwrap());
        let iovlen = (u64::from_ne_bytes(head[24..32].try_into().unwrap()) as usize).min(1024);
        gather(tid, iov, iovlen, 65536)
    }

    /// `getpeername`, `getsockname`, `recvfrom`, `recvmsg` in a relayed session.
    pub(super) fn relay_trapped(self) {
        use std::sync::atomic::Ordering::Relaxed;
        let a = self.n.args;
        let nr = self.n.nr as u32;
        let fd = a[0] as RawFd;
        if !ANY.load(Relaxed) {
            return self.answer(Answer::Continue);
        }
        if nr == libc::SYS_getpeername as u32 || nr == libc::SYS_getsockname as u32 {
            let Some(r) = socket_inode(self.n.tid, fd).and_then(relayed) else { return self.answer(Answer::Continue) };
            let addr = if nr == libc::SYS_getpeername as u32 { r.peer } else { r.local };
            let Some(addr) = addr else { return self.answer(Answer::Continue) };
            let answer = match write_name(self.n.tid, a[1], a[2], &encode(addr, r.domain)) {
                Ok(()) if self.listener.is_valid(self.n.id) => Answer::Value(0),
                Ok(()) => Answer::Continue,
                Err(e) => Answer::Errno(errno_of(&e)),
            };
            return self.answer(answer);
        }
        if !ANY_UDP.load(Relaxed) {
            return self.answer(Answer::Continue);
        }
        // recvfrom(fd, buf, len, flags, addr, addrlen) / recvmsg(fd, msg, flags)
        let (name, msg) = if nr == libc::SYS_recvfrom as u32 {
            (a[4], None)
        } else {
            match memory::read(self.n.tid, a[1], 56) {
                Ok(head) => (u64::from_ne_bytes(head[0..8].try_into().unwrap()), Some(head)),
                Err(_) => return self.answer(Answer::Continue),
            }
        };
        if name == 0 {
            return self.answer(Answer::Continue);
        }
        let Some(r) = socket_inode(self.n.tid, fd).and_then(relayed) else { return self.answer(Answer::Continue) };
        if !r.udp {
            return self.answer(Answer::Continue);
        }
        let rt = self.scope.rt.clone();
        rt.spawn_blocking(move || {
            let answer = self.emulate_recv(fd, msg, r.domain).unwrap_or_else(|e| Answer::Errno(errno_of(&e)));
            self.answer(answer);
        });
    }

    /// Receives on the program's socket for it, then writes the data and the original source.
    fn emulate_recv(&self, fd: RawFd, msg: Option<Vec<u8>>, domain: i32) -> io::Result<Answer> {
        let a = self.n.args;
        let tid = self.n.tid;
        let theirs = match proc::take_fd(tid, fd) {
            Ok(s) => s,
            Err(_) => return Ok(Answer::Continue),
        };
        let s = theirs.as_raw_fd();
        // Where the data goes: (address, length) pieces.
        let (pieces, flags, name, namelen_at): (Vec<(u64, usize)>, i32, u64, u64) = match &msg {
            None => (vec![(a[1], a[2] as usize)], a[3] as i32, a[4], a[5]),
            Some(head) => {
                let iov = u64::from_ne_bytes(head[16..24].try_into().unwrap());
                let iovlen = (u64::from_ne_bytes(head[24..32].try_into().unwrap()) as usize).min(1024);
                let raw = memory::read(tid, iov, iovlen * 16)?;
                let pieces = raw
                    .chunks(16)
                    .map(|c| {
                        (
                            u64::from_ne_bytes(c[0..8].try_into().unwrap()),
                            u64::from_ne_bytes(c[8..16].try_into().unwrap()) as usize,
                        )
                    })
                    .collect();
                (pieces, a[2] as i32, u64::from_ne_bytes(head[0..8].try_into().unwrap()), a[1] + 8)
            }
        };
        let total: usize = pieces.iter().map(|p| p.1).sum::<usize>().min(1 << 20);
        let nonblocking =
            flags & libc::MSG_DONTWAIT != 0 || unsafe { libc::fcntl(s, libc::F_GETFL) } & libc::O_NONBLOCK != 0;
        let timeout = rcvtimeo(s);
        let began = Instant::now();
        let mut buf = vec![0u8; total.max(1)];
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let n = loop {
            let mut fromlen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let n = unsafe {
                libc::recvfrom(
                    s,
                    buf.as_mut_ptr().cast(),
                    total,
                    (flags | libc::MSG_DONTWAIT) & !libc::MSG_WAITALL,
                    (&mut from as *mut libc::sockaddr_storage).cast(),
                    &mut fromlen,
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) || nonblocking {
                return Ok(Answer::Errno(errno_of(&e)));
            }
            if timeout.is_some_and(|t| began.elapsed() >= t) {
                return Ok(Answer::Errno(libc::EAGAIN));
            }
            poll_fd(s, libc::POLLIN, 100)?;
            if !self.listener.is_valid(self.n.id) {
                return Ok(Answer::Continue); // the program is gone or was interrupted
            }
        };
        let from_bytes = unsafe {
            std::slice::from_raw_parts(
                (&from as *const libc::sockaddr_storage).cast::<u8>(),
                size_of::<libc::sockaddr_storage>(),
            )
        };
        let source = decode(from_bytes);
        let shown = source.map(|src| REGISTRY.lock().unwrap().stand_ins.get(&src).copied().unwrap_or(src));
        if !self.listener.is_valid(self.n.id) {
            return Ok(Answer::Continue);
        }
        let mut left = n.min(total);
        let mut at = 0;
        for (addr, len) in &pieces {
            if left == 0 {
                break;
            }
            let k = (*len).min(left);
            memory::write(tid, *addr, &buf[at..at + k])?;
            at += k;
            left -= k;
        }
        if let Some(src) = shown {
            write_name(tid, name, namelen_at, &encode(src, domain))?;
        }
        if msg.is_some() {
            // msg_controllen = 0 (no ancillary data), msg_flags = MSG_TRUNC when cut.
            memory::write(tid, a[1] + 40, &0u64.to_ne_bytes())?;
            let mflags: i32 = if n > total { libc::MSG_TRUNC } else { 0 };
            memory::write(tid, a[1] + 48, &mflags.to_ne_bytes())?;
        }
        Ok(Answer::Value(n as i64))
    }
}

fn rcvtimeo(fd: RawFd) -> Option<Duration> {
    let mut tv: libc::timeval = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::timeval>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&mut tv as *mut libc::timeval).cast(), &mut len)
    };
    (r == 0 && (tv.tv_sec > 0 || tv.tv_usec > 0)).then(|| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000))
}

/// Writes a socket address for a `(addr, addrlen)` pair of the program: as much as fits, and
/// the full length into `*addrlen`.
fn write_name(tid: u32, addr: u64, len_at: u64, raw: &[u8]) -> io::Result<()> {
    if addr == 0 || len_at == 0 {
        return Ok(());
    }
    let room = u32::from_ne_bytes(memory::read(tid, len_at, 4)?.try_into().unwrap()) as usize;
    let k = room.min(raw.len());
    if k > 0 {
        memory::write(tid, addr, &raw[..k])?;
    }
    memory::write(tid, len_at, &(raw.len() as u32).to_ne_bytes())
}

/// Reads the buffers of an iovec array, up to `max` bytes.
fn gather(tid: u32, iov: u64, count: usize, max: usize) -> io::Result<Vec<u8>> {
    let raw = memory::read(tid, iov, count * 16)?;
    let mut out = Vec::new();
    for c in raw.chunks(16) {
        let base = u64::from_ne_bytes(c[0..8].try_into().unwrap());
        let len = (u64::from_ne_bytes(c[8..16].try_into().unwrap()) as usize).min(max - out.len());
        if len > 0 {
            out.extend(memory::read(tid, base, len)?);
        }
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}

/// Copies a relayed TCP connection both ways until both directions end.
async fn pump_tcp(
    stream: tokio::net::TcpStream,
    tx: mpsc::Sender<ConnectClient>,
    mut inbound: tonic::Streaming<ConnectServer>,
    inode: u64,
) {
    let (mut rd, mut wr) = stream.into_split();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break, // dropping `tx` half-closes the remote side
                Ok(n) => {
                    if tx.send(data(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let reset = loop {
        match inbound.message().await {
            Ok(Some(ConnectServer { msg: Some(connect_server::Msg::Data(d)) })) => {
                if wr.write_all(&d).await.is_err() {
                    break false;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = wr.shutdown().await;
                break false;
            }
            Err(s) => {
                tracing::debug!("relayed connection ended: {}", s.message());
                break true;
            }
        }
    };
    if reset {
        // The remote side was reset: reset the program's connection too (SO_LINGER 0 + close).
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        let fd = wr.as_ref().as_raw_fd();
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        up.abort();
    } else {
        let _ = up.await;
    }
    drop(wr);
    release(&mut REGISTRY.lock().unwrap(), inode);
}

/// Moves datagrams between a daemon stand-in socket (and, for unconnected sockets, the queue
/// of emulated sends) and a relayed UDP stream; ends when idle.
async fn pump_udp(
    sock: tokio::net::UdpSocket,
    tx: mpsc::Sender<ConnectClient>,
    mut inbound: tonic::Streaming<ConnectServer>,
    mut sends: Option<mpsc::Receiver<Vec<u8>>>,
    stand_in: SocketAddr,
    inode: u64,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            r = sock.recv(&mut buf) => match r {
                Ok(n) => { if tx.send(data(buf[..n].to_vec())).await.is_err() { break; } }
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {} // the program's socket is gone for now
                Err(_) => break,
            },
            d = async { match sends.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => match d {
                Some(d) => { if tx.send(data(d)).await.is_err() { break; } }
                None => break,
            },
            m = inbound.message() => match m {
                Ok(Some(ConnectServer { msg: Some(connect_server::Msg::Data(d)) })) => { let _ = sock.send(&d).await; }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
            _ = tokio::time::sleep(UDP_IDLE) => break,
        }
    }
    drop(sends);
    let mut r = REGISTRY.lock().unwrap();
    r.stand_ins.remove(&stand_in);
    r.flows.retain(|_, f| !f.is_closed());
    release(&mut r, inode);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_encode_for_the_sockets_family() {
        let a: SocketAddr = "198.18.0.53:53".parse().unwrap();
        assert_eq!(decode(&encode(a, libc::AF_INET)), Some(a));
        let mapped = encode(a, libc::AF_INET6);
        assert_eq!(mapped.len(), 28);
        assert_eq!(decode(&mapped), Some(a));
        let b: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(decode(&encode(b, libc::AF_INET6)), Some(b));
        assert_eq!(decode(&[0u8; 4]), None);
    }

    #[test]
    fn names_are_cut_to_the_room_the_program_gave() {
        let tid = unsafe { libc::gettid() } as u32;
        let mut buf = [0u8; 8];
        let mut len: u32 = 8;
        let raw = encode("198.18.0.10:80".parse().unwrap(), libc::AF_INET);
        write_name(tid, buf.as_mut_ptr() as u64, (&mut len as *mut u32) as u64, &raw).unwrap();
        assert_eq!((&buf[..], len), (&raw[..8], 16));
    }

    #[test]
    fn socket_inodes_come_from_proc() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tid = unsafe { libc::gettid() } as u32;
        assert_eq!(socket_inode(tid, s.as_raw_fd()), fstat_inode(s.as_raw_fd()));
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(socket_inode(tid, f.as_raw_fd()), None);
    }

    #[test]
    fn gather_reads_every_buffer() {
        let tid = unsafe { libc::gettid() } as u32;
        let (a, b) = (b"hel".to_vec(), b"lo".to_vec());
        let iov: [u64; 4] = [a.as_ptr() as u64, 3, b.as_ptr() as u64, 2];
        assert_eq!(gather(tid, iov.as_ptr() as u64, 2, 100).unwrap(), b"hello");
        assert_eq!(gather(tid, iov.as_ptr() as u64, 2, 4).unwrap(), b"hell");
    }
}

//! Incoming traffic: subscriptions to the target's TCP ports, in `steal` or `mirror` mode.
//!
//! - **steal**: a TPROXY rule in the target's network namespace ([`crate::nft`]) gives new
//!   connections for the port to one of the agent's transparent listeners there (IPv4 and
//!   IPv6); the accepted socket's own address is the original destination. Without an HTTP filter the accepted
//!   socket itself goes to the subscriber (the daemon gives it to the program: no relay). With a
//!   filter, the agent relays the connection request by request ([`crate::incoming_http`];
//!   HTTP/2 with prior knowledge stream by stream, [`crate::incoming_h2`]): matching requests go
//!   to the subscriber over a stream pair, the rest to the real target port over a connection
//!   that bypasses the redirect.
//! - **mirror**: no rule at all. A packet socket in the namespace sees the port's traffic and
//!   the agent rebuilds each new connection's client bytes ([`crate::incoming_mirror`]); the
//!   target's traffic never passes through the agent, so a slow or dead subscriber (or agent)
//!   cannot stall it.
//!
//! A subscription lives exactly as long as the fd-socket connection that asked for it (see
//! `tether_protocol::fdpass`): when the daemon closes it, or the agent dies, the port is released.
//! One subscriber at a time may steal a port; any number may mirror it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tether_protocol::fdpass::{
    ConnectionKind, FdReply, HttpFilter, IncomingEvent, IncomingMode, IncomingStats, send_line, try_send_line,
};
use tokio::net::TcpStream;

use crate::incoming_http::Filter;
use crate::netns::NetnsThread;
use crate::nft;

/// How many connections may wait for a slow subscriber before new ones are refused.
const QUEUE: usize = 1024;

/// Counters of one subscription.
#[derive(Default)]
pub struct SubStats {
    pub connections: AtomicU64,
    pub passed_through: AtomicU64,
    pub requests_matched: AtomicU64,
    pub requests_passed: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dropped: AtomicU64,
}

impl SubStats {
    pub fn snapshot(&self) -> IncomingStats {
        IncomingStats {
            connections: self.connections.load(Relaxed),
            passed_through: self.passed_through.load(Relaxed),
            requests_matched: self.requests_matched.load(Relaxed),
            requests_passed: self.requests_passed.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

pub enum Event {
    Conn {
        kind: ConnectionKind,
        peer: SocketAddr,
        local: SocketAddr,
        fd: OwnedFd,
    },
    /// The subscriber closed its connection.
    Closed,
}

/// One subscription.
pub struct Sub {
    pub id: u64,
    pub port: u16,
    pub mode: IncomingMode,
    pub filter: Option<Arc<Filter>>,
    pub stats: SubStats,
    tx: mpsc::SyncSender<Event>,
    active: AtomicBool,
    /// The subscriber's connection once the subscription is confirmed (fd-socket form only):
    /// stolen sockets are sent on it straight from the accept task, without a hand-off to the
    /// subscription's thread. The lock keeps lines whole between the two senders.
    direct: Mutex<Option<UnixStream>>,
}

impl Sub {
    /// Hands a connection to the subscriber; `false` when it is gone or too far behind (the
    /// descriptor is then closed).
    pub fn deliver(&self, kind: ConnectionKind, peer: SocketAddr, local: SocketAddr, fd: OwnedFd) -> bool {
        if !self.active() {
            return false;
        }
        match self.tx.try_send(Event::Conn { kind, peer, local, fd }) {
            Ok(()) => {
                SubStats::add(&self.stats.connections, 1);
                true
            }
            Err(_) => {
                SubStats::add(&self.stats.dropped, 1);
                false
            }
        }
    }

    pub fn active(&self) -> bool {
        self.active.load(Relaxed)
    }

    /// Sends a connection on the subscriber's connection right away (never blocking); gives the
    /// descriptor back when that is not possible now (no direct connection yet, or a full
    /// buffer), so that it goes through [`Sub::deliver`] instead.
    fn send_now(
        &self,
        id: u64,
        kind: ConnectionKind,
        peer: SocketAddr,
        local: SocketAddr,
        fd: OwnedFd,
    ) -> Result<(), OwnedFd> {
        if !self.active() {
            return Err(fd);
        }
        // Never wait here (a tokio worker): the subscription's thread may be sending.
        let Ok(direct) = self.direct.try_lock() else {
            return Err(fd);
        };
        let Some(conn) = direct.as_ref() else {
            return Err(fd);
        };
        let ev = IncomingEvent::Connection { id, kind, peer: peer.to_string(), local: local.to_string() };
        let Ok(line) = serde_json::to_string(&ev) else {
            return Err(fd);
        };
        match try_send_line(conn, &line, Some(fd.as_raw_fd())) {
            Ok(()) => {
                SubStats::add(&self.stats.connections, 1);
                tracing::debug!(id, ?kind, %peer, %local, "incoming connection handed over");
                Ok(())
            }
            Err(_) => Err(fd),
        }
    }
}

#[derive(Default)]
struct State {
    next_sub: u64,
    steal: HashMap<u16, Arc<Sub>>,
    mirror: HashMap<u64, Arc<Sub>>,
    table: Option<nft::Table>,
    /// The redirect listeners' ports (IPv4, IPv6; 0 when there is none).
    listeners: Option<(u16, u16)>,
}

/// The agent's incoming-traffic state.
pub struct Incoming {
    pub netns: NetnsThread,
    /// The target's network namespace, for `nft`.
    nft_ns: OwnedFd,
    rt: tokio::runtime::Handle,
    state: Mutex<State>,
    next_conn: AtomicU64,
}

impl Incoming {
    pub fn new(netns: NetnsThread, nft_ns: OwnedFd, rt: tokio::runtime::Handle) -> Arc<Incoming> {
        Arc::new(Incoming { netns, nft_ns, rt, state: Mutex::default(), next_conn: AtomicU64::new(1) })
    }

    /// Serves one subscription on `conn` (an authenticated fd-socket connection) until either
    /// side closes it. Call from a plain thread.
    pub fn serve(
        self: &Arc<Self>,
        conn: &UnixStream,
        port: u16,
        mode: IncomingMode,
        http_filter: Option<HttpFilter>,
    ) -> io::Result<()> {
        let filter = match http_filter.filter(|f| !f.is_empty()) {
            Some(f) if mode == IncomingMode::Steal => match Filter::new(&f) {
                Ok(f) => Some(Arc::new(f)),
                Err(e) => return reply(conn, libc::EINVAL, &e),
            },
            Some(_) => {
                tracing::info!(port, "an http_filter only applies to steal; mirroring every connection");
                None
            }
            None => None,
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let sub = match self.subscribe(port, mode, filter, tx.clone()) {
            Ok(sub) => sub,
            Err(e) => {
                let errno = match (e.raw_os_error(), e.kind()) {
                    (Some(n), _) => n,
                    (None, io::ErrorKind::AddrInUse) => libc::EADDRINUSE,
                    (None, io::ErrorKind::NotFound) => libc::ENOENT,
                    _ => libc::EIO,
                };
                tracing::warn!(port, ?mode, err = %e, "subscription refused");
                return reply(conn, errno, &e.to_string());
            }
        };
        let result = self.stream_events(conn, &sub, tx, rx);
        self.unsubscribe(&sub);
        let _ = conn.shutdown(std::net::Shutdown::Both);
        result
    }

    /// A subscription whose events arrive on the returned channel (the gRPC form); end it
    /// with [`Incoming::end`].
    pub fn subscribe_channel(
        self: &Arc<Self>,
        port: u16,
        mode: IncomingMode,
        http_filter: Option<HttpFilter>,
    ) -> io::Result<(Arc<Sub>, mpsc::Receiver<Event>)> {
        let filter = match http_filter.filter(|f| !f.is_empty()) {
            Some(f) if mode == IncomingMode::Steal => {
                Some(Arc::new(Filter::new(&f).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?))
            }
            _ => None,
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        Ok((self.subscribe(port, mode, filter, tx)?, rx))
    }

    pub fn end(&self, sub: &Arc<Sub>) {
        self.unsubscribe(sub);
    }

    /// A new connection id, unique within the agent.
    pub fn next_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Relaxed)
    }

    fn stream_events(
        &self,
        conn: &UnixStream,
        sub: &Arc<Sub>,
        tx: mpsc::SyncSender<Event>,
        rx: mpsc::Receiver<Event>,
    ) -> io::Result<()> {
        reply(conn, 0, "")?;
        *sub.direct.lock().unwrap() = Some(conn.try_clone()?);
        // The subscriber sends nothing more: end-of-file (or anything unexpected) unsubscribes.
        let reader = conn.try_clone()?;
        std::thread::Builder::new().name("incoming-eof".into()).spawn(move || {
            let mut buf = [0u8; 256];
            loop {
                match read_some(&reader, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = tx.send(Event::Closed);
        })?;
        let mut sent = IncomingStats::default();
        let mut last_stats = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(Event::Conn { kind, peer, local, fd }) => {
                    let id = self.next_id();
                    let ev = IncomingEvent::Connection { id, kind, peer: peer.to_string(), local: local.to_string() };
                    let line = serde_json::to_string(&ev).map_err(io::Error::other)?;
                    let _one = sub.direct.lock().unwrap();
                    send_line(conn, &line, Some(fd.as_raw_fd()))?;
                    tracing::debug!(id, ?kind, %peer, %local, "incoming connection handed over");
                }
                Ok(Event::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if last_stats.elapsed() >= Duration::from_secs(1) {
                last_stats = Instant::now();
                let now = sub.stats.snapshot();
                if now != sent {
                    let line = serde_json::to_string(&IncomingEvent::Stats(now.clone())).map_err(io::Error::other)?;
                    let _one = sub.direct.lock().unwrap();
                    send_line(conn, &line, None)?;
                    sent = now;
                }
            }
        }
    }

    /// Registers a subscription and starts taking the port's traffic.
    fn subscribe(
        self: &Arc<Self>,
        port: u16,
        mode: IncomingMode,
        filter: Option<Arc<Filter>>,
        tx: mpsc::SyncSender<Event>,
    ) -> io::Result<Arc<Sub>> {
        if port == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut st = self.state.lock().unwrap();
        st.next_sub += 1;
        let sub = Arc::new(Sub {
            id: st.next_sub,
            port,
            mode,
            filter,
            stats: SubStats::default(),
            tx,
            active: AtomicBool::new(true),
            direct: Mutex::new(None),
        });
        match mode {
            IncomingMode::Steal => {
                if st.steal.contains_key(&port) {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("port {port} of the target is already stolen by another session"),
                    ));
                }
                let (v4, v6) = match st.listeners {
                    Some(ports) => ports,
                    None => {
                        let ports = self.start_listeners()?;
                        st.listeners = Some(ports);
                        ports
                    }
                };
                if st.table.is_none() {
                    st.table = Some(nft::Table::create(&self.nft_ns, v4, v6)?);
                }
                // Registered before the rule exists, so the first redirected connection finds it.
                st.steal.insert(port, sub.clone());
                if let Err(e) = st.table.as_mut().expect("created above").add_port(port) {
                    st.steal.remove(&port);
                    return Err(e);
                }
                tracing::info!(port, filtered = sub.filter.is_some(), "stealing the target's port");
            }
            IncomingMode::Mirror => {
                crate::incoming_mirror::start(&self.netns, sub.clone())?;
                st.mirror.insert(sub.id, sub.clone());
                tracing::info!(port, "mirroring the target's port");
            }
        }
        Ok(sub)
    }

    fn unsubscribe(&self, sub: &Arc<Sub>) {
        sub.active.store(false, Relaxed);
        sub.direct.lock().unwrap().take();
        let mut st = self.state.lock().unwrap();
        match sub.mode {
            IncomingMode::Steal => {
                if st.steal.get(&sub.port).is_some_and(|s| s.id == sub.id) {
                    st.steal.remove(&sub.port);
                    if let Some(t) = st.table.as_mut()
                        && let Err(e) = t.remove_port(sub.port)
                    {
                        tracing::warn!(port = sub.port, err = %e, "could not remove the redirect");
                    }
                }
                if st.steal.is_empty() {
                    st.table = None; // nothing stolen any more: no rule of ours stays behind
                }
            }
            IncomingMode::Mirror => {
                st.mirror.remove(&sub.id);
            }
        }
        tracing::info!(port = sub.port, mode = ?sub.mode, "subscription ended");
    }

    /// Listens inside the target's namespace for redirected connections (IPv4 always, IPv6 when
    /// the namespace has it) and starts accepting. Returns the two ports (0: none).
    fn start_listeners(self: &Arc<Self>) -> io::Result<(u16, u16)> {
        let v4 = self.netns.run_blocking(|| redirect_listener(false))??;
        let v6 = self.netns.run_blocking(|| redirect_listener(true))?.ok();
        let mut ports = (0, 0);
        let _enter = self.rt.enter();
        for (l, is_v6) in [(Some(v4), false), (v6, true)] {
            let Some(l) = l else { continue };
            let port = l.local_addr()?.port();
            if is_v6 {
                ports.1 = port
            } else {
                ports.0 = port
            }
            l.set_nonblocking(true)?;
            // SAFETY: a std listener owns its descriptor for as long as it lives.
            let l = unsafe { tokio::io::unix::AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }?;
            let me = self.clone();
            self.rt.spawn(async move { me.accept_loop(l).await });
        }
        Ok(ports)
    }

    async fn accept_loop(self: Arc<Self>, l: tokio::io::unix::AsyncFd<std::net::TcpListener>) {
        let own_port = l.get_ref().local_addr().map(|a| a.port()).unwrap_or(0);
        loop {
            // Accepted without tokio: a socket handed over is never registered with the runtime
            // (that was an `epoll_ctl` to add it and one to remove it again).
            let accepted = match l.readable().await {
                Ok(mut ready) => match ready.try_io(|l| accept_raw(l.get_ref())) {
                    Ok(accepted) => accepted,
                    Err(_would_block) => continue,
                },
                Err(e) => Err(e),
            };
            match accepted {
                Ok((s, peer)) => {
                    // A plain steal is handed over right here (no task, no thread hand-off);
                    // only filtered and passed-on connections need a task of their own.
                    let Some(s) = self.hand_over_now(s, unmap(peer), own_port) else {
                        continue;
                    };
                    match TcpStream::from_std(s) {
                        Ok(s) => {
                            let me = self.clone();
                            tokio::spawn(async move { me.redirected(s, unmap(peer), own_port).await });
                        }
                        Err(e) => tracing::warn!(err = %e, "cannot relay a redirected connection"),
                    }
                }
                Err(e) => {
                    tracing::warn!(err = %e, "accepting a redirected connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Sends a redirected connection of an unfiltered steal to its subscriber at once; gives
    /// the connection back when it needs [`Incoming::redirected`].
    fn hand_over_now(&self, s: std::net::TcpStream, peer: SocketAddr, own_port: u16) -> Option<std::net::TcpStream> {
        let orig = match s.local_addr() {
            Ok(a) if a.port() != own_port => unmap(a),
            _ => return Some(s),
        };
        let sub = self.state.lock().unwrap().steal.get(&orig.port()).cloned();
        let sub = match sub {
            Some(sub) if sub.filter.is_none() => sub,
            _ => return Some(s),
        };
        let _ = s.set_nodelay(true);
        let fd = match sub.send_now(self.next_id(), ConnectionKind::Socket, peer, orig, s.into()) {
            Ok(()) => return None,
            Err(fd) => fd,
        };
        if !sub.deliver(ConnectionKind::Socket, peer, orig, fd) {
            tracing::warn!(port = orig.port(), "the subscriber is not taking connections; one closed");
        }
        None
    }

    /// One redirected connection: hand it over, relay it through the filter, or pass it on.
    async fn redirected(self: Arc<Self>, s: TcpStream, peer: SocketAddr, own_port: u16) {
        // TPROXY keeps the original destination as the socket's own address.
        let orig = match s.local_addr() {
            Ok(a) if a.port() != own_port => unmap(a),
            _ => {
                tracing::debug!(%peer, "a connection to the agent's listener itself; closed");
                return;
            }
        };
        let _ = s.set_nodelay(true);
        let sub = self.state.lock().unwrap().steal.get(&orig.port()).cloned();
        match sub {
            Some(sub) if sub.filter.is_some() => crate::incoming_http::relay(self.clone(), sub, s, peer, orig).await,
            Some(sub) => match s.into_std() {
                Ok(std) => {
                    if !sub.deliver(ConnectionKind::Socket, peer, orig, std.into()) {
                        tracing::warn!(port = orig.port(), "the subscriber is not taking connections; one closed");
                    }
                }
                Err(e) => tracing::warn!(err = %e, "cannot hand over a redirected connection"),
            },
            None => {
                // The subscription ended after the redirect: the connection goes where it was going.
                passthrough(&self.netns, s, orig).await;
            }
        }
    }
}

/// One connection from a listener's queue, non-blocking (`WouldBlock` when there is none).
fn accept_raw(l: &std::net::TcpListener) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    let (s, peer) = unsafe {
        socket2::SockAddr::try_init(|addr, len| {
            let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
            match libc::accept4(l.as_raw_fd(), addr.cast(), len, flags) {
                fd if fd < 0 => Err(io::Error::last_os_error()),
                fd => Ok(std::net::TcpStream::from_raw_fd(fd)),
            }
        })
    }?;
    let peer = peer.as_socket().ok_or_else(|| io::Error::other("an accepted connection without an IP peer"))?;
    Ok((s, peer))
}

/// Reads from a Unix stream without tokio (a plain thread). Waits in `poll` for input first: a
/// thread blocked in `read` is also woken each time the peer drains what we sent (the socket's
/// one wait queue serves both directions), which is once per connection handed over.
fn read_some(s: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    let mut pfd = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    while unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    (&*s).read(buf)
}

fn reply(conn: &UnixStream, errno: i32, message: &str) -> io::Result<()> {
    let r = FdReply { errno, has_fd: false, message: message.to_string() };
    send_line(conn, &serde_json::to_string(&r).map_err(io::Error::other)?, None)
}

/// A listener for redirected connections, made on the namespace thread.
fn redirect_listener(v6: bool) -> io::Result<std::net::TcpListener> {
    let (domain, addr): (Domain, SocketAddr) =
        if v6 { (Domain::IPV6, "[::]:0".parse().unwrap()) } else { (Domain::IPV4, "0.0.0.0:0".parse().unwrap()) };
    let s = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None)?;
    if v6 {
        s.set_only_v6(true)?;
        s.set_ip_transparent_v6(true)?;
    } else {
        s.set_ip_transparent_v4(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// `::ffff:a.b.c.d` as `a.b.c.d`.
pub fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// A TCP connection from the target's namespace to `addr` that skips the redirect.
pub async fn connect_bypass(netns: &NetnsThread, addr: SocketAddr) -> io::Result<TcpStream> {
    let (fd, errno) = netns
        .run_async(move || -> io::Result<(OwnedFd, i32)> {
            let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
            let s = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None)?;
            s.set_mark(nft::BYPASS_MARK)?;
            s.set_tcp_nodelay(true)?;
            let errno = match s.connect(&addr.into()) {
                Ok(()) => 0,
                Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
            };
            Ok((s.into(), errno))
        })
        .await??;
    if errno != 0 && errno != libc::EINPROGRESS {
        return Err(io::Error::from_raw_os_error(errno));
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(fd))?;
    tokio::time::timeout(Duration::from_secs(10), stream.writable())
        .await
        .map_err(|_| io::Error::from_raw_os_error(libc::ETIMEDOUT))??;
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    stream.peer_addr()?;
    Ok(stream)
}

/// Sends a redirected connection on to where it was going, byte for byte.
pub async fn passthrough(netns: &NetnsThread, mut client: TcpStream, orig: SocketAddr) {
    match connect_bypass(netns, orig).await {
        Ok(mut upstream) => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Err(e) => tracing::debug!(%orig, err = %e, "passing a connection on failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_shown_as_ipv4() {
        assert_eq!(unmap("[::ffff:198.19.0.1]:5000".parse().unwrap()), "198.19.0.1:5000".parse().unwrap());
        assert_eq!(unmap("[2001:db8::1]:80".parse().unwrap()), "[2001:db8::1]:80".parse().unwrap());
        assert_eq!(unmap("127.0.0.1:1".parse().unwrap()), "127.0.0.1:1".parse().unwrap());
    }
}

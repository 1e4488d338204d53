//! Incoming traffic: the program's listeners get the target's connections (`steal`) or copies of
//! them (`mirror`), with the real client as the peer.
//!
//! **Listening subscribes.** `listen` is trapped and done here on the program's own socket (a
//! `pidfd_getfd` duplicate shares the open file description), so the port is known even when
//! the program listened without binding. Every TCP listener of the program's network namespace
//! subscribes, whatever address it is bound to: servers often bind `127.0.0.1` during
//! development, and that is the local port the traffic should reach. The target port is the
//! listening port after `port_mapping` (`[local, remote]`); `ignore_ports` names target ports
//! that are never subscribed. The call is answered after the agent confirmed the subscription,
//! so once `listen` returns, stealing is in force. A failed subscription leaves a plain local
//! listener and an error in the session's status.
//!
//! **A busy local port.** `bind` is trapped for TCP sockets whose port would subscribe: the
//! daemon binds the program's socket itself; on `EADDRINUSE` it binds the same address with port
//! 0 instead and remembers the requested port, which then selects the target port (and is what
//! `getsockname` shows). Other errors (`EACCES` for a privileged port, ...) let the kernel run
//! the program's own call, with its own credentials.
//!
//! **Delivering a connection.** The agent sends each connection on the subscription's stream
//! (`tether_protocol::fdpass`). The daemon opens a *dummy* loopback connection to the program's
//! listener from an address it chose before connecting, so the listener becomes readable
//! (`poll`, `epoll`, blocking `accept`: all wake up as usual). `accept`/`accept4` on a subscribed
//! listener is always emulated (never continued, so a dummy can never reach the program): the
//! daemon accepts from the queue on its duplicate of the listener; a dummy is swapped for the
//! delivery, anything else is a local client and is given as it is. A stolen socket is injected
//! itself (`SECCOMP_ADDFD_FLAG_SEND`), so the program talks to the client directly, no relay,
//! and `getpeername`/`getsockname` are the client's and the target's addresses by nature;
//! for a filtered or mirrored connection the accepted dummy is injected and the daemon pumps the
//! agent's stream into it (answers go back for filtered steal, and are discarded for mirror).
//! A stolen socket skips the dummy when a blocking `accept` of the program already waits in the
//! daemon on that listener (`Listen::waiters`): the socket is that call's result at once, from
//! the thread that received it; the dummy only matters for `epoll`/`poll`/`select` waiters and
//! for `accept` calls that come later. When no call waits but the program's recent `accept`
//! calls did wait (a blocking accept loop, between two calls), the socket is kept for up to
//! 1 ms for the next `accept` (`Waiters::ready`), and only then goes the dummy route: a
//! program that polls after all sees the connection 1 ms late.
//! `SOCK_NONBLOCK`/`SOCK_CLOEXEC` are honoured, the real peer is written to `addr`/`addrlen`
//! (after re-checking the notification), and `getpeername`/`getsockname` on the pumped sockets
//! are answered with the client's and the target's addresses.
//!
//! A blocking `accept` with nothing queued waits in the daemon, never on the supervisor thread:
//! it joins the listener's waiters, and one watcher thread per listener (running while calls
//! wait, ended after a period without any) polls the listener for the dummies and local
//! clients that come for them. The trapped thread cannot take signals while it waits
//! (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`), so every 100 ms the watcher looks for a pending,
//! unblocked signal and then answers `-ERESTARTSYS`: the kernel runs the handler and restarts or
//! fails the call (`EINTR`) exactly as it would have (Ctrl-C in a Python server works).
//! A dummy for a stolen socket is closed with a reset once swapped (no `TIME_WAIT` left behind).
//!
//! **Stopping.** The daemon keeps no descriptor of a listener (but the watcher's, while calls
//! wait on it and for at most a period after the last one; when the waiting thread exits, which
//! the watcher sees on its pidfd, the watcher lets go at once, so a program killed in `accept`
//! and started again finds its port free). A monitor thread (while any
//! listener is registered) asks `sock_diag` for the namespace's listening sockets (or reads
//! `/proc/self/net/tcp{,6}`) every 250 ms; a listener whose socket inode is gone (closed by the
//! program, or the program exited) is retired, and when a target port has no listener left its
//! subscription connection is closed, which makes the agent drop the redirect. Connections
//! delivered already live on: they belong to the program. Trapping `close` would be exact but
//! makes every `close` of the program cost a round trip; the monitor costs one small query per
//! period instead.
//!
//! The program must live in the daemon's network namespace (the dummy connections are made
//! from here); otherwise incoming traffic is refused with an error in the session's status.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_config::{IncomingConfig, IncomingMode};
use tether_protocol::fdpass::{self, ConnectionKind, IncomingEvent, IncomingStats};

use super::notify::Slot;
use super::{Answer, Call, memory, proc};

/// Kernel-internal "restart the call if the handler allows" (`include/linux/errno.h`).
const ERESTARTSYS: i32 = 512;
const SIOCGSKNS: libc::c_ulong = 0x894C;
/// Deliveries waiting for the program's `accept`, per session.
const MAX_PENDING: usize = 1024;
/// Sockets whose addresses are rewritten, remembered at most.
const MAX_FACADE: usize = 16 * 1024;
const MONITOR_PERIOD: Duration = Duration::from_millis(250);
/// How often waiting `accept` calls are checked for a pending signal.
const SIGNAL_PERIOD: Duration = Duration::from_millis(100);
/// How long a stolen socket waits for the next blocking `accept` before a dummy wakes the
/// listener ([`Waiters::ready`]).
const READY_GRACE: Duration = Duration::from_millis(1);

/// What the session status shows about incoming traffic.
#[derive(Clone, Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct IncomingSnapshot {
    /// Target ports subscribed now.
    pub ports: Vec<u16>,
    /// Connections given to the program: stolen sockets, filtered streams, mirrored copies.
    pub stolen: u64,
    pub filtered: u64,
    pub mirrored: u64,
    /// The agent's accounting, summed over this session's subscriptions.
    pub agent: IncomingStats,
}

/// A listener of the program that receives a target port's traffic.
struct Listen {
    inode: u64,
    /// Where dummy connections go: the listener's address (loopback for a wildcard).
    connect_to: SocketAddr,
    /// The listener's family is IPv6 (addresses written for it are `sockaddr_in6`).
    v6: bool,
    remote: u16,
    /// Serialises "poll, then accept" on the listener, so the daemon never blocks in `accept`.
    accepting: Mutex<()>,
    /// The program's blocking `accept` calls on this listener that wait in the daemon.
    waiters: Mutex<Waiters>,
    /// An eventfd that wakes a parked watcher ([`Waiters::parked`]).
    wake: OwnedFd,
    /// A timerfd the watcher polls, armed while [`Waiters::ready`] holds a socket.
    timer: OwnedFd,
}

impl Listen {
    fn wake_watcher(&self) {
        let one: u64 = 1;
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// The oldest socket of `ws.ready` (`ws` is this listener's, locked).
    fn take_ready(&self, ws: &mut Waiters) -> Option<Ready> {
        let r = ws.ready.pop_front()?;
        if ws.ready.is_empty() {
            self.set_timer(None); // spares the watcher a wake-up
        }
        Some(r)
    }

    /// Makes the timer expire in `after` (at once for zero), or never (`None`).
    fn set_timer(&self, after: Option<Duration>) {
        let mut spec: libc::itimerspec = unsafe { std::mem::zeroed() };
        if let Some(d) = after {
            let d = d.max(Duration::from_nanos(1));
            spec.it_value.tv_sec = d.as_secs() as libc::time_t;
            spec.it_value.tv_nsec = d.subsec_nanos() as libc::c_long;
        }
        unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }
}

/// The blocking `accept` calls waiting in the daemon on one listener, and its watcher.
#[derive(Default)]
struct Waiters {
    /// Oldest first: a stolen socket goes straight to the first (no dummy, no wake-up between).
    queue: VecDeque<Waiter>,
    /// The watcher thread runs ([`watch`]); it holds a duplicate of the listener meanwhile.
    watching: bool,
    /// A call started waiting since the watcher's last round of signal checks.
    arrived: bool,
    /// The watcher waits for `Listen::wake`, not for the listener (readable, but no call waits).
    parked: bool,
    /// Stolen sockets that came while no call waited but the watcher runs (the program's
    /// `accept` calls are blocking ones): the next `accept` takes them without a dummy. One
    /// not taken within [`READY_GRACE`] goes the dummy route (the program may `poll` after all).
    ready: VecDeque<Ready>,
}

struct Ready {
    sock: OwnedFd,
    peer: SocketAddr,
    local: SocketAddr,
    until: Instant,
}

/// A blocking `accept` waiting in the daemon.
struct Waiter {
    call: Call,
    flags: i32,
    /// A pidfd of the waiting thread: readable once it exited, so the watcher lets go of the
    /// listener at once when the program dies in `accept` (its port is free for a restart).
    exited: Option<Arc<OwnedFd>>,
}

/// A connection delivered to a listener, waiting for the program's `accept`.
struct Pending {
    peer: SocketAddr,
    local: SocketAddr,
    /// The stolen socket (kind `socket`); `None` when the accepted dummy itself is given
    /// (filtered and mirrored connections, pumped by the daemon).
    socket: Option<OwnedFd>,
    /// The dummy's client end, kept until the swap (stolen sockets only).
    _dummy: Option<std::net::TcpStream>,
    mode: ConnectionKind,
}

/// One target port's subscription.
struct Subscription {
    id: u64,
    remote: u16,
    conn: UnixStream,
    /// Listener inodes, newest last (new connections go to the newest).
    listeners: Mutex<Vec<u64>>,
    stats: Mutex<IncomingStats>,
}

#[derive(Default)]
struct Facade {
    /// Socket inode -> (peer, local) to show.
    map: HashMap<u64, (Option<SocketAddr>, Option<SocketAddr>)>,
    order: VecDeque<u64>,
}

impl Facade {
    fn insert(&mut self, inode: u64, peer: Option<SocketAddr>, local: Option<SocketAddr>) {
        if self.map.insert(inode, (peer, local)).is_none() {
            self.order.push_back(inode);
            if self.order.len() > MAX_FACADE
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    listeners: HashMap<u64, Arc<Listen>>,
    subs: HashMap<u16, Arc<Subscription>>,
    /// Listener inode -> the port the program asked for (bound elsewhere because it was busy).
    rebound: HashMap<u64, u16>,
    monitor: bool,
    next_sub: u64,
}

/// A session's incoming-traffic state (one per [`super::Scope`]).
pub struct Incoming {
    config: IncomingConfig,
    own_netns: u64,
    inner: Mutex<Inner>,
    pending: Mutex<HashMap<SocketAddr, Pending>>,
    facade: Mutex<Facade>,
    any_listener: AtomicBool,
    any_facade: AtomicBool,
    stolen: AtomicU64,
    filtered: AtomicU64,
    mirrored: AtomicU64,
}

impl Incoming {
    pub fn new(config: IncomingConfig) -> Incoming {
        let own_netns =
            std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap_or(0);
        Incoming {
            config,
            own_netns,
            inner: Mutex::default(),
            pending: Mutex::default(),
            facade: Mutex::default(),
            any_listener: AtomicBool::new(false),
            any_facade: AtomicBool::new(false),
            stolen: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            mirrored: AtomicU64::new(0),
        }
    }

    /// For the session's status (`session.rs` counts its connections and bytes).
    pub fn snapshot(&self) -> IncomingSnapshot {
        let inner = self.inner.lock().unwrap();
        let mut ports: Vec<u16> = inner.subs.keys().copied().collect();
        ports.sort_unstable();
        let mut agent = IncomingStats::default();
        for s in inner.subs.values() {
            let st = s.stats.lock().unwrap();
            agent.connections += st.connections;
            agent.passed_through += st.passed_through;
            agent.requests_matched += st.requests_matched;
            agent.requests_passed += st.requests_passed;
            agent.bytes_in += st.bytes_in;
            agent.bytes_out += st.bytes_out;
            agent.dropped += st.dropped;
        }
        IncomingSnapshot {
            ports,
            stolen: self.stolen.load(Relaxed),
            filtered: self.filtered.load(Relaxed),
            mirrored: self.mirrored.load(Relaxed),
            agent,
        }
    }

    fn active(&self) -> bool {
        self.config.mode != IncomingMode::Off
    }

    /// The target port for a local port, or `None` when it is ignored.
    fn remote_port(&self, local: u16) -> Option<u16> {
        let remote = self.config.remote_port(local);
        (!self.config.ignore_ports.contains(&remote)).then_some(remote)
    }

    fn listener(&self, inode: u64) -> Option<Arc<Listen>> {
        self.inner.lock().unwrap().listeners.get(&inode).cloned()
    }

    fn add_facade(&self, inode: u64, peer: Option<SocketAddr>, local: Option<SocketAddr>) {
        self.facade.lock().unwrap().insert(inode, peer, local);
        self.any_facade.store(true, Relaxed);
    }

    /// Registers a listener and makes sure its target port is subscribed.
    fn register(self: &Arc<Self>, scope: &super::Scope, listen: Listen) -> io::Result<()> {
        let remote = listen.remote;
        let inode = listen.inode;
        let mut inner = self.inner.lock().unwrap();
        inner.listeners.insert(inode, Arc::new(listen));
        self.any_listener.store(true, Relaxed);
        if !inner.monitor {
            inner.monitor = true;
            let me = self.clone();
            std::thread::Builder::new().name("incoming-monitor".into()).spawn(move || me.monitor())?;
        }
        if let Some(sub) = inner.subs.get(&remote) {
            sub.listeners.lock().unwrap().push(inode);
            return Ok(());
        }
        drop(inner);
        let conn = match self.subscribe_now(scope, remote) {
            Ok(c) => c,
            Err(e) => {
                self.forget_listener(inode);
                return Err(e);
            }
        };
        let mut inner = self.inner.lock().unwrap();
        inner.next_sub += 1;
        let sub = Arc::new(Subscription {
            id: inner.next_sub,
            remote,
            conn: conn.try_clone()?,
            listeners: Mutex::new(vec![inode]),
            stats: Mutex::default(),
        });
        inner.subs.insert(remote, sub.clone());
        drop(inner);
        let (me, rt) = (self.clone(), scope.rt.clone());
        std::thread::Builder::new().name(format!("incoming-{remote}")).spawn(move || me.read_events(rt, sub, conn))?;
        Ok(())
    }

    /// Asks the agent; when the port is held by this session's previous listener that is gone
    /// already (a program that restarts its listener quickly), retires it and asks again.
    fn subscribe_now(&self, scope: &super::Scope, remote: u16) -> io::Result<UnixStream> {
        let mode = match self.config.mode {
            IncomingMode::Steal => fdpass::IncomingMode::Steal,
            _ => fdpass::IncomingMode::Mirror,
        };
        let f = &self.config.http_filter;
        let filter = (mode == fdpass::IncomingMode::Steal && (f.header.is_some() || f.path.is_some()))
            .then(|| fdpass::HttpFilter { header: f.header.clone(), path: f.path.clone() });
        match scope.agent.subscribe(remote, mode, filter.clone()) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                self.check_listeners();
                std::thread::sleep(Duration::from_millis(50));
                scope.agent.subscribe(remote, mode, filter)
            }
            other => other,
        }
    }

    fn forget_listener(&self, inode: u64) {
        let mut inner = self.inner.lock().unwrap();
        inner.listeners.remove(&inode);
        inner.rebound.remove(&inode);
        self.any_listener.store(!inner.listeners.is_empty(), Relaxed);
    }

    /// Receives the subscription's connections until the agent or the daemon closes it.
    fn read_events(self: Arc<Self>, rt: tokio::runtime::Handle, sub: Arc<Subscription>, conn: UnixStream) {
        loop {
            // Several lines may come at once; a descriptor belongs to the last one.
            let (lines, mut fd) = match fdpass::recv_lines(&conn) {
                Ok(x) => x,
                Err(_) => break,
            };
            let last = lines.len().saturating_sub(1);
            for (i, line) in lines.into_iter().enumerate() {
                let fd = if i == last { fd.take() } else { None };
                match serde_json::from_str::<IncomingEvent>(&line) {
                    Ok(IncomingEvent::Connection { kind, peer, local, .. }) => {
                        let (Some(fd), Ok(peer), Ok(local)) = (fd, peer.parse(), local.parse()) else {
                            tracing::warn!(line, "a malformed incoming connection from the agent");
                            continue;
                        };
                        self.deliver(&rt, &sub, kind, peer, local, fd);
                    }
                    Ok(IncomingEvent::Stats(s)) => *sub.stats.lock().unwrap() = s,
                    Err(e) => tracing::warn!(err = %e, line, "an unknown line on a subscription"),
                }
            }
        }
        tracing::info!(port = sub.remote, "subscription ended");
        let mut inner = self.inner.lock().unwrap();
        if inner.subs.get(&sub.remote).is_some_and(|s| s.id == sub.id) {
            inner.subs.remove(&sub.remote);
        }
    }

    /// Queues a connection for the newest listener of its port and wakes it with a dummy.
    fn deliver(
        &self,
        rt: &tokio::runtime::Handle,
        sub: &Subscription,
        kind: ConnectionKind,
        peer: SocketAddr,
        local: SocketAddr,
        fd: OwnedFd,
    ) {
        let listen = {
            let inner = self.inner.lock().unwrap();
            let inodes = sub.listeners.lock().unwrap();
            inodes.iter().rev().find_map(|i| inner.listeners.get(i).cloned())
        };
        let Some(listen) = listen else { return };
        let fd = if kind == ConnectionKind::Socket {
            match self.give_to_waiter(&listen, peer, local, fd) {
                Ok(()) => return,
                Err(fd) => fd,
            }
        } else {
            fd
        };
        if let Some((dummy, stream)) = self.wake_with_dummy(&listen, kind, peer, local, fd) {
            pump(rt, UnixStream::from(stream), dummy, kind == ConnectionKind::Mirror);
        }
    }

    /// Queues a connection behind a dummy connection to the listener (which makes it readable).
    /// For a filtered or mirrored connection, returns the dummy and the agent's stream, to pump.
    fn wake_with_dummy(
        &self,
        listen: &Listen,
        kind: ConnectionKind,
        peer: SocketAddr,
        local: SocketAddr,
        fd: OwnedFd,
    ) -> Option<(std::net::TcpStream, OwnedFd)> {
        if self.pending.lock().unwrap().len() >= MAX_PENDING {
            tracing::warn!(port = listen.remote, "the program is not accepting; a connection was closed");
            return None;
        }
        // The dummy's own address is chosen (bound) before it connects, so the pending entry
        // exists before the program can see the connection.
        let dummy = match dummy_socket(listen.connect_to) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(err = %e, "cannot make a loopback connection");
                return None;
            }
        };
        let key = unmap(dummy.local_addr().ok()?.as_socket()?);
        let (socket, stream) = if kind == ConnectionKind::Socket { (Some(fd), None) } else { (None, Some(fd)) };
        self.pending.lock().unwrap().insert(key, Pending { peer, local, socket, _dummy: None, mode: kind });
        if let Err(e) = connect_dummy(&dummy, listen.connect_to) {
            self.pending.lock().unwrap().remove(&key);
            tracing::warn!(to = %listen.connect_to, err = %e, "cannot reach the program's listener");
            return None;
        }
        match kind {
            ConnectionKind::Socket => {
                // Only a wake-up: closed with a reset, it leaves no TIME_WAIT socket behind.
                let _ = dummy.set_linger(Some(Duration::ZERO));
                self.stolen.fetch_add(1, Relaxed);
                if let Some(p) = self.pending.lock().unwrap().get_mut(&key) {
                    p._dummy = Some(dummy.into());
                }
                None
            }
            ConnectionKind::Stream => {
                self.filtered.fetch_add(1, Relaxed);
                Some((dummy.into(), stream?))
            }
            ConnectionKind::Mirror => {
                self.mirrored.fetch_add(1, Relaxed);
                Some((dummy.into(), stream?))
            }
        }
    }

    /// Retires listeners whose socket no longer listens; ends the monitor when none is left.
    fn monitor(self: Arc<Self>) {
        loop {
            std::thread::sleep(MONITOR_PERIOD);
            self.check_listeners();
            let mut inner = self.inner.lock().unwrap();
            if inner.listeners.is_empty() {
                inner.monitor = false;
                return;
            }
        }
    }

    fn check_listeners(&self) {
        let Some(live) = listening_inodes() else {
            return;
        };
        let gone: Vec<u64> = {
            let inner = self.inner.lock().unwrap();
            inner.listeners.keys().filter(|i| !live.contains(i)).copied().collect()
        };
        for inode in gone {
            self.retire(inode);
        }
    }

    /// The program stopped listening on `inode`: unsubscribe its port unless another listener
    /// of the session still takes it.
    fn retire(&self, inode: u64) {
        let mut inner = self.inner.lock().unwrap();
        let Some(listen) = inner.listeners.remove(&inode) else {
            return;
        };
        inner.rebound.remove(&inode);
        self.any_listener.store(!inner.listeners.is_empty(), Relaxed);
        let Some(sub) = inner.subs.get(&listen.remote).cloned() else {
            return;
        };
        let empty = {
            let mut l = sub.listeners.lock().unwrap();
            l.retain(|&i| i != inode);
            l.is_empty()
        };
        if empty {
            inner.subs.remove(&listen.remote);
            let _ = sub.conn.shutdown(std::net::Shutdown::Both);
            tracing::info!(port = listen.remote, "the program stopped listening; unsubscribed");
        }
    }

    /// A stolen socket given at once to a blocking `accept` waiting in the daemon, or kept for
    /// the next `accept` while the listener's calls are blocking ones ([`Waiters::ready`]); the
    /// socket comes back otherwise, for the dummy route.
    fn give_to_waiter(
        &self,
        listen: &Listen,
        peer: SocketAddr,
        local: SocketAddr,
        mut sock: OwnedFd,
    ) -> Result<(), OwnedFd> {
        loop {
            let w = {
                let mut ws = listen.waiters.lock().unwrap();
                match ws.queue.pop_front() {
                    Some(w) => w,
                    None if ws.watching && ws.ready.len() < MAX_PENDING => {
                        ws.ready.push_back(Ready { sock, peer, local, until: Instant::now() + READY_GRACE });
                        if ws.ready.len() == 1 {
                            listen.set_timer(Some(READY_GRACE));
                        }
                        return Ok(());
                    }
                    None => return Err(sock),
                }
            };
            match self.give_stolen(listen, &w.call, sock, peer, w.flags) {
                Ok(()) => return Ok(()),
                // That call is gone (or could not take it): the next one, or a dummy.
                Err(back) => sock = back,
            }
        }
    }

    /// Gives a stolen socket as the result of `call` (an `accept`); see [`Call::give`].
    fn give_stolen(
        &self,
        listen: &Listen,
        call: &Call,
        sock: OwnedFd,
        peer: SocketAddr,
        flags: i32,
    ) -> Result<(), OwnedFd> {
        // The agent's TCP socket: only its family is unknown.
        let domain = getsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN);
        let v6_family = listen.v6 || domain == Some(libc::AF_INET6);
        call.give(sock, peer, v6_family, flags)?;
        self.stolen.fetch_add(1, Relaxed);
        Ok(())
    }

    fn take_pending(&self, dummy: SocketAddr) -> Option<Pending> {
        self.pending.lock().unwrap().remove(&dummy)
    }
}

/// A non-blocking socket bound to the loopback of `to`'s family, not connected yet.
fn dummy_socket(to: SocketAddr) -> io::Result<socket2::Socket> {
    let (domain, from): (socket2::Domain, SocketAddr) = if to.is_ipv6() {
        (socket2::Domain::IPV6, SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0))
    } else {
        (socket2::Domain::IPV4, SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0))
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM.cloexec().nonblocking(), None)?;
    s.set_tcp_nodelay(true)?;
    // A dummy to a non-loopback address of this host goes from that address's side; binding to
    // loopback would make the kernel refuse to route it, so only pin loopback targets.
    if to.ip().is_loopback() {
        s.bind(&from.into())?;
    } else {
        s.bind(&SocketAddr::new(to.ip(), 0).into())?;
    }
    Ok(s)
}

/// Connects a [`dummy_socket`] to the program's listener, waiting up to 2 s (a full backlog).
fn connect_dummy(dummy: &socket2::Socket, to: SocketAddr) -> io::Result<()> {
    match dummy.connect(&to.into()) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let mut pfd = libc::pollfd { fd: dummy.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    match unsafe { libc::poll(&mut pfd, 1, 2000) } {
        0 => return Err(io::ErrorKind::TimedOut.into()),
        r if r < 0 => return Err(io::Error::last_os_error()),
        _ => {}
    }
    match dummy.take_error()? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Moves a filtered or mirrored connection between the agent's stream and the dummy.
fn pump(rt: &tokio::runtime::Handle, agent: UnixStream, dummy: std::net::TcpStream, mirror: bool) {
    rt.spawn(async move {
        use tokio::io::AsyncWriteExt;
        if agent.set_nonblocking(true).is_err() || dummy.set_nonblocking(true).is_err() {
            return;
        }
        let (Ok(agent), Ok(dummy)) = (tokio::net::UnixStream::from_std(agent), tokio::net::TcpStream::from_std(dummy))
        else {
            return;
        };
        let (mut ar, mut aw) = agent.into_split();
        let (mut dr, mut dw) = dummy.into_split();
        let up = async {
            let _ = tokio::io::copy(&mut ar, &mut dw).await;
            let _ = dw.shutdown().await;
        };
        let down = async {
            if mirror {
                // What the program answers a copy goes nowhere.
                let _ = tokio::io::copy(&mut dr, &mut tokio::io::sink()).await;
            } else {
                let _ = tokio::io::copy(&mut dr, &mut aw).await;
                let _ = aw.shutdown().await;
            }
        };
        tokio::join!(up, down);
    });
}

/// Inodes of the TCP sockets listening in this network namespace (`None` if unreadable).
fn listening_inodes() -> Option<std::collections::HashSet<u64>> {
    listening_inodes_diag().ok().or_else(listening_inodes_proc)
}

/// [`listening_inodes`] from `sock_diag`, asking for listeners only: the kernel then walks its
/// listening table alone. `/proc/net/tcp` walks every bucket of the host's established table
/// (hundreds of thousands), which cost the daemon more than all its steal work together.
fn listening_inodes_diag() -> io::Result<std::collections::HashSet<u64>> {
    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const TCP_LISTEN: u32 = 10;
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut out = std::collections::HashSet::new();
    let mut buf = vec![0u8; 32 * 1024];
    for family in [libc::AF_INET, libc::AF_INET6] {
        // nlmsghdr (16 bytes), then inet_diag_req_v2 (56 bytes): family, protocol, ext, pad,
        // the states wanted, and a zero socket id (any).
        let mut req = [0u8; 72];
        req[0..4].copy_from_slice(&72u32.to_ne_bytes());
        req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        req[16] = family as u8;
        req[17] = libc::IPPROTO_TCP as u8;
        req[20..24].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        'replies: loop {
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                return Err(io::Error::last_os_error());
            }
            let mut msgs = &buf[..n as usize];
            while msgs.len() >= 16 {
                let len = u32::from_ne_bytes(msgs[0..4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes(msgs[4..6].try_into().unwrap());
                if len < 16 || len > msgs.len() {
                    return Err(io::Error::other("a malformed sock_diag reply"));
                }
                match ty as i32 {
                    libc::NLMSG_DONE => break 'replies,
                    libc::NLMSG_ERROR => return Err(io::Error::other("sock_diag refused the dump")),
                    _ => {
                        // inet_diag_msg: the inode is its u32 at offset 68.
                        if let Some(ino) = msgs.get(16 + 68..16 + 72) {
                            out.insert(u32::from_ne_bytes(ino.try_into().unwrap()) as u64);
                        }
                    }
                }
                msgs = &msgs[len.next_multiple_of(4).min(msgs.len())..];
            }
        }
    }
    Ok(out)
}

/// [`listening_inodes`] from `/proc/self/net/tcp{,6}`.
fn listening_inodes_proc() -> Option<std::collections::HashSet<u64>> {
    let mut out = std::collections::HashSet::new();
    let mut any = false;
    for file in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        any = true;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" {
                if let Ok(inode) = f[9].parse() {
                    out.insert(inode);
                }
            }
        }
    }
    any.then_some(out)
}

fn eventfd() -> io::Result<OwnedFd> {
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn timerfd() -> io::Result<OwnedFd> {
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
    (r == 0).then_some(v)
}

fn inode(fd: &impl AsRawFd) -> Option<u64> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some(st.st_ino)
}

fn netns_inode(sock: RawFd) -> Option<u64> {
    let ns = unsafe { libc::ioctl(sock, SIOCGSKNS) };
    if ns < 0 {
        return None;
    }
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    inode(&ns)
}

/// A TCP socket of the internet families: its family is IPv6?
fn tcp_family(fd: RawFd) -> Option<bool> {
    let ty = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let domain = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    match (ty, domain) {
        (libc::SOCK_STREAM, libc::AF_INET) => Some(false),
        (libc::SOCK_STREAM, libc::AF_INET6) => Some(true),
        _ => None,
    }
}

fn sockname(fd: RawFd, peer: bool) -> Option<SocketAddr> {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast();
    let r = unsafe { if peer { libc::getpeername(fd, p, &mut len) } else { libc::getsockname(fd, p, &mut len) } };
    if r != 0 {
        return None;
    }
    let bytes =
        unsafe { std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), len as usize) };
    parse_sockaddr(bytes)
}

pub fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?) as i32;
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        _ => None,
    }
}

/// `addr` as the `sockaddr` a socket of the given family shows (IPv4 in IPv6 as mapped).
pub fn encode_sockaddr(addr: SocketAddr, v6_family: bool) -> Vec<u8> {
    match (addr.ip(), v6_family) {
        (IpAddr::V4(ip), false) => {
            let mut b = vec![0u8; 16];
            b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&addr.port().to_be_bytes());
            b[4..8].copy_from_slice(&ip.octets());
            b
        }
        (ip, _) => {
            let ip6 = match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let mut b = vec![0u8; 28];
            b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&addr.port().to_be_bytes());
            b[8..24].copy_from_slice(&ip6.octets());
            b
        }
    }
}

fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// Where dummies for a listener bound to `local` connect.
fn connect_target(local: SocketAddr) -> SocketAddr {
    let ip: IpAddr = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        IpAddr::V6(ip) => ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// Whether `tid` has a signal pending that it does not block (it would run a handler or die).
fn signal_pending(tid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return false;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (field("SigPnd:") | field("ShdPnd:")) & !field("SigBlk:") != 0
}

/// Accepts one queued connection without ever blocking; `Ok(None)` when the queue is empty.
fn accept_now(listen: &Listen, dup: &OwnedFd) -> io::Result<Option<(OwnedFd, SocketAddr)>> {
    let _one = listen.accepting.lock().unwrap();
    let mut pfd = libc::pollfd { fd: dup.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 || pfd.revents & libc::POLLIN == 0 {
        return Ok(None);
    }
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let fd = unsafe {
        libc::accept4(dup.as_raw_fd(), (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len, libc::SOCK_CLOEXEC)
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let bytes =
        unsafe { std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), len as usize) };
    let peer = parse_sockaddr(bytes).unwrap_or(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0));
    Ok(Some((fd, peer)))
}

impl Call {
    /// `bind`: subscribing TCP sockets still bind when their port is busy locally.
    pub(super) fn bind(self) {
        let inc = self.scope.incoming.clone();
        let a = self.n.args;
        let (fd, addr, len) = (a[0] as RawFd, a[1], a[2] as usize);
        if !inc.active() || !(16..=128).contains(&len) {
            return self.answer(Answer::Continue);
        }
        let Ok(raw) = memory::read(self.n.tid, addr, len) else {
            return self.answer(Answer::Continue);
        };
        let Some(want) = parse_sockaddr(&raw) else {
            return self.answer(Answer::Continue);
        };
        if want.port() == 0 || inc.remote_port(want.port()).is_none() {
            return self.answer(Answer::Continue);
        }
        let Ok(sock) = proc::take_fd(self.n.tid, fd) else {
            return self.answer(Answer::Continue);
        };
        if tcp_family(sock.as_raw_fd()).is_none() {
            return self.answer(Answer::Continue);
        }
        let r = unsafe { libc::bind(sock.as_raw_fd(), raw.as_ptr().cast(), len as libc::socklen_t) };
        if r == 0 {
            return self.answer(Answer::Value(0));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EADDRINUSE) {
            // EACCES and friends: the kernel decides with the program's own credentials.
            return self.answer(Answer::Continue);
        }
        let mut any_port = raw.clone();
        any_port[2..4].copy_from_slice(&0u16.to_be_bytes());
        let r = unsafe { libc::bind(sock.as_raw_fd(), any_port.as_ptr().cast(), len as libc::socklen_t) };
        if r != 0 {
            return self.answer(Answer::Errno(libc::EADDRINUSE));
        }
        let got = sockname(sock.as_raw_fd(), false);
        if let Some(ino) = inode(&sock) {
            inc.inner.lock().unwrap().rebound.insert(ino, want.port());
            inc.add_facade(ino, None, Some(want));
        }
        tracing::info!(
            requested = want.port(),
            bound = got.map(|a| a.port()).unwrap_or(0),
            "local port busy: the program listens on another port and still gets the target's traffic"
        );
        self.answer(Answer::Value(0))
    }

    /// `listen`: done here, then the target port is subscribed before the call returns.
    pub(super) fn listen(self) {
        let inc = self.scope.incoming.clone();
        if !inc.active() {
            return self.answer(Answer::Continue);
        }
        let (fd, backlog) = (self.n.args[0] as RawFd, self.n.args[1] as i32);
        let Ok(sock) = proc::take_fd(self.n.tid, fd) else {
            return self.answer(Answer::Continue);
        };
        let Some(v6) = tcp_family(sock.as_raw_fd()) else {
            return self.answer(Answer::Continue);
        };
        let rt = self.scope.rt.clone();
        rt.spawn_blocking(move || {
            if unsafe { libc::listen(sock.as_raw_fd(), backlog) } != 0 {
                let errno = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                return self.answer(Answer::Errno(errno));
            }
            let subscribed = self.subscribe_listener(&inc, &sock, v6);
            // Our duplicate goes before the program goes on: a program that closes this
            // listener at once (a free-port probe) and binds its port again must find it free.
            drop(sock);
            self.answer(Answer::Value(0));
            match subscribed {
                Ok(Some(requested)) => self.check_port_is_served(requested),
                Ok(None) => {}
                Err(e) => self.scope.stats.error(format!("incoming traffic: {e}")),
            }
        });
    }

    /// Subscribes the listener's target port; `Some(port the program asked for)` when it did.
    fn subscribe_listener(&self, inc: &Arc<Incoming>, sock: &OwnedFd, v6: bool) -> Result<Option<u16>, String> {
        let Some(ino) = inode(sock) else {
            return Ok(None);
        };
        if inc.listener(ino).is_some() {
            return Ok(None); // listen again on a subscribed listener (a new backlog)
        }
        let local = sockname(sock.as_raw_fd(), false).ok_or("cannot read the listener's address")?;
        let requested = inc.inner.lock().unwrap().rebound.get(&ino).copied().unwrap_or(local.port());
        let Some(remote) = inc.remote_port(requested) else {
            return Ok(None);
        };
        if netns_inode(sock.as_raw_fd()).is_some_and(|ns| ns != inc.own_netns) {
            return Err(format!(
                "the program listens on port {requested} in another network namespace than the daemon's; \
                 its port gets no traffic from the target"
            ));
        }
        let listen = Listen {
            inode: ino,
            connect_to: connect_target(local),
            v6,
            remote,
            accepting: Mutex::new(()),
            waiters: Mutex::default(),
            wake: eventfd().map_err(|e| format!("creating an eventfd for the listener: {e}"))?,
            timer: timerfd().map_err(|e| format!("creating a timerfd for the listener: {e}"))?,
        };
        inc.register(&self.scope, listen).map_err(|e| format!("subscribing to the target's port {remote}: {e}"))?;
        tracing::info!(local = %local, remote, mode = ?inc.config.mode, "listener subscribed");
        Ok(Some(requested))
    }

    /// The doctor's port check (`port-not-served`): a listener on a port the target does not
    /// serve, with no `port_mapping`, gets no traffic; the session says so, naming the target's
    /// ports (as the agent reads them) and the mapping to add. Runs after `listen` returned.
    fn check_port_is_served(&self, requested: u16) {
        let ports = match self.scope.rt.block_on(self.scope.agent.listening_ports()) {
            Ok(Some(ports)) => ports,
            Ok(None) => return tracing::debug!("the agent cannot list the target's ports (an older agent)"),
            Err(e) => return tracing::warn!(err = %e, "cannot check the target's ports"),
        };
        let mut config = tether_config::Config::default();
        config.feature.network.incoming = self.scope.incoming.config.clone();
        if let Some(d) = tether_doctor::port_diagnostic(requested, &ports, &config) {
            let mut found = self.scope.stats.diagnostics.lock().unwrap();
            if !found.iter().any(|f| f.message == d.message) {
                tracing::warn!("{}", d.message);
                found.push(d);
            }
        }
    }

    /// `accept`/`accept4` on a subscribed listener: emulated (see the module docs).
    pub(super) fn accept(self, flags: i32) {
        let inc = self.scope.incoming.clone();
        if !inc.any_listener.load(Relaxed) {
            return self.answer(Answer::Continue);
        }
        let fd = self.n.args[0] as RawFd;
        let Ok(dup) = proc::take_fd(self.n.tid, fd) else {
            return self.answer(Answer::Continue);
        };
        let Some(listen) = inode(&dup).and_then(|i| inc.listener(i)) else {
            return self.answer(Answer::Continue);
        };
        let ready = listen.take_ready(&mut listen.waiters.lock().unwrap());
        if let Some(r) = ready {
            return self.give_ready(&inc, &listen, r, flags);
        }
        let nonblocking = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GETFL) } & libc::O_NONBLOCK != 0;
        match accept_now(&listen, &dup) {
            Ok(Some((conn, peer))) => self.accepted(&inc, &listen, conn, peer, flags),
            Ok(None) if nonblocking => self.answer(Answer::Errno(libc::EAGAIN)),
            Ok(None) => {
                // Waiting from now on: a stolen socket that arrives is given straight away; the
                // watcher serves the rest (dummies, local clients, signals).
                let mut ws = listen.waiters.lock().unwrap();
                if let Some(r) = listen.take_ready(&mut ws) {
                    drop(ws); // it came meanwhile
                    return self.give_ready(&inc, &listen, r, flags);
                }
                let exited = proc::pidfd(self.n.tid).ok().map(Arc::new);
                ws.queue.push_back(Waiter { call: self, flags, exited });
                ws.arrived = true;
                if ws.watching {
                    let parked = std::mem::take(&mut ws.parked);
                    drop(ws);
                    if parked {
                        listen.wake_watcher();
                    }
                    return; // it polls this listener already
                }
                ws.watching = true;
                drop(ws);
                let name = format!("accept-{}", listen.remote);
                let l = listen.clone();
                if let Err(e) = std::thread::Builder::new().name(name).spawn(move || watch(inc, l, dup)) {
                    let mut ws = listen.waiters.lock().unwrap();
                    ws.watching = false;
                    let errno = e.raw_os_error().unwrap_or(libc::EAGAIN);
                    for w in ws.queue.drain(..) {
                        w.call.answer(Answer::Errno(errno));
                    }
                }
            }
            Err(e) => self.answer(Answer::Errno(e.raw_os_error().unwrap_or(libc::EIO))),
        }
    }

    /// Gives a stolen socket kept for the next `accept` ([`Waiters::ready`]); it goes back to
    /// the front of the queue when the call cannot take it.
    fn give_ready(&self, inc: &Incoming, listen: &Listen, r: Ready, flags: i32) {
        if let Err(sock) = inc.give_stolen(listen, self, r.sock, r.peer, flags) {
            let mut ws = listen.waiters.lock().unwrap();
            if ws.ready.is_empty() {
                listen.set_timer(Some(r.until.saturating_duration_since(Instant::now())));
            }
            ws.ready.push_front(Ready { sock, ..r });
        }
    }

    /// Gives the program what was accepted: the delivery a dummy stands for, or a local client.
    fn accepted(&self, inc: &Arc<Incoming>, listen: &Listen, conn: OwnedFd, peer: SocketAddr, flags: i32) {
        let (give, show_peer, v6_family) = match inc.take_pending(unmap(peer)) {
            Some(mut p) => {
                let give = match p.socket.take() {
                    // The client's own socket: its addresses are the true ones already.
                    Some(stolen) => stolen,
                    None => {
                        if let Some(i) = inode(&conn) {
                            inc.add_facade(i, Some(p.peer), Some(p.local));
                        }
                        conn
                    }
                };
                let v6 = if p.mode == ConnectionKind::Socket {
                    tcp_family(give.as_raw_fd()).unwrap_or(listen.v6)
                } else {
                    listen.v6
                };
                (give, p.peer, v6 || listen.v6)
            }
            None => (conn, peer, listen.v6),
        };
        if let Err(_lost) = self.give(give, show_peer, v6_family, flags) {
            // The caller went away after all: the connection is lost with it.
            tracing::debug!("an accepted connection could not be given to the program");
        }
    }

    /// Answers the `accept` with `give`: flags, the peer written to `addr`, the descriptor
    /// injected. The descriptor comes back when the call is gone (nothing was answered).
    fn give(&self, give: OwnedFd, show_peer: SocketAddr, v6_family: bool, flags: i32) -> Result<(), OwnedFd> {
        // The descriptor's own file status: O_NONBLOCK as `accept4` would set it.
        let nonblock: libc::c_int = (flags & libc::SOCK_NONBLOCK != 0).into();
        unsafe { libc::ioctl(give.as_raw_fd(), libc::FIONBIO, &nonblock) };
        let (addr, addrlen) = (self.n.args[1], self.n.args[2]);
        // Without an address to write, the injection itself tells whether the call is gone.
        if addr != 0 && addrlen != 0 {
            if !self.listener.is_valid(self.n.id) {
                return Err(give);
            }
            if let Err(errno) = write_sockaddr(self.n.tid, addr, addrlen, encode_sockaddr(show_peer, v6_family)) {
                self.answer(Answer::Errno(errno));
                return Ok(());
            }
        }
        match self.listener.inject(self.n.id, give.as_raw_fd(), Slot::AsResult, flags & libc::SOCK_CLOEXEC != 0) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(err = %e, "a connection could not be injected");
                if self.listener.is_valid(self.n.id) {
                    // The caller still waits (out of descriptors, ...): it gets the error.
                    self.answer(Answer::Errno(e.raw_os_error().unwrap_or(libc::EIO)));
                }
                Err(give)
            }
        }
    }

    /// `getpeername`/`getsockname` on sockets whose addresses the daemon rewrites.
    pub(super) fn sockname(self, peer: bool) {
        let inc = self.scope.incoming.clone();
        if !inc.any_facade.load(Relaxed) {
            return self.answer(Answer::Continue);
        }
        let a = self.n.args;
        let Ok(sock) = proc::take_fd(self.n.tid, a[0] as RawFd) else {
            return self.answer(Answer::Continue);
        };
        let Some(ino) = inode(&sock) else {
            return self.answer(Answer::Continue);
        };
        let shown = inc.facade.lock().unwrap().map.get(&ino).and_then(|(p, l)| if peer { *p } else { *l });
        let Some(shown) = shown else {
            return self.answer(Answer::Continue);
        };
        let v6 = tcp_family(sock.as_raw_fd()).unwrap_or(shown.is_ipv6());
        if !peer && inc.inner.lock().unwrap().rebound.contains_key(&ino) {
            // The listener itself: the real address with the port the program asked for.
            let Some(mut real) = sockname(sock.as_raw_fd(), false) else {
                return self.answer(Answer::Continue);
            };
            real.set_port(shown.port());
            return self.write_answer(a[1], a[2], encode_sockaddr(real, v6));
        }
        self.write_answer(a[1], a[2], encode_sockaddr(shown, v6))
    }

    fn write_answer(&self, addr: u64, addrlen: u64, bytes: Vec<u8>) {
        if !self.listener.is_valid(self.n.id) {
            return;
        }
        match write_sockaddr(self.n.tid, addr, addrlen, bytes) {
            Ok(()) => self.answer(Answer::Value(0)),
            Err(errno) => self.answer(Answer::Errno(errno)),
        }
    }
}

/// Serves the blocking `accept` calls waiting on a listener (`dup` is a duplicate of it): gives
/// them what its queue holds (dummies, local clients) and answers a pending signal with
/// `-ERESTARTSYS`, as the kernel would. Stolen sockets reach the waiters without it
/// ([`Incoming::give_to_waiter`]). While the listener is readable and no call waits, it parks
/// on `listen.wake` instead. It ends, closing `dup`, once no call waited for a whole period, so
/// that the daemon never keeps a closed listener alive for long.
fn watch(inc: Arc<Incoming>, listen: Arc<Listen>, dup: OwnedFd) {
    let mut next_check = Instant::now() + SIGNAL_PERIOD;
    loop {
        // The waiters' pidfds stay open while polled (the Arcs), even if a delivery takes the
        // waiter meanwhile.
        let (parked, exits): (bool, Vec<Arc<OwnedFd>>) = {
            let ws = listen.waiters.lock().unwrap();
            (ws.parked, ws.queue.iter().filter_map(|w| w.exited.clone()).collect())
        };
        let left = next_check.saturating_duration_since(Instant::now());
        let mut pfd: Vec<libc::pollfd> =
            [libc::POLLIN; 3].into_iter().map(|events| libc::pollfd { fd: -1, events, revents: 0 }).collect();
        pfd[0].fd = listen.wake.as_raw_fd();
        pfd[1].fd = listen.timer.as_raw_fd();
        if !parked {
            pfd[2].fd = dup.as_raw_fd();
        }
        pfd.extend(exits.iter().map(|e| libc::pollfd { fd: e.as_raw_fd(), events: libc::POLLIN, revents: 0 }));
        // SAFETY: `pfd` is a valid array of `pfd.len()` pollfds, and every descriptor in it stays
        // open for the call (owned by `listen`, `dup` and `exits`).
        unsafe { libc::poll(pfd.as_mut_ptr(), pfd.len() as libc::nfds_t, left.as_millis() as i32) };
        let a_waiter_exited = pfd[3..].iter().any(|p| p.revents != 0);
        for p in &pfd[..2] {
            if p.revents & libc::POLLIN != 0 {
                let mut n = 0u64;
                unsafe { libc::read(p.fd, (&mut n as *mut u64).cast(), 8) };
            }
        }
        let readable = pfd[2].revents & libc::POLLIN != 0;
        if pfd[1].revents & libc::POLLIN != 0 {
            let now = Instant::now();
            let late: Vec<Ready> = {
                let mut ws = listen.waiters.lock().unwrap();
                let n = ws.ready.iter().take_while(|r| r.until <= now).count();
                let late = ws.ready.drain(..n).collect();
                if let Some(next) = ws.ready.front() {
                    listen.set_timer(Some(next.until.saturating_duration_since(now)));
                }
                late
            };
            for r in late {
                inc.wake_with_dummy(&listen, ConnectionKind::Socket, r.peer, r.local, r.sock);
            }
        }
        // One call at a time, out of the list while it is served; a delivery meanwhile comes
        // with a dummy, so the listener is readable again at the next poll.
        while readable {
            let w = {
                let mut ws = listen.waiters.lock().unwrap();
                let w = ws.queue.pop_front();
                if w.is_none() && readable {
                    ws.parked = true; // until a call waits (the program accepts it otherwise)
                }
                w
            };
            let Some(w) = w else { break };
            if !w.call.listener.is_valid(w.call.n.id) {
                continue; // the caller is gone: nothing to answer
            }
            match accept_now(&listen, &dup) {
                Ok(Some((conn, peer))) => w.call.accepted(&inc, &listen, conn, peer, w.flags),
                Ok(None) => {
                    listen.waiters.lock().unwrap().queue.push_front(w);
                    break;
                }
                Err(e) => w.call.answer(Answer::Errno(e.raw_os_error().unwrap_or(libc::EIO))),
            }
        }
        if Instant::now() < next_check && !a_waiter_exited {
            continue;
        }
        next_check = Instant::now() + SIGNAL_PERIOD;
        let mut ws = listen.waiters.lock().unwrap();
        ws.queue.retain(|w| {
            if !w.call.listener.is_valid(w.call.n.id) {
                return false;
            }
            if signal_pending(w.call.n.tid) {
                w.call.answer(Answer::Errno(ERESTARTSYS));
                return false;
            }
            true
        });
        // A caller that died leaves no reason to keep the listener for a next call: it goes now.
        if ws.queue.is_empty() && ws.ready.is_empty() && (!ws.arrived || a_waiter_exited) {
            ws.watching = false;
            ws.parked = false;
            return;
        }
        ws.arrived = false;
    }
}

/// Writes a `sockaddr` the way the kernel does: truncated to `*addrlen`, the full length back.
fn write_sockaddr(tid: u32, addr: u64, addrlen: u64, bytes: Vec<u8>) -> Result<(), i32> {
    let cap = memory::read(tid, addrlen, 4).map_err(|_| libc::EFAULT)?;
    let cap = u32::from_ne_bytes(cap[..4].try_into().unwrap()) as i32;
    if cap < 0 {
        return Err(libc::EINVAL);
    }
    let n = (cap as usize).min(bytes.len());
    if n > 0 {
        memory::write(tid, addr, &bytes[..n]).map_err(|_| libc::EFAULT)?;
    }
    memory::write(tid, addrlen, &(bytes.len() as u32).to_ne_bytes()).map_err(|_| libc::EFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_round_trip_in_both_families() {
        let v4: SocketAddr = "198.19.0.1:40000".parse().unwrap();
        assert_eq!(parse_sockaddr(&encode_sockaddr(v4, false)), Some(v4));
        let mapped = parse_sockaddr(&encode_sockaddr(v4, true)).unwrap();
        assert_eq!(mapped.to_string(), "[::ffff:198.19.0.1]:40000");
        assert_eq!(unmap(mapped), v4);
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert_eq!(parse_sockaddr(&encode_sockaddr(v6, true)), Some(v6));
    }

    #[test]
    fn dummies_go_to_loopback_for_wildcard_listeners() {
        assert_eq!(connect_target("0.0.0.0:8080".parse().unwrap()).to_string(), "127.0.0.1:8080");
        assert_eq!(connect_target("[::]:8080".parse().unwrap()).to_string(), "[::1]:8080");
        assert_eq!(connect_target("127.0.0.2:80".parse().unwrap()).to_string(), "127.0.0.2:80");
        assert_eq!(connect_target("[::ffff:127.0.0.1]:80".parse().unwrap()).to_string(), "127.0.0.1:80");
    }

    #[test]
    fn our_listeners_are_seen_and_closed_ones_are_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l6 = std::net::TcpListener::bind("[::1]:0").ok();
        let connected = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let ino = inode(&l).unwrap();
        let diag = listening_inodes_diag().unwrap();
        assert!(diag.contains(&ino) && listening_inodes_proc().unwrap().contains(&ino));
        assert!(!diag.contains(&inode(&connected).unwrap()), "listeners only");
        if let Some(l6) = &l6 {
            assert!(diag.contains(&inode(l6).unwrap()));
        }
        drop(l);
        assert!(!listening_inodes().unwrap().contains(&ino));
    }

    #[test]
    fn no_signal_is_pending_here() {
        assert!(!signal_pending(unsafe { libc::gettid() } as u32));
    }

    #[test]
    fn sockaddrs_are_written_like_the_kernel_does() {
        let tid = unsafe { libc::gettid() } as u32;
        let mut buf = [0u8; 8];
        let mut len: u32 = 8;
        let full = encode_sockaddr("198.19.0.1:1".parse().unwrap(), false);
        write_sockaddr(tid, buf.as_mut_ptr() as u64, (&mut len as *mut u32) as u64, full.clone()).unwrap();
        assert_eq!((&buf[..], len), (&full[..8], 16), "truncated, the real length reported");
    }
}

//! The one thread that lives in the target's network namespace.
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole life.
//! So the agent keeps a dedicated OS thread that has `setns(CLONE_NEWNET)` into the target's
//! namespace and creates every socket there (and starts its non-blocking connect, so the
//! connect's route lookup also happens there). The finished descriptor is handed back and can
//! then be used on any thread: by tokio for relays and DNS, or passed to the daemon over the fd
//! socket. Nothing else ever runs on this thread, and no other thread changes namespace.

use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// A socket made inside the target's network namespace.
#[derive(Debug)]
pub struct NewSocket {
    pub fd: OwnedFd,
    /// Result of the non-blocking connect: 0 (connected), `EINPROGRESS`, or the failure.
    /// 0 when no connect was asked for.
    pub connect_errno: i32,
}

/// What to create.
#[derive(Debug, Clone, Copy)]
pub struct SocketSpec {
    pub udp: bool,
    pub v6: bool,
    /// Start a non-blocking connect to this address (its family wins over `v6`).
    pub connect: Option<SocketAddr>,
}

impl SocketSpec {
    pub fn connect(udp: bool, addr: SocketAddr) -> Self {
        SocketSpec { udp, v6: addr.is_ipv6(), connect: Some(addr) }
    }
}

enum Job {
    Socket {
        spec: SocketSpec,
        reply: oneshot::Sender<io::Result<NewSocket>>,
    },
    /// Any other work that must happen inside the namespace (listeners, packet sockets).
    Run(Box<dyn FnOnce() + Send>),
}

/// Handle to the namespace thread. Cheap to clone; the thread ends when every handle is gone.
#[derive(Clone)]
pub struct NetnsThread {
    jobs: mpsc::Sender<Job>,
}

impl NetnsThread {
    /// Starts the thread and waits until it has entered the namespace of `netns`
    /// (an open `/proc/PID/ns/net`). Fails when `setns` fails (e.g. without CAP_SYS_ADMIN).
    pub fn spawn(netns: OwnedFd) -> io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        std::thread::Builder::new().name("netns".into()).spawn(move || {
            // SAFETY: plain syscall on a descriptor we own; it only changes this thread.
            let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            let entered = if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
            drop(netns);
            let ok = entered.is_ok();
            let _ = ready_tx.send(entered);
            if !ok {
                return;
            }
            while let Ok(job) = rx.recv() {
                match job {
                    Job::Socket { spec, reply } => drop(reply.send(make_socket(spec))),
                    Job::Run(f) => f(),
                }
            }
        })?;
        ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the netns thread ended before entering the namespace")))?;
        Ok(NetnsThread { jobs })
    }

    fn submit(&self, spec: SocketSpec) -> io::Result<oneshot::Receiver<io::Result<NewSocket>>> {
        let (reply, rx) = oneshot::channel();
        self.jobs.send(Job::Socket { spec, reply }).map_err(|_| io::Error::other("the netns thread is gone"))?;
        Ok(rx)
    }

    /// Runs `f` on the namespace thread (keep it short: socket set-up, never I/O that waits).
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> io::Result<oneshot::Receiver<R>> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Run(Box::new(move || drop(reply.send(f())))))
            .map_err(|_| io::Error::other("the netns thread is gone"))?;
        Ok(rx)
    }

    /// [`run`](Self::run) for plain threads (must not be called inside a runtime).
    pub fn run_blocking<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> io::Result<R> {
        self.run(f)?.blocking_recv().map_err(|_| io::Error::other("the netns thread dropped a request"))
    }

    /// [`run`](Self::run) from async code.
    pub async fn run_async<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> io::Result<R> {
        self.run(f)?.await.map_err(|_| io::Error::other("the netns thread dropped a request"))
    }

    /// Creates a socket in the target's namespace (from async code).
    pub async fn socket(&self, spec: SocketSpec) -> io::Result<NewSocket> {
        self.submit(spec)?.await.map_err(|_| io::Error::other("the netns thread dropped a request"))?
    }

    /// Same as [`socket`](Self::socket) for plain threads (must not be called inside a runtime).
    pub fn socket_blocking(&self, spec: SocketSpec) -> io::Result<NewSocket> {
        self.submit(spec)?.blocking_recv().map_err(|_| io::Error::other("the netns thread dropped a request"))?
    }
}

/// Runs on the namespace thread: a non-blocking, close-on-exec socket, connect started.
fn make_socket(spec: SocketSpec) -> io::Result<NewSocket> {
    let v6 = spec.connect.map(|a| a.is_ipv6()).unwrap_or(spec.v6);
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let ty = if spec.udp { Type::DGRAM } else { Type::STREAM };
    let socket = Socket::new(domain, ty.nonblocking().cloexec(), None)?;
    let mut connect_errno = 0;
    if let Some(addr) = spec.connect
        && let Err(e) = socket.connect(&SockAddr::from(addr))
    {
        connect_errno = e.raw_os_error().unwrap_or(libc::EIO);
    }
    Ok(NewSocket { fd: socket.into(), connect_errno })
}

/// Inode of a network namespace descriptor: equal inodes mean the same namespace.
pub fn ns_inode(fd: &impl AsRawFd) -> io::Result<u64> {
    // SAFETY: fstat into a zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn sockets_come_from_the_entered_namespace() {
        // Entering our own namespace is allowed and lets us check the plumbing anywhere.
        let ns = File::open("/proc/self/ns/net").unwrap();
        let inode = ns_inode(&ns).unwrap();
        let t = NetnsThread::spawn(ns.into()).unwrap();
        let s = t.socket_blocking(SocketSpec { udp: true, v6: false, connect: None }).unwrap();
        assert_eq!(s.connect_errno, 0);
        // SO_NETNS_COOKIE would be nicer; the flags at least must be right.
        let flags = unsafe { libc::fcntl(s.fd.as_raw_fd(), libc::F_GETFL) };
        assert_ne!(flags & libc::O_NONBLOCK, 0);
        let fdflags = unsafe { libc::fcntl(s.fd.as_raw_fd(), libc::F_GETFD) };
        assert_ne!(fdflags & libc::FD_CLOEXEC, 0);
        assert!(inode > 0);
    }

    #[test]
    fn a_failed_connect_is_an_errno_not_an_error() {
        let ns = File::open("/proc/self/ns/net").unwrap();
        let t = NetnsThread::spawn(ns.into()).unwrap();
        // Nothing listens on port 1 of loopback: refused (or in progress, then refused).
        let s = t.socket_blocking(SocketSpec::connect(false, "127.0.0.1:1".parse().unwrap())).unwrap();
        assert!(matches!(s.connect_errno, libc::ECONNREFUSED | libc::EINPROGRESS), "{}", s.connect_errno);
    }
}

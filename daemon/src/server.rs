//! The daemon: one per user, serving its Unix socket.
//!
//! A connection starts either with the bootstrap handshake (`ATTACH ...`, from a process that
//! joins a session) or with an editor-protocol message (`Content-Length: ...`, from an editor's
//! `tether lsp` bridge or the CLI); the first bytes decide. Every peer must be of our uid.
//! Only one daemon per socket runs: it holds an exclusive lock beside the socket, so two starting
//! at the same moment end with one serving and the other leaving quietly. A daemon whose socket
//! file disappears (its directory was removed) stops once no session runs: nothing could reach it.
//! Out of descriptors, the accept loop waits instead of retrying at once ([`Backoff`]). On start
//! it removes the fd sockets of agents that are gone (`target::local::remove_stale_sockets`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tether_bootstrap::handshake::{FIRST_WORD, Reply, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::editor;
use crate::intercept::{self, Listener};
use crate::session::{Sessions, same_secret};

pub struct Daemon {
    pub sessions: Sessions,
    pub hub: editor::hub::Hub,
    stop: tokio::sync::Notify,
    /// Set by a handover request while sessions run: stop once they have ended.
    retiring: AtomicBool,
}

impl Daemon {
    pub fn request_stop(&self) {
        self.stop.notify_one();
    }

    pub fn retire(&self) {
        self.retiring.store(true, Ordering::SeqCst);
    }
}

/// Tries the daemon lock; `None` when another process holds it.
fn try_lock(socket: &Path) -> anyhow::Result<Option<OwnedFd>> {
    let path = socket.with_extension("lock");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("opening {}", path.display()));
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(None);
    }
    Ok(Some(fd))
}

/// Takes the daemon lock, or answers `None` when another daemon serves the socket. A lock held
/// by a daemon that is stopping (its socket is gone) is waited for.
fn lock(socket: &Path) -> anyhow::Result<Option<OwnedFd>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(fd) = try_lock(socket)? {
            return Ok(Some(fd));
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok() || Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The inode of the socket file at `path`, `None` when there is none.
fn socket_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// Whether a daemon holds the lock of `socket` (without taking it for long).
pub fn is_running(socket: &Path) -> bool {
    matches!(try_lock(socket), Ok(None))
}

/// Runs the daemon in the foreground until `tether daemon stop`, a handover or a signal.
pub async fn run() -> anyhow::Result<()> {
    let socket = crate::paths::socket();
    let dir = socket.parent().context("socket path has no directory")?.to_path_buf();
    crate::paths::private_dir(&dir)?;
    let Some(_lock) = lock(&socket)? else {
        tracing::info!("another daemon already serves {}", socket.display());
        return Ok(());
    };
    let _ = std::fs::remove_file(&socket);
    crate::target::local::remove_stale_sockets(&dir);
    let listener = UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let ours = socket_inode(&socket);
    tracing::info!(socket = %socket.display(), version = %editor::protocol::daemon_version(), pid = std::process::id(), "daemon ready");
    let daemon = Arc::new(Daemon {
        sessions: Sessions::new(dir),
        hub: Default::default(),
        stop: tokio::sync::Notify::new(),
        retiring: AtomicBool::new(false),
    });

    let sweeper = daemon.clone();
    let watched = socket.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            sweeper.sessions.sweep().await;
            if socket_inode(&watched) != ours && sweeper.sessions.active() == 0 {
                // Its directory was removed, or a daemon of another life took the path: no client
                // can reach this one any more, so it must not live on unseen.
                tracing::warn!(socket = %watched.display(), "the daemon's socket is gone or replaced: stopping");
                sweeper.request_stop();
            }
            if sweeper.retiring.load(Ordering::SeqCst) && sweeper.sessions.active() == 0 {
                tracing::info!("the last session ended: handing over to the newer version");
                sweeper.request_stop();
            }
        }
    });
    tokio::spawn(editor::hub::session_notifier(daemon.clone()));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => {
                        backoff.recovered();
                        s
                    }
                    Err(e) => {
                        // Out of descriptors (or memory) the listener stays readable: retrying at
                        // once would spin. Wait, and let the connections we hold end meanwhile.
                        tokio::time::sleep(backoff.failed(&e)).await;
                        continue;
                    }
                };
                let daemon = daemon.clone();
                tokio::spawn(async move {
                    if let Err(e) = daemon.connection(stream).await {
                        tracing::debug!("connection ended: {e:#}");
                    }
                });
            }
            _ = daemon.stop.notified() => break,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("daemon stopping");
    if socket_inode(&socket) == ours {
        let _ = std::fs::remove_file(&socket);
    }
    // Let the answer to `tether/stopDaemon` or `tether/handover` reach its client.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// The accept loop's answer to failures: waits of 100 ms doubling up to 1 s while `accept` fails,
/// and one log line per failing period (when it starts and when it ends), not one per attempt.
#[derive(Default)]
struct Backoff {
    delay: Option<Duration>,
    failures: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);

    /// How long to wait after the failure `e`.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.failures += 1;
        let delay = match self.delay {
            None => {
                let why = match e.raw_os_error() {
                    Some(libc::EMFILE) => " (out of file descriptors: the process limit, `ulimit -n`)",
                    Some(libc::ENFILE) => " (out of file descriptors: the system-wide limit)",
                    Some(libc::ENOMEM) | Some(libc::ENOBUFS) => " (out of memory)",
                    _ => "",
                };
                tracing::warn!("accept failed: {e}{why}; retrying with waits up to {:?}", Self::MAX);
                Self::FIRST
            }
            Some(d) => (d * 2).min(Self::MAX),
        };
        self.delay = Some(delay);
        delay
    }

    /// A connection was accepted: the failing period (if any) is over.
    fn recovered(&mut self) {
        if self.delay.take().is_some() {
            tracing::info!(failures = self.failures, "accepting connections again");
        }
        self.failures = 0;
    }
}

impl Daemon {
    async fn connection(self: Arc<Self>, mut stream: UnixStream) -> anyhow::Result<()> {
        let cred = stream.peer_cred()?;
        if cred.uid() != unsafe { libc::geteuid() } {
            bail!("refused a connection from uid {}", cred.uid());
        }
        let pid = cred.pid().context("no peer pid")? as u32;
        // Read until the first bytes say which protocol this is.
        let word = FIRST_WORD.as_bytes();
        let mut prefix = Vec::new();
        let mut buf = [0u8; 8];
        while prefix.len() < word.len() && word.starts_with(&prefix) {
            let n = stream.read(&mut buf[..word.len() - prefix.len()]).await?;
            if n == 0 {
                return Ok(());
            }
            prefix.extend_from_slice(&buf[..n]);
        }
        if !prefix.starts_with(word) {
            editor::serve(self, stream, prefix).await;
            return Ok(());
        }
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(std::io::Cursor::new(prefix).chain(read).take(1 << 20)).lines();
        let Some(first) = lines.next_line().await? else { return Ok(()) };
        let reply = self.attach(pid, &first, &mut lines, &mut write).await;
        if let Err(e) = &reply {
            write.write_all(Reply::Err(format!("{e:#}")).encode().as_bytes()).await?;
        }
        reply
    }

    /// The bootstrap handshake (see `tether_bootstrap::handshake`).
    async fn attach<R: tokio::io::AsyncBufRead + Unpin>(
        &self,
        pid: u32,
        first: &str,
        lines: &mut tokio::io::Lines<R>,
        write: &mut tokio::net::unix::OwnedWriteHalf,
    ) -> anyhow::Result<()> {
        let Some(Request::Attach { session, token }) = Request::decode(first) else { bail!("malformed ATTACH") };
        let Some(s) = self.sessions.get(session) else { bail!("no session {session} (it ended or never existed)") };
        if !same_secret(&s.token, token) {
            bail!("wrong token for session {session}");
        }
        let exe = crate::intercept::proc::readlink(&format!("/proc/{pid}/exe")).unwrap_or_default();
        let name = exe.rsplit('/').next().unwrap_or("");
        if (s.scope.skip)(name) {
            tracing::info!(session, pid, exe, "skipped program");
            write.write_all(Reply::Skip.encode().as_bytes()).await?;
            return Ok(());
        }
        write.write_all(Reply::Trap(s.scope.trapped()).encode().as_bytes()).await?;
        let line = lines.next_line().await?.context("the process left during the handshake")?;
        match Request::decode(&line) {
            Some(Request::Listener { fd }) => {
                let taken = intercept::proc::take_fd(pid, fd)
                    .with_context(|| format!("taking the seccomp listener of pid {pid} (pidfd_getfd)"))?;
                self.sessions.serve(s.clone(), Listener::new(taken));
                tracing::info!(session, pid, exe, "process attached");
            }
            Some(Request::Register) => {
                tracing::info!(session, pid, exe, "process registered (already under the filter)");
            }
            _ => bail!("malformed handshake line {line:?}"),
        }
        write.write_all(Reply::Ok.encode().as_bytes()).await?;
        Ok(())
    }
}

//! The daemon: one per user, serving its Unix socket.
//!
//! A connection starts either with the bootstrap handshake (`ATTACH ...`, from a process that
//! joins a session) or with a JSON request line (from the CLI). Every peer must be of our uid.
//! Only one daemon per socket runs: it holds an exclusive lock beside the socket, so two starting
//! at the same moment end with one serving and the other leaving quietly.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tether_bootstrap::handshake::{FIRST_WORD, Reply, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::intercept::{self, Listener};
use crate::session::{CreateParams, Sessions, same_secret};

pub struct Daemon {
    pub sessions: Sessions,
    stop: tokio::sync::Notify,
}

/// Holds the daemon lock; `None` when another daemon has it.
fn lock(socket: &Path) -> anyhow::Result<Option<OwnedFd>> {
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

/// Runs the daemon in the foreground until `tether daemon stop` or a signal.
pub async fn run() -> anyhow::Result<()> {
    let socket = crate::paths::socket();
    let dir = socket.parent().context("socket path has no directory")?.to_path_buf();
    crate::paths::private_dir(&dir)?;
    let Some(_lock) = lock(&socket)? else {
        tracing::info!("another daemon already serves {}", socket.display());
        return Ok(());
    };
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), version = env!("CARGO_PKG_VERSION"), "daemon ready");
    let daemon = Arc::new(Daemon { sessions: Sessions::new(dir), stop: tokio::sync::Notify::new() });

    let sweeper = daemon.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            sweeper.sessions.sweep().await;
        }
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => { tracing::warn!("accept failed: {e}"); continue; }
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
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

impl Daemon {
    async fn connection(self: Arc<Self>, stream: UnixStream) -> anyhow::Result<()> {
        let cred = stream.peer_cred()?;
        if cred.uid() != unsafe { libc::geteuid() } {
            bail!("refused a connection from uid {}", cred.uid());
        }
        let pid = cred.pid().context("no peer pid")? as u32;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read.take(1 << 20)).lines();
        let Some(first) = lines.next_line().await? else { return Ok(()) };
        if first.starts_with(FIRST_WORD) {
            let reply = self.attach(pid, &first, &mut lines, &mut write).await;
            if let Err(e) = &reply {
                write.write_all(Reply::Err(format!("{e:#}")).encode().as_bytes()).await?;
            }
            return reply;
        }
        let mut line = Some(first);
        while let Some(l) = line {
            let answer = self.request(l.as_str()).await;
            let mut text = answer.to_string();
            text.push('\n');
            write.write_all(text.as_bytes()).await?;
            line = lines.next_line().await?;
        }
        Ok(())
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

    /// One JSON request line from the CLI: `{"method": ..., "params": ...}`.
    async fn request(&self, line: &str) -> Value {
        let req: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return json!({"error": format!("malformed request: {e}")}),
        };
        let params = req.get("params").cloned().unwrap_or(Value::Null);
        let result = match req.get("method").and_then(Value::as_str) {
            Some("createSession") => match serde_json::from_value::<CreateParams>(params) {
                Ok(p) => self.sessions.create(p).await.map(|info| serde_json::to_value(info).unwrap()),
                Err(e) => Err(anyhow::anyhow!("bad createSession parameters: {e}")),
            },
            Some("sessions") => Ok(self.status()),
            Some("stop") => {
                self.stop.notify_one();
                Ok(json!({"stopping": true}))
            }
            Some("version") => Ok(json!({"version": env!("CARGO_PKG_VERSION")})),
            Some(m) => Err(anyhow::anyhow!("unknown method `{m}`")),
            None => Err(anyhow::anyhow!("request without a method")),
        };
        match result {
            Ok(v) => json!({"result": v}),
            Err(e) => json!({"error": format!("{e:#}")}),
        }
    }

    fn status(&self) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        let sessions: Vec<Value> = self
            .sessions
            .list()
            .iter()
            .map(|s| {
                let st = &s.scope.stats;
                json!({
                    "id": s.id,
                    "target": s.target.to_string(),
                    "listeners": s.listeners.load(Relaxed),
                    "processes": st.processes.lock().unwrap().values().cloned().collect::<Vec<_>>(),
                    "connections": st.connections.load(Relaxed),
                    "files_read": st.files_read.load(Relaxed),
                    "dns_lookups": st.dns_lookups.load(Relaxed),
                    "errors": st.errors.lock().unwrap().iter().cloned().collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"version": env!("CARGO_PKG_VERSION"), "sessions": sessions})
    }
}

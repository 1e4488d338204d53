//! Local targets: a process on this machine, served by a `tether-agent` child of the daemon.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tether_protocol::env::AGENT_TOKEN;

use crate::agent::Agent;

/// A running local agent and the process that runs it.
pub struct LocalAgent {
    pub agent: Arc<Agent>,
    child: Mutex<Child>,
}

impl LocalAgent {
    pub fn is_alive(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Checks that `pid` can be a target before anything is started.
pub fn check_pid(pid: u32) -> anyhow::Result<()> {
    let dir = format!("/proc/{pid}");
    if !std::path::Path::new(&dir).exists() {
        bail!("target pid:{pid}: no such process (check the pid with `ps -p {pid}`)");
    }
    if let Err(e) = std::fs::File::open(format!("{dir}/ns/net")) {
        bail!(
            "target pid:{pid}: may not enter its network namespace ({e}); run tether as the process's user or as root"
        );
    }
    if let Err(e) = std::fs::read_dir(format!("{dir}/root/")) {
        bail!("target pid:{pid}: may not read its root file system ({e}); run tether as the process's user or as root");
    }
    Ok(())
}

/// Removes the fd sockets in `dir` that no agent serves any more (an agent killed with
/// `kill -9` cannot remove its own): a socket file whose connect is refused has nobody
/// listening. Called once when a daemon starts, before it starts agents of its own.
pub fn remove_stale_sockets(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("agent-") && name.ends_with(".sock")) {
            continue;
        }
        let path = e.path();
        let refused = matches!(
            std::os::unix::net::UnixStream::connect(&path),
            Err(err) if err.raw_os_error() == Some(libc::ECONNREFUSED)
        );
        if refused && std::fs::remove_file(&path).is_ok() {
            tracing::info!(socket = %path.display(), "removed the fd socket of an agent that is gone");
        }
    }
}

/// Starts an agent for `pid` and connects to it.
pub async fn start(
    pid: u32,
    startup_timeout: Duration,
    idle_timeout: Duration,
    fd_dir: &std::path::Path,
) -> anyhow::Result<LocalAgent> {
    check_pid(pid)?;
    let bin = match std::env::var_os("TETHER_AGENT_BIN") {
        Some(p) => p.into(),
        None => crate::paths::beside_exe("tether-agent")?,
    };
    let token = crate::session::random_hex(16);
    let fd_socket = fd_dir.join(format!("agent-{pid}-{}.sock", crate::session::random_hex(4)));
    let mut child = Command::new(&bin)
        .arg("--target-pid")
        .arg(pid.to_string())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--fd-socket")
        .arg(&fd_socket)
        .arg("--idle-timeout")
        .arg(idle_timeout.as_secs().max(1).to_string())
        // However the daemon ends (kill -9 included), its agents end with it.
        .arg("--exit-with-parent")
        .env(AGENT_TOKEN, &token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let last_err = Arc::new(Mutex::new(String::new()));
    let sink = last_err.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            tracing::info!(target: "agent", pid, "{line}");
            *sink.lock().unwrap() = line;
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = match tokio::time::timeout(startup_timeout, rx).await {
        Ok(Ok(line)) if !line.trim().is_empty() => line,
        Ok(_) => {
            let _ = child.wait();
            tokio::time::sleep(Duration::from_millis(50)).await;
            bail!("the agent for pid:{pid} stopped: {}", last_err.lock().unwrap());
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the agent for pid:{pid} did not start within {startup_timeout:?} (agent.startup_timeout)");
        }
    };
    let ready: serde_json::Value = serde_json::from_str(ready.trim()).context("the agent's ready line")?;
    let listen = ready["listen"].as_str().context("the agent did not say where it listens")?;
    let agent = match Agent::connect(listen, &token, startup_timeout).await {
        Ok(a) => a,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(LocalAgent { agent: Arc::new(agent), child: Mutex::new(child) })
}

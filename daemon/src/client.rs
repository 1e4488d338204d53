//! The CLI's side of the daemon socket: connect (starting a daemon when none runs), agree on
//! the version, and ask.
//!
//! Blocking and small on purpose: `tether exec` pays for every millisecond here. It speaks the
//! editor protocol (LSP framing, JSON-RPC 2.0) like every other client.
//!
//! Versions. The socket's name carries the major version, so a daemon of an incompatible
//! version is never reached. A daemon of the same major version but another version is not
//! used silently either, nor one of the same version but another build (a rebuilt `tether`,
//! [`crate::editor::protocol::build_id`]): the client asks it to hand over (`tether/handover`). A daemon without
//! live sessions stops at once and the client starts one of its own version; a daemon serving
//! sessions keeps serving them (its processes depend on it), is used this time with a warning,
//! and stops by itself once its last session has ended, so the next client gets a current one.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::editor::framing;

/// An initialized connection to the daemon.
pub struct Connection {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
    /// The daemon's version (`serverInfo.version`).
    pub daemon_version: String,
    /// The daemon's build (`capabilities.experimental.tether.build`).
    pub daemon_build: String,
}

impl Connection {
    fn new(stream: UnixStream) -> anyhow::Result<Connection> {
        let reader = BufReader::new(stream.try_clone().context("cloning the daemon socket")?);
        Ok(Connection { stream, reader, next_id: 0, daemon_version: String::new(), daemon_build: String::new() })
    }

    fn send(&mut self, msg: &Value) -> anyhow::Result<()> {
        self.stream.write_all(&framing::encode(msg.to_string().as_bytes())).context("sending to the tether daemon")
    }

    /// Calls `method` and returns its result, or the daemon's error as an error. Notifications
    /// that arrive meanwhile are skipped.
    pub fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        loop {
            let body = framing::read_blocking(&mut self.reader).map_err(|e| match e {
                framing::FrameError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    anyhow::anyhow!("the tether daemon closed the connection; see {}", log_hint())
                }
                e => anyhow::anyhow!("reading from the tether daemon: {e}"),
            })?;
            let mut v: Value = serde_json::from_slice(&body).context("the daemon's answer is not JSON")?;
            if v.get("id") != Some(&json!(id)) {
                continue;
            }
            if let Some(err) = v.get("error") {
                bail!("{}", err["message"].as_str().unwrap_or("the daemon answered an error"));
            }
            return Ok(v["result"].take());
        }
    }

    /// `initialize` as a CLI client: no session notifications. A daemon that does not answer in
    /// time (a hung or foreign process on our socket) is an error, never a hang.
    fn initialize(mut self) -> anyhow::Result<Connection> {
        const LIMIT: Duration = Duration::from_secs(10);
        self.stream.set_read_timeout(Some(LIMIT)).context("setting a timeout on the daemon socket")?;
        let result = self
            .call(
                "initialize",
                json!({
                    "processId": std::process::id(),
                    "capabilities": {},
                    "clientInfo": {"name": "tether-cli", "version": env!("CARGO_PKG_VERSION")},
                    "initializationOptions": {"sessionNotifications": false},
                }),
            )
            .with_context(|| {
                format!(
                    "the process serving {} did not answer `initialize` within {LIMIT:?}; if it is a stale \
                     tether daemon, stop it (`pkill -f 'tether daemon'`) and retry",
                    crate::paths::socket().display()
                )
            })?;
        self.stream.set_read_timeout(None).context("clearing the timeout on the daemon socket")?;
        self.daemon_version = result["serverInfo"]["version"].as_str().unwrap_or("").to_string();
        self.daemon_build =
            result["capabilities"]["experimental"]["tether"]["build"].as_str().unwrap_or("").to_string();
        Ok(self)
    }

    /// The daemon is this very build (same version and same executable, see
    /// [`crate::editor::protocol::build_id`]).
    pub fn same_build(&self) -> bool {
        self.daemon_version == env!("CARGO_PKG_VERSION") && self.daemon_build == crate::editor::protocol::build_id()
    }

    /// The daemon's version, with "another build of" when only the build differs.
    pub fn daemon_description(&self) -> String {
        if self.daemon_version == env!("CARGO_PKG_VERSION") {
            format!("another build of version {}", self.daemon_version)
        } else {
            format!("version {}", self.daemon_version)
        }
    }
}

/// Connects to the running daemon (starting one when none runs), initializes, and applies the
/// version policy above.
pub fn connect() -> anyhow::Result<Connection> {
    let mut conn = Connection::new(connect_or_start()?)?.initialize()?;
    let mine = env!("CARGO_PKG_VERSION");
    if conn.same_build() {
        return Ok(conn);
    }
    let answer = conn.call("tether/handover", json!({"version": mine}))?;
    if answer["accepted"] != true {
        eprintln!(
            "tether: the running daemon is {} and serves {} session(s); this tether is {mine} (build {}). \
             It serves this request and hands over when its sessions end.",
            conn.daemon_description(),
            answer["sessions"],
            crate::editor::protocol::build_id()
        );
        return Ok(conn);
    }
    drop(conn);
    wait_until_stopped(Duration::from_secs(10))?;
    let conn = Connection::new(connect_or_start()?)?.initialize()?;
    if !conn.same_build() {
        bail!(
            "the tether daemon is {} after a handover, expected this build of {mine}; run `tether daemon stop`",
            conn.daemon_description()
        );
    }
    Ok(conn)
}

/// Connects to a running daemon without starting one; `None` when none runs.
pub fn connect_existing() -> anyhow::Result<Option<Connection>> {
    match UnixStream::connect(crate::paths::socket()) {
        Ok(s) => Ok(Some(Connection::new(s)?.initialize()?)),
        Err(_) => Ok(None),
    }
}

/// Sends one request (`tether/<method>` when `method` has no `/`) and returns its result.
pub fn request(conn: &mut Connection, method: &str, params: Value) -> anyhow::Result<Value> {
    if method.contains('/') || method == "initialize" || method == "shutdown" {
        conn.call(method, params)
    } else {
        conn.call(&format!("tether/{method}"), params)
    }
}

/// Waits until no daemon holds the socket's lock.
pub fn wait_until_stopped(limit: Duration) -> anyhow::Result<()> {
    let socket = crate::paths::socket();
    let deadline = Instant::now() + limit;
    while crate::server::is_running(&socket) {
        if Instant::now() > deadline {
            bail!("the tether daemon did not stop within {limit:?}; see {}", log_hint());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The raw socket of the running daemon, starting one when none runs. Two clients starting one
/// at the same moment end up with the same daemon (the daemon lock decides).
pub fn connect_or_start() -> anyhow::Result<UnixStream> {
    let socket = crate::paths::socket();
    if let Ok(s) = UnixStream::connect(&socket) {
        return Ok(s);
    }
    let exe = std::env::current_exe().context("finding the tether executable")?;
    let start = || {
        let mut cmd = Command::new(&exe);
        cmd.arg("daemon").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd.spawn().context("starting the tether daemon")
    };
    let mut child = start()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = UnixStream::connect(&socket) {
            // Reap the starter in the background when it was the one that stayed.
            std::thread::spawn(move || child.wait());
            return Ok(s);
        }
        if let Ok(Some(status)) = child.try_wait() {
            if !status.success() {
                bail!("the tether daemon exited at start ({status}); see `tether logs` ({})", log_hint());
            }
            // Another daemon won the start-up race, or one was stopping: it appears shortly, or
            // we start another.
            if !crate::server::is_running(&socket) {
                child = start()?;
            }
        }
        if Instant::now() > deadline {
            bail!("the tether daemon did not come up within 10 s at {}; see {}", socket.display(), log_hint());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn log_hint() -> String {
    crate::paths::state_dir().join("daemon.log").display().to_string()
}

//! The CLI's side of the daemon socket: connect (starting a daemon when none runs) and ask.
//!
//! Blocking and small on purpose: `tether exec` pays for every millisecond here.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Connects to the running daemon, or starts one and waits for it.
pub fn connect() -> anyhow::Result<UnixStream> {
    let socket = crate::paths::socket();
    if let Ok(s) = UnixStream::connect(&socket) {
        return Ok(s);
    }
    let exe = std::env::current_exe().context("finding the tether executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("daemon").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the tether daemon")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = UnixStream::connect(&socket) {
            // Reap the starter in the background when it was the one that stayed.
            std::thread::spawn(move || child.wait());
            return Ok(s);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Another daemon won the start-up race; it will appear shortly.
            if !status.success() {
                bail!("the tether daemon exited at start ({status}); see `tether logs` ({})", log_hint());
            }
        }
        if Instant::now() > deadline {
            bail!("the tether daemon did not come up within 10 s at {}; see {}", socket.display(), log_hint());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn log_hint() -> String {
    crate::paths::state_dir().join("daemon.log").display().to_string()
}

/// Sends one request and returns its result, or the daemon's error as an error.
pub fn request(stream: &mut UnixStream, method: &str, params: Value) -> anyhow::Result<Value> {
    let mut line = json!({"method": method, "params": params}).to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).context("sending to the tether daemon")?;
    let mut answer = String::new();
    BufReader::new(&*stream).read_line(&mut answer).context("reading from the tether daemon")?;
    if answer.is_empty() {
        bail!("the tether daemon closed the connection; see {}", log_hint());
    }
    let mut v: Value = serde_json::from_str(&answer).context("the daemon's answer")?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        bail!("{err}");
    }
    Ok(v["result"].take())
}

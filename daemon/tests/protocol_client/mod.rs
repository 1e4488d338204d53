//! A scripted editor-protocol client for the tests: LSP framing over the daemon's real socket
//! (or a `tether lsp` bridge's stdio), blocking, with time limits everywhere so a hang fails the
//! test instead of blocking it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::World;

pub fn socket_path(world: &World) -> PathBuf {
    world.dir.join("run/tether").join(format!("daemon-v{}.sock", env!("CARGO_PKG_VERSION_MAJOR")))
}

/// A `tether daemon` the test started; stopped (SIGTERM) and reaped when dropped.
pub struct Daemon {
    pub child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tether daemon` for `world` (with extra environment) and waits for its socket.
pub fn start_daemon(world: &World, env: &[(&str, &str)]) -> Daemon {
    let mut cmd = world.tether();
    cmd.arg("daemon").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_daemon(world, cmd)
}

/// Spawns `cmd` (a `tether daemon` command of `world`) and waits for its socket.
pub fn spawn_daemon(world: &World, mut cmd: Command) -> Daemon {
    let child = cmd.spawn().expect("spawn tether daemon");
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(socket_path(world)).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not come up\n{}", world.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    Daemon { child }
}

pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads one framed message; `None` at end of stream.
pub fn read_frame(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            length = v.trim().parse().ok();
        }
    }
    let mut body = vec![0u8; length?];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn reader_thread(mut r: impl BufRead + Send + 'static) -> std::sync::mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        loop {
            let m = read_frame(&mut r);
            let end = m.is_none();
            if tx.send(m).is_err() || end {
                break;
            }
        }
    });
    rx
}

/// The two ends a client talks through.
enum Pipe {
    Socket(UnixStream),
    Bridge(Child),
}

pub struct Client {
    pipe: Pipe,
    /// Messages as a reader thread gets them (`None`: the stream ended).
    messages: std::sync::mpsc::Receiver<Option<Vec<u8>>>,
    /// How long to wait for any one message.
    pub patience: Duration,
    next_id: i64,
    /// Notifications (and server requests) read while waiting for something else.
    pub inbox: Vec<Value>,
}

impl Client {
    /// A client on the daemon's socket (which must run).
    pub fn connect(world: &World) -> Client {
        let stream = UnixStream::connect(socket_path(world)).expect("connect to the daemon socket");
        let messages = reader_thread(BufReader::new(stream.try_clone().unwrap()));
        Client::new(Pipe::Socket(stream), messages)
    }

    /// A client through a `tether lsp` bridge process.
    pub fn bridge(world: &World, env: &[(&str, &str)]) -> Client {
        let mut cmd = world.tether();
        cmd.arg("lsp").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tether lsp");
        let stdout = child.stdout.take().unwrap();
        let messages = reader_thread(BufReader::new(stdout));
        Client::new(Pipe::Bridge(child), messages)
    }

    fn new(pipe: Pipe, messages: std::sync::mpsc::Receiver<Option<Vec<u8>>>) -> Client {
        Client { pipe, messages, patience: Duration::from_secs(60), next_id: 0, inbox: Vec::new() }
    }

    pub fn stream(&self) -> &UnixStream {
        match &self.pipe {
            Pipe::Socket(s) => s,
            Pipe::Bridge(_) => panic!("not a socket client"),
        }
    }

    pub fn child(&mut self) -> &mut Child {
        match &mut self.pipe {
            Pipe::Bridge(c) => c,
            Pipe::Socket(_) => panic!("not a bridge client"),
        }
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.pipe {
            Pipe::Socket(s) => s.write_all(bytes),
            Pipe::Bridge(c) => {
                let stdin = c.stdin.as_mut().unwrap();
                stdin.write_all(bytes)?;
                stdin.flush()
            }
        }
    }

    pub fn send(&mut self, msg: &Value) {
        self.write_raw(&frame(msg.to_string().as_bytes())).expect("send to the daemon");
    }

    /// The next message, answering server requests (`window/workDoneProgress/create`) on the way.
    pub fn next_message(&mut self) -> Option<Value> {
        self.next_message_within(self.patience)
    }

    /// Whether the stream ends within `limit` (messages before the end are kept in the inbox).
    pub fn ends_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.messages.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Some(body)) => self.inbox.push(serde_json::from_slice(&body).expect("JSON")),
                Ok(None) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// The next message within `limit`; `None` when the stream ended or nothing came.
    pub fn next_message_within(&mut self, limit: Duration) -> Option<Value> {
        let body = self.messages.recv_timeout(limit).ok()??;
        let msg: Value = serde_json::from_slice(&body).expect("the daemon sends JSON");
        if msg.get("method").is_some() && msg.get("id").is_some() {
            let answer = json!({"jsonrpc": "2.0", "id": msg["id"], "result": null});
            self.send(&answer);
        }
        Some(msg)
    }

    /// Sends a request and waits for its answer: `Ok(result)` or `Err(error object)`.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.wait_answer(id)
    }

    pub fn wait_answer(&mut self, id: i64) -> Result<Value, Value> {
        loop {
            let msg = self.next_message().unwrap_or_else(|| panic!("no answer to request {id}"));
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                return match msg.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(msg["result"].clone()),
                };
            }
            self.inbox.push(msg);
        }
    }

    /// Calls and expects success.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        self.call(method, params).unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// `initialize` + `initialized`; returns the initialize result.
    pub fn initialize(&mut self, params: Value) -> Value {
        let mut p = json!({"processId": null, "capabilities": {}});
        if let (Some(p), Some(extra)) = (p.as_object_mut(), params.as_object()) {
            p.extend(extra.clone());
        }
        let result = self.ok("initialize", p);
        self.notify("initialized", json!({}));
        // Notifications are handled in order before the next message is read: once this answer
        // is here, the daemon has taken `initialized` (session notifications start there), so a
        // change another client causes from now on reaches this one.
        self.ok("tether/sessions", Value::Null);
        result
    }

    /// Waits (up to `limit`) for a notification of `method` that `pred` accepts; looks in the
    /// inbox first. Notifications it passes over stay in the inbox.
    pub fn wait_for(&mut self, method: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.inbox.iter().position(|m| m["method"] == method && pred(&m["params"])) {
            return self.inbox.remove(i);
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {method} notification within {limit:?}; got {:#?}", self.inbox);
            let Some(msg) = self.next_message_within(left) else {
                panic!("no {method} notification within {limit:?} (or the stream ended); got {:#?}", self.inbox)
            };
            if msg["method"] == method && pred(&msg["params"]) {
                return msg;
            }
            self.inbox.push(msg);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Pipe::Socket(s) = &self.pipe {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Pipe::Bridge(c) = &mut self.pipe {
            drop(c.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

//! Shared by the incoming-traffic tests (local pods and Kubernetes targets): a local HTTP
//! server run under `tether exec` that reports what `accept` and `getpeername` said, and a
//! client that talks to the pod from its own network namespace.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tether_testkit::{ClientNetns, Pod};

use crate::common::{World, run, text};

/// A threaded HTTP/1.1 keep-alive server that reports what `accept` and `getpeername` said.
/// Commands on stdin: `close` (stop listening), `listen` (listen again), `exit`.
pub const SERVER: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
def make():
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", port))
    l.listen(64)
    print("listening %d" % l.getsockname()[1], flush=True)
    threading.Thread(target=serve, args=(l,), daemon=True).start()
    return l
def serve(l):
    while True:
        try:
            c, a = l.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(c, a), daemon=True).start()
def handle(c, a):
    try:
        gp = "%s:%d" % c.getpeername()[:2]
    except OSError:
        gp = "?"
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                c.close()
                return
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        path = head.split(b" ")[1].decode()
        print("request %s accept %s:%d getpeername %s" % (path, a[0], a[1], gp), flush=True)
        body = ("local program %s from %s:%d\n" % (path, a[0], a[1])).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
l = make()
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "close":
        l.shutdown(socket.SHUT_RDWR)
        l.close()
        print("closed", flush=True)
    elif cmd == "listen":
        l = make()
    elif cmd == "exit":
        break
"#;

/// A program under `tether exec`, its output read line by line.
pub struct Program {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Program {
    /// `tether exec --target pid:N -- PROGRAM` for a local pod.
    pub fn start(w: &World, pod: &Pod, program: &[&str]) -> Program {
        Program::spawn(w.tether(), w, &format!("pid:{}", pod.pid), program)
    }

    /// `tether exec --target TARGET -- PROGRAM` from the `tether` command given (one with a
    /// kubeconfig, ...), with the project's `tether.json` when there is one.
    pub fn spawn(mut cmd: Command, w: &World, target: &str, program: &[&str]) -> Program {
        cmd.arg("exec").arg("--target").arg(target);
        let config = w.project.join("tether.json");
        if config.exists() {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("--").args(program);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let (tx, lines) = mpsc::channel();
        for out in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
        }
        Program { stdin: child.stdin.take(), child, lines, seen: Vec::new() }
    }

    /// [`SERVER`] on `port` for a local pod, once it listens.
    pub fn python(w: &World, pod: &Pod, port: u16) -> Program {
        Program::python_at(w.tether(), w, &format!("pid:{}", pod.pid), port)
    }

    /// [`SERVER`] on `port` under `tether exec --target TARGET`, once it listens.
    pub fn python_at(tether: Command, w: &World, target: &str, port: u16) -> Program {
        let python = tether_testkit::programs::python3();
        let python = python.to_str().expect("a UTF-8 path");
        let mut p = Program::spawn(tether, w, target, &[python, "-c", SERVER, &port.to_string()]);
        p.expect("listening", &w.log());
        p
    }

    /// Waits (at most 60 s: a loaded 2-core machine is slow, the line comes or the test fails)
    /// for a line containing `what`.
    pub fn expect(&mut self, what: &str, log: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        if let Some(l) = self.seen.iter().find(|l| l.contains(what)) {
            let l = l.clone();
            self.seen.retain(|x| *x != l);
            return l;
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(l) => self.seen.push(l),
                Err(_) => break,
            }
        }
        panic!("no line with {what:?}; output so far:\n{}\n--- daemon log\n{log}", self.seen.join("\n"));
    }

    /// Waits (at most 30 s) until a thread of the program (the `tether exec` process or one of
    /// its descendants) is inside `accept`/`accept4` (`/proc/PID/task/TID/syscall`): with
    /// incoming traffic on, that call waits in the daemon.
    pub fn wait_in_accept(&self) {
        let wanted = [libc::SYS_accept, libc::SYS_accept4].map(|n| n.to_string());
        let in_accept = || {
            let mut pids = vec![self.child.id()];
            while let Some(pid) = pids.pop() {
                let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
                for task in tasks.flatten() {
                    let call = std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
                    if call.split_whitespace().next().is_some_and(|n| wanted.iter().any(|w| w == n)) {
                        return Some(());
                    }
                    let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                    pids.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
                }
            }
            None
        };
        assert!(eventually(Duration::from_secs(30), in_accept).is_some(), "the program never waited in accept");
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client connection from the client namespace.
pub struct Conn(pub TcpStream);

impl Conn {
    pub fn open(client: &ClientNetns, to: &str) -> Conn {
        let to: SocketAddr = to.parse().unwrap();
        let s = client.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(5))).unwrap().expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn(s)
    }

    /// One request on this connection; the response body.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> String {
        self.try_get(path, headers).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<String, String> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: web\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.0.write_all(req.as_bytes()).map_err(|e| format!("sending {path}: {e}"))?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match self.0.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => {
                    return Err(format!(
                        "response to {path} ended early ({other:?}): {}",
                        String::from_utf8_lossy(&head)
                    ));
                }
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .ok_or_else(|| format!("no content-length in {head}"))?;
        let mut body = vec![0u8; len];
        self.0.read_exact(&mut body).map_err(|e| format!("body of {path}: {e}"))?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// A request on a new connection.
pub fn get(client: &ClientNetns, to: &str, path: &str, headers: &[(&str, &str)]) -> String {
    Conn::open(client, to).get(path, headers)
}

/// A request on a new connection that may fail (short timeout).
pub fn try_get(client: &ClientNetns, to: &str, path: &str) -> Option<String> {
    let to: SocketAddr = to.parse().unwrap();
    let s = client.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(1))).ok()?.ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    Conn(s).try_get(path, &[]).ok()
}

pub const WEB: &str = "198.18.0.10:80";

pub fn nft_tables(pod: &Pod) -> String {
    let out = Command::new("ip").args(["netns", "exec", &pod.netns, "nft", "list", "tables"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Retries `f` for up to `within`, returning its first `Some`.
pub fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Listens on 127.0.0.1:3000 for half a second, then prints `listened`.
pub const LISTEN_3000: &str = "import socket, time\n\
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
    s.bind(('127.0.0.1', 3000)); s.listen(); time.sleep(0.5); print('listened')";

/// `tether status --json`, run with `tether` (a command of the test's world: its daemon, its
/// environment).
pub fn status(mut tether: Command) -> serde_json::Value {
    let out = run(tether.args(["status", "--json"]));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)))
}

/// The most incoming connections any session of `status` counts.
pub fn incoming_connections(status: &serde_json::Value) -> u64 {
    let sessions = status["sessions"].as_array().expect("a session list");
    sessions.iter().map(|s| s["counters"]["incomingConnections"].as_u64().unwrap_or(0)).max().unwrap_or(0)
}

/// `tether status` shows one `port-not-served` diagnostic for `port`, naming the target's
/// `served` port and `port_mapping` as the fix (waits up to 5 s: the check follows `listen`).
pub fn assert_port_not_served(tether: impl Fn() -> Command, port: u16, served: u16) {
    let found = eventually(Duration::from_secs(5), || {
        let v = status(tether());
        let found: Vec<serde_json::Value> = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["diagnostics"].as_array().cloned().unwrap_or_default())
            .filter(|d| d["id"] == "port-not-served")
            .collect();
        (!found.is_empty()).then_some(found)
    });
    let found = found.expect("a port-not-served diagnostic in `tether status`");
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = &found[0];
    let message = d["message"].as_str().unwrap();
    assert!(message.contains(&format!("port {port}")) && message.contains(&served.to_string()), "{d:#}");
    assert!(d["fix"]["description"].as_str().unwrap().contains("port_mapping"), "{d:#}");
}

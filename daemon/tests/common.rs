//! Shared by the end-to-end tests: a private daemon per test and a local pod to target.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tether_testkit::{Pod, PodSpec};

/// A private tether world: its own runtime, state and data directories, so its daemon is its
/// own; the daemon is stopped when this drops.
///
/// Everything runs inside a "laptop" network namespace that has only a loopback interface, so a
/// connection that tether failed to send to the target fails at once instead of leaving the
/// machine.
pub struct World {
    pub dir: PathBuf,
    pub project: PathBuf,
    pub laptop: String,
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl World {
    pub fn new() -> World {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("tether-e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let project = dir.join("project");
        std::fs::create_dir_all(&project).unwrap();
        let laptop = format!("tether-laptop-{}-{n}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &laptop]).output();
        let ok = Command::new("ip").args(["netns", "add", &laptop]).status().unwrap().success()
            && Command::new("ip").args(["-n", &laptop, "link", "set", "lo", "up"]).status().unwrap().success();
        assert!(ok, "creating the laptop network namespace {laptop}");
        World { dir, project, laptop }
    }

    /// `tether` inside the laptop namespace.
    pub fn tether(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.laptop, env!("CARGO_BIN_EXE_tether")]);
        cmd.env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .env("XDG_STATE_HOME", self.dir.join("state"))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .env_remove("TETHER_SOCKET")
            .current_dir(&self.project);
        cmd
    }

    /// `tether exec --target pid:<pod> [extra] -- program...`
    pub fn exec(&self, pod: &Pod, extra: &[&str], program: &[&str]) -> Output {
        let mut cmd = self.tether();
        cmd.arg("exec").arg("--target").arg(format!("pid:{}", pod.pid)).args(extra).arg("--").args(program);
        run(&mut cmd)
    }

    pub fn config(&self, json: &str) -> PathBuf {
        let p = self.project.join("tether.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("state/tether/daemon.log")).unwrap_or_default()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.tether().args(["daemon", "stop"]).output();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip").args(["netns", "del", &self.laptop]).output();
    }
}

/// Runs a command with a time limit, so that a hang fails the test instead of blocking it.
pub fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        for _ in 0..600 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if unsafe { libc::kill(pid as i32, 0) } != 0 {
                return false;
            }
        }
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        true
    });
    let out = child.wait_with_output().expect("wait");
    drop(watchdog);
    out
}

pub fn text(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub const POD_SECRET: &str = "only-in-the-pod-7d1c";
pub const POD_FILE: &str = "/app/config.txt";
pub const POD_FILE_TEXT: &str = "pod config: mode=cluster\n";

/// The standard pod of these tests, not yet started: a variable, a file and a hosts entry only
/// the pod has.
pub fn pod_spec(name: &str) -> PodSpec {
    PodSpec::new(name)
        .env("POD_ONLY", POD_SECRET)
        .env("SHARED", "from-pod")
        .file(POD_FILE, POD_FILE_TEXT)
        .file("/app/data/a.txt", "A")
        .file("/app/data/b.txt", "B")
        .host("only-in-hosts", std::net::Ipv4Addr::new(198, 18, 0, 10))
}

/// The standard pod, started.
pub fn pod(name: &str) -> Pod {
    assert!(!Path::new(POD_FILE).exists(), "{POD_FILE} must not exist on this machine for these tests");
    pod_spec(name).start().expect("starting a local pod")
}

/// The probes' subcommands (testkit's Go and C probes) and what they must print in a pod.
pub const PROBE_ARGS: &[&str] = &[
    "env",
    "POD_ONLY",
    "cat",
    POD_FILE,
    "resolve",
    "web.svc.cluster.local",
    "resolve",
    "only-in-hosts",
    "get",
    "http://web.svc.cluster.local/",
    "udp",
    "198.18.0.11:7",
    "ping",
];
pub const PROBE_EXPECT: &[&str] = &[
    "resolve web.svc.cluster.local 198.18.0.10",
    "resolve only-in-hosts 198.18.0.10",
    "peer 198.18.0.10:80",
    "udp 198.18.0.11:7 ping",
];

/// A probe's command line.
pub fn probe(path: PathBuf) -> Vec<String> {
    std::iter::once(path.to_string_lossy().into_owned()).chain(PROBE_ARGS.iter().map(|s| s.to_string())).collect()
}

/// The same checks in Python (prints the same lines as the probes; the UDP line shows the
/// answer's source address as `recvfrom` reports it).
pub const PYTHON: &str = r#"
import os, socket
print("POD_ONLY=" + os.environ.get("POD_ONLY", "unset"))
print(open("/app/config.txt").read(), end="")
print("resolve web.svc.cluster.local", socket.gethostbyname("web.svc.cluster.local"))
print("resolve only-in-hosts", socket.gethostbyname("only-in-hosts"))
s = socket.create_connection(("web.svc.cluster.local", 80), timeout=10)
s.sendall(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print("peer %s:%d" % s.getpeername())
print(data.decode().split("\r\n\r\n", 1)[1], end="")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(b"ping", ("198.18.0.11", 7))
data, source = u.recvfrom(100)
print("udp %s:%d %s" % (source[0], source[1], data.decode()))
"#;

/// Asserts that `out` succeeded and printed every one of `wanted`.
pub fn expect_all(out: &Output, wanted: &[&str]) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&&str> = wanted.iter().filter(|w| !stdout.contains(**w)).collect();
    assert!(out.status.success() && missing.is_empty(), "missing {missing:?}\n{}", text(out));
}

//! Real pods for the agent's tests: a network namespace with an address only it has
//! (198.18.0.10 on a dummy or veth interface), a target process inside it with its own environment,
//! services that listen only there, and the real `tether-agent` binary. Everything started here
//! is stopped by a Drop guard (pid-based kill, `ip netns del`), also when a test panics.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tether_protocol::agent::agent_client::AgentClient;
use tonic::codegen::InterceptedService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

pub const POD_IP: &str = "198.18.0.10";
pub const TOKEN: &str = "test-token-5f2a9c";

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!("tether-agent-t-{}-{}{tag}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst))
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run command");
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace with `lo` up and 198.18.0.10/24 on its own interface.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let ns = Netns { name: unique("") };
        sh(&["ip", "netns", "add", &ns.name]);
        sh(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        // A dummy interface where the kernel has the module, else a veth pair (as in a pod).
        let dummy = Command::new("ip").args(["-n", &ns.name, "link", "add", "pod0", "type", "dummy"]).output();
        if !dummy.map(|o| o.status.success()).unwrap_or(false) {
            sh(&["ip", "-n", &ns.name, "link", "add", "pod0", "type", "veth", "peer", "name", "pod0-peer"]);
            sh(&["ip", "-n", &ns.name, "link", "set", "pod0-peer", "up"]);
        }
        sh(&["ip", "-n", &ns.name, "addr", "add", &format!("{POD_IP}/24"), "dev", "pod0"]);
        sh(&["ip", "-n", &ns.name, "link", "set", "pod0", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path()).unwrap().ino()
    }

    /// Runs `f` on a fresh thread that has entered this namespace (sockets made there stay there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = File::open(path).unwrap();
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A child process killed (by pid) and reaped on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// Waits until `pid` has exec'd a program whose name ends with `suffix` (so its namespaces and
/// root are the final ones).
fn wait_exec(pid: i32, suffix: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe"))
            && exe.to_string_lossy().ends_with(suffix)
        {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} never exec'd {suffix}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `sleep 1000` in the namespace (or in ours), with `POD_ONLY=yes` in its environment.
pub fn target(ns: Option<&Netns>) -> Proc {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name, "sleep", "1000"]);
            c
        }
        None => {
            let mut c = Command::new("sleep");
            c.arg("1000");
            c
        }
    };
    let child = cmd.env("POD_ONLY", "yes").stdin(Stdio::null()).spawn().expect("start target");
    let p = Proc { child };
    wait_exec(p.pid(), "sleep");
    p
}

/// A tiny root file system: `bin/busybox` (static) plus the given files and symlinks.
pub struct RootDir {
    pub path: PathBuf,
}

impl RootDir {
    pub fn new(files: &[(&str, &str)], links: &[(&str, &str)]) -> RootDir {
        let path = std::env::temp_dir().join(unique("-root"));
        std::fs::create_dir_all(path.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", path.join("bin/busybox")).expect("copy /bin/busybox (busybox-static)");
        for (name, content) in files {
            let p = path.join(name.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        for (name, to) in links {
            let p = path.join(name.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(to, p).unwrap();
        }
        RootDir { path }
    }

    /// `chroot DIR /bin/busybox sleep 1000`, in the namespace if one is given.
    pub fn target(&self, ns: Option<&Netns>) -> Proc {
        let dir = self.path.to_str().unwrap();
        let mut args: Vec<&str> = vec![];
        if let Some(ns) = ns {
            args.extend(["ip", "netns", "exec", &ns.name]);
        }
        args.extend(["chroot", dir, "/bin/busybox", "sleep", "1000"]);
        let child = Command::new(args[0])
            .args(&args[1..])
            .env("POD_ONLY", "yes")
            .stdin(Stdio::null())
            .spawn()
            .expect("start chroot target");
        let p = Proc { child };
        wait_exec(p.pid(), "busybox");
        p
    }
}

impl Drop for RootDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A TCP server on 198.18.0.10:`port` inside the namespace: greets, then echoes until EOF.
pub struct EchoServer {
    fd: i32,
    _listener: Arc<TcpListener>,
}

pub const GREETING: &[u8] = b"hello from the pod\n";

impl EchoServer {
    pub fn start(ns: &Netns, port: u16) -> EchoServer {
        let listener = Arc::new(ns.run(move || TcpListener::bind((POD_IP, port)).expect("bind in the pod")));
        let l = listener.clone();
        std::thread::spawn(move || {
            while let Ok((mut conn, _)) = l.accept() {
                std::thread::spawn(move || {
                    let _ = conn.write_all(GREETING);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = conn.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        EchoServer { fd: listener.as_raw_fd(), _listener: listener }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // Wakes the accept loop, which then ends.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }
}

/// A UDP socket on 198.18.0.10:`port` inside the namespace, served by `handler` (reply or not).
pub fn udp_server(ns: &Netns, port: u16, handler: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static) {
    let sock = ns.run(move || UdpSocket::bind((POD_IP, port)).expect("bind udp in the pod"));
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if let Some(reply) = handler(&buf[..n]) {
                let _ = sock.send_to(&reply, from);
            }
        }
    });
}

/// A running `tether-agent`.
pub struct Agent {
    pub proc: Proc,
    pub listen: String,
    pub fd_socket: String,
    pub pid: u32,
    pub stderr: Arc<Mutex<String>>,
}

pub fn agent_command(target_pid: i32, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether-agent"));
    cmd.args(["--target-pid", &target_pid.to_string(), "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("TETHER_AGENT_TOKEN")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null());
    cmd
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut b = b.lock().unwrap();
            b.push_str(&line);
            b.push('\n');
        }
    });
    buf
}

impl Agent {
    pub fn start(target_pid: i32, extra: &[&str]) -> Agent {
        let mut child = agent_command(target_pid, extra)
            .env("TETHER_AGENT_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tether-agent");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let proc = Proc { child };
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no startup line; stderr: {}", stderr.lock().unwrap()));
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("startup line {line:?} is not JSON ({e}); stderr: {}", stderr.lock().unwrap()));
        Agent {
            listen: v["listen"].as_str().unwrap().to_string(),
            fd_socket: v["fd_socket"].as_str().unwrap().to_string(),
            pid: v["pid"].as_u64().unwrap() as u32,
            proc,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub async fn client(&self, token: Option<&str>) -> Client {
        let channel = Channel::from_shared(format!("http://{}", self.listen))
            .unwrap()
            .connect()
            .await
            .expect("connect to the agent");
        let header = token.map(|t| format!("Bearer {t}").parse().unwrap());
        AgentClient::new(InterceptedService::new(channel, Bearer(header))).max_decoding_message_size(64 << 20)
    }

    /// Waits (bounded) for the agent to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.proc.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.fd_socket.is_empty() {
            let _ = std::fs::remove_file(&self.fd_socket);
        }
    }
}

#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Client = AgentClient<InterceptedService<Channel, Bearer>>;

/// A fresh fd-socket path under the temp dir.
pub fn fd_socket_path() -> String {
    std::env::temp_dir().join(unique(".sock")).to_str().unwrap().to_string()
}

/// Whether `ip` is an address of the calling thread's network namespace (bind succeeds).
pub fn is_local_address(ip: &str) -> bool {
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    match TcpListener::bind(addr) {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{e}");
            false
        }
    }
}

pub fn exists(p: impl AsRef<Path>) -> bool {
    p.as_ref().exists()
}

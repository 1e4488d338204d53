//! `cargo bench -p tether --bench incoming`: incoming traffic, each figure beside its baseline from
//! the same run (medians; compare within a run).
//!
//! Needs root (network namespaces), gcc and nftables, and a release build of the workspace
//! (`cargo build --workspace --release`). Builds a local pod, a client namespace linked to it by
//! a veth pair (198.19.0.1 -> 198.18.0.x), a "laptop" namespace with only loopback where tether
//! and the local program run, and a small C HTTP server (`incoming.c`). Every request goes to an
//! address inside those namespaces; every load is bounded in requests and in time.
//!
//! 1. steal: requests per second the local server answers through steal, against the same
//!    server binary reached directly by the same client (run bare inside the pod), with a new
//!    connection per request and with keep-alive.
//! 2. mirror: the target's own median latency with a mirroring session attached, against none.
//!    Twice: with everything sharing the two cores, and with the target's node and the
//!    developer's laptop apart as they are in use (the target, its client and the agent on CPU 0;
//!    tether's daemon and the local program, which processes every copy, on CPU 1).
//! 3. steal with an `http_filter`: median latency of requests that do not match (they go on to
//!    the target through the agent), against no session.
//!
//! `INCOMING_BENCH_ONLY=steal,mirror,filter` runs some parts; `diag` adds a row that runs the
//! server under `tether exec` inside the pod, reached directly (what the filter alone costs).

mod common;

use common::median;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use tether_testkit::{ClientNetns, Pod, PodSpec};

const WEB: &str = "198.18.0.10:80";
/// Requests per client thread in one measurement, and the time limit of one measurement.
const PER_THREAD: usize = 1500;
/// Unpaced keep-alive requests are ~10x faster: each thread sends this many, so that one
/// measurement lasts long enough (about half a second) not to be decided by where the scheduler
/// happened to put two client and two server threads.
const PER_THREAD_KEEPALIVE: usize = 15000;
const LIMIT: Duration = Duration::from_secs(20);
/// Side-by-side rounds of the steal measurement.
const ROUNDS: usize = 3;

/// What one load run measured.
struct Load {
    rps: f64,
    median_us: f64,
}

/// Responses that did not come from the benchmark's own server (`ok\n`).
static OTHER_BODIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `threads` client threads in the client namespace, `PER_THREAD` requests each
/// (`PER_THREAD_KEEPALIVE` for unpaced keep-alive) or until `LIMIT`, a new connection per
/// request unless `keepalive`.
fn load(client: &Path, to: &str, threads: usize, keepalive: bool, header: &str) -> Load {
    load_paced(client, to, threads, keepalive, header, None)
}

/// [`load`], each thread starting a request at most every `pace` (a steady, moderate load).
fn load_paced(client: &Path, to: &str, threads: usize, keepalive: bool, header: &str, pace: Option<Duration>) -> Load {
    let to: SocketAddr = to.parse().unwrap();
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let ns = client.to_path_buf();
            let header = header.to_string();
            std::thread::spawn(move || {
                let f = std::fs::File::open(&ns).unwrap();
                assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
                let req = format!("GET /bench HTTP/1.1\r\nHost: web\r\n{header}\r\n");
                let count = if keepalive && pace.is_none() { PER_THREAD_KEEPALIVE } else { PER_THREAD };
                let mut lat = Vec::with_capacity(count);
                let mut conn: Option<TcpStream> = None;
                let t0 = Instant::now();
                for i in 0..count {
                    if t0.elapsed() > LIMIT {
                        break;
                    }
                    if let Some(p) = pace
                        && let Some(wait) = (t0 + p * i as u32).checked_duration_since(Instant::now())
                    {
                        std::thread::sleep(wait);
                    }
                    let s = Instant::now();
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => {
                            let c = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connect");
                            c.set_nodelay(true).unwrap();
                            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            conn.insert(c)
                        }
                    };
                    c.write_all(req.as_bytes()).expect("send");
                    let ok = read_response(c);
                    lat.push(s.elapsed().as_secs_f64() * 1e6);
                    if !ok {
                        OTHER_BODIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if !keepalive {
                        conn = None;
                    }
                }
                lat
            })
        })
        .collect();
    let lat: Vec<f64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let secs = start.elapsed().as_secs_f64();
    Load { rps: lat.len() as f64 / secs, median_us: median(lat) }
}

/// Reads one response with a Content-Length body.
fn read_response(c: &mut TcpStream) -> bool {
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(1) => head.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => panic!("response ended early: {other:?} {}", String::from_utf8_lossy(&head)),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .expect("content-length");
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    body == b"ok\n"
}

struct Bench {
    dir: PathBuf,
    laptop: String,
    tether: PathBuf,
    server: PathBuf,
    pod_pid: u32,
}

impl Bench {
    fn tether(&self) -> Command {
        let laptop = PathBuf::from(format!("/var/run/netns/{}", self.laptop));
        common::private_tether(&self.tether, &self.dir, &laptop)
    }

    /// The C server under `tether exec` with `config`, once it listens.
    fn serve(&self, config: &str, port: u16) -> Server {
        let path = self.dir.join(format!("tether-{port}.json"));
        std::fs::write(&path, config).unwrap();
        let mut cmd = self.tether();
        cmd.args(["exec", "--target", &format!("pid:{}", self.pod_pid), "--config"])
            .arg(&path)
            .arg("--")
            .arg(&self.server)
            .arg(port.to_string());
        wait_listening(cmd)
    }
}

/// A server process, killed when dropped (also when the benchmark fails).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(mut cmd: Command) -> Server {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let server = Server(child);
    assert!(line.starts_with("listening"), "the server did not start: {line:?}");
    server
}

fn stop(s: Server) {
    drop(s);
}

/// Waits until requests to the pod's port reach the pod's own server again.
fn wait_target(client: &ClientNetns) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let ok = client
            .run(|| -> Option<bool> {
                let mut c = TcpStream::connect_timeout(&WEB.parse().unwrap(), Duration::from_secs(1)).ok()?;
                c.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
                c.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n").ok()?;
                let mut s = String::new();
                c.read_to_string(&mut s).ok()?;
                Some(s.contains("hello from pod"))
            })
            .ok()
            .flatten()
            .unwrap_or(false);
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the pod's port did not come back");
}

/// Puts the target's node on one CPU and the developer's laptop on the other, `(node, laptop)`,
/// or lets everything use every CPU again (`None`). The node: this process's threads (the load
/// client and the pod's services) and the agent; the laptop: the daemon and the programs under
/// `tether exec`. A machine with one CPU is left alone.
fn place_node_and_laptop(b: &Bench, cpus: Option<(usize, usize)>) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 2 {
        return;
    }
    let set = |pid: &str, cpu: Option<usize>| {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return };
        let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for c in 0..n {
            if cpu.is_none_or(|cpu| cpu == c) {
                unsafe { libc::CPU_SET(c, &mut mask) };
            }
        }
        for t in tasks.flatten() {
            if let Ok(tid) = t.file_name().to_string_lossy().parse::<i32>() {
                unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &mask) };
            }
        }
    };
    let (node, laptop) = match cpus {
        Some((node, laptop)) => (Some(node), Some(laptop)),
        None => (None, None),
    };
    set("self", node);
    let agent = b.tether.with_file_name("tether-agent");
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else { continue };
        if exe == agent {
            set(&pid, node);
        } else if exe == b.tether || exe == b.server {
            set(&pid, laptop);
        }
    }
}

fn main() {
    common::require_root("incoming");
    let tether = common::release_tether();
    let dir = std::env::temp_dir().join(format!("tether-bench-in-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = common::build_c("incoming", &["-pthread"]);

    let pod: Pod = PodSpec::new("bench-in").start().expect("pod");
    let client = pod.client_netns().expect("client namespace");
    let cns = client.path();
    // The load client opens tens of thousands of connections: let it reuse TIME_WAIT ports
    // (otherwise finding a free port, not the server, dominates a connection's latency).
    let mut sysctl = Command::new("sysctl");
    sysctl.args(["-qw", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=10000 65000"]);
    tether_testkit::command_in_netns(&mut sysctl, &cns).expect("entering a network namespace");
    assert!(sysctl.status().unwrap().success());
    let laptop = format!("tether-bench-in-laptop-{}", std::process::id());
    Command::new("ip").args(["netns", "add", &laptop]).status().unwrap();
    Command::new("ip").args(["-n", &laptop, "link", "set", "lo", "up"]).status().unwrap();
    let b = Bench { dir: dir.clone(), laptop: laptop.clone(), tether, server: server.clone(), pod_pid: pod.pid };
    let _cleanup = Cleanup(&b);
    let threads = 2;

    let mut table = common::Table::new("figure (medians)", 52);

    // INCOMING_BENCH_ONLY=steal,mirror,filter (any of them) runs only those parts.
    let only = std::env::var("INCOMING_BENCH_ONLY").unwrap_or_default();
    let part = |p: &str| only.is_empty() || only.split(',').any(|o| o == p);

    // 0. Diagnosis (INCOMING_BENCH_ONLY=diag): the server under `tether exec` but run inside the
    //    pod and reached directly (no steal), against bare: the cost of the seccomp filter alone.
    if only.split(',').any(|o| o == "diag") {
        let cfg = dir.join("plain.json");
        std::fs::write(&cfg, r#"{"feature": {"network": {"incoming": "off"}}}"#).unwrap();
        let mut under = common::private_tether(&b.tether, &dir, &pod.netns_path());
        under
            .args(["exec", "--target", &format!("pid:{}", pod.pid), "--config"])
            .arg(&cfg)
            .arg("--")
            .arg(&server)
            .arg("8091");
        let _under = wait_listening(under);
        let mut bare = Command::new(&server);
        bare.arg("8090");
        tether_testkit::command_in_netns(&mut bare, &pod.netns_path()).expect("entering a network namespace");
        let _bare = wait_listening(bare);
        for keepalive in [false, true] {
            load(&cns, "198.18.0.10:8091", 1, keepalive, "");
            load(&cns, "198.18.0.10:8090", 1, keepalive, "");
            let base = load(&cns, "198.18.0.10:8090", threads, keepalive, "");
            let t = load(&cns, "198.18.0.10:8091", threads, keepalive, "");
            table.info(
                &format!("diag: under tether, direct (keep-alive {keepalive})"),
                format!("{:.0}", t.rps),
                format!("{:.0}", base.rps),
                format!("{:.2}x", t.rps / base.rps),
            );
        }
    }

    // 1. Steal: the local server through steal vs the same server binary run bare in the pod.
    if part("steal") {
        let mut direct = Command::new(&server);
        direct.arg("8090");
        tether_testkit::command_in_netns(&mut direct, &pod.netns_path()).expect("entering a network namespace");
        let direct = wait_listening(direct);
        let steal = b.serve(
            r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18090, 80]]}}}}"#,
            18090,
        );
        for (what, keepalive) in [("new connection per request", false), ("keep-alive", true)] {
            // Warm up, then ROUNDS rounds side by side (alternating which goes first, since this
            // machine's load drifts); medians of the rounds.
            load(&cns, WEB, 1, keepalive, "");
            load(&cns, "198.18.0.10:8090", 1, keepalive, "");
            let (mut t, mut base, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                let (a, b) = if round % 2 == 0 {
                    let a = load(&cns, WEB, threads, keepalive, "");
                    (a, load(&cns, "198.18.0.10:8090", threads, keepalive, ""))
                } else {
                    let b = load(&cns, "198.18.0.10:8090", threads, keepalive, "");
                    (load(&cns, WEB, threads, keepalive, ""), b)
                };
                let strays = OTHER_BODIES.swap(0, std::sync::atomic::Ordering::Relaxed);
                assert_eq!(strays, 0, "{strays} answers did not come from the local server");
                ratio.push(a.rps / b.rps);
                t.push(a);
                base.push(b);
            }
            let rps = |v: &[Load]| median(v.iter().map(|l| l.rps).collect());
            let lat = |v: &[Load]| median(v.iter().map(|l| l.median_us).collect());
            let ratio = median(ratio);
            table.goal(
                &format!("steal: requests/s, {what}"),
                format!("{:.0}", rps(&t)),
                format!("{:.0}", rps(&base)),
                format!("{ratio:.2}x"),
                ">= 0.6x",
                ratio >= 0.6,
            );
            table.info(
                &format!("  median latency, {what} (us)"),
                format!("{:.0}", lat(&t)),
                format!("{:.0}", lat(&base)),
                format!("{:+.0} us", lat(&t) - lat(&base)),
            );
        }
        stop(steal);
        stop(direct);
        wait_target(&client);
    }

    // 2. Mirror: the target's own latency with a mirroring session attached, against none. At
    //    a steady 500 requests/s: here the local program that processes every copy shares the
    //    two cores with the target (on a laptop it would not), and a saturated machine would
    //    measure that contention, not the mirror's place in the target's data path (none).
    let pace = Some(Duration::from_millis(2));
    let mut mirror_cases: Vec<(&str, bool, bool)> = Vec::new();
    if part("mirror") {
        for apart in [false, true] {
            mirror_cases.extend([("new connection per request", false, apart), ("keep-alive", true, apart)]);
        }
    }
    for (what, keepalive, apart) in mirror_cases {
        if apart {
            place_node_and_laptop(&b, Some((0, 1)));
        }
        load_paced(&cns, WEB, 1, keepalive, "", pace);
        // ROUNDS rounds of "without, then with a session"; medians of the rounds.
        let (mut with, mut without, mut change) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let base = load_paced(&cns, WEB, 1, keepalive, "", pace);
            let mirror = b.serve(
                r#"{"feature": {"network": {"incoming": {"mode": "mirror", "port_mapping": [[18091, 80]]}}}}"#,
                18091,
            );
            if apart {
                place_node_and_laptop(&b, Some((0, 1)));
            }
            let t = load_paced(&cns, WEB, 1, keepalive, "", pace);
            stop(mirror);
            wait_target(&client);
            change.push((t.median_us / base.median_us - 1.0) * 100.0);
            with.push(t.median_us);
            without.push(base.median_us);
        }
        if apart {
            place_node_and_laptop(&b, None);
        }
        let place = if apart { "node and laptop apart" } else { "one machine" };
        let change = median(change);
        table.goal(
            &format!("mirror: target's latency at 500/s, {what}, {place} (us)"),
            format!("{:.0}", median(with)),
            format!("{:.0}", median(without)),
            format!("{change:+.1}%"),
            "within 10%",
            change < 10.0,
        );
    }

    // 3. Steal with an http_filter: requests that do not match still reach the target.
    if part("filter") {
        let base = load(&cns, WEB, 1, true, "");
        let filtered = b.serve(
            r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18092, 80]],
            "http_filter": {"header": "^x-user: me$"}}}}}"#,
            18092,
        );
        load(&cns, WEB, 1, true, "");
        let t = load(&cns, WEB, 1, true, "");
        let matching = load(&cns, WEB, 1, true, "x-user: me\r\n");
        stop(filtered);
        wait_target(&client);
        table.goal(
            "filtered steal: non-matching request latency (us)",
            format!("{:.0}", t.median_us),
            format!("{:.0}", base.median_us),
            format!("{:+.0} us", t.median_us - base.median_us),
            "< +200 us",
            t.median_us - base.median_us < 200.0,
        );
        table.info(
            "  matching requests, to the local server (us)",
            format!("{:.0}", matching.median_us),
            String::new(),
            String::new(),
        );
    }
    let code = table.finish();
    drop(_cleanup);
    std::process::exit(code);
}

/// Stops the daemon and removes the laptop namespace and the directory, also after a panic.
struct Cleanup<'a>(&'a Bench);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.0.dir.join("state/tether/daemon.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- daemon log (last lines)\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
        }
        let _ = self.0.tether().args(["daemon", "stop"]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.0.laptop]).status();
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}

//! `tether bench-protocol`: the editor protocol's speed, each figure beside its baseline from the
//! same run. Run the release build as root (it builds a local pod as the target):
//! `cargo build --release --workspace && sudo target/release/tether bench-protocol`.
//!
//! - `tether/prepareLaunch` for a local target with a warm agent (goal: median under 20 ms),
//!   beside the round trip of a request that does no work;
//! - the bridge's added latency per message (goal: under 1 ms): the same request through
//!   `tether lsp` and directly on the socket;
//! - the daemon's resident memory when idle (goal: under 30 MiB), fresh and after the work,
//!   beside an idle `tether lsp` process of the same binary.
//!
//! Everything runs in a private runtime directory with its own daemon, stopped at the end.

use std::io::{BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::framing;
use crate::client::{self, Connection};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A client through a `tether lsp` process.
struct Bridge {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    next_id: u64,
}

impl Bridge {
    fn start() -> anyhow::Result<Bridge> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting tether lsp")?;
        let out = BufReader::new(child.stdout.take().context("bridge stdout")?);
        let mut b = Bridge { child, out, next_id: 0 };
        b.call("initialize", json!({"capabilities": {}, "initializationOptions": {"sessionNotifications": false}}))?;
        Ok(b)
    }

    fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        let stdin = self.child.stdin.as_mut().context("bridge stdin")?;
        stdin.write_all(&framing::encode(msg.to_string().as_bytes()))?;
        stdin.flush()?;
        loop {
            let v: Value = serde_json::from_slice(&framing::read_blocking(&mut self.out)?)?;
            if v["id"] == self.next_id {
                return Ok(v["result"].clone());
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A request that does no work (hover on a file that is not a config file).
fn noop() -> Value {
    json!({"textDocument": {"uri": "file:///nonexistent/x.txt"}, "position": {"line": 0, "character": 0}})
}

fn time(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed());
    }
    Ok(median(samples))
}

pub fn run(iterations: usize) -> anyhow::Result<i32> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark builds a local pod (network namespace) and needs root");
    }
    let iterations = iterations.max(5);
    let dir = std::env::temp_dir().join(format!("tether-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("project"))?;
    // SAFETY: set before any thread is started; the daemon and bridges inherit them.
    unsafe {
        std::env::set_var("XDG_RUNTIME_DIR", dir.join("run"));
        std::env::set_var("XDG_STATE_HOME", dir.join("state"));
        std::env::set_var("XDG_DATA_HOME", dir.join("data"));
        std::env::remove_var("TETHER_SOCKET");
    }
    let result = measure(iterations, &dir);
    if let Ok(Some(mut c)) = client::connect_existing() {
        let _ = c.call("tether/stopDaemon", Value::Null);
        let _ = client::wait_until_stopped(Duration::from_secs(10));
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(iterations: usize, dir: &std::path::Path) -> anyhow::Result<i32> {
    let mut conn: Connection = client::connect()?;
    let pid = daemon_pid_of()?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_fresh = rss_kib(pid)?;

    let pod = tether_testkit::PodSpec::new("bench")
        .env("BENCH_VAR", "from-the-pod")
        .file("/app/x.txt", "x")
        .start()
        .context("building the local pod")?;
    let project = dir.join("project");
    let launch = json!({"type": "cppdbg", "request": "launch", "name": "bench", "program": "/bin/true"});
    let params = json!({"launch": launch, "workspaceFolder": project, "target": format!("pid:{}", pod.pid)});

    // Warm the agent, then measure.
    let cold = Instant::now();
    let first = conn.call("tether/prepareLaunch", params.clone())?;
    let cold = cold.elapsed();
    if first["sessionId"].is_null() {
        bail!("prepareLaunch failed: {first:#}");
    }
    conn.call("tether/stopSession", json!({"sessionId": first["sessionId"]}))?;
    let prepare = time(iterations, || {
        let r = conn.call("tether/prepareLaunch", params.clone())?;
        conn.call("tether/stopSession", json!({"sessionId": r["sessionId"]}))?;
        Ok(())
    })?;
    let stop_only = time(iterations, || {
        conn.call("tether/stopSession", json!({"sessionId": "none"}))?;
        Ok(())
    })?;
    let prepare = prepare.saturating_sub(stop_only);
    let floor = time(iterations, || {
        conn.call("textDocument/hover", noop())?;
        Ok(())
    })?;

    let mut bridge = Bridge::start()?;
    let direct = time(iterations * 5, || {
        conn.call("textDocument/hover", noop())?;
        Ok(())
    })?;
    let bridged = time(iterations * 5, || {
        bridge.call("textDocument/hover", noop())?;
        Ok(())
    })?;
    let bridge_rss = rss_kib(bridge.child.id())?;
    drop(bridge);
    drop(conn);
    drop(pod);
    std::thread::sleep(Duration::from_secs(3));
    let rss_after = rss_kib(pid)?;

    let added = bridged.saturating_sub(direct);
    println!("tether bench-protocol ({iterations} iterations, medians; debug build: {})", cfg!(debug_assertions));
    println!(
        "prepareLaunch, local target, warm agent: {:>12}   (goal < 20 ms; cold agent: {}; a request doing no work: {})",
        ms(prepare),
        ms(cold),
        ms(floor)
    );
    println!(
        "bridge added latency per message:        {:>12}   (goal < 1 ms; round trip via tether lsp {} vs direct socket {})",
        ms(added),
        ms(bridged),
        ms(direct)
    );
    println!(
        "daemon RSS when idle:                    {:>12}   (goal < 30 MiB; after the work {}; an idle tether lsp process {})",
        mib(rss_fresh),
        mib(rss_after),
        mib(bridge_rss)
    );
    let ok =
        prepare < Duration::from_millis(20) && added < Duration::from_millis(1) && rss_fresh.max(rss_after) < 30 * 1024;
    println!("{}", if ok { "all goals met" } else { "some goals missed" });
    Ok(if ok { 0 } else { 1 })
}

/// The daemon's pid, from `initialize` on a fresh connection.
fn daemon_pid_of() -> anyhow::Result<u32> {
    let stream = client::connect_or_start()?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}});
    w.write_all(&framing::encode(msg.to_string().as_bytes()))?;
    let v: Value = serde_json::from_slice(&framing::read_blocking(&mut r)?)?;
    let pid = v["result"]["capabilities"]["experimental"]["tether"]["pid"].as_u64().context("no daemon pid")?;
    Ok(pid as u32)
}

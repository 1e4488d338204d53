//! `tether demo`: the main job, shown on a built-in local target.
//!
//! Builds a local "pod" (a network namespace with an HTTP service and a DNS server reachable only
//! inside it, a chroot with its own files, a target process with its own environment), then runs
//! a program with `tether exec` against it, and removes the pod again. Needs root (namespaces).
//!
//! The default program shows each part: the pod's environment, a file only the pod has, a name
//! only its DNS knows, a request from its network, and incoming traffic: a local server on port
//! 8080 (`port_mapping` [[8080, 80]], steal) answers a client that asked the pod's port 80; the
//! demo plays that client from a namespace linked to the pod, as another machine would.
//!
//! Before anything is built the demo checks what it needs (root, `ip`, `nft`, a static
//! busybox, `python3`, `curl`, `getent`) and names every missing piece at once. Whatever
//! happens next (an error, a step that never answers, Ctrl-C) it removes its pod, its client
//! namespace and its config file, and says so.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tether_testkit::{ClientNetns, PodSpec};

const DEFAULT_SCRIPT: &str = r#"
echo "1. environment:  POD_GREETING=$POD_GREETING"
echo "2. remote file:  /app/message.txt says: $(cat /app/message.txt)"
echo "3. DNS:          web.svc.cluster.local is $(getent hosts web.svc.cluster.local | cut -d' ' -f1)"
echo "4. outgoing:     GET http://web.svc.cluster.local/ -> $(curl -s http://web.svc.cluster.local/)"
if command -v python3 >/dev/null; then
  python3 -c "$TETHER_DEMO_SERVER"
else
  echo "5. incoming:     skipped (the local server needs python3)"
fi
"#;

/// The local server of step 5: answers one request, then says what it saw.
const LOCAL_SERVER: &str = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8080)); s.listen()
print(READY, flush=True)
c, peer = s.accept()
request = c.recv(4096).split(b"\r\n")[0].decode()
body = b"answered by the local program\n"
c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
c.close()
print("5. incoming:     the pod's port 80 gave the local server on 8080 `%s` from %s:%d" % (request, peer[0], peer[1]), flush=True)
"#;

/// The line the local server prints once it listens.
const READY: &str = "tether-demo: listening";

/// Steal the pod's port 80 for the local port 8080.
const CONFIG: &str = r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[8080, 80]]}}}}"#;

/// How long step 5's local server has, once the client got its answer, to say what it saw.
const STEP_5_LIMIT: Duration = Duration::from_secs(15);

/// Set by Ctrl-C (SIGINT) or SIGTERM: the demo stops and cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM so that the pod is removed (a handler, not `SIG_IGN`: the programs
/// the demo starts get the default disposition back when they `exec`, and Ctrl-C ends them).
fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe; the
        // sigaction struct is fully initialised (zeroed, then the handler set).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Every tool the demo uses that this machine lacks, with the Debian package that brings it.
fn missing_prerequisites() -> Vec<String> {
    let on_path = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(name).is_file())
    };
    let mut missing = Vec::new();
    if let Err(e) = tether_testkit::programs::busybox() {
        missing.push(format!("{e:#}"));
    }
    for (tool, package, why) in [
        ("ip", "iproute2", "the pod's network namespace"),
        ("nft", "nftables", "step 5: the redirect of the pod's port 80"),
        ("python3", "python3", "step 5: the local server"),
        ("curl", "curl", "step 4: the request from the pod's network"),
        ("getent", "libc-bin", "step 3: the DNS lookup"),
    ] {
        if !on_path(tool) {
            missing.push(format!("`{tool}` ({why}): apt-get install {package}"));
        }
    }
    missing
}

pub fn run(program: Vec<OsString>) -> anyhow::Result<i32> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo builds a network namespace and needs root: run it with sudo");
    }
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        bail!("the demo needs what this machine lacks:\n  {}", missing.join("\n  "));
    }
    catch_interrupts();
    let config = std::env::temp_dir().join(format!("tether-demo-{}.json", std::process::id()));
    let result = tour(program, &config);
    let _ = std::fs::remove_file(&config);
    if INTERRUPTED.load(Ordering::SeqCst) {
        println!("interrupted");
    }
    result
}

/// Builds the pod, runs the tour, and removes the pod (its `Drop`), saying so.
fn tour(program: Vec<OsString>, config: &std::path::Path) -> anyhow::Result<i32> {
    let pod = PodSpec::new("demo")
        .env("POD_GREETING", "hello from inside the demo pod")
        .file("/app/message.txt", "this file exists only in the pod")
        .start()
        .context("building the demo pod")?;
    println!("demo pod: pid {} in network namespace {} (root file system {})", pod.pid, pod.netns, pod.root.display());
    println!(
        "on this machine: /app/message.txt exists: {}; web.svc.cluster.local resolves: {}\n",
        std::path::Path::new("/app/message.txt").exists(),
        std::net::ToSocketAddrs::to_socket_addrs(&("web.svc.cluster.local", 80)).is_ok()
    );
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("exec").arg("--target").arg(format!("pid:{}", pod.pid));
    if !program.is_empty() {
        cmd.arg("--").args(program);
        println!("$ tether exec --target pid:{} -- ...", pod.pid);
        let code = cmd.spawn().context("running tether exec").and_then(wait_unless_interrupted);
        drop(pod);
        println!("demo pod removed");
        return code;
    }
    std::fs::write(config, CONFIG).with_context(|| format!("writing {}", config.display()))?;
    let client = pod.client_netns().context("linking a client namespace to the demo pod")?;
    cmd.arg("--config").arg(config).args(["--", "sh", "-c", DEFAULT_SCRIPT]);
    cmd.env("TETHER_DEMO_SERVER", LOCAL_SERVER.replace("READY", &format!("{READY:?}")));
    println!("$ tether exec --target pid:{} --config {} -- ...", pod.pid, config.display());
    let code = run_showing_incoming(cmd, &client);
    drop(client);
    drop(pod);
    println!("\ndemo pod removed (its network namespace, root file system and processes)");
    code
}

/// Waits for `child`; on Ctrl-C it is killed (it may not have got the signal: not every demo
/// runs in a terminal's foreground group).
fn wait_unless_interrupted(mut child: std::process::Child) -> anyhow::Result<i32> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code().unwrap_or(1));
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            let _ = child.kill();
            child.wait()?;
            return Ok(130);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the demo program, echoing its output; when its local server listens, asks the pod's
/// port 80 from the client namespace and shows the answer after the server's own line.
fn run_showing_incoming(mut cmd: Command, client: &ClientNetns) -> anyhow::Result<i32> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().context("running tether exec")?;
    let out = BufReader::new(child.stdout.take().context("tether exec's stdout")?);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut answer: Option<std::io::Result<String>> = None;
    // Once the client has its answer, the local server must report within STEP_5_LIMIT.
    let mut step_5_deadline: Option<Instant> = None;
    let mut failed = false;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            failed = true;
            let _ = child.kill();
            break;
        }
        if step_5_deadline.is_some_and(|d| Instant::now() > d) {
            println!(
                "5. incoming:     the local server on 8080 got nothing within {}s: the pod's port 80 was not \
                 redirected (see `tether logs`)",
                STEP_5_LIMIT.as_secs()
            );
            if let Some(Ok(body)) = answer.take() {
                println!("                 the client at {} got the pod's own answer: {}", client.ip, body.trim());
            }
            failed = true;
            let _ = child.kill();
            break;
        }
        let line = match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if line == READY {
            step_5_deadline = Some(Instant::now() + STEP_5_LIMIT);
            answer = Some(client.run(ask_the_pod).context("entering the client namespace")?);
            continue;
        }
        println!("{line}");
        if line.starts_with("5. incoming") {
            step_5_deadline = None;
            match answer.take() {
                Some(Ok(body)) => println!("                 the client at {} got: {}", client.ip, body.trim()),
                Some(Err(e)) => println!("                 the client at {} got no answer: {e}", client.ip),
                None => {}
            }
        }
    }
    if let Some(Err(e)) = answer {
        println!("5. incoming:     the client at {} got no answer from the pod's port 80: {e}", client.ip);
        failed = true;
        let _ = child.kill();
    }
    let status = child.wait()?;
    Ok(if failed { 1 } else { status.code().unwrap_or(1) })
}

/// `GET /from-a-client` to the pod's 198.18.0.10:80; the body.
fn ask_the_pod() -> std::io::Result<String> {
    let mut c = TcpStream::connect_timeout(&"198.18.0.10:80".parse().unwrap(), Duration::from_secs(5))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(b"GET /from-a-client HTTP/1.0\r\nHost: web\r\n\r\n")?;
    let mut response = String::new();
    c.read_to_string(&mut response)?;
    Ok(response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

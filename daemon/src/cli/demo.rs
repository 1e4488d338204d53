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

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

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

pub fn run(program: Vec<OsString>) -> anyhow::Result<i32> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo builds a network namespace and needs root: run it with sudo");
    }
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
        let status = cmd.status().context("running tether exec")?;
        return Ok(status.code().unwrap_or(1));
    }
    let config = std::env::temp_dir().join(format!("tether-demo-{}.json", std::process::id()));
    std::fs::write(&config, CONFIG).with_context(|| format!("writing {}", config.display()))?;
    let client = pod.client_netns().context("linking a client namespace to the demo pod")?;
    cmd.arg("--config").arg(&config).args(["--", "sh", "-c", DEFAULT_SCRIPT]);
    cmd.env("TETHER_DEMO_SERVER", LOCAL_SERVER.replace("READY", &format!("{READY:?}")));
    println!("$ tether exec --target pid:{} --config {} -- ...", pod.pid, config.display());
    let code = run_showing_incoming(cmd, &client);
    let _ = std::fs::remove_file(&config);
    code
}

/// Runs the demo program, echoing its output; when its local server listens, asks the pod's
/// port 80 from the client namespace and shows the answer after the server's own line.
fn run_showing_incoming(mut cmd: Command, client: &ClientNetns) -> anyhow::Result<i32> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().context("running tether exec")?;
    let out = BufReader::new(child.stdout.take().expect("piped"));
    let mut answer = None;
    for line in out.lines() {
        let line = line?;
        if line == READY {
            answer = Some(client.run(ask_the_pod).context("entering the client namespace")?);
            continue;
        }
        println!("{line}");
        if line.starts_with("5. incoming") {
            match answer.take() {
                Some(Ok(body)) => println!("                 the client at {} got: {}", client.ip, body.trim()),
                Some(Err(e)) => println!("                 the client at {} got no answer: {e}", client.ip),
                None => {}
            }
        }
    }
    if let Some(Err(e)) = answer {
        println!("5. incoming:     the client at {} got no answer from the pod's port 80: {e}", client.ip);
        let _ = child.kill();
    }
    let status = child.wait()?;
    Ok(status.code().unwrap_or(1))
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

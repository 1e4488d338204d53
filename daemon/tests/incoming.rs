//! End to end: incoming traffic. A client in its own network namespace, linked to the pod by a
//! veth pair, talks to the pod's addresses; a local program under `tether exec` listens on a
//! local port and gets the traffic (steal), a copy (mirror), or the matching requests (filter).

mod common;
mod incoming_kit;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use incoming_kit::*;
use tether_testkit::{ClientNetns, Pod};

fn setup(name: &str, config: &str) -> (World, Pod, ClientNetns) {
    let w = World::new();
    w.config(config);
    let pod = pod(name);
    let client = pod.client_netns().expect("client namespace");
    // The pod's own server answers before anything is subscribed.
    assert!(get(&client, WEB, "/", &[]).contains(&format!("hello from pod {name}")));
    (w, pod, client)
}

#[test]
fn steal_gives_the_program_the_real_client_until_it_exits() {
    let (w, pod, client) = setup(
        "in-steal",
        r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18080, 80]]}}}}"#,
    );
    let before = pod.http_hits();
    let mut p = Program::python(&w, &pod, 18080);
    let mut conn = Conn::open(&client, WEB);
    let body = conn.get("/stolen", &[]);
    assert!(body.starts_with("local program /stolen from 198.19.0.1:"), "{body}\n{}", w.log());
    let line = p.expect("request /stolen", &w.log());
    let (accepted, peer) = (line.split(' ').nth(3).unwrap(), line.split(' ').nth(5).unwrap());
    assert!(accepted.starts_with("198.19.0.1:") && accepted == peer, "accept and getpeername: {line}");
    assert!(body.ends_with(&format!("{accepted}\n")));
    // The session counts what its ports gave the program.
    let v = status(w.tether());
    assert!(incoming_connections(&v) >= 1, "{v:#}");
    // Keep-alive on the stolen socket, and a second connection.
    assert!(conn.get("/again", &[]).starts_with("local program /again"));
    assert!(get(&client, WEB, "/second", &[]).starts_with("local program /second"));
    assert_eq!(pod.http_hits(), before, "the target saw none of it");
    assert!(nft_tables(&pod).contains("tether_"), "the agent's table while stealing");

    p.send("exit");
    let _ = p.child.wait();
    let back =
        eventually(Duration::from_secs(5), || try_get(&client, WEB, "/").filter(|b| b.contains("hello from pod")));
    assert!(back.is_some(), "the target serves again after the program exited\n{}", w.log());
    assert!(
        eventually(Duration::from_secs(5), || (!nft_tables(&pod).contains("tether_")).then_some(())).is_some(),
        "no rule of ours is left: {}",
        nft_tables(&pod)
    );
}

#[test]
fn mirror_copies_while_the_target_answers() {
    let (w, pod, client) =
        setup("in-mirror", r#"{"feature": {"network": {"incoming": {"port_mapping": [[18081, 80]]}}}}"#);
    let before = pod.http_hits();
    let mut p = Program::python(&w, &pod, 18081);
    let body = get(&client, WEB, "/mirrored", &[]);
    assert!(body.contains("hello from pod in-mirror; you are 198.19.0.1:"), "{body}");
    let line = p.expect("request /mirrored", &w.log());
    let (accepted, peer) = (line.split(' ').nth(3).unwrap(), line.split(' ').nth(5).unwrap());
    assert!(body.contains(accepted) && accepted == peer, "the copy came from the same client: {line} / {body}");
    assert_eq!(pod.http_hits(), before + 1);
    assert!(!nft_tables(&pod).contains("tether_"), "mirroring needs no rule");
}

#[test]
fn a_header_filter_splits_one_keep_alive_connection() {
    let (w, pod, client) = setup(
        "in-header",
        r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18082, 80]],
            "http_filter": {"header": "^x-user: me$"}}}}}"#,
    );
    let before = pod.http_hits();
    let mut p = Program::python(&w, &pod, 18082);
    let mut conn = Conn::open(&client, WEB);
    assert!(conn.get("/a", &[]).contains("hello from pod"));
    let mine = conn.get("/b", &[("X-User", "me")]);
    assert!(mine.starts_with("local program /b from 198.19.0.1:"), "{mine}\n{}", w.log());
    assert!(conn.get("/c", &[("X-User", "you")]).contains("hello from pod"));
    assert!(conn.get("/d", &[("x-user", "me")]).starts_with("local program /d"));
    assert_eq!(pod.http_hits(), before + 2);
    let line = p.expect("request /b", &w.log());
    assert!(line.contains("getpeername 198.19.0.1:"), "{line}");
}

#[test]
fn a_path_filter_and_non_http_traffic() {
    let (w, pod, client) = setup(
        "in-path",
        r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18083, 80], [17007, 7]],
            "http_filter": {"path": "^/api/"}}}}}"#,
    );
    let mut p = Program::python(&w, &pod, 18083);
    let mut conn = Conn::open(&client, WEB);
    assert!(conn.get("/api/users", &[]).starts_with("local program /api/users"));
    assert!(conn.get("/web/api/", &[]).contains("hello from pod"));
    p.expect("request /api/users", &w.log());
    // The echo port is filtered too; raw bytes still reach the target's echo service.
    let mut echo = Program::python(&w, &pod, 17007);
    let _ = &mut echo;
    let mut s = Conn::open(&client, "198.18.0.11:7").0;
    s.write_all(b"not http at all\n").unwrap();
    let mut got = [0u8; 16];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"not http at all\n");
    assert!(pod.echo_connections() >= 1);
}

/// A child killed (by pid) and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_header_filter_splits_one_h2c_connection() {
    let h2c = tether_testkit::programs::h2c_server().expect("the h2c fixture (needs Go 1.24 or later)");
    let h2c = h2c.to_str().unwrap();
    let (w, pod, client) = setup(
        "in-h2c",
        r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18090, 8080]],
            "http_filter": {"header": "^x-user: me$"}}}}}"#,
    );
    // The pod's own h2c server.
    let mut cmd = Command::new(h2c);
    cmd.args(["serve", "pod", "198.18.0.10:8080"]).stdin(Stdio::null()).stdout(Stdio::piped());
    pod.exec_in_netns(&mut cmd);
    let mut target = Killed(cmd.spawn().expect("the pod's h2c server"));
    let mut out = BufReader::new(target.0.stdout.take().unwrap()).lines();
    let first = out.next().unwrap().unwrap();
    assert!(first.starts_with("listening"), "{first}");
    // Keep reading: a closed pipe would end the server at its next line.
    std::thread::spawn(move || out.for_each(drop));
    let mut p = Program::start(&w, &pod, &[h2c, "serve", "local", "0.0.0.0:18090"]);
    p.expect("listening", &w.log());
    // One connection: mine, theirs, mine again (trailers included).
    let url = |path: &str| format!("http://198.18.0.10:8080{path}");
    let mut get = Command::new(h2c);
    get.arg("get")
        .args([url("/mine?a=1"), "x-user:me".into()])
        .arg(url("/theirs"))
        .args([url("/again"), "x-user:me".into()]);
    client.exec(&mut get).unwrap();
    let out = get.output().expect("the h2c client");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HTTP/2.0 200 local /mine?a=1 HTTP/2.0\ntrailer local reused false\n\
         HTTP/2.0 200 pod /theirs HTTP/2.0\ntrailer pod reused true\n\
         HTTP/2.0 200 local /again HTTP/2.0\ntrailer local reused true\n",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.log()
    );
    p.expect("request /mine?a=1", &w.log());
    p.expect("request /again", &w.log());
}

#[test]
fn a_busy_local_port_still_gets_the_traffic() {
    let (w, pod, client) =
        setup("in-busy", r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18084, 80]]}}}}"#);
    let laptop = std::path::PathBuf::from("/var/run/netns").join(&w.laptop);
    let _busy = tether_testkit::run_in_netns_path(&laptop, || std::net::TcpListener::bind("127.0.0.1:18084"))
        .unwrap()
        .expect("occupy the port in the laptop namespace");
    let python = tether_testkit::programs::python3();
    let mut p = Program::start(&w, &pod, &[python.to_str().unwrap(), "-c", SERVER, "18084"]);
    let line = p.expect("listening", &w.log());
    assert_eq!(line, "listening 18084", "getsockname shows the port the program asked for");
    assert!(get(&client, WEB, "/busy", &[]).starts_with("local program /busy"), "{}", w.log());
}

#[test]
fn stopping_and_restarting_the_listener() {
    let (w, pod, client) = setup(
        "in-restart",
        r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18085, 80]]}}}}"#,
    );
    let mut p = Program::python(&w, &pod, 18085);
    assert!(get(&client, WEB, "/one", &[]).starts_with("local program /one"));
    let mut open = Conn::open(&client, WEB);
    assert!(open.get("/kept", &[]).starts_with("local program /kept"));
    p.send("close");
    p.expect("closed", &w.log());
    let target =
        eventually(Duration::from_secs(30), || try_get(&client, WEB, "/").filter(|b| b.contains("hello from pod")));
    assert!(target.is_some(), "the target serves once the program stopped listening\n{}", w.log());
    // A connection open at that moment finishes where it started.
    assert!(open.get("/still", &[]).starts_with("local program /still"));
    p.send("listen");
    p.expect("listening", &w.log());
    assert!(get(&client, WEB, "/two", &[]).starts_with("local program /two"), "{}", w.log());
}

/// The pid of the agent the daemon started for `pod`.
fn agent_pid(pod: &Pod) -> Option<i32> {
    let wanted = format!("--target-pid\0{}\0", pod.pid);
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("tether-agent") && cmdline.contains(&wanted)).then_some(pid)
    })
}

#[test]
fn kill_9_of_the_agent_gives_the_port_back_at_once() {
    let (w, pod, client) =
        setup("in-kill", r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18086, 80]]}}}}"#);
    let _p = Program::python(&w, &pod, 18086);
    let mut open = Conn::open(&client, WEB);
    assert!(open.get("/before", &[]).starts_with("local program /before"));
    let agent = agent_pid(&pod).expect("the agent's pid");
    assert_eq!(unsafe { libc::kill(agent, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let back = eventually(Duration::from_secs(30), || {
        (!nft_tables(&pod).contains("tether_")
            && try_get(&client, WEB, "/").is_some_and(|b| b.contains("hello from pod")))
        .then_some(())
    });
    assert!(
        back.is_some(),
        "the target does not serve again after {:?}; tables: {}",
        killed.elapsed(),
        nft_tables(&pod)
    );
    // The stolen connection belongs to the program: it goes on.
    assert!(open.get("/after", &[]).starts_with("local program /after"));
}

#[test]
fn a_node_server_listening_on_ipv6_any() {
    let (w, pod, client) =
        setup("in-node", r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18087, 80]]}}}}"#);
    let script = "require('http').createServer((q, r) => r.end(`node ${q.url} ${q.socket.remoteAddress} ${q.socket.remotePort}\\n`))\
                  .listen(18087, () => console.log('listening'))";
    let mut p = Program::start(&w, &pod, &["node", "-e", script]);
    p.expect("listening", &w.log());
    let body = get(&client, WEB, "/n", &[]);
    assert!(body.starts_with("node /n ") && body.contains("198.19.0.1"), "{body}\n{}", w.log());
}

#[test]
fn a_signal_interrupts_a_blocking_accept_the_daemon_waits_in() {
    let (w, pod, _client) =
        setup("in-signal", r#"{"feature": {"network": {"incoming": {"port_mapping": [[18088, 80]]}}}}"#);
    let script = r#"
import signal, socket, sys
def handler(*_):
    print("handled", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, handler)
l = socket.socket()
l.bind(("0.0.0.0", 18088))
l.listen()
print("listening", flush=True)
l.accept()
print("accept returned", flush=True)
"#;
    let python = tether_testkit::programs::python3();
    let mut p = Program::start(&w, &pod, &[python.to_str().unwrap(), "-c", script]);
    p.expect("listening", &w.log());
    p.wait_in_accept();
    assert_eq!(unsafe { libc::kill(p.child.id() as i32, libc::SIGINT) }, 0);
    p.expect("handled", &w.log());
}

/// The doctor's port check during a session: a program that listens on a port the target does
/// not serve, with no `port_mapping`, is told which ports the target serves and what to add.
#[test]
fn a_port_the_target_does_not_serve_is_diagnosed_with_the_mapping_to_add() {
    let w = World::new();
    let pod = pod("in-port");
    let out = w.exec(&pod, &[], &["python3", "-c", LISTEN_3000]);
    expect_all(&out, &["listened"]);
    assert_port_not_served(|| w.tether(), 3000, 80);
}

/// A free-port probe (listen, close, bind the port again at once, as debug adapters and
/// `get-port` do) finds its port free: nothing of the daemon's keeps a closed listener alive.
/// (`getsockname` would show the port asked for even if it had moved; a connection tells.)
#[test]
fn a_listener_closed_right_after_listen_frees_its_port_at_once() {
    let w = World::new();
    let pod = pod("in-probe");
    let script = r#"
import socket
moved = 0
for i in range(20):
    p = socket.socket(socket.AF_INET6); p.bind(('::', 0)); p.listen(); port = p.getsockname()[1]; p.close()
    s = socket.socket(); s.bind(('127.0.0.1', port)); s.listen()
    try:
        socket.create_connection(('127.0.0.1', port), timeout=2).close()
    except OSError:
        moved += 1
    s.close()
print('moved', moved)
"#;
    let out = w.exec(&pod, &[], &["python3", "-c", script]);
    expect_all(&out, &["moved 0"]);
}

/// A server killed while it waits in `accept` and started again at once (a debugger's Restart)
/// gets its port back: the daemon lets go of the old listener.
#[test]
fn a_server_killed_in_accept_and_restarted_gets_its_port() {
    let w = World::new();
    let pod = pod("in-restart");
    let script = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 18097)); s.listen()
print('listening', flush=True)
while True:
    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
"#;
    let python = tether_testkit::programs::python3();
    let python = python.to_str().unwrap();
    let mut first = Program::start(&w, &pod, &[python, "-c", script, "first"]);
    first.expect("listening", &w.log());
    first.wait_in_accept();
    let _ = first.child.kill();
    let _ = first.child.wait();
    let mut second = Program::start(&w, &pod, &[python, "-c", script, "second"]);
    second.expect("listening", &w.log());
    // A client in the laptop's namespace, where the programs run.
    let client = "import socket; print(socket.create_connection(('127.0.0.1', 18097), timeout=5).recv(16).decode())";
    let out = run(Command::new("ip").args(["netns", "exec", &w.laptop, python, "-c", client]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "second", "{}\n{}", text(&out), w.log());
}

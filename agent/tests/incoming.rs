//! The agent's incoming traffic, driven over the fd socket as the daemon does: a pod namespace
//! with a server, a client namespace joined to it by a veth pair, and the real `tether-agent`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tether_protocol::fdpass::{
    ConnectionKind, FdReply, FdRequest, HttpFilter, IncomingEvent, IncomingMode, recv_line,
    recv_lines, send_line,
};

/// A client namespace: 198.19.0.1 on a veth whose other end (198.19.0.2) is in the pod.
struct Client {
    ns: String,
}

impl Client {
    fn new(pod: &Netns) -> Client {
        let ns = format!("{}-c", pod.name);
        let sh = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(&["netns", "add", &ns]);
        let client = Client { ns: ns.clone() };
        sh(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", "cli0", "netns",
            &pod.name,
        ]);
        sh(&["-n", &ns, "link", "set", "lo", "up"]);
        sh(&["-n", &ns, "addr", "add", "198.19.0.1/24", "dev", "eth0"]);
        sh(&["-n", &ns, "link", "set", "eth0", "up"]);
        sh(&[
            "-n",
            &ns,
            "route",
            "add",
            "198.18.0.0/24",
            "via",
            "198.19.0.2",
        ]);
        sh(&[
            "-n",
            &pod.name,
            "addr",
            "add",
            "198.19.0.2/24",
            "dev",
            "cli0",
        ]);
        sh(&["-n", &pod.name, "link", "set", "cli0", "up"]);
        client
    }

    fn connect(&self, to: &str) -> TcpStream {
        let path = std::path::PathBuf::from("/run/netns").join(&self.ns);
        let to: SocketAddr = to.parse().unwrap();
        let s = std::thread::spawn(move || {
            let ns = std::fs::File::open(path).unwrap();
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            TcpStream::connect_timeout(&to, Duration::from_secs(5))
        })
        .join()
        .unwrap()
        .expect("connect from the client namespace");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Connects and reads the first line the server sends.
    fn greeting(&self, to: &str) -> String {
        let mut s = self.connect(to);
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

struct World {
    pod: Netns,
    _target: Proc,
    _echo: EchoServer,
    agent: Agent,
    client: Client,
}

const PORT: u16 = 7000;
const TO: &str = "198.18.0.10:7000";

fn world() -> World {
    let pod = Netns::new();
    let target = target(Some(&pod));
    let echo = EchoServer::start(&pod, PORT);
    let fd = fd_socket_path();
    let agent = Agent::start(target.pid(), &["--fd-socket", &fd]);
    let client = Client::new(&pod);
    assert_eq!(
        client.greeting(TO),
        String::from_utf8_lossy(GREETING),
        "the pod's server before any subscription"
    );
    World {
        pod,
        _target: target,
        _echo: echo,
        agent,
        client,
    }
}

fn tables(pod: &Netns) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &pod.name, "nft", "list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An authenticated fd-socket connection that asked for a subscription; the agent's answer.
fn subscribe(w: &World, mode: IncomingMode, filter: Option<HttpFilter>) -> (UnixStream, FdReply) {
    let conn = UnixStream::connect(&w.agent.fd_socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = serde_json::to_string(&FdRequest::Auth {
        token: TOKEN.into(),
    })
    .unwrap();
    send_line(&conn, &auth, None).unwrap();
    recv_line(&conn).unwrap();
    let req = FdRequest::Subscribe {
        port: PORT,
        mode,
        http_filter: filter,
    };
    send_line(&conn, &serde_json::to_string(&req).unwrap(), None).unwrap();
    let (line, _) = recv_line(&conn).unwrap();
    (conn, serde_json::from_str(&line).unwrap())
}

/// The next connection event (stats lines skipped).
fn next_connection(conn: &UnixStream) -> (ConnectionKind, String, String, OwnedFd) {
    loop {
        let (lines, fd) = recv_lines(conn).expect("an event");
        // A descriptor belongs to the last line; stats lines may come before it.
        if let IncomingEvent::Connection {
            kind, peer, local, ..
        } = serde_json::from_str::<IncomingEvent>(lines.last().unwrap()).unwrap()
        {
            return (kind, peer, local, fd.expect("a descriptor"));
        }
    }
}

fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn steal_hands_over_the_clients_own_socket_until_unsubscribed() {
    let w = world();
    let (sub, reply) = subscribe(&w, IncomingMode::Steal, None);
    assert_eq!(reply.errno, 0, "{}", reply.message);
    assert!(
        tables(&w.pod).contains("table inet tether_"),
        "{}",
        tables(&w.pod)
    );
    // A second thief for the same port is refused.
    let (_other, refused) = subscribe(&w, IncomingMode::Steal, None);
    assert_eq!(refused.errno, libc::EADDRINUSE, "{}", refused.message);

    let mut c = w.client.connect(TO);
    let (kind, peer, local, fd) = next_connection(&sub);
    assert_eq!(kind, ConnectionKind::Socket);
    assert!(peer.starts_with("198.19.0.1:"), "{peer}");
    assert_eq!(local, TO);
    let mut stolen = TcpStream::from(fd);
    assert_eq!(
        stolen.peer_addr().unwrap().to_string(),
        peer,
        "the very client socket"
    );
    assert_eq!(
        stolen.local_addr().unwrap().to_string(),
        TO,
        "with the target's address"
    );
    stolen.write_all(b"stolen\n").unwrap();
    let mut buf = [0u8; 7];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"stolen\n");

    drop(sub);
    assert!(
        eventually(Duration::from_secs(2), || !tables(&w.pod)
            .contains("tether_")),
        "the table goes with the last subscription: {}",
        tables(&w.pod)
    );
    assert_eq!(w.client.greeting(TO), String::from_utf8_lossy(GREETING));
    // The stolen connection outlives the rule.
    c.write_all(b"still here\n").unwrap();
    let mut got = [0u8; 11];
    stolen.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still here\n");
}

#[test]
fn kill_9_of_the_agent_leaves_no_rule_and_keeps_stolen_connections() {
    let mut w = world();
    let (sub, reply) = subscribe(&w, IncomingMode::Steal, None);
    assert_eq!(reply.errno, 0, "{}", reply.message);
    let mut c = w.client.connect(TO);
    let (_, _, _, fd) = next_connection(&sub);
    let mut stolen = TcpStream::from(fd);
    w.agent.proc.kill();
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(1), || !tables(&w.pod)
            .contains("tether_")),
        "no rule within a second of kill -9: {}",
        tables(&w.pod)
    );
    assert!(killed.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        w.client.greeting(TO),
        String::from_utf8_lossy(GREETING),
        "the target serves again"
    );
    stolen.write_all(b"alive\n").unwrap();
    let mut buf = [0u8; 6];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"alive\n");
}

#[test]
fn mirror_copies_the_client_bytes_and_leaves_the_target_alone() {
    let w = world();
    let (sub, reply) = subscribe(&w, IncomingMode::Mirror, None);
    assert_eq!(reply.errno, 0, "{}", reply.message);
    assert!(
        !tables(&w.pod).contains("tether_"),
        "mirroring needs no rule"
    );
    let mut c = w.client.connect(TO);
    let mut greet = vec![0u8; GREETING.len()];
    c.read_exact(&mut greet).unwrap();
    assert_eq!(greet, GREETING, "the target answers");
    let sent: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    c.write_all(&sent).unwrap();
    let mut echoed = vec![0u8; sent.len()];
    c.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, sent);
    let (kind, peer, local, fd) = next_connection(&sub);
    assert_eq!((kind, local.as_str()), (ConnectionKind::Mirror, TO));
    assert_eq!(peer, c.local_addr().unwrap().to_string());
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut copy = Vec::new();
    let mut s = UnixStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_to_end(&mut copy).unwrap();
    assert_eq!(copy.len(), sent.len());
    assert!(copy == sent, "the copy is the client's bytes, in order");
}

#[test]
fn a_filter_on_a_non_http_port_passes_everything_to_the_target() {
    let w = world();
    let filter = HttpFilter {
        header: Some("^x-user: me$".into()),
        path: None,
    };
    let (sub, reply) = subscribe(&w, IncomingMode::Steal, Some(filter));
    assert_eq!(reply.errno, 0, "{}", reply.message);
    // The echo server speaks first: not HTTP, so it all goes to the target.
    let mut c = w.client.connect(TO);
    let mut greet = vec![0u8; GREETING.len()];
    c.read_exact(&mut greet).unwrap();
    assert_eq!(greet, GREETING);
    c.write_all(b"GET / HTTP/1.1\r\nx-user: me\r\n\r\n")
        .unwrap();
    let mut echo = [0u8; 10];
    c.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"GET / HTTP");
    drop(sub);
    let (_, reply) = subscribe(
        &w,
        IncomingMode::Steal,
        Some(HttpFilter {
            header: Some("(".into()),
            path: None,
        }),
    );
    assert_eq!(
        reply.errno,
        libc::EINVAL,
        "a bad regex is refused: {}",
        reply.message
    );
}

#[test]
fn stale_tables_of_dead_agents_are_swept_and_live_ones_kept() {
    let w = world();
    // A plain table named like an agent's whose start time does not match: a dead agent's.
    let stale = format!("tether_{}_1", std::process::id());
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &w.pod.name,
            "nft",
            "add",
            "table",
            "inet",
            &stale,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (_sub, reply) = subscribe(&w, IncomingMode::Steal, None);
    assert_eq!(reply.errno, 0, "{}", reply.message);
    let t = tables(&w.pod);
    assert!(!t.contains(&stale), "swept: {t}");
    assert!(t.contains(&format!("tether_{}_", w.agent.pid)), "ours: {t}");
}

#[test]
fn the_guard_deletes_its_table_when_its_pipe_closes() {
    let pod = Netns::new();
    let name = format!("tether_{}_2", std::process::id());
    let out = Command::new("ip")
        .args([
            "netns", "exec", &pod.name, "nft", "add", "table", "inet", &name,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ns = std::fs::File::open(pod.path()).unwrap();
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether-agent"));
    cmd.env("TETHER_AGENT_GUARD", &name).stdin(Stdio::piped());
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let r = if fd == 3 {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut guard = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(tables(&pod).contains(&name), "kept while the pipe is open");
    drop(guard.stdin.take());
    let status = guard.wait().unwrap();
    assert!(status.success());
    assert!(!tables(&pod).contains(&name), "{}", tables(&pod));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relayed_form_over_grpc() {
    use tether_protocol::agent::{
        self as proto, IncomingClient, incoming_client, incoming_event, incoming_server,
    };
    let w = world();
    let mut grpc = w.agent.client(Some(TOKEN)).await;
    let req = proto::SubscribeRequest {
        port: PORT as u32,
        mode: proto::IncomingMode::Steal as i32,
        http_filter: None,
    };
    let mut events = grpc.subscribe(req).await.unwrap().into_inner();
    let first = events.message().await.unwrap().unwrap();
    assert!(
        matches!(
            first.event,
            Some(incoming_event::Event::Result(proto::SubscribeResult {
                errno: 0,
                ..
            }))
        ),
        "{first:?}"
    );
    let mut c = w.client.connect(TO);
    let conn = loop {
        match events.message().await.unwrap().unwrap().event {
            Some(incoming_event::Event::Connection(c)) => break c,
            _ => continue,
        }
    };
    assert_eq!(
        (conn.kind, conn.local.as_str()),
        (proto::ConnectionKind::Socket as i32, TO)
    );
    assert!(conn.peer.starts_with("198.19.0.1:"), "{}", conn.peer);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(IncomingClient {
        msg: Some(incoming_client::Msg::Open(conn.id)),
    })
    .await
    .unwrap();
    tx.send(IncomingClient {
        msg: Some(incoming_client::Msg::Data(b"relayed\n".to_vec())),
    })
    .await
    .unwrap();
    let mut bytes = grpc
        .accept_incoming(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let got = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 8];
        c.read_exact(&mut buf).unwrap();
        c.write_all(b"answer").unwrap();
        buf
    })
    .await
    .unwrap();
    assert_eq!(&got, b"relayed\n");
    let answer = bytes.message().await.unwrap().unwrap();
    assert_eq!(
        answer.msg,
        Some(incoming_server::Msg::Data(b"answer".to_vec()))
    );
    // Cancelling the subscription removes the rule.
    drop(events);
    drop(tx);
    let pod = w.pod.name.clone();
    let gone = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(3), || {
            let out = Command::new("ip")
                .args(["netns", "exec", &pod, "nft", "list", "tables"])
                .output()
                .unwrap();
            !String::from_utf8_lossy(&out.stdout).contains("tether_")
        })
    })
    .await
    .unwrap();
    assert!(gone, "unsubscribed when the stream was cancelled");
}

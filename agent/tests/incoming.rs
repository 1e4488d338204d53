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
    ConnectionKind, FdReply, FdRequest, HttpFilter, IncomingEvent, IncomingMode, recv_line, recv_lines, send_line,
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
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        sh(&["netns", "add", &ns]);
        let client = Client { ns: ns.clone() };
        sh(&["-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", "cli0", "netns", &pod.name]);
        sh(&["-n", &ns, "link", "set", "lo", "up"]);
        sh(&["-n", &ns, "addr", "add", "198.19.0.1/24", "dev", "eth0"]);
        sh(&["-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["-n", &ns, "route", "add", "198.18.0.0/24", "via", "198.19.0.2"]);
        sh(&["-n", &pod.name, "addr", "add", "198.19.0.2/24", "dev", "cli0"]);
        sh(&["-n", &pod.name, "link", "set", "cli0", "up"]);
        client
    }

    fn connect(&self, to: &str) -> TcpStream {
        let path = std::path::PathBuf::from("/run/netns").join(&self.ns);
        let to: SocketAddr = to.parse().unwrap();
        let s = std::thread::spawn(move || {
            let ns = std::fs::File::open(path).unwrap();
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
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
    assert_eq!(client.greeting(TO), String::from_utf8_lossy(GREETING), "the pod's server before any subscription");
    World { pod, _target: target, _echo: echo, agent, client }
}

fn tables(pod: &Netns) -> String {
    let out = Command::new("ip").args(["netns", "exec", &pod.name, "nft", "list", "tables"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An authenticated fd-socket connection that asked for a subscription; the agent's answer.
fn subscribe(w: &World, mode: IncomingMode, filter: Option<HttpFilter>) -> (UnixStream, FdReply) {
    subscribe_port(w, PORT, mode, filter)
}

fn subscribe_port(w: &World, port: u16, mode: IncomingMode, filter: Option<HttpFilter>) -> (UnixStream, FdReply) {
    let conn = UnixStream::connect(&w.agent.fd_socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = serde_json::to_string(&FdRequest::Auth { token: TOKEN.into() }).unwrap();
    send_line(&conn, &auth, None).unwrap();
    recv_line(&conn).unwrap();
    let req = FdRequest::Subscribe { port, mode, http_filter: filter };
    send_line(&conn, &serde_json::to_string(&req).unwrap(), None).unwrap();
    let (line, _) = recv_line(&conn).unwrap();
    (conn, serde_json::from_str(&line).unwrap())
}

/// The next connection event (stats lines skipped).
fn next_connection(conn: &UnixStream) -> (ConnectionKind, String, String, OwnedFd) {
    loop {
        let (lines, fd) = recv_lines(conn).expect("an event");
        // A descriptor belongs to the last line; stats lines may come before it.
        if let IncomingEvent::Connection { kind, peer, local, .. } =
            serde_json::from_str::<IncomingEvent>(lines.last().unwrap()).unwrap()
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
    assert!(tables(&w.pod).contains("table inet tether_"), "{}", tables(&w.pod));
    // A second thief for the same port is refused.
    let (_other, refused) = subscribe(&w, IncomingMode::Steal, None);
    assert_eq!(refused.errno, libc::EADDRINUSE, "{}", refused.message);

    let mut c = w.client.connect(TO);
    let (kind, peer, local, fd) = next_connection(&sub);
    assert_eq!(kind, ConnectionKind::Socket);
    assert!(peer.starts_with("198.19.0.1:"), "{peer}");
    assert_eq!(local, TO);
    let mut stolen = TcpStream::from(fd);
    assert_eq!(stolen.peer_addr().unwrap().to_string(), peer, "the very client socket");
    assert_eq!(stolen.local_addr().unwrap().to_string(), TO, "with the target's address");
    stolen.write_all(b"stolen\n").unwrap();
    let mut buf = [0u8; 7];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"stolen\n");

    drop(sub);
    assert!(
        eventually(Duration::from_secs(30), || !tables(&w.pod).contains("tether_")),
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
    // The guard removes the rule; how fast is the benchmarks' business, that it happens is ours.
    assert!(
        eventually(Duration::from_secs(30), || !tables(&w.pod).contains("tether_")),
        "a rule left 30 s after kill -9: {}",
        tables(&w.pod)
    );
    assert_eq!(w.client.greeting(TO), String::from_utf8_lossy(GREETING), "the target serves again");
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
    assert!(!tables(&w.pod).contains("tether_"), "mirroring needs no rule");
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
    let filter = HttpFilter { header: Some("^x-user: me$".into()), path: None };
    let (sub, reply) = subscribe(&w, IncomingMode::Steal, Some(filter));
    assert_eq!(reply.errno, 0, "{}", reply.message);
    // The echo server speaks first: not HTTP, so it all goes to the target.
    let mut c = w.client.connect(TO);
    let mut greet = vec![0u8; GREETING.len()];
    c.read_exact(&mut greet).unwrap();
    assert_eq!(greet, GREETING);
    c.write_all(b"GET / HTTP/1.1\r\nx-user: me\r\n\r\n").unwrap();
    let mut echo = [0u8; 10];
    c.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"GET / HTTP");
    drop(sub);
    let (_, reply) = subscribe(&w, IncomingMode::Steal, Some(HttpFilter { header: Some("(".into()), path: None }));
    assert_eq!(reply.errno, libc::EINVAL, "a bad regex is refused: {}", reply.message);
}

#[test]
fn stale_tables_of_dead_agents_are_swept_and_live_ones_kept() {
    let w = world();
    // A plain table named like an agent's whose start time does not match: a dead agent's.
    let stale = format!("tether_{}_1", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "exec", &w.pod.name, "nft", "add", "table", "inet", &stale])
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
    let out =
        Command::new("ip").args(["netns", "exec", &pod.name, "nft", "add", "table", "inet", &name]).output().unwrap();
    assert!(out.status.success());
    let ns = std::fs::File::open(pod.path()).unwrap();
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether-agent"));
    cmd.env("TETHER_AGENT_GUARD", &name).stdin(Stdio::piped());
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let r = if fd == 3 { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
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
    use tether_protocol::agent::{self as proto, IncomingClient, incoming_client, incoming_event, incoming_server};
    let w = world();
    let mut grpc = w.agent.client(Some(TOKEN)).await;
    let req = proto::SubscribeRequest { port: PORT as u32, mode: proto::IncomingMode::Steal as i32, http_filter: None };
    let mut events = grpc.subscribe(req).await.unwrap().into_inner();
    let first = events.message().await.unwrap().unwrap();
    assert!(
        matches!(first.event, Some(incoming_event::Event::Result(proto::SubscribeResult { errno: 0, .. }))),
        "{first:?}"
    );
    let mut c = w.client.connect(TO);
    let conn = loop {
        match events.message().await.unwrap().unwrap().event {
            Some(incoming_event::Event::Connection(c)) => break c,
            _ => continue,
        }
    };
    assert_eq!((conn.kind, conn.local.as_str()), (proto::ConnectionKind::Socket as i32, TO));
    assert!(conn.peer.starts_with("198.19.0.1:"), "{}", conn.peer);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(IncomingClient { msg: Some(incoming_client::Msg::Open(conn.id)) }).await.unwrap();
    tx.send(IncomingClient { msg: Some(incoming_client::Msg::Data(b"relayed\n".to_vec())) }).await.unwrap();
    let mut bytes = grpc.accept_incoming(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
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
    assert_eq!(answer.msg, Some(incoming_server::Msg::Data(b"answer".to_vec())));
    // Cancelling the subscription removes the rule.
    drop(events);
    drop(tx);
    let pod = w.pod.name.clone();
    let gone = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(3), || {
            let out = Command::new("ip").args(["netns", "exec", &pod, "nft", "list", "tables"]).output().unwrap();
            !String::from_utf8_lossy(&out.stdout).contains("tether_")
        })
    })
    .await
    .unwrap();
    assert!(gone, "unsubscribed when the stream was cancelled");
}

/// Filtered steal of HTTP/2 with prior knowledge (h2c): a client in the client namespace, an
/// h2c server on the pod's port 7001 (the target) and one served on each stream pair the agent
/// hands over (the program). Both servers echo the request body as it arrives, end with
/// trailers, and report what they saw.
mod h2 {
    use super::*;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::{Bytes, Frame, Incoming};
    use hyper::client::conn::http2::SendRequest;
    use hyper::{HeaderMap, Request, Response};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tether_protocol::fdpass::IncomingStats;
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::sync::{Notify, mpsc};
    use tokio_stream::wrappers::ReceiverStream;

    const H2_PORT: u16 = 7001;
    const H2_TO: &str = "198.18.0.10:7001";
    const WAIT: Duration = Duration::from_secs(10);

    type Frames = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;
    type Chunks = StreamBody<ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

    fn chunks() -> (Frames, Chunks) {
        let (tx, rx) = mpsc::channel(4);
        (tx, StreamBody::new(ReceiverStream::new(rx)))
    }

    fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
        h.iter().map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
    }

    /// A request as a server saw it.
    #[derive(Debug)]
    struct Seen {
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        trailers: Vec<(String, String)>,
    }

    /// One of the two h2c servers. Paths under `/slow` wait for `gate` before answering.
    #[derive(Clone)]
    struct Server {
        name: &'static str,
        seen: mpsc::UnboundedSender<Seen>,
        gate: Arc<Notify>,
    }

    impl Server {
        async fn serve<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, io: T) {
            let svc = hyper::service::service_fn(move |req| {
                let me = self.clone();
                async move { Ok::<_, Infallible>(me.answer(req).await) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(io), svc)
                .await;
        }

        async fn answer(self, req: Request<Incoming>) -> Response<Chunks> {
            if req.uri().path().starts_with("/slow") {
                self.gate.notified().await;
            }
            let (parts, mut body) = req.into_parts();
            let (tx, chunks) = chunks();
            tokio::spawn(async move {
                let mut seen = Seen {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    headers: pairs(&parts.headers),
                    body: Vec::new(),
                    trailers: Vec::new(),
                };
                while let Some(Ok(frame)) = body.frame().await {
                    match frame.into_data() {
                        Ok(data) => {
                            seen.body.extend_from_slice(&data);
                            let _ = tx.send(Ok(Frame::data(data))).await;
                        }
                        Err(frame) => {
                            if let Ok(t) = frame.into_trailers() {
                                seen.trailers = pairs(&t);
                            }
                        }
                    }
                }
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                trailers.insert("x-side", self.name.parse().unwrap());
                let _ = tx.send(Ok(Frame::trailers(trailers))).await;
                let _ = self.seen.send(seen);
            });
            Response::builder().header("x-side", self.name).body(chunks).unwrap()
        }
    }

    struct H2World {
        w: World,
        _sub: UnixStream,
        /// What the target's server saw.
        target: mpsc::UnboundedReceiver<Seen>,
        /// Stream pairs handed to the subscriber.
        pairs: mpsc::UnboundedReceiver<OwnedFd>,
        program: Server,
        program_seen: mpsc::UnboundedReceiver<Seen>,
        stats: Arc<Mutex<IncomingStats>>,
    }

    impl H2World {
        /// A filtered steal of port 7001, whose real server is an h2c server (or, when
        /// `target_alive` is false, one that reads a little and closes).
        async fn start(filter: HttpFilter, target_alive: bool) -> H2World {
            let w = world();
            let listener = w.pod.run(|| std::net::TcpListener::bind((POD_IP, H2_PORT)).unwrap());
            let (seen, target) = mpsc::unbounded_channel();
            if target_alive {
                listener.set_nonblocking(true).unwrap();
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let server = Server { name: "target", seen, gate: Arc::new(Notify::new()) };
                tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(server.clone().serve(s));
                    }
                });
            } else {
                std::thread::spawn(move || {
                    while let Ok((mut s, _)) = listener.accept() {
                        let _ = s.read(&mut [0u8; 64]);
                    }
                });
            }
            let (sub, reply) = subscribe_port(&w, H2_PORT, IncomingMode::Steal, Some(filter));
            assert_eq!(reply.errno, 0, "{}", reply.message);
            let (fds, pairs) = mpsc::unbounded_channel();
            let stats = Arc::new(Mutex::new(IncomingStats::default()));
            let events = sub.try_clone().unwrap();
            let latest = stats.clone();
            std::thread::spawn(move || read_events(events, fds, latest));
            let (seen, program_seen) = mpsc::unbounded_channel();
            let program = Server { name: "program", seen, gate: Arc::new(Notify::new()) };
            H2World { w, _sub: sub, target, pairs, program, program_seen, stats }
        }

        /// Serves the next stream pair handed over.
        async fn serve_next_pair(&mut self) {
            let fd =
                tokio::time::timeout(WAIT, self.pairs.recv()).await.expect("a stream pair for the program").unwrap();
            tokio::spawn(self.program.clone().serve(unix(fd)));
        }

        /// Serves every stream pair handed over from now on.
        fn serve_all_pairs(&mut self) {
            let (_, empty) = mpsc::unbounded_channel();
            let mut pairs = std::mem::replace(&mut self.pairs, empty);
            let program = self.program.clone();
            tokio::spawn(async move {
                while let Some(fd) = pairs.recv().await {
                    tokio::spawn(program.clone().serve(unix(fd)));
                }
            });
        }

        async fn client(&self) -> SendRequest<Chunks> {
            let s = self.w.client.connect(H2_TO);
            s.set_nonblocking(true).unwrap();
            let s = tokio::net::TcpStream::from_std(s).unwrap();
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await.unwrap();
            tokio::spawn(conn);
            sender
        }

        /// Waits until the subscription's counters satisfy `f`.
        async fn stats_until(&self, f: impl Fn(&IncomingStats) -> bool) -> IncomingStats {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let now = self.stats.lock().unwrap().clone();
                if f(&now) || Instant::now() > deadline {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn unix(fd: OwnedFd) -> tokio::net::UnixStream {
        let s = UnixStream::from(fd);
        s.set_nonblocking(true).unwrap();
        tokio::net::UnixStream::from_std(s).unwrap()
    }

    /// The subscription's events: stream pairs to `fds`, the latest counters to `stats`.
    fn read_events(conn: UnixStream, fds: mpsc::UnboundedSender<OwnedFd>, stats: Arc<Mutex<IncomingStats>>) {
        loop {
            let (lines, fd) = match recv_lines(&conn) {
                Ok(got) => got,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    continue;
                }
                Err(_) => return,
            };
            for line in lines {
                match serde_json::from_str::<IncomingEvent>(&line).unwrap() {
                    IncomingEvent::Stats(s) => *stats.lock().unwrap() = s,
                    IncomingEvent::Connection { kind, local, .. } => {
                        assert_eq!((kind, local.as_str()), (ConnectionKind::Stream, H2_TO));
                    }
                }
            }
            if let Some(fd) = fd {
                let _ = fds.send(fd);
            }
        }
    }

    /// A request to the pod's h2c port; its body is what the returned sender sends.
    fn request(method: &str, path_query: &str, headers: &[(&str, &str)]) -> (Request<Chunks>, Frames) {
        let (tx, body) = chunks();
        let mut b = Request::builder().method(method).uri(format!("http://{H2_TO}{path_query}"));
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        (b.body(body).unwrap(), tx)
    }

    /// A GET without a body.
    fn get(path: &str, headers: &[(&str, &str)]) -> Request<Chunks> {
        request("GET", path, headers).0
    }

    async fn send(c: SendRequest<Chunks>, req: Request<Chunks>) -> Response<Incoming> {
        let mut c = c;
        tokio::time::timeout(WAIT, async {
            c.ready().await.unwrap();
            c.send_request(req).await
        })
        .await
        .expect("a response in time")
        .expect("a response, not a stream error")
    }

    /// The status and the side that answered.
    fn answered(r: &Response<Incoming>) -> (u16, String) {
        let side = r.headers().get("x-side").map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), side.unwrap_or_default())
    }

    /// The whole body and the trailers.
    async fn read_all(resp: Response<Incoming>) -> (Vec<u8>, HeaderMap) {
        let all = tokio::time::timeout(WAIT, resp.into_body().collect())
            .await
            .expect("the body in time")
            .expect("the whole body");
        let trailers = all.trailers().cloned().unwrap_or_default();
        (all.to_bytes().to_vec(), trailers)
    }

    async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
        tokio::time::timeout(WAIT, seen.recv()).await.expect("the server saw the request").unwrap()
    }

    fn user_me() -> HttpFilter {
        HttpFilter { header: Some("^x-user: me$".into()), path: None }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_of_one_connection_go_to_the_program_and_the_target_concurrently() {
        let mut h = H2World::start(user_me(), true).await;
        h.serve_all_pairs();
        let c = h.client().await;
        // The program holds its answer until released; the target's answer comes meanwhile.
        let slow = tokio::spawn(send(c.clone(), get("/slow/a", &[("x-user", "me")])));
        let fast = send(c.clone(), get("/b", &[("x-user", "you")])).await;
        assert_eq!(fast.headers()["x-side"], "target");
        let (_, trailers) = read_all(fast).await;
        assert_eq!(trailers["x-side"], "target");
        assert_eq!(next(&mut h.target).await.uri, format!("http://{H2_TO}/b"));
        assert!(!slow.is_finished(), "the program's stream is still waiting");
        h.program.gate.notify_one();
        let slow = slow.await.unwrap();
        assert_eq!(slow.status(), 200);
        assert_eq!(slow.headers()["x-side"], "program");
        let (_, trailers) = read_all(slow).await;
        assert_eq!(trailers["x-side"], "program");
        assert_eq!(next(&mut h.program_seen).await.uri, format!("http://{H2_TO}/slow/a"));
        let stats = h.stats_until(|s| s.requests_matched == 1 && s.requests_passed == 1).await;
        assert_eq!((stats.requests_matched, stats.requests_passed), (1, 1), "{stats:?}");
        assert_eq!(stats.connections, 1, "one stream pair: {stats:?}");
        assert!(stats.bytes_in > 0 && stats.bytes_out > 0, "{stats:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_stream_and_trailers_pass_both_ways_on_both_sides() {
        let mut h = H2World::start(user_me(), true).await;
        h.serve_all_pairs();
        let c = h.client().await;
        for (user, side) in [("me", "program"), ("you", "target")] {
            let (req, tx) = request("POST", "/echo", &[("x-user", user)]);
            let resp = send(c.clone(), req).await;
            assert_eq!(resp.headers()["x-side"], side);
            let mut body = resp.into_body();
            // Each chunk comes back before the next is sent: nothing waits for the whole body.
            for chunk in ["one", "two"] {
                tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.unwrap();
                let mut got = Vec::new();
                while got.len() < chunk.len() {
                    let frame =
                        tokio::time::timeout(WAIT, body.frame()).await.expect("the echo in time").unwrap().unwrap();
                    got.extend_from_slice(&frame.into_data().unwrap());
                }
                assert_eq!(got, chunk.as_bytes(), "{side}");
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("x-client-trailer", "t".parse().unwrap());
            tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
            drop(tx);
            let rest = tokio::time::timeout(WAIT, body.collect()).await.unwrap().unwrap();
            let trailers = rest.trailers().cloned().unwrap_or_default();
            assert_eq!(trailers["grpc-status"], "0", "{side}");
            assert_eq!(trailers["x-side"], side);
            let seen = match side {
                "program" => next(&mut h.program_seen).await,
                _ => next(&mut h.target).await,
            };
            assert_eq!(seen.body, b"onetwo", "{side}");
            assert_eq!(seen.trailers, [("x-client-trailer".to_string(), "t".to_string())]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_arrive_unchanged_on_either_side() {
        let mut h = H2World::start(user_me(), true).await;
        h.serve_all_pairs();
        let c = h.client().await;
        // More than a stream's initial window (64 KiB), so flow control runs on every hop.
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for (user, side) in [("you", "target"), ("me", "program")] {
            let headers = [
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("x-a", "1"),
                ("x-a", "2"),
                ("user-agent", "grpc-test/1.0"),
                ("x-user", user),
            ];
            let (req, tx) = request("POST", "/pkg.Svc/Call?q=1&r=%20", &headers);
            let expected = pairs(req.headers());
            let body = sent.clone();
            let sending = tokio::spawn(async move {
                for part in body.chunks(16 * 1024) {
                    tx.send(Ok(Frame::data(Bytes::copy_from_slice(part)))).await.unwrap();
                }
            });
            let resp = send(c.clone(), req).await;
            assert_eq!(resp.headers()["x-side"], side);
            let (echoed, _) = read_all(resp).await;
            sending.await.unwrap();
            assert!(echoed == sent, "{side}: the body comes back whole");
            let seen = match side {
                "program" => next(&mut h.program_seen).await,
                _ => next(&mut h.target).await,
            };
            assert_eq!(seen.method, "POST");
            assert_eq!(seen.uri, format!("http://{H2_TO}/pkg.Svc/Call?q=1&r=%20"));
            assert_eq!(seen.headers, expected, "{side}: the same header lines, in order");
            assert!(seen.body == sent, "{side}: the same body");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_program_that_fails_fails_only_its_stream() {
        let mut h = H2World::start(HttpFilter { header: None, path: Some("^/local".into()) }, true).await;
        let c = h.client().await;
        let pending = tokio::spawn(send(c.clone(), get("/local/1", &[])));
        // The program's end of the first stream pair closes at once.
        drop(tokio::time::timeout(WAIT, h.pairs.recv()).await.unwrap().unwrap());
        let failed = pending.await.unwrap();
        assert_eq!(failed.status(), 502);
        assert_eq!(failed.headers()["x-tether"], "the local program did not answer");
        // The connection lives on: the target answers, and the program again on a new pair.
        let other = send(c.clone(), get("/other", &[])).await;
        assert_eq!(answered(&other), (200, "target".to_string()));
        let again = tokio::spawn(send(c.clone(), get("/local/2", &[])));
        h.serve_next_pair().await;
        let again = again.await.unwrap();
        assert_eq!(answered(&again), (200, "program".to_string()));
        let (_, trailers) = read_all(again).await;
        assert_eq!(trailers["grpc-status"], "0");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_is_refused_and_the_connection_goes_on() {
        let h = H2World::start(user_me(), true).await;
        let c = h.client().await;
        let (mut req, tx) = request("CONNECT", "", &[("x-user", "me")]);
        *req.uri_mut() = H2_TO.parse().unwrap();
        drop(tx);
        let refused = send(c.clone(), req).await;
        assert_eq!(refused.status(), 501);
        let ok = send(c.clone(), get("/after", &[])).await;
        assert_eq!(answered(&ok), (200, "target".to_string()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_that_fails_fails_only_its_streams() {
        let mut h = H2World::start(user_me(), false).await;
        h.serve_all_pairs();
        let c = h.client().await;
        let failed = send(c.clone(), get("/x", &[])).await;
        assert_eq!(failed.status(), 502);
        assert_eq!(failed.headers()["x-tether"], "the target did not answer");
        let ok = send(c.clone(), get("/y", &[("x-user", "me")])).await;
        assert_eq!(answered(&ok), (200, "program".to_string()));
        let failed = send(c.clone(), get("/z", &[])).await;
        assert_eq!(failed.status(), 502, "the target is tried again, and fails again");
    }
}

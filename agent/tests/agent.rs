//! End-to-end tests of `tether-agent`: the real binary, real target processes in real network
//! namespaces (we run as root), a real tonic client.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tether_protocol::agent::{
    CAP_CONNECT_RELAY, CAP_FD_PASSING, CAP_WRITE, ConnectClient, ConnectOpen, ConnectResult, ConnectServer, FileChunk,
    FileKind, GetEnvRequest, HelloRequest, PROTOCOL_MAJOR, PathRequest, ReadFileRequest, ResolveRequest, Transport,
    WriteFileRequest, connect_client, connect_server,
};
use tether_protocol::fdpass::{FdReply, FdRequest, recv_line, send_line};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

fn hello_req(major: u32) -> HelloRequest {
    HelloRequest { protocol_major: major, protocol_minor: 0, client_version: "test".into(), capabilities: vec![] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_the_right_token_are_refused() {
    let ns = Netns::new();
    let target = target(Some(&ns));
    let agent = Agent::start(target.pid(), &[]);

    let mut none = agent.client(None).await;
    let e = none.hello(hello_req(PROTOCOL_MAJOR)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let mut wrong = agent.client(Some("not-the-token")).await;
    assert_eq!(wrong.hello(hello_req(PROTOCOL_MAJOR)).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert_eq!(wrong.get_env(GetEnvRequest {}).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let e = wrong.read_file(ReadFileRequest { path: "/etc/hostname".into(), chunk_size: 0 }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // A token that merely starts like the right one is wrong too.
    let mut prefix = agent.client(Some(&TOKEN[..TOKEN.len() - 1])).await;
    assert_eq!(prefix.hello(hello_req(PROTOCOL_MAJOR)).await.unwrap_err().code(), tonic::Code::Unauthenticated);

    let mut good = agent.client(Some(TOKEN)).await;
    let hello = good.hello(hello_req(PROTOCOL_MAJOR)).await.unwrap().into_inner();
    // Without --fd-socket there is no fd passing.
    assert_eq!(
        hello.capabilities,
        vec![CAP_CONNECT_RELAY.to_string(), CAP_WRITE.to_string(), tether_protocol::agent::CAP_INCOMING.to_string()]
    );
    assert_eq!(hello.fd_socket, "");
    assert!(agent.stderr().contains("wrong token"), "refusals are logged: {}", agent.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_negotiates_version_and_capabilities() {
    let ns = Netns::new();
    let target = target(Some(&ns));
    let sock = fd_socket_path();
    let agent = Agent::start(target.pid(), &["--fd-socket", &sock]);
    assert_eq!(agent.fd_socket, sock);
    assert_eq!(agent.pid, agent.proc.child.id());
    assert!(agent.listen.starts_with("127.0.0.1:") && !agent.listen.ends_with(":0"), "{}", agent.listen);

    let mut c = agent.client(Some(TOKEN)).await;
    let hello = c.hello(hello_req(PROTOCOL_MAJOR)).await.unwrap().into_inner();
    assert_eq!(hello.protocol_major, PROTOCOL_MAJOR);
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
    for cap in [CAP_FD_PASSING, CAP_CONNECT_RELAY, CAP_WRITE] {
        assert!(hello.capabilities.iter().any(|c| c == cap), "{cap} missing: {:?}", hello.capabilities);
    }
    assert_eq!(hello.target_pid, target.pid());
    assert_eq!(hello.fd_socket, sock);
    assert_eq!(hello.netns_inode, ns.inode(), "the inode of the pod's network namespace");

    let e = c.hello(hello_req(PROTOCOL_MAJOR + 1)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let (theirs, ours) = (format!("{}.0", PROTOCOL_MAJOR + 1), format!("{PROTOCOL_MAJOR}.0"));
    assert!(e.message().contains(&theirs) && e.message().contains(&ours), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_env_sees_the_target_environment_and_the_token_is_scrubbed() {
    assert!(std::env::var("POD_ONLY").is_err(), "the test itself must not have POD_ONLY");
    let ns = Netns::new();
    let target = target(Some(&ns));
    let agent = Agent::start(target.pid(), &[]);
    let mut c = agent.client(Some(TOKEN)).await;
    let vars = c.get_env(GetEnvRequest {}).await.unwrap().into_inner().vars;
    assert_eq!(vars.get("POD_ONLY").map(String::as_str), Some("yes"));
    assert!(!vars.contains_key("TETHER_AGENT_TOKEN"));
    // The agent's own environment no longer shows the token, not even in /proc.
    let environ = std::fs::read(format!("/proc/{}/environ", agent.pid)).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains(TOKEN), "token visible in the agent's /proc environ");
}

async fn read_all(c: &mut Client, path: &str, chunk_size: u32) -> (Vec<FileChunk>, Vec<u8>) {
    let mut s = c.read_file(ReadFileRequest { path: path.into(), chunk_size }).await.unwrap().into_inner();
    let mut msgs = Vec::new();
    let mut data = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        data.extend_from_slice(&m.data);
        msgs.push(FileChunk { data: vec![], ..m });
    }
    (msgs, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_come_from_the_target_root() {
    let ns = Netns::new();
    let dir = std::env::temp_dir().join(format!("tether-agent-files-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let small = dir.join("small.txt");
    std::fs::write(&small, "just a few bytes\n").unwrap();
    let big = dir.join("big.bin");
    let big_content: Vec<u8> = (0..(3 << 20) + 12345u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &big_content).unwrap();
    std::os::unix::fs::symlink("small.txt", dir.join("link")).unwrap();
    let target = target(Some(&ns));
    let agent = Agent::start(target.pid(), &[]);
    let mut c = agent.client(Some(TOKEN)).await;
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // Small file: one message with metadata and content.
    let (msgs, data) = read_all(&mut c, &p("small.txt"), 0).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].errno, 0);
    let st = msgs[0].stat.unwrap();
    assert_eq!((st.kind, st.size), (FileKind::Regular as i32, 17));
    assert_eq!(data, b"just a few bytes\n");

    // Missing file: ENOENT, one message.
    let (msgs, data) = read_all(&mut c, &p("missing"), 0).await;
    assert_eq!((msgs.len(), msgs[0].errno, data.len()), (1, libc::ENOENT, 0));

    // Larger than the chunk size (default 1 MiB, and a small explicit one): arrives whole.
    let (msgs, data) = read_all(&mut c, &p("big.bin"), 0).await;
    assert_eq!(msgs.len(), 4);
    assert!(msgs[0].stat.is_some() && msgs[1..].iter().all(|m| m.stat.is_none()));
    assert!(data == big_content, "default chunks reassemble the file");
    let (msgs, data) = read_all(&mut c, &p("big.bin"), 64 * 1024).await;
    assert_eq!(msgs.len(), big_content.len().div_ceil(64 * 1024));
    assert!(data == big_content, "64 KiB chunks reassemble the file");

    // Stat / lstat, ReadDir, ReadLink.
    let st = c.stat(PathRequest { path: p("link"), follow: false }).await.unwrap().into_inner();
    assert_eq!(st.stat.unwrap().kind, FileKind::Symlink as i32);
    let st = c.stat(PathRequest { path: p("link"), follow: true }).await.unwrap().into_inner();
    assert_eq!(st.stat.unwrap().size, 17);
    assert_eq!(c.stat(PathRequest { path: p("nope"), follow: true }).await.unwrap().into_inner().errno, libc::ENOENT);
    let rd = c.read_dir(PathRequest { path: dir.to_str().unwrap().into(), follow: true }).await.unwrap().into_inner();
    let mut names: Vec<_> = rd.entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["big.bin", "link", "small.txt"]);
    let rl = c.read_link(PathRequest { path: p("link"), follow: false }).await.unwrap().into_inner();
    assert_eq!((rl.errno, rl.target.as_str()), (0, "small.txt"));

    // WriteFile: created and written before the reply.
    let w = c
        .write_file(WriteFileRequest {
            path: p("written.txt"),
            offset: 0,
            data: b"from the program".to_vec(),
            truncate: true,
            create: true,
            mode: 0o640,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((w.errno, w.written), (0, 16));
    assert_eq!(std::fs::read(dir.join("written.txt")).unwrap(), b"from the program");
    let w = c
        .write_file(WriteFileRequest {
            path: p("no/such/dir"),
            data: b"x".to_vec(),
            create: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.errno, libc::ENOENT);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_symlinks_stay_inside_a_chroot_target() {
    let root = RootDir::new(
        &[("etc/passwd", "inside the target\n"), ("etc/hostname", "pod\n")],
        &[("abs", "/etc/passwd"), ("etc/up", "../../../../../../etc/hostname"), ("sub/dir", "/etc")],
    );
    let target = root.target(None);
    let agent = Agent::start(target.pid(), &[]);
    let mut c = agent.client(Some(TOKEN)).await;
    let host_passwd = std::fs::read("/etc/passwd").unwrap();
    assert_ne!(host_passwd, b"inside the target\n");

    for path in ["/abs", "/etc/passwd", "/../../../etc/passwd", "/sub/dir/passwd", "abs"] {
        let (msgs, data) = read_all(&mut c, path, 0).await;
        assert_eq!(msgs[0].errno, 0, "{path}");
        assert_eq!(data, b"inside the target\n", "{path} must resolve inside the target's root");
    }
    let (_, data) = read_all(&mut c, "/etc/up", 0).await;
    assert_eq!(data, b"pod\n");
    let rl = c.read_link(PathRequest { path: "/abs".into(), follow: false }).await.unwrap().into_inner();
    assert_eq!(rl.target, "/etc/passwd");
    let rd = c.read_dir(PathRequest { path: "/".into(), follow: true }).await.unwrap().into_inner();
    let mut names: Vec<_> = rd.entries.iter().map(|e| e.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["abs", "bin", "etc", "sub"]);
    // Writes through an absolute symlink stay inside too.
    let w = c
        .write_file(WriteFileRequest {
            path: "/sub/dir/new".into(),
            data: b"w".to_vec(),
            create: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.errno, 0);
    assert!(root.path.join("etc/new").exists());
    assert!(!std::path::Path::new("/etc/new").exists() || std::fs::read("/etc/new").unwrap() != b"w");
}

fn open_msg(transport: Transport, address: &str) -> ConnectClient {
    ConnectClient {
        msg: Some(connect_client::Msg::Open(ConnectOpen {
            transport: transport as i32,
            address: address.into(),
            timeout_ms: 0,
        })),
    }
}

fn data_msg(data: &[u8]) -> ConnectClient {
    ConnectClient { msg: Some(connect_client::Msg::Data(data.to_vec())) }
}

async fn open_relay(
    c: &mut Client,
    transport: Transport,
    address: &str,
) -> (mpsc::Sender<ConnectClient>, Streaming<ConnectServer>, ConnectResult) {
    let (tx, rx) = mpsc::channel(8);
    tx.send(open_msg(transport, address)).await.unwrap();
    let mut resp = c.open_connection(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(15), resp.message()).await.unwrap().unwrap().unwrap();
    let Some(connect_server::Msg::Result(result)) = first.msg else { panic!("first message is not the result") };
    (tx, resp, result)
}

/// Reads relayed data until `n` bytes have arrived.
async fn recv_exact(resp: &mut Streaming<ConnectServer>, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(20), resp.message()).await.expect("relay stalled");
        match m.unwrap() {
            Some(ConnectServer { msg: Some(connect_server::Msg::Data(d)) }) => got.extend_from_slice(&d),
            other => panic!("unexpected {other:?} after {} bytes", got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_tcp_connection_leaves_from_the_pod() {
    let ns = Netns::new();
    let _server = EchoServer::start(&ns, 8080);
    // The address exists only in the pod: it is not an address of our own namespace.
    assert!(!is_local_address(POD_IP));
    let target = target(Some(&ns));
    let agent = Agent::start(target.pid(), &[]);
    let mut c = agent.client(Some(TOKEN)).await;

    let (tx, mut resp, result) = open_relay(&mut c, Transport::Tcp, "198.18.0.10:8080").await;
    assert_eq!(result.errno, 0);
    assert_eq!(result.peer_address, "198.18.0.10:8080");
    assert!(result.local_address.starts_with("198.18.0.10:"), "{}", result.local_address);
    assert_eq!(recv_exact(&mut resp, GREETING.len()).await, GREETING);
    tx.send(data_msg(b"ping\n")).await.unwrap();
    assert_eq!(recv_exact(&mut resp, 5).await, b"ping\n");

    // Bulk data in flight on this stream does not hold up other calls.
    let total = 8 << 20;
    let pattern: Arc<Vec<u8>> = Arc::new((0..total).map(|i| (i * 7 % 253) as u8).collect());
    let sender = tokio::spawn({
        let (tx, pattern) = (tx.clone(), pattern.clone());
        async move {
            for chunk in pattern.chunks(64 * 1024) {
                tx.send(data_msg(chunk)).await.unwrap();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // let the windows fill up
    let hello = tokio::time::timeout(Duration::from_secs(3), c.clone().hello(hello_req(PROTOCOL_MAJOR))).await;
    assert!(hello.expect("Hello blocked behind relayed bulk data").is_ok());
    let echoed = recv_exact(&mut resp, total).await;
    assert!(echoed == *pattern, "bulk data echoed intact");
    sender.await.unwrap();

    // Half-close: the server sees EOF, closes, and the relay ends cleanly.
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(10), resp.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");

    // Nothing listens on 8081 in the pod: the errno says so.
    let (_tx, mut resp, result) = open_relay(&mut c, Transport::Tcp, "198.18.0.10:8081").await;
    assert_eq!(result.errno, libc::ECONNREFUSED);
    assert!(matches!(resp.message().await, Ok(None)));

    // A malformed destination is a protocol error.
    let (tx2, rx2) = mpsc::channel(1);
    tx2.send(open_msg(Transport::Tcp, "not-an-address")).await.unwrap();
    let mut resp = c.open_connection(ReceiverStream::new(rx2)).await.unwrap().into_inner();
    assert_eq!(resp.message().await.unwrap_err().code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_udp_keeps_datagrams() {
    let ns = Netns::new();
    udp_server(&ns, 5300, |d| Some([b"echo:".as_slice(), d].concat()));
    let target = target(Some(&ns));
    let agent = Agent::start(target.pid(), &[]);
    let mut c = agent.client(Some(TOKEN)).await;
    let (tx, mut resp, result) = open_relay(&mut c, Transport::Udp, "198.18.0.10:5300").await;
    assert_eq!((result.errno, result.peer_address.as_str()), (0, "198.18.0.10:5300"));
    for d in [b"a".as_slice(), b"bb", b"ccc"] {
        tx.send(data_msg(d)).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), resp.message()).await.unwrap().unwrap().unwrap();
        let Some(connect_server::Msg::Data(got)) = m.msg else { panic!("{m:?}") };
        assert_eq!(got, [b"echo:".as_slice(), d].concat(), "one datagram per message");
    }
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(5), resp.message()).await.unwrap();
    assert!(matches!(end, Ok(None)));
}

/// A DNS server for `web.pod.test` (A 198.18.0.30, no AAAA); NXDOMAIN for anything else.
fn dns_answer(q: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(pos)? as usize;
        if len == 0 {
            pos += 1;
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos + 1..pos + 1 + len)?).to_lowercase());
        pos += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    let name = labels.join(".");
    let (rcode, answer): (u16, Option<[u8; 4]>) = match (name.as_str(), qtype) {
        ("web.pod.test", 1) => (0, Some([198, 18, 0, 30])),
        ("web.pod.test", _) => (0, None),
        _ => (3, None),
    };
    let mut r = q[..2].to_vec();
    r.extend((0x8180u16 | rcode).to_be_bytes());
    r.extend([0, 1, 0, answer.is_some() as u8, 0, 0, 0, 0]);
    r.extend(&q[12..pos + 4]);
    if let Some(a) = answer {
        r.extend([0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend(a);
    }
    Some(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_uses_the_target_hosts_file_and_nameserver() {
    let ns = Netns::new();
    let queries = Arc::new(AtomicUsize::new(0));
    let q = queries.clone();
    udp_server(&ns, 53, move |d| {
        q.fetch_add(1, Ordering::SeqCst);
        dns_answer(d)
    });
    let root = RootDir::new(
        &[
            ("etc/hosts", "127.0.0.1 localhost\n198.18.0.20 db.internal db\n"),
            ("etc/resolv.conf", "search pod.test\nnameserver 198.18.0.10\noptions ndots:1 timeout:1\n"),
        ],
        &[],
    );
    let target = root.target(Some(&ns));
    let agent = Agent::start(target.pid(), &[]);
    let mut c = agent.client(Some(TOKEN)).await;
    let mut resolve = async |name: &str| c.resolve(ResolveRequest { name: name.into() }).await.unwrap().into_inner();

    let r = resolve("db.internal").await;
    assert_eq!((r.errno, r.addresses), (0, vec!["198.18.0.20".to_string()]));
    assert_eq!(queries.load(Ordering::SeqCst), 0, "the hosts file answers without DNS");
    let r = resolve("web").await;
    assert_eq!((r.errno, r.addresses), (0, vec!["198.18.0.30".to_string()]), "search list + the pod's nameserver");
    assert!(queries.load(Ordering::SeqCst) >= 2, "A and AAAA went to the pod's nameserver");
    let r = resolve("web.pod.test.").await;
    assert_eq!(r.addresses, vec!["198.18.0.30".to_string()]);
    let r = resolve("nothing-here").await;
    assert_eq!((r.errno, r.addresses.len()), (libc::ENOENT, 0));
    let r = resolve("198.18.0.5").await;
    assert_eq!(r.addresses, vec!["198.18.0.5".to_string()]);
}

fn fd_request(conn: &UnixStream, req: &FdRequest) -> (FdReply, Option<std::os::fd::OwnedFd>) {
    send_line(conn, &serde_json::to_string(req).unwrap(), None).unwrap();
    let (line, fd) = recv_line(conn).unwrap();
    let reply: FdReply = serde_json::from_str(&line).unwrap();
    assert_eq!(reply.has_fd, fd.is_some(), "{line}");
    (reply, fd)
}

#[test]
fn fd_socket_hands_over_sockets_made_in_the_pod() {
    let ns = Netns::new();
    let _server = EchoServer::start(&ns, 8080);
    let target = target(Some(&ns));
    let sock = fd_socket_path();
    let agent = Agent::start(target.pid(), &["--fd-socket", &sock]);
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // A wrong token: EACCES, then the agent closes the connection.
    let bad = UnixStream::connect(&sock).unwrap();
    let (reply, fd) = fd_request(&bad, &FdRequest::Auth { token: "wrong".into() });
    assert_eq!((reply.errno, fd.is_none()), (libc::EACCES, true));
    assert_eq!(recv_line(&bad).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    // Skipping the token: the same.
    let bad = UnixStream::connect(&sock).unwrap();
    let (reply, _) = fd_request(&bad, &FdRequest::Socket { udp: true, v6: false });
    assert_eq!(reply.errno, libc::EACCES);

    let conn = UnixStream::connect(&sock).unwrap();
    let (reply, _) = fd_request(&conn, &FdRequest::Auth { token: TOKEN.into() });
    assert_eq!(reply.errno, 0);

    // Connect: a socket connected from inside the pod.
    let (reply, fd) = fd_request(&conn, &FdRequest::Connect { udp: false, address: "198.18.0.10:8080".into() });
    assert!(reply.errno == 0 || reply.errno == libc::EINPROGRESS, "{reply:?}");
    let fd = fd.expect("a socket");
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1, "connect finishes");
    let mut stream = TcpStream::from(fd);
    assert_eq!(stream.take_error().unwrap().map(|e| e.to_string()), None);
    assert_eq!(stream.peer_addr().unwrap().to_string(), "198.18.0.10:8080");
    assert_eq!(stream.local_addr().unwrap().ip().to_string(), POD_IP);
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = vec![0u8; GREETING.len()];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting, GREETING);
    stream.write_all(b"over the handed socket").unwrap();
    let mut echo = vec![0u8; 22];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(echo, b"over the handed socket");

    // Socket: unconnected, and it lives in the pod (only there can it bind the pod's address).
    let (reply, fd) = fd_request(&conn, &FdRequest::Socket { udp: true, v6: false });
    assert_eq!(reply.errno, 0);
    let fd = fd.unwrap();
    let s = socket2::SockRef::from(&fd);
    assert_eq!(s.r#type().unwrap(), socket2::Type::DGRAM);
    s.bind(&"198.18.0.10:0".parse::<std::net::SocketAddr>().unwrap().into()).expect("bind the pod's address");
    assert!(!is_local_address(POD_IP));

    // A refused connect still hands over the socket, with the errno (now or on completion).
    let (reply, fd) = fd_request(&conn, &FdRequest::Connect { udp: false, address: "198.18.0.10:8081".into() });
    assert!(reply.errno == libc::ECONNREFUSED || reply.errno == libc::EINPROGRESS, "{reply:?}");
    assert!(fd.is_some());
    // A bad address: EINVAL without a descriptor.
    let (reply, fd) = fd_request(&conn, &FdRequest::Connect { udp: true, address: "nowhere".into() });
    assert_eq!((reply.errno, fd.is_none()), (libc::EINVAL, true));
    drop(agent);
}

/// Sends `line` with every descriptor of `fds` in one `SCM_RIGHTS` message.
fn send_with_fds(sock: &UnixStream, line: &str, fds: &[std::os::fd::RawFd]) {
    let mut buf = format!("{line}\n").into_bytes();
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cmsg_buf = [0u64; 16];
    assert!(fds.len() <= 16, "room for 16 descriptors");
    // SAFETY: the control buffer holds one header and up to 16 descriptors.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<std::os::fd::RawFd>(), fds.len());
        assert_eq!(libc::sendmsg(sock.as_raw_fd(), &msg, 0), buf.len() as isize, "sendmsg");
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn descriptors_that_peers_send_are_closed_refused_or_not() {
    let target = target(None);
    let sock = fd_socket_path();
    let agent = Agent::start(target.pid(), &["--fd-socket", &sock]);
    // Settle: one authenticated round trip, so that lazily opened descriptors exist already.
    let warm = UnixStream::connect(&sock).unwrap();
    assert_eq!(fd_request(&warm, &FdRequest::Auth { token: TOKEN.into() }).0.errno, 0);
    drop(warm);
    let before = open_fds(agent.pid);
    let null = std::fs::File::open("/dev/null").unwrap();
    let ten = [null.as_raw_fd(); 10];
    let wrong = serde_json::to_string(&FdRequest::Auth { token: "wrong".into() }).unwrap();
    for _ in 0..5 {
        let bad = UnixStream::connect(&sock).unwrap();
        send_with_fds(&bad, &wrong, &ten);
        let (line, _) = recv_line(&bad).unwrap();
        assert_eq!(serde_json::from_str::<FdReply>(&line).unwrap().errno, libc::EACCES);
        assert_eq!(recv_line(&bad).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof, "then closed");
    }
    // An authenticated peer that attaches descriptors to its requests: the same.
    let good = UnixStream::connect(&sock).unwrap();
    send_with_fds(&good, &serde_json::to_string(&FdRequest::Auth { token: TOKEN.into() }).unwrap(), &ten);
    assert_eq!(serde_json::from_str::<FdReply>(&recv_line(&good).unwrap().0).unwrap().errno, 0);
    send_with_fds(&good, &serde_json::to_string(&FdRequest::Socket { udp: true, v6: false }).unwrap(), &ten);
    let (line, fd) = recv_line(&good).unwrap();
    assert_eq!((serde_json::from_str::<FdReply>(&line).unwrap().errno, fd.is_some()), (0, true));
    drop((good, fd));
    // The connections' threads end once the agent sees them closed: wait for that, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = open_fds(agent.pid);
        if now <= before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent holds {now} descriptors, {before} before 70 descriptors were sent to it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unknown_pid_is_one_clear_line_and_exit_code_2() {
    let out = agent_command(99_999_999, &[]).env("TETHER_AGENT_TOKEN", TOKEN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("99999999") && err.contains("no such process"), "{err}");
}

#[test]
fn no_token_no_start() {
    let target = target(None);
    for token in [None, Some("")] {
        let mut cmd = agent_command(target.pid(), &[]);
        if let Some(t) = token {
            cmd.env("TETHER_AGENT_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("TETHER_AGENT_TOKEN"), "{err}");
    }
}

#[test]
fn exits_when_idle() {
    let target = target(None);
    let mut agent = Agent::start(target.pid(), &["--idle-timeout", "1"]);
    let status = agent.wait_exit(Duration::from_secs(5)).expect("the idle agent exits");
    assert!(status.success(), "{status:?}");
    assert!(agent.stderr().contains("idle timeout"), "{}", agent.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_client_keeps_the_agent_alive() {
    let target = target(None);
    let sock = fd_socket_path();
    let mut agent = Agent::start(target.pid(), &["--idle-timeout", "1", "--fd-socket", &sock]);
    let mut c = agent.client(Some(TOKEN)).await;
    c.hello(hello_req(PROTOCOL_MAJOR)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(agent.proc.child.try_wait().unwrap().is_none(), "exited with a gRPC client connected");
    // An fd-socket client counts too.
    let fd_conn = UnixStream::connect(&sock).unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(agent.proc.child.try_wait().unwrap().is_none(), "exited with an fd-socket client connected");
    drop(fd_conn);
    let status = agent.wait_exit(Duration::from_secs(5)).expect("exits once the last client is gone");
    assert!(status.success());
    assert!(!exists(&sock), "the fd socket is removed");
}

#[test]
fn exits_when_the_target_exits() {
    let mut target = target(None);
    let sock = fd_socket_path();
    let mut agent = Agent::start(target.pid(), &["--fd-socket", &sock]);
    assert!(exists(&sock));
    assert!(agent.proc.child.try_wait().unwrap().is_none());
    // Killed but not reaped yet: a zombie counts as gone.
    unsafe { libc::kill(target.pid(), libc::SIGKILL) };
    let status = agent.wait_exit(Duration::from_secs(5)).expect("the agent follows its target");
    target.kill();
    assert!(status.success(), "{status:?}");
    assert!(!exists(&sock), "the fd socket is removed");
    assert!(agent.stderr().contains("has exited"), "{}", agent.stderr());
}

#[test]
fn sigterm_exits_and_removes_the_fd_socket() {
    let target = target(None);
    let sock = fd_socket_path();
    let mut agent = Agent::start(target.pid(), &["--fd-socket", &sock]);
    assert!(exists(&sock));
    unsafe { libc::kill(agent.pid as i32, libc::SIGTERM) };
    let status = agent.wait_exit(Duration::from_secs(5)).expect("SIGTERM ends the agent");
    assert!(status.success(), "{status:?}");
    assert!(!exists(&sock), "the fd socket is removed");
}

#[test]
fn sigterm_during_a_subscription_removes_the_table_and_the_fd_socket() {
    let ns = Netns::new();
    let target = target(Some(&ns));
    let sock = fd_socket_path();
    let mut agent = Agent::start(target.pid(), &["--fd-socket", &sock]);
    let conn = UnixStream::connect(&sock).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(fd_request(&conn, &FdRequest::Auth { token: TOKEN.into() }).0.errno, 0);
    let steal =
        FdRequest::Subscribe { port: 7000, mode: tether_protocol::fdpass::IncomingMode::Steal, http_filter: None };
    assert_eq!(fd_request(&conn, &steal).0.errno, 0);
    let tables = || {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "nft", "list", "tables"])
            .output()
            .expect("nft (package nftables) is needed for this test");
        assert!(out.status.success(), "nft list tables: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let agent_table = format!("tether_{}_", agent.pid);
    assert!(tables().contains(&agent_table), "the subscription's table: {}", tables());
    // SAFETY: a signal to the agent this test started.
    unsafe { libc::kill(agent.pid as i32, libc::SIGTERM) };
    let status = agent.wait_exit(Duration::from_secs(2)).expect("SIGTERM ends a subscribed agent within 2 s");
    assert!(status.success(), "{status:?}");
    assert!(!exists(&sock), "the fd socket is removed");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tables().contains(&agent_table) {
        assert!(std::time::Instant::now() < deadline, "the agent's table outlived it: {}", tables());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_agent_started_with_exit_with_parent_follows_its_parent() {
    let target = target(None);
    let sock = fd_socket_path();
    // A parent that starts the agent and stays until it is killed: `sh -c 'agent & wait'`.
    let agent_bin = env!("CARGO_BIN_EXE_tether-agent");
    let script = format!(
        "{agent_bin} --target-pid {} --listen 127.0.0.1:0 --fd-socket {sock} --idle-timeout 120 --exit-with-parent & wait",
        target.pid()
    );
    let mut parent = Proc {
        child: std::process::Command::new("sh")
            .args(["-c", &script])
            .env("TETHER_AGENT_TOKEN", TOKEN)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !exists(&sock) {
        assert!(std::time::Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent_pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')').map(|(_, r)| r.split_whitespace().nth(1) == Some(&parent.pid().to_string()))
                })
                .unwrap_or(false)
        })
        .expect("the agent, a child of the shell");
    parent.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{agent_pid}/stat")).ok();
        let gone = state
            .as_deref()
            .is_none_or(|s| s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X'])));
        if gone {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the agent outlived its parent by 2 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!exists(&sock), "the fd socket is removed");
}

#[test]
fn an_agent_whose_stderr_reader_is_gone_still_exits() {
    // A daemon killed with kill -9 leaves its agents a stderr pipe without a reader.
    let target = target(None);
    let sock = fd_socket_path();
    // As a daemon starts it: info level (at debug the accept loop logs, panics and ends the
    // process with code 101 instead of hanging).
    let mut child = agent_command(target.pid(), &["--fd-socket", &sock])
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.contains("\"pid\""), "the startup line: {line:?}");
    drop(child.stderr.take()); // nobody reads the agent's stderr any more
    let mut agent = Proc { child };
    // Something the agent logs (a refused fd-socket client), then SIGTERM.
    let bad = UnixStream::connect(&sock).unwrap();
    let _ = fd_request(&bad, &FdRequest::Auth { token: "wrong".into() });
    // SAFETY: a signal to the agent this test started.
    unsafe { libc::kill(agent.pid(), libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "SIGTERM did not end an agent without a stderr reader");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "a clean exit: {status:?}");
    assert!(!exists(&sock), "the fd socket is removed");
}

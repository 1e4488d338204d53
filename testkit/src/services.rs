//! The services a pod runs: threads of the test process whose sockets were created inside the
//! pod's network namespace, so they are reachable only from inside it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::dns;
use crate::netns::in_netns;
use crate::pod::{DNS_ADDR, ECHO_ADDR, HTTP_ADDR, SINK_ADDR};

/// How often blocked service threads look at the stop flag.
const TICK: Duration = Duration::from_millis(50);

#[derive(Default)]
pub(crate) struct Counters {
    pub http: AtomicU64,
    pub dns: AtomicU64,
    pub echo_tcp: AtomicU64,
    pub echo_udp: AtomicU64,
    pub sink: AtomicU64,
}

struct Ctx {
    pod: String,
    stop: AtomicBool,
    counters: Counters,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

pub(crate) struct Services {
    ctx: Arc<Ctx>,
    threads: Vec<JoinHandle<()>>,
}

struct Sockets {
    http: TcpListener,
    dns_udp: UdpSocket,
    dns_tcp: TcpListener,
    echo_tcp: TcpListener,
    echo_udp: UdpSocket,
    sink: TcpListener,
}

fn bind_all() -> io::Result<Sockets> {
    let any = |a: SocketAddrV4| SocketAddr::V4(a);
    Ok(Sockets {
        http: TcpListener::bind(any(HTTP_ADDR))?,
        dns_udp: UdpSocket::bind(any(DNS_ADDR))?,
        dns_tcp: TcpListener::bind(any(DNS_ADDR))?,
        echo_tcp: TcpListener::bind(any(ECHO_ADDR))?,
        echo_udp: UdpSocket::bind(any(ECHO_ADDR))?,
        sink: TcpListener::bind(any(SINK_ADDR))?,
    })
}

impl Services {
    /// Binds every socket inside the namespace `netns`, then serves them from threads.
    /// All sockets are listening when this returns.
    pub(crate) fn start(netns: &OwnedFd, pod: &str) -> Result<Services> {
        let s = in_netns(netns, bind_all)?.context("binding the pod's service sockets")?;
        let ctx = Arc::new(Ctx {
            pod: pod.to_string(),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            conns: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        let mut spawn = |what: &str, f: Box<dyn FnOnce() + Send>| -> Result<()> {
            let h = std::thread::Builder::new()
                .name(format!("pod-{pod}-{what}"))
                .spawn(f)
                .context("spawning a service thread")?;
            threads.push(h);
            Ok(())
        };
        let c = ctx.clone();
        spawn("http", Box::new(move || accept_loop(s.http, c, "http", http_conn)))?;
        let c = ctx.clone();
        spawn("dns-tcp", Box::new(move || accept_loop(s.dns_tcp, c, "dns", dns_tcp_conn)))?;
        let c = ctx.clone();
        spawn("echo", Box::new(move || accept_loop(s.echo_tcp, c, "echo", echo_conn)))?;
        let c = ctx.clone();
        spawn("sink", Box::new(move || accept_loop(s.sink, c, "sink", sink_conn)))?;
        let c = ctx.clone();
        spawn("dns-udp", Box::new(move || udp_loop(s.dns_udp, c, dns_datagram)))?;
        let c = ctx.clone();
        spawn("echo-udp", Box::new(move || udp_loop(s.echo_udp, c, echo_datagram)))?;
        Ok(Services { ctx, threads })
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.ctx.counters
    }

    /// Stops every service thread (listeners and connections) and waits for them.
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.ctx.stop.store(true, Ordering::SeqCst);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        // Listeners are gone, so no new connection threads appear.
        let conns: Vec<_> = std::mem::take(&mut *self.ctx.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for h in conns {
            let _ = h.join();
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn poll_in(fd: i32, timeout: Duration) {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
}

fn accept_loop(l: TcpListener, ctx: Arc<Ctx>, what: &'static str, handler: fn(TcpStream, &Ctx)) {
    if l.set_nonblocking(true).is_err() {
        return;
    }
    while !ctx.stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((s, _peer)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(TICK));
                let _ = s.set_write_timeout(Some(TICK));
                let _ = s.set_nodelay(true);
                let c = ctx.clone();
                let h = std::thread::Builder::new()
                    .name(format!("pod-{}-{what}-conn", ctx.pod))
                    .spawn(move || handler(s, &c));
                let mut conns = ctx.conns.lock().unwrap_or_else(|e| e.into_inner());
                conns.retain(|h| !h.is_finished());
                if let Ok(h) = h {
                    conns.push(h);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => poll_in(l.as_raw_fd(), TICK),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn udp_loop(s: UdpSocket, ctx: Arc<Ctx>, handler: fn(&[u8], &Ctx) -> Option<Vec<u8>>) {
    let _ = s.set_read_timeout(Some(TICK));
    let mut buf = vec![0u8; 65536];
    while !ctx.stop.load(Ordering::SeqCst) {
        match s.recv_from(&mut buf) {
            Ok((n, peer)) => {
                if let Some(reply) = handler(&buf[..n], &ctx) {
                    let _ = s.send_to(&reply, peer);
                }
            }
            Err(_) => continue, // timeout: look at the stop flag
        }
    }
}

fn stopped(ctx: &Ctx) -> io::Error {
    let _ = ctx;
    io::Error::new(io::ErrorKind::Interrupted, "pod stopping")
}

fn transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

/// `read` that survives the periodic timeouts and gives up when the pod stops.
fn read_some(s: &mut TcpStream, buf: &mut [u8], ctx: &Ctx) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if transient(&e) => {
                if ctx.stop.load(Ordering::Relaxed) {
                    return Err(stopped(ctx));
                }
            }
            r => return r,
        }
    }
}

fn read_exact(s: &mut TcpStream, mut buf: &mut [u8], ctx: &Ctx) -> io::Result<()> {
    while !buf.is_empty() {
        let n = read_some(s, buf, ctx)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

fn write_all(s: &mut TcpStream, mut buf: &[u8], ctx: &Ctx) -> io::Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if transient(&e) => {
                if ctx.stop.load(Ordering::Relaxed) {
                    return Err(stopped(ctx));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// HTTP/1.x: every request gets `200 text/plain` naming the pod and the client's address.
fn http_conn(mut s: TcpStream, ctx: &Ctx) {
    let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Read one request head.
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                let _ = write_all(
                    &mut s,
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ctx,
                );
                return;
            }
            match read_some(&mut s, &mut chunk, ctx) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let _target = parts.next();
        let version = parts.next().unwrap_or("HTTP/1.0").to_string();
        let mut content_length = 0usize;
        let mut connection = String::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("connection") {
                    connection = v.to_ascii_lowercase();
                }
            }
        }
        // Discard a request body.
        let mut left = content_length;
        let from_buf = left.min(buf.len());
        buf.drain(..from_buf);
        left -= from_buf;
        while left > 0 {
            let want = left.min(chunk.len());
            match read_some(&mut s, &mut chunk[..want], ctx) {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n,
            }
        }
        ctx.counters.http.fetch_add(1, Ordering::Relaxed);
        let keep_alive =
            if version == "HTTP/1.1" { !connection.contains("close") } else { connection.contains("keep-alive") };
        let body = format!("hello from pod {}; you are {}\n", ctx.pod, peer);
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Tether-Pod: {}\r\nConnection: {}\r\n\r\n",
            body.len(),
            ctx.pod,
            if keep_alive { "keep-alive" } else { "close" }
        )
        .into_bytes();
        if method != "HEAD" {
            resp.extend_from_slice(body.as_bytes());
        }
        if write_all(&mut s, &resp, ctx).is_err() || !keep_alive {
            let _ = s.shutdown(Shutdown::Write);
            // Let the client read everything before the socket closes.
            let _ = read_some(&mut s, &mut chunk, ctx);
            return;
        }
    }
}

/// DNS over TCP: 2-byte length-prefixed messages until the client closes.
fn dns_tcp_conn(mut s: TcpStream, ctx: &Ctx) {
    loop {
        let mut len = [0u8; 2];
        if read_exact(&mut s, &mut len, ctx).is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if read_exact(&mut s, &mut msg, ctx).is_err() {
            return;
        }
        let Some(resp) = dns_datagram(&msg, ctx) else {
            return;
        };
        let mut out = (resp.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&resp);
        if write_all(&mut s, &out, ctx).is_err() {
            return;
        }
    }
}

fn dns_datagram(msg: &[u8], ctx: &Ctx) -> Option<Vec<u8>> {
    ctx.counters.dns.fetch_add(1, Ordering::Relaxed);
    dns::respond(msg)
}

fn echo_datagram(msg: &[u8], ctx: &Ctx) -> Option<Vec<u8>> {
    ctx.counters.echo_udp.fetch_add(1, Ordering::Relaxed);
    Some(msg.to_vec())
}

/// TCP echo: everything read is written back; EOF is answered with EOF.
fn echo_conn(mut s: TcpStream, ctx: &Ctx) {
    ctx.counters.echo_tcp.fetch_add(1, Ordering::Relaxed);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match read_some(&mut s, &mut buf, ctx) {
            Ok(0) => {
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if write_all(&mut s, &buf[..n], ctx).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Sink: read an 8-byte big-endian N, write N bytes of `x`, close.
fn sink_conn(mut s: TcpStream, ctx: &Ctx) {
    ctx.counters.sink.fetch_add(1, Ordering::Relaxed);
    let mut len = [0u8; 8];
    if read_exact(&mut s, &mut len, ctx).is_err() {
        return;
    }
    let mut left = u64::from_be_bytes(len);
    let chunk = vec![b'x'; 256 * 1024];
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if write_all(&mut s, &chunk[..n], ctx).is_err() {
            return;
        }
        left -= n as u64;
    }
    let _ = s.shutdown(Shutdown::Write);
}

//! The local fast path: socket hand-over between an agent and a daemon on the same host.
//!
//! The daemon connects to the agent's Unix socket (`HelloReply.fd_socket`) and sends one JSON line
//! per request; the agent answers with one JSON line, and when the answer carries a socket the
//! descriptor travels with it as `SCM_RIGHTS`. Because the agent created the socket inside the
//! target's network namespace, the program that finally owns it really is connected from the pod:
//! `getpeername`, `getsockname` and throughput are those of a direct connection.
//!
//! Incoming traffic uses the same socket: a connection that sends [`FdRequest::Subscribe`] (after
//! `auth`) becomes that subscription's event stream. The agent sends one [`IncomingEvent`] line per
//! new connection, with the connection's descriptor attached (a socket of the target's network
//! namespace when stolen whole, else one end of a local stream pair the agent feeds), and a
//! `stats` line now and then. Closing the connection unsubscribes.

use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// One request on the fd socket. The first request of a connection must carry the token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FdRequest {
    /// Prove the session token; answered with `errno: 0` or `EACCES`, then the connection closes.
    Auth { token: String },
    /// Create a socket in the target's network namespace and start connecting it (non-blocking).
    /// The answer's `errno` is 0 (connected), `EINPROGRESS` (in progress) or the failure.
    Connect { udp: bool, address: String },
    /// Create an unconnected socket of the given family (`v6`) in the target's network namespace.
    Socket { udp: bool, v6: bool },
    /// Subscribe to the incoming traffic of the target's TCP `port`. Answered like any request
    /// (`errno` 0, `EADDRINUSE` when another subscriber steals the port already, `EINVAL` for a
    /// bad filter); after a 0 answer the connection belongs to the subscription: the agent sends
    /// [`IncomingEvent`] lines (a [`IncomingEvent::Connection`] carries a descriptor) and the
    /// client sends nothing more. Either side closing the connection ends the subscription; the
    /// agent then removes its redirect for the port. Connections delivered so far live on.
    Subscribe {
        port: u16,
        mode: IncomingMode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_filter: Option<HttpFilter>,
    },
}

/// How a subscription takes the target's incoming traffic.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IncomingMode {
    /// The target keeps serving; each new connection's client bytes are copied to the subscriber
    /// (captured from the wire, so the target's traffic never waits for the copy).
    Mirror,
    /// New connections go to the subscriber instead of the target (with an [`HttpFilter`]: only
    /// the matching HTTP/1.x and HTTP/2 (h2c) requests; everything else goes on to the target).
    Steal,
}

/// Which HTTP requests a filtered steal takes. Every given pattern must match; an empty filter
/// is no filter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpFilter {
    /// A regex matched against each header line as `Name: value`; a line matches when the
    /// regex matches it with the name as sent or with the name in lower case. In HTTP/2 (names
    /// are lower case there) `:authority` is seen as a `host` line when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A regex matched against the request's path, query string included (the request target;
    /// in HTTP/2, `:path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl HttpFilter {
    pub fn is_empty(&self) -> bool {
        self.header.is_none() && self.path.is_none()
    }
}

/// What a [`IncomingEvent::Connection`]'s descriptor is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// The client's own TCP socket, accepted in the target's network namespace (steal): give
    /// it to the program as it is.
    Socket,
    /// A stream socket carrying the client's requests that the filter matched; what the
    /// program answers is written back to it and reaches the client (filtered steal).
    Stream,
    /// A stream socket carrying a copy of the client's bytes; answers are not wanted (mirror).
    Mirror,
}

/// One line from the agent on a subscription's connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum IncomingEvent {
    /// A new connection for the subscriber; its descriptor travels with the line.
    Connection {
        /// Unique within the agent.
        id: u64,
        kind: ConnectionKind,
        /// The client's address (`ip:port`), as the target would have seen it.
        peer: String,
        /// The address the client connected to: the target's address and port.
        local: String,
    },
    /// The subscription's accounting so far (sent about once a second while it changes).
    Stats(IncomingStats),
}

/// Connection accounting of one subscription. Bytes count what the agent moved itself (mirror
/// copies, filtered relays); a stolen socket handed over whole is counted as a connection only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IncomingStats {
    /// Connections delivered to the subscriber.
    pub connections: u64,
    /// Connections that reached the redirect while the subscription was active but went to the
    /// target (filtered steal: every connection is relayed; non-HTTP traffic; no subscriber).
    pub passed_through: u64,
    /// HTTP requests that matched the filter / went on to the target.
    pub requests_matched: u64,
    pub requests_passed: u64,
    /// Client bytes delivered to the subscriber, and answer bytes sent back to clients.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Mirrored connections given up because the subscriber could not keep up, or because
    /// packets were missed.
    pub dropped: u64,
}

/// The same accounting in the gRPC form (`Subscribe`'s stats events), both ways.
impl From<IncomingStats> for crate::agent::IncomingStats {
    fn from(s: IncomingStats) -> Self {
        let IncomingStats {
            connections,
            passed_through,
            requests_matched,
            requests_passed,
            bytes_in,
            bytes_out,
            dropped,
        } = s;
        crate::agent::IncomingStats {
            connections,
            passed_through,
            requests_matched,
            requests_passed,
            bytes_in,
            bytes_out,
            dropped,
        }
    }
}

impl From<crate::agent::IncomingStats> for IncomingStats {
    fn from(s: crate::agent::IncomingStats) -> Self {
        let crate::agent::IncomingStats {
            connections,
            passed_through,
            requests_matched,
            requests_passed,
            bytes_in,
            bytes_out,
            dropped,
        } = s;
        IncomingStats { connections, passed_through, requests_matched, requests_passed, bytes_in, bytes_out, dropped }
    }
}

/// The answer to an [`FdRequest`]; `has_fd` says whether a descriptor came with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FdReply {
    pub errno: i32,
    pub has_fd: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `line` and a newline in one `sendmsg` with `flags`, the descriptor attached; retried on
/// EINTR. Returns how many bytes went out.
fn send_once(sock: &impl AsRawFd, buf: &mut [u8], fd: Option<RawFd>, flags: i32) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cmsg_buf = [0u64; 4]; // room for one cmsghdr with one int, aligned
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        unsafe {
            msg.msg_control = cmsg_buf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    loop {
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn with_newline(line: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    buf
}

/// Sends `line` (a newline is appended) with an optional descriptor attached.
pub fn send_line(sock: &impl AsRawFd, line: &str, fd: Option<RawFd>) -> io::Result<()> {
    let mut buf = with_newline(line);
    if send_once(sock, &mut buf, fd, 0)? != buf.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write on fd socket"));
    }
    Ok(())
}

/// [`send_line`] that never waits for room: `WouldBlock` (nothing sent, the descriptor stays
/// the caller's) when the socket's buffer is full. A line that went out only in part (not seen
/// with lines far below the buffer's size) is finished with blocking writes, so it stays whole.
pub fn try_send_line(sock: &impl AsRawFd, line: &str, fd: Option<RawFd>) -> io::Result<()> {
    let mut buf = with_newline(line);
    let mut sent = send_once(sock, &mut buf, fd, libc::MSG_DONTWAIT)?;
    while sent < buf.len() {
        let rest = &buf[sent..];
        let n = unsafe { libc::send(sock.as_raw_fd(), rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
        if n > 0 {
            sent += n as usize;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                unsafe { libc::poll(&mut pfd, 1, 1000) };
            }
            // The descriptor went with the first part: the line is lost either way.
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Receives one line (at most 64 KiB) and the descriptor that came with it, if any.
///
/// Lines are small and sent with one `sendmsg` each, so in a request/answer exchange one
/// `recvmsg` on a stream socket returns exactly one line unless the peer misbehaves, which is
/// reported as an error. Where several lines may be in flight (a subscription), use
/// [`recv_lines`].
pub fn recv_line(sock: &impl AsRawFd) -> io::Result<(String, Option<OwnedFd>)> {
    let (buf, fd) = recv_raw(sock)?;
    if buf.iter().filter(|&&b| b == b'\n').count() > 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "fd socket message with several lines"));
    }
    let mut lines = split_lines(buf)?;
    Ok((lines.pop().expect("one line"), fd))
}

/// Receives the lines that one `recvmsg` returns and the descriptor that came with them.
///
/// A Unix stream socket joins messages without descriptors to the next message, and stops
/// after a message with descriptors: so several lines may arrive at once, and a descriptor
/// always belongs to the **last** of them.
pub fn recv_lines(sock: &impl AsRawFd) -> io::Result<(Vec<String>, Option<OwnedFd>)> {
    let (buf, fd) = recv_raw(sock)?;
    Ok((split_lines(buf)?, fd))
}

fn split_lines(mut buf: Vec<u8>) -> io::Result<Vec<String>> {
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "fd socket message without a line end"));
    }
    buf.pop();
    let text = String::from_utf8(buf)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "fd socket message is not UTF-8"))?;
    Ok(text.split('\n').map(str::to_string).collect())
}

fn recv_raw(sock: &impl AsRawFd) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cmsg_buf = [0u64; 8];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg_buf) as _;
    let n = loop {
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    // The kernel installs every descriptor that fits in the control buffer (those that do not
    // are discarded, MSG_CTRUNC): take them all, so none stays open unowned. A line carries one
    // descriptor: the first is the answer's, the others (a misbehaving peer) are closed here.
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: the kernel filled `msg`'s control buffer; CMSG_* walk only within it, and each
    // SCM_RIGHTS payload holds `(cmsg_len - CMSG_LEN(0)) / sizeof(int)` descriptors that are
    // now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..payload / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let fd = (!fds.is_empty()).then(|| fds.swap_remove(0));
    drop(fds);
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "fd socket closed"));
    }
    buf.truncate(n);
    Ok((buf, fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_descriptor_travels_with_its_line() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, w) = UnixStream::pair().unwrap();
        let req = FdRequest::Connect { udp: false, address: "198.18.0.10:80".into() };
        send_line(&a, &serde_json::to_string(&req).unwrap(), Some(w.as_raw_fd())).unwrap();
        let (line, fd) = recv_line(&b).unwrap();
        assert_eq!(serde_json::from_str::<FdRequest>(&line).unwrap(), req);
        let fd = fd.expect("descriptor");
        // The received descriptor is the same socket: writing to it reaches `r`.
        let n = unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(n, 1);
        let mut got = [0u8; 1];
        use std::io::Read;
        (&r).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
    }

    #[test]
    fn incoming_lines_have_a_stable_shape() {
        let req = FdRequest::Subscribe {
            port: 80,
            mode: IncomingMode::Steal,
            http_filter: Some(HttpFilter { header: Some("^x-user: me$".into()), path: None }),
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(line, r#"{"op":"subscribe","port":80,"mode":"steal","http_filter":{"header":"^x-user: me$"}}"#);
        assert_eq!(serde_json::from_str::<FdRequest>(&line).unwrap(), req);
        let bare: FdRequest = serde_json::from_str(r#"{"op":"subscribe","port":7,"mode":"mirror"}"#).unwrap();
        assert_eq!(bare, FdRequest::Subscribe { port: 7, mode: IncomingMode::Mirror, http_filter: None });
        let ev = IncomingEvent::Connection {
            id: 3,
            kind: ConnectionKind::Socket,
            peer: "198.19.0.1:40000".into(),
            local: "198.18.0.10:80".into(),
        };
        let line = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            line,
            r#"{"event":"connection","id":3,"kind":"socket","peer":"198.19.0.1:40000","local":"198.18.0.10:80"}"#
        );
        assert_eq!(serde_json::from_str::<IncomingEvent>(&line).unwrap(), ev);
        let stats = IncomingEvent::Stats(IncomingStats { connections: 2, ..Default::default() });
        let line = serde_json::to_string(&stats).unwrap();
        assert!(line.starts_with(r#"{"event":"stats","connections":2,"#), "{line}");
        assert_eq!(serde_json::from_str::<IncomingEvent>(&line).unwrap(), stats);
    }

    #[test]
    fn lines_in_flight_arrive_together_and_the_descriptor_goes_with_the_last() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_r, w) = UnixStream::pair().unwrap();
        send_line(&a, "stats 1", None).unwrap();
        send_line(&a, "stats 2", None).unwrap();
        send_line(&a, "connection", Some(w.as_raw_fd())).unwrap();
        send_line(&a, "after", None).unwrap();
        let (lines, fd) = recv_lines(&b).unwrap();
        assert_eq!(lines, ["stats 1", "stats 2", "connection"]);
        assert!(fd.is_some());
        let (lines, fd) = recv_lines(&b).unwrap();
        assert_eq!((lines, fd.is_none()), (vec!["after".to_string()], true));
        send_line(&a, "x", None).unwrap();
        send_line(&a, "y", None).unwrap();
        assert_eq!(recv_line(&b).unwrap_err().kind(), io::ErrorKind::InvalidData, "recv_line wants one line");
    }

    /// Sends `line` with every descriptor of `fds` in one `SCM_RIGHTS` message (what a
    /// misbehaving peer could do).
    fn send_many(sock: &UnixStream, line: &str, fds: &[RawFd]) {
        let mut buf = with_newline(line);
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut cmsg_buf = [0u64; 64];
        // SAFETY: the control buffer is large enough for one header and `fds` (at most 100).
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg_buf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of_val(fds) as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), fds.len());
            assert_eq!(libc::sendmsg(sock.as_raw_fd(), &msg, 0), buf.len() as isize);
        }
    }

    /// Whether the peer of `s` has closed (reading says end-of-file within a second).
    fn peer_closed(s: &UnixStream) -> bool {
        let mut pfd = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 1000) };
        s.set_nonblocking(true).unwrap();
        matches!(std::io::Read::read(&mut &*s, &mut [0u8; 1]), Ok(0))
    }

    #[test]
    fn every_descriptor_of_a_message_is_taken_and_all_but_the_first_closed() {
        for count in [1, 10, 100] {
            let (a, b) = UnixStream::pair().unwrap();
            let pairs: Vec<(UnixStream, UnixStream)> = (0..count).map(|_| UnixStream::pair().unwrap()).collect();
            let raw: Vec<RawFd> = pairs.iter().map(|(sent, _)| sent.as_raw_fd()).collect();
            send_many(&a, "auth", &raw);
            let kept: Vec<UnixStream> = pairs.into_iter().map(|(_, kept)| kept).collect(); // our copies of the sent ends close here
            let (line, fd) = recv_line(&b).unwrap();
            assert_eq!(line, "auth");
            assert!(fd.is_some(), "the first descriptor is returned");
            for (i, k) in kept.iter().enumerate().skip(1) {
                assert!(peer_closed(k), "{count} descriptors: descriptor {i} was kept open by the receiver");
            }
            assert!(!peer_closed(&kept[0]), "the returned descriptor is open");
            drop(fd);
            assert!(peer_closed(&kept[0]), "and closes with its owner");
        }
    }

    #[test]
    fn a_closed_peer_is_an_error_not_an_empty_line() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert_eq!(recv_line(&b).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn try_send_line_says_would_block_on_a_full_buffer_and_sends_whole_lines() {
        let (a, b) = UnixStream::pair().unwrap();
        let line = "x".repeat(100);
        let mut sent = 0;
        let err = loop {
            match try_send_line(&a, &line, None) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 1_000_000, "never full");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(try_send_line(&a, "y", Some(f.as_raw_fd())).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        b.set_nonblocking(true).unwrap();
        let mut got = 0;
        while let Ok((lines, _)) = recv_lines(&b) {
            assert!(lines.iter().all(|l| *l == line));
            got += lines.len();
        }
        assert_eq!(got, sent);
    }
}

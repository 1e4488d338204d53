//! The local fast path: socket hand-over between an agent and a daemon on the same host.
//!
//! The daemon connects to the agent's Unix socket (`HelloReply.fd_socket`) and sends one JSON line
//! per request; the agent answers with one JSON line, and when the answer carries a socket the
//! descriptor travels with it as `SCM_RIGHTS`. Because the agent created the socket inside the
//! target's network namespace, the program that finally owns it really is connected from the pod:
//! `getpeername`, `getsockname` and throughput are those of a direct connection.

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
}

/// The answer to an [`FdRequest`]; `has_fd` says whether a descriptor came with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FdReply {
    pub errno: i32,
    pub has_fd: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Sends `line` (a newline is appended) with an optional descriptor attached.
pub fn send_line(sock: &impl AsRawFd, line: &str, fd: Option<RawFd>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
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
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            if n as usize != buf.len() {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "short write on fd socket"));
            }
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives one line (at most 64 KiB) and the descriptor that came with it, if any.
///
/// Lines are small and sent with one `sendmsg` each, so one `recvmsg` on a stream socket
/// returns exactly one line unless the peer misbehaves, which is reported as an error.
pub fn recv_line(sock: &impl AsRawFd) -> io::Result<(String, Option<OwnedFd>)> {
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
    let mut fd = None;
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "fd socket closed"));
    }
    buf.truncate(n);
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "fd socket message without a line end"));
    }
    buf.pop();
    let line = String::from_utf8(buf)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "fd socket message is not UTF-8"))?;
    Ok((line, fd))
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
    fn a_closed_peer_is_an_error_not_an_empty_line() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert_eq!(recv_line(&b).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}

//! The fd socket: hands sockets made inside the target's network namespace to a local daemon.
//!
//! When the agent runs on the daemon's host, relaying bytes is a waste: the daemon can inject the
//! very socket the agent connected in the target's namespace into the program (`SCM_RIGHTS`, then
//! `SECCOMP_IOCTL_NOTIF_ADDFD`), which then has direct speed and true `getpeername` answers.
//! Protocol (`tether_protocol::fdpass`): one JSON line per request and per answer; the first
//! request of a connection must prove the token. Each connection gets a plain thread (requests
//! on one connection are sequential, connections are concurrent, and there are few of them).
//! The agent closes its copy of a socket once it has been sent.

use crate::activity::Activity;
use crate::auth::Token;
use crate::incoming::Incoming;
use crate::netns::{NetnsThread, SocketSpec};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use tether_protocol::fdpass::{FdReply, FdRequest, recv_line, send_line};

/// Binds the Unix socket at `path` with mode 0600. A stale socket file (nobody accepting, e.g.
/// left by a killed agent) is replaced; a live socket or any other kind of file is an error.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    let listener = match bind_private(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false);
            if !is_socket {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the path exists and is not a socket"));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "another process is serving this socket"));
            }
            std::fs::remove_file(path)?;
            bind_private(path)?
        }
        other => other?,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn bind_private(path: &Path) -> io::Result<UnixListener> {
    // The umask makes the file 0600 from its creation on (called before other threads create
    // files); the chmod after binding makes sure of it.
    // SAFETY: umask only swaps the process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let r = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    r
}

/// Serves connections on a thread of its own.
pub fn spawn(
    listener: UnixListener,
    token: Token,
    netns: NetnsThread,
    activity: Activity,
    incoming: Arc<Incoming>,
) -> io::Result<()> {
    std::thread::Builder::new().name("fd-accept".into()).spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(conn) => {
                    let guard = activity.connect();
                    let (token, netns, incoming) = (token.clone(), netns.clone(), incoming.clone());
                    let spawned = std::thread::Builder::new().name("fd-conn".into()).spawn(move || {
                        let _guard = guard;
                        if let Err(e) = serve(&conn, &token, &netns, &incoming) {
                            tracing::debug!(err = %e, "fd socket connection ended");
                        }
                    });
                    if let Err(e) = spawned {
                        tracing::warn!(err = %e, "cannot start a thread for an fd socket connection");
                    }
                }
                Err(e) => {
                    tracing::warn!(err = %e, "accept on the fd socket failed");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    })?;
    Ok(())
}

fn reply(conn: &UnixStream, errno: i32, message: &str, fd: Option<&impl AsRawFd>) -> io::Result<()> {
    let r = FdReply { errno, has_fd: fd.is_some(), message: message.to_string() };
    let line = serde_json::to_string(&r).map_err(io::Error::other)?;
    send_line(conn, &line, fd.map(|f| f.as_raw_fd()))
}

/// One connection: the token first, then requests until the peer closes.
fn serve(conn: &UnixStream, token: &Token, netns: &NetnsThread, incoming: &Arc<Incoming>) -> io::Result<()> {
    // A descriptor that a peer might attach to a request is dropped (closed) right away.
    let (line, _) = recv_line(conn)?;
    match serde_json::from_str::<FdRequest>(&line) {
        Ok(FdRequest::Auth { token: t }) if token.matches(t.as_bytes()) => reply(conn, 0, "", None::<&UnixStream>)?,
        _ => {
            tracing::warn!("fd socket client refused: the first request did not carry the token");
            return reply(
                conn,
                libc::EACCES,
                "the first request must be `auth` with the session token",
                None::<&UnixStream>,
            );
        }
    }
    loop {
        let line = match recv_line(conn) {
            Ok((line, _)) => line,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let spec = match serde_json::from_str::<FdRequest>(&line) {
            Ok(FdRequest::Connect { udp, address }) => match address.parse::<SocketAddr>() {
                Ok(addr) => SocketSpec::connect(udp, addr),
                Err(_) => {
                    reply(conn, libc::EINVAL, &format!("address {address:?} is not ip:port"), None::<&UnixStream>)?;
                    continue;
                }
            },
            Ok(FdRequest::Socket { udp, v6 }) => SocketSpec { udp, v6, connect: None },
            // The connection becomes the subscription's event stream (see `incoming`).
            Ok(FdRequest::Subscribe { port, mode, http_filter }) => {
                return incoming.serve(conn, port, mode, http_filter);
            }
            Ok(FdRequest::Auth { .. }) => {
                reply(conn, 0, "", None::<&UnixStream>)?; // already authenticated
                continue;
            }
            Err(e) => {
                reply(conn, libc::EINVAL, &format!("bad request: {e}"), None::<&UnixStream>)?;
                continue;
            }
        };
        match netns.socket_blocking(spec) {
            Ok(made) => {
                reply(conn, made.connect_errno, "", Some(&made.fd))?;
                drop(made.fd); // the daemon has its own copy now
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                reply(conn, errno, &e.to_string(), None::<&UnixStream>)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sockets_are_replaced_live_ones_and_files_are_not() {
        let dir = std::env::temp_dir().join(format!("tether-agent-fdsock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.sock");
        let live = bind(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(bind(&path).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop(live); // the file stays behind: stale
        let again = bind(&path).unwrap();
        drop(again);
        let file = dir.join("plain");
        std::fs::write(&file, "keep me").unwrap();
        assert!(bind(&file).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Puts the calling process under a session's seccomp filter and hands the listener to the daemon.
//!
//! Two callers share this code: `libtether_layer.so`'s constructor (for programs an editor's
//! debugger starts) and `tether exec` (just before `execve`, so static binaries are covered too).
//! The filter is inherited across `fork` and `execve`, so the whole process tree stays covered
//! even when a tool strips the environment.
//!
//! The order matters (see `shared/notes/seccomp-facts.md`): connect to the daemon *before* the
//! filter exists, install it, then announce the listener's descriptor number with plain `write`
//! so the daemon can take it with `pidfd_getfd`; finally close our own copy so that the listener
//! lives only in the daemon. Nothing between `seccomp()` and the daemon's answer makes a trapped
//! call: the handshake sends with `sendto` without a destination and receives with `read`, which
//! no filter traps (`write` is trapped in sessions that write remote files).
//!
//! This crate depends on `libc` only: it runs inside arbitrary programs.

pub mod filter;
pub mod handshake;
pub mod syscalls;

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use handshake::{Reply, Request};

/// What happened when a process tried to join its session.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The process is now under the session's filter; the daemon serves it.
    Attached,
    /// The process was already under the session's filter (a child of an intercepted process);
    /// it registered with the daemon and goes on.
    AlreadyAttached,
    /// The daemon says this program is in the skip list: no filter was installed.
    Skipped,
}

/// A bootstrap that did not succeed; the caller prints it as one line.
#[derive(Debug)]
pub struct Error {
    pub step: &'static str,
    pub detail: String,
    pub hint: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tether: could not intercept this process: {}: {}", self.step, self.detail)?;
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

fn err(step: &'static str, detail: impl fmt::Display, hint: &'static str) -> Error {
    Error { step, detail: detail.to_string(), hint }
}

/// Joins `session` on the daemon at `socket`: see the module documentation.
pub fn attach(socket: &str, session: &str, token: &str) -> Result<Outcome, Error> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        err(
            "connecting to the tether daemon",
            format!("{socket}: {e}"),
            "is `tether daemon` running? `tether status` tells",
        )
    })?;
    let reply = exchange(&mut stream, &Request::Attach { session, token })?;
    let trap = match reply {
        Reply::Trap(nrs) => nrs,
        Reply::Skip => return Ok(Outcome::Skipped),
        Reply::Ok => return Err(err("joining the session", "unexpected answer", "")),
        Reply::Err(msg) => {
            return Err(err("joining the session", msg, "the session may have ended; start the launch again"));
        }
    };
    // Allow our own pid to be traced by the daemon even under Yama's ptrace_scope=1.
    unsafe { libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY, 0, 0, 0) };
    match filter::install(&trap) {
        Ok(listener) => {
            let reply = exchange(&mut stream, &Request::Listener { fd: listener.as_raw_fd() });
            drop(listener);
            match reply? {
                Reply::Ok => Ok(Outcome::Attached),
                Reply::Err(msg) => Err(err("handing the listener to the daemon", msg, "")),
                _ => Err(err("handing the listener to the daemon", "unexpected answer", "")),
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            // Already under a filter with a listener: ours, inherited from an intercepted parent.
            match exchange(&mut stream, &Request::Register)? {
                Reply::Ok => Ok(Outcome::AlreadyAttached),
                Reply::Err(msg) => Err(err("registering with the session", msg, "")),
                _ => Err(err("registering with the session", "unexpected answer", "")),
            }
        }
        Err(e) => Err(err(
            "installing the seccomp filter",
            e,
            "tether needs Linux >= 5.19 with seccomp user notification (CONFIG_SECCOMP_FILTER)",
        )),
    }
}

/// Sends one request line and reads one reply line, with calls the filter never traps.
fn exchange(stream: &mut UnixStream, req: &Request<'_>) -> Result<Reply, Error> {
    let line = req.encode();
    write_all(stream, line.as_bytes()).map_err(|e| err("talking to the tether daemon", e, ""))?;
    let line = read_line(stream).map_err(|e| err("talking to the tether daemon", e, "see `tether logs`"))?;
    Reply::decode(&line).ok_or_else(|| {
        err(
            "talking to the tether daemon",
            format!("bad answer {line:?}"),
            "daemon and program are of different tether versions?",
        )
    })
}

fn write_all(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = unsafe {
            libc::sendto(stream.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL, std::ptr::null(), 0)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

fn read_line(stream: &UnixStream) -> io::Result<String> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = unsafe { libc::read(stream.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        match n {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed the connection")),
            1 if byte[0] == b'\n' => break,
            1 => out.push(byte[0]),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        if out.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "answer too long"));
        }
    }
    String::from_utf8(out).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "answer not UTF-8"))
}

/// Takes ownership of a raw descriptor number (used by the daemon side after `pidfd_getfd`).
///
/// # Safety
/// `fd` must be an open descriptor that nothing else owns.
pub unsafe fn owned(fd: i32) -> OwnedFd {
    unsafe { OwnedFd::from_raw_fd(fd) }
}

//! The seccomp user-notification listener: receive, validate, answer, inject descriptors.
//!
//! A thin, safe face over the `SECCOMP_IOCTL_NOTIF_*` ioctls. Every method may race with the
//! target dying or being interrupted: the kernel then answers `ENOENT`, which callers treat as
//! "nothing left to do", never as a failure of the daemon.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6): wake the supervisor on the target's CPU.
/// Measured here: a trapped call costs 7.5 us with it, 43 us without.
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// One trapped system call.
#[derive(Clone, Copy, Debug)]
pub struct Notif {
    pub id: u64,
    /// The *thread* id of the caller (use it for /proc and process_vm_*; not a process id).
    pub tid: u32,
    pub nr: i32,
    pub args: [u64; 6],
}

/// How the trapped call returns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Answer {
    /// Let the kernel run the call as the program made it.
    Continue,
    /// Return this value (>= 0) from the call.
    Value(i64),
    /// Fail the call with this errno.
    Errno(i32),
}

/// Where an injected descriptor goes.
#[derive(Clone, Copy, Debug)]
pub enum Slot {
    /// Replace the target's descriptor number `fd` (like `dup2`).
    At(RawFd),
    /// Make this the result of the trapped call (an `open` that returns the new descriptor).
    AsResult,
}

pub struct Listener {
    fd: OwnedFd,
}

/// What waiting for the next notification found.
pub enum Next {
    Call(Notif),
    /// Nothing arrived within the timeout.
    Idle,
    /// No process is under the filter any more.
    Gone,
}

impl Listener {
    pub fn new(fd: OwnedFd) -> Listener {
        // Best effort: older kernels lack the flag and are merely slower.
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) };
        Listener { fd }
    }

    /// Waits up to `timeout` for the next trapped call.
    pub fn next(&self, timeout: Duration) -> io::Result<Next> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(Next::Idle) } else { Err(e) };
        }
        if r == 0 {
            return Ok(Next::Idle);
        }
        if pfd.revents & libc::POLLIN == 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return Ok(Next::Gone);
        }
        let mut raw: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut raw) };
        if r < 0 {
            let e = io::Error::last_os_error();
            // ENOENT: the caller went away between poll and receive.
            return match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::EINTR) => Ok(Next::Idle),
                _ => Err(e),
            };
        }
        Ok(Next::Call(Notif { id: raw.id, tid: raw.pid, nr: raw.data.nr, args: raw.data.args }))
    }

    /// Is the notification still pending (the caller alive and still waiting)?
    pub fn is_valid(&self, id: u64) -> bool {
        unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 }
    }

    /// Completes the trapped call. A caller that already went away is not an error.
    pub fn answer(&self, id: u64, answer: Answer) -> io::Result<()> {
        let mut resp = libc::seccomp_notif_resp { id, val: 0, error: 0, flags: 0 };
        match answer {
            Answer::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Answer::Value(v) => resp.val = v,
            Answer::Errno(e) => resp.error = -e.abs(),
        }
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Puts a copy of `src` into the target. With [`Slot::AsResult`] the call is completed by the
    /// kernel (its result is the new descriptor) and must not be answered again.
    pub fn inject(&self, id: u64, src: RawFd, slot: Slot, cloexec: bool) -> io::Result<RawFd> {
        let mut addfd = libc::seccomp_notif_addfd {
            id,
            flags: 0,
            srcfd: src as u32,
            newfd: 0,
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        match slot {
            Slot::At(fd) => {
                addfd.flags = libc::SECCOMP_ADDFD_FLAG_SETFD as u32;
                addfd.newfd = fd as u32;
            }
            Slot::AsResult => addfd.flags = libc::SECCOMP_ADDFD_FLAG_SEND as u32,
        }
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
    }
}

//! What the supervisor needs to know about a trapped thread: its process, its executable, the
//! directory a relative path starts from, and a pidfd to take its descriptors.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

/// `PIDFD_THREAD` (Linux 6.9): a pidfd for a thread, not only a process leader. Notifications
/// carry thread ids, so this is what `pidfd_getfd` needs.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

pub fn pidfd(tid: u32) -> io::Result<OwnedFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, PIDFD_THREAD) };
    if fd >= 0 {
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    // Kernels before 6.9: only works for a thread-group leader.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, 0) };
    if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }) }
}

/// A duplicate of descriptor `fd` of thread `tid` (shares the open file description).
///
/// The pidfds are kept (a few hundred threads at most), saving two system calls per trapped call
/// that looks at a descriptor. A kept pidfd never reaches another thread: once its thread exited
/// (even if its id was reused since) it fails, and one retry with a fresh pidfd tells that apart
/// from a bad `fd`.
pub fn take_fd(tid: u32, fd: RawFd) -> io::Result<OwnedFd> {
    static PIDFDS: Mutex<Option<HashMap<u32, Arc<OwnedFd>>>> = Mutex::new(None);
    let kept = PIDFDS.lock().unwrap().as_ref().and_then(|m| m.get(&tid).cloned());
    if let Some(pidfd) = kept {
        if let Ok(dup) = getfd(&pidfd, fd) {
            return Ok(dup);
        }
    }
    let pidfd = Arc::new(pidfd(tid)?);
    let r = getfd(&pidfd, fd);
    let mut kept = PIDFDS.lock().unwrap();
    let map = kept.get_or_insert_default();
    if map.len() >= 256 {
        map.clear();
    }
    map.insert(tid, pidfd);
    r
}

fn getfd(pidfd: &OwnedFd, fd: RawFd) -> io::Result<OwnedFd> {
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) }) }
}

/// Is descriptor `fd` of `tid` close-on-exec? (Per-descriptor, so a duplicate can't tell.)
pub fn is_cloexec(tid: u32, fd: RawFd) -> bool {
    let Ok(info) = std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}")) else { return false };
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .is_some_and(|flags| flags & libc::O_CLOEXEC as u32 != 0)
}

pub fn readlink(path: &str) -> Option<String> {
    std::fs::read_link(path).ok()?.into_os_string().into_string().ok()
}

/// The thread group (process) id of a thread.
pub fn tgid(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

/// The absolute path a `*at` call with `dirfd` and `raw` names, or `None` when it cannot be
/// told (a descriptor that is not a directory in the file system, such as a memfd).
pub fn resolve(tid: u32, dirfd: i32, raw: &[u8]) -> Option<String> {
    let raw = std::str::from_utf8(raw).ok()?;
    if raw.starts_with('/') {
        return Some(normalize(raw));
    }
    let base = if dirfd == libc::AT_FDCWD {
        readlink(&format!("/proc/{tid}/cwd"))?
    } else {
        readlink(&format!("/proc/{tid}/fd/{dirfd}"))?
    };
    if !base.starts_with('/') {
        return None;
    }
    Some(normalize(&format!("{base}/{raw}")))
}

/// Removes `.`, `..` and repeated slashes, lexically.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = String::with_capacity(path.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(normalize("/app//./config/../x.txt"), "/app/x.txt");
        assert_eq!(normalize("/../.."), "/");
        assert_eq!(normalize("/etc/hosts/"), "/etc/hosts");
    }

    #[test]
    fn relative_paths_start_at_the_threads_cwd() {
        let tid = unsafe { libc::gettid() } as u32;
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(resolve(tid, libc::AT_FDCWD, b"a/../b").unwrap(), format!("{}/b", cwd.display()));
        let dir = std::fs::File::open("/usr").unwrap();
        assert_eq!(resolve(tid, dir.as_raw_fd(), b"lib").unwrap(), "/usr/lib");
        assert_eq!(resolve(tid, 9999, b"x"), None);
    }
}

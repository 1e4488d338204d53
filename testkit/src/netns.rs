//! Network-namespace plumbing: `ip netns`, `setns`, and cleanup of leftovers.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Where `ip netns` keeps its named namespaces.
pub(crate) const NETNS_DIR: &str = "/var/run/netns";

/// Prefix of every namespace (and root directory) a pod creates.
pub(crate) const POD_PREFIX: &str = "tether-pod-";

pub(crate) fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Does `ip netns list` know a namespace of this name?
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Opens a namespace file (`/var/run/netns/NAME` or `/proc/PID/ns/net`), close-on-exec.
pub(crate) fn open_ns(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: plain open(2) with a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setns(fd, CLONE_NEWNET)` for the calling thread. Async-signal-safe (used in `pre_exec`).
pub(crate) fn setns_net(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns only reads its arguments.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd` start inside the network namespace at `path` (`/var/run/netns/NAME`). The
/// namespace is opened here, before the fork, so the child only calls `setns`.
pub fn command_in_netns<'c>(cmd: &'c mut Command, path: &Path) -> Result<&'c mut Command> {
    let ns = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns is async-signal-safe; the closure owns the descriptor.
    Ok(unsafe { std::os::unix::process::CommandExt::pre_exec(cmd, move || setns_net(ns.as_raw_fd())) })
}

/// Runs `f` on a fresh thread that has entered the network namespace `fd` (namespaces are
/// per-thread; the caller's thread is untouched). A panic in `f` is propagated.
pub(crate) fn in_netns<T: Send, F: FnOnce() -> T + Send>(fd: &OwnedFd, f: F) -> Result<T> {
    let raw = fd.as_raw_fd();
    std::thread::scope(|s| {
        let h = s.spawn(move || -> Result<T> {
            setns_net(raw).context("setns into the pod's network namespace")?;
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs `f` on a thread inside the network namespace at `path` (e.g. `/var/run/netns/x`
/// or `/proc/PID/ns/net`).
pub fn run_in_netns_path<T: Send, F: FnOnce() -> T + Send>(path: &Path, f: F) -> Result<T> {
    let fd = open_ns(path).with_context(|| format!("open {}", path.display()))?;
    in_netns(&fd, f)
}

/// Runs `ip ARGS...`; the error carries ip's stderr.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `ip -n NS -batch -` with the given lines.
pub(crate) fn ip_batch(ns: &str, lines: &[String]) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running `ip` (iproute2)")?;
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        for l in lines {
            writeln!(stdin, "{l}")?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`ip -n {ns} -batch -` failed: {}\n(input:\n{})",
            String::from_utf8_lossy(&out.stderr).trim(),
            lines.join("\n")
        );
    }
    Ok(())
}

/// (device, inode) identifying a network namespace.
pub(crate) fn ns_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// SIGKILLs every process (other than ourselves) whose main thread lives in namespace `id`.
/// Returns how many were signalled.
pub(crate) fn kill_processes_in(id: (u64, u64)) -> usize {
    let me = std::process::id();
    let mut killed = 0;
    // Repeat a few times: a process may fork while we scan.
    for _ in 0..5 {
        let mut found = 0;
        let Ok(rd) = fs::read_dir("/proc") else {
            return killed;
        };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(pid_ns) = ns_id(&e.path().join("ns/net")) else {
                continue;
            };
            if pid_ns == id {
                // SAFETY: kill(2) with a pid we just read.
                if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
                    found += 1;
                }
            }
        }
        killed += found;
        if found == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    killed
}

/// Deletes a named namespace after killing the processes inside it.
pub(crate) fn delete_netns(name: &str) -> Result<()> {
    let path = netns_path(name);
    if let Ok(id) = ns_id(&path) {
        kill_processes_in(id);
    }
    if !path.exists() {
        return Ok(());
    }
    ip(&["netns", "delete", name])
}

/// Parses `tether-pod-<name>-<pid>-<counter>` into the pid.
pub(crate) fn owner_pid(entry: &str) -> Option<u32> {
    let rest = entry.strip_prefix(POD_PREFIX)?;
    let mut parts = rest.rsplitn(3, '-');
    let counter = parts.next()?;
    let pid = parts.next()?;
    let name = parts.next()?;
    if name.is_empty() || counter.parse::<u64>().is_err() {
        return None;
    }
    pid.parse().ok()
}

/// Removes pod namespaces (`tether-pod-<name>-<pid>-<n>`, with the processes inside them) and
/// pod root directories under the temp directory that were left by test processes which died
/// without cleaning up (SIGKILL, abort). Only entries whose owning pid no longer exists are
/// touched. [`crate::PodSpec::start`] calls this once per process.
pub fn cleanup_stale_pods() {
    cleanup_stale(&std::env::temp_dir());
}

pub(crate) fn cleanup_stale(tmp: &Path) {
    let dead = |e: &str| match owner_pid(e) {
        Some(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    };
    if let Ok(rd) = fs::read_dir(NETNS_DIR) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if dead(&n) {
                let _ = delete_netns(&n);
            }
        }
    }
    if let Ok(rd) = fs::read_dir(tmp) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if dead(&n) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_names_with_dashes() {
        assert_eq!(owner_pid("tether-pod-a-b-c-123-7"), Some(123));
        assert_eq!(owner_pid("tether-pod-web-42-0"), Some(42));
        assert_eq!(owner_pid("tether-pod-42-0"), None);
        assert_eq!(owner_pid("other-web-42-0"), None);
        assert_eq!(owner_pid("tether-pod-web-x-0"), None);
    }
}

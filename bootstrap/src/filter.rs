//! The classic-BPF seccomp filter: trap a set of calls, let everything else through.
//!
//! The program is small and linear: check the architecture, load the syscall number, compare it
//! with each trapped number. `sendto` without a destination is let through (see
//! [`crate::syscalls::SENDTO_DEST_ARG`]).

use crate::syscalls::{self, AUDIT_ARCH, X32_SYSCALL_BIT};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: libc::c_ulong = 1 << 5;
/// Keeps the speculative-store-bypass mitigation as it was: kernels before 5.16 force it on
/// every seccomp-filtered task by default (`spec_store_bypass_disable=seccomp`), which slows a
/// program by up to tens of percent. This filter intercepts, it does not sandbox untrusted code:
/// the program must run as fast as it would without tether.
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 1 << 2;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;

// Offsets into `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Builds the filter program for `trap` (syscall numbers of the native ABI).
pub fn program(trap: &[u32]) -> Vec<libc::sock_filter> {
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    let sendto = trap.contains(&syscalls::SYS_sendto);
    for &nr in trap.iter().filter(|&&nr| nr != syscalls::SYS_sendto) {
        // if (nr == X) return USER_NOTIF;
        p.push(jump(BPF_JEQ_K, nr, 0, 1));
        p.push(stmt(BPF_RET_K, SECCOMP_RET_USER_NOTIF));
    }
    if sendto {
        // if (nr == sendto) { if (dest_addr == NULL) allow; else notify }
        let lo = off_arg_lo(syscalls::SENDTO_DEST_ARG);
        p.push(jump(BPF_JEQ_K, syscalls::SYS_sendto, 0, 5));
        p.push(stmt(BPF_LD_W_ABS, lo));
        p.push(jump(BPF_JEQ_K, 0, 0, 2));
        p.push(stmt(BPF_LD_W_ABS, lo + 4));
        p.push(jump(BPF_JEQ_K, 0, 1, 0));
        p.push(stmt(BPF_RET_K, SECCOMP_RET_USER_NOTIF));
    }
    p.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    p
}

/// Installs the filter on the calling thread (and so on everything it later forks or execs)
/// and returns the new listener.
///
/// `EBUSY` means the process is already under a filter with a listener.
pub fn install(trap: &[u32]) -> io::Result<OwnedFd> {
    let prog = program(trap);
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut _ };
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        | SECCOMP_FILTER_FLAG_SPEC_ALLOW;
    let fd = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &fprog as *const libc::sock_fprog)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program() {
        let trap = [syscalls::SYS_openat, syscalls::SYS_sendto, syscalls::SYS_connect];
        let p = program(&trap);
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == libc::BPF_JMP as u16 {
                assert!(i + 1 + (ins.jt as usize) < p.len());
                assert!(i + 1 + (ins.jf as usize) < p.len());
            }
        }
        assert_eq!(p.last().unwrap().k, SECCOMP_RET_ALLOW);
    }

    /// Runs the real filter in a forked child: a trapped call without a supervisor fails with
    /// ENOSYS once the listener is closed, an untrapped call works, and `sendto` without a
    /// destination is never trapped.
    #[test]
    fn the_filter_traps_exactly_what_it_is_told() {
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = (|| {
                let listener = install(&[syscalls::SYS_openat, syscalls::SYS_sendto]).ok()?;
                drop(listener); // no supervisor: trapped calls now fail with ENOSYS
                let path = c"/dev/null";
                let r = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
                let trapped = r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
                let mut fds = [0; 2];
                unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
                let sent = unsafe { libc::sendto(fds[0], b"x".as_ptr().cast(), 1, 0, std::ptr::null(), 0) };
                let pid_ok = unsafe { libc::getpid() } > 0;
                Some(trapped && sent == 1 && pid_ok)
            })();
            unsafe { libc::_exit(if code == Some(true) { 0 } else { 1 }) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
    }
}

//! The system calls tether traps, by number, for the architectures it supports.
//!
//! Only the daemon decides which of these a session traps (`TRAP` in the handshake); the
//! bootstrap installs whatever it is told, so this table is the one place to look. The names
//! keep libc's spelling so that they can be searched for.
#![allow(non_upper_case_globals)]

/// The audit architecture value the filter checks; a call made under another ABI (for example
/// 32-bit `int 0x80` on x86_64) is refused with ENOSYS rather than let through unseen.
#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Bit 30 marks the x32 ABI on x86_64; those calls are refused too.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

macro_rules! nrs {
    ($($name:ident),* $(,)?) => {
        $(pub const $name: u32 = libc::$name as u32;)*
    };
}

nrs!(SYS_openat, SYS_openat2, SYS_newfstatat, SYS_statx, SYS_faccessat, SYS_faccessat2, SYS_readlinkat);
nrs!(SYS_connect, SYS_sendto, SYS_sendmsg, SYS_execve, SYS_execveat);
nrs!(SYS_write, SYS_pwrite64, SYS_writev, SYS_pwritev, SYS_pwritev2, SYS_ftruncate);
#[cfg(target_arch = "x86_64")]
nrs!(SYS_open, SYS_creat, SYS_stat, SYS_lstat, SYS_access, SYS_readlink);

/// `sendto` is trapped only when it names a destination (its fifth argument is not NULL):
/// plain `send` on a connected socket is far too hot to trap.
pub const SENDTO_DEST_ARG: u32 = 4;

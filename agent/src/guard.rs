//! The guard: a small process that outlives the agent and removes its nftables table.
//!
//! Only needed where the kernel cannot own tables (`flags owner`, Linux 5.12+; see
//! [`crate::nft`]). The guard is the agent's own binary started again with `TETHER_AGENT_GUARD`
//! set to the table's name, the target's network namespace as descriptor 3, and a pipe from the
//! agent as standard input. It ignores SIGINT, SIGTERM and SIGHUP and has its own session, so a
//! Ctrl-C or a killed process group does not take it along. When the pipe reaches end-of-file
//! (the agent exited, however it died) it deletes the table and exits.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// The variable that turns the agent binary into a guard.
pub const GUARD_ENV: &str = "TETHER_AGENT_GUARD";
const NETNS_FD: i32 = 3;

/// Starts a guard for `table` in the namespace `netns`. The returned child's stdin is the pipe
/// whose closing triggers the cleanup.
pub fn spawn(netns: &OwnedFd, table: &str) -> io::Result<Child> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let raw = netns.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.env(GUARD_ENV, table)
        .env_remove(tether_protocol::env::AGENT_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear the flag instead.
            let r = if raw == NETNS_FD { libc::fcntl(raw, libc::F_SETFD, 0) } else { libc::dup2(raw, NETNS_FD) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
                libc::signal(sig, libc::SIG_IGN);
            }
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()
}

/// The guard's whole life (called first thing in `main` when [`GUARD_ENV`] is set).
pub fn run(table: &str) -> ! {
    if crate::nft::parse_table_name(table).is_none() {
        eprintln!("tether-agent guard: {table:?} is not a tether table name");
        std::process::exit(2);
    }
    // Wait for the agent to go away: its end of our stdin closes.
    let mut sink = [0u8; 64];
    let mut stdin = io::stdin().lock();
    loop {
        match stdin.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // SAFETY: descriptor 3 was set up by `spawn`; a failure is reported below.
    let ns = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(NETNS_FD) };
    let code = match crate::nft::delete_table(&ns, table) {
        Ok(()) => 0,
        // Already gone (the agent removed it on a clean exit): nothing to do.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => 0,
        Err(e) => {
            eprintln!("tether-agent guard: could not delete table {table}: {e}");
            1
        }
    };
    std::process::exit(code)
}

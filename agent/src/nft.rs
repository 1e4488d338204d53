//! The agent's redirect rules: one nftables table in the target's network namespace.
//!
//! The table is named `tether_<agent pid>_<agent start time>` (the start time in clock ticks
//! since boot, field 22 of `/proc/self/stat`), so a table whose agent is gone is recognisable
//! even after the pid was reused. It holds one set, `steal`, of the target ports being stolen,
//! and one chain:
//!
//! ```text
//! prerouting (filter, mangle - 10):  meta mark MARK return
//!     meta nfproto ipv4 fib daddr type local tcp dport @steal tproxy ip to :P4
//!     meta nfproto ipv6 fib daddr type local tcp dport @steal tproxy ip6 to :P6
//! ```
//!
//! `P4`/`P6` are the agent's transparent listeners (`IP_TRANSPARENT`) inside the namespace.
//! TPROXY rather than NAT `redirect`, because it leaves no state behind: the accepted socket's
//! own address *is* the original destination (`getsockname`), and once accepted, a connection
//! is an ordinary established socket that the kernel finds by its addresses with or without
//! the rule. So stolen connections outlive the rule (unsubscribing, or a `kill -9` of the agent),
//! whereas NATed connections die with the last NAT chain of the namespace. Clients inside the
//! target's own namespace are covered too: their packets come back through `prerouting` on
//! loopback. Sockets the agent opens to the real target port carry [`BYPASS_MARK`] (`SO_MARK`)
//! and skip the rule. Subscribing and unsubscribing only add or delete set elements.
//!
//! **Cleanup that survives `kill -9`.** The table has nftables' `owner` flag and is created by a
//! long-lived `nft -i` child whose standard input is a pipe from the agent: the kernel removes an
//! owned table as soon as the netlink socket that created it closes. When the agent dies in any
//! way, the pipe's write end closes, `nft` reads end-of-file and exits, and the table is gone, in
//! milliseconds. Owned tables cannot be changed by anyone else (so a sweeping agent can never
//! break a live agent's rules). On kernels without the `owner` flag (before 5.12) the table is
//! created plain and a [`guard`](crate::guard) process deletes it when the agent's pipe closes.
//! Either way, a new agent deletes stale `tether_*` tables of dead agents when it creates its own.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The mark of the agent's own connections to the target's ports ("tt" 0x7474 + 1).
pub const BYPASS_MARK: u32 = 0x7474_0001;

const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// `nft` with `args`, run inside the network namespace `netns`.
fn nft_command(netns: &OwnedFd, args: &[&str]) -> Command {
    let bin = std::env::var_os("TETHER_NFT").unwrap_or_else(|| "nft".into());
    let mut cmd = Command::new(bin);
    cmd.args(args);
    let raw = netns.as_raw_fd();
    // SAFETY: setns is async-signal-safe and only changes the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Runs `nft ARGS` in the namespace and returns its standard output.
pub fn run(netns: &OwnedFd, args: &[&str]) -> io::Result<String> {
    let out = nft_command(netns, args).stdin(Stdio::null()).output().map_err(explain_spawn)?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`nft {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn explain_spawn(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        io::Error::new(e.kind(), "`nft` (nftables) is not installed; stealing incoming traffic needs it")
    } else {
        e
    }
}

/// Start time of a process in clock ticks since boot, or `None` when it does not exist.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ..." — fields after the last ')' start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This agent's table name.
pub fn table_name() -> String {
    let pid = std::process::id();
    format!("tether_{pid}_{}", start_time(pid).unwrap_or(0))
}

/// The agent a table name belongs to: `(pid, start time)`.
pub fn parse_table_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("tether_")?;
    let (pid, start) = rest.split_once('_')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Deletes the `tether_*` tables whose agent is gone. Tables of live agents, and owned tables
/// (which nobody else may delete), are left alone. Returns the names deleted.
pub fn sweep_stale(netns: &OwnedFd) -> Vec<String> {
    let Ok(list) = run(netns, &["list", "tables"]) else {
        return Vec::new();
    };
    let mut deleted = Vec::new();
    for line in list.lines() {
        let mut words = line.split_whitespace();
        let (Some("table"), Some(family), Some(name)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let Some((pid, start)) = parse_table_name(name) else {
            continue;
        };
        if start_time(pid) == Some(start) {
            continue; // its agent still runs
        }
        match run(netns, &["delete", "table", family, name]) {
            Ok(_) => {
                tracing::info!(table = name, "deleted the stale table of a dead agent");
                deleted.push(name.to_string());
            }
            Err(e) => tracing::debug!(table = name, err = %e, "could not delete a stale table"),
        }
    }
    deleted
}

/// The live table. Dropping it removes it from the kernel.
pub struct Table {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    errors: mpsc::Receiver<String>,
    seq: u64,
    owner: bool,
    guard: Option<Child>,
}

impl Table {
    /// Creates the table with the rules sending to the agent's listeners on `v4` and `v6` (0: none).
    pub fn create(netns: &OwnedFd, v4: u16, v6: u16) -> io::Result<Table> {
        let name = table_name();
        let stale = sweep_stale(netns);
        if !stale.is_empty() {
            tracing::info!(?stale, "swept stale tables");
        }
        match Table::start(netns, &name, v4, v6, true) {
            Ok(t) => Ok(t),
            Err(e) if e.to_string().contains("owner") || e.to_string().contains("Operation not supported") => {
                tracing::warn!(err = %e, "this kernel has no owned nftables tables; a guard process will clean up");
                let mut t = Table::start(netns, &name, v4, v6, false)?;
                t.guard = Some(crate::guard::spawn(netns, &name)?);
                Ok(t)
            }
            Err(e) => Err(e),
        }
    }

    fn start(netns: &OwnedFd, name: &str, v4: u16, v6: u16, owner: bool) -> io::Result<Table> {
        let mut child = nft_command(netns, &["-i"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(explain_spawn)?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().expect("piped");
        // nft writes errors to stderr unbuffered; a reader thread turns them into lines.
        let (tx, errors) = mpsc::channel();
        std::thread::Builder::new().name("nft-stderr".into()).spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        })?;
        let mut t = Table { name: name.to_string(), child, stdin, errors, seq: 0, owner, guard: None };
        let n = &t.name;
        let flags = if owner { " flags owner;" } else { "" };
        let mut script = vec![
            format!("add table inet {n} {{{flags} }}"),
            format!("add set inet {n} steal {{ type inet_service; }}"),
            format!("add chain inet {n} prerouting {{ type filter hook prerouting priority mangle - 10; }}"),
            format!("add rule inet {n} prerouting meta mark {BYPASS_MARK:#x} return"),
        ];
        for (family, ip, port) in [("ipv4", "ip", v4), ("ipv6", "ip6", v6)] {
            if port != 0 {
                script.push(format!(
                    "add rule inet {n} prerouting meta nfproto {family} fib daddr type local tcp dport @steal tproxy {ip} to :{port}"
                ));
            }
        }
        t.apply(&script)?;
        tracing::info!(table = %t.name, owner, v4, v6, "redirect table created");
        Ok(t)
    }

    /// Starts redirecting new connections to the target's `port`.
    pub fn add_port(&mut self, port: u16) -> io::Result<()> {
        let cmd = format!("add element inet {} steal {{ {port} }}", self.name);
        self.apply(&[cmd])
    }

    /// Stops redirecting new connections to `port`.
    pub fn remove_port(&mut self, port: u16) -> io::Result<()> {
        let cmd = format!("delete element inet {} steal {{ {port} }}", self.name);
        self.apply(&[cmd])
    }

    /// Sends `commands` to `nft -i` and waits until it has processed them. The end is marked by
    /// a command that always fails and names a unique set (`sync_N`): its error line is the
    /// marker, and any error line before it belongs to `commands`.
    fn apply(&mut self, commands: &[String]) -> io::Result<()> {
        self.seq += 1;
        let marker = format!("sync_{}", self.seq);
        let mut text = commands.join("\n");
        text.push_str(&format!("\nlist set inet {} {marker}\n", self.name));
        let stdin = self.stdin.as_mut().ok_or_else(|| io::Error::other("nft has been closed"))?;
        stdin.write_all(text.as_bytes()).and_then(|_| stdin.flush()).map_err(|e| {
            io::Error::other(format!(
                "nft exited: {e} ({})",
                self.child.try_wait().ok().flatten().map_or("running".into(), |s| s.to_string())
            ))
        })?;
        let mut lines: Vec<String> = Vec::new();
        loop {
            match self.errors.recv_timeout(SYNC_TIMEOUT) {
                Ok(line) => {
                    if line.contains(&marker) {
                        // Its own "Error:" line came just before; the caret line follows.
                        lines.pop();
                        let _ = self.errors.recv_timeout(Duration::from_millis(200));
                        break;
                    }
                    lines.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(io::Error::other("nft did not answer within 5 s"));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other(format!("nft exited: {}", lines.join(" / "))));
                }
            }
        }
        if lines.iter().any(|l| l.starts_with("Error")) {
            return Err(io::Error::other(format!("nft refused: {}", lines.join(" / "))));
        }
        Ok(())
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if !self.owner {
            let cmd = format!("delete table inet {}", self.name);
            let _ = self.apply(&[cmd]);
        }
        // End of input: nft exits, and the kernel removes the owned table with its socket.
        drop(self.stdin.take());
        let _ = self.child.wait();
        if let Some(mut g) = self.guard.take() {
            // The guard sees its pipe close too and exits after finding nothing to delete.
            let _ = g.wait();
        }
        tracing::info!(table = %self.name, "redirect table removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_identify_their_agent() {
        let name = table_name();
        let (pid, start) = parse_table_name(&name).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(start_time(pid), Some(start));
        assert_eq!(parse_table_name("tether_12_34"), Some((12, 34)));
        for bad in ["filter", "tether_x_1", "tether_1", "tether__"] {
            assert_eq!(parse_table_name(bad), None, "{bad}");
        }
        // pid_max is at most 2^22.
        assert_eq!(start_time(99_999_999), None);
    }
}

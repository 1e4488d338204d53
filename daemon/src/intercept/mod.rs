//! The syscall supervisor: serves the seccomp listeners of a session's processes.
//!
//! Each listener (one per bootstrapped process tree) gets a dedicated OS thread that receives
//! notifications and decides. Decisions that need nothing remote (a local path, a loopback
//! address, a skipped program) are answered on that thread at once; that is the hot path and it
//! allocates little. Work that needs the agent is handed to the session's tokio runtime, which
//! answers when the agent does, so one slow remote call never holds up the others.
//!
//! Invariants:
//! - every notification is answered exactly once (or the kernel completed it through
//!   `SECCOMP_ADDFD_FLAG_SEND`); an internal failure answers `EIO` and records an error;
//! - target memory is only written after re-checking that the notification is still pending;
//! - the supervisor never runs under a filter itself.

mod files;
pub mod incoming;
pub mod memory;
pub mod notify;
pub mod proc;
mod sockets;
mod writes;
// [kube] outgoing connections relayed through a remote agent
mod relay;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tether_bootstrap::syscalls as sys;
use tether_config::fs::PathRules;
use tether_config::net::OutgoingRules;

use crate::agent::Agent;
pub use notify::{Answer, Listener, Next, Notif};
pub use writes::WriteThrough;

/// Counters a session shows to its users.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub files_read: AtomicU64,
    pub dns_lookups: AtomicU64,
    pub processes: Mutex<BTreeMap<u32, Process>>,
    pub errors: Mutex<VecDeque<String>>,
    /// What the doctor found while the session runs (a port the target does not serve, ...).
    pub diagnostics: Mutex<Vec<tether_doctor::Diagnostic>>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Process {
    pub pid: u32,
    pub executable: String,
    pub since: u64,
    pub skipped: bool,
}

impl Stats {
    pub fn error(&self, message: String) {
        tracing::warn!("{message}");
        let mut errors = self.errors.lock().unwrap();
        if errors.len() == 20 {
            errors.pop_front();
        }
        errors.push_back(message);
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything the supervisor needs to decide for one session.
pub struct Scope {
    pub session: String,
    pub paths: PathRules,
    pub outgoing: OutgoingRules,
    pub skip: Box<dyn Fn(&str) -> bool + Send + Sync>,
    pub agent: Arc<Agent>,
    pub stats: Arc<Stats>,
    pub rt: tokio::runtime::Handle,
    /// Where remote directories are materialised (a per-session directory).
    pub dir_root: std::path::PathBuf,
    /// Materialised directory (local path) -> the remote directory it stands for.
    pub dirs: Mutex<HashMap<String, String>>,
    /// Remote files open for writing (`feature.fs.mode: write`, `read_write`).
    pub writes: writes::WriteThrough,
    /// Incoming traffic: subscribed listeners, deliveries, rewritten addresses.
    pub incoming: Arc<incoming::Incoming>,
}

impl Scope {
    /// The system calls this session traps: the base set, plus the write family when remote
    /// files may be written (so that every write reaches the target before it succeeds).
    pub fn trapped(&self) -> Vec<u32> {
        let mut v = trapped_syscalls();
        if self.writes.enabled {
            v.extend(writes::TRAPPED);
        }
        // [kube] A remote agent relays sockets: show the program the original addresses.
        if !self.agent.can_pass_fds() {
            v.extend(relay::TRAPPED.iter().filter(|n| !v.contains(n)).copied().collect::<Vec<_>>());
        }
        v
    }
}

/// The system calls a session traps.
pub fn trapped_syscalls() -> Vec<u32> {
    let mut v = vec![
        sys::SYS_openat,
        sys::SYS_openat2,
        sys::SYS_newfstatat,
        sys::SYS_statx,
        sys::SYS_faccessat,
        sys::SYS_faccessat2,
        sys::SYS_readlinkat,
        sys::SYS_connect,
        sys::SYS_sendto,
        sys::SYS_sendmsg,
        sys::SYS_execve,
        sys::SYS_execveat,
    ];
    // Incoming traffic (see `incoming`).
    v.extend([libc::SYS_bind, libc::SYS_listen, libc::SYS_accept, libc::SYS_accept4].map(|n| n as u32));
    v.extend([libc::SYS_getsockname, libc::SYS_getpeername].map(|n| n as u32));
    #[cfg(target_arch = "x86_64")]
    v.extend([sys::SYS_open, sys::SYS_creat, sys::SYS_stat, sys::SYS_lstat, sys::SYS_access, sys::SYS_readlink]);
    v
}

/// What the supervisor remembers of a thread: whether its program is skipped.
#[derive(Clone, Copy)]
struct Seen {
    skipped: bool,
}

/// Serves one listener until no process is left under it.
pub fn serve(listener: Listener, scope: Arc<Scope>) {
    let listener = Arc::new(listener);
    let mut seen: HashMap<u32, Seen> = HashMap::new();
    loop {
        let n = match listener.next(Duration::from_secs(1)) {
            Ok(Next::Call(n)) => n,
            Ok(Next::Idle) => continue,
            Ok(Next::Gone) => break,
            Err(e) => {
                scope.stats.error(format!("seccomp listener failed: {e}"));
                break;
            }
        };
        let nr = n.nr as u32;
        if nr == sys::SYS_execve || nr == sys::SYS_execveat {
            // The program changes: forget what we knew of this thread's executable.
            seen.remove(&n.tid);
            reply(&listener, &scope, n.id, Answer::Continue);
            continue;
        }
        let skipped = match seen.get(&n.tid) {
            Some(s) => s.skipped,
            None => {
                if seen.len() > 4096 {
                    seen.clear();
                }
                let s = Seen { skipped: note_process(&scope, n.tid) };
                seen.insert(n.tid, s);
                s.skipped
            }
        };
        if skipped {
            reply(&listener, &scope, n.id, Answer::Continue);
            continue;
        }
        let call = Call { n, listener: listener.clone(), scope: scope.clone() };
        call.dispatch();
    }
    tracing::debug!(session = %scope.session, "listener has no process left");
}

/// Records a newly seen process; answers whether its program is skipped. A program installed
/// outside the local directories makes its installation local (`PathRules::add_program`).
fn note_process(scope: &Scope, tid: u32) -> bool {
    let exe = proc::readlink(&format!("/proc/{tid}/exe")).unwrap_or_default();
    let name = exe.rsplit('/').next().unwrap_or("");
    let skipped = !name.is_empty() && (scope.skip)(name);
    if !skipped && let Some(dir) = scope.paths.add_program(&exe) {
        tracing::info!(session = %scope.session, %exe, "{dir} is the installation of a program of the session: it stays local");
    }
    let pid = proc::tgid(tid).unwrap_or(tid);
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut procs = scope.stats.processes.lock().unwrap();
    procs.entry(pid).or_insert(Process { pid, executable: exe.clone(), since, skipped });
    if let Some(p) = procs.get_mut(&pid) {
        if p.executable != exe {
            p.executable = exe;
            p.skipped = skipped;
        }
    }
    if procs.len() > 256 {
        // Keep the table bounded: forget processes that are gone.
        procs.retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    skipped
}

fn reply(listener: &Listener, scope: &Scope, id: u64, answer: Answer) {
    if let Err(e) = listener.answer(id, answer) {
        scope.stats.error(format!("answering a trapped call failed: {e}"));
    }
}

/// One trapped call and what is needed to answer it.
pub(crate) struct Call {
    pub n: Notif,
    pub listener: Arc<Listener>,
    pub scope: Arc<Scope>,
}

impl Call {
    fn dispatch(self) {
        let a = self.n.args;
        let nr = self.n.nr as u32;
        match nr {
            _ if nr == sys::SYS_openat => self.open(a[0] as i32, a[1], a[2] as i32),
            _ if nr == sys::SYS_openat2 => self.openat2(),
            _ if nr == sys::SYS_newfstatat => self.stat(a[0] as i32, a[1], files::StatOut::Stat(a[2]), a[3] as i32),
            _ if nr == sys::SYS_statx => self.stat(a[0] as i32, a[1], files::StatOut::Statx(a[4]), a[2] as i32),
            _ if nr == sys::SYS_faccessat => self.access(a[0] as i32, a[1], a[2] as i32),
            _ if nr == sys::SYS_faccessat2 => self.access(a[0] as i32, a[1], a[2] as i32),
            _ if nr == sys::SYS_readlinkat => self.readlink(a[0] as i32, a[1], a[2], a[3]),
            _ if relay::TRAPPED.contains(&nr) && relay::owns(&self.n) => self.relay_trapped(), // [kube]
            _ if nr == sys::SYS_connect => self.connect(),
            _ if nr == sys::SYS_sendto => self.sendto(),
            _ if nr == sys::SYS_sendmsg => self.sendmsg(),
            _ if nr == libc::SYS_bind as u32 => self.bind(),
            _ if nr == libc::SYS_listen as u32 => self.listen(),
            _ if nr == libc::SYS_accept as u32 => self.accept(0),
            _ if nr == libc::SYS_accept4 as u32 => self.accept(a[3] as i32),
            _ if nr == libc::SYS_getsockname as u32 => self.sockname(false),
            _ if nr == libc::SYS_getpeername as u32 => self.sockname(true),
            _ if writes::TRAPPED.contains(&nr) => self.write_through(),
            #[cfg(target_arch = "x86_64")]
            _ if nr == sys::SYS_open => self.open(libc::AT_FDCWD, a[0], a[1] as i32),
            #[cfg(target_arch = "x86_64")]
            _ if nr == sys::SYS_creat => {
                self.open(libc::AT_FDCWD, a[0], libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC)
            }
            #[cfg(target_arch = "x86_64")]
            _ if nr == sys::SYS_stat => self.stat(libc::AT_FDCWD, a[0], files::StatOut::Stat(a[1]), 0),
            #[cfg(target_arch = "x86_64")]
            _ if nr == sys::SYS_lstat => {
                self.stat(libc::AT_FDCWD, a[0], files::StatOut::Stat(a[1]), libc::AT_SYMLINK_NOFOLLOW)
            }
            #[cfg(target_arch = "x86_64")]
            _ if nr == sys::SYS_access => self.access(libc::AT_FDCWD, a[0], a[1] as i32),
            #[cfg(target_arch = "x86_64")]
            _ if nr == sys::SYS_readlink => self.readlink(libc::AT_FDCWD, a[0], a[1], a[2]),
            _ => self.answer(Answer::Continue),
        }
    }

    pub fn answer(&self, answer: Answer) {
        reply(&self.listener, &self.scope, self.n.id, answer);
    }

    /// Runs `work` on the session's runtime; it answers when it is done (`None`: the kernel
    /// already completed the call, see [`notify::Slot::AsResult`]).
    fn spawn<F>(self, work: impl FnOnce(Arc<Call>) -> F + Send + 'static)
    where
        F: std::future::Future<Output = Option<Answer>> + Send + 'static,
    {
        let rt = self.scope.rt.clone();
        let call = Arc::new(self);
        rt.spawn(async move {
            if let Some(answer) = work(call.clone()).await {
                call.answer(answer);
            }
        });
    }
}

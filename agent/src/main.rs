//! `tether-agent`: the remote side of every tether operation, running next to a target.
//!
//! It serves the daemon's gRPC calls (`schemas/agent.proto`) for one target process: the target's
//! environment, files under its root, outgoing connections and DNS from its network namespace,
//! and, when it runs on the daemon's host, sockets handed over on a Unix socket.
//!
//! This file holds what a supervisor of the process sees: the command line, the token taken from
//! the environment, the startup checks (one clear line and exit code 2 when the target is not
//! usable), the one JSON line on stdout that says the agent is ready, and the reasons it exits
//! (idle timeout, target gone, parent gone with `--exit-with-parent`, signal), none of which a
//! lost stderr may stop.

mod activity;
mod auth;
mod dns;
mod fdserver;
mod files;
mod find_target;
mod guard;
mod incoming;
mod incoming_grpc;
mod incoming_h2;
mod incoming_http;
mod incoming_mirror;
mod netlink;
mod netns;
mod nft;
mod ports;
mod relay;
mod service;

use activity::{Activity, Counted};
use auth::{AuthInterceptor, Token};
use clap::Parser;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;
use tether_protocol::agent::agent_server::AgentServer;
use tether_protocol::env::AGENT_TOKEN;
use tokio::io::unix::AsyncFd;

/// Runs next to a target process and performs the remote side of every tether operation.
/// The session token is read from the TETHER_AGENT_TOKEN environment variable, never from argv.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// The target process (its network namespace, root file system and environment are served).
    #[arg(long, value_name = "PID", required_unless_present = "target_container_id")]
    target_pid: Option<i32>,
    /// In the cluster: find the target by its container id instead (find_target.rs).
    #[command(flatten)]
    find: find_target::FindArgs,
    /// Address of the gRPC listener, e.g. 127.0.0.1:0 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Also serve the local socket hand-over on this Unix socket path (mode 0600).
    #[arg(long, value_name = "PATH")]
    fd_socket: Option<PathBuf>,
    /// Exit after this many seconds without any client connection (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
    /// Exit when the process that started the agent exits (a local daemon starts its agents
    /// so: an agent must never outlive its daemon, whatever killed it).
    #[arg(long)]
    exit_with_parent: bool,
}

/// The fd socket file, removed on every exit path.
static FD_SOCKET: OnceLock<PathBuf> = OnceLock::new();

fn remove_fd_socket() {
    if let Some(path) = FD_SOCKET.get() {
        let _ = std::fs::remove_file(path);
    }
}

/// Ends the agent after the startup line (logged, fd socket removed). Nothing here may stop
/// the exit: the log line is best effort (stderr is a pipe to a daemon that may be gone).
fn exit_now(code: i32, reason: &str) -> ! {
    let _ = std::panic::catch_unwind(|| {
        if code == 0 {
            tracing::info!("exiting: {reason}");
        } else {
            tracing::error!("exiting: {reason}");
        }
    });
    remove_fd_socket();
    std::process::exit(code)
}

/// Refuses to start: one line on stderr, exit code 2.
fn fail(message: &str) -> ! {
    eprintln!("tether-agent: {message}");
    remove_fd_socket();
    std::process::exit(2)
}

/// Descriptors of the target, opened once at startup.
struct TargetFds {
    netns: OwnedFd,
    root: OwnedFd,
    pidfd: Option<OwnedFd>,
}

fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!("{e}; the agent needs root (or CAP_SYS_PTRACE and CAP_SYS_ADMIN) over the target")
        }
        Some(libc::ENOENT) | Some(libc::ESRCH) => format!("{e}; has the process exited?"),
        _ => e.to_string(),
    }
}

/// Checks that the target exists and that its namespace and root can be opened.
fn open_target(pid: i32) -> Result<TargetFds, String> {
    if pid <= 0 {
        return Err(format!("target pid {pid} is not a valid process id"));
    }
    let proc_dir = format!("/proc/{pid}");
    if let Err(e) = std::fs::metadata(&proc_dir) {
        return Err(match e.kind() {
            io::ErrorKind::NotFound => format!(
                "target pid {pid}: no such process ({proc_dir} does not exist); check the pid, \
                 and that it belongs to this host's pid namespace"
            ),
            _ => format!("target pid {pid}: cannot look at {proc_dir}: {}", describe(&e)),
        });
    }
    // Open the pidfd first: it pins the process's identity against pid reuse during the checks.
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let pidfd = unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd as i32))
    };
    let open = |what: &str, custom: i32| -> Result<OwnedFd, String> {
        let path = format!("{proc_dir}/{what}");
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(custom | libc::O_CLOEXEC)
            .open(&path)
            .map(OwnedFd::from)
            .map_err(|e| format!("target pid {pid}: cannot open {path}: {}", describe(&e)))
    };
    let netns = open("ns/net", 0)?;
    let root = open("root", libc::O_PATH | libc::O_DIRECTORY)?;
    Ok(TargetFds { netns, root, pidfd })
}

/// A pidfd of the parent, opened before anything else; an error when the parent is gone already
/// (the agent was reparented before it could look).
fn open_parent() -> Result<OwnedFd, String> {
    // SAFETY: getppid cannot fail.
    let ppid = unsafe { libc::getppid() };
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, ppid, 0) };
    if fd < 0 {
        return Err(format!(
            "--exit-with-parent: pidfd_open of the parent (pid {ppid}): {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` was just returned by pidfd_open.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The parent may have died between getppid and pidfd_open, and its pid been reused.
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != ppid {
        return Err(format!("--exit-with-parent: the parent (pid {ppid}) exited before the agent started"));
    }
    Ok(fd)
}

/// Whether the target has exited (gone, or a zombie), for kernels without pidfds.
fn target_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(s) => s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])).unwrap_or(true),
    }
}

async fn watch_target(pid: i32, pidfd: Option<OwnedFd>) {
    if let Some(fd) = pidfd {
        // SAFETY: the AsyncFd owns the descriptor for its whole life.
        match unsafe { AsyncFd::register(fd) }.map_err(io::Error::from) {
            // A pidfd becomes readable when the process exits.
            Ok(afd) => {
                let _ = afd.readable().await;
                return;
            }
            Err(e) => tracing::debug!(err = %e, "cannot poll the pidfd; polling /proc instead"),
        }
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if target_gone(pid) {
            return;
        }
    }
}

/// Removes the token from the environment: overwrites the value in place first (the initial
/// environment block is what `/proc/PID/environ` shows, and `unsetenv` leaves it untouched),
/// then unsets the variable so that no child could inherit it.
fn scrub_token_from_environment() {
    // SAFETY: called before any other thread exists; `getenv` points into writable memory of
    // this process (the initial environment block or a libc allocation) of `strlen` bytes.
    unsafe {
        let name = std::ffi::CString::new(AGENT_TOKEN).expect("constant without NUL");
        let value = libc::getenv(name.as_ptr());
        if !value.is_null() {
            let len = libc::strlen(value);
            std::ptr::write_bytes(value.cast::<u8>(), b'x', len);
        }
        std::env::remove_var(AGENT_TOKEN);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Stderr is a pipe to the daemon that started the agent. Once that daemon is gone, writing
    // fails (EPIPE); the subscriber would then report the failure with `eprintln!`, which
    // panics, and every task that logs (the idle, target and signal watchers among them)
    // would die before it could end the agent. So write errors are dropped silently.
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(filter)
        .log_internal_errors(false)
        .init();
}

fn main() {
    if let Some(table) = std::env::var_os(guard::GUARD_ENV) {
        guard::run(&table.to_string_lossy());
    }
    let mut cli = Cli::parse();
    let parent = cli.exit_with_parent.then(|| open_parent().unwrap_or_else(|m| fail(&m)));
    let token = match std::env::var(AGENT_TOKEN) {
        Ok(t) if !t.is_empty() => t,
        _ => fail(&format!("{AGENT_TOKEN} is not set; the agent takes its session token from the environment only")),
    };
    scrub_token_from_environment();
    let token = Token::new(&token);
    init_logging();

    let pid = find_target::resolve(cli.target_pid, &cli.find).unwrap_or_else(|m| fail(&m));
    cli.target_pid = Some(pid);
    let fds = open_target(pid).unwrap_or_else(|m| fail(&m));
    let netns_inode = netns::ns_inode(&fds.netns)
        .unwrap_or_else(|e| fail(&format!("target pid {pid}: cannot stat /proc/{pid}/ns/net: {e}")));
    let nft_ns = fds
        .netns
        .try_clone()
        .unwrap_or_else(|e| fail(&format!("target pid {pid}: cannot duplicate its namespace descriptor: {e}")));
    let netns = netns::NetnsThread::spawn(fds.netns).unwrap_or_else(|e| {
        fail(&format!(
            "target pid {pid}: cannot enter its network namespace (setns): {e}; the agent needs CAP_SYS_ADMIN"
        ))
    });

    let fd_listener = cli.fd_socket.as_ref().map(|path| {
        let l = fdserver::bind(path)
            .unwrap_or_else(|e| fail(&format!("cannot create the fd socket {}: {e}", path.display())));
        let _ = FD_SOCKET.set(path.clone());
        l
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agent-worker")
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start the async runtime: {e}")));
    let incoming = incoming::Incoming::new(netns.clone(), nft_ns, runtime.handle().clone());
    runtime.block_on(run(cli, token, fds.root, fds.pidfd, parent, netns, netns_inode, fd_listener, incoming));
}

async fn run(
    cli: Cli,
    token: Token,
    root: OwnedFd,
    pidfd: Option<OwnedFd>,
    parent: Option<OwnedFd>,
    netns: netns::NetnsThread,
    netns_inode: u64,
    fd_listener: Option<std::os::unix::net::UnixListener>,
    incoming: std::sync::Arc<incoming::Incoming>,
) {
    let pid = cli.target_pid.expect("resolved in main");
    let activity = Activity::new();
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {}: {e}", cli.listen)));
    let local = listener.local_addr().unwrap_or_else(|e| fail(&format!("listener address: {e}")));

    let fd_socket = cli.fd_socket.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    if let Some(l) = fd_listener {
        fdserver::spawn(l, token.clone(), netns.clone(), activity.clone(), incoming.clone())
            .unwrap_or_else(|e| fail(&format!("cannot start the fd socket thread: {e}")));
    }

    let service = service::AgentService::new(service::Target {
        pid,
        root: std::sync::Arc::new(files::Root::new(root, pid)),
        netns,
        netns_inode,
        fd_socket: fd_socket.clone(),
        incoming,
        parked: Default::default(),
    });

    // Watchers: idle, target exit, signals.
    let idle = Duration::from_secs(cli.idle_timeout);
    tokio::spawn({
        let activity = activity.clone();
        async move {
            activity.wait_idle(idle).await;
            exit_now(0, &format!("no client connected for {}s (idle timeout)", idle.as_secs()));
        }
    });
    tokio::spawn(async move {
        watch_target(pid, pidfd).await;
        exit_now(0, &format!("target pid {pid} has exited"));
    });
    if let Some(parent) = parent {
        // SAFETY: the AsyncFd owns the descriptor for its whole life.
        let afd = unsafe { AsyncFd::register(parent) }
            .map_err(io::Error::from)
            .unwrap_or_else(|e| fail(&format!("--exit-with-parent: cannot poll the parent's pidfd: {e}")));
        tokio::spawn(async move {
            // A pidfd becomes readable when its process exits.
            let _ = afd.readable().await;
            exit_now(0, "the process that started the agent exited (--exit-with-parent)");
        });
    }
    // Registered here, before the startup line, so that an early SIGTERM is already handled.
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).unwrap_or_else(|e| fail(&format!("SIGTERM handler: {e}")));
        let mut int = signal(SignalKind::interrupt()).unwrap_or_else(|e| fail(&format!("SIGINT handler: {e}")));
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => exit_now(0, "terminated (SIGTERM)"),
                _ = int.recv() => exit_now(0, "interrupted (SIGINT)"),
            }
        });
    }

    let incoming = futures::stream::unfold((listener, activity), |(listener, activity)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let keepalive = socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(30))
                        .with_interval(Duration::from_secs(10));
                    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                    let counted = Counted { inner: stream, _guard: activity.connect() };
                    tracing::debug!(%peer, live = activity.live(), "client connected");
                    return Some((Ok::<_, io::Error>(counted), (listener, activity)));
                }
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(err = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });

    // Keys in the documented order: {"listen":..,"fd_socket":..,"pid":..}.
    let ready = format!(
        "{{\"listen\":{},\"fd_socket\":{},\"pid\":{}}}",
        serde_json::Value::from(local.to_string()),
        serde_json::Value::from(fd_socket.as_str()),
        std::process::id()
    );
    {
        let mut out = io::stdout().lock();
        if writeln!(out, "{ready}").and_then(|_| out.flush()).is_err() {
            exit_now(1, "cannot write the startup line to stdout");
        }
    }
    tracing::info!(target_pid = pid, listen = %local, fd_socket, netns_inode, "tether-agent ready");

    let server = AgentServer::new(service).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
    let server = tonic::codegen::InterceptedService::new(server, AuthInterceptor { token });
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(server)
        .serve_with_incoming(incoming)
        .await;
    match result {
        Ok(()) => exit_now(0, "the gRPC server stopped"),
        Err(e) => exit_now(1, &format!("the gRPC server failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_a_usable_target() {
        let fds = open_target(std::process::id() as i32).unwrap();
        assert!(netns::ns_inode(&fds.netns).unwrap() > 0);
        assert!(!target_gone(std::process::id() as i32));
    }

    #[test]
    fn missing_targets_are_explained() {
        let e = open_target(0).err().unwrap();
        assert!(e.contains("not a valid process id"), "{e}");
        // pid_max is at most 2^22: this pid cannot exist.
        let e = open_target(99_999_999).err().unwrap();
        assert!(e.contains("99999999") && e.contains("no such process"), "{e}");
        assert!(target_gone(99_999_999));
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from(["tether-agent", "--target-pid", "42", "--listen", "127.0.0.1:0"]).unwrap();
        assert_eq!((cli.target_pid, cli.idle_timeout, cli.fd_socket), (Some(42), 60, None));
        let cli =
            Cli::try_parse_from(["tether-agent", "--target-container-id", "abc", "--listen", "0.0.0.0:1"]).unwrap();
        assert_eq!((cli.target_pid, cli.find.target_container_id.as_deref()), (None, Some("abc")));
        assert!(Cli::try_parse_from(["tether-agent", "--listen", "127.0.0.1:0"]).is_err());
    }
}

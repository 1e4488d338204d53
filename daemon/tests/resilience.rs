//! The daemon under hostile conditions of its own machine: out of descriptors, its agent or
//! itself killed. Each test has its own daemon (a private XDG world).

mod common;
mod protocol_client;

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::World;
use protocol_client::{Client, Daemon, socket_path};
use serde_json::{Value, json};

/// User plus system CPU time of `pid` so far, in clock ticks (`/proc/PID/stat` fields 14, 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second.
fn hz() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as u64
}

/// Bytes of the daemon's log so far (all its parts).
fn log_bytes(world: &World) -> u64 {
    let dir = world.dir.join("state/tether");
    std::fs::read_dir(&dir)
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("daemon.log")))
        .into_iter()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// `tether daemon` with a soft limit of `nofile` open descriptors.
fn start_daemon_with_nofile(world: &World, nofile: u64) -> Daemon {
    let mut cmd = world.tether();
    cmd.arg("daemon").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; it only lowers the soft limit of the child.
    unsafe {
        cmd.pre_exec(move || {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = nofile;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    protocol_client::spawn_daemon(world, cmd)
}

fn served(world: &World) {
    let mut c = Client::connect(world);
    c.patience = Duration::from_secs(20);
    c.initialize(json!({}));
    assert_eq!(c.ok("tether/sessions", Value::Null)["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn out_of_descriptors_the_daemon_backs_off_instead_of_spinning() {
    let world = World::new();
    let daemon = start_daemon_with_nofile(&world, 128);
    let pid = daemon.child.id();
    served(&world);
    // 200 clients that connect and say nothing: the daemon runs out of descriptors.
    let idle: Vec<UnixStream> = (0..200).map(|_| UnixStream::connect(socket_path(&world)).unwrap()).collect();
    // Wait until it has taken all it can (its descriptor count stops growing near the limit).
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() < 120 {
        assert!(Instant::now() < deadline, "the daemon never reached its descriptor limit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (cpu, log) = (cpu_ticks(pid), log_bytes(&world));
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    let (used, wrote) = (cpu_ticks(pid) - cpu, log_bytes(&world) - log);
    let percent = used * 100 * 1000 / hz() / start.elapsed().as_millis() as u64;
    eprintln!("at the descriptor limit: {used} ticks ({percent}% CPU) and {wrote} log bytes in 2.5 s");
    assert!(percent < 10, "the daemon used {percent}% CPU over 2.5 s at its descriptor limit");
    assert!(wrote < 16 << 10, "the daemon logged {wrote} bytes in 2.5 s at its descriptor limit");
    assert!(world.log().contains("descriptors"), "the back-off is logged:\n{}", world.log());
    // The clients leave: new ones are served again.
    drop(idle);
    served(&world);
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Waits (bounded) until `pid` has exited; how long it took, `None` when it still runs.
fn wait_exited(pid: u32, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if exited(pid) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The `tether-agent` children of `parent`.
fn agents_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let ppid: u32 = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent && head.ends_with("(tether-agent") {
            out.push(pid);
        }
    }
    out
}

/// The agent's fd sockets in the daemon's runtime directory.
fn agent_sockets(world: &World) -> Vec<std::path::PathBuf> {
    let dir = world.dir.join("run/tether");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("agent-"))
        .collect();
    v.sort();
    v
}

/// A session on `pod` created over the protocol; returns the client (keep it) and the agent's pid.
fn session_with_agent(world: &World, daemon: &Daemon, pod: &tether_testkit::Pod, config: &str) -> (Client, u32) {
    let config = world.config(config);
    let mut c = Client::connect(world);
    c.patience = Duration::from_secs(30);
    c.initialize(json!({}));
    let target = format!("pid:{}", pod.pid);
    let info = c.ok("tether/createSession", json!({"target": target, "cwd": world.project, "config": config}));
    assert!(info["session"].is_string(), "{info}");
    let agents = agents_of(daemon.child.id());
    assert_eq!(agents.len(), 1, "one agent child of the daemon: {agents:?}");
    (c, agents[0])
}

#[test]
fn an_agent_never_outlives_its_daemon() {
    let world = World::new();
    // A long idle timeout: the agent must go because its daemon went, not because it idles.
    let pod = common::pod("res-orphan");
    let mut daemon = protocol_client::start_daemon(&world, &[]);
    let (_client, agent) = session_with_agent(&world, &daemon, &pod, r#"{"agent": {"idle_timeout": 120}}"#);
    assert_eq!(agent_sockets(&world).len(), 1, "the agent's fd socket");
    // SAFETY: a signal to the daemon this test started.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGKILL) };
    let _ = daemon.child.wait();
    let took = wait_exited(agent, Duration::from_secs(10));
    eprintln!("the agent exited {took:?} after kill -9 of its daemon");
    assert!(took.is_some_and(|t| t < Duration::from_secs(3)), "the agent outlived its daemon (kill -9): {took:?}");
    assert_eq!(agent_sockets(&world), Vec::<std::path::PathBuf>::new(), "and removed its fd socket");
}

#[test]
fn a_killed_agents_socket_is_removed_by_the_next_daemon() {
    let world = World::new();
    let pod = common::pod("res-stale");
    let daemon = protocol_client::start_daemon(&world, &[]);
    let (client, agent) = session_with_agent(&world, &daemon, &pod, "{}");
    let sockets = agent_sockets(&world);
    assert_eq!(sockets.len(), 1);
    // SAFETY: a signal to an agent of the daemon this test started.
    unsafe { libc::kill(agent as i32, libc::SIGKILL) };
    assert!(wait_exited(agent, Duration::from_secs(5)).is_some());
    assert!(sockets[0].exists(), "kill -9 leaves the socket file behind");
    drop(client);
    drop(daemon);
    // A socket that somebody serves stays.
    let live = world.dir.join("run/tether/agent-1-live.sock");
    let _served = std::os::unix::net::UnixListener::bind(&live).unwrap();
    let _daemon = protocol_client::start_daemon(&world, &[]);
    served(&world);
    assert_eq!(agent_sockets(&world), vec![live], "the next daemon removes the dead agent's socket only");
}

/// Threads of `pid` with the name `name`.
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn the_pool_of_fd_socket_connections_shrinks_after_a_burst() {
    let world = World::new();
    let pod = common::pod("res-pool");
    let daemon = protocol_client::start_daemon(&world, &[]);
    // 48 threads connect at once: each outgoing socket is a round trip on the agent's fd socket.
    let script = format!(
        "import socket, threading\n\
         start, done = threading.Barrier(48), threading.Barrier(48)\n\
         ok = []\n\
         def one():\n    start.wait()\n    s = socket.create_connection(('{ip}', {port}), timeout=20)\n    ok.append(1)\n    done.wait()\n    s.close()\n\
         ts = [threading.Thread(target=one) for _ in range(48)]\n\
         [t.start() for t in ts]\n\
         [t.join() for t in ts]\n\
         print('connected', len(ok))\n",
        ip = pod.echo.ip(),
        port = pod.echo.port()
    );
    let python = tether_testkit::programs::python3();
    let out = world.exec(&pod, &[], &[python.to_str().unwrap(), "-c", &script]);
    common::expect_all(&out, &["connected 48"]);
    let agents = agents_of(daemon.child.id());
    assert_eq!(agents.len(), 1, "{agents:?}");
    let burst = threads_named(agents[0], "fd-conn");
    assert!(burst >= 2, "the burst used {burst} fd-socket connections at once");
    let deadline = Instant::now() + Duration::from_secs(30);
    while threads_named(agents[0], "fd-conn") > 1 {
        assert!(
            Instant::now() < deadline,
            "the pool still holds {} of {burst} fd-socket connections 30 s after the burst",
            threads_named(agents[0], "fd-conn")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_session_says_that_its_agent_died() {
    let world = World::new();
    let pod = common::pod("res-died");
    let daemon = protocol_client::start_daemon(&world, &[]);
    let (mut c, agent) = session_with_agent(&world, &daemon, &pod, "{}");
    // SAFETY: a signal to an agent of the daemon this test started.
    unsafe { libc::kill(agent as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sessions = c.ok("tether/sessions", Value::Null)["sessions"].clone();
        let errors = sessions[0]["lastErrors"].to_string();
        if errors.contains("agent") && errors.contains("died") {
            break;
        }
        assert!(Instant::now() < deadline, "the session does not say that its agent died: {sessions}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = common::run(world.tether().arg("status"));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("died"), "tether status: {text}");
}

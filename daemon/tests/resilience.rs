//! The daemon under hostile conditions of its own machine: its agent or itself killed. Each
//! test has its own daemon (a private XDG world).

mod common;
mod protocol_client;

use std::time::{Duration, Instant};

use common::World;
use protocol_client::{Client, Daemon};
use serde_json::{Value, json};

fn served(world: &World) {
    let mut c = Client::connect(world);
    c.patience = Duration::from_secs(20);
    c.initialize(json!({}));
    assert_eq!(c.ok("tether/sessions", Value::Null)["version"], env!("CARGO_PKG_VERSION"));
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

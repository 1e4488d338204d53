//! `tether lsp`, the stdio bridge: it starts the daemon when none runs (two bridges at once end
//! with one daemon), relays both ways, and applies the version policy: an idle daemon of another
//! version hands over at once, a busy one keeps serving and stops when its sessions have ended.

mod common;
mod protocol_client;

use std::time::{Duration, Instant};

use common::World;
use protocol_client::{Client, socket_path, start_daemon};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Pids of `tether daemon` processes of this world (by their XDG_RUNTIME_DIR).
fn daemons(world: &World) -> Vec<u32> {
    let run = format!("XDG_RUNTIME_DIR={}", world.dir.join("run").display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() < 2 || !args[0].ends_with(b"tether") || args[1] != b"daemon" {
            continue;
        }
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|v| v == run.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

fn version_of(init: &Value) -> String {
    init["serverInfo"]["version"].as_str().unwrap().to_string()
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the process did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bridges_started_at_once_end_up_with_one_daemon() {
    let world = World::new();
    assert!(daemons(&world).is_empty());
    let world = std::sync::Arc::new(world);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
    let bridges: Vec<_> = (0..3)
        .map(|_| {
            let (world, barrier) = (world.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut c = Client::bridge(&world, &[]);
                let init = c.initialize(json!({}));
                let sessions = c.ok("tether/sessions", Value::Null);
                (c, init, sessions)
            })
        })
        .collect();
    let results: Vec<_> = bridges.into_iter().map(|t| t.join().expect("a bridge failed")).collect();
    let pids: Vec<u64> = results
        .iter()
        .map(|(_, init, _)| init["capabilities"]["experimental"]["tether"]["pid"].as_u64().unwrap())
        .collect();
    assert!(pids.iter().all(|p| *p == pids[0]), "one daemon serves every bridge: {pids:?}");
    // A daemon that lost the start-up race leaves by itself within moments.
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemons(&world).len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(daemons(&world), vec![pids[0] as u32], "exactly one daemon process");
    for (_, init, sessions) in &results {
        assert_eq!(version_of(init), env!("CARGO_PKG_VERSION"));
        assert_eq!(sessions["sessions"], json!([]));
    }
    // Closing the editor's end ends the bridge cleanly; the daemon stays.
    for (mut c, _, _) in results {
        c.send(&json!({"jsonrpc": "2.0", "id": 900, "method": "shutdown"}));
        assert_eq!(c.wait_answer(900), Ok(Value::Null));
        c.notify("exit", Value::Null);
        let status = wait_exit(c.child(), Duration::from_secs(10));
        assert!(status.success(), "{status}");
    }
    assert_eq!(daemons(&world).len(), 1);
}

#[test]
fn an_idle_daemon_of_another_version_hands_over_to_the_bridge() {
    let world = World::new();
    let mut old = start_daemon(&world, &[("TETHER_DAEMON_VERSION", "0.0.1-old")]);
    let mut probe = Client::connect(&world);
    assert_eq!(version_of(&probe.initialize(json!({}))), "0.0.1-old");
    drop(probe);

    let mut c = Client::bridge(&world, &[]);
    let init = c.initialize(json!({}));
    assert_eq!(version_of(&init), env!("CARGO_PKG_VERSION"), "a daemon of this version took over");
    wait_exit(&mut old.child, Duration::from_secs(10));
    let new = daemons(&world);
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], old.child.id());
    assert!(world.log().contains("a client of another version asks for the socket"), "{}", world.log());
    // And the first message the editor got is the answer, not a warning.
    assert!(!c.inbox.iter().any(|m| m["method"] == "window/showMessage"), "{:#?}", c.inbox);
}

/// Same version, another build (a `tether` rebuilt since the daemon started): the client does
/// not use the stale daemon silently; an idle one hands over.
#[test]
fn an_idle_daemon_of_another_build_hands_over() {
    let world = World::new();
    let mut old = start_daemon(&world, &[("TETHER_DAEMON_BUILD", "an-older-build")]);
    let mut probe = Client::connect(&world);
    let init = probe.initialize(json!({}));
    assert_eq!(version_of(&init), env!("CARGO_PKG_VERSION"));
    assert_eq!(init["capabilities"]["experimental"]["tether"]["build"], "an-older-build");
    drop(probe);

    let mut c = Client::bridge(&world, &[]);
    let init = c.initialize(json!({}));
    let build = init["capabilities"]["experimental"]["tether"]["build"].as_str().unwrap_or_default().to_string();
    assert!(!build.is_empty() && build != "an-older-build", "this build's daemon took over: {init:#}");
    wait_exit(&mut old.child, Duration::from_secs(10));
    assert!(world.log().contains("a client of another version asks for the socket"), "{}", world.log());
}

#[test]
fn a_busy_daemon_of_another_version_serves_until_its_sessions_end() {
    let pod = common::pod("bridge-busy");
    let world = World::new();
    let mut old = start_daemon(&world, &[("TETHER_DAEMON_VERSION", "0.0.1-old")]);
    let mut editor = Client::connect(&world);
    editor.initialize(json!({}));
    let r = editor.ok(
        "tether/prepareLaunch",
        json!({"launch": {"type": "cppdbg", "request": "launch", "program": "/bin/true"},
               "workspaceFolder": world.project, "target": format!("pid:{}", pod.pid)}),
    );
    let session = r["sessionId"].as_str().expect("a session").to_string();

    let mut c = Client::bridge(&world, &[]);
    let init = c.initialize(json!({}));
    assert_eq!(version_of(&init), "0.0.1-old", "the busy daemon keeps serving");
    let warning = c.wait_for("window/showMessage", WAIT, |_| true);
    let text = warning["params"]["message"].as_str().unwrap();
    assert!(text.contains("0.0.1-old") && text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert_eq!(warning["params"]["type"], 2);
    assert!(old.child.try_wait().unwrap().is_none());

    // The session ends: the old daemon hands over; its clients see the end of their stream.
    editor.ok("tether/stopSession", json!({"sessionId": session}));
    wait_exit(&mut old.child, Duration::from_secs(10));
    let status = wait_exit(c.child(), Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "the bridge says the daemon went away");
    let mut next = Client::bridge(&world, &[]);
    assert_eq!(version_of(&next.initialize(json!({}))), env!("CARGO_PKG_VERSION"));
    assert!(socket_path(&world).exists());
}

/// A daemon whose socket disappears (its runtime directory was removed: a test's, a logout's)
/// can be reached by nobody: it stops instead of living on unseen, and a new one can start.
#[test]
fn a_daemon_whose_socket_is_gone_stops() {
    let world = World::new();
    let mut daemon = start_daemon(&world, &[]);
    std::fs::remove_file(socket_path(&world)).unwrap();
    let status = wait_exit(&mut daemon.child, Duration::from_secs(5));
    assert!(status.success(), "{status:?}\n{}", world.log());
    assert!(world.log().contains("socket is gone or replaced"), "{}", world.log());
    let _again = start_daemon(&world, &[]);
}

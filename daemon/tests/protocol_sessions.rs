//! Sessions through the editor protocol, end to end against a local pod: `tether/prepareLaunch`
//! patches a launch that then really runs inside the target, every client hears
//! `tether/sessionChanged` (starting, ready with its processes, ended), `$/progress` while the
//! agent starts, and the doctor's verdicts (an error stops the launch, a launch that never
//! attaches is reported). Needs root and `cargo build --workspace` (agent and layer).

mod common;
mod protocol_client;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{POD_FILE, POD_FILE_TEXT, POD_SECRET, World, pod};
use protocol_client::{Client, socket_path, start_daemon};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn prepare(c: &mut Client, world: &World, target: u32, launch: Value, extra: Value) -> Value {
    let mut params = json!({"launch": launch, "workspaceFolder": world.project, "target": format!("pid:{target}")});
    params.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    c.ok("tether/prepareLaunch", params)
}

fn errors(r: &Value) -> Vec<Value> {
    r["diagnostics"].as_array().unwrap().iter().filter(|d| d["severity"] == "error").cloned().collect()
}

#[test]
fn prepare_launch_patches_the_launch_and_the_program_runs_inside_the_target() {
    let pod = pod("pl-patch");
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut watcher = Client::connect(&world);
    watcher.initialize(json!({}));
    let mut c = Client::connect(&world);
    c.initialize(json!({}));

    let launch = json!({
        "type": "cppdbg", "request": "launch", "name": "Show config", "program": "/bin/sh",
        "args": ["-c", format!("cat {POD_FILE}; echo \"$POD_ONLY\"")],
        "environment": [{"name": "KEEP", "value": "1"}],
    });
    let r = prepare(&mut c, &world, pod.pid, launch, json!({"workDoneToken": "tok-1"}));
    assert!(errors(&r).is_empty(), "{r:#}");
    let id = r["sessionId"].as_str().expect("a session").to_string();

    // The patch: the layer, the session, the target's environment, in cppdbg's field.
    let listed: BTreeMap<String, String> = r["launch"]["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(listed["KEEP"], "1");
    assert_eq!(listed["POD_ONLY"], POD_SECRET);
    assert_eq!(listed["TETHER_SESSION"], id);
    assert_eq!(listed["TETHER_SOCKET"], socket_path(&world).display().to_string());
    assert_eq!(listed["TETHER_SESSION_TOKEN"].len(), 32);
    assert_eq!(listed["TETHER_REQUIRE"], "1");
    assert!(listed["LD_PRELOAD"].ends_with("libtether_layer.so"));
    assert!(std::path::Path::new(&listed["LD_PRELOAD"]).exists(), "the layer is installed");
    let env: BTreeMap<String, String> = serde_json::from_value(r["env"].clone()).unwrap();
    assert_eq!(env["TETHER_SESSION"], id);
    assert!(r["launch"].get("env").is_none(), "cppdbg takes `environment`, not `env`");

    // $/progress on the client's token while the agent started.
    let begin = c.wait_for("$/progress", WAIT, |p| p["token"] == "tok-1" && p["value"]["kind"] == "begin");
    assert!(begin["params"]["value"]["message"].as_str().unwrap().contains("starting the agent"), "{begin}");
    c.wait_for("$/progress", WAIT, |p| p["token"] == "tok-1" && p["value"]["kind"] == "end");

    // Everyone hears the session become ready.
    let ready = watcher.wait_for("tether/sessionChanged", WAIT, |p| p["id"] == id.as_str() && p["state"] == "ready");
    assert_eq!(ready["params"]["target"], format!("pid:{}", pod.pid));
    assert_eq!(ready["params"]["launchName"], "Show config");
    assert_eq!(ready["params"]["agent"]["targetPid"], pod.pid);

    // What the debugger would do: start the program with the patched environment.
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", &format!("cat {POD_FILE}; echo \"$POD_ONLY\"")]).env_clear();
    cmd.env("PATH", "/usr/bin:/bin").envs(&listed);
    let out = common::run(&mut cmd);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{POD_FILE_TEXT}{POD_SECRET}\n"),
        "{}",
        common::text(&out)
    );

    // The program's exit does not end an editor's session (debuggers start helpers first and
    // stop the program on Restart): the editor ends it.
    std::thread::sleep(Duration::from_millis(1500));
    let now = c.ok("tether/sessions", Value::Null);
    let ours = now["sessions"].as_array().unwrap().iter().find(|s| s["id"] == id.as_str()).cloned().unwrap();
    assert_eq!(ours["state"], "ready", "{ours:#}");
    c.notify("tether/launchEnded", json!({"sessionId": id}));
    let ended = watcher.wait_for("tether/sessionChanged", WAIT, |p| p["id"] == id.as_str() && p["state"] == "ended");
    let p = &ended["params"];
    assert_eq!(p["endReason"], "the editor's debug session ended");
    assert!(
        p["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|pr| pr["executable"] == "/usr/bin/dash" || pr["executable"].as_str().unwrap().ends_with("sh")),
        "{p}"
    );
    assert!(p["counters"]["filesRead"].as_u64().unwrap() >= 1, "{p}");
    assert_eq!(p["counters"]["bytesIn"], 0, "not measured");

    // A second launch reuses the warm agent; stopSession and launchEnded end sessions.
    let launch = json!({"type": "node", "request": "launch", "name": "Two", "program": "/bin/true", "env": {"A": "b"}});
    let two = prepare(&mut c, &world, pod.pid, launch.clone(), json!({}));
    let two_id = two["sessionId"].as_str().unwrap().to_string();
    assert_ne!(two_id, id);
    assert_eq!(two["launch"]["env"]["A"], "b");
    assert_eq!(two["launch"]["env"]["POD_ONLY"], POD_SECRET);
    assert_eq!(c.ok("tether/stopSession", json!({"sessionId": two_id})), json!({"stopped": true}));
    let stopped =
        watcher.wait_for("tether/sessionChanged", WAIT, |p| p["id"] == two_id.as_str() && p["state"] == "ended");
    assert_eq!(stopped["params"]["endReason"], "stopped by a client");
    let three = prepare(&mut c, &world, pod.pid, launch, json!({}));
    let three_id = three["sessionId"].as_str().unwrap().to_string();
    c.notify("tether/launchEnded", json!({"sessionId": three_id}));
    let ended =
        watcher.wait_for("tether/sessionChanged", WAIT, |p| p["id"] == three_id.as_str() && p["state"] == "ended");
    assert_eq!(ended["params"]["endReason"], "the editor's debug session ended");

    let all = c.ok("tether/sessions", Value::Null);
    let states: Vec<&str> = all["sessions"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["ended", "ended", "ended"], "{all:#}");
}

#[test]
fn a_tether_exec_session_is_announced_ready_with_its_process_then_ended() {
    let pod = pod("pl-exec");
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut watcher = Client::connect(&world);
    watcher.initialize(json!({}));
    let out = world.exec(&pod, &[], &["sh", "-c", &format!("sleep 1; cat {POD_FILE}")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), POD_FILE_TEXT, "{}", common::text(&out));

    let ready = watcher.wait_for("tether/sessionChanged", WAIT, |p| {
        p["state"] == "ready" && !p["processes"].as_array().unwrap().is_empty()
    });
    let p = &ready["params"];
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["target"], format!("pid:{}", pod.pid));
    let proc0 = &p["processes"][0];
    assert!(proc0["pid"].as_u64().unwrap() > 0);
    assert!(proc0["since"].as_u64().unwrap() > 1_700_000_000);
    let ended = watcher.wait_for("tether/sessionChanged", WAIT, |p| p["id"] == id.as_str() && p["state"] == "ended");
    assert!(ended["params"]["counters"]["filesRead"].as_u64().unwrap() >= 1, "{ended}");
    // The order: starting (maybe coalesced away), ready, ..., ended; never ready after ended.
    let after_end = watcher.inbox.iter().any(|m| {
        m["params"]["id"] == id.as_str() && m["params"]["state"] == "ready" && m["params"]["endReason"] != Value::Null
    });
    assert!(!after_end);

    let status = common::run(world.tether().arg("status"));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&id) && text.contains("ended"), "{text}");
}

#[test]
fn a_doctor_error_stops_the_launch_and_its_session() {
    let pod = pod("pl-doctor");
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut c = Client::connect(&world);
    c.initialize(json!({}));
    let launch = json!({"type": "cppdbg", "request": "attach", "name": "Attach", "processId": 1});
    let r = prepare(&mut c, &world, pod.pid, launch.clone(), json!({}));
    assert_eq!(r["sessionId"], Value::Null);
    assert_eq!(r["launch"], launch);
    assert_eq!(r["env"], json!({}));
    assert!(errors(&r).iter().any(|d| d["id"] == "launch-attach"), "{r:#}");
    let all = c.ok("tether/sessions", Value::Null);
    assert_eq!(all["sessions"], json!([]), "no session was even started");
}

#[test]
fn a_launch_that_never_attaches_is_reported_to_the_editor() {
    let pod = pod("pl-noattach");
    let world = World::new();
    let _daemon = start_daemon(&world, &[("TETHER_ATTACH_DEADLINE_MS", "500")]);
    let mut c = Client::connect(&world);
    c.initialize(json!({}));
    let launch = json!({"type": "cppdbg", "request": "launch", "name": "Never", "program": "/bin/true"});
    let r = prepare(&mut c, &world, pod.pid, launch, json!({}));
    let id = r["sessionId"].as_str().unwrap().to_string();
    let shown = c.wait_for("window/showMessage", WAIT, |_| true);
    assert_eq!(shown["params"]["type"], 2, "a warning");
    assert!(shown["params"]["message"].as_str().unwrap().contains("no-attach"), "{shown}");
    let changed = c.wait_for("tether/sessionChanged", WAIT, |p| {
        p["id"] == id.as_str() && !p["diagnostics"].as_array().unwrap().is_empty()
    });
    let d = &changed["params"]["diagnostics"][0];
    assert_eq!(d["id"], "no-attach");
    assert!(d["message"].as_str().unwrap().contains("no process of this launch joined"), "{d}");
}

#[test]
fn a_client_that_leaves_during_prepare_launch_leaves_no_session_behind() {
    let pod = pod("pl-leave");
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut watcher = Client::connect(&world);
    watcher.initialize(json!({}));
    let mut c = Client::connect(&world);
    c.initialize(json!({}));
    c.send(&json!({"jsonrpc": "2.0", "id": 5, "method": "tether/prepareLaunch", "params": {
        "launch": {"type": "cppdbg", "request": "launch", "program": "/bin/true"},
        "workspaceFolder": world.project, "target": format!("pid:{}", pod.pid)}}));
    // The agent takes a while to start: leave before the answer.
    watcher.wait_for("tether/sessionChanged", WAIT, |p| p["state"] == "starting");
    drop(c);
    let ended = watcher.wait_for("tether/sessionChanged", WAIT, |p| p["state"] == "ended");
    assert_eq!(ended["params"]["endReason"], "the client left before it got the session");
    let mut again = Client::connect(&world);
    again.initialize(json!({}));
    let all = again.ok("tether/sessions", Value::Null);
    assert!(all["sessions"].as_array().unwrap().iter().all(|s| s["state"] != "ready"), "{all:#}");
}

//! The editor protocol over the daemon's real socket, with scripted clients: every method
//! without a target, and the robustness list (malformed messages, unknown methods, oversized
//! messages, clients that leave or stop reading, many clients at once). Each test has its own
//! daemon (a private XDG world).

mod common;
mod protocol_client;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::World;
use protocol_client::{Client, frame, socket_path, start_daemon};
use serde_json::{Value, json};

/// How long to wait for a notification (generous: the machine may be busy).
const WAIT: Duration = Duration::from_secs(30);

/// The `tether/*` methods a client may call, as the checked-in protocol description lists them.
fn described_methods() -> Vec<String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/editor-protocol.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    d["methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "clientToDaemon" && m["method"].as_str().unwrap().starts_with("tether/"))
        .map(|m| m["method"].as_str().unwrap().to_string())
        .collect()
}

/// A launch the doctor finds nothing wrong with.
fn launch() -> Value {
    json!({"type": "cppdbg", "request": "launch", "name": "true", "program": "/bin/true"})
}

fn daemon_alive(world: &World) {
    let mut c = Client::connect(world);
    c.initialize(json!({}));
    let r = c.ok("tether/sessions", Value::Null);
    assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn initialize_advertises_every_described_method_and_the_version() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut c = Client::connect(&world);
    let r = c.initialize(json!({}));
    assert_eq!(r["serverInfo"]["name"], "tether");
    assert_eq!(r["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    let t = &r["capabilities"]["experimental"]["tether"];
    let advertised: Vec<String> = serde_json::from_value(t["methods"].clone()).unwrap();
    assert_eq!(advertised, described_methods());
    assert_eq!(t["notifications"], json!(["tether/sessionChanged"]));
    assert_eq!(t["protocol"], 1);
    assert!(t["pid"].as_u64().unwrap() > 0);
    assert_eq!(r["capabilities"]["textDocumentSync"], 1, "full-text sync");
    assert_eq!(r["capabilities"]["hoverProvider"], true);
}

#[test]
fn every_described_method_is_served() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut c = Client::connect(&world);
    c.initialize(json!({}));
    for m in described_methods() {
        if m == "tether/stopDaemon" || m == "tether/handover" || m == "tether/launchEnded" {
            continue; // stop the daemon, or a notification: tested on their own
        }
        // Empty params are wrong for most: the answer must be "invalid params", not "not found".
        let e = c.call(&m, json!({})).err();
        let code = e.as_ref().map(|e| e["code"].as_i64().unwrap());
        assert_ne!(code, Some(-32601), "{m} is described but not served: {e:?}");
    }
}

#[test]
fn sessions_targets_explain_path_doctor_and_stop_session() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut c = Client::connect(&world);
    c.initialize(json!({}));

    let s = c.ok("tether/sessions", Value::Null);
    assert_eq!(s, json!({"version": env!("CARGO_PKG_VERSION"), "sessions": []}));

    let mut child = std::process::Command::new("sleep").arg("31.5").spawn().unwrap();
    // Wait until the child is `sleep` (while it execs, its command line reads empty).
    let cmdline = format!("/proc/{}/cmdline", child.id());
    while std::fs::read(&cmdline).unwrap_or_default() != b"sleep\x0031.5\x00" {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = c.ok("tether/listTargets", json!({}));
    let _ = child.kill();
    let _ = child.wait();
    let mine = t["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["pid"] == child.id())
        .expect("the child process is a target");
    assert_eq!(mine["path"], format!("pid:{}", child.id()));
    assert_eq!(mine["kind"], "process");
    assert_eq!(mine["cmdline"], json!(["sleep", "31.5"]));

    let folder = world.project.clone();
    std::fs::create_dir_all(folder.join(".tether")).unwrap();
    std::fs::write(folder.join(".tether/tether.json"), r#"{"feature": {"fs": {"read_only": ["^/srv/data"]}}}"#)
        .unwrap();
    let e = c.ok("tether/explainPath", json!({"path": "/srv/data/x", "workspaceFolder": folder}));
    assert_eq!(e["read"]["route"], "remote");
    assert!(e["read"]["rule"].as_str().unwrap().contains("feature.fs.read_only[0]"), "{e}");
    assert_eq!(e["write"]["route"], "local");
    let e = c.ok("tether/explainPath", json!({"path": "src/main.rs", "workspaceFolder": folder}));
    assert_eq!(e["read"]["route"], "local");
    assert!(e["read"]["rule"].as_str().unwrap().contains("project directory"), "{e}");
    let e = c.ok("tether/explainPath", json!({"path": "/etc/resolv.conf"}));
    assert_eq!(e["read"]["route"], "remote");
    let err = c.call("tether/explainPath", json!({"path": "relative"})).unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");

    let d = c.ok("tether/doctor", json!({"launch": "not an object", "workspaceFolder": folder}));
    let diags = d["diagnostics"].as_array().unwrap();
    assert!(diags.iter().any(|d| d["id"] == "launch-invalid" && d["severity"] == "error"), "{d}");
    std::fs::write(folder.join(".tether/tether.json"), r#"{"feature": {"fs": {"mod": "read"}}}"#).unwrap();
    let d = c.ok("tether/doctor", json!({"launch": {"type": "go"}, "workspaceFolder": folder}));
    let bad = &d["diagnostics"][0];
    assert_eq!(bad["id"], "config-invalid");
    assert_eq!(bad["severity"], "error");
    assert!(bad["message"].as_str().unwrap().contains("did you mean `mode`?"), "{bad}");
    let err = c.call("tether/doctor", json!({"launch": {}, "workspaceFolder": "relative/dir"})).unwrap_err();
    assert_eq!(err["code"], -32602);

    assert_eq!(c.ok("tether/stopSession", json!({"sessionId": "nope"})), json!({"stopped": false}));
    c.notify("tether/launchEnded", json!({"sessionId": "nope"}));
    // A notification gets no answer: the next answer is the next request's.
    assert_eq!(c.ok("tether/sessions", Value::Null)["sessions"], json!([]));
}

#[test]
fn a_failing_launch_is_a_diagnostic_and_a_failed_session_for_everyone() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut watcher = Client::connect(&world);
    watcher.initialize(json!({}));
    let mut c = Client::connect(&world);
    c.initialize(json!({}));
    let launch = json!({"type": "cppdbg", "request": "launch", "name": "Launch Package", "program": "/bin/true"});
    let r = c.ok(
        "tether/prepareLaunch",
        json!({"launch": launch, "workspaceFolder": world.project, "target": "pid:999999"}),
    );
    assert_eq!(r["sessionId"], Value::Null);
    assert_eq!(r["launch"], launch, "an unpatched launch");
    let d = &r["diagnostics"][0];
    assert_eq!(d["id"], "session-failed");
    assert_eq!(d["severity"], "error");
    assert!(d["message"].as_str().unwrap().contains("pid:999999: no such process"), "{d}");
    // The requesting client is told in its log too.
    let log = c.wait_for("window/logMessage", WAIT, |_| true);
    assert!(log["params"]["message"].as_str().unwrap().contains("no such process"));

    let failed = watcher.wait_for("tether/sessionChanged", WAIT, |p| p["state"] == "failed");
    let p = &failed["params"];
    assert_eq!(p["target"], "pid:999999");
    assert_eq!(p["launchName"], "Launch Package");
    assert!(p["lastErrors"][0].as_str().unwrap().contains("no such process"), "{p}");
    let listed = c.ok("tether/sessions", Value::Null);
    assert_eq!(listed["sessions"][0]["state"], "failed");
    assert_eq!(listed["sessions"][0]["id"], p["id"]);

    let err = c.call("tether/createSession", json!({"target": "banana", "cwd": world.project})).unwrap_err();
    assert_eq!(err["code"], -32001);
    assert!(err["message"].as_str().unwrap().contains("unknown target `banana`"), "{err}");
}

#[test]
fn malformed_messages_get_json_rpc_errors_and_the_connection_goes_on() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut c = Client::connect(&world);

    // Before `initialize`: "server not initialized".
    let e = c.call("tether/sessions", Value::Null).unwrap_err();
    assert_eq!(e["code"], -32002, "{e}");
    c.initialize(json!({}));

    c.write_raw(&frame(b"{not json")).unwrap();
    let m = c.next_message().unwrap();
    assert_eq!(m["error"]["code"], -32700, "{m}");
    assert_eq!(m["id"], Value::Null);

    for (body, id) in [
        (r#"{"hello": 1}"#, Value::Null),
        (r#"[1, 2]"#, Value::Null),
        (r#"{"jsonrpc": "1.0", "id": 7, "method": "x"}"#, json!(7)),
    ] {
        c.write_raw(&frame(body.as_bytes())).unwrap();
        let m = c.next_message().unwrap();
        assert_eq!(m["error"]["code"], -32600, "{body}: {m}");
        assert_eq!(m["id"], id, "{body}: {m}");
    }

    let e = c.call("tether/noSuchMethod", json!({})).unwrap_err();
    assert_eq!(e["code"], -32601);
    c.notify("tether/noSuchNotification", json!({}));
    let e = c.call("tether/stopSession", json!({"session": "x"})).unwrap_err();
    assert_eq!(e["code"], -32602, "wrong params: {e}");
    assert_eq!(c.ok("tether/sessions", Value::Null)["version"], env!("CARGO_PKG_VERSION"));

    // The standard end: shutdown, exit, and the daemon closes the connection.
    assert_eq!(c.ok("shutdown", Value::Null), Value::Null);
    c.notify("exit", Value::Null);
    assert!(c.ends_within(WAIT), "the connection closes after exit");
    daemon_alive(&world);
}

#[test]
fn unknown_dollar_requests_and_requests_without_a_method_are_answered() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut c = Client::connect(&world);
    c.initialize(json!({}));
    c.patience = Duration::from_secs(10);

    // LSP: a `$/` notification the daemon does not know is ignored, a `$/` request gets -32601.
    c.notify("$/unknownNotification", json!({}));
    c.send(&json!({"jsonrpc": "2.0", "id": 40, "method": "$/unknown", "params": {}}));
    let m = c.next_message().expect("an answer to $/unknown (a client waiting for it would hang)");
    assert_eq!((m["id"].clone(), m["error"]["code"].clone()), (json!(40), json!(-32601)), "{m}");
    assert!(m["error"]["message"].as_str().unwrap().contains("$/unknown"), "{m}");

    // JSON-RPC: a request without `method` is not a request (docs/editor-protocol.md: -32600).
    c.send(&json!({"jsonrpc": "2.0", "id": 41, "params": {}}));
    let m = c.next_message().expect("an answer to a request without method");
    assert_eq!((m["id"].clone(), m["error"]["code"].clone()), (json!(41), json!(-32600)), "{m}");
    assert!(m["error"]["message"].as_str().unwrap().contains("method"), "{m}");

    // `tether/createSession` wants an absolute `cwd` (the daemon's own directory means nothing).
    let e = c.call("tether/createSession", json!({"target": "pid:99999999", "cwd": "project"})).unwrap_err();
    assert_eq!(e["code"], -32602, "{e}");
    let text = e["message"].as_str().unwrap();
    assert!(text.contains("cwd") && text.contains("project") && text.contains("absolute"), "{e}");
    assert!(c.inbox.is_empty(), "nothing else was sent: {:?}", c.inbox);
    daemon_alive(&world);
}

#[test]
fn an_oversized_or_unframed_message_drops_that_client_only() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut other = Client::connect(&world);
    other.initialize(json!({}));

    let mut big = Client::connect(&world);
    big.initialize(json!({}));
    big.write_raw(format!("Content-Length: {}\r\n\r\n", 17 << 20).as_bytes()).unwrap();
    let m = big.next_message().expect("an error before the close");
    assert_eq!(m["error"]["code"], -32600);
    assert!(m["error"]["message"].as_str().unwrap().contains("exceeds the limit"), "{m}");
    assert!(big.ends_within(WAIT), "then the connection closes");

    let mut unframed = Client::connect(&world);
    unframed.write_raw(b"{\"jsonrpc\": \"2.0\"}\r\n\r\n").unwrap();
    let m = unframed.next_message().expect("an error before the close");
    assert!(m["error"]["message"].as_str().unwrap().contains("malformed message header"), "{m}");
    assert!(unframed.ends_within(WAIT), "then the connection closes");

    assert_eq!(other.ok("tether/sessions", Value::Null)["sessions"], json!([]));
}

#[test]
fn clients_that_leave_mid_message_or_mid_request_do_not_hurt() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    // Half a frame, then gone.
    let mut s = UnixStream::connect(socket_path(&world)).unwrap();
    s.write_all(b"Content-Length: 100\r\n\r\n{\"jsonrpc\":").unwrap();
    drop(s);
    // A request in flight, then gone.
    let mut c = Client::connect(&world);
    c.initialize(json!({}));
    c.send(&json!({"jsonrpc": "2.0", "id": 99, "method": "tether/listTargets", "params": {}}));
    c.send(&json!({"jsonrpc": "2.0", "id": 100, "method": "tether/prepareLaunch",
        "params": {"launch": launch(), "workspaceFolder": world.project, "target": "pid:999999"}}));
    drop(c);
    // Gone before saying anything.
    drop(UnixStream::connect(socket_path(&world)).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    daemon_alive(&world);
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_the_others_go_on() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[("TETHER_CLIENT_QUEUE", "16")]);
    // The slow client: initialized (so it gets session notifications), then never reads.
    let mut slow = UnixStream::connect(socket_path(&world)).unwrap();
    for m in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}),
        json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
    ] {
        slow.write_all(&frame(m.to_string().as_bytes())).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));

    // Another client causes notifications: every failing launch is a session that fails.
    let mut busy = Client::connect(&world);
    busy.initialize(json!({"initializationOptions": {"sessionNotifications": false}}));
    let started = Instant::now();
    let mut launches = 0;
    while !world.log().contains("dropping the client") {
        assert!(started.elapsed() < Duration::from_secs(60), "the slow client was never dropped\n{}", world.log());
        for _ in 0..50 {
            busy.ok(
                "tether/prepareLaunch",
                json!({"launch": launch(), "workspaceFolder": world.project, "target": "pid:999999"}),
            );
            launches += 1;
        }
    }
    assert!(world.log().contains("messages unread"), "{}", world.log());
    // The slow client's socket is closed: draining it ends in EOF.
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    slow.read_to_end(&mut sink).expect("the daemon closed the slow client's connection");
    assert!(launches > 0);
    assert_eq!(busy.ok("tether/sessions", Value::Null)["version"], env!("CARGO_PKG_VERSION"));
    daemon_alive(&world);
}

#[test]
fn fifty_clients_at_once_each_get_their_answer() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let world = std::sync::Arc::new(world);
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let world = world.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&world);
                if i % 5 == 0 {
                    c.write_raw(&frame(b"garbage")).unwrap();
                    assert_eq!(c.next_message().unwrap()["error"]["code"], -32700);
                }
                c.initialize(json!({}));
                if i % 7 == 0 {
                    assert_eq!(c.call("tether/nope", json!({})).unwrap_err()["code"], -32601);
                }
                let r = c.ok("tether/explainPath", json!({"path": format!("/etc/hosts")}));
                assert_eq!(r["read"]["route"], "remote");
                c.ok("tether/sessions", Value::Null)["version"].clone()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("a client failed"), env!("CARGO_PKG_VERSION"));
    }
    daemon_alive(&world);
}

#[test]
fn the_socket_still_speaks_the_bootstrap_handshake_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let path = socket_path(&world);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(b"ATTACH nosuchsession 0123\n").unwrap();
    let mut reply = String::new();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("ERR no session nosuchsession"), "{reply:?}");
    daemon_alive(&world);
}

#[test]
fn daemon_stop_status_and_logs() {
    let world = World::new();
    let status = common::run(world.tether().arg("status"));
    assert!(String::from_utf8_lossy(&status.stdout).contains("no daemon is running"));
    let mut daemon = start_daemon(&world, &[]);
    let json = common::run(world.tether().args(["status", "--json"]));
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let out = common::run(world.tether().args(["daemon", "stop"]));
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("daemon stopped"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon is still running");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!socket_path(&world).exists(), "the socket is removed");
    let logs = common::run(world.tether().arg("logs"));
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.contains("daemon ready") && text.contains("daemon stopping"), "{text}");
}

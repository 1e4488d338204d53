//! End to end for the launch doctor: a Go launch patched by the daemon builds a dynamically
//! linked program through Delve (`dlv`) that attaches to its session, and a launch through an
//! environment-stripping task runner is reported ("no-attach", runner first) within its deadline.
//! Needs root, `cargo build --workspace`, a Go toolchain and Delve (`bash .ci/tools install`).

mod common;
mod protocol_client;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{POD_FILE_TEXT, POD_SECRET, World, pod};
use protocol_client::{Client, start_daemon};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn prepare(c: &mut Client, world: &World, target: u32, launch: Value) -> Value {
    c.ok(
        "tether/prepareLaunch",
        json!({"launch": launch, "workspaceFolder": world.project, "target": format!("pid:{target}")}),
    )
}

const GO_MAIN: &str = r#"package main

import (
	"fmt"
	"os"
)

var version = "dev"

func main() {
	b, err := os.ReadFile("/app/config.txt")
	if err != nil {
		fmt.Println("read failed:", err)
	}
	fmt.Printf("version=%s POD_ONLY=%s file=%s", version, os.Getenv("POD_ONLY"), b)
}
"#;

#[test]
fn a_go_launch_built_by_dlv_with_the_patched_flags_is_dynamic_and_attaches() {
    let dlv = tether_testkit::programs::tool("dlv").unwrap_or_else(|e| panic!("{e:#}"));
    let go = tether_testkit::programs::go().unwrap_or_else(|e| panic!("{e:#}"));
    let go_dir = go.parent().expect("go's directory").to_path_buf();
    let pod = pod("doctor-go");
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut c = Client::connect(&world);
    c.initialize(json!({}));

    let app = world.project.join("goapp");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("main.go"), GO_MAIN).unwrap();
    std::fs::write(app.join("go.mod"), "module example.com/goapp\n\ngo 1.19\n").unwrap();
    let launch = json!({
        "type": "go", "request": "launch", "name": "Launch Package", "mode": "debug",
        "program": app, "buildFlags": "-ldflags='-X main.version=1.2'",
    });
    let r = prepare(&mut c, &world, pod.pid, launch);
    let flags = r["launch"]["buildFlags"].as_str().expect("buildFlags stays a string").to_string();
    assert!(flags.contains("-X main.version=1.2") && flags.contains("-linkmode external"), "{r:#}");
    assert_eq!(flags.matches("-ldflags").count(), 1, "one -ldflags, the user's, extended: {flags}");
    assert!(r["diagnostics"].as_array().unwrap().iter().any(|d| d["id"] == "go-linkmode"), "{r:#}");
    let session = r["sessionId"].as_str().expect("a session").to_string();

    // Launch as the Go extension would: dlv builds with the patched flags and runs the program
    // with the patched environment.
    let bin = world.project.join("debug-bin");
    let dlv_path = dlv;
    let mut dlv = Command::new("ip");
    dlv.args(["netns", "exec", &world.laptop])
        .arg(&dlv_path)
        .arg("debug")
        .arg(&app)
        .arg(format!("--build-flags={flags}"))
        .arg("--output")
        .arg(&bin)
        .args(["--headless", "--listen=127.0.0.1:0", "--api-version=2", "--accept-multiclient", "--continue"])
        .current_dir(&app)
        .env("PATH", format!("{}:{}", go_dir.display(), std::env::var("PATH").unwrap_or_default()))
        .env("GOCACHE", world.project.join("gocache"))
        .env("GOPATH", world.project.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in r["launch"]["env"].as_object().expect("env map for go") {
        dlv.env(k, v.as_str().unwrap());
    }
    let mut child = dlv.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut seen = String::new();
    while Instant::now() < deadline && !seen.contains("file=") {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let expected = format!("version=1.2 POD_ONLY={POD_SECRET} file={}", POD_FILE_TEXT.trim());
    assert!(seen.contains(&expected), "dlv output:\n{seen}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!tether_testkit::elf::is_static(&bin), "dlv built a static binary despite the patched flags");

    let sessions = c.ok("tether/sessions", Value::Null);
    let ours = sessions["sessions"].as_array().unwrap().iter().find(|s| s["id"] == session.as_str()).cloned();
    let processes = ours.as_ref().and_then(|s| s["processes"].as_array().cloned()).unwrap_or_default();
    assert!(
        processes.iter().any(|p| p["executable"].as_str().is_some_and(|e| e.ends_with("debug-bin"))),
        "the debuggee attached: {sessions:#}"
    );
}

#[test]
fn an_environment_stripping_runner_is_reported_within_the_deadline() {
    let pod = pod("doctor-runner");
    let world = World::new();
    let _daemon = start_daemon(&world, &[("TETHER_ATTACH_DEADLINE_MS", "1500")]);
    let mut c = Client::connect(&world);
    c.initialize(json!({}));

    // A task runner named turbo that, like the real one, drops the variables it was not told
    // to pass through before it starts the task. It is listed in `skip_processes`, so it does
    // not join the session itself (a runner that joins would cover its children through the
    // inherited filter, whatever environment they get).
    let bin = world.project.join("node_modules/.bin");
    std::fs::create_dir_all(&bin).unwrap();
    let turbo = bin.join("turbo");
    let src = world.project.join("turbo.c");
    std::fs::write(&src, "#include <unistd.h>\nint main(void) {\n  char *argv[] = {\"cat\", \"/app/config.txt\", 0};\n  char *env[] = {\"PATH=/usr/bin:/bin\", 0};\n  execve(\"/bin/cat\", argv, env);\n  return 127;\n}\n").unwrap();
    assert!(Command::new("gcc").arg("-o").arg(&turbo).arg(&src).status().unwrap().success());
    std::fs::create_dir_all(world.project.join(".tether")).unwrap();
    std::fs::write(world.project.join(".tether/tether.json"), r#"{"skip_processes": ["turbo"]}"#).unwrap();
    let launch = json!({
        "type": "node", "request": "launch", "name": "dev",
        "runtimeExecutable": turbo, "runtimeArgs": ["run", "dev"],
    });
    let started = Instant::now();
    let r = prepare(&mut c, &world, pod.pid, launch);
    let warned = r["diagnostics"].as_array().unwrap().iter().find(|d| d["id"] == "runner-strips-env").cloned();
    let warned = warned.unwrap_or_else(|| panic!("the runner is flagged before the launch: {r:#}"));
    assert!(warned["fix"]["description"].as_str().unwrap().contains("globalPassThroughEnv"), "{warned:#}");

    // Run it as the editor would, with the patched environment: the program runs unseen.
    let mut cmd = Command::new(&turbo);
    let env = r["launch"]["env"].as_object().unwrap_or_else(|| panic!("node gets an env map: {r:#}"));
    for (k, v) in env {
        cmd.env(k, v.as_str().unwrap());
    }
    let out = cmd.output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(POD_FILE_TEXT.trim()), "the runner really stripped it");

    let shown =
        c.wait_for("window/showMessage", WAIT, |p| p["message"].as_str().is_some_and(|m| m.contains("no-attach")));
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "reported after {elapsed:?}");
    let message = shown["params"]["message"].as_str().unwrap();
    assert!(message.contains("turbo"), "the runner is named: {message}");
    assert!(message.contains("skip"), "the skip list is named: {message}");
}

#[test]
fn tether_doctor_reads_launch_json_and_says_what_it_would_change() {
    let world = World::new();
    let vscode = world.project.join(".vscode");
    std::fs::create_dir_all(&vscode).unwrap();
    std::fs::write(
        vscode.join("launch.json"),
        r#"{
  // VS Code writes comments and trailing commas
  "version": "0.2.0",
  "configurations": [
    {"name": "Launch Package", "type": "go", "request": "launch", "mode": "debug",
     "program": "${workspaceFolder}", "buildFlags": ["-tags", "dev", "-ldflags", "-s -w"],},
    {"name": "Attach", "type": "go", "request": "attach", "processId": 1},
  ],
}"#,
    )
    .unwrap();
    let launch = vscode.join("launch.json");
    let out = common::run(world.tether().arg("doctor").arg("--launch").arg(&launch).args(["--name", "Launch Package"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(said.contains("go-linkmode") && said.contains("-s -w -linkmode external"), "{said}");

    let out = common::run(world.tether().arg("doctor").arg("--launch").arg(&launch).args([
        "--name",
        "Launch Package",
        "--json",
    ]));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["launch"]["buildFlags"], json!(["-tags", "dev", "-ldflags", "-s -w -linkmode external"]));

    let out = common::run(world.tether().arg("doctor").arg("--launch").arg(&launch).args(["--name", "Attach"]));
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("launch-attach"));

    let out = common::run(world.tether().arg("doctor").arg("--launch").arg(&launch).args(["--name", "Nope"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Launch Package, Attach"), "{}", common::text(&out));
}

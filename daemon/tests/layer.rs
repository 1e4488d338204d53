//! End to end: joining a session through `libtether_layer.so` (`LD_PRELOAD`), as editor
//! launches do.

mod common;

use common::*;

#[test]
fn a_preloaded_program_and_its_children_are_intercepted() {
    let w = World::new();
    let pod = pod("layer");
    let script = "import os, subprocess\n\
                  print(open('/app/config.txt').read(), end='')\n\
                  print('child:', subprocess.run(['cat', '/app/data/a.txt'], capture_output=True, text=True).stdout)\n\
                  print('POD_ONLY=' + os.environ['POD_ONLY'])";
    let out = w.exec(&pod, &["--layer"], &["python3", "-c", script]);
    expect_all(&out, &[POD_FILE_TEXT.trim(), "child: A", &format!("POD_ONLY={POD_SECRET}")]);
    let log = w.log();
    assert!(log.contains("process attached"), "{log}");
    assert!(log.contains("process registered (already under the filter)"), "{log}");
}

#[test]
fn a_failed_bootstrap_stops_the_program_unless_allowed() {
    let w = World::new();
    let layer = std::path::Path::new(env!("CARGO_BIN_EXE_tether")).with_file_name("libtether_layer.so");
    let run_with = |require: &str| {
        run(std::process::Command::new("cat")
            .arg("/etc/hostname")
            .env("LD_PRELOAD", &layer)
            .env("TETHER_SOCKET", w.dir.join("no-daemon.sock"))
            .env("TETHER_SESSION", "s")
            .env("TETHER_SESSION_TOKEN", "t")
            .env("TETHER_REQUIRE", require))
    };
    let out = run_with("1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(err.contains("could not intercept this process") && err.contains("no-daemon.sock"), "{}", text(&out));
    assert_eq!(err.lines().count(), 1, "one line\n{}", text(&out));
    assert!(out.stdout.is_empty(), "the program must not have run");

    let out = run_with("0");
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("running without tether"), "{}", text(&out));
}

#[test]
fn a_wrong_session_token_is_refused() {
    let w = World::new();
    let pod = pod("badtoken");
    // Start a daemon (and a session) so that the socket exists, then present a made-up token.
    let out = w.exec(&pod, &[], &["true"]);
    assert!(out.status.success(), "{}", text(&out));
    let socket = w.dir.join("run/tether/daemon-v0.sock");
    let layer = std::path::Path::new(env!("CARGO_BIN_EXE_tether")).with_file_name("libtether_layer.so");
    let out = run(std::process::Command::new("ip")
        .args(["netns", "exec", &w.laptop, "cat", "/etc/hostname"])
        .env("LD_PRELOAD", &layer)
        .env("TETHER_SOCKET", &socket)
        .env("TETHER_SESSION", "0000000000000000")
        .env("TETHER_SESSION_TOKEN", "wrong"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session"), "{}", text(&out));
}

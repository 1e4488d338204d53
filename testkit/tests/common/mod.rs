//! Helpers shared by the testkit's integration tests.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

/// Runs `cmd` (stdin closed, no proxy variables), asserts success, returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` (stdin closed, no proxy variables) and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    for v in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(v);
    }
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

/// Names listed by `ip netns list`.
pub fn netns_list() -> Vec<String> {
    let out = run_ok(Command::new("ip").args(["netns", "list"]));
    out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

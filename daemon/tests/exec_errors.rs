//! End to end: bad input gets one clear line and a non-zero exit — never a hang or a panic.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fails_saying(out: &std::process::Output, words: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "should have failed\n{}", text(out));
    for w in words {
        assert!(err.contains(w), "stderr lacks {w:?}\n{}", text(out));
    }
    assert!(!err.contains("panicked"), "{}", text(out));
}

#[test]
fn an_unknown_pid() {
    let w = World::new();
    let out = run(w.tether().args(["exec", "--target", "pid:999999999", "--", "true"]));
    fails_saying(&out, &["pid:999999999", "no such process"]);
}

#[test]
fn an_unknown_target_kind_or_none_at_all() {
    let w = World::new();
    let out = run(w.tether().args(["exec", "--target", "banana", "--", "true"]));
    fails_saying(&out, &["unknown target `banana`"]);
    let out = run(w.tether().args(["exec", "--", "true"]));
    fails_saying(&out, &["no target", "--target pid:<PID>"]);
}

#[test]
fn a_config_that_does_not_parse() {
    let w = World::new();
    let cfg = w.config("{\n  \"feature\": {\"fs\": {\"mod\": \"read\"}}\n}\n");
    let out = run(w.tether().args(["exec", "--target", "pid:1", "--config", cfg.to_str().unwrap(), "--", "true"]));
    fails_saying(&out, &["tether.json:2:", "feature.fs.mod", "did you mean `mode`"]);
    let out = run(w.tether().args(["exec", "--target", "pid:1", "--config", "nope.json", "--", "true"]));
    fails_saying(&out, &["nope.json", "does not exist"]);
}

#[test]
fn a_program_that_does_not_exist() {
    let w = World::new();
    let pod = pod("noprog");
    let out = w.exec(&pod, &[], &["no-such-program-anywhere"]);
    fails_saying(&out, &["no-such-program-anywhere", "not found"]);
}

#[test]
fn an_agent_that_does_not_answer_in_time() {
    let w = World::new();
    let pod = pod("slowagent");
    let fake = w.project.join("slow-agent");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = w.config(r#"{"agent": {"startup_timeout": 1}}"#);
    let started = std::time::Instant::now();
    let out = run(w.tether().env("TETHER_AGENT_BIN", &fake).args([
        "exec",
        "--target",
        &format!("pid:{}", pod.pid),
        "--config",
        cfg.to_str().unwrap(),
        "--",
        "true",
    ]));
    fails_saying(&out, &["did not start within", "agent.startup_timeout"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn an_agent_that_dies_at_start_says_why() {
    let w = World::new();
    let pod = pod("deadagent");
    let fake = w.project.join("dead-agent");
    std::fs::write(&fake, "#!/bin/sh\necho 'tether-agent: cannot enter the namespace' >&2\nexit 2\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(w.tether().env("TETHER_AGENT_BIN", &fake).args([
        "exec",
        "--target",
        &format!("pid:{}", pod.pid),
        "--",
        "true",
    ]));
    fails_saying(&out, &["agent for pid:", "stopped", "cannot enter the namespace"]);
}

#[test]
fn a_killed_agent_is_replaced_by_the_next_launch() {
    let w = World::new();
    let pod = pod("killagent");
    let out = w.exec(&pod, &[], &["cat", POD_FILE]);
    expect_all(&out, &[POD_FILE_TEXT.trim()]);
    let agents = std::process::Command::new("pgrep")
        .args(["-f", &format!("tether-agent --target-pid {}", pod.pid)])
        .output()
        .unwrap();
    let pids: Vec<i32> =
        String::from_utf8_lossy(&agents.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(pids.len(), 1, "one agent runs");
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(100));
    let out = w.exec(&pod, &[], &["cat", POD_FILE]);
    expect_all(&out, &[POD_FILE_TEXT.trim()]);
    assert_eq!(w.log().matches("tether-agent ready").count(), 2, "{}", w.log());
}

#[test]
fn a_user_who_may_not_trace_the_target() {
    // Run tether as `nobody` against a pod whose process belongs to root.
    let w = World::new();
    let pod = pod("notmine");
    let home = w.dir.join("nobody");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&w.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // `nobody` may not reach the build directory (a checkout in a private directory): run a copy
    // of tether, with its agent and layer beside it, from a directory it can reach.
    let bin = w.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let built = std::path::Path::new(env!("CARGO_BIN_EXE_tether")).parent().unwrap().to_path_buf();
    for f in ["tether", "tether-agent", "libtether_layer.so"] {
        std::fs::copy(built.join(f), bin.join(f)).unwrap_or_else(|e| panic!("copying {f}: {e}"));
    }
    let tether = bin.join("tether");
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&tether)
        .args(["exec", "--target", &format!("pid:{}", pod.pid), "--", "true"])
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_DATA_HOME", home.join("data"))
        .current_dir(&home);
    let out = run(&mut cmd);
    fails_saying(&out, &[&format!("pid:{}", pod.pid), "may not", "run tether as the process's user or as root"]);
    let _ = run(std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&tether)
        .args(["daemon", "stop"])
        .env("XDG_RUNTIME_DIR", home.join("run")));
}

/// Runs its arguments with `seccomp(2)` failing with ENOSYS, as on a kernel without seccomp
/// filters.
const NO_SECCOMP: &str = r#"
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_seccomp, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {4, f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("filter");
        return 99;
    }
    execvp(argv[1], argv + 1);
    perror("exec");
    return 98;
}
"#;

#[test]
fn a_kernel_without_seccomp_user_notification() {
    let w = World::new();
    let pod = pod("noseccomp");
    let src = w.project.join("noseccomp.c");
    let bin = w.project.join("noseccomp");
    std::fs::write(&src, NO_SECCOMP).unwrap();
    assert!(std::process::Command::new("gcc").arg("-o").arg(&bin).arg(&src).status().unwrap().success());
    // Start the daemon normally first: only the launched process lacks seccomp.
    let out = w.exec(&pod, &[], &["true"]);
    assert!(out.status.success(), "{}", text(&out));
    // `ip netns exec LAPTOP noseccomp tether exec ...`
    let cmd = w.tether();
    let args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_os_string()).collect();
    let (netns, tether) = args.split_at(3);
    let mut wrapped = std::process::Command::new(cmd.get_program());
    wrapped.args(netns).arg(&bin).args(tether);
    wrapped.args(["exec", "--target", &format!("pid:{}", pod.pid), "--", "cat", POD_FILE]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.current_dir(&w.project);
    let out = run(&mut wrapped);
    fails_saying(&out, &["installing the seccomp filter", "seccomp user notification"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(POD_FILE_TEXT.trim()), "the program must not run");
}

#[test]
fn a_process_on_the_daemon_socket_that_never_answers() {
    let w = World::new();
    let dir = w.dir.join("run/tether");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = dir.join(format!("daemon-v{}.sock", env!("CARGO_PKG_VERSION_MAJOR")));
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let held = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(std::time::Duration::from_secs(20));
        drop(conn);
    });
    let started = std::time::Instant::now();
    let out = run(w.tether().args(["status"]));
    fails_saying(&out, &["did not answer `initialize`", "pkill"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "{:?}", started.elapsed());
    std::fs::remove_file(&socket).unwrap();
    drop(held);
}

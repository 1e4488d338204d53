//! End to end: the supervisor's edge cases — non-blocking sockets, signals during trapped calls,
//! process trees, the skip list, bad pointers, and programs that die mid-call.

mod common;

use common::*;

#[test]
fn non_blocking_connect_keeps_its_semantics() {
    let script = r#"
import socket, select, fcntl, os
s = socket.socket()
s.setblocking(False)
r = s.connect_ex(("198.18.0.10", 80))
print("connect_ex", "in-progress" if r == 115 else r)
select.select([], [s], [], 5)
print("so_error", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
print("nonblocking", bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK))
print("inheritable", os.get_inheritable(s.fileno()))
s.setblocking(True)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
print(s.recv(4096).decode().split("\r\n\r\n", 1)[1])
"#;
    let w = World::new();
    let pod = pod("nonblock");
    let out = w.exec(&pod, &[], &["python3", "-c", script]);
    expect_all(
        &out,
        &["connect_ex in-progress", "so_error 0", "nonblocking True", "inheritable False", "hello from pod nonblock"],
    );
}

#[test]
fn signals_during_trapped_calls_do_not_break_them() {
    // A timer interrupts the program every millisecond while it opens remote files; every read
    // must still return the pod's content (the listener uses WAIT_KILLABLE_RECV).
    let script = r#"
import signal
hits = 0
def tick(*_):
    global hits
    hits += 1
signal.signal(signal.SIGALRM, tick)
signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
good = sum(1 for _ in range(300) if open("/app/config.txt").read() == "pod config: mode=cluster\n")
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print("good", good, "signals", "many" if hits > 10 else hits)
"#;
    let w = World::new();
    let pod = pod("signals");
    let out = w.exec(&pod, &[], &["python3", "-c", script]);
    expect_all(&out, &["good 300 signals many"]);
}

#[test]
fn children_grandchildren_and_stripped_environments_are_covered() {
    let script = "cat /app/config.txt; sh -c 'sh -c \"cat /app/data/a.txt\"'; echo; \
                  env -i /bin/cat /app/data/b.txt; echo; \
                  python3 -c 'import subprocess; print(subprocess.run([\"cat\", \"/app/config.txt\"], capture_output=True, text=True).stdout, end=\"\")'";
    let w = World::new();
    let pod = pod("tree");
    let out = w.exec(&pod, &[], &["sh", "-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout.matches(POD_FILE_TEXT.trim()).count(), 2, "{}", text(&out));
    assert!(stdout.contains("A\n") && stdout.contains("B\n"), "{}", text(&out));
}

#[test]
fn skipped_programs_stay_local_while_the_rest_is_intercepted() {
    let w = World::new();
    let pod = pod("skip");
    let cfg = w.config(r#"{"skip_processes": ["cat"]}"#);
    let cfg = cfg.to_string_lossy().into_owned();
    let script =
        "cat /app/config.txt 2>/dev/null || echo cat-was-skipped; read line < /app/config.txt; echo \"sh read: $line\"";
    let out = w.exec(&pod, &["--config", &cfg], &["sh", "-c", script]);
    expect_all(&out, &["cat-was-skipped", "sh read: pod config: mode=cluster"]);
}

const BAD_POINTERS: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    int fd = open((const char *)1, O_RDONLY);
    printf("open bad pointer: %s\n", fd < 0 ? strerror(errno) : "opened?");
    struct stat st;
    int r = stat((const char *)1, &st);
    printf("stat bad pointer: %s\n", r < 0 ? strerror(errno) : "ok?");
    r = stat("/app/config.txt", (struct stat *)1);
    printf("stat bad buffer: %s\n", r < 0 ? strerror(errno) : "ok?");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    r = connect(s, (const struct sockaddr *)1, 16);
    printf("connect bad pointer: %s\n", r < 0 ? strerror(errno) : "ok?");
    char buf[64] = {0};
    fd = open("/app/config.txt", O_RDONLY);
    read(fd, buf, sizeof buf - 1);
    printf("then: %s", buf);
    return 0;
}
"#;

#[test]
fn unreadable_target_memory_is_an_error_for_the_program_not_the_daemon() {
    let w = World::new();
    let src = w.project.join("bad.c");
    let bin = w.project.join("bad");
    std::fs::write(&src, BAD_POINTERS).unwrap();
    let built = std::process::Command::new("gcc").arg("-o").arg(&bin).arg(&src).status().unwrap();
    assert!(built.success());
    let pod = pod("badptr");
    let out = w.exec(&pod, &[], &[bin.to_str().unwrap()]);
    expect_all(
        &out,
        &[
            "open bad pointer: Bad address",
            "stat bad pointer: Bad address",
            "stat bad buffer: Bad address",
            "connect bad pointer: Bad address",
            "then: pod config: mode=cluster",
        ],
    );
}

#[test]
fn a_program_that_dies_mid_call_leaves_the_daemon_serving() {
    let script = r#"
import os, threading, time
def hammer():
    while True:
        open("/app/config.txt").read()
        os.stat("/app/data")
for _ in range(4):
    threading.Thread(target=hammer, daemon=True).start()
time.sleep(0.2)
os.kill(os.getpid(), 9)
"#;
    let w = World::new();
    let pod = pod("dies");
    for _ in 0..3 {
        let out = w.exec(&pod, &[], &["python3", "-c", script]);
        assert_eq!(out.status.code(), None, "killed by a signal\n{}", text(&out));
    }
    let out = w.exec(&pod, &[], &["cat", "/app/config.txt"]);
    expect_all(&out, &[POD_FILE_TEXT.trim()]);
    assert!(!w.log().contains("panicked"), "{}", w.log());
}

/// The filter intercepts, it does not sandbox: a program under tether keeps the speculation
/// mitigations it would have without it (kernels before 5.16 force SSBD on filtered tasks
/// unless the filter says otherwise).
#[test]
fn the_program_keeps_its_speculation_mitigations() {
    let w = World::new();
    let pod = pod("edge-spec");
    let read = ["grep", "Speculation_Store_Bypass", "/proc/self/status"];
    let bare = run(std::process::Command::new(read[0]).args(&read[1..]));
    let under = w.exec(&pod, &[], &read);
    assert!(under.status.success(), "{}", text(&under));
    assert_eq!(String::from_utf8_lossy(&under.stdout), String::from_utf8_lossy(&bare.stdout));
}

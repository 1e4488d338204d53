//! End to end: the config file's rules decide what comes from the target.

mod common;

use common::*;
use std::path::PathBuf;

fn with_config(name: &str, config: &str, program: &[&str]) -> std::process::Output {
    let w = World::new();
    let pod = pod(name);
    let cfg = w.config(config);
    let cfg = cfg.to_string_lossy().into_owned();
    w.exec(&pod, &["--config", &cfg], program)
}

#[test]
fn env_include_exclude_and_override() {
    let out = with_config(
        "env-rules",
        r#"{"feature": {"env": {"exclude": "SHARED", "override": {"EXTRA": "from-config", "POD_ONLY": "overridden"}}}}"#,
        &["sh", "-c", "echo POD_ONLY=$POD_ONLY; echo SHARED=${SHARED:-local}; echo EXTRA=$EXTRA"],
    );
    expect_all(&out, &["POD_ONLY=overridden", "SHARED=local", "EXTRA=from-config"]);

    let out = with_config(
        "env-include",
        r#"{"feature": {"env": {"include": ["SHA*"]}}}"#,
        &["sh", "-c", "echo POD_ONLY=${POD_ONLY:-absent}; echo SHARED=$SHARED"],
    );
    expect_all(&out, &["POD_ONLY=absent", "SHARED=from-pod"]);
}

#[test]
fn fs_modes_and_rules() {
    let read = "cat /app/config.txt || echo missing";
    let out = with_config("fs-local", r#"{"feature": {"fs": "local"}}"#, &["sh", "-c", read]);
    expect_all(&out, &["missing"]);

    let out =
        with_config("fs-notfound", r#"{"feature": {"fs": {"not_found": ["^/app/config"]}}}"#, &["sh", "-c", read]);
    expect_all(&out, &["missing"]);

    // localwithoverrides: local, except what the lists send to the target.
    let out = with_config(
        "fs-overrides",
        r#"{"feature": {"fs": {"mode": "localwithoverrides", "read_only": ["^/app/data"]}}}"#,
        &["sh", "-c", "cat /app/data/a.txt; echo; cat /app/config.txt || echo config-missing"],
    );
    expect_all(&out, &["A", "config-missing"]);

    // A directory listing and stat of remote paths.
    let out = with_config(
        "fs-stat",
        "{}",
        &["sh", "-c", "ls /app/data; test -f /app/config.txt && echo is-file; test -d /app/data && echo is-dir"],
    );
    expect_all(&out, &["a.txt", "b.txt", "is-file", "is-dir"]);
}

#[test]
fn fs_writes_to_read_only_remote_paths_stay_local() {
    // In mode `read`, opening a remote path for writing goes to the local file system: here
    // /app does not exist locally, so the write fails, and the pod's file is untouched.
    let w = World::new();
    let pod = pod("fs-write");
    let out = w.exec(&pod, &[], &["sh", "-c", "echo changed > /app/config.txt && echo wrote || echo refused"]);
    expect_all(&out, &["refused"]);
    let pod_file = std::fs::read_to_string(pod.root.join("app/config.txt")).unwrap();
    assert_eq!(pod_file, POD_FILE_TEXT);
}

#[test]
fn outgoing_filters() {
    let get_both = "curl -sS -m 5 http://198.18.0.10/ && echo web-ok; \
                    curl -sS -m 5 telnet://198.18.0.11:7 </dev/null && echo echo-ok || echo echo-failed";
    // `local` entries stay on the laptop (whose namespace has no route: the connect fails).
    let out = with_config(
        "filter-local",
        r#"{"feature": {"network": {"outgoing": {"filter": {"local": ["tcp://198.18.0.11"]}}}}}"#,
        &["sh", "-c", get_both],
    );
    expect_all(&out, &["web-ok", "echo-failed"]);

    // `remote` entries are the only ones sent to the target.
    let out = with_config(
        "filter-remote",
        r#"{"feature": {"network": {"outgoing": {"filter": {"remote": ["198.18.0.0/24:80", "udp://:53"]}}}}}"#,
        &["sh", "-c", get_both],
    );
    expect_all(&out, &["web-ok", "echo-failed"]);

    // A host name in a filter is resolved in the target.
    let out = with_config(
        "filter-name",
        r#"{"feature": {"network": {"outgoing": {"filter": {"local": ["echo.svc.cluster.local:7"]}}}}}"#,
        &["sh", "-c", get_both],
    );
    expect_all(&out, &["web-ok", "echo-failed"]);

    // tcp: false keeps every TCP connection local, while DNS (UDP) still goes to the target.
    let out = with_config(
        "filter-notcp",
        r#"{"feature": {"network": {"outgoing": {"tcp": false}}}}"#,
        &["sh", "-c", "getent hosts web.svc.cluster.local; curl -sS -m 5 http://198.18.0.10/ || echo tcp-local"],
    );
    expect_all(&out, &["198.18.0.10", "tcp-local"]);
}

#[test]
fn explain_path_names_the_rule() {
    let w = World::new();
    let cfg = w.config(r#"{"feature": {"fs": {"read_only": ["^/srv/shared"]}}}"#);
    let cfg = cfg.to_string_lossy().into_owned();
    let out = run(w.tether().args(["explain-path", "--config", &cfg, "/srv/shared/x"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("remote") && said.contains("^/srv/shared"), "{}", text(&out));
    let out = run(w.tether().args(["explain-path", "/usr/lib/os-release"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("local"), "{}", text(&out));
    let out = run(w.tether().args(["explain-path", "/etc/resolv.conf"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("remote"), "{}", text(&out));
}

/// `explain-path --program` agrees with a session that runs the program: the program's own
/// installation stays local (`/opt/x` for `/opt/x/bin/prog`), wherever it lies.
#[test]
fn explain_path_keeps_a_named_programs_installation_local() {
    let w = World::new();
    let install = PathBuf::from(format!("/opt/tether-explain-{}", std::process::id()));
    std::fs::create_dir_all(install.join("bin")).unwrap();
    std::fs::copy("/bin/true", install.join("bin/prog")).unwrap();
    let data = format!("{}/share/prog/data.txt", install.display());
    let plain = run(w.tether().args(["explain-path", &data]));
    let with = run(w.tether().arg("explain-path").arg("--program").arg(install.join("bin/prog")).arg(&data));
    let missing = run(w.tether().args(["explain-path", "--program", "no-such-program-here", &data]));
    let _ = std::fs::remove_dir_all(&install);
    assert!(String::from_utf8_lossy(&plain.stdout).contains(": remote"), "{}", text(&plain));
    let said = String::from_utf8_lossy(&with.stdout);
    assert!(
        with.status.success() && said.contains(": local") && said.contains(&*install.to_string_lossy()),
        "{}",
        text(&with)
    );
    assert!(!missing.status.success() && text(&missing).contains("not found on PATH"), "{}", text(&missing));
}

/// A printing command whose reader goes away (`tether status | head -1`) ends quietly: no panic.
#[test]
fn a_closed_stdout_is_no_panic() {
    let w = World::new();
    for args in [&["status"][..], &["schema"], &["explain-path", "/etc/hosts"]] {
        let mut child = w
            .tether()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && out.status.code() != Some(101), "tether {args:?}: {stderr}");
    }
}

#[test]
fn a_second_exec_reuses_the_agent() {
    let w = World::new();
    let pod = pod("reuse");
    for _ in 0..2 {
        let out = w.exec(&pod, &[], &["sh", "-c", "cat /app/config.txt"]);
        expect_all(&out, &[POD_FILE_TEXT.trim()]);
    }
    let log = w.log();
    assert_eq!(log.matches("tether-agent ready").count(), 1, "{log}");
    assert_eq!(log.matches("session created").count(), 2, "{log}");
}

const WRITER: &str = r#"
import os, sys
root = sys.argv[1]
def seen(p):
    return open(root + p).read()
f = open("/app/out.txt", "w")
f.write("hello")
f.flush()
print("after flush, the pod has:", repr(seen("/app/out.txt")))
f.write(" world")
f.close()
with open("/app/config.txt", "a") as f:
    f.write("more\n")
with open("/app/data/a.txt", "r+") as f:
    f.truncate(0)
fd = os.open("/app/data/b.txt", os.O_WRONLY)
os.pwrite(fd, b"Z", 0)
os.close(fd)
print("read back:", repr(open("/app/out.txt").read()))
"#;

#[test]
fn write_mode_writes_through_before_the_program_sees_success() {
    let w = World::new();
    let pod = pod("fs-writes");
    let cfg = w.config(r#"{"feature": {"fs": "write"}}"#);
    let root = pod.root.to_string_lossy().into_owned();
    let out = w.exec(&pod, &["--config", cfg.to_str().unwrap()], &["python3", "-c", WRITER, &root]);
    expect_all(&out, &["after flush, the pod has: 'hello'", "read back: 'hello world'"]);
    let pod_file = |p: &str| std::fs::read_to_string(pod.root.join(p)).unwrap();
    assert_eq!(pod_file("app/out.txt"), "hello world");
    assert_eq!(pod_file("app/config.txt"), format!("{POD_FILE_TEXT}more\n"));
    assert_eq!(pod_file("app/data/a.txt"), "");
    assert_eq!(pod_file("app/data/b.txt"), "Z");
    // The shell's own redirections go through too.
    let out = w.exec(&pod, &["--config", cfg.to_str().unwrap()], &["sh", "-c", "echo appended >> /app/out.txt"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pod_file("app/out.txt"), "hello worldappended\n");
}

/// A program installed outside the system directories (`PREFIX/bin/app`, its library in
/// `PREFIX/lib`, its data in `PREFIX/share`) starts and finds its own files on this machine,
/// while the pod's files still come from the pod.
#[test]
fn a_program_installed_outside_the_system_directories_finds_its_own_files() {
    let prefix = std::path::PathBuf::from(format!("/var/lib/tether-e2e-install-{}", std::process::id()));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(prefix.clone());
    for d in ["bin", "lib", "share", "src"] {
        std::fs::create_dir_all(prefix.join(d)).unwrap();
    }
    std::fs::write(prefix.join("share/greeting.txt"), "hello from the installation\n").unwrap();
    std::fs::write(prefix.join("src/greet.c"), "const char *greet(void) { return \"library loaded\"; }\n").unwrap();
    std::fs::write(
        prefix.join("src/app.c"),
        format!(
            "#include <stdio.h>\nconst char *greet(void);\n\
             static void cat(const char *p) {{ char b[256]; FILE *f = fopen(p, \"r\"); \
             if (!f) {{ perror(p); return; }} while (fgets(b, sizeof b, f)) fputs(b, stdout); fclose(f); }}\n\
             int main(void) {{ puts(greet()); cat(\"{}/share/greeting.txt\"); cat(\"/app/config.txt\"); return 0; }}\n",
            prefix.display()
        ),
    )
    .unwrap();
    let gcc = |args: &[&str]| {
        let out = std::process::Command::new("gcc").args(args).current_dir(&prefix).output().unwrap();
        assert!(out.status.success(), "gcc {args:?}: {}", text(&out));
    };
    gcc(&["-shared", "-fPIC", "-o", "lib/libgreet.so", "src/greet.c"]);
    gcc(&["-o", "bin/app", "src/app.c", "-Llib", "-lgreet", "-Wl,-rpath,$ORIGIN/../lib"]);

    let w = World::new();
    let pod = pod("installed");
    let app = prefix.join("bin/app");
    let out = w.exec(&pod, &[], &[app.to_str().unwrap()]);
    expect_all(&out, &["library loaded", "hello from the installation", POD_FILE_TEXT.trim()]);
    assert!(w.log().contains("is the installation of a program of the session"), "{}", w.log());
}

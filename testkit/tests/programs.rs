//! Fixture programs: busybox, the Go probe (static and external linking), the C probe.
//! Probes that talk to the network run inside a pod's namespace only.

mod common;

use std::process::Command;

use common::{run, run_ok};
use tether_testkit::{PodSpec, elf, programs};

#[test]
fn busybox_is_static_and_system_binaries_are_not() {
    let bb = programs::busybox().unwrap();
    assert_eq!(bb, std::path::Path::new("/bin/busybox"));
    assert!(elf::is_static(&bb));
    assert!(!elf::is_static("/bin/ls"));
    let interp = elf::interpreter("/bin/ls").unwrap().unwrap();
    assert!(interp.starts_with('/') && interp.contains("ld-linux"), "{interp}");
}

#[test]
fn go_toolchain_is_found() {
    let go = programs::go().unwrap();
    assert!(go.is_absolute() && go.is_file(), "{}", go.display());
    assert!(elf::interpreter(&go).is_ok(), "{} is the toolchain binary, not a script", go.display());
    let v = programs::go_version().unwrap();
    assert!(v.starts_with("go version go1."), "{v}");
}

#[test]
fn go_probe_static_runs_and_is_static() {
    let p = programs::go_probe_static().unwrap();
    assert!(elf::is_static(&p));
    assert!(p.starts_with(programs::fixtures_dir().unwrap()));
    let out = run_ok(Command::new(&p).env_clear().env("PROBE_X", "a b=c").args([
        "env",
        "PROBE_X",
        "env",
        "NOPE",
        "stat",
        "/bin/busybox",
        "ls",
        "/proc/self/fd",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "env PROBE_X=a b=c");
    assert_eq!(lines[1], "env NOPE unset");
    assert!(lines[2].starts_with("stat /bin/busybox size=") && lines[2].ends_with(" type=file"), "{}", lines[2]);
    assert!(lines[3].starts_with("ls /proc/self/fd 0,1,"), "{}", lines[3]);

    let bad = run(Command::new(&p).args(["cat", "/nonexistent/file"]));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error cat: "));
    assert!(!run(Command::new(&p).args(["frobnicate"])).status.success());
}

#[test]
fn go_probe_external_runs_and_is_dynamic() {
    let p = programs::go_probe_external().unwrap();
    assert!(!elf::is_static(&p));
    assert!(elf::interpreter(&p).unwrap().unwrap().contains("ld-linux"));
    assert_ne!(p, programs::go_probe_static().unwrap());
    let out = run_ok(Command::new(&p).env("PROBE_Y", "external").args(["env", "PROBE_Y", "cat", "/etc/hostname"]));
    let host = std::fs::read_to_string("/etc/hostname").unwrap();
    assert_eq!(out, format!("env PROBE_Y=external\n{host}"));
}

#[test]
fn fixtures_are_cached() {
    let p = programs::c_probe().unwrap();
    let m1 = std::fs::metadata(&p).unwrap().modified().unwrap();
    // Concurrent callers all get the same, complete file.
    let paths: Vec<_> =
        (0..4).map(|_| std::thread::spawn(|| programs::c_probe().unwrap())).map(|h| h.join().unwrap()).collect();
    assert!(paths.iter().all(|q| *q == p));
    assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), m1);
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("cprobe-") && name.len() == "cprobe-".len() + 16, "{name}");
}

#[test]
fn probes_talk_to_pod_services_inside_the_netns() {
    let pod = PodSpec::new("probes").start().unwrap();
    let probes = [
        ("go-static", programs::go_probe_static().unwrap()),
        ("go-external", programs::go_probe_external().unwrap()),
        ("c", programs::c_probe().unwrap()),
    ];
    for (kind, p) in &probes {
        let out = run_ok(pod.exec_in_netns(Command::new(p).args([
            "get",
            "http://198.18.0.10/x",
            "udp",
            "198.18.0.11:7",
            "hi-udp",
            "tcp",
            "198.18.0.11:7",
            "hi-tcp",
        ])));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "{kind}: {out}");
        assert_eq!(lines[0], "status 200", "{kind}");
        assert!(lines[1].starts_with("hello from pod probes; you are 198.18.0."), "{kind}: {}", lines[1]);
        assert_eq!(lines[2], "peer 198.18.0.10:80", "{kind}");
        assert_eq!(lines[3], "udp 198.18.0.11:7 hi-udp", "{kind}");
        assert_eq!(lines[4], "tcp 198.18.0.11:7 hi-tcp", "{kind}");
        assert_eq!(lines[5], "peer 198.18.0.11:7", "{kind}");
    }
    assert_eq!(pod.http_hits(), 3);
    assert_eq!(pod.echo_datagrams(), 3);
    assert_eq!(pod.echo_connections(), 3);
}

#[test]
fn static_probes_resolve_through_the_pod_dns_in_the_chroot() {
    let pod = PodSpec::new("resolver")
        .copy_file(programs::go_probe_static().unwrap(), "/bin/goprobe")
        .copy_file(programs::c_probe_static().unwrap(), "/bin/cprobe")
        .host("db.local", "198.18.0.77".parse().unwrap())
        .env("APP_MODE", "pod")
        .start()
        .unwrap();
    for probe in ["/bin/goprobe", "/bin/cprobe"] {
        let before = pod.dns_queries();
        let out = run_ok(pod.exec_in_pod(Command::new(probe).env_clear().env("APP_MODE", "pod").args([
            "resolve",
            "web",
            "resolve",
            "echo.svc.cluster.local",
            "resolve",
            "db.local",
            "get",
            "http://api.default.svc.cluster.local/",
            "env",
            "APP_MODE",
        ])));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "resolve web 198.18.0.10", "{probe}: {out}");
        assert_eq!(lines[1], "resolve echo.svc.cluster.local 198.18.0.11", "{probe}: {out}");
        assert_eq!(lines[2], "resolve db.local 198.18.0.77", "{probe}: {out}");
        assert_eq!(lines[3], "status 200", "{probe}: {out}");
        assert!(lines[4].starts_with("hello from pod resolver;"), "{probe}: {out}");
        assert_eq!(lines[5], "peer 198.18.0.10:80", "{probe}: {out}");
        assert_eq!(lines[6], "env APP_MODE=pod", "{probe}: {out}");
        assert!(pod.dns_queries() > before, "{probe} did not ask the pod DNS");

        let nx = run(pod.exec_in_pod(Command::new(probe).args(["resolve", "nosuch.example.com"])));
        assert!(!nx.status.success(), "{probe}");
        assert!(String::from_utf8_lossy(&nx.stderr).starts_with("error resolve: "), "{probe}: {nx:?}");
    }
}

#[test]
fn c_probe_is_dynamic_and_runs() {
    let p = programs::c_probe().unwrap();
    assert!(!elf::is_static(&p));
    assert!(elf::is_static(programs::c_probe_static().unwrap()));
    let tmp = std::env::temp_dir().join(format!("testkit-cprobe-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("d")).unwrap();
    std::fs::write(tmp.join("f.txt"), "file body\n").unwrap();
    let out = run(Command::new(&p).env("CP", "1").args([
        "env",
        "CP",
        "cat",
        tmp.join("f.txt").to_str().unwrap(),
        "ls",
        tmp.to_str().unwrap(),
        "stat",
        tmp.join("f.txt").to_str().unwrap(),
        "cat",
        "/nonexistent",
    ]));
    std::fs::remove_dir_all(&tmp).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let t = tmp.display();
    assert_eq!(stdout, format!("env CP=1\nfile body\nls {t} d,f.txt\nstat {t}/f.txt size=10 mode=0644 type=file\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error cat: open /nonexistent"));
}

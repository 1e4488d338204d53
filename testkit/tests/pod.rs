//! Local pods: namespace, root file system, target process, services, isolation, cleanup.
//! Needs root. Nothing here sends traffic to 198.18.0.0/15 from the host namespace.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{netns_list, run, run_ok};
use tether_testkit::{PodSpec, run_in_netns_path};

fn ns_id(p: impl AsRef<Path>) -> (u64, u64) {
    let m = std::fs::metadata(p.as_ref()).unwrap();
    (m.dev(), m.ino())
}

#[test]
fn target_process_has_the_pods_root_env_and_netns() {
    let pod = PodSpec::new("basics")
        .env("GREETING", "hi there")
        .env("EMPTY", "")
        .file("/app/config.txt", "cfg-v1\n")
        .host("db", Ipv4Addr::new(198, 18, 0, 77))
        .start()
        .unwrap();
    let proc_ = format!("/proc/{}", pod.pid);

    assert!(pod.netns.starts_with(&format!("tether-pod-basics-{}-", std::process::id())), "{}", pod.netns);
    assert!(netns_list().contains(&pod.netns));
    assert_eq!(std::fs::read_link(format!("{proc_}/root")).unwrap(), pod.root);

    let resolv = std::fs::read_to_string(format!("{proc_}/root/etc/resolv.conf")).unwrap();
    assert_eq!(
        resolv,
        "nameserver 198.18.0.53\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    );
    let hosts = std::fs::read_to_string(format!("{proc_}/root/etc/hosts")).unwrap();
    assert_eq!(hosts, "127.0.0.1 localhost\n198.18.0.2 basics\n198.18.0.77 db\n");
    assert_eq!(std::fs::read_to_string(format!("{proc_}/root/etc/hostname")).unwrap(), "basics\n");
    assert_eq!(std::fs::read_to_string(format!("{proc_}/root/app/config.txt")).unwrap(), "cfg-v1\n");
    assert!(tether_testkit::elf::is_static(format!("{proc_}/root/bin/busybox")));

    let environ = std::fs::read(format!("{proc_}/environ")).unwrap();
    let mut vars: Vec<&[u8]> = environ.split(|&b| b == 0).filter(|v| !v.is_empty()).collect();
    vars.sort();
    assert_eq!(vars, vec![&b"EMPTY="[..], b"GREETING=hi there", b"PATH=/bin"]);

    let cmdline = std::fs::read(format!("{proc_}/cmdline")).unwrap();
    assert_eq!(cmdline, b"/bin/busybox\x00sleep\x00100000\x00");

    let target_ns = ns_id(format!("{proc_}/ns/net"));
    assert_eq!(target_ns, ns_id(pod.netns_path()));
    assert_ne!(target_ns, ns_id("/proc/self/ns/net"));

    let addrs = run_ok(Command::new("ip").args(["-n", &pod.netns, "-o", "addr", "show", "dev", "pod0"]));
    for a in ["198.18.0.2/24", "198.18.0.10/32", "198.18.0.11/32", "198.18.0.12/32", "198.18.0.53/32"] {
        assert!(addrs.contains(a), "{a} missing in\n{addrs}");
    }
    assert_eq!(
        (pod.ip, pod.http.to_string(), pod.dns.to_string()),
        (Ipv4Addr::new(198, 18, 0, 2), "198.18.0.10:80".to_string(), "198.18.0.53:53".to_string())
    );
    assert_eq!((pod.echo.to_string(), pod.sink.to_string()), ("198.18.0.11:7".into(), "198.18.0.12:9".into()));
}

#[test]
fn path_override_and_replaced_default_files() {
    let pod = PodSpec::new("override")
        .env("PATH", "/usr/bin:/bin")
        .file("/etc/resolv.conf", "nameserver 198.18.0.99\n")
        .file_mode("/bin/hello", "#!/bin/sh\necho hello\n", 0o755)
        .start()
        .unwrap();
    let environ = std::fs::read_to_string(format!("/proc/{}/environ", pod.pid)).unwrap();
    assert_eq!(environ, "PATH=/usr/bin:/bin\0");
    assert_eq!(std::fs::read_to_string(pod.root.join("etc/resolv.conf")).unwrap(), "nameserver 198.18.0.99\n");
    let out = run_ok(pod.exec_in_pod(Command::new("/bin/hello").env_clear().env("PATH", "/bin")));
    assert_eq!(out, "hello\n");
    assert!(PodSpec::new("Bad_Name").start().is_err());
    assert!(PodSpec::new("rel").file("etc/x", "").start().is_err());
    assert!(PodSpec::new("dotdot").file("/../x", "").start().is_err());
}

#[test]
fn http_by_ip_with_curl_and_busybox_wget() {
    let pod = PodSpec::new("web").start().unwrap();
    let body = run_ok(pod.exec_in_netns(Command::new("curl").args([
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "5",
        "http://198.18.0.10/",
    ])));
    assert!(body.starts_with("hello from pod web; you are 198.18.0."), "{body:?}");
    assert!(body.ends_with('\n'));

    // (No `wget -T`: it crashes Debian's busybox 1.35; `timeout` bounds it instead.)
    let body = run_ok(pod.exec_in_netns(Command::new("/bin/busybox").args([
        "timeout",
        "10",
        "/bin/busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://198.18.0.10:80/some/path",
    ])));
    assert!(body.starts_with("hello from pod web; you are "), "{body:?}");
    assert_eq!(pod.http_hits(), 2);

    // Headers, and two requests over one kept-alive connection.
    let out = run_ok(pod.exec_in_netns(Command::new("curl").args([
        "-sS",
        "-i",
        "--noproxy",
        "*",
        "--max-time",
        "5",
        "http://198.18.0.10/a",
        "http://198.18.0.10/b",
    ])));
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Content-Type: text/plain\r\n"), "{out}");
    let first = out.split("\r\n\r\n").nth(1).unwrap().lines().next().unwrap().to_string();
    assert!(out.contains(&format!("Content-Length: {}\r\n", first.len() + 1)), "{out}");
    let bodies: Vec<&str> = out.lines().filter(|l| l.starts_with("hello from pod web")).collect();
    assert_eq!(bodies.len(), 2, "{out}");
    assert_eq!(bodies[0], bodies[1], "same peer address: the connection was reused");
    assert_eq!(pod.http_hits(), 4);
}

#[test]
fn concurrent_http_clients() {
    let pod = PodSpec::new("busy").start().unwrap();
    let bodies = pod
        .run_in_netns(|| {
            // Open 8 connections first, then request on each: needs a thread per connection.
            let mut conns: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect("198.18.0.10:80").unwrap()).collect();
            for c in &mut conns {
                c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            }
            conns
                .into_iter()
                .map(|mut c| {
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut s = String::new();
                    c.read_to_string(&mut s).unwrap();
                    (c.local_addr().unwrap(), s)
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    for (local, resp) in bodies {
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.ends_with(&format!("hello from pod busy; you are {local}\n")), "{resp}");
        assert!(resp.contains("Connection: close\r\n"));
    }
    assert_eq!(pod.http_hits(), 8);
}

#[test]
fn dns_answers_inside_the_pod() {
    let pod = PodSpec::new("dns").start().unwrap();
    let dig = |args: &[&str]| {
        let mut c = Command::new("dig");
        c.args(["@198.18.0.53", "+time=2", "+tries=1"]).args(args);
        run_ok(pod.exec_in_netns(&mut c))
    };
    assert_eq!(dig(&["+short", "web.default.svc.cluster.local"]), "198.18.0.10\n");
    assert_eq!(dig(&["+short", "ECHO.svc.cluster.local."]), "198.18.0.11\n");
    assert_eq!(dig(&["+short", "+tcp", "api.prod.svc.cluster.local"]), "198.18.0.10\n");

    let full = dig(&["web.default.svc.cluster.local"]);
    assert!(full.contains("status: NOERROR"), "{full}");
    assert!(full.contains("flags: qr aa rd ra;"), "{full}");
    assert!(full.contains("ANSWER: 1,"), "{full}");
    let aaaa = dig(&["AAAA", "web.default.svc.cluster.local"]);
    assert!(aaaa.contains("status: NOERROR") && aaaa.contains("ANSWER: 0,"), "{aaaa}");
    let nx = dig(&["example.com"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let nx = dig(&["+norecurse", "nope.cluster.local"]);
    assert!(nx.contains("status: NXDOMAIN") && nx.contains("flags: qr aa ra;"), "{nx}");
    assert!(pod.dns_queries() >= 7, "{}", pod.dns_queries());

    // busybox nslookup inside the pod (chroot): uses the pod's resolv.conf and search list.
    // (busybox 1.35 exits 1 when the AAAA half of its lookup has no answer.)
    let out = run(pod.exec_in_pod(Command::new("/bin/busybox").args(["nslookup", "web"])));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("Name:\tweb.default.svc.cluster.local\nAddress: 198.18.0.10\n"), "{out}");
    let out = run(pod.exec_in_pod(Command::new("/bin/busybox").args(["nslookup", "nosuch.example.com"])));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("can't find nosuch.example.com: NXDOMAIN") && !out.contains("Name:"), "{out}");
}

#[test]
fn http_by_name_through_the_pod_dns() {
    let pod = PodSpec::new("named").host("alias", Ipv4Addr::new(198, 18, 0, 10)).start().unwrap();
    let wget = |url: &str| {
        run_ok(pod.exec_in_pod(Command::new("/bin/busybox").args([
            "timeout",
            "10",
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "-",
            url,
        ])))
    };
    // Static busybox inside the chroot: pod resolv.conf → pod DNS (short name via search list).
    for url in ["http://web.default.svc.cluster.local/", "http://web/", "http://alias/"] {
        let body = wget(url);
        assert!(body.starts_with("hello from pod named; you are 198.18.0."), "{url}: {body:?}");
    }
    assert!(pod.dns_queries() >= 2);

    // curl on the host fs inside the netns: name → address with dig at the pod DNS, then GET.
    let ip = run_ok(pod.exec_in_netns(Command::new("dig").args([
        "@198.18.0.53",
        "+short",
        "+time=2",
        "+tries=1",
        "frontend.default.svc.cluster.local",
    ])));
    let url = "http://frontend.default.svc.cluster.local/".to_string();
    let resolve = format!("frontend.default.svc.cluster.local:80:{}", ip.trim());
    let body = run_ok(pod.exec_in_netns(Command::new("curl").args([
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "5",
        "--resolve",
        &resolve,
        &url,
    ])));
    assert!(body.starts_with("hello from pod named; "), "{body:?}");
    assert_eq!(pod.http_hits(), 4);
}

#[test]
fn echo_and_sink_services() {
    let pod = PodSpec::new("bench").start().unwrap();
    let (tcp_echo, udp_echo, sink_len, sink_all_x) = pod
        .run_in_netns(|| {
            // TCP echo of 1 MiB, written from another thread while reading.
            let mut c = TcpStream::connect("198.18.0.11:7").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let data: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
            let mut w = c.try_clone().unwrap();
            let sent = data.clone();
            let writer = std::thread::spawn(move || {
                w.write_all(&sent).unwrap();
                w.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            writer.join().unwrap();

            let u = UdpSocket::bind("198.18.0.2:0").unwrap();
            u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            u.send_to(b"ping-udp", "198.18.0.11:7").unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = u.recv_from(&mut buf).unwrap();
            assert_eq!(from, "198.18.0.11:7".parse::<SocketAddr>().unwrap());

            let mut s = TcpStream::connect("198.18.0.12:9").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&3_000_001u64.to_be_bytes()).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            (back == data, buf[..n].to_vec(), got.len(), got.iter().all(|&b| b == b'x'))
        })
        .unwrap();
    assert!(tcp_echo, "TCP echo returned different bytes");
    assert_eq!(udp_echo, b"ping-udp");
    assert_eq!(sink_len, 3_000_001);
    assert!(sink_all_x);
    assert_eq!((pod.echo_connections(), pod.echo_datagrams(), pod.sink_connections()), (1, 1, 1));
}

/// An empty namespace of our own, deleted on drop.
struct EmptyNs(String);
impl Drop for EmptyNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

#[test]
fn services_are_unreachable_outside_the_pod() {
    let pod = PodSpec::new("hidden").start().unwrap();

    // Host namespace: no pod address, no pod interface, no route via one (checked without
    // sending anything to 198.18.0.0/15 from the host).
    let addrs = run_ok(Command::new("ip").args(["-o", "addr"]));
    assert!(!addrs.contains("198.18.0."), "{addrs}");
    let route = run_ok(Command::new("ip").args(["route", "get", "198.18.0.10"]));
    assert!(!route.contains("pod0") && !route.starts_with("local"), "{route}");
    let links = run_ok(Command::new("ip").args(["-o", "link"]));
    assert!(!links.contains(": pod0"), "{links}");

    // Another namespace (a fresh, empty one): connecting fails at once.
    // (Named like a pod so that cleanup_stale_pods removes it if this process gets killed.)
    let other = EmptyNs(format!("tether-pod-emptyns-{}-999999", std::process::id()));
    run_ok(Command::new("ip").args(["netns", "add", &other.0]));
    run_ok(Command::new("ip").args(["-n", &other.0, "link", "set", "lo", "up"]));
    let t = Instant::now();
    let r = run_in_netns_path(&Path::new("/var/run/netns").join(&other.0), || {
        TcpStream::connect_timeout(&"198.18.0.10:80".parse().unwrap(), Duration::from_secs(2))
    })
    .unwrap();
    let e = r.expect_err("the pod's HTTP service must not be reachable from another namespace");
    assert!(t.elapsed() < Duration::from_secs(1), "failed only after {:?}: {e}", t.elapsed());
    let curl = run(Command::new("ip").args([
        "netns",
        "exec",
        &other.0,
        "curl",
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "2",
        "http://198.18.0.10/",
    ]));
    assert!(!curl.status.success());

    // ... while from inside the pod it works.
    let ok = pod
        .run_in_netns(|| TcpStream::connect_timeout(&"198.18.0.10:80".parse().unwrap(), Duration::from_secs(2)).is_ok())
        .unwrap();
    assert!(ok);
    assert_eq!(pod.http_hits(), 0, "a bare connect is not a request");
}

#[test]
fn two_pods_use_the_same_addresses_in_isolation() {
    let a = PodSpec::new("iso-a").start().unwrap();
    let b = PodSpec::new("iso-b").start().unwrap();
    assert_ne!(a.netns, b.netns);
    for (pod, name) in [(&a, "iso-a"), (&b, "iso-b")] {
        let body = run_ok(pod.exec_in_netns(Command::new("curl").args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "5",
            "http://198.18.0.10/",
        ])));
        assert!(body.starts_with(&format!("hello from pod {name};")), "{body}");
    }
    assert_eq!((a.http_hits(), b.http_hits()), (1, 1));
    // Same pod name twice is fine too: namespaces carry a counter.
    let a2 = PodSpec::new("iso-a").start().unwrap();
    assert_ne!(a.netns, a2.netns);
    assert_ne!(a.root, a2.root);
}

#[test]
fn panicking_test_still_tears_the_pod_down() {
    let seen = std::sync::Mutex::new(None);
    let r = std::panic::catch_unwind(|| {
        let pod = PodSpec::new("doomed").start().unwrap();
        *seen.lock().unwrap() = Some((pod.netns.clone(), pod.root.clone(), pod.pid));
        assert!(netns_list().contains(&pod.netns));
        panic!("test body fails while the pod runs");
    });
    assert!(r.is_err());
    let (netns, root, pid) = seen.lock().unwrap().take().unwrap();
    assert!(!netns_list().contains(&netns), "{netns} still listed");
    assert!(!tether_testkit::netns_exists(&netns));
    assert!(!root.exists(), "{} still exists", root.display());
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "target {pid} still exists");
}

#[test]
fn stop_kills_processes_started_in_the_pod() {
    let pod = PodSpec::new("procs").start().unwrap();
    let mut in_netns = pod.exec_in_netns(Command::new("sleep").arg("1000")).stdout(Stdio::null()).spawn().unwrap();
    let mut in_pod = pod.exec_in_pod(Command::new("/bin/busybox").args(["sleep", "1000"])).spawn().unwrap();
    let target = pod.pid;
    let netns = pod.netns.clone();
    let root = pod.root.clone();
    assert!(Path::new(&format!("/proc/{target}")).exists());
    assert_eq!(std::fs::read_link(format!("/proc/{}/root", in_pod.id())).unwrap(), root);
    pod.stop().unwrap();

    for child in [&mut in_netns, &mut in_pod] {
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "process {} survived the pod", child.id());
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.signal(), Some(9), "SIGKILL");
    }
    assert!(!Path::new(&format!("/proc/{target}")).exists());
    assert!(!netns_list().contains(&netns));
    assert!(!root.exists());
}

#[test]
fn exec_in_pod_sees_the_pods_files() {
    let pod = PodSpec::new("files").file("/data/x.txt", "pod data\n").start().unwrap();
    let out = run_ok(pod.exec_in_pod(Command::new("/bin/cat").args(["/etc/hostname", "/data/x.txt"])));
    assert_eq!(out, "files\npod data\n");
    let ls = run_ok(pod.exec_in_pod(Command::new("/bin/ls").arg("/bin")));
    for applet in ["busybox", "sh", "sleep", "cat"] {
        assert!(ls.split_whitespace().any(|w| w == applet), "{applet} missing: {ls}");
    }
}

#[test]
fn stale_pods_of_dead_processes_are_cleaned_up() {
    // A pid that is certainly gone: a child we started and reaped.
    let mut c = Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let stale = format!("tether-pod-stale-{dead}-0");
    let live = format!("tether-pod-stale-{}-424242", std::process::id());
    let stale_root = std::env::temp_dir().join(&stale);
    let live_root = std::env::temp_dir().join(&live);
    run_ok(Command::new("ip").args(["netns", "add", &stale]));
    run_ok(Command::new("ip").args(["netns", "add", &live]));
    let _guard = EmptyNs(live.clone());
    std::fs::create_dir_all(stale_root.join("etc")).unwrap();
    std::fs::create_dir_all(&live_root).unwrap();
    // A process left running inside the stale namespace.
    let mut orphan = Command::new("ip").args(["netns", "exec", &stale, "sleep", "1000"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(100));

    tether_testkit::cleanup_stale_pods();

    let list = netns_list();
    assert!(!list.contains(&stale), "stale namespace survived");
    assert!(!stale_root.exists(), "stale root survived");
    assert!(list.contains(&live), "a live process's namespace was removed");
    assert!(live_root.exists());
    std::fs::remove_dir_all(&live_root).unwrap();
    let status = orphan.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the process in the stale namespace was killed");
}

#[test]
fn command_in_netns_starts_the_command_in_the_namespace() {
    let pod = tether_testkit::PodSpec::new("cmdns").start().unwrap();
    let want = std::fs::metadata(pod.netns_path()).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    let mut cmd = std::process::Command::new("readlink");
    cmd.arg("/proc/self/ns/net");
    let out = tether_testkit::command_in_netns(&mut cmd, &pod.netns_path()).unwrap().output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("net:[{want}]"));
    assert!(tether_testkit::command_in_netns(&mut cmd, std::path::Path::new("/var/run/netns/no-such-ns")).is_err());
}

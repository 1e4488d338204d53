//! End to end: `tether exec --target pid:<pod>` with every kind of program.
//!
//! Each program, run on this machine, must see the pod's environment, read a file only the pod
//! has, resolve names with the pod's hosts file and DNS server, and reach a service only the
//! pod's network has — which proves the connection really left from the pod.

mod common;

use common::*;
use tether_testkit::programs;

/// The checks every program kind must pass, in the words its output uses.
fn core_expectations(pod: &str) -> Vec<String> {
    vec![format!("POD_ONLY={POD_SECRET}"), POD_FILE_TEXT.trim().to_string(), format!("hello from pod {pod}")]
}

fn check(name: &str, program: &[&str], extra: &[&str]) {
    let w = World::new();
    let pod = pod(name);
    let out = w.exec(&pod, &[], program);
    let mut wanted = core_expectations(name);
    wanted.extend(extra.iter().map(|s| s.to_string()));
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    expect_all(&out, &wanted);
    assert!(pod.dns_queries() > 0 || extra.is_empty(), "the pod's DNS server saw no query\n{}", text(&out));
}

#[test]
fn dynamic_c_program() {
    let p = probe(programs::c_probe().unwrap());
    check("c-dyn", &p.iter().map(String::as_str).collect::<Vec<_>>(), PROBE_EXPECT);
}

#[test]
fn curl() {
    let script = "echo POD_ONLY=$POD_ONLY; curl -sS file:///app/config.txt; \
                  curl -sS http://web.svc.cluster.local/; curl -sS http://only-in-hosts/";
    check("curl", &["sh", "-c", script], &["you are 198.18.0.10"]);
}

#[test]
fn static_go_program() {
    let path = programs::go_probe_static().unwrap();
    assert!(tether_testkit::elf::is_static(&path));
    let p = probe(path);
    check("go-static", &p.iter().map(String::as_str).collect::<Vec<_>>(), PROBE_EXPECT);
}

#[test]
fn go_program_linked_externally() {
    let path = programs::go_probe_external().unwrap();
    assert!(!tether_testkit::elf::is_static(&path));
    let p = probe(path);
    check("go-external", &p.iter().map(String::as_str).collect::<Vec<_>>(), PROBE_EXPECT);
}

#[test]
fn static_busybox() {
    let bb = programs::busybox().unwrap();
    assert!(tether_testkit::elf::is_static(&bb));
    let bb = bb.to_string_lossy().into_owned();
    let script = format!(
        "echo POD_ONLY=$POD_ONLY; {bb} cat /app/config.txt; {bb} nslookup web.svc.cluster.local; \
         {bb} wget -q -O- http://web.svc.cluster.local/; {bb} wget -q -O- http://only-in-hosts/"
    );
    check("busybox", &[&bb, "sh", "-c", &script], &["Address: 198.18.0.10"]);
}

#[test]
fn python() {
    check("python", &["python3", "-c", PYTHON], PROBE_EXPECT);
}

const NODE: &str = r#"
const fs = require('fs'), dns = require('dns'), http = require('http'), dgram = require('dgram');
console.log('POD_ONLY=' + process.env.POD_ONLY);
process.stdout.write(fs.readFileSync('/app/config.txt', 'utf8'));
dns.lookup('web.svc.cluster.local', { family: 4 }, (e, a) => {
  console.log('resolve web.svc.cluster.local ' + (e ? e.code : a));
  dns.lookup('only-in-hosts', { family: 4 }, (e2, a2) => {
    console.log('resolve only-in-hosts ' + (e2 ? e2.code : a2));
    dns.resolve4('web.svc.cluster.local', (e3, a3) => {
      console.log('c-ares web.svc.cluster.local ' + (e3 ? e3.code : a3.join(',')));
      http.get('http://web.svc.cluster.local/', res => {
        let body = '';
        const peer = res.socket.remoteAddress + ':' + res.socket.remotePort;
        res.on('data', d => body += d);
        res.on('end', () => {
          console.log('peer ' + peer);
          process.stdout.write(body);
          const u = dgram.createSocket('udp4');
          const t = setTimeout(() => { console.log('udp timeout'); process.exit(1); }, 5000);
          u.on('message', m => { console.log('udp 198.18.0.11:7 ' + m); clearTimeout(t); u.close(); });
          u.send('ping', 7, '198.18.0.11');
        });
      }).on('error', e => { console.log('http error ' + e.message); process.exit(1); });
    });
  });
});
"#;

#[test]
fn node() {
    let mut expect = PROBE_EXPECT.to_vec();
    expect.push("c-ares web.svc.cluster.local 198.18.0.10");
    check("node", &["node", "-e", NODE], &expect);
}

/// `tether demo` (the README's first command) shows every part of the main job on its own pod,
/// incoming traffic included.
#[test]
fn the_demo_shows_every_part() {
    let w = World::new();
    let out = run(w.tether().arg("demo"));
    expect_all(
        &out,
        &[
            "POD_GREETING=hello from inside the demo pod",
            "/app/message.txt says: this file exists only in the pod",
            "web.svc.cluster.local is 198.18.0.10",
            "-> hello from pod demo",
            "gave the local server on 8080 `GET /from-a-client HTTP/1.0` from 198.19.0.1:",
            "got: answered by the local program",
            "demo pod removed",
        ],
    );
}

/// The demo's own things, by the demo's pid: its network namespaces and its config file.
fn demo_leftovers(pid: u32) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&format!("-{pid}-")))
        .collect();
    let config = std::env::temp_dir().join(format!("tether-demo-{pid}.json"));
    if config.exists() {
        left.push(config.display().to_string());
    }
    left
}

/// A machine without `nft` hears so before anything is built, with the package to install,
/// and the demo does not wait forever in step 5.
#[test]
fn the_demo_names_what_is_missing_before_it_starts() {
    let w = World::new();
    // A PATH with everything the demo uses but `nft`.
    let bin = w.dir.join("bin-without-nft");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["ip", "python3", "curl", "getent", "sh"] {
        let found = programs::tool(tool).unwrap_or_else(|e| panic!("{e:#}"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let started = std::time::Instant::now();
    let out = run(w.tether().arg("demo").env("PATH", &bin));
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("`nft`") && said.contains("apt-get install nftables"), "{said}");
    assert!(!said.contains("demo pod:"), "nothing is built: {said}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
}

/// Ctrl-C in the middle of the tour: the demo removes its pod, namespaces and config file.
#[test]
fn the_demo_cleans_up_after_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let w = World::new();
    let mut child = w
        .tether()
        .args(["demo", "--", "sh", "-c", "echo started; exec sleep 60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("started") {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "the demo ended early: {seen}");
        seen.push_str(&line);
    }
    assert!(!demo_leftovers(pid).is_empty(), "the pod exists while the demo runs");
    // Ctrl-C reaches the whole foreground group; here the demo and its program get it.
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(rest.contains("demo pod removed"), "{seen}{rest}");
    assert!(!status.success(), "{status}");
    assert_eq!(demo_leftovers(pid), Vec::<String>::new());
}

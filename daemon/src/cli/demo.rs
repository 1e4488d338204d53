//! `tether demo`: the main job, shown on a built-in local target.
//!
//! Builds a local "pod" (a network namespace with an HTTP service and a DNS server reachable only
//! inside it, a chroot with its own files, a target process with its own environment), then runs
//! a program with `tether exec` against it, and removes the pod again. Needs root (namespaces).

use std::ffi::OsString;
use std::process::Command;

use anyhow::{Context, bail};
use tether_testkit::PodSpec;

const DEFAULT_SCRIPT: &str = r#"
echo "1. environment:  POD_GREETING=$POD_GREETING"
echo "2. remote file:  /app/message.txt says: $(cat /app/message.txt)"
echo "3. DNS:          web.svc.cluster.local is $(getent hosts web.svc.cluster.local | cut -d' ' -f1)"
echo "4. outgoing:     GET http://web.svc.cluster.local/ -> $(curl -s http://web.svc.cluster.local/)"
"#;

pub fn run(program: Vec<OsString>) -> anyhow::Result<i32> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo builds a network namespace and needs root: run it with sudo");
    }
    let pod = PodSpec::new("demo")
        .env("POD_GREETING", "hello from inside the demo pod")
        .file("/app/message.txt", "this file exists only in the pod")
        .start()
        .context("building the demo pod")?;
    println!("demo pod: pid {} in network namespace {} (root file system {})", pod.pid, pod.netns, pod.root.display());
    println!(
        "on this machine: /app/message.txt exists: {}; web.svc.cluster.local resolves: {}\n",
        std::path::Path::new("/app/message.txt").exists(),
        std::net::ToSocketAddrs::to_socket_addrs(&("web.svc.cluster.local", 80)).is_ok()
    );
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("exec").arg("--target").arg(format!("pid:{}", pod.pid)).arg("--");
    if program.is_empty() {
        cmd.args(["sh", "-c", DEFAULT_SCRIPT]);
    } else {
        cmd.args(program);
    }
    println!("$ tether exec --target pid:{} -- {}", pod.pid, if cmd.get_args().count() > 4 { "..." } else { "" });
    let status = cmd.status().context("running tether exec")?;
    drop(pod);
    Ok(status.code().unwrap_or(1))
}

//! `cargo bench -p tether --bench core`: the core's speed, each figure beside its baseline from
//! the same run (medians; these machines are noisy, so compare within a run, not across runs).
//!
//! Needs root (network namespaces) and gcc. Builds a local pod, a "laptop" namespace with only
//! loopback (so nothing can leave the machine), and a small C measuring program (`core.c`).

mod common;

use common::{median, ok};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use tether_testkit::PodSpec;

struct Bench {
    dir: PathBuf,
    laptop: String,
    tether: PathBuf,
    probe: PathBuf,
    pod_pid: u32,
}

fn field(line: &str, name: &str) -> f64 {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        }
    }
    panic!("no {name} in {line:?}")
}

impl Bench {
    fn tether(&self) -> Command {
        let laptop = PathBuf::from(format!("/var/run/netns/{}", self.laptop));
        common::private_tether(&self.tether, &self.dir, &laptop)
    }

    /// The probe under `tether exec`.
    fn under_tether(&self, args: &[&str]) -> String {
        let mut cmd = self.tether();
        cmd.args(["exec", "--target", &format!("pid:{}", self.pod_pid), "--"]).arg(&self.probe).args(args);
        ok(cmd.output().unwrap(), &format!("tether exec probe {args:?}"))
    }

    fn bare(&self, args: &[&str], netns: Option<PathBuf>) -> String {
        let mut cmd = Command::new(&self.probe);
        cmd.args(args);
        if let Some(ns) = netns {
            tether_testkit::command_in_netns(&mut cmd, &ns).expect("entering a network namespace");
        }
        ok(cmd.output().unwrap(), &format!("probe {args:?}"))
    }
}

fn main() {
    common::require_root("core");
    let tether = common::release_tether();
    let dir = std::env::temp_dir().join(format!("tether-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let probe = common::build_c("core", &[]);

    let pod = PodSpec::new("bench").file("/app/4k.bin", vec![b'x'; 4096]).start().expect("pod");
    let laptop = format!("tether-bench-laptop-{}", std::process::id());
    Command::new("ip").args(["netns", "add", &laptop]).status().unwrap();
    Command::new("ip").args(["-n", &laptop, "link", "set", "lo", "up"]).status().unwrap();
    let b = Bench { dir: dir.clone(), laptop: laptop.clone(), tether, probe, pod_pid: pod.pid };
    let local4k = dir.join("4k.bin");
    std::fs::write(&local4k, vec![b'x'; 4096]).unwrap();
    let local4k = local4k.to_str().unwrap();

    // Warm the daemon and the agent.
    b.under_tether(&["stat", "/app/4k.bin", "10"]);

    let mut table = common::Table::new("figure (medians)", 44);
    // 1. Trapped-call overhead on a local file.
    let t = field(&b.under_tether(&["open", local4k, "20000"]), "median_us");
    let base = field(&b.bare(&["open", local4k, "20000"], None), "median_us");
    table.goal(
        "open+close of a local file (us/call)",
        format!("{t:.2}"),
        format!("{base:.2}"),
        format!("+{:.2} us", t - base),
        "< +15 us",
        t - base < 15.0,
    );

    // 2. A remote 4 KiB file: open+read+close vs one round trip (a remote stat).
    let t = field(&b.under_tether(&["read", "/app/4k.bin", "2000"]), "median_us");
    let rt = field(&b.under_tether(&["stat", "/app/4k.bin", "2000"]), "median_us");
    let local = field(&b.bare(&["read", local4k, "2000"], None), "median_us");
    // One `ReadFile` call (a streaming call: a little more than the unary stat) and a memfd:
    // two round trips' worth would mean a second call.
    table.goal(
        "remote 4 KiB open+read+close (us)",
        format!("{t:.1}"),
        format!("{rt:.1} (1 RTT)"),
        format!("{:.2} RTTs", t / rt),
        "one call (< 2 RTTs)",
        t / rt < 2.0,
    );
    table.info("  same file read locally, bare (us)", format!("{local:.2}"), String::new(), String::new());

    // 3. Outgoing TCP: 1-byte request/response and bulk throughput, vs direct from the pod.
    let pod_ns = pod.netns_path();
    let t = field(&b.under_tether(&["rr", "198.18.0.11:7", "5000"]), "median_us");
    let base = field(&b.bare(&["rr", "198.18.0.11:7", "5000"], Some(pod_ns.clone())), "median_us");
    table.goal(
        "TCP 1-byte request/response (us)",
        format!("{t:.1}"),
        format!("{base:.1}"),
        format!("+{:.1} us", t - base),
        "< +100 us",
        t - base < 100.0,
    );
    let mut tt = Vec::new();
    let mut bb = Vec::new();
    for _ in 0..3 {
        tt.push(field(&b.under_tether(&["bulk", "198.18.0.12:9", "300000000"]), "mib_per_s"));
        bb.push(field(&b.bare(&["bulk", "198.18.0.12:9", "300000000"], Some(pod_ns.clone())), "mib_per_s"));
    }
    let (t, base) = (median(tt), median(bb));
    table.goal(
        "TCP bulk throughput (MiB/s)",
        format!("{t:.0}"),
        format!("{base:.0}"),
        format!("{:.2}x", t / base),
        ">= 0.3x",
        t / base >= 0.3,
    );

    // 4. `tether exec -- /bin/true`, warm daemon and agent, vs spawning /bin/true.
    let mut tt = Vec::new();
    let mut bb = Vec::new();
    for _ in 0..30 {
        let s = Instant::now();
        let mut cmd = b.tether();
        ok(
            cmd.args(["exec", "--target", &format!("pid:{}", pod.pid), "--", "/bin/true"]).output().unwrap(),
            "exec true",
        );
        tt.push(s.elapsed().as_secs_f64() * 1e3);
        let s = Instant::now();
        ok(Command::new("/bin/true").output().unwrap(), "true");
        bb.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let (t, base) = (median(tt), median(bb));
    table.goal(
        "tether exec -- /bin/true, warm (ms)",
        format!("{t:.1}"),
        format!("{base:.1}"),
        format!("+{:.1} ms", t - base),
        "< 50 ms",
        t < 50.0,
    );

    let _ = b.tether().args(["daemon", "stop"]).output();
    drop(pod);
    let _ = Command::new("ip").args(["netns", "del", &laptop]).status();
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(table.finish());
}

//! `cargo bench -p tether --bench kube`: Kubernetes targets behind the fake API server, each
//! figure beside its baseline from the same run (medians).
//!
//! 1. `tether exec --target deployment/NAME -- /bin/true` with a warm daemon and a new agent:
//!    the daemon's own share of start-up is the wall time minus the time spent waiting for the
//!    agent itself (its container to run and its port to answer, as the daemon logs it: `kube
//!    agent ready: … agent wait`). Baseline: the same exec once the agent runs (no agent start).
//! 2. `tether ls` over 1,000 pods (and 50 deployments, 20 statefulsets). Baseline: the same three
//!    list calls made one after another by curl (the bare cost of the API's answers).
//! 3. A remote `stat` and a remote 4 KiB open+read+close through the port-forward (medians and
//!    99th percentiles of 500 calls, `core.c`). Baseline: the same calls on the same pod through
//!    a local agent (`pid:N`): what the cluster transport adds per round trip.
//!
//! Needs root (network namespaces) and release binaries: `cargo build --workspace --release`.
//! The fake runs in this process (its own runtime); everything else in a "laptop" namespace.

mod common;

use common::{median, ok};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tether_testkit::PodSpec;
use tether_testkit::kube::{FakeCluster, FakeOptions, FakePod};

/// `agent wait 12.3ms` of the daemon's `kube agent ready` line for `pod`.
fn agent_wait(log: &str, pod: &str) -> Option<f64> {
    let line = log.lines().rev().find(|l| l.contains("kube agent ready") && l.contains(pod))?;
    let rest = line.split("agent wait ").nth(1)?;
    rest.split("ms").next()?.parse().ok()
}

fn main() {
    common::require_root("kube");
    let tether = common::release_tether();
    let agent = tether.with_file_name("tether-agent");
    let dir = std::env::temp_dir().join(format!("tether-bench-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let laptop = format!("tether-bench-kube-{}", std::process::id());
    Command::new("ip").args(["netns", "add", &laptop]).status().unwrap();
    Command::new("ip").args(["-n", &laptop, "link", "set", "lo", "up"]).status().unwrap();
    let laptop_ns = PathBuf::from(format!("/var/run/netns/{laptop}"));

    let fake = FakeCluster::start(FakeOptions {
        agent_bin: agent,
        netns: Some(laptop_ns.clone()),
        namespace: "default".into(),
    })
    .expect("the fake API server");
    const RUNS: usize = 7;
    for i in 0..=RUNS {
        let name = format!("web{i}");
        fake.add_deployment("default", &name, &[("app", &name)], &["app", "istio-proxy"], 1);
        let spec = PodSpec::new(&name).env("POD_ONLY", "1").file("/app/4k.bin", vec![b'x'; 4096]);
        fake.add_pod(
            FakePod::new(&format!("{name}-5d8f9-x7k2p"))
                .label("app", &name)
                .containers(&["app", "istio-proxy"])
                .local(spec),
        )
        .expect("a pod");
    }
    for i in 0..50 {
        let name = format!("svc{i:02}");
        fake.add_deployment("big", &name, &[("app", &name)], &["app", "istio-proxy"], 20);
    }
    for i in 0..20 {
        let name = format!("db{i:02}");
        fake.add_statefulset("big", &name, &[("app", &name)], &["postgres"], 1);
    }
    for i in 0..1000 {
        let app = format!("svc{:02}", i % 50);
        fake.add_pod(
            FakePod::new(&format!("{app}-7c9d8f6b5-{i:05}"))
                .namespace("big")
                .label("app", &app)
                .containers(&["app", "istio-proxy"]),
        )
        .expect("a pod");
    }

    let tether_cmd = || {
        let mut cmd = common::private_tether(&tether, &dir, &laptop_ns);
        cmd.env("KUBECONFIG", &fake.kubeconfig);
        cmd
    };
    let exec = |target: &str| -> f64 {
        let s = Instant::now();
        ok(
            tether_cmd().args(["exec", "--target", target, "--", "/bin/true"]).output().unwrap(),
            &format!("exec {target}"),
        );
        s.elapsed().as_secs_f64() * 1e3
    };
    let log_path = dir.join("state/tether/daemon.log");

    // Warm the daemon and its kube client (web0), so that each run starts only an agent.
    exec("deployment/web0");

    let mut table = common::Table::new("figure (medians, ms)", 52);
    let (mut share, mut waits, mut walls, mut warm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=RUNS {
        let target = format!("deployment/web{i}");
        let wall = exec(&target);
        let pod = format!("web{i}-5d8f9-x7k2p");
        let deadline = Instant::now() + Duration::from_secs(5);
        let wait = loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(w) = agent_wait(&log, &pod) {
                break w;
            }
            assert!(Instant::now() < deadline, "no `kube agent ready` line for {pod} in {}", log_path.display());
            std::thread::sleep(Duration::from_millis(20));
        };
        walls.push(wall);
        waits.push(wait);
        share.push(wall - wait);
        warm.push(exec(&target));
    }
    let (share, wait, wall, warm) = (median(share), median(waits), median(walls), median(warm));
    table.info(
        "exec deployment/NAME -- /bin/true, new agent: wall",
        format!("{wall:.1}"),
        String::new(),
        String::new(),
    );
    table.info(
        "  of which waiting for the agent (container, port)",
        format!("{wait:.1}"),
        String::new(),
        String::new(),
    );
    table.goal(
        "  daemon's own share (wall - agent wait)",
        format!("{share:.1}"),
        format!("{warm:.1}"),
        format!("+{:.1} ms", share - warm),
        "< 100 ms",
        share < 100.0,
    );
    println!("  (baseline: the same exec with the agent already running)");

    // 2. `tether ls` over 1,000 pods vs the three list calls by curl.
    let base_url = format!("http://{}", fake.addr);
    let curl = |path: &str| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "/dev/null", &format!("{base_url}{path}")]);
        tether_testkit::command_in_netns(&mut cmd, &laptop_ns).expect("entering a network namespace");
        ok(cmd.output().unwrap(), "curl");
    };
    let (mut tt, mut bb) = (Vec::new(), Vec::new());
    let mut lines = 0;
    for _ in 0..9 {
        let s = Instant::now();
        let out = ok(tether_cmd().args(["ls", "--namespace", "big"]).output().unwrap(), "tether ls");
        tt.push(s.elapsed().as_secs_f64() * 1e3);
        lines = out.lines().count();
        let s = Instant::now();
        for p in [
            "/apis/apps/v1/namespaces/big/deployments",
            "/apis/apps/v1/namespaces/big/statefulsets",
            "/api/v1/namespaces/big/pods",
        ] {
            curl(p);
        }
        bb.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let (t, base) = (median(tt), median(bb));
    table.goal(
        &format!("tether ls, 1,000 pods ({} lines)", lines),
        format!("{t:.1}"),
        format!("{base:.1}"),
        format!("{:.2}x", t / base),
        "< 300 ms",
        t < 300.0,
    );
    println!("  (baseline: the same three list calls by curl, one after another)");

    // 3. Round trips through the port-forward vs through a local agent, on the same pod.
    let probe = common::build_c("core", &[]);
    let pod_pid = fake.with_local_pod("default", "web1-5d8f9-x7k2p", |p| p.pid).expect("the local pod");
    let calls = |target: &str, mode: &str| -> (f64, f64) {
        let out = ok(
            tether_cmd()
                .args(["exec", "--target", target, "--"])
                .arg(&probe)
                .args([mode, "/app/4k.bin", "500"])
                .output()
                .unwrap(),
            &format!("{mode} through {target}"),
        );
        let field = |name: &str| {
            out.split_whitespace().skip_while(|w| *w != name).nth(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
        };
        (field("median_us"), field("p99_us"))
    };
    for (mode, what) in [("stat", "remote stat"), ("read", "remote 4 KiB open+read+close")] {
        let (mut km, mut kp, mut lm, mut lp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            let (m, p) = calls("deployment/web1", mode);
            km.push(m);
            kp.push(p);
            let (m, p) = calls(&format!("pid:{pod_pid}"), mode);
            lm.push(m);
            lp.push(p);
        }
        let (km, kp, lm, lp) = (median(km) / 1e3, median(kp) / 1e3, median(lm) / 1e3, median(lp) / 1e3);
        table.info(
            &format!("{what}, port-forward: median"),
            format!("{km:.2}"),
            format!("{lm:.2}"),
            format!("+{:.2} ms", km - lm),
        );
        table.goal(
            &format!("{what}, port-forward: p99"),
            format!("{kp:.2}"),
            format!("{lp:.2}"),
            format!("+{:.2} ms", kp - lp),
            "no stalls (< 10 ms)",
            kp < 10.0,
        );
    }
    println!("  (baseline: the same calls on the same pod through a local agent, pid:N)");

    let _ = tether_cmd().args(["daemon", "stop"]).output();
    drop(fake);
    let _ = Command::new("ip").args(["netns", "del", &laptop]).status();
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(table.finish());
}

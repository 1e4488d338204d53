//! A real single-node Kubernetes cluster for the tests: `cluster/up` of this repository.
//!
//! [`RealCluster::start`] runs `cluster/up` once per test process (later calls get the same
//! cluster, and `cluster/up` itself reuses a cluster that is already up), and hands back its
//! kubeconfig and the cluster's own `kubectl`. The cluster stays up when the process ends, so
//! the next test binary reuses it; `cluster/down` stops it. Starting may build the cluster's
//! binaries first (tens of minutes cold, see `cluster/README.md`).
//!
//! Invariant: a cluster that cannot start is an error naming why (the end of `cluster/up`'s
//! output), never a skipped test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running cluster started (or found) by `cluster/up`.
#[derive(Debug)]
pub struct RealCluster {
    /// The admin kubeconfig (`system:masters`), the last line `cluster/up` printed.
    pub kubeconfig: PathBuf,
    /// The cluster's own `kubectl` (same version as its API server).
    pub kubectl: PathBuf,
    /// The cluster's state directory (`$TETHER_CLUSTER_STATE`, logs under `logs/`).
    pub state: PathBuf,
}

/// The repository's `cluster/` folder.
pub fn cluster_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit lives in the workspace").join("cluster")
}

static CLUSTER: OnceLock<Result<RealCluster, String>> = OnceLock::new();

impl RealCluster {
    /// The cluster of this test process: started by the first call, shared by all later ones.
    ///
    /// `tether_bin` is the `tether` binary whose agent image `cluster/up` loads (`TETHER_BIN`).
    pub fn start(tether_bin: Option<&Path>) -> anyhow::Result<&'static RealCluster> {
        let result = CLUSTER.get_or_init(|| Self::up(tether_bin).map_err(|e| format!("{e:#}")));
        result.as_ref().map_err(|e| anyhow::anyhow!("the real cluster could not start: {e}"))
    }

    fn up(tether_bin: Option<&Path>) -> anyhow::Result<RealCluster> {
        let up = cluster_dir().join("up");
        let mut cmd = Command::new(&up);
        if let Some(bin) = tether_bin {
            cmd.env("TETHER_BIN", bin);
        }
        let started = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} (needs bash and root)", up.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The phases and their times, for the test's log.
        eprintln!("{stderr}cluster/up took {:.1}s", started.elapsed().as_secs_f64());
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{} failed ({}):\n{}", up.display(), out.status, tail.join("\n"));
        }
        let Some(last) = stdout.lines().last().map(str::trim).filter(|l| !l.is_empty()) else {
            bail!("{} printed no kubeconfig path (its last line); stdout: {stdout:?}", up.display());
        };
        let kubeconfig = PathBuf::from(last);
        if !kubeconfig.is_file() {
            bail!("{} named {} as the kubeconfig, which is not a file", up.display(), kubeconfig.display());
        }
        let state = kubeconfig.parent().context("the kubeconfig has no parent directory")?.to_path_buf();
        let kubectl = state.join("bin/kubectl");
        if !kubectl.exists() {
            bail!("the cluster's kubectl {} is missing", kubectl.display());
        }
        Ok(RealCluster { kubeconfig, kubectl, state })
    }

    /// `kubectl --kubeconfig <admin> ARGS...`, not yet run.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).stdin(Stdio::null());
        cmd
    }

    /// Runs `kubectl ARGS...` (at most `timeout`) and returns its stdout; an error carries its
    /// output.
    pub fn kubectl_ok(&self, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
        let mut cmd = self.kubectl();
        cmd.args(args);
        let out = run_with_timeout(&mut cmd, None, timeout)?;
        ok_stdout(&out, &format!("kubectl {}", args.join(" ")))
    }

    /// Runs `kubectl ARGS...` (at most `timeout`), whatever its exit status.
    pub fn kubectl_output(&self, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
        let mut cmd = self.kubectl();
        cmd.args(args);
        run_with_timeout(&mut cmd, None, timeout)
    }

    /// `kubectl apply -f -` with `yaml` on its stdin.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        let mut cmd = self.kubectl();
        cmd.args(["apply", "-f", "-"]);
        let out = run_with_timeout(&mut cmd, Some(yaml.as_bytes()), Duration::from_secs(60))?;
        ok_stdout(&out, "kubectl apply")
    }

    /// The end of a cluster component's log (`etcd`, `kube-apiserver`, `kubelet`, ...), for a
    /// failing test's message.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let log = std::fs::read_to_string(self.state.join("logs").join(format!("{component}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect::<Vec<_>>().into_iter().rev().collect();
        tail.join("\n")
    }
}

fn ok_stdout(out: &Output, what: &str) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with `input` on its stdin; kills it after `timeout` (an error then).
pub fn run_with_timeout(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> anyhow::Result<Output> {
    let program = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(data).with_context(|| format!("writing to {program}'s stdin"))?;
    }
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout).is_err() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet
            // (wait_with_output below is still waiting for it).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return true;
        }
        false
    });
    let out = child.wait_with_output().with_context(|| format!("waiting for {program}"))?;
    let _ = done_tx.send(());
    if watchdog.join().unwrap_or(false) {
        bail!("{program} did not finish within {timeout:?} and was killed");
    }
    Ok(out)
}

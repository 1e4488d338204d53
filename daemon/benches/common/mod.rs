//! What the benchmark commands share: the preconditions (root, release binaries), the C
//! measuring programs, running a command checked, medians.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Exits with a message unless this runs as root (the benchmarks build network namespaces).
pub fn require_root(bench: &str) {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the {bench} benchmark needs root (network namespaces)");
        std::process::exit(2);
    }
}

/// The release `tether` beside this benchmark (with `tether-agent` next to it).
pub fn release_tether() -> PathBuf {
    let profile_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let tether = profile_dir.join("tether");
    assert!(
        tether.exists() && profile_dir.join("tether-agent").exists(),
        "build first: cargo build --workspace --release"
    );
    tether
}

/// `tether` with its own runtime, state and data directories under `dir` (so its daemon is the
/// benchmark's own), run in `dir` and in the network namespace at `netns`.
pub fn private_tether(tether: &Path, dir: &Path, netns: &Path) -> Command {
    let mut cmd = Command::new(tether);
    cmd.env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .current_dir(dir);
    tether_testkit::command_in_netns(&mut cmd, netns).expect("entering a network namespace");
    cmd
}

/// Compiles `benches/NAME.c` with gcc (`-O2` and `flags`) into the target directory.
pub fn build_c(name: &str, flags: &[&str]) -> PathBuf {
    let out = tether_testkit::programs::target_dir().join(format!("bench-{name}"));
    let built = Command::new("gcc")
        .arg("-O2")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("benches/{name}.c")))
        .status()
        .expect("running gcc");
    assert!(built.success(), "gcc failed on benches/{name}.c");
    out
}

/// The standard output of a command that must have succeeded.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// A benchmark's printed table: each figure beside its baseline from the same run, and for a
/// figure with a goal, whether this run met it; [`Table::finish`] sums the verdicts up.
pub struct Table {
    name_width: usize,
    met: usize,
    missed: Vec<String>,
}

impl Table {
    /// Prints the header; `what` names the figures' kind ("figure (medians)", ...).
    pub fn new(what: &str, name_width: usize) -> Table {
        println!("{what:<name_width$} {:>14} {:>14} {:>16}   goal", "tether", "baseline", "result");
        Table { name_width, met: 0, missed: Vec::new() }
    }

    /// A figure without a goal of its own (a detail of the row above it).
    pub fn info(&mut self, name: &str, tether: String, baseline: String, result: String) {
        let w = self.name_width;
        println!("{name:<w$} {tether:>14} {baseline:>14} {result:>16}");
    }

    /// A figure with its goal, and whether this run met it.
    pub fn goal(&mut self, name: &str, tether: String, baseline: String, result: String, goal: &str, met: bool) {
        let w = self.name_width;
        let verdict = if met { "met" } else { "MISSED" };
        println!("{name:<w$} {tether:>14} {baseline:>14} {result:>16}   {goal}: {verdict}");
        if met {
            self.met += 1;
        } else {
            self.missed.push(name.trim().to_string());
        }
    }

    /// Prints the verdicts' sum; the benchmark's exit status is 1 when a goal was missed.
    pub fn finish(self) -> i32 {
        if self.missed.is_empty() {
            println!("goals: all {} met", self.met);
            0
        } else {
            println!("goals: {} met, {} missed: {}", self.met, self.missed.len(), self.missed.join("; "));
            1
        }
    }
}

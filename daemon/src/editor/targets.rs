//! `tether/listTargets`: what a target picker offers. Local processes today (those this user may
//! enter: their network namespace and root file system are readable); Kubernetes targets join
//! here when that backend exists.

use super::protocol::Target;

/// The local processes this user may target, by pid. Kernel threads and processes we may not
/// inspect are left out.
pub fn local_processes() -> Vec<Target> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    let me = std::process::id();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let dir = e.path();
        let Ok(exe) = std::fs::read_link(dir.join("exe")) else { continue };
        let Ok(raw) = std::fs::read(dir.join("cmdline")) else { continue };
        if raw.is_empty() || std::fs::File::open(dir.join("ns/net")).is_err() {
            continue;
        }
        let cmdline =
            raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        out.push(Target {
            path: format!("pid:{pid}"),
            kind: "process".into(),
            pid: Some(pid),
            executable: exe.display().to_string(),
            cmdline,
            namespace: None,
            containers: Vec::new(),
        });
    }
    out.sort_by_key(|t| t.pid);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_a_child_process_with_its_command_line() {
        let mut child = std::process::Command::new("sleep").arg("7.25").spawn().unwrap();
        let targets = super::local_processes();
        let _ = child.kill();
        let _ = child.wait();
        let t = targets.iter().find(|t| t.pid == Some(child.id())).expect("the child is listed");
        assert_eq!(t.path, format!("pid:{}", child.id()));
        assert_eq!(t.cmdline, vec!["sleep", "7.25"]);
        assert!(t.executable.ends_with("sleep"), "{}", t.executable);
        assert!(targets.iter().all(|t| t.pid != Some(std::process::id())));
    }
}

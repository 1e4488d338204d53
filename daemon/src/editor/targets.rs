//! `tether/listTargets`: what a target picker offers: the local processes this user may enter
//! (their network namespace and root file system are readable), then the Kubernetes workloads
//! and pods of a namespace when a kubeconfig is usable. A cluster that cannot be reached in time
//! leaves the local list intact and is reported as a warning, never as a failed picker.

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
            sidecars: Vec::new(),
            status: String::new(),
        });
    }
    out.sort_by_key(|t| t.pid);
    out
}

/// The Kubernetes targets of `namespace` (else the context's), within `limit`.
pub async fn kube_targets(
    source: &crate::kube::Source,
    namespace: Option<&str>,
    limit: std::time::Duration,
) -> anyhow::Result<Vec<Target>> {
    let listed = tokio::time::timeout(limit, async {
        let cluster = crate::kube::cluster(source).await?;
        let ns = namespace.map(str::to_string).unwrap_or_else(|| cluster.namespace.clone());
        crate::kube::list::list_targets(&cluster, Some(&ns)).await
    })
    .await
    .map_err(|_| anyhow::anyhow!("the cluster did not answer within {limit:?}"))??;
    Ok(listed
        .into_iter()
        .map(|l| Target {
            path: l.path,
            kind: l.kind.to_string(),
            pid: None,
            executable: String::new(),
            cmdline: Vec::new(),
            namespace: Some(l.namespace),
            sidecars: l.containers.iter().filter(|c| c.sidecar).map(|c| c.name.clone()).collect(),
            containers: l.containers.into_iter().map(|c| c.name).collect(),
            status: l.status,
        })
        .collect())
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

//! Finding the target process when the agent runs in the cluster.
//!
//! A local agent is told its target's pid. In Kubernetes the daemon cannot know it: the agent
//! runs either as an ephemeral container that shares the target container's pid namespace
//! (`targetContainerName`), or as a node Job with `hostPID`. What the daemon does know is the
//! target container's id, from the pod's status (`containerStatuses[].containerID`, e.g.
//! `containerd://4f1c…`). Every process of that container carries the id in its cgroup path
//! (`/proc/PID/cgroup`): with cgroup v1, with cgroup v2, and also across a private cgroup
//! namespace, where the path is relative (`/../../kubepods/…/cri-containerd-4f1c….scope`).
//!
//! `--target-container-id ID` picks, among the processes whose cgroup names ID, the one whose
//! parent is not in the container: the container's main process (pid 1 in the container's own
//! pid namespace; in the host's, the child of the runtime's shim). When several qualify (it
//! should not happen), the lowest pid wins. The container may still be starting, so the search
//! is retried for a short while.

use std::path::Path;
use std::time::{Duration, Instant};

/// How the agent finds its target when it is not given a pid.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct FindArgs {
    /// Find the target as the main process of the container with this id (the pod status's
    /// `containerID`, with or without its `containerd://` prefix). For agents in the cluster.
    #[arg(long, value_name = "ID", conflicts_with = "target_pid")]
    pub target_container_id: Option<String>,
}

/// How long the container's processes may take to appear.
const SEARCH_FOR: Duration = Duration::from_secs(5);

/// The target pid: the one given, or the one found for `--target-container-id`.
pub fn resolve(pid: Option<i32>, find: &FindArgs) -> Result<i32, String> {
    match (pid, &find.target_container_id) {
        (Some(pid), None) => Ok(pid),
        (None, Some(id)) => {
            let id = strip_runtime(id);
            if id.len() < 12 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(format!("--target-container-id {id:?} is not a container id"));
            }
            let deadline = Instant::now() + SEARCH_FOR;
            loop {
                match find_in(Path::new("/proc"), id, std::process::id() as i32) {
                    Ok(pid) => return Ok(pid),
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        (Some(_), Some(_)) => Err("give either --target-pid or --target-container-id, not both".into()),
        (None, None) => Err("give --target-pid PID or --target-container-id ID".into()),
    }
}

/// `containerd://abc` -> `abc`.
pub fn strip_runtime(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

/// Searches `proc_root` (normally `/proc`) for the main process of container `id`; `me` is
/// never chosen.
pub fn find_in(proc_root: &Path, id: &str, me: i32) -> Result<i32, String> {
    let entries = std::fs::read_dir(proc_root).map_err(|e| format!("cannot list {}: {e}", proc_root.display()))?;
    // (pid, parent pid) of every process in the container.
    let mut members: Vec<(i32, i32)> = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let dir = e.path();
        let Ok(cgroup) = std::fs::read_to_string(dir.join("cgroup")) else { continue };
        if !cgroup.lines().any(|l| l.rsplit_once(':').is_some_and(|(_, path)| path.contains(id))) {
            continue;
        }
        let ppid = std::fs::read_to_string(dir.join("stat")).ok().and_then(|s| parent_of(&s)).unwrap_or(0);
        members.push((pid, ppid));
    }
    if members.is_empty() {
        return Err(format!(
            "no process of container {id} is visible; the agent must share the target's pid \
             namespace (an ephemeral container with targetContainerName, or a Job with hostPID)"
        ));
    }
    let pids: Vec<i32> = members.iter().map(|m| m.0).collect();
    members
        .iter()
        .filter(|(_, ppid)| !pids.contains(ppid))
        .map(|m| m.0)
        .min()
        .or_else(|| pids.iter().copied().min())
        .ok_or_else(|| format!("container {id} has no main process"))
}

/// The parent pid from `/proc/PID/stat` ("pid (comm) S ppid ...": fields follow the last ')').
fn parent_of(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc: (pid, ppid, cgroup file).
    fn fake_proc(procs: &[(i32, i32, &str)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-find-{}-{}", std::process::id(), procs.len()));
        let _ = std::fs::remove_dir_all(&dir);
        for (pid, ppid, cgroup) in procs {
            let p = dir.join(pid.to_string());
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("cgroup"), cgroup).unwrap();
            std::fs::write(p.join("stat"), format!("{pid} (a b) S {ppid} 1 1 0")).unwrap();
        }
        std::fs::create_dir_all(dir.join("self")).unwrap();
        dir
    }

    const ID: &str = "4f1c2a9be0d8";

    #[test]
    fn finds_the_main_process_of_the_container() {
        let v2 = format!("0::/../../kubepods/burstable/pod1/cri-containerd-{ID}77.scope\n");
        let v1 = format!("4:memory:/kubepods/pod1/{ID}77\n1:cpu:/kubepods/pod1/{ID}77\n");
        let dir = fake_proc(&[
            (1, 0, "0::/init.scope\n"),
            (700, 1, "0::/system.slice/containerd.service\n"), // the shim
            (812, 700, &v2),                                   // the container's main process
            (813, 812, &v2),                                   // its child
            (905, 700, &v1),                                   // same id, v1 layout, but ppid 700 too
            (990, 1, "0::/../../kubepods/burstable/pod1/cri-containerd-ffff0000aaaa.scope\n"),
        ]);
        assert_eq!(find_in(&dir, ID, 42).unwrap(), 812);
        // The agent itself is never its own target.
        assert_eq!(find_in(&dir, ID, 812).unwrap(), 813);
        let e = find_in(&dir, "0123456789ab", 42).unwrap_err();
        assert!(e.contains("no process of container 0123456789ab"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn in_the_containers_own_pid_namespace_pid_1_is_the_target() {
        let cg = format!("0::/../cri-containerd-{ID}.scope\n");
        let dir = fake_proc(&[(1, 0, &cg), (7, 1, &cg)]);
        assert_eq!(find_in(&dir, ID, 99).unwrap(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn arguments_are_checked() {
        assert_eq!(resolve(Some(5), &FindArgs::default()).unwrap(), 5);
        assert!(resolve(None, &FindArgs::default()).unwrap_err().contains("--target-pid"));
        let bad = FindArgs { target_container_id: Some("../x".into()) };
        assert!(resolve(None, &bad).unwrap_err().contains("not a container id"));
        assert_eq!(strip_runtime("containerd://abc"), "abc");
        assert_eq!(strip_runtime("abc"), "abc");
    }
}

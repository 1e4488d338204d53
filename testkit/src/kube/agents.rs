//! Agent containers of the fake: real `tether-agent` processes in a pod's network namespace.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// `PATH` of the agent's image (`tether agent-image build`): the agent is its only file.
const IMAGE_PATH: &str = "/";

use serde_json::{Value, json};

use super::{AgentRecord, Kind, Shared, now_rfc3339};

/// Where an agent's status goes.
#[derive(Clone, Debug)]
pub(crate) enum Slot {
    /// `status.ephemeralContainerStatuses[name]` of the pod.
    Ephemeral { ns: String, pod: String },
    /// `status.containerStatuses[name]` of the pod, and the pod's phase (and its Job's status).
    Main { ns: String, pod: String, job: Option<String> },
}

impl Slot {
    fn pod(&self) -> (&str, &str) {
        match self {
            Slot::Ephemeral { ns, pod } | Slot::Main { ns, pod, .. } => (ns, pod),
        }
    }
}

/// Moves `pid` into a cgroup named after container `id`, so that the agent's
/// `--target-container-id` discovery finds it. Answers the cgroup directory.
fn place_in_cgroup(id: &str, pid: u32) -> Option<PathBuf> {
    let dir = Path::new("/sys/fs/cgroup/pids/tether-fake").join(id);
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).ok()?;
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cg.contains(id).then_some(dir)
}

/// Updates the agent container's status in its pod (and the Job of a Job's pod).
pub(crate) fn set_status(shared: &Arc<Shared>, slot: &Slot, container: &str, state: Value, ready: bool) {
    let tx = shared.changed.clone();
    let mut st = shared.lock();
    let (ns, pod) = slot.pod();
    let Some(mut obj) = st.get(Kind::Pod, ns, pod).cloned() else { return };
    let field = match slot {
        Slot::Ephemeral { .. } => "ephemeralContainerStatuses",
        Slot::Main { .. } => "containerStatuses",
    };
    let image = obj["spec"][if matches!(slot, Slot::Ephemeral { .. }) { "ephemeralContainers" } else { "containers" }]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .map(|c| c["image"].clone())
        .unwrap_or(json!(""));
    let entry =
        json!({"name": container, "image": image, "imageID": "", "ready": ready, "restartCount": 0, "state": state});
    let list = obj["status"][field].as_array().cloned().unwrap_or_default();
    let mut list: Vec<Value> = list.into_iter().filter(|c| c["name"] != container).collect();
    list.push(entry);
    obj["status"][field] = json!(list);
    let mut job_update = None;
    if let Slot::Main { job, .. } = slot {
        let (phase, ready_s) = if state.get("running").is_some() {
            ("Running", "True")
        } else if let Some(t) = state.get("terminated") {
            (if t["exitCode"] == 0 { "Succeeded" } else { "Failed" }, "False")
        } else {
            ("Pending", "False")
        };
        obj["status"]["phase"] = json!(phase);
        obj["status"]["conditions"] = json!([{"type": "Ready", "status": ready_s}]);
        if let Some(j) = job {
            job_update = Some((j.clone(), phase));
        }
    }
    st.put(Kind::Pod, obj, &tx);
    if let Some((job, phase)) = job_update {
        if let Some(mut j) = st.get(Kind::Job, ns, &job).cloned() {
            let status = match phase {
                "Running" => json!({"active": 1, "startTime": now_rfc3339()}),
                "Succeeded" => {
                    json!({"succeeded": 1, "completionTime": now_rfc3339(), "conditions": [{"type": "Complete", "status": "True"}]})
                }
                "Failed" => json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}),
                _ => json!({}),
            };
            j["status"] = status;
            let ttl = j["spec"]["ttlSecondsAfterFinished"].as_u64();
            st.put(Kind::Job, j, &tx);
            if let (Some(ttl), "Succeeded" | "Failed") = (ttl, phase) {
                expire_later(shared, ns.to_string(), job, ttl);
            }
        }
    }
}

/// `ttlSecondsAfterFinished`: the Job and its pods go `ttl` seconds after it finished.
fn expire_later(shared: &Arc<Shared>, ns: String, job: String, ttl: u64) {
    let shared = shared.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(ttl));
        super::server::delete_job(&shared, &ns, &job);
    });
}

/// Starts the agent of `container` (a container spec) for pod `slot`. `target_pid` and `netns`
/// come from the pod's backing.
pub(crate) fn spawn(shared: &Arc<Shared>, slot: Slot, container: &Value, netns: &Path, target_pid: u32) {
    let name = container["name"].as_str().unwrap_or("agent").to_string();
    let image = container["image"].as_str().unwrap_or("");
    if image.contains("does-not-exist") {
        set_status(
            shared,
            &slot,
            &name,
            json!({"waiting": {"reason": "ErrImagePull", "message": format!("pull access denied for {image}")}}),
            false,
        );
        return;
    }
    let command: Vec<String> =
        container["command"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
    let mut args: Vec<String> =
        container["args"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
    // The agent image's entrypoint is the agent; a `command` must name it.
    if !command.is_empty() && !matches!(command[0].as_str(), "tether-agent" | "/tether-agent") {
        set_status(
            shared,
            &slot,
            &name,
            json!({"terminated": {"exitCode": 127, "reason": "Error", "message": "the fake runs only tether-agent"}}),
            false,
        );
        return;
    }
    args.splice(0..0, command.iter().skip(1).cloned());
    // Target discovery: a cgroup named after the container id, else the pid itself.
    if let Some(i) = args.iter().position(|a| a == "--target-container-id") {
        let id = args.get(i + 1).cloned().unwrap_or_default();
        let bare = id.split_once("://").map_or(id.as_str(), |(_, r)| r).to_string();
        match place_in_cgroup(&bare, target_pid) {
            Some(dir) => shared.lock().cgroups.push(dir),
            None => {
                args.splice(i..i + 2, ["--target-pid".to_string(), target_pid.to_string()]);
            }
        }
    } else if let Some(i) = args.iter().position(|a| a == "--target-pid") {
        // A targetless agent is pid 1 of its own container: here, the backing pod's process.
        if args.get(i + 1).map(String::as_str) == Some("1") {
            args[i + 1] = target_pid.to_string();
        }
    }
    let crash = image.contains("crashes-at-start");
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str().unwrap_or("").to_string())))
        // A crashing image: the real agent, started without its token, exits at once.
        .filter(|(name, _)| !crash || name != "TETHER_AGENT_TOKEN")
        .collect();
    let ns_fd = match crate::netns::open_ns(netns) {
        Ok(fd) => fd,
        Err(e) => {
            set_status(
                shared,
                &slot,
                &name,
                json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": e.to_string()}}),
                false,
            );
            return;
        }
    };
    let mut cmd = Command::new(&shared.agent_bin);
    // A container runtime starts the process with the image's PATH (the Dockerfile's default).
    cmd.args(&args)
        .env_clear()
        .env("PATH", IMAGE_PATH)
        .envs(env)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let raw = ns_fd.as_raw_fd();
    // SAFETY: setns is async-signal-safe; `ns_fd` outlives the spawn.
    unsafe { cmd.pre_exec(move || crate::netns::setns_net(raw)) };
    set_status(shared, &slot, &name, json!({"waiting": {"reason": "ContainerCreating"}}), false);
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            set_status(
                shared,
                &slot,
                &name,
                json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": e.to_string()}}),
                false,
            );
            return;
        }
    };
    drop(ns_fd);
    let pid = child.id();
    let (ns, pod) = slot.pod();
    let record_name = format!("{ns}/{pod}/{name}");
    shared.lock().agents.push(AgentRecord {
        name: record_name.clone(),
        args: args.clone(),
        started,
        ready_after: None,
        exit: None,
        pid,
    });
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tail = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::<String>::new()));
    let err_thread = std::thread::spawn({
        let tail = tail.clone();
        move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = tail.lock().unwrap();
                if t.len() == 5 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    });
    let shared = shared.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) > 0 {
            let after = started.elapsed();
            if let Some(a) = shared.lock().agents.iter_mut().find(|a| a.pid == pid) {
                a.ready_after = Some(after);
            }
            set_status(&shared, &slot, &name, json!({"running": {"startedAt": now_rfc3339()}}), true);
        }
        // Keep draining stdout so the agent never blocks on it.
        let mut sink = String::new();
        while reader.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
        let status = child.wait();
        let _ = err_thread.join();
        let code = status.ok().and_then(|s| s.code()).unwrap_or(137);
        if let Some(a) = shared.lock().agents.iter_mut().find(|a| a.pid == pid) {
            a.exit = Some(code);
        }
        let message: Vec<String> = tail.lock().unwrap().iter().cloned().collect();
        let reason = if code == 0 { "Completed" } else { "Error" };
        set_status(
            &shared,
            &slot,
            &name,
            json!({"terminated": {"exitCode": code, "reason": reason, "message": message.join("\n"), "finishedAt": now_rfc3339()}}),
            false,
        );
    });
}

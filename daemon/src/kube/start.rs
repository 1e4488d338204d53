//! Starting an agent in the cluster, waiting for it, reaching it, and cleaning up.
//!
//! The steps, each bounded by `agent.startup_timeout` as a whole:
//! 1. resolve the target (pod and container) unless targetless;
//! 2. check the permissions of the mode (SelfSubjectAccessReview), and report a service mesh;
//! 3. create the agent: an ephemeral container, a Job or a pod ([`super::spec`]);
//! 4. watch its pod until the agent's container runs (an image that cannot be pulled, or an
//!    agent that exits, ends the wait at once with its message and the doctor's advice);
//! 5. reach it through [`Forward`] and prove the token (retried while the agent opens its port).
//!
//! Steps 4 and the retries of 5 are the agent's own start-up; the rest is the daemon's share,
//! logged per step (`kube agent ready`) so that the benchmark can tell them apart.
//!
//! [`KubeAgent`] holds the connection. The daemon keeps it for `agent.idle_timeout` after its last
//! session ended (so that a restart is instant), then drops it: the port-forward closes, the
//! agent sees no client and exits after its own short idle timeout, a Job or targetless pod is
//! deleted (and a Job that outlives the daemon expires through `ttlSecondsAfterFinished`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use tether_config::Config;
use tether_config::target::TargetPath;
use tether_doctor::Diagnostic;
use tokio::sync::mpsc::UnboundedSender;

use super::forward::Forward;
use super::rbac::{self, Mode};
use super::resolve::{self, diagnostic_error};
use super::spec::{AgentSpec, Find};
use super::{AGENT_PREFIX, Cluster, describe};
use crate::agent::Agent;

/// What to delete when the agent is no longer wanted.
#[derive(Clone, Debug)]
enum Owned {
    /// Ephemeral containers cannot be removed; the agent exits by itself.
    Nothing,
    Job {
        namespace: String,
        name: String,
    },
    Pod {
        namespace: String,
        name: String,
    },
}

/// How long each step took, for the log and the benchmark.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub steps: Vec<(&'static str, Duration)>,
    /// Waiting for the agent itself: its container to run, its port to open.
    pub agent_wait: Duration,
    pub total: Duration,
}

impl Timings {
    pub fn daemon_share(&self) -> Duration {
        self.total.saturating_sub(self.agent_wait)
    }
}

/// An agent in the cluster, reached and authenticated.
#[allow(dead_code)] // `timings` and `location` are for the log and for callers that show them
pub struct KubeAgent {
    pub agent: Arc<Agent>,
    forward: Forward,
    owned: Owned,
    cluster: Cluster,
    /// Findings while it started (a service mesh, leftover agents), for the session.
    pub diagnostics: Vec<Diagnostic>,
    pub timings: Timings,
    /// Where the agent runs: `namespace/pod` (and the container for ephemeral agents).
    pub location: String,
    last_used: Mutex<Instant>,
    warm: Duration,
}

impl KubeAgent {
    pub fn is_alive(&self) -> bool {
        self.forward.healthy()
    }

    /// Whether to keep the agent: `in_use` while a session holds it; then for the warm time.
    pub fn keep(&self, in_use: bool) -> bool {
        let mut last = self.last_used.lock().unwrap();
        if in_use {
            *last = Instant::now();
        }
        self.is_alive() && (in_use || last.elapsed() < self.warm)
    }
}

impl Drop for KubeAgent {
    fn drop(&mut self) {
        let owned = self.owned.clone();
        let client = self.cluster.client.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        rt.spawn(async move {
            let dp = DeleteParams::background();
            let result = match &owned {
                Owned::Nothing => return,
                Owned::Job { namespace, name } => {
                    Api::<Job>::namespaced(client, namespace).delete(name, &dp).await.map(|_| ())
                }
                Owned::Pod { namespace, name } => {
                    Api::<Pod>::namespaced(client, namespace).delete(name, &dp).await.map(|_| ())
                }
            };
            if let Err(e) = result {
                tracing::warn!(?owned, "deleting the agent: {}", describe(&e));
            }
        });
    }
}

fn say(progress: Option<&UnboundedSender<String>>, line: String) {
    tracing::info!("{line}");
    if let Some(p) = progress {
        let _ = p.send(line);
    }
}

/// A port for the agent when `agent.port` is not set: random in 30000-59999, so that two
/// agents in one pod (two sessions of different users) rarely meet.
fn random_port() -> u16 {
    let hex = crate::session::random_hex(2);
    30000 + (u16::from_str_radix(&hex, 16).unwrap_or(0) % 30000)
}

/// Starts an agent for `path` (a Kubernetes target or `targetless`) in `namespace` (else the
/// config's, else the context's) of the cluster `source` names.
pub async fn start(
    path: &TargetPath,
    namespace: Option<&str>,
    source: &super::Source,
    config: &Config,
    progress: Option<&UnboundedSender<String>>,
) -> anyhow::Result<KubeAgent> {
    let began = Instant::now();
    let deadline = began + Duration::from_secs(config.agent.startup_timeout.max(1));
    let mut timings = Timings::default();
    let mut step = Instant::now();
    let mut lap = |timings: &mut Timings, name: &'static str| {
        timings.steps.push((name, step.elapsed()));
        step = Instant::now();
    };
    let cluster = super::cluster(source).await?;
    let ns = namespace
        .map(str::to_string)
        .or_else(|| config.target.namespace.clone())
        .unwrap_or_else(|| cluster.namespace.clone());
    let agent_ns = config.agent.namespace.clone().unwrap_or_else(|| ns.clone());
    lap(&mut timings, "config");

    let (mode, resolved) = match path {
        TargetPath::Targetless => (Mode::Targetless, None),
        TargetPath::Kube { kind, name, container } => {
            let container = container.as_deref().or(config.target.container.as_deref());
            let r = resolve::resolve(&cluster, &ns, *kind, name, container).await?;
            (if config.agent.ephemeral { Mode::Ephemeral } else { Mode::Job }, Some(r))
        }
        TargetPath::Pid(_) => bail!("pid targets are local, not Kubernetes targets"),
    };
    lap(&mut timings, "resolve");

    let mut diagnostics = Vec::new();
    let needed = rbac::needed(mode, &ns, &agent_ns);
    if let Some(missing) = rbac::missing(&cluster, &needed).await {
        if let Some(d) = tether_doctor::cluster::rbac_missing(mode.words(), &missing) {
            return Err(diagnostic_error(&d));
        }
    }
    let mesh = resolved.as_ref().and_then(|r| {
        let names = resolve::container_names(&r.pod);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let annotations = r.pod.metadata.annotations.iter().flatten().map(|(k, _)| k.as_str());
        tether_doctor::cluster::detect_mesh(&refs, annotations)
    });
    if let (Some(m), Some(r)) = (mesh, &resolved) {
        let d = tether_doctor::cluster::service_mesh(&r.pod_name, m, config.agent.port);
        say(progress, format!("{} ({})", d.message, d.fix.as_ref().map(|f| f.description.as_str()).unwrap_or("")));
        diagnostics.push(d);
    }
    lap(&mut timings, "rbac");

    let name = format!("{AGENT_PREFIX}{}", crate::session::random_hex(4));
    let port = config.agent.port.unwrap_or_else(random_port);
    let token = crate::session::random_hex(16);
    let find = match &resolved {
        Some(r) => Find::ContainerId(r.container_id.clone()),
        None => Find::Itself,
    };
    let spec = AgentSpec::new(name.clone(), config, port, token.clone(), find, path.to_string());
    let (pod_ns, owned, watch) = create(&cluster, mode, &spec, resolved.as_ref(), &agent_ns, config).await?;
    say(progress, format!("starting the agent ({}) for {path}", mode.words()));
    lap(&mut timings, "create");

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &pod_ns);
    let wait_began = Instant::now();
    let pod_name = match wait_running(&pods, &watch, &name, deadline).await {
        Ok(p) => p,
        Err(e) => {
            let advice =
                advice(&cluster, resolved.as_ref().and_then(|r| r.node.as_deref()), &e.to_string(), config).await;
            cleanup_now(&cluster, &owned).await;
            return Err(e.context(advice.unwrap_or_default()));
        }
    };
    timings.agent_wait += wait_began.elapsed();
    step = Instant::now();

    let forward =
        Forward::start(pods.clone(), pod_name.clone(), port).await.context("listening for the port-forward")?;
    let mut last_err = None;
    let mut agent = None;
    while Instant::now() < deadline {
        let tried = Instant::now();
        let left = deadline.saturating_duration_since(tried).min(Duration::from_secs(5));
        match Agent::connect(&forward.addr.to_string(), &token, left).await {
            Ok(a) => {
                agent = Some(a);
                break;
            }
            Err(e) => {
                last_err = Some(format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                // A try that failed is the agent not listening yet: its time is the agent's.
                timings.agent_wait += tried.elapsed();
            }
        }
    }
    let Some(agent) = agent else {
        let mut message = format!(
            "the agent {name} in pod {pod_ns}/{pod_name} did not answer on port {port} within {}s (agent.startup_timeout): {}",
            config.agent.startup_timeout,
            forward.last_error().or(last_err).unwrap_or_default()
        );
        if let Some(d) = diagnostics.iter().find(|d| d.id == "cluster-service-mesh") {
            message.push_str(&format!(
                "\n  {} [{}]",
                d.fix.as_ref().map(|f| f.description.as_str()).unwrap_or(""),
                d.id
            ));
        }
        cleanup_now(&cluster, &owned).await;
        bail!(message);
    };
    forward.mark_reached();
    timings.steps.push(("connect", step.elapsed()));
    timings.total = began.elapsed();
    let location = match (&resolved, mode) {
        (Some(r), Mode::Ephemeral) => {
            format!("{pod_ns}/{pod_name} container {name} (target container {})", r.container)
        }
        _ => format!("{pod_ns}/{pod_name}"),
    };
    let steps: Vec<String> = timings.steps.iter().map(|(n, d)| format!("{n} {:.1}ms", d.as_secs_f64() * 1e3)).collect();
    tracing::info!(
        target: "kube",
        "kube agent ready: {location}; daemon share {:.1}ms, agent wait {:.1}ms, total {:.1}ms ({})",
        timings.daemon_share().as_secs_f64() * 1e3,
        timings.agent_wait.as_secs_f64() * 1e3,
        timings.total.as_secs_f64() * 1e3,
        steps.join(", ")
    );
    say(progress, format!("the agent for {path} is up ({location})"));
    Ok(KubeAgent {
        agent: Arc::new(agent),
        forward,
        owned,
        cluster,
        diagnostics,
        timings,
        location,
        last_used: Mutex::new(Instant::now()),
        warm: Duration::from_secs(config.agent.idle_timeout),
    })
}

/// Which pod to watch for the agent: the target pod, or the pods of our Job.
enum Watch {
    Pod(String),
    JobPods(String),
}

/// Creates the agent's object; answers the namespace of the pod it runs in, what to delete
/// later, and what to watch.
async fn create(
    cluster: &Cluster,
    mode: Mode,
    spec: &AgentSpec,
    resolved: Option<&resolve::Resolved>,
    agent_ns: &str,
    config: &Config,
) -> anyhow::Result<(String, Owned, Watch)> {
    let client = cluster.client.clone();
    match (mode, resolved) {
        (Mode::Ephemeral, Some(r)) => {
            let pods: Api<Pod> = Api::namespaced(client, &r.namespace);
            let patch = spec.ephemeral_patch(&r.container);
            pods.patch_ephemeral_containers(&r.pod_name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
                .map_err(|e| {
                    anyhow::anyhow!("adding the agent's ephemeral container to pod {}: {}", r.pod_name, describe(&e))
                })?;
            Ok((r.namespace.clone(), Owned::Nothing, Watch::Pod(r.pod_name.clone())))
        }
        (Mode::Job, Some(r)) => {
            let jobs: Api<Job> = Api::namespaced(client, agent_ns);
            let job: Job = serde_json::from_value(spec.job(agent_ns, r.node.as_deref(), config.agent.ttl))?;
            jobs.create(&PostParams::default(), &job)
                .await
                .map_err(|e| anyhow::anyhow!("creating the agent Job in namespace {agent_ns}: {}", describe(&e)))?;
            let owned = Owned::Job { namespace: agent_ns.to_string(), name: spec.name.clone() };
            Ok((agent_ns.to_string(), owned, Watch::JobPods(spec.name.clone())))
        }
        (Mode::Targetless, _) => {
            let pods: Api<Pod> = Api::namespaced(client, agent_ns);
            let pod: Pod = serde_json::from_value(spec.pod(agent_ns))?;
            pods.create(&PostParams::default(), &pod)
                .await
                .map_err(|e| anyhow::anyhow!("creating the agent pod in namespace {agent_ns}: {}", describe(&e)))?;
            let owned = Owned::Pod { namespace: agent_ns.to_string(), name: spec.name.clone() };
            Ok((agent_ns.to_string(), owned, Watch::Pod(spec.name.clone())))
        }
        _ => bail!("this agent mode needs a resolved target"),
    }
}

/// The agent container's state in `pod`: `Ok(true)` running, `Ok(false)` not yet, `Err` never.
fn agent_state(pod: &Pod, container: &str) -> Result<bool, String> {
    let status = pod.status.as_ref();
    let all: Vec<&ContainerStatus> = status
        .into_iter()
        .flat_map(|s| s.ephemeral_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
        .collect();
    let Some(c) = all.into_iter().find(|c| c.name == container) else {
        if status.and_then(|s| s.phase.as_deref()) == Some("Failed") {
            return Err("its pod failed".into());
        }
        return Ok(false);
    };
    let Some(state) = &c.state else { return Ok(false) };
    if state.running.is_some() {
        return Ok(true);
    }
    if let Some(t) = &state.terminated {
        let words =
            t.message.clone().or_else(|| t.reason.clone()).unwrap_or_else(|| format!("exit code {}", t.exit_code));
        return Err(format!("the agent exited: {}", words.trim()));
    }
    if let Some(w) = &state.waiting {
        let reason = w.reason.as_deref().unwrap_or("");
        if matches!(
            reason,
            "ErrImagePull"
                | "ImagePullBackOff"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError"
        ) {
            return Err(format!(
                "the agent's container cannot start: {reason}: {} (check agent.image)",
                w.message.as_deref().unwrap_or("")
            ));
        }
    }
    Ok(false)
}

/// Waits until the agent's container runs; answers the name of its pod.
async fn wait_running(pods: &Api<Pod>, watch: &Watch, container: &str, deadline: Instant) -> anyhow::Result<String> {
    let (fields, labels) = match watch {
        Watch::Pod(name) => (format!("metadata.name={name}"), String::new()),
        Watch::JobPods(job) => (String::new(), format!("job-name={job}")),
    };
    let lp = ListParams::default().fields(&fields).labels(&labels);
    let check = |pod: &Pod| -> anyhow::Result<Option<String>> {
        match agent_state(pod, container) {
            Ok(true) => Ok(pod.metadata.name.clone()),
            Ok(false) => Ok(None),
            Err(e) => bail!("{e}"),
        }
    };
    let timeout = || anyhow::anyhow!("the agent did not start within agent.startup_timeout");
    loop {
        // List, then watch from the list's version: no event is missed in between.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout());
        }
        let list = tokio::time::timeout(left, pods.list(&lp))
            .await
            .map_err(|_| timeout())?
            .map_err(|e| anyhow::anyhow!("watching the agent's pod: {}", describe(&e)))?;
        for pod in &list.items {
            if let Some(name) = check(pod)? {
                return Ok(name);
            }
        }
        let version = list.metadata.resource_version.clone().unwrap_or_else(|| "0".into());
        let secs = left.as_secs().clamp(1, 290) as u32;
        let wp = WatchParams::default().fields(&fields).labels(&labels).timeout(secs);
        let stream = match pods.watch(&wp, &version).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("watch failed ({}); polling", describe(&e));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.next()).await {
                Err(_) => return Err(timeout()),
                Ok(None) => break, // the watch ended: list again
                Ok(Some(Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod)))) => {
                    if let Some(name) = check(&pod)? {
                        return Ok(name);
                    }
                }
                Ok(Some(Ok(WatchEvent::Deleted(pod)))) => {
                    bail!("the agent's pod {} was deleted", pod.metadata.name.unwrap_or_default())
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => {
                    tracing::debug!("watch error: {}", describe(&e));
                    break;
                }
            }
        }
    }
}

/// The doctor's advice for an agent that failed: `agent.privileged` for permission errors and
/// Bottlerocket nodes.
async fn advice(cluster: &Cluster, node: Option<&str>, message: &str, config: &Config) -> Option<String> {
    let os_image = match node {
        Some(n) => Api::<Node>::all(cluster.client.clone())
            .get(n)
            .await
            .ok()
            .and_then(|n| n.status)
            .and_then(|s| s.node_info)
            .map(|i| i.os_image),
        None => None,
    };
    let d = tether_doctor::cluster::agent_privileged(message, os_image.as_deref(), config.agent.privileged)?;
    Some(format!(
        "{} [{}]",
        d.fix.as_ref().map(|f| f.description.as_str()).unwrap_or("set agent.privileged: true"),
        d.id
    ))
}

async fn cleanup_now(cluster: &Cluster, owned: &Owned) {
    let dp = DeleteParams::background();
    let _ = match owned {
        Owned::Nothing => return,
        Owned::Job { namespace, name } => {
            Api::<Job>::namespaced(cluster.client.clone(), namespace).delete(name, &dp).await.map(|_| ())
        }
        Owned::Pod { namespace, name } => {
            Api::<Pod>::namespaced(cluster.client.clone(), namespace).delete(name, &dp).await.map(|_| ())
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ephemeral: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web-1"}, "status": {"phase": "Running", "ephemeralContainerStatuses": [ephemeral]}})).unwrap()
    }

    #[test]
    fn the_agent_state_reads_running_waiting_and_failures() {
        let base = json!({"name": "tether-agent-1", "image": "i", "imageID": "", "ready": false, "restartCount": 0});
        let mut running = base.clone();
        running["state"] = json!({"running": {}});
        assert_eq!(agent_state(&pod(running), "tether-agent-1"), Ok(true));
        let mut waiting = base.clone();
        waiting["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
        assert_eq!(agent_state(&pod(waiting), "tether-agent-1"), Ok(false));
        let mut pull = base.clone();
        pull["state"] = json!({"waiting": {"reason": "ErrImagePull", "message": "not found"}});
        assert!(agent_state(&pod(pull), "tether-agent-1").unwrap_err().contains("check agent.image"));
        let mut dead = base.clone();
        dead["state"] =
            json!({"terminated": {"exitCode": 2, "message": "tether-agent: setns: Operation not permitted\n"}});
        let e = agent_state(&pod(dead), "tether-agent-1").unwrap_err();
        assert!(e.ends_with("Operation not permitted"), "{e}");
        assert_eq!(agent_state(&pod(base), "other"), Ok(false));
    }

    #[test]
    fn random_ports_stay_in_range() {
        for _ in 0..50 {
            let p = random_port();
            assert!((30000..60000).contains(&p));
        }
    }
}

//! Starting an agent in the cluster, waiting for it, reaching it, and cleaning up.
//!
//! The steps, each bounded by `agent.startup_timeout` as a whole:
//! 1. resolve the target (pod and container) unless targetless;
//! 2. check the permissions of the mode (SelfSubjectAccessReview), and report a service mesh;
//! 3. create the agent: an ephemeral container, a Job or a pod ([`super::spec`]);
//! 4. watch its pod until the agent's container runs. Whatever will not get better ends the wait
//!    at once, as a doctor diagnostic with its fix: an image the node cannot pull
//!    (`cluster-agent-image-pull`), a missing pull secret (`cluster-agent-pull-secret`, also
//!    checked before anything is created), an admission rejection of the pod or of the Job's pod
//!    (`cluster-agent-admission`, from the API's answer or the Job's `FailedCreate` event), no
//!    node for the pod (`cluster-agent-unschedulable`, with the tolerations the taints ask for),
//!    an agent that exits (`cluster-agent-privileged` or `cluster-agent-crashed`, its last lines);
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
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use tether_config::Config;
use tether_config::target::TargetPath;
use tether_doctor::Diagnostic;
use tether_doctor::cluster as doctor;
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
    if mode != Mode::Ephemeral && !config.agent.image_pull_secrets.is_empty() {
        let missing = missing_secrets(&cluster, &agent_ns, &config.agent.image_pull_secrets).await;
        if let Some(d) = doctor::pull_secret_missing(&missing, &agent_ns) {
            return Err(diagnostic_error(&d));
        }
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
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &pod_ns);
    let wait_began = Instant::now();
    let waited = tokio::select! {
        r = wait_running(&pods, &watch, &name, deadline) => r,
        f = watch_events(&events, &watch) => Err(f),
    };
    let pod_name = match waited {
        Ok(p) => p,
        Err(f) => {
            let node = resolved.as_ref().and_then(|r| r.node.as_deref());
            let e = explain(f, &cluster, &pods, &name, node, &pod_ns, &spec.image, config).await;
            cleanup_now(&cluster, &owned).await;
            return Err(e);
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
                    refused(&e, &r.namespace, &format!("adding the agent's ephemeral container to pod {}", r.pod_name))
                })?;
            Ok((r.namespace.clone(), Owned::Nothing, Watch::Pod(r.pod_name.clone())))
        }
        (Mode::Job, Some(r)) => {
            let jobs: Api<Job> = Api::namespaced(client, agent_ns);
            let job: Job = serde_json::from_value(spec.job(agent_ns, r.node.as_deref(), config.agent.ttl))?;
            jobs.create(&PostParams::default(), &job)
                .await
                .map_err(|e| refused(&e, agent_ns, &format!("creating the agent Job in namespace {agent_ns}")))?;
            let owned = Owned::Job { namespace: agent_ns.to_string(), name: spec.name.clone() };
            Ok((agent_ns.to_string(), owned, Watch::JobPods(spec.name.clone())))
        }
        (Mode::Targetless, _) => {
            let pods: Api<Pod> = Api::namespaced(client, agent_ns);
            let pod: Pod = serde_json::from_value(spec.pod(agent_ns))?;
            pods.create(&PostParams::default(), &pod)
                .await
                .map_err(|e| refused(&e, agent_ns, &format!("creating the agent pod in namespace {agent_ns}")))?;
            let owned = Owned::Pod { namespace: agent_ns.to_string(), name: spec.name.clone() };
            Ok((agent_ns.to_string(), owned, Watch::Pod(spec.name.clone())))
        }
        _ => bail!("this agent mode needs a resolved target"),
    }
}

/// Why the agent will not run: each becomes a diagnostic in [`explain`].
#[derive(Debug)]
enum Failure {
    /// The node cannot pull the image: the waiting reason and the kubelet's message.
    Pull { reason: String, message: String },
    /// The container could not be created (`CreateContainerConfigError`, ...).
    Create { reason: String, message: String },
    /// No node for the pod: the scheduler's message.
    Unschedulable(String),
    /// Admission refused the pod (the Job controller's `FailedCreate`).
    Admission(String),
    /// A pull secret the kubelet could not find (`FailedToRetrieveImagePullSecret`).
    Secret(String),
    /// The agent exited: its code and its termination message (the last log lines).
    Exited { code: i32, message: String, pod: String },
    /// Anything else (the pod failed or was deleted, the wait timed out).
    Other(anyhow::Error),
}

/// The agent container's state in `pod`: `Ok(true)` running, `Ok(false)` not yet, `Err` never.
fn agent_state(pod: &Pod, container: &str) -> Result<bool, Failure> {
    let status = pod.status.as_ref();
    let unschedulable = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
    if let Some(c) = unschedulable {
        return Err(Failure::Unschedulable(c.message.clone().unwrap_or_default()));
    }
    let all: Vec<&ContainerStatus> = status
        .into_iter()
        .flat_map(|s| s.ephemeral_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
        .collect();
    let Some(c) = all.into_iter().find(|c| c.name == container) else {
        if status.and_then(|s| s.phase.as_deref()) == Some("Failed") {
            return Err(Failure::Other(anyhow::anyhow!("the agent's pod failed")));
        }
        return Ok(false);
    };
    let Some(state) = &c.state else { return Ok(false) };
    if state.running.is_some() {
        return Ok(true);
    }
    if let Some(t) = &state.terminated {
        let message = t.message.clone().or_else(|| t.reason.clone()).unwrap_or_default();
        let pod = pod.metadata.name.clone().unwrap_or_default();
        return Err(Failure::Exited { code: t.exit_code, message: message.trim().to_string(), pod });
    }
    if let Some(w) = &state.waiting {
        let reason = w.reason.clone().unwrap_or_default();
        let message = w.message.clone().unwrap_or_default();
        match reason.as_str() {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                return Err(Failure::Pull { reason, message });
            }
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" | "StartError" => {
                return Err(Failure::Create { reason, message });
            }
            _ => {}
        }
    }
    Ok(false)
}

/// Watches the events of the objects we created (a Job, a targetless pod) for what no status
/// shows: a Job whose pod admission refused, a pod no node can take, a missing pull secret.
/// Polls once a second; never returns while nothing is wrong (and when events cannot be read).
async fn watch_events(events: &Api<Event>, watch: &Watch) -> Failure {
    let (kind, name) = match watch {
        Watch::JobPods(job) => ("Job", job.clone()),
        Watch::Pod(pod) if pod.starts_with(AGENT_PREFIX) => ("Pod", pod.clone()),
        // The target pod of an ephemeral container has events of its own life: not ours.
        Watch::Pod(_) => return std::future::pending().await,
    };
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(list) = events.list(&lp).await else { continue };
        for e in list.items {
            let message = e.message.clone().unwrap_or_default();
            match (e.involved_object.kind.as_deref(), e.reason.as_deref().unwrap_or("")) {
                (Some("Job"), "FailedCreate") if kind == "Job" => return Failure::Admission(message),
                (_, "FailedScheduling") => return Failure::Unschedulable(message),
                (_, "FailedToRetrieveImagePullSecret") => return Failure::Secret(message),
                _ => {}
            }
        }
    }
}

/// The names of `secrets` that do not exist in `namespace` (secrets we may not read count as
/// present: the kubelet may still read them).
async fn missing_secrets(
    cluster: &Cluster,
    namespace: &str,
    secrets: &[tether_config::model::KubeName],
) -> Vec<String> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let mut missing = Vec::new();
    for s in secrets {
        match api.get(s.as_str()).await {
            Err(e) if super::is_not_found(&e) => missing.push(s.as_str().to_string()),
            Err(e) => tracing::debug!(secret = s.as_str(), "cannot check the pull secret: {}", describe(&e)),
            Ok(_) => {}
        }
    }
    missing
}

/// An API error on creating the agent: admission's refusal as `cluster-agent-admission`.
fn refused(e: &kube::Error, namespace: &str, what: &str) -> anyhow::Error {
    if let kube::Error::Api(s) = e {
        let m = s.message.to_ascii_lowercase();
        if m.contains("violates podsecurity") || m.contains("admission webhook") || m.contains("denied the request") {
            return diagnostic_error(&doctor::admission_rejected(&s.message, namespace));
        }
    }
    anyhow::anyhow!("{what}: {}", describe(e))
}

/// A failure in words: the doctor's diagnostic for it, as the error of the session.
#[allow(clippy::too_many_arguments)]
async fn explain(
    f: Failure,
    cluster: &Cluster,
    pods: &Api<Pod>,
    container: &str,
    node: Option<&str>,
    namespace: &str,
    image: &str,
    config: &Config,
) -> anyhow::Error {
    let d = match f {
        Failure::Pull { reason, message } => doctor::image_pull(image, &reason, &message, config.agent.image.is_none()),
        Failure::Unschedulable(m) => doctor::unschedulable(&m),
        Failure::Admission(m) => doctor::admission_rejected(&m, namespace),
        Failure::Secret(m) => {
            let names: Vec<String> = config.agent.image_pull_secrets.iter().map(|s| s.as_str().to_string()).collect();
            let mut d = doctor::pull_secret_missing(&names, namespace)
                .unwrap_or_else(|| doctor::pull_secret_missing(&["(unnamed)".into()], namespace).expect("one name"));
            d.message = format!("{}: {m}", d.message);
            d
        }
        Failure::Create { reason, message } => doctor::agent_crashed(None, &format!("{reason}: {message}")),
        Failure::Exited { code, mut message, pod } => {
            if message.is_empty() {
                // No termination message: the last lines of its log.
                let lp =
                    LogParams { container: Some(container.to_string()), tail_lines: Some(20), ..Default::default() };
                message = pods.logs(&pod, &lp).await.unwrap_or_default();
            }
            match privileged_advice(cluster, node, &message, config).await {
                Some(d) => d,
                None => doctor::agent_crashed(Some(code), &message),
            }
        }
        Failure::Other(e) => return e,
    };
    diagnostic_error(&d)
}

/// Waits until the agent's container runs; answers the name of its pod.
async fn wait_running(pods: &Api<Pod>, watch: &Watch, container: &str, deadline: Instant) -> Result<String, Failure> {
    let (fields, labels) = match watch {
        Watch::Pod(name) => (format!("metadata.name={name}"), String::new()),
        Watch::JobPods(job) => (String::new(), format!("job-name={job}")),
    };
    let lp = ListParams::default().fields(&fields).labels(&labels);
    let check = |pod: &Pod| -> Result<Option<String>, Failure> {
        match agent_state(pod, container) {
            Ok(true) => Ok(pod.metadata.name.clone()),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let timeout = || Failure::Other(anyhow::anyhow!("the agent did not start within agent.startup_timeout"));
    loop {
        // List, then watch from the list's version: no event is missed in between.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout());
        }
        let list = tokio::time::timeout(left, pods.list(&lp))
            .await
            .map_err(|_| timeout())?
            .map_err(|e| Failure::Other(anyhow::anyhow!("watching the agent's pod: {}", describe(&e))))?;
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
                    let name = pod.metadata.name.unwrap_or_default();
                    return Err(Failure::Other(anyhow::anyhow!("the agent's pod {name} was deleted")));
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

/// `cluster-agent-privileged` for an agent the kernel refused (permission errors, Bottlerocket
/// nodes), reading the node's OS when the target's node is known.
async fn privileged_advice(
    cluster: &Cluster,
    node: Option<&str>,
    message: &str,
    config: &Config,
) -> Option<Diagnostic> {
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
    doctor::agent_privileged(message, os_image.as_deref(), config.agent.privileged)
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
        assert!(matches!(agent_state(&pod(running), "tether-agent-1"), Ok(true)));
        let mut waiting = base.clone();
        waiting["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
        assert!(matches!(agent_state(&pod(waiting), "tether-agent-1"), Ok(false)));
        for reason in ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"] {
            let mut pull = base.clone();
            pull["state"] = json!({"waiting": {"reason": reason, "message": "not found"}});
            match agent_state(&pod(pull), "tether-agent-1") {
                Err(Failure::Pull { reason: r, message }) => {
                    assert_eq!((r.as_str(), message.as_str()), (reason, "not found"))
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
        let mut dead = base.clone();
        dead["state"] =
            json!({"terminated": {"exitCode": 2, "message": "tether-agent: setns: Operation not permitted\n"}});
        match agent_state(&pod(dead), "tether-agent-1") {
            Err(Failure::Exited { code: 2, message, pod }) => {
                assert!(message.ends_with("Operation not permitted"), "{message}");
                assert_eq!(pod, "web-1");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(agent_state(&pod(base), "other"), Ok(false)));
        let unschedulable: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"}]}}))
        .unwrap();
        assert!(
            matches!(agent_state(&unschedulable, "x"), Err(Failure::Unschedulable(m)) if m == "0/1 nodes are available")
        );
    }

    #[test]
    fn random_ports_stay_in_range() {
        for _ in 0..50 {
            let p = random_port();
            assert!((30000..60000).contains(&p));
        }
    }
}

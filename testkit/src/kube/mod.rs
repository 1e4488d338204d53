//! A fake Kubernetes API server for end-to-end tests (feature `kube`).
//!
//! Kubernetes cannot run here, so [`FakeCluster`] serves the part of the API that tether (and
//! `kubectl get`) use, over plain HTTP on `127.0.0.1` — optionally bound inside a network
//! namespace (the tests' "laptop", which has only loopback) — and backs it with real things:
//!
//! - a **pod** added with a [`PodSpec`](crate::PodSpec) is a real local pod (network namespace,
//!   root file system, target process); every container of the pod is that one process, and
//!   each container gets a `containerd://…` id in the pod's status;
//! - an **ephemeral container** patched into a pod, a **Job**'s pod, or a created **pod** (whose
//!   image's entrypoint, or `command`, is `tether-agent`) runs the real `tether-agent` binary,
//!   inside the backing pod's
//!   network namespace, with the container's arguments and environment (the token). For
//!   `--target-container-id ID` the target process is moved into a cgroup named after the id
//!   (`/sys/fs/cgroup/pids/tether-fake/ID`), so the agent's own discovery (`find_target.rs`)
//!   finds it as it would in a cluster; where cgroups cannot be written, the argument is
//!   replaced by `--target-pid`. Its status goes `waiting` → `running` (when the agent printed
//!   its ready line) → `terminated` (exit code, and its last stderr lines as the message, as
//!   `terminationMessagePolicy: FallbackToLogsOnError` would);
//! - **port-forward** (WebSocket, `v4.channel.k8s.io` / `portforward.k8s.io`: the framing of
//!   kube's `ws` feature) connects, per WebSocket, to `127.0.0.1:PORT` inside the pod's network
//!   namespace, as the kubelet does.
//!
//! Served: discovery (`/api`, `/apis`, `/api/v1`, `/apis/{apps,batch,authorization.k8s.io}/v1`,
//! `/version`); pods (list with label and field selectors, get, watch, create, delete, the
//! `ephemeralcontainers` subresource with GET, PATCH (strategic / merge) and PUT, `portforward`);
//! deployments and statefulsets (get, list, watch); jobs (create, get, list, delete;
//! `ttlSecondsAfterFinished` kept and honoured); nodes (get); `selfsubjectaccessreviews`
//! (allowed unless [`FakeCluster::deny`] said otherwise); `kubectl get` tables for pods,
//! deployments and statefulsets.
//!
//! What the fake does NOT cover (a real cluster differs here):
//! - authentication, TLS, admission (pod security, quotas), validation of specs beyond what is
//!   read, server-side apply, JSON patch, `dryRun`, pagination (`limit`/`continue` are ignored),
//!   `resourceVersion` semantics beyond "events after N" (no 410 Gone), bookmarks;
//! - controllers: a deployment or statefulset never makes pods (tests add them, with the
//!   workload's labels), nothing restarts, nothing schedules (`nodeName` is copied);
//! - container runtime facts: images are not pulled (an image whose name contains
//!   `does-not-exist` fails with `ErrImagePull`, one containing `crashes-at-start` runs the
//!   agent without its token, so that the real agent exits at once; [`Stage`] stages admission
//!   and scheduling failures), capabilities and `privileged` are not
//!   enforced (the agent runs as root), containers of a pod share one process, a Job's agent
//!   runs in the target pod's network namespace rather than its own, `hostPID` is always true
//!   (the agent sees every process of this machine);
//! - SPDY: `kubectl port-forward` speaks SPDY (directly, or tunnelled in a WebSocket) and is
//!   refused with a clear message; exec, attach, logs, events.

mod agents;
mod portforward;
mod server;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::{Pod, PodSpec};

/// The kinds of objects the fake stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pod,
    Deployment,
    StatefulSet,
    Job,
    Node,
    Event,
    Secret,
}

impl Kind {
    fn api_version(self) -> &'static str {
        match self {
            Kind::Pod | Kind::Node | Kind::Event | Kind::Secret => "v1",
            Kind::Deployment | Kind::StatefulSet => "apps/v1",
            Kind::Job => "batch/v1",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::Job => "Job",
            Kind::Node => "Node",
            Kind::Event => "Event",
            Kind::Secret => "Secret",
        }
    }
}

/// A change, as a watch sends it.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    rv: u64,
    kind: Kind,
    namespace: String,
    type_: &'static str,
    object: Value,
}

/// What backs a fake pod on this machine.
pub(crate) enum Backing {
    /// A local pod made for it (tests' pods, targetless agent pods).
    Local(Pod),
    /// The network namespace and target of another pod (a Job's pod runs beside its target).
    Beside { netns: PathBuf, pid: u32 },
}

impl Backing {
    fn netns(&self) -> PathBuf {
        match self {
            Backing::Local(p) => p.netns_path(),
            Backing::Beside { netns, .. } => netns.clone(),
        }
    }
    fn pid(&self) -> u32 {
        match self {
            Backing::Local(p) => p.pid,
            Backing::Beside { pid, .. } => *pid,
        }
    }
}

/// A started agent: when, and when it said it was ready.
#[derive(Clone, Debug)]
pub struct AgentRecord {
    /// `namespace/pod/container`.
    pub name: String,
    pub args: Vec<String>,
    pub started: Instant,
    pub ready_after: Option<Duration>,
    pub exit: Option<i32>,
    pub pid: u32,
}

pub(crate) struct State {
    rv: u64,
    objects: BTreeMap<(Kind, String, String), Value>,
    events: VecDeque<Event>,
    backings: HashMap<(String, String), Backing>,
    /// Container id (without `containerd://`) -> its pod.
    containers: HashMap<String, (String, String)>,
    denied: Vec<(String, String)>,
    agents: Vec<AgentRecord>,
    /// Failures staged by the test ([`FakeCluster::stage`]).
    staged: Vec<Stage>,
    /// Cgroup directories made for container ids.
    cgroups: Vec<PathBuf>,
    counter: u64,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    changed: tokio::sync::broadcast::Sender<Event>,
    agent_bin: PathBuf,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

impl State {
    fn next_id(&mut self) -> String {
        self.counter += 1;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        format!("{:08x}{:08x}{:016x}", std::process::id(), nanos, self.counter)
    }

    /// Stores `obj` (a new or changed object) and records the event.
    pub(crate) fn put(&mut self, kind: Kind, mut obj: Value, tx: &tokio::sync::broadcast::Sender<Event>) -> Value {
        self.rv += 1;
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let key = (kind, ns.clone(), name);
        let existed = self.objects.contains_key(&key);
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.name());
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(self.rv.to_string());
        if meta.get("uid").is_none() {
            let id = self.next_id();
            obj["metadata"]["uid"] = json!(id);
        }
        if obj["metadata"].get("creationTimestamp").is_none() {
            obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        }
        self.objects.insert(key, obj.clone());
        self.record(kind, ns, if existed { "MODIFIED" } else { "ADDED" }, obj.clone(), tx);
        obj
    }

    pub(crate) fn remove(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        tx: &tokio::sync::broadcast::Sender<Event>,
    ) -> Option<Value> {
        let mut obj = self.objects.remove(&(kind, ns.to_string(), name.to_string()))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(kind, ns.to_string(), "DELETED", obj.clone(), tx);
        if kind == Kind::Pod {
            self.backings.remove(&(ns.to_string(), name.to_string()));
        }
        Some(obj)
    }

    fn record(
        &mut self,
        kind: Kind,
        namespace: String,
        type_: &'static str,
        object: Value,
        tx: &tokio::sync::broadcast::Sender<Event>,
    ) {
        let e = Event { rv: self.rv, kind, namespace, type_, object };
        if self.events.len() >= 4000 {
            self.events.pop_front();
        }
        self.events.push_back(e.clone());
        let _ = tx.send(e);
    }

    pub(crate) fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind, ns.to_string(), name.to_string()))
    }
}

/// A pod to add: its metadata, containers and readiness, and optionally the local pod behind
/// it (without one it is only an object: listed, selectable, never a usable target).
pub struct FakePod {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub containers: Vec<String>,
    pub ready: bool,
    pub node: String,
    pub local: Option<PodSpec>,
}

impl FakePod {
    pub fn new(name: &str) -> FakePod {
        FakePod {
            name: name.into(),
            namespace: "default".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            containers: vec!["app".into()],
            ready: true,
            node: "node-1".into(),
            local: None,
        }
    }
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.into();
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }
    pub fn containers(mut self, names: &[&str]) -> Self {
        self.containers = names.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn ready(mut self, ready: bool) -> Self {
        self.ready = ready;
        self
    }
    /// Backs the pod with a real local pod.
    pub fn local(mut self, spec: PodSpec) -> Self {
        self.local = Some(spec);
        self
    }
}

/// A failure a real cluster would produce, staged for the agents created after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Admission (Pod Security, a webhook) refuses every agent pod and ephemeral container with
    /// this message: creating a pod or patching ephemeral containers answers 403; a Job is
    /// created but its controller cannot make the pod (a `FailedCreate` event on the Job).
    Admission(String),
    /// The scheduler finds no node for pods without `nodeName` (targetless agents): their
    /// `PodScheduled` condition is `False`, `Unschedulable`, with this message, and a
    /// `FailedScheduling` event.
    Unschedulable(String),
}

/// How to start a [`FakeCluster`].
pub struct FakeOptions {
    /// The `tether-agent` binary that agent containers run.
    pub agent_bin: PathBuf,
    /// Bind the API server inside this network namespace (`/var/run/netns/NAME`); `None`: here.
    pub netns: Option<PathBuf>,
    /// The kubeconfig context's namespace.
    pub namespace: String,
}

/// The fake API server and everything it runs. Dropping it stops the agents, tears down the
/// local pods and removes its files.
pub struct FakeCluster {
    /// `127.0.0.1:PORT`, reachable in [`FakeOptions::netns`].
    pub addr: SocketAddr,
    /// A kubeconfig whose current context points here.
    pub kubeconfig: PathBuf,
    dir: PathBuf,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl FakeCluster {
    pub fn start(options: FakeOptions) -> Result<FakeCluster> {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("tether-fake-kube-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let listener = match &options.netns {
            Some(path) => crate::run_in_netns_path(path, || std::net::TcpListener::bind("127.0.0.1:0"))??,
            None => std::net::TcpListener::bind("127.0.0.1:0")?,
        };
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-kube")
            .enable_all()
            .build()
            .context("the fake API server's runtime")?;
        let (changed, _) = tokio::sync::broadcast::channel(1024);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rv: 1,
                objects: BTreeMap::new(),
                events: VecDeque::new(),
                backings: HashMap::new(),
                containers: HashMap::new(),
                denied: Vec::new(),
                agents: Vec::new(),
                staged: Vec::new(),
                cgroups: Vec::new(),
                counter: 0,
            }),
            changed,
            agent_bin: options.agent_bin.clone(),
        });
        {
            let _guard = rt.enter();
            let listener = tokio::net::TcpListener::from_std(listener)?;
            rt.spawn(server::serve(listener, shared.clone()));
        }
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
                 users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {}\n\
                 current-context: fake\n",
                options.namespace
            ),
        )?;
        let fake = FakeCluster { addr, kubeconfig, dir, shared, rt: Some(rt) };
        fake.add_node("node-1");
        Ok(fake)
    }

    fn put(&self, kind: Kind, obj: Value) -> Value {
        let tx = self.shared.changed.clone();
        self.shared.lock().put(kind, obj, &tx)
    }

    fn add_node(&self, name: &str) {
        self.put(
            Kind::Node,
            json!({"metadata": {"name": name}, "status": {"nodeInfo": {"osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "", "architecture": "amd64",
                "bootID": "", "containerRuntimeVersion": "containerd://1.7", "kubeProxyVersion": "", "kubeletVersion": "v1.33.0", "machineID": "", "operatingSystem": "linux", "systemUUID": ""}}}),
        );
    }

    /// Adds a pod (and starts its local pod, if it has one).
    pub fn add_pod(&self, pod: FakePod) -> Result<()> {
        let local = match pod.local {
            Some(spec) => Some(spec.start()?),
            None => None,
        };
        let mut state = self.shared.lock();
        let mut statuses = Vec::new();
        for c in &pod.containers {
            let id = state.next_id();
            state.containers.insert(id.clone(), (pod.namespace.clone(), pod.name.clone()));
            let st = if pod.ready {
                json!({"running": {"startedAt": now_rfc3339()}})
            } else {
                json!({"waiting": {"reason": "ContainerCreating"}})
            };
            statuses
                .push(json!({"name": c, "image": format!("registry.test/{c}:1"), "imageID": "", "ready": pod.ready,
                "restartCount": 0, "started": pod.ready, "containerID": format!("containerd://{id}"), "state": st}));
        }
        let obj = json!({
            "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": pod.labels, "annotations": pod.annotations},
            "spec": {"nodeName": pod.node, "containers": pod.containers.iter().map(|c| json!({"name": c, "image": format!("registry.test/{c}:1")})).collect::<Vec<_>>()},
            "status": {
                "phase": if pod.ready { "Running" } else { "Pending" },
                "podIP": "198.18.0.2",
                "conditions": [{"type": "Ready", "status": if pod.ready { "True" } else { "False" }}],
                "containerStatuses": statuses,
            },
        });
        if let Some(l) = local {
            state.backings.insert((pod.namespace.clone(), pod.name.clone()), Backing::Local(l));
        }
        let tx = self.shared.changed.clone();
        state.put(Kind::Pod, obj, &tx);
        Ok(())
    }

    fn add_workload(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        selector: &[(&str, &str)],
        containers: &[&str],
        replicas: i32,
    ) {
        let labels: BTreeMap<&str, &str> = selector.iter().copied().collect();
        self.put(
            kind,
            json!({
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "serviceName": name,
                    "template": {"metadata": {"labels": labels}, "spec": {"containers": containers.iter().map(|c| json!({"name": c, "image": format!("registry.test/{c}:1")})).collect::<Vec<_>>()}},
                },
                "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
            }),
        );
    }

    /// Adds a deployment that selects pods labelled with `selector` (add them with
    /// [`FakeCluster::add_pod`]).
    pub fn add_deployment(&self, ns: &str, name: &str, selector: &[(&str, &str)], containers: &[&str], replicas: i32) {
        self.add_workload(Kind::Deployment, ns, name, selector, containers, replicas)
    }

    pub fn add_statefulset(&self, ns: &str, name: &str, selector: &[(&str, &str)], containers: &[&str], replicas: i32) {
        self.add_workload(Kind::StatefulSet, ns, name, selector, containers, replicas)
    }

    /// Adds a raw object (e.g. a leftover agent Job of an earlier session).
    pub fn add_raw(&self, kind: Kind, obj: Value) {
        self.put(kind, obj);
    }

    /// Stages a failure for the agents created from now on.
    pub fn stage(&self, s: Stage) {
        self.shared.lock().staged.push(s);
    }

    /// Adds a Secret (only its name matters: image pull secrets are checked for existence).
    pub fn add_secret(&self, ns: &str, name: &str) {
        self.put(
            Kind::Secret,
            json!({"metadata": {"name": name, "namespace": ns}, "type": "kubernetes.io/dockerconfigjson"}),
        );
    }

    /// Makes SelfSubjectAccessReview refuse `verb` on `resource` (`pods/ephemeralcontainers`).
    pub fn deny(&self, verb: &str, resource: &str) {
        self.shared.lock().denied.push((verb.into(), resource.into()));
    }

    /// An object as the API would return it.
    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.shared.lock().get(kind, ns, name).cloned()
    }

    /// Names of the stored objects of `kind` in `ns`.
    pub fn names(&self, kind: Kind, ns: &str) -> Vec<String> {
        let state = self.shared.lock();
        state.objects.keys().filter(|(k, n, _)| *k == kind && n == ns).map(|(_, _, name)| name.clone()).collect()
    }

    /// Every agent the fake started so far.
    pub fn agents(&self) -> Vec<AgentRecord> {
        self.shared.lock().agents.clone()
    }

    /// Agents that still run.
    pub fn running_agents(&self) -> usize {
        self.shared.lock().agents.iter().filter(|a| a.exit.is_none()).count()
    }

    /// Runs `f` with the local pod behind `ns/name`.
    pub fn with_local_pod<T>(&self, ns: &str, name: &str, f: impl FnOnce(&Pod) -> T) -> Option<T> {
        let state = self.shared.lock();
        match state.backings.get(&(ns.to_string(), name.to_string())) {
            Some(Backing::Local(p)) => Some(f(p)),
            _ => None,
        }
    }

    /// Waits (bounded) until `cond` holds; answers whether it did.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&FakeCluster) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cond(self)
    }

    /// Where the fake keeps its files (the kubeconfig).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let (pids, cgroups, backings) = {
            let mut state = self.shared.lock();
            let pids: Vec<u32> = state.agents.iter().filter(|a| a.exit.is_none()).map(|a| a.pid).collect();
            let backings: Vec<Backing> = state.backings.drain().map(|(_, b)| b).collect();
            (pids, std::mem::take(&mut state.cgroups), backings)
        };
        for pid in &pids {
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_millis(500));
        }
        drop(backings); // tears the local pods down
        for dir in cgroups {
            for _ in 0..20 {
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

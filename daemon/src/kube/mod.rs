//! Kubernetes: the cluster client, resolving a target to a pod and a container, the agent in the
//! cluster, the port-forward that reaches it, and the listings of `tether ls` and
//! `tether agents`.
//!
//! - [`cluster`]: a client from the user's kubeconfig (`KUBECONFIG`, else `~/.kube/config`; the
//!   current context, or `TETHER_KUBE_CONTEXT`; its namespace unless the config says one),
//!   cached per kubeconfig so that a second `tether exec` pays nothing for it.
//! - [`resolve`]: `pod/NAME`, `deployment/NAME`, `statefulset/NAME` (optionally
//!   `/container/NAME`) to one running, ready pod and one container, sidecars skipped.
//! - [`spec`]: what the daemon creates: an ephemeral container (default), a node Job
//!   (`agent.ephemeral: false`) or a plain pod (`targetless`), labelled as ours.
//! - [`rbac`]: the permissions a mode needs, checked with SelfSubjectAccessReview before
//!   anything is created.
//! - [`start`]: creates the agent, waits for it, reaches it through [`forward`] and proves the
//!   token; [`start::KubeAgent`] cleans up when it drops.
//! - [`list`]: `tether ls` and `tether agents [--prune]`.
//!
//! The daemon reads the kubeconfig of its own environment, that is of the client that started
//! it (the first `tether exec` or the editor's `tether lsp`).

pub mod forward;
pub mod list;
pub mod rbac;
pub mod resolve;
pub mod spec;
pub mod start;

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::Context;

/// Labels on every object the daemon creates (Jobs, pods), so `tether agents` finds them.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "tether");
pub const APP_NAME: (&str, &str) = ("app.kubernetes.io/name", "tether-agent");
/// The label selector that finds our agents.
pub const AGENT_SELECTOR: &str = "app.kubernetes.io/managed-by=tether,app.kubernetes.io/name=tether-agent";
/// Which daemon made an agent: `HOST/PID`, so that `tether agents --prune` spares live ones.
pub const OWNER_ANNOTATION: &str = "tether.dev/owner";
/// The target an agent serves (`deployment/web`), for people.
pub const TARGET_ANNOTATION: &str = "tether.dev/target";
/// Names of agent containers, Jobs and pods start with this.
pub const AGENT_PREFIX: &str = "tether-agent-";

/// A connection to the cluster and the namespace its context names.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    /// The context's namespace (`default` when it names none).
    pub namespace: String,
}

/// The cache key of a kubeconfig: its paths, their modification times, and the context.
fn config_key() -> String {
    let paths = std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        std::env::var("HOME").map(|h| format!("{h}/.kube/config")).unwrap_or_default()
    });
    let mut key = paths.clone();
    for p in std::env::split_paths(&paths) {
        let mtime = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
        let nanos = mtime.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_nanos());
        key.push_str(&format!("|{nanos:?}"));
    }
    key.push('|');
    key.push_str(&std::env::var("TETHER_KUBE_CONTEXT").unwrap_or_default());
    key
}

static CACHE: Mutex<Option<(String, Cluster)>> = Mutex::new(None);

/// The cluster of the current kubeconfig and context.
pub async fn cluster() -> anyhow::Result<Cluster> {
    let key = config_key();
    if let Some((k, c)) = CACHE.lock().unwrap().as_ref() {
        if *k == key {
            return Ok(c.clone());
        }
    }
    let options = kube::config::KubeConfigOptions {
        context: std::env::var("TETHER_KUBE_CONTEXT").ok().filter(|c| !c.is_empty()),
        ..Default::default()
    };
    let mut config = kube::Config::from_kubeconfig(&options).await.with_context(|| {
        "reading the Kubernetes configuration (KUBECONFIG, else ~/.kube/config)".to_string()
    })?;
    config.connect_timeout = Some(Duration::from_secs(10));
    let namespace = config.default_namespace.clone();
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).with_context(|| format!("making a client for {server}"))?;
    let cluster = Cluster { client, namespace };
    *CACHE.lock().unwrap() = Some((key, cluster.clone()));
    Ok(cluster)
}

/// A kube error in words people read: the API's message, or what failed.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

/// Whether a kube error is the API's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// `HOST/PID` of this daemon.
pub fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{}", host.trim(), std::process::id())
}

//! Kubernetes: the cluster client, resolving a target to a pod and a container, the agent in the
//! cluster, the port-forward that reaches it, and the listings of `tether ls` and
//! `tether agents`.
//!
//! - [`cluster`]: a client for a [`Source`] (a kubeconfig and a context), cached per source so
//!   that a second `tether exec` pays nothing for it; `client` builds its HTTP stack with
//!   `TCP_NODELAY` (every remote call of a session crosses the port-forward).
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
//! **Whose kubeconfig.** The daemon outlives the terminal that started it, so it does not use its
//! own environment when a client tells it better: every session (and `tether/listTargets`)
//! carries the client's `KUBECONFIG`, and `target.context` of the config picks the context. Only
//! what a client leaves out falls back to the daemon's environment (`KUBECONFIG`, else
//! `~/.kube/config`; `TETHER_KUBE_CONTEXT`, else the current context). Agents are shared per
//! target *and* source, so the same `deployment/web` in two clusters gets two agents.

mod client;
pub mod forward;
pub mod list;
pub mod rbac;
pub mod resolve;
pub mod spec;
pub mod start;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use kube::config::Kubeconfig;

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

/// Which kubeconfig and context a client means; empty fields fall back to the daemon's
/// environment (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Source {
    /// A `KUBECONFIG` value: one or more paths, separated like `PATH`.
    pub kubeconfig: Option<String>,
    /// A context of that kubeconfig.
    pub context: Option<String>,
}

impl Source {
    /// What this process's own environment says (the CLI sends it to the daemon).
    pub fn from_env() -> Source {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Source { kubeconfig: var("KUBECONFIG"), context: var("TETHER_KUBE_CONTEXT") }
    }

    /// The kubeconfig paths, the fallbacks applied.
    fn paths(&self) -> Vec<PathBuf> {
        let list = self.kubeconfig.clone().or_else(|| Source::from_env().kubeconfig);
        match list {
            Some(list) => std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect(),
            None => std::env::var_os("HOME").map(|h| vec![PathBuf::from(h).join(".kube/config")]).unwrap_or_default(),
        }
    }

    /// Whether any of the kubeconfig files exists (else Kubernetes is not in use here).
    pub fn present(&self) -> bool {
        self.paths().iter().any(|p| p.exists())
    }

    fn context(&self) -> Option<String> {
        self.context.clone().or_else(|| Source::from_env().context)
    }

    /// The cache key: the paths, their modification times (`kubectl config use-context` edits
    /// the file), and the context.
    fn key(&self) -> String {
        let mut key = String::new();
        for p in self.paths() {
            let mtime = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
            let nanos = mtime.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_nanos());
            key.push_str(&format!("{}|{nanos:?}|", p.display()));
        }
        key.push_str(&self.context().unwrap_or_default());
        key
    }

    /// Reads and merges the kubeconfig files (the first file wins a conflict, as kubectl's).
    fn read(&self) -> anyhow::Result<Kubeconfig> {
        let paths = self.paths();
        let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
        let Some((first, rest)) = existing.split_first() else {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            anyhow::bail!(
                "no Kubernetes configuration: {} does not exist; set KUBECONFIG or run `kubectl config view` to check",
                if shown.is_empty() { "~/.kube/config".to_string() } else { shown.join(", ") }
            );
        };
        let mut merged = Kubeconfig::read_from(first).with_context(|| format!("reading {}", first.display()))?;
        for p in rest {
            let next = Kubeconfig::read_from(p).with_context(|| format!("reading {}", p.display()))?;
            merged = merged.merge(next).with_context(|| format!("merging {}", p.display()))?;
        }
        Ok(merged)
    }
}

/// Clusters by source; a few at most (a user switches between a handful).
static CACHE: Mutex<Vec<(String, Cluster)>> = Mutex::new(Vec::new());
const CACHED: usize = 8;

/// The cluster a client means.
pub async fn cluster(source: &Source) -> anyhow::Result<Cluster> {
    let key = source.key();
    if let Some((_, c)) = CACHE.lock().unwrap().iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    let kubeconfig = source.read()?;
    if let Some(wanted) = source.context() {
        let names: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
        if !names.contains(&wanted.as_str()) {
            anyhow::bail!(
                "the Kubernetes configuration has no context `{wanted}` (from TETHER_KUBE_CONTEXT or `target.context`); it has: {}",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            );
        }
    }
    let options = kube::config::KubeConfigOptions { context: source.context(), ..Default::default() };
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.with_context(|| match source.context() {
            Some(c) => format!(
                "using context `{c}` of the Kubernetes configuration (`kubectl config get-contexts` lists them)"
            ),
            None => "using the current context of the Kubernetes configuration".to_string(),
        })?;
    config.connect_timeout = Some(Duration::from_secs(10));
    let namespace = config.default_namespace.clone();
    let server = config.cluster_url.to_string();
    let client = client::build(config).with_context(|| format!("making a client for {server}"))?;
    let cluster = Cluster { client, namespace };
    let mut cache = CACHE.lock().unwrap();
    cache.retain(|(k, _)| *k != key);
    if cache.len() >= CACHED {
        cache.remove(0);
    }
    cache.push((key, cluster.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(context: &str, server: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {context}\n\
             clusters: [{{name: {context}, cluster: {{server: \"{server}\"}}}}]\n\
             contexts: [{{name: {context}, context: {{cluster: {context}, user: u, namespace: ns-{context}}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n"
        )
    }

    #[tokio::test]
    async fn a_source_reads_its_own_files_and_context() {
        let dir = std::env::temp_dir().join(format!("tether-kube-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, kubeconfig("dev", "http://127.0.0.1:1")).unwrap();
        std::fs::write(&b, kubeconfig("prod", "http://127.0.0.1:2")).unwrap();
        let list = std::env::join_paths([&a, &b]).unwrap().into_string().unwrap();
        let dev = Source { kubeconfig: Some(list.clone()), context: None };
        assert_eq!(dev.paths(), [a.clone(), b.clone()]);
        assert!(dev.present());

        // The files merge (the first one's current context wins); a context picks another.
        assert_eq!(cluster(&dev).await.unwrap().namespace, "ns-dev");
        let prod = Source { kubeconfig: Some(list.clone()), context: Some("prod".into()) };
        assert_ne!(dev.key(), prod.key());
        assert_eq!(cluster(&prod).await.unwrap().namespace, "ns-prod");
        let err = cluster(&Source { kubeconfig: Some(list), context: Some("stage".into()) }).await.err().unwrap();
        assert!(err.to_string().contains("no context `stage`") && err.to_string().contains("dev, prod"), "{err}");

        let missing = Source { kubeconfig: Some(dir.join("nope").display().to_string()), context: None };
        assert!(!missing.present());
        let err = cluster(&missing).await.err().unwrap();
        assert!(err.to_string().contains("does not exist") && err.to_string().contains("KUBECONFIG"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Targets: what a session runs "inside", and how its agent is started and reached.
//!
//! This is the seam between target kinds. A [`TargetSpec`] names a target; its kind's backend
//! resolves it and starts (or reuses) an agent, and from then on the rest of the daemon sees
//! only an [`crate::agent::Agent`] inside a [`Running`] agent:
//! - `pid:N`: a local process, served by a `tether-agent` child of the daemon ([`local`]);
//! - `pod/NAME`, `deployment/NAME`, `statefulset/NAME` (each optionally `/container/NAME`) and
//!   `targetless`: Kubernetes, served by an agent in the cluster ([`kube`]).

pub mod kube;
pub mod local;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tether_config::Config;
use tether_config::target::{TargetKind, TargetPath, parse_target};
use tokio::sync::mpsc::UnboundedSender;

use crate::agent::Agent;

/// A target named by the user (`--target` or `target.path`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetSpec {
    /// A process on this machine.
    Pid(u32),
    /// A Kubernetes workload or `targetless`, in a namespace (`None`: the config's, else the
    /// kubeconfig context's), in the cluster the client means.
    Kube { path: TargetPath, namespace: Option<String>, source: crate::kube::Source },
}

impl TargetSpec {
    pub fn parse(s: &str) -> anyhow::Result<TargetSpec> {
        let s = s.trim();
        match parse_target(s) {
            Ok(TargetPath::Pid(p)) => Ok(TargetSpec::Pid(p)),
            Ok(path @ TargetPath::Targetless) => {
                Ok(TargetSpec::Kube { path, namespace: None, source: Default::default() })
            }
            Ok(
                path @ TargetPath::Kube {
                    kind: TargetKind::Pod | TargetKind::Deployment | TargetKind::StatefulSet, ..
                },
            ) => Ok(TargetSpec::Kube { path, namespace: None, source: Default::default() }),
            Ok(TargetPath::Kube { kind, .. }) => bail!(
                "target `{s}`: {} targets are not supported yet; use pod/NAME, deployment/NAME, statefulset/NAME or targetless",
                kind.as_str()
            ),
            Err(m) if s.starts_with("pid:") => bail!("target `{s}`: {m} (expected pid:<number>)"),
            Err(m) if s.contains('/') => bail!("target `{s}`: {m}"),
            Err(_) => bail!(
                "unknown target `{s}`: expected pid:<PID> (a local process), pod/NAME, deployment/NAME, statefulset/NAME or targetless"
            ),
        }
    }

    /// The kubeconfig and context the client's environment names (for Kubernetes targets;
    /// empty fields: the config's context, else the daemon's environment).
    pub fn with_client(self, client: crate::kube::Source) -> TargetSpec {
        let some = |v: Option<String>| v.filter(|v| !v.is_empty());
        match self {
            TargetSpec::Kube { path, namespace, source } => TargetSpec::Kube {
                path,
                namespace,
                source: crate::kube::Source {
                    kubeconfig: some(client.kubeconfig).or(source.kubeconfig),
                    context: some(client.context).or(source.context),
                },
            },
            other => other,
        }
    }

    /// The key under which an agent is shared: the spec with the config's namespace and context
    /// filled in (two sessions for `deployment/web` in different namespaces or clusters are
    /// different targets).
    pub fn with_config(&self, config: &Config) -> TargetSpec {
        match self {
            TargetSpec::Kube { path, namespace, source } => TargetSpec::Kube {
                path: path.clone(),
                namespace: namespace.clone().or_else(|| config.target.namespace.clone()),
                source: crate::kube::Source {
                    kubeconfig: source.kubeconfig.clone(),
                    context: source.context.clone().or_else(|| config.target.context.clone()),
                },
            },
            other => other.clone(),
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Pid(p) => write!(f, "pid:{p}"),
            TargetSpec::Kube { path, .. } => write!(f, "{path}"),
        }
    }
}

/// A running agent of any kind. The rest of the daemon uses [`Running::agent`].
pub struct Running {
    pub agent: Arc<Agent>,
    backend: Backend,
}

enum Backend {
    Local(local::LocalAgent),
    Kube(crate::kube::start::KubeAgent),
}

impl Running {
    pub fn is_alive(&self) -> bool {
        match &self.backend {
            Backend::Local(l) => l.is_alive(),
            Backend::Kube(k) => k.is_alive(),
        }
    }

    /// Whether the daemon should keep this agent; `refs` is its `Arc`'s strong count (more
    /// than one: a session uses it). Local agents stay while they live; Kubernetes agents stay
    /// for `agent.idle_timeout` after their last session (so that a restart is instant), then
    /// go, which removes them from the cluster.
    pub fn keep(&self, refs: usize) -> bool {
        match &self.backend {
            Backend::Local(l) => l.is_alive(),
            Backend::Kube(k) => k.keep(refs > 1),
        }
    }

    /// What the doctor found while the agent started (cluster diagnostics), for the session's
    /// diagnostics (`Session.diagnostics`; the editor protocol converts them).
    pub fn diagnostics(&self) -> &[tether_doctor::Diagnostic] {
        match &self.backend {
            Backend::Local(_) => &[],
            Backend::Kube(k) => &k.diagnostics,
        }
    }
}

/// Starts the agent of `target`.
pub async fn start(
    target: &TargetSpec,
    config: &Config,
    runtime_dir: &Path,
    progress: Option<&UnboundedSender<String>>,
) -> anyhow::Result<Running> {
    match target {
        TargetSpec::Pid(pid) => {
            if let Some(p) = progress {
                let _ = p.send(format!("starting the agent for {target}"));
            }
            let local = local::start(
                *pid,
                Duration::from_secs(config.agent.startup_timeout),
                Duration::from_secs(config.agent.idle_timeout),
                runtime_dir,
            )
            .await?;
            if let Some(p) = progress {
                let _ = p.send(format!("the agent for {target} is up"));
            }
            Ok(Running { agent: local.agent.clone(), backend: Backend::Local(local) })
        }
        TargetSpec::Kube { path, namespace, source } => {
            let k = kube::start(path, namespace.as_deref(), source, config, progress).await?;
            Ok(Running { agent: k.agent.clone(), backend: Backend::Kube(k) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_clear_errors() {
        assert_eq!(TargetSpec::parse("pid:42").unwrap(), TargetSpec::Pid(42));
        assert!(TargetSpec::parse("pid:x").unwrap_err().to_string().contains("not a process id"));
        assert!(TargetSpec::parse("pid:0").is_err());
        let web = TargetSpec::parse("deployment/web").unwrap();
        assert_eq!(web.to_string(), "deployment/web");
        assert!(matches!(web, TargetSpec::Kube { namespace: None, .. }));
        assert_eq!(
            TargetSpec::parse("statefulset/db/container/pg").unwrap().to_string(),
            "statefulset/db/container/pg"
        );
        assert_eq!(TargetSpec::parse("targetless").unwrap().to_string(), "targetless");
        assert!(TargetSpec::parse("cronjob/x").unwrap_err().to_string().contains("not supported yet"));
        assert!(TargetSpec::parse("deploymnet/web").unwrap_err().to_string().contains("did you mean `deployment`"));
        assert!(TargetSpec::parse("banana").unwrap_err().to_string().contains("unknown target"));
        let mut config = Config::default();
        config.target.namespace = Some("shop".into());
        config.target.context = Some("staging".into());
        let source = |kubeconfig: Option<&str>| crate::kube::Source {
            kubeconfig: kubeconfig.map(String::from),
            context: Some("staging".into()),
        };
        let path = parse_target("deployment/web").unwrap();
        assert_eq!(
            web.with_config(&config),
            TargetSpec::Kube { path: path.clone(), namespace: Some("shop".into()), source: source(None) }
        );
        // The same workload through another kubeconfig is another target (another agent).
        let client = |k: &str| crate::kube::Source { kubeconfig: Some(k.into()), context: None };
        let other = web.clone().with_client(client("/home/u/.kube/staging")).with_config(&config);
        assert_eq!(
            other,
            TargetSpec::Kube { path, namespace: Some("shop".into()), source: source(Some("/home/u/.kube/staging")) }
        );
        assert_ne!(other, web.with_config(&config));
        assert_eq!(web.clone().with_client(client("")), web, "an empty KUBECONFIG means none");
        // The client's TETHER_KUBE_CONTEXT wins over the config's.
        let prod = crate::kube::Source { kubeconfig: None, context: Some("prod".into()) };
        assert!(matches!(web.clone().with_client(prod).with_config(&config),
            TargetSpec::Kube { source: crate::kube::Source { context: Some(c), .. }, .. } if c == "prod"));
        assert_eq!(TargetSpec::Pid(1).with_config(&config), TargetSpec::Pid(1));
    }
}

//! What the daemon creates in the cluster to run an agent.
//!
//! - **Ephemeral container** (default): added to the target pod through its
//!   `ephemeralcontainers` subresource with `targetContainerName`, so the agent shares the target
//!   container's pid namespace and finds its process by container id
//!   (`--target-container-id`, `agent/src/find_target.rs`); it also shares the pod's network.
//! - **Job** (`agent.ephemeral: false`): one pod on the target's node (`nodeName`) with
//!   `hostPID`, finding the target container's process the same way; `ttlSecondsAfterFinished`
//!   from `agent.ttl`, `backoffLimit: 0`, tolerating every taint so that it lands on the node.
//! - **Pod** (`targetless`): a plain pod in the namespace whose agent serves its own network.
//!
//! Capabilities, when not `agent.privileged` (everything else is dropped):
//! - `SYS_ADMIN`: `setns` into the target's network namespace (the kernel asks for it even when
//!   the ephemeral container already shares that namespace);
//! - `SYS_PTRACE`: reading `/proc/PID/root` and `/proc/PID/environ` of a process of another
//!   container (and another user): the ptrace access check guards both;
//! - `NET_ADMIN`: only when incoming traffic is on (`feature.network.incoming.mode` is not `off`):
//!   the redirect rules that steal or mirror a port.
//!
//! The agent runs as root (uid 0) in its container, whatever the pod's `runAsUser`, because the
//! checks above are made against root's capabilities. The session token travels in the
//! container's environment (`TETHER_AGENT_TOKEN`), never in its arguments; anyone who may read
//! the pod's spec may read it, which is why the agent also exits when idle.

use serde_json::{Value, json};
use tether_config::Config;
use tether_protocol::env::AGENT_TOKEN;

use super::{APP_NAME, MANAGED_BY, OWNER_ANNOTATION, TARGET_ANNOTATION};

/// The agent image when `agent.image` is not set: the one released with this version.
pub fn default_image() -> String {
    format!("ghcr.io/tether-dev/tether-agent:{}", env!("CARGO_PKG_VERSION"))
}

/// How the agent finds its target.
#[derive(Clone, Debug)]
pub enum Find {
    /// By the target container's id (ephemeral container, Job).
    ContainerId(String),
    /// The agent is its own target (targetless: pid 1 of its container).
    Itself,
}

/// Everything that varies between agents.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    /// Container, Job or pod name (`tether-agent-…`).
    pub name: String,
    pub image: String,
    pub port: u16,
    pub token: String,
    pub find: Find,
    /// Seconds the agent waits without a client before it exits.
    pub idle_timeout: u64,
    pub privileged: bool,
    /// Incoming traffic is on: the agent needs `NET_ADMIN`.
    pub incoming: bool,
    /// The target path, for people (an annotation).
    pub target: String,
}

impl AgentSpec {
    pub fn new(name: String, config: &Config, port: u16, token: String, find: Find, target: String) -> AgentSpec {
        use tether_config::model::IncomingMode;
        AgentSpec {
            name,
            image: config.agent.image.clone().unwrap_or_else(default_image),
            port,
            token,
            find,
            idle_timeout: 15,
            privileged: config.agent.privileged,
            incoming: config.feature.network.incoming.mode != IncomingMode::Off,
            target,
        }
    }

    pub fn args(&self) -> Vec<String> {
        let mut args = match &self.find {
            Find::ContainerId(id) => vec!["--target-container-id".to_string(), id.clone()],
            Find::Itself => vec!["--target-pid".to_string(), "1".to_string()],
        };
        args.extend([
            "--listen".to_string(),
            format!("0.0.0.0:{}", self.port),
            "--idle-timeout".to_string(),
            self.idle_timeout.to_string(),
        ]);
        args
    }

    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut caps = vec!["SYS_ADMIN", "SYS_PTRACE"];
        if self.incoming {
            caps.push("NET_ADMIN");
        }
        caps
    }

    fn security_context(&self) -> Value {
        if self.privileged {
            json!({"privileged": true, "runAsUser": 0, "runAsNonRoot": false})
        } else {
            json!({
                "runAsUser": 0,
                "runAsNonRoot": false,
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": self.capabilities()},
            })
        }
    }

    /// The agent's container (for every mode; the ephemeral one adds `targetContainerName`).
    pub fn container(&self) -> Value {
        json!({
            "name": self.name,
            "image": self.image,
            "command": ["tether-agent"],
            "args": self.args(),
            "env": [{"name": AGENT_TOKEN, "value": self.token}],
            "securityContext": self.security_context(),
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "ports": [{"name": "tether", "containerPort": self.port, "protocol": "TCP"}],
        })
    }

    /// The strategic-merge patch of the pod's `ephemeralcontainers` subresource.
    pub fn ephemeral_patch(&self, target_container: &str) -> Value {
        let mut c = self.container();
        c["targetContainerName"] = json!(target_container);
        // Ephemeral containers may not declare ports.
        c.as_object_mut().expect("object").remove("ports");
        json!({"spec": {"ephemeralContainers": [c]}})
    }

    fn labels(&self) -> Value {
        json!({MANAGED_BY.0: MANAGED_BY.1, APP_NAME.0: APP_NAME.1})
    }

    fn annotations(&self) -> Value {
        json!({OWNER_ANNOTATION: super::owner(), TARGET_ANNOTATION: self.target})
    }

    /// A Job on `node` whose pod shares the host's pid namespace.
    pub fn job(&self, namespace: &str, node: Option<&str>, ttl: u64) -> Value {
        let mut pod_spec = json!({
            "hostPID": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"operator": "Exists"}],
            "containers": [self.container()],
        });
        if let Some(n) = node {
            pod_spec["nodeName"] = json!(n);
        }
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.name, "namespace": namespace, "labels": self.labels(), "annotations": self.annotations()},
            "spec": {
                "ttlSecondsAfterFinished": ttl,
                "backoffLimit": 0,
                "template": {"metadata": {"labels": self.labels(), "annotations": self.annotations()}, "spec": pod_spec},
            },
        })
    }

    /// A plain pod (targetless).
    pub fn pod(&self, namespace: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": namespace, "labels": self.labels(), "annotations": self.annotations()},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [self.container()]},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(find: Find, privileged: bool, incoming: bool) -> AgentSpec {
        AgentSpec {
            name: "tether-agent-1a2b".into(),
            image: "img:1".into(),
            port: 47000,
            token: "s3cret".into(),
            find,
            idle_timeout: 15,
            privileged,
            incoming,
            target: "deployment/web".into(),
        }
    }

    #[test]
    fn the_ephemeral_container_targets_the_container_and_keeps_the_token_out_of_argv() {
        let s = spec(Find::ContainerId("containerd://abc123".into()), false, false);
        let p = s.ephemeral_patch("app");
        let c = &p["spec"]["ephemeralContainers"][0];
        assert_eq!(c["targetContainerName"], "app");
        assert_eq!(
            c["args"],
            json!([
                "--target-container-id",
                "containerd://abc123",
                "--listen",
                "0.0.0.0:47000",
                "--idle-timeout",
                "15"
            ])
        );
        assert_eq!(c["env"][0], json!({"name": "TETHER_AGENT_TOKEN", "value": "s3cret"}));
        assert!(!c["args"].to_string().contains("s3cret"));
        assert_eq!(c["securityContext"]["capabilities"]["add"], json!(["SYS_ADMIN", "SYS_PTRACE"]));
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert!(c.get("ports").is_none());
        let s = spec(Find::Itself, false, true);
        assert_eq!(s.capabilities(), ["SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN"]);
    }

    #[test]
    fn the_job_lands_on_the_node_with_host_pid_ttl_and_labels() {
        let j = spec(Find::ContainerId("abc".into()), true, false).job("ops", Some("node-7"), 30);
        assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 30);
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!((pod["hostPID"].clone(), pod["nodeName"].clone()), (json!(true), json!("node-7")));
        assert_eq!(pod["containers"][0]["securityContext"]["privileged"], true);
        assert_eq!(j["metadata"]["labels"]["app.kubernetes.io/managed-by"], "tether");
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "tether-agent");
        let _: k8s_openapi::api::batch::v1::Job = serde_json::from_value(j).unwrap();
        let p = spec(Find::Itself, false, false).pod("default");
        assert_eq!(p["spec"]["containers"][0]["args"][1], "1");
        let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(p).unwrap();
    }
}

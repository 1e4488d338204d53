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
use tether_config::model::AgentConfig;
use tether_protocol::env::AGENT_TOKEN;

use super::{APP_NAME, MANAGED_BY, OWNER_ANNOTATION, TARGET_ANNOTATION};

/// The agent image when `agent.image` is not set: the one released with this version.
pub fn default_image() -> String {
    crate::image::default_reference()
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
    /// The cluster settings of `agent.*` (pull policy and secrets, scheduling, resources,
    /// labels, annotations, service account).
    pub settings: AgentConfig,
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
            settings: config.agent.clone(),
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

    /// The agent's container (for every mode; the ephemeral one adds `targetContainerName`). The
    /// image's entrypoint is the agent, so only arguments are given.
    pub fn container(&self) -> Value {
        let mut c = json!({
            "name": self.name,
            "image": self.image,
            "args": self.args(),
            "env": [{"name": AGENT_TOKEN, "value": self.token}],
            "securityContext": self.security_context(),
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "ports": [{"name": "tether", "containerPort": self.port, "protocol": "TCP"}],
        });
        if let Some(p) = self.settings.image_pull_policy {
            c["imagePullPolicy"] = json!(p.as_str());
        }
        let r = &self.settings.resources;
        if !r.is_empty() {
            let mut res = json!({});
            if !r.requests.is_empty() {
                res["requests"] = json!(r.requests);
            }
            if !r.limits.is_empty() {
                res["limits"] = json!(r.limits);
            }
            c["resources"] = res;
        }
        c
    }

    /// What every pod of ours carries besides its containers: pull secrets, service account,
    /// node selector, tolerations (`tolerate_all` for node Jobs, which must land on their node).
    fn pod_settings(&self, pod_spec: &mut Value, tolerate_all: bool) {
        let s = &self.settings;
        if !s.image_pull_secrets.is_empty() {
            pod_spec["imagePullSecrets"] =
                json!(s.image_pull_secrets.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
        }
        if let Some(sa) = &s.service_account {
            pod_spec["serviceAccountName"] = json!(sa);
        }
        if !s.node_selector.is_empty() {
            pod_spec["nodeSelector"] = json!(s.node_selector);
        }
        let mut tolerations: Vec<Value> = s.tolerations.iter().map(|t| json!(t)).collect();
        if tolerate_all {
            tolerations.insert(0, json!({"operator": "Exists"}));
        }
        if !tolerations.is_empty() {
            pod_spec["tolerations"] = json!(tolerations);
        }
    }

    /// The strategic-merge patch of the pod's `ephemeralcontainers` subresource.
    pub fn ephemeral_patch(&self, target_container: &str) -> Value {
        let mut c = self.container();
        c["targetContainerName"] = json!(target_container);
        // Ephemeral containers may not declare ports or resources.
        let obj = c.as_object_mut().expect("object");
        obj.remove("ports");
        obj.remove("resources");
        json!({"spec": {"ephemeralContainers": [c]}})
    }

    /// The user's labels, then ours (which win: `tether agents` finds agents by them).
    fn labels(&self) -> Value {
        let mut l = json!(self.settings.labels);
        l[MANAGED_BY.0] = json!(MANAGED_BY.1);
        l[APP_NAME.0] = json!(APP_NAME.1);
        l
    }

    fn annotations(&self) -> Value {
        let mut a = json!(self.settings.annotations);
        a[OWNER_ANNOTATION] = json!(super::owner());
        a[TARGET_ANNOTATION] = json!(self.target);
        a
    }

    /// A Job on `node` whose pod shares the host's pid namespace.
    pub fn job(&self, namespace: &str, node: Option<&str>, ttl: u64) -> Value {
        let mut pod_spec = json!({
            "hostPID": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [self.container()],
        });
        self.pod_settings(&mut pod_spec, true);
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
        let mut pod_spec =
            json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [self.container()]});
        self.pod_settings(&mut pod_spec, false);
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": namespace, "labels": self.labels(), "annotations": self.annotations()},
            "spec": pod_spec,
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
            settings: AgentConfig::default(),
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

    #[test]
    fn the_cluster_settings_reach_every_pod_spec() {
        let config: Config = tether_config::parse(
            r#"{"agent": {
                "image_pull_policy": "Never",
                "image_pull_secrets": ["regcred"],
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "dev", "effect": "NoSchedule"}],
                "node_selector": {"kubernetes.io/os": "linux"},
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
                "labels": {"team": "web", "app.kubernetes.io/name": "mine"},
                "annotations": {"example.com/why": "debugging"},
                "service_account": "tether-agent"
            }}"#,
            std::path::Path::new(".tether/tether.json"),
        )
        .unwrap();
        let s = AgentSpec::new("tether-agent-1".into(), &config, 47000, "t".into(), Find::Itself, "targetless".into());
        let pod = s.pod("default");
        let spec = &pod["spec"];
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Never");
        assert!(c.get("command").is_none(), "the image's entrypoint runs the agent");
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}})
        );
        assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]));
        assert_eq!(spec["serviceAccountName"], "tether-agent");
        assert_eq!(spec["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "dedicated", "operator": "Equal", "value": "dev", "effect": "NoSchedule"}])
        );
        assert_eq!(pod["metadata"]["labels"]["team"], "web");
        assert_eq!(pod["metadata"]["labels"]["app.kubernetes.io/name"], "tether-agent", "ours win");
        assert_eq!(pod["metadata"]["annotations"]["example.com/why"], "debugging");
        assert!(pod["metadata"]["annotations"][TARGET_ANNOTATION].is_string());
        let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).unwrap();

        // The Job keeps tolerating every taint first, and its template carries the same settings.
        let job = s.job("ops", Some("node-7"), 5);
        let tpl = &job["spec"]["template"];
        assert_eq!(tpl["spec"]["tolerations"][0], json!({"operator": "Exists"}));
        assert_eq!(tpl["spec"]["tolerations"][1]["key"], "dedicated");
        assert_eq!(tpl["spec"]["imagePullSecrets"][0]["name"], "regcred");
        assert_eq!(tpl["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
        assert_eq!(tpl["metadata"]["labels"]["team"], "web");
        assert_eq!(job["metadata"]["annotations"]["example.com/why"], "debugging");
        let _: k8s_openapi::api::batch::v1::Job = serde_json::from_value(job).unwrap();

        // An ephemeral container takes the pull policy; Kubernetes forbids resources there.
        let p = s.ephemeral_patch("app");
        let e = &p["spec"]["ephemeralContainers"][0];
        assert_eq!(e["imagePullPolicy"], "Never");
        assert!(e.get("resources").is_none() && e.get("ports").is_none());
    }

    #[test]
    fn without_settings_the_specs_are_the_plain_ones() {
        let s = spec(Find::Itself, false, false);
        let pod = s.pod("default");
        for key in ["imagePullSecrets", "serviceAccountName", "nodeSelector", "tolerations"] {
            assert!(pod["spec"].get(key).is_none(), "{key}: {pod}");
        }
        assert!(pod["spec"]["containers"][0].get("imagePullPolicy").is_none());
        assert_eq!(s.job("ns", None, 1)["spec"]["template"]["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    }
}

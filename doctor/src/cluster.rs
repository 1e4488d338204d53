//! Cluster diagnostics: what can go wrong between tether and a Kubernetes target, as
//! [`Diagnostic`]s with ids documented in `docs/doctor.md`.
//!
//! Pure functions over facts the daemon's kube backend gathers (container names, annotations,
//! the agent's last words, the missing permissions); the daemon turns an `error` into the
//! message of the failure and reports warnings while the session starts.
//!
//! | id | severity | when |
//! |---|---|---|
//! | `cluster-multi-container` | error | several application containers, none chosen |
//! | `cluster-container-not-found` | error | the chosen container is not in the pod |
//! | `cluster-no-ready-pod` | error | a workload without a running, ready pod |
//! | `cluster-service-mesh` | warning / info | a mesh sidecar: `agent.port` must be static and excluded |
//! | `cluster-agent-privileged` | error | the agent was refused by the kernel (capabilities, SELinux, Bottlerocket) |
//! | `cluster-rbac` | error | permissions the chosen agent mode needs are missing |
//! | `cluster-leftover-agents` | warning | agents of earlier sessions are still in the cluster |
//! | `cluster-agent-image-pull` | error | the node cannot pull the agent image |
//! | `cluster-agent-pull-secret` | error | a secret of `agent.image_pull_secrets` does not exist |
//! | `cluster-agent-admission` | error | admission (Pod Security, a policy webhook) refused the agent |
//! | `cluster-agent-unschedulable` | error | no node may run the agent's pod (taints, selector, resources) |
//! | `cluster-agent-crashed` | error | the agent exited at start (its last lines) |

use serde_json::json;

use crate::{Diagnostic, Fix, Severity};

/// Containers that are never the application: service-mesh proxies and their init containers,
/// secret and database sidecars, telemetry agents. A pod's container whose name is one of these
/// is skipped when no container was named. Matching is by exact name, because a prefix would
/// also skip an application that happens to be called `envoy-gateway`.
pub const SIDECARS: &[&str] = &[
    // Istio
    "istio-proxy",
    "istio-init",
    "istio-validation",
    // Linkerd
    "linkerd-proxy",
    "linkerd-init",
    "linkerd-network-validator",
    // Consul, Kuma, plain Envoy
    "consul-dataplane",
    "consul-connect-envoy-sidecar",
    "consul-connect-inject-init",
    "kuma-sidecar",
    "kuma-init",
    "envoy",
    "envoy-sidecar",
    // Secrets and databases
    "vault-agent",
    "vault-agent-init",
    "cloud-sql-proxy",
    "cloudsql-proxy",
    // Telemetry
    "datadog-agent",
    "otel-collector",
    "aws-xray-daemon",
];

/// Whether a container of this name is a sidecar (see [`SIDECARS`]).
pub fn is_sidecar(name: &str) -> bool {
    SIDECARS.contains(&name)
}

/// The container to target in `pod`: `wanted` when given, else the only application container.
/// `target` is the path the user gave (`deployment/web`), used in the fix.
pub fn choose_container(
    pod: &str,
    target: &str,
    containers: &[&str],
    wanted: Option<&str>,
) -> Result<String, Diagnostic> {
    if let Some(w) = wanted {
        if containers.contains(&w) {
            return Ok(w.to_string());
        }
        return Err(Diagnostic::new(
            "cluster-container-not-found",
            Severity::Error,
            format!("pod {pod} has no container `{w}`; its containers are {}", containers.join(", ")),
        )
        .with_fix(Fix::manual(format!("use one of: {}", paths(target, containers).join(", ")), None)));
    }
    let apps: Vec<&str> = containers.iter().copied().filter(|c| !is_sidecar(c)).collect();
    match (apps.as_slice(), containers) {
        ([one], _) => Ok(one.to_string()),
        ([], [only]) => Ok(only.to_string()),
        ([], _) => Err(Diagnostic::new(
            "cluster-multi-container",
            Severity::Error,
            format!("pod {pod} has only sidecar containers ({}); name the one to target", containers.join(", ")),
        )
        .with_fix(Fix::manual(format!("use one of: {}", paths(target, containers).join(", ")), None))),
        (several, _) => {
            let skipped: Vec<&str> = containers.iter().copied().filter(|c| is_sidecar(c)).collect();
            let mut message = format!(
                "pod {pod} has {} application containers ({}) and none was chosen",
                several.len(),
                several.join(", ")
            );
            if !skipped.is_empty() {
                message.push_str(&format!(" (sidecars skipped: {})", skipped.join(", ")));
            }
            Err(Diagnostic::new("cluster-multi-container", Severity::Error, message).with_fix(Fix::manual(
                format!("target one of them: {} (or set target.container)", paths(target, several).join(", ")),
                Some(json!({"target.container": several[0]})),
            )))
        }
    }
}

/// `deployment/web` + `app` -> `deployment/web/container/app`.
fn paths(target: &str, containers: &[&str]) -> Vec<String> {
    let base = target.split("/container/").next().unwrap_or(target);
    containers.iter().map(|c| format!("{base}/container/{c}")).collect()
}

/// A workload without a running, ready pod. `pods` are `(name, state)` pairs, the state in
/// words (`Pending`, `Running, not ready`).
pub fn no_ready_pod(target: &str, namespace: &str, pods: &[(String, String)]) -> Diagnostic {
    let message = if pods.is_empty() {
        format!("{target} in namespace {namespace} has no pods")
    } else {
        let list: Vec<String> = pods.iter().map(|(n, s)| format!("{n} ({s})")).collect();
        format!("{target} in namespace {namespace} has no running, ready pod: {}", list.join(", "))
    };
    Diagnostic::new("cluster-no-ready-pod", Severity::Error, message).with_fix(Fix::manual(
        format!("wait until a pod is ready (`kubectl get pods -n {namespace}`), or target a pod with pod/NAME"),
        None,
    ))
}

/// The meshes tether recognises, by sidecar container or annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mesh {
    Istio,
    Linkerd,
    Other,
}

/// Which mesh, if any, injects `containers` / `annotations` (pod annotation keys).
pub fn detect_mesh<'a>(containers: &[&str], annotations: impl IntoIterator<Item = &'a str>) -> Option<Mesh> {
    let keys: Vec<&str> = annotations.into_iter().collect();
    if containers.contains(&"istio-proxy") || keys.iter().any(|k| k.starts_with("sidecar.istio.io/")) {
        Some(Mesh::Istio)
    } else if containers.contains(&"linkerd-proxy") || keys.iter().any(|k| k.starts_with("linkerd.io/")) {
        Some(Mesh::Linkerd)
    } else if containers.iter().any(|c| matches!(*c, "envoy" | "envoy-sidecar" | "kuma-sidecar" | "consul-dataplane")) {
        Some(Mesh::Other)
    } else {
        None
    }
}

/// The annotation that makes `mesh` leave inbound traffic to `port` alone.
pub fn mesh_annotation(mesh: Mesh, port: u16) -> Option<(String, String)> {
    match mesh {
        Mesh::Istio => Some(("traffic.sidecar.istio.io/excludeInboundPorts".into(), port.to_string())),
        Mesh::Linkerd => Some(("config.linkerd.io/skip-inbound-ports".into(), port.to_string())),
        Mesh::Other => None,
    }
}

/// A service mesh on the target: the agent's port must be static so that the mesh can be told
/// to leave it alone. `port` is `agent.port`.
pub fn service_mesh(pod: &str, mesh: Mesh, port: Option<u16>) -> Diagnostic {
    let name = match mesh {
        Mesh::Istio => "Istio",
        Mesh::Linkerd => "Linkerd",
        Mesh::Other => "a service mesh",
    };
    let shown = port.unwrap_or(47000);
    let annotation = mesh_annotation(mesh, shown);
    let how = match &annotation {
        Some((k, v)) => format!("add the pod annotation `{k}: \"{v}\"` (in the workload's pod template)"),
        None => format!("exclude inbound port {shown} from the mesh's interception"),
    };
    match port {
        None => Diagnostic::new(
            "cluster-service-mesh",
            Severity::Warning,
            format!("pod {pod} runs {name}: the agent's port must be static (agent.port) and excluded from the mesh"),
        )
        .with_fix(Fix::manual(format!("set agent.port to {shown} and {how}"), Some(json!({"agent.port": shown})))),
        Some(_) => Diagnostic::new(
            "cluster-service-mesh",
            Severity::Info,
            format!("pod {pod} runs {name}: the agent listens on agent.port {shown}"),
        )
        .with_fix(Fix::manual(format!("if the agent cannot be reached, {how}"), None)),
    }
}

/// Whether the agent's last words say the kernel refused it.
pub fn looks_like_permission_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["operation not permitted", "permission denied", "eperm", "eacces", "needs root", "cap_sys"]
        .iter()
        .any(|w| m.contains(w))
}

/// The agent failed with `message` (its termination message); `os_image` is the node's
/// `status.nodeInfo.osImage` when it could be read.
pub fn agent_privileged(message: &str, os_image: Option<&str>, privileged: bool) -> Option<Diagnostic> {
    let bottlerocket = os_image.is_some_and(|o| o.to_ascii_lowercase().contains("bottlerocket"));
    if privileged || !(looks_like_permission_error(message) || bottlerocket) {
        return None;
    }
    let why = if bottlerocket {
        "the node runs Bottlerocket, whose SELinux policy stops an unprivileged agent"
    } else {
        "the kernel refused the agent (missing capabilities, or SELinux enforcing on the node)"
    };
    Some(
        Diagnostic::new("cluster-agent-privileged", Severity::Error, format!("{why}: {}", message.trim()))
            .with_fix(Fix::manual("set agent.privileged: true", Some(json!({"agent.privileged": true})))),
    )
}

/// One permission: `verb` on `resource` (`pods/ephemeralcontainers`) of API `group` (`""` core).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub namespace: String,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { String::new() } else { format!(".{}", self.group) };
        let (res, sub) = match self.resource.split_once('/') {
            Some((r, s)) => (r, format!("/{s}")),
            None => (self.resource, String::new()),
        };
        write!(f, "{} {res}{group}{sub} in namespace {}", self.verb, self.namespace)
    }
}

/// Permissions the chosen agent mode needs that the user does not have.
pub fn rbac_missing(mode: &str, missing: &[Permission]) -> Option<Diagnostic> {
    if missing.is_empty() {
        return None;
    }
    let list: Vec<String> = missing.iter().map(|p| p.to_string()).collect();
    Some(
        Diagnostic::new(
            "cluster-rbac",
            Severity::Error,
            format!("starting the agent as {mode} needs permissions you do not have: {}", list.join("; ")),
        )
        .with_fix(Fix::manual(
            "ask a cluster admin for a Role with these verbs, or choose another mode (agent.ephemeral)",
            None,
        )),
    )
}

/// Agents of earlier sessions still in the cluster (`names`: `namespace/name`).
pub fn leftover_agents(names: &[String]) -> Option<Diagnostic> {
    if names.is_empty() {
        return None;
    }
    Some(
        Diagnostic::new(
            "cluster-leftover-agents",
            Severity::Warning,
            format!("{} agent(s) of earlier sessions are still in the cluster: {}", names.len(), names.join(", ")),
        )
        .with_fix(Fix::manual("run `tether agents --prune`", None)),
    )
}

/// The node could not pull the agent image `image`: `reason` (`ErrImagePull`,
/// `ImagePullBackOff`, `InvalidImageName`) and the kubelet's `message`. `default_image`: the
/// image is the default (`agent.image` unset), which a cluster without internet cannot reach.
pub fn image_pull(image: &str, reason: &str, message: &str, default_image: bool) -> Diagnostic {
    let m = message.to_ascii_lowercase();
    let auth =
        ["unauthorized", "authentication required", "denied", "forbidden", "401", "403"].iter().any(|w| m.contains(w));
    let mut how = if auth {
        "the registry wants credentials: put them in a Secret of type kubernetes.io/dockerconfigjson \
         (`kubectl create secret docker-registry NAME ...`) and name it in agent.image_pull_secrets; "
            .to_string()
    } else {
        String::new()
    };
    how.push_str(
        "make the image reachable from the node: `tether agent-image push REGISTRY/REPO:TAG` and set agent.image to it, \
         or load it onto the nodes without a registry (`tether agent-image load --into kind|minikube|containerd`) \
         and set agent.image_pull_policy: IfNotPresent",
    );
    if default_image {
        how.push_str(&format!(" (the default {image} is the project's published image)"));
    }
    let edit =
        if auth { json!({"agent.image_pull_secrets": ["NAME"]}) } else { json!({"agent.image": "REGISTRY/REPO:TAG"}) };
    Diagnostic::new(
        "cluster-agent-image-pull",
        Severity::Error,
        format!("the node cannot pull the agent image {image}: {reason}: {}", message.trim()),
    )
    .with_fix(Fix::manual(how, Some(edit)))
}

/// Secrets named in `agent.image_pull_secrets` that do not exist in `namespace`.
pub fn pull_secret_missing(missing: &[String], namespace: &str) -> Option<Diagnostic> {
    if missing.is_empty() {
        return None;
    }
    Some(
        Diagnostic::new(
            "cluster-agent-pull-secret",
            Severity::Error,
            format!(
                "agent.image_pull_secrets names {} that namespace {namespace} does not have",
                missing.iter().map(|m| format!("secret {m}")).collect::<Vec<_>>().join(", ")
            ),
        )
        .with_fix(Fix::manual(
            format!(
                "create it in namespace {namespace} (`kubectl -n {namespace} create secret docker-registry NAME \
                 --docker-server=REGISTRY --docker-username=USER --docker-password=...`), or fix the name"
            ),
            None,
        )),
    )
}

/// Admission refused the agent's pod (or container) with `message` in `namespace`.
pub fn admission_rejected(message: &str, namespace: &str) -> Diagnostic {
    let m = message.to_ascii_lowercase();
    let how = if m.contains("podsecurity") || m.contains("pod security") {
        format!(
            "the namespace's Pod Security level forbids the agent's capabilities (SYS_ADMIN, SYS_PTRACE, NET_ADMIN, \
             root): run the agent in a namespace that allows them (agent.namespace, with agent.ephemeral: false), or \
             ask an admin for `kubectl label namespace {namespace} pod-security.kubernetes.io/enforce=privileged`"
        )
    } else if m.contains("webhook") || m.contains("policy") || m.contains("denied the request") {
        "a policy (an admission webhook: Kyverno, Gatekeeper, ...) refused the agent: ask for an exemption for \
         pods labelled app.kubernetes.io/name=tether-agent, or add what the policy asks through agent.labels, \
         agent.annotations, agent.resources or agent.image"
            .to_string()
    } else {
        "the cluster's admission refused the agent; its message says which rule".to_string()
    };
    Diagnostic::new(
        "cluster-agent-admission",
        Severity::Error,
        format!("the cluster refused the agent in namespace {namespace}: {}", message.trim()),
    )
    .with_fix(Fix::manual(how, None))
}

/// The taints a scheduling message names ("1 node(s) had untolerated taint {dedicated: dev}"):
/// `(key, value)` pairs, in order, each once.
pub fn untolerated_taints(message: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for part in message.split("untolerated taint").skip(1) {
        let part = part.trim_start_matches('s').trim_start_matches("(s)").trim_start();
        let Some(inner) = part.strip_prefix('{').and_then(|p| p.split_once('}')).map(|(i, _)| i) else { continue };
        let (k, v) = match inner.split_once(':') {
            Some((k, v)) => (k.trim(), Some(v.trim()).filter(|v| !v.is_empty())),
            None => (inner.trim(), None),
        };
        if !k.is_empty() && !out.iter().any(|(o, _)| o == k) {
            out.push((k.to_string(), v.map(str::to_string)));
        }
    }
    out
}

/// No node may run the agent's pod: the scheduler's `message`.
pub fn unschedulable(message: &str) -> Diagnostic {
    let taints = untolerated_taints(message);
    let m = message.to_ascii_lowercase();
    let (how, edit) = if !taints.is_empty() {
        let tolerations: Vec<serde_json::Value> = taints
            .iter()
            .map(|(k, v)| match v {
                Some(v) => json!({"key": k, "operator": "Equal", "value": v}),
                None => json!({"key": k, "operator": "Exists"}),
            })
            .collect();
        (
            format!(
                "the nodes are tainted: let the agent tolerate it with agent.tolerations: {}",
                serde_json::Value::from(tolerations.clone())
            ),
            Some(json!({"agent.tolerations": tolerations})),
        )
    } else if m.contains("node affinity") || m.contains("selector") {
        ("no node has the labels of agent.node_selector: fix or remove it".to_string(), None)
    } else if m.contains("insufficient") {
        ("no node has room for agent.resources.requests: lower them".to_string(), None)
    } else {
        ("the scheduler's message says what no node offers".to_string(), None)
    };
    Diagnostic::new(
        "cluster-agent-unschedulable",
        Severity::Error,
        format!("no node can run the agent: {}", message.trim()),
    )
    .with_fix(Fix::manual(how, edit))
}

/// The agent exited at start with `code`; `last_lines` are its last log lines.
pub fn agent_crashed(code: Option<i32>, last_lines: &str) -> Diagnostic {
    let lines = last_lines.trim();
    let what = match code {
        Some(c) => format!("the agent exited at start with code {c}"),
        None => "the agent's container could not start".to_string(),
    };
    let how = if lines.contains("exec format error") {
        "the image holds an agent for another CPU: build it for the node's platform \
         (`tether agent-image build --platform linux/arm64 ...`)"
    } else if lines.contains("no such file or directory") && lines.contains("exec") {
        "agent.image is not a tether agent image (its entrypoint must be the agent): use `tether agent-image build`"
    } else {
        "its last lines say why; `kubectl logs` shows the same"
    };
    let shown = if lines.is_empty() { String::new() } else { format!(": {}", lines.replace('\n', " | ")) };
    Diagnostic::new("cluster-agent-crashed", Severity::Error, format!("{what}{shown}")).with_fix(Fix::manual(how, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_are_skipped_and_a_single_app_is_chosen() {
        let c = ["istio-proxy", "app", "vault-agent"];
        assert_eq!(choose_container("web-1", "deployment/web", &c, None).unwrap(), "app");
        assert_eq!(choose_container("web-1", "deployment/web", &["only"], None).unwrap(), "only");
        assert_eq!(choose_container("web-1", "deployment/web", &["envoy"], None).unwrap(), "envoy");
        assert_eq!(choose_container("p", "pod/p", &c, Some("istio-proxy")).unwrap(), "istio-proxy");
    }

    #[test]
    fn several_apps_are_an_error_that_shows_the_paths() {
        let d = choose_container("web-1", "deployment/web", &["app", "worker", "linkerd-proxy"], None).unwrap_err();
        assert_eq!(d.id, "cluster-multi-container");
        assert!(d.message.contains("2 application containers (app, worker)"), "{}", d.message);
        assert!(d.message.contains("sidecars skipped: linkerd-proxy"), "{}", d.message);
        let fix = d.fix.unwrap().description;
        assert!(
            fix.contains("deployment/web/container/app") && fix.contains("deployment/web/container/worker"),
            "{fix}"
        );
        let d = choose_container("web-1", "deployment/web/container/x", &["app"], Some("x")).unwrap_err();
        assert_eq!(d.id, "cluster-container-not-found");
        assert!(d.fix.unwrap().description.contains("deployment/web/container/app"));
    }

    #[test]
    fn meshes_get_the_exact_annotation() {
        let m = detect_mesh(&["app", "istio-proxy"], []).unwrap();
        assert_eq!(m, Mesh::Istio);
        let d = service_mesh("web-1", m, None);
        assert_eq!(d.severity, Severity::Warning);
        let fix = d.fix.unwrap();
        assert!(
            fix.description.contains("traffic.sidecar.istio.io/excludeInboundPorts: \"47000\""),
            "{}",
            fix.description
        );
        assert_eq!(fix.edit, Some(json!({"agent.port": 47000})));
        let d = service_mesh("web-1", Mesh::Linkerd, Some(5000));
        assert!(d.fix.unwrap().description.contains("config.linkerd.io/skip-inbound-ports: \"5000\""));
        assert_eq!(detect_mesh(&["app"], ["linkerd.io/inject"]), Some(Mesh::Linkerd));
        assert_eq!(detect_mesh(&["app"], ["team"]), None);
    }

    #[test]
    fn permission_errors_suggest_privileged() {
        let d = agent_privileged("cannot enter its network namespace (setns): Operation not permitted", None, false)
            .unwrap();
        assert_eq!(d.id, "cluster-agent-privileged");
        assert_eq!(d.fix.unwrap().edit, Some(json!({"agent.privileged": true})));
        assert!(agent_privileged("boom", Some("Bottlerocket OS 1.19.2 (aws-k8s-1.29)"), false).is_some());
        assert!(agent_privileged("Operation not permitted", None, true).is_none());
        assert!(agent_privileged("image not found", None, false).is_none());
    }

    #[test]
    fn rbac_and_leftovers_name_what_is_missing() {
        let p =
            Permission { verb: "patch", group: "", resource: "pods/ephemeralcontainers", namespace: "default".into() };
        assert_eq!(p.to_string(), "patch pods/ephemeralcontainers in namespace default");
        let j = Permission { verb: "create", group: "batch", resource: "jobs", namespace: "ops".into() };
        assert_eq!(j.to_string(), "create jobs.batch in namespace ops");
        let d = rbac_missing("an ephemeral container", &[p]).unwrap();
        assert!(d.message.contains("patch pods/ephemeralcontainers"));
        assert!(rbac_missing("x", &[]).is_none());
        assert!(
            leftover_agents(&["default/tether-agent-1".into()]).unwrap().fix.unwrap().description.contains("--prune")
        );
        let d = no_ready_pod("deployment/web", "default", &[("web-1".into(), "Pending".into())]);
        assert!(d.message.contains("no running, ready pod: web-1 (Pending)"));
    }

    #[test]
    fn image_pull_failures_name_the_image_and_the_commands() {
        let d = image_pull(
            "ghcr.io/tether-dev/tether-agent:0.1.0",
            "ErrImagePull",
            "failed to resolve reference: not found",
            true,
        );
        assert_eq!(d.id, "cluster-agent-image-pull");
        assert!(
            d.message.contains("ghcr.io/tether-dev/tether-agent:0.1.0") && d.message.contains("not found"),
            "{}",
            d.message
        );
        let fix = d.fix.unwrap();
        assert!(
            fix.description.contains("tether agent-image push") && fix.description.contains("tether agent-image load")
        );
        assert!(!fix.description.contains("image_pull_secrets"));
        let d = image_pull("reg.test/a:1", "ImagePullBackOff", "pull access denied: unauthorized", false);
        assert!(d.fix.unwrap().description.contains("agent.image_pull_secrets"));
    }

    #[test]
    fn missing_pull_secrets_are_named() {
        assert!(pull_secret_missing(&[], "ns").is_none());
        let d = pull_secret_missing(&["regcred".into()], "shop").unwrap();
        assert!(d.message.contains("secret regcred") && d.message.contains("shop"), "{}", d.message);
        assert!(d.fix.unwrap().description.contains("create secret docker-registry"));
    }

    #[test]
    fn admission_rejections_get_the_rule_they_broke() {
        let ps = r#"pods "tether-agent-1" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "tether-agent-1" must not include "NET_ADMIN", "SYS_ADMIN" in securityContext.capabilities.add)"#;
        let d = admission_rejected(ps, "shop");
        assert_eq!(d.id, "cluster-agent-admission");
        assert!(d.fix.unwrap().description.contains("pod-security.kubernetes.io/enforce=privileged"));
        let wh = r#"admission webhook "validate.kyverno.svc" denied the request: policy disallow-capabilities"#;
        assert!(admission_rejected(wh, "shop").fix.unwrap().description.contains("exemption"));
    }

    #[test]
    fn taints_become_tolerations() {
        let m = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: dev}, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available.";
        assert_eq!(
            untolerated_taints(m),
            [
                ("dedicated".to_string(), Some("dev".to_string())),
                ("node-role.kubernetes.io/control-plane".to_string(), None)
            ]
        );
        let d = unschedulable(m);
        assert_eq!(d.id, "cluster-agent-unschedulable");
        let fix = d.fix.unwrap();
        assert_eq!(
            fix.edit.unwrap(),
            json!({"agent.tolerations": [{"key": "dedicated", "operator": "Equal", "value": "dev"}, {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]})
        );
        let d = unschedulable("0/1 nodes are available: 1 Insufficient memory.");
        assert!(d.fix.unwrap().description.contains("agent.resources"));
    }

    #[test]
    fn a_crash_shows_its_last_lines() {
        let d = agent_crashed(Some(2), "tether-agent: TETHER_AGENT_TOKEN is not set\n");
        assert_eq!(d.id, "cluster-agent-crashed");
        assert!(d.message.contains("code 2") && d.message.contains("TETHER_AGENT_TOKEN is not set"), "{}", d.message);
        let d = agent_crashed(Some(255), "exec /tether-agent: exec format error");
        assert!(d.fix.unwrap().description.contains("--platform"));
    }
}

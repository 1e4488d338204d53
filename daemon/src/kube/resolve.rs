//! From a target path to one pod and one container.
//!
//! `pod/NAME` is that pod, which must be running. `deployment/NAME` and `statefulset/NAME` are
//! the pods their selector matches, of which the oldest running, ready one (not being deleted)
//! is chosen; none ready is an error that lists the pods and their states. The container is the
//! named one, else the only application container once sidecars are skipped
//! ([`tether_doctor::cluster::choose_container`]), and it must be running: its id (from the
//! pod's status) is how the agent finds its process.

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::ListParams;
use tether_config::target::TargetKind;
use tether_doctor::Diagnostic;

use super::{Cluster, describe, is_not_found};

/// What a target path resolved to.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub namespace: String,
    pub pod: Pod,
    pub pod_name: String,
    pub container: String,
    /// `containerd://…`, as the pod's status says it.
    pub container_id: String,
    pub node: Option<String>,
}

/// A doctor diagnostic as the error of a failed step: message, then the fix.
pub fn diagnostic_error(d: &Diagnostic) -> anyhow::Error {
    match &d.fix {
        Some(f) => anyhow::anyhow!("{} [{}]\n  fix: {}", d.message, d.id, f.description),
        None => anyhow::anyhow!("{} [{}]", d.message, d.id),
    }
}

/// A label selector as the API's query string (`app=web,tier in (a,b)`).
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        });
    }
    parts.join(",")
}

/// Whether a pod is running, ready and not on its way out.
pub fn is_ready(pod: &Pod) -> bool {
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    running && ready && pod.metadata.deletion_timestamp.is_none()
}

/// A pod's state in words: `Pending`, `Running, not ready`, `Terminating`.
pub fn state_words(pod: &Pod) -> String {
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into());
    if phase == "Running" && !is_ready(pod) { format!("{phase}, not ready") } else { phase }
}

/// The names of a pod's (regular) containers.
pub fn container_names(pod: &Pod) -> Vec<String> {
    pod.spec.as_ref().map(|s| s.containers.iter().map(|c| c.name.clone()).collect()).unwrap_or_default()
}

/// Picks the pod of a workload: the oldest ready one.
fn pick(target: &str, namespace: &str, mut pods: Vec<Pod>) -> anyhow::Result<Pod> {
    pods.sort_by(|a, b| {
        let ka = (a.metadata.creation_timestamp.clone(), a.metadata.name.clone());
        let kb = (b.metadata.creation_timestamp.clone(), b.metadata.name.clone());
        ka.cmp(&kb)
    });
    if let Some(p) = pods.iter().find(|p| is_ready(p)) {
        return Ok(p.clone());
    }
    let states: Vec<(String, String)> =
        pods.iter().map(|p| (p.metadata.name.clone().unwrap_or_default(), state_words(p))).collect();
    Err(diagnostic_error(&tether_doctor::cluster::no_ready_pod(target, namespace, &states)))
}

/// The pod a workload's selector matches, the oldest ready one.
async fn workload_pod(
    cluster: &Cluster,
    ns: &str,
    target: &str,
    selector: Option<LabelSelector>,
) -> anyhow::Result<Pod> {
    let sel = selector.map(|s| selector_string(&s)).unwrap_or_default();
    if sel.is_empty() {
        bail!("{target} has no pod selector");
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(|e| anyhow::anyhow!("listing the pods of {target} ({sel}): {}", describe(&e)))?;
    pick(target, ns, list.items)
}

/// Resolves `kind/name` in `ns`, choosing `container` or the application container.
pub async fn resolve(
    cluster: &Cluster,
    ns: &str,
    kind: TargetKind,
    name: &str,
    container: Option<&str>,
) -> anyhow::Result<Resolved> {
    let target = format!("{}/{name}", kind.as_str());
    let not_found = |e: kube::Error| {
        if is_not_found(&e) {
            anyhow::anyhow!("{target} not found in namespace {ns} (see `tether ls --namespace {ns}`)")
        } else {
            anyhow::anyhow!("reading {target} in namespace {ns}: {}", describe(&e))
        }
    };
    let pod = match kind {
        TargetKind::Pod => {
            let pod = Api::<Pod>::namespaced(cluster.client.clone(), ns).get(name).await.map_err(not_found)?;
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if !running || pod.metadata.deletion_timestamp.is_some() {
                bail!("pod {name} in namespace {ns} is not running ({})", state_words(&pod));
            }
            pod
        }
        TargetKind::Deployment => {
            let d = Api::<Deployment>::namespaced(cluster.client.clone(), ns).get(name).await.map_err(not_found)?;
            workload_pod(cluster, ns, &target, Some(d.spec.selector)).await?
        }
        TargetKind::StatefulSet => {
            let s = Api::<StatefulSet>::namespaced(cluster.client.clone(), ns).get(name).await.map_err(not_found)?;
            workload_pod(cluster, ns, &target, Some(s.spec.selector)).await?
        }
        other => {
            bail!("{} targets are not supported yet; use pod/NAME, deployment/NAME or statefulset/NAME", other.as_str())
        }
    };
    let pod_name = pod.metadata.name.clone().context("the pod has no name")?;
    let names = container_names(&pod);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let path = match container {
        Some(c) => format!("{target}/container/{c}"),
        None => target.clone(),
    };
    let chosen = tether_doctor::cluster::choose_container(&pod_name, &path, &refs, container)
        .map_err(|d| diagnostic_error(&d))?;
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == chosen).cloned());
    let running = status.as_ref().and_then(|s| s.state.as_ref()).and_then(|s| s.running.as_ref()).is_some();
    let container_id = status.as_ref().and_then(|s| s.container_id.clone()).unwrap_or_default();
    if !running || container_id.is_empty() {
        let why = status
            .and_then(|s| s.state)
            .and_then(|s| s.waiting.and_then(|w| w.reason).or(s.terminated.and_then(|t| t.reason)))
            .unwrap_or_else(|| "no status".into());
        bail!("container {chosen} of pod {pod_name} is not running ({why})");
    }
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    Ok(Resolved { namespace: ns.to_string(), pod_name, container: chosen, container_id, node, pod })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    fn pod(name: &str, ready: bool, created: &str, containers: &[&str]) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created, "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": containers.iter().map(|c| json!({"name": c, "image": "x"})).collect::<Vec<_>>()},
            "status": {
                "phase": if ready { "Running" } else { "Pending" },
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": containers.iter().map(|c| json!({
                    "name": c, "ready": ready, "restartCount": 0, "image": "x", "imageID": "",
                    "containerID": format!("containerd://{c}0123456789abcdef"),
                    "state": if ready { json!({"running": {}}) } else { json!({"waiting": {"reason": "ContainerCreating"}}) }
                })).collect::<Vec<_>>()
            }
        })
    }

    /// A kube client whose API server is a closure over the requests (kube's mock service).
    fn mock(answer: impl Fn(&Request<Body>) -> (u16, serde_json::Value) + Send + 'static) -> Cluster {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (code, body) = answer(&req);
                let resp =
                    Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap();
                send.send_response(resp);
            }
        });
        Cluster { client: kube::Client::new(service, "default"), namespace: "default".into() }
    }

    fn deployment_world(pods: Vec<serde_json::Value>) -> Cluster {
        mock(move |req| {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            if path == "/apis/apps/v1/namespaces/default/deployments/web" {
                (
                    200,
                    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}}}),
                )
            } else if path == "/api/v1/namespaces/default/pods" && query.contains("labelSelector=app%3Dweb") {
                (200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods.clone()}))
            } else {
                (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
                )
            }
        })
    }

    #[tokio::test]
    async fn a_deployment_resolves_to_its_oldest_ready_pod_and_app_container() {
        let c = deployment_world(vec![
            pod("web-c", true, "2024-01-03T00:00:00Z", &["app", "istio-proxy"]),
            pod("web-a", false, "2024-01-01T00:00:00Z", &["app", "istio-proxy"]),
            pod("web-b", true, "2024-01-02T00:00:00Z", &["app", "istio-proxy"]),
        ]);
        let r = resolve(&c, "default", TargetKind::Deployment, "web", None).await.unwrap();
        assert_eq!((r.pod_name.as_str(), r.container.as_str()), ("web-b", "app"));
        assert_eq!(r.container_id, "containerd://app0123456789abcdef");
        assert_eq!(r.node.as_deref(), Some("node-1"));
    }

    #[tokio::test]
    async fn no_ready_pod_and_several_containers_are_clear_errors() {
        let c = deployment_world(vec![pod("web-a", false, "2024-01-01T00:00:00Z", &["app"])]);
        let e = resolve(&c, "default", TargetKind::Deployment, "web", None).await.unwrap_err().to_string();
        assert!(e.contains("no running, ready pod: web-a (Pending)") && e.contains("cluster-no-ready-pod"), "{e}");
        let c = deployment_world(vec![pod("web-a", true, "2024-01-01T00:00:00Z", &["app", "worker"])]);
        let e = resolve(&c, "default", TargetKind::Deployment, "web", None).await.unwrap_err().to_string();
        assert!(e.contains("deployment/web/container/worker"), "{e}");
        let r = resolve(&c, "default", TargetKind::Deployment, "web", Some("worker")).await.unwrap();
        assert_eq!(r.container, "worker");
        let e = resolve(&c, "default", TargetKind::StatefulSet, "web", None).await.unwrap_err().to_string();
        assert!(e.contains("statefulset/web not found in namespace default"), "{e}");
    }

    #[test]
    fn selectors_become_query_strings() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "canary", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b),!canary");
    }
}

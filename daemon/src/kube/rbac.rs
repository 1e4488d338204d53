//! The permissions each agent mode needs, checked before anything is created.
//!
//! One SelfSubjectAccessReview per permission, all at once. A cluster that does not serve the
//! review API (or refuses it) is not a reason to stop: the check is skipped and the first call
//! that lacks a permission reports it.

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::Api;
use kube::api::PostParams;
use tether_doctor::cluster::Permission;

use super::Cluster;

/// How the agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ephemeral,
    Job,
    Targetless,
}

impl Mode {
    pub fn words(self) -> &'static str {
        match self {
            Mode::Ephemeral => "an ephemeral container",
            Mode::Job => "a node Job",
            Mode::Targetless => "a targetless pod",
        }
    }
}

fn p(verb: &'static str, group: &'static str, resource: &'static str, ns: &str) -> Permission {
    Permission { verb, group, resource, namespace: ns.to_string() }
}

/// What `mode` needs: `target_ns` holds the target, `agent_ns` the agent's Job or pod.
pub fn needed(mode: Mode, target_ns: &str, agent_ns: &str) -> Vec<Permission> {
    match mode {
        Mode::Ephemeral => vec![
            p("get", "", "pods", target_ns),
            p("patch", "", "pods/ephemeralcontainers", target_ns),
            p("create", "", "pods/portforward", target_ns),
        ],
        Mode::Job => vec![
            p("get", "", "pods", target_ns),
            p("create", "batch", "jobs", agent_ns),
            p("delete", "batch", "jobs", agent_ns),
            p("list", "", "pods", agent_ns),
            p("create", "", "pods/portforward", agent_ns),
        ],
        Mode::Targetless => vec![
            p("create", "", "pods", agent_ns),
            p("delete", "", "pods", agent_ns),
            p("create", "", "pods/portforward", agent_ns),
        ],
    }
}

/// The permissions of `wanted` the user lacks; `None` when the check could not be made.
pub async fn missing(cluster: &Cluster, wanted: &[Permission]) -> Option<Vec<Permission>> {
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let checks = wanted.iter().map(|perm| {
        let api = api.clone();
        let (resource, subresource) = match perm.resource.split_once('/') {
            Some((r, s)) => (r.to_string(), Some(s.to_string())),
            None => (perm.resource.to_string(), None),
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(perm.namespace.clone()),
                    verb: Some(perm.verb.to_string()),
                    group: Some(perm.group.to_string()),
                    resource: Some(resource),
                    subresource,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        async move { api.create(&PostParams::default(), &review).await }
    });
    let answers = futures::future::join_all(checks).await;
    let mut out = Vec::new();
    for (perm, answer) in wanted.iter().zip(answers) {
        match answer {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => out.push(perm.clone()),
            Err(e) => {
                tracing::debug!("SelfSubjectAccessReview failed ({}); not checking permissions", super::describe(&e));
                return None;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_names_its_permissions() {
        let e: Vec<String> = needed(Mode::Ephemeral, "web", "web").iter().map(|p| p.to_string()).collect();
        assert!(e.contains(&"patch pods/ephemeralcontainers in namespace web".to_string()), "{e:?}");
        let j: Vec<String> = needed(Mode::Job, "web", "ops").iter().map(|p| p.to_string()).collect();
        assert!(j.contains(&"create jobs.batch in namespace ops".to_string()), "{j:?}");
        assert!(j.contains(&"get pods in namespace web".to_string()), "{j:?}");
    }
}

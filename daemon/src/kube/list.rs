//! `tether ls` (what can be targeted) and `tether agents [--prune]` (our agents in the cluster).
//!
//! Both run in the CLI process against the cluster directly (no daemon needed). `ls` makes one
//! list call per kind — deployments, statefulsets, pods — all at once, which keeps it fast
//! enough for an editor's picker; [`list_targets`] is what `tether/listTargets` can call.
//!
//! Agents are found by their labels (Jobs and pods the daemon created) and by name (ephemeral
//! containers `tether-agent-…` that still run). A Job or pod is *leftover* when it finished, or
//! when the daemon that made it (annotation `tether.dev/owner: HOST/PID`) ran on this host and
//! is gone; `--prune` deletes those. Ephemeral containers cannot be removed from a pod: they
//! exit by themselves once idle, so they are listed, never pruned.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde::Serialize;
use tether_doctor::cluster::is_sidecar;

use super::{AGENT_PREFIX, AGENT_SELECTOR, Cluster, OWNER_ANNOTATION, TARGET_ANNOTATION, describe};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ListedContainer {
    pub name: String,
    /// A service-mesh or other sidecar: skipped unless named.
    pub sidecar: bool,
}

/// One target a user may pick.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Listed {
    /// What to pass as `--target` (`deployment/web`).
    pub path: String,
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
    pub containers: Vec<ListedContainer>,
    /// `ready/desired` for workloads, the phase for pods.
    pub status: String,
}

fn containers_of(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> Vec<ListedContainer> {
    spec.map(|s| {
        s.containers.iter().map(|c| ListedContainer { name: c.name.clone(), sidecar: is_sidecar(&c.name) }).collect()
    })
    .unwrap_or_default()
}

fn api<K>(cluster: &Cluster, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    }
}

/// Deployments, statefulsets and pods of `namespace` (`None`: every namespace), in that order,
/// each sorted by namespace and name.
pub async fn list_targets(cluster: &Cluster, namespace: Option<&str>) -> anyhow::Result<Vec<Listed>> {
    let lp = ListParams::default();
    let (d, s, p) =
        (api::<Deployment>(cluster, namespace), api::<StatefulSet>(cluster, namespace), api::<Pod>(cluster, namespace));
    let (deps, sets, pods) = futures::join!(d.list(&lp), s.list(&lp), p.list(&lp));
    let where_ = namespace.map(|n| format!("namespace {n}")).unwrap_or_else(|| "all namespaces".into());
    let deps = deps.map_err(|e| anyhow::anyhow!("listing deployments in {where_}: {}", describe(&e)))?;
    let sets = sets.map_err(|e| anyhow::anyhow!("listing statefulsets in {where_}: {}", describe(&e)))?;
    let pods = pods.map_err(|e| anyhow::anyhow!("listing pods in {where_}: {}", describe(&e)))?;
    let mut out = Vec::with_capacity(deps.items.len() + sets.items.len() + pods.items.len());
    let mut group: Vec<Listed> = deps
        .items
        .into_iter()
        .map(|d| {
            let name = d.metadata.name.unwrap_or_default();
            let want = d.spec.replicas.unwrap_or(1);
            let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            Listed {
                path: format!("deployment/{name}"),
                kind: "deployment",
                namespace: d.metadata.namespace.unwrap_or_default(),
                containers: containers_of(d.spec.template.spec.as_ref()),
                status: format!("{ready}/{want}"),
                name,
            }
        })
        .collect();
    group.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out.append(&mut group);
    let mut group: Vec<Listed> = sets
        .items
        .into_iter()
        .map(|s| {
            let name = s.metadata.name.unwrap_or_default();
            let want = s.spec.replicas.unwrap_or(1);
            let ready = s.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            Listed {
                path: format!("statefulset/{name}"),
                kind: "statefulset",
                namespace: s.metadata.namespace.unwrap_or_default(),
                containers: containers_of(s.spec.template.spec.as_ref()),
                status: format!("{ready}/{want}"),
                name,
            }
        })
        .collect();
    group.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out.append(&mut group);
    let mut group: Vec<Listed> = pods
        .items
        .into_iter()
        .filter(|p| !p.metadata.name.as_deref().unwrap_or("").starts_with(AGENT_PREFIX))
        .map(|p| {
            let status = super::resolve::state_words(&p);
            let name = p.metadata.name.unwrap_or_default();
            Listed {
                path: format!("pod/{name}"),
                kind: "pod",
                namespace: p.metadata.namespace.unwrap_or_default(),
                containers: containers_of(p.spec.as_ref()),
                status,
                name,
            }
        })
        .collect();
    group.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out.append(&mut group);
    Ok(out)
}

/// The text table of `tether ls`.
pub fn render_targets(targets: &[Listed], show_namespace: bool) -> String {
    use std::fmt::Write;
    let path_w = targets.iter().map(|t| t.path.len()).max().unwrap_or(6).max(6);
    let ns_w = targets.iter().map(|t| t.namespace.len()).max().unwrap_or(9).max(9);
    let status_w = targets.iter().map(|t| t.status.len()).max().unwrap_or(6).max(6);
    let mut s = String::with_capacity(targets.len() * 80);
    if show_namespace {
        let _ = write!(s, "{:<ns_w$}  ", "NAMESPACE");
    }
    let _ = writeln!(s, "{:<path_w$}  {:<status_w$}  CONTAINERS", "TARGET", "STATUS");
    for t in targets {
        if show_namespace {
            let _ = write!(s, "{:<ns_w$}  ", t.namespace);
        }
        let containers: Vec<String> = t
            .containers
            .iter()
            .map(|c| if c.sidecar { format!("{} (sidecar)", c.name) } else { c.name.clone() })
            .collect();
        let _ = writeln!(s, "{:<path_w$}  {:<status_w$}  {}", t.path, t.status, containers.join(", "));
    }
    s
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// `tether ls [--namespace N | --all-namespaces] [--json]`.
pub fn run_ls(namespace: Option<String>, all: bool, json: bool) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let cluster = super::cluster(&super::Source::from_env()).await?;
        let ns = if all { None } else { Some(namespace.unwrap_or_else(|| cluster.namespace.clone())) };
        let targets = list_targets(&cluster, ns.as_deref()).await?;
        let text = if json { serde_json::to_string_pretty(&targets)? + "\n" } else { render_targets(&targets, all) };
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        if !json && targets.is_empty() {
            writeln!(
                out,
                "(nothing to target in {})",
                ns.as_deref().map(|n| format!("namespace {n}")).unwrap_or("the cluster".into())
            )?;
        }
        Ok(0)
    })
}

/// One agent in the cluster.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AgentRow {
    /// `job`, `pod` (targetless) or `ephemeral` (a container of the target pod).
    pub kind: &'static str,
    pub namespace: String,
    /// The Job or pod (for ephemeral agents: `POD/CONTAINER`).
    pub name: String,
    pub target: String,
    pub owner: String,
    pub state: String,
    /// Finished, or its daemon on this host is gone.
    pub leftover: bool,
}

/// Whether `owner` (`HOST/PID`) is a daemon that runs on this host now; `None` for another host.
fn owner_alive(owner: &str) -> Option<bool> {
    let (host, pid) = owner.rsplit_once('/')?;
    let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if host != me.trim() {
        return None;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    Some(exe.is_some_and(|e| e.file_name().is_some_and(|n| n.to_string_lossy().starts_with("tether"))))
}

fn annotation(meta: &kube::api::ObjectMeta, key: &str) -> String {
    meta.annotations.as_ref().and_then(|a| a.get(key)).cloned().unwrap_or_default()
}

/// Our agents in `namespace` (`None`: every namespace).
pub async fn list_agents(cluster: &Cluster, namespace: Option<&str>) -> anyhow::Result<Vec<AgentRow>> {
    let (jobs_api, pods_api) = (api::<Job>(cluster, namespace), api::<Pod>(cluster, namespace));
    let (by_label, all) = (ListParams::default().labels(AGENT_SELECTOR), ListParams::default());
    let (jobs, pods) = futures::join!(jobs_api.list(&by_label), pods_api.list(&all));
    let jobs = jobs.map_err(|e| anyhow::anyhow!("listing agent Jobs: {}", describe(&e)))?;
    let pods = pods.map_err(|e| anyhow::anyhow!("listing pods: {}", describe(&e)))?;
    let mut rows = Vec::new();
    for j in jobs.items {
        let st = j.status.clone().unwrap_or_default();
        let finished = st.succeeded.unwrap_or(0) > 0 || st.failed.unwrap_or(0) > 0;
        let state = if finished {
            "finished"
        } else if st.active.unwrap_or(0) > 0 {
            "running"
        } else {
            "pending"
        };
        let owner = annotation(&j.metadata, OWNER_ANNOTATION);
        rows.push(AgentRow {
            kind: "job",
            namespace: j.metadata.namespace.clone().unwrap_or_default(),
            name: j.metadata.name.clone().unwrap_or_default(),
            target: annotation(&j.metadata, TARGET_ANNOTATION),
            leftover: finished || owner_alive(&owner) == Some(false),
            owner,
            state: state.into(),
        });
    }
    for p in pods.items {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        let ours = labels.get(super::MANAGED_BY.0).map(String::as_str) == Some(super::MANAGED_BY.1)
            && labels.get(super::APP_NAME.0).map(String::as_str) == Some(super::APP_NAME.1);
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let pod_name = p.metadata.name.clone().unwrap_or_default();
        if ours && !labels.contains_key("job-name") {
            let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            let finished = phase == "Succeeded" || phase == "Failed";
            let owner = annotation(&p.metadata, OWNER_ANNOTATION);
            rows.push(AgentRow {
                kind: "pod",
                namespace: ns.clone(),
                name: pod_name.clone(),
                target: annotation(&p.metadata, TARGET_ANNOTATION),
                leftover: finished || owner_alive(&owner) == Some(false),
                owner,
                state: phase.to_lowercase(),
            });
        }
        for c in p.status.iter().flat_map(|s| s.ephemeral_container_statuses.iter().flatten()) {
            if !c.name.starts_with(AGENT_PREFIX) || c.state.as_ref().and_then(|s| s.running.as_ref()).is_none() {
                continue;
            }
            rows.push(AgentRow {
                kind: "ephemeral",
                namespace: ns.clone(),
                name: format!("{pod_name}/{}", c.name),
                target: format!("pod/{pod_name}"),
                owner: String::new(),
                state: "running (exits when idle)".into(),
                leftover: false,
            });
        }
    }
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(rows)
}

/// Deletes the leftover Jobs and pods among `rows`; answers what was deleted.
pub async fn prune(cluster: &Cluster, rows: &[AgentRow]) -> anyhow::Result<Vec<String>> {
    let dp = DeleteParams::background();
    let mut done = Vec::new();
    for r in rows.iter().filter(|r| r.leftover) {
        let result = match r.kind {
            "job" => {
                Api::<Job>::namespaced(cluster.client.clone(), &r.namespace).delete(&r.name, &dp).await.map(|_| ())
            }
            "pod" => {
                Api::<Pod>::namespaced(cluster.client.clone(), &r.namespace).delete(&r.name, &dp).await.map(|_| ())
            }
            _ => continue,
        };
        match result {
            Ok(()) => done.push(format!("{} {}/{}", r.kind, r.namespace, r.name)),
            Err(e) if super::is_not_found(&e) => {}
            Err(e) => anyhow::bail!("deleting {} {}/{}: {}", r.kind, r.namespace, r.name, describe(&e)),
        }
    }
    Ok(done)
}

/// `tether agents [--prune] [--namespace N] [--json]`.
pub fn run_agents(namespace: Option<String>, prune_them: bool, json: bool) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let cluster = super::cluster(&super::Source::from_env()).await?;
        let rows = match &namespace {
            Some(ns) => list_agents(&cluster, Some(ns)).await?,
            None => match list_agents(&cluster, None).await {
                Ok(r) => r,
                // Without cluster-wide list rights, the context's namespace.
                Err(_) => list_agents(&cluster, Some(&cluster.namespace)).await.context("listing agents")?,
            },
        };
        let pruned = if prune_them { prune(&cluster, &rows).await? } else { Vec::new() };
        if json {
            let v = serde_json::json!({"agents": rows, "pruned": pruned});
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(0);
        }
        if rows.is_empty() {
            println!("no tether agents in the cluster");
        }
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &rows {
            *by_kind.entry(r.kind).or_default() += 1;
            let mark = if r.leftover { "  LEFTOVER" } else { "" };
            let owner = if r.owner.is_empty() { String::new() } else { format!("  owner {}", r.owner) };
            println!("{:<9} {}/{}  {}  target {}{owner}{mark}", r.kind, r.namespace, r.name, r.state, r.target);
        }
        for p in &pruned {
            println!("deleted {p}");
        }
        let left: Vec<String> =
            rows.iter().filter(|r| r.leftover).map(|r| format!("{}/{}", r.namespace, r.name)).collect();
        if !prune_them {
            if let Some(d) = tether_doctor::cluster::leftover_agents(&left) {
                println!("{} [{}]; fix: {}", d.message, d.id, d.fix.map(|f| f.description).unwrap_or_default());
            }
        }
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_marks_sidecars() {
        let t = vec![Listed {
            path: "deployment/web".into(),
            kind: "deployment",
            name: "web".into(),
            namespace: "default".into(),
            containers: vec![
                ListedContainer { name: "app".into(), sidecar: false },
                ListedContainer { name: "istio-proxy".into(), sidecar: true },
            ],
            status: "1/1".into(),
        }];
        let s = render_targets(&t, false);
        assert!(s.lines().nth(1).unwrap().contains("deployment/web  1/1     app, istio-proxy (sidecar)"), "{s}");
        assert!(render_targets(&t, true).starts_with("NAMESPACE"));
    }

    #[test]
    fn owners_on_other_hosts_are_not_judged() {
        assert_eq!(owner_alive("elsewhere.example/1"), None);
        let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(owner_alive(&format!("{}/999999999", me.trim())), Some(false));
    }
}

//! The fake's HTTP side: routing, discovery, lists, watches, writes, `kubectl` tables.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::agents::{self, Slot};
use super::{Backing, Event, Kind, Shared};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).with_upgrades().await;
        });
    }
}

pub(crate) fn full(code: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("a valid response")
}

pub(crate) fn json_response(code: u16, v: &Value) -> Response<Body> {
    full(
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

pub(crate) fn status(code: u16, reason: &str, message: String) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    let q = req.uri().query().unwrap_or("");
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(c) => {
                        out.push(c);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// One requirement of a label selector.
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Missing(String),
}

fn parse_selector(s: &str) -> Vec<Req> {
    let mut out = Vec::new();
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Vec<String> {
            rest.trim().trim_start_matches('(').trim_end_matches(')').split(',').map(|v| v.trim().to_string()).collect()
        };
        if let Some((k, v)) = p.split_once("!=") {
            out.push(Req::Ne(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            out.push(Req::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            out.push(Req::NotIn(k.trim().into(), set(rest)));
        } else if let Some((k, rest)) = p.split_once(" in ") {
            out.push(Req::In(k.trim().into(), set(rest)));
        } else if let Some(k) = p.strip_prefix('!') {
            out.push(Req::Missing(k.trim().into()));
        } else {
            out.push(Req::Exists(p.into()));
        }
    }
    out
}

fn matches_labels(obj: &Value, reqs: &[Req]) -> bool {
    let labels = &obj["metadata"]["labels"];
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Req::Eq(k, v) => get(k) == Some(v),
        Req::Ne(k, v) => get(k) != Some(v),
        Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Req::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Req::Exists(k) => get(k).is_some(),
        Req::Missing(k) => get(k).is_none(),
    })
}

fn matches_fields(obj: &Value, fields: &str) -> bool {
    fields.split(',').filter(|f| !f.is_empty()).all(|f| {
        let (k, v, neg) = match f.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match f.split_once("==").or_else(|| f.split_once('=')) {
                Some((k, v)) => (k, v, false),
                None => return true,
            },
        };
        let actual = match k {
            "metadata.name" => obj["metadata"]["name"].as_str(),
            "metadata.namespace" => obj["metadata"]["namespace"].as_str(),
            "spec.nodeName" => obj["spec"]["nodeName"].as_str(),
            "status.phase" => obj["status"]["phase"].as_str(),
            "involvedObject.name" => obj["involvedObject"]["name"].as_str(),
            "involvedObject.kind" => obj["involvedObject"]["kind"].as_str(),
            _ => return true,
        };
        (actual == Some(v)) != neg
    })
}

/// What a request selects: kind, namespace (`None`: all), selectors.
struct Selection {
    kind: Kind,
    namespace: Option<String>,
    labels: Vec<Req>,
    fields: String,
}

impl Selection {
    fn matches(&self, kind: Kind, ns: &str, obj: &Value) -> bool {
        kind == self.kind
            && self.namespace.as_deref().is_none_or(|n| n == ns)
            && matches_labels(obj, &self.labels)
            && matches_fields(obj, &self.fields)
    }
}

fn kind_of(group: &str, plural: &str) -> Option<Kind> {
    Some(match (group, plural) {
        ("", "pods") => Kind::Pod,
        ("", "nodes") => Kind::Node,
        ("apps", "deployments") => Kind::Deployment,
        ("apps", "statefulsets") => Kind::StatefulSet,
        ("batch", "jobs") => Kind::Job,
        ("", "events") => Kind::Event,
        ("", "secrets") => Kind::Secret,
        _ => return None,
    })
}

fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str], short: &[&str]) -> Value {
    json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs, "shortNames": short})
}

fn discovery(path: &[&str]) -> Option<Value> {
    let rw = ["create", "delete", "get", "list", "patch", "update", "watch"];
    Some(match path {
        ["version"] => {
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-tether-fake", "gitCommit": "", "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"})
        }
        ["api"] => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
        }
        ["apis"] => {
            let group = |g: &str| json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}], "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}});
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group("apps"), group("batch"), group("authorization.k8s.io")]})
        }
        ["api", "v1"] => json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            resource("pods", "Pod", true, &rw, &["po"]),
            resource("pods/ephemeralcontainers", "Pod", true, &["get", "patch", "update"], &[]),
            resource("pods/portforward", "PodPortForwardOptions", true, &["create", "get"], &[]),
            resource("nodes", "Node", false, &["get", "list"], &["no"]),
            resource("namespaces", "Namespace", false, &["get", "list"], &["ns"]),
        ]}),
        ["apis", "apps", "v1"] => {
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
                resource("deployments", "Deployment", true, &["get", "list", "watch"], &["deploy"]),
                resource("statefulsets", "StatefulSet", true, &["get", "list", "watch"], &["sts"]),
            ]})
        }
        ["apis", "batch", "v1"] => {
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1", "resources": [
                resource("jobs", "Job", true, &["create", "delete", "get", "list", "watch"], &[]),
            ]})
        }
        ["apis", "authorization.k8s.io", "v1"] => {
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authorization.k8s.io/v1", "resources": [
                resource("selfsubjectaccessreviews", "SelfSubjectAccessReview", false, &["create"], &[]),
            ]})
        }
        _ => return None,
    })
}

async fn body_json(req: Request<Incoming>) -> Result<Value, Response<Body>> {
    let bytes = req.into_body().collect().await.map_err(|e| status(400, "BadRequest", e.to_string()))?.to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| status(400, "BadRequest", format!("the body is not JSON: {e}")))
}

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if req.method() == Method::GET {
        if let Some(v) = discovery(&segs) {
            return Ok(json_response(200, &v));
        }
    }
    let (group, rest): (&str, &[&str]) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, "v1", rest @ ..] => (g, rest),
        _ => return Ok(status(404, "NotFound", format!("the fake API server does not serve {path}"))),
    };
    let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
    let group = group.to_string();
    Ok(route(shared, req, &group, &rest).await)
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>, group: &str, rest: &[String]) -> Response<Body> {
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (group, r.as_slice()) {
        ("authorization.k8s.io", ["selfsubjectaccessreviews"]) if method == Method::POST => {
            access_review(shared, req).await
        }
        (_, ["namespaces", ns]) if method == Method::GET => json_response(
            200,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}}),
        ),
        (g, [plural]) => match kind_of(g, plural) {
            Some(kind) if method == Method::GET => list_or_watch(shared, &req, kind, None).await,
            _ => status(405, "MethodNotAllowed", format!("{method} {plural} is not served by the fake")),
        },
        ("", ["nodes", name]) if method == Method::GET => get(&shared, &req, Kind::Node, "", name),
        (g, ["namespaces", ns, plural]) => match kind_of(g, plural) {
            Some(kind) if method == Method::GET => list_or_watch(shared, &req, kind, Some(ns.to_string())).await,
            Some(kind) if method == Method::POST => create(shared, req, kind, ns).await,
            _ => status(405, "MethodNotAllowed", format!("{method} {plural} is not served by the fake")),
        },
        (g, ["namespaces", ns, plural, name]) => match (kind_of(g, plural), method.clone()) {
            (Some(kind), Method::GET) => get(&shared, &req, kind, ns, name),
            (Some(Kind::Pod), Method::DELETE) => delete_pod(&shared, ns, name).await,
            (Some(Kind::Job), Method::DELETE) => match delete_job(&shared, ns, name) {
                Some(v) => json_response(200, &v),
                None => not_found(Kind::Job, name),
            },
            _ => status(405, "MethodNotAllowed", format!("{method} {plural}/{name} is not served by the fake")),
        },
        ("", ["namespaces", ns, "pods", name, "ephemeralcontainers"]) => match method {
            Method::GET => get(&shared, &req, Kind::Pod, ns, name),
            Method::PATCH | Method::PUT => ephemeral(shared, req, ns, name).await,
            _ => status(405, "MethodNotAllowed", "ephemeralcontainers: GET, PATCH, PUT".into()),
        },
        ("", ["namespaces", ns, "pods", name, "portforward"]) => {
            super::portforward::upgrade(shared, req, ns, name).await
        }
        _ => status(404, "NotFound", format!("the fake API server does not serve {}", req.uri().path())),
    }
}

fn not_found(kind: Kind, name: &str) -> Response<Body> {
    let plural = match kind {
        Kind::Pod => "pods",
        Kind::Deployment => "deployments.apps",
        Kind::StatefulSet => "statefulsets.apps",
        Kind::Job => "jobs.batch",
        Kind::Node => "nodes",
        Kind::Event => "events",
        Kind::Secret => "secrets",
    };
    status(404, "NotFound", format!("{plural} \"{name}\" not found"))
}

fn wants_table(req: &Request<Incoming>) -> bool {
    req.headers().get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("as=Table"))
}

fn age(obj: &Value) -> String {
    let _ = obj;
    "1m".into()
}

/// A `meta.k8s.io/v1` Table, as `kubectl get` asks for it.
fn table(kind: Kind, items: &[Value], rv: u64) -> Value {
    let col = |name: &str, ty: &str, format: &str| json!({"name": name, "type": ty, "format": format, "description": "", "priority": 0});
    let (columns, cells): (Vec<Value>, Box<dyn Fn(&Value) -> Vec<Value>>) = match kind {
        Kind::Pod => (
            vec![
                col("Name", "string", "name"),
                col("Ready", "string", ""),
                col("Status", "string", ""),
                col("Restarts", "string", ""),
                col("Age", "string", ""),
            ],
            Box::new(|o: &Value| {
                let cs = o["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
                let ready = cs.iter().filter(|c| c["ready"] == true).count();
                vec![
                    o["metadata"]["name"].clone(),
                    json!(format!("{ready}/{}", cs.len())),
                    o["status"]["phase"].clone(),
                    json!("0"),
                    json!(age(o)),
                ]
            }),
        ),
        Kind::Deployment | Kind::StatefulSet => (
            vec![col("Name", "string", "name"), col("Ready", "string", ""), col("Age", "string", "")],
            Box::new(|o: &Value| {
                let ready = o["status"]["readyReplicas"].as_i64().unwrap_or(0);
                let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
                vec![o["metadata"]["name"].clone(), json!(format!("{ready}/{want}")), json!(age(o))]
            }),
        ),
        _ => (
            vec![col("Name", "string", "name"), col("Age", "string", "")],
            Box::new(|o: &Value| vec![o["metadata"]["name"].clone(), json!(age(o))]),
        ),
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({"cells": cells(o), "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": columns, "rows": rows})
}

fn get(shared: &Shared, req: &Request<Incoming>, kind: Kind, ns: &str, name: &str) -> Response<Body> {
    let st = shared.lock();
    match st.get(kind, ns, name) {
        Some(v) if wants_table(req) => json_response(200, &table(kind, std::slice::from_ref(v), st.rv)),
        Some(v) => json_response(200, v),
        None => not_found(kind, name),
    }
}

async fn list_or_watch(shared: Arc<Shared>, req: &Request<Incoming>, kind: Kind, ns: Option<String>) -> Response<Body> {
    let q = query(req);
    let sel = Selection {
        kind,
        namespace: ns,
        labels: parse_selector(param(&q, "labelSelector").unwrap_or("")),
        fields: param(&q, "fieldSelector").unwrap_or("").to_string(),
    };
    if matches!(param(&q, "watch"), Some("true" | "1")) {
        let since = param(&q, "resourceVersion").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let timeout = param(&q, "timeoutSeconds").and_then(|v| v.parse::<u64>().ok()).unwrap_or(300).min(1800);
        return watch(shared, sel, since, Duration::from_secs(timeout));
    }
    let st = shared.lock();
    let items: Vec<Value> =
        st.objects.iter().filter(|((k, n, _), v)| sel.matches(*k, n, v)).map(|(_, v)| v.clone()).collect();
    if wants_table(req) {
        return json_response(200, &table(kind, &items, st.rv));
    }
    let list_kind = format!("{}List", kind.name());
    json_response(
        200,
        &json!({"apiVersion": kind.api_version(), "kind": list_kind, "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
    )
}

fn event_line(e: &Event) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": e.type_, "object": e.object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A watch: the changes after `since` (or, from 0, every matching object as ADDED), then live
/// ones, until `timeout`.
fn watch(shared: Arc<Shared>, sel: Selection, since: u64, timeout: Duration) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let mut live = shared.changed.subscribe();
    let first: Vec<Bytes> = {
        let st = shared.lock();
        if since == 0 {
            st.objects
                .iter()
                .filter(|((k, n, _), v)| sel.matches(*k, n, v))
                .map(|((k, n, _), v)| {
                    event_line(&Event { rv: st.rv, kind: *k, namespace: n.clone(), type_: "ADDED", object: v.clone() })
                })
                .collect()
        } else {
            st.events
                .iter()
                .filter(|e| e.rv > since && sel.matches(e.kind, &e.namespace, &e.object))
                .map(event_line)
                .collect()
        }
    };
    let last_sent = if since == 0 { shared.lock().rv } else { since };
    tokio::spawn(async move {
        for line in first {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let end = tokio::time::sleep(timeout);
        tokio::pin!(end);
        loop {
            tokio::select! {
                _ = &mut end => return,
                e = live.recv() => match e {
                    Ok(e) if e.rv > last_sent && sel.matches(e.kind, &e.namespace, &e.object) => {
                        if tx.send(event_line(&e)).await.is_err() { return; }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("a valid response")
}

async fn access_review(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let mut review = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let a = &review["spec"]["resourceAttributes"];
    let verb = a["verb"].as_str().unwrap_or("").to_string();
    let mut res = a["resource"].as_str().unwrap_or("").to_string();
    if let Some(sub) = a["subresource"].as_str().filter(|s| !s.is_empty()) {
        res = format!("{res}/{sub}");
    }
    let denied = shared.lock().denied.iter().any(|(v, r)| *v == verb && *r == res);
    review["status"] = json!({"allowed": !denied, "reason": if denied { "denied by the fake" } else { "" }});
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    json_response(201, &review)
}

fn short_id(shared: &Shared) -> String {
    let mut st = shared.lock();
    let id = st.next_id();
    id[id.len() - 5..].to_string()
}

async fn create(shared: Arc<Shared>, req: Request<Incoming>, kind: Kind, ns: &str) -> Response<Body> {
    let mut obj = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    obj["metadata"]["namespace"] = json!(ns);
    let Some(name) = obj["metadata"]["name"].as_str().map(String::from) else {
        return status(422, "Invalid", "metadata.name is required".into());
    };
    if shared.lock().get(kind, ns, &name).is_some() {
        return status(409, "AlreadyExists", format!("{} \"{name}\" already exists", kind.name()));
    }
    let tx = shared.changed.clone();
    let admission = staged_admission(&shared);
    match kind {
        Kind::Pod if admission.is_some() => {
            status(403, "Forbidden", format!("pods \"{name}\" is forbidden: {}", admission.unwrap_or_default()))
        }
        Kind::Pod if staged_unschedulable(&shared).is_some() && obj["spec"]["nodeName"].as_str().is_none() => {
            let message = staged_unschedulable(&shared).unwrap_or_default();
            obj["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]});
            let stored = shared.lock().put(Kind::Pod, obj, &tx);
            record_event(&shared, ns, "Pod", &name, "FailedScheduling", &message);
            json_response(201, &stored)
        }
        Kind::Pod => {
            let stored = shared.lock().put(Kind::Pod, obj.clone(), &tx);
            let container = obj["spec"]["containers"][0].clone();
            // The pod's own local pod (a targetless agent serves its own network).
            let local_name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(30).collect();
            let shared2 = shared.clone();
            let ns2 = ns.to_string();
            tokio::task::spawn_blocking(move || match crate::PodSpec::new(&local_name).start() {
                Ok(pod) => {
                    let (netns, pid) = (pod.netns_path(), pod.pid);
                    shared2.lock().backings.insert((ns2.clone(), name.clone()), Backing::Local(pod));
                    agents::spawn(&shared2, Slot::Main { ns: ns2, pod: name, job: None }, &container, &netns, pid);
                }
                Err(e) => {
                    let c = container["name"].as_str().unwrap_or("agent").to_string();
                    agents::set_status(
                        &shared2,
                        &Slot::Main { ns: ns2, pod: name, job: None },
                        &c,
                        json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": format!("{e:#}")}}),
                        false,
                    );
                }
            });
            json_response(201, &stored)
        }
        Kind::Job => {
            let stored = shared.lock().put(Kind::Job, obj.clone(), &tx);
            let template = obj["spec"]["template"].clone();
            let pod_name = format!("{name}-{}", short_id(&shared));
            if let Some(message) = admission {
                // The Job controller cannot make the pod; it says so in an event on the Job.
                let m = format!("Error creating: pods \"{pod_name}\" is forbidden: {message}");
                record_event(&shared, ns, "Job", &name, "FailedCreate", &m);
                return json_response(201, &stored);
            }
            let mut labels = template["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels["job-name"] = json!(name);
            labels["controller-uid"] = stored["metadata"]["uid"].clone();
            let pod = json!({
                "metadata": {"name": pod_name, "namespace": ns, "labels": labels, "annotations": template["metadata"]["annotations"].clone(),
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": stored["metadata"]["uid"], "controller": true}]},
                "spec": template["spec"].clone(),
                "status": {"phase": "Pending"},
            });
            shared.lock().put(Kind::Pod, pod, &tx);
            // The agent runs beside the target it names: find it by container id.
            let container = template["spec"]["containers"][0].clone();
            let args: Vec<String> = container["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            let id = args
                .iter()
                .position(|a| a == "--target-container-id")
                .and_then(|i| args.get(i + 1))
                .cloned()
                .unwrap_or_default();
            let bare = id.split_once("://").map_or(id.as_str(), |(_, r)| r).to_string();
            let beside = {
                let st = shared.lock();
                st.containers.get(&bare).and_then(|key| st.backings.get(key)).map(|b| (b.netns(), b.pid()))
            };
            let slot = Slot::Main { ns: ns.to_string(), pod: pod_name.clone(), job: Some(name.clone()) };
            match beside {
                Some((netns, pid)) => {
                    shared
                        .lock()
                        .backings
                        .insert((ns.to_string(), pod_name), Backing::Beside { netns: netns.clone(), pid });
                    let shared2 = shared.clone();
                    tokio::task::spawn_blocking(move || agents::spawn(&shared2, slot, &container, &netns, pid));
                }
                None => {
                    let c = container["name"].as_str().unwrap_or("agent").to_string();
                    agents::set_status(
                        &shared,
                        &slot,
                        &c,
                        json!({"terminated": {"exitCode": 2, "reason": "Error", "message": format!("tether-agent: no process of container {bare} is visible")}}),
                        false,
                    );
                }
            }
            json_response(201, &stored)
        }
        _ => status(405, "MethodNotAllowed", format!("creating {} is not served by the fake", kind.name())),
    }
}

fn staged_admission(shared: &Shared) -> Option<String> {
    shared.lock().staged.iter().find_map(|s| match s {
        super::Stage::Admission(m) => Some(m.clone()),
        _ => None,
    })
}

fn staged_unschedulable(shared: &Shared) -> Option<String> {
    shared.lock().staged.iter().find_map(|s| match s {
        super::Stage::Unschedulable(m) => Some(m.clone()),
        _ => None,
    })
}

/// Records a Warning event about `kind/name`, as a controller or the scheduler would.
pub(crate) fn record_event(shared: &Shared, ns: &str, kind: &str, name: &str, reason: &str, message: &str) {
    let tx = shared.changed.clone();
    let id = short_id(shared);
    let event = json!({
        "metadata": {"name": format!("{name}.{id}"), "namespace": ns},
        "involvedObject": {"kind": kind, "name": name, "namespace": ns},
        "reason": reason, "message": message, "type": "Warning", "count": 1,
    });
    shared.lock().put(Kind::Event, event, &tx);
}

/// Stops the agents of pod `ns/name` (SIGTERM: they exit cleanly).
fn stop_agents(shared: &Shared, ns: &str, name: &str) {
    let prefix = format!("{ns}/{name}/");
    for a in shared.lock().agents.iter().filter(|a| a.exit.is_none() && a.name.starts_with(&prefix)) {
        unsafe { libc::kill(a.pid as i32, libc::SIGTERM) };
    }
}

async fn delete_pod(shared: &Arc<Shared>, ns: &str, name: &str) -> Response<Body> {
    stop_agents(shared, ns, name);
    let (obj, backing) = {
        let tx = shared.changed.clone();
        let mut st = shared.lock();
        let backing = st.backings.remove(&(ns.to_string(), name.to_string()));
        (st.remove(Kind::Pod, ns, name, &tx), backing)
    };
    if let Some(b) = backing {
        tokio::task::spawn_blocking(move || drop(b));
    }
    match obj {
        Some(v) => json_response(200, &v),
        None => not_found(Kind::Pod, name),
    }
}

/// Deletes a Job and its pods (stopping their agents).
pub(crate) fn delete_job(shared: &Arc<Shared>, ns: &str, name: &str) -> Option<Value> {
    let pods: Vec<String> = {
        let st = shared.lock();
        st.objects
            .iter()
            .filter(|((k, n, _), v)| *k == Kind::Pod && n == ns && v["metadata"]["labels"]["job-name"] == name)
            .map(|((_, _, p), _)| p.clone())
            .collect()
    };
    let tx = shared.changed.clone();
    for p in &pods {
        stop_agents(shared, ns, p);
        let mut st = shared.lock();
        st.backings.remove(&(ns.to_string(), p.clone()));
        st.remove(Kind::Pod, ns, p, &tx);
    }
    shared.lock().remove(Kind::Job, ns, name, &tx)
}

async fn ephemeral(shared: Arc<Shared>, req: Request<Incoming>, ns: &str, name: &str) -> Response<Body> {
    let is_put = req.method() == Method::PUT;
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if !is_put && content_type.contains("json-patch") {
        return status(
            415,
            "UnsupportedMediaType",
            "the fake takes strategic-merge or merge patches of ephemeralcontainers".into(),
        );
    }
    let body = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let wanted = body["spec"]["ephemeralContainers"].as_array().cloned().unwrap_or_default();
    if let Some(message) = staged_admission(&shared) {
        return status(403, "Forbidden", format!("pods \"{name}\" is forbidden: {message}"));
    }
    let tx = shared.changed.clone();
    let (stored, added, backing) = {
        let mut st = shared.lock();
        let Some(mut pod) = st.get(Kind::Pod, ns, name).cloned() else { return not_found(Kind::Pod, name) };
        let mut list = pod["spec"]["ephemeralContainers"].as_array().cloned().unwrap_or_default();
        let mut added = Vec::new();
        for c in wanted {
            if c["name"].as_str().is_none() || c["image"].as_str().is_none() {
                return status(422, "Invalid", "an ephemeral container needs a name and an image".into());
            }
            if list.iter().any(|e| e["name"] == c["name"]) {
                continue; // existing ones cannot change
            }
            list.push(c.clone());
            added.push(c);
        }
        pod["spec"]["ephemeralContainers"] = json!(list);
        let backing = st.backings.get(&(ns.to_string(), name.to_string())).map(|b| (b.netns(), b.pid()));
        (st.put(Kind::Pod, pod, &tx), added, backing)
    };
    for c in added {
        let slot = Slot::Ephemeral { ns: ns.to_string(), pod: name.to_string() };
        match &backing {
            Some((netns, pid)) => {
                let (shared2, netns, pid) = (shared.clone(), netns.clone(), *pid);
                tokio::task::spawn_blocking(move || agents::spawn(&shared2, slot, &c, &netns, pid));
            }
            None => {
                let cn = c["name"].as_str().unwrap_or("agent").to_string();
                agents::set_status(
                    &shared,
                    &slot,
                    &cn,
                    json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": "the fake has no local pod behind this pod"}}),
                    false,
                );
            }
        }
    }
    json_response(200, &stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_like_the_api() {
        let obj = json!({"metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web", "tier": "a"}}});
        let m = |s: &str| matches_labels(&obj, &parse_selector(s));
        assert!(m("app=web"));
        assert!(m("app=web,tier in (a,b)"));
        assert!(!m("app=web,tier notin (a,b)"));
        assert!(m("!canary,app"));
        assert!(!m("app!=web"));
        assert!(matches_fields(&obj, "metadata.name=web-1"));
        assert!(!matches_fields(&obj, "metadata.name=web-2"));
        assert_eq!(decode("app%3Dweb%2Ctier+in"), "app=web,tier in");
    }
}

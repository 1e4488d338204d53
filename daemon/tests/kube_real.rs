//! End to end against a real single-node Kubernetes cluster (`cluster/up`): kube-apiserver,
//! kubelet, containerd with runc, kube-proxy, CoreDNS, built from their sources and started by
//! the test itself ([`RealCluster`]).
//!
//! What this file proves: the node is Ready; a deployment `web` of the test image
//! (`tether.local/web:1`, busybox `httpd`) runs and serves through its ClusterIP Service to
//! another pod; the cluster's DNS answers the Service's name (full and through the pod's search
//! list); `tether ls` lists the real deployment and its pods through the real API server (TLS,
//! client certificates). Everything lives in the namespace `tether-real`.
//!
//! Needs root; the first run builds the cluster (see `cluster/README.md`). A cluster that cannot
//! start fails every test here with the reason.

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use tether_testkit::cluster::RealCluster;

const NS: &str = "tether-real";

fn cluster() -> &'static RealCluster {
    let tether = std::path::Path::new(env!("CARGO_BIN_EXE_tether"));
    match RealCluster::start(Some(tether)) {
        Ok(c) => c,
        Err(e) => panic!("{e:#}"),
    }
}

/// The namespace, the `web` Deployment and Service and a `client` pod, applied once and ready.
struct App {
    service_ip: String,
}

fn app() -> &'static App {
    static APP: OnceLock<Result<App, String>> = OnceLock::new();
    let app = APP.get_or_init(|| start_app(cluster()).map_err(|e| format!("{e:#}")));
    match app {
        Ok(a) => a,
        Err(e) => panic!("setting up the test application: {e}"),
    }
}

fn start_app(c: &RealCluster) -> anyhow::Result<App> {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: tether.local/web:1
        imagePullPolicy: IfNotPresent
        ports: [{{containerPort: 8080}}]
        env: [{{name: WEB_ONLY, value: from-the-real-pod}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: tether.local/web:1
    imagePullPolicy: IfNotPresent
    command: [/bin/sleep, "3600"]
"#
    ))?;
    let wait = Duration::from_secs(180);
    c.kubectl_ok(&["-n", NS, "rollout", "status", "deployment/web", "--timeout=170s"], wait)
        .map_err(|e| e.context(format!("kubelet log:\n{}", c.log_tail("kubelet", 30))))?;
    c.kubectl_ok(&["-n", NS, "wait", "--for=condition=Ready", "pod/client", "--timeout=170s"], wait)?;
    let service_ip = c.kubectl_ok(
        &["-n", NS, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"],
        Duration::from_secs(30),
    )?;
    Ok(App { service_ip })
}

/// `kubectl exec client -- ARGS...` in the test namespace.
fn in_client(c: &RealCluster, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["-n", NS, "exec", "client", "--"];
    all.extend_from_slice(args);
    c.kubectl_ok(&all, Duration::from_secs(60))
}

/// `GET /` sent with busybox `nc` from the client pod (Debian's static busybox `wget` crashes
/// with SIGSEGV here, on the host too); the whole reply.
fn http_get_from_client(c: &RealCluster, ip: &str, port: u16) -> String {
    let script = format!("printf 'GET / HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n' | nc -w 10 {ip} {port}");
    in_client(c, &["sh", "-c", &script]).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_node_is_ready_and_runs_kubernetes_1_34() {
    let c = cluster();
    let ready = c
        .kubectl_ok(
            &["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#],
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(ready.trim(), "tether-node=True", "the node list: {ready}");
    let version = c.kubectl_ok(&["version", "-o", "json"], Duration::from_secs(30)).unwrap();
    assert!(version.contains(r#""gitVersion": "v1.34."#), "server and client versions: {version}");
    let runtime = c
        .kubectl_ok(
            &["get", "node", "tether-node", "-o", "jsonpath={.status.nodeInfo.containerRuntimeVersion}"],
            Duration::from_secs(30),
        )
        .unwrap();
    assert!(runtime.starts_with("containerd://2.1."), "container runtime: {runtime}");
}

/// Whether `ip` lies in `cidr` (`A.B.C.D/N`).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').expect("a CIDR");
    let (Ok(ip), Ok(net), Ok(bits)) = (ip.parse::<Ipv4Addr>(), net.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[test]
fn web_serves_through_its_cluster_ip_service_to_another_pod() {
    let c = cluster();
    let a = app();
    assert!(
        in_cidr(&a.service_ip, "198.19.160.0/20"),
        "the Service's address {} is outside 198.19.160.0/20",
        a.service_ip
    );
    let reply = http_get_from_client(c, &a.service_ip, 80);
    assert!(reply.starts_with("HTTP/1.1 200 OK") && reply.ends_with("\r\n\r\ntether web\n"), "{reply:?}");
    // The pod's own address, straight across the bridge.
    let pod_ip = c
        .kubectl_ok(
            &["-n", NS, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}"],
            Duration::from_secs(30),
        )
        .unwrap();
    assert!(in_cidr(&pod_ip, "198.19.128.0/20"), "pod address {pod_ip} outside 198.19.128.0/20");
    let reply = http_get_from_client(c, &pod_ip, 8080);
    assert!(reply.starts_with("HTTP/1.1 200 OK") && reply.ends_with("\r\n\r\ntether web\n"), "{reply:?}");
}

#[test]
fn cluster_dns_answers_the_service_name() {
    let c = cluster();
    let a = app();
    let answer = in_client(c, &["nslookup", &format!("web.{NS}.svc.cluster.local")]).unwrap();
    assert!(answer.contains(&a.service_ip), "nslookup gave no {}:\n{answer}", a.service_ip);
    let resolv = in_client(c, &["cat", "/etc/resolv.conf"]).unwrap();
    assert!(
        resolv.contains("nameserver 198.19.160.10") && resolv.contains(&format!("search {NS}.svc.cluster.local")),
        "{resolv}"
    );
    // The short name through the pod's search list. busybox's nslookup tries every search
    // domain and exits 1 when any of them has no answer (web.svc.cluster.local has none), so the
    // answer is read from its output.
    let out =
        c.kubectl_output(&["-n", NS, "exec", "client", "--", "nslookup", "web"], Duration::from_secs(60)).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let full = format!("Name:\tweb.{NS}.svc.cluster.local\nAddress: {}", a.service_ip);
    assert!(stdout.contains(&full), "no {full:?} in\n{}", text(&out));
    // A name outside the cluster gets no answer: nothing is forwarded off the machine.
    let out = c
        .kubectl_output(&["-n", NS, "exec", "client", "--", "nslookup", "example.com."], Duration::from_secs(60))
        .unwrap();
    assert!(!out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("Address: 9"), "{}", text(&out));
}

#[test]
fn tether_ls_lists_the_real_deployment_and_its_pods() {
    let c = cluster();
    app();
    let dir = std::env::temp_dir().join(format!("tether-real-ls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["ls", "--namespace", NS])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .env_remove("TETHER_SOCKET")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    let pod = c
        .kubectl_ok(
            &["-n", NS, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"],
            Duration::from_secs(30),
        )
        .unwrap();
    for want in ["deployment/web", "1/1", &format!("pod/{pod}"), "pod/client", "Running"] {
        assert!(stdout.contains(want), "missing {want:?}\n{}", text(&out));
    }
}

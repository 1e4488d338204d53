//! End to end against a fake Kubernetes API server: `tether exec --target deployment/NAME`,
//! `tether ls`, `tether agents --prune`, and the cluster errors, with the real kube client.
//!
//! The fake (`tether_testkit::kube`, read its module doc for what it does NOT cover) runs in
//! the test's "laptop" network namespace beside a private daemon; its pods are local pods and
//! its agent containers real `tether-agent` processes inside them, reached only through the
//! fake's WebSocket port-forward. So these tests prove the whole path of a Kubernetes target —
//! resolve, permissions, ephemeral container (or Job, or targetless pod), the agent finding its
//! target by container id, port-forward, token handshake — and the relay that carries outgoing
//! TCP and UDP (DNS) for an agent that is not on this host.
//!
//! The agent's start-up failures (`cluster-agent-*` of docs/doctor.md) are staged in the fake: an
//! image it refuses to "pull", admission and scheduling refusals, an agent that crashes.
//!
//! Not covered here (the fake cannot): TLS and authentication to the API server, real image pulls,
//! capability enforcement (`privileged`, SELinux, Bottlerocket: unit tests check the advice),
//! controllers (the tests add a workload's pods themselves), a real kubelet's SPDY.
//!
//! Needs root (network namespaces) and the `tether-agent` binary beside `tether` (build the
//! workspace first: `cargo build --workspace`).

mod common;
mod incoming_kit;
mod protocol_client;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tether_testkit::kube::{FakeCluster, FakeOptions, FakePod, Kind, Stage};
use tether_testkit::programs;

/// A private daemon in a laptop namespace, and a fake cluster that only it can reach.
struct KubeWorld {
    // Dropped first: agents stop, local pods go.
    fake: FakeCluster,
    w: World,
}

fn agent_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_tether")).with_file_name("tether-agent");
    assert!(p.exists(), "{} is missing: build the workspace first (cargo build --workspace)", p.display());
    p
}

impl KubeWorld {
    fn new() -> KubeWorld {
        let w = World::new();
        let fake = FakeCluster::start(FakeOptions {
            agent_bin: agent_bin(),
            netns: Some(PathBuf::from(format!("/var/run/netns/{}", w.laptop))),
            namespace: "default".into(),
        })
        .expect("starting the fake API server");
        KubeWorld { fake, w }
    }

    fn tether(&self) -> Command {
        let mut cmd = self.w.tether();
        cmd.env("KUBECONFIG", &self.fake.kubeconfig);
        if let Ok(level) = std::env::var("TETHER_TEST_LOG") {
            cmd.env("TETHER_LOG", level);
        }
        cmd
    }

    fn exec(&self, target: &str, extra: &[&str], program: &[&str]) -> Output {
        let mut cmd = self.tether();
        cmd.arg("exec").arg("--target").arg(target).args(extra).arg("--").args(program);
        run(&mut cmd)
    }

    /// A deployment `name` with one ready pod (backed by a local pod named like the deployment).
    fn deployment(&self, name: &str, containers: &[&str]) {
        self.fake.add_deployment("default", name, &[("app", name)], containers, 1);
        self.fake
            .add_pod(
                FakePod::new(&format!("{name}-5d8f9-x7k2p"))
                    .label("app", name)
                    .containers(containers)
                    .local(pod_spec(name)),
            )
            .expect("adding the pod");
    }

    /// [`expect_all`], with the end of the daemon's log when it fails.
    fn expect(&self, out: &Output, wanted: &[&str]) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let missing: Vec<&&str> = wanted.iter().filter(|w| !stdout.contains(**w)).collect();
        if out.status.success() && missing.is_empty() {
            return;
        }
        let log = self.w.log();
        let tail: Vec<&str> = log.lines().rev().take(150).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("missing {missing:?}\n{}\n--- daemon log (end)\n{}", text(out), tail.join("\n"));
    }

    fn dns_queries(&self, pod: &str) -> u64 {
        self.fake.with_local_pod("default", pod, |p| p.dns_queries()).unwrap_or(0)
    }
}

#[test]
fn exec_against_a_deployment_sees_env_files_dns_and_outgoing() {
    let k = KubeWorld::new();
    k.deployment("web", &["app", "istio-proxy"]);
    let pod = "web-5d8f9-x7k2p";

    // curl: glibc's resolver (connected UDP, recvfrom checks the source), TCP through the relay.
    let script = "echo POD_ONLY=$POD_ONLY; curl -sS file:///app/config.txt; \
                  curl -sS http://web.svc.cluster.local/; curl -sS http://only-in-hosts/";
    let out = k.exec("deployment/web", &[], &["sh", "-c", script]);
    k.expect(
        &out,
        &[&format!("POD_ONLY={POD_SECRET}"), POD_FILE_TEXT.trim(), "hello from pod web", "you are 198.18.0.10"],
    );
    assert!(k.dns_queries(pod) > 0, "the pod's DNS server saw no query\n{}", text(&out));

    // The agent is an ephemeral container aimed at the application container (the sidecar was
    // skipped), with the token in its environment, and it found its target by container id.
    let p = k.fake.get(Kind::Pod, "default", pod).unwrap();
    let eph = &p["spec"]["ephemeralContainers"][0];
    assert_eq!(eph["targetContainerName"], "app", "{eph}");
    assert_eq!(eph["env"][0]["name"], "TETHER_AGENT_TOKEN");
    let args = eph["args"].to_string();
    assert!(
        args.contains("--target-container-id") && !args.contains(eph["env"][0]["value"].as_str().unwrap()),
        "{args}"
    );
    let agents = k.fake.agents();
    assert_eq!(agents.len(), 1, "{agents:?}");
    if !agents[0].args.contains(&"--target-container-id".to_string()) {
        eprintln!("note: cgroups are not writable here; the fake passed --target-pid instead");
    }

    // The Go static probe (raw syscalls, its own resolver), then Python (getpeername through the
    // relay, and an unconnected UDP socket whose answer must come from the original address).
    // Both reuse the running agent.
    let probe: Vec<String> = std::iter::once(programs::go_probe_static().unwrap().to_string_lossy().into_owned())
        .chain(PROBE_ARGS.iter().map(|s| s.to_string()))
        .collect();
    let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
    let out = k.exec("deployment/web", &[], &probe);
    k.expect(
        &out,
        &[
            &format!("POD_ONLY={POD_SECRET}"),
            POD_FILE_TEXT.trim(),
            "resolve web.svc.cluster.local 198.18.0.10",
            "resolve only-in-hosts 198.18.0.10",
            "peer 198.18.0.10:80",
            "hello from pod web",
            "udp 198.18.0.11:7 ping",
        ],
    );
    let out = k.exec("deployment/web", &[], &["python3", "-c", PYTHON]);
    k.expect(
        &out,
        &[
            "resolve web.svc.cluster.local 198.18.0.10",
            "peer 198.18.0.10:80",
            "hello from pod web",
            "udp 198.18.0.11:7 ping",
        ],
    );
    assert_eq!(k.fake.agents().len(), 1, "the agent was not reused: {:?}", k.fake.agents());
    let echo = k.fake.with_local_pod("default", pod, |p| p.echo_datagrams()).unwrap();
    assert!(echo >= 2, "the pod's echo service saw {echo} datagrams");
}

/// Incoming traffic through the cluster transport: the daemon cannot take the agent's sockets,
/// so it subscribes over gRPC and the agent relays each connection's bytes over the
/// port-forward; the program still sees the real client in `accept` and `getpeername`.
#[test]
fn incoming_traffic_reaches_the_program_through_the_port_forward() {
    use incoming_kit::{Conn, Program, WEB, eventually, get, nft_tables, try_get};
    let k = KubeWorld::new();
    k.deployment("shop", &["app"]);
    let pod = "shop-5d8f9-x7k2p";
    let client = k.fake.with_local_pod("default", pod, |p| p.client_netns()).unwrap().expect("client namespace");
    let local = |f: &dyn Fn(&tether_testkit::Pod) -> String| k.fake.with_local_pod("default", pod, |p| f(p)).unwrap();
    let hits = || k.fake.with_local_pod("default", pod, |p| p.http_hits()).unwrap();
    assert!(get(&client, WEB, "/", &[]).contains("hello from pod shop"));

    // Steal: the program answers, on a kept-alive connection and a new one; the pod sees nothing.
    k.w.config(r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18090, 80]]}}}}"#);
    let mut p = Program::python_at(k.tether(), &k.w, "deployment/shop", 18090);
    let before = hits();
    let mut conn = Conn::open(&client, WEB);
    let body = conn.get("/stolen", &[]);
    assert!(body.starts_with("local program /stolen from 198.19.0.1:"), "{body}\n{}", k.w.log());
    let line = p.expect("request /stolen", &k.w.log());
    let (accepted, peer) = (line.split(' ').nth(3).unwrap(), line.split(' ').nth(5).unwrap());
    assert!(accepted.starts_with("198.19.0.1:") && accepted == peer, "accept and getpeername: {line}");
    assert!(conn.get("/again", &[]).starts_with("local program /again"));
    assert!(get(&client, WEB, "/second", &[]).starts_with("local program /second"));
    assert_eq!(hits(), before, "the target saw none of it");
    assert!(local(&|p| nft_tables(p)).contains("tether_"), "the agent's table while stealing");
    let v = incoming_kit::status(k.tether());
    assert!(incoming_kit::incoming_connections(&v) >= 2, "{v:#}");
    p.send("exit");
    let _ = p.child.wait();
    let back =
        eventually(Duration::from_secs(5), || try_get(&client, WEB, "/").filter(|b| b.contains("hello from pod shop")));
    assert!(back.is_some(), "the target serves again once the program exited\n{}", k.w.log());
    assert!(
        eventually(Duration::from_secs(5), || (!local(&|p| nft_tables(p)).contains("tether_")).then_some(())).is_some(),
        "no rule of ours is left"
    );

    // Mirror, by the same agent: the target answers and the program gets a copy.
    k.w.config(r#"{"feature": {"network": {"incoming": {"port_mapping": [[18091, 80]]}}}}"#);
    let mut p = Program::python_at(k.tether(), &k.w, "deployment/shop", 18091);
    let before = hits();
    assert!(get(&client, WEB, "/mirrored", &[]).contains("hello from pod shop"));
    let line = p.expect("request /mirrored", &k.w.log());
    assert!(line.contains("accept 198.19.0.1:"), "{line}");
    assert_eq!(hits(), before + 1, "the target answered the request itself");
    p.send("exit");
    let _ = p.child.wait();

    // A header filter: one kept-alive connection, split request by request.
    k.w.config(
        r#"{"feature": {"network": {"incoming": {"mode": "steal", "port_mapping": [[18092, 80]],
        "http_filter": {"header": "^x-dev: me$"}}}}}"#,
    );
    let mut p = Program::python_at(k.tether(), &k.w, "deployment/shop", 18092);
    let mut conn = Conn::open(&client, WEB);
    assert!(conn.get("/mine", &[("X-Dev", "me")]).starts_with("local program /mine from 198.19.0.1:"), "{}", k.w.log());
    assert!(conn.get("/theirs", &[]).contains("hello from pod shop"));
    assert!(conn.get("/mine-again", &[("x-dev", "me")]).starts_with("local program /mine-again"));
    p.expect("request /mine-again", &k.w.log());
    p.send("exit");
    let _ = p.child.wait();

    // The port check asks the agent which ports the pod serves.
    std::fs::remove_file(k.w.project.join("tether.json")).unwrap();
    let python = programs::python3();
    let out = k.exec("deployment/shop", &[], &[python.to_str().unwrap(), "-c", incoming_kit::LISTEN_3000]);
    k.expect(&out, &["listened"]);
    incoming_kit::assert_port_not_served(|| k.tether(), 3000, 80);
    assert_eq!(k.fake.agents().len(), 1, "the agent was reused: {:?}", k.fake.agents());
}

/// The daemon outlives the terminal that started it: a session uses the kubeconfig and context
/// of the client that asks, not the daemon's environment.
#[test]
fn the_cluster_is_the_one_the_client_names() {
    let k = KubeWorld::new();
    k.deployment("web", &["app"]);
    // A daemon started where no kubeconfig exists...
    let _daemon = protocol_client::start_daemon(&k.w, &[("KUBECONFIG", "/nonexistent/kubeconfig")]);
    // ... serves a terminal that has one.
    let out = k.exec("deployment/web", &[], &["sh", "-c", "echo POD_ONLY=$POD_ONLY"]);
    k.expect(&out, &[&format!("POD_ONLY={POD_SECRET}")]);
    // A context the kubeconfig does not have is named, from the client's environment or the config.
    let out = run(k.tether().env("TETHER_KUBE_CONTEXT", "staging").args([
        "exec",
        "--target",
        "deployment/web",
        "--",
        "true",
    ]));
    assert!(!out.status.success() && text(&out).contains("context `staging`"), "{}", text(&out));
    let config = k.w.config(r#"{"target": {"context": "prod-eu"}}"#);
    let out = k.exec("deployment/web", &["--config", config.to_str().unwrap()], &["true"]);
    assert!(!out.status.success() && text(&out).contains("context `prod-eu`"), "{}", text(&out));
}

#[test]
fn a_node_job_agent_and_a_statefulset_target() {
    let k = KubeWorld::new();
    k.fake.add_statefulset("default", "db", &[("app", "db")], &["postgres"], 1);
    k.fake.add_pod(FakePod::new("db-0").label("app", "db").containers(&["postgres"]).local(pod_spec("db"))).unwrap();
    let config = k.w.config(r#"{"agent": {"ephemeral": false, "ttl": 30}}"#);
    let config = config.to_str().unwrap();
    let out = k.exec(
        "statefulset/db",
        &["--config", config],
        &["sh", "-c", "echo POD_ONLY=$POD_ONLY; curl -sS http://web.svc.cluster.local/"],
    );
    k.expect(&out, &[&format!("POD_ONLY={POD_SECRET}"), "hello from pod db"]);
    let jobs = k.fake.names(Kind::Job, "default");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = k.fake.get(Kind::Job, "default", &jobs[0]).unwrap();
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 30);
    assert_eq!(job["spec"]["template"]["spec"]["hostPID"], true);
    assert_eq!(job["spec"]["template"]["spec"]["nodeName"], "node-1");
    assert_eq!(job["metadata"]["labels"]["app.kubernetes.io/managed-by"], "tether");

    // `tether agents` lists it as in use (its daemon runs); a leftover of a dead daemon on this
    // host is marked, and --prune removes only that one.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    k.fake.add_raw(
        Kind::Job,
        json!({"metadata": {"name": "tether-agent-dead0001", "namespace": "default",
            "labels": {"app.kubernetes.io/managed-by": "tether", "app.kubernetes.io/name": "tether-agent"},
            "annotations": {"tether.dev/owner": format!("{host}/999999999"), "tether.dev/target": "deployment/old"}},
            "spec": {"template": {"spec": {"containers": []}}}, "status": {"active": 1}}),
    );
    let out = run(k.tether().args(["agents", "--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["agents"].as_array().unwrap();
    let leftover: Vec<&str> =
        rows.iter().filter(|r| r["leftover"] == true).map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(leftover, ["tether-agent-dead0001"], "{v}");
    assert!(rows.iter().any(|r| r["name"] == jobs[0].as_str() && r["leftover"] == false), "{v}");
    let out = run(k.tether().args(["agents"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cluster-leftover-agents"), "{}", text(&out));
    let out = run(k.tether().args(["agents", "--prune"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted job default/tether-agent-dead0001"),
        "{}",
        text(&out)
    );
    assert_eq!(k.fake.names(Kind::Job, "default"), jobs, "only the leftover goes");
}

#[test]
fn targetless_agents_serve_their_own_pod() {
    let k = KubeWorld::new();
    let out = k.exec("targetless", &[], &["sh", "-c", "curl -sS http://198.18.0.10/"]);
    k.expect(&out, &["hello from pod tether-agent-"]);
    let pods = k.fake.names(Kind::Pod, "default");
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert!(pods[0].starts_with("tether-agent-"));
}

#[test]
fn workload_errors_are_clear() {
    let k = KubeWorld::new();
    // Two application containers (the sidecar does not count) and none chosen.
    k.fake.add_deployment("default", "multi", &[("app", "multi")], &["app", "worker", "linkerd-proxy"], 1);
    k.fake
        .add_pod(FakePod::new("multi-1").label("app", "multi").containers(&["app", "worker", "linkerd-proxy"]))
        .unwrap();
    let out = k.exec("deployment/multi", &[], &["true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains("2 application containers (app, worker)") && err.contains("deployment/multi/container/worker"),
        "{}",
        text(&out)
    );
    assert!(err.contains("cluster-multi-container"), "{}", text(&out));

    // No ready pod.
    k.fake.add_deployment("default", "down", &[("app", "down")], &["app"], 1);
    k.fake.add_pod(FakePod::new("down-1").label("app", "down").ready(false)).unwrap();
    let out = k.exec("deployment/down", &[], &["true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running, ready pod: down-1 (Pending)"), "{}", text(&out));

    // Not there at all, and a missing permission named before anything is created.
    let out = k.exec("deployment/nope", &[], &["true"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deployment/nope not found in namespace default"),
        "{}",
        text(&out)
    );
    k.fake.add_deployment("default", "locked", &[("app", "locked")], &["app"], 1);
    k.fake.add_pod(FakePod::new("locked-1").label("app", "locked")).unwrap();
    k.fake.deny("patch", "pods/ephemeralcontainers");
    let out = k.exec("deployment/locked", &[], &["true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("patch pods/ephemeralcontainers in namespace default") && err.contains("cluster-rbac"),
        "{}",
        text(&out)
    );
    assert!(k.fake.get(Kind::Pod, "default", "locked-1").unwrap()["spec"]["ephemeralContainers"].is_null());
    assert!(k.fake.agents().is_empty());
}

/// Runs `tether exec` and answers its stderr and how long it took; it must fail.
fn failing_exec(k: &KubeWorld, target: &str, config: &str) -> (String, Duration) {
    let config = k.w.config(config);
    let began = std::time::Instant::now();
    let out = k.exec(target, &["--config", config.to_str().unwrap()], &["true"]);
    let took = began.elapsed();
    assert!(!out.status.success(), "{}", text(&out));
    (String::from_utf8_lossy(&out.stderr).into_owned(), took)
}

/// The failures of the agent's start are explained at once (never at agent.startup_timeout,
/// 20 s here), each with its doctor id and its fix.
const PATIENCE: &str = r#""startup_timeout": 20"#;
const FAST: Duration = Duration::from_secs(10);

#[test]
fn an_image_that_cannot_be_pulled_is_named_with_the_commands_that_fix_it() {
    let k = KubeWorld::new();
    k.deployment("img", &["app"]);
    let (err, took) = failing_exec(
        &k,
        "deployment/img",
        &format!(r#"{{"agent": {{"image": "registry.test/does-not-exist:1", {PATIENCE}}}}}"#),
    );
    for want in [
        "[cluster-agent-image-pull]",
        "registry.test/does-not-exist:1",
        "ErrImagePull",
        "pull access denied",
        "tether agent-image push",
        "tether agent-image load",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert!(took < FAST, "took {took:?}");
}

#[test]
fn a_missing_pull_secret_is_found_before_anything_is_created() {
    let k = KubeWorld::new();
    let config = format!(r#"{{"agent": {{"image_pull_secrets": ["regcred"], {PATIENCE}}}}}"#);
    let (err, _) = failing_exec(&k, "targetless", &config);
    assert!(err.contains("[cluster-agent-pull-secret]") && err.contains("secret regcred"), "{err}");
    assert!(k.fake.names(Kind::Pod, "default").is_empty(), "nothing was created");
    // With the secret, the same config starts, and the pod names it.
    k.fake.add_secret("default", "regcred");
    let out = k.exec("targetless", &["--config", k.w.config(&config).to_str().unwrap()], &["true"]);
    k.expect(&out, &[]);
    let pods = k.fake.names(Kind::Pod, "default");
    let pod = k.fake.get(Kind::Pod, "default", &pods[0]).unwrap();
    assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
}

#[test]
fn admission_refusals_stop_the_session_with_the_rule() {
    let k = KubeWorld::new();
    k.deployment("web", &["app"]);
    k.fake.stage(Stage::Admission(
        r#"violates PodSecurity "baseline:latest": non-default capabilities (container "tether-agent" must not include "SYS_ADMIN")"#.into(),
    ));
    // The ephemeral container's patch is refused by the API...
    let (err, took) = failing_exec(&k, "deployment/web", &format!(r#"{{"agent": {{{PATIENCE}}}}}"#));
    assert!(err.contains("[cluster-agent-admission]") && err.contains("violates PodSecurity"), "{err}");
    assert!(err.contains("pod-security.kubernetes.io/enforce=privileged"), "{err}");
    assert!(took < FAST, "took {took:?}");
    // ...and a Job's pod by the Job controller, which only says so in an event.
    let (err, took) =
        failing_exec(&k, "deployment/web", &format!(r#"{{"agent": {{"ephemeral": false, {PATIENCE}}}}}"#));
    assert!(err.contains("[cluster-agent-admission]") && err.contains("Error creating: pods"), "{err}");
    assert!(took < FAST, "took {took:?}");
    assert!(k.fake.names(Kind::Job, "default").is_empty(), "the Job was deleted again");
}

#[test]
fn an_unschedulable_agent_gets_the_tolerations_its_taints_need() {
    let k = KubeWorld::new();
    k.fake.stage(Stage::Unschedulable(
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: dev}. preemption: 0/1 nodes are available.".into(),
    ));
    let (err, took) = failing_exec(&k, "targetless", &format!(r#"{{"agent": {{{PATIENCE}}}}}"#));
    assert!(err.contains("[cluster-agent-unschedulable]") && err.contains("untolerated taint"), "{err}");
    assert!(err.contains(r#"agent.tolerations: [{"key":"dedicated","operator":"Equal","value":"dev"}]"#), "{err}");
    assert!(took < FAST, "took {took:?}");
}

#[test]
fn an_agent_that_crashes_at_start_shows_its_last_lines() {
    let k = KubeWorld::new();
    k.deployment("img", &["app"]);
    let (err, took) = failing_exec(
        &k,
        "deployment/img",
        &format!(r#"{{"agent": {{"image": "registry.test/crashes-at-start:1", {PATIENCE}}}}}"#),
    );
    assert!(err.contains("[cluster-agent-crashed]") && err.contains("code 2"), "{err}");
    assert!(err.contains("TETHER_AGENT_TOKEN is not set"), "the agent's own words: {err}");
    assert!(took < FAST, "took {took:?}");
}

#[test]
fn the_cluster_settings_reach_the_agents_pod() {
    let k = KubeWorld::new();
    let config = r#"{"agent": {
        "image_pull_policy": "IfNotPresent",
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "node_selector": {"kubernetes.io/os": "linux"},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "labels": {"team": "web"}, "annotations": {"example.com/why": "debug"}, "service_account": "tether"
    }}"#;
    let out = k.exec(
        "targetless",
        &["--config", k.w.config(config).to_str().unwrap()],
        &["sh", "-c", "curl -sS http://198.18.0.10/"],
    );
    k.expect(&out, &["hello from pod tether-agent-"]);
    let pods = k.fake.names(Kind::Pod, "default");
    let pod = k.fake.get(Kind::Pod, "default", &pods[0]).unwrap();
    let spec = &pod["spec"];
    assert_eq!(spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(spec["containers"][0]["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(spec["tolerations"][0]["key"], "dedicated");
    assert_eq!(spec["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(spec["serviceAccountName"], "tether");
    assert_eq!(pod["metadata"]["labels"]["team"], "web");
    assert_eq!(pod["metadata"]["labels"]["app.kubernetes.io/managed-by"], "tether");
    assert_eq!(pod["metadata"]["annotations"]["example.com/why"], "debug");
}

#[test]
fn ls_lists_workloads_and_pods_with_sidecars_marked() {
    let k = KubeWorld::new();
    k.fake.add_deployment("default", "web", &[("app", "web")], &["app", "istio-proxy"], 2);
    k.fake.add_statefulset("default", "db", &[("app", "db")], &["postgres"], 1);
    k.fake.add_pod(FakePod::new("web-1").label("app", "web").containers(&["app", "istio-proxy"])).unwrap();
    k.fake.add_pod(FakePod::new("other").namespace("shop").containers(&["api"])).unwrap();
    let out = run(k.tether().arg("ls"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    for want in
        ["deployment/web", "2/2", "app, istio-proxy (sidecar)", "statefulset/db", "postgres", "pod/web-1", "Running"]
    {
        assert!(stdout.contains(want), "missing {want:?}\n{}", text(&out));
    }
    assert!(!stdout.contains("pod/other"), "another namespace leaked in\n{stdout}");
    let out = run(k.tether().args(["ls", "--namespace", "shop", "--json"]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(
        v,
        json!([{"path": "pod/other", "kind": "pod", "name": "other", "namespace": "shop",
        "containers": [{"name": "api", "sidecar": false}], "status": "Running"}])
    );
    let out = run(k.tether().args(["ls", "-A"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shop"), "{}", text(&out));
}

/// `kubectl` against the fake: the calls it serves behave as a real server's would.
#[test]
fn kubectl_reads_the_fake() {
    let kubectl = tether_testkit::programs::tool("kubectl").unwrap_or_else(|e| panic!("{e:#}"));
    let k = KubeWorld::new();
    k.fake.add_deployment("default", "web", &[("app", "web")], &["app"], 1);
    k.fake.add_pod(FakePod::new("web-1").label("app", "web")).unwrap();
    let kc = |args: &[&str]| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &k.w.laptop]).arg(&kubectl).arg("--kubeconfig").arg(&k.fake.kubeconfig).args(args);
        cmd.env("HOME", k.w.dir.join("home")).env_remove("KUBECONFIG");
        run(&mut cmd)
    };
    let out = kc(&["get", "pods"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && s.contains("web-1") && s.contains("Running"), "{}", text(&out));
    let out = kc(&["get", "deployments"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("web"), "{}", text(&out));
    let out = kc(&["get", "pod", "web-1", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(v["metadata"]["labels"]["app"], "web");
    let out = kc(&["get", "pods", "-l", "app=other"]);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("web-1"), "{}", text(&out));
    // kubectl's port-forward speaks SPDY, which the fake refuses with a message that says so.
    let out = kc(&["port-forward", "pod/web-1", "7777:7777", "--pod-running-timeout=5s"]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && (all.contains("SPDY") || all.contains("upgrade")), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(10));
}

/// `tether/listTargets` offers the cluster's workloads beside the local processes.
#[test]
fn list_targets_offers_workloads_to_editors() {
    let k = KubeWorld::new();
    k.fake.add_deployment("default", "web", &[("app", "web")], &["app", "istio-proxy"], 1);
    let kubeconfig = k.fake.kubeconfig.to_string_lossy().into_owned();
    let _daemon = protocol_client::start_daemon(&k.w, &[("KUBECONFIG", kubeconfig.as_str())]);
    let mut c = protocol_client::Client::connect(&k.w);
    c.initialize(json!({}));
    let r = c.ok("tether/listTargets", json!({}));
    let targets = r["targets"].as_array().unwrap();
    assert!(targets.iter().any(|t| t["kind"] == "process"), "local processes stay listed: {r:#}");
    let web = targets.iter().find(|t| t["path"] == "deployment/web").unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(web["namespace"], "default");
    assert_eq!(web["containers"], json!(["app", "istio-proxy"]));
    assert_eq!(web["sidecars"], json!(["istio-proxy"]));
}

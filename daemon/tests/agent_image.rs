//! `tether agent-image`: the image built without a container engine, its agent running in an
//! empty root, a push to a real registry (Debian's `docker-registry`, the CNCF distribution
//! registry, on a loopback port) with the manifest pulled back, and the load command line.
//!
//! Needs the static agent (`cargo agent-static`), `docker-registry`, `unshare` and root (a
//! chroot with its own /proc mount). `ctr`, kind and minikube cannot run here (no containerd):
//! the containerd load is checked against a stand-in `ctr` that keeps the archive it is given.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

fn tether() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tether"));
    c.env("TETHER_LOG", "warn");
    c
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A private directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(what: &str) -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("tether-agent-image-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The static agent `tether agent-image` finds beside this build.
fn static_agent() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_tether"));
    let p = exe.parent().unwrap().parent().unwrap().join("x86_64-unknown-linux-gnu/release/tether-agent");
    assert!(p.exists(), "{} is missing: build the static agent first (`cargo agent-static`)", p.display());
    p
}

fn sha256(data: &[u8]) -> String {
    let sum = sha2::Sha256::digest(data);
    format!("sha256:{}", sum.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The files of a tar archive.
fn untar(data: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in tar::Archive::new(data).entries().unwrap() {
        let mut e = e.unwrap();
        let mut d = Vec::new();
        e.read_to_end(&mut d).unwrap();
        out.insert(e.path().unwrap().display().to_string(), d);
    }
    out
}

/// `sha256:...` from `tether agent-image build|push` output.
fn digest_in(out: &str) -> String {
    let at = out.find("sha256:").unwrap_or_else(|| panic!("no digest in {out}"));
    out[at..at + 71].to_string()
}

fn build(dir: &Path, extra: &[&str]) -> (PathBuf, String) {
    static_agent();
    let archive = dir.join("agent.tar");
    let out = tether().args(["agent-image", "build", "--output"]).arg(&archive).args(extra).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (archive, digest_in(&String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn the_image_holds_one_static_agent_that_runs_in_an_empty_root() {
    let dir = Dir::new("build");
    let (archive, digest) = build(&dir.0, &[]);
    let files = untar(&std::fs::read(&archive).unwrap());
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let name = String::from_utf8(tether().args(["agent-image", "name"]).output().unwrap().stdout).unwrap();
    assert_eq!(index["manifests"][0]["annotations"]["io.containerd.image.name"], name.trim());
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    let manifest: serde_json::Value =
        serde_json::from_slice(&files[&format!("blobs/sha256/{}", &digest[7..])]).unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer = &files[&format!("blobs/sha256/{}", &layer_digest[7..])];
    assert_eq!(sha256(layer), layer_digest);
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(layer.as_slice()).read_to_end(&mut plain).unwrap();
    let layer_files = untar(&plain);
    assert_eq!(layer_files.keys().collect::<Vec<_>>(), ["tether-agent"], "the agent is the only file");
    assert_eq!(layer_files["tether-agent"], std::fs::read(static_agent()).unwrap());

    // The same build again: the same digest.
    let again = Dir::new("build-again");
    assert_eq!(build(&again.0, &[]).1, digest);

    // An empty root with only the agent (and /proc, which a container runtime mounts): it
    // starts against a target and says it is ready.
    let root = dir.0.join("root");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    let agent = root.join("tether-agent");
    std::fs::write(&agent, &layer_files["tether-agent"]).unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = format!(
        "mount -t proc proc {r}/proc && exec chroot {r} /tether-agent --target-pid {pid} --listen 127.0.0.1:0 --idle-timeout 1",
        r = root.display(),
        pid = std::process::id()
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--fork", "sh", "-c", &script])
        .env_clear()
        .env("TETHER_AGENT_TOKEN", "t0ken")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("no ready line ({e}): {line:?}\n{err}"));
    assert!(ready["listen"].as_str().unwrap().starts_with("127.0.0.1:"), "{ready}");
    assert!(status.success(), "it exits when idle: {status}\n{err}");
}

#[test]
fn an_agent_that_cannot_go_into_an_image_is_refused_with_the_fix() {
    let dir = Dir::new("refuse");
    // The normal (dynamic) build's agent.
    let dynamic = Path::new(env!("CARGO_BIN_EXE_tether")).with_file_name("tether-agent");
    let out = tether()
        .args(["agent-image", "build", "--output"])
        .arg(dir.0.join("a.tar"))
        .arg("--agent")
        .arg(&dynamic)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("dynamically linked") && err.contains("cargo agent-static"),
        "{}",
        text(&out)
    );
    let out = tether()
        .args(["agent-image", "build", "--platform", "linux/arm64", "--output"])
        .arg(dir.0.join("b.tar"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("linux/arm64") && err.contains("aarch64-unknown-linux-gnu"),
        "{}",
        text(&out)
    );
}

/// Debian's `docker-registry` on a free loopback port, storing under `dir`.
struct Registry {
    child: Child,
    addr: String,
}

impl Registry {
    fn start(dir: &Path, readonly: bool) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let maintenance = if readonly { "  maintenance:\n    readonly:\n      enabled: true\n" } else { "" };
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n{maintenance}http:\n  addr: {addr}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package `docker-registry`) is installed");
        let r = Registry { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while get(&r.addr, "/v2/", "").map(|(code, _, _)| code) != Some(200) {
            assert!(Instant::now() < deadline, "docker-registry did not answer on {}", r.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: status, headers, body.
fn get(addr: &str, path: &str, accept: &str) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, head, raw[split + 4..].to_vec()))
}

#[test]
fn push_to_a_real_registry_and_pull_the_manifest_back() {
    let dir = Dir::new("push");
    static_agent();
    let registry = Registry::start(&dir.0, false);
    // A Docker config whose credential store is a helper of ours, which notes that it was asked.
    let docker = dir.0.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(docker.join("config.json"), r#"{"credsStore": "tethertest"}"#).unwrap();
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-tethertest");
    let asked = dir.0.join("asked");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\ncat > {}\necho '{{\"Username\": \"ann\", \"Secret\": \"pw\"}}'\n", asked.display()),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let reference = format!("{}/tether/agent:test", registry.addr);

    let push = |extra: &[&str]| {
        tether()
            .args(["agent-image", "push", &reference])
            .args(extra)
            .env("DOCKER_CONFIG", &docker)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    // Plain HTTP only when asked: without --plain-http the TLS handshake fails, and the error says so.
    let out = push(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&registry.addr) && err.contains("--plain-http"), "{}", text(&out));

    let out = push(&["--plain-http"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let digest = digest_in(&stdout);
    assert!(stdout.contains("docker-credential-tethertest"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap().trim(),
        registry.addr,
        "the helper was asked for this registry"
    );

    // Pulled back: the registry serves the manifest under that digest, and it is the build's.
    let (code, head, body) =
        get(&registry.addr, "/v2/tether/agent/manifests/test", "application/vnd.oci.image.manifest.v1+json").unwrap();
    assert_eq!(code, 200, "{head}");
    assert_eq!(sha256(&body), digest);
    assert!(head.to_ascii_lowercase().contains(&format!("docker-content-digest: {digest}")), "{head}");
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let (code, _, blob) = get(&registry.addr, &format!("/v2/tether/agent/blobs/{layer}"), "*/*").unwrap();
    assert_eq!((code, sha256(&blob)), (200, layer.to_string()));
    let build_dir = Dir::new("push-build");
    assert_eq!(build(&build_dir.0, &[]).1, digest, "the same image as `build` writes");
}

#[test]
fn a_registry_that_refuses_the_push_is_named_with_the_fix() {
    let dir = Dir::new("refused");
    static_agent();
    let registry = Registry::start(&dir.0, true);
    let reference = format!("{}/tether/agent:test", registry.addr);
    let out = tether()
        .args(["agent-image", "push", &reference, "--plain-http"])
        .env("DOCKER_CONFIG", dir.0.join("none"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&registry.addr), "{}", text(&out));
    let out = tether().args(["agent-image", "push", "Not A/Reference", "--plain-http"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("REGISTRY/REPO:TAG"), "{}", text(&out));
}

#[test]
fn load_into_containerd_hands_ctr_the_archive() {
    // Stand-in: containerd cannot run here. The script keeps what `ctr` would import.
    let dir = Dir::new("load");
    static_agent();
    let ctr = dir.0.join("ctr");
    let kept = dir.0.join("kept.tar");
    let args = dir.0.join("args");
    std::fs::write(
        &ctr,
        format!(
            "#!/bin/sh\necho \"$@\" > {}\nfor a; do last=$a; done\ncp \"$last\" {}\necho imported\n",
            args.display(),
            kept.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ctr, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = tether()
        .args(["agent-image", "load", "--into", "containerd", "--ctr"])
        .arg(&ctr)
        .args(["--address", "/run/k3s/containerd/containerd.sock"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = std::fs::read_to_string(&args).unwrap();
    assert!(said.starts_with("--address /run/k3s/containerd/containerd.sock -n k8s.io images import /"), "{said}");
    let files = untar(&std::fs::read(&kept).unwrap());
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let name = String::from_utf8(tether().args(["agent-image", "name"]).output().unwrap().stdout).unwrap();
    assert_eq!(index["manifests"][0]["annotations"]["io.containerd.image.name"], name.trim());
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded"), "{}", text(&out));
    // No ctr at all: named, with the option.
    let out =
        tether().args(["agent-image", "load", "--into", "containerd", "--ctr", "/nonexistent/ctr"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/nonexistent/ctr") && err.contains("--ctr"), "{}", text(&out));
}

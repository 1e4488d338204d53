//! Local pods: network namespace + chroot root file system + target process + services.

use std::ffi::CString;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail, ensure};

use crate::netns::{self, POD_PREFIX};
use crate::programs;
use crate::services::Services;

/// The pod's own address (on `pod0`, a /24).
pub const POD_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The HTTP service's address.
pub const HTTP_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// The echo service's address (TCP and UDP, port 7).
pub const ECHO_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
/// The sink service's address (TCP port 9).
pub const SINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
/// The DNS server's address (UDP and TCP port 53).
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);
pub const HTTP_ADDR: SocketAddrV4 = SocketAddrV4::new(HTTP_IP, 80);
pub const ECHO_ADDR: SocketAddrV4 = SocketAddrV4::new(ECHO_IP, 7);
pub const SINK_ADDR: SocketAddrV4 = SocketAddrV4::new(SINK_IP, 9);
pub const DNS_ADDR: SocketAddrV4 = SocketAddrV4::new(DNS_IP, 53);

static COUNTER: AtomicU64 = AtomicU64::new(0);
static STALE_CLEANUP: std::sync::Once = std::sync::Once::new();

/// Busybox applets linked in the pod's `/bin`.
const APPLETS: &[&str] = &["sh", "sleep", "cat", "ls", "echo", "env", "true", "false", "wget", "nslookup", "hostname"];

/// What a pod looks like; [`PodSpec::start`] makes it.
#[derive(Debug, Clone)]
pub struct PodSpec {
    name: String,
    env: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>, u32)>,
    copies: Vec<(PathBuf, String)>,
    hosts: Vec<(String, Ipv4Addr)>,
}

impl PodSpec {
    /// A pod named `name` (lowercase letters, digits and `-`; it is also the hostname).
    pub fn new(name: &str) -> Self {
        PodSpec { name: name.to_string(), env: Vec::new(), files: Vec::new(), copies: Vec::new(), hosts: Vec::new() }
    }

    /// Adds a variable to the target's environment. The environment starts empty except for
    /// `PATH=/bin` (which this can override).
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// A file (mode 0644) in the pod's root file system; `path` is absolute inside the pod.
    /// Parent directories are created; a default file (e.g. `/etc/resolv.conf`) is replaced.
    pub fn file(self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.file_mode(path, contents, 0o644)
    }

    /// Like [`PodSpec::file`] with an explicit mode (e.g. 0o755 for a program).
    pub fn file_mode(mut self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((path.to_string(), contents.into(), mode));
        self
    }

    /// Copies a host file (keeping its mode) to `pod_path` in the pod's root, e.g. a static
    /// probe binary to run with [`Pod::exec_in_pod`].
    pub fn copy_file(mut self, host_path: impl AsRef<Path>, pod_path: &str) -> Self {
        self.copies.push((host_path.as_ref().to_path_buf(), pod_path.to_string()));
        self
    }

    /// An extra `/etc/hosts` line `ip name`.
    pub fn host(mut self, name: &str, ip: Ipv4Addr) -> Self {
        self.hosts.push((name.to_string(), ip));
        self
    }

    /// The target's environment as it will be set.
    fn target_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("PATH".to_string(), "/bin".to_string())];
        for (k, v) in &self.env {
            env.retain(|(key, _)| key != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }

    /// Creates the namespace, root file system, services and target process. On error,
    /// whatever was already made is removed again.
    pub fn start(self) -> Result<Pod> {
        validate_name(&self.name)?;
        ensure!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() } == 0,
            "local pods need root (network namespaces, chroot)"
        );
        let busybox = programs::busybox()?;
        let tmp = std::env::temp_dir();
        STALE_CLEANUP.call_once(|| netns::cleanup_stale(&tmp));

        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let netns_name = format!("{POD_PREFIX}{}-{}-{n}", self.name, std::process::id());
        let root = tmp.join(&netns_name);
        let mut pod = Pod {
            name: self.name.clone(),
            netns: netns_name.clone(),
            root: root.clone(),
            pid: 0,
            ip: POD_IP,
            http: crate::HTTP_ADDR,
            dns: crate::DNS_ADDR,
            echo: crate::ECHO_ADDR,
            sink: crate::SINK_ADDR,
            netns_fd: None,
            netns_id: None,
            child: None,
            services: None,
            netns_created: false,
            root_created: false,
            torn_down: false,
        };

        // Network namespace.
        netns::ip(&["netns", "add", &netns_name])?;
        pod.netns_created = true;
        setup_links(&netns_name)?;
        let ns_path = netns::netns_path(&netns_name);
        let fd = netns::open_ns(&ns_path).with_context(|| format!("open {}", ns_path.display()))?;
        pod.netns_id = Some(netns::ns_id(&ns_path)?);
        let fd = Arc::new(fd);
        pod.netns_fd = Some(fd.clone());

        // Root file system.
        if root.exists() {
            fs::remove_dir_all(&root).with_context(|| format!("removing stale {}", root.display()))?;
        }
        fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
        pod.root_created = true;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
        build_root(&self, &root, &busybox)?;

        // Services, then the target.
        pod.services = Some(Services::start(&fd, &self.name)?);

        let root_c = CString::new(root.as_os_str().as_bytes()).context("root path")?;
        let raw = fd.as_raw_fd();
        let mut cmd = Command::new("/bin/busybox");
        cmd.args(["sleep", "100000"])
            .env_clear()
            .envs(self.target_env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (setns, chroot, chdir) on data prepared before fork.
        unsafe {
            cmd.pre_exec(move || {
                netns::setns_net(raw)?;
                if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn_retrying_busy_text(&mut cmd).context("starting the pod's target process")?;
        pod.pid = child.id();
        pod.child = Some(child);
        Ok(pod)
    }
}

/// `cmd.spawn()`, again while it fails with `ETXTBSY`: the root's busybox was just written, and
/// a process that another thread forked meanwhile (tests run in parallel) may hold the file open
/// for writing until it execs. The window is short; a few tries close it.
fn spawn_retrying_busy_text(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

fn validate_name(name: &str) -> Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= 40
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-'),
        "pod name {name:?}: use 1-40 of [a-z0-9-], not starting with '-'"
    );
    Ok(())
}

/// `lo` up, and `pod0` carrying 198.18.0.2/24 plus the service /32s. `pod0` is a dummy
/// interface, or, where the kernel has no dummy driver, one end of a veth pair whose other end
/// (`pod0-peer`) is in the same namespace. Nothing connects the namespace to the host.
fn setup_links(ns: &str) -> Result<()> {
    if netns::ip(&["-n", ns, "link", "add", "pod0", "type", "dummy"]).is_err() {
        netns::ip(&["-n", ns, "link", "add", "pod0", "type", "veth", "peer", "name", "pod0-peer"])
            .context("creating pod0 (neither dummy nor veth is available)")?;
        netns::ip(&["-n", ns, "link", "set", "pod0-peer", "up"])?;
    }
    let mut lines = vec!["link set lo up".to_string(), "link set pod0 up".to_string()];
    lines.push(format!("addr add {POD_IP}/24 dev pod0"));
    for ip in [HTTP_IP, ECHO_IP, SINK_IP, DNS_IP] {
        lines.push(format!("addr add {ip}/32 dev pod0"));
    }
    netns::ip_batch(ns, &lines)
}

/// Joins an absolute in-pod path onto the root, refusing `..`.
fn in_root(root: &Path, pod_path: &str) -> Result<PathBuf> {
    let p = Path::new(pod_path);
    ensure!(p.is_absolute(), "pod path {pod_path:?} must be absolute");
    let mut out = root.to_path_buf();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s),
            _ => bail!("pod path {pod_path:?} must not contain '..'"),
        }
    }
    ensure!(out != root, "pod path {pod_path:?} names the root");
    Ok(out)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.is_symlink() {
        fs::remove_file(path)?;
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn build_root(spec: &PodSpec, root: &Path, busybox: &Path) -> Result<()> {
    let bin = root.join("bin");
    fs::create_dir_all(&bin)?;
    fs::copy(busybox, bin.join("busybox")).with_context(|| format!("copying {} into the pod", busybox.display()))?;
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755))?;
    for a in APPLETS {
        symlink("busybox", bin.join(a))?;
    }
    fs::create_dir_all(root.join("tmp"))?;
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;

    let mut hosts = format!("127.0.0.1 localhost\n{POD_IP} {}\n", spec.name);
    for (name, ip) in &spec.hosts {
        hosts.push_str(&format!("{ip} {name}\n"));
    }
    let defaults: [(&str, String); 4] = [
        ("/etc/hosts", hosts),
        (
            "/etc/resolv.conf",
            format!(
                "nameserver {DNS_IP}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
            ),
        ),
        ("/etc/hostname", format!("{}\n", spec.name)),
        ("/etc/nsswitch.conf", "hosts: files dns\n".to_string()),
    ];
    for (p, c) in defaults {
        write_file(&in_root(root, p)?, c.as_bytes(), 0o644)?;
    }
    for (host, p) in &spec.copies {
        let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = fs::metadata(host)?.permissions().mode() & 0o7777;
        write_file(&in_root(root, p)?, &data, mode)?;
    }
    for (p, c, mode) in &spec.files {
        write_file(&in_root(root, p)?, c, *mode)?;
    }
    Ok(())
}

/// A running local pod. Dropping it (or [`Pod::stop`]) kills the target and every process in
/// the pod's namespace, stops the services, deletes the namespace and removes the root.
pub struct Pod {
    pub name: String,
    /// `tether-pod-<name>-<pid>-<counter>`, as listed by `ip netns list`.
    pub netns: String,
    /// The pod's root file system (`/proc/<pid>/root` of the target).
    pub root: PathBuf,
    /// The target process: inside the namespace, chrooted to `root`, environment as specified.
    pub pid: u32,
    pub ip: Ipv4Addr,
    /// HTTP service, 198.18.0.10:80.
    pub http: SocketAddrV4,
    /// DNS server (UDP and TCP), 198.18.0.53:53.
    pub dns: SocketAddrV4,
    /// Echo service (TCP and UDP), 198.18.0.11:7.
    pub echo: SocketAddrV4,
    /// Sink service (TCP), 198.18.0.12:9: reads a big-endian u64 N, writes N bytes of `x`.
    pub sink: SocketAddrV4,
    netns_fd: Option<Arc<OwnedFd>>,
    netns_id: Option<(u64, u64)>,
    child: Option<Child>,
    services: Option<Services>,
    netns_created: bool,
    root_created: bool,
    torn_down: bool,
}

impl std::fmt::Debug for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pod")
            .field("name", &self.name)
            .field("netns", &self.netns)
            .field("root", &self.root)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Pod {
    fn fd(&self) -> &Arc<OwnedFd> {
        self.netns_fd.as_ref().expect("a started pod has a namespace")
    }

    /// `/var/run/netns/<netns>`.
    pub fn netns_path(&self) -> PathBuf {
        netns::netns_path(&self.netns)
    }

    /// Makes `cmd` run inside the pod's network namespace (host file system, caller's
    /// environment). Processes spawned this way are killed when the pod stops.
    pub fn exec_in_netns<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        let fd = self.fd().clone();
        // SAFETY: setns is async-signal-safe; the Arc keeps the fd open.
        unsafe { cmd.pre_exec(move || netns::setns_net(fd.as_raw_fd())) }
    }

    /// Makes `cmd` run inside the pod: its network namespace and chrooted to its root (so
    /// `/etc/resolv.conf` and `/etc/hosts` are the pod's; the program must exist in the root,
    /// e.g. `/bin/busybox` or a static binary added with [`PodSpec::copy_file`]).
    pub fn exec_in_pod<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        let fd = self.fd().clone();
        let root = CString::new(self.root.as_os_str().as_bytes()).expect("root path has no NUL");
        // SAFETY: only async-signal-safe calls on data prepared before fork.
        unsafe {
            cmd.pre_exec(move || {
                netns::setns_net(fd.as_raw_fd())?;
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }

    /// Runs `f` on a thread inside the pod's network namespace (sockets it creates belong to
    /// the pod); returns its result. A panic in `f` propagates.
    pub fn run_in_netns<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        netns::in_netns(self.fd(), f)
    }

    /// HTTP requests answered so far.
    pub fn http_hits(&self) -> u64 {
        self.counter(|c| &c.http)
    }
    /// DNS queries received so far (UDP and TCP).
    pub fn dns_queries(&self) -> u64 {
        self.counter(|c| &c.dns)
    }
    /// TCP echo connections accepted so far.
    pub fn echo_connections(&self) -> u64 {
        self.counter(|c| &c.echo_tcp)
    }
    /// UDP echo datagrams received so far.
    pub fn echo_datagrams(&self) -> u64 {
        self.counter(|c| &c.echo_udp)
    }
    /// Sink connections accepted so far.
    pub fn sink_connections(&self) -> u64 {
        self.counter(|c| &c.sink)
    }

    fn counter(&self, f: impl Fn(&crate::services::Counters) -> &AtomicU64) -> u64 {
        self.services.as_ref().map(|s| f(s.counters()).load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Tears the pod down now, reporting what could not be cleaned up.
    pub fn stop(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut errors = Vec::new();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(id) = self.netns_id {
            netns::kill_processes_in(id);
        }
        if let Some(s) = self.services.take() {
            s.stop();
        }
        self.netns_fd = None;
        if self.netns_created
            && let Err(e) = netns::delete_netns(&self.netns)
        {
            errors.push(format!("{e:#}"));
        }
        if self.root_created
            && let Err(e) = fs::remove_dir_all(&self.root)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!("removing {}: {e}", self.root.display()));
        }
        if errors.is_empty() { Ok(()) } else { bail!("tearing down pod {}: {}", self.name, errors.join("; ")) }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("tether-testkit: {e:#}");
        }
    }
}

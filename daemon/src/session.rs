//! Sessions: one launch (or `tether exec`) against one target, and the agents they share.
//!
//! A session is created by a client (the CLI or an editor), then joined by the processes it
//! launches (the bootstrap handshake hands over their seccomp listeners). It ends when its last
//! listener has no process left, when nothing joined it within [`JOIN_DEADLINE`], or when a
//! client stops it (`tether/stopSession`, `tether/launchEnded`). Agents are kept per target and
//! reused by later sessions while they are alive.
//!
//! Clients see sessions as [`SessionSnapshot`]s: `starting` while the agent starts, `ready` while
//! processes may join, then `failed` or `ended` (the last [`ENDED_KEPT`] stay listed). Every change
//! of the table wakes [`Sessions::changed`], which the editor hub turns into notifications.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_config::Config;
use tokio::sync::mpsc::UnboundedSender;

use crate::editor::protocol::{AgentInfo, Counters, Diagnostic, ProcessInfo, SessionSnapshot, SessionState};

use crate::intercept::{self, Scope, Stats};
use crate::target::{self, TargetSpec};

/// A session that nothing joined within this time is dropped.
pub const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// How many ended or failed sessions stay listed.
pub const ENDED_KEPT: usize = 16;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let f = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut &f, &mut buf).expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a client asks for (`tether/createSession`).
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct CreateParams {
    /// The target (`pid:1234`); default: `target.path` of the config file.
    pub target: Option<String>,
    /// The config file; default: `<cwd>/.tether/tether.json` when it exists.
    pub config: Option<PathBuf>,
    /// The project directory, an absolute path: where the config is looked up, and a directory
    /// that stays local.
    pub cwd: PathBuf,
    /// A name for people (the editor's launch name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The session lives until `tether/launchEnded` or `tether/stopSession` (editor launches):
    /// debuggers start helper processes before the program and stop the program on Restart, so
    /// "no process left" does not mean the launch is over. Such a session still ends after
    /// [`EDITOR_IDLE`] without any process, should the editor never say so.
    #[serde(default)]
    pub until_ended: bool,
    /// The client's `KUBECONFIG` (a path list), for Kubernetes targets: the daemon outlives the
    /// terminal that started it, so it uses the kubeconfig of whoever asks. Default: the
    /// daemon's own environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// The client's `TETHER_KUBE_CONTEXT`: a context of that kubeconfig, over `target.context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_context: Option<String>,
}

/// How long a session kept for its editor may have no process before it ends anyway.
pub const EDITOR_IDLE: Duration = Duration::from_secs(600);

/// What a launched process needs to join the session.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SessionInfo {
    pub session: String,
    pub token: String,
    pub socket: PathBuf,
    pub target: String,
    /// Variables to set over the local environment.
    pub env: BTreeMap<String, String>,
    /// Variables to remove from the local environment.
    pub env_unset: Vec<String>,
    /// The layer library for `LD_PRELOAD` launches.
    pub layer: PathBuf,
    /// `layer.require`: a process that cannot be intercepted stops instead of running unseen.
    pub require: bool,
    /// The target's whole environment, before the config's rules (for the doctor; not sent).
    #[serde(skip)]
    #[schemars(skip)]
    pub remote_env: BTreeMap<String, String>,
}

pub struct Session {
    pub id: String,
    pub token: String,
    pub target: TargetSpec,
    pub scope: Arc<Scope>,
    pub created: Instant,
    pub listeners: AtomicUsize,
    pub joined: std::sync::atomic::AtomicBool,
    /// Seconds since the Unix epoch, for people.
    pub created_unix: u64,
    pub label: Option<String>,
    pub workspace: PathBuf,
    /// What the doctor found while the session runs.
    pub diagnostics: Mutex<Vec<Diagnostic>>,
    /// See [`CreateParams::until_ended`].
    pub until_ended: bool,
    /// Since when no process has been under the session (checked by the sweep).
    idle_since: Mutex<Option<Instant>>,
    /// The sweep found the agent dead (and said so in the session's errors).
    agent_lost: std::sync::atomic::AtomicBool,
    agent: Arc<target::Running>,
}

impl Session {
    /// How the session looks to clients now.
    pub fn snapshot(&self, state: SessionState, end_reason: Option<String>) -> SessionSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let st = &self.scope.stats;
        let hello = &self.agent.agent.hello;
        SessionSnapshot {
            id: self.id.clone(),
            target: self.target.to_string(),
            state,
            agent: Some(AgentInfo {
                version: hello.agent_version.clone(),
                target_pid: hello.target_pid,
                capabilities: hello.capabilities.clone(),
            }),
            processes: st
                .processes
                .lock()
                .unwrap()
                .values()
                .map(|p| ProcessInfo {
                    pid: p.pid,
                    executable: p.executable.clone(),
                    since: p.since,
                    skipped: p.skipped,
                })
                .collect(),
            counters: {
                let incoming = self.scope.incoming.snapshot();
                Counters {
                    connections_total: st.connections.load(Relaxed),
                    incoming_connections: incoming.stolen + incoming.filtered + incoming.mirrored,
                    bytes_in: incoming.agent.bytes_in,
                    bytes_out: incoming.agent.bytes_out,
                    files_read: st.files_read.load(Relaxed),
                    dns_lookups: st.dns_lookups.load(Relaxed),
                    ..Counters::default()
                }
            },
            last_errors: st.errors.lock().unwrap().iter().cloned().collect(),
            diagnostics: {
                let found = self.scope.stats.diagnostics.lock().unwrap().clone();
                let mut all = self.diagnostics.lock().unwrap().clone();
                all.extend(found.into_iter().map(crate::editor::launch::convert));
                all
            },
            created: self.created_unix,
            end_reason,
            launch_name: self.label.clone(),
            workspace_folder: Some(self.workspace.clone()),
        }
    }
}

pub struct Sessions {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Sessions whose agent is starting, as clients see them.
    starting: Mutex<HashMap<String, SessionSnapshot>>,
    /// The last ended or failed sessions, newest first.
    ended: Mutex<VecDeque<SessionSnapshot>>,
    /// Stopped sessions whose processes still run: their directories go when the last one exits.
    draining: Mutex<Vec<Arc<Session>>>,
    agents: tokio::sync::Mutex<HashMap<TargetSpec, Arc<target::Running>>>,
    runtime_dir: PathBuf,
    changed: tokio::sync::Notify,
}

impl Sessions {
    pub fn new(runtime_dir: PathBuf) -> Sessions {
        Sessions {
            sessions: Mutex::default(),
            starting: Mutex::default(),
            ended: Mutex::default(),
            draining: Mutex::default(),
            agents: Default::default(),
            runtime_dir,
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Wakes whoever waits in [`Sessions::changed`] (one waiter: the editor hub).
    pub fn touch(&self) {
        self.changed.notify_one();
    }

    /// Resolves after the table changed (a change before the call counts too).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Sessions that are starting or live.
    pub fn active(&self) -> usize {
        self.sessions.lock().unwrap().len() + self.starting.lock().unwrap().len()
    }

    /// Every session as clients see it: starting, live, then the recently ended ones.
    pub fn snapshots(&self) -> Vec<SessionSnapshot> {
        let mut out: Vec<SessionSnapshot> = self.starting.lock().unwrap().values().cloned().collect();
        let mut live: Vec<Arc<Session>> = self.sessions.lock().unwrap().values().cloned().collect();
        live.sort_by_key(|s| s.created);
        out.extend(live.iter().map(|s| s.snapshot(SessionState::Ready, None)));
        out.extend(self.ended.lock().unwrap().iter().cloned());
        out
    }

    fn remember_ended(&self, snapshot: SessionSnapshot) {
        let mut ended = self.ended.lock().unwrap();
        ended.push_front(snapshot);
        ended.truncate(ENDED_KEPT);
    }

    /// Adds a finding of the doctor to a live session.
    pub fn add_diagnostic(&self, id: &str, d: Diagnostic) {
        if let Some(s) = self.get(id) {
            s.diagnostics.lock().unwrap().push(d);
            self.touch();
        }
    }

    /// Ends a live session now: no process may join it any more; with `terminate`, its
    /// processes get SIGTERM. Returns whether it was live.
    pub fn stop(&self, id: &str, reason: &str, terminate: bool) -> bool {
        let Some(s) = self.sessions.lock().unwrap().remove(id) else { return false };
        if terminate {
            let pids: Vec<u32> = s.scope.stats.processes.lock().unwrap().keys().copied().collect();
            for pid in pids {
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
        tracing::info!(session = %id, reason, "session stopped");
        self.remember_ended(s.snapshot(SessionState::Ended, Some(reason.to_string())));
        self.draining.lock().unwrap().push(s);
        self.touch();
        true
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().unwrap().get(id).cloned()
    }

    pub async fn create(&self, params: CreateParams) -> anyhow::Result<SessionInfo> {
        self.create_reporting(params, None).await
    }

    /// [`Sessions::create`], sending progress lines to `progress` while an agent starts.
    pub async fn create_reporting(
        &self,
        params: CreateParams,
        progress: Option<&UnboundedSender<String>>,
    ) -> anyhow::Result<SessionInfo> {
        let (config, config_path) = match &params.config {
            Some(p) => (tether_config::load(p)?, Some(p.clone())),
            None => tether_config::discover(&params.cwd)?,
        };
        let target_text = params
            .target
            .clone()
            .or_else(|| config.target.path.clone())
            .context("no target: pass --target pid:<PID>, or set `target.path` in .tether/tether.json")?;
        let client =
            crate::kube::Source { kubeconfig: params.kubeconfig.clone(), context: params.kube_context.clone() };
        let target = TargetSpec::parse(&target_text)?.with_client(client);
        let id = random_hex(8);
        let starting = SessionSnapshot {
            id: id.clone(),
            target: target.to_string(),
            state: SessionState::Starting,
            agent: None,
            processes: Vec::new(),
            counters: Counters::default(),
            last_errors: Vec::new(),
            diagnostics: Vec::new(),
            created: unix_now(),
            end_reason: None,
            launch_name: params.label.clone(),
            workspace_folder: Some(params.cwd.clone()),
        };
        self.starting.lock().unwrap().insert(id.clone(), starting.clone());
        self.touch();
        let built = self.build(&id, &params, &config, config_path, &target, progress).await;
        self.starting.lock().unwrap().remove(&id);
        if let Err(e) = &built {
            let mut failed = starting;
            failed.state = SessionState::Failed;
            failed.last_errors.push(format!("{e:#}"));
            failed.end_reason = Some("it could not start".into());
            self.remember_ended(failed);
        }
        self.touch();
        built
    }

    async fn build(
        &self,
        id: &str,
        params: &CreateParams,
        config: &Config,
        config_path: Option<PathBuf>,
        target: &TargetSpec,
        progress: Option<&UnboundedSender<String>>,
    ) -> anyhow::Result<SessionInfo> {
        let agent = self.agent_for(target, config, progress).await?;
        let remote_env = agent.agent.env().await.with_context(|| format!("reading the environment of {target}"))?;
        let env = tether_config::env::remote_env(&remote_env, &config.feature.env);

        let home = std::env::var_os("HOME").map(PathBuf::from);
        let ctx = tether_config::fs::RuleContext { home, project_dirs: vec![params.cwd.clone()] };
        let paths = tether_config::fs::PathRules::new(&config.feature.fs, &ctx)?;
        let mut outgoing = tether_config::net::OutgoingRules::new(&config.feature.network.outgoing)?;
        for name in outgoing.host_names() {
            let addrs = agent
                .agent
                .resolve(&name)
                .await
                .with_context(|| format!("resolving `{name}` from feature.network.outgoing.filter in {target}"))?;
            outgoing.set_resolved(&name, addrs);
        }

        let id = id.to_string();
        let dir_root = self.runtime_dir.join("sessions").join(&id);
        crate::paths::private_dir(&dir_root)?;
        let skip_config = config.clone();
        let scope = Arc::new(Scope {
            session: id.clone(),
            paths,
            outgoing,
            skip: Box::new(move |name| skip_config.skips(name) || tether_config::model::skipped_built_in(name)),
            agent: agent.agent.clone(),
            stats: Arc::new(Stats::default()),
            rt: tokio::runtime::Handle::current(),
            dir_root,
            dirs: Mutex::default(),
            writes: intercept::WriteThrough::new(writable_remote(config)),
            incoming: Arc::new(intercept::incoming::Incoming::new(config.feature.network.incoming.clone())),
        });
        let session = Arc::new(Session {
            id: id.clone(),
            token: random_hex(16),
            target: target.clone(),
            scope,
            created: Instant::now(),
            listeners: AtomicUsize::new(0),
            joined: Default::default(),
            created_unix: unix_now(),
            label: params.label.clone(),
            workspace: params.cwd.clone(),
            // What the target's backend found while starting the agent (service mesh, ...).
            diagnostics: Mutex::new(agent.diagnostics().iter().cloned().map(crate::editor::launch::convert).collect()),
            until_ended: params.until_ended,
            idle_since: Mutex::default(),
            agent_lost: Default::default(),
            agent,
        });
        let layer = install_layer(config.layer.dir.as_deref())?;
        tracing::info!(session = %id, %target, config = ?config_path, "session created");
        let info = SessionInfo {
            session: id.clone(),
            token: session.token.clone(),
            socket: crate::paths::socket(),
            target: target.to_string(),
            env,
            env_unset: Vec::new(),
            layer,
            require: config.layer.require,
            remote_env,
        };
        self.sessions.lock().unwrap().insert(id, session);
        Ok(info)
    }

    /// The running agent for `target`, or a new one (the kind's backend starts it: `target::start`).
    async fn agent_for(
        &self,
        target: &TargetSpec,
        config: &Config,
        progress: Option<&UnboundedSender<String>>,
    ) -> anyhow::Result<Arc<target::Running>> {
        let key = target.with_config(config);
        let mut agents = self.agents.lock().await;
        if let Some(a) = agents.get(&key) {
            if a.is_alive() {
                return Ok(a.clone());
            }
            tracing::warn!(%target, "the agent is gone; starting a new one");
            agents.remove(&key);
        }
        let agent = Arc::new(target::start(&key, config, &self.runtime_dir, progress).await?);
        agents.insert(key, agent.clone());
        Ok(agent)
    }

    /// A listener joined `session`: serve it on its own thread.
    pub fn serve(&self, session: Arc<Session>, listener: intercept::Listener) {
        session.listeners.fetch_add(1, Ordering::SeqCst);
        session.joined.store(true, Ordering::SeqCst);
        let name = format!("supervisor-{}", session.id);
        let spawned = std::thread::Builder::new().name(name).spawn({
            let session = session.clone();
            move || {
                intercept::serve(listener, session.scope.clone());
                session.listeners.fetch_sub(1, Ordering::SeqCst);
            }
        });
        if let Err(e) = spawned {
            session.listeners.fetch_sub(1, Ordering::SeqCst);
            session.scope.stats.error(format!("could not start a supervisor thread: {e}"));
        }
        self.touch();
    }

    /// Drops ended sessions and agents that no session uses and that died.
    pub async fn sweep(&self) {
        let ended: Vec<(String, &str)> = {
            let sessions = self.sessions.lock().unwrap();
            sessions
                .values()
                .filter_map(|s| {
                    let joined = s.joined.load(Ordering::SeqCst);
                    let live = s.listeners.load(Ordering::SeqCst);
                    let idle = {
                        let mut since = s.idle_since.lock().unwrap();
                        if live > 0 {
                            *since = None;
                        }
                        since.get_or_insert_with(Instant::now).elapsed()
                    };
                    if joined && live == 0 && !s.until_ended {
                        Some((s.id.clone(), "all its processes exited"))
                    } else if joined && live == 0 && idle > EDITOR_IDLE {
                        Some((s.id.clone(), "no process for 10 minutes and the editor did not end it"))
                    } else if !joined && s.created.elapsed() > JOIN_DEADLINE {
                        Some((s.id.clone(), "no process joined it within 120 s"))
                    } else {
                        None
                    }
                })
                .collect()
        };
        let live: Vec<Arc<Session>> = self.sessions.lock().unwrap().values().cloned().collect();
        for s in live {
            if !s.agent.is_alive() && !s.agent_lost.swap(true, Ordering::SeqCst) {
                // Remote calls of its processes fail from now on: say so where people look.
                s.scope.stats.error(format!(
                    "the agent for {} died; remote files, names and connections fail until the session is started again",
                    s.target
                ));
                self.touch();
            }
        }
        for (id, reason) in ended {
            let removed = self.sessions.lock().unwrap().remove(&id);
            if let Some(s) = removed {
                tracing::info!(session = %id, reason, "session ended");
                let _ = std::fs::remove_dir_all(&s.scope.dir_root);
                self.remember_ended(s.snapshot(SessionState::Ended, Some(reason.into())));
                self.touch();
            }
        }
        self.draining.lock().unwrap().retain(|s| {
            let done = s.listeners.load(Ordering::SeqCst) == 0;
            if done {
                let _ = std::fs::remove_dir_all(&s.scope.dir_root);
            }
            !done
        });
        let mut agents = self.agents.lock().await;
        agents.retain(|_, a| a.keep(Arc::strong_count(a)));
        for a in agents.values() {
            a.agent.trim_pool();
        }
    }
}

/// Can this config make a remote file writable?
fn writable_remote(config: &Config) -> bool {
    use tether_config::model::FsMode;
    let fs = &config.feature.fs;
    fs.mode == FsMode::Write || (fs.mode != FsMode::Local && !fs.read_write.0.is_empty())
}

/// A file's identity and version: inode, size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId(u64, u64, i64, i64);

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId(m.ino(), m.size(), m.mtime(), m.mtime_nsec())
    }
}

/// Places the layer library at a stable per-user path (or `layer.dir`) and returns that path.
pub fn install_layer(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(crate::paths::layer_dir);
    let dest = dir.join("libtether_layer.so");
    let Ok(src) = crate::paths::beside_exe("libtether_layer.so") else {
        // Without a layer only `tether exec` launches work; editor launches report it.
        return Ok(dest);
    };
    // Comparing the libraries costs milliseconds per launch: remember the last copy made (or
    // found equal) by the source's and the copy's identity, and compare again only when either
    // changed.
    static INSTALLED: Mutex<Option<(PathBuf, FileId, FileId)>> = Mutex::new(None);
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| FileId::of(&m));
    if let (Some(s), Some(d)) = (id(&src), id(&dest))
        && INSTALLED.lock().unwrap().as_ref() == Some(&(dest.clone(), s, d))
    {
        return Ok(dest);
    }
    let same = match (std::fs::read(&src), std::fs::read(&dest)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating the layer directory {}", dir.display()))?;
        let tmp = dir.join(format!(".libtether_layer.so.{}", random_hex(4)));
        std::fs::copy(&src, &tmp).with_context(|| format!("copying the layer to {}", dir.display()))?;
        std::fs::rename(&tmp, &dest)?;
    }
    if let (Some(s), Some(d)) = (id(&src), id(&dest)) {
        *INSTALLED.lock().unwrap() = Some((dest.clone(), s, d));
    }
    if !dest.exists() {
        bail!("the layer is missing at {}", dest.display());
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert_eq!(random_hex(8).len(), 16);
        assert_ne!(random_hex(8), random_hex(8));
    }
}

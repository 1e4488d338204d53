//! Sessions: one launch (or `tether exec`) against one target, and the agents they share.
//!
//! A session is created by a client (the CLI or an editor), then joined by the processes it
//! launches (the bootstrap handshake hands over their seccomp listeners). It ends when its last
//! listener has no process left, or when nothing joined it within [`JOIN_DEADLINE`]. Agents are
//! kept per target and reused by later sessions while they are alive.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tether_config::Config;

use crate::intercept::{self, Scope, Stats};
use crate::target::{TargetSpec, local};

/// A session that nothing joined within this time is dropped.
pub const JOIN_DEADLINE: Duration = Duration::from_secs(120);

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

/// What a client asks for.
#[derive(Debug, Deserialize)]
pub struct CreateParams {
    pub target: Option<String>,
    pub config: Option<PathBuf>,
    pub cwd: PathBuf,
}

/// What a launched process needs to join the session.
#[derive(Debug, Serialize, Deserialize)]
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
}

pub struct Session {
    pub id: String,
    pub token: String,
    pub target: TargetSpec,
    pub scope: Arc<Scope>,
    pub created: Instant,
    pub listeners: AtomicUsize,
    pub joined: std::sync::atomic::AtomicBool,
    _agent: Arc<local::LocalAgent>,
}

pub struct Sessions {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    agents: tokio::sync::Mutex<HashMap<TargetSpec, Arc<local::LocalAgent>>>,
    runtime_dir: PathBuf,
}

impl Sessions {
    pub fn new(runtime_dir: PathBuf) -> Sessions {
        Sessions { sessions: Mutex::default(), agents: Default::default(), runtime_dir }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().unwrap().get(id).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().unwrap().values().cloned().collect()
    }

    pub async fn create(&self, params: CreateParams) -> anyhow::Result<SessionInfo> {
        let (config, config_path) = match &params.config {
            Some(p) => (tether_config::load(p)?, Some(p.clone())),
            None => tether_config::discover(&params.cwd)?,
        };
        let target_text = params
            .target
            .clone()
            .or_else(|| config.target.path.clone())
            .context("no target: pass --target pid:<PID>, or set `target.path` in .tether/tether.json")?;
        let target = TargetSpec::parse(&target_text)?;
        let agent = self.agent_for(&target, &config).await?;
        let remote_env = agent.agent.env().await.with_context(|| format!("reading the environment of {target}"))?;
        let env = tether_config::env::remote_env(&remote_env, &config.feature.env);

        let home = std::env::var_os("HOME").map(PathBuf::from);
        let ctx = tether_config::fs::RuleContext { home, project_dirs: vec![params.cwd.clone()] };
        let paths = tether_config::fs::PathRules::new(&config.feature.fs, &ctx)?;
        let mut outgoing = tether_config::net::OutgoingRules::new(&config.feature.network.outgoing)?;
        for name in outgoing.host_names() {
            let addrs = agent.agent.resolve(&name).await.with_context(|| {
                format!("resolving `{name}` from feature.network.outgoing.filter in {target}")
            })?;
            outgoing.set_resolved(&name, addrs);
        }

        let id = random_hex(8);
        let dir_root = self.runtime_dir.join("sessions").join(&id);
        crate::paths::private_dir(&dir_root)?;
        let skip_config = config.clone();
        let scope = Arc::new(Scope {
            session: id.clone(),
            paths,
            outgoing,
            skip: Box::new(move |name| skip_config.skips(name) || BUILT_IN_SKIPS.contains(&name)),
            agent: agent.agent.clone(),
            stats: Arc::new(Stats::default()),
            rt: tokio::runtime::Handle::current(),
            dir_root,
            dirs: Mutex::default(),
            writes: intercept::WriteThrough::new(writable_remote(&config)),
        });
        let session = Arc::new(Session {
            id: id.clone(),
            token: random_hex(16),
            target: target.clone(),
            scope,
            created: Instant::now(),
            listeners: AtomicUsize::new(0),
            joined: Default::default(),
            _agent: agent,
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
        };
        self.sessions.lock().unwrap().insert(id, session);
        Ok(info)
    }

    /// The running agent for `target`, or a new one.
    async fn agent_for(&self, target: &TargetSpec, config: &Config) -> anyhow::Result<Arc<local::LocalAgent>> {
        let mut agents = self.agents.lock().await;
        if let Some(a) = agents.get(target) {
            if a.is_alive() {
                return Ok(a.clone());
            }
            tracing::warn!(%target, "the agent is gone; starting a new one");
            agents.remove(target);
        }
        let TargetSpec::Pid(pid) = target;
        let agent = local::start(
            *pid,
            Duration::from_secs(config.agent.startup_timeout),
            Duration::from_secs(config.agent.idle_timeout),
            &self.runtime_dir,
        )
        .await?;
        let agent = Arc::new(agent);
        agents.insert(target.clone(), agent.clone());
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
    }

    /// Drops ended sessions and agents that no session uses and that died.
    pub async fn sweep(&self) {
        let ended: Vec<String> = {
            let sessions = self.sessions.lock().unwrap();
            sessions
                .values()
                .filter(|s| {
                    let joined = s.joined.load(Ordering::SeqCst);
                    let live = s.listeners.load(Ordering::SeqCst);
                    (joined && live == 0) || (!joined && s.created.elapsed() > JOIN_DEADLINE)
                })
                .map(|s| s.id.clone())
                .collect()
        };
        for id in ended {
            if let Some(s) = self.sessions.lock().unwrap().remove(&id) {
                tracing::info!(session = %id, "session ended");
                let _ = std::fs::remove_dir_all(&s.scope.dir_root);
            }
        }
        let mut agents = self.agents.lock().await;
        agents.retain(|_, a| a.is_alive());
    }
}

/// Can this config make a remote file writable?
fn writable_remote(config: &Config) -> bool {
    use tether_config::model::FsMode;
    let fs = &config.feature.fs;
    fs.mode == FsMode::Write || (fs.mode != FsMode::Local && !fs.read_write.0.is_empty())
}

/// Programs that are never intercepted: debuggers and the tools that build programs.
pub const BUILT_IN_SKIPS: &[&str] = &["gdb", "lldb", "dlv", "lldb-server", "gdbserver", "strace", "ltrace"];

/// Places the layer library at a stable per-user path (or `layer.dir`) and returns that path.
pub fn install_layer(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(crate::paths::layer_dir);
    let dest = dir.join("libtether_layer.so");
    let Ok(src) = crate::paths::beside_exe("libtether_layer.so") else {
        // Without a layer only `tether exec` launches work; editor launches report it.
        return Ok(dest);
    };
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

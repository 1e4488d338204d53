//! One client's view of the daemon: the `LanguageServer` implementation and the `tether/*`
//! handlers. Everything shared (sessions, other clients) lives in [`Daemon`]; what is here is
//! per connection (open config documents, the workspace folders and their file watcher).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService};

use super::config_docs;
use super::hub::Conn;
use super::launch;
use super::protocol::Diagnostic;
use super::protocol::*;
use crate::server::Daemon;
use crate::session::CreateParams;

/// The config file's JSON Schema, computed once.
fn config_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(tether_config::json_schema)
}

/// A JSON-RPC error carrying an error chain as one line.
fn failed(e: impl std::fmt::Display) -> Error {
    Error { code: ErrorCode::ServerError(-32001), message: e.to_string().into(), data: None }
}

pub struct Editor {
    daemon: Arc<Daemon>,
    client: Client,
    conn: Arc<Conn>,
    /// Open config documents by path, with their text.
    docs: Arc<Mutex<HashMap<PathBuf, String>>>,
    folders: Mutex<Vec<PathBuf>>,
    /// Watches the folders' config files; dropped with the connection.
    watcher: Arc<Mutex<Option<notify::RecommendedWatcher>>>,
    work_done_progress: std::sync::atomic::AtomicBool,
    wants_sessions: std::sync::atomic::AtomicBool,
}

/// The service for one connection, with every `tether/*` method registered.
pub fn service(daemon: Arc<Daemon>, conn: Arc<Conn>) -> (LspService<Editor>, tower_lsp_server::ClientSocket) {
    LspService::build(|client| Editor {
        daemon,
        client,
        conn,
        docs: Arc::default(),
        folders: Mutex::default(),
        watcher: Arc::default(),
        work_done_progress: Default::default(),
        wants_sessions: Default::default(),
    })
    .custom_method("tether/prepareLaunch", Editor::prepare_launch)
    .custom_method("tether/doctor", Editor::doctor)
    .custom_method("tether/listTargets", Editor::list_targets)
    .custom_method("tether/sessions", Editor::sessions)
    .custom_method("tether/stopSession", Editor::stop_session)
    .custom_method("tether/launchEnded", Editor::launch_ended)
    .custom_method("tether/explainPath", Editor::explain_path)
    .custom_method("tether/createSession", Editor::create_session)
    .custom_method("tether/handover", Editor::handover)
    .custom_method("tether/stopDaemon", Editor::stop_daemon)
    .finish()
}

fn file_path(uri: &Uri) -> Option<PathBuf> {
    uri.to_file_path().map(|p| p.into_owned())
}

/// Resolves `p` against `base` when it is relative.
fn absolute(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

/// Validates a config file's text and publishes the result for it.
async fn publish(client: &Client, path: &Path, text: &str, version: Option<i32>) {
    let Some(uri) = Uri::from_file_path(path) else { return };
    client.publish_diagnostics(uri, config_docs::diagnostics(text, path), version).await;
}

/// Re-validates config files that changed on disk and are not open in the editor.
async fn watch_disk(
    client: Client,
    docs: Arc<Mutex<HashMap<PathBuf, String>>>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
    watcher: std::sync::Weak<Mutex<Option<notify::RecommendedWatcher>>>,
) {
    while let Some(path) = events.recv().await {
        // Let a burst of events (an editor's save is several) settle, then validate once per file.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let mut paths = vec![path];
        while let Ok(p) = events.try_recv() {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        for path in paths {
            if path.file_name().is_some_and(|n| n == ".tether") && path.is_dir() {
                // A new `.tether` directory: watch it too.
                if let Some(w) = watcher.upgrade()
                    && let Some(w) = w.lock().unwrap().as_mut()
                {
                    let _ = notify::Watcher::watch(w, &path, notify::RecursiveMode::NonRecursive);
                }
                for f in config_docs::config_files(&[path.parent().unwrap_or(Path::new("/")).to_path_buf()]) {
                    if let Ok(text) = std::fs::read_to_string(&f) {
                        publish(&client, &f, &text, None).await;
                    }
                }
                continue;
            }
            if !config_docs::is_config_file(&path) || docs.lock().unwrap().contains_key(&path) {
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => publish(&client, &path, &text, None).await,
                Err(_) => {
                    if let Some(uri) = Uri::from_file_path(&path) {
                        client.publish_diagnostics(uri, Vec::new(), None).await;
                    }
                }
            }
        }
    }
}

impl LanguageServer for Editor {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let options: InitializationOptions =
            params.initialization_options.clone().and_then(|o| serde_json::from_value(o).ok()).unwrap_or_default();
        self.wants_sessions.store(options.session_notifications.unwrap_or(true), Ordering::SeqCst);
        let progress = params.capabilities.window.as_ref().and_then(|w| w.work_done_progress).unwrap_or(false);
        self.work_done_progress.store(progress, Ordering::SeqCst);
        let mut folders: Vec<PathBuf> =
            params.workspace_folders.iter().flatten().filter_map(|f| file_path(&f.uri)).collect();
        #[allow(deprecated)]
        if folders.is_empty() {
            folders.extend(params.root_uri.as_ref().and_then(file_path));
        }
        *self.folders.lock().unwrap() = folders;

        let tether = TetherCapabilities {
            version: daemon_version(),
            build: super::protocol::build_id(),
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            methods: tether_methods(),
            notifications: tether_notifications(),
        };
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec!["\"".into(), ":".into()]),
                    ..CompletionOptions::default()
                }),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                experimental: Some(serde_json::json!({ "tether": tether })),
                ..ServerCapabilities::default()
            },
            server_info: Some(ServerInfo { name: "tether".into(), version: Some(daemon_version()) }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.conn.wants_sessions.store(self.wants_sessions.load(Ordering::SeqCst), Ordering::SeqCst);
        let folders = self.folders.lock().unwrap().clone();
        if folders.is_empty() {
            return;
        }
        for f in config_docs::config_files(&folders) {
            if let Ok(text) = std::fs::read_to_string(&f) {
                publish(&self.client, &f, &text, None).await;
            }
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        match config_docs::watch(&folders, tx) {
            Ok(w) => {
                *self.watcher.lock().unwrap() = Some(w);
                let weak = Arc::downgrade(&self.watcher);
                tokio::spawn(watch_disk(self.client.clone(), self.docs.clone(), rx, weak));
            }
            Err(e) => {
                self.client
                    .log_message(MessageType::WARNING, format!("tether: config files on disk are not watched: {e}"))
                    .await
            }
        }
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, p: DidOpenTextDocumentParams) {
        let Some(path) = file_path(&p.text_document.uri).filter(|p| config_docs::is_config_file(p)) else { return };
        publish(&self.client, &path, &p.text_document.text, Some(p.text_document.version)).await;
        self.docs.lock().unwrap().insert(path, p.text_document.text);
    }

    async fn did_change(&self, p: DidChangeTextDocumentParams) {
        let Some(path) = file_path(&p.text_document.uri).filter(|p| config_docs::is_config_file(p)) else { return };
        let Some(change) = p.content_changes.into_iter().last() else { return };
        publish(&self.client, &path, &change.text, Some(p.text_document.version)).await;
        self.docs.lock().unwrap().insert(path, change.text);
    }

    async fn did_close(&self, p: DidCloseTextDocumentParams) {
        let Some(path) = file_path(&p.text_document.uri).filter(|p| config_docs::is_config_file(p)) else { return };
        self.docs.lock().unwrap().remove(&path);
        // What remains is the file on disk.
        match std::fs::read_to_string(&path) {
            Ok(text) => publish(&self.client, &path, &text, None).await,
            Err(_) => self.client.publish_diagnostics(p.text_document.uri, Vec::new(), None).await,
        }
    }

    async fn completion(&self, p: CompletionParams) -> Result<Option<CompletionResponse>> {
        let pos = p.text_document_position;
        let Some(text) = self.text_of(&pos.text_document.uri) else { return Ok(None) };
        let offset = config_docs::offset_at(&text, pos.position);
        let items = config_docs::completion(config_schema(), &text, offset);
        Ok(Some(CompletionResponse::Array(items)))
    }

    async fn hover(&self, p: HoverParams) -> Result<Option<Hover>> {
        let pos = p.text_document_position_params;
        let Some(text) = self.text_of(&pos.text_document.uri) else { return Ok(None) };
        let offset = config_docs::offset_at(&text, pos.position);
        Ok(config_docs::hover(config_schema(), &text, offset))
    }
}

impl Editor {
    /// The text of a config document: as open in the editor, else as on disk.
    fn text_of(&self, uri: &Uri) -> Option<String> {
        let path = file_path(uri).filter(|p| config_docs::is_config_file(p))?;
        if let Some(t) = self.docs.lock().unwrap().get(&path) {
            return Some(t.clone());
        }
        std::fs::read_to_string(&path).ok()
    }

    /// Loads the config of a launch: `configPath` (relative to the folder) or the folder's
    /// `.tether/tether.json`, else the defaults.
    fn load_config(
        folder: &Path,
        config_path: Option<PathBuf>,
    ) -> std::result::Result<(tether_config::Config, Option<PathBuf>), Diagnostic> {
        let loaded = match config_path.map(|c| absolute(folder, c)) {
            Some(p) => tether_config::load(&p).map(|c| (c, Some(p))),
            None => tether_config::discover(folder),
        };
        loaded.map_err(|e| {
            Diagnostic::new("config-invalid", Severity::Error, e.to_string())
                .with_fix(false, "fix the config file (the editor underlines the spot when it is open)")
        })
    }

    fn check_folder(folder: &Path) -> Result<()> {
        if !folder.is_absolute() {
            return Err(Error::invalid_params(format!("workspaceFolder {} is not an absolute path", folder.display())));
        }
        Ok(())
    }

    async fn prepare_launch(&self, p: PrepareLaunchParams) -> Result<PrepareLaunchResult> {
        Self::check_folder(&p.workspace_folder)?;
        let stopped = |diagnostics: Vec<Diagnostic>, launch: &Value| PrepareLaunchResult {
            session_id: None,
            launch: launch.clone(),
            diagnostics,
            ..PrepareLaunchResult::default()
        };
        let (config, config_path) = match Self::load_config(&p.workspace_folder, p.config_path.clone()) {
            Ok(c) => c,
            Err(d) => return Ok(stopped(vec![d], &p.launch)),
        };
        // Errors that do not depend on the target stop the launch before anything starts.
        let (_, early) = launch::diagnose(&p.launch, &launch::facts(&p.workspace_folder, &config, None));
        if early.iter().any(|d| d.severity == Severity::Error) {
            return Ok(stopped(early, &p.launch));
        }
        let label = p.launch.get("name").and_then(Value::as_str).map(str::to_string);
        let params = CreateParams {
            target: p.target.clone(),
            config: config_path.clone(),
            cwd: p.workspace_folder.clone(),
            label,
            until_ended: true,
            kubeconfig: p.kubeconfig.clone(),
            kube_context: None,
        };

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let progress = tokio::spawn(report_progress(
            self.client.clone(),
            p.work_done_token.clone().and_then(|t| serde_json::from_value(t).ok()),
            self.work_done_progress.load(Ordering::SeqCst),
            rx,
        ));
        let created = self.daemon.sessions.create_reporting(params, Some(&tx)).await;
        drop(tx);
        // The progress ends by itself; never wait for a client that does not answer its requests.
        drop(progress);
        let info = match created {
            Ok(info) => info,
            Err(e) => {
                let d = Diagnostic::new("session-failed", Severity::Error, format!("{e:#}"));
                self.client.log_message(MessageType::WARNING, format!("tether: {}", d.message)).await;
                return Ok(stopped(vec![d], &p.launch));
            }
        };

        let facts = launch::facts(&p.workspace_folder, &config, Some(info.remote_env.clone()));
        let (mut launch, diagnostics) = launch::diagnose(&p.launch, &facts);
        if diagnostics.iter().any(|d| d.severity == Severity::Error) {
            self.daemon.sessions.stop(&info.session, "the doctor found an error in the launch", false);
            return Ok(stopped(diagnostics, &p.launch));
        }
        let env = launch::apply_env(&mut launch, &launch::session_env(&info), &info.env_unset);
        if self.conn.is_gone() {
            self.daemon.sessions.stop(&info.session, "the client left before it got the session", false);
        }
        tokio::spawn(watch_attach(
            self.daemon.clone(),
            self.client.clone(),
            info.session.clone(),
            p.launch.clone(),
            facts,
        ));
        for d in diagnostics.iter().filter(|d| d.severity == Severity::Warning) {
            self.client.log_message(MessageType::WARNING, format!("tether: {} ({})", d.message, d.id)).await;
        }
        Ok(PrepareLaunchResult { session_id: Some(info.session), launch, env, env_unset: info.env_unset, diagnostics })
    }

    async fn doctor(&self, p: DoctorParams) -> Result<DoctorResult> {
        Self::check_folder(&p.workspace_folder)?;
        let config = match Self::load_config(&p.workspace_folder, p.config_path) {
            Ok((c, _)) => c,
            Err(d) => return Ok(DoctorResult { diagnostics: vec![d] }),
        };
        let facts = launch::facts(&p.workspace_folder, &config, None);
        Ok(DoctorResult { diagnostics: launch::diagnose(&p.launch, &facts).1 })
    }

    async fn list_targets(&self, p: ListTargetsParams) -> Result<ListTargetsResult> {
        let mut targets = tokio::task::spawn_blocking(super::targets::local_processes).await.map_err(failed)?;
        let source = crate::kube::Source { kubeconfig: p.kubeconfig.clone(), context: p.context.clone() };
        if source.present() {
            match super::targets::kube_targets(&source, p.namespace.as_deref(), std::time::Duration::from_secs(5)).await
            {
                Ok(kube) => targets.extend(kube),
                Err(e) => {
                    let text = format!("tether: Kubernetes targets are not listed: {e:#}");
                    self.client.log_message(MessageType::WARNING, text).await;
                }
            }
        }
        Ok(ListTargetsResult { targets })
    }

    async fn sessions(&self) -> Result<SessionsResult> {
        Ok(SessionsResult { version: daemon_version(), sessions: self.daemon.sessions.snapshots() })
    }

    async fn stop_session(&self, p: StopSessionParams) -> Result<StopSessionResult> {
        let stopped = self.daemon.sessions.stop(&p.session_id, "stopped by a client", p.terminate);
        Ok(StopSessionResult { stopped })
    }

    async fn launch_ended(&self, p: LaunchEndedParams) {
        self.daemon.sessions.stop(&p.session_id, "the editor's debug session ended", false);
    }

    async fn explain_path(&self, p: ExplainPathParams) -> Result<ExplainPathResult> {
        use tether_config::fs::{Access, Route};
        let folder = match &p.workspace_folder {
            Some(f) => {
                Self::check_folder(f)?;
                Some(f.clone())
            }
            None => None,
        };
        let raw = match &folder {
            _ if p.path.starts_with('/') => p.path.clone(),
            Some(f) => format!("{}/{}", f.display(), p.path),
            None => return Err(Error::invalid_params("a relative path needs workspaceFolder")),
        };
        let config = match (&p.config_path, &folder) {
            (Some(c), _) => {
                tether_config::load(&folder.as_deref().map_or(c.clone(), |f| absolute(f, c.clone()))).map_err(failed)?
            }
            (None, Some(f)) => tether_config::discover(f).map_err(failed)?.0,
            (None, None) => tether_config::Config::default(),
        };
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let ctx = tether_config::fs::RuleContext { home, project_dirs: folder.into_iter().collect() };
        let rules = tether_config::fs::PathRules::new(&config.feature.fs, &ctx).map_err(failed)?;
        let path = crate::intercept::proc::normalize(&raw);
        let decision = |access| {
            let d = rules.decide(&path, access);
            let route = match d.route {
                Route::Local => "local",
                Route::Remote { writable: false } => "remote",
                Route::Remote { writable: true } => "remote-writable",
                Route::NotFound => "not-found",
            };
            PathDecision { route: route.into(), rule: d.rule.to_string() }
        };
        Ok(ExplainPathResult {
            read: decision(Access::Read),
            write: decision(Access::Write),
            text: rules.explain(&path),
            path,
        })
    }

    async fn create_session(&self, p: CreateParams) -> Result<crate::session::SessionInfo> {
        if !p.cwd.is_absolute() {
            return Err(Error::invalid_params(format!(
                "cwd {:?} is not an absolute path; send the client's working directory as an absolute path \
                 (the daemon runs in a directory of its own)",
                p.cwd.display().to_string()
            )));
        }
        let info = self.daemon.sessions.create(p).await.map_err(|e| failed(format!("{e:#}")))?;
        if self.conn.is_gone() {
            self.daemon.sessions.stop(&info.session, "the client left before it got the session", false);
        }
        Ok(info)
    }

    async fn handover(&self, p: HandoverParams) -> Result<HandoverResult> {
        let sessions = self.daemon.sessions.active();
        let accepted = sessions == 0;
        tracing::info!(
            from = %daemon_version(),
            to = %p.version,
            sessions,
            "a client of another version asks for the socket: {}",
            if accepted { "stopping now" } else { "stopping once the sessions end" }
        );
        if accepted {
            self.daemon.request_stop();
        } else {
            self.daemon.retire();
        }
        Ok(HandoverResult { accepted, version: daemon_version(), sessions })
    }

    async fn stop_daemon(&self) -> Result<StopDaemonResult> {
        self.daemon.request_stop();
        Ok(StopDaemonResult { stopping: true })
    }
}

/// How long a launched program has to join its session before the editor is told why it
/// probably did not (`TETHER_ATTACH_DEADLINE_MS` overrides it, for tests).
fn attach_deadline() -> std::time::Duration {
    let ms = std::env::var("TETHER_ATTACH_DEADLINE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    std::time::Duration::from_millis(ms)
}

/// The last line of defence: when no process joined the session in time, the session gets the
/// doctor's `no-attach` diagnostic (everyone sees it in `tether/sessionChanged`) and the
/// launching editor a warning.
async fn watch_attach(
    daemon: Arc<Daemon>,
    client: Client,
    session: String,
    launch: Value,
    facts: tether_doctor::Facts,
) {
    let waited = attach_deadline();
    tokio::time::sleep(waited).await;
    let Some(s) = daemon.sessions.get(&session) else { return };
    if s.joined.load(Ordering::SeqCst) {
        return;
    }
    let d = launch::no_attach(&launch, &facts, waited);
    let text = format!("tether: {} ({})", d.message, d.id);
    daemon.sessions.add_diagnostic(&session, d);
    client.show_message(MessageType::WARNING, text).await;
}

/// Reports `$/progress` for the lines `lines` gets (sent while an agent starts), on the client's
/// token or on one created with `window/workDoneProgress/create` when the client supports it.
async fn report_progress(
    client: Client,
    token: Option<ProgressToken>,
    supported: bool,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let Some(first) = lines.recv().await else { return };
    let token = match token {
        Some(t) => t,
        None if supported => {
            let t = ProgressToken::String(format!("tether-{}", crate::session::random_hex(4)));
            let created = client
                .send_request::<request::WorkDoneProgressCreate>(WorkDoneProgressCreateParams { token: t.clone() })
                .await;
            if created.is_err() {
                return;
            }
            t
        }
        None => return,
    };
    let ongoing = client.progress(token, "tether").with_message(first).begin().await;
    while let Some(line) = lines.recv().await {
        ongoing.report(line).await;
    }
    ongoing.finish_with_message("ready").await;
}

//! The editor protocol's contract: every `tether/*` method's parameters and results, the
//! notifications, and the table that describes them.
//!
//! The table ([`methods`]) is the one source for three things that must agree: what `initialize`
//! advertises, what the daemon registers, and `schemas/editor-protocol.json` (generated with
//! `schemars`; a test fails when the checked-in file drifts).

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped on incompatible changes of the `tether/*` methods; compatible additions keep it.
pub const PROTOCOL_VERSION: u32 = 1;

/// The daemon's version as it reports it. `TETHER_DAEMON_VERSION` overrides it, which only the
/// version-mismatch tests use.
pub fn daemon_version() -> String {
    std::env::var("TETHER_DAEMON_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}

/// This executable's build: its size and modification time, read once (`/proc/self/exe` is the
/// file that runs, even after a rebuild replaced it on disk). Two processes of the same build
/// agree; a rebuilt `tether` (same version, other code) does not, so a client never uses a
/// stale daemon silently. `TETHER_DAEMON_BUILD` overrides it, which only tests use.
pub fn build_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        if let Some(v) = std::env::var("TETHER_DAEMON_BUILD").ok().filter(|v| !v.is_empty()) {
            return v;
        }
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata("/proc/self/exe") {
            Ok(m) => format!("{:x}-{:x}.{:x}", m.size(), m.mtime(), m.mtime_nsec()),
            Err(_) => "unknown".into(),
        }
    })
    .clone()
}

/// `initializationOptions` a client may pass to `initialize`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct InitializationOptions {
    /// `false`: this client does not want `tether/sessionChanged` (the CLI, which asks once and
    /// leaves). Default `true`.
    pub session_notifications: Option<bool>,
}

/// What `initialize` advertises under `capabilities.experimental.tether`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TetherCapabilities {
    /// The daemon's version (also in `serverInfo.version`).
    pub version: String,
    /// The daemon's build ([`build_id`]): clients of another build ask it to hand over, as they
    /// do for another version.
    #[serde(default)]
    pub build: String,
    /// [`PROTOCOL_VERSION`]: the version of the `tether/*` methods.
    pub protocol: u32,
    /// The daemon's process id.
    pub pid: u32,
    /// The `tether/*` requests and notifications the daemon accepts.
    pub methods: Vec<String>,
    /// The `tether/*` notifications the daemon sends.
    pub notifications: Vec<String>,
}

/// `tether/prepareLaunch` parameters.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrepareLaunchParams {
    /// The editor's launch configuration as an object (a VS Code `launch.json` entry, or the
    /// JetBrains equivalent with the same fields: `type`, `request`, `name`, `program`, `env`...).
    pub launch: Value,
    /// The workspace folder the launch belongs to (an absolute path); `.tether/tether.json` is
    /// looked up there, and the folder's files stay local.
    pub workspace_folder: PathBuf,
    /// The config file, when not `<workspaceFolder>/.tether/tether.json`.
    #[serde(default)]
    pub config_path: Option<PathBuf>,
    /// The target (`pid:1234`, ...), when not `target.path` of the config file.
    #[serde(default)]
    pub target: Option<String>,
    /// A `$/progress` token from the client; progress is reported on it while an agent starts.
    #[serde(default)]
    pub work_done_token: Option<Value>,
    /// The editor's `KUBECONFIG` (a path list), for Kubernetes targets; default: the daemon's
    /// own environment. The context comes from `target.context` of the config.
    #[serde(default)]
    pub kubeconfig: Option<String>,
}

/// `tether/prepareLaunch` result.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrepareLaunchResult {
    /// The session the launched process will join; `null` when a diagnostic of severity `error`
    /// stopped the launch (then no session runs).
    pub session_id: Option<String>,
    /// The launch configuration, patched: the environment applied in the field the debug type
    /// uses (`env` map, or `environment` list for `cppdbg`), the program replaced where needed.
    pub launch: Value,
    /// Variables to set, for clients that apply the environment themselves.
    pub env: BTreeMap<String, String>,
    /// Variables to remove, for clients that apply the environment themselves.
    pub env_unset: Vec<String>,
    /// What the doctor found and fixed.
    pub diagnostics: Vec<Diagnostic>,
}

/// A finding of the launch doctor.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Diagnostic {
    /// Stable id of the check (see docs/doctor.md), e.g. `go-linkmode`, `config-invalid`.
    pub id: String,
    pub severity: Severity,
    /// One line saying what is wrong.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

/// `error` stops the launch; `warning` and `info` do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// How a finding is fixed.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Fix {
    /// `true`: tether applied it to the launch (`description` says what changed); `false`: the
    /// user has to (`description` says how).
    pub applied: bool,
    pub description: String,
    /// A machine-usable suggestion, e.g. `{"feature.env.override": {"NODE_ENV": "development"}}`:
    /// keys are dotted config keys (objects merge, lists append), `launch.FIELD`, or a file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<Value>,
}

impl Diagnostic {
    pub fn new(id: &str, severity: Severity, message: impl Into<String>) -> Diagnostic {
        Diagnostic { id: id.into(), severity, message: message.into(), fix: None }
    }

    pub fn with_fix(mut self, applied: bool, description: impl Into<String>) -> Diagnostic {
        self.fix = Some(Fix { applied, description: description.into(), edit: None });
        self
    }
}

/// `tether/doctor` parameters.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoctorParams {
    pub launch: Value,
    pub workspace_folder: PathBuf,
    #[serde(default)]
    pub config_path: Option<PathBuf>,
}

/// `tether/doctor` result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct DoctorResult {
    pub diagnostics: Vec<Diagnostic>,
}

/// `tether/listTargets` parameters.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct ListTargetsParams {
    /// Kubernetes namespace (for Kubernetes targets; local processes ignore it).
    pub namespace: Option<String>,
    /// The editor's `KUBECONFIG` (a path list); default: the daemon's own environment.
    pub kubeconfig: Option<String>,
    /// A context of that kubeconfig; default: its current context.
    pub context: Option<String>,
}

/// `tether/listTargets` result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct ListTargetsResult {
    pub targets: Vec<Target>,
}

/// A target a picker can offer.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// What to pass as `target`: `pid:1234`.
    pub path: String,
    /// `process` (a local process), `deployment`, `statefulset` or `pod`.
    pub kind: String,
    /// The process id, for local processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The executable's path.
    pub executable: String,
    /// The command line.
    pub cmdline: Vec<String>,
    /// Kubernetes namespace; `null` for local processes.
    pub namespace: Option<String>,
    /// The pod's containers; empty for local processes.
    pub containers: Vec<String>,
    /// Which of `containers` are service-mesh or other sidecars (skipped unless named).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<String>,
    /// `ready/desired` for workloads, the phase for pods; empty for local processes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
}

/// `tether/sessions` result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct SessionsResult {
    /// The daemon's version.
    pub version: String,
    /// Live sessions, then the most recently ended or failed ones.
    pub sessions: Vec<SessionSnapshot>,
}

/// A session as clients see it; also the `tether/sessionChanged` notification's parameters.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSnapshot {
    pub id: String,
    /// The target, e.g. `pid:1234`.
    pub target: String,
    pub state: SessionState,
    /// The agent serving the session; `null` until it runs.
    pub agent: Option<AgentInfo>,
    /// Processes that joined the session.
    pub processes: Vec<ProcessInfo>,
    pub counters: Counters,
    /// The last errors (newest last, at most 20).
    pub last_errors: Vec<String>,
    /// What the doctor found while the session runs (e.g. `no-attach`: no process joined in time).
    pub diagnostics: Vec<Diagnostic>,
    /// When the session was created (seconds since the Unix epoch).
    pub created: u64,
    /// Why it ended or failed, once it has.
    pub end_reason: Option<String>,
    /// The launch's name (`launch.name`), for launches from an editor.
    pub launch_name: Option<String>,
    /// The workspace folder of the launch.
    pub workspace_folder: Option<PathBuf>,
}

/// `starting`: the agent starts; `ready`: processes may join (and are served); `failed`: it
/// could not start (see `lastErrors`); `ended`: it is over (see `endReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Starting,
    Ready,
    Failed,
    Ended,
}

/// The agent of a session.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub version: String,
    /// The process the agent serves.
    pub target_pid: i32,
    pub capabilities: Vec<String>,
}

/// A process that joined a session.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ProcessInfo {
    pub pid: u32,
    pub executable: String,
    /// When the session first saw it (seconds since the Unix epoch).
    pub since: u64,
    /// In the skip list: its calls are not intercepted.
    pub skipped: bool,
}

/// What a session did. Connections handed to the program as sockets of the target's network
/// namespace run at kernel speed without passing through the daemon, so their bytes are not
/// seen: `connectionsOpen`, `bytesIn` and `bytesOut` are 0 where not measured (today: always).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Connections currently open through the target (0: not measured).
    pub connections_open: u64,
    /// Outgoing connections made through the target since the session started.
    pub connections_total: u64,
    /// Incoming connections the target's ports gave the program (stolen, filtered or mirrored).
    pub incoming_connections: u64,
    /// Client bytes the agent relayed to the program (mirror copies and filtered requests; a
    /// stolen or outgoing socket is the program's own and is not counted).
    pub bytes_in: u64,
    /// Answer bytes the agent relayed back to clients (filtered requests).
    pub bytes_out: u64,
    /// Files read from the target.
    pub files_read: u64,
    /// DNS lookups sent to the target's nameserver.
    pub dns_lookups: u64,
}

/// `tether/stopSession` parameters.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StopSessionParams {
    pub session_id: String,
    /// Also send SIGTERM to the session's processes. Default `false`: they are served until they
    /// exit, but no new process may join.
    #[serde(default)]
    pub terminate: bool,
}

/// `tether/stopSession` result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct StopSessionResult {
    /// `false` when no live session has that id.
    pub stopped: bool,
}

/// `tether/launchEnded` parameters (a notification).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaunchEndedParams {
    pub session_id: String,
}

/// `tether/explainPath` parameters.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplainPathParams {
    /// An absolute path, or one relative to `workspaceFolder`.
    pub path: String,
    #[serde(default)]
    pub config_path: Option<PathBuf>,
    /// Where the config file is looked up, and a directory that stays local.
    #[serde(default)]
    pub workspace_folder: Option<PathBuf>,
}

/// `tether/explainPath` result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct ExplainPathResult {
    /// The path, absolute and normalized.
    pub path: String,
    /// The decision when the path is opened for reading.
    pub read: PathDecision,
    /// The decision when the path is opened for writing.
    pub write: PathDecision,
    /// Both in one line, as `tether explain-path` prints it.
    pub text: String,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct PathDecision {
    /// `local`, `remote` (read-only), `remote-writable` or `not-found`.
    pub route: String,
    /// The rule that decided, e.g. `feature.fs.read_only[0] "^/app"`.
    pub rule: String,
}

/// `tether/handover` result: the version-mismatch policy (see `client.rs`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandoverResult {
    /// `true`: the daemon had no live session and stops now, so a daemon of the caller's version
    /// can take its place. `false`: it serves sessions; it stops once it has none left.
    pub accepted: bool,
    pub version: String,
    /// Live sessions when asked.
    pub sessions: usize,
}

/// `tether/handover` parameters.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct HandoverParams {
    /// The version that wants to take over.
    pub version: String,
}

/// `tether/stopDaemon` result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct StopDaemonResult {
    pub stopping: bool,
}

/// No parameters (`params` omitted or `null`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct NoParams;

/// Who sends a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    ClientToDaemon,
    DaemonToClient,
}

/// Request (answered) or notification (not answered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    Request,
    Notification,
}

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One row of the method table.
pub struct MethodDoc {
    pub name: &'static str,
    pub kind: Kind,
    pub direction: Direction,
    /// `None` for standard LSP methods, whose types the LSP specification defines.
    pub params: Option<SchemaFn>,
    pub result: Option<SchemaFn>,
    pub doc: &'static str,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn tether<P: JsonSchema, R: JsonSchema>(name: &'static str, doc: &'static str) -> MethodDoc {
    MethodDoc {
        name,
        kind: Kind::Request,
        direction: Direction::ClientToDaemon,
        params: Some(schema::<P>),
        result: Some(schema::<R>),
        doc,
    }
}

fn lsp(name: &'static str, kind: Kind, direction: Direction, doc: &'static str) -> MethodDoc {
    MethodDoc { name, kind, direction, params: None, result: None, doc }
}

/// Every method of the protocol.
pub fn methods() -> Vec<MethodDoc> {
    use Direction::*;
    use Kind::*;
    vec![
        lsp(
            "initialize",
            Request,
            ClientToDaemon,
            "Standard LSP. The result's serverInfo.version is the daemon's version; \
             capabilities.experimental.tether is a TetherCapabilities. initializationOptions may be an \
             InitializationOptions. Every other request needs it first.",
        ),
        lsp("initialized", Notification, ClientToDaemon, "Standard LSP."),
        lsp("shutdown", Request, ClientToDaemon, "Standard LSP: ends this client's connection, not the daemon."),
        lsp("exit", Notification, ClientToDaemon, "Standard LSP: the daemon closes this connection."),
        tether::<PrepareLaunchParams, PrepareLaunchResult>(
            "tether/prepareLaunch",
            "Validates the config, runs the doctor over the launch, starts or reuses the target's agent, \
             creates a session and answers the patched launch. A diagnostic of severity error stops the \
             launch: sessionId is null and no session runs.",
        ),
        tether::<DoctorParams, DoctorResult>(
            "tether/doctor",
            "The doctor's findings for a launch, without starting anything.",
        ),
        tether::<ListTargetsParams, ListTargetsResult>(
            "tether/listTargets",
            "Targets for pickers: the local processes this user may target, then the Kubernetes workloads and pods of the namespace (or the context's) when a kubeconfig is usable.",
        ),
        tether::<NoParams, SessionsResult>("tether/sessions", "All sessions: live ones, then recently ended ones."),
        tether::<StopSessionParams, StopSessionResult>(
            "tether/stopSession",
            "Ends a session: no new process may join it, and its processes are terminated when asked.",
        ),
        MethodDoc {
            name: "tether/launchEnded",
            kind: Notification,
            direction: ClientToDaemon,
            params: Some(schema::<LaunchEndedParams>),
            result: None,
            doc: "The editor's debug session ended: the session ends; the agent stays warm for its idle timeout.",
        },
        tether::<ExplainPathParams, ExplainPathResult>(
            "tether/explainPath",
            "Whether a path is read locally or from the target, and the rule that decides.",
        ),
        tether::<crate::session::CreateParams, crate::session::SessionInfo>(
            "tether/createSession",
            "The CLI's request (`tether exec`): a session for a target, without a launch configuration.",
        ),
        tether::<HandoverParams, HandoverResult>(
            "tether/handover",
            "Sent by a client of another version of tether: the daemon stops now when it has no live \
             session, otherwise once its last session ends.",
        ),
        tether::<NoParams, StopDaemonResult>("tether/stopDaemon", "Stops the daemon (`tether daemon stop`)."),
        MethodDoc {
            name: "tether/sessionChanged",
            kind: Notification,
            direction: DaemonToClient,
            params: Some(schema::<SessionSnapshot>),
            result: None,
            doc: "Sent to every initialized client whenever a session changes (state, processes, \
                  counters, errors); counters are sent at most four times a second.",
        },
        lsp(
            "textDocument/didOpen",
            Notification,
            ClientToDaemon,
            "Standard LSP; config files (.tether/*.json) are validated.",
        ),
        lsp("textDocument/didChange", Notification, ClientToDaemon, "Standard LSP; full-text sync."),
        lsp("textDocument/didClose", Notification, ClientToDaemon, "Standard LSP."),
        lsp(
            "textDocument/completion",
            Request,
            ClientToDaemon,
            "Standard LSP: keys and values of config files, from the config's JSON Schema.",
        ),
        lsp("textDocument/hover", Request, ClientToDaemon, "Standard LSP: the description of a config key."),
        lsp(
            "textDocument/publishDiagnostics",
            Notification,
            DaemonToClient,
            "Standard LSP: errors in config files with exact ranges, also for files changed on disk.",
        ),
        lsp(
            "window/workDoneProgress/create",
            Request,
            DaemonToClient,
            "Standard LSP: sent before $/progress when the client supports it and gave no workDoneToken.",
        ),
        lsp("$/progress", Notification, DaemonToClient, "Standard LSP: while an agent starts."),
        lsp("window/logMessage", Notification, DaemonToClient, "Standard LSP: warnings."),
        lsp("$/cancelRequest", Notification, ClientToDaemon, "Standard LSP."),
    ]
}

/// The `tether/*` methods a client may call (what `initialize` advertises).
pub fn tether_methods() -> Vec<String> {
    methods()
        .iter()
        .filter(|m| m.name.starts_with("tether/") && m.direction == Direction::ClientToDaemon)
        .map(|m| m.name.to_string())
        .collect()
}

/// The `tether/*` notifications the daemon sends.
pub fn tether_notifications() -> Vec<String> {
    methods()
        .iter()
        .filter(|m| m.name.starts_with("tether/") && m.direction == Direction::DaemonToClient)
        .map(|m| m.name.to_string())
        .collect()
}

/// The machine-readable description checked in as `schemas/editor-protocol.json`.
pub fn description() -> Value {
    let mut g = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut rows = Vec::new();
    for m in methods() {
        let mut row = serde_json::json!({
            "method": m.name,
            "kind": m.kind,
            "direction": m.direction,
            "description": m.doc,
        });
        if let Some(p) = m.params {
            row["params"] = p(&mut g).to_value();
        }
        if let Some(r) = m.result {
            row["result"] = r(&mut g).to_value();
        }
        if m.params.is_none() && m.result.is_none() {
            row["standard"] = "LSP 3.17".into();
        }
        rows.push(row);
    }
    for extra in [schema::<TetherCapabilities>, schema::<InitializationOptions>] {
        extra(&mut g);
    }
    let mut definitions = g.take_definitions(true);
    definitions.sort_keys();
    serde_json::json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "tether editor protocol",
        "description": "JSON-RPC 2.0 with LSP base-protocol framing (Content-Length headers) on the \
                        daemon's Unix socket, or on the stdio of `tether lsp`. Messages larger than \
                        16 MiB are refused and the connection closed.",
        "protocolVersion": PROTOCOL_VERSION,
        "methods": rows,
        "definitions": definitions,
    })
}

/// [`description`] as it is checked in: pretty JSON with a trailing newline.
pub fn description_text() -> String {
    let mut text = serde_json::to_string_pretty(&description()).expect("a description serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/editor-protocol.json");

    #[test]
    fn protocol_file_is_current() {
        let want = description_text();
        if std::env::var_os("TETHER_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(FILE, &want).expect("write schemas/editor-protocol.json");
            return;
        }
        let have = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(
            have == want,
            "schemas/editor-protocol.json is not what the code generates; regenerate it with \
             `TETHER_BLESS=1 cargo test -p tether --bin tether protocol_file_is_current`"
        );
    }

    #[test]
    fn description_names_every_type_it_references() {
        let d = description();
        let text = d.to_string();
        let defs = d["definitions"].as_object().unwrap();
        for (i, _) in text.match_indices("#/definitions/") {
            let name: String = text[i + 14..].chars().take_while(|c| *c != '"').collect();
            assert!(defs.contains_key(&name), "{name} is referenced but not defined");
        }
        for key in ["PrepareLaunchResult", "SessionSnapshot", "Counters", "Diagnostic", "TetherCapabilities"] {
            assert!(defs.contains_key(key), "{key} missing");
        }
        assert!(text.contains("0 where not measured"), "the counters say what is not measured");
        let names: Vec<String> = methods().iter().map(|m| m.name.to_string()).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a method is listed twice");
    }
}

//! A typed, forgiving view of one launch configuration.
//!
//! Launch configurations are user-written JSON: any field may be missing or of the wrong type.
//! This module reads the fields the checks use once, reports the malformed ones as
//! `launch-invalid` diagnostics, and answers the questions several checks share: which file
//! does the debugger execute, where is it, and what command line does the launch run.
//! Editor variables (`${workspaceFolder}`, `${userHome}`, `${env:NAME}`, JetBrains'
//! `$PROJECT_DIR$`) are expanded for reading; a value with a variable the daemon cannot know
//! (`${file}`, `${input:...}`) is not checked rather than guessed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::facts::Facts;
use crate::shellwords;
use crate::{Diagnostic, Severity};

/// Debug types grouped by how they run the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `go`: Delve builds the package (or runs a binary with `mode: exec`).
    Go,
    /// `node`, `pwa-node`: `runtimeExecutable` (default `node`) runs `program`.
    Node,
    /// `node-terminal`: `command` runs in a terminal.
    NodeTerminal,
    /// `python`, `debugpy`: the `python` interpreter runs `program`.
    Python,
    /// `cppdbg`, `lldb`, `gdb`, ...: the debugger executes `program`.
    Native,
    /// Anything else: `program` is taken as the executable when present.
    Other,
}

impl Family {
    fn of(debug_type: &str) -> Family {
        match debug_type {
            "go" => Family::Go,
            "node" | "pwa-node" => Family::Node,
            "node-terminal" | "pwa-node-terminal" => Family::NodeTerminal,
            "python" | "debugpy" => Family::Python,
            "cppdbg" | "cppvsdbg" | "lldb" | "lldb-dap" | "lldb-mi" | "gdb" | "native" => Family::Native,
            _ => Family::Other,
        }
    }
}

/// The file a debugger executes for a launch, and the launch field that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    /// `program`, `runtimeExecutable` or `python`.
    pub field: &'static str,
    /// The field whose list is passed to it (`args`, `runtimeArgs`), when there is one.
    pub args_field: Option<&'static str>,
    /// The path on this machine, when it could be resolved.
    pub path: Option<PathBuf>,
    /// The value as written (or the implied default, `node` / `python3`).
    pub written: String,
    /// The launch does not name it: the debug type's default.
    pub implicit: bool,
}

/// The fields of a launch configuration the checks use.
pub struct Launch<'a> {
    pub debug_type: Option<&'a str>,
    pub family: Family,
    pub request: Option<&'a str>,
    pub mode: Option<&'a str>,
    pub program: Option<&'a str>,
    pub runtime_executable: Option<&'a str>,
    pub python: Option<&'a str>,
    pub cwd: Option<&'a str>,
    pub command: Option<&'a str>,
    pub args: Vec<String>,
    pub runtime_args: Vec<String>,
    /// `env`: `None` values unset a variable.
    pub env: BTreeMap<String, Option<String>>,
    pub has_cargo: bool,
}

impl<'a> Launch<'a> {
    /// Reads `obj`, adding a `launch-invalid` error for every field of the wrong type.
    pub fn read(obj: &'a Map<String, Value>, out: &mut Vec<Diagnostic>) -> Launch<'a> {
        let debug_type = string(obj, "type", out);
        let family = debug_type.map_or(Family::Other, Family::of);
        let request = string(obj, "request", out);
        // Fields whose meaning depends on the debugger are read only for the debuggers that
        // define them as tether understands them.
        let mode = match family {
            Family::Go => string(obj, "mode", out),
            _ => None,
        };
        let command = match family {
            Family::NodeTerminal => string(obj, "command", out),
            _ => None,
        };
        // `python` is a path, or a list of the path and its options; `pythonPath` is its
        // deprecated name.
        let python = match family {
            Family::Python => match obj.get("python") {
                Some(Value::Array(items)) if items.first().is_some_and(Value::is_string) => items[0].as_str(),
                _ => string(obj, "python", out).or_else(|| string(obj, "pythonPath", out)),
            },
            _ => None,
        };
        let program = string(obj, "program", out);
        let runtime_executable = string(obj, "runtimeExecutable", out);
        let cwd = string(obj, "cwd", out);
        let args = list(obj, "args", out);
        let runtime_args = list(obj, "runtimeArgs", out);

        let mut env = BTreeMap::new();
        match obj.get("env") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    match v {
                        Value::String(s) => {
                            env.insert(k.clone(), Some(s.clone()));
                        }
                        Value::Null => {
                            env.insert(k.clone(), None);
                        }
                        other => out.push(bad(&format!("env.{k}"), "a string or null", other)),
                    }
                }
            }
            Some(other) => out.push(bad("env", "an object", other)),
        }

        Launch {
            family,
            debug_type,
            request,
            mode,
            program,
            runtime_executable,
            python,
            cwd,
            command,
            args,
            runtime_args,
            env,
            has_cargo: obj.get("cargo").is_some_and(|v| !v.is_null()),
        }
    }

    /// Go's mode (`debug` when missing).
    pub fn go_mode(&self) -> &'a str {
        self.mode.unwrap_or("debug")
    }

    /// Whether Delve builds the binary (`debug`, `auto`, `test`).
    pub fn go_builds(&self) -> bool {
        self.family == Family::Go && matches!(self.go_mode(), "debug" | "auto" | "test")
    }

    /// Whether the debug type cannot start without `program`.
    pub fn needs_program(&self) -> bool {
        match self.family {
            Family::Go => matches!(self.go_mode(), "debug" | "auto" | "test" | "exec"),
            Family::Native => !self.has_cargo,
            _ => false,
        }
    }

    /// The file the debugger executes, if the launch runs one (not for Go builds).
    pub fn exec(&self, cx: &Cx) -> Option<Exec> {
        let (field, args_field, written, implicit, as_command) = match self.family {
            Family::Go if self.go_mode() == "exec" => ("program", Some("args"), self.program?, false, false),
            Family::Go | Family::NodeTerminal => return None,
            Family::Node => match self.runtime_executable {
                Some(r) => ("runtimeExecutable", Some("runtimeArgs"), r, false, true),
                None => ("runtimeExecutable", Some("runtimeArgs"), "node", true, true),
            },
            Family::Python => match self.python {
                Some(p) => ("python", None, p, false, true),
                None => ("python", None, "python3", true, true),
            },
            Family::Native | Family::Other => ("program", Some("args"), self.program?, false, false),
        };
        let path = if as_command { cx.resolve_command(written) } else { cx.resolve_path(written) };
        Some(Exec { field, args_field, path, written: written.to_owned(), implicit })
    }

    /// The launch's command line as words: the runtime, its arguments, the program and its
    /// arguments (or a terminal launch's `command`).
    pub fn command_line(&self) -> Vec<String> {
        if let Some(c) = self.command {
            return shellwords::split(c)
                .map(|w| w.into_iter().map(|w| w.value).collect())
                .unwrap_or_else(|_| c.split_whitespace().map(str::to_owned).collect());
        }
        let mut words = Vec::new();
        if let Some(r) = self.runtime_executable {
            words.push(r.to_owned());
        }
        words.extend(self.runtime_args.iter().cloned());
        if let Some(p) = self.program {
            words.push(p.to_owned());
        }
        words.extend(self.args.iter().cloned());
        words
    }
}

/// Path resolution for one launch.
pub struct Cx<'a> {
    pub facts: &'a Facts,
    /// The launch's `cwd`, expanded (`None` when it has a variable that cannot be expanded).
    cwd: Option<PathBuf>,
}

impl<'a> Cx<'a> {
    pub fn new(facts: &'a Facts, launch: &Launch) -> Cx<'a> {
        let mut cx = Cx { facts, cwd: Some(facts.workspace_folder.clone()) };
        if let Some(c) = launch.cwd {
            cx.cwd = cx.expand(c).map(|c| facts.workspace_folder.join(c));
        }
        cx
    }

    /// The launch's working directory.
    pub fn cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// `s` with editor variables expanded; `None` when one cannot be.
    pub fn expand(&self, s: &str) -> Option<String> {
        let f = self.facts;
        let ws = f.workspace_folder.to_string_lossy().into_owned();
        let home = f.home.as_ref().map(|h| h.to_string_lossy().into_owned());
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(body) = rest.strip_prefix("${") {
                let end = body.find('}')?;
                let name = &body[..end];
                let value = match name {
                    "workspaceFolder" | "workspaceRoot" => ws.clone(),
                    "workspaceFolderBasename" => f.workspace_folder.file_name()?.to_string_lossy().into_owned(),
                    "userHome" => home.clone()?,
                    "pathSeparator" | "/" => "/".to_owned(),
                    _ => match name.strip_prefix("env:") {
                        Some(var) => f.daemon_env.get(var).cloned().unwrap_or_default(),
                        None => return None,
                    },
                };
                out.push_str(&value);
                rest = &body[end + 1..];
            } else if let Some(r) = rest.strip_prefix("$PROJECT_DIR$") {
                out.push_str(&ws);
                rest = r;
            } else if let Some(r) = rest.strip_prefix("$USER_HOME$") {
                out.push_str(home.as_deref()?);
                rest = r;
            } else {
                out.push('$');
                rest = &rest[1..];
            }
        }
        out.push_str(rest);
        Some(out)
    }

    /// A path value: expanded, and relative to `cwd` when not absolute.
    pub fn resolve_path(&self, s: &str) -> Option<PathBuf> {
        let e = self.expand(s)?;
        if e.is_empty() {
            return None;
        }
        let p = PathBuf::from(&e);
        if p.is_absolute() { Some(p) } else { Some(self.cwd.as_ref()?.join(p)) }
    }

    /// A command value: a path when it has a `/`, else looked up on `PATH`.
    pub fn resolve_command(&self, s: &str) -> Option<PathBuf> {
        let e = self.expand(s)?;
        if e.contains('/') { self.resolve_path(&e) } else { self.facts.which(&e) }
    }

    /// The `scripts` entry a package-manager command runs (`npm run dev`, `pnpm dev`,
    /// `yarn dev`, `bun run dev`), split into words, read from `package.json` in `cwd`.
    pub fn package_script(&self, words: &[String]) -> Option<Vec<String>> {
        let i = words.iter().position(|w| {
            matches!(base_name(w), "npm" | "npm-cli.js" | "pnpm" | "pnpm.cjs" | "yarn" | "yarn.js" | "bun")
        })?;
        let mut rest = words[i + 1..].iter().filter(|w| !w.starts_with('-'));
        let mut name = rest.next()?;
        if matches!(name.as_str(), "run" | "run-script") {
            name = rest.next()?;
        }
        let pkg = self.cwd.as_ref()?.join("package.json");
        let meta = self.facts.host.metadata(&pkg)?;
        if meta.len > 1 << 20 {
            return None;
        }
        let bytes = self.facts.host.read_at(&pkg, 0, meta.len as usize).ok()?;
        let json: Value = serde_json::from_slice(&bytes).ok()?;
        let script = json.get("scripts")?.get(name)?.as_str()?;
        Some(match shellwords::split(script) {
            Ok(w) => w.into_iter().map(|w| w.value).collect(),
            Err(_) => script.split_whitespace().map(str::to_owned).collect(),
        })
    }

    /// The launch's command line, followed by the package script it runs, if any.
    pub fn command_words(&self, launch: &Launch) -> Vec<String> {
        let mut words = launch.command_line();
        if let Some(script) = self.package_script(&words) {
            words.extend(script);
        }
        words
    }
}

fn bad(field: &str, want: &str, got: &Value) -> Diagnostic {
    Diagnostic::new(
        "launch-invalid",
        Severity::Error,
        format!("the launch's `{field}` must be {want}, not {}", kind(got)),
    )
}

/// A string field; `None` when missing, null or of another type (reported).
fn string<'a>(obj: &'a Map<String, Value>, field: &str, out: &mut Vec<Diagnostic>) -> Option<&'a str> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            out.push(bad(field, "a string", other));
            None
        }
    }
}

/// A list-of-strings field (VS Code's node debugger also takes `args` as one string).
fn list(obj: &Map<String, Value>, field: &str, out: &mut Vec<Diagnostic>) -> Vec<String> {
    match obj.get(field) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => match shellwords::split(s) {
            Ok(w) => w.into_iter().map(|w| w.value).collect(),
            Err(_) => s.split_whitespace().map(str::to_owned).collect(),
        },
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        Some(other) => {
            out.push(bad(field, "a list of strings", other));
            Vec::new()
        }
    }
}

/// The file name of a command word, without a `.js`/`.cjs`/`.mjs` suffix.
pub fn base_name(word: &str) -> &str {
    let name = word.rsplit('/').next().unwrap_or(word);
    name.strip_suffix(".js").or_else(|| name.strip_suffix(".cjs")).or_else(|| name.strip_suffix(".mjs")).unwrap_or(name)
}

/// A JSON value's kind, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{MemHost, Os};
    use serde_json::json;
    use std::sync::Arc;

    fn facts(host: MemHost) -> Facts {
        let mut f = Facts::new(Os::Linux, Arc::new(host));
        f.workspace_folder = "/ws/proj".into();
        f.home = Some("/home/u".into());
        f.daemon_env.insert("PATH".into(), "/usr/bin".into());
        f.daemon_env.insert("GOPATH".into(), "/home/u/go".into());
        f
    }

    fn read(v: &Value) -> (Vec<Diagnostic>, Launch<'_>) {
        let mut out = Vec::new();
        let l = Launch::read(v.as_object().unwrap(), &mut out);
        (out, l)
    }

    #[test]
    fn variables_expand_or_refuse() {
        let f = facts(MemHost::new());
        let v = json!({});
        let (_, l) = read(&v);
        let cx = Cx::new(&f, &l);
        assert_eq!(cx.expand("${workspaceFolder}/bin").unwrap(), "/ws/proj/bin");
        assert_eq!(cx.expand("${workspaceRoot}${/}x").unwrap(), "/ws/proj/x");
        assert_eq!(cx.expand("${workspaceFolderBasename}").unwrap(), "proj");
        assert_eq!(cx.expand("${userHome}/.x").unwrap(), "/home/u/.x");
        assert_eq!(cx.expand("${env:GOPATH}/bin").unwrap(), "/home/u/go/bin");
        assert_eq!(cx.expand("${env:NOPE}x").unwrap(), "x");
        assert_eq!(cx.expand("$PROJECT_DIR$/a").unwrap(), "/ws/proj/a");
        assert_eq!(cx.expand("a$b").unwrap(), "a$b");
        assert_eq!(cx.expand("${file}"), None);
        assert_eq!(cx.expand("${input:pick}"), None);
        assert_eq!(cx.expand("${unterminated"), None);
    }

    #[test]
    fn paths_resolve_against_cwd() {
        let f = facts(MemHost::new().exe("/usr/bin/node", "x"));
        let v = json!({"cwd": "${workspaceFolder}/web"});
        let (_, l) = read(&v);
        let cx = Cx::new(&f, &l);
        assert_eq!(cx.cwd().unwrap(), Path::new("/ws/proj/web"));
        assert_eq!(cx.resolve_path("bin/app").unwrap(), Path::new("/ws/proj/web/bin/app"));
        assert_eq!(cx.resolve_path("/abs").unwrap(), Path::new("/abs"));
        assert_eq!(cx.resolve_command("node").unwrap(), Path::new("/usr/bin/node"));
        assert_eq!(cx.resolve_command("deno"), None);
        // A relative cwd is relative to the workspace folder.
        let v = json!({"cwd": "sub"});
        let (_, l) = read(&v);
        assert_eq!(Cx::new(&f, &l).cwd().unwrap(), Path::new("/ws/proj/sub"));
    }

    #[test]
    fn wrong_types_are_reported_per_field() {
        let v = json!({"type": 3, "program": ["a"], "args": [1], "env": {"A": 1, "B": null, "C": "c"}});
        let (out, l) = read(&v);
        let msgs: Vec<_> = out.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(out.len(), 4, "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("`type` must be a string, not a number")));
        assert!(msgs.iter().any(|m| m.contains("`program` must be a string, not a list")));
        assert!(msgs.iter().any(|m| m.contains("`args` must be a list of strings")));
        assert!(msgs.iter().any(|m| m.contains("`env.A`")));
        assert!(out.iter().all(|d| d.id == "launch-invalid" && d.severity == Severity::Error));
        assert_eq!(l.env.get("B"), Some(&None));
        assert_eq!(l.env.get("C"), Some(&Some("c".into())));
        assert_eq!(l.debug_type, None);
    }

    #[test]
    fn debugger_specific_fields_are_read_only_for_their_debugger() {
        // `mode` and `command` mean other things to other debuggers: not judged there.
        let v = json!({"type": "cppdbg", "mode": 3, "command": ["x"], "python": 1});
        let (out, l) = read(&v);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!((l.mode, l.command, l.python), (None, None, None));
        let v = json!({"type": "go", "mode": 3});
        assert_eq!(read(&v).0.len(), 1);
        let v = json!({"type": "python", "python": {"a": 1}});
        assert_eq!(read(&v).0.len(), 1);
    }

    #[test]
    fn exec_target_per_family() {
        let f = facts(MemHost::new().exe("/usr/bin/node", "x").exe("/usr/bin/python3", "x"));
        let cases = [
            (json!({"type": "node", "program": "a.js"}), Some(("runtimeExecutable", "/usr/bin/node", true))),
            (json!({"type": "node", "runtimeExecutable": "/opt/n"}), Some(("runtimeExecutable", "/opt/n", false))),
            (json!({"type": "python", "program": "a.py"}), Some(("python", "/usr/bin/python3", true))),
            (json!({"type": "cppdbg", "program": "out/app"}), Some(("program", "/ws/proj/out/app", false))),
            (json!({"type": "go", "mode": "exec", "program": "/b"}), Some(("program", "/b", false))),
            (json!({"type": "go", "program": "."}), None),
            (
                json!({"type": "debugpy", "python": ["/usr/bin/python3", "-X", "dev"]}),
                Some(("python", "/usr/bin/python3", false)),
            ),
            (json!({"type": "node-terminal", "command": "npm start"}), None),
        ];
        for (v, want) in cases {
            let (_, l) = read(&v);
            let cx = Cx::new(&f, &l);
            let got = l.exec(&cx).map(|e| (e.field, e.path.unwrap().to_string_lossy().into_owned(), e.implicit));
            let want = want.map(|(a, b, c)| (a, b.to_owned(), c));
            assert_eq!(got, want, "{v}");
        }
    }

    #[test]
    fn package_scripts_are_followed() {
        let pkg = r#"{"scripts": {"dev": "turbo run dev --parallel", "build": "tsc"}}"#;
        let f = facts(MemHost::new().file("/ws/proj/package.json", pkg, 0o644));
        for cmd in [
            &["npm", "run", "dev"][..],
            &["pnpm", "dev"],
            &["yarn", "--silent", "dev"],
            &["/usr/local/bin/npm", "run-script", "dev"],
        ] {
            let v = json!({"type": "node", "runtimeExecutable": cmd[0], "runtimeArgs": cmd[1..]});
            let (_, l) = read(&v);
            let words = Cx::new(&f, &l).command_words(&l);
            assert!(
                words.ends_with(&["turbo".into(), "run".into(), "dev".into(), "--parallel".into()]),
                "{cmd:?}: {words:?}"
            );
        }
        let v = json!({"type": "node", "runtimeExecutable": "npm", "runtimeArgs": ["run", "missing"]});
        let (_, l) = read(&v);
        assert_eq!(Cx::new(&f, &l).command_words(&l), ["npm", "run", "missing"]);
    }

    #[test]
    fn command_line_and_base_names() {
        let v = json!({"runtimeExecutable": "npx", "runtimeArgs": ["vite"], "program": "p", "args": "--port 3000"});
        let (_, l) = read(&v);
        assert_eq!(l.command_line(), ["npx", "vite", "p", "--port", "3000"]);
        let v = json!({"type": "node-terminal", "command": "pnpm 'next' dev"});
        let (_, l) = read(&v);
        assert_eq!(l.command_line(), ["pnpm", "next", "dev"]);
        assert_eq!(base_name("./node_modules/vite/bin/vite.js"), "vite");
        assert_eq!(base_name("/x/turbo"), "turbo");
    }
}

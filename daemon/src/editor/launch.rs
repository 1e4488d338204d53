//! Launch configurations: the doctor's seam and the environment patch.
//!
//! [`diagnose`] is the one place the launch doctor (`tether-doctor`) plugs in: it takes the
//! editor's launch and the [`facts`] about it, and returns the launch with the doctor's fixes
//! applied plus its findings, as protocol diagnostics. [`apply_env`] then writes the session's
//! environment into the field the debug type reads, so that the debugger starts the program
//! with the layer loaded.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tether_config::Config;
use tether_doctor::Facts;
use tether_protocol::env as vars;

use super::protocol::{Diagnostic, Fix, Severity};
use crate::session::SessionInfo;

/// What the doctor knows about a launch (see `crate::doctor::facts`): `target_env` is the
/// target's environment before the config's `feature.env` rules, `None` when no session exists
/// yet (`tether/doctor`: a local target's is then read without starting anything).
pub fn facts(workspace_folder: &Path, config: &Config, target_env: Option<BTreeMap<String, String>>) -> Facts {
    crate::doctor::facts(config, workspace_folder, target_env)
}

/// The doctor's diagnostic in the editor protocol's shape.
pub fn convert(d: tether_doctor::Diagnostic) -> Diagnostic {
    let severity = match d.severity {
        tether_doctor::Severity::Error => Severity::Error,
        tether_doctor::Severity::Warning => Severity::Warning,
        tether_doctor::Severity::Info => Severity::Info,
    };
    Diagnostic {
        id: d.id.to_string(),
        severity,
        message: d.message,
        fix: d.fix.map(|f| Fix { applied: f.applied, description: f.description, edit: f.edit }),
    }
}

/// The launch doctor: the launch with fixes applied, and the findings (errors first).
pub fn diagnose(launch: &Value, facts: &Facts) -> (Value, Vec<Diagnostic>) {
    let patched = tether_doctor::check_launch(launch, facts);
    // macOS copies (`patched.sip_copies`) are made by the macOS daemon; on Linux there are none.
    (patched.launch, patched.diagnostics.into_iter().map(convert).collect())
}

/// Why no process of a launch attached within `waited`: the likely causes, most likely first.
pub fn no_attach(launch: &Value, facts: &Facts, waited: Duration) -> Diagnostic {
    convert(tether_doctor::no_attach_diagnostic(launch, facts, waited))
}

/// Where a debug type takes the program's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvField {
    /// `"env": {"NAME": "value"}`; a `null` value removes a variable (js-debug).
    Map { null_unsets: bool },
    /// `"environment": [{"name": "NAME", "value": "value"}]` (cppdbg).
    List,
}

/// The environment field of a debug type; `None` for types tether does not know.
pub fn env_field(kind: &str) -> Option<EnvField> {
    match kind {
        "node" | "pwa-node" | "node-terminal" | "pwa-chrome" => Some(EnvField::Map { null_unsets: true }),
        "go" | "python" | "debugpy" | "java" | "lldb" | "codelldb" | "rust" => {
            Some(EnvField::Map { null_unsets: false })
        }
        "cppdbg" => Some(EnvField::List),
        _ => None,
    }
}

/// The variables a launched process needs to join the session, and the target's.
pub fn session_env(info: &SessionInfo) -> BTreeMap<String, String> {
    let mut env = info.env.clone();
    env.insert("LD_PRELOAD".into(), info.layer.display().to_string());
    env.insert(vars::SOCKET.into(), info.socket.display().to_string());
    env.insert(vars::SESSION.into(), info.session.clone());
    env.insert(vars::SESSION_TOKEN.into(), info.token.clone());
    env.insert(vars::REQUIRE.into(), if info.require { "1" } else { "0" }.into());
    env
}

/// Writes `env` and `unset` into the launch, in the field its debug type uses. A launch that
/// already sets `LD_PRELOAD` keeps its libraries after the layer. Returns the environment as
/// applied (with the merged `LD_PRELOAD`).
pub fn apply_env(launch: &mut Value, env: &BTreeMap<String, String>, unset: &[String]) -> BTreeMap<String, String> {
    let kind = launch.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let field = env_field(&kind).unwrap_or(EnvField::Map { null_unsets: false });
    let Some(obj) = launch.as_object_mut() else { return env.clone() };
    let mut env = env.clone();
    match field {
        EnvField::Map { null_unsets } => {
            let map = obj.entry("env").or_insert_with(|| Value::Object(Map::new()));
            if !map.is_object() {
                *map = Value::Object(Map::new());
            }
            let map = map.as_object_mut().expect("an object");
            merge_preload(&mut env, map.get("LD_PRELOAD").and_then(Value::as_str));
            for (k, v) in &env {
                map.insert(k.clone(), Value::String(v.clone()));
            }
            for k in unset {
                if null_unsets {
                    map.insert(k.clone(), Value::Null);
                } else {
                    map.remove(k);
                }
            }
        }
        EnvField::List => {
            let list = obj.entry("environment").or_insert_with(|| Value::Array(Vec::new()));
            if !list.is_array() {
                *list = Value::Array(Vec::new());
            }
            let list = list.as_array_mut().expect("an array");
            let existing =
                list.iter().find(|e| e["name"] == "LD_PRELOAD").and_then(|e| e["value"].as_str()).map(str::to_string);
            merge_preload(&mut env, existing.as_deref());
            list.retain(|e| {
                let name = e["name"].as_str().unwrap_or("");
                !env.contains_key(name) && !unset.iter().any(|u| u == name)
            });
            for (k, v) in &env {
                list.push(json!({"name": k, "value": v}));
            }
        }
    }
    env
}

/// `LD_PRELOAD`: the layer first, then what the launch had.
fn merge_preload(env: &mut BTreeMap<String, String>, existing: Option<&str>) {
    let Some(old) = existing.filter(|o| !o.is_empty()) else { return };
    if let Some(layer) = env.get("LD_PRELOAD").cloned()
        && !old.split([':', ' ']).any(|p| p == layer)
    {
        env.insert("LD_PRELOAD".into(), format!("{layer}:{old}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("LD_PRELOAD", "/l/libtether_layer.so"), ("POD", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_goes_where_the_debug_type_reads_it() {
        for kind in ["node", "pwa-node", "go", "python", "debugpy", "java", "lldb"] {
            let mut launch = json!({"type": kind, "env": {"KEEP": "x"}});
            apply_env(&mut launch, &env(), &["GONE".to_string()]);
            assert_eq!(launch["env"]["POD"], "1", "{kind}");
            assert_eq!(launch["env"]["KEEP"], "x", "{kind}");
            assert_eq!(launch["env"]["LD_PRELOAD"], "/l/libtether_layer.so", "{kind}");
        }
        let mut node = json!({"type": "pwa-node"});
        apply_env(&mut node, &env(), &["GONE".to_string()]);
        assert_eq!(node["env"]["GONE"], Value::Null);
        assert!(node["env"].as_object().unwrap().contains_key("GONE"));

        let mut cpp =
            json!({"type": "cppdbg", "environment": [{"name": "POD", "value": "old"}, {"name": "A", "value": "b"}]});
        apply_env(&mut cpp, &env(), &[]);
        let list = cpp["environment"].as_array().unwrap();
        assert_eq!(list.iter().filter(|e| e["name"] == "POD").count(), 1);
        assert!(list.contains(&json!({"name": "POD", "value": "1"})));
        assert!(list.contains(&json!({"name": "A", "value": "b"})));
        assert!(cpp.get("env").is_none());
    }

    #[test]
    fn existing_preload_is_kept_after_the_layer() {
        let mut launch = json!({"type": "go", "env": {"LD_PRELOAD": "/usr/lib/libasan.so"}});
        let applied = apply_env(&mut launch, &env(), &[]);
        assert_eq!(launch["env"]["LD_PRELOAD"], "/l/libtether_layer.so:/usr/lib/libasan.so");
        assert_eq!(applied["LD_PRELOAD"], "/l/libtether_layer.so:/usr/lib/libasan.so");
        let mut cpp = json!({"type": "cppdbg", "environment": [{"name": "LD_PRELOAD", "value": "/x.so"}]});
        apply_env(&mut cpp, &env(), &[]);
        assert!(
            cpp["environment"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "LD_PRELOAD", "value": "/l/libtether_layer.so:/x.so"}))
        );
    }

    #[test]
    fn the_doctor_reports_through_the_seam() {
        let config = Config::default();
        let f = facts(Path::new("/w"), &config, Some(BTreeMap::new()));
        assert_eq!(f.workspace_folder, Path::new("/w"));
        let (_, d) = diagnose(&json!("nope"), &f);
        assert_eq!(d[0].severity, Severity::Error);
        assert_eq!(d[0].id, "launch-invalid");
        let (_, d) = diagnose(&json!({"type": "cppdbg", "request": "attach"}), &f);
        assert!(d.iter().any(|d| d.id == "launch-attach" && d.severity == Severity::Error), "{d:?}");
        let no = no_attach(
            &json!({"type": "cppdbg", "request": "launch", "program": "/bin/true"}),
            &f,
            Duration::from_secs(5),
        );
        assert!(!no.message.is_empty());
    }
}

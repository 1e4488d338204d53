//! Runs the launch doctor (`tether-doctor`) with the facts of this machine.
//!
//! The checks themselves are pure and live in the `tether-doctor` crate; this module only
//! gathers what they look at — the daemon's environment, the target's environment when it can
//! be read without starting anything, the config, the layer's directory — and reads editor
//! launch files (VS Code's `launch.json` is JSON with comments and trailing commas).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::Value;
use tether_config::Config;
use tether_doctor::{Facts, Os, SystemHost};

/// The facts for a launch in `workspace` with `config`; `target_env` when already known.
pub fn facts(config: &Config, workspace: &Path, target_env: Option<BTreeMap<String, String>>) -> Facts {
    let mut f = Facts::new(Os::current(), Arc::new(SystemHost));
    f.daemon_env = std::env::vars().collect();
    f.target_env = target_env.unwrap_or_else(|| local_target_env(config).unwrap_or_default());
    f.layer_dir = config.layer.dir.clone().unwrap_or_else(crate::paths::layer_dir);
    f.config = config.clone();
    f.workspace_folder = workspace.to_path_buf();
    f.home = std::env::var_os("HOME").map(PathBuf::from);
    f
}

/// The environment of a local target, read directly (nothing is started).
fn local_target_env(config: &Config) -> Option<BTreeMap<String, String>> {
    let pid = config.target.path.as_deref()?.strip_prefix("pid:")?.parse::<u32>().ok()?;
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect(),
    )
}

/// Removes `//` and `/* */` comments and trailing commas, outside strings; keeps line breaks so
/// that parse errors point at the right line.
pub fn strip_jsonc(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_string = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = next {
                    out.push(n);
                    i += 1;
                }
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match (c, next) {
            ('"', _) => {
                in_string = true;
                out.push(c);
                i += 1;
            }
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
                i += 2;
            }
            (',', _) => {
                let following = chars[i + 1..].iter().find(|c| !c.is_whitespace());
                if !matches!(following, Some('}') | Some(']')) {
                    out.push(',');
                }
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The configuration named `name` in a VS Code `launch.json`.
pub fn launch_entry(file: &Path, name: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let doc: Value = serde_json::from_str(&strip_jsonc(&text))
        .with_context(|| format!("{} is not valid JSON (with comments)", file.display()))?;
    let configs = doc
        .get("configurations")
        .and_then(Value::as_array)
        .with_context(|| format!("{} has no `configurations` list", file.display()))?;
    if let Some(found) = configs.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(name)) {
        return Ok(found.clone());
    }
    let names: Vec<&str> = configs.iter().filter_map(|c| c.get("name").and_then(Value::as_str)).collect();
    bail!("{} has no configuration named {name:?}; it has: {}", file.display(), names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_go_strings_stay() {
        let text =
            "{\n // a comment\n \"a\": \"x // not a comment, /* nor this */\",\n /* block\n */ \"b\": [1, 2,],\n}";
        let v: Value = serde_json::from_str(&strip_jsonc(text)).unwrap();
        assert_eq!(v["a"], "x // not a comment, /* nor this */");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
        assert_eq!(strip_jsonc("\"é\\\"\""), "\"é\\\"\"");
    }

    #[test]
    fn a_missing_entry_lists_the_names() {
        let dir = std::env::temp_dir().join(format!("tether-doctor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("launch.json");
        std::fs::write(&file, r#"{"configurations": [{"name": "A", "type": "node"}, {"name": "B", "type": "go"},]}"#)
            .unwrap();
        assert_eq!(launch_entry(&file, "B").unwrap()["type"], "go");
        let err = launch_entry(&file, "C").unwrap_err().to_string();
        assert!(err.contains("no configuration named \"C\"") && err.contains("A, B"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

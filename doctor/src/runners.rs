//! Task runners and commands that clear the environment of the processes they start.
//!
//! The layer finds its session through variables tether sets (`LD_PRELOAD` or
//! `DYLD_INSERT_LIBRARIES`, and `TETHER_*`). Turbo (strict env mode, its default since 2.0)
//! passes only allow-listed variables to its tasks, and `env -i` passes none: the program then
//! starts without them and runs un-intercepted. The launch's command line (and the
//! `package.json` script it runs through npm, pnpm, yarn or bun) is searched for both.

use serde_json::{Value, json};

use crate::facts::Os;
use crate::launch::{Cx, Launch, base_name};
use crate::{Diagnostic, Fix, Severity};

/// The variables the layer needs in a launched process, for `os`.
pub fn tether_vars(os: Os) -> [&'static str; 5] {
    let preload = match os {
        Os::Linux => "LD_PRELOAD",
        Os::Macos => "DYLD_INSERT_LIBRARIES",
    };
    [preload, "TETHER_SOCKET", "TETHER_SESSION", "TETHER_SESSION_TOKEN", "TETHER_REQUIRE"]
}

/// Where turbo runs in the words, if it does (and not in loose env mode).
pub fn runs_turbo(words: &[String]) -> bool {
    words.iter().any(|w| base_name(w) == "turbo")
        && !words.iter().any(|w| w == "--env-mode=loose" || w == "--env-mode=infer")
        && !words.windows(2).any(|p| p[0] == "--env-mode" && p[1] != "strict")
}

/// Whether the words run `env -i` (or `env -`, `env --ignore-environment`).
pub fn clears_env(words: &[String]) -> bool {
    words.iter().enumerate().any(|(i, w)| {
        base_name(w) == "env"
            && words[i + 1..].iter().take_while(|a| a.starts_with('-') || a.contains('=')).any(|a| {
                a == "-i"
                    || a == "-"
                    || a == "--ignore-environment"
                    || (a.starts_with('-')
                        && !a.starts_with("--")
                        && a.len() > 2
                        && a[1..].contains('i')
                        && !a.contains('='))
            })
    })
}

/// The `runner-strips-env` and `env-cleared` checks.
pub fn check(l: &Launch, cx: &Cx, out: &mut Vec<Diagnostic>) {
    let words = cx.command_words(l);
    if runs_turbo(&words)
        && let Some(d) = turbo_diagnostic(cx)
    {
        out.push(d);
    }
    if clears_env(&words) {
        out.push(
            Diagnostic::new(
                "env-cleared",
                Severity::Warning,
                "the launch runs `env -i`, which starts the program with an empty environment: without tether's variables it runs un-intercepted",
            )
            .with_fix(Fix::manual(
                format!(
                    "drop `-i`, or pass tether's variables through explicitly: `env -i {} ...`",
                    tether_vars(cx.facts.os)
                        .iter()
                        .map(|v| format!("{v}=\"${v}\""))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                None,
            )),
        );
    }
}

/// The turbo warning, unless `turbo.json` already passes every variable through or uses loose
/// mode.
fn turbo_diagnostic(cx: &Cx) -> Option<Diagnostic> {
    let vars = tether_vars(cx.facts.os);
    let config = read_turbo_json(cx);
    if config.as_ref().and_then(|c| c.get("envMode")).and_then(Value::as_str) == Some("loose") {
        return None;
    }
    let mut list: Vec<String> = config
        .as_ref()
        .and_then(|c| c.get("globalPassThroughEnv"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = vars
        .iter()
        .copied()
        .filter(|v| {
            !list
                .iter()
                .any(|have| have == v || have == "*" || (have.ends_with('*') && v.starts_with(&have[..have.len() - 1])))
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    list.extend(missing.iter().map(|s| (*s).to_owned()));
    let entry = json!({ "globalPassThroughEnv": list });
    Some(
        Diagnostic::new(
            "runner-strips-env",
            Severity::Warning,
            format!(
                "the launch runs through `turbo`, which passes only allow-listed variables to its tasks: {} would be dropped and the program would run un-intercepted",
                missing.join(", ")
            ),
        )
        .with_fix(Fix::manual(
            format!("add to turbo.json: {}", serde_json::to_string(&entry["globalPassThroughEnv"]).map(|l| format!("\"globalPassThroughEnv\": {l}")).unwrap_or_default()),
            Some(json!({ "turbo.json": entry })),
        )),
    )
}

/// `turbo.json` in the launch's `cwd`, else in the workspace folder.
fn read_turbo_json(cx: &Cx) -> Option<Value> {
    let dirs = [cx.cwd().map(|c| c.to_path_buf()), Some(cx.facts.workspace_folder.clone())];
    for dir in dirs.into_iter().flatten() {
        let path = dir.join("turbo.json");
        let Some(meta) = cx.facts.host.metadata(&path) else {
            continue;
        };
        if meta.len > 1 << 20 {
            return None;
        }
        let bytes = cx.facts.host.read_at(&path, 0, meta.len as usize).ok()?;
        return serde_json::from_slice(&bytes).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn turbo_forms() {
        for cmd in [
            "turbo run dev",
            "npx turbo dev",
            "pnpm turbo run dev --filter web",
            "yarn turbo dev",
            "/repo/node_modules/.bin/turbo dev",
            "node /repo/node_modules/turbo/bin/turbo.js dev",
        ] {
            assert!(runs_turbo(&w(cmd)), "{cmd}");
        }
        for cmd in [
            "nx serve web",
            "vite",
            "turbo-thing dev",
            "turbo run dev --env-mode=loose",
            "turbo run dev --env-mode loose",
        ] {
            assert!(!runs_turbo(&w(cmd)), "{cmd}");
        }
        assert!(runs_turbo(&w("turbo run dev --env-mode strict")));
    }

    #[test]
    fn env_clearing_forms() {
        for cmd in ["env -i node a.js", "/usr/bin/env - node", "env --ignore-environment X=1 node", "env -iv node"] {
            assert!(clears_env(&w(cmd)), "{cmd}");
        }
        for cmd in ["env node", "env X=-i node", "environment -i", "node a.js -i"] {
            assert!(!clears_env(&w(cmd)), "{cmd}");
        }
    }

    #[test]
    fn variables_per_os() {
        assert_eq!(tether_vars(Os::Linux)[0], "LD_PRELOAD");
        assert_eq!(tether_vars(Os::Macos)[0], "DYLD_INSERT_LIBRARIES");
        assert!(tether_vars(Os::Linux).contains(&"TETHER_SESSION_TOKEN"));
    }
}

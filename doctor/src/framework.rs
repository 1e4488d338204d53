//! Framework variables that make sense in the target but break a local development server.
//!
//! Taking the target's whole environment is the point of tether, but two kinds of variables
//! describe the deployment rather than the service:
//! - `NODE_ENV=production` (or `staging`) makes a dev server (Vite, Next, Nx, Angular, ...)
//!   behave as a production build: no hot reload, different config, sometimes a refusal to
//!   start. Suggest `feature.env.override` `NODE_ENV=development`.
//! - Paths into the target's image (`NX_NEXT_DIR=/app`, `APP_ROOT=/srv/app`) that do not exist
//!   on this machine send local tools looking in the wrong place. Suggest
//!   `feature.env.exclude` naming them. Only variables that look like paths are considered:
//!   names ending in `_DIR`, `_PATH`, `_ROOT` or `_HOME`, or values under `/app`, `/srv`,
//!   `/workspace` or `/usr/src/app` (the usual image working directories).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use crate::launch::{Cx, Launch, base_name};
use crate::{Diagnostic, Fix, Severity};

/// Name suffixes of variables that hold paths.
pub const PATH_SUFFIXES: [&str; 4] = ["_DIR", "_PATH", "_ROOT", "_HOME"];
/// Usual working directories of container images.
pub const IMAGE_DIRS: [&str; 4] = ["/app", "/srv", "/workspace", "/usr/src/app"];

/// The dev server the words start, e.g. `next dev`.
pub fn dev_server(words: &[String]) -> Option<String> {
    words.iter().enumerate().find_map(|(i, w)| {
        let name = base_name(w);
        let next = words.get(i + 1).map(String::as_str);
        let with = |sub: &str| (next == Some(sub)).then(|| format!("{name} {sub}"));
        match name {
            "vite" => match next {
                Some(sub @ ("dev" | "serve")) => Some(format!("vite {sub}")),
                None => Some("vite".to_owned()),
                Some(flag) if flag.starts_with('-') => Some("vite".to_owned()),
                Some(_) => None,
            },
            "remix" | "next" | "nuxt" | "nuxi" | "astro" => with("dev"),
            "nx" | "ng" | "webpack" | "webpack-cli" => with("serve"),
            "webpack-dev-server" => Some(name.to_owned()),
            "react-scripts" => with("start"),
            _ => None,
        }
    })
}

/// Whether a variable looks like it holds a path into the target's image.
fn path_like(name: &str, value: &str) -> bool {
    PATH_SUFFIXES.iter().any(|s| name.ends_with(s))
        || IMAGE_DIRS.iter().any(|d| value == *d || value.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
}

/// The `framework-node-env` and `env-path-missing` checks. `env` is what the program gets
/// from the target (after the config's env rules).
pub fn check(l: &Launch, cx: &Cx, env: &BTreeMap<String, String>, out: &mut Vec<Diagnostic>) {
    let cfg = &cx.facts.config.feature.env;
    // Variables the user chose (the launch's own env, the config's overrides) are not judged.
    let chosen = |name: &str| l.env.contains_key(name) || cfg.r#override.contains_key(name);

    if !chosen("NODE_ENV")
        && let Some(v) =
            env.get("NODE_ENV").filter(|v| matches!(v.to_ascii_lowercase().as_str(), "production" | "staging"))
        && let Some(server) = dev_server(&cx.command_words(l))
    {
        out.push(
                    Diagnostic::new(
                        "framework-node-env",
                        Severity::Warning,
                        format!("the target sets NODE_ENV={v}, but the launch runs a development server (`{server}`), which then behaves as a production build"),
                    )
                    .with_fix(Fix::manual(
                        "set NODE_ENV for this launch with `feature.env.override` (or exclude it with `feature.env.exclude`)",
                        Some(json!({"feature.env.override": {"NODE_ENV": "development"}})),
                    )),
                );
    }

    let missing: Vec<&str> = env
        .iter()
        .filter(|(name, _)| !chosen(name))
        .filter(|(name, value)| path_like(name, value))
        .filter(|(_, value)| {
            let parts: Vec<&str> = value.split(':').collect();
            parts.iter().all(|p| p.starts_with('/')) && parts.iter().all(|p| !cx.facts.exists(Path::new(p)))
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(5).map(|n| format!("{n}={}", env[*n])).collect();
        let more = if missing.len() > 5 { format!(" and {} more", missing.len() - 5) } else { String::new() };
        out.push(
            Diagnostic::new(
                "env-path-missing",
                Severity::Warning,
                format!(
                    "the target's {}{more} {} at {} that {} not exist on this machine; local tools that read {} will look in the wrong place",
                    shown.join(", "),
                    if missing.len() == 1 { "points" } else { "point" },
                    if missing.len() == 1 { "a path" } else { "paths" },
                    if missing.len() == 1 { "does" } else { "do" },
                    if missing.len() == 1 { "it" } else { "them" },
                ),
            )
            .with_fix(Fix::manual(
                format!("exclude them with `feature.env.exclude` (or set local values with `feature.env.override`): {}", missing.join(", ")),
                Some(json!({"feature.env.exclude": missing})),
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn dev_servers_are_recognised() {
        for (cmd, want) in [
            ("vite", "vite"),
            ("npx vite --port 3000", "vite"),
            ("vite dev", "vite dev"),
            ("node node_modules/vite/bin/vite.js serve", "vite serve"),
            ("remix dev", "remix dev"),
            ("npx next dev -p 3000", "next dev"),
            ("nx serve web", "nx serve"),
            ("ng serve", "ng serve"),
            ("nuxt dev", "nuxt dev"),
            ("nuxi dev", "nuxi dev"),
            ("astro dev", "astro dev"),
            ("webpack serve --mode development", "webpack serve"),
            ("webpack-dev-server", "webpack-dev-server"),
            ("react-scripts start", "react-scripts start"),
        ] {
            assert_eq!(dev_server(&w(cmd)).as_deref(), Some(want), "{cmd}");
        }
        for cmd in [
            "vite build",
            "next build",
            "next start",
            "nx build web",
            "webpack",
            "node server.js",
            "react-scripts build",
        ] {
            assert_eq!(dev_server(&w(cmd)), None, "{cmd}");
        }
    }

    #[test]
    fn path_like_names_and_values() {
        assert!(path_like("NX_NEXT_DIR", "/x"));
        assert!(path_like("NODE_PATH", "/x"));
        assert!(!path_like("GOPATH", "/go"), "the suffix is `_PATH`");
        assert!(path_like("APP_ROOT", "/x"));
        assert!(path_like("JAVA_HOME", "/x"));
        assert!(path_like("CONFIG", "/app/config.yml"));
        assert!(path_like("X", "/srv"));
        assert!(path_like("X", "/usr/src/app/x"));
        assert!(!path_like("X", "/application"));
        assert!(!path_like("DATABASE_URL", "postgres://db/app"));
    }
}

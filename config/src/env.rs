//! Environment rules: which of the target's variables the program sees.
//!
//! Order: a built-in local list is set aside, then `include` (when given, only matching names),
//! then `exclude`, then `override` (which may also add variables the target lacks, and may set
//! any variable, the built-in local ones included). The result is laid over the local
//! environment by the daemon.
//!
//! Built-in local variables are never taken from the target through a wildcard: they describe
//! this machine or this launch, and the target's values break the local program:
//! `PATH` (the local executables), `HOME`, `PWD`, `OLDPWD`, `SHLVL`, `TERM`, `_`,
//! `LD_LIBRARY_PATH`, `LD_PRELOAD` and every `TETHER_*` (tether's own launch variables).
//! An `include` entry that names one of them literally (`"PATH"`, no wildcard) brings the
//! target's value anyway, except for `LD_PRELOAD` and `TETHER_*`, which only `override` can set.

use std::collections::BTreeMap;

use crate::glob::{glob_match, is_literal};
use crate::model::EnvConfig;

/// Variables that stay local unless included by their exact name.
pub const LOCAL_VARS: [&str; 8] = ["PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "TERM", "_", "LD_LIBRARY_PATH"];

/// Whether `name` is one of tether's own launch variables, which only `override` can set.
fn is_launch_var(name: &str) -> bool {
    name == "LD_PRELOAD" || name.starts_with("TETHER_")
}

/// The variables the program gets from the target: `remote` filtered and overridden by `cfg`.
pub fn remote_env(remote: &BTreeMap<String, String>, cfg: &EnvConfig) -> BTreeMap<String, String> {
    let named_literally =
        |name: &str| cfg.include.as_ref().is_some_and(|inc| inc.0.iter().any(|p| is_literal(p) && p == name));
    let mut out: BTreeMap<String, String> = remote
        .iter()
        .filter(|(name, _)| !is_launch_var(name))
        .filter(|(name, _)| !LOCAL_VARS.contains(&name.as_str()) || named_literally(name))
        .filter(|(name, _)| cfg.include.as_ref().is_none_or(|inc| inc.0.iter().any(|p| glob_match(p, name))))
        .filter(|(name, _)| !cfg.exclude.as_ref().is_some_and(|exc| exc.matches(name)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &cfg.r#override {
        out.insert(k.clone(), v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Patterns;

    fn remote() -> BTreeMap<String, String> {
        [
            ("DATABASE_URL", "postgres://db"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ROLE_ARN", "arn:role"),
            ("NODE_ENV", "production"),
            ("PATH", "/pod/bin"),
            ("HOME", "/root"),
            ("HOSTNAME", "web-0"),
            ("LD_PRELOAD", "/pod/lib.so"),
            ("TETHER_SESSION", "pod"),
            ("TERM", "dumb"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn keys(m: &BTreeMap<String, String>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn default_takes_all_but_local_variables() {
        let env = remote_env(&remote(), &EnvConfig::default());
        assert_eq!(keys(&env), ["AWS_REGION", "AWS_ROLE_ARN", "DATABASE_URL", "HOSTNAME", "NODE_ENV"]);
        assert_eq!(env["HOSTNAME"], "web-0");
    }

    #[test]
    fn include_keeps_only_matches() {
        let cfg = EnvConfig { include: Some(Patterns::from_iter(["AWS_*", "DATABASE_?RL"])), ..Default::default() };
        assert_eq!(keys(&remote_env(&remote(), &cfg)), ["AWS_REGION", "AWS_ROLE_ARN", "DATABASE_URL"]);
    }

    #[test]
    fn star_include_does_not_bring_local_variables() {
        let cfg = EnvConfig { include: Some(Patterns::from_iter(["*"])), ..Default::default() };
        let env = remote_env(&remote(), &cfg);
        for local in ["PATH", "HOME", "TERM", "LD_PRELOAD", "TETHER_SESSION"] {
            assert!(!env.contains_key(local), "{local}");
        }
        assert!(env.contains_key("NODE_ENV"));
    }

    #[test]
    fn literal_include_brings_local_variables_but_not_launch_ones() {
        let cfg = EnvConfig {
            include: Some(Patterns::from_iter(["PATH", "LD_PRELOAD", "TETHER_SESSION", "HOM?"])),
            ..Default::default()
        };
        let env = remote_env(&remote(), &cfg);
        assert_eq!(keys(&env), ["PATH"]);
        assert_eq!(env["PATH"], "/pod/bin");
    }

    #[test]
    fn exclude_applies_after_include() {
        let cfg = EnvConfig {
            include: Some(Patterns::from_iter(["AWS_*", "NODE_ENV"])),
            exclude: Some(Patterns::from_iter(["*_ARN", "NODE_ENV"])),
            ..Default::default()
        };
        assert_eq!(keys(&remote_env(&remote(), &cfg)), ["AWS_REGION"]);
    }

    #[test]
    fn override_wins_and_may_add_and_set_local_variables() {
        let cfg = EnvConfig {
            exclude: Some(Patterns::from_iter(["NODE_ENV"])),
            r#override: [("NODE_ENV", "development"), ("NEW", "1"), ("TETHER_X", "y"), ("DATABASE_URL", "local")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ..Default::default()
        };
        let env = remote_env(&remote(), &cfg);
        assert_eq!(env["NODE_ENV"], "development");
        assert_eq!(env["NEW"], "1");
        assert_eq!(env["TETHER_X"], "y");
        assert_eq!(env["DATABASE_URL"], "local");
        assert_eq!(env["AWS_REGION"], "eu-west-1");
    }

    #[test]
    fn empty_include_takes_nothing() {
        let cfg = EnvConfig { include: Some(Patterns::default()), ..Default::default() };
        assert!(remote_env(&remote(), &cfg).is_empty());
    }
}

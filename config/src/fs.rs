//! File path rules: for every path an intercepted program opens, whether it is served from the
//! local disk, from the target's file system (read-only or writable), or does not exist.
//!
//! The supervisor asks this for every `open` of every intercepted process, so [`PathRules::decide`]
//! does no allocation: all user regexes are one `RegexSet` checked first (most paths match none),
//! and every rule's description is built once, up front, and handed out as a shared `Arc<str>`.
//!
//! # Order (the first rule that applies decides)
//!
//! 1. Mode `local`: every path is local; nothing else is looked at.
//! 2. A relative path is local (the daemon passes absolute, normalized paths; this is a guard).
//! 3. The user's lists, regexes searched in the absolute path (anchor them with `^` yourself),
//!    in this order: `not_found` (does not exist), `local`, `read_write` (remote, writable),
//!    `read_only` (remote, read-only). Within a list the first matching entry names the rule.
//! 4. Built-in remote files: `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname` come from the
//!    target (read-only), so names resolve as in the target.
//! 5. Built-in hidden credentials under the user's home: `~/.kube`, `~/.aws`, `~/.azure`,
//!    `~/.config/gcloud`, `~/.docker/config.json`, `~/.oci` are "not found", so that SDKs in the
//!    program use the target's identity instead of silently acting with the developer's.
//!    (`~/.ssh` is not hidden: build steps run under tether fetch code over ssh.)
//! 6. Built-in local directories: the project directories, the user's home, `/home`, and the
//!    system directories `/proc`, `/sys`, `/dev`, `/run`, `/tmp`, `/var/tmp`, `/usr`, `/lib`,
//!    `/lib32`, `/lib64`, `/libx32`, `/bin`, `/sbin`, `/boot`, `/snap`, `/nix`, `/opt/homebrew`,
//!    `/etc` (but for the three remote files), and `/` itself. The program's own code,
//!    interpreters, shared libraries and devices must come from this machine. The directories
//!    that lead to the project and home directories (`/opt` and `/opt/work` for a project in
//!    `/opt/work/app`) are local too, exactly those paths and not what else they hold: runtimes
//!    resolve a program's real path one component at a time.
//! 6b. The installations of the programs the session runs, learned as they start
//!    ([`PathRules::add_program`]): `/opt/conda` for `/opt/conda/bin/python` (the directory of
//!    the executable, or the one above a `bin`, `sbin` or `libexec`), so that a runtime installed
//!    outside the system directories finds its own libraries and modules on this machine. A
//!    directory right under `/` (`/app` for `/app/bin/server`) is never one: it is too likely
//!    to be the target's.
//! 7. Everything else (`/app/config.txt`, `/var/run/secrets/...`, `/data`) follows the mode:
//!    - `read` (default): remote, read-only. A **write** access (`O_WRONLY`, `O_RDWR`,
//!      `O_CREAT`, `O_TRUNC`) goes to the local file instead: the target is never changed, and
//!      the program's writes (logs, caches) land on this machine.
//!    - `write`: remote and writable.
//!    - `localwithoverrides`: local (only the user's lists and the remote files of step 4 reach
//!      the target).
//!
//! Remote read-only paths (`read_only` entries and the built-in remote files) opened for writing
//! go local too, in every mode, for the same reason as in `read` mode.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use regex::{Regex, RegexSet};

use crate::de::regex_error;
use crate::error::ConfigError;
use crate::model::{FsConfig, FsMode};

/// Facts about this machine that the built-in rules need.
#[derive(Clone, Debug, Default)]
pub struct RuleContext {
    /// The user's home directory (local, except its credentials).
    pub home: Option<PathBuf>,
    /// The project's directories (workspace folders, the program's directory): always local.
    pub project_dirs: Vec<PathBuf>,
}

/// What the program means to do with the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Open for reading only, stat, list.
    Read,
    /// Open with `O_WRONLY`, `O_RDWR`, `O_CREAT` or `O_TRUNC`.
    Write,
}

/// Where a path is served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The local file system.
    Local,
    /// The target's file system.
    Remote {
        /// Writes go to the target.
        writable: bool,
    },
    /// The path does not exist for the program (`ENOENT`).
    NotFound,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Route::Local => "local",
            Route::Remote { writable: false } => "remote, read-only",
            Route::Remote { writable: true } => "remote, writable",
            Route::NotFound => "not found",
        })
    }
}

/// A decision and the rule that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub route: Route,
    /// A short phrase naming the rule, e.g. `feature.fs.read_only[0] "^/app"`.
    pub rule: Arc<str>,
}

/// The three files that come from the target in every mode but `local`.
const REMOTE_FILES: [&str; 3] = ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"];

/// Credentials under the home directory that are hidden.
const CREDENTIALS: [&str; 6] = [".kube", ".aws", ".azure", ".config/gcloud", ".docker/config.json", ".oci"];

/// System directories that stay local.
const SYSTEM_DIRS: [&str; 17] = [
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/boot",
    "/snap",
    "/nix",
    "/opt/homebrew",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListKind {
    NotFound,
    Local,
    ReadWrite,
    ReadOnly,
}

#[derive(Debug)]
struct UserList {
    kind: ListKind,
    regexes: Vec<Regex>,
    rules: Vec<Arc<str>>,
    /// For `read_only`: the rule text when a write access sends the path local instead.
    write_rules: Vec<Arc<str>>,
}

/// A directory (or file) prefix and the rule it stands for.
#[derive(Debug)]
struct Prefix {
    path: String,
    rule: Arc<str>,
}

/// An installation of step 6b, and the rule for the directories leading to it.
#[derive(Debug)]
struct Program {
    path: String,
    rule: Arc<str>,
    leads_to: Arc<str>,
}

/// The compiled path rules of one config.
#[derive(Debug)]
pub struct PathRules {
    mode: FsMode,
    any_user: RegexSet,
    lists: Vec<UserList>,
    remote_files: Vec<(Prefix, Arc<str>)>,
    hidden: Vec<Prefix>,
    local_dirs: Vec<Prefix>,
    /// The directories leading to the project and home directories (exact paths).
    ancestors: Vec<Prefix>,
    /// The installations of programs the session runs (step 6b), added as they start.
    programs: RwLock<Vec<Program>>,
    etc: Prefix,
    relative: Arc<str>,
    root: Arc<str>,
    fallback_read: Arc<str>,
    fallback_write: Arc<str>,
}

impl PathRules {
    /// Compiles the rules of `cfg` for this machine. Fails on an invalid regex (which a loaded
    /// config cannot have: the loader checks them).
    pub fn new(cfg: &FsConfig, ctx: &RuleContext) -> Result<PathRules, ConfigError> {
        let lists_in_order = [
            (ListKind::NotFound, "not_found", &cfg.not_found),
            (ListKind::Local, "local", &cfg.local),
            (ListKind::ReadWrite, "read_write", &cfg.read_write),
            (ListKind::ReadOnly, "read_only", &cfg.read_only),
        ];
        let mut lists = Vec::new();
        let mut all = Vec::new();
        for (kind, name, patterns) in lists_in_order {
            let mut list = UserList { kind, regexes: Vec::new(), rules: Vec::new(), write_rules: Vec::new() };
            for (i, p) in patterns.0.iter().enumerate() {
                let key = format!("feature.fs.{name}[{i}]");
                let re = Regex::new(p)
                    .map_err(|e| ConfigError::new(Path::new(""), &key, format!("`{p}`: {}", regex_error(&e))))?;
                let rule = format!("{key} {p:?}");
                list.write_rules.push(format!("{rule} (read-only: opened for writing, so local)").into());
                list.rules.push(rule.into());
                list.regexes.push(re);
                all.push(p.as_str());
            }
            lists.push(list);
        }
        let any_user =
            RegexSet::new(&all).map_err(|e| ConfigError::new(Path::new(""), "feature.fs", regex_error(&e)))?;

        let remote_files = REMOTE_FILES
            .iter()
            .map(|f| {
                let read = format!("built-in: {f} comes from the target");
                let write = format!("{read} (read-only: opened for writing, so local)");
                (Prefix { path: (*f).into(), rule: read.into() }, write.into())
            })
            .collect();

        let home = ctx.home.as_ref().and_then(|h| usable_dir(h));
        let hidden = home
            .iter()
            .flat_map(|h| {
                CREDENTIALS.iter().map(move |c| {
                    let path = format!("{h}/{c}");
                    let rule = format!("built-in: credentials {path} are hidden from the program");
                    Prefix { path, rule: rule.into() }
                })
            })
            .collect();

        let mut local_dirs = Vec::new();
        for dir in ctx.project_dirs.iter().filter_map(|d| usable_dir(d)) {
            let rule = format!("built-in: project directory {dir} stays local");
            local_dirs.push(Prefix { path: dir, rule: rule.into() });
        }
        if let Some(h) = home {
            let rule = format!("built-in: home directory {h} stays local");
            local_dirs.push(Prefix { path: h, rule: rule.into() });
        }
        let mut ancestors: Vec<Prefix> = Vec::new();
        for dir in &local_dirs {
            let mut at = dir.path.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                if parent.is_empty() || ancestors.iter().any(|a| a.path == parent) {
                    break;
                }
                let rule = format!("built-in: {parent} leads to {} and stays local", dir.path);
                ancestors.push(Prefix { path: parent.into(), rule: rule.into() });
                at = parent;
            }
        }
        local_dirs.push(Prefix { path: "/home".into(), rule: "built-in: /home stays local".into() });
        for dir in SYSTEM_DIRS {
            let rule = format!("built-in: system directory {dir} stays local");
            local_dirs.push(Prefix { path: dir.into(), rule: rule.into() });
        }

        let (fallback_read, fallback_write): (&str, &str) = match cfg.mode {
            FsMode::Local => ("mode local: every path stays local", "mode local: every path stays local"),
            FsMode::LocalWithOverrides => (
                "mode localwithoverrides: paths not named by read_only or read_write stay local",
                "mode localwithoverrides: paths not named by read_only or read_write stay local",
            ),
            FsMode::Read => (
                "mode read: paths outside the local rules come from the target",
                "mode read: opened for writing, so local",
            ),
            FsMode::Write => (
                "mode write: paths outside the local rules come from the target, writable",
                "mode write: paths outside the local rules come from the target, writable",
            ),
        };

        Ok(PathRules {
            mode: cfg.mode,
            any_user,
            lists,
            remote_files,
            hidden,
            local_dirs,
            ancestors,
            programs: RwLock::default(),
            etc: Prefix {
                path: "/etc".into(),
                rule: "built-in: system directory /etc stays local (but for resolv.conf, hosts, hostname)".into(),
            },
            relative: "built-in: relative paths stay local".into(),
            root: "built-in: / stays local".into(),
            fallback_read: fallback_read.into(),
            fallback_write: fallback_write.into(),
        })
    }

    /// Where `path` (absolute, normalized) is served from for `access`, and why.
    pub fn decide(&self, path: &str, access: Access) -> Decision {
        let d = |route, rule: &Arc<str>| Decision { route, rule: Arc::clone(rule) };
        let remote_ro = |access, read_rule: &Arc<str>, write_rule: &Arc<str>| match access {
            Access::Read => d(Route::Remote { writable: false }, read_rule),
            Access::Write => d(Route::Local, write_rule),
        };

        if self.mode == FsMode::Local {
            return d(Route::Local, &self.fallback_read);
        }
        if !path.starts_with('/') {
            return d(Route::Local, &self.relative);
        }
        if self.any_user.is_match(path) {
            for list in &self.lists {
                if let Some(i) = list.regexes.iter().position(|r| r.is_match(path)) {
                    return match list.kind {
                        ListKind::NotFound => d(Route::NotFound, &list.rules[i]),
                        ListKind::Local => d(Route::Local, &list.rules[i]),
                        ListKind::ReadWrite => d(Route::Remote { writable: true }, &list.rules[i]),
                        ListKind::ReadOnly => remote_ro(access, &list.rules[i], &list.write_rules[i]),
                    };
                }
            }
        }
        if let Some((file, write_rule)) = self.remote_files.iter().find(|(f, _)| f.path == path) {
            return remote_ro(access, &file.rule, write_rule);
        }
        if let Some(p) = self.hidden.iter().find(|p| under(path, &p.path)) {
            return d(Route::NotFound, &p.rule);
        }
        if let Some(p) = self.local_dirs.iter().find(|p| under(path, &p.path)) {
            return d(Route::Local, &p.rule);
        }
        if under(path, &self.etc.path) {
            return d(Route::Local, &self.etc.rule);
        }
        if path == "/" {
            return d(Route::Local, &self.root);
        }
        if let Some(p) = self.ancestors.iter().find(|p| p.path == path) {
            return d(Route::Local, &p.rule);
        }
        {
            let programs = self.programs.read().unwrap();
            if let Some(p) = programs.iter().find(|p| under(path, &p.path)) {
                return d(Route::Local, &p.rule);
            }
            // `/opt` for `/opt/conda`: runtimes resolve their real path one component at a time.
            if let Some(p) = programs.iter().find(|p| under(&p.path, path)) {
                return d(Route::Local, &p.leads_to);
            }
        }
        match self.mode {
            FsMode::Read => remote_ro(access, &self.fallback_read, &self.fallback_write),
            FsMode::Write => d(Route::Remote { writable: true }, &self.fallback_read),
            FsMode::LocalWithOverrides | FsMode::Local => d(Route::Local, &self.fallback_read),
        }
    }

    /// A program of the session started from `exe` (its real path): its installation stays
    /// local from now on (step 6b). Answers the directory when it is a new one.
    pub fn add_program(&self, exe: &str) -> Option<String> {
        let dir = installation(exe)?;
        if self.programs.read().unwrap().iter().any(|p| under(&dir, &p.path)) {
            return None;
        }
        // Already local (a system directory, the project, home): nothing to learn.
        if matches!(self.decide(&format!("{dir}/"), Access::Read).route, Route::Local) {
            return None;
        }
        let mut programs = self.programs.write().unwrap();
        if programs.len() >= MAX_PROGRAMS {
            return None;
        }
        let rule = format!("built-in: {dir} is the installation of {exe}, which this session runs, and stays local");
        let leads_to = format!("built-in: leads to {dir}, the installation of {exe}, and stays local");
        programs.push(Program { path: dir.clone(), rule: rule.into(), leads_to: leads_to.into() });
        Some(dir)
    }

    /// One line for `tether explain-path`: the decision for reading, and for writing when it
    /// differs.
    pub fn explain(&self, path: &str) -> String {
        let read = self.decide(path, Access::Read);
        let write = self.decide(path, Access::Write);
        let mut line = format!("{path}: {} ({})", read.route, read.rule);
        if write != read {
            line.push_str(&format!("; opened for writing: {} ({})", write.route, write.rule));
        }
        line
    }
}

/// Installations remembered per session at the most.
const MAX_PROGRAMS: usize = 64;

/// The installation directory of an executable (step 6b), if it has one that may stay local.
fn installation(exe: &str) -> Option<String> {
    let (mut dir, _) = exe.rsplit_once('/')?;
    if let Some((parent, name)) = dir.rsplit_once('/')
        && matches!(name, "bin" | "sbin" | "libexec")
    {
        dir = parent;
    }
    // At least two components: `/opt/conda`, never `/app` or `/`.
    let depth = dir.split('/').filter(|c| !c.is_empty()).count();
    (dir.starts_with('/') && depth >= 2).then(|| dir.to_string())
}

/// `dir` as a prefix string: absolute, without a trailing slash, and not `/` itself (a home or
/// project "directory" of `/` would make every path local).
fn usable_dir(dir: &Path) -> Option<String> {
    let s = dir.to_str()?.trim_end_matches('/');
    s.starts_with('/').then(|| s.to_owned())
}

/// Whether `path` is `dir` or inside it.
fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RegexList;

    fn ctx() -> RuleContext {
        RuleContext { home: Some("/home/dev/".into()), project_dirs: vec!["/work/proj".into()] }
    }

    fn rules(cfg: FsConfig) -> PathRules {
        PathRules::new(&cfg, &ctx()).unwrap()
    }

    fn mode(mode: FsMode) -> PathRules {
        rules(FsConfig { mode, ..Default::default() })
    }

    const RO: Route = Route::Remote { writable: false };
    const RW: Route = Route::Remote { writable: true };

    fn route(r: &PathRules, path: &str, access: Access) -> Route {
        r.decide(path, access).route
    }

    #[test]
    fn mode_read_is_remote_read_only_and_writes_go_local() {
        let r = mode(FsMode::Read);
        let d = r.decide("/app/config.txt", Access::Read);
        assert_eq!(d.route, RO);
        assert_eq!(&*d.rule, "mode read: paths outside the local rules come from the target");
        let d = r.decide("/app/config.txt", Access::Write);
        assert_eq!(d.route, Route::Local);
        assert_eq!(&*d.rule, "mode read: opened for writing, so local");
        assert_eq!(route(&r, "/var/run/secrets/kubernetes.io/token", Access::Read), RO);
    }

    #[test]
    fn mode_write_is_remote_writable() {
        let r = mode(FsMode::Write);
        assert_eq!(route(&r, "/data/x", Access::Write), RW);
        assert_eq!(route(&r, "/data/x", Access::Read), RW);
        assert_eq!(route(&r, "/usr/lib/libc.so.6", Access::Read), Route::Local);
    }

    #[test]
    fn mode_local_ignores_every_rule() {
        let r = rules(FsConfig {
            mode: FsMode::Local,
            read_only: RegexList::from_iter(["^/app"]),
            not_found: RegexList::from_iter(["^/data"]),
            ..Default::default()
        });
        for p in ["/app/x", "/data/x", "/etc/hosts", "/etc/resolv.conf", "/home/dev/.kube/config", "/srv"] {
            let d = r.decide(p, Access::Read);
            assert_eq!(d.route, Route::Local, "{p}");
            assert_eq!(&*d.rule, "mode local: every path stays local");
        }
    }

    #[test]
    fn mode_local_with_overrides_is_local_but_for_lists_and_remote_files() {
        let r = rules(FsConfig {
            mode: FsMode::LocalWithOverrides,
            read_only: RegexList::from_iter(["^/app/"]),
            read_write: RegexList::from_iter(["^/data/"]),
            ..Default::default()
        });
        assert_eq!(route(&r, "/srv/x", Access::Read), Route::Local);
        assert!(r.decide("/srv/x", Access::Read).rule.starts_with("mode localwithoverrides"));
        assert_eq!(route(&r, "/app/x", Access::Read), RO);
        assert_eq!(route(&r, "/data/x", Access::Write), RW);
        assert_eq!(route(&r, "/etc/resolv.conf", Access::Read), RO);
        assert_eq!(route(&r, "/etc/passwd", Access::Read), Route::Local);
    }

    #[test]
    fn remote_files_come_from_the_target_in_non_local_modes() {
        for m in [FsMode::Read, FsMode::Write, FsMode::LocalWithOverrides] {
            let r = mode(m);
            for f in ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"] {
                let d = r.decide(f, Access::Read);
                assert_eq!(d.route, RO, "{m} {f}");
                assert_eq!(&*d.rule, format!("built-in: {f} comes from the target"));
                assert_eq!(route(&r, f, Access::Write), Route::Local, "{m} {f}");
            }
        }
    }

    #[test]
    fn system_dirs_etc_and_root_stay_local() {
        let r = mode(FsMode::Write);
        for dir in SYSTEM_DIRS {
            let d = r.decide(&format!("{dir}/x"), Access::Read);
            assert_eq!(d.route, Route::Local, "{dir}");
            assert_eq!(&*d.rule, format!("built-in: system directory {dir} stays local"));
            assert_eq!(route(&r, dir, Access::Read), Route::Local, "{dir}");
        }
        let d = r.decide("/etc/passwd", Access::Read);
        assert_eq!(d.route, Route::Local);
        assert!(d.rule.contains("/etc stays local"));
        assert_eq!(&*r.decide("/", Access::Read).rule, "built-in: / stays local");
        // Prefixes are whole path components.
        assert_eq!(route(&r, "/usrdata/x", Access::Read), RW);
        assert_eq!(route(&r, "/etcetera", Access::Read), RW);
        assert_eq!(route(&r, "/var/lib/app", Access::Read), RW);
    }

    #[test]
    fn relative_paths_stay_local() {
        let d = mode(FsMode::Write).decide("app/x", Access::Read);
        assert_eq!(d.route, Route::Local);
        assert_eq!(&*d.rule, "built-in: relative paths stay local");
    }

    #[test]
    fn home_project_and_credentials() {
        let r = mode(FsMode::Write);
        let d = r.decide("/home/dev/.bashrc", Access::Read);
        assert_eq!(d.route, Route::Local);
        assert_eq!(&*d.rule, "built-in: home directory /home/dev stays local");
        let d = r.decide("/work/proj/main.go", Access::Write);
        assert_eq!(d.route, Route::Local);
        assert_eq!(&*d.rule, "built-in: project directory /work/proj stays local");
        assert_eq!(route(&r, "/home/other/x", Access::Read), Route::Local);
        for c in CREDENTIALS {
            let d = r.decide(&format!("/home/dev/{c}"), Access::Read);
            assert_eq!(d.route, Route::NotFound, "{c}");
            assert!(d.rule.starts_with("built-in: credentials /home/dev/"), "{}", d.rule);
        }
        assert_eq!(route(&r, "/home/dev/.kube/config", Access::Read), Route::NotFound);
        assert_eq!(route(&r, "/home/dev/.kubex", Access::Read), Route::Local);
        assert_eq!(route(&r, "/home/dev/.docker/other.json", Access::Read), Route::Local);
        assert_eq!(route(&r, "/home/dev/.ssh/id_ed25519", Access::Read), Route::Local);
    }

    #[test]
    fn home_outside_home_dir_and_no_home() {
        let r = PathRules::new(
            &FsConfig::default(),
            &RuleContext { home: Some("/root".into()), project_dirs: vec!["/".into(), "rel".into()] },
        )
        .unwrap();
        assert_eq!(route(&r, "/root/.aws/credentials", Access::Read), Route::NotFound);
        assert_eq!(route(&r, "/root/notes", Access::Read), Route::Local);
        // "/" and relative project dirs are ignored rather than making everything local.
        assert_eq!(route(&r, "/app/x", Access::Read), RO);
        let r = PathRules::new(&FsConfig::default(), &RuleContext::default()).unwrap();
        assert_eq!(route(&r, "/root/.aws/credentials", Access::Read), RO);
        assert_eq!(route(&r, "/home/dev/.kube/config", Access::Read), Route::Local);
    }

    #[test]
    fn user_lists_win_over_built_ins_in_order() {
        let r = rules(FsConfig {
            mode: FsMode::Read,
            not_found: RegexList::from_iter(["secret"]),
            local: RegexList::from_iter(["^/app/local", "^/etc/hosts$"]),
            read_write: RegexList::from_iter(["^/app/", "^/tmp/shared"]),
            read_only: RegexList::from_iter(["^/app/", "^/usr/share/app"]),
        });
        let d = r.decide("/app/local/secret", Access::Read);
        assert_eq!(d.route, Route::NotFound);
        assert_eq!(&*d.rule, "feature.fs.not_found[0] \"secret\"");
        let d = r.decide("/app/local/x", Access::Read);
        assert_eq!(d.route, Route::Local);
        assert_eq!(&*d.rule, "feature.fs.local[0] \"^/app/local\"");
        let d = r.decide("/etc/hosts", Access::Read);
        assert_eq!(&*d.rule, "feature.fs.local[1] \"^/etc/hosts$\"");
        let d = r.decide("/app/x", Access::Read);
        assert_eq!(d.route, RW);
        assert_eq!(&*d.rule, "feature.fs.read_write[0] \"^/app/\"");
        assert_eq!(route(&r, "/tmp/shared/a", Access::Write), RW);
        let d = r.decide("/usr/share/app/x", Access::Read);
        assert_eq!(d.route, RO);
        assert_eq!(&*d.rule, "feature.fs.read_only[1] \"^/usr/share/app\"");
        let d = r.decide("/usr/share/app/x", Access::Write);
        assert_eq!(d.route, Route::Local);
        assert!(d.rule.ends_with("(read-only: opened for writing, so local)"));
    }

    #[test]
    fn user_lists_can_reach_credentials() {
        let r = rules(FsConfig {
            mode: FsMode::Read,
            read_only: RegexList::from_iter(["^/home/dev/\\.kube/"]),
            ..Default::default()
        });
        assert_eq!(route(&r, "/home/dev/.kube/config", Access::Read), RO);
    }

    #[test]
    fn invalid_regex_is_an_error_naming_key_and_index() {
        let e = PathRules::new(
            &FsConfig { local: RegexList::from_iter(["ok", "(unclosed"]), ..Default::default() },
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(e.key, "feature.fs.local[1]");
        assert_eq!(e.to_string(), "feature.fs.local[1]: `(unclosed`: invalid regex: unclosed group");
    }

    #[test]
    fn explain_gives_one_line_with_the_rule() {
        let r = mode(FsMode::Read);
        assert_eq!(
            r.explain("/app/config.txt"),
            "/app/config.txt: remote, read-only (mode read: paths outside the local rules come from the target); \
             opened for writing: local (mode read: opened for writing, so local)"
        );
        assert_eq!(r.explain("/usr/bin/env"), "/usr/bin/env: local (built-in: system directory /usr stays local)");
        assert_eq!(
            mode(FsMode::Write).explain("/data"),
            "/data: remote, writable (mode write: paths outside the local rules come from the target, writable)"
        );
        assert!(r.explain("/home/dev/.aws/config").contains(": not found (built-in: credentials"));
    }

    #[test]
    fn the_directories_leading_to_the_project_are_local_but_not_their_other_content() {
        let ctx = RuleContext { home: Some("/root".into()), project_dirs: vec!["/opt/work/app".into()] };
        let r = PathRules::new(&FsConfig::default(), &ctx).unwrap();
        for p in ["/opt", "/opt/work", "/opt/work/app/main.js"] {
            assert_eq!(r.decide(p, Access::Read).route, Route::Local, "{p}: {}", r.decide(p, Access::Read).rule);
        }
        assert!(r.decide("/opt", Access::Read).rule.contains("leads to /opt/work/app"));
        assert_eq!(r.decide("/opt/other", Access::Read).route, Route::Remote { writable: false });
        assert_eq!(r.decide("/opt/work/other", Access::Read).route, Route::Remote { writable: false });
    }

    #[test]
    fn installations_are_the_directory_above_bin_and_never_a_top_level_one() {
        assert_eq!(installation("/opt/conda/bin/python3.11").as_deref(), Some("/opt/conda"));
        assert_eq!(installation("/opt/jdk-21/libexec/java").as_deref(), Some("/opt/jdk-21"));
        assert_eq!(installation("/opt/tool/server").as_deref(), Some("/opt/tool"));
        assert_eq!(installation("/srv/build/out/probe").as_deref(), Some("/srv/build/out"));
        assert_eq!(installation("/app/bin/server"), None, "/app is too likely the target's");
        assert_eq!(installation("/app/server"), None);
        assert_eq!(installation("/bin/sh"), None);
        assert_eq!(installation("relative/bin/x"), None);
    }

    #[test]
    fn a_program_outside_the_system_directories_keeps_its_installation_local() {
        let r = rules(FsConfig::default());
        let lib = "/opt/conda/lib/libpython3.11.so.1.0";
        assert_eq!(r.decide(lib, Access::Read).route, Route::Remote { writable: false });
        assert_eq!(r.add_program("/opt/conda/bin/python3.11").as_deref(), Some("/opt/conda"));
        assert_eq!(r.add_program("/opt/conda/bin/pip"), None, "known already");
        assert_eq!(r.add_program("/usr/bin/python3"), None, "a system directory is local anyway");
        let d = r.decide(lib, Access::Read);
        assert_eq!(d.route, Route::Local);
        assert!(d.rule.contains("installation of /opt/conda/bin/python3.11"), "{}", d.rule);
        assert_eq!(r.decide("/opt", Access::Read).route, Route::Local, "leads to it");
        assert_eq!(r.decide("/opt/other/x", Access::Read).route, Route::Remote { writable: false });
        assert_eq!(r.decide("/app/config.txt", Access::Read).route, Route::Remote { writable: false });

        // The user's lists still decide first.
        let r = rules(FsConfig { read_only: RegexList::from_iter(["^/opt/conda/etc/"]), ..FsConfig::default() });
        r.add_program("/opt/conda/bin/python3.11");
        assert_eq!(r.decide("/opt/conda/etc/app.yaml", Access::Read).route, Route::Remote { writable: false });
        assert_eq!(r.decide("/opt/conda/lib/x.so", Access::Read).route, Route::Local);
    }
}

//! Where the layer is loaded from.
//!
//! Endpoint-security tools (and some corporate policies) block libraries loaded from random
//! paths under /tmp. Tether extracts the layer to a stable per-user directory, and every launch
//! says which one and how to move it (`layer.dir`), so that it can be allow-listed. A
//! directory under a temporary directory, or writable by other users, is a warning: the first
//! gets cleaned and blocked, the second lets another user replace the library that every
//! launched program loads.

use std::path::Path;

use crate::facts::Facts;
use crate::{Diagnostic, Fix, Severity};

/// Temporary directories (macOS' per-user temporary directories live under /var/folders).
const TEMP_DIRS: [&str; 6] =
    ["/tmp", "/var/tmp", "/private/tmp", "/private/var/tmp", "/var/folders", "/private/var/folders"];

/// The `layer-location` information and the `layer-dir-unsafe` warning.
pub fn check(facts: &Facts, out: &mut Vec<Diagnostic>) {
    let dir = &facts.layer_dir;
    if dir.as_os_str().is_empty() {
        return;
    }
    let source = if facts.config.layer.dir.is_some() {
        "set by `layer.dir`"
    } else {
        "tether's per-user default; `layer.dir` in the config moves it"
    };
    out.push(Diagnostic::new(
        "layer-location",
        Severity::Info,
        format!("the layer is loaded from {} ({source})", dir.display()),
    ));

    let tmpdir = facts.daemon_env.get("TMPDIR").filter(|t| t.len() > 1);
    let in_temp = TEMP_DIRS.iter().any(|t| dir.starts_with(t)) || tmpdir.is_some_and(|t| dir.starts_with(Path::new(t)));
    let world_writable = facts.host.metadata(dir).is_some_and(|m| m.mode & 0o002 != 0);
    let problem = match (in_temp, world_writable) {
        (true, true) => "is in a temporary directory and writable by every user",
        (true, false) => "is in a temporary directory, which security tools often block and cleaners empty",
        (false, true) => "is writable by every user, so another user could replace the library",
        (false, false) => return,
    };
    out.push(
        Diagnostic::new(
            "layer-dir-unsafe",
            Severity::Warning,
            format!("the layer's directory {} {problem}", dir.display()),
        )
        .with_fix(Fix::manual(
            "set `layer.dir` to a directory only you can write, outside /tmp (e.g. ~/.local/share/tether/layer), or remove `layer.dir` to use tether's default",
            None,
        )),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{MemHost, Os};
    use std::sync::Arc;

    fn run(host: MemHost, dir: &str, configured: bool) -> Vec<Diagnostic> {
        let mut f = Facts::new(Os::Linux, Arc::new(host));
        f.layer_dir = dir.into();
        if configured {
            f.config.layer.dir = Some(dir.into());
        }
        let mut out = Vec::new();
        check(&f, &mut out);
        out
    }

    #[test]
    fn names_the_directory_and_the_key() {
        let out = run(MemHost::new().dir("/home/u/.local/share/tether", 0o700), "/home/u/.local/share/tether", false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, "layer-location");
        assert_eq!(out[0].severity, Severity::Info);
        assert!(out[0].message.contains("/home/u/.local/share/tether"));
        assert!(out[0].message.contains("`layer.dir`"));
        let out = run(MemHost::new(), "/opt/tether", true);
        assert!(out[0].message.contains("set by `layer.dir`"));
    }

    #[test]
    fn temporary_or_world_writable_directories_warn() {
        let out = run(MemHost::new().dir("/tmp/tether-layer", 0o700), "/tmp/tether-layer", true);
        assert_eq!(out[1].id, "layer-dir-unsafe");
        assert!(out[1].message.contains("temporary"));
        let out = run(MemHost::new().dir("/shared/layer", 0o777), "/shared/layer", true);
        assert!(out[1].message.contains("writable by every user"));
        let out = run(MemHost::new().dir("/var/folders/xy/T/l", 0o1777), "/var/folders/xy/T/l", true);
        assert!(out[1].message.contains("temporary directory and writable"));
        assert_eq!(run(MemHost::new().dir("/opt/l", 0o755), "/opt/l", true).len(), 1);
    }

    #[test]
    fn daemon_tmpdir_counts_as_temporary() {
        let mut f = Facts::new(Os::Macos, Arc::new(MemHost::new()));
        f.layer_dir = "/Users/u/tmp/l".into();
        f.daemon_env.insert("TMPDIR".into(), "/Users/u/tmp/".into());
        let mut out = Vec::new();
        check(&f, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].id, "layer-dir-unsafe");
    }

    #[test]
    fn unknown_directory_says_nothing() {
        assert!(run(MemHost::new(), "", false).is_empty());
    }
}

//! Cluster DNS needs the target's `/etc/resolv.conf`.
//!
//! Names resolve as in the target because the target's `/etc/resolv.conf` (and `/etc/hosts`)
//! is read instead of the local one. `feature.fs.mode: local` keeps every path local, these
//! files included, so `my-service.my-namespace` stops resolving while everything else seems to
//! work. `localwithoverrides` keeps the files local too, but still reads those three from the
//! target.

use serde_json::json;
use tether_config::{Config, FsMode};

use crate::{Diagnostic, Fix, Severity};

/// The `fs-local-dns` check.
pub fn check(config: &Config, out: &mut Vec<Diagnostic>) {
    if config.feature.fs.mode != FsMode::Local || !config.feature.network.dns {
        return;
    }
    out.push(
        Diagnostic::new(
            "fs-local-dns",
            Severity::Warning,
            "`feature.fs.mode` is `local`, so the target's /etc/resolv.conf is not read: cluster names (service.namespace) will not resolve",
        )
        .with_fix(Fix::manual(
            "use `localwithoverrides`: files stay local, but names resolve as in the target (or set `feature.network.dns: false` if that is what you want)",
            Some(json!({"feature.fs.mode": "localwithoverrides"})),
        )),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_mode_with_dns_warns() {
        let mut out = Vec::new();
        let mut c = Config::default();
        check(&c, &mut out);
        assert!(out.is_empty(), "default mode is read");
        c.feature.fs.mode = FsMode::LocalWithOverrides;
        check(&c, &mut out);
        assert!(out.is_empty());
        c.feature.fs.mode = FsMode::Local;
        check(&c, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, "fs-local-dns");
        assert_eq!(out[0].severity, Severity::Warning);
        assert_eq!(out[0].fix.as_ref().unwrap().edit, Some(json!({"feature.fs.mode": "localwithoverrides"})));
        out.clear();
        c.feature.network.dns = false;
        check(&c, &mut out);
        assert!(out.is_empty(), "DNS off: nothing to warn about");
    }
}

//! Where tether keeps its files, per user: the daemon socket, the log, the layer.
//!
//! - runtime: `$XDG_RUNTIME_DIR/tether`, else `/tmp/tether-<uid>` (created 0700 and checked to be
//!   ours, so another user cannot plant a socket there);
//! - state (the log): `$XDG_STATE_HOME/tether`, else `~/.local/state/tether`;
//! - data (the layer library): `$XDG_DATA_HOME/tether/<version>`, else
//!   `~/.local/share/tether/<version>`: a stable path that endpoint-security tools can allow.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

fn uid() -> u32 {
    unsafe { libc::geteuid() }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => home().unwrap_or_else(|| PathBuf::from("/")).join(fallback),
    }
}

/// Creates `dir` with mode 0700 if needed and checks that it belongs to us and nobody else can
/// enter it.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("checking {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid() {
        bail!("{} is not a directory of this user: remove it or set XDG_RUNTIME_DIR", dir.display());
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v).join("tether"),
        None => PathBuf::from(format!("/tmp/tether-{}", uid())),
    }
}

/// The daemon socket. The protocol version is part of the name, so a daemon of an incompatible
/// version is never reached by mistake.
pub fn socket() -> PathBuf {
    if let Some(s) = std::env::var_os("TETHER_SOCKET").filter(|v| !v.is_empty()) {
        return PathBuf::from(s);
    }
    runtime_dir().join(format!("daemon-v{}.sock", env!("CARGO_PKG_VERSION_MAJOR")))
}

pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state").join("tether")
}

pub fn layer_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share").join("tether").join(env!("CARGO_PKG_VERSION"))
}

/// A binary that ships beside the `tether` executable (`tether-agent`, `libtether_layer.so`).
pub fn beside_exe(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the tether executable")?;
    let dir = exe.parent().context("the tether executable has no directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!("{} is missing: it ships beside {} (reinstall tether)", path.display(), exe.display());
    }
    Ok(path)
}

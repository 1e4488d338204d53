//! What the checks know about the machine, gathered by the caller.
//!
//! The checks never look at the process environment or the file system directly: they read
//! [`Facts`], whose file access goes through a [`Host`]. The daemon passes a [`SystemHost`];
//! tests pass a [`MemHost`] holding fixture files, so every check runs the same on any machine
//! (the macOS checks included).

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tether_config::Config;

/// The operating system the daemon runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Macos,
}

impl Os {
    /// The system this code was built for (Linux for anything that is not macOS).
    pub fn current() -> Os {
        if cfg!(target_os = "macos") { Os::Macos } else { Os::Linux }
    }

    /// `"linux"` or `"macos"`.
    pub fn parse(s: &str) -> Option<Os> {
        match s {
            "linux" => Some(Os::Linux),
            "macos" => Some(Os::Macos),
            _ => None,
        }
    }
}

/// What the checks need to know about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Size in bytes.
    pub len: u64,
    /// Unix permission bits (`0o755`); `0` where unknown.
    pub mode: u32,
    pub is_dir: bool,
}

/// File-system access for the checks. Paths are absolute.
pub trait Host: Send + Sync {
    /// The file's metadata (following symlinks), `None` when it does not exist.
    fn metadata(&self, path: &Path) -> Option<Meta>;
    /// Up to `len` bytes at `offset` (fewer at the end of the file).
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;

    /// The first executable file named `name` in the `:`-separated directories of `path_var`.
    fn which(&self, name: &str, path_var: &str) -> Option<PathBuf> {
        if name.is_empty() || name.contains('/') {
            return None;
        }
        path_var
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(name))
            .find(|p| self.metadata(p).is_some_and(|m| !m.is_dir && m.mode & 0o111 != 0))
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemHost;

impl Host for SystemHost {
    fn metadata(&self, path: &Path) -> Option<Meta> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let mode = std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777;
        #[cfg(not(unix))]
        let mode = 0;
        Some(Meta { len: m.len(), mode, is_dir: m.is_dir() })
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len.min(1 << 20));
        f.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// An in-memory file system for tests (of this crate and of its callers).
#[derive(Clone, Debug, Default)]
pub struct MemHost {
    files: BTreeMap<PathBuf, (Vec<u8>, u32)>,
    dirs: BTreeMap<PathBuf, u32>,
}

impl MemHost {
    pub fn new() -> MemHost {
        MemHost::default()
    }

    /// Adds a file with its permission bits (its directories are implied).
    pub fn file(mut self, path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.insert(path.into(), (bytes.into(), mode));
        self
    }

    /// Adds an executable file (mode 0755).
    pub fn exe(self, path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) -> Self {
        self.file(path, bytes, 0o755)
    }

    /// Adds a directory with its permission bits.
    pub fn dir(mut self, path: impl Into<PathBuf>, mode: u32) -> Self {
        self.dirs.insert(path.into(), mode);
        self
    }
}

impl Host for MemHost {
    fn metadata(&self, path: &Path) -> Option<Meta> {
        if let Some((bytes, mode)) = self.files.get(path) {
            return Some(Meta { len: bytes.len() as u64, mode: *mode, is_dir: false });
        }
        if let Some(mode) = self.dirs.get(path) {
            return Some(Meta { len: 0, mode: *mode, is_dir: true });
        }
        self.files.keys().any(|f| f.starts_with(path) && f != path).then_some(Meta {
            len: 0,
            mode: 0o755,
            is_dir: true,
        })
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let (bytes, _) = self.files.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let end = start.saturating_add(len).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }
}

/// Everything the checks need about the machine and the session.
#[derive(Clone)]
pub struct Facts {
    /// The system the daemon (and so the program) runs on.
    pub os: Os,
    /// The daemon's environment: `CGO_ENABLED`, `CC`, `PATH`, `GOFLAGS`, `TMPDIR`, `HOME`.
    pub daemon_env: BTreeMap<String, String>,
    /// The target's environment, before the config's `feature.env` rules.
    pub target_env: BTreeMap<String, String>,
    /// The directory `libtether_layer.so` is loaded from.
    pub layer_dir: PathBuf,
    /// The user's config.
    pub config: Config,
    /// The editor's workspace folder (`${workspaceFolder}`).
    pub workspace_folder: PathBuf,
    /// The user's home directory (`${userHome}`, and the SIP copies' cache on macOS).
    pub home: Option<PathBuf>,
    /// File access.
    pub host: Arc<dyn Host>,
}

impl Facts {
    /// Facts for `os` with an empty environment and the default config; set the rest by field.
    pub fn new(os: Os, host: Arc<dyn Host>) -> Facts {
        Facts {
            os,
            daemon_env: BTreeMap::new(),
            target_env: BTreeMap::new(),
            layer_dir: PathBuf::new(),
            config: Config::default(),
            workspace_folder: PathBuf::new(),
            home: None,
            host,
        }
    }

    /// An executable on the daemon's `PATH`.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        let path = self.daemon_env.get("PATH").map_or("", String::as_str);
        self.host.which(name, path)
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.host.metadata(path).is_some()
    }

    /// A reader over one file, for the binary parsers.
    pub fn file<'a>(&'a self, path: &'a Path) -> HostFile<'a> {
        HostFile { host: self.host.as_ref(), path }
    }

    /// Where SIP-free copies go: `~/Library/Caches/tether/sip`.
    pub fn sip_cache_dir(&self) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join("Library/Caches/tether/sip"))
    }
}

/// Random access to bytes: a file through a [`Host`], or a slice in tests.
pub trait ReadAt {
    /// Exactly `len` bytes at `offset`, or `None` (short file, I/O error).
    fn read_exact_at(&self, offset: u64, len: usize) -> Option<Vec<u8>>;
}

impl ReadAt for &[u8] {
    fn read_exact_at(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let start = usize::try_from(offset).ok()?;
        self.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    }
}

/// One file of a [`Host`] as [`ReadAt`].
pub struct HostFile<'a> {
    host: &'a dyn Host,
    path: &'a Path,
}

impl ReadAt for HostFile<'_> {
    fn read_exact_at(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let bytes = self.host.read_at(self.path, offset, len).ok()?;
        (bytes.len() == len).then_some(bytes)
    }
}

/// A window of another reader starting at `base` (a slice of a universal Mach-O).
pub struct Offset<'a> {
    pub inner: &'a dyn ReadAt,
    pub base: u64,
}

impl ReadAt for Offset<'_> {
    fn read_exact_at(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        self.inner.read_exact_at(self.base.checked_add(offset)?, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_host_which_needs_the_exec_bit_and_follows_path_order() {
        let host = MemHost::new().file("/a/gcc", "x", 0o644).exe("/b/gcc", "x").exe("/c/gcc", "x");
        assert_eq!(host.which("gcc", "/a:/b:/c"), Some(PathBuf::from("/b/gcc")));
        assert_eq!(host.which("gcc", "/a"), None);
        assert_eq!(host.which("gcc", "relative:/c"), Some(PathBuf::from("/c/gcc")));
        assert_eq!(host.which("/b/gcc", "/b"), None);
    }

    #[test]
    fn mem_host_reads_and_implies_directories() {
        let host = MemHost::new().exe("/x/y/z", "hello");
        assert_eq!(host.read_at(Path::new("/x/y/z"), 1, 3).unwrap(), b"ell");
        assert_eq!(host.read_at(Path::new("/x/y/z"), 3, 99).unwrap(), b"lo");
        assert_eq!(host.read_at(Path::new("/x/y/z"), 99, 1).unwrap(), b"");
        assert!(host.metadata(Path::new("/x/y")).unwrap().is_dir);
        assert!(host.metadata(Path::new("/x/q")).is_none());
    }

    #[test]
    fn system_host_reads_a_window() {
        let dir = std::env::temp_dir().join(format!("tether-doctor-facts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(SystemHost.read_at(&f, 2, 3).unwrap(), b"234");
        assert_eq!(SystemHost.metadata(&f).unwrap().len, 10);
        assert!(SystemHost.metadata(&dir).unwrap().is_dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn slices_and_offsets_read_exactly() {
        let bytes: &[u8] = b"abcdef";
        assert_eq!(bytes.read_exact_at(4, 2).unwrap(), b"ef");
        assert!(bytes.read_exact_at(5, 2).is_none());
        assert!(bytes.read_exact_at(u64::MAX, 2).is_none());
        let off = Offset { inner: &bytes, base: 2 };
        assert_eq!(off.read_exact_at(1, 2).unwrap(), b"de");
    }
}

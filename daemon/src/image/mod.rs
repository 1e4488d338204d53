//! The agent image: built by tether itself from its own agent, pushed to a registry, or loaded
//! into a local cluster, with no container engine.
//!
//! - [`default_reference`]: the image the project publishes for this version, the default of
//!   `agent.image` (one constant, [`REPOSITORY`]);
//! - [`find_agent`]: the static `tether-agent` of this build (beside `tether`, or what
//!   `cargo agent-static` built), checked to be static, of the platform asked and of this version;
//! - [`oci`]: the image as an OCI image layout (a directory or a tar archive): one layer holding
//!   `/tether-agent`, its config (entrypoint) and manifest;
//! - [`registry`]: `push` over the distribution protocol with the user's Docker credentials;
//! - [`load`]: into a cluster's containerd (`ctr`), a kind node or minikube.
//!
//! Invariant: the image holds exactly one file, a statically linked agent, so it needs nothing
//! from a base image (no shell, no libc, no `nft`: the agent speaks netlink itself).

pub mod load;
pub mod oci;
pub mod registry;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where the project publishes the agent image.
pub const REPOSITORY: &str = "ghcr.io/tether-dev/tether-agent";

/// The agent image of this version: the default of `agent.image`.
pub fn default_reference() -> String {
    format!("{REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// A platform an image can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    pub fn parse(s: &str) -> anyhow::Result<Platform> {
        match s {
            "linux/amd64" | "amd64" | "linux/x86_64" => Ok(Platform::Amd64),
            "linux/arm64" | "arm64" | "linux/aarch64" | "linux/arm64/v8" => Ok(Platform::Arm64),
            other => bail!("unknown platform `{other}`; the agent image is built for linux/amd64 or linux/arm64"),
        }
    }

    /// This machine's platform.
    pub fn host() -> Platform {
        if cfg!(target_arch = "aarch64") { Platform::Arm64 } else { Platform::Amd64 }
    }

    /// The OCI architecture name.
    pub fn arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The Rust target triple that builds its agent.
    pub fn triple(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-gnu",
            Platform::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// ELF `e_machine` of its executables.
    fn elf_machine(self) -> u16 {
        match self {
            Platform::Amd64 => 62,
            Platform::Arm64 => 183,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "linux/{}", self.arch())
    }
}

/// Why a file cannot be the image's agent, or `None` when it can.
pub fn unfit_agent(bytes: &[u8], platform: Platform) -> Option<String> {
    let Some(info) = tether_doctor::elf::inspect(&bytes) else {
        return Some("it is not an ELF executable".into());
    };
    let machine = bytes.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]])).unwrap_or(0);
    if machine != platform.elf_machine() {
        return Some(format!("it is not a {platform} executable (ELF machine {machine})"));
    }
    if let Some(interp) = info.interpreter {
        return Some(format!(
            "it is dynamically linked (it needs {interp} and libraries an image without a base does not have)"
        ));
    }
    None
}

/// The hint that says how to get a static agent for `platform`.
fn build_hint(platform: Platform) -> String {
    match platform {
        Platform::Amd64 => {
            "build it with `cargo agent-static` (target/x86_64-unknown-linux-gnu/release/tether-agent), \
             or pass --agent FILE"
                .into()
        }
        Platform::Arm64 => format!(
            "build it with `rustup target add {t}` and `cargo rustc -p tether-agent --bin tether-agent --release \
             --target {t} -- -C target-feature=+crt-static` (an aarch64 linker is needed, e.g. Debian's \
             gcc-aarch64-linux-gnu), then pass --agent FILE",
            t = platform.triple()
        ),
    }
}

/// The places the agent of this build may be: beside `tether` (an installation), and the
/// output of `cargo agent-static` when `tether` runs from a cargo target directory.
fn candidates(exe: &Path, platform: Platform) -> Vec<PathBuf> {
    let dir = exe.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    if platform == Platform::host() {
        out.push(dir.join("tether-agent"));
    }
    if let Some(target_dir) = dir.parent() {
        out.push(target_dir.join(platform.triple()).join("release").join("tether-agent"));
    }
    out
}

/// The agent for the image: `explicit`, else the first static agent of `platform` among the
/// [`candidates`] of this executable. It must be of this version (`tether-agent --version`).
pub fn find_agent(explicit: Option<&Path>, platform: Platform) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let check = |path: &Path| -> anyhow::Result<Result<Vec<u8>, String>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading the agent {}", path.display()))?;
        Ok(match unfit_agent(&bytes, platform) {
            Some(why) => Err(why),
            None => Ok(bytes),
        })
    };
    if let Some(p) = explicit {
        return match check(p)? {
            Ok(bytes) => {
                check_version(p, platform)?;
                Ok((p.to_path_buf(), bytes))
            }
            Err(why) => {
                bail!("{} cannot be the agent of a {platform} image: {why}; {}", p.display(), build_hint(platform))
            }
        };
    }
    let exe = std::env::current_exe().context("finding the tether executable")?;
    let mut tried = Vec::new();
    for c in candidates(&exe, platform) {
        if !c.exists() {
            tried.push(format!("{} (missing)", c.display()));
            continue;
        }
        match check(&c)? {
            Ok(bytes) => {
                check_version(&c, platform)?;
                return Ok((c, bytes));
            }
            Err(why) => tried.push(format!("{} ({why})", c.display())),
        }
    }
    bail!("no static {platform} tether-agent of this build: {}; {}", tried.join(", "), build_hint(platform))
}

/// The agent must be this version's: an image named for 0.2.0 must not hold a 0.1.0 agent.
fn check_version(path: &Path, platform: Platform) -> anyhow::Result<()> {
    if platform != Platform::host() {
        return Ok(()); // cannot run it here; the file name and the user's word must do
    }
    let out = std::process::Command::new(path)
        .arg("--version")
        .env_clear()
        .output()
        .with_context(|| format!("running {} --version", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let want = env!("CARGO_PKG_VERSION");
    if text.split_whitespace().nth(1) != Some(want) {
        bail!(
            "{} is not the agent of this tether ({want}): it says {:?}; rebuild it from the same sources",
            path.display(),
            text.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_name_their_target() {
        assert_eq!(Platform::parse("linux/amd64").unwrap(), Platform::Amd64);
        assert_eq!(Platform::parse("linux/arm64").unwrap().triple(), "aarch64-unknown-linux-gnu");
        let e = Platform::parse("windows/amd64").unwrap_err().to_string();
        assert!(e.contains("windows/amd64") && e.contains("linux/arm64"), "{e}");
        assert_eq!(Platform::Amd64.to_string(), "linux/amd64");
    }

    #[test]
    fn the_default_reference_is_this_version_under_the_project_repository() {
        assert_eq!(default_reference(), format!("ghcr.io/tether-dev/tether-agent:{}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn dynamic_and_foreign_executables_are_refused() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // The test binary is a normal (dynamic) build.
        let why = unfit_agent(&me, Platform::Amd64).unwrap();
        assert!(why.contains("dynamically linked"), "{why}");
        assert!(unfit_agent(&me, Platform::Arm64).unwrap().contains("not a linux/arm64 executable"));
        assert!(unfit_agent(b"#!/bin/sh\n", Platform::Amd64).unwrap().contains("not an ELF"));
    }

    #[test]
    fn candidates_cover_an_installation_and_cargo_agent_static() {
        let c = candidates(Path::new("/opt/t/target/debug/tether"), Platform::Amd64);
        assert_eq!(c[0], Path::new("/opt/t/target/debug/tether-agent"));
        assert_eq!(c[1], Path::new("/opt/t/target/x86_64-unknown-linux-gnu/release/tether-agent"));
        let c = candidates(Path::new("/opt/t/target/debug/tether"), Platform::Arm64);
        assert_eq!(c, [Path::new("/opt/t/target/aarch64-unknown-linux-gnu/release/tether-agent")]);
    }
}

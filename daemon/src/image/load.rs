//! Loading the agent image into a local cluster without a registry: the cluster's own tool
//! imports the archive that [`super::oci`] wrote.
//!
//! - containerd: `ctr [--address SOCKET] -n k8s.io images import FILE` (the kubelet's images
//!   live in containerd's `k8s.io` namespace); the image takes its name from the archive's
//!   `io.containerd.image.name` annotation;
//! - kind: `kind load image-archive FILE [--name CLUSTER]` (which runs the same import on every
//!   node);
//! - minikube: `minikube image load FILE [--profile PROFILE]`.
//!
//! A pod then finds the image on its node as long as `agent.image_pull_policy` is not `Always`
//! (Kubernetes' default for tags other than `latest` is `IfNotPresent`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Where to load the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Containerd { ctr: PathBuf, address: Option<PathBuf> },
    Kind { name: Option<String> },
    Minikube { profile: Option<String> },
}

/// The command that loads `archive` into `into`.
pub fn command(into: &Target, archive: &Path) -> Command {
    match into {
        Target::Containerd { ctr, address } => {
            let mut c = Command::new(ctr);
            if let Some(a) = address {
                c.arg("--address").arg(a);
            }
            c.args(["-n", "k8s.io", "images", "import"]).arg(archive);
            c
        }
        Target::Kind { name } => {
            let mut c = Command::new("kind");
            c.args(["load", "image-archive"]).arg(archive);
            if let Some(n) = name {
                c.args(["--name", n]);
            }
            c
        }
        Target::Minikube { profile } => {
            let mut c = Command::new("minikube");
            c.args(["image", "load"]).arg(archive);
            if let Some(p) = profile {
                c.args(["--profile", p]);
            }
            c
        }
    }
}

/// Runs the load; its output is the tool's.
pub fn run(into: &Target, archive: &Path) -> anyhow::Result<String> {
    let mut cmd = command(into, archive);
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().with_context(|| {
        let program = cmd.get_program().to_string_lossy().into_owned();
        match into {
            Target::Containerd { .. } => format!("running {program}; pass --ctr PATH (containerd's `ctr`)"),
            _ => format!("running {program}; is it installed and on PATH?"),
        }
    })?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let hint = match into {
            Target::Containerd { address: None, .. } => {
                "; is containerd running, and is its socket the default /run/containerd/containerd.sock (else --address)?"
            }
            Target::Containerd { .. } => "; is containerd running there, and may you use its socket (root)?",
            Target::Kind { .. } => "; does the kind cluster exist (`kind get clusters`)?",
            Target::Minikube { .. } => "; is minikube running (`minikube status`)?",
        };
        bail!("`{shown}` failed ({}): {}{hint}", out.status, said.trim());
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(c: &Command) -> Vec<String> {
        std::iter::once(c.get_program()).chain(c.get_args()).map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn each_cluster_gets_its_own_tool() {
        let f = Path::new("/tmp/a.tar");
        let ctr = Target::Containerd { ctr: "/opt/ctr".into(), address: Some("/run/k.sock".into()) };
        assert_eq!(
            args(&command(&ctr, f)),
            ["/opt/ctr", "--address", "/run/k.sock", "-n", "k8s.io", "images", "import", "/tmp/a.tar"]
        );
        assert_eq!(
            args(&command(&Target::Kind { name: Some("dev".into()) }, f)),
            ["kind", "load", "image-archive", "/tmp/a.tar", "--name", "dev"]
        );
        assert_eq!(args(&command(&Target::Minikube { profile: None }, f)), ["minikube", "image", "load", "/tmp/a.tar"]);
    }

    #[test]
    fn a_missing_tool_and_a_failing_one_are_explained() {
        let f = Path::new("/nonexistent/a.tar");
        let e =
            format!("{:#}", run(&Target::Containerd { ctr: "/nonexistent/ctr".into(), address: None }, f).unwrap_err());
        assert!(e.contains("/nonexistent/ctr") && e.contains("--ctr"), "{e}");
        // `false` stands in for a tool that fails.
        let e = run(&Target::Containerd { ctr: "false".into(), address: None }, f).unwrap_err().to_string();
        assert!(e.contains("failed") && e.contains("--address"), "{e}");
    }
}

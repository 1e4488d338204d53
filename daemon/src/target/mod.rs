//! Targets: what a session runs "inside", and how its agent is started and reached.
//!
//! This is the seam between target kinds. A [`TargetSpec`] names a target; its kind's backend
//! resolves it and starts (or reuses) an agent, and from then on the rest of the daemon sees
//! only an [`Agent`](crate::agent::Agent). Local processes (`pid:N`) are the kind built here;
//! Kubernetes targets slot in beside them.

pub mod local;

use std::fmt;

use anyhow::bail;

/// A target named by the user (`--target` or `target.path`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetSpec {
    /// A process on this machine.
    Pid(u32),
}

impl TargetSpec {
    pub fn parse(s: &str) -> anyhow::Result<TargetSpec> {
        let s = s.trim();
        if let Some(pid) = s.strip_prefix("pid:") {
            return match pid.parse::<u32>() {
                Ok(p) if p > 0 => Ok(TargetSpec::Pid(p)),
                _ => bail!("target `{s}`: `{pid}` is not a process id (expected pid:<number>)"),
            };
        }
        let kube = ["pod/", "deployment/", "statefulset/", "targetless"];
        if kube.iter().any(|k| s.starts_with(k)) {
            bail!("target `{s}`: Kubernetes targets are not available in this build yet; use pid:<PID> for a local process");
        }
        bail!("unknown target `{s}`: expected pid:<PID> (a local process)")
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Pid(p) => write!(f, "pid:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_clear_errors() {
        assert_eq!(TargetSpec::parse("pid:42").unwrap(), TargetSpec::Pid(42));
        assert!(TargetSpec::parse("pid:x").unwrap_err().to_string().contains("not a process id"));
        assert!(TargetSpec::parse("pid:0").is_err());
        assert!(TargetSpec::parse("deployment/web").unwrap_err().to_string().contains("Kubernetes"));
        assert!(TargetSpec::parse("banana").unwrap_err().to_string().contains("unknown target"));
    }
}

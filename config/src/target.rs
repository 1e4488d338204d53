//! Target paths: the one-string name of what a program runs "inside".
//!
//! The same syntax is used by `target.path` in the config file and by `--target` on the command
//! line, so it is parsed here once: `pid:1234` (a local process), `targetless`, or
//! `KIND/NAME[/container/CONTAINER]` for Kubernetes workloads.

use std::fmt;

use serde::{Deserialize, Deserializer, de};

/// Kubernetes workload kinds a target path may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Pod,
    Deployment,
    StatefulSet,
    ReplicaSet,
    Job,
    CronJob,
    Rollout,
    Service,
}

impl TargetKind {
    const ALL: [TargetKind; 8] = [
        TargetKind::Pod,
        TargetKind::Deployment,
        TargetKind::StatefulSet,
        TargetKind::ReplicaSet,
        TargetKind::Job,
        TargetKind::CronJob,
        TargetKind::Rollout,
        TargetKind::Service,
    ];

    /// The word used in target paths (`deployment`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Pod => "pod",
            TargetKind::Deployment => "deployment",
            TargetKind::StatefulSet => "statefulset",
            TargetKind::ReplicaSet => "replicaset",
            TargetKind::Job => "job",
            TargetKind::CronJob => "cronjob",
            TargetKind::Rollout => "rollout",
            TargetKind::Service => "service",
        }
    }
}

/// A parsed target path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetPath {
    /// `pid:1234`: a process on this machine.
    Pid(u32),
    /// `targetless`: an agent in the cluster that is not attached to any workload.
    Targetless,
    /// `KIND/NAME[/container/CONTAINER]`.
    Kube { kind: TargetKind, name: String, container: Option<String> },
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPath::Pid(pid) => write!(f, "pid:{pid}"),
            TargetPath::Targetless => f.write_str("targetless"),
            TargetPath::Kube { kind, name, container } => {
                write!(f, "{}/{name}", kind.as_str())?;
                if let Some(c) = container {
                    write!(f, "/container/{c}")?;
                }
                Ok(())
            }
        }
    }
}

/// Parses a target path; the error says what was expected.
pub fn parse_target(s: &str) -> Result<TargetPath, String> {
    const FORMS: &str = "expected `pid:PID`, `targetless` or `KIND/NAME[/container/NAME]`";
    if s == "targetless" {
        return Ok(TargetPath::Targetless);
    }
    if let Some(pid) = s.strip_prefix("pid:") {
        return match pid.parse::<u32>() {
            Ok(p) if p > 0 => Ok(TargetPath::Pid(p)),
            _ => Err(format!("`{pid}` is not a process id")),
        };
    }
    let parts: Vec<&str> = s.split('/').collect();
    let (kind, name, container) = match parts.as_slice() {
        [kind, name] => (*kind, *name, None),
        [kind, name, "container", c] => (*kind, *name, Some(*c)),
        [_, _, other, _] => {
            return Err(format!("unknown path segment `{other}`; expected `container`"));
        }
        _ => return Err(FORMS.to_owned()),
    };
    let kind = TargetKind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or_else(|| {
        let kinds: Vec<_> = TargetKind::ALL.iter().map(|k| k.as_str()).collect();
        let mut msg = format!("unknown target kind `{kind}`");
        if let Some(best) = crate::error::closest(kind, kinds.iter().copied()) {
            msg.push_str(&format!("; did you mean `{best}`?"));
        } else {
            msg.push_str(&format!("; expected one of {}", kinds.join(", ")));
        }
        msg
    })?;
    check_name(name, "name")?;
    if let Some(c) = container {
        check_name(c, "container name")?;
    }
    Ok(TargetPath::Kube { kind, name: name.to_owned(), container: container.map(str::to_owned) })
}

/// Kubernetes object names: lowercase letters, digits, `-` and `.`, starting and ending with a
/// letter or digit.
fn check_name(name: &str, what: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok { Ok(()) } else { Err(format!("`{name}` is not a valid {what} (lowercase letters, digits, `-`, `.`)")) }
}

/// Schema of a target path string, with a pattern so that editors flag a bad path as you type.
pub(crate) struct TargetPathString;

impl schemars::JsonSchema for TargetPathString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TargetPathString".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let kinds: Vec<&str> = TargetKind::ALL.iter().map(|k| k.as_str()).collect();
        let name = "[a-z0-9]([-a-z0-9.]*[a-z0-9])?";
        let pattern = format!("^(targetless|pid:[1-9][0-9]*|({})/{name}(/container/{name})?)$", kinds.join("|"));
        schemars::json_schema!({
            "type": "string",
            "description": "`pid:PID`, `targetless`, or `KIND/NAME[/container/NAME]` with KIND one of pod, deployment, statefulset, replicaset, job, cronjob, rollout, service.",
            "pattern": pattern,
            "examples": ["pod/web-0", "deployment/api/container/main", "pid:1234", "targetless"]
        })
    }
}

/// `deserialize_with` for `target.path`.
pub(crate) fn de_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    if let Some(s) = &s {
        parse_target(s).map_err(|m| de::Error::custom(format!("`{s}`: {m}")))?;
    }
    Ok(s)
}

impl crate::TargetConfig {
    /// The parsed `path`, if one is set (it was validated when the file was loaded).
    pub fn parsed_path(&self) -> Result<Option<TargetPath>, String> {
        self.path.as_deref().map(parse_target).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_round_trips() {
        for (text, want) in [
            ("pid:1234", TargetPath::Pid(1234)),
            ("targetless", TargetPath::Targetless),
            ("pod/web-0", TargetPath::Kube { kind: TargetKind::Pod, name: "web-0".into(), container: None }),
            (
                "deployment/api/container/main",
                TargetPath::Kube { kind: TargetKind::Deployment, name: "api".into(), container: Some("main".into()) },
            ),
            (
                "statefulset/db.v2",
                TargetPath::Kube { kind: TargetKind::StatefulSet, name: "db.v2".into(), container: None },
            ),
        ] {
            let got = parse_target(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
    }

    #[test]
    fn rejects_bad_paths_with_reasons() {
        assert_eq!(parse_target("pid:abc").unwrap_err(), "`abc` is not a process id");
        assert_eq!(parse_target("pid:0").unwrap_err(), "`0` is not a process id");
        assert_eq!(
            parse_target("deploymnet/api").unwrap_err(),
            "unknown target kind `deploymnet`; did you mean `deployment`?"
        );
        assert!(parse_target("gizmo/api").unwrap_err().contains("expected one of pod, deployment"));
        assert_eq!(
            parse_target("pod/Web").unwrap_err(),
            "`Web` is not a valid name (lowercase letters, digits, `-`, `.`)"
        );
        assert!(parse_target("pod/a/contianer/b").unwrap_err().contains("`contianer`"));
        assert!(parse_target("pod").unwrap_err().starts_with("expected `pid:PID`"));
        assert!(parse_target("pod/").unwrap_err().contains("not a valid name"));
        assert!(parse_target("pod/a/container/-x").unwrap_err().contains("container name"));
    }
}

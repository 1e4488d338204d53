//! The config file's model: the types `.tether/tether.json` deserializes into.
//!
//! Doc comments on fields are the JSON Schema's descriptions, which editors show on hover: write
//! them for a user editing the file. Every struct denies unknown keys, so a typo is an error
//! with a "did you mean" hint rather than a setting that silently has no effect.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::de::{Either, ShortForm, check_regex, list, short_form, variant_from_str};
use crate::glob::glob_match;

/// Configuration of tether: which target a local program runs "inside", and what it takes from
/// that target (environment, files, network).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The JSON Schema this file follows; editors use it for completion and validation.
    #[serde(rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The target the program runs "inside": a target path (`pid:1234`, `pod/NAME`,
    /// `deployment/NAME/container/NAME`, `targetless`) or an object with `path`, `namespace` and
    /// `container`.
    #[serde(deserialize_with = "short_form")]
    #[schemars(with = "Either<crate::target::TargetPathString, TargetConfig>")]
    pub target: TargetConfig,
    /// How the agent (the helper that runs next to the target) is started.
    pub agent: AgentConfig,
    /// What the program takes from the target: environment, files, network.
    pub feature: FeatureConfig,
    /// Executables that are never intercepted (debuggers, build tools), as glob patterns on the
    /// executable's file name: a `;`-separated string or a list, e.g. `["dlv", "gdb"]`.
    pub skip_processes: Patterns,
    /// Where the library loaded into launched processes lives and what happens when it cannot
    /// attach.
    pub layer: LayerConfig,
}

/// Programs that are never intercepted, whatever the config says: debuggers and tracers, and
/// the tools that build programs (the Go toolchain and the C toolchain it calls for cgo). Their
/// children are still intercepted: the program a debugger or `go run` starts is decided by its
/// own executable.
pub const BUILT_IN_SKIPS: &[&str] = &[
    "gdb",
    "lldb",
    "dlv",
    "lldb-server",
    "gdbserver",
    "strace",
    "ltrace",
    "go",
    "compile",
    "asm",
    "link",
    "cgo",
    "vet",
    "gcc",
    "cc",
    "cc1",
    "as",
    "ld",
    "ld.bfd",
    "ld.gold",
    "collect2",
    "x86_64-linux-gnu-gcc",
    "x86_64-linux-gnu-gcc-12",
    "x86_64-linux-gnu-ld",
    "x86_64-linux-gnu-as",
    "x86_64-linux-gnu-ld.bfd",
];

/// Whether `exe_name` (a file name or a path) is one of the [`BUILT_IN_SKIPS`].
pub fn skipped_built_in(exe_name: &str) -> bool {
    BUILT_IN_SKIPS.contains(&exe_name.rsplit('/').next().unwrap_or(exe_name))
}

impl Config {
    /// Whether the executable `exe_name` (a file name or a path; only the file name counts) is
    /// in `skip_processes`.
    pub fn skips(&self, exe_name: &str) -> bool {
        let name = exe_name.rsplit('/').next().unwrap_or(exe_name);
        self.skip_processes.matches(name)
    }
}

/// The target: which process, pod or workload the program runs "inside".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    /// Target path: `pid:1234` (a local process), `pod/NAME`, `deployment/NAME`,
    /// `statefulset/NAME`, ... optionally followed by `/container/NAME`, or `targetless`.
    #[serde(deserialize_with = "crate::target::de_opt_path", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::target::TargetPathString>")]
    pub path: Option<String>,
    /// Kubernetes namespace of the target (default: the current context's namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Container in the target pod (required when the pod has several application containers;
    /// service-mesh sidecars are skipped automatically).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Kubernetes context of the kubeconfig (default: its current context). The kubeconfig is
    /// the one of the terminal or editor that starts the session (`KUBECONFIG`, else
    /// `~/.kube/config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl ShortForm for TargetConfig {
    const EXPECTING: &'static str = "a target path such as `pod/NAME`, or an object";
    fn from_str<E: de::Error>(s: &str) -> Result<Self, E> {
        crate::target::parse_target(s).map_err(|m| E::custom(format!("`{s}`: {m}")))?;
        Ok(TargetConfig { path: Some(s.to_owned()), ..Default::default() })
    }
}

/// The agent: the helper process that runs next to the target and does the remote side of
/// every operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Namespace in which a node Job agent is created (default: the target's namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Agent container image (default: the image matching this tether version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Seconds Kubernetes keeps a finished agent Job before deleting it.
    pub ttl: u64,
    /// Run the agent privileged (needed on SELinux-enforcing nodes and Bottlerocket).
    pub privileged: bool,
    /// Fixed port the agent listens on (default: a free port). Set it when a service mesh
    /// needs a known port to exclude from interception.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Run the agent as an ephemeral container in the target pod (`true`) or as a node Job
    /// (`false`).
    pub ephemeral: bool,
    /// Seconds to wait for the agent to start and answer before giving up.
    pub startup_timeout: u64,
    /// Seconds the agent stays alive after its last client left, so that a restart is instant.
    pub idle_timeout: u64,
    /// When the node pulls `agent.image`: `IfNotPresent`, `Always` or `Never` (default:
    /// Kubernetes' own, `IfNotPresent` for a tag other than `latest`). `Never` uses only an image
    /// loaded onto the node (`tether agent-image load`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Names of Secrets of type `kubernetes.io/dockerconfigjson` in the agent pod's namespace
    /// that hold the credentials of a private registry of `agent.image` (Jobs and targetless
    /// pods; an ephemeral container uses the target pod's own pull secrets).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<KubeName>,
    /// Tolerations of the agent's pod (targetless pods; node Jobs tolerate every taint already),
    /// written as in a pod spec: `{"key": "dedicated", "operator": "Equal", "value": "dev",
    /// "effect": "NoSchedule"}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node labels the agent's pod must match, e.g. `{"kubernetes.io/os": "linux"}`
    /// (targetless pods and node Jobs; a Job is bound to its target's node, which must match).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<KubeLabelKey, String>,
    /// CPU and memory of the agent's container, as Kubernetes quantities: `{"requests":
    /// {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}`. Namespaces with a
    /// LimitRange or a ResourceQuota often require them.
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Labels added to the agent's Job and pod (tether's own `app.kubernetes.io/*` labels stay).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<KubeLabelKey, String>,
    /// Annotations added to the agent's Job and pod (e.g. a mesh's exclusion, a policy's
    /// exemption).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<KubeLabelKey, String>,
    /// Service account of the agent's Job and targetless pod (default: the namespace's
    /// `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<KubeName>,
}

/// `agent.image_pull_policy`: Kubernetes' `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    IfNotPresent,
    Always,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Always => "Always",
            PullPolicy::Never => "Never",
        }
    }
}

/// A toleration of the agent's pod, as in a pod spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Toleration {
    /// The taint's key (empty with `Exists`: every taint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` (the default: the taint's value must be `value`) or `Exists`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<TolerationOperator>,
    /// The taint's value, with `Equal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute` (empty: every effect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// With `NoExecute`: how long the pod stays once the taint appears.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TolerationOperator {
    Exists,
    Equal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// `agent.resources`: requests and limits by resource name (`cpu`, `memory`,
/// `ephemeral-storage`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves for the agent, e.g. `{"cpu": "10m", "memory": "32Mi"}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<KubeLabelKey, Quantity>,
    /// The most the agent may use, e.g. `{"memory": "256Mi"}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<KubeLabelKey, Quantity>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }
}

/// Defines a string type checked while the config is read, with a schema pattern.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $pattern:expr, $expecting:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
                let re = RE.get_or_init(|| regex::Regex::new($pattern).expect("a valid pattern"));
                if re.is_match(&s) {
                    Ok($name(s))
                } else {
                    Err(de::Error::invalid_value(de::Unexpected::Str(&s), &$expecting))
                }
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "pattern": $pattern})
            }
        }
    };
}

checked_string!(
    /// A Kubernetes object name (a Secret, a ServiceAccount): lower-case letters, digits, `-`
    /// and `.`.
    KubeName,
    r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
    "a Kubernetes name (lower-case letters, digits, `-`, `.`)"
);
checked_string!(
    /// A label, annotation or resource key: `[prefix/]name`.
    KubeLabelKey,
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    "a Kubernetes key such as `app`, `example.com/team` or `memory`"
);
checked_string!(
    /// A Kubernetes quantity: `100m`, `0.5`, `64Mi`, `1G`.
    Quantity,
    r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$",
    "a Kubernetes quantity such as `100m`, `0.5`, `64Mi` or `1Gi`"
);

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            namespace: None,
            image: None,
            ttl: 1,
            privileged: false,
            port: None,
            ephemeral: true,
            startup_timeout: 30,
            idle_timeout: 60,
            image_pull_policy: None,
            image_pull_secrets: Vec::new(),
            tolerations: Vec::new(),
            node_selector: BTreeMap::new(),
            resources: Resources::default(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            service_account: None,
        }
    }
}

/// What the program takes from the target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// Environment variables taken from the target.
    pub env: EnvConfig,
    /// Files read (or written) in the target's file system. A mode (`"read"`) or an object.
    #[serde(deserialize_with = "short_form")]
    #[schemars(with = "Either<FsMode, FsConfig>")]
    pub fs: FsConfig,
    /// Network: incoming traffic, outgoing connections, DNS.
    pub network: NetworkConfig,
}

/// Environment variables: the target's variables are added over the local ones, filtered by
/// `include` then `exclude`, then `override` is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EnvConfig {
    /// Only the target's variables whose names match one of these glob patterns (`*`, `?`)
    /// are taken: a `;`-separated string or a list. Default: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include: Option<Patterns>,
    /// The target's variables whose names match one of these glob patterns are not taken
    /// (e.g. `NODE_ENV`): a `;`-separated string or a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Patterns>,
    /// Variables set to these values whatever the target has (they may also add variables the
    /// target does not have).
    pub r#override: BTreeMap<String, String>,
}

/// Files: which paths the program reads from the target and which stay local. The lists are
/// regexes matched against the absolute path; they win over the built-in rules, in the order
/// `not_found`, `local`, `read_write`, `read_only`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FsConfig {
    /// `read` (default): paths come from the target, read-only; `write`: from the target and
    /// writable; `localwithoverrides`: local except the paths the lists send to the target;
    /// `local`: everything local.
    pub mode: FsMode,
    /// Paths read from the target even in `localwithoverrides` mode (regexes).
    pub read_only: RegexList,
    /// Paths read from and written to the target (regexes).
    pub read_write: RegexList,
    /// Paths that stay local (regexes).
    pub local: RegexList,
    /// Paths that do not exist for the program (regexes).
    pub not_found: RegexList,
}

impl ShortForm for FsConfig {
    const EXPECTING: &'static str = "a file mode (`read`, `write`, `local`, `localwithoverrides`) or an object";
    fn from_str<E: de::Error>(s: &str) -> Result<Self, E> {
        Ok(FsConfig { mode: variant_from_str(s)?, ..Default::default() })
    }
}

/// File mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FsMode {
    /// Every path stays local.
    Local,
    /// Local, except the paths in `read_only` / `read_write` and the target's
    /// `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`.
    #[serde(rename = "localwithoverrides")]
    LocalWithOverrides,
    /// Paths outside the local rules come from the target, read-only; a file opened for
    /// writing is local.
    #[default]
    Read,
    /// Paths outside the local rules come from the target and are writable there.
    Write,
}

impl fmt::Display for FsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsMode::Local => "local",
            FsMode::LocalWithOverrides => "localwithoverrides",
            FsMode::Read => "read",
            FsMode::Write => "write",
        })
    }
}

/// Network features.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Traffic that reaches the target's ports. A mode (`"mirror"`) or an object.
    #[serde(deserialize_with = "short_form")]
    #[schemars(with = "Either<IncomingMode, IncomingConfig>")]
    pub incoming: IncomingConfig,
    /// Outgoing connections. `true` (default) / `false` for all TCP and UDP, or an object.
    #[serde(deserialize_with = "short_form")]
    #[schemars(with = "Either<bool, OutgoingConfig>")]
    pub outgoing: OutgoingConfig,
    /// Resolve names as the target does (its `/etc/hosts` and nameservers).
    pub dns: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig { incoming: IncomingConfig::default(), outgoing: OutgoingConfig::default(), dns: true }
    }
}

/// Incoming traffic: connections that reach the target's ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IncomingConfig {
    /// `mirror` (default): the program gets a copy of the traffic, the target still answers;
    /// `steal`: the traffic goes to the program instead; `off`: none.
    pub mode: IncomingMode,
    /// `[local, remote]` port pairs: the program listening on `local` gets the traffic of the
    /// target's port `remote`.
    pub port_mapping: Vec<PortMapping>,
    /// Target ports whose traffic is never mirrored or stolen.
    pub ignore_ports: Vec<u16>,
    /// Steal only the HTTP requests that match (the others go to the target).
    pub http_filter: HttpFilter,
}

impl IncomingConfig {
    /// The target port whose traffic a program listening on `local` gets.
    pub fn remote_port(&self, local: u16) -> u16 {
        self.port_mapping.iter().find(|m| m.local == local).map_or(local, |m| m.remote)
    }
}

impl ShortForm for IncomingConfig {
    const EXPECTING: &'static str = "an incoming mode (`mirror`, `steal`, `off`) or an object";
    fn from_str<E: de::Error>(s: &str) -> Result<Self, E> {
        Ok(IncomingConfig { mode: variant_from_str(s)?, ..Default::default() })
    }
}

/// Incoming mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncomingMode {
    /// The program gets a copy of the traffic; the target still answers it.
    #[default]
    Mirror,
    /// The traffic goes to the program instead of the target.
    Steal,
    /// No incoming traffic.
    Off,
}

/// A `[local, remote]` port pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// The port the program listens on.
    pub local: u16,
    /// The target's port whose traffic it gets.
    pub remote: u16,
}

impl Serialize for PortMapping {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2))?;
        seq.serialize_element(&self.local)?;
        seq.serialize_element(&self.remote)?;
        seq.end()
    }
}

impl<'de> Deserialize<'de> for PortMapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const WHAT: &str = "a pair [local, remote] of ports 1-65535";
        impl<'de> Visitor<'de> for V {
            type Value = PortMapping;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(WHAT)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PortMapping, A::Error> {
                let mut ports = Vec::with_capacity(2);
                while let Some(v) = seq.next_element::<serde_json::Value>()? {
                    ports.push(v);
                }
                let port = |v: &serde_json::Value| v.as_u64().filter(|p| (1..=65535).contains(p)).map(|p| p as u16);
                match ports.as_slice() {
                    [l, r] => match (port(l), port(r)) {
                        (Some(local), Some(remote)) => Ok(PortMapping { local, remote }),
                        _ => Err(de::Error::custom(format!("expected {WHAT}, got [{l}, {r}]"))),
                    },
                    _ => Err(de::Error::custom(format!(
                        "expected {WHAT}, got {} value{}",
                        ports.len(),
                        if ports.len() == 1 { "" } else { "s" }
                    ))),
                }
            }
        }
        d.deserialize_seq(V)
    }
}

impl JsonSchema for PortMapping {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortMapping".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let port = json_schema!({ "type": "integer", "minimum": 1, "maximum": 65535 });
        json_schema!({
            "description": "[local, remote]: the program listening on `local` gets the traffic of the target's port `remote`.",
            "type": "array",
            "items": [port, port],
            "additionalItems": false,
            "minItems": 2,
            "maxItems": 2
        })
    }
}

/// HTTP filter for `steal` mode: HTTP/1.x and HTTP/2 with prior knowledge (h2c, as gRPC inside a
/// cluster). With both keys, a request must match both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpFilter {
    /// Regex matched against each header line `Name: value` (in HTTP/2, `:authority` counts as
    /// `host`).
    #[serde(deserialize_with = "crate::de::opt_regex", skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Regex matched against the request path (with the query string; in HTTP/2, `:path`).
    #[serde(deserialize_with = "crate::de::opt_regex", skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Outgoing connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OutgoingConfig {
    /// Send TCP connections through the target.
    pub tcp: bool,
    /// Send UDP traffic through the target.
    pub udp: bool,
    /// Which destinations go through the target: `{"remote": [...]}` (only these) or
    /// `{"local": [...]}` (all but these). Entries are `[proto://][host|ip|cidr][:port]`, e.g.
    /// `tcp://10.0.0.0/8:443`, `udp://:53`, `db.svc.cluster.local:5432`, `[::1]:80`, `:8080`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<OutgoingFilter>,
}

impl Default for OutgoingConfig {
    fn default() -> Self {
        OutgoingConfig { tcp: true, udp: true, filter: None }
    }
}

impl ShortForm for OutgoingConfig {
    const EXPECTING: &'static str = "`true`, `false` or an object";
    fn from_bool<E: de::Error>(b: bool) -> Result<Self, E> {
        Ok(OutgoingConfig { tcp: b, udp: b, filter: None })
    }
}

/// Outgoing filter: exactly one of `remote` and `local`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OutgoingFilter {
    /// Only destinations matching one of these entries go through the target.
    Remote(#[schemars(with = "Patterns")] Vec<String>),
    /// Destinations matching one of these entries stay local; the others go through the target.
    Local(#[schemars(with = "Patterns")] Vec<String>),
}

impl<'de> Deserialize<'de> for OutgoingFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OutgoingFilter;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object with `remote` or `local`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OutgoingFilter, A::Error> {
                // A field identifier: an unknown key fails while the key is read, so the
                // error's path ends in that key, as for the derived structs.
                #[derive(Deserialize, PartialEq)]
                #[serde(field_identifier, rename_all = "snake_case")]
                enum Key {
                    Remote,
                    Local,
                }
                let mut found: Option<OutgoingFilter> = None;
                while let Some(key) = map.next_key::<Key>()? {
                    let remote = key == Key::Remote;
                    if let Some(prev) = &found {
                        let prev_remote = matches!(prev, OutgoingFilter::Remote(_));
                        return Err(match (prev_remote == remote, remote) {
                            (true, true) => de::Error::duplicate_field("remote"),
                            (true, false) => de::Error::duplicate_field("local"),
                            _ => de::Error::custom("give either `remote` or `local`, not both"),
                        });
                    }
                    let entries = map.next_value::<FilterList>()?.0;
                    found = Some(if remote { OutgoingFilter::Remote(entries) } else { OutgoingFilter::Local(entries) });
                }
                found.ok_or_else(|| de::Error::custom("the filter needs `remote` or `local`"))
            }
        }
        d.deserialize_map(V)
    }
}

/// A list of outgoing filter entries, each checked while deserializing.
struct FilterList(Vec<String>);

impl<'de> Deserialize<'de> for FilterList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        list(d, |e| crate::net::FilterEntry::parse(e).map(|_| ())).map(FilterList)
    }
}

/// The layer: the library loaded into launched processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LayerConfig {
    /// Directory where `libtether_layer.so` is placed (default: a per-user directory chosen by
    /// tether; never a random path under /tmp, which endpoint-security tools may block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// When `true` (default), a process whose interception cannot start stops with a clear
    /// message instead of running un-intercepted.
    pub require: bool,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig { dir: None, require: true }
    }
}

/// Glob patterns (`*`, `?`) on names: written as a `;`-separated string or a list of strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Patterns(pub Vec<String>);

impl Patterns {
    /// Index of the first pattern that matches `name`.
    pub fn first_match(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|p| glob_match(p, name))
    }

    /// Whether any pattern matches `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.first_match(name).is_some()
    }
}

impl<S: Into<String>> FromIterator<S> for Patterns {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Patterns(iter.into_iter().map(Into::into).collect())
    }
}

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        list(d, crate::de::any_entry).map(Patterns)
    }
}

impl JsonSchema for Patterns {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Patterns".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string", "description": "`;`-separated entries" },
                { "type": "array", "items": { "type": "string" } }
            ]
        })
    }
}

/// Regexes matched against absolute paths: a `;`-separated string or a list of strings.
/// Every entry is compiled when the file is loaded, so a bad regex is a load error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RegexList(pub Vec<String>);

impl<S: Into<String>> FromIterator<S> for RegexList {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        RegexList(iter.into_iter().map(Into::into).collect())
    }
}

impl<'de> Deserialize<'de> for RegexList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        list(d, check_regex).map(RegexList)
    }
}

impl JsonSchema for RegexList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RegexList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string", "description": "`;`-separated regexes" },
                { "type": "array", "items": { "type": "string", "format": "regex" } }
            ]
        })
    }
}

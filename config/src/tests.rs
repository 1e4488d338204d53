//! Loading tests: whole files through `parse`, `load` and `discover`, and the error each kind
//! of mistake produces.

use std::path::{Path, PathBuf};

use super::*;
use crate::target::{TargetKind, TargetPath};

const ORIGIN: &str = ".tether/tether.json";

fn ok(text: &str) -> Config {
    parse(text, Path::new(ORIGIN)).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ConfigError {
    parse(text, Path::new(ORIGIN)).unwrap_err()
}

/// The text the error's span covers.
fn spanned<'a>(text: &'a str, e: &ConfigError) -> &'a str {
    &text[e.span.clone().expect("a span")]
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-config-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn empty_object_gives_the_documented_defaults() {
    let c = ok("{}");
    assert_eq!(c, Config::default());
    assert_eq!(c.target.path, None);
    assert!(c.agent.ephemeral);
    assert!(!c.agent.privileged);
    assert_eq!(c.agent.startup_timeout, 30);
    assert_eq!(c.agent.idle_timeout, 60);
    assert_eq!(c.agent.port, None);
    assert_eq!(c.feature.fs.mode, FsMode::Read);
    assert_eq!(c.feature.network.incoming.mode, IncomingMode::Mirror);
    assert!(c.feature.network.outgoing.tcp && c.feature.network.outgoing.udp);
    assert_eq!(c.feature.network.outgoing.filter, None);
    assert!(c.feature.network.dns);
    assert!(c.layer.require);
    assert_eq!(c.layer.dir, None);
    assert!(c.skip_processes.0.is_empty());
}

const FULL: &str = r#"{
  "$schema": "../schemas/tether.schema.json",
  "target": { "path": "deployment/api/container/main", "namespace": "shop", "container": "main" },
  "agent": {
    "namespace": "tether", "image": "reg/agent:1", "ttl": 5, "privileged": true, "port": 7777,
    "ephemeral": false, "startup_timeout": 10, "idle_timeout": 5
  },
  "feature": {
    "env": { "include": "DB_*;AWS_*", "exclude": ["AWS_SECRET*"], "override": { "NODE_ENV": "dev" } },
    "fs": {
      "mode": "write", "read_only": ["^/config"], "read_write": "^/data;^/cache",
      "local": ["\\.log$"], "not_found": ["^/secrets/"]
    },
    "network": {
      "incoming": {
        "mode": "steal", "port_mapping": [[8080, 80], [9443, 443]], "ignore_ports": [9090],
        "http_filter": { "header": "^x-user: me$", "path": "^/api/" }
      },
      "outgoing": { "tcp": true, "udp": false, "filter": { "local": ["tcp://10.0.0.0/8:443", ":53"] } },
      "dns": false
    }
  },
  "skip_processes": ["dlv", "gdb*"],
  "layer": { "dir": "/opt/tether", "require": false }
}"#;

#[test]
fn every_key_parses() {
    let c = ok(FULL);
    assert_eq!(c.schema.as_deref(), Some("../schemas/tether.schema.json"));
    assert_eq!(c.target.path.as_deref(), Some("deployment/api/container/main"));
    assert_eq!(c.target.namespace.as_deref(), Some("shop"));
    assert_eq!(c.target.container.as_deref(), Some("main"));
    assert_eq!(
        c.target.parsed_path().unwrap(),
        Some(TargetPath::Kube { kind: TargetKind::Deployment, name: "api".into(), container: Some("main".into()) })
    );
    let a = &c.agent;
    assert_eq!(
        (a.namespace.as_deref(), a.image.as_deref(), a.ttl, a.privileged, a.port),
        (Some("tether"), Some("reg/agent:1"), 5, true, Some(7777))
    );
    assert_eq!((a.ephemeral, a.startup_timeout, a.idle_timeout), (false, 10, 5));
    let env = &c.feature.env;
    assert_eq!(env.include, Some(Patterns(vec!["DB_*".into(), "AWS_*".into()])));
    assert_eq!(env.exclude, Some(Patterns(vec!["AWS_SECRET*".into()])));
    assert_eq!(env.r#override["NODE_ENV"], "dev");
    let fs = &c.feature.fs;
    assert_eq!(fs.mode, FsMode::Write);
    assert_eq!(fs.read_only.0, ["^/config"]);
    assert_eq!(fs.read_write.0, ["^/data", "^/cache"]);
    assert_eq!(fs.local.0, ["\\.log$"]);
    assert_eq!(fs.not_found.0, ["^/secrets/"]);
    let inc = &c.feature.network.incoming;
    assert_eq!(inc.mode, IncomingMode::Steal);
    assert_eq!(inc.port_mapping, [PortMapping { local: 8080, remote: 80 }, PortMapping { local: 9443, remote: 443 }]);
    assert_eq!(inc.remote_port(8080), 80);
    assert_eq!(inc.remote_port(3000), 3000);
    assert_eq!(inc.ignore_ports, [9090]);
    assert_eq!(inc.http_filter.header.as_deref(), Some("^x-user: me$"));
    assert_eq!(inc.http_filter.path.as_deref(), Some("^/api/"));
    let out = &c.feature.network.outgoing;
    assert!(out.tcp && !out.udp);
    assert_eq!(out.filter, Some(OutgoingFilter::Local(vec!["tcp://10.0.0.0/8:443".into(), ":53".into()])));
    assert!(!c.feature.network.dns);
    assert_eq!(c.skip_processes.0, ["dlv", "gdb*"]);
    assert_eq!(c.layer.dir, Some(PathBuf::from("/opt/tether")));
    assert!(!c.layer.require);
}

#[test]
fn serialized_config_parses_back_to_itself() {
    let c = ok(FULL);
    let text = serde_json::to_string_pretty(&c).unwrap();
    assert_eq!(ok(&text), c);
    let d = Config::default();
    assert_eq!(ok(&serde_json::to_string(&d).unwrap()), d);
}

#[test]
fn short_forms() {
    let c = ok(r#"{"target": "pod/web-0", "feature": {"fs": "localwithoverrides",
        "network": {"incoming": "off", "outgoing": false}}}"#);
    assert_eq!(c.target.path.as_deref(), Some("pod/web-0"));
    assert_eq!(c.target.namespace, None);
    assert_eq!(c.feature.fs.mode, FsMode::LocalWithOverrides);
    assert_eq!(c.feature.network.incoming.mode, IncomingMode::Off);
    assert!(!c.feature.network.outgoing.tcp && !c.feature.network.outgoing.udp);
    let c = ok(r#"{"feature": {"fs": "local", "network": {"incoming": "steal", "outgoing": true}}}"#);
    assert_eq!(c.feature.fs.mode, FsMode::Local);
    assert_eq!(c.feature.network.incoming.mode, IncomingMode::Steal);
    assert!(c.feature.network.outgoing.tcp && c.feature.network.outgoing.udp);
    let c = ok(r#"{"target": "targetless", "feature": {"fs": "write"}}"#);
    assert_eq!(c.target.parsed_path().unwrap(), Some(TargetPath::Targetless));
    assert_eq!(c.feature.fs.mode, FsMode::Write);
}

#[test]
fn pattern_lists_take_strings_or_arrays() {
    let c = ok(r#"{"skip_processes": " dlv ; gdb;;", "feature": {"env": {"include": ["A", "B_*"]}}}"#);
    assert_eq!(c.skip_processes.0, ["dlv", "gdb"]);
    assert_eq!(c.feature.env.include.unwrap().0, ["A", "B_*"]);
    let c = ok(r#"{"feature": {"network": {"outgoing": {"filter": {"remote": "udp://:53; db:5432"}}}}}"#);
    assert_eq!(
        c.feature.network.outgoing.filter,
        Some(OutgoingFilter::Remote(vec!["udp://:53".into(), "db:5432".into()]))
    );
}

#[test]
fn skips_matches_executable_file_names() {
    let c = ok(r#"{"skip_processes": ["dlv", "gdb*", "node-?"]}"#);
    assert!(c.skips("dlv"));
    assert!(c.skips("/usr/bin/dlv"));
    assert!(c.skips("gdb-multiarch"));
    assert!(c.skips("node-1"));
    assert!(!c.skips("node-10"));
    assert!(!c.skips("/opt/dlv/app"));
    assert!(!c.skips("xdlv"));
    assert!(!Config::default().skips("dlv"));
}

#[test]
fn unknown_key_names_file_line_column_key_and_suggests() {
    let text = "{\n  \"feature\": {\n    \"fs\": {\n      \"mod\": \"read\"\n    }\n  }\n}";
    let e = err(text);
    assert_eq!(e.to_string(), ".tether/tether.json:4:7: feature.fs.mod: unknown key; did you mean `mode`?");
    assert_eq!(e.path, PathBuf::from(ORIGIN));
    assert_eq!((e.line, e.column), (4, 7));
    assert_eq!(e.key, "feature.fs.mod");
    assert_eq!(e.message, "unknown key");
    assert_eq!(e.hint.as_deref(), Some("did you mean `mode`?"));
    assert_eq!(spanned(text, &e), "\"mod\"");
}

#[test]
fn unknown_key_at_top_level_and_deep() {
    let e = err(r#"{"targt": "pod/x"}"#);
    assert_eq!(e.to_string(), ".tether/tether.json:1:2: targt: unknown key; did you mean `target`?");
    let e = err(r#"{"feature": {"network": {"outgoing": {"tpc": false}}}}"#);
    assert_eq!(e.key, "feature.network.outgoing.tpc");
    assert_eq!(e.hint.as_deref(), Some("did you mean `tcp`?"));
    let e = err(r#"{"agent": {"startup_timout": 3}}"#);
    assert_eq!(e.hint.as_deref(), Some("did you mean `startup_timeout`?"));
    let e = err(r#"{"feature": {"network": {"incoming": {"http_filter": {"methd": "GET"}}}}}"#);
    assert_eq!(e.key, "feature.network.incoming.http_filter.methd");
}

#[test]
fn unknown_key_without_close_match_lists_allowed_keys() {
    let e = err(r#"{"layer": {"zzz": 1}}"#);
    assert_eq!(e.message, "unknown key");
    assert_eq!(e.hint.as_deref(), Some("allowed keys: `dir`, `require`"));
}

#[test]
fn unknown_key_inside_short_form_capable_sections() {
    let text = r#"{"feature": {"fs": {"mode": "read", "readonly": []}}}"#;
    let e = err(text);
    assert_eq!(e.key, "feature.fs.readonly");
    assert_eq!(e.hint.as_deref(), Some("did you mean `read_only`?"));
    assert_eq!(spanned(text, &e), "\"readonly\"");
    let e = err(r#"{"target": {"pth": "pod/x"}}"#);
    assert_eq!(e.key, "target.pth");
    assert_eq!(e.hint.as_deref(), Some("did you mean `path`?"));
}

#[test]
fn unknown_mode_values_suggest_the_closest() {
    let text = r#"{"feature": {"fs": "raed"}}"#;
    let e = err(text);
    assert_eq!(e.to_string(), ".tether/tether.json:1:20: feature.fs: unknown value `raed`; did you mean `read`?");
    assert_eq!(spanned(text, &e), "\"raed\"");
    let text = r#"{"feature": {"fs": {"mode": "wrte"}}}"#;
    let e = err(text);
    assert_eq!(e.key, "feature.fs.mode");
    assert_eq!(e.message, "unknown value `wrte`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `write`?"));
    assert_eq!(spanned(text, &e), "\"wrte\"");
    let e = err(r#"{"feature": {"network": {"incoming": "stael"}}}"#);
    assert_eq!(e.hint.as_deref(), Some("did you mean `steal`?"));
    let e = err(r#"{"feature": {"network": {"incoming": {"mode": "xyz"}}}}"#);
    assert_eq!(e.hint.as_deref(), Some("allowed values: `mirror`, `steal`, `off`"));
}

#[test]
fn invalid_regex_names_the_entry() {
    let text = r#"{"feature": {"fs": {"read_only": ["ok", "(x"]}}}"#;
    let e = err(text);
    assert_eq!(e.to_string(), ".tether/tether.json:1:41: feature.fs.read_only[1]: `(x`: invalid regex: unclosed group");
    assert_eq!(spanned(text, &e), "\"(x\"");
    let e = err(r#"{"feature": {"fs": {"not_found": "ok;(x"}}}"#);
    assert_eq!(e.key, "feature.fs.not_found");
    assert_eq!(e.message, "entry 1 `(x`: invalid regex: unclosed group");
    let e = err(r#"{"feature": {"network": {"incoming": {"http_filter": {"path": "[a"}}}}}"#);
    assert_eq!(e.key, "feature.network.incoming.http_filter.path");
    assert!(e.message.starts_with("`[a`: invalid regex: unclosed character class"), "{}", e.message);
}

#[test]
fn outgoing_filter_errors() {
    let text = r#"{"feature": {"network": {"outgoing": {"filter": {"remote": [":1"], "local": []}}}}}"#;
    let e = err(text);
    assert_eq!(e.key, "feature.network.outgoing.filter");
    assert_eq!(e.message, "give either `remote` or `local`, not both");
    assert!(spanned(text, &e).starts_with("{\"remote\""));
    let e = err(r#"{"feature": {"network": {"outgoing": {"filter": {"remot": []}}}}}"#);
    assert_eq!(e.key, "feature.network.outgoing.filter.remot");
    assert_eq!(e.hint.as_deref(), Some("did you mean `remote`?"));
    let e = err(r#"{"feature": {"network": {"outgoing": {"filter": {}}}}}"#);
    assert_eq!(e.message, "the filter needs `remote` or `local`");
    let text = r#"{"feature": {"network": {"outgoing": {"filter": {"local": ["10.0.0.0/8", "tcp://[::1:80"]}}}}}"#;
    let e = err(text);
    assert_eq!(e.key, "feature.network.outgoing.filter.local[1]");
    assert_eq!(e.message, "`tcp://[::1:80`: missing `]` after an IPv6 address");
    assert_eq!(spanned(text, &e), "\"tcp://[::1:80\"");
}

#[test]
fn port_mapping_must_be_pairs_of_ports() {
    let text = r#"{"feature": {"network": {"incoming": {"port_mapping": [[1, 2], [3]]}}}}"#;
    let e = err(text);
    assert_eq!(e.key, "feature.network.incoming.port_mapping[1]");
    assert_eq!(e.message, "expected a pair [local, remote] of ports 1-65535, got 1 value");
    assert_eq!(spanned(text, &e), "[3]");
    let e = err(r#"{"feature": {"network": {"incoming": {"port_mapping": [[3, 70000]]}}}}"#);
    assert_eq!(e.key, "feature.network.incoming.port_mapping[0]");
    assert_eq!(e.message, "expected a pair [local, remote] of ports 1-65535, got [3, 70000]");
    let e = err(r#"{"feature": {"network": {"incoming": {"port_mapping": [[0, "x", 3]]}}}}"#);
    assert_eq!(e.message, "expected a pair [local, remote] of ports 1-65535, got 3 values");
    let e = err(r#"{"feature": {"network": {"incoming": {"port_mapping": [80]}}}}"#);
    assert_eq!(e.key, "feature.network.incoming.port_mapping[0]");
    assert!(e.message.starts_with("invalid type: integer `80`, expected a pair"), "{}", e.message);
}

#[test]
fn type_errors_say_what_is_expected() {
    let e = err(r#"{"agent": {"port": 70000}}"#);
    assert_eq!(
        e.to_string(),
        ".tether/tether.json:1:20: agent.port: invalid value: integer `70000`, expected a port number (0-65535)"
    );
    let e = err(r#"{"agent": {"ttl": "x"}}"#);
    assert_eq!(e.message, "invalid type: string \"x\", expected a whole number (0 or more)");
    let e = err(r#"{"feature": {"network": {"outgoing": "yes"}}}"#);
    assert_eq!(e.message, "invalid type: string \"yes\", expected `true`, `false` or an object");
    let e = err(r#"{"feature": {"env": {"include": 3}}}"#);
    assert_eq!(e.key, "feature.env.include");
    assert!(e.message.contains("expected a `;`-separated string or an array of strings"));
    let e = err(r#"{"feature": {"network": {"dns": "yes"}}}"#);
    assert_eq!(e.key, "feature.network.dns");
    assert_eq!(e.message, "invalid type: string \"yes\", expected a boolean");
    let e = err(r#"{"feature": {"network": {"incoming": {"ignore_ports": [80, -1]}}}}"#);
    assert_eq!(e.key, "feature.network.incoming.ignore_ports[1]");
}

#[test]
fn invalid_target_paths_are_errors() {
    let text = r#"{"target": "deploymnet/x"}"#;
    let e = err(text);
    assert_eq!(e.key, "target");
    assert_eq!(e.message, "`deploymnet/x`: unknown target kind `deploymnet`; did you mean `deployment`?");
    assert_eq!(spanned(text, &e), "\"deploymnet/x\"");
    let e = err(r#"{"target": {"path": "pid:x"}}"#);
    assert_eq!(e.key, "target.path");
    assert_eq!(e.message, "`pid:x`: `x` is not a process id");
}

#[test]
fn syntax_errors_point_at_the_character() {
    let text = "{\n  \"target\": \"pod/x\",\n}";
    let e = err(text);
    assert_eq!(e.to_string(), ".tether/tether.json:3:1: trailing comma");
    assert_eq!(spanned(text, &e), "}");
    let e = err(r#"{"target": "pod/x"} x"#);
    assert_eq!((e.line, e.column, e.message.as_str()), (1, 21, "trailing characters"));
    let e = err("{\"agent\": {");
    assert!(e.message.starts_with("EOF while parsing"), "{}", e.message);
    assert_eq!(e.hint.as_deref(), Some("a closing `}`, `]` or `\"` is missing"));
    let e = err("{\"agent\" {}}");
    assert_eq!((e.line, e.column, e.message.as_str()), (1, 10, "expected `:`"));
}

#[test]
fn empty_file_says_so() {
    let e = err("  \n");
    assert_eq!(e.message, "the file is empty");
    assert_eq!(e.hint.as_deref(), Some("write `{}` for the defaults"));
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = "{\"feature\": {\"env\": {\"override\": {\"GRÜẞE\": \"ü\"}, \"exclde\": \"x\"}}}";
    let e = err(text);
    assert_eq!(e.key, "feature.env.exclde");
    assert_eq!(spanned(text, &e), "\"exclde\"");
    let byte_col = text.find("\"exclde\"").unwrap() + 1;
    assert_eq!(e.column, text[..byte_col - 1].chars().count() + 1);
    assert!(e.column < byte_col, "{} vs {byte_col}", e.column);
}

#[test]
fn duplicate_keys_point_at_the_second() {
    let text = r#"{"agent": {}, "agent": {}}"#;
    let e = err(text);
    assert_eq!(e.key, "agent");
    assert_eq!(e.message, "duplicate key");
    assert_eq!(spanned(text, &e), "\"agent\"");
    assert_eq!(e.span.clone().unwrap().start, text.rfind("\"agent\"").unwrap());
    assert_eq!(e.column, 15);
    let e = err(r#"{"feature": {"network": {"outgoing": {"filter": {"local": [], "local": []}}}}}"#);
    assert_eq!(e.key, "feature.network.outgoing.filter.local");
    assert_eq!(e.message, "duplicate key");
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = temp_dir("load");
    let path = dir.join("t.json");
    std::fs::write(&path, r#"{"target": "pid:42"}"#).unwrap();
    assert_eq!(load(&path).unwrap().target.parsed_path().unwrap(), Some(TargetPath::Pid(42)));
    std::fs::write(&path, "{\n\"featur\": {}}").unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(e.to_string(), format!("{}:2:1: featur: unknown key; did you mean `feature`?", path.display()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_of_a_missing_file_is_an_error_saying_so() {
    let dir = temp_dir("missing");
    let path = dir.join("nope.json");
    let e = load(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(e.path, path);
    assert_eq!(e.message, "config file not found");
    assert_eq!(e.line, 0);
    assert!(e.to_string().starts_with(&format!("{}: config file not found; ", path.display())));
}

#[test]
fn discover_uses_the_project_file_when_present() {
    let dir = temp_dir("discover");
    let (c, found) = discover(&dir).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(found, None);
    std::fs::create_dir_all(dir.join(".tether")).unwrap();
    std::fs::write(dir.join(DEFAULT_CONFIG_PATH), r#"{"feature": {"fs": "write"}}"#).unwrap();
    let (c, found) = discover(&dir).unwrap();
    assert_eq!(c.feature.fs.mode, FsMode::Write);
    assert_eq!(found, Some(dir.join(".tether/tether.json")));
    std::fs::write(dir.join(DEFAULT_CONFIG_PATH), r#"{"feature": {"fs": "wirte"}}"#).unwrap();
    let e = discover(&dir).unwrap_err();
    assert_eq!(e.path, dir.join(".tether/tether.json"));
    assert_eq!(e.hint.as_deref(), Some("did you mean `write`?"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loaded_config_builds_rules() {
    let c = ok(FULL);
    let ctx = fs::RuleContext { home: Some("/home/u".into()), project_dirs: vec![] };
    let rules = fs::PathRules::new(&c.feature.fs, &ctx).unwrap();
    assert_eq!(rules.decide("/config/app.yaml", fs::Access::Read).route, fs::Route::Remote { writable: false });
    assert_eq!(rules.decide("/srv/app.log", fs::Access::Write).route, fs::Route::Local);
    let out = net::OutgoingRules::new(&c.feature.network.outgoing).unwrap();
    let d = out.decide(net::Proto::Tcp, "10.1.1.1:443".parse().unwrap());
    assert_eq!(d.route, net::NetRoute::Local);
    assert_eq!(out.decide(net::Proto::Udp, "10.1.1.1:53".parse().unwrap()).route, net::NetRoute::Local);
}

#[test]
fn the_agents_cluster_settings_are_checked_while_reading() {
    let c = parse(
        r#"{"agent": {"image_pull_policy": "Never", "image_pull_secrets": ["regcred"],
            "tolerations": [{"key": "dedicated", "operator": "Exists", "tolerationSeconds": 30}],
            "node_selector": {"kubernetes.io/os": "linux"},
            "resources": {"requests": {"cpu": "10m", "memory": "0.5Gi"}}, "service_account": "tether"}}"#,
        Path::new(ORIGIN),
    )
    .unwrap();
    assert_eq!(c.agent.image_pull_policy, Some(crate::model::PullPolicy::Never));
    assert_eq!(c.agent.tolerations[0].toleration_seconds, Some(30));
    assert_eq!(c.agent.resources.requests.len(), 2);
    let e = err(r#"{"agent": {"resources": {"limits": {"memory": "lots"}}}}"#);
    assert!(e.key.starts_with("agent.resources.limits"), "{}", e.key);
    assert!(e.message.contains("a Kubernetes quantity"), "{}", e.message);
    let e = err(r#"{"agent": {"image_pull_secrets": ["Reg_Cred"]}}"#);
    assert!(e.message.contains("a Kubernetes name"), "{}", e.message);
    let e = err(r#"{"agent": {"image_pull_policy": "Sometimes"}}"#);
    assert_eq!(e.message, "unknown value `Sometimes`");
    let e = err(r#"{"agent": {"tolerations": [{"key": "a", "operater": "Exists"}]}}"#);
    assert_eq!(e.key, "agent.tolerations[0].operater");
    assert_eq!(e.message, "unknown key");
    assert!(e.hint.as_deref().unwrap_or("").contains("operator"), "{:?}", e.hint);
    let e = err(r#"{"agent": {"labels": {"bad key!": "x"}}}"#);
    assert!(e.message.contains("a Kubernetes key"), "{}", e.message);
}

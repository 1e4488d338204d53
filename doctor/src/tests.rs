//! `check_launch` and `no_attach_diagnostic` end to end, over an in-memory machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tether_config::{FsMode, Patterns};

use crate::elf::fixture as elf;
use crate::macho::fixture as macho;
use crate::*;

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A Linux machine with a C compiler, `node` and `python3`.
fn linux_host() -> MemHost {
    MemHost::new()
        .exe("/usr/bin/gcc", elf::dynamic())
        .exe("/usr/bin/node", elf::dynamic())
        .exe("/usr/bin/python3", elf::dynamic())
        .exe("/bin/sh", elf::dynamic())
        .exe("/usr/bin/env", elf::dynamic())
        .dir("/ws", 0o755)
}

fn facts(os: Os, host: MemHost) -> Facts {
    let mut f = Facts::new(os, Arc::new(host));
    f.workspace_folder = "/ws".into();
    f.home = Some(if os == Os::Macos { "/Users/u" } else { "/home/u" }.into());
    f.layer_dir = "/home/u/.local/share/tether/layer".into();
    f.daemon_env.insert("PATH".into(), PATH.into());
    f
}

fn linux(host: MemHost) -> Facts {
    facts(Os::Linux, host)
}

fn ids(p: &Patched) -> Vec<&'static str> {
    p.diagnostics.iter().map(|d| d.id).collect()
}

fn find<'a>(p: &'a Patched, id: &str) -> &'a Diagnostic {
    p.diagnostics.iter().find(|d| d.id == id).unwrap_or_else(|| panic!("no {id} in {:#?}", p.diagnostics))
}

fn has(p: &Patched, id: &str) -> bool {
    p.diagnostics.iter().any(|d| d.id == id)
}

// ---------------------------------------------------------------- general validation

#[test]
fn non_objects_are_invalid_not_a_panic() {
    let f = linux(linux_host());
    for v in [json!(null), json!(1), json!("x"), json!([1, 2]), json!(true)] {
        let p = check_launch(&v, &f);
        assert_eq!(ids(&p), ["launch-invalid"], "{v}");
        assert!(has_errors(&p.diagnostics));
        assert_eq!(p.launch, v, "unchanged");
    }
}

#[test]
fn junk_field_values_never_panic() {
    let f = linux(linux_host());
    let junk = [
        json!(null),
        json!(1),
        json!(-1.5),
        json!("x"),
        json!([]),
        json!([1, "a", null]),
        json!({"a": [1]}),
        json!(true),
    ];
    let fields = [
        "type",
        "request",
        "mode",
        "program",
        "args",
        "env",
        "cwd",
        "buildFlags",
        "runtimeExecutable",
        "runtimeArgs",
        "python",
        "command",
    ];
    for field in fields {
        for v in &junk {
            for ty in ["go", "node", "python", "cppdbg", "node-terminal", "x"] {
                let mut launch = json!({"type": ty, "request": "launch", "program": "/ws/main.go"});
                launch[field] = v.clone();
                let p = check_launch(&launch, &f);
                // Something is said about every launch (at least where the layer lives).
                assert!(!p.diagnostics.is_empty());
                let _ = no_attach_diagnostic(&launch, &f, Duration::from_secs(5));
            }
        }
    }
}

#[test]
fn attach_requests_are_refused() {
    let p = check_launch(&json!({"type": "go", "request": "attach", "processId": 12}), &linux(linux_host()));
    let d = find(&p, "launch-attach");
    assert_eq!(d.severity, Severity::Error);
    assert!(d.message.contains("cannot join one that already runs"));
    assert!(!has(&p, "go-linkmode"), "nothing else is checked");
}

#[test]
fn missing_type() {
    let p = check_launch(&json!({"request": "launch", "program": "/x"}), &linux(linux_host()));
    assert_eq!(find(&p, "launch-no-type").severity, Severity::Error);
    assert!(!has(&p, "program-not-found"), "an unknown debugger's program is not judged");
    // A `type` of the wrong kind is invalid, not missing.
    let p = check_launch(&json!({"type": ["go"], "program": "/x"}), &linux(linux_host()));
    assert!(has(&p, "launch-invalid"));
    assert!(!has(&p, "launch-no-type"));
}

#[test]
fn missing_and_nonexistent_programs() {
    let f = linux(linux_host());
    let p = check_launch(&json!({"type": "cppdbg", "request": "launch"}), &f);
    assert_eq!(find(&p, "program-missing").severity, Severity::Error);

    let p =
        check_launch(&json!({"type": "cppdbg", "request": "launch", "program": "${workspaceFolder}/build/app"}), &f);
    let d = find(&p, "program-not-found");
    assert_eq!(d.severity, Severity::Error);
    assert!(d.message.contains("/ws/build/app"), "{}", d.message);

    let p = check_launch(&json!({"type": "node", "request": "launch", "program": "src/index.js"}), &f);
    assert!(find(&p, "program-not-found").message.contains("/ws/src/index.js"));

    // A variable the daemon cannot expand is not guessed at.
    let p = check_launch(&json!({"type": "cppdbg", "request": "launch", "program": "${command:pickProgram}"}), &f);
    assert!(!has(&p, "program-not-found"));

    // A runtime looked up on PATH: only a warning (the debugger's PATH may differ).
    let p = check_launch(&json!({"type": "node", "request": "launch", "runtimeExecutable": "deno"}), &f);
    assert_eq!(find(&p, "program-not-found").severity, Severity::Warning);

    // The lldb debugger can build with cargo instead of naming a program.
    let p = check_launch(&json!({"type": "lldb", "request": "launch", "cargo": {"args": ["build"]}}), &f);
    assert!(!has(&p, "program-missing"));
}

#[test]
fn diagnostics_serialize_as_the_protocol_says() {
    let p = check_launch(&json!({"type": "go", "request": "launch", "program": "/ws"}), &linux(linux_host()));
    let v = serde_json::to_value(&p.diagnostics).unwrap();
    let go = v.as_array().unwrap().iter().find(|d| d["id"] == "go-linkmode").unwrap();
    assert_eq!(go["severity"], "info");
    assert_eq!(go["fix"]["applied"], true);
    assert!(go["fix"].get("edit").is_none(), "no null edit on the wire");
    let layer = v.as_array().unwrap().iter().find(|d| d["id"] == "layer-location").unwrap();
    assert!(layer.get("fix").is_none(), "no null fix on the wire");
    assert_eq!(serde_json::to_value(Severity::Warning).unwrap(), "warning");
    assert_eq!(serde_json::to_value(Severity::Error).unwrap(), "error");
}

#[test]
fn errors_come_first() {
    let mut f = linux(MemHost::new().dir("/ws", 0o755));
    f.config.feature.fs.mode = FsMode::Local;
    let p = check_launch(&json!({"type": "go", "request": "launch", "program": "/ws"}), &f);
    let sev: Vec<Severity> = p.diagnostics.iter().map(|d| d.severity).collect();
    let mut sorted = sev.clone();
    sorted.sort();
    assert_eq!(sev, sorted);
    assert_eq!(sev[0], Severity::Error);
    assert_eq!(*sev.last().unwrap(), Severity::Info);
}

#[test]
fn has_errors_only_for_errors() {
    let w = Diagnostic::new("x", Severity::Warning, "w");
    let i = Diagnostic::new("y", Severity::Info, "i");
    assert!(!has_errors(&[w.clone(), i.clone()]));
    assert!(has_errors(&[w, Diagnostic::new("z", Severity::Error, "e"), i]));
    assert!(!has_errors(&[]));
}

// ---------------------------------------------------------------- Go

fn go_launch(extra: Value) -> Value {
    let mut l = json!({"type": "go", "request": "launch", "program": "${workspaceFolder}"});
    for (k, v) in extra.as_object().unwrap() {
        l[k] = v.clone();
    }
    l
}

#[test]
fn go_build_flags_are_merged_into_the_patched_launch() {
    let f = linux(linux_host());
    for mode in [None, Some("debug"), Some("auto"), Some("test")] {
        let mut l = go_launch(json!({"buildFlags": "-tags x -ldflags='-s -w'"}));
        if let Some(m) = mode {
            l["mode"] = json!(m);
        }
        let p = check_launch(&l, &f);
        assert_eq!(p.launch["buildFlags"], "-tags x -ldflags='-s -w -linkmode external'", "{mode:?}");
        let d = find(&p, "go-linkmode");
        assert_eq!(d.severity, Severity::Info);
        assert!(d.fix.as_ref().unwrap().applied);
        assert!(!has_errors(&p.diagnostics), "{:#?}", p.diagnostics);
        // Everything else is as it was.
        let mut back = p.launch.clone();
        back["buildFlags"] = l["buildFlags"].clone();
        assert_eq!(back, l);
    }
    let p = check_launch(&go_launch(json!({"buildFlags": ["-ldflags", "-s -w"]})), &f);
    assert_eq!(p.launch["buildFlags"], json!(["-ldflags", "-s -w -linkmode external"]));
    let p = check_launch(&go_launch(json!({})), &f);
    assert_eq!(p.launch["buildFlags"], "-ldflags='-linkmode external'");
}

#[test]
fn go_already_external_and_conflicts() {
    let f = linux(linux_host());
    let l = go_launch(json!({"buildFlags": "-ldflags=-linkmode=external"}));
    let p = check_launch(&l, &f);
    assert_eq!(p.launch, l);
    assert!(find(&p, "go-linkmode").fix.is_none());

    let l = go_launch(json!({"buildFlags": "-ldflags '-linkmode internal'"}));
    let p = check_launch(&l, &f);
    assert_eq!(p.launch, l, "nothing changed");
    let d = find(&p, "go-linkmode-conflict");
    assert_eq!(d.severity, Severity::Error);
    assert!(d.message.contains("-linkmode internal"));

    let l = go_launch(json!({"buildFlags": 7}));
    let p = check_launch(&l, &f);
    assert_eq!(p.launch, l);
    assert_eq!(find(&p, "go-build-flags-invalid").severity, Severity::Error);
}

#[test]
fn go_checks_only_on_linux_and_only_when_building() {
    let mac = facts(Os::Macos, linux_host());
    let p = check_launch(&go_launch(json!({})), &mac);
    assert!(!has(&p, "go-linkmode"));
    assert!(p.launch.get("buildFlags").is_none());

    let f = linux(linux_host().exe("/ws/bin/app", elf::dynamic()));
    let p = check_launch(&go_launch(json!({"mode": "exec", "program": "/ws/bin/app"})), &f);
    assert!(!has(&p, "go-linkmode"));
    assert!(p.launch.get("buildFlags").is_none());
}

#[test]
fn go_cgo_disabled_by_each_source() {
    let base = linux_host();
    // The launch's env.
    let p = check_launch(&go_launch(json!({"env": {"CGO_ENABLED": "0"}})), &linux(base.clone()));
    let d = find(&p, "go-cgo-disabled");
    assert_eq!(d.severity, Severity::Error);
    assert!(d.message.contains("the launch's env"));
    // The daemon's environment.
    let mut f = linux(base.clone());
    f.daemon_env.insert("CGO_ENABLED".into(), "0".into());
    let p = check_launch(&go_launch(json!({})), &f);
    assert!(find(&p, "go-cgo-disabled").message.contains("the daemon's environment"));
    // The launch overrides the daemon.
    let p = check_launch(&go_launch(json!({"env": {"CGO_ENABLED": "1"}})), &f);
    assert!(!has(&p, "go-cgo-disabled"));
    // The target's environment (common in Go images), unless the config excludes it.
    let mut f = linux(base);
    f.target_env.insert("CGO_ENABLED".into(), "0".into());
    let p = check_launch(&go_launch(json!({})), &f);
    let d = find(&p, "go-cgo-disabled");
    assert_eq!(d.fix.as_ref().unwrap().edit, Some(json!({"feature.env.override": {"CGO_ENABLED": "1"}})));
    f.config.feature.env.exclude = Some(Patterns(vec!["CGO_*".into()]));
    assert!(!has(&check_launch(&go_launch(json!({})), &f), "go-cgo-disabled"));
}

#[test]
fn go_needs_a_c_compiler() {
    let no_cc = MemHost::new().dir("/ws", 0o755);
    let p = check_launch(&go_launch(json!({})), &linux(no_cc.clone()));
    let d = find(&p, "go-no-c-compiler");
    assert_eq!(d.severity, Severity::Error);
    assert!(d.message.contains("gcc"));
    // cc or clang do.
    for cc in ["/usr/bin/cc", "/usr/local/bin/clang"] {
        let p = check_launch(&go_launch(json!({})), &linux(no_cc.clone().exe(cc, "x")));
        assert!(!has(&p, "go-no-c-compiler"), "{cc}");
    }
    // CC names one: its first word must exist.
    let with_gcc = linux_host();
    let p = check_launch(&go_launch(json!({"env": {"CC": "musl-gcc -static-pie"}})), &linux(with_gcc.clone()));
    assert!(find(&p, "go-no-c-compiler").message.contains("musl-gcc"));
    let p = check_launch(&go_launch(json!({"env": {"CC": "/usr/bin/gcc -m64"}})), &linux(with_gcc.clone()));
    assert!(!has(&p, "go-no-c-compiler"));
    let mut f = linux(with_gcc);
    f.daemon_env.insert("CC".into(), "/opt/cross/bin/gcc".into());
    assert!(
        find(&check_launch(&go_launch(json!({})), &f), "go-no-c-compiler").message.contains("the daemon's environment")
    );
    // With linkmode internal, cgo does not matter: the conflict is the one error.
    let p = check_launch(&go_launch(json!({"buildFlags": "-ldflags=-linkmode=internal"})), &linux(no_cc));
    assert!(!has(&p, "go-no-c-compiler"));
}

#[test]
fn go_flags_from_goflags_are_kept() {
    let mut f = linux(linux_host());
    f.daemon_env.insert("GOFLAGS".into(), "-ldflags=-X=main.v=2".into());
    let p = check_launch(&go_launch(json!({})), &f);
    assert_eq!(p.launch["buildFlags"], "-ldflags='-X=main.v=2 -linkmode external'");
}

// ---------------------------------------------------------------- static binaries

#[test]
fn static_binaries_are_errors_with_the_fix_for_their_kind() {
    let host = linux_host()
        .exe("/ws/c-static", elf::static_c())
        .exe("/ws/go-static", elf::elf(64, false, None, elf::GoMark::BuildInfoSection))
        .exe("/ws/go-static-note", elf::elf(32, true, None, elf::GoMark::BuildIdNote))
        .exe("/ws/dynamic", elf::dynamic());
    let f = linux(host);
    let run = |ty: &str, program: &str, mode: Option<&str>| {
        let mut l = json!({"type": ty, "request": "launch", "program": program});
        if let Some(m) = mode {
            l["mode"] = json!(m);
        }
        check_launch(&l, &f)
    };
    let p = run("cppdbg", "/ws/c-static", None);
    let d = find(&p, "static-binary");
    assert_eq!(d.severity, Severity::Error);
    assert!(!d.message.contains("Go"));
    assert!(d.fix.as_ref().unwrap().description.contains("tether exec"));

    for prog in ["/ws/go-static", "/ws/go-static-note"] {
        let p = run("cppdbg", prog, None);
        let d = find(&p, "static-binary");
        assert!(d.message.contains("Go binary"), "{prog}");
        assert!(d.fix.as_ref().unwrap().description.contains("-linkmode external"));
        assert!(d.fix.as_ref().unwrap().description.contains("import \"C\""));
    }

    // Go's exec mode checks the prebuilt binary and suggests letting tether build it.
    let p = run("go", "/ws/go-static", Some("exec"));
    assert!(find(&p, "static-binary").fix.as_ref().unwrap().description.contains("mode: debug"));

    assert!(!has(&run("cppdbg", "/ws/dynamic", None), "static-binary"));
    // macOS: ELF is irrelevant.
    let mac = facts(Os::Macos, linux_host().exe("/ws/c-static", elf::static_c()));
    assert!(!has(&check_launch(&json!({"type": "cppdbg", "program": "/ws/c-static"}), &mac), "static-binary"));
}

#[test]
fn scripts_are_judged_by_their_interpreter() {
    let host = linux_host()
        .exe("/opt/busybox/sh", elf::static_c())
        .exe("/ws/run.sh", "#!/opt/busybox/sh\necho hi\n")
        .exe("/ws/ok.sh", "#!/bin/sh -e\necho hi\n")
        .exe("/ws/env.js", "#!/usr/bin/env node\n")
        .exe("/ws/gone.sh", "#!/opt/nothing/bash\n")
        .exe("/ws/gone-env.sh", "#!/usr/bin/env zsh\n");
    let f = linux(host);
    let run = |program: &str| check_launch(&json!({"type": "cppdbg", "request": "launch", "program": program}), &f);
    let d = find(&run("/ws/run.sh"), "static-binary").clone();
    assert!(d.message.contains("interpreter of /ws/run.sh"), "{}", d.message);
    assert!(!has(&run("/ws/ok.sh"), "static-binary"));
    assert!(!has(&run("/ws/env.js"), "static-binary"));
    assert!(find(&run("/ws/gone.sh"), "shebang-interpreter-missing").message.contains("/opt/nothing/bash"));
    assert!(find(&run("/ws/gone-env.sh"), "shebang-interpreter-missing").message.contains("zsh"));
}

#[test]
fn node_and_python_runtimes_are_checked() {
    let host = MemHost::new()
        .exe("/usr/bin/node", elf::static_c())
        .exe("/usr/bin/python3", elf::dynamic())
        .exe("/ws/a.js", "x");
    let f = linux(host);
    let p = check_launch(&json!({"type": "node", "request": "launch", "program": "${workspaceFolder}/a.js"}), &f);
    assert!(find(&p, "static-binary").message.contains("/usr/bin/node"));
    let p = check_launch(&json!({"type": "python", "request": "launch", "program": "/ws/a.js"}), &f);
    assert!(!has(&p, "static-binary"));
}

// ---------------------------------------------------------------- runners

#[test]
fn turbo_gets_the_exact_pass_through_entry() {
    let f = linux(linux_host().exe("/ws/node_modules/.bin/turbo", "x"));
    let p = check_launch(
        &json!({"type": "node", "request": "launch", "runtimeExecutable": "npx", "runtimeArgs": ["turbo", "run", "dev"]}),
        &f,
    );
    let d = find(&p, "runner-strips-env");
    assert_eq!(d.severity, Severity::Warning);
    let fix = d.fix.as_ref().unwrap();
    assert_eq!(
        fix.edit,
        Some(
            json!({"turbo.json": {"globalPassThroughEnv": ["LD_PRELOAD", "TETHER_SOCKET", "TETHER_SESSION", "TETHER_SESSION_TOKEN", "TETHER_REQUIRE"]}})
        )
    );
    assert!(
        fix.description.contains(r#""globalPassThroughEnv": ["LD_PRELOAD","TETHER_SOCKET""#),
        "{}",
        fix.description
    );

    let mac = facts(Os::Macos, linux_host());
    let p = check_launch(&json!({"type": "node-terminal", "request": "launch", "command": "pnpm turbo dev"}), &mac);
    let edit = find(&p, "runner-strips-env").fix.as_ref().unwrap().edit.clone().unwrap();
    assert_eq!(edit["turbo.json"]["globalPassThroughEnv"][0], "DYLD_INSERT_LIBRARIES");
}

#[test]
fn turbo_through_a_package_script_and_an_existing_turbo_json() {
    let pkg = r#"{"scripts": {"dev": "turbo run dev"}}"#;
    let launch =
        json!({"type": "node", "request": "launch", "runtimeExecutable": "npm", "runtimeArgs": ["run", "dev"]});
    let host = linux_host().exe("/usr/bin/npm", "#!/usr/bin/env node\n").file("/ws/package.json", pkg, 0o644);

    let p = check_launch(&launch, &linux(host.clone()));
    assert!(has(&p, "runner-strips-env"));

    // Some already listed: the entry completes the user's list.
    let partial = r#"{"globalPassThroughEnv": ["AWS_*", "LD_PRELOAD"]}"#;
    let p = check_launch(&launch, &linux(host.clone().file("/ws/turbo.json", partial, 0o644)));
    let edit = find(&p, "runner-strips-env").fix.as_ref().unwrap().edit.clone().unwrap();
    assert_eq!(
        edit["turbo.json"]["globalPassThroughEnv"],
        json!(["AWS_*", "LD_PRELOAD", "TETHER_SOCKET", "TETHER_SESSION", "TETHER_SESSION_TOKEN", "TETHER_REQUIRE"])
    );

    // All there (a wildcard counts), or loose mode: nothing to say.
    let done = r#"{"globalPassThroughEnv": ["LD_PRELOAD", "TETHER_*"]}"#;
    assert!(!has(
        &check_launch(&launch, &linux(host.clone().file("/ws/turbo.json", done, 0o644))),
        "runner-strips-env"
    ));
    let loose = r#"{"envMode": "loose"}"#;
    assert!(!has(&check_launch(&launch, &linux(host.file("/ws/turbo.json", loose, 0o644))), "runner-strips-env"));
}

#[test]
fn env_dash_i_is_detected() {
    let f = linux(linux_host().exe("/ws/app", elf::dynamic()));
    let p = check_launch(
        &json!({"type": "cppdbg", "request": "launch", "program": "/usr/bin/env", "args": ["-i", "/ws/app"]}),
        &f,
    );
    let d = find(&p, "env-cleared");
    assert!(d.fix.as_ref().unwrap().description.contains("LD_PRELOAD=\"$LD_PRELOAD\""));
    let p = check_launch(
        &json!({"type": "cppdbg", "request": "launch", "program": "/usr/bin/env", "args": ["/ws/app"]}),
        &f,
    );
    assert!(!has(&p, "env-cleared"));
}

// ---------------------------------------------------------------- framework variables

fn node_dev(args: &[&str]) -> Value {
    json!({"type": "node", "request": "launch", "runtimeExecutable": "npx", "runtimeArgs": args})
}

#[test]
fn node_env_production_with_a_dev_server() {
    let mut f = linux(linux_host());
    f.target_env.insert("NODE_ENV".into(), "production".into());
    let p = check_launch(&node_dev(&["next", "dev"]), &f);
    let d = find(&p, "framework-node-env");
    assert_eq!(d.severity, Severity::Warning);
    assert!(d.message.contains("NODE_ENV=production") && d.message.contains("next dev"));
    assert_eq!(d.fix.as_ref().unwrap().edit, Some(json!({"feature.env.override": {"NODE_ENV": "development"}})));

    f.target_env.insert("NODE_ENV".into(), "Staging".into());
    assert!(has(&check_launch(&node_dev(&["vite"]), &f), "framework-node-env"));
    // Not a dev server; or development already.
    assert!(!has(&check_launch(&node_dev(&["next", "start"]), &f), "framework-node-env"));
    f.target_env.insert("NODE_ENV".into(), "development".into());
    assert!(!has(&check_launch(&node_dev(&["vite"]), &f), "framework-node-env"));
}

#[test]
fn node_env_already_handled_by_the_user() {
    let mut f = linux(linux_host());
    f.target_env.insert("NODE_ENV".into(), "production".into());
    let launch = node_dev(&["nx", "serve", "web"]);
    assert!(has(&check_launch(&launch, &f), "framework-node-env"));

    let mut over = f.clone();
    over.config.feature.env.r#override.insert("NODE_ENV".into(), "production".into());
    assert!(!has(&check_launch(&launch, &over), "framework-node-env"), "an explicit override is a choice");

    let mut excl = f.clone();
    excl.config.feature.env.exclude = Some(Patterns(vec!["NODE_*".into()]));
    assert!(!has(&check_launch(&launch, &excl), "framework-node-env"));

    let mut own = launch.clone();
    own["env"] = json!({"NODE_ENV": "development"});
    assert!(!has(&check_launch(&own, &f), "framework-node-env"));
}

#[test]
fn imported_paths_that_do_not_exist_here() {
    let mut f = linux(linux_host().dir("/home/u/java", 0o755));
    for (k, v) in [
        ("NX_NEXT_DIR", "/app"),
        ("CONFIG_FILE", "/app/config/prod.yml"),
        ("JAVA_HOME", "/home/u/java"),
        ("NODE_PATH", "/app/node_modules:/usr/lib/node"),
        ("DATABASE_URL", "postgres://db/app"),
        ("DATA_DIR", "relative/dir"),
        ("KEPT_ROOT", "/srv/data"),
    ] {
        f.target_env.insert(k.into(), v.into());
    }
    f.config.feature.env.r#override.insert("KEPT_ROOT".into(), "/srv/data".into());
    let p = check_launch(&json!({"type": "node", "request": "launch", "runtimeExecutable": "/usr/bin/node"}), &f);
    let d = find(&p, "env-path-missing");
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        d.fix.as_ref().unwrap().edit,
        Some(json!({"feature.env.exclude": ["CONFIG_FILE", "NODE_PATH", "NX_NEXT_DIR"]}))
    );
    assert!(d.message.contains("NX_NEXT_DIR=/app"));
    assert!(!d.message.contains("JAVA_HOME"), "exists locally");
}

#[test]
fn fs_local_breaks_cluster_dns() {
    let mut f = linux(linux_host());
    f.config.feature.fs.mode = FsMode::Local;
    let p = check_launch(&json!({"type": "node", "request": "launch"}), &f);
    assert_eq!(find(&p, "fs-local-dns").severity, Severity::Warning);
}

#[test]
fn layer_location_is_always_named() {
    let p = check_launch(&json!({"type": "python", "request": "launch"}), &linux(linux_host()));
    assert!(find(&p, "layer-location").message.contains("/home/u/.local/share/tether/layer"));
}

// ---------------------------------------------------------------- no attach

#[test]
fn no_attach_lists_causes_in_order_and_never_none() {
    let f = linux(linux_host());
    let d = no_attach_diagnostic(&json!({"type": "python", "request": "launch"}), &f, Duration::from_secs(5));
    assert_eq!(d.id, "no-attach");
    assert_eq!(d.severity, Severity::Error);
    assert!(d.message.contains("within 5s"));
    assert!(d.message.contains("(1) the program had not started"), "{}", d.message);
    assert!(!d.message.contains('\n'));

    // Static binary, then stripped environment, then env -i.
    let pkg = r#"{"scripts": {"dev": "turbo run dev"}}"#;
    let host = linux_host().exe("/ws/static", elf::static_c()).file("/ws/package.json", pkg, 0o644);
    let f = linux(host);
    let launch = json!({"type": "cppdbg", "request": "launch", "program": "/ws/static", "args": ["npm", "run", "dev", "env", "-i", "x"]});
    let d = no_attach_diagnostic(&launch, &f, Duration::from_secs(3));
    let m = &d.message;
    let (a, b, c) = (m.find("statically linked").unwrap(), m.find("turbo").unwrap(), m.find("env -i").unwrap());
    assert!(a < b && b < c, "{m}");
    assert!(m.starts_with("no process of this launch"));
    assert!(d.fix.unwrap().description.contains("link it dynamically"));
}

#[test]
fn no_attach_names_the_skip_list() {
    let mut f = linux(linux_host().exe("/usr/bin/myapp", elf::dynamic()).exe("/usr/bin/gdb", elf::dynamic()));
    f.config.skip_processes = Patterns(vec!["my*".into()]);
    let d = no_attach_diagnostic(
        &json!({"type": "cppdbg", "request": "launch", "program": "/usr/bin/myapp"}),
        &f,
        Duration::from_secs(5),
    );
    assert!(d.message.contains("(1) `myapp` matches `skip_processes`"), "{}", d.message);
    let d = no_attach_diagnostic(
        &json!({"type": "cppdbg", "request": "launch", "program": "/usr/bin/gdb"}),
        &f,
        Duration::from_secs(5),
    );
    assert!(d.message.contains("`gdb` is a debugger"), "{}", d.message);
}

#[test]
fn no_attach_for_go_names_the_linking_problem() {
    let f = linux(MemHost::new().dir("/ws", 0o755));
    let d = no_attach_diagnostic(&go_launch(json!({})), &f, Duration::from_secs(5));
    assert!(d.message.contains("(1) no C compiler"), "{}", d.message);
    // The patched launch of a healthy machine has nothing specific to blame.
    let f = linux(linux_host());
    let patched = check_launch(&go_launch(json!({})), &f).launch;
    let d = no_attach_diagnostic(&patched, &f, Duration::from_secs(5));
    assert!(d.message.contains("(1) the program had not started"), "{}", d.message);
}

#[test]
fn no_attach_mentions_sip_on_macos() {
    let f = facts(
        Os::Macos,
        MemHost::new().exe("/usr/bin/python3", macho::thin(macho::ARM64, Some(crate::macho::CS_RESTRICT), None)),
    );
    let d = no_attach_diagnostic(&json!({"type": "python", "request": "launch"}), &f, Duration::from_secs(5));
    assert!(d.message.contains("(1) /usr/bin/python3 is protected by macOS SIP"), "{}", d.message);
}

#[test]
fn target_env_reaches_the_checks_through_the_config_rules() {
    // `include` limits what is taken: a NODE_ENV not included is not the program's.
    let mut f = linux(linux_host());
    f.target_env = BTreeMap::from([("NODE_ENV".to_owned(), "production".to_owned())]);
    f.config.feature.env.include = Some(Patterns(vec!["DATABASE_*".into()]));
    assert!(!has(&check_launch(&node_dev(&["vite"]), &f), "framework-node-env"));
}

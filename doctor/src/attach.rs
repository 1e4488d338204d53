//! The last line of defence: a launch whose program never attached.
//!
//! When no process of a launch has joined its session a few seconds after the debugger started
//! it, the program is running without tether. The daemon asks [`diagnose`] for the likely
//! causes for that particular launch, most likely first: a static binary, an environment
//! stripped by a task runner, macOS SIP, the skip list, `env -i`; then the causes that hold
//! for any launch. The list is never empty.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::facts::Facts;
use crate::launch::{Cx, Launch};
use crate::{Diagnostic, Fix, Severity, check_launch};

/// Ids whose diagnostics mean "the program cannot load the layer because of how it is linked".
const STATIC_IDS: [&str; 5] =
    ["static-binary", "go-linkmode-conflict", "go-build-flags-invalid", "go-cgo-disabled", "go-no-c-compiler"];

struct Cause {
    text: String,
    fix: Option<String>,
}

pub fn diagnose(launch: &Value, facts: &Facts, waited: Duration) -> Diagnostic {
    let report = check_launch(launch, facts);
    let found = |ids: &[&str]| report.diagnostics.iter().find(|d| ids.contains(&d.id));
    let cause_of = |d: &Diagnostic| Cause {
        text: d.message.clone(),
        fix: d.fix.as_ref().filter(|f| !f.applied).map(|f| f.description.clone()),
    };
    let mut causes: Vec<Cause> = Vec::new();

    // In order: static binary, stripped environment, SIP, skip list, env -i.
    if let Some(d) = found(&STATIC_IDS) {
        causes.push(cause_of(d));
    }
    if let Some(d) = found(&["runner-strips-env"]) {
        causes.push(cause_of(d));
    }
    if let Some(d) = found(&["macos-sip"]) {
        let mut c = cause_of(d);
        if d.fix.as_ref().is_some_and(|f| f.applied) {
            c.text = format!("{} (tether planned an unprotected copy; check that the launch used it)", d.message);
        }
        causes.push(c);
    }
    if let Some(obj) = launch.as_object() {
        let mut ignored = Vec::new();
        let l = Launch::read(obj, &mut ignored);
        let cx = Cx::new(facts, &l);
        let mut names: Vec<String> = Vec::new();
        if let Some(exec) = l.exec(&cx) {
            names.push(exec.written.clone());
        }
        if let Some(p) = l.program {
            names.push(p.to_owned());
        }
        for name in names {
            let base = Path::new(&name).file_name().map_or(name.clone(), |n| n.to_string_lossy().into_owned());
            if facts.config.skips(&base) {
                causes.push(Cause {
                    text: format!("`{base}` matches `skip_processes` in the config, so tether never intercepts it"),
                    fix: Some(format!("remove the pattern that matches `{base}` from `skip_processes`")),
                });
                break;
            }
            if tether_config::model::skipped_built_in(&base) {
                causes.push(Cause {
                    text: format!("`{base}` is a debugger or build tool, which tether never intercepts"),
                    fix: Some("launch the program itself, not the debugger".into()),
                });
                break;
            }
        }
    }
    if let Some(d) = found(&["env-cleared"]) {
        causes.push(cause_of(d));
    }

    let secs = waited.as_secs_f64();
    causes.push(Cause {
        text: format!(
            "the program had not started within {secs:.0}s (a build or a slow start-up may still be running)"
        ),
        fix: None,
    });
    causes.push(if facts.config.layer.require {
        Cause {
            text: "the program stopped at start-up because the layer could not join the session (`layer.require` is on): its first line of output says why".into(),
            fix: None,
        }
    } else {
        Cause {
            text: "the layer failed to load and `layer.require` is false, so the program went on without tether: its first lines of output say why".into(),
            fix: Some("set `layer.require: true` to make such a failure stop the program with the reason".into()),
        }
    });

    let list = causes.iter().enumerate().map(|(i, c)| format!("({}) {}", i + 1, c.text)).collect::<Vec<_>>().join("; ");
    let fix = causes.iter().find_map(|c| c.fix.clone()).map(|f| Fix::manual(f, None));
    let mut d = Diagnostic::new(
        "no-attach",
        Severity::Error,
        format!(
            "no process of this launch joined its tether session within {secs:.0}s, so it is not running with the target; likely causes, most likely first: {list}"
        ),
    );
    d.fix = fix;
    d
}

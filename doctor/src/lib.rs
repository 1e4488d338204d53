//! The launch doctor: checks an editor's launch configuration before tether starts it, fixes
//! what it can, and explains the rest.
//!
//! Tether's promise is that nothing fails silently: a program that runs but is not intercepted
//! ("it seems to have no effect") is the worst outcome. Every known cause of it is a check
//! here, with a stable id (documented in `docs/doctor.md`), a severity (`error` stops the
//! launch), a one-line message, and a [`Fix`] that tether either applied or spells out.
//!
//! The library is pure and synchronous: the daemon gathers the machine's [`Facts`] (through a
//! [`Host`], which tests replace with a [`MemHost`]) and calls:
//! - [`check_launch`] for `tether/prepareLaunch`, `tether/doctor` and `tether doctor`;
//! - [`port_diagnostic`] while a session runs, when the program listens on a port;
//! - [`no_attach_diagnostic`] when a launched program has not attached in time;
//! - [`sip::apply_sip_plan`] to make the macOS copies [`check_launch`] planned.
//!
//! Modules: [`go`] (build flags) with [`shellwords`]; [`elf`] and `program` (static binaries,
//! shebangs); [`macho`] and [`sip`] (macOS); `runners` (environment-stripping task runners);
//! `framework` (framework variables); `dns`; [`ports`]; `attach`; `layer`.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

mod attach;
pub mod cluster;
mod dns;
pub mod elf;
mod facts;
mod framework;
pub mod go;
mod launch;
mod layer;
pub mod macho;
pub mod ports;
mod program;
mod runners;
pub mod shellwords;
pub mod sip;

pub use facts::{Facts, Host, HostFile, MemHost, Meta, Offset, Os, ReadAt, SystemHost};
/// The build-flag helpers under the name the CLI and editor cores know them by.
pub use go as go_build_flags;
pub use ports::port_diagnostic;
pub use sip::{SipCopy, SipTools, apply_sip_plan};

use launch::{Cx, Launch};

/// How bad a diagnostic is: `error` stops the launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// What to do about a diagnostic.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fix {
    /// Tether made the change itself; `description` says what it changed.
    pub applied: bool,
    /// What changed, or what the user should do.
    pub description: String,
    /// A machine-usable suggestion: `{"feature.env.override": {"NODE_ENV": "development"}}`.
    /// Keys are dotted config keys (objects merge, lists append), `launch.FIELD` for the
    /// launch configuration, or a file name (`turbo.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit: Option<Value>,
}

impl Fix {
    pub fn applied(description: impl Into<String>) -> Fix {
        Fix { applied: true, description: description.into(), edit: None }
    }

    pub fn manual(description: impl Into<String>, edit: Option<Value>) -> Fix {
        Fix { applied: false, description: description.into(), edit }
    }
}

/// One finding: `{id, severity, message, fix?}` on the wire.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnostic {
    /// Stable, kebab-case; each has a section in `docs/doctor.md`.
    pub id: &'static str,
    pub severity: Severity,
    /// One line.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

impl Diagnostic {
    pub fn new(id: &'static str, severity: Severity, message: impl Into<String>) -> Diagnostic {
        Diagnostic { id, severity, message: message.into(), fix: None }
    }

    pub fn with_fix(mut self, fix: Fix) -> Diagnostic {
        self.fix = Some(fix);
        self
    }
}

/// The launch with tether's fixes applied, and what the doctor found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Patched {
    /// The launch configuration, same shape, with the applied fixes.
    pub launch: Value,
    /// Errors first, then warnings, then information; in check order within each.
    pub diagnostics: Vec<Diagnostic>,
    /// macOS: copies the patched launch refers to. The caller makes them with
    /// [`apply_sip_plan`] before the launch starts (`tether/doctor` only reports them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sip_copies: Vec<SipCopy>,
}

/// Whether any diagnostic stops the launch.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

/// Runs every launch check over `launch` and applies the automatic fixes to a copy of it.
/// Never panics: a launch that is not an object, or has fields of the wrong type, gets a
/// `launch-invalid` diagnostic.
pub fn check_launch(launch: &Value, facts: &Facts) -> Patched {
    let mut out = Vec::new();
    let mut sip_copies = Vec::new();
    let Some(obj) = launch.as_object() else {
        out.push(Diagnostic::new(
            "launch-invalid",
            Severity::Error,
            format!("the launch configuration must be an object, not {}", launch::kind(launch)),
        ));
        return Patched { launch: launch.clone(), diagnostics: out, sip_copies };
    };
    let mut patched = obj.clone();
    let l = Launch::read(obj, &mut out);
    let cx = Cx::new(facts, &l);

    layer::check(facts, &mut out);
    dns::check(&facts.config, &mut out);

    if l.request == Some("attach") {
        out.push(
            Diagnostic::new(
                "launch-attach",
                Severity::Error,
                "this is an `attach` configuration: tether starts programs (so that they load the layer) and cannot join one that already runs",
            )
            .with_fix(Fix::manual(
                "use a `launch` configuration for the program, or run it with `tether exec -- COMMAND`",
                Some(serde_json::json!({"launch.request": "launch"})),
            )),
        );
        return finish(patched, out, sip_copies);
    }
    if obj.get("type").is_none_or(Value::is_null) {
        out.push(
            Diagnostic::new(
                "launch-no-type",
                Severity::Error,
                "the launch has no `type` (the debugger to use, e.g. \"go\", \"node\", \"python\", \"cppdbg\")",
            )
            .with_fix(Fix::manual("add the debug type your editor's debugger uses", None)),
        );
        // Without a type nothing else can be interpreted. (A `type` of the wrong kind is a
        // `launch-invalid` error already; the rest is checked as for an unknown debugger.)
        return finish(patched, out, sip_copies);
    }

    let effective_env = tether_config::env::remote_env(&facts.target_env, &facts.config.feature.env);
    program::check_present(&l, &cx, &mut out);
    if l.go_builds() && facts.os == Os::Linux {
        go::check(&l, &cx, &effective_env, &mut patched, &mut out);
    }
    let exec = l.exec(&cx);
    if let Some(exec) = &exec {
        match facts.os {
            Os::Linux => program::check_binary(exec, &l, &cx, &mut out),
            Os::Macos => sip_copies = sip::check(exec, &cx, &mut patched, &mut out),
        }
    }
    runners::check(&l, &cx, &mut out);
    framework::check(&l, &cx, &effective_env, &mut out);
    finish(patched, out, sip_copies)
}

fn finish(patched: serde_json::Map<String, Value>, mut out: Vec<Diagnostic>, sip_copies: Vec<SipCopy>) -> Patched {
    out.sort_by_key(|d| d.severity);
    Patched { launch: Value::Object(patched), diagnostics: out, sip_copies }
}

/// The diagnostic for a launch none of whose processes attached to its session within
/// `waited`: the likely causes for this launch, most likely first. Never empty.
pub fn no_attach_diagnostic(launch: &Value, facts: &Facts, waited: Duration) -> Diagnostic {
    attach::diagnose(launch, facts, waited)
}

#[cfg(test)]
mod tests;

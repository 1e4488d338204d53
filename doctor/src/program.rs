//! The program a launch runs: does it exist, and can it load the layer (Linux)?
//!
//! Editor launches reach the layer through `LD_PRELOAD`, which only the dynamic linker
//! honours. A statically linked program (an ELF without `PT_INTERP`) therefore runs without
//! tether, silently; this module turns that into an error with the fix for the program's kind.
//! A script is judged by its `#!` interpreter, which is what the kernel actually executes.

use std::path::{Path, PathBuf};

use crate::elf;
use crate::launch::{Cx, Exec, Family, Launch};
use crate::{Diagnostic, Fix, Severity};

/// A parsed `#!` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shebang {
    pub interpreter: String,
    /// Linux passes everything after the interpreter as one argument.
    pub arg: Option<String>,
}

impl Shebang {
    /// For `#!/usr/bin/env [-S] [VAR=x] CMD ARGS`: the command name and its arguments.
    pub fn env_command(&self) -> Option<(String, Vec<String>)> {
        if Path::new(&self.interpreter).file_name()? != "env" {
            return None;
        }
        let mut words = self.arg.as_deref()?.split_whitespace().peekable();
        while let Some(w) = words.peek() {
            if *w == "-S" || w.starts_with("--split-string") || *w == "-i" || *w == "-" {
                words.next();
            } else if *w == "-u" {
                words.next();
                words.next();
            } else if w.starts_with('-') || w.contains('=') {
                words.next();
            } else {
                break;
            }
        }
        let cmd = words.next()?.to_owned();
        Some((cmd, words.map(str::to_owned).collect()))
    }
}

/// Reads a `#!` line from the start of a file.
pub fn parse_shebang(head: &[u8]) -> Option<Shebang> {
    let rest = head.strip_prefix(b"#!")?;
    let line = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())];
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, Some(a.trim()).filter(|a| !a.is_empty())),
        None => (line, None),
    };
    if interp.is_empty() {
        return None;
    }
    Some(Shebang { interpreter: interp.to_owned(), arg: arg.map(str::to_owned) })
}

/// The first bytes of a file (enough for a magic number or a `#!` line).
pub fn head(cx: &Cx, path: &Path) -> Option<Vec<u8>> {
    cx.facts.host.read_at(path, 0, 256).ok()
}

/// The executable a script's shebang runs: its interpreter, or for `/usr/bin/env CMD` the
/// command found on `PATH`. `Err` names what could not be found.
pub fn shebang_target(cx: &Cx, sb: &Shebang) -> Result<PathBuf, String> {
    if let Some((cmd, _)) = sb.env_command() {
        return cx
            .resolve_command(&cmd)
            .ok_or_else(|| format!("`{cmd}` (run through `{}`) is not on the daemon's PATH", sb.interpreter));
    }
    let p = PathBuf::from(&sb.interpreter);
    if cx.facts.exists(&p) { Ok(p) } else { Err(format!("the interpreter `{}` does not exist", sb.interpreter)) }
}

/// `program-missing` / `program-not-found`: the executable the launch names must exist.
pub fn check_present(l: &Launch, cx: &Cx, out: &mut Vec<Diagnostic>) {
    if l.program.is_none() && l.needs_program() {
        out.push(
            Diagnostic::new(
                "program-missing",
                Severity::Error,
                format!("the `{}` launch has no `program`", l.debug_type.unwrap_or("?")),
            )
            .with_fix(Fix::manual(
                if l.family == Family::Go {
                    "set `program` to the package directory (e.g. \"${workspaceFolder}\"), or the binary with `mode: exec`"
                } else {
                    "set `program` to the path of the executable"
                },
                None,
            )),
        );
    }
    // Where `program` is not what the debugger executes: Go's package directory (or a file
    // in it), a node or python script.
    let script_like = l.go_builds() || matches!(l.family, Family::Node | Family::Python);
    if let (Some(p), true) = (l.program, script_like)
        && let Some(path) = cx.resolve_path(p)
        && !cx.facts.exists(&path)
    {
        out.push(not_found("program", &path.display().to_string(), Severity::Error));
    }
    let Some(exec) = l.exec(cx) else {
        return;
    };
    match (&exec.path, exec.implicit) {
        (Some(path), _) if !cx.facts.exists(path) => {
            out.push(not_found(exec.field, &path.display().to_string(), Severity::Error))
        }
        (None, false) if exec.field != "program" && cx.expand(&exec.written).is_some() => {
            // A command name looked up on the daemon's PATH, which may differ from the
            // debugger's: a warning, not an error.
            out.push(not_found(exec.field, &format!("{} (not on the daemon's PATH)", exec.written), Severity::Warning))
        }
        _ => {}
    }
}

fn not_found(field: &str, what: &str, severity: Severity) -> Diagnostic {
    Diagnostic::new(
        "program-not-found",
        severity,
        format!("the launch's `{field}` does not exist: {what}"),
    )
    .with_fix(Fix::manual(
        format!("check `{field}` (and `cwd`, which relative paths start from); build the program first if it is a build output"),
        None,
    ))
}

/// `static-binary` (and `shebang-interpreter-missing`): Linux only.
pub fn check_binary(exec: &Exec, l: &Launch, cx: &Cx, out: &mut Vec<Diagnostic>) {
    if let Some(d) = static_diagnostic(exec, l, cx) {
        out.push(d);
    }
}

/// Why the program will not load the layer because of how it is linked, as a diagnostic.
pub fn static_diagnostic(exec: &Exec, l: &Launch, cx: &Cx) -> Option<Diagnostic> {
    let path = exec.path.as_ref()?;
    let head = head(cx, path)?;
    let (binary, script) = if elf::is_elf(&head) {
        (path.clone(), None)
    } else if let Some(sb) = parse_shebang(&head) {
        match shebang_target(cx, &sb) {
            Ok(interp) => (interp, Some(path.clone())),
            Err(why) => {
                return Some(
                    Diagnostic::new(
                        "shebang-interpreter-missing",
                        Severity::Warning,
                        format!("{} is a script, but {why}", path.display()),
                    )
                    .with_fix(Fix::manual("install the interpreter, or fix the script's `#!` line", None)),
                );
            }
        }
    } else {
        return None;
    };
    let info = elf::inspect(&cx.facts.file(&binary))?;
    if !info.is_static() || !matches!(info.kind, 2 | 3) {
        return None;
    }
    let what = match &script {
        Some(s) => format!("the interpreter of {} ({})", s.display(), binary.display()),
        None => binary.display().to_string(),
    };
    let (message, fix) = if info.go {
        let fix = if l.family == Family::Go {
            "switch the launch to `mode: debug` so that tether builds it with `-ldflags='-linkmode external'`, or build it yourself with that flag (cgo on, a C compiler present), or add `import \"C\"` to its main package; or run it with `tether exec`, which supports static binaries"
        } else {
            "rebuild it with `go build -ldflags='-linkmode external'` (cgo on, a C compiler present) or add `import \"C\"` to its main package; or run it with `tether exec`, which supports static binaries"
        };
        (format!("{what} is a statically linked Go binary: it cannot load the layer under a debugger"), fix)
    } else {
        (
            format!("{what} is statically linked: it cannot load the layer under a debugger"),
            "link it dynamically (drop `-static`; for Rust, a `-gnu` target instead of `-musl`), or run it with `tether exec -- PROGRAM`, which supports static binaries",
        )
    };
    Some(Diagnostic::new("static-binary", Severity::Error, message).with_fix(Fix::manual(fix, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_forms() {
        assert_eq!(parse_shebang(b"#!/bin/sh\necho").unwrap(), Shebang { interpreter: "/bin/sh".into(), arg: None });
        assert_eq!(
            parse_shebang(b"#! /usr/bin/python3 -u -E \nx").unwrap(),
            Shebang { interpreter: "/usr/bin/python3".into(), arg: Some("-u -E".into()) }
        );
        assert_eq!(parse_shebang(b"#!\n"), None);
        assert_eq!(parse_shebang(b"echo"), None);
        assert_eq!(parse_shebang(b"#!/bin/bash").unwrap().interpreter, "/bin/bash");
    }

    #[test]
    fn env_commands() {
        let cmd = |line: &[u8]| parse_shebang(line).unwrap().env_command();
        assert_eq!(cmd(b"#!/usr/bin/env node\n"), Some(("node".into(), vec![])));
        assert_eq!(
            cmd(b"#!/usr/bin/env -S deno run --allow-all\n"),
            Some(("deno".into(), vec!["run".into(), "--allow-all".into()]))
        );
        assert_eq!(cmd(b"#!/usr/bin/env -u X NODE_ENV=1 node\n"), Some(("node".into(), vec![])));
        assert_eq!(cmd(b"#!/usr/bin/env\n"), None);
        assert_eq!(cmd(b"#!/bin/sh -e\n"), None);
    }
}

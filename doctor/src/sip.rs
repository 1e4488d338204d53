//! macOS System Integrity Protection: run an unprotected copy instead of a protected program.
//!
//! On macOS the layer reaches a program through `DYLD_INSERT_LIBRARIES`. dyld drops every
//! `DYLD_*` variable when it starts a program that SIP protects: anything under the system
//! directories, and any binary signed with the `restrict` or hardened `runtime` flag. Scripts
//! are affected through their interpreter (`#!/bin/bash`, or `#!/usr/bin/env node`, where
//! `/usr/bin/env` itself is protected and drops the variables before `node` starts).
//!
//! [`check`] plans a copy of each protected executable into `~/Library/Caches/tether/sip/
//! <hash>/<name>` and patches the launch to run it; [`apply_sip_plan`] makes the copies:
//! copy, strip the signature (`codesign --remove-signature`), sign ad hoc (`codesign --sign -`,
//! since Apple silicon runs no unsigned code) — the commands are injectable so tests run a
//! stand-in. The hash covers the original's path, size and first and last 64 KiB (where the
//! Mach-O header and the signature live), so an OS update gets a fresh copy.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::facts::Facts;
use crate::launch::{Cx, Exec};
use crate::macho;
use crate::program::{head, parse_shebang};
use crate::{Diagnostic, Fix, Severity};

/// Directories whose executables SIP protects.
pub const PROTECTED_PREFIXES: [&str; 6] = ["/usr/bin", "/bin", "/sbin", "/usr/sbin", "/usr/libexec", "/System"];

/// One copy to make before the launch starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SipCopy {
    /// The protected executable.
    pub source: PathBuf,
    /// Where the unprotected copy goes (the patched launch names it).
    pub dest: PathBuf,
}

/// The commands run on each copy, the copy's path appended to each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipTools {
    pub commands: Vec<Vec<String>>,
}

impl Default for SipTools {
    fn default() -> Self {
        let cmd = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect();
        SipTools {
            commands: vec![cmd(&["codesign", "--remove-signature"]), cmd(&["codesign", "--force", "--sign", "-"])],
        }
    }
}

/// Why SIP strips `DYLD_*` variables for `path`, if it does.
pub fn protection(facts: &Facts, path: &Path) -> Option<String> {
    if let Some(dir) = PROTECTED_PREFIXES.iter().find(|d| path.starts_with(d)) {
        return Some(format!("it is under {dir}, which SIP protects"));
    }
    let info = macho::inspect(&facts.file(path))?;
    info.protection().map(str::to_owned)
}

/// The copy's path for `source`, in `cache` (`…/sip`).
pub fn copy_path(facts: &Facts, cache: &Path, source: &Path) -> PathBuf {
    const WINDOW: u64 = 64 << 10;
    let mut h = Fnv::new();
    h.write(source.as_os_str().as_encoded_bytes());
    let len = facts.host.metadata(source).map_or(0, |m| m.len);
    h.write(&len.to_le_bytes());
    if let Ok(b) = facts.host.read_at(source, 0, WINDOW as usize) {
        h.write(&b);
    }
    if len > WINDOW
        && let Ok(b) = facts.host.read_at(source, len - WINDOW, WINDOW as usize)
    {
        h.write(&b);
    }
    let name = source.file_name().map_or_else(|| "program".into(), |n| n.to_owned());
    cache.join(format!("{:016x}", h.0)).join(name)
}

/// The SIP check (macOS): patches `patched` to run unprotected copies and returns them.
pub fn check(exec: &Exec, cx: &Cx, patched: &mut Map<String, Value>, out: &mut Vec<Diagnostic>) -> Vec<SipCopy> {
    let facts = cx.facts;
    let Some(path) = exec.path.clone() else {
        return Vec::new();
    };
    let Some(head) = head(cx, &path) else {
        return Vec::new();
    };

    // What actually starts, what it is given, and why it is protected.
    let (runner, runner_args, reason, script) = match parse_shebang(&head) {
        Some(sb) => {
            let interp = PathBuf::from(&sb.interpreter);
            let interp_reason = protection(facts, &interp);
            if let Some((cmd, cmd_args)) = sb.env_command() {
                let Some(real) = cx.resolve_command(&cmd) else {
                    out.push(Diagnostic::new(
                        "shebang-interpreter-missing",
                        Severity::Warning,
                        format!(
                            "{} runs `{cmd}` through {}, but `{cmd}` is not on the daemon's PATH",
                            path.display(),
                            sb.interpreter
                        ),
                    ));
                    return Vec::new();
                };
                let real_reason = protection(facts, &real);
                let reason = match (interp_reason, real_reason) {
                    (_, Some(r)) => format!("`{cmd}` ({}): {r}", real.display()),
                    (Some(r), None) => format!("its `#!{}` line: {r}", sb.interpreter),
                    (None, None) => return Vec::new(),
                };
                (real, cmd_args, reason, Some(path))
            } else {
                let Some(r) = interp_reason else {
                    return Vec::new();
                };
                let args = sb.arg.iter().flat_map(|a| a.split_whitespace()).map(str::to_owned).collect();
                (interp, args, format!("its interpreter {}: {r}", sb.interpreter), Some(path))
            }
        }
        None => match protection(facts, &path) {
            Some(r) => (path.clone(), Vec::new(), r, None),
            None => return Vec::new(),
        },
    };

    let needs_copy = protection(facts, &runner).is_some();
    let subject = script.as_ref().unwrap_or(&runner).display().to_string();
    let message = format!(
        "{subject} is protected by macOS SIP ({reason}), which removes DYLD_INSERT_LIBRARIES, so the layer would not load"
    );
    if script.is_some() && exec.args_field.is_none() {
        out.push(
            Diagnostic::new("macos-sip", Severity::Error, message).with_fix(Fix::manual(
                format!("point the launch's `{}` at an interpreter outside the system directories (e.g. one installed with Homebrew)", exec.field),
                None,
            )),
        );
        return Vec::new();
    }
    let cache = match (needs_copy, facts.sip_cache_dir()) {
        (false, _) => PathBuf::new(),
        (true, Some(c)) => c,
        (true, None) => {
            out.push(Diagnostic::new("macos-sip", Severity::Error, message).with_fix(Fix::manual(
                "tether cannot copy it: the home directory is unknown (set HOME for the daemon)",
                None,
            )));
            return Vec::new();
        }
    };

    let mut copies = Vec::new();
    let target = if needs_copy {
        let dest = copy_path(facts, &cache, &runner);
        copies.push(SipCopy { source: runner.clone(), dest: dest.clone() });
        dest
    } else {
        runner.clone()
    };
    let target_value = Value::String(target.display().to_string());
    match patched.get_mut(exec.field) {
        // debugpy's `python` may be a list: the interpreter, then its options.
        Some(Value::Array(items)) if !items.is_empty() => items[0] = target_value,
        _ => {
            patched.insert(exec.field.into(), target_value);
        }
    }
    let mut change = format!("the launch's `{}` now runs {}", exec.field, target.display());
    if needs_copy {
        change.push_str(&format!(" (a copy of {} without its signature, in {})", runner.display(), cache.display()));
    }
    if let (Some(script), Some(args_field)) = (&script, exec.args_field) {
        let mut prefix = runner_args;
        prefix.push(script.display().to_string());
        prepend_args(patched, args_field, &prefix);
        change.push_str(&format!(", with `{args_field}` starting {prefix:?}"));
    }
    out.push(Diagnostic::new("macos-sip", Severity::Info, message).with_fix(Fix::applied(change)));
    copies
}

/// Puts `prefix` before the arguments in `field` (a list, or one string as node allows).
fn prepend_args(patched: &mut Map<String, Value>, field: &str, prefix: &[String]) {
    let new = match patched.get(field) {
        Some(Value::String(s)) => {
            let mut words: Vec<String> = prefix.iter().map(|w| crate::shellwords::quote(w)).collect();
            if !s.trim().is_empty() {
                words.push(s.clone());
            }
            Value::String(words.join(" "))
        }
        Some(Value::Array(items)) => {
            let mut v: Vec<Value> = prefix.iter().cloned().map(Value::String).collect();
            v.extend(items.iter().cloned());
            Value::Array(v)
        }
        _ => Value::Array(prefix.iter().cloned().map(Value::String).collect()),
    };
    patched.insert(field.into(), new);
}

/// Makes the copies `check` planned: copy, run each of `tools.commands` on the copy, and move
/// it into place. A copy that is already there is kept (its name carries the original's hash).
/// A failed command leaves nothing behind.
pub fn apply_sip_plan(copies: &[SipCopy], tools: &SipTools) -> Result<(), String> {
    for c in copies {
        if c.dest.exists() {
            continue;
        }
        let dir = c.dest.parent().ok_or_else(|| format!("{}: no parent directory", c.dest.display()))?;
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        set_mode(dir, 0o700)?;
        let name = c.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = make_copy(&c.source, &tmp, tools).and_then(|()| {
            std::fs::rename(&tmp, &c.dest).map_err(|e| format!("cannot move the copy into {}: {e}", c.dest.display()))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
    }
    Ok(())
}

fn make_copy(source: &Path, tmp: &Path, tools: &SipTools) -> Result<(), String> {
    std::fs::copy(source, tmp).map_err(|e| format!("cannot copy {}: {e}", source.display()))?;
    set_mode(tmp, 0o755)?;
    for cmd in &tools.commands {
        let (prog, args) = cmd.split_first().ok_or("an empty SIP tool command")?;
        let output =
            Command::new(prog).args(args).arg(tmp).output().map_err(|e| format!("cannot run `{prog}`: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "`{}` failed on the copy of {} ({}): {}",
                cmd.join(" "),
                source.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    }
    let _ = (path, mode);
    Ok(())
}

/// FNV-1a, 64 bits: a stable name for a copy (not a security boundary: the cache directory
/// is the user's own).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::fixture as elf;
    use crate::facts::{MemHost, Os};
    use crate::macho::fixture::*;
    use crate::macho::{CS_RESTRICT, CS_RUNTIME};
    use crate::{Patched, check_launch};
    use serde_json::json;
    use std::sync::Arc;

    const CACHE: &str = "/Users/u/Library/Caches/tether/sip/";

    fn mac(host: MemHost) -> Facts {
        let mut f = Facts::new(Os::Macos, Arc::new(host));
        f.workspace_folder = "/ws".into();
        f.home = Some("/Users/u".into());
        f.daemon_env.insert("PATH".into(), "/opt/homebrew/bin:/usr/bin:/bin".into());
        f
    }

    fn sip(p: &Patched) -> Option<&Diagnostic> {
        p.diagnostics.iter().find(|d| d.id == "macos-sip")
    }

    fn hardened() -> Vec<u8> {
        thin(ARM64, Some(CS_RUNTIME), None)
    }

    #[test]
    fn protected_paths_and_flags() {
        let f = mac(MemHost::new()
            .exe("/usr/bin/true", thin(ARM64, None, None))
            .exe("/opt/hardened", hardened())
            .exe("/opt/restricted", thin(ARM64, Some(CS_RESTRICT), None))
            .exe("/opt/plain", thin(ARM64, Some(0x2), None))
            .exe("/opt/fat", fat(&[thin(X86_64, None, None), hardened()], false)));
        for (p, want) in [
            ("/usr/bin/true", Some("under /usr/bin")),
            ("/System/Library/x", Some("under /System")),
            ("/usr/libexec/x", Some("under /usr/libexec")),
            ("/opt/hardened", Some("hardened runtime")),
            ("/opt/restricted", Some("restrict")),
            ("/opt/fat", Some("hardened runtime")),
            ("/opt/plain", None),
            ("/usr/local/bin/x", None),
            ("/usr/binary", None),
        ] {
            let got = protection(&f, Path::new(p));
            match want {
                Some(w) => assert!(got.as_deref().is_some_and(|g| g.contains(w)), "{p}: {got:?}"),
                None => assert_eq!(got, None, "{p}"),
            }
        }
    }

    #[test]
    fn a_protected_program_is_replaced_by_a_copy() {
        let f = mac(MemHost::new().exe("/opt/app", hardened()));
        let launch = json!({"type": "lldb", "request": "launch", "program": "/opt/app", "args": ["-v"]});
        let p = check_launch(&launch, &f);
        let d = sip(&p).unwrap();
        assert_eq!(d.severity, Severity::Info);
        assert!(d.fix.as_ref().unwrap().applied);
        assert_eq!(p.sip_copies.len(), 1);
        let copy = &p.sip_copies[0];
        assert_eq!(copy.source, Path::new("/opt/app"));
        assert!(copy.dest.starts_with(CACHE), "{}", copy.dest.display());
        assert_eq!(copy.dest.file_name().unwrap(), "app");
        assert_eq!(p.launch["program"], json!(copy.dest.display().to_string()));
        assert_eq!(p.launch["args"], json!(["-v"]), "a binary keeps its args");
    }

    #[test]
    fn unprotected_programs_and_linux_are_left_alone() {
        let launch = json!({"type": "lldb", "request": "launch", "program": "/opt/app"});
        let plain = mac(MemHost::new().exe("/opt/app", thin(ARM64, Some(0x2), None)));
        let p = check_launch(&launch, &plain);
        assert!(sip(&p).is_none());
        assert!(p.sip_copies.is_empty());
        assert_eq!(p.launch, launch);

        let mut linux = mac(MemHost::new().exe("/opt/app", hardened()));
        linux.os = Os::Linux;
        let p = check_launch(&launch, &linux);
        assert!(sip(&p).is_none() && p.sip_copies.is_empty());
    }

    #[test]
    fn the_default_node_runtime_is_copied_when_hardened() {
        let f = mac(MemHost::new().exe("/opt/homebrew/bin/node", hardened()).exe("/ws/a.js", "x"));
        let p = check_launch(&json!({"type": "node", "request": "launch", "program": "/ws/a.js"}), &f);
        assert_eq!(p.sip_copies[0].source, Path::new("/opt/homebrew/bin/node"));
        assert_eq!(p.launch["runtimeExecutable"], json!(p.sip_copies[0].dest.display().to_string()));
        assert_eq!(p.launch["program"], "/ws/a.js");
    }

    #[test]
    fn env_shebang_runs_the_real_interpreter_directly() {
        // npm is `#!/usr/bin/env node`: /usr/bin/env is protected, node is not.
        let f = mac(MemHost::new()
            .exe("/usr/bin/env", thin(ARM64, Some(CS_RESTRICT), None))
            .exe("/opt/homebrew/bin/npm", "#!/usr/bin/env node\nrequire('npm')\n")
            .exe("/opt/homebrew/bin/node", thin(ARM64, Some(0x2), None)));
        let launch =
            json!({"type": "node", "request": "launch", "runtimeExecutable": "npm", "runtimeArgs": ["run", "dev"]});
        let p = check_launch(&launch, &f);
        assert!(p.sip_copies.is_empty(), "node itself needs no copy");
        assert_eq!(p.launch["runtimeExecutable"], "/opt/homebrew/bin/node");
        assert_eq!(p.launch["runtimeArgs"], json!(["/opt/homebrew/bin/npm", "run", "dev"]));
        let d = sip(&p).unwrap();
        assert!(d.message.contains("#!/usr/bin/env"), "{}", d.message);
    }

    #[test]
    fn a_protected_script_interpreter_is_copied_and_gets_the_script() {
        let f = mac(MemHost::new()
            .exe("/bin/bash", thin(ARM64, Some(CS_RESTRICT), None))
            .exe("/ws/run.sh", "#!/bin/bash -e -u\nexec ./app\n"));
        let launch = json!({"type": "lldb", "request": "launch", "program": "/ws/run.sh", "args": ["x"]});
        let p = check_launch(&launch, &f);
        assert_eq!(p.sip_copies[0].source, Path::new("/bin/bash"));
        assert_eq!(p.launch["program"], json!(p.sip_copies[0].dest.display().to_string()));
        assert_eq!(p.launch["args"], json!(["-e", "-u", "/ws/run.sh", "x"]));
        // A string `args` (node allows it) gets quoted words in front.
        let f = mac(MemHost::new().exe("/bin/sh", thin(ARM64, None, None)).exe("/ws/my tool", "#!/bin/sh\n"));
        let launch =
            json!({"type": "node", "request": "launch", "runtimeExecutable": "/ws/my tool", "runtimeArgs": "--x"});
        let p = check_launch(&launch, &f);
        assert_eq!(p.launch["runtimeArgs"], "'/ws/my tool' --x");
    }

    #[test]
    fn a_script_where_no_arguments_can_be_passed_is_spelled_out() {
        let f = mac(MemHost::new()
            .exe("/bin/bash", thin(ARM64, None, None))
            .exe("/Users/u/.pyenv/shims/python", "#!/bin/bash\nexec pyenv ...\n"));
        let launch = json!({"type": "python", "request": "launch", "python": "/Users/u/.pyenv/shims/python", "program": "/ws/a.py"});
        let p = check_launch(&launch, &f);
        let d = sip(&p).unwrap();
        assert_eq!(d.severity, Severity::Error);
        assert!(!d.fix.as_ref().unwrap().applied);
        assert_eq!(p.launch, launch);
    }

    #[test]
    fn copies_are_named_by_content() {
        let f =
            mac(MemHost::new().exe("/opt/a/app", hardened()).exe("/opt/b/app", thin(X86_64, Some(CS_RUNTIME), None)));
        let cache = Path::new(CACHE);
        let a1 = copy_path(&f, cache, Path::new("/opt/a/app"));
        let a2 = copy_path(&f, cache, Path::new("/opt/a/app"));
        let b = copy_path(&f, cache, Path::new("/opt/b/app"));
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_eq!(a1.parent().unwrap().parent().unwrap(), cache);
        assert_eq!(a1.parent().unwrap().file_name().unwrap().len(), 16);
    }

    #[test]
    fn no_home_no_copy() {
        let mut f = mac(MemHost::new().exe("/opt/app", hardened()));
        f.home = None;
        let p = check_launch(&json!({"type": "lldb", "request": "launch", "program": "/opt/app"}), &f);
        assert_eq!(sip(&p).unwrap().severity, Severity::Error);
        assert!(p.sip_copies.is_empty());
        assert_eq!(p.launch["program"], "/opt/app");
    }

    #[test]
    fn a_python_list_keeps_its_options() {
        let f = mac(MemHost::new().exe("/usr/bin/python3", thin(ARM64, None, None)));
        let launch = json!({"type": "debugpy", "request": "launch", "python": ["/usr/bin/python3", "-X", "dev"]});
        let p = check_launch(&launch, &f);
        let dest = p.sip_copies[0].dest.display().to_string();
        assert_eq!(p.launch["python"], json!([dest, "-X", "dev"]));
    }

    #[test]
    fn elf_programs_on_macos_are_not_mach_o() {
        let f = mac(MemHost::new().exe("/opt/app", elf::dynamic()));
        let p = check_launch(&json!({"type": "lldb", "request": "launch", "program": "/opt/app"}), &f);
        assert!(sip(&p).is_none());
    }

    // ------------------------------------------------------------ apply_sip_plan, for real

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("tether-doctor-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A stand-in for codesign: logs its arguments and marks the file it is given.
    fn fake_codesign(dir: &Path, mark: &str, exit: i32) -> Vec<String> {
        let script = dir.join(format!("codesign-{mark}"));
        let log = dir.join("log");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> '{}'\nfor f; do :; done\nprintf '{mark}' >> \"$f\"\nexit {exit}\n",
                log.display()
            ),
        )
        .unwrap();
        set_mode(&script, 0o755).unwrap();
        vec![script.display().to_string(), "--remove-signature".into()]
    }

    #[test]
    fn apply_copies_runs_the_tools_and_is_idempotent() {
        let t = TempDir::new("sip-ok");
        let source = t.0.join("python3");
        std::fs::write(&source, b"MACHO").unwrap();
        set_mode(&source, 0o555).unwrap();
        let dest = t.0.join("cache/0123456789abcdef/python3");
        let tools = SipTools { commands: vec![fake_codesign(&t.0, "R", 0), fake_codesign(&t.0, "S", 0)] };
        let plan = [SipCopy { source: source.clone(), dest: dest.clone() }];

        apply_sip_plan(&plan, &tools).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"MACHORS", "both tools ran, in order");
        assert_eq!(std::fs::read(&source).unwrap(), b"MACHO", "the original is untouched");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o755);
            let dir_mode = std::fs::metadata(dest.parent().unwrap()).unwrap().permissions().mode() & 0o777;
            assert_eq!(dir_mode, 0o700);
        }
        let log = std::fs::read_to_string(t.0.join("log")).unwrap();
        assert_eq!(log.lines().count(), 2);
        assert!(log.lines().all(|l| l.starts_with("--remove-signature ")), "{log}");

        // Again: the copy is there, nothing runs.
        apply_sip_plan(&plan, &tools).unwrap();
        assert_eq!(std::fs::read_to_string(t.0.join("log")).unwrap().lines().count(), 2);
        assert_eq!(std::fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_failing_tool_leaves_nothing_behind() {
        let t = TempDir::new("sip-fail");
        let source = t.0.join("bash");
        std::fs::write(&source, b"MACHO").unwrap();
        let dest = t.0.join("cache/h/bash");
        let tools = SipTools { commands: vec![fake_codesign(&t.0, "R", 3)] };
        let err = apply_sip_plan(&[SipCopy { source, dest: dest.clone() }], &tools).unwrap_err();
        assert!(err.contains("failed"), "{err}");
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dest.parent().unwrap()).unwrap().count(), 0);

        let missing = apply_sip_plan(
            &[SipCopy { source: t.0.join("nope"), dest: t.0.join("cache/x/nope") }],
            &SipTools::default(),
        )
        .unwrap_err();
        assert!(missing.contains("cannot copy"), "{missing}");
    }

    #[test]
    fn default_tools_strip_then_sign_ad_hoc() {
        let t = SipTools::default();
        assert_eq!(t.commands[0], ["codesign", "--remove-signature"]);
        assert_eq!(t.commands[1], ["codesign", "--force", "--sign", "-"]);
    }
}

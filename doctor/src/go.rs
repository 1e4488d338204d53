//! Go launches on Linux: make the binary Delve builds load the layer.
//!
//! Go links pure-Go programs statically by default; a static binary has no dynamic linker, so
//! `LD_PRELOAD` (and with it the layer) is ignored. `-linkmode external` makes the Go linker
//! hand the link to the C toolchain, which produces a dynamically linked binary. So the doctor
//! merges `-linkmode external` into the launch's `buildFlags`, and checks that the external
//! link can work (cgo enabled, a C compiler present).
//!
//! The merge is careful because Go honours only the **last** `-ldflags` flag: adding a second
//! one would silently drop the user's `-X` or `-s -w`. The flag is added to the value of that
//! last one, the user's form (string or list), quoting and every other flag are kept as
//! written, and only the one changed word is rewritten. [`merge`] is public so the CLI and the
//! editor cores can reuse it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::launch::{Cx, Launch, kind};
use crate::shellwords::{self, Word};
use crate::{Diagnostic, Fix, Severity};

/// What is merged.
const LINKMODE: &str = "-linkmode external";

/// Go build flags that take their value as the next word (so that value is not a flag).
const VALUE_FLAGS: [&str; 20] = [
    "-o",
    "-p",
    "-C",
    "-asmflags",
    "-buildmode",
    "-compiler",
    "-gccgoflags",
    "-gcflags",
    "-installsuffix",
    "-mod",
    "-modfile",
    "-overlay",
    "-pgo",
    "-pkgdir",
    "-tags",
    "-toolexec",
    "-covermode",
    "-coverpkg",
    "-coverprofile",
    "-exec",
];

/// The result of merging `-linkmode external` into build flags.
#[derive(Clone, Debug, PartialEq)]
pub enum MergeOutcome {
    /// The flags were changed: the new value (same form as given) and what changed.
    Merged { flags: Value, change: String },
    /// The last `-ldflags` already links externally; `found` is its value.
    AlreadyExternal { found: String },
    /// The user's flags ask for a static or internally linked binary; nothing was changed.
    /// `found` is the offending linker flag, `why` explains it.
    Conflict { found: String, why: String },
}

/// Merges `-linkmode external` into `flags` (a `buildFlags` value: a string, a list of
/// strings, or null/missing). Fails on a value that cannot be read (wrong type, unterminated
/// quote, `-ldflags` without a value).
pub fn merge(flags: &Value) -> Result<MergeOutcome, String> {
    merge_with_goflags(flags, None)
}

/// Like [`merge`], also given `GOFLAGS`: when the flags have no `-ldflags` of their own but
/// `GOFLAGS` has one, the added flag carries its value too (a command-line `-ldflags`
/// replaces the one in `GOFLAGS`).
pub fn merge_with_goflags(flags: &Value, goflags: Option<&str>) -> Result<MergeOutcome, String> {
    let inherited = goflags.and_then(goflags_ldflags);
    match flags {
        Value::Null => merge_string("", inherited.as_deref()),
        Value::String(s) => merge_string(s, inherited.as_deref()),
        Value::Array(items) => {
            let mut list = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                match v {
                    Value::String(s) => list.push(s.clone()),
                    other => return Err(format!("element {i} is {}, not a string", kind(other))),
                }
            }
            merge_list(list, inherited.as_deref())
        }
        other => Err(format!("it is {}, not a string or a list of strings", kind(other))),
    }
}

/// One `-ldflags` occurrence: where its value is and what it is.
struct Ldflags {
    /// Index of the word (or list element) holding the value.
    at: usize,
    /// Whether the value is inline (`-ldflags=V`) rather than the next word.
    inline: bool,
    value: String,
}

/// Finds every `-ldflags` in `words` (flag values of other flags skipped).
fn find_ldflags(words: &[String]) -> Result<Vec<Ldflags>, String> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let name = w.strip_prefix("--").map_or(w, |_| &w[1..]);
        if name == "-ldflags" {
            let value = words.get(i + 1).ok_or_else(|| format!("`{w}` has no value"))?;
            found.push(Ldflags { at: i + 1, inline: false, value: value.clone() });
            i += 2;
            continue;
        }
        if let Some(v) = name.strip_prefix("-ldflags=") {
            found.push(Ldflags { at: i, inline: true, value: v.to_owned() });
        } else if VALUE_FLAGS.contains(&name) {
            i += 1;
        }
        i += 1;
    }
    Ok(found)
}

/// The linker flags in an `-ldflags` value, after Go's optional `pattern=` prefix.
fn linker_args(value: &str) -> Result<Vec<String>, String> {
    let v = value.trim_start();
    let args = if v.is_empty() || v.starts_with('-') {
        v
    } else {
        match v.split_once('=') {
            Some((_, rest)) => rest,
            None => {
                return Err(format!("`-ldflags={value}`: missing =<flags> after the package pattern"));
            }
        }
    };
    shellwords::split(args)
        .map(|w| w.into_iter().map(|w| w.value).collect())
        .map_err(|e| format!("`-ldflags` value `{value}`: {e}"))
}

/// Decides from the last `-ldflags` value whether anything must be added.
fn judge(value: &str) -> Result<Option<MergeOutcome>, String> {
    let args = linker_args(value)?;
    let mut linkmode: Option<(String, String)> = None;
    let mut static_ext: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let name = a.strip_prefix("--").map_or(a, |_| &a[1..]);
        let (flag, val, used) = match name.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned()), 1),
            None => (name, args.get(i + 1).cloned(), 2),
        };
        match flag {
            "-linkmode" => {
                let v = val.unwrap_or_default();
                let text = if used == 1 { a.to_owned() } else { format!("{a} {v}") };
                linkmode = Some((v, text));
                i += used;
            }
            "-extldflags" => {
                let v = val.unwrap_or_default();
                if shellwords::split(&v).is_ok_and(|w| w.iter().any(|w| w.value == "-static")) {
                    static_ext = Some(if used == 1 { a.to_owned() } else { format!("{a} '{v}'") });
                } else {
                    static_ext = None;
                }
                i += used;
            }
            _ => i += 1,
        }
    }
    if let Some(found) = static_ext {
        return Ok(Some(MergeOutcome::Conflict { found, why: "asks the C linker for a static binary".into() }));
    }
    Ok(match linkmode {
        Some((mode, found)) if mode == "external" => Some(MergeOutcome::AlreadyExternal { found }),
        Some((mode, found)) if mode == "internal" => {
            Some(MergeOutcome::Conflict { found, why: "makes Go link the binary itself, statically".into() })
        }
        _ => None,
    })
}

/// The separator between an existing value and the added flag.
fn sep(value: &str) -> &'static str {
    if value.trim().is_empty() || value.ends_with([' ', '\t']) { "" } else { " " }
}

fn merge_string(text: &str, inherited: Option<&str>) -> Result<MergeOutcome, String> {
    let words: Vec<Word> = shellwords::split(text)?;
    let values: Vec<String> = words.iter().map(|w| w.value.clone()).collect();
    let Some(last) = find_ldflags(&values)?.pop() else {
        let value = match inherited {
            Some(v) => format!("{v} {LINKMODE}"),
            None => LINKMODE.to_owned(),
        };
        let added = format!("-ldflags={}", shellwords::quote(&value));
        let joiner = if text.is_empty() || text.ends_with([' ', '\t', '\n']) { "" } else { " " };
        let change = match inherited {
            Some(v) => format!(
                "added `{added}` to buildFlags (keeping GOFLAGS' `-ldflags={v}`, which a command-line -ldflags replaces)"
            ),
            None => format!("added `{added}` to buildFlags"),
        };
        return Ok(MergeOutcome::Merged { flags: Value::String(format!("{text}{joiner}{added}")), change });
    };
    if let Some(outcome) = judge(&last.value)? {
        return Ok(outcome);
    }
    let w = &words[last.at];
    let raw = w.raw(text);
    let s = sep(&last.value);
    let new_raw = if let Some(q) = w.closing_quote {
        // Inside the closing quote: the user's quoting stays as it was.
        format!("{}{s}{LINKMODE}{q}", &raw[..raw.len() - 1])
    } else if !raw.contains(['\'', '"', '\\']) {
        let prefix = if last.inline { &raw[..=raw.find('=').unwrap_or(0)] } else { "" };
        format!("{prefix}{}", shellwords::quote(&format!("{}{s}{LINKMODE}", last.value)))
    } else {
        // Quoted in the middle, bare at the end: append a quoted piece to the same word.
        format!("{raw}{}", shellwords::quote(&format!("{s}{LINKMODE}")))
    };
    let old_flag = flag_text(text, &words, &last);
    let new_text = format!("{}{new_raw}{}", &text[..w.start], &text[w.end..]);
    let new_words = shellwords::split(&new_text)?;
    let new_flag = flag_text(&new_text, &new_words, &last);
    Ok(MergeOutcome::Merged {
        flags: Value::String(new_text),
        change: format!("added `{LINKMODE}` to the last -ldflags: `{old_flag}` → `{new_flag}`"),
    })
}

/// The text of an `-ldflags` flag with its value.
fn flag_text(text: &str, words: &[Word], l: &Ldflags) -> String {
    let from = if l.inline { l.at } else { l.at - 1 };
    text[words[from].start..words[l.at].end].to_owned()
}

fn merge_list(mut list: Vec<String>, inherited: Option<&str>) -> Result<MergeOutcome, String> {
    let Some(last) = find_ldflags(&list)?.pop() else {
        let value = match inherited {
            Some(v) => format!("{v} {LINKMODE}"),
            None => LINKMODE.to_owned(),
        };
        let added = format!("-ldflags={value}");
        let change = format!("added `{added}` to buildFlags");
        list.push(added);
        return Ok(MergeOutcome::Merged { flags: json!(list), change });
    };
    if let Some(outcome) = judge(&last.value)? {
        return Ok(outcome);
    }
    let old = list[last.at].clone();
    let new_value = format!("{}{}{LINKMODE}", last.value, sep(&last.value));
    list[last.at] = if last.inline { format!("{}{new_value}", &old[..=old.find('=').unwrap_or(0)]) } else { new_value };
    let show = |v: &str| {
        if last.inline { v.to_owned() } else { format!("{} {v:?}", list[last.at - 1]) }
    };
    let change = format!("added `{LINKMODE}` to the last -ldflags: `{}` → `{}`", show(&old), show(&list[last.at]));
    Ok(MergeOutcome::Merged { flags: json!(list), change })
}

/// The value of the last `-ldflags=V` in `GOFLAGS` (space-separated, no quoting).
fn goflags_ldflags(goflags: &str) -> Option<String> {
    goflags
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--").map_or(w, |_| &w[1..]).strip_prefix("-ldflags="))
        .next_back()
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// What the Go check concluded, for the no-attach diagnostic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoReport {
    /// Why the built binary will be static, if it will.
    pub static_reason: Option<String>,
}

/// Where a build variable comes from: the launch's `env`, the target (after the config's
/// env rules), or the daemon's environment.
pub(crate) fn build_var(
    name: &str,
    launch: &Launch,
    target: &BTreeMap<String, String>,
    daemon: &BTreeMap<String, String>,
) -> Option<(String, &'static str)> {
    if let Some(v) = launch.env.get(name) {
        return v.clone().map(|v| (v, "the launch's env"));
    }
    if let Some(v) = target.get(name) {
        return Some((v.clone(), "the target's environment"));
    }
    daemon.get(name).map(|v| (v.clone(), "the daemon's environment"))
}

/// The Go check: merges the flag into `patched` and reports.
pub(crate) fn check(
    launch: &Launch,
    cx: &Cx,
    target_env: &BTreeMap<String, String>,
    patched: &mut Map<String, Value>,
    out: &mut Vec<Diagnostic>,
) -> GoReport {
    let facts = cx.facts;
    let mut report = GoReport::default();
    let var = |name: &str| build_var(name, launch, target_env, &facts.daemon_env);
    let goflags = var("GOFLAGS").map(|(v, _)| v);
    let flags = patched.get("buildFlags").cloned().unwrap_or(Value::Null);
    let needs_cgo = match merge_with_goflags(&flags, goflags.as_deref()) {
        Err(e) => {
            report.static_reason =
                Some("its buildFlags could not be read, so `-linkmode external` was not added".into());
            out.push(
                Diagnostic::new(
                    "go-build-flags-invalid",
                    Severity::Error,
                    format!("cannot add `{LINKMODE}` to buildFlags: {e}"),
                )
                .with_fix(Fix::manual(
                    "write buildFlags as a string (`-tags x -ldflags='-s -w'`) or a list of strings (`[\"-tags\", \"x\"]`) and launch again",
                    None,
                )),
            );
            false
        }
        Ok(MergeOutcome::Conflict { found, why }) => {
            report.static_reason = Some(format!("its buildFlags have `{found}`"));
            out.push(
                Diagnostic::new(
                    "go-linkmode-conflict",
                    Severity::Error,
                    format!("buildFlags have `{found}`, which {why}: the layer cannot load into a static binary, and tether left the flags unchanged"),
                )
                .with_fix(Fix::manual(
                    format!("remove `{found}` from the last -ldflags in buildFlags (tether then adds `{LINKMODE}`), or run the program with `tether exec`, which supports static binaries"),
                    None,
                )),
            );
            false
        }
        Ok(MergeOutcome::AlreadyExternal { found }) => {
            out.push(Diagnostic::new(
                "go-linkmode",
                Severity::Info,
                format!(
                    "buildFlags already link externally (`-ldflags` has `{found}`): the binary will load the layer"
                ),
            ));
            true
        }
        Ok(MergeOutcome::Merged { flags, change }) => {
            patched.insert("buildFlags".into(), flags);
            out.push(
                Diagnostic::new(
                    "go-linkmode",
                    Severity::Info,
                    "linking the Go binary externally (dynamically), so that it loads the layer".to_owned(),
                )
                .with_fix(Fix::applied(change)),
            );
            true
        }
    };
    if !needs_cgo {
        return report;
    }

    if let Some((_, source)) = var("CGO_ENABLED").filter(|(v, _)| v.trim() == "0") {
        report.static_reason = Some(format!("CGO_ENABLED=0 in {source}"));
        let (how, edit) = match source {
            "the target's environment" => (
                "add CGO_ENABLED to `feature.env.exclude`, or override it with \"1\"".to_owned(),
                json!({"feature.env.override": {"CGO_ENABLED": "1"}}),
            ),
            "the launch's env" => (
                "remove CGO_ENABLED from the launch's env, or set it to \"1\"".to_owned(),
                json!({"launch.env": {"CGO_ENABLED": "1"}}),
            ),
            _ => (
                "set \"CGO_ENABLED\": \"1\" in the launch's env (or unset it where the daemon was started)".to_owned(),
                json!({"launch.env": {"CGO_ENABLED": "1"}}),
            ),
        };
        out.push(
            Diagnostic::new(
                "go-cgo-disabled",
                Severity::Error,
                format!("CGO_ENABLED=0 in {source}: Go cannot link externally without cgo, so the binary would be static and never load the layer"),
            )
            .with_fix(Fix::manual(how, Some(edit))),
        );
    }

    let compiler = match var("CC") {
        Some((cc, source)) => {
            let first = cc.split_whitespace().next().unwrap_or("").to_owned();
            let found = if first.contains('/') {
                facts.exists(std::path::Path::new(&first))
            } else {
                facts.which(&first).is_some()
            };
            (!found).then(|| format!("CC=`{cc}` (from {source}) is not found"))
        }
        None => ["gcc", "clang", "cc"]
            .iter()
            .all(|c| facts.which(c).is_none())
            .then(|| "no C compiler (`gcc`, `clang` or `cc`) is on the daemon's PATH".to_owned()),
    };
    if let Some(problem) = compiler {
        report.static_reason.get_or_insert_with(|| "no C compiler to link it externally".into());
        out.push(
            Diagnostic::new(
                "go-no-c-compiler",
                Severity::Error,
                format!("{problem}: Go needs one to link the binary externally (dynamically) so that it loads the layer"),
            )
            .with_fix(Fix::manual(
                "install a C compiler (Debian/Ubuntu: `apt install gcc`; Fedora: `dnf install gcc`; macOS: `xcode-select --install`), or set CC in the launch's env to one that exists",
                None,
            )),
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(flags: Value) -> Value {
        match merge(&flags).unwrap() {
            MergeOutcome::Merged { flags, .. } => flags,
            other => panic!("{flags}: {other:?}"),
        }
    }

    fn s(flags: &str) -> String {
        merged(json!(flags)).as_str().unwrap().to_owned()
    }

    /// The words Go would see, for checking a merge's meaning (not only its text).
    fn go_words(flags: &str) -> Vec<String> {
        shellwords::split(flags).unwrap().into_iter().map(|w| w.value).collect()
    }

    #[test]
    fn no_flags_at_all() {
        assert_eq!(s(""), "-ldflags='-linkmode external'");
        assert_eq!(merged(Value::Null), json!("-ldflags='-linkmode external'"));
        assert_eq!(merged(json!([])), json!(["-ldflags=-linkmode external"]));
    }

    #[test]
    fn other_flags_without_ldflags_are_kept_as_written() {
        assert_eq!(s("-tags 'a b'  -race"), "-tags 'a b'  -race -ldflags='-linkmode external'");
        assert_eq!(s("-v "), "-v -ldflags='-linkmode external'");
        assert_eq!(
            merged(json!(["-tags", "x", "-race"])),
            json!(["-tags", "x", "-race", "-ldflags=-linkmode external"])
        );
    }

    #[test]
    fn inline_ldflags_forms() {
        assert_eq!(s("-ldflags=-s"), "-ldflags='-s -linkmode external'");
        assert_eq!(s("-ldflags='-s -w'"), "-ldflags='-s -w -linkmode external'");
        assert_eq!(s("-ldflags=\"-s -w\""), "-ldflags=\"-s -w -linkmode external\"");
        assert_eq!(s("--ldflags='-X a=b'"), "--ldflags='-X a=b -linkmode external'");
        assert_eq!(s("'-ldflags=-s -w'"), "'-ldflags=-s -w -linkmode external'");
        assert_eq!(s("-ldflags="), "-ldflags='-linkmode external'");
        assert_eq!(s("-ldflags=''"), "-ldflags='-linkmode external'");
    }

    #[test]
    fn separate_value_forms() {
        assert_eq!(s("-ldflags -s"), "-ldflags '-s -linkmode external'");
        assert_eq!(s("-ldflags '-s -w'"), "-ldflags '-s -w -linkmode external'");
        assert_eq!(s("-ldflags \"-X main.v=1 -s\""), "-ldflags \"-X main.v=1 -s -linkmode external\"");
        assert_eq!(s("--ldflags \"-X a=b\" -v"), "--ldflags \"-X a=b -linkmode external\" -v");
        assert_eq!(s("-ldflags ''"), "-ldflags '-linkmode external'");
    }

    #[test]
    fn surrounded_by_other_flags() {
        assert_eq!(
            s("-tags x -ldflags=-s -gcflags=all=-N"),
            "-tags x -ldflags='-s -linkmode external' -gcflags=all=-N"
        );
        // A value of another flag that looks like -ldflags is not one.
        assert_eq!(s("-tags -ldflags=-s"), "-tags -ldflags=-s -ldflags='-linkmode external'");
    }

    #[test]
    fn only_the_last_ldflags_is_changed() {
        let out = s("-ldflags='-X a=1' -race -ldflags '-s -w'");
        assert_eq!(out, "-ldflags='-X a=1' -race -ldflags '-s -w -linkmode external'");
        // The first one keeps its exact text; Go ignores it anyway.
        let out = merged(json!(["-ldflags=-X a=1", "-ldflags", "-s"]));
        assert_eq!(out, json!(["-ldflags=-X a=1", "-ldflags", "-s -linkmode external"]));
    }

    #[test]
    fn quoting_mixed_within_a_word() {
        // Quoted in the middle, bare at the end: a quoted piece is appended to the word.
        let out = s("-ldflags='-X a=1'x");
        assert_eq!(out, "-ldflags='-X a=1'x' -linkmode external'");
        assert_eq!(go_words(&out), ["-ldflags=-X a=1x -linkmode external"]);
        // Escaped quotes inside double quotes survive untouched.
        let out = s(r#"-ldflags="-X 'main.v=a\"b'""#);
        assert_eq!(out, r#"-ldflags="-X 'main.v=a\"b' -linkmode external""#);
    }

    #[test]
    fn list_forms() {
        assert_eq!(merged(json!(["-ldflags", "-s -w"])), json!(["-ldflags", "-s -w -linkmode external"]));
        assert_eq!(
            merged(json!(["-tags", "x", "-ldflags=-s -w", "-v"])),
            json!(["-tags", "x", "-ldflags=-s -w -linkmode external", "-v"])
        );
        assert_eq!(merged(json!(["--ldflags=-X a=b"])), json!(["--ldflags=-X a=b -linkmode external"]));
        assert_eq!(merged(json!(["-ldflags="])), json!(["-ldflags=-linkmode external"]));
    }

    #[test]
    fn package_patterns_are_kept() {
        assert_eq!(s("-ldflags=all=-s"), "-ldflags='all=-s -linkmode external'");
        assert!(matches!(merge(&json!("-ldflags=all=-linkmode=internal")).unwrap(), MergeOutcome::Conflict { .. }));
    }

    #[test]
    fn already_external_is_left_alone() {
        for flags in [
            json!("-ldflags='-linkmode external'"),
            json!("-ldflags=-linkmode=external"),
            json!("-ldflags '-s --linkmode=external'"),
            json!(["-ldflags", "-linkmode external -s"]),
            json!("-ldflags='-linkmode internal -linkmode external'"),
        ] {
            assert!(matches!(merge(&flags).unwrap(), MergeOutcome::AlreadyExternal { .. }), "{flags}");
        }
    }

    #[test]
    fn internal_or_static_is_a_conflict() {
        let out = merge(&json!("-ldflags='-s -linkmode internal'")).unwrap();
        assert_eq!(
            out,
            MergeOutcome::Conflict {
                found: "-linkmode internal".into(),
                why: "makes Go link the binary itself, statically".into()
            }
        );
        let out = merge(&json!(["-ldflags=-linkmode=internal"])).unwrap();
        assert!(matches!(out, MergeOutcome::Conflict { ref found, .. } if found == "-linkmode=internal"));
        let out = merge(&json!("-ldflags=\"-linkmode external -extldflags '-static'\"")).unwrap();
        assert!(matches!(out, MergeOutcome::Conflict { ref why, .. } if why.contains("static")));
        // External on an earlier, ignored -ldflags does not count; internal there does not either.
        assert_eq!(
            s("-ldflags=-linkmode=internal -ldflags=-s"),
            "-ldflags=-linkmode=internal -ldflags='-s -linkmode external'"
        );
    }

    #[test]
    fn auto_linkmode_is_overridden_after_it() {
        assert_eq!(s("-ldflags='-linkmode auto'"), "-ldflags='-linkmode auto -linkmode external'");
    }

    #[test]
    fn goflags_ldflags_is_carried_over() {
        let out = merge_with_goflags(&json!("-v"), Some("-mod=mod -ldflags=-X=main.v=1")).unwrap();
        match out {
            MergeOutcome::Merged { flags, change } => {
                assert_eq!(flags, json!("-v -ldflags='-X=main.v=1 -linkmode external'"));
                assert!(change.contains("GOFLAGS"));
            }
            other => panic!("{other:?}"),
        }
        // With an -ldflags of its own, GOFLAGS does not matter.
        let out = merge_with_goflags(&json!("-ldflags=-s"), Some("-ldflags=-w")).unwrap();
        assert!(
            matches!(out, MergeOutcome::Merged { ref flags, .. } if flags == &json!("-ldflags='-s -linkmode external'"))
        );
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        for (flags, want) in [
            (json!(42), "a number"),
            (json!({"a": 1}), "an object"),
            (json!(true), "a boolean"),
            (json!(["-v", 3]), "element 1 is a number"),
            (json!("-ldflags='-s"), "unterminated"),
            (json!("-ldflags"), "has no value"),
            (json!(["-tags", "x", "--ldflags"]), "has no value"),
            (json!("-ldflags=\"-X 'a\""), "unterminated"),
            (json!("-ldflags=main"), "pattern"),
        ] {
            let e = merge(&flags).unwrap_err();
            assert!(e.contains(want), "{flags}: {e}");
        }
    }

    #[test]
    fn change_descriptions_show_before_and_after() {
        match merge(&json!("-ldflags='-s -w' -v")).unwrap() {
            MergeOutcome::Merged { change, .. } => {
                assert_eq!(
                    change,
                    "added `-linkmode external` to the last -ldflags: `-ldflags='-s -w'` → `-ldflags='-s -w -linkmode external'`"
                );
            }
            other => panic!("{other:?}"),
        }
        match merge(&json!(["-ldflags", "-s"])).unwrap() {
            MergeOutcome::Merged { change, .. } => {
                assert!(change.contains("-s -linkmode external"), "{change}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_merge_keeps_the_users_words_and_adds_the_flag_to_the_last_value() {
        for flags in [
            "-ldflags=-s",
            "-tags x -ldflags '-X a=b c' -v",
            "--ldflags=\"-s\" -ldflags='-w'",
            "-gcflags -N -ldflags=-s",
            "-ldflags='a=b'c",
        ] {
            let before = go_words(flags);
            let after = go_words(&s(flags));
            assert_eq!(before.len(), after.len(), "{flags}");
            let changed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != after[i]).collect();
            assert_eq!(changed.len(), 1, "{flags}: {after:?}");
            let i = changed[0];
            assert_eq!(after[i], format!("{} -linkmode external", before[i]), "{flags}");
        }
    }
}

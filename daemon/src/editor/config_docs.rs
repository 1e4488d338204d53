//! Config files in the editor: diagnostics with exact ranges, completion and hover from the
//! config's JSON Schema, and a watcher for files changed outside any editor.
//!
//! The loader (`tether_config::parse`) is the validator, so the editor shows exactly the errors
//! `tether exec` would print. Completion and hover need to know where the cursor is in text that
//! is often invalid while being typed, so a small tolerant scanner finds the key path at the
//! cursor, and the schema is walked along it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tower_lsp_server::ls_types::{
    CompletionItem, CompletionItemKind, Diagnostic, DiagnosticSeverity, Documentation, Hover, HoverContents,
    MarkupContent, MarkupKind, NumberOrString, Position, Range,
};

/// Whether `path` is a tether config file: `.tether/*.json`.
pub fn is_config_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
        && path.parent().and_then(Path::file_name).is_some_and(|d| d == ".tether")
}

/// LSP position (UTF-16 code units) of a byte offset.
pub fn position_at(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let character = text[line_start..offset].encode_utf16().count();
    Position::new(line as u32, character as u32)
}

/// Byte offset of an LSP position (clamped to the text).
pub fn offset_at(text: &str, pos: Position) -> usize {
    let mut line_start = 0;
    for _ in 0..pos.line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return text.len(),
        }
    }
    let mut units = 0;
    for (i, c) in text[line_start..].char_indices() {
        if units >= pos.character as usize || c == '\n' {
            return line_start + i;
        }
        units += c.len_utf16();
    }
    text.len()
}

/// The diagnostics of a config file's text: empty when it is valid.
pub fn diagnostics(text: &str, path: &Path) -> Vec<Diagnostic> {
    let Err(e) = tether_config::parse(text, path) else { return Vec::new() };
    let range = match &e.span {
        Some(span) => Range::new(position_at(text, span.start), position_at(text, span.end)),
        None if e.line > 0 => {
            // Line and column (in characters) without a span: point at that character.
            let line_start: usize = text.split_inclusive('\n').take(e.line - 1).map(str::len).sum();
            let offset = text[line_start.min(text.len())..]
                .char_indices()
                .nth(e.column.saturating_sub(1))
                .map_or(text.len(), |(i, _)| line_start + i);
            let start = position_at(text, offset);
            Range::new(start, Position::new(start.line, start.character + 1))
        }
        None => Range::default(),
    };
    let mut message = if e.key.is_empty() { e.message.clone() } else { format!("{}: {}", e.key, e.message) };
    if let Some(hint) = &e.hint {
        message.push_str("; ");
        message.push_str(hint);
    }
    vec![Diagnostic {
        range,
        severity: Some(DiagnosticSeverity::ERROR),
        code: Some(NumberOrString::String("config-invalid".into())),
        source: Some("tether".into()),
        message,
        ..Diagnostic::default()
    }]
}

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// What the cursor is on.
#[derive(Debug, PartialEq, Eq)]
pub enum At {
    /// A key of the object at `path` (`prefix`: what is typed of it; `start`: where its string
    /// starts, when the cursor is inside one).
    Key {
        prefix: String,
        start: Option<usize>,
    },
    /// The value at `path`.
    Value {
        in_string: bool,
    },
    Nothing,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Cursor {
    pub path: Vec<Seg>,
    pub at: At,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Key,
    Colon,
    Value,
    Comma,
}

enum Frame {
    Obj { key: Option<String>, expect: Expect },
    Arr { index: usize },
}

/// Where the byte `offset` is in JSON `text`, which may be incomplete.
pub fn cursor_at(text: &str, offset: usize) -> Cursor {
    let b = text.as_bytes();
    let offset = offset.min(b.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let path_of = |stack: &[Frame], with_top: bool| -> Vec<Seg> {
        let n = stack.len();
        stack
            .iter()
            .enumerate()
            .filter(|(j, _)| with_top || *j + 1 < n)
            .filter_map(|(_, f)| match f {
                Frame::Obj { key, .. } => key.clone().map(Seg::Key),
                Frame::Arr { index } => Some(Seg::Index(*index)),
            })
            .collect()
    };
    let after_value = |stack: &mut Vec<Frame>| {
        if let Some(Frame::Obj { expect, .. }) = stack.last_mut() {
            *expect = Expect::Comma;
        }
    };
    while i < offset {
        match b[i] {
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= offset {
                    // The cursor is inside this string.
                    return match stack.last() {
                        Some(Frame::Obj { expect: Expect::Key, .. }) => Cursor {
                            path: path_of(&stack, false),
                            at: At::Key { prefix: text[i + 1..offset].to_string(), start: Some(i) },
                        },
                        Some(Frame::Obj { expect: Expect::Value, .. }) | Some(Frame::Arr { .. }) => {
                            Cursor { path: path_of(&stack, true), at: At::Value { in_string: true } }
                        }
                        _ => Cursor { path: Vec::new(), at: At::Nothing },
                    };
                }
                let s = &text[i..(j + 1).min(text.len())];
                match stack.last_mut() {
                    Some(Frame::Obj { key, expect }) if *expect == Expect::Key => {
                        *key = Some(serde_json::from_str(s).unwrap_or_else(|_| s.trim_matches('"').to_string()));
                        *expect = Expect::Colon;
                    }
                    _ => after_value(&mut stack),
                }
                i = j + 1;
                continue;
            }
            b'{' => stack.push(Frame::Obj { key: None, expect: Expect::Key }),
            b'[' => stack.push(Frame::Arr { index: 0 }),
            b'}' | b']' => {
                stack.pop();
                after_value(&mut stack);
            }
            b':' => {
                if let Some(Frame::Obj { expect, .. }) = stack.last_mut()
                    && *expect == Expect::Colon
                {
                    *expect = Expect::Value;
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Obj { key, expect }) => {
                    *key = None;
                    *expect = Expect::Key;
                }
                Some(Frame::Arr { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    match stack.last() {
        Some(Frame::Obj { expect: Expect::Key, .. }) => {
            Cursor { path: path_of(&stack, false), at: At::Key { prefix: String::new(), start: None } }
        }
        Some(Frame::Obj { expect: Expect::Value, .. }) | Some(Frame::Arr { .. }) => {
            Cursor { path: path_of(&stack, true), at: At::Value { in_string: false } }
        }
        _ => Cursor { path: path_of(&stack, true), at: At::Nothing },
    }
}

/// Walks a JSON Schema (draft-07, `$ref`s into `definitions`).
struct SchemaWalk<'a> {
    root: &'a Value,
}

impl<'a> SchemaWalk<'a> {
    fn deref(&self, mut node: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(r) = node.get("$ref").and_then(Value::as_str) else { break };
            let Some(name) = r.strip_prefix("#/definitions/") else { break };
            match self.root.get("definitions").and_then(|d| d.get(name)) {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// The node and the alternatives it allows (`anyOf`, `oneOf`, `allOf`), dereferenced.
    fn variants(&self, node: &'a Value) -> Vec<&'a Value> {
        let mut out = Vec::new();
        self.collect_variants(node, &mut out, 0);
        out
    }

    fn collect_variants(&self, node: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
        let target = self.deref(node);
        out.push(node);
        if !std::ptr::eq(target, node) {
            out.push(target);
        }
        if depth > 8 {
            return;
        }
        for n in [node, target] {
            for key in ["anyOf", "oneOf", "allOf"] {
                for v in n.get(key).and_then(Value::as_array).into_iter().flatten() {
                    self.collect_variants(v, out, depth + 1);
                }
            }
            if std::ptr::eq(target, node) {
                break;
            }
        }
    }

    fn child(&self, node: &'a Value, seg: &Seg) -> Option<&'a Value> {
        self.variants(node).into_iter().find_map(|v| match seg {
            Seg::Key(k) => v
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| v.get("additionalProperties").filter(|a| a.is_object())),
            Seg::Index(_) => v.get("items").filter(|i| i.is_object()),
        })
    }

    fn at(&self, path: &[Seg]) -> Option<&'a Value> {
        path.iter().try_fold(self.root, |node, seg| self.child(node, seg))
    }

    fn properties(&self, node: &'a Value) -> Vec<(&'a str, &'a Value)> {
        let mut out: Vec<(&str, &Value)> = Vec::new();
        for v in self.variants(node) {
            for (k, p) in v.get("properties").and_then(Value::as_object).into_iter().flatten() {
                if !out.iter().any(|(name, _)| name == k) {
                    out.push((k, p));
                }
            }
        }
        out
    }

    fn values(&self, node: &'a Value) -> Vec<Value> {
        let mut out = Vec::new();
        for v in self.variants(node) {
            out.extend(v.get("enum").and_then(Value::as_array).into_iter().flatten().cloned());
            out.extend(v.get("const").cloned());
            let types = v.get("type").map(|t| t.to_string()).unwrap_or_default();
            if types.contains("boolean") {
                out.extend([Value::Bool(true), Value::Bool(false)]);
            }
        }
        out.dedup();
        out
    }

    fn description(&self, node: &'a Value) -> Option<String> {
        self.variants(node).iter().find_map(|v| v.get("description").and_then(Value::as_str)).map(str::to_string)
    }
}

fn markdown(text: String) -> Documentation {
    Documentation::MarkupContent(MarkupContent { kind: MarkupKind::Markdown, value: text })
}

/// Completion items at the byte `offset` of a config file's `text`.
pub fn completion(schema: &Value, text: &str, offset: usize) -> Vec<CompletionItem> {
    let walk = SchemaWalk { root: schema };
    let cursor = cursor_at(text, offset);
    let Some(node) = walk.at(&cursor.path) else { return Vec::new() };
    match cursor.at {
        At::Key { prefix, start } => walk
            .properties(node)
            .into_iter()
            .filter(|(name, _)| name.starts_with(prefix.as_str()))
            .map(|(name, p)| CompletionItem {
                label: name.to_string(),
                kind: Some(CompletionItemKind::PROPERTY),
                documentation: walk.description(p).map(markdown),
                insert_text: Some(if start.is_some() { name.to_string() } else { format!("\"{name}\": ") }),
                ..CompletionItem::default()
            })
            .collect(),
        At::Value { in_string } => walk
            .values(node)
            .into_iter()
            .filter(|v| !in_string || v.is_string())
            .map(|v| {
                let label = match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                CompletionItem {
                    insert_text: Some(if in_string { label.clone() } else { v.to_string() }),
                    label,
                    kind: Some(CompletionItemKind::VALUE),
                    ..CompletionItem::default()
                }
            })
            .collect(),
        At::Nothing => Vec::new(),
    }
}

/// The description of the key at the byte `offset` (on the key, or in its value).
pub fn hover(schema: &Value, text: &str, offset: usize) -> Option<Hover> {
    let walk = SchemaWalk { root: schema };
    let cursor = cursor_at(text, offset);
    let mut path = cursor.path;
    match cursor.at {
        At::Key { start: Some(start), .. } => {
            let b = text.as_bytes();
            let mut j = start + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            path.push(Seg::Key(text.get(start + 1..j)?.to_string()));
        }
        At::Value { .. } => {}
        _ => return None,
    }
    let key = path.iter().rev().find_map(|s| match s {
        Seg::Key(k) => Some(k.clone()),
        Seg::Index(_) => None,
    })?;
    let node = walk.at(&path)?;
    let description = walk.description(node)?;
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: format!("**{key}**\n\n{description}"),
        }),
        range: None,
    })
}

/// The config files under the workspace folders: `<folder>/.tether/*.json`.
pub fn config_files(folders: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in folders {
        let Ok(entries) = std::fs::read_dir(f.join(".tether")) else { continue };
        for e in entries.flatten() {
            if is_config_file(&e.path()) && e.path().is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Watches the workspace folders (to see `.tether` appear) and their `.tether` directories;
/// the paths of every change go to `tx`.
pub fn watch(
    folders: &[PathBuf],
    tx: tokio::sync::mpsc::UnboundedSender<PathBuf>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads (ours included: validating opens the file) are not changes.
        if let Ok(event) = event {
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            for p in event.paths {
                let _ = tx.send(p);
            }
        }
    })?;
    for f in folders {
        watcher.watch(f, notify::RecursiveMode::NonRecursive)?;
        let dir = f.join(".tether");
        if dir.is_dir() {
            watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        }
    }
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "{\n  \"é𝄞\": 1\n}";
        let one = text.find('1').unwrap();
        assert_eq!(position_at(text, one), Position::new(1, 9));
        assert_eq!(offset_at(text, Position::new(1, 9)), one);
        assert_eq!(offset_at(text, Position::new(9, 0)), text.len());
    }

    #[test]
    fn diagnostics_underline_the_unknown_key() {
        let text = "{\n  \"feature\": {\n    \"fs\": {\n      \"mod\": \"read\"\n    }\n  }\n}\n";
        let d = diagnostics(text, Path::new("/p/.tether/tether.json"));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].range, Range::new(Position::new(3, 6), Position::new(3, 11)));
        assert!(d[0].message.contains("feature.fs.mod: unknown key; did you mean `mode`?"), "{}", d[0].message);
        assert!(diagnostics("{}", Path::new("x.json")).is_empty());
    }

    #[test]
    fn the_cursor_knows_its_key_path() {
        let text = r#"{"feature": {"fs": {"mode": "re"#;
        let c = cursor_at(text, text.len());
        assert_eq!(c.path, vec![Seg::Key("feature".into()), Seg::Key("fs".into()), Seg::Key("mode".into())]);
        assert_eq!(c.at, At::Value { in_string: true });
        let text = r#"{"feature": {"fs": {"mo"#;
        let c = cursor_at(text, text.len());
        assert_eq!(c.path, vec![Seg::Key("feature".into()), Seg::Key("fs".into())]);
        assert!(matches!(c.at, At::Key { ref prefix, .. } if prefix == "mo"));
        let text = r#"{"skip_processes": ["a", "#;
        let c = cursor_at(text, text.len());
        assert_eq!(c.path, vec![Seg::Key("skip_processes".into()), Seg::Index(1)]);
        let text = r#"{"agent": {"ttl": 1}, "#;
        let c = cursor_at(text, text.len());
        assert_eq!(c.path, vec![]);
        assert!(matches!(c.at, At::Key { .. }));
    }

    #[test]
    fn completion_and_hover_come_from_the_schema() {
        let schema = tether_config::json_schema();
        let text = r#"{"feature": {"fs": {"mo"#;
        let items = completion(&schema, text, text.len());
        assert!(items.iter().any(|i| i.label == "mode"), "{items:?}");
        let text = r#"{"feature": {"fs": {"mode": ""#;
        let items = completion(&schema, text, text.len());
        let labels: Vec<&str> = items.iter().map(|i| i.label.as_str()).collect();
        assert!(labels.contains(&"localwithoverrides"), "{labels:?}");
        let text = r#"{"agent": {"startup_timeout": 5}}"#;
        let h = hover(&schema, text, text.find("startup").unwrap() + 2).unwrap();
        let HoverContents::Markup(m) = h.contents else { panic!() };
        assert!(m.value.contains("Seconds to wait for the agent to start"), "{}", m.value);
        let top = completion(&schema, "{", 1);
        assert!(top.iter().any(|i| i.label == "target" && i.insert_text.as_deref() == Some("\"target\": ")));
    }

    #[test]
    fn config_files_are_json_under_dot_tether() {
        assert!(is_config_file(Path::new("/w/.tether/tether.json")));
        assert!(is_config_file(Path::new("/w/.tether/other.json")));
        assert!(!is_config_file(Path::new("/w/tether.json")));
        assert!(!is_config_file(Path::new("/w/.tether/notes.txt")));
    }
}

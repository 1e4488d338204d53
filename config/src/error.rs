//! Config errors: one clear line for people, exact positions for editors.
//!
//! serde_json knows where it was when an error happened (usually just after the offending
//! key or value) and serde_path_to_error knows the key path; neither gives the start of the
//! key or value, which is what an editor underlines and what a person looks for. So after an
//! error we walk the text along the key path (a small scanner, not a second parser) to find
//! that span, and fall back to serde_json's position when the walk fails.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;

/// An error in a config file (or in a config built in code, then `path` is empty).
///
/// `Display` is one line: `FILE:LINE:COLUMN: KEY: MESSAGE; HINT`, parts omitted when unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in; empty for a config that did not come from a file.
    pub path: PathBuf,
    /// 1-based line of the start of the offending key or value; 0 when there is no position.
    pub line: usize,
    /// 1-based column (in characters, not bytes) on `line`; 0 when there is no position.
    pub column: usize,
    /// Byte range of the offending key or value in the file text, when known.
    pub span: Option<Range<usize>>,
    /// Dotted key path, with `[i]` for array entries: `feature.fs.read_only[2]`. Empty when the
    /// error concerns the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we can tell: "did you mean `mode`?".
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.as_os_str().is_empty() {
            write!(f, "{}", self.path.display())?;
            if self.line > 0 {
                write!(f, ":{}:{}", self.line, self.column)?;
            }
            f.write_str(": ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error without a file position (a config built in code, a file that cannot be read).
    pub fn new(path: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_owned(),
            line: 0,
            column: 0,
            span: None,
            key: key.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Builds the error for a serde_json failure at `segments` while reading `text`.
    pub(crate) fn from_json(text: &str, origin: &Path, segments: &[Seg], err: &serde_json::Error) -> Self {
        let key = render_key(segments);
        let full = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let raw = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        let mut e = ConfigError::new(origin, key, raw.clone());
        let anchor = offset_of(text, err.line(), err.column());

        if err.is_syntax() || err.is_eof() {
            if text.trim().is_empty() {
                e.message = "the file is empty".into();
                e.hint = Some("write `{}` for the defaults".into());
            } else if err.is_eof() {
                e.hint = Some("a closing `}`, `]` or `\"` is missing".into());
            }
            // serde_json's column is that of the last byte it read: point at that character.
            let at = floor_char_boundary(text, anchor.saturating_sub(1).min(text.len()));
            e.set_span(text, at..next_char(text, at));
            return e;
        }

        let mut point_at_key = false;
        let mut segments = segments.to_vec();
        if let Some(rest) = raw.strip_prefix("duplicate field ") {
            // serde reports it on the object; the key is what to point at.
            let name = split_ticks(rest).0.unwrap_or_default();
            if segments.last() != Some(&Seg::Key(name.clone())) {
                segments.push(Seg::Key(name.clone()));
                e.key = render_key(&segments);
            }
            e.message = "duplicate key".into();
            e.hint = Some("a key may appear once in an object; remove one".into());
            point_at_key = true;
        } else if let Some(rest) = raw.strip_prefix("unknown field ") {
            let (_, expected) = split_ticks(rest);
            e.message = "unknown key".into();
            point_at_key = true;
            let unknown = match segments.last() {
                Some(Seg::Key(k)) => k.clone(),
                _ => split_ticks(rest).0.unwrap_or_default(),
            };
            e.hint = Some(suggest(&unknown, &expected, "allowed keys", "this object takes no keys"));
        } else if raw.ends_with(", expected u16") || raw.ends_with(", expected u64") {
            // serde names the Rust type; say what the user may write.
            let (head, ty) = raw.rsplit_once(", expected ").unwrap_or((&raw, ""));
            let want = if ty == "u16" { "a port number (0-65535)" } else { "a whole number (0 or more)" };
            e.message = format!("{head}, expected {want}");
        } else if let Some(rest) = raw.strip_prefix("unknown variant ") {
            let (unknown, expected) = split_ticks(rest);
            let unknown = unknown.unwrap_or_default();
            e.message = format!("unknown value `{unknown}`");
            e.hint = Some(suggest(&unknown, &expected, "allowed values", "no value is allowed"));
        }
        match locate(text, &segments, anchor) {
            Some(found) => {
                let span = match found.key {
                    Some(k) if point_at_key => k,
                    _ => found.value,
                };
                e.set_span(text, span);
            }
            None => {
                let at = floor_char_boundary(text, anchor.saturating_sub(1).min(text.len()));
                e.set_span(text, at..next_char(text, at));
            }
        }
        e
    }

    fn set_span(&mut self, text: &str, span: Range<usize>) {
        let (line, column) = line_column(text, span.start);
        self.line = line;
        self.column = column;
        self.span = Some(span);
    }
}

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// The key path serde_path_to_error tracked, without the segments that are not keys.
pub(crate) fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// `feature.fs.read_only[2]`.
pub(crate) fn render_key(segments: &[Seg]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
///
/// Close means few edits (a transposition counts as one: `tpc` → `tcp`), or, for longer words,
/// a high Jaro-Winkler similarity (a shared prefix: `incomming` → `incoming`). Case is ignored.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_lowercase();
            let edits = strsim::osa_distance(&word, &lower);
            let similarity = strsim::jaro_winkler(&word, &lower);
            let close = edits <= (lower.chars().count() / 3).max(1) || similarity >= 0.8;
            // Fewest edits first, then the most similar.
            close.then_some((edits, std::cmp::Reverse((similarity * 1e6) as u64), c))
        })
        .min()
        .map(|(_, _, c)| c)
}

fn suggest(unknown: &str, expected: &[String], list_label: &str, none: &str) -> String {
    if expected.is_empty() {
        return none.to_owned();
    }
    match closest(unknown, expected.iter().map(String::as_str)) {
        Some(best) => format!("did you mean `{best}`?"),
        None => {
            let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
            format!("{list_label}: {}", list.join(", "))
        }
    }
}

/// Splits serde's "`x`, expected one of `a`, `b`" into the first quoted word and the others.
fn split_ticks(s: &str) -> (Option<String>, Vec<String>) {
    let mut words = s.split('`').skip(1).step_by(2).map(str::to_owned);
    let first = words.next();
    (first, words.collect())
}

/// Byte offset of serde_json's (line, column): `column` bytes after the start of `line`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    if line == 0 {
        return 0;
    }
    let start = match line {
        1 => 0,
        _ => text.match_indices('\n').nth(line - 2).map_or(text.len(), |(i, _)| i + 1),
    };
    (start + column).min(text.len())
}

/// 1-based (line, column in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn next_char(text: &str, i: usize) -> usize {
    text[i..].chars().next().map_or(i, |c| i + c.len_utf8())
}

/// Where a key path is in the text.
#[derive(Debug, PartialEq, Eq)]
struct Found {
    /// The last key's span (with quotes), when the path ends in a key.
    key: Option<Range<usize>>,
    /// The value's span.
    value: Range<usize>,
}

/// Walks `text` along `segments`. When a key occurs more than once, the last occurrence that
/// starts before `anchor` (where serde_json stopped) is the one serde_json was reading.
fn locate(text: &str, segments: &[Seg], anchor: usize) -> Option<Found> {
    let s = Scanner { b: text.as_bytes() };
    let mut i = s.ws(0);
    let mut key = None;
    for seg in segments {
        match seg {
            Seg::Key(want) => {
                if s.at(i) != Some(b'{') {
                    return None;
                }
                let mut found = None;
                i = s.ws(i + 1);
                while s.at(i) == Some(b'"') && i < anchor {
                    let key_end = s.string_end(i)?;
                    let name: String = serde_json::from_str(&text[i..key_end]).ok()?;
                    let colon = s.ws(key_end);
                    if s.at(colon) != Some(b':') {
                        break;
                    }
                    let value_start = s.ws(colon + 1);
                    if &name == want {
                        found = Some((i..key_end, value_start));
                    }
                    let Some(value_end) = s.value_end(value_start, 0) else {
                        break;
                    };
                    i = s.ws(value_end);
                    if s.at(i) != Some(b',') {
                        break;
                    }
                    i = s.ws(i + 1);
                }
                let (k, v) = found?;
                key = Some(k);
                i = v;
            }
            Seg::Index(n) => {
                if s.at(i) != Some(b'[') {
                    return None;
                }
                i = s.ws(i + 1);
                for _ in 0..*n {
                    i = s.ws(s.value_end(i, 0)?);
                    if s.at(i) != Some(b',') {
                        return None;
                    }
                    i = s.ws(i + 1);
                }
                if s.at(i).is_none() || s.at(i) == Some(b']') {
                    return None;
                }
                key = None;
            }
        }
    }
    let end = s.value_end(i, 0).unwrap_or_else(|| next_char(text, i.min(text.len())));
    Some(Found { key, value: i..end })
}

/// Just enough of a JSON scanner to skip values.
struct Scanner<'a> {
    b: &'a [u8],
}

impl Scanner<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    fn ws(&self, mut i: usize) -> usize {
        while matches!(self.at(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    /// `i` is at an opening quote; returns the index after the closing one.
    fn string_end(&self, mut i: usize) -> Option<usize> {
        i += 1;
        loop {
            match self.at(i)? {
                b'"' => return Some(i + 1),
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
    }

    /// Index after the value starting at `i`.
    fn value_end(&self, i: usize, depth: usize) -> Option<usize> {
        if depth > 200 {
            return None;
        }
        match self.at(i)? {
            b'"' => self.string_end(i),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                let mut j = self.ws(i + 1);
                if self.at(j) == Some(close) {
                    return Some(j + 1);
                }
                loop {
                    if open == b'{' {
                        j = self.ws(self.string_end(j)?);
                        if self.at(j) != Some(b':') {
                            return None;
                        }
                        j = self.ws(j + 1);
                    }
                    j = self.ws(self.value_end(j, depth + 1)?);
                    match self.at(j)? {
                        b',' => j = self.ws(j + 1),
                        c if c == close => return Some(j + 1),
                        _ => return None,
                    }
                }
            }
            _ => {
                let mut j = i;
                while let Some(c) = self.at(j) {
                    if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    j += 1;
                }
                (j > i).then_some(j)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn display_is_one_line_with_all_parts() {
        let e = ConfigError {
            path: ".tether/tether.json".into(),
            line: 4,
            column: 13,
            span: None,
            key: "feature.fs.mod".into(),
            message: "unknown key".into(),
            hint: Some("did you mean `mode`?".into()),
        };
        assert_eq!(e.to_string(), ".tether/tether.json:4:13: feature.fs.mod: unknown key; did you mean `mode`?");
        let bare = ConfigError::new(Path::new(""), "feature.fs.local[0]", "invalid regex: x");
        assert_eq!(bare.to_string(), "feature.fs.local[0]: invalid regex: x");
        let no_pos = ConfigError::new(Path::new("a.json"), "", "cannot read");
        assert_eq!(no_pos.to_string(), "a.json: cannot read");
    }

    #[test]
    fn closest_finds_typos_only() {
        let keys = ["mode", "read_only", "read_write", "local", "not_found"];
        assert_eq!(closest("mod", keys), Some("mode"));
        assert_eq!(closest("readonly", keys), Some("read_only"));
        assert_eq!(closest("Mode", keys), Some("mode"));
        assert_eq!(closest("notfound", keys), Some("not_found"));
        assert_eq!(closest("xyz", keys), None);
    }

    #[test]
    fn render_key_uses_dots_and_brackets() {
        assert_eq!(render_key(&[k("a"), k("b"), Seg::Index(2), k("c")]), "a.b[2].c");
        assert_eq!(render_key(&[]), "");
    }

    #[test]
    fn line_column_counts_characters() {
        let text = "{\n  \"é\": 1, \"x\": 2\n}";
        let x = text.find("\"x\"").unwrap();
        assert_eq!(line_column(text, x), (2, 11));
        assert_eq!(line_column(text, 0), (1, 1));
    }

    #[test]
    fn locate_finds_nested_keys_and_indexes() {
        let text = r#"{"a": {"b": [1, {"c": "x"}], "d": true}}"#;
        let f = locate(text, &[k("a"), k("b"), Seg::Index(1), k("c")], text.len()).unwrap();
        assert_eq!(&text[f.key.unwrap()], "\"c\"");
        assert_eq!(&text[f.value], "\"x\"");
        let f = locate(text, &[k("a"), k("d")], text.len()).unwrap();
        assert_eq!(&text[f.value], "true");
        let f = locate(text, &[k("a")], text.len()).unwrap();
        assert_eq!(&text[f.value], r#"{"b": [1, {"c": "x"}], "d": true}"#);
        assert!(locate(text, &[k("zz")], text.len()).is_none());
        assert!(locate(text, &[k("a"), k("b"), Seg::Index(5)], text.len()).is_none());
    }

    #[test]
    fn locate_picks_the_occurrence_before_the_anchor() {
        let text = r#"{"a": 1, "a": 2, "b": 3}"#;
        let second = text.rfind("\"a\"").unwrap();
        let f = locate(text, &[k("a")], second + 3).unwrap();
        assert_eq!(f.key.unwrap().start, second);
        let f = locate(text, &[k("a")], 4).unwrap();
        assert_eq!(f.key.unwrap().start, 1);
    }

    #[test]
    fn locate_handles_escapes_in_strings() {
        let text = r#"{"x": "a\"}b", "y": 1}"#;
        let f = locate(text, &[k("y")], text.len()).unwrap();
        assert_eq!(&text[f.value], "1");
    }
}

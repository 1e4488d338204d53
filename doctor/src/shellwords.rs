//! A small shell-words tokenizer that remembers where every word came from.
//!
//! Go's `buildFlags` string form is split into words the way a POSIX shell would (single
//! quotes, double quotes, backslashes), and so is the value of `-ldflags`. The doctor edits one
//! word and must leave every other byte of the user's text alone, so each [`Word`] keeps its
//! span in the original string and how it ended; nothing is ever re-quoted that was not
//! changed.

/// One word of a shell-style string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The word after quote removal.
    pub value: String,
    /// Byte offset of the word's first character in the original string.
    pub start: usize,
    /// Byte offset just past the word's last character in the original string.
    pub end: usize,
    /// The quote character (`'` or `"`) when the word's text ends with a closing quote.
    pub closing_quote: Option<char>,
}

impl Word {
    /// The word as the user wrote it.
    pub fn raw<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.end]
    }
}

/// Splits `text` into words. Fails on an unterminated quote.
///
/// Rules: blanks (space, tab, newline) separate words; `'...'` is literal; inside `"..."` a
/// backslash escapes `"`, `\`, `$` and `` ` `` and is literal before anything else; outside
/// quotes a backslash escapes the next character (a trailing backslash is kept).
pub fn split(text: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if is_blank(c) {
            chars.next();
            continue;
        }
        let mut value = String::new();
        let mut end = start;
        let mut closing_quote = None;
        while let Some(&(i, c)) = chars.peek() {
            if is_blank(c) {
                break;
            }
            chars.next();
            closing_quote = None;
            match c {
                '\'' => {
                    let mut closed = false;
                    for (_, q) in chars.by_ref() {
                        if q == '\'' {
                            closed = true;
                            break;
                        }
                        value.push(q);
                    }
                    if !closed {
                        return Err(format!("unterminated ' quote at byte {i}"));
                    }
                    closing_quote = Some('\'');
                }
                '"' => {
                    let mut closed = false;
                    while let Some((_, q)) = chars.next() {
                        match q {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => match chars.peek() {
                                Some(&(_, e @ ('"' | '\\' | '$' | '`'))) => {
                                    value.push(e);
                                    chars.next();
                                }
                                Some(&(_, '\n')) => {
                                    chars.next();
                                }
                                _ => value.push('\\'),
                            },
                            _ => value.push(q),
                        }
                    }
                    if !closed {
                        return Err(format!("unterminated \" quote at byte {i}"));
                    }
                    closing_quote = Some('"');
                }
                '\\' => match chars.next() {
                    Some((_, e)) => value.push(e),
                    None => value.push('\\'),
                },
                _ => value.push(c),
            }
            end = chars.peek().map_or(text.len(), |&(j, _)| j);
        }
        words.push(Word { value, start, end, closing_quote });
    }
    Ok(words)
}

/// `s` as one shell word: unchanged when it needs no quoting, else in single quotes (a `'`
/// inside becomes `'\''`).
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c));
    if plain { s.to_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<String> {
        split(text).unwrap().into_iter().map(|w| w.value).collect()
    }

    #[test]
    fn plain_words_and_blanks() {
        assert_eq!(values("  -tags x\t-v\n"), ["-tags", "x", "-v"]);
        assert!(split("").unwrap().is_empty());
        assert!(split("   ").unwrap().is_empty());
    }

    #[test]
    fn quotes_are_removed_and_spans_keep_the_original() {
        let text = r#"-ldflags='-s -w' --x="a b""#;
        let words = split(text).unwrap();
        assert_eq!(words[0].value, "-ldflags=-s -w");
        assert_eq!(words[0].raw(text), "-ldflags='-s -w'");
        assert_eq!(words[0].closing_quote, Some('\''));
        assert_eq!(words[1].value, "--x=a b");
        assert_eq!(words[1].raw(text), r#"--x="a b""#);
        assert_eq!(words[1].closing_quote, Some('"'));
    }

    #[test]
    fn closing_quote_only_when_the_word_ends_with_it() {
        let words = split("'a'b c'd'").unwrap();
        assert_eq!(words[0].value, "ab");
        assert_eq!(words[0].closing_quote, None);
        assert_eq!(words[1].closing_quote, Some('\''));
    }

    #[test]
    fn backslashes() {
        assert_eq!(values(r"a\ b"), ["a b"]);
        assert_eq!(values(r#""a\"b\\c\d""#), [r#"a"b\c\d"#]);
        assert_eq!(values(r"'a\b'"), [r"a\b"]);
        assert_eq!(values(r"end\"), [r"end\"]);
    }

    #[test]
    fn adjacent_quoted_parts_make_one_word() {
        assert_eq!(values(r#"-X' 'a"=b c""#), ["-X a=b c"]);
    }

    #[test]
    fn unterminated_quotes_fail() {
        assert!(split("-ldflags='-s").unwrap_err().contains("unterminated '"));
        assert!(split("\"abc").unwrap_err().contains("unterminated \""));
    }

    #[test]
    fn non_ascii_spans_are_byte_offsets() {
        let text = "é 'ü x'";
        let words = split(text).unwrap();
        assert_eq!(words[1].raw(text), "'ü x'");
        assert_eq!(words[1].value, "ü x");
    }

    #[test]
    fn quote_round_trips() {
        for s in ["-linkmode external", "plain", "it's", "", "a\"b"] {
            let q = quote(s);
            assert_eq!(values(&q), [s.to_owned()], "{q}");
        }
        assert_eq!(quote("-s"), "-s");
        assert_eq!(quote("-s -w"), "'-s -w'");
    }
}

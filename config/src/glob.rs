//! Glob matching for names (environment variables, executable names).
//!
//! Names are short and patterns are few, so a hand-written matcher is enough: `*` matches any
//! run of characters (also none), `?` exactly one character, everything else itself
//! (case-sensitive). No character classes, no escaping: neither appears in variable names or
//! in the executable names users list.

/// Whether `name` matches the glob `pattern` as a whole.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Classic two-pointer matcher with one backtrack point (the last `*`): linear for the
    // patterns people write, never exponential.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether `pattern` contains a wildcard (`*` or `?`).
pub fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(glob_match("PATH", "PATH"));
        assert!(!glob_match("PATH", "PATHS"));
        assert!(!glob_match("PATH", "path"));
        assert!(!glob_match("PATH", ""));
        assert!(glob_match("", ""));
    }

    #[test]
    fn star_matches_any_run() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "ANYTHING"));
        assert!(glob_match("AWS_*", "AWS_REGION"));
        assert!(glob_match("AWS_*", "AWS_"));
        assert!(!glob_match("AWS_*", "MY_AWS_REGION"));
        assert!(glob_match("*_URL", "DATABASE_URL"));
        assert!(glob_match("A*B*C", "AxxBxxC"));
        assert!(glob_match("A*B*C", "ABBC"));
        assert!(!glob_match("A*B*C", "AxxCxxB"));
        assert!(glob_match("**", "x"));
    }

    #[test]
    fn question_mark_matches_one_char() {
        assert!(glob_match("GO?", "GOX"));
        assert!(!glob_match("GO?", "GO"));
        assert!(!glob_match("GO?", "GOXX"));
        assert!(glob_match("?*", "a"));
        assert!(!glob_match("?*", ""));
    }

    #[test]
    fn literal_detection() {
        assert!(is_literal("PATH"));
        assert!(!is_literal("P*"));
        assert!(!is_literal("P?"));
    }
}

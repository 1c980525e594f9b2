//! Event type filters: comma-separated globs over the dotted event type, e.g. `task.*,upgrade.failed`.
//! `*` matches any run of characters (dots included), `?` exactly one. An empty filter matches
//! everything.

/// A parsed filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    globs: Vec<String>,
}

impl TypeFilter {
    /// Parses `task.*,upgrade.*`; empty items are refused.
    pub fn parse(text: &str) -> Result<TypeFilter, String> {
        let globs: Vec<String> = text.split(',').map(|g| g.trim().to_string()).collect();
        if globs.iter().any(String::is_empty) {
            return Err(format!("empty type pattern in {text:?}"));
        }
        Ok(TypeFilter { globs })
    }

    /// Whether the filter accepts events of `kind` (events without a type match only an empty filter).
    pub fn matches(&self, kind: Option<&str>) -> bool {
        if self.globs.is_empty() {
            return true;
        }
        kind.is_some_and(|k| self.globs.iter().any(|g| glob_match(g, k)))
    }
}

/// Whether `text` matches the glob `pattern`, with SQLite's GLOB semantics (so the in-memory
/// fold and the SQLite projection agree): `*` any run, `?` one character, `[abc]`, `[a-z]` and
/// `[^...]` character classes (a `]` right after `[` or `[^` is literal), case-sensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    glob(&pattern, &text)
}

/// Matches one character against the class opening at `pattern[p]` (a `[`): whether it
/// matched and where the pattern continues; `None` if the class never closes.
fn class(pattern: &[char], p: usize, c: char) -> Option<(bool, usize)> {
    let mut i = p + 1;
    let negate = pattern.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let start = i;
    let mut matched = false;
    loop {
        let ch = *pattern.get(i)?;
        if ch == ']' && i > start {
            return Some((matched != negate, i + 1));
        }
        match (pattern.get(i + 1), pattern.get(i + 2)) {
            (Some('-'), Some(hi)) if *hi != ']' => {
                matched |= ch <= c && c <= *hi;
                i += 3;
            }
            _ => {
                matched |= ch == c;
                i += 1;
            }
        }
    }
}

fn glob(pattern: &[char], text: &[char]) -> bool {
    // Iterative wildcard match with one backtrack point (the last `*`): O(pattern × text).
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = text.get(t).copied() {
        let step = match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some('?') => Some(p + 1),
            Some('[') => match class(pattern, p, c) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                None => (c == '[').then_some(p + 1),
            },
            Some(other) => (*other == c).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((sp, st))) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pattern.get(p..).unwrap_or(&[]).iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::TypeFilter;

    #[test]
    fn globs() {
        let f = TypeFilter::parse("task.*,upgrade.failed").expect("valid");
        assert!(f.matches(Some("task.progress")));
        assert!(f.matches(Some("upgrade.failed")));
        assert!(!f.matches(Some("upgrade.started")));
        assert!(!f.matches(None));
        assert!(TypeFilter::default().matches(None));
        assert!(TypeFilter::parse("a,,b").is_err());
        assert!(
            TypeFilter::parse("*.comp?eted")
                .expect("valid")
                .matches(Some("task.completed"))
        );
    }

    #[test]
    fn sqlite_glob_semantics() {
        use super::glob_match;
        for (pattern, text, expected) in [
            ("file-[12]*.js?n", "file-1.json", true),
            ("file-[12]*.js?n", "file-3.json", false),
            ("[^a-c]x", "dx", true),
            ("[^a-c]x", "bx", false),
            ("[]]", "]", true),
            ("[a-]", "-", true),
            ("?.log", "é.log", true),
            ("[", "[", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} ~ {text}");
        }
    }
}

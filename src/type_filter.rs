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
        kind.is_some_and(|k| self.globs.iter().any(|g| glob(g.as_bytes(), k.as_bytes())))
    }
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes())
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard match with single backtrack point: O(len(pattern) * len(text)).
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == b'?' || Some(c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).unwrap_or(&[]).iter().all(|c| *c == b'*')
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
}

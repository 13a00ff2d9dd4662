//! Model scopes: lists of patterns (an exact model name, `*`, or a prefix ending in `*`) as
//! keys and users carry them. A key serves what its own scope and its owner's both allow, and
//! a user may give a new key only what lies within their own scope.

/// One pattern: `*` is the empty prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

impl<'a> Pattern<'a> {
    fn of(p: &'a str) -> Pattern<'a> {
        match p.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix),
            None => Pattern::Exact(p),
        }
    }

    fn text(self) -> String {
        match self {
            Pattern::Exact(m) => m.to_owned(),
            Pattern::Prefix(p) => format!("{p}*"),
        }
    }

    /// Whether every name `self` matches is matched by `other`.
    fn within(self, other: Pattern<'_>) -> bool {
        match (self, other) {
            (Pattern::Exact(a), Pattern::Exact(b)) => a == b,
            (Pattern::Exact(a) | Pattern::Prefix(a), Pattern::Prefix(b)) => a.starts_with(b),
            (Pattern::Prefix(_), Pattern::Exact(_)) => false,
        }
    }

    /// The names both match, as one pattern (or none).
    fn and(self, other: Pattern<'a>) -> Option<Pattern<'a>> {
        if self.within(other) {
            Some(self)
        } else if other.within(self) {
            Some(other)
        } else {
            None
        }
    }
}

/// The most patterns a scope may hold.
pub const MAX_PATTERNS: usize = 256;

/// Checks a scope given by an admin or a user: a bounded list of model names, each perhaps
/// ending in `*`.
pub fn check(patterns: &[String]) -> Result<(), String> {
    if patterns.len() > MAX_PATTERNS {
        return Err(format!("at most {MAX_PATTERNS} model patterns"));
    }
    patterns
        .iter()
        .filter(|p| p.as_str() != "*")
        .try_for_each(|p| crate::domain::check_model_name(p.strip_suffix('*').unwrap_or(p)))
}

/// The names both scopes allow, as a scope (its patterns in `key`'s order, without repeats).
pub fn intersect(key: &[String], user: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in key {
        for u in user {
            if let Some(both) = Pattern::of(k).and(Pattern::of(u)) {
                let both = both.text();
                if !out.contains(&both) {
                    out.push(both);
                }
            }
        }
    }
    out
}

/// The first of `patterns` that lets through a name `scope` does not allow.
pub fn beyond<'a>(patterns: &'a [String], scope: &[String]) -> Option<&'a str> {
    patterns
        .iter()
        .find(|p| !scope.iter().any(|s| Pattern::of(p).within(Pattern::of(s))))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_key_serves_what_it_and_its_owner_both_allow() {
        let all = v(&["*"]);
        assert_eq!(intersect(&all, &all), all);
        assert_eq!(intersect(&all, &v(&["gpt-4o-mini"])), v(&["gpt-4o-mini"]));
        assert_eq!(
            intersect(&v(&["gpt-4o-mini", "claude-*"]), &all),
            v(&["gpt-4o-mini", "claude-*"])
        );
        assert_eq!(
            intersect(&v(&["openai/*", "smart"]), &v(&["openai/gpt-*"])),
            v(&["openai/gpt-*"])
        );
        assert_eq!(
            intersect(&v(&["openai/gpt-4o"]), &v(&["openai/*", "openai/gpt-4o"])),
            v(&["openai/gpt-4o"]),
            "no repeats"
        );
        assert!(
            intersect(&v(&["claude-*"]), &v(&["gpt-4o-mini"])).is_empty(),
            "nothing in common: the key serves nothing"
        );
        assert!(intersect(&v(&["gpt-4o"]), &v(&["gpt-4o-mini"])).is_empty());
        assert!(intersect(&all, &[]).is_empty());
    }

    #[test]
    fn scopes_are_checked() {
        assert!(check(&v(&["*", "gpt-4o", "openai/*"])).is_ok());
        assert!(check(&v(&["gpt 4o"])).is_err());
        assert!(check(&v(&[""])).is_err());
        assert!(check(&vec!["m".to_string(); MAX_PATTERNS + 1]).is_err());
    }

    #[test]
    fn a_new_key_may_not_go_beyond_its_owner() {
        let scope = v(&["gpt-4o-mini", "claude-*"]);
        assert_eq!(
            beyond(&v(&["gpt-4o-mini", "claude-sonnet-4-5"]), &scope),
            None
        );
        assert_eq!(beyond(&v(&["claude-3*"]), &scope), None);
        assert_eq!(beyond(&v(&["*"]), &scope), Some("*"));
        assert_eq!(beyond(&v(&["gpt-4o-mini*"]), &scope), Some("gpt-4o-mini*"));
        assert_eq!(
            beyond(&v(&["gpt-4o-mini", "gpt-4o"]), &scope),
            Some("gpt-4o")
        );
        assert_eq!(beyond(&v(&["*"]), &v(&["*"])), None);
        assert_eq!(beyond(&[], &[]), None);
    }
}

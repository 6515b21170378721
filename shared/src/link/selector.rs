//! `-l SELECTOR`: a Kubernetes label selector, checked for syntax before it is sent.

use std::fmt;
use std::str::FromStr;

use crate::names;

/// A label selector in kubectl's syntax (`app=web,tier!=db,env in (a,b),!legacy`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(String);

impl Selector {
    /// The selector text, for the `labelSelector` query.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const ACCEPTED: &str =
    "expected a label selector such as app=web, tier!=db, env in (a,b) or !legacy";

/// Splits at commas that are not inside parentheses.
fn requirements(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced parentheses in {s:?}: {ACCEPTED}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {s:?}: {ACCEPTED}"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn check_value(v: &str, whole: &str) -> Result<(), String> {
    names::label_value(v).map_err(|e| format!("{e} in {whole:?}"))
}

fn check_requirement(r: &str, whole: &str) -> Result<(), String> {
    let r = r.trim();
    if r.is_empty() {
        return Err(format!("empty requirement in {whole:?}: {ACCEPTED}"));
    }
    if let Some(key) = r.strip_prefix('!') {
        return names::qualified_key(key.trim());
    }
    for op in ["!=", "==", "="] {
        if let Some((k, v)) = r.split_once(op) {
            names::qualified_key(k.trim())?;
            return check_value(v.trim(), whole);
        }
    }
    let words: Vec<&str> = r.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim_start();
        let (op, set) = if let Some(set) = rest.strip_prefix("notin") {
            ("notin", set)
        } else if let Some(set) = rest.strip_prefix("in") {
            ("in", set)
        } else {
            return Err(format!("{r:?}: {ACCEPTED}"));
        };
        let set = set.trim();
        let inner = set
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| {
                format!("{r:?}: `{op}` takes a parenthesised list, e.g. {key} {op} (a,b)")
            })?;
        names::qualified_key(key)?;
        for v in inner.split(',') {
            check_value(v.trim(), whole)?;
        }
        return Ok(());
    }
    names::qualified_key(r).map_err(|e| format!("{e}: {ACCEPTED}"))
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("empty selector: {ACCEPTED}"));
        }
        for r in requirements(s)? {
            check_requirement(r, s)?;
        }
        Ok(Selector(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        for s in [
            "app=web",
            "app==web",
            "app!=web",
            "app",
            "!legacy",
            "app=web,tier!=db",
            "env in (a,b)",
            "env notin (a, b),app",
            "example.com/tier=web",
            "version=",
        ] {
            assert!(s.parse::<Selector>().is_ok(), "{s}");
        }
    }

    #[test]
    fn refused() {
        for s in [
            "",
            ",",
            "app=web,",
            "a b",
            "env in a,b",
            "env in (a,b",
            "env in (a,b))",
            "=web",
            "app=we b",
            "Bad_/x=y",
            "app=-x",
        ] {
            assert!(s.parse::<Selector>().is_err(), "{s}");
        }
    }
}

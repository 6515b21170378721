//! Kubernetes name, label and annotation syntax, checked before anything is sent.

use std::collections::BTreeMap;

/// A DNS-1123 label: what namespaces and most object names must be.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    check_label(s, false).map_err(|why| format!("invalid name {s:?}: {why} (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"))
}

/// A DNS-1035 label: what Service names must be (starts with a letter).
pub fn dns1035_label(s: &str) -> Result<(), String> {
    check_label(s, true).map_err(|why| format!("invalid name {s:?}: {why} (lower-case letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 characters)"))
}

/// clap's parser of a Service name (a DNS-1035 label).
pub fn parse_service(s: &str) -> Result<String, String> {
    dns1035_label(s).map(|()| s.to_string())
}

fn check_label(s: &str, letter_first: bool) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 63 {
        return Err("too long");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("bad character");
    }
    let first = s.as_bytes()[0];
    if letter_first && !first.is_ascii_lowercase() {
        return Err("must start with a letter");
    }
    if first == b'-' || s.ends_with('-') {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

/// A DNS-1123 subdomain: names of ConfigMaps, WorkloadEntries and label-key prefixes.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("invalid name {s:?}: must be 1-253 characters"));
    }
    for part in s.split('.') {
        check_label(part, false).map_err(|why| {
            format!("invalid name {s:?}: {why} (dot-separated lower-case labels)")
        })?;
    }
    Ok(())
}

fn qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A label or annotation key: `[prefix/]name`.
pub fn qualified_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        dns1123_subdomain(p)
            .map_err(|_| format!("invalid key {key:?}: the prefix must be a DNS subdomain"))?;
    }
    if !qualified_name_part(name) {
        return Err(format!("invalid key {key:?}: name part must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"));
    }
    Ok(())
}

/// A label value: empty, or up to 63 characters like a key's name part.
pub fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || qualified_name_part(v) {
        Ok(())
    } else {
        Err(format!("invalid label value {v:?}: at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"))
    }
}

/// One `key=value` label, as typed after `-l`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(pub String, pub String);

impl std::str::FromStr for Label {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got {s:?}"))?;
        qualified_key(k)?;
        label_value(v)?;
        Ok(Label(k.to_string(), v.to_string()))
    }
}

/// One `key=value` annotation, as typed after `-a` (a value may be anything; `key` alone means empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation(pub String, pub String);

impl std::str::FromStr for Annotation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, v) = s.split_once('=').unwrap_or((s, ""));
        qualified_key(k)?;
        Ok(Annotation(k.to_string(), v.to_string()))
    }
}

/// Collects labels given as repeated flags or comma lists into a map (later wins).
pub fn label_map(labels: &[Label]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|Label(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Collects annotations into a map (later wins).
pub fn annotation_map(annotations: &[Annotation]) -> BTreeMap<String, String> {
    annotations
        .iter()
        .map(|Annotation(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(dns1035_label("productcatalog").is_ok());
        assert!(dns1035_label("a-1").is_ok());
        for bad in ["", "1abc", "Abc", "a_b", "-a", "a-", &"a".repeat(64)] {
            assert!(dns1035_label(bad).is_err(), "{bad}");
        }
        assert!(dns1123_label("1abc").is_ok());
    }

    #[test]
    fn keys_and_values() {
        assert!("app=x".parse::<Label>().is_ok());
        assert!("example.com/tier=web".parse::<Label>().is_ok());
        assert!("version=".parse::<Label>().is_ok());
        for bad in ["noequals", "=v", "a=b c", "Bad_/x=y", "k=-v", "/k=v"] {
            assert!(bad.parse::<Label>().is_err(), "{bad}");
        }
        assert_eq!(
            "note".parse::<Annotation>(),
            Ok(Annotation("note".into(), String::new()))
        );
        assert_eq!(
            "note=hello world".parse::<Annotation>(),
            Ok(Annotation("note".into(), "hello world".into()))
        );
    }

    #[test]
    fn subdomains() {
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1123_subdomain("A.b").is_err());
    }
}

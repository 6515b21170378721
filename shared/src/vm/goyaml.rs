//! YAML the way istioctl writes `mesh.yaml` (sigs.k8s.io/yaml over go-yaml v2), so the file is
//! byte-for-byte what `istioctl x workload entry configure` produces.
//!
//! serde_yaml differs in small ways that matter for a byte-exact file: go-yaml sorts map keys
//! "naturally" (non-letters before letters, digit runs by value), double-quotes strings that would
//! read back as another type (`"true"`, `""`), and single-quotes strings that cannot be plain
//! (`'{"app":"foo"}'`). Long scalars are not folded at 80 columns as go-yaml would; istioctl's
//! own keys never contain spaces, so this only matters for unusual user values.

use std::cmp::Ordering;

use serde_json::Value;

/// Renders a JSON value as go-yaml v2 block YAML.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, v, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, v, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn sorted_keys(v: &Value) -> Vec<&String> {
    let mut keys: Vec<&String> = v
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    keys.sort_by(|a, b| natural_cmp(a, b));
    keys
}

fn write_map(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    for k in sorted_keys(v) {
        let child = &v[k.as_str()];
        out.push_str(&pad);
        out.push_str(&string_scalar(k));
        out.push(':');
        write_child(out, child, indent);
    }
}

fn write_seq(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    for item in v.as_array().into_iter().flatten() {
        out.push_str(&pad);
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The first key goes on the dash line; the rest align under it.
                let mut inner = String::new();
                write_map(&mut inner, item, indent + 2);
                out.push(' ');
                out.push_str(inner.trim_start_matches(' '));
            }
            Value::Array(a) if !a.is_empty() => {
                let mut inner = String::new();
                write_seq(&mut inner, item, indent + 2);
                out.push(' ');
                out.push_str(inner.trim_start_matches(' '));
            }
            other => {
                out.push(' ');
                push_scalar(out, other, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// Writes what follows `key:` — a nested block on the next lines or a scalar after a space.
fn write_child(out: &mut String, child: &Value, indent: usize) {
    match child {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, child, indent + 2);
        }
        // go-yaml does not indent a sequence under a mapping key.
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, child, indent);
        }
        other => {
            out.push(' ');
            push_scalar(out, other, indent + 2);
            out.push('\n');
        }
    }
}

fn push_scalar(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::String(s) if s.contains('\n') => out.push_str(&literal(s, indent)),
        other => out.push_str(&scalar(other)),
    }
}

/// A multi-line string in literal style, as go-yaml v2.3+ writes it.
fn literal(s: &str, indent: usize) -> String {
    let chomp = if s.ends_with("\n\n") {
        "+"
    } else if s.ends_with('\n') {
        ""
    } else {
        "-"
    };
    let mut text = String::from("|");
    if s.starts_with(' ') {
        text.push('2');
    }
    text.push_str(chomp);
    let pad = " ".repeat(indent);
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        text.push('\n');
        if !line.is_empty() {
            text.push_str(&pad);
            text.push_str(line);
        }
    }
    text
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_scalar(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// A one-line string: plain when go-yaml allows it, else quoted the way go-yaml chooses.
fn string_scalar(s: &str) -> String {
    if resolves_to_other_type(s) {
        return double_quoted(s);
    }
    if plain_allowed(s) {
        return s.to_string();
    }
    if s.chars().any(|c| !is_printable(c)) {
        return double_quoted(s);
    }
    format!("'{}'", s.replace('\'', "''"))
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if !is_printable(c) => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~') || (c as u32 >= 0xA0 && c != '\u{FEFF}')
}

/// go-yaml's resolve table: strings that a reader would take as null, bool, int or float.
fn resolves_to_other_type(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true",
        "True", "TRUE", "n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return false;
    }
    let plain = s.replace('_', "");
    is_int(&plain) || is_float(&plain) || is_base60_float(s)
}

fn is_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if let Some(hex) = body.strip_prefix("0x") {
        return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    if let Some(bin) = body.strip_prefix("0b") {
        return !bin.is_empty() && bin.bytes().all(|b| b == b'0' || b == b'1');
    }
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit())
}

fn is_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mut dots = 0;
    for b in mantissa.bytes() {
        match b {
            b'.' => dots += 1,
            b if b.is_ascii_digit() => {}
            _ => return false,
        }
    }
    if dots > 1 || !mantissa.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

/// `1:20` style sexagesimal numbers, which YAML 1.1 readers take as floats.
fn is_base60_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int_part, _) = body.split_once('.').unwrap_or((body, ""));
    let mut parts = int_part.split(':');
    let Some(head) = parts.next() else {
        return false;
    };
    if head.is_empty()
        || !head.as_bytes()[0].is_ascii_digit()
        || !head.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return false;
    }
    let mut any = false;
    for p in parts {
        any = true;
        if p.is_empty()
            || p.len() > 2
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() == 2 && p.as_bytes()[0] > b'5')
        {
            return false;
        }
    }
    any
}

/// libyaml's analysis of whether a scalar may be written plain in block context.
fn plain_allowed(s: &str) -> bool {
    if s.is_empty() || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    if chars[0] == ' ' || chars[chars.len() - 1] == ' ' {
        return false;
    }
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_blank = next.is_none_or(|n| n == ' ' || n == '\t');
        if !is_printable(c) || c == '\n' || c == '\t' {
            return false;
        }
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => return false,
                '?' | ':' | '-' if followed_by_blank => return false,
                _ => {}
            }
        } else {
            if c == ':' && followed_by_blank {
                return false;
            }
            if c == '#' && chars[i - 1] == ' ' {
                return false;
            }
        }
    }
    true
}

/// go-yaml's key order: rune by rune; non-letters before letters; digit runs by numeric value.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let mut an: u128 = 0;
        let mut bn: u128 = 0;
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .saturating_mul(10)
                .saturating_add(u128::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .saturating_mul(10)
                .saturating_add(u128::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_istioctls_golden_mesh_yaml() {
        // Upstream istioctl/pkg/workload/testdata/vmconfig/ipv4/mesh.yaml.golden.
        let v = json!({"defaultConfig": {
            "discoveryAddress": "istiod-rev-1.istio-system.svc:15012",
            "proxyMetadata": {
                "CANONICAL_REVISION": "latest", "CANONICAL_SERVICE": "foo",
                "CLUSTER_MESH_CONFIG_VALUE": "foo", "IDENTITY_PATH_PREFIX": "",
                "ISTIO_META_CLUSTER_ID": "Kubernetes", "ISTIO_META_DNS_CAPTURE": "true",
                "ISTIO_META_MESH_ID": "", "ISTIO_META_NETWORK": "", "ISTIO_META_WORKLOAD_NAME": "foo",
                "ISTIO_METAJSON_LABELS": "{\"service.istio.io/canonical-name\":\"foo\",\"service.istio.io/canonical-revision\":\"latest\"}",
                "POD_NAMESPACE": "bar", "PROXY_CONFIG_ANNOT_VALUE": "bar",
                "SERVICE_ACCOUNT": "vm-serviceaccount", "TRUST_DOMAIN": ""
            },
            "readinessProbe": {"httpGet": {"port": 8080}}
        }});
        let want = "defaultConfig:\n  discoveryAddress: istiod-rev-1.istio-system.svc:15012\n  proxyMetadata:\n    CANONICAL_REVISION: latest\n    CANONICAL_SERVICE: foo\n    CLUSTER_MESH_CONFIG_VALUE: foo\n    IDENTITY_PATH_PREFIX: \"\"\n    ISTIO_META_CLUSTER_ID: Kubernetes\n    ISTIO_META_DNS_CAPTURE: \"true\"\n    ISTIO_META_MESH_ID: \"\"\n    ISTIO_META_NETWORK: \"\"\n    ISTIO_META_WORKLOAD_NAME: foo\n    ISTIO_METAJSON_LABELS: '{\"service.istio.io/canonical-name\":\"foo\",\"service.istio.io/canonical-revision\":\"latest\"}'\n    POD_NAMESPACE: bar\n    PROXY_CONFIG_ANNOT_VALUE: bar\n    SERVICE_ACCOUNT: vm-serviceaccount\n    TRUST_DOMAIN: \"\"\n  readinessProbe:\n    httpGet:\n      port: 8080\n";
        assert_eq!(to_string(&v), want);
    }

    #[test]
    fn sequences_and_quoting() {
        let v = json!({"a": ["x", {"b": 1, "c": "yes"}], "d": [], "e": {}, "f": "1.5", "g": "- x", "h": "it's: odd"});
        assert_eq!(
            to_string(&v),
            "a:\n- x\n- b: 1\n  c: \"yes\"\nd: []\ne: {}\nf: \"1.5\"\ng: '- x'\nh: 'it''s: odd'\n"
        );
    }

    #[test]
    fn natural_order() {
        let mut keys = vec![
            "a10",
            "a9",
            "a_b",
            "aB",
            "a2x",
            "ISTIO_METAJSON_LABELS",
            "ISTIO_META_X",
        ];
        keys.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            keys,
            vec![
                "ISTIO_META_X",
                "ISTIO_METAJSON_LABELS",
                "a_b",
                "a2x",
                "a9",
                "a10",
                "aB"
            ]
        );
    }

    #[test]
    fn type_lookalikes_are_double_quoted() {
        for s in [
            "true", "", "null", "0x1F", "12", "-3", "1e3", "1:20", ".inf", "on",
        ] {
            assert!(string_scalar(s).starts_with('"'), "{s}");
        }
        for s in ["istiod.istio-system.svc:15012", "1.2.3", "v1", "a b"] {
            assert_eq!(string_scalar(s), s);
        }
    }
}

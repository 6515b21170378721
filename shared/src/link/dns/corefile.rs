//! The Corefile text: the marked `global:53` server block setup writes, finding it again, and
//! reading where any `global` block forwards to.

use std::net::IpAddr;

const BEGIN: &str = "# kubectl-mesh: begin global stub domain (kubectl mesh-link --setup-dns)";
const END: &str = "# kubectl-mesh: end global stub domain";

/// The server block `--setup-dns` adds.
pub fn block(ip: IpAddr) -> String {
    format!("{BEGIN}\nglobal:53 {{\n    errors\n    cache 30\n    forward . {ip}\n}}\n{END}\n")
}

/// Splits a Corefile into (text without our block, our block if present).
pub(super) fn split_block(corefile: &str) -> (String, Option<String>) {
    let Some(start) = corefile.find(BEGIN) else {
        return (corefile.to_string(), None);
    };
    let Some(end_rel) = corefile[start..].find(END) else {
        return (corefile.to_string(), None);
    };
    let mut end = start + end_rel + END.len();
    if corefile[end..].starts_with('\n') {
        end += 1;
    }
    let ours = corefile[start..end].to_string();
    let mut before = corefile[..start].to_string();
    // Setup put one blank line before the block; take it out again.
    if before.ends_with("\n\n") {
        before.pop();
    }
    (format!("{before}{}", &corefile[end..]), Some(ours))
}

/// Whether a Corefile has a server block for `global` that kubectl-mesh did not write.
pub(super) fn has_foreign_global(corefile: &str) -> bool {
    corefile.lines().map(str::trim_start).any(|l| {
        l.strip_prefix("global")
            .is_some_and(|rest| rest.starts_with([':', ' ', '{', '.']) || rest.is_empty())
    })
}

/// Where a `global` block of a Corefile forwards to.
pub(super) fn corefile_target(corefile: &str) -> Option<Vec<String>> {
    let mut in_global = false;
    let mut found = None;
    for line in corefile.lines().map(str::trim) {
        if line.starts_with("global") && line.ends_with('{') {
            in_global = true;
            continue;
        }
        if in_global && line.starts_with('}') {
            in_global = false;
        }
        if in_global {
            let mut words = line.split_whitespace();
            if matches!(words.next(), Some("forward" | "proxy")) && words.next() == Some(".") {
                found = Some(
                    words
                        .map(|w| w.trim_start_matches("dns://").to_string())
                        .collect(),
                );
            }
        }
    }
    found
}

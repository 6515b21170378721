//! What `kubectl mesh-vm` prints besides the objects and the status table (`entries.rs`): the
//! token's expiry in words and the result lines of `files` and `refresh`.

use std::path::PathBuf;

use crate::time;

/// `expires 2026-01-01T01:00:00Z (in 1h)`, or what is known of it.
pub(super) fn expiry_words(expires: &str) -> String {
    match time::parse_rfc3339(expires) {
        Some(t) => format!(
            "expires {expires} (in {})",
            time::span_nearest(t - time::now())
        ),
        None if expires.is_empty() => "expiry unknown".into(),
        None => format!("expires {expires}"),
    }
}

/// `istio-token renewed: ...`, with how long the old token (expiring at `old_exp`) had left.
pub(super) fn token_renewed(expires: &str, old_exp: Option<i64>) -> String {
    let was = match old_exp {
        Some(t) if t <= time::now() => {
            format!("; the old one expired {} ago", time::span(time::now() - t))
        }
        Some(t) => format!("; the old one had {} left", time::span(t - time::now())),
        None => String::new(),
    };
    format!("istio-token renewed: {}{was}", expiry_words(expires))
}

/// What `refresh` did to the hosts file: `new` is `None` when the gateway has no address.
pub(super) fn hosts_line(new: Option<&str>, old: Option<&str>) -> String {
    match (new, old) {
        (None, _) => "hosts left as it was: the gateway has no address".to_string(),
        (Some(new), Some(old)) if new == old => format!("hosts unchanged: {}", new.trim_end()),
        (Some(new), Some(old)) if !old.trim().is_empty() => {
            format!("hosts changed: {} (was {})", new.trim_end(), old.trim_end())
        }
        (Some(new), _) => format!("hosts written: {}", new.trim_end()),
    }
}

/// `PATH written`, one line per file.
pub(super) fn written(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("{} written\n", p.display()))
        .collect()
}

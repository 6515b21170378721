//! Durations as users type them (`30s`, `2m`, `1h30m`, `500ms`, a bare number of seconds).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A parsed, non-negative duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// The longest duration accepted anywhere: a year. Timers and deadlines past it overflow
/// `Instant` arithmetic (which aborts the process), and no timeout, wait or interval needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ACCEPTED: &str =
            "expected a duration such as 30s, 2m, 1h30m, 500ms or a number of seconds";
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("empty duration: {ACCEPTED}"));
        }
        let out_of_range = || {
            format!("duration {s:?} is out of range: the accepted range is 0s to 8760h (a year)")
        };
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u64>() {
                Ok(secs) if secs <= MAX_DURATION.as_secs() => Ok(Self(Duration::from_secs(secs))),
                _ => Err(out_of_range()),
            };
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("invalid duration {s:?}: {ACCEPTED}"));
            }
            if digits > 12 {
                return Err(out_of_range());
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("invalid duration {s:?}: {ACCEPTED}"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
            let part = match &rest[..unit_len] {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                _ => return Err(format!("invalid duration {s:?}: {ACCEPTED}")),
            };
            rest = &rest[unit_len..];
            total = total
                .checked_add(part)
                .filter(|t| *t <= MAX_DURATION)
                .ok_or_else(out_of_range)?;
        }
        Ok(Self(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let ms = self.0.subsec_millis();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if s > 0 {
            out.push_str(&format!("{s}s"));
        }
        // Milliseconds are printed too, so that what the parser accepts prints back unchanged.
        if ms > 0 {
            out.push_str(&format!("{ms}ms"));
        }
        if out.is_empty() {
            out.push_str("0s");
        }
        f.write_str(&out)
    }
}

/// The age column of `kubectl get`: `45s`, `12m`, `5h`, `3d`.
pub fn age(elapsed: Duration) -> String {
    let s = elapsed.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Age of an object from its `metadata.creationTimestamp`, as `kubectl get` shows it; `<unknown>`
/// when the timestamp is missing or malformed.
pub fn age_of(obj: &serde_json::Value) -> String {
    let created = obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|ts| ts.parse::<jiff::Timestamp>().ok());
    age_at(created)
}

/// Age of an object created at `created`, as `kubectl get` shows it; `<unknown>` without it.
pub fn age_at(created: Option<jiff::Timestamp>) -> String {
    let Some(t) = created else {
        return "<unknown>".to_string();
    };
    let secs = jiff::Timestamp::now()
        .as_second()
        .saturating_sub(t.as_second())
        .max(0);
    age(Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<Duration, String> {
        s.parse::<HumanDuration>().map(|h| h.0)
    }

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(d("30"), Ok(Duration::from_secs(30)));
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1x", "-5s", "1.5h", "m", "10s5", "99999999999h"] {
            assert!(d(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn refuses_what_would_overflow_a_deadline() {
        for huge in [
            "9999999999999999999",
            "99999999999999999999",
            "8761h",
            "31536001",
            "999999999999h",
            "1000000000000000ms",
        ] {
            let err = d(huge).expect_err(huge);
            assert!(
                err.contains("out of range") && err.contains("8760h"),
                "{huge}: {err}"
            );
        }
        assert_eq!(d("8760h"), Ok(MAX_DURATION));
        assert_eq!(d("31536000"), Ok(MAX_DURATION));
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(
            HumanDuration(Duration::from_secs(5400)).to_string(),
            "1h30m"
        );
        assert_eq!(
            HumanDuration(Duration::from_millis(200)).to_string(),
            "200ms"
        );
        assert_eq!(HumanDuration(Duration::ZERO).to_string(), "0s");
        assert_eq!(
            HumanDuration(Duration::from_millis(1001)).to_string(),
            "1s1ms"
        );
    }

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(age(Duration::from_secs(5)), "5s");
        assert_eq!(age(Duration::from_secs(600)), "10m");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(age(Duration::from_secs(3 * 86_400)), "3d");
    }
}

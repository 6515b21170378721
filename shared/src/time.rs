//! Time as the suite uses it: RFC 3339 timestamps as the API server writes them (parsed by
//! jiff), now in Unix seconds, and ages and spans in kubectl's words.

use std::time::Duration;

/// Seconds since the epoch of `2026-01-01T00:00:00Z`, `...00.123456789Z` or `...00+02:00`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    // jiff also takes a space for the `T` and a lower-case `z`, as RFC 3339 allows.
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// `kubectl get`'s AGE of a timestamp, or `<unknown>`.
pub fn age_of(timestamp: &str, now: i64) -> String {
    match parse_rfc3339(timestamp) {
        Some(t) => crate::duration::age(Duration::from_secs(now.saturating_sub(t).max(0) as u64)),
        None => "<unknown>".into(),
    }
}

/// A duration in words for messages: `59m`, `1h`, `2h30m`, `3d`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0) as u64;
    if s >= 2 * 86_400 {
        return format!("{}d", s / 86_400);
    }
    crate::duration::HumanDuration(Duration::from_secs(s - s % 60)).to_string()
}

/// [`span`] rounded to the nearest minute, for a token just minted: the API server writes its
/// expiry truncated to the second and the answer takes a moment to arrive, so a 2h token has
/// 7199.x s left when it is printed, which is still "2h", not "1h59m".
pub fn span_nearest(secs: i64) -> String {
    span(secs.saturating_add(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_servers_write() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00.123456789Z"),
            Some(1_767_229_200)
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T02:00:00+01:00"),
            Some(1_767_229_200)
        );
        for bad in [
            "",
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn ages_and_spans() {
        let t = 1_767_225_600;
        assert_eq!(age_of("2026-01-01T00:00:00Z", t + 300), "5m");
        assert_eq!(age_of("garbage", t), "<unknown>");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(3599), "59m");
        assert_eq!(span(5 * 86_400), "5d");
        assert_eq!(span_nearest(7199), "2h");
        assert_eq!(span_nearest(7170), "2h");
        assert_eq!(span_nearest(7169), "1h59m");
    }
}

//! RFC 3339 timestamps as the API server writes them, to compute ages and token lifetimes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch of `2026-01-01T00:00:00Z`, `...00.123456789Z` or `...00+02:00`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rb[0] == b'-' { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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

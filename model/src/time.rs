//! Event time parsing. Times are stored as microseconds since the Unix epoch, UTC.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Numbers above this are taken as milliseconds rather than seconds (year 5138 in seconds).
const MILLIS_THRESHOLD: f64 = 1e11;

/// Parses an RFC3339 timestamp (or one without offset, taken as UTC) to Unix microseconds.
pub fn parse_time_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    // Common near-misses: a space instead of `T`, no offset at all (taken as UTC).
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    None
}

/// Converts Unix seconds (with optional fraction) to microseconds; values above 10^11 are
/// milliseconds.
pub fn parse_time_number(n: f64) -> Option<i64> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let micros = if n > MILLIS_THRESHOLD {
        n * 1_000.0
    } else {
        n * 1_000_000.0
    };
    if micros > i64::MAX as f64 {
        return None;
    }
    Some(micros.round() as i64)
}

/// Formats microseconds as RFC3339 UTC with six fractional digits.
pub fn format_micros(us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(us) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => us.to_string(),
    }
}

/// The current time in Unix microseconds.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let want = 1_700_000_000_000_000;
        assert_eq!(parse_time_str("2023-11-14T22:13:20Z"), Some(want));
        assert_eq!(parse_time_str("2023-11-14T22:13:20.000000Z"), Some(want));
        assert_eq!(parse_time_str("2023-11-14T23:13:20+01:00"), Some(want));
        assert_eq!(parse_time_str("2023-11-14T22:13:20"), Some(want));
        assert_eq!(
            parse_time_str("2023-11-14 22:13:20.5"),
            Some(want + 500_000)
        );
        assert_eq!(parse_time_str("yesterday"), None);
        assert_eq!(parse_time_number(1_700_000_000.0), Some(want));
        assert_eq!(parse_time_number(1_700_000_000_000.0), Some(want));
        assert_eq!(parse_time_number(1_700_000_000.25), Some(want + 250_000));
        assert_eq!(parse_time_number(f64::NAN), None);
        assert_eq!(format_micros(want + 5), "2023-11-14T22:13:20.000005Z");
    }
}

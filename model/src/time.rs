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

/// The current time in Unix microseconds, from the system clock. Components whose behaviour
/// depends on the time take a [`Clock`] instead, so tests and replays can set it.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// Where a component reads the time of day: the system clock, or one that starts at a given
/// instant (and runs at real speed from there, or only when told). Every decision that
/// depends on the time (receive time of events without one, query windows relative to now,
/// retention cuts, which compaction windows are closed, alert windows) reads it here, so a
/// test can fix the hour it runs at.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<Source>);

enum Source {
    System,
    /// `start_us` at `at`, then real time.
    From {
        start_us: i64,
        at: std::time::Instant,
    },
    /// Only [`Clock::set`] and [`Clock::advance`] move it.
    Manual(std::sync::atomic::AtomicI64),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Source::System => f.write_str("Clock::system"),
            Source::From { start_us, .. } => write!(f, "Clock::starting_at({start_us})"),
            Source::Manual(_) => write!(f, "Clock::manual({})", self.now_micros()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(std::sync::Arc::new(Source::System))
    }

    /// A clock that reads `start_us` now and runs at real speed from there.
    pub fn starting_at(start_us: i64) -> Self {
        Self(std::sync::Arc::new(Source::From {
            start_us,
            at: std::time::Instant::now(),
        }))
    }

    /// A clock that reads `start_us` until it is set or advanced.
    pub fn manual(start_us: i64) -> Self {
        Self(std::sync::Arc::new(Source::Manual(
            std::sync::atomic::AtomicI64::new(start_us),
        )))
    }

    /// The current time in Unix microseconds.
    pub fn now_micros(&self) -> i64 {
        match &*self.0 {
            Source::System => now_micros(),
            Source::From { start_us, at } => {
                start_us.saturating_add(i64::try_from(at.elapsed().as_micros()).unwrap_or(i64::MAX))
            }
            Source::Manual(us) => us.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Sets a manual clock (other clocks ignore it).
    pub fn set(&self, us: i64) {
        if let Source::Manual(now) = &*self.0 {
            now.store(us, std::sync::atomic::Ordering::Release);
        }
    }

    /// Moves a manual clock forward (other clocks ignore it).
    pub fn advance(&self, by: std::time::Duration) {
        if let Source::Manual(now) = &*self.0 {
            now.fetch_add(
                i64::try_from(by.as_micros()).unwrap_or(i64::MAX),
                std::sync::atomic::Ordering::AcqRel,
            );
        }
    }

    /// Whether this is the system clock.
    pub fn is_system(&self) -> bool {
        matches!(&*self.0, Source::System)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_start_where_told() {
        let fixed = Clock::starting_at(1_000_000);
        let t = fixed.now_micros();
        assert!((1_000_000..1_000_000 + 60_000_000).contains(&t), "{t}");
        let manual = Clock::manual(5);
        manual.advance(std::time::Duration::from_micros(7));
        assert_eq!(manual.now_micros(), 12);
        manual.set(3);
        assert_eq!(manual.now_micros(), 3);
        assert!(Clock::system().now_micros() > 1_700_000_000_000_000);
    }

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

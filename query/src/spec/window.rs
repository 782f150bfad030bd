//! The time window of a spec (`time_range`, `start_time`, `end_time`), and the bucket width
//! of RATE_* and CONCURRENCY without `granularity`.

use super::QuerySpec;
use crate::{QueryError, Result};

/// Seconds of the default time range (the last 2 hours).
const DEFAULT_TIME_RANGE: i64 = 7200;

/// Bucket width of RATE_* and CONCURRENCY when the spec has no `granularity`: about 100
/// buckets over the time range, whole seconds, at least one.
pub fn auto_granularity(start_us: i64, end_us: i64) -> i64 {
    let secs = (end_us.saturating_sub(start_us).max(1) as f64 / 1e6 / 100.0)
        .ceil()
        .max(1.0) as i64;
    secs.saturating_mul(1_000_000)
}

/// The spec's time window `[start, end)` in Unix microseconds, at `now_us`.
pub fn window(spec: &QuerySpec, now_us: i64) -> Result<(i64, i64)> {
    let secs = |s: f64| -> Result<i64> {
        eventide_model::time::parse_time_number(s)
            .ok_or_else(|| QueryError::bad(format!("time {s} is not a valid Unix time")))
    };
    let range = spec.time_range.map(|r| r.saturating_mul(1_000_000));
    if let Some(r) = range
        && r <= 0
    {
        return Err(QueryError::bad("time_range must be positive"));
    }
    let (start, end) = match (spec.start_time, spec.end_time, range) {
        (Some(s), Some(e), _) => (secs(s)?, secs(e)?),
        (Some(s), None, Some(r)) => (secs(s)?, secs(s)?.saturating_add(r)),
        (Some(s), None, None) => (secs(s)?, now_us),
        (None, Some(e), r) => {
            let e = secs(e)?;
            (
                e.saturating_sub(r.unwrap_or(DEFAULT_TIME_RANGE * 1_000_000)),
                e,
            )
        }
        (None, None, r) => (
            now_us.saturating_sub(r.unwrap_or(DEFAULT_TIME_RANGE * 1_000_000)),
            now_us,
        ),
    };
    if end <= start {
        return Err(QueryError::bad("end_time must be after start_time"));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let now = 10_000_000_000;
        let spec = |s: Option<f64>, e: Option<f64>, r: Option<i64>| QuerySpec {
            start_time: s,
            end_time: e,
            time_range: r,
            ..QuerySpec::default()
        };
        assert_eq!(
            window(&spec(None, None, None), now).unwrap(),
            (now - 7_200_000_000, now)
        );
        assert_eq!(
            window(&spec(Some(100.0), Some(200.0), None), now).unwrap(),
            (100_000_000, 200_000_000)
        );
        assert_eq!(
            window(&spec(Some(100.0), None, Some(10)), now).unwrap(),
            (100_000_000, 110_000_000)
        );
        assert_eq!(
            window(&spec(None, Some(200.0), Some(10)), now).unwrap(),
            (190_000_000, 200_000_000)
        );
        assert!(window(&spec(Some(200.0), Some(100.0), None), now).is_err());
    }
}

//! Whether a failed deploy recovered: the fix (a later deploy or rollback marker, or a point
//! without one) and when the service looked healthy again. Counts alone, like
//! [`deploy_stats`](crate::deploy_stats), so the replay benchmark runs the server's code.
//!
//! A failed check watches for the fix ([`recovery`]): from each later deploy or rollback marker
//! of the service, and from every [`RECOVERY_STEP_S`]-second point of the last minute (a
//! fix with no marker: a flag turned off), a Wald test of "still broken" (the rate halfway
//! between the null and the failed rate) against "healthy" (the baseline's rate) on all of
//! the service's events from that point on; recovered when every failed comparison passes it.
//! The chance of calling a still-broken service recovered is at most `recovery_false_rate`:
//! half of it is split over the markers, half over the points without one.

use serde::{Deserialize, Serialize};

use crate::conventions::DeployCheckSettings;
use crate::deploy_stats::{Bucket, Comparison, end_s};
use crate::sequential::log_lr_fall;

/// Candidate fix points without a marker are this many seconds apart.
pub const RECOVERY_STEP_S: i64 = 5;
/// ...over this many seconds back from now.
pub const RECOVERY_LOOKBACK_S: i64 = 60;

/// Where a fix may have started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixPoint {
    /// Unix second.
    pub time: i64,
    /// The later deploy or rollback marker, if the fix is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_id: Option<String>,
}

/// Candidate fix points: the later markers, then every [`RECOVERY_STEP_S`] seconds of the last
/// [`RECOVERY_LOOKBACK_S`] (not before the failure).
pub fn fix_points(markers: &[(i64, String)], failed_at: i64, now_s: i64) -> Vec<FixPoint> {
    let mut out: Vec<FixPoint> = markers
        .iter()
        .map(|(t, id)| FixPoint {
            time: *t,
            marker_id: Some(id.clone()),
        })
        .collect();
    let first = (now_s - RECOVERY_LOOKBACK_S).max(failed_at);
    let mut t = first - first.rem_euclid(RECOVERY_STEP_S) + RECOVERY_STEP_S;
    while t < now_s {
        out.push(FixPoint {
            time: t,
            marker_id: None,
        });
        t += RECOVERY_STEP_S;
    }
    out
}

/// A seen fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    pub fix: FixPoint,
    /// The end of the bucket of data at which every failed comparison looked healthy again
    /// (Unix seconds, rounded up).
    pub recovered_at: i64,
}

/// Whether the service recovered from the failed comparisons, given its events (all versions)
/// per bucket with, for each failed comparison in order, the hits (errors or slower events).
/// `buckets[i].slower[j]` is comparison `j`'s hit count; `events` / `latency_events` the trials.
pub fn recovery(
    s: &DeployCheckSettings,
    failed: &[Comparison],
    fixes: &[FixPoint],
    buckets: &[Bucket],
) -> Option<Recovery> {
    if failed.is_empty() {
        return None;
    }
    // Half the level goes to the markers (a rollback is where a fix is expected), half to the
    // points without one; each half split evenly (Bonferroni), and over the comparisons.
    let with_marker = fixes.iter().filter(|f| f.marker_id.is_some()).count();
    let without = fixes.len() - with_marker;
    let halves = if with_marker > 0 && without > 0 {
        2.0
    } else {
        1.0
    };
    let needed_for = |f: &FixPoint| {
        let share = if f.marker_id.is_some() {
            with_marker
        } else {
            without
        };
        (halves * (share.max(1) * failed.len()) as f64 / s.recovery_false_rate).ln()
    };
    let mut best: Option<Recovery> = None;
    for fix in fixes {
        let needed = needed_for(fix);
        let mut at: Vec<Option<i64>> = vec![None; failed.len()];
        let mut sums = vec![(0u64, 0u64); failed.len()];
        for b in buckets.iter().filter(|b| b.start_ms >= fix.time * 1000) {
            for (j, c) in failed.iter().enumerate() {
                let n = if c.threshold_index.is_none() {
                    b.events
                } else {
                    b.latency_events
                };
                sums[j].0 += n;
                sums[j].1 += b.slower.get(j).copied().unwrap_or(0);
                let failed_rate = c.hits as f64 / (c.events.max(1)) as f64;
                let p_bad = (c.null_rate + failed_rate.max(c.null_rate)) / 2.0;
                let llr = log_lr_fall(sums[j].1 as f64, sums[j].0 as f64, p_bad, c.healthy_rate);
                if at[j].is_none() && llr >= needed {
                    at[j] = Some(end_s(b));
                }
            }
            if at.iter().all(Option::is_some) {
                break;
            }
        }
        if let Some(done) = at.iter().copied().collect::<Option<Vec<i64>>>() {
            let recovered_at = done.into_iter().max().unwrap_or(fix.time);
            if best.as_ref().is_none_or(|b| recovered_at < b.recovered_at) {
                best = Some(Recovery {
                    fix: fix.clone(),
                    recovered_at,
                });
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy_stats::decide;
    use crate::deploy_stats::fixtures::{base, obs, seconds};

    #[test]
    fn recovery_from_a_rollback_marker_and_not_while_still_broken() {
        let s = DeployCheckSettings::default();
        let b = [base(120_000, 0.05)];
        let mut buckets = seconds(1000, 30, 0.10, [0.0; 3]);
        let d = decide(&s, 1000, 1030, &obs(&b, &[], &buckets));
        let failed: Vec<Comparison> = d.comparisons.into_iter().filter(|c| c.regressed).collect();
        assert_eq!(failed.len(), 1);
        // Service-wide buckets carry the failed comparison's hits in `slower[0]`.
        let as_hits = |v: Vec<Bucket>| -> Vec<Bucket> {
            v.into_iter()
                .map(|mut b| {
                    b.slower = vec![b.errors];
                    b
                })
                .collect()
        };
        let fixes = fix_points(&[(1030, "rollback".into())], 1010, 1030);
        assert!(recovery(&s, &failed, &fixes, &as_hits(buckets.clone())).is_none());
        buckets.extend(seconds(1030, 20, 0.05, [0.0; 3]));
        let fixes = fix_points(&[(1030, "rollback".into())], 1010, 1050);
        let r = recovery(&s, &failed, &fixes, &as_hits(buckets)).unwrap();
        assert_eq!(r.fix.marker_id.as_deref(), Some("rollback"));
        assert!(
            r.recovered_at <= 1036,
            "recovered {} s after",
            r.recovered_at - 1030
        );
    }
}

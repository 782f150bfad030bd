//! The decision of a deploy check, from counts alone: no I/O, so the replay benchmark
//! (`eventide-bench deploys`) runs exactly the code the server runs.
//!
//! # Inputs
//! - [`Baseline`]s: the service's events in the window before the deploy (`before`) and, where
//!   the old version still runs beside the new one, the old version's events since the deploy
//!   (`old_version`).
//! - [`Bucket`]s: the new version's events after the deploy, one per [`BUCKET_MS`], with the number of
//!   errors and, for each latency [`Threshold`], the number slower than it.
//!
//! # The tests
//! Each comparison is a [`sequential`](crate::sequential) rise test on a rate, looked at after
//! every bucket of data:
//! - **Error rate**: the share of stored events that are errors. The null rate is the larger
//!   of the baseline's rate bounded `z` standard errors up (Wilson), `u`, and its rate `p`
//!   raised by the tolerances: `max(u, p·(1 + error_rate_tolerance), p +
//!   min_error_rate_increase)`. The bound covers "nothing changed"; the tolerances keep small
//!   real rises from failing a deploy, and do not compound with the bound.
//! - **Latency p50/p95/p99**: the share of new events slower than the baseline's percentile
//!   times `1 + latency_tolerance`. Without a regression that share is at most `1 − q` (plus
//!   the percentile's own sampling error, bounded `z` standard errors up).
//!
//! A comparison fails when its log likelihood ratio reaches `ln(K/(s·α))`, `α` =
//! `false_positive_rate`: a share `s` = [`ERROR_SHARE`] (⅔) of `α` goes to the error-rate
//! comparisons and the rest to the latency ones, `K` the comparisons of that kind (Bonferroni;
//! all of `α` to one kind when the other is absent). So, for independent events and a deploy
//! that changes nothing, the chance that the check *ever* fails is at most `α + m·Φ(−z)`, `m` the baseline figures estimated
//! (at most 8); at the defaults (α = 1 %, z = 3.3) at most 1.4 %, and far less in practice:
//! the null is a rise *beyond* the tolerances, so a deploy that changes nothing sits well
//! inside it (0 of 256 clean deploys failed in `eventide-bench deploys --deploys 512`).
//!
//! The first `warmup_events` new events (and the first `warmup_seconds`) are left out: the
//! warm-up ends with the first bucket (a quarter second) by which that many had arrived.
//!
//! What happens after a failure is [`deploy_recovery`](crate::deploy_recovery).

use serde::{Deserialize, Serialize};

use crate::conventions::DeployCheckSettings;
use crate::deploys::Verdict;
use crate::sequential::{log_lr_rise, wilson_upper};

/// The percentiles compared.
pub const QUANTILES: [(f64, &str); 3] = [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")];

/// The share of `false_positive_rate` given to the error-rate comparisons when latency is
/// compared too: error rate is what most regressions move, and what the check must see first.
pub const ERROR_SHARE: f64 = 2.0 / 3.0;

/// Events are counted in buckets this long (ms).
pub const BUCKET_MS: i64 = 250;

/// One side a deploy is compared with (or the new version's summary, for display).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Stored events.
    pub events: u64,
    /// Stored events that are errors.
    pub errors: u64,
    /// Events represented (sample rates summed).
    pub weight: f64,
    /// Errors represented (sample rates summed).
    pub weighted_errors: f64,
    /// Events with a latency value.
    pub latency_events: u64,
    /// p50, p95, p99 of the latency.
    pub quantiles: [Option<f64>; 3],
}

impl Baseline {
    /// The error rate as users see it (sample-rate weighted).
    pub fn error_rate(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.weighted_errors / self.weight)
    }
}

/// One [`BUCKET_MS`] of the new version's events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// Where it starts, Unix milliseconds (a multiple of [`BUCKET_MS`]).
    pub start_ms: i64,
    pub events: u64,
    pub errors: u64,
    pub latency_events: u64,
    /// Events slower than each threshold, in the order of the thresholds.
    pub slower: Vec<u64>,
}

/// A latency value the new events are counted against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Index into the baselines.
    pub baseline: usize,
    /// Index into [`QUANTILES`].
    pub quantile: usize,
    /// The baseline's percentile times `1 + latency_tolerance`.
    pub value: f64,
}

/// The latency thresholds of the baselines that have enough events.
pub fn thresholds(s: &DeployCheckSettings, baselines: &[Baseline]) -> Vec<Threshold> {
    let mut out = Vec::new();
    for (i, b) in baselines.iter().enumerate() {
        if b.events < s.min_events {
            continue;
        }
        for (j, (q, _)) in QUANTILES.iter().enumerate() {
            let Some(v) = b.quantiles[j].filter(|v| v.is_finite()) else {
                continue;
            };
            if (b.latency_events as f64) * (1.0 - q) < 5.0 {
                continue;
            }
            out.push(Threshold {
                baseline: i,
                quantile: j,
                value: v * (1.0 + s.latency_tolerance),
            });
        }
    }
    out
}

/// One comparison's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `error_rate`, `latency_p50`, `latency_p95`, `latency_p99`.
    pub metric: String,
    /// `before` or `old_version`.
    pub against: String,
    /// The baseline's figure: its error rate, or its percentile (ms).
    pub baseline: f64,
    /// The new version's figure, where known.
    pub deployed: Option<f64>,
    /// The figure beyond which it is a regression: the null error rate, or the latency value
    /// the new events are counted against.
    pub threshold: f64,
    /// The largest share of hits (errors, or events slower than the threshold) that is no
    /// regression.
    pub null_rate: f64,
    /// The baseline's share of hits: what a healthy service shows.
    pub healthy_rate: f64,
    /// New events compared (after the warm-up) and the hits among them.
    pub events: u64,
    pub hits: u64,
    /// Evidence so far (natural log of the likelihood ratio), and what a verdict needs.
    pub log_lr: f64,
    pub log_lr_needed: f64,
    pub regressed: bool,
    /// The end of the bucket of data at which the evidence first sufficed (Unix seconds,
    /// rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<i64>,
    /// For a latency comparison: which threshold (index into the thresholds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_index: Option<usize>,
}

/// What the counts say.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub comparisons: Vec<Comparison>,
    /// The first second after the warm-up (rounded down).
    pub warmup_end: Option<i64>,
    /// New events after the warm-up.
    pub after_events: u64,
    /// When the first comparison failed.
    pub detected_at: Option<i64>,
    /// Comparisons whose share of hits is above the null without the evidence to fail: the
    /// reason a finished check is `inconclusive` rather than `pass`.
    pub unsure: Vec<Comparison>,
}

/// The end of bucket `b`, in whole seconds (rounded up).
pub(crate) fn end_s(b: &Bucket) -> i64 {
    (b.start_ms + BUCKET_MS + 999).div_euclid(1000)
}

/// What a check has seen of a deploy.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The baselines' names (`before`, `old_version`).
    pub names: &'a [&'a str],
    pub baselines: &'a [Baseline],
    /// The new version's summary (for display only).
    pub deployed: &'a Baseline,
    pub thresholds: &'a [Threshold],
    /// The new version's events per bucket, oldest first.
    pub buckets: &'a [Bucket],
}

/// Decides deploy `t0`'s check at `now_s` (Unix seconds) from the counts.
pub fn decide(s: &DeployCheckSettings, t0: i64, now_s: i64, o: &Observed<'_>) -> Decision {
    let Observed {
        names,
        baselines,
        deployed,
        thresholds,
        buckets,
    } = *o;
    let z = s.z;
    // The warm-up: whole buckets until `warmup_events` new events arrived.
    let mut seen = 0u64;
    let mut warmup_end = None;
    let mut start = buckets.len();
    for (i, b) in buckets.iter().enumerate() {
        if b.start_ms < (t0 + s.warmup_seconds as i64) * 1000 {
            continue;
        }
        if seen >= s.warmup_events {
            warmup_end = Some(b.start_ms.div_euclid(1000));
            start = i;
            break;
        }
        seen += b.events;
    }
    let observed = &buckets[start.min(buckets.len())..];
    let after_events: u64 = observed.iter().map(|b| b.events).sum();

    // The comparisons: error rate against each baseline, then the latency thresholds.
    let mut comparisons = Vec::new();
    for (i, b) in baselines.iter().enumerate() {
        if b.events < s.min_events {
            continue;
        }
        // The larger of the baseline's sampling error (its rate bounded `z` standard errors
        // up) and the tolerances (applied to its rate as seen): the two do not compound.
        let seen = b.errors as f64 / b.events as f64;
        let u = wilson_upper(b.errors as f64, b.events as f64, z);
        let null = u
            .max(seen * (1.0 + s.error_rate_tolerance))
            .max(seen + s.min_error_rate_increase);
        if null >= 0.999 {
            continue;
        }
        comparisons.push(Comparison {
            metric: "error_rate".into(),
            against: names[i].into(),
            baseline: b.error_rate().unwrap_or(0.0),
            deployed: deployed.error_rate(),
            threshold: null,
            null_rate: null,
            healthy_rate: b.errors as f64 / b.events as f64,
            events: 0,
            hits: 0,
            log_lr: 0.0,
            log_lr_needed: 0.0,
            regressed: false,
            detected_at: None,
            threshold_index: None,
        });
    }
    for (k, t) in thresholds.iter().enumerate() {
        let b = &baselines[t.baseline];
        let (q, name) = QUANTILES[t.quantile];
        let n_b = b.latency_events as f64;
        let null = ((1.0 - q) + z * (q * (1.0 - q) / n_b).sqrt()).min(0.999);
        comparisons.push(Comparison {
            metric: format!("latency_{name}"),
            against: names[t.baseline].into(),
            baseline: b.quantiles[t.quantile].unwrap_or(0.0),
            deployed: deployed.quantiles[t.quantile],
            threshold: t.value,
            null_rate: null,
            healthy_rate: 1.0 - q,
            events: 0,
            hits: 0,
            log_lr: 0.0,
            log_lr_needed: 0.0,
            regressed: false,
            detected_at: None,
            threshold_index: Some(k),
        });
    }
    // The level: two thirds to the error-rate comparisons, a third to the latency ones (all of
    // it to one kind when there is only one), split evenly within each share.
    let errors = comparisons
        .iter()
        .filter(|c| c.threshold_index.is_none())
        .count();
    let latencies = comparisons.len() - errors;
    let both = errors > 0 && latencies > 0;
    for c in &mut comparisons {
        let (count, part) = match (c.threshold_index.is_none(), both) {
            (true, true) => (errors, ERROR_SHARE),
            (false, true) => (latencies, 1.0 - ERROR_SHARE),
            (true, false) => (errors, 1.0),
            (false, false) => (latencies, 1.0),
        };
        let needed = (count.max(1) as f64 / (part * s.false_positive_rate)).ln();
        c.log_lr_needed = needed;
        let (mut n, mut k) = (0u64, 0u64);
        for b in observed {
            let (events, hits) = match c.threshold_index {
                None => (b.events, b.errors),
                Some(i) => (b.latency_events, b.slower.get(i).copied().unwrap_or(0)),
            };
            n += events;
            k += hits;
            let llr = log_lr_rise(k as f64, n as f64, c.null_rate);
            if llr >= needed && c.detected_at.is_none() {
                c.detected_at = Some(end_s(b).min(now_s.max(b.start_ms.div_euclid(1000))));
                c.regressed = true;
            }
            c.log_lr = llr;
        }
        c.events = n;
        c.hits = k;
    }
    let detected_at = comparisons.iter().filter_map(|c| c.detected_at).min();
    let over = now_s >= t0 + (s.warmup_seconds + s.observe_seconds) as i64;
    // A pass needs the new version to look healthy, not only the evidence against it to be
    // short: a share of hits above the null with too few events to be sure is inconclusive.
    let unsure: Vec<Comparison> = comparisons
        .iter()
        .filter(|c| c.events > 0 && c.hits as f64 / c.events as f64 > c.null_rate)
        .cloned()
        .collect();
    let verdict = if detected_at.is_some() {
        Verdict::Fail
    } else if !over {
        Verdict::Pending
    } else if !comparisons.is_empty() && after_events >= s.min_events && unsure.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    Decision {
        verdict,
        comparisons,
        warmup_end,
        after_events,
        detected_at,
        unsure,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub(crate) fn base(events: u64, rate: f64) -> Baseline {
        Baseline {
            events,
            errors: (events as f64 * rate) as u64,
            weight: events as f64,
            weighted_errors: events as f64 * rate,
            latency_events: events,
            quantiles: [Some(100.0), Some(400.0), Some(900.0)],
        }
    }

    pub(crate) fn obs<'a>(
        b: &'a [Baseline],
        th: &'a [Threshold],
        buckets: &'a [Bucket],
    ) -> Observed<'a> {
        Observed {
            names: &["before"],
            baselines: b,
            deployed: &b[0],
            thresholds: th,
            buckets,
        }
    }

    /// 200 events a second from `t0` for `n` seconds (four buckets of 50 each) at error rate
    /// `rate`, slower-than-threshold shares given.
    pub(crate) fn seconds(t0: i64, n: i64, rate: f64, slow: [f64; 3]) -> Vec<Bucket> {
        (0..n * 4)
            .map(|i| {
                // Spread the hits evenly: a share of 5 % is 5 % of every second, not 6 %.
                let hits = |share: f64| {
                    ((50.0 * share * (i + 1) as f64).floor() - (50.0 * share * i as f64).floor())
                        as u64
                };
                Bucket {
                    start_ms: t0 * 1000 + i * BUCKET_MS,
                    events: 50,
                    errors: hits(rate),
                    latency_events: 50,
                    slower: slow.iter().map(|s| hits(*s)).collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{base, obs, seconds};
    use super::*;

    #[test]
    fn a_doubled_error_rate_fails_within_seconds_and_a_clean_one_passes_at_the_end() {
        let s = DeployCheckSettings::default();
        let b = [base(120_000, 0.05)];
        let th = thresholds(&s, &b);
        assert_eq!(th.len(), 3);
        let bad = seconds(1000, 10, 0.10, [0.5, 0.05, 0.01]);
        let d = decide(&s, 1000, 1010, &obs(&b, &th, &bad));
        assert_eq!(d.verdict, Verdict::Fail, "{d:?}");
        let at = d.detected_at.unwrap();
        assert!(at <= 1006, "detected at +{}", at - 1000);
        let e = &d.comparisons[0];
        assert!(e.regressed && e.metric == "error_rate");
        assert!(d.comparisons[1..].iter().all(|c| !c.regressed));
        // Clean, still within the observation window: pending; after it: pass.
        let clean = seconds(1000, 400, 0.05, [0.5, 0.05, 0.01]);
        let d = decide(&s, 1000, 1100, &obs(&b, &th, &clean[..100]));
        assert_eq!(d.verdict, Verdict::Pending);
        let d = decide(&s, 1000, 1400, &obs(&b, &th, &clean));
        assert_eq!(d.verdict, Verdict::Pass, "{:?}", d.comparisons);
        // No traffic after the deploy: inconclusive at the end.
        let d = decide(&s, 1000, 1400, &obs(&b, &th, &[]));
        assert_eq!(d.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn the_warm_up_is_counted_in_events() {
        let s = DeployCheckSettings {
            warmup_events: 1_000,
            ..Default::default()
        };
        let b = [base(120_000, 0.05)];
        // Five seconds of 100 % errors at start (a restart), then healthy.
        let mut buckets = seconds(1000, 5, 1.0, [0.0; 3]);
        buckets.extend(seconds(1005, 100, 0.05, [0.5, 0.05, 0.01]));
        let d = decide(&s, 1000, 1105, &obs(&b, &[], &buckets));
        assert_eq!(d.warmup_end, Some(1005));
        assert_eq!(d.verdict, Verdict::Pending, "{:?}", d.comparisons);
    }

    #[test]
    fn a_slower_tail_is_a_latency_regression() {
        let s = DeployCheckSettings::default();
        let b = [base(120_000, 0.01)];
        let th = thresholds(&s, &b);
        // 15 % of the new events slower than 1.2 × the old p95 (5 % expected).
        let d = decide(
            &s,
            1000,
            1020,
            &obs(&b, &th, &seconds(1000, 20, 0.01, [0.5, 0.15, 0.01])),
        );
        let p95 = d
            .comparisons
            .iter()
            .find(|c| c.metric == "latency_p95")
            .unwrap();
        assert!(p95.regressed, "{p95:?}");
        assert!((p95.threshold - 480.0).abs() < 1e-9);
        assert!(
            d.comparisons
                .iter()
                .filter(|c| c.metric != "latency_p95")
                .all(|c| !c.regressed)
        );
    }
}

//! Always-valid sequential tests on a rate: the statistics behind deploy checks.
//!
//! A deploy check looks at the new version's events again every time more of them have been
//! applied, and may stop at any look. A fixed-sample test (a z test) looked at that way fails
//! far more often than its nominal level. These tests stay valid however often they are looked
//! at, because each is a test supermartingale: Ville's inequality bounds the chance that its
//! likelihood ratio *ever* reaches `1/α` under the null by `α`.
//!
//! - [`log_lr_rise`]: is the rate above `p0`? The null is `p ≤ p0`; the statistic is the
//!   likelihood ratio of a mixture of alternatives `p0·r` (each `r` of [`RISE_RATIOS`] with
//!   its weight, the weights summing to 1) against `p0`. For every `p ≤ p0` each factor has expectation at most 1 (the
//!   expectation is linear in `p`, equal to 1 at `p0`, and rising in `p`), so it is a
//!   supermartingale under every rate of the null, not only under `p0`.
//! - [`log_lr_fall`]: is the rate below `p_bad`? The same in the other direction, with one
//!   alternative (the healthy rate): a Wald sequential probability ratio test, used to see that
//!   a fix worked.
//!
//! [`wilson_upper`] bounds a baseline rate from above, so that the baseline's own sampling error
//! is part of the null rather than a source of false alarms.

/// The alternatives of [`log_lr_rise`], as multiples of the null rate, with their weights:
/// small rises to eight-fold ones are each detected at close to the speed of a test made for
/// them alone. The weight is the prior share of each: the most goes to 1.8×, where a doubled
/// error rate lands against a null 10 % above the baseline (the default tolerance); the price
/// of the mixture is `ln(1/weight)` nats of evidence (1.05 for 1.8×).
pub const RISE_RATIOS: [(f64, f64); 6] = [
    (1.25, 0.1),
    (1.5, 0.15),
    (1.8, 0.35),
    (2.5, 0.2),
    (4.0, 0.1),
    (8.0, 0.1),
];

/// A probability kept inside (0, 1), where logarithms are finite.
fn clamp(p: f64) -> f64 {
    p.clamp(1e-9, 1.0 - 1e-9)
}

/// The log likelihood ratio of rate `p1` against `p0` after `k` hits in `n` trials.
pub fn log_lr(k: f64, n: f64, p0: f64, p1: f64) -> f64 {
    let (p0, p1) = (clamp(p0), clamp(p1));
    k * (p1 / p0).ln() + (n - k) * ((1.0 - p1) / (1.0 - p0)).ln()
}

/// The log of the mixture likelihood ratio for a rise of the rate above `p0`, after `k` hits
/// in `n` trials (see the module doc). 0 with no trials.
pub fn log_lr_rise(k: f64, n: f64, p0: f64) -> f64 {
    // Alternatives capped away (p0·r ≥ 1) count as zero weight: the mixture stays a
    // supermartingale.
    let terms: Vec<f64> = RISE_RATIOS
        .iter()
        .filter(|(r, _)| p0 * r < 0.999_999)
        .map(|(r, w)| w.ln() + log_lr(k, n, p0, p0 * r))
        .collect();
    if terms.is_empty() {
        return 0.0;
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    max + sum.ln()
}

/// The log likelihood ratio of the healthy rate `p_ok` against the broken one `p_bad`
/// (`p_ok < p_bad`) after `k` hits in `n` trials: evidence that the rate fell below `p_bad`.
pub fn log_lr_fall(k: f64, n: f64, p_bad: f64, p_ok: f64) -> f64 {
    if p_ok >= p_bad {
        return 0.0;
    }
    log_lr(k, n, p_bad, p_ok)
}

/// The Wilson score upper bound of a rate seen as `k` hits in `n` trials, `z` standard errors
/// up (1 with no trials).
pub fn wilson_upper(k: f64, n: f64, z: f64) -> f64 {
    if n <= 0.0 {
        return 1.0;
    }
    let p = (k / n).clamp(0.0, 1.0);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre + spread) / (1.0 + z2 / n)).min(1.0)
}

/// The standard normal quantile of `p` (Acklam's rational approximation, relative error
/// below 1.2e-9), for turning a level into a number of standard errors.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn quantiles_and_bounds_are_the_textbook_values() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.999) - 3.090_232).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        // Wilson: 0 of 100 is not "0 %": the bound stays above zero.
        let u = wilson_upper(0.0, 100.0, 1.96);
        assert!(u > 0.03 && u < 0.04, "{u}");
        let u = wilson_upper(50.0, 1000.0, 1.96);
        assert!(u > 0.065 && u < 0.067, "{u}");
    }

    /// Looking after every event, the rise test fails a stream at the null rate in at most
    /// about `α` of runs; and it fails a doubled rate quickly. Seeded; the seed is printed.
    #[test]
    fn always_valid_under_continuous_looks() {
        let seed = 20_261_202u64;
        println!("seed {seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let (p0, alpha, runs, len) = (0.05, 0.01f64, 2_000, 3_000);
        let needed = (1.0 / alpha).ln();
        let mut false_alarms = 0;
        for _ in 0..runs {
            let mut k = 0.0;
            for n in 1..=len {
                if rng.random::<f64>() < p0 {
                    k += 1.0;
                }
                if log_lr_rise(k, n as f64, p0) >= needed {
                    false_alarms += 1;
                    break;
                }
            }
        }
        // α = 1 %: 20 expected at most; 40 would be 4.5 standard deviations above.
        assert!(
            false_alarms <= 40,
            "{false_alarms} of {runs} null runs failed"
        );
        let mut detected_at = Vec::new();
        for _ in 0..200 {
            let mut k = 0.0;
            for n in 1..=len {
                if rng.random::<f64>() < 2.0 * p0 {
                    k += 1.0;
                }
                if log_lr_rise(k, n as f64, p0) >= needed {
                    detected_at.push(n);
                    break;
                }
            }
        }
        detected_at.sort_unstable();
        assert!(detected_at.len() >= 198, "{} of 200", detected_at.len());
        let median = detected_at[detected_at.len() / 2];
        assert!(median < 1_200, "median {median} events");
    }

    #[test]
    fn the_fall_test_sees_a_fix_and_not_a_still_broken_rate() {
        let needed = (100.0f64).ln();
        // Still at 10 % after 2,000 events: no evidence of a fix below 7.5 %.
        assert!(log_lr_fall(200.0, 2_000.0, 0.075, 0.05) < 0.0);
        // Back to 5 %: evidence.
        assert!(log_lr_fall(50.0, 1_000.0, 0.075, 0.05) > needed);
        assert_eq!(log_lr_fall(1.0, 10.0, 0.05, 0.06), 0.0);
    }
}

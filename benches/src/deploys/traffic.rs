//! The replayed traffic of `eventide-bench deploys`: per service, events with a diurnal swing
//! and bursts over endpoints and regions, the kinds of bad deploys, and the per-second and
//! per-bucket counts the deploy check's decision reads (see the parent module's docs).

use std::collections::BTreeMap;

use eventide_alerts::deploy_stats::{self, Bucket, QUANTILES};
use rand::Rng;
use rand::rngs::StdRng;

pub(super) const ENDPOINT_SHARE: [f64; 8] = [0.3, 0.2, 0.12, 0.1, 0.1, 0.08, 0.06, 0.04];
pub(super) const ENDPOINT_MEDIAN: [f64; 8] = [15.0, 40.0, 120.0, 25.0, 60.0, 240.0, 30.0, 90.0];
pub(super) const SIGMA: f64 = 0.8;
pub(super) const REGIONS: usize = 4;
pub(super) const BASE_ERROR: [f64; 4] = [0.02, 0.03, 0.05, 0.08];
pub(super) const LOOK_MS: i64 = deploy_stats::BUCKET_MS;
pub(super) const ROLLBACK_AFTER_S: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Clean,
    Errors1_5,
    Errors2,
    Errors5,
    P99x1_5,
    Latency1_5,
    OneEndpoint,
    OneRegion,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Clean => "clean",
            Kind::Errors1_5 => "error rate x1.5",
            Kind::Errors2 => "error rate x2",
            Kind::Errors5 => "error rate x5",
            Kind::P99x1_5 => "p99 x1.5",
            Kind::Latency1_5 => "every request x1.5 slower",
            Kind::OneEndpoint => "one endpoint broken (40 % errors)",
            Kind::OneRegion => "one region broken (errors x4)",
        }
    }
}

pub(super) fn normal(r: &mut StdRng) -> f64 {
    let u1: f64 = r.random::<f64>().max(1e-12);
    let u2: f64 = r.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub(super) fn pick(r: &mut StdRng, shares: &[f64]) -> usize {
    let mut x: f64 = r.random();
    for (i, s) in shares.iter().enumerate() {
        if x < *s {
            return i;
        }
        x -= s;
    }
    shares.len() - 1
}

/// One event: (is new version, error, latency).
pub(super) struct Ev {
    pub(super) new: bool,
    pub(super) error: bool,
    pub(super) latency: f64,
}

pub(super) struct Traffic {
    pub(super) base_error: f64,
    pub(super) rate: f64,
    /// Diurnal phase (radians) at t = 0.
    pub(super) phase: f64,
    /// Burst intervals (start, end, volume factor).
    pub(super) bursts: Vec<(f64, f64, f64)>,
    pub(super) broken_endpoint: usize,
    pub(super) broken_region: usize,
}

impl Traffic {
    pub(super) fn new(r: &mut StdRng, rate: f64, from: f64, to: f64) -> Self {
        let mut bursts = Vec::new();
        let mut t = from;
        loop {
            t += -120.0 * r.random::<f64>().max(1e-9).ln();
            if t > to {
                break;
            }
            let len = r.random_range(3.0..10.0);
            bursts.push((t, t + len, r.random_range(2.0..4.0)));
        }
        Self {
            base_error: BASE_ERROR[r.random_range(0..BASE_ERROR.len())],
            rate,
            phase: r.random_range(0.0..std::f64::consts::TAU),
            bursts,
            broken_endpoint: r.random_range(0..ENDPOINT_SHARE.len()),
            broken_region: r.random_range(0..REGIONS),
        }
    }

    pub(super) fn burst(&self, t: f64) -> Option<f64> {
        self.bursts
            .iter()
            .find(|(a, b, _)| t >= *a && t < *b)
            .map(|b| b.2)
    }

    /// Events in `[t, t + dt)` seconds after the deploy's time 0.
    pub(super) fn events(
        &self,
        r: &mut StdRng,
        t: f64,
        dt: f64,
        new_share: f64,
        kind: Kind,
        healed: bool,
    ) -> Vec<Ev> {
        let diurnal = 1.0 + 0.3 * (self.phase + t * std::f64::consts::TAU / 86_400.0).sin();
        let burst = self.burst(t);
        let lambda = self.rate * diurnal * burst.unwrap_or(1.0) * dt;
        let n = (lambda + lambda.sqrt() * normal(r)).round().max(0.0) as usize;
        let slow = if burst.is_some() { 1.1 } else { 1.0 };
        (0..n)
            .map(|_| {
                let e = pick(r, &ENDPOINT_SHARE);
                let region = r.random_range(0..REGIONS);
                let new = r.random::<f64>() < new_share;
                let bad = new && !healed;
                let mut p = self.base_error;
                let mut lat = ENDPOINT_MEDIAN[e] * slow * (SIGMA * normal(r)).exp();
                if bad {
                    match kind {
                        Kind::Errors1_5 => p *= 1.5,
                        Kind::Errors2 => p *= 2.0,
                        Kind::Errors5 => p *= 5.0,
                        Kind::OneEndpoint if e == self.broken_endpoint => p = 0.4,
                        Kind::Latency1_5 => lat *= 1.5,
                        Kind::OneRegion if region == self.broken_region => p *= 4.0,
                        Kind::P99x1_5 => {
                            // The endpoint's p90: median · e^(1.2816 σ).
                            let p90 = ENDPOINT_MEDIAN[e] * slow * (1.2816 * SIGMA).exp();
                            if lat > p90 {
                                lat *= 1.5;
                            }
                        }
                        _ => {}
                    }
                }
                Ev {
                    new,
                    error: r.random::<f64>() < p.min(1.0),
                    latency: lat,
                }
            })
            .collect()
    }
}

/// Latency quantiles from a log-scale histogram (1 % wide bins), for the old version's
/// growing baseline.
#[derive(Default, Clone)]
pub(super) struct Hist {
    pub(super) bins: BTreeMap<i32, u64>,
    pub(super) n: u64,
}

impl Hist {
    pub(super) fn add(&mut self, v: f64) {
        *self
            .bins
            .entry((v.max(1e-3).ln() / 0.01).floor() as i32)
            .or_default() += 1;
        self.n += 1;
    }
    pub(super) fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let want = (q * self.n as f64).ceil() as u64;
        let mut seen = 0;
        for (b, c) in &self.bins {
            seen += c;
            if seen >= want.max(1) {
                return Some(((*b as f64 + 0.5) * 0.01).exp());
            }
        }
        None
    }
}

pub(super) fn exact_quantiles(mut v: Vec<f64>) -> [Option<f64>; 3] {
    v.sort_by(f64::total_cmp);
    QUANTILES.map(|(q, _)| {
        if v.is_empty() {
            None
        } else {
            let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            Some(v[i])
        }
    })
}

/// One bucket (a look's worth, [`deploy_stats::BUCKET_MS`]) of the new version (sorted
/// latencies, for counting against any threshold).
#[derive(Default, Clone)]
pub(super) struct Second {
    pub(super) events: u64,
    pub(super) errors: u64,
    pub(super) sorted: Vec<f64>,
}

pub(super) fn above(sorted: &[f64], v: f64) -> u64 {
    (sorted.len() - sorted.partition_point(|x| *x <= v)) as u64
}

pub(super) fn buckets(secs: &[(i64, Second)], thresholds: &[f64]) -> Vec<Bucket> {
    secs.iter()
        .map(|(t, s)| Bucket {
            start_ms: *t,
            events: s.events,
            errors: s.errors,
            latency_events: s.events,
            slower: thresholds.iter().map(|v| above(&s.sorted, *v)).collect(),
        })
        .collect()
}

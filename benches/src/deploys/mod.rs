//! `eventide-bench deploys`: replays many deploys against realistic traffic, faster than real
//! time, through the deploy check's own decision code (`eventide_alerts::deploy_stats`, the
//! functions the server runs on the counts its SQL returns), and reports detection times and
//! wrong verdicts on both sides.
//!
//! # Traffic (per service, seeded)
//! - 200 events/s on average, times a diurnal factor (±30 % over the day, each deploy at a
//!   random hour) and bursts (on average one every 2 minutes, 3–10 s long, 2–4× the volume and
//!   10 % slower).
//! - 8 endpoints (uneven shares, medians 15–240 ms, lognormal σ 0.8) and 4 regions; each
//!   service has its own base error rate (2 %, 3 %, 5 % or 8 %), the same on every endpoint.
//! - Half the deploys replace every instance at once, half roll out over 90 s (25 %, 50 %,
//!   75 %, 100 % of the traffic, 30 s apart); the old version keeps serving the rest.
//!
//! # Deploys
//! Half clean (nothing changes), half bad in one of seven ways: error rate ×1.5, ×2 (twice as
//! many of these), ×5; p99 ×1.5 (events slower than the endpoint's p90 take 1.5× as long,
//! which makes the service's p99 1.5×); every request 1.5× slower; one endpoint broken (its error rate 40 %); one region broken (its error rate ×4). The
//! checker looks every 250 ms of data time (the server looks whenever new events are applied,
//! at most every 200 ms). A failed deploy is rolled back 10 s after its failure: the recovery
//! time is from the rollback marker to `recovered`.
//!
//! Detection times are data time from the deploy marker; the server adds its freshness (ack
//! to queryable) and one look's query time to them.

mod traffic;

use std::collections::BTreeMap;

use eventide_alerts::conventions::DeployCheckSettings;
use eventide_alerts::deploy_stats::{self, Baseline, Comparison, Observed, QUANTILES, Threshold};
use eventide_alerts::deploys::Verdict;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value as Json, json};

use traffic::*;

/// Settings of `eventide-bench deploys`.
#[derive(Debug, clap::Args)]
pub struct DeploysArgs {
    /// Deploys replayed (half clean, half bad).
    #[arg(long, default_value_t = 240)]
    pub deploys: usize,
    /// Average events per second per service.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Random seed.
    #[arg(long, default_value_t = 20261202)]
    pub seed: u64,
    /// Write the report (JSON) here.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// What happened to one deploy.
struct Outcome {
    kind: Kind,
    rolling: bool,
    base_error: f64,
    verdict: Verdict,
    detected_after_s: Option<f64>,
    metrics: Vec<String>,
    recovered_after_rollback_s: Option<f64>,
}

fn replay(seed: u64, kind: Kind, rolling: bool, rate: f64, s: &DeployCheckSettings) -> Outcome {
    let mut r = StdRng::seed_from_u64(seed);
    let t0: i64 = 0;
    let baseline_s = s.baseline_seconds as f64;
    let observe = (s.warmup_seconds + s.observe_seconds) as i64;
    let traffic = Traffic::new(&mut r, rate, -baseline_s, observe as f64 + 120.0);
    // The window before the deploy: the baseline.
    let mut lat = Vec::new();
    let mut before = Baseline::default();
    for sec in -(s.baseline_seconds as i64)..0 {
        for e in traffic.events(&mut r, sec as f64, 1.0, 0.0, Kind::Clean, false) {
            before.events += 1;
            before.errors += e.error as u64;
            lat.push(e.latency);
        }
    }
    before.weight = before.events as f64;
    before.weighted_errors = before.errors as f64;
    before.latency_events = before.events;
    before.quantiles = exact_quantiles(lat);

    let share = |t: f64| -> f64 {
        if !rolling {
            1.0
        } else {
            (0.25 * (1.0 + (t / 30.0).floor())).min(1.0)
        }
    };
    let mut new_secs: Vec<(i64, Second)> = Vec::new();
    let mut old = Baseline::default();
    let mut old_hist = Hist::default();
    let mut verdict = Verdict::Pending;
    let mut failed: Option<(i64, Vec<Comparison>)> = None;
    // Service-wide seconds after the rollback, for the recovery test.
    let mut service_secs: Vec<(i64, Second)> = Vec::new();
    let mut detected = None;
    let mut recovered = None;
    let steps_per_s = 1000 / LOOK_MS;
    let end_ms = (observe + ROLLBACK_AFTER_S + 120) * 1000;
    let mut ms = 0i64;
    while ms < end_ms {
        let t = ms as f64 / 1000.0;
        let sec = ms.div_euclid(1000);
        let rollback_at = failed.as_ref().map(|(at, _)| at + ROLLBACK_AFTER_S);
        let healed = rollback_at.is_some_and(|rb| sec >= rb);
        let new_share = if healed { 0.0 } else { share(t) };
        let evs = traffic.events(&mut r, t, LOOK_MS as f64 / 1000.0, new_share, kind, healed);
        if new_secs.last().is_none_or(|(s0, _)| *s0 != ms) {
            new_secs.push((ms, Second::default()));
        }
        if let Some(rb) = rollback_at
            && sec >= rb
            && service_secs.last().is_none_or(|(s0, _)| *s0 != ms)
        {
            service_secs.push((ms, Second::default()));
        }
        for e in &evs {
            if rollback_at.is_some_and(|rb| sec >= rb)
                && let Some((_, s)) = service_secs.last_mut()
            {
                s.events += 1;
                s.errors += e.error as u64;
                s.sorted.push(e.latency);
            }
            if failed.is_some() {
                continue;
            }
            if e.new {
                let s = &mut new_secs.last_mut().expect("pushed above").1;
                s.events += 1;
                s.errors += e.error as u64;
                s.sorted.push(e.latency);
            } else {
                old.events += 1;
                old.errors += e.error as u64;
                old_hist.add(e.latency);
            }
        }
        // Each bucket is complete after its step: sorted once, counted by binary search.
        for secs in [&mut new_secs, &mut service_secs] {
            if let Some((_, s)) = secs.last_mut() {
                s.sorted.sort_by(f64::total_cmp);
            }
        }
        ms += LOOK_MS;
        let now_s = ms.div_euclid(1000);
        let look_every = if failed.is_none() && ms > 30_000 {
            steps_per_s
        } else {
            1
        };
        if (ms / LOOK_MS) % look_every != 0 {
            continue;
        }
        if let Some((failed_at, comps)) = &failed {
            let Some(rb) = rollback_at else { break };
            if now_s <= rb {
                continue;
            }
            let thresholds: Vec<f64> = comps
                .iter()
                .map(|c| {
                    if c.threshold_index.is_some() {
                        c.threshold
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            let mut b = buckets(&service_secs, &[]);
            for (i, (_, sec)) in service_secs.iter().enumerate() {
                b[i].slower = thresholds
                    .iter()
                    .map(|v| {
                        if v.is_nan() {
                            sec.errors
                        } else {
                            above(&sec.sorted, *v)
                        }
                    })
                    .collect();
            }
            let fixes = eventide_alerts::deploy_recovery::fix_points(
                &[(rb, "rollback".into())],
                *failed_at,
                now_s,
            );
            if let Some(rec) = eventide_alerts::deploy_recovery::recovery(s, comps, &fixes, &b) {
                // The look that saw it: now (the data's time), not the bucket's end.
                recovered = Some((now_s.max(rec.recovered_at) - rb) as f64);
                break;
            }
            if now_s > rb + 120 {
                break;
            }
            continue;
        }
        let mut old_b = old;
        old_b.weight = old.events as f64;
        old_b.weighted_errors = old.errors as f64;
        old_b.latency_events = old.events;
        old_b.quantiles = QUANTILES.map(|(q, _)| old_hist.quantile(q));
        let (names, baselines): (Vec<&str>, Vec<Baseline>) = if old_b.events >= s.min_events {
            (vec!["before", "old_version"], vec![before, old_b])
        } else {
            (vec!["before"], vec![before])
        };
        let th: Vec<Threshold> = deploy_stats::thresholds(s, &baselines);
        let values: Vec<f64> = th.iter().map(|t| t.value).collect();
        let b = buckets(&new_secs, &values);
        let deployed = Baseline::default();
        let d = deploy_stats::decide(
            s,
            t0,
            now_s,
            &Observed {
                names: &names,
                baselines: &baselines,
                deployed: &deployed,
                thresholds: &th,
                buckets: &b,
            },
        );
        verdict = d.verdict;
        if d.verdict == Verdict::Fail {
            // Seen at this look: the data's time now.
            detected = Some(ms as f64 / 1000.0);
            let comps: Vec<Comparison> =
                d.comparisons.into_iter().filter(|c| c.regressed).collect();
            failed = Some((now_s, comps));
        } else if d.verdict.is_final() {
            break;
        }
    }
    let metrics = failed
        .as_ref()
        .map(|(_, c)| {
            c.iter()
                .map(|c| format!("{} vs {}", c.metric, c.against))
                .collect()
        })
        .unwrap_or_default();
    Outcome {
        kind,
        rolling,
        base_error: traffic.base_error,
        verdict,
        detected_after_s: detected,
        metrics,
        recovered_after_rollback_s: recovered,
    }
}

fn pctl(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

fn summary(outs: &[&Outcome]) -> Json {
    let mut det: Vec<f64> = outs.iter().filter_map(|o| o.detected_after_s).collect();
    let mut rec: Vec<f64> = outs
        .iter()
        .filter_map(|o| o.recovered_after_rollback_s)
        .collect();
    let count = |v: Verdict| outs.iter().filter(|o| o.verdict == v).count();
    json!({
        "deploys": outs.len(),
        "fail": count(Verdict::Fail),
        "pass": count(Verdict::Pass),
        "inconclusive": count(Verdict::Inconclusive),
        "pending": count(Verdict::Pending),
        "detection_s": {"p50": pctl(&mut det, 0.5), "p95": pctl(&mut det, 0.95), "max": pctl(&mut det, 1.0)},
        "recovery_after_rollback_s": {
            "measured": rec.len(),
            "p50": pctl(&mut rec, 0.5), "p95": pctl(&mut rec, 0.95), "max": pctl(&mut rec, 1.0),
        },
    })
}

pub fn run(a: DeploysArgs) -> anyhow::Result<()> {
    let s = DeployCheckSettings::default();
    let bad = [
        Kind::Errors1_5,
        Kind::Errors2,
        Kind::Errors2,
        Kind::Errors5,
        Kind::P99x1_5,
        Kind::Latency1_5,
        Kind::OneEndpoint,
        Kind::OneRegion,
    ];
    println!(
        "deploys: {} deploys at {} events/s per service, seed {}",
        a.deploys, a.rate, a.seed
    );
    let started = std::time::Instant::now();
    let mut outs = Vec::new();
    for i in 0..a.deploys {
        let kind = if i % 2 == 0 {
            Kind::Clean
        } else {
            bad[(i / 2) % bad.len()]
        };
        let rolling = (i / (2 * bad.len())) % 2 == 1;
        let o = replay(
            a.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            kind,
            rolling,
            a.rate,
            &s,
        );
        outs.push(o);
    }
    let mut by_kind: BTreeMap<(Kind, bool), Vec<&Outcome>> = BTreeMap::new();
    for o in &outs {
        by_kind.entry((o.kind, o.rolling)).or_default().push(o);
    }
    let mut kinds = Vec::new();
    for ((kind, rolling), list) in &by_kind {
        let mut v = summary(list);
        v["kind"] = json!(kind.name());
        v["rollout"] = json!(if *rolling {
            "rolling over 90 s"
        } else {
            "all at once"
        });
        kinds.push(v);
    }
    let mut by_base = Vec::new();
    for b in BASE_ERROR {
        let list: Vec<&Outcome> = outs
            .iter()
            .filter(|o| o.kind == Kind::Errors2 && !o.rolling && o.base_error == b)
            .collect();
        let mut v = summary(&list);
        v["base_error_rate"] = json!(b);
        by_base.push(v);
    }
    let clean: Vec<&Outcome> = outs.iter().filter(|o| o.kind == Kind::Clean).collect();
    let doubled: Vec<&Outcome> = outs.iter().filter(|o| o.kind == Kind::Errors2).collect();
    let doubled_at_once: Vec<&Outcome> = doubled.iter().copied().filter(|o| !o.rolling).collect();
    let bad_all: Vec<&Outcome> = outs.iter().filter(|o| o.kind != Kind::Clean).collect();
    let mut metrics: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outs {
        for m in &o.metrics {
            *metrics
                .entry(format!("{}: {m}", o.kind.name()))
                .or_default() += 1;
        }
    }
    let report = json!({
        "seed": a.seed,
        "rate_per_service": a.rate,
        "settings": s,
        "clean": summary(&clean),
        "clean_failed_markers": outs.iter().enumerate()
            .filter(|(_, o)| o.kind == Kind::Clean && o.verdict == Verdict::Fail)
            .map(|(i, o)| json!({"index": i, "metrics": o.metrics}))
            .collect::<Vec<_>>(),
        "bad": summary(&bad_all),
        "doubled_error_rate": summary(&doubled),
        "doubled_error_rate_all_at_once": summary(&doubled_at_once),
        "doubled_error_rate_all_at_once_by_base_rate": by_base,
        "kinds": kinds,
        "failing_comparisons": metrics,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(p) = a.out {
        std::fs::write(&p, serde_json::to_string_pretty(&report)?)?;
        println!("report written to {}", p.display());
    }
    Ok(())
}

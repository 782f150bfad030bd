//! One dataset's deploy check: reads the counts ([`crate::deploy_data`]), decides
//! ([`crate::deploy_stats`]) and writes the evidence, with sentences ([`crate::deploy_story`])
//! and, for a failure, the columns that set the failing events apart (BubbleUp).

use eventide_query::{BubbleUpRequest, QueryEngine};
use serde_json::{Value as Json, json};

use crate::AlertError;
use crate::conventions::Conventions;
use crate::deploy_data::{Events, NotCheckable, Scope};
use crate::deploy_recovery::{self, Recovery};
use crate::deploy_stats::{self, Baseline, Comparison, Observed};
use crate::deploy_story;
use crate::deploys::{Outcome, Verdict};
use crate::markers::Marker;

/// The JSON of a side, with its error rate.
fn side_json(b: &Baseline) -> Json {
    let mut v = json!(b);
    v["error_rate"] = json!(b.error_rate());
    v["p50"] = json!(b.quantiles[0]);
    v["p95"] = json!(b.quantiles[1]);
    v["p99"] = json!(b.quantiles[2]);
    v
}

/// What a check keeps between its evaluations (in memory): the baseline before the deploy,
/// which does not change once the deploy is a few seconds old, with what it was computed
/// for: a marker moved to another time, another service, or changed conventions (columns,
/// baseline window) compute it again.
#[derive(Debug, Clone, Default)]
pub struct Carry {
    pub before: Option<(CarryKey, Baseline)>,
}

/// What a carried baseline depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct CarryKey {
    pub t0: i64,
    pub service: String,
    pub conventions: Conventions,
}

/// The seconds after a deploy in which events of the window before it may still arrive.
const BEFORE_SETTLES_S: i64 = 5;

/// Checks deploy `m` in `dataset` with the data applied by `now_s` (Unix seconds).
pub async fn check_dataset(
    engine: &QueryEngine,
    conv: &Conventions,
    dataset: &str,
    m: &Marker,
    now_s: i64,
    carry: &mut Carry,
) -> Result<Outcome, AlertError> {
    let s = &conv.deploy_check;
    let service = m.service.clone().unwrap_or_default();
    let t0 = m.start_time;
    let observe_end = t0 + (s.warmup_seconds + s.observe_seconds) as i64;
    let over = now_s >= observe_end;
    let before_start = t0 - s.baseline_seconds as i64;
    let mut evidence = json!({
        "dataset": dataset,
        "service": service,
        "version": m.version,
        "windows": {
            "before": {"start": before_start, "end": t0},
            "after": {"start": t0, "end": observe_end},
        },
        "min_events": s.min_events,
    });
    let undecided = if over {
        Verdict::Inconclusive
    } else {
        Verdict::Pending
    };
    let scope = match Scope::new(engine, conv, dataset, &service, m.version.as_deref())? {
        Ok(scope) => scope,
        Err(NotCheckable(reason)) => {
            evidence["summary"] = json!(reason);
            evidence["reason"] = json!(reason);
            return Ok(Outcome {
                verdict: undecided,
                evidence,
                detected_at: None,
            });
        }
    };
    evidence["version_column"] = json!(scope.version_column);
    let data_end = now_s.min(observe_end) + 1;
    let key = CarryKey {
        t0,
        service: service.clone(),
        conventions: conv.clone(),
    };
    let carried = carry
        .before
        .as_ref()
        .filter(|(k, _)| *k == key)
        .map(|(_, b)| *b);
    let mut sides = if carried.is_some() {
        scope.sides(engine, t0, t0, data_end.max(t0)).await?
    } else {
        scope
            .sides(engine, t0, before_start, data_end.max(t0))
            .await?
    };
    let before = match carried {
        Some(b) => b,
        None => {
            let b = sides.remove("before").unwrap_or_default();
            carry.before = (now_s >= t0 + BEFORE_SETTLES_S).then_some((key, b));
            b
        }
    };
    let after = sides.remove("after").unwrap_or_default();
    let old = sides.remove("old").unwrap_or_default();
    let (names, baselines): (Vec<&str>, Vec<Baseline>) = if old.events >= s.min_events {
        (vec!["before", "old_version"], vec![before, old])
    } else {
        (vec!["before"], vec![before])
    };
    let thresholds = deploy_stats::thresholds(s, &baselines);
    let slower: Vec<Option<f64>> = thresholds.iter().map(|t| Some(t.value)).collect();
    let buckets = scope
        .buckets(engine, Events::NewVersion, t0, data_end.max(t0), &slower)
        .await?;
    let d = deploy_stats::decide(
        s,
        t0,
        now_s,
        &Observed {
            names: &names,
            baselines: &baselines,
            deployed: &after,
            thresholds: &thresholds,
            buckets: &buckets,
        },
    );
    evidence["before"] = side_json(&before);
    evidence["after"] = side_json(&after);
    if old.events > 0 {
        evidence["old_version"] = side_json(&old);
    }
    evidence["warmup"] = json!({"events": s.warmup_events, "ended_at": d.warmup_end});
    evidence["after_events"] = json!(d.after_events);
    evidence["statistics"] = json!({
        "false_positive_rate": s.false_positive_rate,
        "z": s.z,
        "comparisons": d.comparisons.len(),
        "log_lr_needed": d.comparisons.first().map(|c| c.log_lr_needed),
    });
    evidence["checks"] = json!(d.comparisons);
    evidence["detected_at"] = json!(d.detected_at);
    let regressed: Vec<&Comparison> = d.comparisons.iter().filter(|c| c.regressed).collect();
    let mut dims = Vec::new();
    if d.verdict == Verdict::Fail {
        dims = dimensions(
            engine, conv, dataset, m, &scope, &regressed, &before, data_end,
        )
        .await;
        evidence["dimensions"] = json!(dims);
    }
    evidence["regressions"] = json!(
        regressed
            .iter()
            .map(|c| deploy_story::regression(c, &service, m.version.as_deref(), &dims))
            .collect::<Vec<_>>()
    );
    if d.verdict == Verdict::Inconclusive && !d.unsure.is_empty() {
        let what: Vec<String> = d
            .unsure
            .iter()
            .map(|c| {
                format!(
                    "{} against {}: {:.1} % of {} new events where at most {:.1} % is no regression",
                    c.metric,
                    c.against,
                    100.0 * c.hits as f64 / c.events as f64,
                    c.events,
                    100.0 * c.null_rate
                )
            })
            .collect();
        evidence["reason"] = json!(format!(
            "worse but not surely a regression ({}): too few events to be sure either way",
            what.join("; ")
        ));
    } else if d.verdict == Verdict::Inconclusive {
        evidence["reason"] = json!(format!(
            "too little traffic: {} events before and {} after the deploy's warm-up, {} needed on each side",
            before.events, d.after_events, s.min_events
        ));
    }
    evidence["summary"] = json!(deploy_story::summary(
        d.verdict,
        &service,
        m.version.as_deref(),
        &evidence,
        &d
    ));
    Ok(Outcome {
        verdict: d.verdict,
        evidence,
        detected_at: d.detected_at,
    })
}

/// What sets the failing events apart: BubbleUp of errors (or slow events) against the rest of
/// the service's events over both windows.
#[allow(clippy::too_many_arguments)]
async fn dimensions(
    engine: &QueryEngine,
    conv: &Conventions,
    dataset: &str,
    m: &Marker,
    scope: &Scope,
    regressed: &[&Comparison],
    before: &Baseline,
    data_end: i64,
) -> Vec<Json> {
    let s = &conv.deploy_check;
    let error_regressed = regressed.iter().any(|c| c.metric == "error_rate");
    let selection = match (&scope.latency_column, error_regressed) {
        (Some(lat), false) => {
            let v = regressed
                .first()
                .map(|c| c.threshold)
                .or(before.quantiles[1])
                .unwrap_or(0.0);
            json!({"filters": [{"column": lat, "op": ">", "value": v}]})
        }
        _ => json!({"filters": scope.error_filters, "filter_combination": "OR"}),
    };
    let req: Result<BubbleUpRequest, _> = serde_json::from_value(json!({
        "start_time": m.start_time - s.baseline_seconds as i64,
        "end_time": data_end,
        "filters": [{"column": conv.service, "op": "=", "value": m.service}],
        "selection": selection,
        "values": 3,
    }));
    let found = match req {
        Ok(req) => engine
            .bubbleup(dataset, &req)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match found {
        Ok(b) => b
            .columns
            .iter()
            .filter(|c| c.column != conv.service && c.score > 0.0)
            .take(5)
            .map(|c| json!({"column": c.column, "score": c.score, "values": c.values}))
            .collect(),
        Err(e) => {
            tracing::warn!(dataset, marker = %m.id, error = %e, "deploy check: no BubbleUp");
            Vec::new()
        }
    }
}

/// Whether a failed deploy's service recovered in `dataset` by `now_s`: `evidence` is the
/// dataset's evidence from the failure; `later` the later deploy and rollback markers of the
/// service (time, id).
pub async fn recover_dataset(
    engine: &QueryEngine,
    conv: &Conventions,
    evidence: &Json,
    m: &Marker,
    later: &[(i64, String)],
    failed_at: i64,
    now_s: i64,
) -> Result<Option<Recovery>, AlertError> {
    let failed: Vec<Comparison> = evidence["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| serde_json::from_value::<Comparison>(c.clone()).ok())
        .filter(|c| c.regressed)
        .collect();
    let Some(dataset) = evidence["dataset"].as_str() else {
        return Ok(None);
    };
    if failed.is_empty() {
        return Ok(None);
    }
    let service = m.service.clone().unwrap_or_default();
    let Ok(scope) = Scope::new(engine, conv, dataset, &service, m.version.as_deref())? else {
        return Ok(None);
    };
    let fixes = deploy_recovery::fix_points(later, failed_at, now_s);
    let Some(start) = fixes.iter().map(|f| f.time).min() else {
        return Ok(None);
    };
    let slower: Vec<Option<f64>> = failed
        .iter()
        .map(|c| c.threshold_index.map(|_| c.threshold))
        .collect();
    let buckets = scope
        .buckets(engine, Events::Service, start, now_s + 1, &slower)
        .await?;
    Ok(deploy_recovery::recovery(
        &conv.deploy_check,
        &failed,
        &fixes,
        &buckets,
    ))
}

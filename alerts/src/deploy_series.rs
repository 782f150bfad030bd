//! The deploy page's charts: for each checked metric, the service's series before the deploy,
//! the new version's after it and the old version's beside it, on one time axis, with the
//! marker, the threshold, the point of detection and the recovery.

use eventide_query::QueryEngine;
use serde_json::{Value as Json, json};

use crate::AlertError;
use crate::conventions::Conventions;
use crate::deploy_data::Scope;
use crate::deploys::DeployCheck;
use crate::markers::Marker;

/// One row of [`Scope::series`]: bucket start, side, events, error rate, p95.
type Row = (i64, String, u64, Option<f64>, Option<f64>);

/// About this many points per series.
const POINTS: i64 = 120;
/// At most this much of the baseline is drawn.
const BEFORE_DRAWN_S: i64 = 600;

/// The series of deploy `m` in `dataset` up to `now_s`.
pub async fn series(
    engine: &QueryEngine,
    conv: &Conventions,
    dataset: &str,
    m: &Marker,
    check: Option<&DeployCheck>,
    now_s: i64,
) -> Result<Json, AlertError> {
    let s = &conv.deploy_check;
    let t0 = m.start_time;
    let service = m.service.clone().unwrap_or_default();
    let scope = match Scope::new(engine, conv, dataset, &service, m.version.as_deref())? {
        Ok(s) => s,
        Err(e) => return Ok(json!({"dataset": dataset, "reason": e.0, "metrics": []})),
    };
    let start = t0 - (s.baseline_seconds as i64).min(BEFORE_DRAWN_S);
    let observe_end = t0 + (s.warmup_seconds + s.observe_seconds) as i64;
    let mut end = observe_end.min(now_s + 1);
    if let Some(r) = check.and_then(|c| c.recovered_at) {
        end = end.max(r + 30).min(now_s + 1);
    }
    let end = end.max(t0 + 10);
    let step = ((end - start) / POINTS).max(1);
    let rows = scope.series(engine, t0, start, end, step).await?;
    let pick = |side: &str, f: &dyn Fn(&Row) -> Option<f64>| {
        rows.iter()
            .filter(|r| r.1 == side)
            .map(|r| json!([r.0, f(r)]))
            .collect::<Vec<_>>()
    };
    // Where the evidence is: this dataset's part of it.
    let evidence = check.map(|c| {
        c.evidence["datasets"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["dataset"] == dataset).cloned())
            .unwrap_or_else(|| c.evidence.clone())
    });
    let comparison = |metric: &str| -> Json {
        evidence
            .as_ref()
            .and_then(|e| e["checks"].as_array())
            .and_then(|l| {
                l.iter()
                    .filter(|c| c["metric"] == metric)
                    .max_by_key(|c| (c["regressed"] == true, c["against"] == "before"))
                    .cloned()
            })
            .unwrap_or(Json::Null)
    };
    let mut metrics = vec![json!({
        "metric": "error_rate",
        "unit": "ratio",
        "comparison": comparison("error_rate"),
        "series": {
            "before": pick("before", &|r| r.3),
            "after": pick("after", &|r| r.3),
            "old_version": pick("old", &|r| r.3),
        },
    })];
    if scope.latency_column.is_some() {
        metrics.push(json!({
            "metric": "latency_p95",
            "unit": "ms",
            "column": scope.latency_column,
            "comparison": comparison("latency_p95"),
            "series": {
                "before": pick("before", &|r| r.4),
                "after": pick("after", &|r| r.4),
                "old_version": pick("old", &|r| r.4),
            },
        }));
    }
    let events: Vec<Json> = rows.iter().map(|r| json!([r.0, r.1, r.2])).collect();
    Ok(json!({
        "dataset": dataset,
        "marker": m,
        "deploy_time": t0,
        "start": start,
        "end": end,
        "step": step,
        "failed_at": check.and_then(|c| c.failed_at),
        "recovered_at": check.and_then(|c| c.recovered_at),
        "fix_time": check.map(|c| c.evidence["recovery"]["fix_time"].clone()),
        "warmup_end": evidence.as_ref().map(|e| e["warmup"]["ended_at"].clone()),
        "metrics": metrics,
        "events": events,
    }))
}

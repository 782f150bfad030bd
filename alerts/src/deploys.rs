//! Deploy checks: every `deploy` marker that names a `service` is checked against the traffic
//! before it. The service's events in the window after the deploy (after a warm-up) are
//! compared with the window before it for error rate and latency percentiles; where the
//! marker names a `version` and the dataset has a version column, only the new version's events
//! count as "after", and when the old version still runs beside it (a canary, a rolling
//! deploy) the new version is also compared with the old one over the same window.
//!
//! The verdict is `fail` as soon as a comparison shows a regression (a rise beyond the
//! tolerance, `z` standard errors away), `pass` when the observation window has ended with
//! enough events and no regression, `inconclusive` when it ended with too few, and `pending`
//! until then. Final verdicts are kept in `DATA/alerts/deploys.json`.
//!
//! # The tests
//! - Error rate (sample-rate weighted rates, standard error from the stored events): a
//!   two-proportion z test.
//! - Latency (p50, p95, p99): the share of the new events slower than the baseline's
//!   percentile, against the share expected if nothing changed (50 %, 5 %, 1 %); a binomial z
//!   test. Only where at least 5 slower events are expected.

use std::collections::BTreeMap;
use std::path::Path;

use eventide_query::spec::{Filter, ident, string_lit};
use eventide_query::{BubbleUpRequest, QueryEngine};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::AlertError;
use crate::conventions::{Conventions, DeployCheckSettings};
use crate::jsonfile::{FileError, Saved};
use crate::markers::{ALL_DATASETS, Marker};

/// The marker type that is a deploy.
pub const DEPLOY_TYPE: &str = "deploy";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pending,
    Pass,
    Fail,
    Inconclusive,
}

impl Verdict {
    pub fn is_final(self) -> bool {
        self != Verdict::Pending
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// One deploy's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployCheck {
    pub marker_id: String,
    pub dataset: String,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The deploy's time (the marker's `start_time`), Unix seconds.
    pub deploy_time: i64,
    pub verdict: Verdict,
    pub evidence: Json,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    pub updated_at: String,
    /// Webhook targets told about the final verdict.
    #[serde(default)]
    pub notified: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DeploysFile {
    checks: BTreeMap<String, DeployCheck>,
}

/// Every deploy check.
#[derive(Debug, Clone)]
pub struct DeployChecks {
    file: Saved<DeploysFile>,
}

/// Whether a marker is a deploy that gets checked.
pub fn is_checked(m: &Marker) -> bool {
    m.kind == DEPLOY_TYPE && m.service.as_deref().is_some_and(|s| !s.is_empty())
}

impl DeployChecks {
    pub fn open(dir: &Path) -> Result<Self, FileError> {
        Ok(Self {
            file: Saved::open(dir.join("alerts").join("deploys.json"))?,
        })
    }

    pub fn get(&self, marker_id: &str) -> Option<DeployCheck> {
        self.file.read(|f| f.checks.get(marker_id).cloned())
    }

    pub fn all(&self) -> Vec<DeployCheck> {
        self.file.read(|f| f.checks.values().cloned().collect())
    }

    /// Stores a check's new state.
    pub fn put(&self, check: DeployCheck) -> Result<(), AlertError> {
        self.file.change(|f| {
            f.checks.insert(check.marker_id.clone(), check);
            Ok(())
        })
    }

    /// Drops the checks of markers that are gone; returns how many.
    pub fn retain(&self, live: &std::collections::HashSet<String>) -> Result<usize, AlertError> {
        if self
            .file
            .read(|f| f.checks.keys().all(|k| live.contains(k)))
        {
            return Ok(0);
        }
        self.file.change(|f| {
            let before = f.checks.len();
            f.checks.retain(|k, _| live.contains(k));
            Ok(before - f.checks.len())
        })
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Side {
    /// Stored events.
    pub events: u64,
    /// Events represented (sample rates summed).
    pub weight: f64,
    pub errors: f64,
    pub error_rate: Option<f64>,
    /// Events with a latency value.
    pub latency_events: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Side {
    fn quantile(&self, q: f64) -> Option<f64> {
        match q {
            0.5 => self.p50,
            0.95 => self.p95,
            _ => self.p99,
        }
    }
}

const QUANTILES: [(f64, &str); 3] = [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")];

fn num(v: &Json) -> Option<f64> {
    v.as_f64()
}

fn micros_lit(s: i64) -> String {
    string_lit(&eventide_model::time::format_micros(
        s.saturating_mul(1_000_000),
    ))
}

/// One comparison's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub metric: String,
    pub against: &'static str,
    pub baseline: f64,
    pub deployed: f64,
    pub z: f64,
    pub regressed: bool,
}

fn z_two_proportions(p_b: f64, n_b: f64, p_a: f64, n_a: f64, pooled: f64) -> f64 {
    let se = (pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)).sqrt();
    if se > 0.0 {
        (p_a - p_b) / se
    } else if p_a > p_b {
        f64::INFINITY
    } else {
        0.0
    }
}

/// Compares `after` with `base` (error rate; latency through the exceedance counts `slower`,
/// the after-events slower than base's p50/p95/p99).
fn compare(
    s: &DeployCheckSettings,
    against: &'static str,
    base: &Side,
    after: &Side,
    slower: [u64; 3],
) -> Vec<Check> {
    let mut out = Vec::new();
    let min = s.min_events;
    if base.events < min || after.events < min {
        return out;
    }
    if let (Some(p_b), Some(p_a)) = (base.error_rate, after.error_rate) {
        let pooled = (base.errors + after.errors) / (base.weight + after.weight).max(1.0);
        let z = z_two_proportions(p_b, base.events as f64, p_a, after.events as f64, pooled);
        let regressed = z >= s.z
            && p_a > p_b * (1.0 + s.error_rate_tolerance)
            && p_a - p_b >= s.min_error_rate_increase;
        out.push(Check {
            metric: "error_rate".into(),
            against,
            baseline: p_b,
            deployed: p_a,
            z,
            regressed,
        });
    }
    let n = after.latency_events as f64;
    for (i, (q, name)) in QUANTILES.iter().enumerate() {
        let expected = 1.0 - q;
        let (Some(b), Some(a)) = (base.quantile(*q), after.quantile(*q)) else {
            continue;
        };
        if n * expected < 5.0 || base.latency_events as f64 * expected < 5.0 {
            continue;
        }
        let share = slower[i] as f64 / n;
        let z = (share - expected) / (expected * (1.0 - expected) / n).sqrt();
        let regressed = z >= s.z && a > b * (1.0 + s.latency_tolerance);
        out.push(Check {
            metric: format!("latency_{name}"),
            against,
            baseline: b,
            deployed: a,
            z,
            regressed,
        });
    }
    out
}

fn describe(c: &Check) -> String {
    let z = if c.z.is_finite() {
        format!("{:.1}", c.z)
    } else {
        "∞".into()
    };
    if c.metric == "error_rate" {
        format!(
            "error_rate rose from {:.2} % to {:.2} % (z = {z}) against {}",
            c.baseline * 100.0,
            c.deployed * 100.0,
            c.against
        )
    } else {
        format!(
            "{} rose from {:.1} to {:.1} (z = {z}) against {}",
            c.metric, c.baseline, c.deployed, c.against
        )
    }
}

/// What one evaluation found in one dataset.
pub struct Outcome {
    pub verdict: Verdict,
    pub evidence: Json,
}

/// Checks deploy `m` in `dataset` at `now_s`, with data up to `now_s - delay_s`.
pub async fn check_dataset(
    engine: &QueryEngine,
    conv: &Conventions,
    dataset: &str,
    m: &Marker,
    now_s: i64,
    delay_s: i64,
) -> Result<Outcome, AlertError> {
    let s = &conv.deploy_check;
    let service = m.service.clone().unwrap_or_default();
    let t0 = m.start_time;
    let warm = t0 + s.warmup_seconds as i64;
    let observe_end = warm + s.observe_seconds as i64;
    let data_end = (now_s - delay_s).min(observe_end);
    let over = now_s - delay_s >= observe_end;
    let before_start = t0 - s.baseline_seconds as i64;
    let mut evidence = json!({
        "dataset": dataset,
        "service": service,
        "version": m.version,
        "windows": {
            "before": {"start": before_start, "end": t0},
            "after": {"start": warm, "end": observe_end},
        },
        "min_events": s.min_events,
    });
    let Some(snapshot) = engine.store().snapshot(dataset) else {
        evidence["reason"] = json!(format!("dataset {dataset:?} has no events yet"));
        let v = if over {
            Verdict::Inconclusive
        } else {
            Verdict::Pending
        };
        return Ok(Outcome {
            verdict: v,
            evidence,
        });
    };
    let has = |c: &str| snapshot.schema.field_with_name(c).is_ok();
    if !has(&conv.service) {
        evidence["reason"] = json!(format!(
            "dataset {dataset:?} has no service column {:?}",
            conv.service
        ));
        return Ok(Outcome {
            verdict: if over {
                Verdict::Inconclusive
            } else {
                Verdict::Pending
            },
            evidence,
        });
    }
    let version_col = conv.version_column(has);
    evidence["version_column"] = json!(version_col);
    let latency = has(&conv.latency)
        .then(|| {
            snapshot
                .schema
                .field_with_name(&conv.latency)
                .ok()
                .filter(|f| f.data_type().is_numeric())
                .map(|_| ident(&conv.latency))
        })
        .flatten();
    let error_filters: Vec<Filter> = conv
        .error
        .iter()
        .filter(|f| has(&f.column))
        .cloned()
        .collect();
    let err_sql = engine
        .filters_predicate(dataset, &error_filters, true)
        .map_err(|e| AlertError::Invalid(format!("error convention: {e}")))?;
    let new_version = match (version_col, &m.version) {
        (Some(c), Some(v)) => format!("CAST({} AS VARCHAR) = {}", ident(c), string_lit(v)),
        _ => "TRUE".into(),
    };
    let ts = ident(eventide_model::TIMESTAMP);
    let sr = ident(eventide_model::SAMPLERATE);
    let table = ident(dataset);
    let scope = format!(
        "{} = {} AND (({ts} >= {} AND {ts} < {}) OR ({ts} >= {} AND {ts} < {}))",
        ident(&conv.service),
        string_lit(&service),
        micros_lit(before_start),
        micros_lit(t0),
        micros_lit(warm),
        micros_lit(data_end.max(warm)),
    );
    let side_sql = format!(
        "CASE WHEN {ts} < {} THEN 'before' WHEN COALESCE({new_version}, FALSE) THEN 'after' ELSE 'old' END",
        micros_lit(t0)
    );
    let lat = latency
        .clone()
        .unwrap_or_else(|| "CAST(NULL AS DOUBLE)".into());
    let pct = |q: f64| format!("exact_percentile(CAST({lat} AS DOUBLE), {q})");
    let sql = format!(
        "SELECT {side_sql} AS side, COUNT(*) AS events, SUM({sr}) AS weight, \
         SUM(CASE WHEN COALESCE({err_sql}, FALSE) THEN {sr} ELSE 0 END) AS errors, \
         COUNT({lat}) AS latency_events, {}, {}, {} \
         FROM {table} WHERE {scope} GROUP BY 1",
        pct(0.5),
        pct(0.95),
        pct(0.99)
    );
    let r = engine
        .sql(&sql)
        .await
        .map_err(|e| AlertError::Query(e.to_string()))?;
    let mut sides: BTreeMap<String, Side> = BTreeMap::new();
    for row in &r.rows {
        let name = row[0].as_str().unwrap_or_default().to_owned();
        let weight = num(&row[2]).unwrap_or(0.0);
        let errors = num(&row[3]).unwrap_or(0.0);
        sides.insert(
            name,
            Side {
                events: row[1].as_u64().unwrap_or(0),
                weight,
                errors,
                error_rate: (weight > 0.0).then(|| errors / weight),
                latency_events: row[4].as_u64().unwrap_or(0),
                p50: num(&row[5]),
                p95: num(&row[6]),
                p99: num(&row[7]),
            },
        );
    }
    let before = sides.get("before").copied().unwrap_or_default();
    let after = sides.get("after").copied().unwrap_or_default();
    let old = sides.get("old").copied().unwrap_or_default();
    evidence["before"] = json!(before);
    evidence["after"] = json!(after);
    if old.events > 0 {
        evidence["old_version"] = json!(old);
    }

    // Latency: the after-events slower than each baseline's percentiles.
    let baselines: Vec<(&'static str, Side)> = [("before", before), ("old_version", old)]
        .into_iter()
        .filter(|(_, b)| b.events >= s.min_events)
        .collect();
    let mut slower: BTreeMap<&'static str, [u64; 3]> = BTreeMap::new();
    if let Some(lat) = &latency
        && after.latency_events > 0
    {
        let mut sums = Vec::new();
        for (name, b) in &baselines {
            for (q, _) in QUANTILES {
                let v = b.quantile(q).filter(|v| v.is_finite()).unwrap_or(f64::MAX);
                sums.push((
                    *name,
                    format!("SUM(CASE WHEN CAST({lat} AS DOUBLE) > {v:?} THEN 1 ELSE 0 END)"),
                ));
            }
        }
        if !sums.is_empty() {
            let exprs: Vec<String> = sums
                .iter()
                .enumerate()
                .map(|(i, (_, e))| format!("{e} AS slower_{i}"))
                .collect();
            let sql = format!(
                "SELECT {} FROM {table} WHERE {scope} AND {ts} >= {} AND COALESCE({new_version}, FALSE)",
                exprs.join(", "),
                micros_lit(warm)
            );
            let r = engine
                .sql(&sql)
                .await
                .map_err(|e| AlertError::Query(e.to_string()))?;
            if let Some(row) = r.rows.first() {
                for (i, (name, _)) in sums.iter().enumerate() {
                    let e = slower.entry(name).or_default();
                    e[i % 3] = row[i].as_u64().unwrap_or(0);
                }
            }
        }
    }
    let mut checks = Vec::new();
    for (name, b) in &baselines {
        checks.extend(compare(
            s,
            name,
            b,
            &after,
            slower.get(name).copied().unwrap_or_default(),
        ));
    }
    let regressions: Vec<String> = checks
        .iter()
        .filter(|c| c.regressed)
        .map(describe)
        .collect();
    let enough = !checks.is_empty();
    evidence["checks"] = json!(checks);
    evidence["regressions"] = json!(regressions);
    let verdict = if !regressions.is_empty() {
        Verdict::Fail
    } else if !over {
        Verdict::Pending
    } else if enough {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    if verdict == Verdict::Fail {
        // What sets the failing events apart: BubbleUp of errors (or slow events) against the
        // rest of the service's events over both windows.
        let error_regressed = checks
            .iter()
            .any(|c| c.regressed && c.metric == "error_rate");
        let selection = if error_regressed || latency.is_none() {
            json!({"filters": error_filters, "filter_combination": "OR"})
        } else {
            let p95 = before.p95.unwrap_or(0.0);
            json!({"filters": [{"column": conv.latency, "op": ">", "value": p95}]})
        };
        let req: Result<BubbleUpRequest, _> = serde_json::from_value(json!({
            "start_time": before_start,
            "end_time": data_end.max(warm),
            "filters": [{"column": conv.service, "op": "=", "value": service}],
            "selection": selection,
            "values": 3,
        }));
        match req {
            Ok(req) => match engine.bubbleup(dataset, &req).await {
                Ok(b) => {
                    let dims: Vec<Json> = b
                        .columns
                        .iter()
                        .filter(|c| c.column != conv.service && c.score > 0.0)
                        .take(5)
                        .map(|c| json!({"column": c.column, "score": c.score, "values": c.values}))
                        .collect();
                    evidence["dimensions"] = json!(dims);
                }
                Err(e) => evidence["dimensions_error"] = json!(e.to_string()),
            },
            Err(e) => evidence["dimensions_error"] = json!(e.to_string()),
        }
    } else if verdict == Verdict::Inconclusive {
        evidence["reason"] = json!(format!(
            "too little traffic: {} events before and {} after the deploy, {} needed on each side",
            before.events, after.events, s.min_events
        ));
    }
    Ok(Outcome { verdict, evidence })
}

/// Combines the outcomes of the datasets a deploy marker covers (`__all__`: several).
pub fn combine(marker: &Marker, mut outcomes: Vec<Outcome>) -> Outcome {
    if outcomes.len() == 1 && marker.dataset != ALL_DATASETS {
        return outcomes.remove(0);
    }
    let vs: Vec<Verdict> = outcomes.iter().map(|o| o.verdict).collect();
    let verdict = if vs.contains(&Verdict::Fail) {
        Verdict::Fail
    } else if vs.contains(&Verdict::Pending) {
        Verdict::Pending
    } else if vs.contains(&Verdict::Pass) {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    let regressions: Vec<Json> = outcomes
        .iter()
        .flat_map(|o| {
            o.evidence["regressions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    Outcome {
        verdict,
        evidence: json!({
            "service": marker.service,
            "version": marker.version,
            "regressions": regressions,
            "datasets": outcomes.into_iter().map(|o| o.evidence).collect::<Vec<_>>(),
            "reason": if vs.is_empty() { Some("no dataset has events of this service") } else { None },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(events: u64, error_rate: f64) -> Side {
        Side {
            events,
            weight: events as f64,
            errors: events as f64 * error_rate,
            error_rate: Some(error_rate),
            latency_events: events,
            p50: Some(100.0),
            p95: Some(400.0),
            p99: Some(900.0),
        }
    }

    #[test]
    fn doubled_error_rate_is_a_regression_and_noise_is_not() {
        let s = DeployCheckSettings::default();
        let base = side(60_000, 0.05);
        let bad = compare(&s, "before", &base, &side(1_000, 0.10), [500, 50, 10]);
        let e = bad.iter().find(|c| c.metric == "error_rate").unwrap();
        assert!(e.regressed && e.z > 6.0, "{e:?}");
        assert!(bad.iter().all(|c| c.metric == "error_rate" || !c.regressed));
        let same = compare(&s, "before", &base, &side(1_000, 0.055), [510, 55, 11]);
        assert!(same.iter().all(|c| !c.regressed), "{same:?}");
        // Too few events: nothing is compared at all.
        assert!(compare(&s, "before", &base, &side(50, 0.5), [0; 3]).is_empty());
    }

    #[test]
    fn slower_tail_is_a_latency_regression() {
        let s = DeployCheckSettings::default();
        let base = side(10_000, 0.01);
        let mut after = side(2_000, 0.01);
        after.p95 = Some(800.0);
        // 20 % of the new events are slower than the old p95 (5 % expected).
        let checks = compare(&s, "before", &base, &after, [1_000, 400, 20]);
        let p95 = checks.iter().find(|c| c.metric == "latency_p95").unwrap();
        assert!(p95.regressed, "{p95:?}");
        assert!(
            !checks
                .iter()
                .find(|c| c.metric == "latency_p50")
                .unwrap()
                .regressed
        );
        assert!(describe(p95).contains("latency_p95 rose from 400.0 to 800.0"));
    }
}

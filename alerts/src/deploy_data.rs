//! What a deploy check reads: the counts [`crate::deploy_stats`] decides by, from SQL over the
//! dataset (read through the query engine, like every other reader of events).

use std::collections::BTreeMap;

use eventide_query::QueryEngine;
use eventide_query::spec::{Filter, ident, string_lit};
use serde_json::Value as Json;

use crate::AlertError;
use crate::conventions::Conventions;
use crate::deploy_stats::{BUCKET_MS, Baseline, Bucket};

fn micros_lit(s: i64) -> String {
    string_lit(&eventide_model::time::format_micros(
        s.saturating_mul(1_000_000),
    ))
}

/// Which of the service's events a bucket query counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Events {
    /// The deploy's version (all of the service's when the deploy names none).
    NewVersion,
    /// Every version.
    Service,
}

/// The SQL a dataset's checks are built from, for one deploy.
#[derive(Debug, Clone)]
pub struct Scope {
    pub dataset: String,
    table: String,
    service: String,
    /// Whether an event is an error (SQL, never NULL).
    error: String,
    /// Whether an event is of the deploy's version (SQL, never NULL).
    new_version: String,
    /// The latency as DOUBLE (SQL), if the dataset has a numeric latency column.
    latency: Option<String>,
    pub version_column: Option<String>,
    pub error_filters: Vec<Filter>,
    pub latency_column: Option<String>,
}

/// Why a dataset cannot be checked (yet).
#[derive(Debug, Clone)]
pub struct NotCheckable(pub String);

impl Scope {
    /// The scope of `service` (and `version`) in `dataset`; `Err` says why it cannot be checked.
    pub fn new(
        engine: &QueryEngine,
        conv: &Conventions,
        dataset: &str,
        service: &str,
        version: Option<&str>,
    ) -> Result<Result<Self, NotCheckable>, AlertError> {
        let Some(snapshot) = engine.store().snapshot(dataset) else {
            return Ok(Err(NotCheckable(format!(
                "dataset {dataset:?} has no events yet"
            ))));
        };
        let has = |c: &str| snapshot.schema.field_with_name(c).is_ok();
        if !has(&conv.service) {
            return Ok(Err(NotCheckable(format!(
                "dataset {dataset:?} has no service column {:?}",
                conv.service
            ))));
        }
        let version_column = conv.version_column(has).map(str::to_owned);
        let latency_column = snapshot
            .schema
            .field_with_name(&conv.latency)
            .ok()
            .filter(|f| f.data_type().is_numeric())
            .map(|_| conv.latency.clone());
        let error_filters: Vec<Filter> = conv
            .error
            .iter()
            .filter(|f| has(&f.column))
            .cloned()
            .collect();
        let error = engine
            .filters_predicate(dataset, &error_filters, true)
            .map_err(|e| AlertError::Invalid(format!("error convention: {e}")))?;
        let new_version = match (&version_column, version) {
            (Some(c), Some(v)) => format!(
                "COALESCE(CAST({} AS VARCHAR) = {}, FALSE)",
                ident(c),
                string_lit(v)
            ),
            _ => "TRUE".into(),
        };
        Ok(Ok(Self {
            dataset: dataset.to_owned(),
            table: ident(dataset),
            service: format!("{} = {}", ident(&conv.service), string_lit(service)),
            error: format!("COALESCE({error}, FALSE)"),
            new_version,
            latency: latency_column
                .as_deref()
                .map(|c| format!("CAST({} AS DOUBLE)", ident(c))),
            version_column,
            error_filters,
            latency_column,
        }))
    }

    fn range(&self, start: i64, end: i64) -> String {
        let ts = ident(eventide_model::TIMESTAMP);
        format!(
            "{} AND {ts} >= {} AND {ts} < {}",
            self.service,
            micros_lit(start),
            micros_lit(end)
        )
    }

    fn latency(&self) -> String {
        self.latency
            .clone()
            .unwrap_or_else(|| "CAST(NULL AS DOUBLE)".into())
    }

    /// Summaries of the service's events in `[start, end)` by side: `before` (before `t0`),
    /// `after` (the new version from `t0`) and `old` (other versions from `t0`).
    pub async fn sides(
        &self,
        engine: &QueryEngine,
        t0: i64,
        start: i64,
        end: i64,
    ) -> Result<BTreeMap<String, Baseline>, AlertError> {
        let ts = ident(eventide_model::TIMESTAMP);
        let sr = ident(eventide_model::SAMPLERATE);
        let lat = self.latency();
        let err = &self.error;
        let side = format!(
            "CASE WHEN {ts} < {} THEN 'before' WHEN {} THEN 'after' ELSE 'old' END",
            micros_lit(t0),
            self.new_version
        );
        let pct = |q: f64| format!("exact_percentile({lat}, {q})");
        let sql = format!(
            "SELECT {side} AS side, COUNT(*), SUM(CASE WHEN {err} THEN 1 ELSE 0 END), SUM({sr}), \
             SUM(CASE WHEN {err} THEN {sr} ELSE 0 END), COUNT({lat}), {}, {}, {} \
             FROM {} WHERE {} GROUP BY 1",
            pct(0.5),
            pct(0.95),
            pct(0.99),
            self.table,
            self.range(start, end)
        );
        let r = engine
            .sql(&sql)
            .await
            .map_err(|e| AlertError::Query(e.to_string()))?;
        let mut out = BTreeMap::new();
        for row in &r.rows {
            let u = |i: usize| row[i].as_u64().unwrap_or(0);
            let f = |i: usize| row[i].as_f64();
            out.insert(
                row[0].as_str().unwrap_or_default().to_owned(),
                Baseline {
                    events: u(1),
                    errors: u(2),
                    weight: f(3).unwrap_or(0.0),
                    weighted_errors: f(4).unwrap_or(0.0),
                    latency_events: u(5),
                    quantiles: [f(6), f(7), f(8)],
                },
            );
        }
        Ok(out)
    }

    /// The service's events (`which`) in `[start, end)` per [`BUCKET_MS`], with the events slower
    /// than each latency value of `slower`, or, where it is `None`, the errors again (so a
    /// recovery test reads its hits from `slower` whatever it compares).
    pub async fn buckets(
        &self,
        engine: &QueryEngine,
        which: Events,
        start: i64,
        end: i64,
        slower: &[Option<f64>],
    ) -> Result<Vec<Bucket>, AlertError> {
        let ts = ident(eventide_model::TIMESTAMP);
        let lat = self.latency();
        let err = &self.error;
        let mut cols = vec![
            // Timestamps are microseconds.
            format!(
                "CAST({ts} AS BIGINT) / {us} * {BUCKET_MS} AS s",
                us = BUCKET_MS * 1000
            ),
            "COUNT(*)".into(),
            format!("SUM(CASE WHEN {err} THEN 1 ELSE 0 END)"),
            format!("COUNT({lat})"),
        ];
        for v in slower {
            cols.push(match v {
                Some(v) if v.is_finite() => {
                    format!("SUM(CASE WHEN {lat} > {v:?} THEN 1 ELSE 0 END)")
                }
                Some(_) => "CAST(0 AS BIGINT)".into(),
                None => format!("SUM(CASE WHEN {err} THEN 1 ELSE 0 END)"),
            });
        }
        let only = match which {
            Events::NewVersion => format!(" AND {}", self.new_version),
            Events::Service => String::new(),
        };
        let cols: Vec<String> = cols
            .into_iter()
            .enumerate()
            .map(|(i, c)| match c.strip_suffix(" AS s") {
                Some(c) => format!("{c} AS s"),
                None => format!("{c} AS c{i}"),
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {}{only} GROUP BY 1 ORDER BY 1",
            cols.join(", "),
            self.table,
            self.range(start, end)
        );
        let r = engine
            .sql(&sql)
            .await
            .map_err(|e| AlertError::Query(e.to_string()))?;
        Ok(r.rows
            .iter()
            .map(|row| {
                let u = |i: usize| row.get(i).and_then(Json::as_u64).unwrap_or(0);
                Bucket {
                    start_ms: row[0].as_i64().unwrap_or(0),
                    events: u(1),
                    errors: u(2),
                    latency_events: u(3),
                    slower: (0..slower.len()).map(|i| u(4 + i)).collect(),
                }
            })
            .collect())
    }

    /// The chart series of a deploy: per `step` seconds over `[start, end)`, for each side
    /// (`before`, `after`, `old`), the weighted error rate and the latency p95.
    pub async fn series(
        &self,
        engine: &QueryEngine,
        t0: i64,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<(i64, String, u64, Option<f64>, Option<f64>)>, AlertError> {
        let ts = ident(eventide_model::TIMESTAMP);
        let sr = ident(eventide_model::SAMPLERATE);
        let lat = self.latency();
        let err = &self.error;
        let side = format!(
            "CASE WHEN {ts} < {} THEN 'before' WHEN {} THEN 'after' ELSE 'old' END",
            micros_lit(t0),
            self.new_version
        );
        let sql = format!(
            "SELECT to_unixtime({ts}) / {step} * {step} AS t, {side} AS side, COUNT(*), \
             CAST(SUM(CASE WHEN {err} THEN {sr} ELSE 0 END) AS DOUBLE) / CAST(SUM({sr}) AS DOUBLE), \
             approx_percentile_cont({lat}, 0.95) \
             FROM {} WHERE {} GROUP BY 1, 2 ORDER BY 1, 2",
            self.table,
            self.range(start, end)
        );
        let r = engine
            .sql(&sql)
            .await
            .map_err(|e| AlertError::Query(e.to_string()))?;
        Ok(r.rows
            .iter()
            .map(|row| {
                (
                    row[0].as_i64().unwrap_or(0),
                    row[1].as_str().unwrap_or_default().to_owned(),
                    row[2].as_u64().unwrap_or(0),
                    row[3].as_f64(),
                    row[4].as_f64(),
                )
            })
            .collect())
    }
}

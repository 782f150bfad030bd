//! BubbleUp: what is different about a selection of events?
//!
//! `POST /api/v1/bubbleup/{dataset}` takes a scope (a time range and filters, as a query spec)
//! and a selection inside it (more filters and/or a narrower time range: a region of a heatmap,
//! a stretch of a chart). Every other column's value distribution in the selection is compared
//! with the rest of the scope, in DataFusion: strings, booleans and integers by their most
//! frequent values, floats by deciles of the scope. Columns are ranked by the total variation
//! distance between the two distributions (half the sum of the absolute differences of the
//! shares, the values outside the top ones counted as one "other" value): 0 when the selection
//! looks like the rest, 1 when they share no value. Counts are weighted by `_samplerate`, like
//! COUNT. Columns the selection filters on are left out (they differ by construction).

use std::collections::HashSet;
use std::time::Instant;

use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::encode::cell;
use crate::spec::{Columns, Filter, QuerySpec, filter_sql, float_lit, ident, string_lit};
use crate::{QueryEngine, QueryError, Result};

/// Values shown per column by default, and at most.
pub const DEFAULT_VALUES: usize = 10;
pub const MAX_VALUES: usize = 100;

/// Columns whose presence is counted in one query.
const COLUMNS_PER_QUERY: usize = 200;

/// The events selected inside the scope.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Selection {
    /// Conditions the selected events meet: all of them, or any with `filter_combination`
    /// `"OR"`.
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub filter_combination: Option<String>,
    /// A narrower time range, Unix seconds: `[start_time, end_time)`.
    #[serde(default)]
    pub start_time: Option<f64>,
    #[serde(default)]
    pub end_time: Option<f64>,
}

/// The body of `POST /api/v1/bubbleup/{dataset}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct BubbleUpRequest {
    /// The scope: time range, filters and filter combination as in a query spec (its
    /// calculations, breakdowns and orders are not used).
    #[serde(flatten)]
    pub scope: QuerySpec,
    pub selection: Selection,
    /// Values shown per column.
    #[serde(default)]
    pub values: Option<usize>,
}

/// One value of a column, in both groups.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ValueShare {
    /// The value as text (`null` for absent), or a decile range for floats (`[lo, hi)`).
    pub value: Option<String>,
    pub selection_count: i64,
    pub baseline_count: i64,
    /// Share of the selection / of the rest.
    pub selection: f64,
    pub baseline: f64,
}

/// One column's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnDifference {
    pub column: String,
    /// Total variation distance between the selection's and the rest's distributions, 0–1.
    pub score: f64,
    pub values: Vec<ValueShare>,
}

/// The reply of `POST /api/v1/bubbleup/{dataset}`.
#[derive(Debug, Clone, Serialize)]
pub struct BubbleUpResult {
    pub selection_count: i64,
    pub baseline_count: i64,
    /// Every compared column, the most different first.
    pub columns: Vec<ColumnDifference>,
    pub stats: crate::engine::ScanStats,
    pub elapsed_ms: f64,
}

impl QueryEngine {
    /// Compares the selection with the rest of the scope, column by column.
    pub async fn bubbleup(&self, dataset: &str, req: &BubbleUpRequest) -> Result<BubbleUpResult> {
        let started = Instant::now();
        self.catch_up().await;
        let snapshot = self
            .store()
            .snapshot(dataset)
            .ok_or_else(|| QueryError::bad(format!("unknown dataset {dataset:?}")))?;
        let cols = Columns::new(dataset, &snapshot.schema);
        let plan = crate::spec::plan(
            dataset,
            &snapshot.schema,
            &req.scope,
            self.store().clock().now_micros(),
        )?;
        let limit = req.values.unwrap_or(DEFAULT_VALUES);
        if limit == 0 || limit > MAX_VALUES {
            return Err(QueryError::bad(format!(
                "values must be between 1 and {MAX_VALUES}"
            )));
        }
        let mut conds = Vec::new();
        let mut filtered: HashSet<&str> = HashSet::new();
        let mut matches = Vec::new();
        for f in &req.selection.filters {
            matches.push(filter_sql(f, &cols)?);
            filtered.insert(f.column.as_str());
        }
        if !matches.is_empty() {
            let join = match req.selection.filter_combination.as_deref() {
                None => " AND ",
                Some(c) if c.eq_ignore_ascii_case("and") => " AND ",
                Some(c) if c.eq_ignore_ascii_case("or") => " OR ",
                Some(c) => {
                    return Err(QueryError::bad(format!(
                        "selection filter_combination must be AND or OR, not {c:?}"
                    )));
                }
            };
            conds.push(format!("({})", matches.join(join)));
        }
        let bound = |t: f64| {
            eventide_model::time::parse_time_number(t)
                .map(|us| string_lit(&eventide_model::time::format_micros(us)))
                .ok_or_else(|| {
                    QueryError::bad(format!("selection time {t} is not a valid Unix time"))
                })
        };
        if let Some(t) = req.selection.start_time {
            conds.push(format!("{} >= {}", ident("timestamp"), bound(t)?));
        }
        if let Some(t) = req.selection.end_time {
            conds.push(format!("{} < {}", ident("timestamp"), bound(t)?));
        }
        if conds.is_empty() {
            return Err(QueryError::bad(
                "selection needs filters or a time range (start_time, end_time)",
            ));
        }
        let sel = format!("COALESCE(({}), FALSE)", conds.join(" AND "));
        let sr = ident(eventide_model::SAMPLERATE);
        let sums = format!(
            "COALESCE(SUM(CASE WHEN {sel} THEN {sr} ELSE 0 END), 0) AS s__n, \
             COALESCE(SUM(CASE WHEN {sel} THEN 0 ELSE {sr} END), 0) AS b__n"
        );
        let mut stats = crate::engine::ScanStats::default();
        let (_, b) = self
            .internal_sql_batches(
                &format!("SELECT {sums} FROM {} WHERE {}", plan.table, plan.where_sql),
                &mut stats,
            )
            .await?;
        let total = |i: usize| {
            b.first()
                .filter(|b| b.num_rows() > 0)
                .and_then(|b| cell(b.column(i), 0).as_i64())
                .unwrap_or(0)
        };
        let (sel_n, base_n) = (total(0), total(1));
        let mut out = BubbleUpResult {
            selection_count: sel_n,
            baseline_count: base_n,
            columns: Vec::new(),
            stats: Default::default(),
            elapsed_ms: 0.0,
        };
        if sel_n == 0 || base_n == 0 {
            out.stats = stats;
            out.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            return Ok(out);
        }
        // Candidate columns: present in the scope, not the time, the sample rate or a column
        // the selection is defined by.
        let fields: Vec<(String, DataType)> = snapshot
            .schema
            .fields()
            .iter()
            .filter(|f| {
                let n = f.name().as_str();
                n != eventide_model::TIMESTAMP
                    && n != eventide_model::SAMPLERATE
                    && !filtered.contains(n)
            })
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let mut present = Vec::new();
        for chunk in fields.chunks(COLUMNS_PER_QUERY) {
            let counts: Vec<String> = chunk
                .iter()
                .map(|(n, _)| format!("COUNT({})", ident(n)))
                .collect();
            let (_, b) = self
                .internal_sql_batches(
                    &format!(
                        "SELECT {} FROM {} WHERE {}",
                        counts.join(", "),
                        plan.table,
                        plan.where_sql
                    ),
                    &mut stats,
                )
                .await?;
            for (i, f) in chunk.iter().enumerate() {
                let n = b
                    .first()
                    .and_then(|b| cell(b.column(i), 0).as_i64())
                    .unwrap_or(0);
                if n > 0 {
                    present.push(f.clone());
                }
            }
        }
        for (name, t) in present {
            let float = matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64);
            let (values, (sel_t, base_t)) = if float {
                self.decile_shares(&plan, &name, &sums, &mut stats).await?
            } else {
                self.top_shares(&plan, &name, &sums, limit, &mut stats)
                    .await?
            };
            // Shares of the totals this column's own scan saw (events may have arrived since
            // the first one).
            let (sel_t, base_t) = (sel_t.max(1) as f64, base_t.max(1) as f64);
            let mut values: Vec<ValueShare> = values
                .into_iter()
                .map(|(value, s, b)| ValueShare {
                    value,
                    selection_count: s,
                    baseline_count: b,
                    selection: s as f64 / sel_t,
                    baseline: b as f64 / base_t,
                })
                .collect();
            let shown_s: f64 = values.iter().map(|v| v.selection).sum();
            let shown_b: f64 = values.iter().map(|v| v.baseline).sum();
            let score = 0.5
                * (values
                    .iter()
                    .map(|v| (v.selection - v.baseline).abs())
                    .sum::<f64>()
                    + ((1.0 - shown_s) - (1.0 - shown_b)).abs());
            // Deciles stay in order (a histogram); other values, the most different first.
            if !float {
                values.sort_by(|a, b| {
                    (b.selection - b.baseline)
                        .abs()
                        .total_cmp(&(a.selection - a.baseline).abs())
                });
                values.truncate(limit);
            }
            out.columns.push(ColumnDifference {
                column: name,
                score: score.clamp(0.0, 1.0),
                values,
            });
        }
        out.columns
            .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.column.cmp(&b.column)));
        out.stats = stats;
        out.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(out)
    }

    /// The values most frequent in either group (by share), with their counts in each.
    async fn top_shares(
        &self,
        plan: &crate::spec::Plan,
        name: &str,
        sums: &str,
        limit: usize,
        stats: &mut crate::engine::ScanStats,
    ) -> Result<(Shares, (i64, i64))> {
        // The groups' totals come from the same scan as their counts (window sums over every
        // group), so shares stay within 100 % while events arrive between this query and the
        // first one.
        let sql = format!(
            "SELECT v, s__n, b__n, SUM(s__n) OVER () AS s__t, SUM(b__n) OVER () AS b__t FROM \
             (SELECT CAST({col} AS VARCHAR) AS v, {sums} FROM {} WHERE {} GROUP BY 1) \
             ORDER BY GREATEST(s__n / GREATEST(s__t, 1.0), b__n / GREATEST(b__t, 1.0)) DESC, 1 \
             LIMIT {}",
            plan.table,
            plan.where_sql,
            limit * 2,
            col = ident(name),
        );
        let (_, batches) = self.internal_sql_batches(&sql, stats).await?;
        let totals = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| {
                let n = |i: usize| cell(b.column(i), 0).as_i64().unwrap_or(0);
                (n(3), n(4))
            })
            .unwrap_or((0, 0));
        Ok((
            shares(&batches, |b, r| {
                cell(b.column(0), r).as_str().map(str::to_owned)
            }),
            totals,
        ))
    }

    /// Counts per decile of the scope's values (and absent), labelled `[lo, hi)`.
    async fn decile_shares(
        &self,
        plan: &crate::spec::Plan,
        name: &str,
        sums: &str,
        stats: &mut crate::engine::ScanStats,
    ) -> Result<(Shares, (i64, i64))> {
        let col = format!("CAST({} AS DOUBLE)", ident(name));
        let qs: Vec<String> = (1..10)
            .map(|i| {
                format!(
                    "approx_percentile_cont({}) WITHIN GROUP (ORDER BY {col})",
                    i as f64 / 10.0
                )
            })
            .collect();
        let (_, b) = self
            .internal_sql_batches(
                &format!(
                    "SELECT {} FROM {} WHERE {} AND {col} IS NOT NULL",
                    qs.join(", "),
                    plan.table,
                    plan.where_sql
                ),
                stats,
            )
            .await?;
        let mut cuts: Vec<f64> = (0..9)
            .filter_map(|i| b.first().and_then(|b| cell(b.column(i), 0).as_f64()))
            .filter(|v| v.is_finite())
            .collect();
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        let mut case = format!("CASE WHEN {col} IS NULL THEN -1");
        for (i, c) in cuts.iter().enumerate() {
            case += &format!(" WHEN {col} < {} THEN {i}", float_lit(*c)?);
        }
        case += &format!(" ELSE {} END", cuts.len());
        let (_, batches) = self
            .internal_sql_batches(
                &format!(
                    "SELECT {case} AS k, {sums} FROM {} WHERE {} GROUP BY 1 ORDER BY 1",
                    plan.table, plan.where_sql
                ),
                stats,
            )
            .await?;
        let label = |k: i64| -> Option<String> {
            if k < 0 {
                return None;
            }
            let k = k as usize;
            let lo = if k == 0 {
                "-inf".to_owned()
            } else {
                format!("{}", cuts[k - 1])
            };
            let hi = cuts.get(k).map_or("inf".to_owned(), |c| format!("{c}"));
            Some(format!("[{lo}, {hi})"))
        };
        let values = shares(&batches, |b, r| {
            cell(b.column(0), r).as_i64().and_then(label)
        });
        // Every group is here: their sums are the totals of this very scan.
        let totals = values
            .iter()
            .fold((0, 0), |(s, b), (_, vs, vb)| (s + vs, b + vb));
        Ok((values, totals))
    }
}

/// (value, selection count, baseline count) per group.
type Shares = Vec<(Option<String>, i64, i64)>;

/// (value, selection count, baseline count) per row of `SELECT v, s__n, b__n` batches.
fn shares(
    batches: &[arrow::record_batch::RecordBatch],
    value: impl Fn(&arrow::record_batch::RecordBatch, usize) -> Option<String>,
) -> Vec<(Option<String>, i64, i64)> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let n = |i: usize| cell(b.column(i), r).as_i64().unwrap_or(0);
            out.push((value(b, r), n(1), n(2)));
        }
    }
    out
}

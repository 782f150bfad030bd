//! The Honeycomb-style query spec (docs/API.md, `POST /api/v1/query/{dataset}`), translated to SQL over one dataset.
//!
//! # Semantics
//! - COUNT, SUM and AVG are weighted by `_samplerate` (an event sampled at 1/10 counts as 10);
//!   MIN, MAX, COUNT_DISTINCT, the percentiles and HEATMAP bucket bounds use raw values;
//!   HEATMAP bucket counts are weighted like COUNT.
//! - Percentiles are exact (`exact_percentile`, linear interpolation in full precision).
//! - `!=`, `does-not-start-with`, `does-not-contain` and `not-in` also match events where the
//!   column is absent; `=`, `>`, `starts-with`, `contains`, `in` … never match an absent value.
//! - Time: `[start_time, end_time)`; with only `time_range`, the range ending now; with one end
//!   and `time_range`, the range from that end. Default: the last 2 hours.
//! - Results are ordered by `orders`, else by the first calculation descending; ties are broken
//!   by the breakdown values ascending. `series` (one row per time bucket and group, for the
//!   groups in `results`) is present only when `granularity` is given.
//! - `RATE_SUM(c)`, `RATE_AVG(c)`, `RATE_MAX(c)`: the SUM (weighted), AVG (weighted) or MAX of
//!   `c` per time bucket, then its change per second from the bucket before: in `series`,
//!   `(v[t] - v[t - granularity]) / granularity_seconds`, null for a group's first bucket and
//!   after a bucket without events; in `results`, the change per second from the group's first
//!   bucket to its last, `(v[last] - v[first]) / (t[last] - t[first])`, null with fewer than
//!   two buckets. Without `granularity`, buckets are [`auto_granularity`] wide.
//! - `CONCURRENCY` (optional column, default `duration_ms`): events in progress, each from its
//!   `timestamp` for its duration in ms (`[t, t + d)`; 0 or negative: the instant `t`), weighted
//!   like COUNT; in `series` the events overlapping each bucket, in `results` the peak over the
//!   buckets. Only events that start inside the time range count. Buckets where events are in
//!   progress but none starts get a `series` row with only the breakdowns and CONCURRENCY.
//! - HEATMAP, CONCURRENCY and RATE_* cannot be used in `havings` or `orders`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::encode::cell;
use crate::{QueryEngine, QueryError, Result};

/// Default and largest number of result groups.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 100_000;
/// Largest number of time buckets a series may have.
pub const MAX_SERIES_BUCKETS: i64 = 10_000;
/// Buckets in a HEATMAP.
pub const HEATMAP_BUCKETS: i64 = 40;
const DEFAULT_TIME_RANGE: i64 = 7200;

/// One calculation: `{"op": "P99", "column": "duration_ms"}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Calculation {
    pub op: String,
    #[serde(default)]
    pub column: Option<String>,
}

/// One filter: `{"column": "status", "op": ">=", "value": 500}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Filter {
    pub column: String,
    pub op: String,
    #[serde(default)]
    pub value: Option<Json>,
}

/// One order: by a calculation (`op` + `column`) or by a breakdown (`column` only).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Order {
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub order: Option<String>,
}

/// One having: `{"calculate_op": "COUNT", "op": ">", "value": 10}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Having {
    pub calculate_op: String,
    #[serde(default)]
    pub column: Option<String>,
    pub op: String,
    pub value: f64,
}

/// A query spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct QuerySpec {
    #[serde(default)]
    pub time_range: Option<i64>,
    #[serde(default)]
    pub start_time: Option<f64>,
    #[serde(default)]
    pub end_time: Option<f64>,
    #[serde(default)]
    pub granularity: Option<i64>,
    #[serde(default)]
    pub calculations: Vec<Calculation>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub filter_combination: Option<String>,
    #[serde(default)]
    pub breakdowns: Vec<String>,
    #[serde(default)]
    pub orders: Vec<Order>,
    #[serde(default)]
    pub havings: Vec<Having>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The reply of `POST /api/v1/query/{dataset}`.
#[derive(Debug, Clone, Serialize)]
pub struct SpecResult {
    pub results: Vec<Map<String, Json>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Vec<Map<String, Json>>>,
    /// What the queries behind the result read (all of them summed).
    pub stats: crate::engine::ScanStats,
    pub elapsed_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
    Percentile(f64),
    Heatmap,
    Concurrency,
    Rate(RateOf),
}

/// The per-bucket aggregate whose change a RATE_* calculation reports.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RateOf {
    Sum,
    Avg,
    Max,
}

impl Op {
    /// Calculated after the main query (not a SQL aggregate of the results query).
    fn separate(self) -> bool {
        matches!(self, Op::Heatmap | Op::Concurrency)
    }

    /// Can be used in `havings` and `orders`.
    fn comparable(self) -> bool {
        !matches!(self, Op::Heatmap | Op::Concurrency | Op::Rate(_))
    }
}

/// Bucket width of RATE_* and CONCURRENCY when the spec has no `granularity`: about 100
/// buckets over the time range, whole seconds, at least one.
pub fn auto_granularity(start_us: i64, end_us: i64) -> i64 {
    let secs = (end_us.saturating_sub(start_us).max(1) as f64 / 1e6 / 100.0)
        .ceil()
        .max(1.0) as i64;
    secs.saturating_mul(1_000_000)
}

fn parse_op(s: &str) -> Result<Op> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "COUNT" => Op::Count,
        "SUM" => Op::Sum,
        "AVG" => Op::Avg,
        "MIN" => Op::Min,
        "MAX" => Op::Max,
        "COUNT_DISTINCT" => Op::CountDistinct,
        "P001" => Op::Percentile(0.001),
        "P01" => Op::Percentile(0.01),
        "P05" => Op::Percentile(0.05),
        "P10" => Op::Percentile(0.10),
        "P25" => Op::Percentile(0.25),
        "P50" => Op::Percentile(0.50),
        "P75" => Op::Percentile(0.75),
        "P90" => Op::Percentile(0.90),
        "P95" => Op::Percentile(0.95),
        "P99" => Op::Percentile(0.99),
        "P999" => Op::Percentile(0.999),
        "HEATMAP" => Op::Heatmap,
        "CONCURRENCY" => Op::Concurrency,
        "RATE_SUM" => Op::Rate(RateOf::Sum),
        "RATE_AVG" => Op::Rate(RateOf::Avg),
        "RATE_MAX" => Op::Rate(RateOf::Max),
        _ => return Err(QueryError::bad(format!("unknown calculation {s:?}"))),
    })
}

/// Quotes an identifier for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
pub fn string_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(crate) fn float_lit(f: f64) -> Result<String> {
    if !f.is_finite() {
        return Err(QueryError::bad("numbers in a query must be finite"));
    }
    Ok(format!("CAST({f:?} AS DOUBLE)"))
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

/// Columns that answer a having (`h__0`, …).
const HAVING_COLUMN: &str = "h__";

/// A calculation checked against the schema.
#[derive(Debug, Clone)]
struct Calc {
    op: Op,
    column: Option<String>,
    name: String,
    /// The column is an integer one: its weighted sums are exact decimals (an `Int64` sum
    /// would wrap around silently).
    integer: bool,
}

impl Calc {
    fn new(c: &Calculation, schema: &Columns) -> Result<Self> {
        let op = parse_op(&c.op)?;
        let mut column = c.column.clone().filter(|s| !s.is_empty());
        if op == Op::Concurrency && column.is_none() {
            column = Some("duration_ms".to_owned());
        }
        let name = match (&op, &column) {
            (Op::Count, _) => "COUNT".to_owned(),
            (Op::Concurrency, _) => "CONCURRENCY".to_owned(),
            (_, Some(col)) => format!("{}({col})", c.op.to_ascii_uppercase()),
            (_, None) => {
                return Err(QueryError::bad(format!(
                    "calculation {} needs a column",
                    c.op.to_ascii_uppercase()
                )));
            }
        };
        let mut integer = false;
        if let Some(col) = &column
            && op != Op::Count
        {
            let t = schema.get(col)?;
            integer = t.is_integer();
            let needs_number = matches!(
                op,
                Op::Sum | Op::Avg | Op::Percentile(_) | Op::Heatmap | Op::Concurrency | Op::Rate(_)
            );
            if needs_number && !is_numeric(t) {
                return Err(QueryError::bad(format!(
                    "calculation {name} needs a numeric column, {col:?} is {}",
                    crate::encode::type_name(t)
                )));
            }
        }
        Ok(Self {
            op,
            column: if op == Op::Count { None } else { column },
            name,
            integer,
        })
    }

    /// The SQL aggregate expression (for RATE_*, of the per-bucket value), or None for HEATMAP
    /// and CONCURRENCY (computed separately).
    fn sql(&self) -> Option<String> {
        let sr = ident(eventide_model::SAMPLERATE);
        let col = self.column.as_deref().map(ident).unwrap_or_default();
        // The weighted value: exact for integers (38 digits), however large.
        let weighted = if self.integer {
            format!("CAST({col} AS DECIMAL(38, 0)) * {sr}")
        } else {
            format!("{col} * {sr}")
        };
        Some(match self.op {
            Op::Count => format!("COALESCE(SUM({sr}), 0)"),
            Op::Sum | Op::Rate(RateOf::Sum) => format!("SUM({weighted})"),
            Op::Rate(RateOf::Max) => format!("MAX({col})"),
            Op::Avg | Op::Rate(RateOf::Avg) => format!(
                "CAST(SUM({weighted}) AS DOUBLE) / CAST(SUM(CASE WHEN {col} IS NOT NULL THEN {sr} END) AS DOUBLE)"
            ),
            Op::Min => format!("MIN({col})"),
            Op::Max => format!("MAX({col})"),
            Op::CountDistinct => format!("COUNT(DISTINCT {col})"),
            Op::Percentile(q) => {
                format!("{}(CAST({col} AS DOUBLE), {q})", crate::percentile::NAME)
            }
            Op::Heatmap | Op::Concurrency => return None,
        })
    }
}

/// The dataset's columns by name.
pub(crate) struct Columns {
    dataset: String,
    types: HashMap<String, DataType>,
}

impl Columns {
    pub(crate) fn new(dataset: &str, schema: &SchemaRef) -> Self {
        Self {
            dataset: dataset.to_owned(),
            types: schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect(),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Result<&DataType> {
        self.types.get(name).ok_or_else(|| {
            QueryError::bad(format!(
                "unknown column {name:?} in dataset {:?}",
                self.dataset
            ))
        })
    }
}

fn literal(t: &DataType, v: &Json, column: &str) -> Result<String> {
    let bad = || {
        QueryError::bad(format!(
            "filter value {v} does not fit column {column:?} of type {}",
            crate::encode::type_name(t)
        ))
    };
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match v {
            Json::String(s) => Ok(string_lit(s)),
            Json::Number(n) => Ok(string_lit(&n.to_string())),
            Json::Bool(b) => Ok(string_lit(&b.to_string())),
            _ => Err(bad()),
        },
        DataType::Boolean => match v {
            Json::Bool(b) => Ok(b.to_string()),
            Json::String(s) if s == "true" || s == "false" => Ok(s.clone()),
            _ => Err(bad()),
        },
        DataType::Timestamp(..) => {
            let us = match v {
                Json::String(s) => eventide_model::time::parse_time_str(s),
                Json::Number(n) => n.as_f64().and_then(eventide_model::time::parse_time_number),
                _ => None,
            }
            .ok_or_else(bad)?;
            Ok(string_lit(&eventide_model::time::format_micros(us)))
        }
        t if t.is_integer() => match v {
            Json::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            Json::Number(n) => float_lit(n.as_f64().ok_or_else(bad)?),
            Json::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Ok(i.to_string()),
                Err(_) => float_lit(s.trim().parse::<f64>().map_err(|_| bad())?),
            },
            _ => Err(bad()),
        },
        t if t.is_floating() => match v {
            Json::Number(n) => float_lit(n.as_f64().ok_or_else(bad)?),
            Json::String(s) => float_lit(s.trim().parse::<f64>().map_err(|_| bad())?),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn text_arg(v: &Option<Json>, op: &str) -> Result<String> {
    match v {
        Some(Json::String(s)) => Ok(string_lit(s)),
        Some(Json::Number(n)) => Ok(string_lit(&n.to_string())),
        Some(Json::Bool(b)) => Ok(string_lit(&b.to_string())),
        _ => Err(QueryError::bad(format!(
            "filter op {op} needs a string value"
        ))),
    }
}

pub(crate) fn filter_sql(f: &Filter, cols: &Columns) -> Result<String> {
    let op = f.op.as_str();
    let t = match cols.types.get(&f.column) {
        Some(t) => t,
        // An absent column exists in no event.
        None if op == "exists" => return Ok("FALSE".into()),
        None if op == "does-not-exist" => return Ok("TRUE".into()),
        None => {
            return Err(QueryError::bad(format!(
                "unknown column {:?} in dataset {:?}",
                f.column, cols.dataset
            )));
        }
    };
    let c = ident(&f.column);
    let value = || {
        f.value.as_ref().ok_or_else(|| {
            QueryError::bad(format!("filter op {op} on {:?} needs a value", f.column))
        })
    };
    let text = format!("CAST({c} AS VARCHAR)");
    // Every filter in parentheses: DataFusion's parser reads `a IS DISTINCT FROM b AND c` as
    // `a IS DISTINCT FROM (b AND c)`, so a bare `!=` would swallow the filter after it.
    Ok(match op {
        "=" => format!("{c} = {}", literal(t, value()?, &f.column)?),
        "!=" => format!("{c} IS DISTINCT FROM {}", literal(t, value()?, &f.column)?),
        ">" | ">=" | "<" | "<=" => format!("{c} {op} {}", literal(t, value()?, &f.column)?),
        "starts-with" => format!("starts_with({text}, {})", text_arg(&f.value, op)?),
        "does-not-start-with" => {
            format!(
                "({c} IS NULL OR NOT starts_with({text}, {}))",
                text_arg(&f.value, op)?
            )
        }
        "contains" => format!("strpos({text}, {}) > 0", text_arg(&f.value, op)?),
        "does-not-contain" => {
            format!(
                "({c} IS NULL OR strpos({text}, {}) = 0)",
                text_arg(&f.value, op)?
            )
        }
        "exists" => format!("{c} IS NOT NULL"),
        "does-not-exist" => format!("{c} IS NULL"),
        "in" | "not-in" => {
            let Some(Json::Array(items)) = &f.value else {
                return Err(QueryError::bad(format!(
                    "filter op {op} needs an array value"
                )));
            };
            if items.is_empty() {
                return Ok(if op == "in" {
                    "FALSE".into()
                } else {
                    "TRUE".into()
                });
            }
            let list = items
                .iter()
                .map(|v| literal(t, v, &f.column))
                .collect::<Result<Vec<_>>>()?
                .join(", ");
            if op == "in" {
                format!("{c} IN ({list})")
            } else {
                format!("({c} IS NULL OR {c} NOT IN ({list}))")
            }
        }
        other => return Err(QueryError::bad(format!("unknown filter op {other:?}"))),
    })
    .map(|sql| format!("({sql})"))
}

/// The query's time window in Unix microseconds, `[start, end)`.
/// The spec's time range `[start, end)`, µs, at `now_us`.
pub fn window(spec: &QuerySpec, now_us: i64) -> Result<(i64, i64)> {
    let secs = |s: f64| -> Result<i64> {
        eventide_model::time::parse_time_number(s)
            .ok_or_else(|| QueryError::bad(format!("time {s} is not a valid Unix time")))
    };
    let range = spec.time_range.map(|r| r.saturating_mul(1_000_000));
    if let Some(r) = range
        && r <= 0
    {
        return Err(QueryError::bad("time_range must be positive"));
    }
    let (start, end) = match (spec.start_time, spec.end_time, range) {
        (Some(s), Some(e), _) => (secs(s)?, secs(e)?),
        (Some(s), None, Some(r)) => (secs(s)?, secs(s)?.saturating_add(r)),
        (Some(s), None, None) => (secs(s)?, now_us),
        (None, Some(e), r) => {
            let e = secs(e)?;
            (
                e.saturating_sub(r.unwrap_or(DEFAULT_TIME_RANGE * 1_000_000)),
                e,
            )
        }
        (None, None, r) => (
            now_us.saturating_sub(r.unwrap_or(DEFAULT_TIME_RANGE * 1_000_000)),
            now_us,
        ),
    };
    if end <= start {
        return Err(QueryError::bad("end_time must be after start_time"));
    }
    Ok((start, end))
}

pub(crate) struct Plan {
    pub(crate) table: String,
    pub(crate) where_sql: String,
    breakdowns: Vec<String>,
    calcs: Vec<Calc>,
    /// Each having: the calculation's expression and the comparison its value must pass.
    havings: Vec<(String, String)>,
    order_sql: String,
    limit: usize,
    granularity_us: Option<i64>,
    start_us: i64,
    end_us: i64,
}

fn having_sql(h: &Having, cols: &Columns) -> Result<(String, String)> {
    let calc = Calc::new(
        &Calculation {
            op: h.calculate_op.clone(),
            column: h.column.clone(),
        },
        cols,
    )?;
    if !calc.op.comparable() {
        return Err(QueryError::bad(format!(
            "{} cannot be used in a having",
            calc.name
        )));
    }
    let expr = calc
        .sql()
        .ok_or_else(|| QueryError::bad(format!("{} cannot be used in a having", calc.name)))?;
    let op = match h.op.as_str() {
        "=" | "!=" | ">" | ">=" | "<" | "<=" => h.op.as_str(),
        other => return Err(QueryError::bad(format!("unknown having op {other:?}"))),
    };
    Ok((expr, format!("{op} {}", float_lit(h.value)?)))
}

pub(crate) fn plan(
    dataset: &str,
    schema: &SchemaRef,
    spec: &QuerySpec,
    now_us: i64,
) -> Result<Plan> {
    let cols = Columns::new(dataset, schema);
    let (start, end) = window(spec, now_us)?;
    let mut conds = vec![
        format!(
            "{} >= {}",
            ident("timestamp"),
            string_lit(&eventide_model::time::format_micros(start))
        ),
        format!(
            "{} < {}",
            ident("timestamp"),
            string_lit(&eventide_model::time::format_micros(end))
        ),
    ];
    if !spec.filters.is_empty() {
        let joiner = match spec
            .filter_combination
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("AND") => " AND ",
            Some("OR") => " OR ",
            Some(other) => {
                return Err(QueryError::bad(format!(
                    "filter_combination must be AND or OR, got {other:?}"
                )));
            }
        };
        let parts = spec
            .filters
            .iter()
            .map(|f| filter_sql(f, &cols))
            .collect::<Result<Vec<_>>>()?;
        conds.push(format!("({})", parts.join(joiner)));
    }
    for b in &spec.breakdowns {
        cols.get(b)?;
    }
    let calcs = if spec.calculations.is_empty() {
        vec![Calc::new(
            &Calculation {
                op: "COUNT".into(),
                column: None,
            },
            &cols,
        )?]
    } else {
        spec.calculations
            .iter()
            .map(|c| Calc::new(c, &cols))
            .collect::<Result<Vec<_>>>()?
    };
    let mut names = HashSet::new();
    for c in &calcs {
        if !names.insert(c.name.clone()) {
            return Err(QueryError::bad(format!(
                "calculation {} is listed twice",
                c.name
            )));
        }
    }
    let havings = spec
        .havings
        .iter()
        .map(|h| having_sql(h, &cols))
        .collect::<Result<Vec<_>>>()?;
    let mut order = Vec::new();
    for o in &spec.orders {
        let dir = match o.order.as_deref() {
            None | Some("ascending") | Some("asc") => "ASC",
            Some("descending") | Some("desc") => "DESC",
            Some(other) => {
                return Err(QueryError::bad(format!(
                    "order must be ascending or descending, got {other:?}"
                )));
            }
        };
        if let Some(op) = &o.op {
            let probe = Calc::new(
                &Calculation {
                    op: op.clone(),
                    column: o.column.clone(),
                },
                &cols,
            )?;
            let idx = calcs
                .iter()
                .position(|c| c.name == probe.name)
                .ok_or_else(|| {
                    QueryError::bad(format!(
                        "order by {} which is not among the calculations",
                        probe.name
                    ))
                })?;
            if !calcs[idx].op.comparable() {
                return Err(QueryError::bad(format!(
                    "results cannot be ordered by {}",
                    calcs[idx].name
                )));
            }
            order.push(format!("c{idx} {dir} NULLS LAST"));
        } else if let Some(col) = &o.column {
            let idx = spec
                .breakdowns
                .iter()
                .position(|b| b == col)
                .ok_or_else(|| {
                    QueryError::bad(format!("order by column {col:?} which is not a breakdown"))
                })?;
            order.push(format!("b{idx} {dir} NULLS LAST"));
        } else {
            return Err(QueryError::bad("an order needs an op or a column"));
        }
    }
    if spec.orders.is_empty()
        && let Some(idx) = calcs.iter().position(|c| c.op.comparable())
    {
        order.push(format!("c{idx} DESC NULLS LAST"));
    }
    for i in 0..spec.breakdowns.len() {
        order.push(format!("b{i} ASC NULLS LAST"));
    }
    let limit = spec.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(QueryError::bad(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let granularity_us = match spec.granularity {
        None | Some(0) => None,
        Some(g) if g < 0 => return Err(QueryError::bad("granularity must be positive")),
        Some(g) => {
            // Found by the `query_spec` fuzz target: a huge granularity overflowed here.
            let g_us = g.checked_mul(1_000_000).ok_or_else(|| {
                QueryError::bad(format!("granularity {g}s is longer than any time range"))
            })?;
            if end.saturating_sub(start) / g_us > MAX_SERIES_BUCKETS {
                return Err(QueryError::bad(format!(
                    "granularity {g}s gives more than {MAX_SERIES_BUCKETS} time buckets for this time range"
                )));
            }
            Some(g_us)
        }
    };
    Ok(Plan {
        table: ident(dataset),
        where_sql: conds.join(" AND "),
        breakdowns: spec.breakdowns.clone(),
        calcs,
        havings,
        order_sql: order.join(", "),
        limit,
        granularity_us,
        start_us: start,
        end_us: end,
    })
}

impl Plan {
    fn group_cols(&self) -> Vec<String> {
        (0..self.breakdowns.len())
            .map(|i| format!("b{i}"))
            .collect()
    }

    fn select_breakdowns(&self) -> Vec<String> {
        self.breakdowns
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{} AS b{i}", ident(b)))
            .collect()
    }

    fn select_calcs(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .calcs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.sql().map(|s| format!("{s} AS c{i}")))
            .collect();
        out.push("COUNT(*) AS n__rows".into());
        out
    }

    fn results_sql(&self) -> String {
        let mut select = self.select_breakdowns();
        select.extend(self.select_calcs());
        // Havings are computed beside the calculations and compared outside the aggregation.
        // Without breakdowns, the one row's comparisons are answered as columns and applied
        // here ([`rows_to_objects`]): DataFusion 55 pushes a contradictory HAVING below an
        // aggregation without groups, which then answers a row of nothing.
        let outer: Vec<String> = select
            .iter()
            .map(|s| s.rsplit(" AS ").next().unwrap_or(s).to_owned())
            .collect();
        let global = self.breakdowns.is_empty();
        select.extend(self.havings.iter().enumerate().map(|(i, (expr, cmp))| {
            if global {
                format!("COALESCE(({expr}) {cmp}, FALSE) AS {HAVING_COLUMN}{i}")
            } else {
                format!("{expr} AS {HAVING_COLUMN}{i}")
            }
        }));
        let mut sql = format!(
            "SELECT {} FROM {} WHERE {}",
            select.join(", "),
            self.table,
            self.where_sql
        );
        let groups = self.group_cols();
        if !groups.is_empty() {
            sql += &format!(" GROUP BY {}", groups.join(", "));
        }
        if !self.havings.is_empty() && !global {
            let conds: Vec<String> = self
                .havings
                .iter()
                .enumerate()
                .map(|(i, (_, cmp))| format!("{HAVING_COLUMN}{i} {cmp}"))
                .collect();
            sql = format!(
                "SELECT {} FROM ({sql}) AS a__ WHERE {}",
                outer.join(", "),
                conds.join(" AND ")
            );
        }
        if !self.order_sql.is_empty() {
            sql += &format!(" ORDER BY {}", self.order_sql);
        }
        sql += &format!(" LIMIT {}", self.limit);
        sql
    }

    fn bucket_expr(g: i64) -> String {
        format!("(CAST({} AS BIGINT) / {g}) * {g}", ident("timestamp"))
    }

    fn series_sql(&self, g: i64) -> String {
        let mut select = vec![format!("{} AS t__bucket", Self::bucket_expr(g))];
        select.extend(self.select_breakdowns());
        select.extend(self.select_calcs());
        let mut groups = vec!["t__bucket".to_owned()];
        groups.extend(self.group_cols());
        format!(
            "SELECT {} FROM {} WHERE {} GROUP BY {} ORDER BY {}",
            select.join(", "),
            self.table,
            self.where_sql,
            groups.join(", "),
            groups.join(", ")
        )
    }
}

/// The SQL a spec runs as against a table of `schema` at `now_us`: the results query and, when
/// the spec has a time series, the series query. Errors are what the API answers with 400.
/// (Used by the fuzz target `query_spec`, which checks that every accepted spec yields SQL that
/// parses as exactly one query, whatever the user wrote in names and values.)
pub fn spec_sql(
    dataset: &str,
    schema: &SchemaRef,
    spec: &QuerySpec,
    now_us: i64,
) -> Result<Vec<String>> {
    let plan = plan(dataset, schema, spec, now_us)?;
    let g = plan
        .granularity_us
        .unwrap_or_else(|| auto_granularity(plan.start_us, plan.end_us));
    Ok(vec![plan.results_sql(), plan.series_sql(g)])
}

/// The group part of a series row's key (`time|group`).
fn series_group(key: &str) -> &str {
    key.split_once('|').map_or(key, |(_, g)| g)
}

/// RATE_*: replaces the per-bucket values in the series rows (ordered by time) with their
/// change per second from the previous bucket, and sets each result group's change per
/// second from its first bucket to its last.
fn apply_rate(
    calc: &Calc,
    g: i64,
    rows: &mut [(String, Map<String, Json>)],
    results: &mut [(String, Map<String, Json>)],
) {
    let bucket_of = |obj: &Map<String, Json>| {
        obj.get("time")
            .and_then(Json::as_str)
            .and_then(eventide_model::time::parse_time_str)
    };
    // Per group: the previous bucket's (time, value), and the first and last valued buckets.
    let mut prev: HashMap<String, (i64, Option<f64>)> = HashMap::new();
    // (time, value) of the first and the last valued bucket.
    type Point = (i64, f64);
    let mut span: HashMap<String, (Point, Point)> = HashMap::new();
    for (key, obj) in rows.iter_mut() {
        let group = series_group(key).to_owned();
        let (Some(t), v) = (bucket_of(obj), obj.get(&calc.name).and_then(Json::as_f64)) else {
            continue;
        };
        let rate = match prev.get(&group) {
            Some((pt, Some(pv))) if *pt == t - g => v.map(|v| (v - pv) / (g as f64 / 1e6)),
            _ => None,
        };
        if let Some(v) = v {
            span.entry(group.clone())
                .and_modify(|s| s.1 = (t, v))
                .or_insert(((t, v), (t, v)));
        }
        prev.insert(group, (t, v));
        obj.insert(
            calc.name.clone(),
            rate.map_or(Json::Null, crate::encode::float),
        );
    }
    for (key, obj) in results.iter_mut() {
        let rate = span.get(key.as_str()).and_then(|((t0, v0), (t1, v1))| {
            (t1 > t0).then(|| (v1 - v0) / ((t1 - t0) as f64 / 1e6))
        });
        obj.insert(
            calc.name.clone(),
            rate.map_or(Json::Null, crate::encode::float),
        );
    }
}

fn group_key(batch: &RecordBatch, row: usize, n_breakdowns: usize, offset: usize) -> String {
    let vals: Vec<Json> = (0..n_breakdowns)
        .map(|i| cell(batch.column(offset + i), row))
        .collect();
    Json::Array(vals).to_string()
}

/// Turns result batches into JSON objects keyed by breakdown and calculation names.
/// `time_col` marks series batches (first column is the bucket, µs).
fn rows_to_objects(
    plan: &Plan,
    batches: &[RecordBatch],
    time_col: bool,
) -> Vec<(String, Map<String, Json>)> {
    let offset = usize::from(time_col);
    let mut out = Vec::new();
    for b in batches {
        // The havings of a query without breakdowns, answered as columns.
        let havings: Vec<&BooleanArray> = b
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name().starts_with(HAVING_COLUMN))
            .filter_map(|(i, _)| b.column(i).as_any().downcast_ref::<BooleanArray>())
            .collect();
        for r in 0..b.num_rows() {
            if havings.iter().any(|h| !(h.is_valid(r) && h.value(r))) {
                continue;
            }
            let mut obj = Map::new();
            if time_col {
                let t = cell(b.column(0), r);
                let t = t
                    .as_i64()
                    .map(|us| Json::String(eventide_model::time::format_micros(us)))
                    .unwrap_or(Json::Null);
                obj.insert("time".into(), t);
            }
            for (i, name) in plan.breakdowns.iter().enumerate() {
                obj.insert(name.clone(), cell(b.column(offset + i), r));
            }
            let mut col = offset + plan.breakdowns.len();
            for c in &plan.calcs {
                if c.op.separate() {
                    continue;
                }
                obj.insert(c.name.clone(), cell(b.column(col), r));
                col += 1;
            }
            let mut key = group_key(b, r, plan.breakdowns.len(), offset);
            if time_col {
                key = format!(
                    "{}|{key}",
                    obj.get("time").map(|t| t.to_string()).unwrap_or_default()
                );
            }
            out.push((key, obj));
        }
    }
    out
}

impl QueryEngine {
    /// A SQL condition over `dataset` that holds where all `filters` hold (`any`: where one
    /// of them does), with the query spec's filter rules (types, operators, absent columns).
    /// For callers that build their own SQL around spec filters (deploy checks, triggers).
    pub fn filters_predicate(
        &self,
        dataset: &str,
        filters: &[Filter],
        any: bool,
    ) -> Result<String> {
        let snapshot = self
            .store()
            .snapshot(dataset)
            .ok_or_else(|| QueryError::bad(format!("unknown dataset {dataset:?}")))?;
        let cols = Columns::new(dataset, &snapshot.schema);
        if filters.is_empty() {
            return Ok(if any { "FALSE" } else { "TRUE" }.into());
        }
        let parts = filters
            .iter()
            .map(|f| filter_sql(f, &cols))
            .collect::<Result<Vec<_>>>()?;
        Ok(format!(
            "({})",
            parts.join(if any { " OR " } else { " AND " })
        ))
    }

    /// Runs a query spec over one dataset.
    pub async fn run_spec(&self, dataset: &str, spec: &QuerySpec) -> Result<SpecResult> {
        let started = Instant::now();
        self.catch_up().await;
        let snapshot = self
            .store()
            .snapshot(dataset)
            .ok_or_else(|| QueryError::bad(format!("unknown dataset {dataset:?}")))?;
        let plan = plan(
            dataset,
            &snapshot.schema,
            spec,
            self.store().clock().now_micros(),
        )?;
        let mut stats = crate::engine::ScanStats::default();
        let (_, batches) = self
            .internal_sql_batches(&plan.results_sql(), &mut stats)
            .await?;
        let mut results = rows_to_objects(&plan, &batches, false);
        let heatmaps: Vec<&Calc> = plan.calcs.iter().filter(|c| c.op == Op::Heatmap).collect();
        for h in &heatmaps {
            self.attach_heatmap(&plan, h, None, &mut results, &mut stats)
                .await?;
        }
        // RATE_* and CONCURRENCY need time buckets even when no series is asked for.
        let bucketed = plan
            .calcs
            .iter()
            .any(|c| matches!(c.op, Op::Concurrency | Op::Rate(_)));
        let g = plan
            .granularity_us
            .or(bucketed.then(|| auto_granularity(plan.start_us, plan.end_us)));
        let series = match g {
            None => None,
            Some(g) => {
                let (_, batches) = self
                    .internal_sql_batches(&plan.series_sql(g), &mut stats)
                    .await?;
                let keep: HashSet<String> = results.iter().map(|(k, _)| k.clone()).collect();
                let mut rows: Vec<(String, Map<String, Json>)> =
                    rows_to_objects(&plan, &batches, true)
                        .into_iter()
                        .filter(|(k, _)| keep.contains(series_group(k)))
                        .collect();
                if plan.granularity_us.is_some() {
                    for h in &heatmaps {
                        self.attach_heatmap(&plan, h, Some(g), &mut rows, &mut stats)
                            .await?;
                    }
                }
                for c in plan.calcs.iter().filter(|c| matches!(c.op, Op::Rate(_))) {
                    apply_rate(c, g, &mut rows, &mut results);
                }
                for c in plan.calcs.iter().filter(|c| c.op == Op::Concurrency) {
                    self.attach_concurrency(
                        &plan,
                        c,
                        g,
                        &keep,
                        &mut rows,
                        &mut results,
                        &mut stats,
                    )
                    .await?;
                }
                plan.granularity_us
                    .map(|_| rows.into_iter().map(|(_, o)| o).collect())
            }
        };
        Ok(SpecResult {
            results: results.into_iter().map(|(_, o)| o).collect(),
            series,
            stats,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// CONCURRENCY: events in progress per bucket (series) and their peak (results). Each
    /// event spans the buckets from the one holding its start to the one holding its last
    /// microsecond; a difference array over bucket times gives the count per bucket.
    #[allow(clippy::too_many_arguments)]
    async fn attach_concurrency(
        &self,
        plan: &Plan,
        calc: &Calc,
        g: i64,
        keep: &HashSet<String>,
        rows: &mut Vec<(String, Map<String, Json>)>,
        results: &mut [(String, Map<String, Json>)],
        stats: &mut crate::engine::ScanStats,
    ) -> Result<()> {
        let col = ident(calc.column.as_deref().unwrap_or("duration_ms"));
        let ts = format!("CAST({} AS BIGINT)", ident("timestamp"));
        let mut select = plan.select_breakdowns();
        select.push(format!("({ts} / {g}) * {g} AS s__bucket"));
        select.push(format!(
            "(({ts} + CAST(GREATEST(CAST({col} AS DOUBLE) * 1000.0, 1.0) AS BIGINT) - 1) / {g}) * {g} AS e__bucket"
        ));
        select.push(format!(
            "SUM({}) AS n__events",
            ident(eventide_model::SAMPLERATE)
        ));
        let mut groups = plan.group_cols();
        groups.extend(["s__bucket".to_owned(), "e__bucket".to_owned()]);
        let sql = format!(
            "SELECT {} FROM {} WHERE {} AND {col} IS NOT NULL GROUP BY {}",
            select.join(", "),
            plan.table,
            plan.where_sql,
            groups.join(", ")
        );
        let (_, batches) = self.internal_sql_batches(&sql, stats).await?;
        let nb = plan.breakdowns.len();
        // Per group: count changes at bucket times (+n where events start, -n after their
        // last bucket).
        let mut deltas: HashMap<String, std::collections::BTreeMap<i64, i64>> = HashMap::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let key = group_key(b, r, nb, 0);
                let (Some(start), Some(end), Some(n)) = (
                    cell(b.column(nb), r).as_i64(),
                    cell(b.column(nb + 1), r).as_i64(),
                    cell(b.column(nb + 2), r).as_i64(),
                ) else {
                    continue;
                };
                let d = deltas.entry(key).or_default();
                *d.entry(start).or_default() += n;
                *d.entry(end.max(start) + g).or_default() -= n;
            }
        }
        let mut by_bucket: HashMap<String, i64> = HashMap::new();
        let mut peaks: HashMap<String, i64> = HashMap::new();
        let mut new_rows = Vec::new();
        let existing: HashSet<String> = rows.iter().map(|(k, _)| k.clone()).collect();
        for (group, d) in &deltas {
            let mut level = 0i64;
            let points: Vec<(i64, i64)> = d.iter().map(|(t, n)| (*t, *n)).collect();
            for (i, (t, n)) in points.iter().enumerate() {
                level += n;
                let next = points.get(i + 1).map_or(plan.end_us, |p| p.0);
                if level <= 0 {
                    continue;
                }
                let peak = peaks.entry(group.clone()).or_default();
                *peak = (*peak).max(level);
                if plan.granularity_us.is_none() || !keep.contains(group) {
                    continue;
                }
                let mut bucket = *t;
                while bucket < next && bucket < plan.end_us {
                    let time = Json::String(eventide_model::time::format_micros(bucket));
                    let key = format!("{time}|{group}");
                    if !existing.contains(&key) {
                        let mut obj = Map::new();
                        obj.insert("time".into(), time);
                        let values: Vec<Json> = serde_json::from_str(group).unwrap_or_default();
                        for (name, v) in plan.breakdowns.iter().zip(values) {
                            obj.insert(name.clone(), v);
                        }
                        new_rows.push((key.clone(), obj));
                    }
                    by_bucket.insert(key, level);
                    bucket += g;
                }
            }
        }
        rows.extend(new_rows);
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, obj) in rows.iter_mut() {
            let v = by_bucket.get(key).copied().unwrap_or(0);
            obj.insert(calc.name.clone(), Json::from(v));
        }
        for (key, obj) in results.iter_mut() {
            obj.insert(
                calc.name.clone(),
                Json::from(peaks.get(key).copied().unwrap_or(0)),
            );
        }
        Ok(())
    }

    /// Computes HEATMAP(column) buckets and stores them in each row under the calc's name.
    async fn attach_heatmap(
        &self,
        plan: &Plan,
        calc: &Calc,
        granularity_us: Option<i64>,
        rows: &mut [(String, Map<String, Json>)],
        stats: &mut crate::engine::ScanStats,
    ) -> Result<()> {
        let col = ident(calc.column.as_deref().unwrap_or_default());
        let where_sql = format!("{} AND {col} IS NOT NULL", plan.where_sql);
        let (_, b) = self
            .internal_sql_batches(
                &format!(
                    "SELECT CAST(MIN({col}) AS DOUBLE), CAST(MAX({col}) AS DOUBLE) FROM {} WHERE {where_sql}",
                    plan.table
                ),
                stats,
            )
            .await?;
        let bounds = b
            .first()
            .filter(|b| b.num_rows() > 0)
            .map(|b| (cell(b.column(0), 0), cell(b.column(1), 0)));
        let (lo, hi) = match bounds {
            Some((Json::Number(lo), Json::Number(hi))) => {
                (lo.as_f64().unwrap_or(0.0), hi.as_f64().unwrap_or(0.0))
            }
            _ => {
                for (_, obj) in rows.iter_mut() {
                    obj.insert(calc.name.clone(), Json::Null);
                }
                return Ok(());
            }
        };
        let width = if hi > lo {
            (hi - lo) / HEATMAP_BUCKETS as f64
        } else {
            1.0
        };
        let bucket = format!(
            "CAST(LEAST(FLOOR((CAST({col} AS DOUBLE) - {}) / {}), {}) AS BIGINT)",
            float_lit(lo)?,
            float_lit(width)?,
            HEATMAP_BUCKETS - 1
        );
        let mut select = Vec::new();
        let mut groups = Vec::new();
        if let Some(g) = granularity_us {
            select.push(format!("{} AS t__bucket", Plan::bucket_expr(g)));
            groups.push("t__bucket".to_owned());
        }
        select.extend(plan.select_breakdowns());
        groups.extend(plan.group_cols());
        select.push(format!("{bucket} AS h__bucket"));
        select.push(format!(
            "SUM({}) AS h__count",
            ident(eventide_model::SAMPLERATE)
        ));
        groups.push("h__bucket".into());
        let sql = format!(
            "SELECT {} FROM {} WHERE {where_sql} GROUP BY {} ORDER BY {}",
            select.join(", "),
            plan.table,
            groups.join(", "),
            groups.join(", ")
        );
        let (_, batches) = self.internal_sql_batches(&sql, stats).await?;
        let offset = usize::from(granularity_us.is_some());
        let nb = plan.breakdowns.len();
        let mut buckets: HashMap<String, Vec<Json>> = HashMap::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let mut key = group_key(b, r, nb, offset);
                if offset == 1 {
                    let t = cell(b.column(0), r)
                        .as_i64()
                        .map(|us| Json::String(eventide_model::time::format_micros(us)))
                        .unwrap_or(Json::Null);
                    key = format!("{t}|{key}");
                }
                let idx = cell(b.column(offset + nb), r).as_i64().unwrap_or(0);
                let count = cell(b.column(offset + nb + 1), r);
                let lower = lo + idx as f64 * width;
                buckets.entry(key).or_default().push(serde_json::json!({
                    "lower": lower, "upper": lower + width, "count": count
                }));
            }
        }
        for (key, obj) in rows.iter_mut() {
            let b = buckets.remove(key.as_str()).unwrap_or_default();
            obj.insert(
                calc.name.clone(),
                serde_json::json!({"min": lo, "max": hi, "bucket_width": width, "buckets": b}),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SchemaRef {
        let mut s = eventide_model::DatasetSchema::new();
        s.merge_column("status", eventide_model::ColumnType::Int);
        s.merge_column("name", eventide_model::ColumnType::String);
        s.arrow_schema()
    }

    /// Regressions found by the `query_spec` fuzz target: huge numbers are refused with a
    /// message, never overflow (a panic in debug builds, a wrapped bucket width in release).
    #[test]
    fn huge_granularities_and_ranges_are_refused_not_overflowed() {
        let now = 1_700_000_000_000_000;
        let spec: QuerySpec =
            serde_json::from_str(r#"{"cas":[{"columue":500}],"granularity":5555555553890000}"#)
                .unwrap();
        let e = plan("d", &schema(), &spec, now).err().expect("refused");
        assert!(e.to_string().contains("longer than any time range"), "{e}");
        for g in [i64::MAX, i64::MAX / 1_000_000 + 1] {
            let spec = QuerySpec {
                granularity: Some(g),
                ..QuerySpec::default()
            };
            assert!(plan("d", &schema(), &spec, now).is_err());
        }
        // The widest window there is, with a granularity that fits: no overflow either.
        let spec = QuerySpec {
            end_time: Some(1.0),
            time_range: Some(i64::MAX),
            granularity: Some(i64::MAX / 1_000_000),
            ..QuerySpec::default()
        };
        let _ = plan("d", &schema(), &spec, now);
        assert!(auto_granularity(i64::MIN, i64::MAX) > 0);
    }

    #[test]
    fn windows() {
        let now = 10_000_000_000;
        let spec = |s: Option<f64>, e: Option<f64>, r: Option<i64>| QuerySpec {
            start_time: s,
            end_time: e,
            time_range: r,
            ..QuerySpec::default()
        };
        assert_eq!(
            window(&spec(None, None, None), now).unwrap(),
            (now - 7_200_000_000, now)
        );
        assert_eq!(
            window(&spec(Some(100.0), Some(200.0), None), now).unwrap(),
            (100_000_000, 200_000_000)
        );
        assert_eq!(
            window(&spec(Some(100.0), None, Some(10)), now).unwrap(),
            (100_000_000, 110_000_000)
        );
        assert_eq!(
            window(&spec(None, Some(200.0), Some(10)), now).unwrap(),
            (190_000_000, 200_000_000)
        );
        assert!(window(&spec(Some(200.0), Some(100.0), None), now).is_err());
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let s = schema();
        let err = |spec: QuerySpec| match plan("ds", &s, &spec, 0) {
            Err(QueryError::BadRequest(m)) => m,
            other => panic!(
                "expected a bad request, got {:?}",
                other.map(|p| p.results_sql())
            ),
        };
        let calc = |op: &str, col: Option<&str>| QuerySpec {
            calculations: vec![Calculation {
                op: op.into(),
                column: col.map(Into::into),
            }],
            ..QuerySpec::default()
        };
        assert_eq!(
            err(calc("P99", Some("nope"))),
            "unknown column \"nope\" in dataset \"ds\""
        );
        assert_eq!(
            err(calc("SUM", Some("name"))),
            "calculation SUM(name) needs a numeric column, \"name\" is string"
        );
        assert_eq!(err(calc("FOO", None)), "unknown calculation \"FOO\"");
        assert_eq!(err(calc("AVG", None)), "calculation AVG needs a column");
        let mut spec = calc("COUNT", None);
        spec.filters = vec![Filter {
            column: "status".into(),
            op: "=".into(),
            value: Some(Json::String("abc".into())),
        }];
        assert!(err(spec).contains("does not fit column \"status\""));
        let mut spec = calc("COUNT", None);
        spec.breakdowns = vec!["missing".into()];
        assert_eq!(err(spec), "unknown column \"missing\" in dataset \"ds\"");
    }

    #[test]
    fn sql_quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(string_lit("it's"), "'it''s'");
    }
}

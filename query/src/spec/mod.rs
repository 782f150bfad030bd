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
//!
//! # Layout
//! - the public types of a spec ([`QuerySpec`], [`Calculation`], [`Filter`], [`Order`],
//!   [`Having`]) and of its reply ([`SpecResult`]) are here;
//! - `literals`: quoting of SQL identifiers and literals ([`ident`], [`string_lit`]);
//! - `columns`: the dataset's columns by name, which a spec's names are checked against;
//! - `filters`: filters as SQL conditions (also for callers that build their own SQL);
//! - `calculations`: the calculation ops, checked against the columns, as SQL aggregates;
//! - `window`: the time window (`[start, end)`) and the default bucket width;
//! - `plan`: a spec checked against the schema, and the results and series SQL it runs as;
//! - `run`: [`QueryEngine::run_spec`](crate::QueryEngine::run_spec), which runs a plan;
//! - `results`: result batches as JSON rows;
//! - `rate`, `heatmap`, `concurrency`: the calculations computed beside the SQL aggregates.

mod calculations;
mod columns;
mod concurrency;
mod filters;
mod heatmap;
mod literals;
mod plan;
mod rate;
mod results;
mod run;
mod window;

pub(crate) use columns::Columns;
pub(crate) use filters::filter_sql;
pub(crate) use literals::float_lit;
pub use literals::{ident, string_lit};
pub use plan::spec_sql;
pub(crate) use plan::{Plan, plan};
pub use window::{auto_granularity, window};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// Default and largest number of result groups.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 100_000;
/// Largest number of time buckets a series may have.
pub const MAX_SERIES_BUCKETS: i64 = 10_000;
/// Buckets in a HEATMAP.
pub const HEATMAP_BUCKETS: i64 = 40;

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

//! # eventide-query
//!
//! Answers questions over the store with Apache DataFusion. Never writes.
//!
//! # Layout
//! - `provider`: one DataFusion table per dataset ([`provider::DatasetTable`]): the
//!   dataset's committed Parquet segments (pruned by the query's time range, then by Parquet
//!   statistics) unioned with its hot tail; and the schema provider that lists datasets.
//! - `spec`: the Honeycomb-style query spec (docs/API.md, `POST /api/v1/query/{dataset}`) translated to SQL, including
//!   sample-rate weighting, percentiles, heatmaps and time series.
//! - `grouping`: the partial stage of `GROUP BY` over interned keys
//!   ([`grouping::InternedAggregateExec`]), a physical optimizer rule in the session.
//! - `bubbleup`: what differs between selected events and the rest, column by column
//!   (`POST /api/v1/bubbleup/{dataset}`).
//! - `encode`: Arrow results → JSON (numbers, booleans, RFC3339 UTC µs timestamps, nulls).
//! - `executor`: plans execute on a dedicated runtime (`eventide-query` threads), so a
//!   long query never delays `/healthz`, ingest or other requests on the server's runtime;
//!   dropping the caller's future aborts the execution.
//! - [`QueryEngine`]: the session, `POST /api/v1/sql` and `POST /api/v1/query/{dataset}`.
//!
//! # Invariants
//! - Read-only: SQL with DDL, DML or statements is refused.
//! - A user's mistake (bad SQL, unknown dataset or column, bad spec) is a
//!   [`QueryError::BadRequest`] whose message names the problem; a query that cannot reserve
//!   the memory it needs from the session's pool is [`QueryError::OverMemory`]; unreadable
//!   segment files are [`QueryError::Corrupt`]; anything else is [`QueryError::Internal`].
//! - Operators that hold state in proportion to their input (sorts, hash aggregations, joins,
//!   the interned grouping) reserve it from the session's memory pool.

pub mod bubbleup;
pub mod encode;
mod engine;
mod executor;
pub mod grouping;
mod grouping_sets_order;
mod inlist_nulls;
pub mod live;
pub mod percentile;
pub mod provider;
pub mod scan;
pub mod spec;

pub use bubbleup::{BubbleUpRequest, BubbleUpResult};
pub use engine::{QueryEngine, ScanStats, SqlResult};
pub use spec::{QuerySpec, SpecResult};

/// Errors of the query layer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request is wrong (maps to HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Something failed inside (maps to HTTP 500; details go to the log).
    #[error("internal query error: {0}")]
    Internal(String),
    /// Stored data could not be read: a segment file is missing or corrupt (maps to HTTP 500
    /// with this message, which names the files).
    #[error("{0}")]
    Corrupt(String),
    /// The query needed more memory than the query memory pool had left
    /// (`--query-memory-mb`); DataFusion's detail, for the log (maps to HTTP 422).
    #[error("query memory limit reached: {0}")]
    OverMemory(String),
}

impl QueryError {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    /// Whether a failed execution may come from unreadable stored data (a Parquet, object
    /// store or i/o error) rather than from the query.
    pub(crate) fn is_read_failure(e: &datafusion::error::DataFusionError) -> bool {
        use datafusion::error::DataFusionError as E;
        match e.find_root() {
            E::ParquetError(_) | E::ObjectStore(_) | E::IoError(_) => true,
            E::ArrowError(a, _) => matches!(
                **a,
                arrow::error::ArrowError::ParquetError(_) | arrow::error::ArrowError::IoError(..)
            ),
            _ => false,
        }
    }

    /// Classifies a DataFusion error: planning, schema and SQL errors are the caller's.
    pub(crate) fn from_datafusion(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as E;
        let root = e.find_root();
        let message = shorten(&root.to_string());
        match root {
            E::SQL(..)
            | E::Plan(..)
            | E::SchemaError(..)
            | E::NotImplemented(..)
            | E::ArrowError(..) => Self::BadRequest(message.to_lowercase_first()),
            E::Execution(m) if !m.contains("panicked") => {
                Self::BadRequest(message.to_lowercase_first())
            }
            E::ResourcesExhausted(_) => Self::OverMemory(message),
            _ => Self::Internal(message),
        }
    }
}

trait LowerFirst {
    fn to_lowercase_first(&self) -> String;
}

impl LowerFirst for String {
    fn to_lowercase_first(&self) -> String {
        // "Error during planning" → "error during planning"; acronyms ("SQL error") stay.
        let mut c = self.chars();
        match (c.next(), c.clone().next()) {
            (Some(f), Some(second)) if !second.is_uppercase() => {
                f.to_lowercase().collect::<String>() + c.as_str()
            }
            _ => self.clone(),
        }
    }
}

/// Keeps error messages readable for datasets with thousands of columns.
fn shorten(s: &str) -> String {
    const MAX: usize = 600;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

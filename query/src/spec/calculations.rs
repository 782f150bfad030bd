//! The calculations of a spec (`COUNT`, `P99(c)`, `HEATMAP(c)`, `RATE_SUM(c)` …): their ops,
//! each checked against the dataset's columns ([`CheckedCalculation`]), and the SQL aggregate
//! each becomes.

use arrow::datatypes::DataType;

use super::Calculation;
use super::columns::Columns;
use super::literals::ident;
use crate::{QueryError, Result};

/// The op of a calculation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum CalculationOp {
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
pub(super) enum RateOf {
    Sum,
    Avg,
    Max,
}

impl CalculationOp {
    /// Calculated after the main query (not a SQL aggregate of the results query).
    pub(super) fn separate(self) -> bool {
        matches!(self, CalculationOp::Heatmap | CalculationOp::Concurrency)
    }

    /// Can be used in `havings` and `orders`.
    pub(super) fn comparable(self) -> bool {
        !matches!(
            self,
            CalculationOp::Heatmap | CalculationOp::Concurrency | CalculationOp::Rate(_)
        )
    }
}

fn parse_op(s: &str) -> Result<CalculationOp> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "COUNT" => CalculationOp::Count,
        "SUM" => CalculationOp::Sum,
        "AVG" => CalculationOp::Avg,
        "MIN" => CalculationOp::Min,
        "MAX" => CalculationOp::Max,
        "COUNT_DISTINCT" => CalculationOp::CountDistinct,
        "P001" => CalculationOp::Percentile(0.001),
        "P01" => CalculationOp::Percentile(0.01),
        "P05" => CalculationOp::Percentile(0.05),
        "P10" => CalculationOp::Percentile(0.10),
        "P25" => CalculationOp::Percentile(0.25),
        "P50" => CalculationOp::Percentile(0.50),
        "P75" => CalculationOp::Percentile(0.75),
        "P90" => CalculationOp::Percentile(0.90),
        "P95" => CalculationOp::Percentile(0.95),
        "P99" => CalculationOp::Percentile(0.99),
        "P999" => CalculationOp::Percentile(0.999),
        "HEATMAP" => CalculationOp::Heatmap,
        "CONCURRENCY" => CalculationOp::Concurrency,
        "RATE_SUM" => CalculationOp::Rate(RateOf::Sum),
        "RATE_AVG" => CalculationOp::Rate(RateOf::Avg),
        "RATE_MAX" => CalculationOp::Rate(RateOf::Max),
        _ => return Err(QueryError::bad(format!("unknown calculation {s:?}"))),
    })
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

/// A calculation checked against the schema.
#[derive(Debug, Clone)]
pub(super) struct CheckedCalculation {
    pub(super) op: CalculationOp,
    pub(super) column: Option<String>,
    pub(super) name: String,
    /// The column is an integer one: its weighted sums are exact decimals (an `Int64` sum
    /// would wrap around silently).
    integer: bool,
}

impl CheckedCalculation {
    pub(super) fn new(c: &Calculation, schema: &Columns) -> Result<Self> {
        let op = parse_op(&c.op)?;
        let mut column = c.column.clone().filter(|s| !s.is_empty());
        if op == CalculationOp::Concurrency && column.is_none() {
            column = Some("duration_ms".to_owned());
        }
        let name = match (&op, &column) {
            (CalculationOp::Count, _) => "COUNT".to_owned(),
            (CalculationOp::Concurrency, _) => "CONCURRENCY".to_owned(),
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
            && op != CalculationOp::Count
        {
            let t = schema.get(col)?;
            integer = t.is_integer();
            let needs_number = matches!(
                op,
                CalculationOp::Sum
                    | CalculationOp::Avg
                    | CalculationOp::Percentile(_)
                    | CalculationOp::Heatmap
                    | CalculationOp::Concurrency
                    | CalculationOp::Rate(_)
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
            column: if op == CalculationOp::Count {
                None
            } else {
                column
            },
            name,
            integer,
        })
    }

    /// The SQL aggregate expression (for RATE_*, of the per-bucket value), or None for HEATMAP
    /// and CONCURRENCY (computed separately).
    pub(super) fn sql(&self) -> Option<String> {
        let sr = ident(eventide_model::SAMPLERATE);
        let col = self.column.as_deref().map(ident).unwrap_or_default();
        // The weighted value: exact for integers (38 digits), however large.
        let weighted = if self.integer {
            format!("CAST({col} AS DECIMAL(38, 0)) * {sr}")
        } else {
            format!("{col} * {sr}")
        };
        Some(match self.op {
            CalculationOp::Count => format!("COALESCE(SUM({sr}), 0)"),
            CalculationOp::Sum | CalculationOp::Rate(RateOf::Sum) => format!("SUM({weighted})"),
            CalculationOp::Rate(RateOf::Max) => format!("MAX({col})"),
            CalculationOp::Avg | CalculationOp::Rate(RateOf::Avg) => format!(
                "CAST(SUM({weighted}) AS DOUBLE) / CAST(SUM(CASE WHEN {col} IS NOT NULL THEN {sr} END) AS DOUBLE)"
            ),
            CalculationOp::Min => format!("MIN({col})"),
            CalculationOp::Max => format!("MAX({col})"),
            CalculationOp::CountDistinct => format!("COUNT(DISTINCT {col})"),
            CalculationOp::Percentile(q) => {
                format!("{}(CAST({col} AS DOUBLE), {q})", crate::percentile::NAME)
            }
            CalculationOp::Heatmap | CalculationOp::Concurrency => return None,
        })
    }
}

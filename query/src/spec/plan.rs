//! A spec checked against the dataset's schema ([`Plan`]), and the SQL it runs as: the
//! results query (breakdowns, calculations, havings, orders, limit) and the series query (the
//! same per time bucket).

use std::collections::HashSet;

use arrow::datatypes::SchemaRef;

use super::calculations::CheckedCalculation;
use super::columns::Columns;
use super::filters::filter_sql;
use super::literals::{float_lit, ident, string_lit};
use super::window::{auto_granularity, window};
use super::{Calculation, DEFAULT_LIMIT, Having, MAX_LIMIT, MAX_SERIES_BUCKETS, QuerySpec};
use crate::{QueryError, Result};

/// Columns that answer a having (`h__0`, …).
pub(super) const HAVING_COLUMN: &str = "h__";

pub(crate) struct Plan {
    pub(crate) table: String,
    pub(crate) where_sql: String,
    pub(super) breakdowns: Vec<String>,
    pub(super) calcs: Vec<CheckedCalculation>,
    /// Each having: the calculation's expression and the comparison its value must pass.
    havings: Vec<(String, String)>,
    order_sql: String,
    limit: usize,
    pub(super) granularity_us: Option<i64>,
    pub(super) start_us: i64,
    pub(super) end_us: i64,
}

fn having_sql(h: &Having, cols: &Columns) -> Result<(String, String)> {
    let calc = CheckedCalculation::new(
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
        vec![CheckedCalculation::new(
            &Calculation {
                op: "COUNT".into(),
                column: None,
            },
            &cols,
        )?]
    } else {
        spec.calculations
            .iter()
            .map(|c| CheckedCalculation::new(c, &cols))
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
            let probe = CheckedCalculation::new(
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
    pub(super) fn group_cols(&self) -> Vec<String> {
        (0..self.breakdowns.len())
            .map(|i| format!("b{i}"))
            .collect()
    }

    pub(super) fn select_breakdowns(&self) -> Vec<String> {
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

    pub(super) fn results_sql(&self) -> String {
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

    pub(super) fn bucket_expr(g: i64) -> String {
        format!("(CAST({} AS BIGINT) / {g}) * {g}", ident("timestamp"))
    }

    pub(super) fn series_sql(&self, g: i64) -> String {
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

#[cfg(test)]
mod tests {
    use serde_json::Value as Json;

    use super::*;
    use crate::QueryError;
    use crate::spec::Filter;

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
}

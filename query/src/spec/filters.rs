//! Filters as SQL: each spec filter becomes one parenthesised condition, with the filter
//! rules of the `spec` module docs (value types, operators, absent columns); for specs and for
//! callers that build their own SQL around spec filters ([`QueryEngine::filters_predicate`]).

use arrow::datatypes::DataType;
use serde_json::Value as Json;

use super::Filter;
use super::columns::Columns;
use super::literals::{float_lit, ident, string_lit};
use crate::{QueryEngine, QueryError, Result};

/// A filter value as a SQL literal of the column's type.
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

/// The value of a text filter (`starts-with`, `contains` …) as a string literal.
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

/// One filter as a parenthesised SQL condition over `cols`.
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
}

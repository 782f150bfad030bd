//! Result batches as JSON rows: one object per group (in series, per time bucket and group)
//! keyed by breakdown and calculation names, each with the key that matches it to the rows of
//! the other queries behind one result.

use arrow::array::{Array, BooleanArray};
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value as Json};

use super::plan::{HAVING_COLUMN, Plan};
use crate::encode::cell;

/// The group part of a series row's key (`time|group`).
pub(super) fn series_group(key: &str) -> &str {
    key.split_once('|').map_or(key, |(_, g)| g)
}

pub(super) fn group_key(
    batch: &RecordBatch,
    row: usize,
    n_breakdowns: usize,
    offset: usize,
) -> String {
    let vals: Vec<Json> = (0..n_breakdowns)
        .map(|i| cell(batch.column(offset + i), row))
        .collect();
    Json::Array(vals).to_string()
}

/// Turns result batches into JSON objects keyed by breakdown and calculation names.
/// `time_col` marks series batches (first column is the bucket, µs).
pub(super) fn rows_to_objects(
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

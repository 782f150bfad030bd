//! HEATMAP(c): [`HEATMAP_BUCKETS`] buckets of equal width between the column's smallest and
//! largest value in the time range, with the (weighted) count of each, per group (and per time
//! bucket in series).

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use super::HEATMAP_BUCKETS;
use super::calculations::CheckedCalculation;
use super::literals::{float_lit, ident};
use super::plan::Plan;
use super::results::group_key;
use crate::encode::cell;
use crate::{QueryEngine, Result};

impl QueryEngine {
    /// Computes HEATMAP(column) buckets and stores them in each row under the calc's name.
    pub(super) async fn attach_heatmap(
        &self,
        plan: &Plan,
        calc: &CheckedCalculation,
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

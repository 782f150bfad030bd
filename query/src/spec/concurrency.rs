//! CONCURRENCY: the events in progress per time bucket (series) and their peak (results);
//! see the module docs of `spec`.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};

use super::calculations::CheckedCalculation;
use super::literals::ident;
use super::plan::Plan;
use super::results::group_key;
use crate::encode::cell;
use crate::{QueryEngine, Result};

impl QueryEngine {
    /// CONCURRENCY: events in progress per bucket (series) and their peak (results). Each
    /// event spans the buckets from the one holding its start to the one holding its last
    /// microsecond; a difference array over bucket times gives the count per bucket.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attach_concurrency(
        &self,
        plan: &Plan,
        calc: &CheckedCalculation,
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
}

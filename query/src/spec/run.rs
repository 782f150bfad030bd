//! Running a spec ([`QueryEngine::run_spec`]): the results query, then the calculations
//! computed beside its SQL aggregates (HEATMAP, RATE_*, CONCURRENCY) and the series.

use std::collections::HashSet;
use std::time::Instant;

use serde_json::{Map, Value as Json};

use super::calculations::{CalculationOp, CheckedCalculation};
use super::plan::plan;
use super::rate::apply_rate;
use super::results::{rows_to_objects, series_group};
use super::window::auto_granularity;
use super::{QuerySpec, SpecResult};
use crate::{QueryEngine, QueryError, Result};

impl QueryEngine {
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
        let heatmaps: Vec<&CheckedCalculation> = plan
            .calcs
            .iter()
            .filter(|c| c.op == CalculationOp::Heatmap)
            .collect();
        for h in &heatmaps {
            self.attach_heatmap(&plan, h, None, &mut results, &mut stats)
                .await?;
        }
        // RATE_* and CONCURRENCY need time buckets even when no series is asked for.
        let bucketed = plan
            .calcs
            .iter()
            .any(|c| matches!(c.op, CalculationOp::Concurrency | CalculationOp::Rate(_)));
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
                for c in plan
                    .calcs
                    .iter()
                    .filter(|c| matches!(c.op, CalculationOp::Rate(_)))
                {
                    apply_rate(c, g, &mut rows, &mut results);
                }
                for c in plan
                    .calcs
                    .iter()
                    .filter(|c| c.op == CalculationOp::Concurrency)
                {
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
}

//! Live tails: which of a batch of events just applied match a query spec's filters, as JSON
//! objects (for `GET /api/v1/tail/{dataset}`). The filters are the query builder's, compiled
//! by the same rules as in a query ([`QueryEngine::filters_predicate`]) and run by DataFusion
//! over the batch alone.

use std::sync::Arc;

use arrow::datatypes::{FieldRef, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use eventide_model::chunks::conform_by_name;
use serde_json::{Map, Value as Json};

use crate::QueryEngine;
use crate::spec::{Filter, ident};
use crate::{QueryError, Result};

/// The rows of `batch` (events of `dataset`) where `filters` hold (all of them, or any with
/// `any`), as objects without their absent fields; at most `limit`, and how many matched.
pub async fn matching(
    engine: &QueryEngine,
    dataset: &str,
    batch: &RecordBatch,
    filters: &[Filter],
    any: bool,
    limit: usize,
) -> Result<(Vec<Map<String, Json>>, usize)> {
    let matched = if filters.is_empty() {
        batch.clone()
    } else {
        let predicate = engine.filters_predicate(dataset, filters, any)?;
        // A batch holds only the columns its events use: the filters may name others (null
        // here), and a column's type in the dataset may be wider than in this batch.
        let batch = &widened(engine, dataset, batch)?;
        let ctx = SessionContext::new();
        let table = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])
            .map_err(|e| QueryError::Internal(format!("live tail: {e}")))?;
        ctx.register_table(TableReference::bare(dataset), Arc::new(table))
            .map_err(|e| QueryError::Internal(format!("live tail: {e}")))?;
        let df = ctx
            .sql(&format!(
                "SELECT * FROM {} WHERE COALESCE({predicate}, FALSE)",
                ident(dataset)
            ))
            .await
            .map_err(|e| QueryError::bad(format!("filters: {e}")))?;
        let batches = df
            .collect()
            .await
            .map_err(|e| QueryError::Internal(format!("live tail: {e}")))?;
        arrow::compute::concat_batches(&batch.schema(), &batches)
            .map_err(|e| QueryError::Internal(format!("live tail: {e}")))?
    };
    let total = matched.num_rows();
    let schema = matched.schema();
    let mut rows = Vec::with_capacity(total.min(limit));
    for r in 0..total.min(limit) {
        let mut o = Map::new();
        for (f, c) in schema.fields().iter().zip(matched.columns()) {
            if c.is_null(r) {
                continue;
            }
            o.insert(f.name().clone(), crate::encode::cell(c, r));
        }
        rows.push(o);
    }
    Ok((rows, total))
}

/// `batch` with every column of the dataset's schema (absent ones null, others cast to the
/// dataset's type), and its own columns the schema does not have yet kept as they are.
fn widened(engine: &QueryEngine, dataset: &str, batch: &RecordBatch) -> Result<RecordBatch> {
    let Some(snapshot) = engine.store().snapshot(dataset) else {
        return Ok(batch.clone());
    };
    let mut fields: Vec<FieldRef> = snapshot.schema.fields().iter().cloned().collect();
    for f in batch.schema().fields() {
        if snapshot.schema.field_with_name(f.name()).is_err() {
            fields.push(f.clone());
        }
    }
    let schema = Arc::new(Schema::new(fields));
    conform_by_name(batch, &schema).map_err(|e| QueryError::Internal(format!("live tail: {e}")))
}

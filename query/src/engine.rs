//! The query engine: one DataFusion session over the store.

use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SessionConfig, SessionContext};
use eventide_store::Store;
use serde::Serialize;
use serde_json::Value as Json;

use crate::encode::{cell, type_name};
use crate::provider::{DatasetSchemaProvider, SEGMENTS_URL};
use crate::{QueryError, Result};

/// A result column's name and type.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The reply of `POST /api/v1/sql`.
#[derive(Debug, Clone, Serialize)]
pub struct SqlResult {
    pub columns: Vec<ColumnInfo>,
    pub rows: Vec<Vec<Json>>,
    pub elapsed_ms: f64,
}

/// Runs SQL and query specs against the store.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    store: Store,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish()
    }
}

impl QueryEngine {
    pub fn new(store: Store) -> Result<Self> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            );
        let ctx = SessionContext::new_with_config(config);
        let url =
            ObjectStoreUrl::parse(SEGMENTS_URL).map_err(|e| QueryError::Internal(e.to_string()))?;
        ctx.register_object_store(url.as_ref(), store.object_store());
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| QueryError::Internal("default catalog missing".into()))?;
        catalog
            .register_schema(
                "public",
                Arc::new(DatasetSchemaProvider::new(store.clone())),
            )
            .map_err(QueryError::from_datafusion)?;
        Ok(Self { ctx, store })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs read-only SQL and returns the result schema and Arrow batches.
    pub async fn sql_batches(
        &self,
        sql: &str,
    ) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self
            .ctx
            .sql_with_options(sql, options)
            .await
            .map_err(QueryError::from_datafusion)?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(QueryError::from_datafusion)?;
        Ok((schema, batches))
    }

    /// Runs read-only SQL and encodes the result as JSON rows.
    pub async fn sql(&self, sql: &str) -> Result<SqlResult> {
        let started = Instant::now();
        if sql.trim().is_empty() {
            return Err(QueryError::bad("sql is empty"));
        }
        let (schema, batches) = self.sql_batches(sql).await?;
        let (columns, rows) = encode_rows(&schema, &batches);
        Ok(SqlResult {
            columns,
            rows,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}

/// Encodes batches as column descriptions and JSON rows.
pub fn encode_rows(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> (Vec<ColumnInfo>, Vec<Vec<Json>>) {
    let columns = schema
        .fields()
        .iter()
        .map(|f| ColumnInfo {
            name: f.name().clone(),
            type_name: type_name(f.data_type()),
        })
        .collect();
    let mut rows = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push(b.columns().iter().map(|c| cell(c, r)).collect());
        }
    }
    (columns, rows)
}

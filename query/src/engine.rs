//! The query engine: one DataFusion session over the store.

use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::grouping::InternedGroupingRule;
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

/// What a query read: how well segments and row groups were pruned.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ScanStats {
    /// Segment files the scans were planned over (after time-range pruning by the catalog).
    pub files_scanned: u64,
    /// Of those, files skipped whole by their Parquet statistics.
    pub files_pruned: u64,
    /// Segment files of the datasets read, before any pruning.
    pub files_total: u64,
    /// Bytes read from segment files.
    pub bytes_scanned: u64,
    /// Bytes of the datasets' segment files, before any pruning.
    pub bytes_total: u64,
    /// Row groups skipped by min/max statistics and by bloom filters.
    pub row_groups_pruned_statistics: u64,
    pub row_groups_pruned_bloom_filter: u64,
}

impl ScanStats {
    fn add(&mut self, o: &ScanStats) {
        self.files_scanned += o.files_scanned;
        self.files_pruned += o.files_pruned;
        self.files_total += o.files_total;
        self.bytes_scanned += o.bytes_scanned;
        self.bytes_total += o.bytes_total;
        self.row_groups_pruned_statistics += o.row_groups_pruned_statistics;
        self.row_groups_pruned_bloom_filter += o.row_groups_pruned_bloom_filter;
    }

    /// Sums the Parquet scans of an executed plan.
    fn of_plan(plan: &Arc<dyn ExecutionPlan>, out: &mut ScanStats) {
        let mut files = std::collections::HashSet::new();
        Self::walk(plan, out, &mut files);
        out.files_scanned += files.len() as u64;
    }

    fn walk(
        plan: &Arc<dyn ExecutionPlan>,
        out: &mut ScanStats,
        files: &mut std::collections::HashSet<String>,
    ) {
        use datafusion::datasource::physical_plan::FileScanConfig;
        use datafusion::datasource::source::DataSourceExec;
        use datafusion::physical_plan::metrics::MetricValue;
        if let Some(exec) = plan.downcast_ref::<DataSourceExec>()
            && let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>()
        {
            // A file may be split into several byte ranges; count it once.
            for group in &config.file_groups {
                for f in group.iter() {
                    files.insert(f.object_meta.location.to_string());
                }
            }
            if let Some(m) = plan.metrics() {
                // Pruning metrics count what was pruned and what matched; take the pruned.
                let get = |name: &str| {
                    m.sum_by_name(name).map_or(0, |v| match v {
                        MetricValue::PruningMetrics {
                            pruning_metrics, ..
                        } => pruning_metrics.pruned() as u64,
                        other => other.as_usize() as u64,
                    })
                };
                out.bytes_scanned += get("bytes_scanned");
                out.files_pruned += get("files_ranges_pruned_statistics");
                out.row_groups_pruned_statistics += get("row_groups_pruned_statistics");
                out.row_groups_pruned_bloom_filter += get("row_groups_pruned_bloom_filter");
            }
        }
        for child in plan.children() {
            Self::walk(child, out, files);
        }
    }
}

/// One column of a dataset (`GET /api/v1/datasets/{dataset}/columns`).
#[derive(Debug, Clone, Serialize)]
pub struct ColumnStats {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// Time of the first and last event that has the column.
    pub first_seen: Json,
    pub last_seen: Json,
    /// Events that have the column.
    pub count: Json,
    /// Distinct values, estimated with HyperLogLog (exact for booleans).
    pub approx_distinct: Json,
}

/// Columns per statistics query: wide datasets are read in slices.
const COLUMNS_PER_QUERY: usize = 64;

/// The tables a logical plan scans (subqueries included).
fn tables_of(plan: &datafusion::logical_expr::LogicalPlan) -> std::collections::BTreeSet<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::logical_expr::LogicalPlan;
    let mut names = std::collections::BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            names.insert(scan.table_name.table().to_owned());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}

/// The reply of `POST /api/v1/sql`.
#[derive(Debug, Clone, Serialize)]
pub struct SqlResult {
    pub columns: Vec<ColumnInfo>,
    pub rows: Vec<Vec<Json>>,
    pub stats: ScanStats,
    pub elapsed_ms: f64,
}

/// DataFusion's physical optimizer rules, with the grouping-sets order fix first (before its
/// rules plan distribution and sorts; grouping_sets_order.rs).
fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    rules.insert(0, Arc::new(crate::grouping_sets_order::GroupingSetsOrder));
    rules
}

/// The environment variable of a DataFusion option: `datafusion.execution.batch_size` →
/// `DATAFUSION_EXECUTION_BATCH_SIZE`.
fn env_name(key: &str) -> String {
    key.replace('.', "_").to_uppercase()
}

/// Runs SQL and query specs against the store.
/// The SQL schema of Eventide's own tables (`eventide.markers`); datasets are in `public`.
pub const SYSTEM_SCHEMA: &str = "eventide";

/// Whether `GROUP BY` uses Eventide's interned grouping ([`crate::grouping`]); on unless
/// `EVENTIDE_QUERY_INTERNED_GROUPING` is `false` or `0` (to compare, or to rule it out).
fn interned_grouping_enabled() -> bool {
    !matches!(
        std::env::var("EVENTIDE_QUERY_INTERNED_GROUPING").as_deref(),
        Ok("false" | "0")
    )
}

/// Longest a query waits for the store to apply what the log acknowledged before it.
pub const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    /// The same session for the SQL Eventide writes itself (query specs, BubbleUp, alerts),
    /// with sorts not split across partitions: their results are aggregates, and DataFusion
    /// 55's split sorts can be refused by its own plan check when a having pins a sort key.
    internal: SessionContext,
    store: Store,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish()
    }
}

impl QueryEngine {
    /// A session over `store`. Eventide's defaults: one partition per core, and Parquet
    /// filter pushdown with filter reordering (late materialization: the other columns of a
    /// filtered scan are decoded only for matching rows). Any DataFusion option can be set
    /// from the environment as `DATAFUSION_<SECTION>_<NAME>` (for example
    /// `DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS=false`); the environment wins.
    pub fn new(store: Store) -> Result<Self> {
        Self::with_memory_limit(store, None)
    }

    /// [`QueryEngine::new`] whose queries share a memory pool of `memory_limit` bytes, if
    /// given: sorts and aggregations reserve from it (sorts spill to disk first), and a query
    /// that cannot get what it needs fails with [`QueryError::OverMemory`] instead of growing
    /// the process.
    pub fn with_memory_limit(store: Store, memory_limit: Option<usize>) -> Result<Self> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            );
        {
            let parquet = &mut config.options_mut().execution.parquet;
            parquet.pushdown_filters = true;
            parquet.reorder_filters = true;
        }
        // DataFusion 55's dynamic filter of a MIN/MAX aggregate without GROUP BY leaves out an
        // aggregate that has no value yet and ORs the others' bounds, so it drops rows that
        // aggregate still needs: `SELECT max(delta), max("db.rows") … WHERE …` answered 27
        // instead of 7899 once a hot tail (read first) had set a bound for `delta` only (seed
        // 20261202 of the differential check, mixed #4429, #5400; tests/differential/FINDINGS.md).
        config
            .options_mut()
            .optimizer
            .enable_aggregate_dynamic_filter_pushdown = false;
        let env = datafusion::config::ConfigOptions::from_env()
            .map_err(|e| QueryError::Internal(format!("DATAFUSION_* environment: {e}")))?;
        for entry in env.entries() {
            if let Some(v) = entry.value
                && std::env::var_os(env_name(&entry.key)).is_some()
            {
                config = config.set_str(&entry.key, &v);
            }
        }
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(bytes) = memory_limit {
            runtime = runtime.with_memory_limit(bytes, 1.0);
        }
        let runtime = runtime.build_arc().map_err(QueryError::from_datafusion)?;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            // NULLs where DataFusion 55 folds two IN lists into a constant (inlist_nulls.rs).
            .with_analyzer_rule(Arc::new(crate::inlist_nulls::InListNulls))
            .with_physical_optimizer_rules(physical_rules());
        if interned_grouping_enabled() {
            state = state.with_physical_optimizer_rule(Arc::new(InternedGroupingRule));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_udaf(crate::percentile::udaf());
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
        catalog
            .register_schema(
                SYSTEM_SCHEMA,
                Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
            )
            .map_err(QueryError::from_datafusion)?;
        let mut internal_config = ctx.copied_config();
        internal_config.options_mut().optimizer.repartition_sorts = false;
        // The catalogs are the ones above (shared), not new default ones.
        internal_config
            .options_mut()
            .catalog
            .create_default_catalog_and_schema = false;
        let internal = SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(ctx.state())
                .with_config(internal_config)
                .build(),
        );
        Ok(Self {
            ctx,
            internal,
            store,
        })
    }

    /// Waits (at most [`CATCH_UP_WAIT`]) until the store has applied every event the log had
    /// acknowledged when the query arrived, so a query sees them all (embedded log; with
    /// Kafka the store cannot tell, and a query sees what was consumed).
    pub async fn catch_up(&self) {
        if !self.store.catch_up(CATCH_UP_WAIT).await {
            tracing::debug!("the store is behind the log; answering with what it has applied");
        }
    }

    /// Makes `table` readable in SQL as `eventide.{name}` (e.g. `eventide.markers`), beside
    /// the datasets; replaces a table of that name.
    pub fn register_system_table(
        &self,
        name: &str,
        table: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<()> {
        let schema = self
            .ctx
            .catalog("datafusion")
            .and_then(|c| c.schema(SYSTEM_SCHEMA))
            .ok_or_else(|| QueryError::Internal("system schema missing".into()))?;
        schema
            .register_table(name.to_owned(), table)
            .map_err(QueryError::from_datafusion)?;
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs read-only SQL and returns the result schema and Arrow batches.
    /// Runs read-only SQL; adds what it read to `stats`. Segment files it may read are pinned
    /// (not deleted by compaction or retention) until it returns.
    pub async fn sql_batches(
        &self,
        sql: &str,
        stats: &mut ScanStats,
    ) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
        self.run_sql(&self.ctx, sql, stats).await
    }

    /// [`QueryEngine::sql_batches`] for SQL Eventide wrote itself (see `internal`).
    pub(crate) async fn internal_sql_batches(
        &self,
        sql: &str,
        stats: &mut ScanStats,
    ) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
        self.run_sql(&self.internal, sql, stats).await
    }

    async fn run_sql(
        &self,
        ctx: &SessionContext,
        sql: &str,
        stats: &mut ScanStats,
    ) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
        let _pin = self.store.pin();
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(QueryError::from_datafusion)?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let tables = tables_of(df.logical_plan());
        let task = Arc::new(df.task_ctx());
        let plan = df
            .create_physical_plan()
            .await
            .map_err(QueryError::from_datafusion)?;
        // Executes on the query runtime (see `executor`); the pin moves along so that files
        // stay readable until the execution itself has stopped, even when this caller is
        // dropped first.
        let exec_pin = self.store.pin();
        let exec_plan = plan.clone();
        let running = crate::executor::spawn(async move {
            let _pin = exec_pin;
            datafusion::physical_plan::collect(exec_plan, task).await
        })?;
        let batches = match running.await? {
            Ok(b) => b,
            Err(e) if QueryError::is_read_failure(&e) => {
                return Err(self.read_failure(e, &tables).await);
            }
            Err(e) => return Err(QueryError::from_datafusion(e)),
        };
        let mut s = ScanStats::default();
        ScanStats::of_plan(&plan, &mut s);
        // Totals of the datasets the plan read, for the ratio.
        for table in tables {
            if let Some(snap) = self.store.snapshot(&table) {
                s.files_total += snap.segments.len() as u64;
                s.bytes_total += snap.segments.iter().map(|x| x.bytes).sum::<u64>();
            }
        }
        stats.add(&s);
        Ok((schema, batches))
    }

    /// After a query failed reading stored data: finds the segment files of the datasets it
    /// read that are missing or corrupt (reading at most 4 GiB of them) and names them.
    async fn read_failure(
        &self,
        e: datafusion::error::DataFusionError,
        tables: &std::collections::BTreeSet<String>,
    ) -> QueryError {
        let store = self.store.clone();
        let tables: Vec<String> = tables.iter().cloned().collect();
        let bad = tokio::task::spawn_blocking(move || {
            tables
                .iter()
                .flat_map(|t| store.verify_segments(t, 4 << 30))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        if bad.is_empty() {
            return QueryError::from_datafusion(e);
        }
        let files: Vec<String> = bad
            .iter()
            .map(|(path, why)| format!("{path} ({why})"))
            .collect();
        tracing::error!(files = ?files, error = %e, "query failed on corrupt or missing segment files");
        QueryError::Corrupt(format!(
            "stored data is corrupt or missing: segment file {}; the query cannot be answered \
             until it is restored or removed (see OPERATIONS.md, \"Damaged segments\")",
            files.join(", segment file ")
        ))
    }

    /// Statistics of every column of `dataset` over its visible data.
    pub async fn columns(&self, dataset: &str) -> Result<Vec<ColumnStats>> {
        self.catch_up().await;
        let snap = self
            .store
            .snapshot(dataset)
            .ok_or_else(|| QueryError::bad(format!("unknown dataset {dataset:?}")))?;
        let fields: Vec<_> = snap.schema.fields().iter().skip(2).cloned().collect();
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut out = Vec::with_capacity(fields.len());
        for chunk in fields.chunks(COLUMNS_PER_QUERY) {
            let mut select = Vec::new();
            for f in chunk {
                let c = quote(f.name());
                let distinct = match f.data_type() {
                    arrow::datatypes::DataType::Boolean => format!("count(DISTINCT {c})"),
                    // DataFusion's HyperLogLog takes no floats: count their text.
                    arrow::datatypes::DataType::Float64 => {
                        format!("approx_distinct(CAST({c} AS VARCHAR))")
                    }
                    _ => format!("approx_distinct({c})"),
                };
                select.push(format!(
                    "min(\"timestamp\") FILTER (WHERE {c} IS NOT NULL), \
                     max(\"timestamp\") FILTER (WHERE {c} IS NOT NULL), count({c}), {distinct}"
                ));
            }
            let sql = format!("SELECT {} FROM {}", select.join(", "), quote(dataset));
            let (_, batches) = self.sql_batches(&sql, &mut ScanStats::default()).await?;
            let row = |i: usize| {
                batches
                    .first()
                    .filter(|b| b.num_rows() > 0)
                    .map_or(Json::Null, |b| cell(b.column(i), 0))
            };
            for (k, f) in chunk.iter().enumerate() {
                out.push(ColumnStats {
                    name: f.name().clone(),
                    type_name: type_name(f.data_type()),
                    first_seen: row(4 * k),
                    last_seen: row(4 * k + 1),
                    count: row(4 * k + 2),
                    approx_distinct: row(4 * k + 3),
                });
            }
        }
        Ok(out)
    }

    /// Runs read-only SQL and encodes the result as JSON rows.
    pub async fn sql(&self, sql: &str) -> Result<SqlResult> {
        let started = Instant::now();
        if sql.trim().is_empty() {
            return Err(QueryError::bad("sql is empty"));
        }
        self.catch_up().await;
        let mut stats = ScanStats::default();
        let (schema, batches) = self.sql_batches(sql, &mut stats).await?;
        let (columns, rows) = encode_rows(&schema, &batches);
        Ok(SqlResult {
            columns,
            rows,
            stats,
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

//! DataFusion tables over the store: Parquet segments ∪ hot tail, per dataset.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{
    FileGroup, FileGroupPartitioner, FileScanConfigBuilder, ParquetSource,
};
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use eventide_store::{DatasetSnapshot, SegmentMeta, Store};

/// The object-store URL segment paths are resolved against.
pub const SEGMENTS_URL: &str = "eventide://segments";

/// Lists the store's datasets as tables.
#[derive(Debug)]
pub struct DatasetSchemaProvider {
    store: Store,
}

impl DatasetSchemaProvider {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn resolve(&self, name: &str) -> Option<String> {
        let names = self.store.datasets();
        if names.iter().any(|n| n == name) {
            return Some(name.to_owned());
        }
        // SQL folds unquoted identifiers to lower case; accept a unique case-insensitive match.
        let mut matches = names.into_iter().filter(|n| n.eq_ignore_ascii_case(name));
        match (matches.next(), matches.next()) {
            (Some(m), None) => Some(m),
            _ => None,
        }
    }
}

#[async_trait]
impl SchemaProvider for DatasetSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.store.datasets()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .resolve(name)
            .and_then(|n| self.store.snapshot(&n))
            .map(|s| Arc::new(DatasetTable::new(s)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }
}

/// One dataset at one moment, as a DataFusion table.
///
/// String columns are read as `Utf8View` (DataFusion's own default for Parquet): a row of a
/// dictionary-encoded page becomes a 16-byte view into the page's dictionary instead of a
/// copy of its bytes, and equal values of a page share one view, which grouping exploits
/// ([`crate::grouping`]). The stored schema keeps `Utf8`.
#[derive(Debug)]
pub struct DatasetTable {
    snapshot: DatasetSnapshot,
    schema: SchemaRef,
}

impl DatasetTable {
    pub fn new(snapshot: DatasetSnapshot) -> Self {
        let schema = view_schema(&snapshot.schema);
        Self { snapshot, schema }
    }
}

/// `schema` with its `Utf8` columns as `Utf8View`.
fn view_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with the (projected) columns of the table `schema`, matched by name: a hot batch
/// has only the columns its rows use, the others are nulls of this batch's length. `Utf8`
/// columns become views (the bytes are shared, not copied).
fn as_view_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
) -> DfResult<RecordBatch> {
    let schema = match projection {
        Some(p) => Arc::new(schema.project(p)?),
        None => Arc::clone(schema),
    };
    let n = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(Arc::clone(c)),
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(arrow::array::new_null_array(f.data_type(), n)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

/// Inclusive bounds on `timestamp` (µs) implied by a conjunction of filters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeBounds {
    pub min: i64,
    pub max: i64,
}

fn scalar_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampSecond(Some(x), _) => x.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(x), _) => x.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(x), _) => Some(*x),
        ScalarValue::TimestampNanosecond(Some(x), _) => Some(x.div_euclid(1_000)),
        _ => None,
    }
}

fn is_time_column(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == eventide_model::TIMESTAMP,
        Expr::Cast(c) => is_time_column(&c.expr),
        _ => false,
    }
}

fn literal_micros(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => scalar_micros(v),
        _ => None,
    }
}

impl TimeBounds {
    pub const ALL: TimeBounds = TimeBounds {
        min: i64::MIN,
        max: i64::MAX,
    };

    /// Narrows the bounds by every `timestamp <op> literal` conjunct in `filters`.
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut b = Self::ALL;
        for f in filters {
            b.narrow(f);
        }
        b
    }

    fn narrow(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.narrow(left);
                    self.narrow(right);
                    return;
                }
                let (op, v) = if is_time_column(left) {
                    match literal_micros(right) {
                        Some(v) => (*op, v),
                        None => return,
                    }
                } else if is_time_column(right) {
                    match (literal_micros(left), op.swap()) {
                        (Some(v), Some(op)) => (op, v),
                        _ => return,
                    }
                } else {
                    return;
                };
                match op {
                    Operator::Eq => {
                        self.min = self.min.max(v);
                        self.max = self.max.min(v);
                    }
                    Operator::Gt => self.min = self.min.max(v.saturating_add(1)),
                    Operator::GtEq => self.min = self.min.max(v),
                    Operator::Lt => self.max = self.max.min(v.saturating_sub(1)),
                    Operator::LtEq => self.max = self.max.min(v),
                    _ => {}
                }
            }
            Expr::Between(bt) if !bt.negated && is_time_column(&bt.expr) => {
                if let (Some(lo), Some(hi)) = (literal_micros(&bt.low), literal_micros(&bt.high)) {
                    self.min = self.min.max(lo);
                    self.max = self.max.min(hi);
                }
            }
            _ => {}
        }
    }

    pub fn overlaps(&self, seg: &SegmentMeta) -> bool {
        seg.max_time_us >= self.min && seg.min_time_us <= self.max
    }
}

#[async_trait]
impl TableProvider for DatasetTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Used for segment and row-group pruning; DataFusion still applies every filter.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema.clone();
        let bounds = TimeBounds::from_filters(filters);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        let files: Vec<&SegmentMeta> = self
            .snapshot
            .segments
            .iter()
            .filter(|s| bounds.overlaps(s))
            .collect();
        if !files.is_empty() {
            let partitions = state.config().target_partitions().max(1);
            // Even byte ranges per partition (row groups are read by the range holding their
            // start), so a big compacted segment does not leave the other cores idle; small
            // inputs, one file per partition.
            let all = FileGroup::new(
                files
                    .iter()
                    .map(|seg| PartitionedFile::new(seg.path.clone(), seg.bytes))
                    .collect(),
            );
            let groups: Vec<FileGroup> = FileGroupPartitioner::new()
                .with_target_partitions(partitions)
                .with_repartition_file_min_size(
                    state.config().options().optimizer.repartition_file_min_size,
                )
                .repartition_file_groups(std::slice::from_ref(&all))
                .unwrap_or_else(|| all.split_files(partitions.min(files.len())));
            let mut source = ParquetSource::new(schema.clone());
            // Expired or deleted rows in segments that straddle the cut are filtered out row
            // by row inside the Parquet reader.
            if let Some(from) = self.snapshot.visible_from_us {
                use datafusion::physical_expr::expressions as pe;
                let cut = Arc::new(pe::BinaryExpr::new(
                    pe::col(eventide_model::TIMESTAMP, &schema)?,
                    Operator::GtEq,
                    pe::lit(ScalarValue::TimestampMicrosecond(
                        Some(from),
                        Some("UTC".into()),
                    )),
                ));
                source = source.with_predicate(cut).with_pushdown_filters(true);
            }
            let source = Arc::new(source);
            let config = FileScanConfigBuilder::new(ObjectStoreUrl::parse(SEGMENTS_URL)?, source)
                .with_file_groups(groups)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            inputs.push(
                ParquetFormat::default()
                    .create_physical_plan(state, config)
                    .await?,
            );
        }

        let hot: Vec<_> = self
            .snapshot
            .hot
            .iter()
            .filter(|b| b.num_rows() > 0)
            .cloned()
            .collect();
        if !hot.is_empty() {
            let partitions = state.config().target_partitions().clamp(1, hot.len());
            let mut parts = vec![Vec::new(); partitions];
            for (i, b) in hot.into_iter().enumerate() {
                parts[i % partitions].push(as_view_batch(&b, &schema, projection)?);
            }
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema.clone(),
            };
            let mem = MemorySourceConfig::try_new(&parts, projected, None)?.with_limit(limit);
            inputs.push(datafusion::datasource::source::DataSourceExec::from_data_source(mem));
        }

        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        if inputs.len() == 1 {
            return Ok(inputs.remove(0));
        }
        crate::scan::DatasetScanExec::try_new(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn time_bounds_from_filters() {
        let ts = |v| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(v),
                Some("UTC".into()),
            ))
        };
        let f = vec![
            col("timestamp").gt_eq(ts(10)),
            col("timestamp").lt(ts(20)),
            col("x").eq(lit(1)),
        ];
        assert_eq!(
            TimeBounds::from_filters(&f),
            TimeBounds { min: 10, max: 19 }
        );
        let f = vec![ts(15).lt_eq(col("timestamp"))];
        assert_eq!(TimeBounds::from_filters(&f).min, 15);
        let seg = |lo, hi| SegmentMeta {
            id: 0,
            path: String::new(),
            min_time_us: lo,
            max_time_us: hi,
            rows: 1,
            bytes: 1,
            arrow_bytes: 0,
            first_offset: 0,
            last_offset: 0,
            level: 0,
            created_us: 0,
        };
        let b = TimeBounds { min: 10, max: 19 };
        assert!(b.overlaps(&seg(0, 10)));
        assert!(b.overlaps(&seg(19, 30)));
        assert!(!b.overlaps(&seg(0, 9)));
        assert!(!b.overlaps(&seg(20, 30)));
    }
}

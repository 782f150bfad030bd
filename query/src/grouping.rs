//! Grouping by interned keys: Eventide's partial stage of `GROUP BY`.
//!
//! The questions developers ask most often break down by a few low-cardinality fields
//! (`service.name`, `endpoint`, `region`, status codes), and DataFusion's hash aggregation
//! hashes and compares every key string of every row. Eventide's segments store such columns
//! dictionary-encoded, and the Parquet reader hands each row of a dictionary page the very same
//! 16-byte string view. [`InternedAggregateExec`] exploits that: it turns each key column into
//! small integer ids (one lookup of the raw view per row, and a string hash only the first time
//! a view is seen in a batch), combines the ids into a group index, and feeds DataFusion's own
//! accumulators. Its output is exactly the partial aggregate state DataFusion's `AggregateExec`
//! would produce, so the final stage, every aggregate function and every answer stay
//! DataFusion's.
//!
//! [`InternedGroupingRule`] swaps it in for `AggregateExec` in `Partial` mode when that is safe
//! (plain `GROUP BY` of at most [`MAX_KEYS`] columns of string, integer, time or boolean type,
//! unordered input, no limit pushed into the aggregation). Keys that turn out mostly distinct
//! (`GROUP BY trace.trace_id`, `COUNT(DISTINCT user_id)`) are detected in the first rows and
//! handed back to DataFusion's hash aggregation; memory is bounded by emitting the partial
//! state whenever [`MAX_GROUPS`] groups accumulate (the final stage merges the pieces).

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result as DfResult, ScalarValue, internal_datafusion_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode,
    Partitioning, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt, stream};

/// Most key columns one interned grouping handles (their ids pack into 128 bits).
pub const MAX_KEYS: usize = 4;

/// Groups held before the partial state is emitted and started afresh (memory bound).
pub const MAX_GROUPS: usize = 256 * 1024;

/// Entries of the per-batch direct-mapped caches of string views and fixed-width values.
const RECENT_VIEWS: usize = 256;

/// Rows over which mostly distinct keys are detected and handed to DataFusion.
const PROBE_ROWS: usize = 64 * 1024;

/// Fewest rows the probe judges on.
const PROBE_MIN_ROWS: usize = 8 * 1024;

/// Replaces partial `AggregateExec`s with [`InternedAggregateExec`] where it is safe.
#[derive(Debug, Default)]
pub struct InternedGroupingRule;

impl PhysicalOptimizerRule for InternedGroupingRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match InternedAggregateExec::try_replace(&node)? {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "eventide_interned_grouping"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether values of this type can be a key (the rule leaves floats, decimals and nested
/// types to DataFusion).
fn key_type_supported(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
    ) || (t.is_integer()
        || matches!(
            t,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        ))
        && t.primitive_width().is_some_and(|w| w <= 8)
}

/// The partial stage of a `GROUP BY` over interned keys; see the module docs.
#[derive(Debug)]
pub struct InternedAggregateExec {
    /// The `AggregateExec` this replaces: its schema, and the fallback for distinct keys.
    agg: Arc<dyn ExecutionPlan>,
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<(Arc<dyn PhysicalExpr>, String)>,
    aggr: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    cache: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl InternedAggregateExec {
    /// This exec in place of `node`, when `node` is a partial `AggregateExec` it can replace.
    pub fn try_replace(node: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Self>> {
        let Some(agg) = node.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let group = agg.group_expr();
        let input_schema = agg.input().schema();
        let eligible = *agg.mode() == AggregateMode::Partial
            && group.is_single()
            && !group.has_grouping_set()
            && !group.expr().is_empty()
            && group.expr().len() <= MAX_KEYS
            && agg.limit_options().is_none()
            && agg.dynamic_expressions_produced().is_empty()
            && *agg.input_order_mode() == InputOrderMode::Linear
            && agg.aggr_expr().iter().all(|a| a.order_bys().is_empty());
        if !eligible {
            return Ok(None);
        }
        for (expr, _) in group.expr() {
            if !key_type_supported(&expr.data_type(&input_schema)?) {
                return Ok(None);
            }
        }
        let schema = agg.schema();
        let cache = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(
                agg.properties().output_partitioning().partition_count(),
            ),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Some(Self {
            agg: Arc::clone(node),
            input: Arc::clone(agg.input()),
            keys: group.expr().to_vec(),
            aggr: agg.aggr_expr().to_vec(),
            filters: agg.filter_expr().to_vec(),
            cache: Arc::new(cache),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

/// DataFusion's accumulators for `aggr`, as its own hash aggregation makes them.
fn accumulators(aggr: &[Arc<AggregateFunctionExpr>]) -> DfResult<Vec<Box<dyn GroupsAccumulator>>> {
    aggr.iter()
        .map(|a| {
            if a.groups_accumulator_supported() {
                a.create_groups_accumulator()
            } else {
                let a = Arc::clone(a);
                Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                    a.create_accumulator()
                })) as Box<dyn GroupsAccumulator>)
            }
        })
        .collect()
}

impl DisplayAs for InternedAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                let keys: Vec<&str> = self.keys.iter().map(|(_, n)| n.as_str()).collect();
                let aggr: Vec<&str> = self.aggr.iter().map(|a| a.name()).collect();
                write!(
                    f,
                    "InternedAggregateExec: mode=Partial, gby=[{}], aggr=[{}]",
                    keys.join(", "),
                    aggr.join(", ")
                )
            }
            DisplayFormatType::TreeRender => write!(f, ""),
        }
    }
}

impl ExecutionPlan for InternedAggregateExec {
    fn name(&self) -> &'static str {
        "InternedAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        let args = self.aggr.iter().flat_map(|a| a.expressions());
        let exprs = self
            .keys
            .iter()
            .map(|(e, _)| Arc::clone(e))
            .chain(args)
            .chain(self.filters.iter().flatten().cloned());
        for e in exprs {
            if f(&e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let agg = Arc::clone(&self.agg).replace_children(children, options)?;
        match Self::try_replace(&agg)? {
            Some(exec) => Ok(Arc::new(exec)),
            None => Ok(agg),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let state = GroupingState {
            keys: self
                .keys
                .iter()
                .map(|(e, _)| e.data_type(&self.input.schema()).map(KeyColumn::new))
                .collect::<DfResult<_>>()?,
            key_exprs: self.keys.iter().map(|(e, _)| Arc::clone(e)).collect(),
            args: self.aggr.iter().map(|a| a.expressions()).collect(),
            filters: self.filters.clone(),
            accumulators: accumulators(&self.aggr)?,
            groups: GroupIndex::default(),
            schema: self.schema(),
            ids: Vec::new(),
            indices: Vec::new(),
        };
        let run = Run {
            state,
            input,
            agg: Arc::clone(&self.agg),
            aggr: self.aggr.clone(),
            context,
            metrics: BaselineMetrics::new(&self.metrics, partition),
            handed_over: MetricBuilder::new(&self.metrics)
                .counter("handed_to_hash_aggregation", partition),
            state_emits: MetricBuilder::new(&self.metrics)
                .counter("partial_state_emits", partition),
            partition,
        };
        let schema = self.schema();
        let out = stream::once(run.go()).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, out)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One partition's execution.
struct Run {
    state: GroupingState,
    input: SendableRecordBatchStream,
    agg: Arc<dyn ExecutionPlan>,
    aggr: Vec<Arc<AggregateFunctionExpr>>,
    context: Arc<TaskContext>,
    metrics: BaselineMetrics,
    /// Partitions whose keys were mostly distinct, handed to DataFusion's hash aggregation.
    handed_over: Count,
    /// Partial states emitted at [`MAX_GROUPS`] (memory bound), besides the last.
    state_emits: Count,
    partition: usize,
}

type BatchStream = futures::stream::BoxStream<'static, DfResult<RecordBatch>>;

impl Run {
    /// Consumes the input; returns the partial state batches (and, for mostly distinct keys,
    /// the stream of DataFusion's aggregation over the rest of the input).
    fn go(self) -> impl Future<Output = DfResult<BatchStream>> + Send + 'static {
        let Run {
            mut state,
            mut input,
            agg,
            aggr,
            context,
            metrics,
            handed_over,
            state_emits,
            partition,
        } = self;
        async move {
            // What this partition holds (its groups, accumulators and the partial states
            // emitted so far) is reserved from the query memory pool.
            let reservation = MemoryConsumer::new(format!("InternedAggregateExec[{partition}]"))
                .register(context.memory_pool());
            let mut out: Vec<RecordBatch> = Vec::new();
            let mut emitted = 0usize;
            let mut rows = 0usize;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let timer = metrics.elapsed_compute().timer();
                state.update(&batch)?;
                reservation.try_resize(emitted + state.size())?;
                rows += batch.num_rows();
                if (PROBE_MIN_ROWS..=PROBE_ROWS).contains(&rows) && state.groups.len() * 2 > rows {
                    // Mostly distinct keys: DataFusion's hash aggregation (which can skip
                    // partial aggregation altogether) takes the rest of the input.
                    out.push(state.emit(None)?);
                    handed_over.add(1);
                    timer.done();
                    let rest = Arc::new(OnceExec::new(input));
                    let tail = agg
                        .replace_children(
                            vec![rest],
                            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
                        )?
                        .execute(0, context)?;
                    metrics.record_output(out.iter().map(|b| b.num_rows()).sum());
                    return Ok(stream::iter(out.into_iter().map(Ok)).chain(tail).boxed());
                }
                if state.groups.len() >= MAX_GROUPS {
                    let piece = state.emit(Some(accumulators(&aggr)?))?;
                    emitted += piece.get_array_memory_size();
                    out.push(piece);
                    state_emits.add(1);
                    reservation.try_resize(emitted + state.size())?;
                }
                timer.done();
            }
            out.push(state.emit(None)?);
            metrics.record_output(out.iter().map(|b| b.num_rows()).sum());
            Ok(stream::iter(out.into_iter().map(Ok)).boxed())
        }
    }
}

/// The accumulating state of one partition.
struct GroupingState {
    keys: Vec<KeyColumn>,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    groups: GroupIndex,
    schema: SchemaRef,
    /// Per key column, the ids of the current batch's rows.
    ids: Vec<Vec<u32>>,
    indices: Vec<usize>,
}

impl GroupingState {
    /// Bytes held: accumulators, the group index and the interned key values (the hash
    /// maps' entries estimated from their capacity).
    fn size(&self) -> usize {
        let accumulators: usize = self.accumulators.iter().map(|a| a.size()).sum();
        let keys: usize = self.keys.iter().map(KeyColumn::size).sum();
        let g = &self.groups;
        accumulators
            + keys
            + (g.keys.capacity() + g.by_id.capacity()) * 4
            + g.by_ids.capacity() * (16 + 4 + 1)
    }

    fn update(&mut self, batch: &RecordBatch) -> DfResult<()> {
        let n = batch.num_rows();
        self.ids.resize_with(self.keys.len(), Vec::new);
        for ((key, expr), ids) in self.keys.iter_mut().zip(&self.key_exprs).zip(&mut self.ids) {
            let array = expr.evaluate(batch)?.into_array(n)?;
            key.intern(&array, ids)?;
        }
        self.groups.assign(&self.ids, n, &mut self.indices);
        let total = self.groups.len();
        for ((acc, args), filter) in self
            .accumulators
            .iter_mut()
            .zip(&self.args)
            .zip(&self.filters)
        {
            let values = args
                .iter()
                .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
                .collect::<DfResult<Vec<ArrayRef>>>()?;
            let filter = match filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(n)?),
                None => None,
            };
            let filter: Option<&BooleanArray> = filter.as_ref().map(|f| f.as_boolean());
            acc.update_batch(&values, &self.indices, filter, total)?;
        }
        Ok(())
    }

    /// The partial state of every group so far, as one batch; starts afresh with `fresh`
    /// accumulators when given (more input follows).
    fn emit(&mut self, fresh: Option<Vec<Box<dyn GroupsAccumulator>>>) -> DfResult<RecordBatch> {
        if self.groups.len() == 0 {
            // No group: an empty state of the schema's width. Accumulators cannot always
            // say it (DataFusion's adapter, behind `COUNT(DISTINCT …)`, derives its state
            // columns from its groups and returns none).
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (k, key) in self.keys.iter().enumerate() {
            let values = self
                .groups
                .keys
                .iter()
                .skip(k)
                .step_by(self.keys.len().max(1))
                .map(|&id| key.values[id as usize].clone());
            let want = self.schema.field(k).data_type();
            let array = ScalarValue::iter_to_array(values)?;
            columns.push(if array.data_type() == want {
                array
            } else {
                arrow::compute::cast(&array, want)?
            });
        }
        for acc in &mut self.accumulators {
            columns.extend(acc.state(EmitTo::All)?);
        }
        if let Some(fresh) = fresh {
            self.accumulators = fresh;
            self.groups = GroupIndex::default();
            for key in &mut self.keys {
                key.reset();
            }
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// Key ids of each group, and the lookup from ids to groups.
#[derive(Default)]
struct GroupIndex {
    /// `keys[g * k + c]`: the id of key column `c` in group `g`.
    keys: Vec<u32>,
    /// One key column: the group of each id (`u32::MAX`: none yet).
    by_id: Vec<u32>,
    /// Several key columns: the group of each combination of ids, 32 bits per column.
    by_ids: foldhash::HashMap<u128, u32>,
    count: usize,
}

impl GroupIndex {
    fn len(&self) -> usize {
        self.count
    }

    fn new_group(&mut self, ids: impl Iterator<Item = u32>) -> u32 {
        self.keys.extend(ids);
        self.count += 1;
        (self.count - 1) as u32
    }

    fn assign(&mut self, ids: &[Vec<u32>], n: usize, out: &mut Vec<usize>) {
        out.clear();
        out.reserve(n);
        if let [only] = ids {
            for &id in &only[..n] {
                let slot = id as usize;
                if slot >= self.by_id.len() {
                    self.by_id.resize(slot + 1, u32::MAX);
                }
                let mut g = self.by_id[slot];
                if g == u32::MAX {
                    g = self.new_group(std::iter::once(id));
                    self.by_id[slot] = g;
                }
                out.push(g as usize);
            }
            return;
        }
        let mut last = (u128::MAX, 0u32);
        for r in 0..n {
            let packed = ids
                .iter()
                .fold(0u128, |acc, col| (acc << 32) | col[r] as u128);
            if packed != last.0 {
                let g = match self.by_ids.get(&packed) {
                    Some(&g) => g,
                    None => {
                        let g = self.new_group(ids.iter().map(|col| col[r]));
                        self.by_ids.insert(packed, g);
                        g
                    }
                };
                last = (packed, g);
            }
            out.push(last.1 as usize);
        }
    }
}

/// One key column's ids: 0 is null, values are numbered as first seen.
struct KeyColumn {
    data_type: DataType,
    /// The value of each id.
    values: Vec<ScalarValue>,
    /// Strings: the id of each value.
    strings: foldhash::HashMap<Box<[u8]>, u32>,
    /// Fixed-width values (their bits): the id of each value.
    bits: foldhash::HashMap<u64, u32>,
    /// String views: the id of each raw view seen in the current batch.
    views: foldhash::HashMap<u128, u32>,
    /// Heap bytes of `values` and of the keys of `strings`.
    value_bytes: usize,
}

impl KeyColumn {
    fn new(data_type: DataType) -> Self {
        let mut key = Self {
            values: Vec::new(),
            strings: Default::default(),
            bits: Default::default(),
            views: Default::default(),
            value_bytes: 0,
            data_type,
        };
        key.reset();
        key
    }

    fn reset(&mut self) {
        self.values.clear();
        self.values
            .push(ScalarValue::try_from(&self.data_type).unwrap_or(ScalarValue::Null));
        self.strings.clear();
        self.bits.clear();
        self.views.clear();
        self.value_bytes = 0;
    }

    /// Bytes held (hash map entries estimated from their capacity).
    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<ScalarValue>()
            + self.value_bytes
            + self.strings.capacity() * (16 + 4 + 1)
            + self.bits.capacity() * (8 + 4 + 1)
            + self.views.capacity() * (16 + 4 + 1)
    }

    fn next_id(&mut self, array: &dyn Array, row: usize) -> DfResult<u32> {
        let value = ScalarValue::try_from_array(array, row)?;
        self.value_bytes += value
            .size()
            .saturating_sub(std::mem::size_of::<ScalarValue>());
        self.values.push(value);
        Ok((self.values.len() - 1) as u32)
    }

    fn string_id(&mut self, bytes: &[u8], array: &dyn Array, row: usize) -> DfResult<u32> {
        if let Some(&id) = self.strings.get(bytes) {
            return Ok(id);
        }
        let id = self.next_id(array, row)?;
        self.value_bytes += bytes.len();
        self.strings.insert(bytes.into(), id);
        Ok(id)
    }

    /// Writes the id of each row of `array` to `ids`.
    fn intern(&mut self, array: &ArrayRef, ids: &mut Vec<u32>) -> DfResult<()> {
        ids.clear();
        let n = array.len();
        let nulls = array.logical_nulls();
        let valid = |r: usize| nulls.as_ref().is_none_or(|x| x.is_valid(r));
        match array.data_type() {
            DataType::Utf8View => {
                let a = array.as_string_view();
                // Views of long strings point into this batch's buffers: the caches are per
                // batch. A direct-mapped cache of recent views answers most rows without a
                // hash table probe.
                self.views.clear();
                let mut recent = [(u128::MAX, 0u32); RECENT_VIEWS];
                let raw = a.views();
                for r in 0..n {
                    if !valid(r) {
                        ids.push(0);
                        continue;
                    }
                    let v = raw[r];
                    let slot = ((((v >> 64) as u64) ^ (v as u64))
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        >> 56) as usize
                        % RECENT_VIEWS;
                    let (seen, id) = recent[slot];
                    if seen == v {
                        ids.push(id);
                        continue;
                    }
                    let id = match self.views.get(&v) {
                        Some(&id) => id,
                        None => {
                            let id = self.string_id(a.value(r).as_bytes(), array, r)?;
                            self.views.insert(v, id);
                            id
                        }
                    };
                    recent[slot] = (v, id);
                    ids.push(id);
                }
            }
            DataType::Utf8 | DataType::LargeUtf8 => {
                let (small, large) = (array.as_string_opt::<i32>(), array.as_string_opt::<i64>());
                let value = |r: usize| match (small, large) {
                    (Some(a), _) => a.value(r),
                    (_, Some(a)) => a.value(r),
                    _ => "",
                };
                let mut last: Option<(&str, u32)> = None;
                for r in 0..n {
                    if !valid(r) {
                        ids.push(0);
                        continue;
                    }
                    let s = value(r);
                    let id = match last {
                        Some((l, id)) if l == s => id,
                        _ => {
                            let id = self.string_id(s.as_bytes(), array, r)?;
                            last = Some((s, id));
                            id
                        }
                    };
                    ids.push(id);
                }
            }
            DataType::Boolean => {
                let a = array.as_boolean();
                for r in 0..n {
                    ids.push(if !valid(r) {
                        0
                    } else {
                        let bits = a.value(r) as u64;
                        self.bits_id(bits, array, r)?
                    });
                }
            }
            t => {
                let width = t
                    .primitive_width()
                    .filter(|w| *w <= 8)
                    .ok_or_else(|| internal_datafusion_err!("unsupported group key type {t}"))?;
                let data = array.to_data();
                let bytes = &data.buffers()[0].as_slice()[data.offset() * width..];
                // A direct-mapped cache of recent values answers most rows of a key with few
                // values (status codes, heatmap buckets) without a hash table probe.
                let mut recent = [(0u64, u32::MAX); RECENT_VIEWS];
                for r in 0..n {
                    if !valid(r) {
                        ids.push(0);
                        continue;
                    }
                    let mut buf = [0u8; 8];
                    buf[..width].copy_from_slice(&bytes[r * width..(r + 1) * width]);
                    let bits = u64::from_le_bytes(buf);
                    let slot =
                        (bits.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % RECENT_VIEWS;
                    let (seen, id) = recent[slot];
                    if seen == bits && id != u32::MAX {
                        ids.push(id);
                        continue;
                    }
                    let id = self.bits_id(bits, array, r)?;
                    recent[slot] = (bits, id);
                    ids.push(id);
                }
            }
        }
        Ok(())
    }

    fn bits_id(&mut self, bits: u64, array: &dyn Array, row: usize) -> DfResult<u32> {
        if let Some(&id) = self.bits.get(&bits) {
            return Ok(id);
        }
        let id = self.next_id(array, row)?;
        self.bits.insert(bits, id);
        Ok(id)
    }
}

/// A plan node that yields an already started stream, once: the rest of an input handed to
/// DataFusion's aggregation.
struct OnceExec {
    stream: Mutex<Option<SendableRecordBatchStream>>,
    cache: Arc<PlanProperties>,
}

impl OnceExec {
    fn new(stream: SendableRecordBatchStream) -> Self {
        let cache = PlanProperties::new(
            EquivalenceProperties::new(stream.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            stream: Mutex::new(Some(stream)),
            cache: Arc::new(cache),
        }
    }
}

impl fmt::Debug for OnceExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnceExec")
    }
}

impl DisplayAs for OnceExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("OnceExec")
    }
}

impl ExecutionPlan for OnceExec {
    fn name(&self) -> &'static str {
        "OnceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, _: usize, _: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        self.stream
            .lock()
            .map_err(|_| internal_datafusion_err!("OnceExec lock poisoned"))?
            .take()
            .ok_or_else(|| internal_datafusion_err!("OnceExec executed twice"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Float64Array, Int64Array, StringArray, StringViewArray,
        TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    const SERVICES: [Option<&str>; 8] = [
        Some("checkout"),
        Some("cart"),
        Some("a-service-name-longer-than-twelve-bytes"),
        Some("search"),
        None,
        Some("payments-api-with-a-long-name"),
        Some("auth"),
        Some("cart"),
    ];

    fn batch(schema: &SchemaRef, from: usize, n: usize) -> RecordBatch {
        let rows = from..from + n;
        let svc: Vec<Option<&str>> = rows
            .clone()
            .map(|i| SERVICES[(i * 7 + i / 3) % 8])
            .collect();
        let region: Vec<Option<&str>> = rows
            .clone()
            .map(|i| [Some("eu"), Some("us"), None][i % 3])
            .collect();
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(StringArray::from(svc.clone())),
                Arc::new(StringViewArray::from(svc)),
                Arc::new(StringArray::from(region)),
                Arc::new(Int64Array::from(
                    rows.clone()
                        .map(|i| (i % 11 != 0).then_some([200, 200, 404, 500][i % 4]))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from(
                    rows.clone()
                        .map(|i| (i % 13 != 0).then_some(i % 5 == 0))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        rows.clone()
                            .map(|i| 1_700_000_000_000_000 + i as i64 * 1_000_003)
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(
                    rows.clone()
                        .map(|i| ((i * 37) % 1000) as f64 / 8.0)
                        .collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.clone()
                        .map(|i| format!("user-{i}"))
                        .collect::<Vec<_>>(),
                )),
                // Few values for the first rows of each partition, then distinct.
                Arc::new(Int64Array::from(
                    rows.map(|i| {
                        if i % 400_000 < 70_000 {
                            i as i64 % 10
                        } else {
                            i as i64
                        }
                    })
                    .collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn context(interned: bool) -> SessionContext {
        context_with_pool(interned, None)
    }

    /// [`context`] whose queries share a memory pool of `pool` bytes, if given.
    fn context_with_pool(interned: bool, pool: Option<usize>) -> SessionContext {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("svc", DataType::Utf8, true),
            Field::new("svc_view", DataType::Utf8View, true),
            Field::new("region", DataType::Utf8, true),
            Field::new("status", DataType::Int64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("dur", DataType::Float64, false),
            Field::new("uid", DataType::Utf8, false),
            Field::new("mid", DataType::Int64, false),
        ]));
        // Two partitions: one of 400k rows in 8 Ki batches (crosses MAX_GROUPS on `mid`),
        // one small.
        let big: Vec<RecordBatch> = (0..400_000)
            .step_by(8192)
            .map(|from| batch(&schema, from, 8192.min(400_000 - from)))
            .collect();
        let small = vec![batch(&schema, 400_000, 5000), batch(&schema, 405_000, 3)];
        let table = MemTable::try_new(Arc::clone(&schema), vec![big, small]).unwrap();
        let mut runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new();
        if let Some(bytes) = pool {
            runtime = runtime.with_memory_limit(bytes, 1.0);
        }
        let mut state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_runtime_env(runtime.build_arc().unwrap())
            .with_default_features();
        if interned {
            state = state.with_physical_optimizer_rule(Arc::new(InternedGroupingRule));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    /// The answer and the plan, shown with its metrics after the run.
    async fn run(ctx: &SessionContext, sql: &str) -> (RecordBatch, String) {
        let df = ctx.sql(sql).await.unwrap();
        let schema = Arc::new(df.schema().as_arrow().clone());
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await.unwrap();
        let batches = datafusion::physical_plan::collect(Arc::clone(&plan), task)
            .await
            .unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string()
            + &metrics_of(&plan);
        (
            arrow::compute::concat_batches(&schema, &batches).unwrap(),
            shown,
        )
    }

    /// `handed_to_hash_aggregation` and `partial_state_emits` of the plan's interned grouping.
    fn metrics_of(plan: &Arc<dyn ExecutionPlan>) -> String {
        let mut out = String::new();
        if plan.is::<InternedAggregateExec>()
            && let Some(m) = plan.metrics()
        {
            for name in ["handed_to_hash_aggregation", "partial_state_emits"] {
                out += &format!(
                    " {name}={}",
                    m.sum_by_name(name).map_or(0, |v| v.as_usize())
                );
            }
        }
        plan.children()
            .into_iter()
            .map(metrics_of)
            .fold(out, |a, b| a + &b)
    }

    /// A partition with no rows (one Parquet row group split over two partitions leaves the
    /// other empty) emits an empty partial state of the right width, whatever the
    /// accumulators: `COUNT(DISTINCT …)` goes through DataFusion's adapter, which cannot tell
    /// its state's width without a group.
    #[tokio::test]
    async fn an_empty_partition_emits_an_empty_state_of_every_aggregate() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("tier", DataType::Utf8, true),
            Field::new("latency", DataType::Int64, true),
            Field::new("buyer", DataType::Utf8, true),
        ]));
        let rows = |from: i64, n: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(
                        (from..from + n)
                            .map(|i| ["gold", "silver", "bronze"][(i % 3) as usize])
                            .collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from((from..from + n).collect::<Vec<_>>())),
                    Arc::new(StringArray::from(
                        (from..from + n)
                            .map(|i| format!("u{}", i % 97))
                            .collect::<Vec<_>>(),
                    )),
                ],
            )
            .unwrap()
        };
        let sql = "SELECT tier, COUNT(*) AS n, SUM(latency) AS s, COUNT(DISTINCT buyer) AS b \
                   FROM m GROUP BY tier ORDER BY tier";
        let mut answers = Vec::new();
        for interned in [true, false] {
            let mut state = SessionStateBuilder::new()
                .with_config(SessionConfig::new().with_target_partitions(2))
                .with_default_features();
            if interned {
                state = state.with_physical_optimizer_rule(Arc::new(InternedGroupingRule));
            }
            let ctx = SessionContext::new_with_state(state.build());
            // Two partitions, the second without rows.
            let table = MemTable::try_new(
                Arc::clone(&schema),
                vec![vec![rows(0, 5000), rows(5000, 5000)], vec![]],
            )
            .unwrap();
            ctx.register_table("m", Arc::new(table)).unwrap();
            let (got, plan) = run(&ctx, sql).await;
            assert_eq!(plan.contains("InternedAggregateExec"), interned, "{plan}");
            answers.push(got);
        }
        assert_eq!(answers[0], answers[1]);
        let n = answers[0]
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(n.iter().flatten().sum::<i64>(), 10_000);
    }

    /// The interned grouping reserves what it holds from the query memory pool: a small pool
    /// refuses a grouping of 400k groups (naming the operator), a large one answers it.
    #[tokio::test]
    async fn interned_grouping_reserves_from_the_memory_pool() {
        let sql = "SELECT mid, svc, COUNT(*) AS n FROM t GROUP BY mid, svc";
        let small = context_with_pool(true, Some(1 << 20));
        let err = small.sql(sql).await.unwrap().collect().await.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err.find_root(),
                datafusion::error::DataFusionError::ResourcesExhausted(_)
            ),
            "{msg}"
        );
        assert!(msg.contains("InternedAggregateExec"), "{msg}");
        let large = context_with_pool(true, Some(1 << 30));
        let (answer, plan) = run(&large, sql).await;
        assert!(plan.contains("InternedAggregateExec"), "{plan}");
        let (want, _) = run(&context(false), sql).await;
        assert_eq!(answer.num_rows(), want.num_rows());
    }

    #[tokio::test]
    async fn answers_equal_datafusions_own_for_every_kind_of_key_and_aggregate() {
        let (with, without) = (context(true), context(false));
        // (query, whether interned grouping applies to it)
        let queries = [
            (
                "SELECT svc, COUNT(*) AS n, SUM(dur), AVG(dur), MIN(ts), MAX(status) FROM t \
                 GROUP BY svc ORDER BY svc",
                true,
            ),
            (
                "SELECT svc_view, COUNT(*) AS n, COUNT(status), AVG(dur) FROM t \
                 GROUP BY svc_view ORDER BY svc_view",
                true,
            ),
            (
                "SELECT region, svc_view, status, ok, COUNT(*) AS n, AVG(dur) FROM t \
                 GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 5 ORDER BY 1, 2, 3, 4",
                true,
            ),
            (
                "SELECT svc, percentile_cont(dur, 0.9) AS p90, COUNT(DISTINCT status) AS s \
                 FROM t GROUP BY svc ORDER BY svc",
                true,
            ),
            (
                "SELECT svc, COUNT(*) FILTER (WHERE status >= 500) AS errors, \
                 SUM(CASE WHEN ok THEN 1 ELSE 0 END) AS oks FROM t GROUP BY svc ORDER BY svc",
                true,
            ),
            (
                "SELECT date_trunc('minute', ts) AS m, COUNT(*) AS n FROM t GROUP BY 1 ORDER BY 1",
                true,
            ),
            // Mostly distinct keys: handed to DataFusion after the probe.
            ("SELECT COUNT(DISTINCT uid) AS users FROM t", true),
            (
                "SELECT COUNT(*) AS groups, SUM(n) AS rows FROM \
                 (SELECT uid, COUNT(*) AS n FROM t GROUP BY uid)",
                true,
            ),
            // Few values first, then distinct: the partial state is emitted at MAX_GROUPS.
            (
                "SELECT COUNT(*) AS groups, SUM(n) AS rows, MAX(n) AS most FROM \
                 (SELECT mid, COUNT(*) AS n FROM t GROUP BY mid)",
                true,
            ),
            // No rows at all.
            (
                "SELECT svc, COUNT(*) AS n FROM t WHERE status = 999 GROUP BY svc",
                true,
            ),
            // Float keys stay with DataFusion.
            (
                "SELECT dur, COUNT(*) AS n FROM t GROUP BY dur ORDER BY n DESC, dur LIMIT 3",
                false,
            ),
        ];
        let mut plans = Vec::new();
        for (sql, applies) in queries {
            let (got, plan) = run(&with, sql).await;
            plans.push(plan.clone());
            let (want, reference) = run(&without, sql).await;
            assert!(!reference.contains("InternedAggregateExec"), "{reference}");
            assert_eq!(
                plan.contains("InternedAggregateExec"),
                applies,
                "{sql}\n{plan}"
            );
            assert_eq!(got, want, "{sql}");
            assert!(got.num_rows() > 0 || sql.contains("999"), "{sql}");
        }
        // Each path ran: the distinct user ids were handed over (in the big partition at
        // least), `mid` emitted its state at MAX_GROUPS, and low-cardinality keys did neither.
        assert!(
            plans[6].contains("handed_to_hash_aggregation=1")
                || plans[6].contains("handed_to_hash_aggregation=2"),
            "{}",
            plans[6]
        );
        assert!(plans[8].contains("partial_state_emits=1"), "{}", plans[8]);
        assert!(
            plans[8].contains("handed_to_hash_aggregation=0"),
            "{}",
            plans[8]
        );
        assert!(
            plans[0].contains("handed_to_hash_aggregation=0 partial_state_emits=0"),
            "{}",
            plans[0]
        );
        // The figures themselves, not only their agreement.
        let (b, _) = run(&with, "SELECT COUNT(*) AS g, SUM(n) AS r FROM (SELECT mid, COUNT(*) AS n FROM t GROUP BY mid)").await;
        let g = b
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        let r = b
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        assert_eq!(r, 405_003);
        // 10 values in the first 70k rows of each partition, then one per row.
        assert_eq!(g, 10 + (400_000 - 70_000));
    }
}

//! One partition's execution: the input fed to the grouping state, mostly distinct keys
//! detected in the first rows and handed to DataFusion's hash aggregation, memory reserved
//! from the query pool, and the partial state emitted at [`MAX_GROUPS`] groups.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::common::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::metrics::{BaselineMetrics, Count};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::{StreamExt, stream};

use super::MAX_GROUPS;
use super::rest_of_input::RestOfInputExec;
use super::state::{GroupingState, accumulators};

/// Rows over which mostly distinct keys are detected and handed to DataFusion.
const PROBE_ROWS: usize = 64 * 1024;

/// Fewest rows the probe judges on.
const PROBE_MIN_ROWS: usize = 8 * 1024;

/// One partition's execution.
pub(super) struct Run {
    pub(super) state: GroupingState,
    pub(super) input: SendableRecordBatchStream,
    pub(super) agg: Arc<dyn ExecutionPlan>,
    pub(super) aggr: Vec<Arc<AggregateFunctionExpr>>,
    pub(super) context: Arc<TaskContext>,
    pub(super) metrics: BaselineMetrics,
    /// Partitions whose keys were mostly distinct, handed to DataFusion's hash aggregation.
    pub(super) handed_over: Count,
    /// Partial states emitted at [`MAX_GROUPS`] (memory bound), besides the last.
    pub(super) state_emits: Count,
    pub(super) partition: usize,
}

type BatchStream = futures::stream::BoxStream<'static, DfResult<RecordBatch>>;

impl Run {
    /// Consumes the input; returns the partial state batches (and, for mostly distinct keys,
    /// the stream of DataFusion's aggregation over the rest of the input).
    pub(super) fn go(self) -> impl Future<Output = DfResult<BatchStream>> + Send + 'static {
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
                    let rest = Arc::new(RestOfInputExec::new(input));
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

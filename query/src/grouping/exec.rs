//! [`InternedAggregateExec`]: the plan node of the interned grouping, and when it can
//! replace a partial `AggregateExec`.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode,
    Partitioning, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::{TryStreamExt, stream};

use super::MAX_KEYS;
use super::group_index::GroupIndex;
use super::key_column::KeyColumn;
use super::run::Run;
use super::state::{GroupingState, accumulators};

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

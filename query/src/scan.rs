//! `DatasetScanExec`: a dataset's committed segments and hot tail, read as one scan.
//!
//! It is DataFusion's `UnionExec` of the Parquet and memory sources in every respect
//! (partitions, properties, statistics, filter and limit pushdown, execution) but one: a
//! projection above it is not pushed below it. DataFusion 55 pushes a projection into each
//! input of a union and rebuilds the union's properties from them, which loses equivalences
//! the projection made (`SELECT … seq AS b, seq AS c … ORDER BY c LIMIT 10` planned a TopK
//! on `b` under a merge on `c`, and the plan's sanity check refused the query with 400).
//! Keeping the projection above the scan keeps them.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result as DfResult, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};

/// The union of a dataset's sources; see the module docs.
#[derive(Debug)]
pub struct DatasetScanExec {
    union: Arc<dyn ExecutionPlan>,
}

impl DatasetScanExec {
    /// The scan of `inputs` (at least two).
    pub fn try_new(inputs: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            union: UnionExec::try_new(inputs)?,
        }))
    }

    fn wrap(union: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        Arc::new(Self { union })
    }
}

impl DisplayAs for DatasetScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "DatasetScanExec: segments and hot tail")
            }
            DisplayFormatType::TreeRender => Ok(()),
        }
    }
}

impl ExecutionPlan for DatasetScanExec {
    fn name(&self) -> &'static str {
        "DatasetScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.union.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.union.maintains_input_order()
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.union.benefits_from_input_partitioning()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.union.children()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        self.union.apply_expressions(f)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Self::wrap(
            Arc::clone(&self.union).replace_children(children, options)?,
        ))
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
        self.union.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.union.metrics()
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.union.child_stats_requests(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        self.union.statistics_from_inputs(input_stats, args)
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        self.union.cardinality_effect()
    }

    fn supports_limit_pushdown(&self) -> bool {
        self.union.supports_limit_pushdown()
    }

    fn gather_filters_for_pushdown(
        &self,
        phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        config: &ConfigOptions,
    ) -> DfResult<FilterDescription> {
        self.union
            .gather_filters_for_pushdown(phase, parent_filters, config)
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        config: &ConfigOptions,
    ) -> DfResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let mut done =
            self.union
                .handle_child_pushdown_result(phase, child_pushdown_result, config)?;
        done.updated_node = done.updated_node.map(Self::wrap);
        Ok(done)
    }
}

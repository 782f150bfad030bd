//! [`InternedGroupingRule`]: the physical optimizer rule that puts [`InternedAggregateExec`]
//! in place of partial `AggregateExec`s.

use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use super::InternedAggregateExec;

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

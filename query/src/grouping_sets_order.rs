//! A physical optimizer rule that keeps the `ORDER BY` of a `ROLLUP`, `CUBE` or `GROUPING SETS`
//! query on keys its input holds constant.
//!
//! DataFusion 55's `AggregateExec` projects its input's equivalence properties through the
//! grouping expressions, grouping sets included. A key that is constant in the input (`WHERE
//! ns = 'default'`, or a `CASE` the simplifier folded to a literal) is then called constant in
//! the output too, although the subtotal rows of a grouping set make it NULL. The sort
//! enforcement trusts that: it drops the key from the `ORDER BY` (or the whole sort), and the
//! subtotal rows come in any order (found by the differential check against DuckDB: seed
//! 20261202, flushed #3520 through a folded `CASE`; seed 20261204, mixed #667 through `WHERE
//! "k8s.namespace" = 'default'` and `CUBE`). PostgreSQL had the same defect with equivalence
//! classes under grouping sets.
//!
//! The rule puts a [`GroupingSetBarrierExec`] above every aggregation with grouping sets (its
//! partial stage): a pass-through that passes the rows and their partitioning on but claims
//! no ordering and no equivalences, so nothing above it believes a grouping key constant. It
//! runs first, before DataFusion's rules plan distribution and sorts.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct GroupingSetsOrder;

fn has_grouping_sets(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<AggregateExec>()
        .is_some_and(|a| a.group_expr().has_grouping_set())
}

impl PhysicalOptimizerRule for GroupingSetsOrder {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Wrapping a node's children (not the node) keeps the rule idempotent: a child that is
        // already a barrier is not an aggregation.
        let plan = plan
            .transform_up(|node| {
                if !node.children().into_iter().any(has_grouping_sets) {
                    return Ok(Transformed::no(node));
                }
                let children = node
                    .children()
                    .into_iter()
                    .map(|c| {
                        if has_grouping_sets(c) {
                            Arc::new(GroupingSetBarrierExec::new(Arc::clone(c)))
                                as Arc<dyn ExecutionPlan>
                        } else {
                            Arc::clone(c)
                        }
                    })
                    .collect();
                Ok(Transformed::yes(node.replace_children(
                    children,
                    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
                )?))
            })
            .data()?;
        Ok(if has_grouping_sets(&plan) {
            Arc::new(GroupingSetBarrierExec::new(plan))
        } else {
            plan
        })
    }

    fn name(&self) -> &str {
        "eventide_grouping_sets_order"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input through and forgets its orderings and equivalences (its partitioning
/// stays); see the module documentation.
#[derive(Debug)]
pub struct GroupingSetBarrierExec {
    input: Arc<dyn ExecutionPlan>,
    cache: Arc<PlanProperties>,
}

impl GroupingSetBarrierExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let props = input.properties();
        let cache = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            props.output_partitioning().clone(),
            props.emission_type,
            props.boundedness,
        );
        Self {
            input,
            cache: Arc::new(cache),
        }
    }
}

impl DisplayAs for GroupingSetBarrierExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "GroupingSetBarrierExec")
            }
            DisplayFormatType::TreeRender => write!(f, ""),
        }
    }
}

impl ExecutionPlan for GroupingSetBarrierExec {
    fn name(&self) -> &'static str {
        "GroupingSetBarrierExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        // The rows pass in order, but no sort may be pushed below the barrier, where the
        // grouping keys still look constant.
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(Self::new(input))),
            _ => Err(datafusion::common::internal_datafusion_err!(
                "GroupingSetBarrierExec takes one child"
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
    use datafusion::prelude::SessionContext;

    use super::GroupingSetsOrder;

    fn ctx(with_rule: bool) -> SessionContext {
        let mut rules = PhysicalOptimizer::new().rules;
        if with_rule {
            rules.insert(0, Arc::new(GroupingSetsOrder));
        }
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let schema = Arc::new(Schema::new(vec![
            Field::new("ns", DataType::Utf8, true),
            Field::new("j", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "b", "a", "b", "a"])),
                Arc::new(Int64Array::from(vec![1, 2, 1, 3, 2, 1])),
            ],
        )
        .unwrap();
        let t = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(t)).unwrap();
        ctx
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    async fn plan(ctx: &SessionContext, sql: &str) -> String {
        rows(ctx, &format!("EXPLAIN {sql}")).await.join("\n")
    }

    /// `ns` is constant under the filter, but NULL in the grand-total row: `ORDER BY ns DESC`
    /// (nulls first) must put that row first. DataFusion 55 alone sorts each partition by `j`
    /// only and then merges them as if sorted by `ns, j`.
    #[tokio::test]
    async fn a_key_constant_in_the_input_is_still_sorted_after_rollup() {
        let sql = "SELECT ns, j, count(*) AS n FROM t WHERE ns = 'a' \
                   GROUP BY ROLLUP (ns, j) ORDER BY ns DESC, j ASC";
        let without = plan(&ctx(false), sql).await;
        assert!(
            !without.contains("SortExec: expr=[ns@0 DESC"),
            "DataFusion 55 still drops the constant key (the rule may be obsolete):\n{without}"
        );
        let ctx = ctx(true);
        let with = plan(&ctx, sql).await;
        assert!(with.contains("SortExec: expr=[ns@0 DESC"), "{with}");
        assert_eq!(
            rows(&ctx, sql).await,
            vec![
                "+----+---+---+",
                "| ns | j | n |",
                "+----+---+---+",
                "|    |   | 4 |",
                "| a  | 1 | 2 |",
                "| a  | 2 | 1 |",
                "| a  | 3 | 1 |",
                "| a  |   | 4 |",
                "+----+---+---+",
            ]
        );
    }

    /// The same with CUBE and the constant key second in the ORDER BY (the shape of seed
    /// 20261204, mixed #667): within each `j`, the row where `ns` is NULL comes first.
    #[tokio::test]
    async fn a_key_constant_in_the_input_is_still_sorted_after_cube() {
        let sql = "SELECT ns, j, count(*) AS n FROM t WHERE ns = 'b' \
                   GROUP BY CUBE (ns, j) ORDER BY j ASC NULLS FIRST, ns DESC";
        let without = plan(&ctx(false), sql).await;
        assert!(
            !without.contains("SortExec: expr=[j@1 ASC, ns@0 DESC]"),
            "DataFusion 55 still drops the constant key (the rule may be obsolete):\n{without}"
        );
        let ctx = ctx(true);
        let with = plan(&ctx, sql).await;
        assert!(
            with.contains("SortExec: expr=[j@1 ASC, ns@0 DESC]"),
            "{with}"
        );
        assert_eq!(
            rows(&ctx, sql).await,
            vec![
                "+----+---+---+",
                "| ns | j | n |",
                "+----+---+---+",
                "|    |   | 2 |",
                "| b  |   | 2 |",
                "|    | 1 | 1 |",
                "| b  | 1 | 1 |",
                "|    | 2 | 1 |",
                "| b  | 2 | 1 |",
                "+----+---+---+",
            ]
        );
    }
}

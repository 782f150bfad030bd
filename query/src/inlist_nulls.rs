//! An analyzer rule that keeps NULLs right where DataFusion 55's expression simplifier folds
//! two IN lists of one expression into a constant.
//!
//! The simplifier merges `e NOT IN (A) OR e NOT IN (B)` into `e NOT IN (A ∩ B)` and, when the
//! lists share nothing, into `true`; likewise `e IN (A) AND e IN (B)` (and `e IN (A) AND
//! e NOT IN (B)`) into `false` when nothing is left. Both constants are wrong when `e` is NULL:
//! SQL answers NULL there, so `WHERE ns NOT IN ('a') OR ns NOT IN ('b')` counted every row,
//! those without `ns` too (found by the differential check against DuckDB, seed 20261202,
//! flushed #2989). This rule runs before the optimizer and replaces exactly those pairs with
//! their three-valued answer: `e IS NOT NULL OR NULL` (true, or NULL for a NULL `e`) and
//! `e IS NULL AND NULL` (false, or NULL). Pairs whose merged list is not empty are left to
//! the simplifier, which merges them correctly.

use std::collections::HashSet;

use datafusion::common::Result;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, lit};
use datafusion::optimizer::AnalyzerRule;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct InListNulls;

impl AnalyzerRule for InListNulls {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| p.map_expressions(|e| e.transform_up(rewrite)))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "eventide_inlist_nulls"
    }
}

/// What the simplifier would fold the pair `l op r` into, when it folds it into a constant.
fn folds_to(l: &InList, op: Operator, r: &InList) -> Option<bool> {
    if l.expr != r.expr {
        return None;
    }
    let left: HashSet<&Expr> = l.list.iter().collect();
    let right: HashSet<&Expr> = r.list.iter().collect();
    match (op, l.negated, r.negated) {
        // NOT IN A OR NOT IN B = NOT IN (A ∩ B); NOT IN () = true.
        (Operator::Or, true, true) => left.is_disjoint(&right).then_some(true),
        // IN A AND IN B = IN (A ∩ B); IN () = false.
        (Operator::And, false, false) => left.is_disjoint(&right).then_some(false),
        // IN A AND NOT IN B = IN (A − B).
        (Operator::And, false, true) => left.is_subset(&right).then_some(false),
        (Operator::And, true, false) => right.is_subset(&left).then_some(false),
        _ => None,
    }
}

fn rewrite(e: Expr) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    let (Expr::InList(l), Expr::InList(r)) = (left.as_ref(), right.as_ref()) else {
        return Ok(Transformed::no(e));
    };
    let Some(value) = folds_to(l, *op, r) else {
        return Ok(Transformed::no(e));
    };
    let null = lit(ScalarValue::Boolean(None));
    let subject = l.expr.as_ref().clone();
    Ok(Transformed::yes(if value {
        subject.is_not_null().or(null)
    } else {
        subject.is_null().and(null)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::col;

    fn in_list(items: &[&str], negated: bool) -> InList {
        InList::new(
            Box::new(col("ns")),
            items.iter().map(|s| lit(*s)).collect(),
            negated,
        )
    }

    #[test]
    fn only_pairs_that_fold_to_a_constant_are_rewritten() {
        let (a, b, ab) = (&["a"][..], &["b"][..], &["a", "b"][..]);
        assert_eq!(
            folds_to(&in_list(a, true), Operator::Or, &in_list(b, true)),
            Some(true)
        );
        assert_eq!(
            folds_to(&in_list(ab, true), Operator::Or, &in_list(b, true)),
            None
        );
        assert_eq!(
            folds_to(&in_list(a, false), Operator::And, &in_list(b, false)),
            Some(false)
        );
        assert_eq!(
            folds_to(&in_list(a, false), Operator::And, &in_list(ab, true)),
            Some(false)
        );
        assert_eq!(
            folds_to(&in_list(ab, false), Operator::And, &in_list(a, true)),
            None
        );
        assert_eq!(
            folds_to(&in_list(a, false), Operator::Or, &in_list(b, false)),
            None
        );
    }
}

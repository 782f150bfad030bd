//! The accumulating state of one partition: its key columns interned as ids, its groups and
//! DataFusion's accumulators; and the partial state batches it emits.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

use super::group_index::GroupIndex;
use super::key_column::KeyColumn;

/// DataFusion's accumulators for `aggr`, as its own hash aggregation makes them.
pub(super) fn accumulators(
    aggr: &[Arc<AggregateFunctionExpr>],
) -> DfResult<Vec<Box<dyn GroupsAccumulator>>> {
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

/// The accumulating state of one partition.
pub(super) struct GroupingState {
    pub(super) keys: Vec<KeyColumn>,
    pub(super) key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub(super) args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    pub(super) filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    pub(super) accumulators: Vec<Box<dyn GroupsAccumulator>>,
    pub(super) groups: GroupIndex,
    pub(super) schema: SchemaRef,
    /// Per key column, the ids of the current batch's rows.
    pub(super) ids: Vec<Vec<u32>>,
    pub(super) indices: Vec<usize>,
}

impl GroupingState {
    /// Bytes held: accumulators, the group index and the interned key values (the hash
    /// maps' entries estimated from their capacity).
    pub(super) fn size(&self) -> usize {
        let accumulators: usize = self.accumulators.iter().map(|a| a.size()).sum();
        let keys: usize = self.keys.iter().map(KeyColumn::size).sum();
        let g = &self.groups;
        accumulators
            + keys
            + (g.keys.capacity() + g.by_id.capacity()) * 4
            + g.by_ids.capacity() * (16 + 4 + 1)
    }

    pub(super) fn update(&mut self, batch: &RecordBatch) -> DfResult<()> {
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
    pub(super) fn emit(
        &mut self,
        fresh: Option<Vec<Box<dyn GroupsAccumulator>>>,
    ) -> DfResult<RecordBatch> {
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

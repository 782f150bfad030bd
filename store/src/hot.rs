//! The hot tail: record batches consumed from the log and not yet in a committed segment.
//! Queryable the moment they are added.

use std::sync::Arc;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// Small consecutive batches are merged until they reach this many rows, so a query does not
/// walk thousands of one-request batches.
const COALESCE_ROWS: usize = 16 * 1024;

/// A hot batch, conformed to a prefix of the dataset schema, with the last log offset it holds.
#[derive(Debug, Clone)]
pub struct HotBatch {
    pub batch: RecordBatch,
    /// Memory it holds (see [`batch_bytes`]).
    pub bytes: usize,
    pub first_offset: u64,
    pub last_offset: u64,
}

/// Rearranges `batch` to the columns of `schema` (a superset of its columns), filling absent
/// columns with nulls.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let n = batch.num_rows();
    let batch_schema = batch.schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch_schema.index_of(f.name()) {
            Ok(i) if batch.column(i).data_type() == f.data_type() => batch.column(i).clone(),
            Ok(i) => arrow::compute::cast(batch.column(i), f.data_type())
                .unwrap_or_else(|_| new_null_array(f.data_type(), n)),
            Err(_) => new_null_array(f.data_type(), n),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
}

/// Memory a batch holds, counting each array's own slice of its buffers. Arrays decoded from
/// one Arrow IPC message share the message's buffer, so `get_array_memory_size` would charge
/// the whole message to every column.
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Extends a batch whose columns are a prefix of `schema` with null columns for the rest.
pub fn extend_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let have = batch.num_columns();
    if have == schema.fields().len() {
        return Ok(batch.clone());
    }
    let n = batch.num_rows();
    let mut columns = batch.columns().to_vec();
    for f in schema.fields().iter().skip(have) {
        columns.push(new_null_array(f.data_type(), n));
    }
    RecordBatch::try_new(schema.clone(), columns)
}

/// The hot batches of one dataset, oldest first.
#[derive(Debug, Default)]
pub struct HotTail {
    pub batches: Vec<Arc<HotBatch>>,
    pub rows: usize,
    pub bytes: usize,
    pub since: Option<std::time::Instant>,
}

impl HotTail {
    /// Adds a batch (already conformed to the current schema). Once the small batches at the
    /// end (none of them in a flush: `frozen` batches are) add up to [`COALESCE_ROWS`], they
    /// are merged into one, so every row is copied once, not again at each arrival.
    pub fn push(
        &mut self,
        batch: RecordBatch,
        offset: u64,
        schema: &SchemaRef,
        frozen: usize,
    ) -> Result<(), ArrowError> {
        self.rows += batch.num_rows();
        if self.since.is_none() {
            self.since = Some(std::time::Instant::now());
        }
        let bytes = batch_bytes(&batch);
        self.bytes += bytes;
        self.batches.push(Arc::new(HotBatch {
            batch,
            bytes,
            first_offset: offset,
            last_offset: offset,
        }));
        let mut start = self.batches.len();
        let mut small_rows = 0usize;
        while start > frozen && self.batches[start - 1].batch.num_rows() < COALESCE_ROWS {
            start -= 1;
            small_rows += self.batches[start].batch.num_rows();
        }
        if small_rows >= COALESCE_ROWS && self.batches.len() - start > 1 {
            let run: Vec<RecordBatch> = self.batches[start..]
                .iter()
                .map(|b| extend_to(&b.batch, schema))
                .collect::<Result<_, _>>()?;
            let merged = arrow::compute::concat_batches(schema, &run)?;
            let bytes = batch_bytes(&merged);
            let first_offset = self.batches[start].first_offset;
            let old: usize = self.batches.drain(start..).map(|b| b.bytes).sum();
            self.bytes = self.bytes.saturating_sub(old) + bytes;
            self.batches.push(Arc::new(HotBatch {
                batch: merged,
                bytes,
                first_offset,
                last_offset: offset,
            }));
        }
        Ok(())
    }

    /// Removes the `n` oldest batches (just committed to a segment).
    pub fn drain_front(&mut self, n: usize) {
        for b in self.batches.drain(..n) {
            self.rows -= b.batch.num_rows();
            self.bytes = self.bytes.saturating_sub(b.bytes);
        }
        self.since = if self.batches.is_empty() {
            None
        } else {
            Some(std::time::Instant::now())
        };
    }
}

/// The rows of `batch` at or after `from_us` (column 0 is `timestamp`); all of it when
/// `from_us` is None.
pub fn rows_from(batch: &RecordBatch, from_us: Option<i64>) -> Result<RecordBatch, ArrowError> {
    let Some(from) = from_us else {
        return Ok(batch.clone());
    };
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .ok_or_else(|| ArrowError::SchemaError("timestamp column has the wrong type".into()))?;
    if ts.iter().all(|t| t.is_some_and(|t| t >= from)) {
        return Ok(batch.clone());
    }
    let keep: arrow::array::BooleanArray = ts
        .iter()
        .map(|t| Some(t.is_some_and(|t| t >= from)))
        .collect();
    arrow::compute::filter_record_batch(batch, &keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::Schema;
    use eventide_model::schema::{samplerate_field, timestamp_field};

    #[test]
    fn small_batches_are_merged_once_they_add_up() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![timestamp_field(), samplerate_field()]));
        let rows = COALESCE_ROWS / 4;
        let batch = |t: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(TimestampMicrosecondArray::from(vec![t; rows]).with_timezone("UTC")),
                    Arc::new(Int64Array::from(vec![1; rows])),
                ],
            )
            .unwrap()
        };
        let mut hot = HotTail::default();
        for i in 0..3 {
            hot.push(batch(i), i as u64, &schema, 0).unwrap();
        }
        assert_eq!(hot.batches.len(), 3, "not enough rows to merge yet");
        hot.push(batch(3), 3, &schema, 0).unwrap();
        assert_eq!(hot.batches.len(), 1);
        let merged = &hot.batches[0];
        assert_eq!((merged.first_offset, merged.last_offset), (0, 3));
        assert_eq!(merged.batch.num_rows(), COALESCE_ROWS);
        assert_eq!(hot.rows, COALESCE_ROWS);
        assert_eq!(hot.bytes, merged.bytes);
        // Batches being flushed (frozen) are never merged with new ones.
        for i in 4..8 {
            hot.push(batch(i), i as u64, &schema, 1).unwrap();
        }
        assert_eq!(hot.batches.len(), 2);
        assert_eq!(hot.batches[1].first_offset, 4);
        hot.push(batch(8), 8, &schema, 2).unwrap();
        assert_eq!(hot.batches.len(), 3);
        assert_eq!(hot.rows, 2 * COALESCE_ROWS + rows);
    }
}

//! The hot tail: record batches consumed from the log and not yet in a committed segment.
//! Queryable the moment they are added.
//!
//! A hot batch has the dataset columns its rows use (in dataset order, with the dataset's
//! types), not all of them: sparse data stays as compact as it was sent. Every reader
//! matches its columns by name.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use eventide_model::chunks::{concat_by_name, conform_by_name, fits, present, used_fields};

/// Small consecutive batches are merged until they reach this many rows, so a query does not
/// walk thousands of one-request batches.
const COALESCE_ROWS: usize = 16 * 1024;

/// A hot batch, with the last log offset it holds.
#[derive(Debug, Clone)]
pub struct HotBatch {
    pub batch: RecordBatch,
    /// Memory it holds (see [`batch_bytes`]).
    pub bytes: usize,
    pub first_offset: u64,
    pub last_offset: u64,
}

/// `batch` with the columns of `schema` it has, by name, in `schema`'s order and with its
/// types (a value that does not convert to the dataset's type becomes null); absent columns
/// stay absent.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    conform_by_name(batch, &used_fields(schema, &[batch]))
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

/// The hot batches of one dataset, oldest first.
#[derive(Debug, Default)]
pub struct HotTail {
    pub batches: Vec<Arc<HotBatch>>,
    pub rows: usize,
    pub bytes: usize,
    pub since: Option<std::time::Instant>,
    /// The small batches at the end not merged yet start here…
    open: usize,
    /// …and hold this many rows.
    open_rows: usize,
}

impl HotTail {
    /// Adds a batch (already [`conform`]ed). Once the small batches at the end (none of them
    /// in a flush: `frozen` batches are) add up to [`COALESCE_ROWS`], they are merged, so a
    /// query does not walk thousands of one-request batches and every row is copied once,
    /// not at each arrival. Consecutive batches are merged only as far as the padding bound
    /// allows ([`fits`]): batches of different columns are not padded to each other's width
    /// beyond it, so sparse data may stay in several merged batches.
    pub fn push(
        &mut self,
        batch: RecordBatch,
        offset: u64,
        schema: &SchemaRef,
        frozen: usize,
    ) -> Result<(), ArrowError> {
        let rows = batch.num_rows();
        self.rows += rows;
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
        if rows >= COALESCE_ROWS {
            self.open = self.batches.len();
            self.open_rows = 0;
            return Ok(());
        }
        if self.open < frozen {
            // The run began inside what a flush is writing: it starts after that now.
            self.open = frozen;
            self.open_rows = self.batches[frozen..]
                .iter()
                .map(|b| b.batch.num_rows())
                .sum();
        } else {
            self.open_rows += rows;
        }
        if self.open_rows >= COALESCE_ROWS && self.batches.len() - self.open > 1 {
            self.merge_open(schema)?;
        }
        Ok(())
    }

    /// Merges the open run into as few batches as the padding bound allows.
    fn merge_open(&mut self, schema: &SchemaRef) -> Result<(), ArrowError> {
        let run: Vec<Arc<HotBatch>> = self.batches.drain(self.open..).collect();
        let mut start = 0;
        while start < run.len() {
            let mut names: std::collections::HashSet<&str> = std::collections::HashSet::new();
            let (mut rows, mut values) = (0usize, 0usize);
            let mut end = start;
            while end < run.len() {
                let b = &run[end].batch;
                let fields = b.schema_ref().fields();
                let added = fields
                    .iter()
                    .filter(|f| !names.contains(f.name().as_str()))
                    .count();
                if end > start
                    && !fits(
                        names.len() + added,
                        rows + b.num_rows(),
                        values + present(b),
                    )
                {
                    break;
                }
                names.extend(fields.iter().map(|f| f.name().as_str()));
                rows += b.num_rows();
                values += present(b);
                end += 1;
            }
            if end - start == 1 {
                self.batches.push(run[start].clone());
            } else {
                let group: Vec<&RecordBatch> = run[start..end].iter().map(|b| &b.batch).collect();
                let merged = concat_by_name(&used_fields(schema, &group), &group)?;
                let bytes = batch_bytes(&merged);
                let old: usize = run[start..end].iter().map(|b| b.bytes).sum();
                self.bytes = self.bytes.saturating_sub(old) + bytes;
                self.batches.push(Arc::new(HotBatch {
                    batch: merged,
                    bytes,
                    first_offset: run[start].first_offset,
                    last_offset: run[end - 1].last_offset,
                }));
            }
            start = end;
        }
        self.open = self.batches.len();
        self.open_rows = 0;
        Ok(())
    }

    /// Removes the `n` oldest batches (just committed to a segment).
    pub fn drain_front(&mut self, n: usize) {
        for b in self.batches.drain(..n) {
            self.rows -= b.batch.num_rows();
            self.bytes = self.bytes.saturating_sub(b.bytes);
        }
        if self.open >= n {
            self.open -= n;
        } else {
            self.open = 0;
            self.open_rows = self.batches.iter().map(|b| b.batch.num_rows()).sum();
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

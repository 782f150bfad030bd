//! Writing one Parquet segment: hot batches → one sorted, ZSTD-compressed Parquet file.

use std::sync::Arc;

use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::{Result, StoreError};

/// Rows per Parquet row group: large enough for efficient scans, small enough that time-range
/// pruning by row-group statistics skips real work.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// An encoded segment, ready to upload.
#[derive(Debug)]
pub struct EncodedSegment {
    pub bytes: Vec<u8>,
    pub rows: u64,
    pub min_time_us: i64,
    pub max_time_us: i64,
}

/// Concatenates `batches` (all with `schema`), sorts by `timestamp` and encodes Parquet.
/// CPU-heavy: call it from a blocking thread.
pub fn encode_segment(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<EncodedSegment> {
    let batch = arrow::compute::concat_batches(schema, batches)?;
    let ts_col = batch.column(0).clone();
    let indices = lexsort_to_indices(
        &[SortColumn {
            values: ts_col,
            options: Some(SortOptions::default()),
        }],
        None,
    )?;
    let sorted = take_record_batch(&batch, &indices)?;
    let ts = sorted
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .ok_or_else(|| StoreError::Internal("timestamp column has the wrong type".into()))?;
    let (min_time_us, max_time_us) = if ts.is_empty() {
        (0, 0)
    } else {
        (ts.value(0), ts.value(ts.len() - 1))
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .build();
    let mut bytes = Vec::with_capacity(sorted.get_array_memory_size() / 4 + 4096);
    let mut writer = ArrowWriter::try_new(&mut bytes, Arc::clone(schema), Some(props))?;
    writer.write(&sorted)?;
    writer.close()?;
    Ok(EncodedSegment {
        bytes,
        rows: sorted.num_rows() as u64,
        min_time_us,
        max_time_us,
    })
}

//! Writing one Parquet segment: sorted rows → one ZSTD-compressed Parquet file with page
//! statistics and bloom filters on the configured id columns. A segment has the dataset
//! columns its rows use, not necessarily all of them; readers match columns by name.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::{Result, StoreError};

/// Rows per Parquet row group: large enough for efficient scans, small enough that time-range
/// pruning by row-group statistics skips real work.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// ZSTD level of segment pages.
pub const ZSTD_LEVEL: i32 = 1;

/// False-positive rate of the bloom filters.
pub const BLOOM_FPP: f64 = 0.03;

/// An encoded segment, ready to upload.
#[derive(Debug)]
pub struct EncodedSegment {
    pub bytes: Vec<u8>,
    pub rows: u64,
    pub min_time_us: i64,
    pub max_time_us: i64,
    /// Arrow bytes of the rows written (what reading the file back decodes to).
    pub arrow_bytes: u64,
}

/// How a segment is written.
#[derive(Debug, Clone, Default)]
pub struct SegmentOptions {
    /// Columns that get a Parquet bloom filter (when the schema has them): high-cardinality
    /// ids looked up with `=`, such as `trace.trace_id`.
    pub bloom_columns: Vec<String>,
    /// The rows are already in their final order (the compactor sorts by window, sort key,
    /// time); otherwise they are sorted by `timestamp`.
    pub presorted: bool,
}

/// Rows copied at a time when the input must be reordered.
const SORT_CHUNK_ROWS: usize = 64 * 1024;

/// Reads a whole segment file, decoding every page: `Err` with what is wrong when it is
/// missing, unreadable or corrupt. Used to find the culprit after a query failed on a read.
pub fn verify_file(path: &std::path::Path) -> std::result::Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("unreadable footer: {e}"))?
        .build()
        .map_err(|e| format!("unreadable: {e}"))?;
    let mut rows = 0u64;
    for batch in reader {
        rows += batch.map_err(|e| format!("corrupt data: {e}"))?.num_rows() as u64;
    }
    Ok(rows)
}

/// Bytes of Arrow data handed to the Parquet writer at a time: bounds the copy a sort or a
/// padding to the file's columns makes, and keeps every string column of a written batch far
/// below Arrow's 2 GiB offset limit.
pub const WRITE_CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// Rows per written batch for rows of about `row_bytes` each (with `width` columns, each of
/// which a batch without it still fills with a null per row).
pub fn rows_per_write(row_bytes: usize, width: usize) -> usize {
    (WRITE_CHUNK_BYTES / (row_bytes + 9 * width).max(1)).clamp(1, SORT_CHUNK_ROWS)
}

/// A Parquet segment being written, batch by batch: its memory is the encoded pages, never a
/// second copy of the rows.
pub struct SegmentWriter {
    writer: ArrowWriter<Vec<u8>>,
    schema: SchemaRef,
    rows: u64,
    min_time_us: i64,
    max_time_us: i64,
    arrow_bytes: u64,
}

impl SegmentWriter {
    /// A writer of files with `schema`. `sample` (batches with some of `schema`'s columns,
    /// matched by name) decides the encoding of near-unique columns; `rows` is about how many
    /// rows will be written (it sizes the bloom filters).
    pub fn new(
        schema: &SchemaRef,
        sample: &[&RecordBatch],
        opts: &SegmentOptions,
        rows: u64,
    ) -> Result<Self> {
        // Chosen by measurement (`eventide-bench encodings`, 1M generated events): ZSTD 1 is
        // both smaller and faster than 3, 6 or 9 on these pages; dictionaries save 11 %; delta
        // encoding of the sorted timestamps saves another 2.5 %.
        let ts = ColumnPath::new(vec![eventide_model::TIMESTAMP.to_owned()]);
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_column_dictionary_enabled(ts.clone(), false)
            .set_column_encoding(ts, parquet::basic::Encoding::DELTA_BINARY_PACKED)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Page);
        if !opts.presorted {
            props = props.set_sorting_columns(Some(vec![SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            }]));
        }
        for field in schema.fields().iter().skip(1) {
            let arrays: Vec<ArrayRef> = sample
                .iter()
                .filter_map(|b| eventide_model::chunks::column_as(b, field).ok().flatten())
                .collect();
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            if let Some(encoding) = high_cardinality_encoding(field.data_type(), &refs) {
                let path = ColumnPath::new(vec![field.name().clone()]);
                props = props
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, encoding);
            }
        }
        for name in &opts.bloom_columns {
            if schema.column_with_name(name).is_some() {
                // A single-part path: dotted names are one top-level column, not a nested one.
                let path = ColumnPath::new(vec![name.clone()]);
                props = props
                    .set_column_bloom_filter_enabled(path.clone(), true)
                    .set_column_bloom_filter_fpp(path.clone(), BLOOM_FPP)
                    .set_column_bloom_filter_max_ndv(path, rows.clamp(1, ROW_GROUP_ROWS as u64));
            }
        }
        let writer = ArrowWriter::try_new(Vec::new(), Arc::clone(schema), Some(props.build()))?;
        Ok(Self {
            writer,
            schema: Arc::clone(schema),
            rows: 0,
            min_time_us: i64::MAX,
            max_time_us: i64::MIN,
            arrow_bytes: 0,
        })
    }

    /// Writes `batch`, whose columns are matched to the file's by name (absent ones null).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = if batch.schema().fields() == self.schema.fields() {
            batch.clone()
        } else {
            eventide_model::chunks::conform_by_name(batch, &self.schema)?
        };
        let t = time_column(&batch)?;
        if let (Some(lo), Some(hi)) = (arrow::compute::min(t), arrow::compute::max(t)) {
            self.min_time_us = self.min_time_us.min(lo);
            self.max_time_us = self.max_time_us.max(hi);
        }
        self.rows += batch.num_rows() as u64;
        self.arrow_bytes += crate::hot::batch_bytes(&batch) as u64;
        self.writer.write(&batch)?;
        Ok(())
    }

    /// The finished file.
    pub fn finish(self) -> Result<EncodedSegment> {
        let bytes = self.writer.into_inner()?;
        let empty = self.rows == 0;
        Ok(EncodedSegment {
            bytes,
            rows: self.rows,
            min_time_us: if empty { 0 } else { self.min_time_us },
            max_time_us: if empty { 0 } else { self.max_time_us },
            arrow_bytes: self.arrow_bytes,
        })
    }
}

fn time_column(b: &RecordBatch) -> Result<&TimestampMicrosecondArray> {
    b.column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| StoreError::Internal("timestamp column has the wrong type".into()))
}

/// Writes `batches` as one Parquet segment with the columns of `schema` (matched by name: a
/// batch without a column gives nulls there), sorted by `timestamp` unless presorted. Rows
/// already in time order (the usual case: the hot tail is in log order) are written as they
/// are; otherwise a stable sort of (time, batch, row) decides the order. Either way the rows
/// go to the writer in pieces of about [`WRITE_CHUNK_BYTES`], so memory never holds a second
/// copy of the whole input. CPU-heavy: call it from a blocking thread.
pub fn encode_segment(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    opts: &SegmentOptions,
) -> Result<EncodedSegment> {
    let times: Vec<&TimestampMicrosecondArray> =
        batches.iter().map(time_column).collect::<Result<_>>()?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let in_order = opts.presorted || times.iter().flat_map(|t| t.values().iter()).is_sorted();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let mut writer = SegmentWriter::new(schema, &refs, opts, rows)?;
    let bytes: usize = batches.iter().map(crate::hot::batch_bytes).sum();
    let step = rows_per_write(bytes / (rows as usize).max(1), schema.fields().len());
    if in_order {
        for b in batches {
            let mut at = 0;
            while at < b.num_rows() {
                let n = step.min(b.num_rows() - at);
                writer.write(&b.slice(at, n))?;
                at += n;
            }
        }
    } else {
        let mut order: Vec<(i64, u32, u32)> = Vec::with_capacity(rows as usize);
        for (bi, t) in times.iter().enumerate() {
            order.extend(
                t.values()
                    .iter()
                    .enumerate()
                    .map(|(r, &v)| (v, bi as u32, r as u32)),
            );
        }
        // Stable and run-adaptive: nearly sorted input (concurrent requests interleaved in
        // the log) sorts in about linear time; equal times keep their log order.
        order.sort_by_key(|&(t, _, _)| t);
        let mut idx = Vec::with_capacity(step);
        for chunk in order.chunks(step) {
            idx.clear();
            idx.extend(chunk.iter().map(|&(_, b, r)| (b as usize, r as usize)));
            writer.write(&eventide_model::chunks::interleave_by_name(
                schema, &refs, &idx,
            )?)?;
        }
    }
    writer.finish()
}

/// Rows sampled per column to estimate its cardinality.
const SAMPLE_ROWS: usize = 16 * 1024;

/// Fewer sampled values than this: too little to judge, the dictionary stays.
const MIN_SAMPLE: usize = 256;

/// The encoding of a column whose values are mostly distinct, or `None` for the writer's
/// dictionary (right for the usual low-cardinality fields: service, endpoint, status, flags).
///
/// Chosen by measurement (`eventide-bench encodings`, per-column table, 1M generated events):
/// on near-unique columns the dictionary is first built, then abandoned at its size limit,
/// and costs both time and bytes. Instead: integers (counters, sizes, ids) are delta-encoded
/// (`seq` 2.13 → 0.01 bytes/event, `response.bytes` 3.94 → 2.41); strings keep their bytes
/// contiguous with delta-encoded lengths (`trace.trace_id` 17.6 → 16.1), and with
/// front-coding too when neighbours share prefixes (`user_id` 4.21 → 3.27, IPs 5.84 → 5.02);
/// floats are plain (`duration_ms` 3.78 → 3.63; byte-stream-split doubles their size).
///
/// The estimate: at most [`SAMPLE_ROWS`] rows at an even stride; more than half of the
/// sampled values distinct means mostly distinct.
fn high_cardinality_encoding(data_type: &DataType, arrays: &[&dyn Array]) -> Option<Encoding> {
    let rows: usize = arrays.iter().map(|a| a.len()).sum();
    let stride = rows.div_ceil(SAMPLE_ROWS).max(1);
    // (array, row) of every sampled row, valid or not.
    let sample = || {
        let mut start = 0usize;
        arrays.iter().flat_map(move |a| {
            let first = start.next_multiple_of(stride) - start;
            start += a.len();
            (first..a.len()).step_by(stride).map(move |r| (*a, r))
        })
    };
    let mostly_distinct =
        |distinct: usize, sampled: usize| sampled >= MIN_SAMPLE && distinct * 2 > sampled;
    match data_type {
        DataType::Utf8 => {
            let mut seen = foldhash::HashSet::default();
            let (mut sampled, mut shared) = (0usize, 0usize);
            for (a, r) in sample() {
                let s = a.as_string::<i32>();
                if s.is_valid(r) {
                    sampled += 1;
                    seen.insert(s.value(r));
                    if r + 1 < s.len() && s.is_valid(r + 1) {
                        let (x, y) = (s.value(r).as_bytes(), s.value(r + 1).as_bytes());
                        shared += x.iter().zip(y).take_while(|(p, q)| p == q).count();
                    }
                }
            }
            mostly_distinct(seen.len(), sampled).then(|| {
                if shared >= 2 * sampled {
                    Encoding::DELTA_BYTE_ARRAY
                } else {
                    Encoding::DELTA_LENGTH_BYTE_ARRAY
                }
            })
        }
        DataType::Int64 | DataType::Timestamp(TimeUnit::Microsecond, _) | DataType::Float64 => {
            let mut seen = foldhash::HashSet::default();
            let mut sampled = 0usize;
            for (a, r) in sample() {
                if a.is_valid(r) {
                    sampled += 1;
                    seen.insert(match data_type {
                        DataType::Int64 => a.as_primitive::<Int64Type>().value(r) as u64,
                        DataType::Float64 => a.as_primitive::<Float64Type>().value(r).to_bits(),
                        _ => a.as_primitive::<TimestampMicrosecondType>().value(r) as u64,
                    });
                }
            }
            mostly_distinct(seen.len(), sampled).then_some(if *data_type == DataType::Float64 {
                Encoding::PLAIN
            } else {
                Encoding::DELTA_BINARY_PACKED
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use eventide_model::schema::{samplerate_field, timestamp_field};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn batch(schema: &SchemaRef, times: &[i64], tags: &[&str]) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC")),
                Arc::new(Int64Array::from(vec![1; times.len()])),
                Arc::new(StringArray::from(tags.to_vec())),
            ],
        )
        .unwrap()
    }

    fn read(seg: &EncodedSegment) -> Vec<(i64, String)> {
        let r = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(seg.bytes.clone()))
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        for b in r {
            let b = b.unwrap();
            let t = b
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            let s = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                out.push((t.value(i), s.value(i).to_string()));
            }
        }
        out
    }

    #[test]
    fn sorts_across_batches_stably_or_writes_in_order() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            timestamp_field(),
            samplerate_field(),
            Field::new("tag", DataType::Utf8, true),
        ]));
        // Out of order across and within batches, with equal times in both.
        let a = batch(&schema, &[5, 1, 3], &["a5", "a1", "a3"]);
        let b = batch(&schema, &[2, 3, 9], &["b2", "b3", "b9"]);
        let seg =
            encode_segment(&schema, &[a.clone(), b.clone()], &SegmentOptions::default()).unwrap();
        assert_eq!((seg.rows, seg.min_time_us, seg.max_time_us), (6, 1, 9));
        let want: Vec<(i64, String)> = [
            (1, "a1"),
            (2, "b2"),
            (3, "a3"),
            (3, "b3"),
            (5, "a5"),
            (9, "b9"),
        ]
        .iter()
        .map(|(t, s)| (*t, s.to_string()))
        .collect();
        assert_eq!(read(&seg), want);
        // Already in order: written as given.
        let c = batch(&schema, &[1, 2], &["c1", "c2"]);
        let d = batch(&schema, &[2, 7], &["d2", "d7"]);
        let seg = encode_segment(&schema, &[c, d], &SegmentOptions::default()).unwrap();
        let got: Vec<String> = read(&seg).into_iter().map(|(_, s)| s).collect();
        assert_eq!(got, ["c1", "c2", "d2", "d7"]);
    }

    #[test]
    fn near_unique_columns_skip_the_dictionary_and_round_trip() {
        use arrow::array::{Float64Array, RecordBatchReader};
        use parquet::basic::Encoding;
        let n = 20_000usize;
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            timestamp_field(),
            Field::new("seq", DataType::Int64, true),
            Field::new("service", DataType::Utf8, true),
            Field::new("trace", DataType::Utf8, true),
            Field::new("user", DataType::Utf8, true),
            Field::new("duration", DataType::Float64, true),
            Field::new("status", DataType::Int64, true),
            // Mostly null: too few values to judge.
            Field::new("sparse", DataType::Utf8, true),
        ]));
        let make = |range: std::ops::Range<usize>| {
            let col = |f: &dyn Fn(usize) -> Option<String>| {
                Arc::new(StringArray::from(range.clone().map(f).collect::<Vec<_>>())) as _
            };
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(
                        TimestampMicrosecondArray::from(
                            range.clone().map(|i| i as i64).collect::<Vec<_>>(),
                        )
                        .with_timezone("UTC"),
                    ),
                    Arc::new(Int64Array::from(
                        range.clone().map(|i| i as i64).collect::<Vec<_>>(),
                    )),
                    col(&|i| Some(format!("svc-{}", i % 7))),
                    col(&|i| {
                        Some(format!(
                            "{:016x}",
                            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        ))
                    }),
                    col(&|i| Some(format!("user-{:06}", (i * 7919) % 1_000_000))),
                    Arc::new(Float64Array::from(
                        range.clone().map(|i| i as f64 * 1.37).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from(
                        range
                            .clone()
                            .map(|i| [200, 200, 404, 500][i % 4])
                            .collect::<Vec<_>>(),
                    )),
                    col(&|i| (i % 1000 == 0).then(|| format!("note {i}"))),
                ],
            )
            .unwrap()
        };
        // Two batches: the sample spans both.
        let input = [make(0..n / 2), make(n / 2..n)];
        let seg = encode_segment(&schema, &input, &SegmentOptions::default()).unwrap();
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(seg.bytes.clone()))
                .unwrap();
        let rg = &reader.metadata().row_groups()[0];
        let encodings = |c: usize| rg.column(c).encodings().collect::<Vec<Encoding>>();
        let dictionary = |c: usize| encodings(c).contains(&Encoding::RLE_DICTIONARY);
        assert!(encodings(1).contains(&Encoding::DELTA_BINARY_PACKED) && !dictionary(1));
        assert!(dictionary(2), "low cardinality keeps the dictionary");
        assert!(encodings(3).contains(&Encoding::DELTA_LENGTH_BYTE_ARRAY) && !dictionary(3));
        assert!(encodings(4).contains(&Encoding::DELTA_BYTE_ARRAY) && !dictionary(4));
        assert!(encodings(5).contains(&Encoding::PLAIN) && !dictionary(5));
        assert!(dictionary(6));
        assert!(dictionary(7));
        // Every value comes back.
        let reader = reader.build().unwrap();
        assert_eq!(reader.schema(), schema);
        let got: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let got = arrow::compute::concat_batches(&schema, &got).unwrap();
        let want = arrow::compute::concat_batches(&schema, &input).unwrap();
        assert_eq!(got, want);
    }
}

//! Events → Arrow, and the batch encoding written to the log.
//!
//! A log record's payload is one Arrow IPC stream holding one record batch whose schema is
//! `timestamp`, `_samplerate` and the dataset columns the batch uses, in dataset-schema order.
//! Ingest builds it once; the store decodes it without parsing JSON again. Its buffers are not
//! compressed: LZ4 on both ends cost more than a quarter of ingest throughput (measured:
//! `benches/README.md`), the embedded log keeps records only until they are in Parquet, and
//! the Kafka producer compresses its batches itself. Payloads written with LZ4_FRAME buffers
//! (before this change) still decode.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int64Array, Int64Builder,
    StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{Field, Schema};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use crate::event::{Event, Value};
use crate::schema::{ColumnType, DatasetSchema, samplerate_field, timestamp_field};

/// Why a batch could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum BatchCodecError {
    #[error("arrow ipc: {0}")]
    Arrow(#[from] ArrowError),
    #[error("log payload holds no record batch")]
    Empty,
}

#[derive(Debug)]
pub(crate) enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder),
}

impl ColumnBuilder {
    pub(crate) fn new(t: ColumnType, cap: usize) -> Self {
        match t {
            ColumnType::Bool => Self::Bool(BooleanBuilder::with_capacity(cap)),
            ColumnType::Int => Self::Int(Int64Builder::with_capacity(cap)),
            ColumnType::Float => Self::Float(Float64Builder::with_capacity(cap)),
            ColumnType::String => Self::Str(StringBuilder::with_capacity(cap, cap * 16)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Bool(b) => b.len(),
            Self::Int(b) => b.len(),
            Self::Float(b) => b.len(),
            Self::Str(b) => b.len(),
        }
    }

    pub(crate) fn pad_to(&mut self, n: usize) {
        let missing = n - self.len();
        if missing == 0 {
            return;
        }
        match self {
            Self::Bool(b) => b.append_nulls(missing),
            Self::Int(b) => b.append_nulls(missing),
            Self::Float(b) => b.append_nulls(missing),
            Self::Str(b) => {
                for _ in 0..missing {
                    b.append_null()
                }
            }
        }
    }

    /// Appends a value (admitted to the column's type); a mismatch (which admission
    /// prevents) is stored as null rather than panicking. Same rules as the columnar path.
    fn append(&mut self, v: &Value, text: &mut String) {
        crate::columnar::append_leaf(self, &crate::columnar::Leaf::from(v), text);
    }

    pub(crate) fn finish(self) -> ArrayRef {
        match self {
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::Int(mut b) => Arc::new(b.finish()),
            Self::Float(mut b) => Arc::new(b.finish()),
            Self::Str(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Builds one record batch from events admitted to `schema` (see [`DatasetSchema::admit`]).
/// Columns are `timestamp`, `_samplerate`, then the schema columns these events use, in
/// schema order. Fields unknown to the schema are skipped.
pub fn events_to_batch(
    schema: &DatasetSchema,
    events: &[Event],
) -> Result<RecordBatch, ArrowError> {
    let n = events.len();
    // slot[i] = position in `builders` of schema column i, if this batch uses it.
    let mut slot: Vec<u32> = vec![u32::MAX; schema.len()];
    let mut builders: Vec<(usize, ColumnBuilder)> = Vec::new();
    let mut ts = Vec::with_capacity(n);
    let mut rates = Vec::with_capacity(n);
    let mut text = String::new();
    for (row, e) in events.iter().enumerate() {
        ts.push(e.timestamp_us);
        rates.push(e.samplerate);
        for (name, v) in &e.fields {
            let Some((col, t)) = schema.get(name) else {
                continue;
            };
            let s = if slot[col] == u32::MAX {
                slot[col] = builders.len() as u32;
                builders.push((col, ColumnBuilder::new(t, n)));
                builders.len() - 1
            } else {
                slot[col] as usize
            };
            let b = &mut builders[s].1;
            b.pad_to(row);
            b.append(v, &mut text);
        }
    }
    assemble(schema.columns(), ts, rates, builders)
}

/// The record batch of `ts.len()` rows: `timestamp`, `_samplerate`, then the used columns
/// (`builders`: schema position and builder) in schema order, each padded with nulls to the
/// full length. Shared by [`events_to_batch`] and the columnar path.
pub(crate) fn assemble(
    columns: &[(String, ColumnType)],
    ts: Vec<i64>,
    rates: Vec<i64>,
    mut builders: Vec<(usize, ColumnBuilder)>,
) -> Result<RecordBatch, ArrowError> {
    let n = ts.len();
    builders.sort_by_key(|(col, _)| *col);
    let mut fields = Vec::with_capacity(builders.len() + 2);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(builders.len() + 2);
    fields.push(timestamp_field());
    arrays.push(Arc::new(
        TimestampMicrosecondArray::from(ts).with_timezone("UTC"),
    ));
    fields.push(samplerate_field());
    arrays.push(Arc::new(Int64Array::from(rates)));
    for (col, mut b) in builders {
        b.pad_to(n);
        let (name, t) = &columns[col];
        fields.push(Field::new(name, t.arrow(), true));
        arrays.push(b.finish());
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

/// Encodes a record batch as the log payload (uncompressed Arrow IPC stream).
pub fn encode_batch(batch: &RecordBatch) -> Result<Bytes, BatchCodecError> {
    let options = IpcWriteOptions::default();
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    {
        let mut w = StreamWriter::try_new_with_options(&mut buf, &batch.schema(), options)?;
        w.write(batch)?;
        w.finish()?;
    }
    Ok(Bytes::from(buf))
}

/// Decodes a log payload written by [`encode_batch`].
pub fn decode_batch(payload: &[u8]) -> Result<RecordBatch, BatchCodecError> {
    let reader = StreamReader::try_new(Cursor::new(payload), None)?;
    let mut out = None;
    for b in reader {
        let b = b?;
        out = Some(match out {
            None => b,
            Some(prev) => arrow::compute::concat_batches(&b.schema(), [&prev, &b])?,
        });
    }
    out.ok_or(BatchCodecError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::util::pretty::pretty_format_batches;

    #[test]
    fn builds_sparse_batches_and_round_trips() {
        let mut schema = DatasetSchema::new();
        let mut events = vec![
            Event {
                timestamp_us: 1,
                samplerate: 1,
                fields: vec![
                    ("a".into(), Value::Int(1)),
                    ("s".into(), Value::Str("x".into())),
                ],
            },
            Event {
                timestamp_us: 2,
                samplerate: 5,
                fields: vec![("b".into(), Value::Bool(true))],
            },
            Event {
                timestamp_us: 3,
                samplerate: 1,
                fields: vec![("a".into(), Value::Int(3))],
            },
        ];
        for e in &mut events {
            schema.admit(e, 100).unwrap();
        }
        let batch = events_to_batch(&schema, &events).unwrap();
        let back = decode_batch(&encode_batch(&batch).unwrap()).unwrap();
        assert_eq!(back, batch);
        let text = pretty_format_batches(&[back]).unwrap().to_string();
        let want = "\
+-----------------------------+-------------+---+---+------+
| timestamp                   | _samplerate | a | s | b    |
+-----------------------------+-------------+---+---+------+
| 1970-01-01T00:00:00.000001Z | 1           | 1 | x |      |
| 1970-01-01T00:00:00.000002Z | 5           |   |   | true |
| 1970-01-01T00:00:00.000003Z | 1           | 3 |   |      |
+-----------------------------+-------------+---+---+------+";
        assert_eq!(text, want);
    }

    #[test]
    fn lz4_payloads_of_earlier_versions_still_decode() {
        use arrow::ipc::CompressionType;
        let mut schema = DatasetSchema::new();
        let events: Vec<Event> = (0..50)
            .map(|i| {
                let mut e = Event {
                    timestamp_us: i,
                    samplerate: 1,
                    fields: vec![("s".into(), Value::Str("x".repeat(100)))],
                };
                schema.admit(&mut e, 10).unwrap();
                e
            })
            .collect();
        let batch = events_to_batch(&schema, &events).unwrap();
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .unwrap();
        let mut buf = Vec::new();
        let mut w = StreamWriter::try_new_with_options(&mut buf, &batch.schema(), options).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        assert_eq!(decode_batch(&buf).unwrap(), batch);
        assert!(
            encode_batch(&batch).unwrap().len() > buf.len(),
            "new payloads are uncompressed"
        );
    }

    #[test]
    fn garbage_payload_is_an_error() {
        assert!(decode_batch(b"not arrow").is_err());
        assert!(decode_batch(b"").is_err());
    }
}

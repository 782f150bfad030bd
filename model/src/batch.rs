//! Events → Arrow, and the record payload written to the log.
//!
//! A log record's payload holds one or more Arrow IPC streams ("chunks"), each one record
//! batch whose schema is `timestamp`, `_samplerate` and the dataset columns its rows use, in
//! dataset-schema order. Sparse requests become several chunks, none padded to the width of
//! the others (see [`crate::chunks`]); a request becomes several records when its chunks
//! exceed the record bound ([`encode_records`]). Ingest builds them once; the store decodes
//! them without parsing JSON again. Buffers are not compressed: LZ4 on both ends cost more
//! than a quarter of ingest throughput (measured: `benches/README.md`), the embedded log keeps
//! records only until they are in Parquet, and the Kafka producer compresses its batches
//! itself. Payloads of a single IPC stream (before chunks), with or without LZ4_FRAME
//! buffers, still decode.
//!
//! Payload layout: `EVC1 | count: u32 LE | (len: u32 LE | IPC stream)*`.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::error::ArrowError;
use arrow::ipc::MetadataVersion;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use crate::chunks::SparseColumn;
use crate::event::{Event, Value};
use crate::schema::{ColumnType, DatasetSchema};

/// Why a batch could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum BatchCodecError {
    #[error("arrow ipc: {0}")]
    Arrow(#[from] ArrowError),
    #[error("log payload holds no record batch")]
    Empty,
    #[error("log payload is cut short: {0}")]
    Truncated(&'static str),
}

/// The magic of a chunked payload.
const MAGIC: &[u8; 4] = b"EVC1";

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

    /// Appends a value (admitted to the column's type); a mismatch (which admission
    /// prevents) is stored as null rather than panicking. Same rules as the columnar path.
    pub(crate) fn append(&mut self, v: &Value, text: &mut String) {
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

/// Builds the record batches of events admitted to `schema` (see
/// [`DatasetSchema::admit`]): columns `timestamp`, `_samplerate`, then the schema columns
/// the rows use, in schema order; one batch unless the events are too sparse for it (see
/// [`crate::chunks`]). Fields unknown to the schema are skipped.
pub fn events_to_batches(
    schema: &DatasetSchema,
    events: &[Event],
) -> Result<Vec<RecordBatch>, ArrowError> {
    let n = events.len();
    // slot[i] = position in `columns` of schema column i, if these events use it.
    let mut slot: Vec<u32> = vec![u32::MAX; schema.len()];
    let mut columns: Vec<SparseColumn> = Vec::new();
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
                slot[col] = columns.len() as u32;
                columns.push(SparseColumn::new(col, t, n));
                columns.len() - 1
            } else {
                slot[col] as usize
            };
            let c = &mut columns[s];
            c.rows.push(row as u32);
            c.values.append(v, &mut text);
        }
    }
    crate::chunks::assemble(schema.columns(), ts, rates, columns)
}

fn ipc_options() -> Result<IpcWriteOptions, ArrowError> {
    // 8-byte alignment: a chunk of few rows is mostly buffers, and 64-byte padding of each
    // would outweigh its values.
    IpcWriteOptions::try_new(8, false, MetadataVersion::V5)
}

/// One chunk as an IPC stream.
fn encode_chunk(batch: &RecordBatch) -> Result<Vec<u8>, BatchCodecError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    {
        let mut w = StreamWriter::try_new_with_options(&mut buf, &batch.schema(), ipc_options()?)?;
        w.write(batch)?;
        w.finish()?;
    }
    Ok(buf)
}

/// Frames encoded chunks as one payload.
fn frame_payload(chunks: &[Vec<u8>]) -> Bytes {
    let len = 8 + chunks.iter().map(|c| c.len() + 4).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for c in chunks {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c);
    }
    Bytes::from(out)
}

/// Encodes `batches` as one log payload.
pub fn encode_batch(batch: &RecordBatch) -> Result<Bytes, BatchCodecError> {
    Ok(frame_payload(&[encode_chunk(batch)?]))
}

/// Encodes `batches` as log payloads of at most `max_record_bytes` each (a batch whose
/// encoding is larger is split by rows; a single row is never split). Each payload and the
/// number of rows it holds.
pub fn encode_records(
    batches: &[RecordBatch],
    max_record_bytes: usize,
) -> Result<Vec<(Bytes, usize)>, BatchCodecError> {
    let mut encoded: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut todo: Vec<RecordBatch> = batches.iter().rev().cloned().collect();
    while let Some(b) = todo.pop() {
        let bytes = encode_chunk(&b)?;
        if bytes.len() + 12 > max_record_bytes && b.num_rows() > 1 {
            let half = b.num_rows() / 2;
            todo.push(b.slice(half, b.num_rows() - half));
            todo.push(b.slice(0, half));
            continue;
        }
        encoded.push((bytes, b.num_rows()));
    }
    let mut out = Vec::new();
    let mut group: Vec<Vec<u8>> = Vec::new();
    let (mut size, mut rows) = (8usize, 0usize);
    for (bytes, n) in encoded {
        if !group.is_empty() && size + bytes.len() + 4 > max_record_bytes {
            out.push((frame_payload(&group), rows));
            group.clear();
            (size, rows) = (8, 0);
        }
        size += bytes.len() + 4;
        rows += n;
        group.push(bytes);
    }
    if !group.is_empty() {
        out.push((frame_payload(&group), rows));
    }
    Ok(out)
}

fn read_stream(bytes: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), BatchCodecError> {
    for b in StreamReader::try_new(Cursor::new(bytes), None)? {
        out.push(b?);
    }
    Ok(())
}

/// Decodes a log payload written by [`encode_records`] (or, before chunks, a single IPC
/// stream): its batches, each with its own columns.
pub fn decode_payload(payload: &[u8]) -> Result<Vec<RecordBatch>, BatchCodecError> {
    let mut out = Vec::new();
    if let Some(rest) = payload.strip_prefix(MAGIC) {
        let count = rest
            .get(..4)
            .ok_or(BatchCodecError::Truncated("no chunk count"))?;
        let count = u32::from_le_bytes(count.try_into().unwrap_or_default());
        let mut rest = &rest[4..];
        for _ in 0..count {
            let len = rest
                .get(..4)
                .ok_or(BatchCodecError::Truncated("no chunk length"))?;
            let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
            let chunk = rest
                .get(4..4 + len)
                .ok_or(BatchCodecError::Truncated("a chunk ends past the payload"))?;
            read_stream(chunk, &mut out)?;
            rest = &rest[4 + len..];
        }
    } else {
        read_stream(payload, &mut out)?;
    }
    if out.is_empty() {
        return Err(BatchCodecError::Empty);
    }
    Ok(out)
}

/// Decodes a payload into one batch (every chunk padded to the union of their columns, by
/// name): for tests and tools that look at a record whole.
pub fn decode_batch(payload: &[u8]) -> Result<RecordBatch, BatchCodecError> {
    let batches = decode_payload(payload)?;
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let mut fields: Vec<arrow::datatypes::FieldRef> = Vec::new();
    for b in &batches {
        for f in b.schema().fields() {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(f.clone());
            }
        }
    }
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    Ok(crate::chunks::concat_by_name(&schema, &refs)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
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
        let batch = events_to_batches(&schema, &events).unwrap().remove(0);
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
        let batch = events_to_batches(&schema, &events).unwrap().remove(0);
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

    /// A request's chunks are packed into records of at most the bound; a chunk larger than
    /// the bound is split by rows; every row comes back exactly once.
    #[test]
    fn records_are_bounded_and_hold_every_row_once() {
        let mut schema = DatasetSchema::new();
        let events: Vec<Event> = (0..20_000)
            .map(|i| {
                let mut e = Event {
                    timestamp_us: i,
                    samplerate: 1,
                    fields: vec![
                        ("seq".into(), Value::Int(i)),
                        ("s".into(), Value::Str(format!("{i:0>100}"))),
                    ],
                };
                schema.admit(&mut e, 10).unwrap();
                e
            })
            .collect();
        let batches = events_to_batches(&schema, &events).unwrap();
        let bound = 256 * 1024;
        let records = encode_records(&batches, bound).unwrap();
        assert!(records.len() >= 8, "{} records", records.len());
        let mut seqs = Vec::new();
        for (bytes, rows) in &records {
            assert!(bytes.len() <= bound, "{} > {bound}", bytes.len());
            let back = decode_payload(bytes).unwrap();
            assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), *rows);
            for b in back {
                let c = b.column_by_name("seq").unwrap();
                let c = c.as_any().downcast_ref::<Int64Array>().unwrap();
                seqs.extend(c.values().iter().copied());
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..20_000).collect::<Vec<i64>>());
    }

    #[test]
    fn garbage_payload_is_an_error() {
        assert!(decode_batch(b"not arrow").is_err());
        assert!(decode_batch(b"").is_err());
    }
}

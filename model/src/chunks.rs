//! Rows → Arrow batches that are never padded to the width of sparse data.
//!
//! A batch under construction keeps each column's values without nulls, with the rows they
//! belong to ([`SparseColumn`]). When it is finished ([`assemble`]), the rows become one
//! record batch when padding every used column to every row costs at most [`PAD_FACTOR`]
//! cells per value present (plus [`PAD_SLACK`] cells, so small batches stay whole): the usual
//! case, in the rows' own order. Sparser batches (events of many different shapes, each with
//! a few columns of many) are grouped by their set of columns and the groups packed into
//! chunks under the same bound, each chunk with only its own columns. Memory, log records and
//! hot batches then grow with the values sent, not with rows × columns.
//!
//! The same bound decides which hot batches may be concatenated ([`fits`]), and every
//! combination of batches of different columns goes by column **name** ([`concat_by_name`],
//! [`interleave_by_name`], [`conform_by_name`]), never by position.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, TimestampMicrosecondArray, UInt32Array, new_null_array,
};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::compute::{interleave, take};
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::batch::ColumnBuilder;
use crate::schema::{ColumnType, samplerate_field, timestamp_field};

/// Cells a batch may hold per value present…
pub const PAD_FACTOR: usize = 2;
/// …plus this many, so that small batches are never split.
pub const PAD_SLACK: usize = 4096;

/// Whether `columns` × `rows` cells fit the padding bound for `present` values.
pub fn fits(columns: usize, rows: usize, present: usize) -> bool {
    columns.saturating_mul(rows) <= PAD_FACTOR.saturating_mul(present) + PAD_SLACK
}

/// Values present in `batch`: its cells that are not null.
pub fn present(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.len() - c.null_count())
        .sum()
}

/// One column of a batch under construction: its values (no nulls) and their rows, in
/// increasing order.
#[derive(Debug)]
pub(crate) struct SparseColumn {
    /// Position of the column in the dataset schema.
    pub(crate) col: usize,
    pub(crate) rows: Vec<u32>,
    pub(crate) values: ColumnBuilder,
}

impl SparseColumn {
    pub(crate) fn new(col: usize, t: ColumnType, capacity: usize) -> Self {
        Self {
            col,
            rows: Vec::with_capacity(capacity),
            values: ColumnBuilder::new(t, capacity),
        }
    }
}

/// Finished columns: values array and rows.
struct Finished {
    col: usize,
    rows: Vec<u32>,
    values: ArrayRef,
}

/// The record batches of `ts.len()` rows: `timestamp`, `_samplerate`, then the used columns
/// (in schema order, named and typed by `columns`). One batch when it fits the padding bound,
/// else chunks of rows grouped by shape (see the module docs).
pub(crate) fn assemble(
    columns: &[(String, ColumnType)],
    ts: Vec<i64>,
    rates: Vec<i64>,
    mut sparse: Vec<SparseColumn>,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let n = ts.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    sparse.sort_by_key(|c| c.col);
    let present: usize = 2 * n + sparse.iter().map(|c| c.rows.len()).sum::<usize>();
    let finished: Vec<Finished> = sparse
        .into_iter()
        .map(|c| Finished {
            col: c.col,
            rows: c.rows,
            values: c.values.finish(),
        })
        .collect();
    let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC"));
    let rates: ArrayRef = Arc::new(Int64Array::from(rates));
    if fits(2 + finished.len(), n, present) {
        let all: Vec<usize> = (0..finished.len()).collect();
        let rows: Vec<u32> = (0..n as u32).collect();
        return Ok(vec![chunk(columns, &ts, &rates, &finished, &all, &rows)?]);
    }
    // Shapes: the columns of each row.
    let mut shape_of: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, c) in finished.iter().enumerate() {
        for &r in &c.rows {
            shape_of[r as usize].push(i as u32);
        }
    }
    let mut groups: HashMap<&[u32], Vec<u32>> = HashMap::new();
    for (r, shape) in shape_of.iter().enumerate() {
        groups.entry(shape.as_slice()).or_default().push(r as u32);
    }
    // Similar shapes side by side, in a deterministic order.
    let mut groups: Vec<(&[u32], Vec<u32>)> = groups.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    let mut cols: Vec<bool> = vec![false; finished.len()];
    let mut width = 0usize;
    let mut rows: Vec<u32> = Vec::new();
    let mut cells = 0usize;
    for (shape, members) in groups {
        let added = shape.iter().filter(|&&c| !cols[c as usize]).count();
        let grown_rows = rows.len() + members.len();
        let grown_present = cells + members.len() * (2 + shape.len());
        if !rows.is_empty() && !fits(2 + width + added, grown_rows, grown_present) {
            out.push(flush_chunk(
                columns, &ts, &rates, &finished, &mut cols, &mut rows,
            )?);
            width = 0;
            cells = 0;
        }
        for &c in shape {
            if !cols[c as usize] {
                cols[c as usize] = true;
                width += 1;
            }
        }
        cells += members.len() * (2 + shape.len());
        rows.extend(members);
    }
    if !rows.is_empty() {
        out.push(flush_chunk(
            columns, &ts, &rates, &finished, &mut cols, &mut rows,
        )?);
    }
    Ok(out)
}

fn flush_chunk(
    columns: &[(String, ColumnType)],
    ts: &ArrayRef,
    rates: &ArrayRef,
    finished: &[Finished],
    cols: &mut [bool],
    rows: &mut Vec<u32>,
) -> Result<RecordBatch, ArrowError> {
    rows.sort_unstable();
    let used: Vec<usize> = (0..cols.len()).filter(|&c| cols[c]).collect();
    let batch = chunk(columns, ts, rates, finished, &used, rows)?;
    cols.iter_mut().for_each(|c| *c = false);
    rows.clear();
    Ok(batch)
}

/// The batch of `rows` (increasing) with the columns `used` (indices into `finished`).
fn chunk(
    columns: &[(String, ColumnType)],
    ts: &ArrayRef,
    rates: &ArrayRef,
    finished: &[Finished],
    used: &[usize],
    rows: &[u32],
) -> Result<RecordBatch, ArrowError> {
    let all_rows = rows.len() == ts.len();
    let row_index = UInt32Array::from(rows.to_vec());
    let pick = |a: &ArrayRef| -> Result<ArrayRef, ArrowError> {
        if all_rows {
            Ok(a.clone())
        } else {
            take(a.as_ref(), &row_index, None)
        }
    };
    let mut fields: Vec<Field> = vec![timestamp_field(), samplerate_field()];
    let mut arrays: Vec<ArrayRef> = vec![pick(ts)?, pick(rates)?];
    for &i in used {
        let c = &finished[i];
        let (name, t) = &columns[c.col];
        fields.push(Field::new(name, t.arrow(), true));
        if all_rows && c.rows.len() == rows.len() {
            arrays.push(c.values.clone());
            continue;
        }
        // Each chunk row's position among the column's values, or null.
        let mut positions = Vec::with_capacity(rows.len());
        let mut valid = Vec::with_capacity(rows.len());
        let mut k = 0usize;
        for &r in rows {
            while k < c.rows.len() && c.rows[k] < r {
                k += 1;
            }
            let hit = k < c.rows.len() && c.rows[k] == r;
            positions.push(if hit { k as u32 } else { 0 });
            valid.push(hit);
        }
        let indices =
            UInt32Array::new(ScalarBuffer::from(positions), Some(NullBuffer::from(valid)));
        arrays.push(take(c.values.as_ref(), &indices, None)?);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

/// `batch` with the columns of `schema`, matched by name: absent columns are null, columns
/// of another type are cast (values that do not convert become null), columns `schema` does
/// not have are dropped.
pub fn conform_by_name(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let n = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|f| column_as(batch, f).map(|c| c.unwrap_or_else(|| new_null_array(f.data_type(), n))))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(n)),
    )
}

/// The column of `batch` named like `field`, with `field`'s type; `None` when absent.
pub fn column_as(batch: &RecordBatch, field: &Field) -> Result<Option<ArrayRef>, ArrowError> {
    let Some(c) = batch.column_by_name(field.name()) else {
        return Ok(None);
    };
    if c.data_type() == field.data_type() {
        return Ok(Some(c.clone()));
    }
    let options = arrow::compute::CastOptions {
        safe: true,
        ..Default::default()
    };
    Ok(Some(arrow::compute::cast_with_options(
        c,
        field.data_type(),
        &options,
    )?))
}

/// The fields of `schema` that at least one of `batches` has, in `schema`'s order (the first
/// two, `timestamp` and `_samplerate`, always).
pub fn used_fields(schema: &SchemaRef, batches: &[&RecordBatch]) -> SchemaRef {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, f)| *i < 2 || batches.iter().any(|b| b.column_by_name(f.name()).is_some()))
        .map(|(_, f)| f.clone())
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The rows of `batches` one after another, with the columns of `schema` (by name).
pub fn concat_by_name(
    schema: &SchemaRef,
    batches: &[&RecordBatch],
) -> Result<RecordBatch, ArrowError> {
    let conformed = batches
        .iter()
        .map(|b| conform_by_name(b, schema))
        .collect::<Result<Vec<_>, _>>()?;
    arrow::compute::concat_batches(schema, &conformed)
}

/// The rows `indices` (batch, row) of `batches`, with the columns of `schema` matched by
/// name: a batch without a column gives nulls, without padding it (one null row stands in).
pub fn interleave_by_name(
    schema: &SchemaRef,
    batches: &[&RecordBatch],
    indices: &[(usize, usize)],
) -> Result<RecordBatch, ArrowError> {
    let mut arrays = Vec::with_capacity(schema.fields().len());
    let mut sources: Vec<ArrayRef> = Vec::with_capacity(batches.len() + 1);
    let mut remapped: Vec<(usize, usize)> = Vec::with_capacity(indices.len());
    for field in schema.fields() {
        sources.clear();
        let mut missing = false;
        let mut slot = Vec::with_capacity(batches.len());
        for b in batches {
            match column_as(b, field)? {
                Some(c) => {
                    slot.push(sources.len());
                    sources.push(c);
                }
                None => {
                    missing = true;
                    slot.push(usize::MAX);
                }
            }
        }
        let null_source = sources.len();
        if missing {
            sources.push(new_null_array(field.data_type(), 1));
        }
        remapped.clear();
        remapped.extend(indices.iter().map(|&(b, r)| match slot[b] {
            usize::MAX => (null_source, 0),
            s => (s, r),
        }));
        let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
        arrays.push(interleave(&refs, &remapped)?);
    }
    RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(indices.len())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::{DataType, Int64Type};

    fn columns(n: usize) -> Vec<(String, ColumnType)> {
        (0..n).map(|i| (format!("c{i}"), ColumnType::Int)).collect()
    }

    /// Rows of `shapes[r]` columns, each value = row * 1000 + column.
    fn build(cols: &[(String, ColumnType)], shapes: &[Vec<usize>]) -> Vec<RecordBatch> {
        let mut sparse: Vec<SparseColumn> = Vec::new();
        let mut slot: HashMap<usize, usize> = HashMap::new();
        for (r, shape) in shapes.iter().enumerate() {
            for &c in shape {
                let s = *slot.entry(c).or_insert_with(|| {
                    sparse.push(SparseColumn::new(c, ColumnType::Int, 4));
                    sparse.len() - 1
                });
                sparse[s].rows.push(r as u32);
                match &mut sparse[s].values {
                    ColumnBuilder::Int(b) => b.append_value((r * 1000 + c) as i64),
                    _ => unreachable!(),
                }
            }
        }
        let n = shapes.len();
        assemble(cols, (0..n as i64).collect(), vec![1; n], sparse).unwrap()
    }

    /// Every (row, column) → value of the batches, recovered by name.
    fn cells(batches: &[RecordBatch]) -> Vec<(i64, String, i64)> {
        let mut out = Vec::new();
        for b in batches {
            let ts = b
                .column(0)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            for (i, f) in b.schema().fields().iter().enumerate().skip(2) {
                let c = b.column(i).as_primitive::<Int64Type>();
                for r in 0..b.num_rows() {
                    if c.is_valid(r) {
                        out.push((ts.value(r), f.name().clone(), c.value(r)));
                    }
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn dense_rows_stay_one_batch_in_their_order() {
        let cols = columns(5);
        let shapes: Vec<Vec<usize>> = (0..1000)
            .map(|r| {
                if r % 3 == 0 {
                    vec![0, 1, 2, 4]
                } else {
                    vec![0, 1, 2, 3]
                }
            })
            .collect();
        let out = build(&cols, &shapes);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].num_rows(), 1000);
        assert_eq!(out[0].num_columns(), 7);
        let ts = out[0]
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert!(ts.values().is_sorted());
    }

    /// The shape of the sparse batch that was acknowledged and lost: 100,000 events of two
    /// fields, the first named from 400 names.
    #[test]
    fn sparse_rows_are_chunked_without_padding_to_full_width() {
        let cols = columns(401);
        let n = 100_000;
        let shapes: Vec<Vec<usize>> = (0..n).map(|i| vec![i % 400, 400]).collect();
        let out = build(&cols, &shapes);
        let rows: usize = out.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, n);
        let cells_held: usize = out.iter().map(|b| b.num_rows() * b.num_columns()).sum();
        let values = 4 * n;
        assert!(
            cells_held <= PAD_FACTOR * values + out.len() * PAD_SLACK,
            "{cells_held} cells for {values} values in {} chunks",
            out.len()
        );
        assert!(cells_held < 3 * values, "{cells_held}");
        // Every value is where it was put.
        let want: Vec<(i64, String, i64)> = {
            let mut w: Vec<_> = shapes
                .iter()
                .enumerate()
                .flat_map(|(r, s)| {
                    s.iter()
                        .map(move |&c| (r as i64, format!("c{c}"), (r * 1000 + c) as i64))
                })
                .collect();
            w.sort();
            w
        };
        assert_eq!(cells(&out), want);
    }

    #[test]
    fn by_name_never_by_position() {
        let a = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("x", DataType::Int64, true),
                Field::new("y", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .unwrap();
        // The same columns in the other order, and one more.
        let b = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("z", DataType::Int64, true),
                Field::new("y", DataType::Utf8, true),
                Field::new("x", DataType::Int64, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![9])),
                Arc::new(StringArray::from(vec!["c"])),
                Arc::new(Int64Array::from(vec![3])),
            ],
        )
        .unwrap();
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("y", DataType::Utf8, true),
            Field::new("z", DataType::Int64, true),
        ]));
        let c = concat_by_name(&schema, &[&a, &b]).unwrap();
        let i = interleave_by_name(&schema, &[&a, &b], &[(1, 0), (0, 1), (0, 0)]).unwrap();
        assert_eq!(c.column(0).as_primitive::<Int64Type>().values(), &[1, 2, 3]);
        assert_eq!(i.column(0).as_primitive::<Int64Type>().values(), &[3, 2, 1]);
        let y: Vec<&str> = i.column(1).as_string::<i32>().iter().flatten().collect();
        assert_eq!(y, ["c", "b", "a"]);
        let z = i.column(2).as_primitive::<Int64Type>();
        assert_eq!((z.value(0), z.is_null(1), z.is_null(2)), (9, true, true));
    }
}

//! JSON objects → Arrow columns in one pass, without an intermediate [`Event`].
//!
//! [`ColumnarBatch`] is the fast path of the JSON decoders (Honeycomb batches, NDJSON). It
//! reads each object from a simd-json tape (no per-object hash map, strings borrowed from the
//! request body) and appends its leaves straight into Arrow builders. It applies exactly the
//! rules of [`flatten_object`](crate::flatten_object) (limits, dotted names, `timestamp`,
//! `_samplerate`, JSON text for arrays and deep objects, repeated keys and names) followed by
//! [`DatasetSchema::admit`] and [`events_to_batches`](crate::events_to_batches): an event that
//! breaks a rule is refused whole with the same message and leaves the batch unchanged.
//!
//! It works on a private copy of the dataset's schema, so decoding needs no lock; the columns
//! it adds are reported by [`ColumnarBatch::new_columns`] for the caller to publish.
//!
//! [`Event`]: crate::Event

use std::borrow::Cow;
use std::fmt::Write as _;

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use simd_json::ValueType;
use simd_json::prelude::{TypedValue, ValueAsScalar, ValueIntoString, Writable};
use simd_json::tape::Value as TapeValue;

use crate::batch::ColumnBuilder;
use crate::chunks::SparseColumn;
use crate::event::EventError;
use crate::limits::Limits;
use crate::schema::{ColumnType, DatasetSchema, SchemaError};
use crate::{SAMPLERATE, TIMESTAMP};

/// One flattened leaf value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leaf<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
}

impl Leaf<'_> {
    fn kind(&self) -> ColumnType {
        match self {
            Leaf::Bool(_) => ColumnType::Bool,
            Leaf::Int(_) => ColumnType::Int,
            Leaf::Float(_) => ColumnType::Float,
            Leaf::Str(_) => ColumnType::String,
        }
    }

    fn size(&self) -> usize {
        match self {
            Leaf::Str(s) => s.len(),
            _ => 8,
        }
    }
}

impl From<crate::Value> for Leaf<'_> {
    fn from(v: crate::Value) -> Self {
        match v {
            crate::Value::Bool(x) => Leaf::Bool(x),
            crate::Value::Int(x) => Leaf::Int(x),
            crate::Value::Float(x) => Leaf::Float(x),
            crate::Value::Str(s) => Leaf::Str(Cow::Owned(s)),
        }
    }
}

impl<'a> From<&'a crate::Value> for Leaf<'a> {
    fn from(v: &'a crate::Value) -> Self {
        match v {
            crate::Value::Bool(x) => Leaf::Bool(*x),
            crate::Value::Int(x) => Leaf::Int(*x),
            crate::Value::Float(x) => Leaf::Float(*x),
            crate::Value::Str(s) => Leaf::Str(Cow::Borrowed(s)),
        }
    }
}

/// Appends a leaf to a builder of its column, applying the type rules (the event path's
/// `ColumnBuilder::append` comes here too). `text` is scratch for values stored as text.
pub(crate) fn append_leaf(b: &mut ColumnBuilder, v: &Leaf<'_>, text: &mut String) {
    match (b, v) {
        (ColumnBuilder::Bool(b), Leaf::Bool(x)) => b.append_value(*x),
        (ColumnBuilder::Int(b), Leaf::Int(x)) => b.append_value(*x),
        (ColumnBuilder::Float(b), Leaf::Float(x)) => b.append_value(*x),
        (ColumnBuilder::Float(b), Leaf::Int(x)) => b.append_value(*x as f64),
        (ColumnBuilder::Str(b), Leaf::Str(x)) => b.append_value(x),
        (ColumnBuilder::Str(b), other) => {
            text.clear();
            // Same text as `Value::to_text`.
            let _ = match other {
                Leaf::Bool(x) => write!(text, "{x}"),
                Leaf::Int(x) => write!(text, "{x}"),
                Leaf::Float(x) => write!(text, "{x}"),
                Leaf::Str(_) => Ok(()),
            };
            b.append_value(&*text)
        }
        // Admission prevents these; store null rather than panic.
        (ColumnBuilder::Bool(b), _) => b.append_null(),
        (ColumnBuilder::Int(b), _) => b.append_null(),
        (ColumnBuilder::Float(b), _) => b.append_null(),
    }
}

/// Numeric value of a scalar tape node, as `flatten_object` reads a `timestamp` field.
fn tape_f64(v: &TapeValue<'_, '_>) -> Option<f64> {
    match v.value_type() {
        ValueType::I64 => v.as_i64().map(|i| i as f64),
        ValueType::U64 => v.as_u64().map(|u| u as f64),
        ValueType::F64 => v.as_f64(),
        _ => None,
    }
}

fn count_leaves(v: &TapeValue<'_, '_>) -> usize {
    match v.as_object() {
        Some(o) => o.iter().map(|(_, v)| count_leaves(&v)).sum(),
        None => 1,
    }
}

/// One event's flattened fields, before admission.
type Fields<'a> = Vec<(Cow<'a, str>, Leaf<'a>)>;

fn push_leaf<'a>(
    out: &mut Fields<'a>,
    name: Cow<'a, str>,
    value: TapeValue<'_, 'a>,
    limits: &Limits,
    depth: usize,
    size: &mut usize,
    seen: &mut Seen<'a>,
) -> Result<(), EventError> {
    let leaf = match value.value_type() {
        ValueType::Null => {
            seen.marks.push(name);
            return Ok(());
        }
        ValueType::Bool => Leaf::Bool(value.as_bool().unwrap_or_default()),
        ValueType::I64 => Leaf::Int(value.as_i64().unwrap_or_default()),
        ValueType::U64 => {
            let u = value.as_u64().unwrap_or_default();
            match i64::try_from(u) {
                Ok(i) => Leaf::Int(i),
                Err(_) => Leaf::Float(u as f64),
            }
        }
        ValueType::F64 => {
            let f = value.as_f64().unwrap_or(f64::NAN);
            if !f.is_finite() {
                seen.marks.push(name);
                return Ok(());
            }
            Leaf::Float(f)
        }
        ValueType::String => Leaf::Str(Cow::Borrowed(value.into_string().unwrap_or_default())),
        ValueType::Object if depth < limits.flatten_depth => {
            if let Some(obj) = value.as_object() {
                for (k, v) in obj.iter() {
                    if k.is_empty() {
                        return Err(EventError::EmptyFieldName);
                    }
                    push_leaf(
                        out,
                        Cow::Owned(format!("{name}.{k}")),
                        v,
                        limits,
                        depth + 1,
                        size,
                        seen,
                    )?;
                    if out.len() > limits.max_fields_per_event {
                        // The caller reports the exact count.
                        return Ok(());
                    }
                }
            }
            seen.marks.push(name);
            return Ok(());
        }
        // Arrays and objects nested deeper than the flatten depth are stored as JSON text,
        // written from the value model where an object in them repeats a key.
        _ if repeats_a_key(value) => Leaf::Str(Cow::Owned(
            simd_json::value::lazy::Value::Tape(value)
                .into_value()
                .into_static()
                .encode(),
        )),
        _ => Leaf::Str(Cow::Owned(value.encode())),
    };
    if let Leaf::Str(s) = &leaf
        && s.len() > limits.max_string_bytes
    {
        return Err(EventError::StringTooLong {
            field: name.into_owned(),
            len: s.len(),
            limit: limits.max_string_bytes,
        });
    }
    *size += name.len() + leaf.size();
    out.push((name, leaf));
    Ok(())
}

/// Flattens a tape object like [`flatten_object`](crate::flatten_object): returns its
/// fields sorted by name (unique) and its own parsed `timestamp`, if any.
pub(crate) fn flatten_tape<'a>(
    data: TapeValue<'_, 'a>,
    limits: &Limits,
) -> Result<(Fields<'a>, Option<i64>), EventError> {
    let mut seen = Seen::default();
    let first = walk_tape(data, limits, &mut seen).map(|(mut fields, own_time)| {
        let clean =
            crate::event::sort_dedup_unseen(&mut fields, &mut seen.marks) && seen.timestamps <= 1;
        (fields, own_time, clean)
    });
    match first {
        Ok((fields, own_time, true)) => Ok((fields, own_time)),
        // A name came twice, or the event is refused. Where an object repeats a key, the
        // value model decides (each key once, its last value where it first occurs), as on
        // every other path; otherwise this walk has.
        _ if repeats_a_key(data) => {
            let parsed = simd_json::value::lazy::Value::Tape(data)
                .into_value()
                .into_static();
            let (fields, own_time) = crate::event::flatten_fields(&parsed, limits)?;
            let fields = fields
                .into_iter()
                .map(|(name, v)| (Cow::Owned(name), Leaf::from(v)))
                .collect();
            Ok((fields, own_time))
        }
        first => first.map(|(fields, own_time, _)| (fields, own_time)),
    }
}

/// Whether an object in `v` (at any depth, in arrays too) holds a key twice.
fn repeats_a_key(v: TapeValue<'_, '_>) -> bool {
    if let Some(obj) = v.as_object() {
        let mut keys: Vec<&str> = obj.iter().map(|(k, _)| k).collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1]) || obj.iter().any(|(_, c)| repeats_a_key(c))
    } else if let Some(arr) = v.as_array() {
        arr.iter().any(repeats_a_key)
    } else {
        false
    }
}

/// What a walk saw besides its fields: every key of the event gives a field or shows here,
/// so a repeated key always shows as a name seen twice.
#[derive(Debug, Default)]
struct Seen<'a> {
    /// Names that gave no field: nulls, non-finite numbers, flattened objects.
    marks: Vec<Cow<'a, str>>,
    /// Top-level `timestamp` keys (counted, not marked: most events have one).
    timestamps: u32,
}

/// Flattens a tape object in document order, every occurrence of a repeated key included
/// (fields unsorted).
fn walk_tape<'a>(
    data: TapeValue<'_, 'a>,
    limits: &Limits,
    seen: &mut Seen<'a>,
) -> Result<(Fields<'a>, Option<i64>), EventError> {
    let Some(obj) = data.as_object() else {
        return Err(EventError::NotAnObject);
    };
    let mut fields = Vec::with_capacity(obj.len());
    let mut size = 0usize;
    let mut own_time = None;
    for (key, value) in obj.iter() {
        if key.is_empty() {
            return Err(EventError::EmptyFieldName);
        }
        if key == TIMESTAMP {
            seen.timestamps += 1;
            own_time = match value.value_type() {
                ValueType::String => value.as_str().and_then(crate::time::parse_time_str),
                _ => tape_f64(&value).and_then(crate::time::parse_time_number),
            };
            if own_time.is_none() {
                push_leaf(
                    &mut fields,
                    Cow::Borrowed("timestamp_raw"),
                    value,
                    limits,
                    1,
                    &mut size,
                    seen,
                )?;
            }
            continue;
        }
        if key == SAMPLERATE {
            continue;
        }
        push_leaf(
            &mut fields,
            Cow::Borrowed(key),
            value,
            limits,
            1,
            &mut size,
            seen,
        )?;
        if fields.len() > limits.max_fields_per_event {
            return Err(EventError::TooManyFields {
                count: count_leaves(&data),
                limit: limits.max_fields_per_event,
            });
        }
    }
    if size > limits.max_event_bytes {
        return Err(EventError::TooLarge {
            size,
            limit: limits.max_event_bytes,
        });
    }
    Ok((fields, own_time))
}

/// Builds the record batches of a dataset's events straight from JSON.
///
/// Columns are `timestamp`, `_samplerate`, then the schema columns the batch uses, in schema
/// order: the same batches [`events_to_batches`](crate::events_to_batches) builds.
#[derive(Debug)]
pub struct ColumnarBatch {
    schema: DatasetSchema,
    base_len: usize,
    max_columns: usize,
    /// `slot[col]`: position in `columns` of schema column `col`, or `u32::MAX`.
    slot: Vec<u32>,
    columns: Vec<SparseColumn>,
    ts: Vec<i64>,
    rates: Vec<i64>,
    /// Column of the field at each sorted position in the previous event: consecutive
    /// events of one service carry the same names, so most lookups are one compare.
    recent: Vec<(String, usize)>,
    /// Columns of the current event, by sorted position (reused between events).
    cols: Vec<usize>,
    text: String,
    capacity: usize,
    /// See [`ColumnarBatch::decoded_bytes`].
    decoded: usize,
}

impl ColumnarBatch {
    /// A batch admitting events to (a private copy of) `schema`, which may grow up to
    /// `max_columns` columns. `capacity` is the expected number of events.
    pub fn new(schema: DatasetSchema, max_columns: usize, capacity: usize) -> Self {
        let base_len = schema.len();
        Self {
            slot: vec![u32::MAX; base_len],
            schema,
            base_len,
            max_columns,
            columns: Vec::new(),
            ts: Vec::with_capacity(capacity),
            rates: Vec::with_capacity(capacity),
            recent: Vec::new(),
            cols: Vec::new(),
            text: String::new(),
            capacity,
            decoded: 0,
        }
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Columns this batch added to the schema it started from, in order.
    pub fn new_columns(&self) -> &[(String, ColumnType)] {
        &self.schema.columns()[self.base_len..]
    }

    /// Length of the schema the batch started from.
    pub fn base_len(&self) -> usize {
        self.base_len
    }

    fn column_of(&mut self, pos: usize, name: &str) -> Option<usize> {
        if let Some((n, col)) = self.recent.get(pos)
            && n == name
        {
            return Some(*col);
        }
        let (col, _) = self.schema.get(name)?;
        if let Some((n, c)) = self.recent.get_mut(pos) {
            n.clear();
            n.push_str(name);
            *c = col;
        } else if pos == self.recent.len() {
            self.recent.push((name.to_owned(), col));
        }
        Some(col)
    }

    /// Flattens the JSON object `data` into one event and adds it, or says why it was refused
    /// (the batch is then unchanged). Its time is `time_us`, else its own `timestamp` field,
    /// else `receive_us`.
    pub fn push_json(
        &mut self,
        data: TapeValue<'_, '_>,
        time_us: Option<i64>,
        receive_us: i64,
        samplerate: i64,
        limits: &Limits,
    ) -> Result<(), String> {
        let (fields, own_time) = flatten_tape(data, limits).map_err(|e| e.to_string())?;
        // Admission: every known column must accept its value; count the new ones.
        let mut cols = std::mem::take(&mut self.cols);
        cols.clear();
        let mut new_columns = 0usize;
        for (pos, (name, leaf)) in fields.iter().enumerate() {
            if name == TIMESTAMP || name == SAMPLERATE {
                self.cols = cols;
                return Err(SchemaError::Reserved(name.to_string()).to_string());
            }
            match self.column_of(pos, name) {
                Some(col) => {
                    let t = self.schema.columns()[col].1;
                    if !t.accepts(leaf.kind()) {
                        self.cols = cols;
                        return Err(SchemaError::TypeMismatch {
                            field: name.to_string(),
                            column: t.name(),
                            found: leaf.kind().name(),
                        }
                        .to_string());
                    }
                    cols.push(col);
                }
                None => {
                    new_columns += 1;
                    cols.push(usize::MAX);
                }
            }
        }
        if new_columns > 0 && self.schema.len() + new_columns > self.max_columns {
            let count = self.schema.len() + new_columns;
            self.cols = cols;
            return Err(SchemaError::TooManyColumns {
                count,
                limit: self.max_columns,
            }
            .to_string());
        }
        let row = self.ts.len();
        for ((name, leaf), col) in fields.iter().zip(cols.iter_mut()) {
            if *col == usize::MAX {
                self.schema.merge_column(name, leaf.kind());
                *col = self.schema.len() - 1;
                self.slot.push(u32::MAX);
            }
            let s = match self.slot[*col] {
                u32::MAX => {
                    let t = self.schema.columns()[*col].1;
                    self.slot[*col] = self.columns.len() as u32;
                    self.columns
                        .push(SparseColumn::new(*col, t, self.capacity.max(row + 1)));
                    self.columns.len() - 1
                }
                s => s as usize,
            };
            let c = &mut self.columns[s];
            c.rows.push(row as u32);
            append_leaf(&mut c.values, leaf, &mut self.text);
        }
        self.decoded += fields
            .iter()
            .map(|(name, leaf)| crate::budget::field_cost(name, leaf.size()))
            .sum::<usize>()
            + 2 * crate::budget::FIELD_COST;
        self.cols = cols;
        self.ts.push(time_us.or(own_time).unwrap_or(receive_us));
        self.rates.push(samplerate);
        Ok(())
    }

    /// What the events added so far are charged against a request's decoded-size budget
    /// ([`crate::budget`]).
    pub fn decoded_bytes(&self) -> usize {
        self.decoded
    }

    /// The record batches of every event added (none when there is none): one, unless the
    /// events are too sparse for it (see [`crate::chunks`]).
    pub fn finish(self) -> Result<Vec<RecordBatch>, ArrowError> {
        crate::chunks::assemble(self.schema.columns(), self.ts, self.rates, self.columns)
    }
}

/// A scalar tape value as a borrowed value (for the envelope parsers that take one), or its
/// JSON text when it is an array or object.
pub fn tape_scalar<'a>(v: TapeValue<'_, 'a>) -> Result<simd_json::BorrowedValue<'a>, String> {
    use simd_json::{BorrowedValue, StaticNode};
    Ok(match v.value_type() {
        ValueType::Null => BorrowedValue::Static(StaticNode::Null),
        ValueType::Bool => BorrowedValue::Static(StaticNode::Bool(v.as_bool().unwrap_or_default())),
        ValueType::I64 => BorrowedValue::Static(StaticNode::I64(v.as_i64().unwrap_or_default())),
        ValueType::U64 => BorrowedValue::Static(StaticNode::U64(v.as_u64().unwrap_or_default())),
        ValueType::F64 => BorrowedValue::Static(StaticNode::F64(v.as_f64().unwrap_or_default())),
        ValueType::String => {
            BorrowedValue::String(Cow::Borrowed(v.into_string().unwrap_or_default()))
        }
        _ => return Err(v.encode()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{events_to_batches, flatten_object};

    fn tape_batch(
        docs: &[&str],
        schema: DatasetSchema,
        limits: &Limits,
    ) -> (ColumnarBatch, Vec<Result<(), String>>) {
        let mut b = ColumnarBatch::new(schema, limits.max_columns_per_dataset, 4);
        let mut out = Vec::new();
        for d in docs {
            let mut buf = d.as_bytes().to_vec();
            let tape = simd_json::to_tape(&mut buf).unwrap();
            out.push(b.push_json(tape.as_value(), None, 9, 1, limits));
        }
        (b, out)
    }

    fn event_batch(
        docs: &[&str],
        mut schema: DatasetSchema,
        limits: &Limits,
    ) -> (Vec<RecordBatch>, Vec<Result<(), String>>, DatasetSchema) {
        let mut events = Vec::new();
        let mut out = Vec::new();
        for d in docs {
            let mut buf = d.as_bytes().to_vec();
            // As the server reads it: `into_static` collects objects by `insert`, so a
            // repeated key keeps its last value where it first occurs.
            let v = simd_json::to_borrowed_value(&mut buf)
                .unwrap()
                .into_static();
            let r = flatten_object(&v, None, 9, 1, limits)
                .map_err(|e| e.to_string())
                .and_then(|mut e| {
                    schema
                        .admit(&mut e, limits.max_columns_per_dataset)
                        .map_err(|e| e.to_string())?;
                    events.push(e);
                    Ok(())
                });
            out.push(r);
        }
        let batch = events_to_batches(&schema, &events).unwrap();
        (batch, out, schema)
    }

    /// The columnar path and the event path agree on outcomes, batch and schema.
    fn same(docs: &[&str], schema: DatasetSchema, limits: &Limits) {
        let (b, out) = tape_batch(docs, schema.clone(), limits);
        let new_cols = b.new_columns().to_vec();
        let batch = b.finish().unwrap();
        let (want_batch, want_out, want_schema) = event_batch(docs, schema.clone(), limits);
        assert_eq!(out, want_out);
        assert_eq!(batch, want_batch);
        assert_eq!(new_cols, want_schema.columns()[schema.len()..].to_vec());
    }

    #[test]
    fn agrees_with_the_event_path() {
        let limits = Limits::default();
        same(
            &[
                r#"{"b":1,"a":"x","n":{"m":{"k":true}},"arr":[1,{"z":2}],"f":1.5,"nul":null}"#,
                r#"{"a":2,"b":2.5,"timestamp":"2023-11-14T22:13:20Z","big":18446744073709551615}"#,
                r#"{"b":"oops"}"#,
                r#"{"timestamp":"soon","_samplerate":4,"a.b":1,"a":{"b":2},"c":false}"#,
                r#"{"":1}"#,
                r#"[1,2]"#,
                r#"{"f":3,"a":true,"deep":{"a":{"b":{"c":{"d":{"e":1}}}}}}"#,
                r#"{"e":"\u00e9\n","timestamp":1700000000.5}"#,
            ],
            DatasetSchema::new(),
            &limits,
        );
    }

    /// Repeated keys: the tape holds every occurrence, the value model decides (each key
    /// once, its last value where it first occurs); both paths give the same batch.
    #[test]
    fn repeated_keys_agree_with_the_event_path() {
        let limits = Limits {
            max_string_bytes: 8,
            max_fields_per_event: 3,
            ..Limits::default()
        };
        same(
            &[
                r#"{"k":"far too long","k":"ok","n":1}"#,
                r#"{"k":"ok","k":"far too long"}"#,
                r#"{"k":"x","k":null,"n":2}"#,
                r#"{"k":{"a":1,"b":2},"k":{"c":3}}"#,
                r#"{"o":{"a":1,"a":{"b":2}},"n":3}"#,
                r#"{"a":{"b":1},"a.b":2,"a":{"b":3}}"#,
                r#"{"timestamp":"soon","timestamp":"2023-11-14T22:13:20Z","n":4}"#,
                r#"{"n":1,"n":2,"n":3,"n":4,"m":5}"#,
                r#"{"n":"text","n":5}"#,
                r#"{"f":1.5,"f":null}"#,
                r#"{"arr":[{"x":"long long","x":1}],"n":5}"#,
                r#"{"arr":[{"x":1,"x":"long long"}],"n":6}"#,
                r#"{"d":{"e":{"f":{"g":{"h":{"i":1,"i":2}}}}}}"#,
            ],
            DatasetSchema::new(),
            &limits,
        );
        // The stored values, spelled out.
        let limits = Limits {
            max_string_bytes: 12,
            ..Limits::default()
        };
        let (b, out) = tape_batch(
            &[
                r#"{"k":"far too long","k":"ok"}"#,
                r#"{"k":"x","k":null,"n":2}"#,
                r#"{"k":{"a":1},"k":"s","a":{"b":1},"a.b":2,"a":{"b":3}}"#,
                r#"{"k":[{"x":1,"x":2}]}"#,
            ],
            DatasetSchema::new(),
            &limits,
        );
        assert_eq!(out, [Ok(()), Ok(()), Ok(()), Ok(())]);
        let batch = b.finish().unwrap().remove(0);
        use arrow::array::{Array, Int64Array, StringArray};
        let k = batch.column_by_name("k").unwrap();
        let k = k.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(k.value(0), "ok");
        assert!(k.is_null(1), "a later null removes the field");
        assert_eq!(k.value(2), "s");
        assert_eq!(k.value(3), r#"[{"x":2}]"#);
        assert!(batch.column_by_name("k.a").is_none());
        // "a" first occurs before "a.b", so the later "a.b" wins over "a"'s last value.
        let ab = batch.column_by_name("a.b").unwrap();
        let ab = ab.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ab.value(2), 2);
    }

    /// The type rules, with the stored values spelled out (the event path shares
    /// `append_leaf`, so agreement alone would not catch a coercion bug).
    #[test]
    fn values_are_stored_by_the_type_rules() {
        use arrow::array::{Array, Float64Array, StringArray};
        let limits = Limits::default();
        let (b, out) = tape_batch(
            &[
                r#"{"f":1.5,"s":"a"}"#,
                r#"{"f":2,"s":true}"#,
                r#"{"s":3}"#,
                r#"{"s":0.25}"#,
                r#"{"f":"x"}"#,
            ],
            DatasetSchema::new(),
            &limits,
        );
        assert_eq!(out[..4], [Ok(()), Ok(()), Ok(()), Ok(())]);
        assert_eq!(
            out[4],
            Err("field \"f\" is string but the column is float64".to_string())
        );
        let batch = b.finish().unwrap().remove(0);
        let f = batch
            .column_by_name("f")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!((f.value(0), f.value(1)), (1.5, 2.0));
        assert!(f.is_null(2) && f.is_null(3));
        let s = batch
            .column_by_name("s")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let got: Vec<&str> = (0..4).map(|i| s.value(i)).collect();
        assert_eq!(got, ["a", "true", "3", "0.25"]);
    }

    #[test]
    fn limits_agree() {
        let limits = Limits {
            max_fields_per_event: 3,
            max_string_bytes: 4,
            max_columns_per_dataset: 4,
            max_event_bytes: 40,
            ..Limits::default()
        };
        same(
            &[
                r#"{"a":1,"b":2,"c":{"d":3,"e":4}}"#,
                r#"{"a":"hello"}"#,
                r#"{"a":1,"b":2}"#,
                r#"{"c":1,"d":2,"e":3}"#,
                r#"{"c":1,"d":2}"#,
                r#"{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":1}"#,
            ],
            DatasetSchema::from_columns([("z".to_string(), ColumnType::Float)]),
            &limits,
        );
    }
}

//! Column types and the rules for values whose type differs from their column's.
//!
//! # Type rules (docs/ARCHITECTURE.md, "Type rules")
//! - A column's type is set by the first value stored in it: bool, int64, float64 or string.
//! - An int stored into a float column is widened to float.
//! - Any value stored into a string column is kept as its text (`true`, `12`, `1.5`).
//! - Any other mismatch (a string or float into an int column, anything but bool into a bool
//!   column, a string into a float column) rejects that one event with an error naming the
//!   field; the rest of its batch is unaffected.
//! - `timestamp` (timestamp µs, UTC) and `_samplerate` (int64) are always the first two columns.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::event::{Event, Value};
use crate::{SAMPLERATE, TIMESTAMP};

/// The stored type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Bool,
    Int,
    Float,
    String,
}

impl ColumnType {
    /// The type a value would give a new column.
    pub fn of(v: &Value) -> Self {
        match v {
            Value::Bool(_) => ColumnType::Bool,
            Value::Int(_) => ColumnType::Int,
            Value::Float(_) => ColumnType::Float,
            Value::Str(_) => ColumnType::String,
        }
    }

    /// The Arrow type of a column of this type.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Int => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::String => DataType::Utf8,
        }
    }

    /// The column type of an Arrow type, for the types Eventide stores.
    pub fn from_arrow(t: &DataType) -> Option<Self> {
        match t {
            DataType::Boolean => Some(ColumnType::Bool),
            DataType::Int64 => Some(ColumnType::Int),
            DataType::Float64 => Some(ColumnType::Float),
            DataType::Utf8 => Some(ColumnType::String),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Bool => "bool",
            ColumnType::Int => "int64",
            ColumnType::Float => "float64",
            ColumnType::String => "string",
        }
    }

    /// Whether a column of this type stores a value of type `value` (docs/ARCHITECTURE.md, "Type rules"): anything
    /// goes into a string column, an int widens into a float column, else the types match.
    pub fn accepts(self, value: ColumnType) -> bool {
        self == value
            || self == ColumnType::String
            || (self == ColumnType::Float && value == ColumnType::Int)
    }

    /// Applies the type rules: the value as it is stored in a column of this type.
    pub fn coerce(self, v: Value) -> Result<Value, Value> {
        match (self, v) {
            (ColumnType::Bool, v @ Value::Bool(_))
            | (ColumnType::Int, v @ Value::Int(_))
            | (ColumnType::Float, v @ Value::Float(_))
            | (ColumnType::String, v @ Value::Str(_)) => Ok(v),
            (ColumnType::Float, Value::Int(i)) => Ok(Value::Float(i as f64)),
            (ColumnType::String, v) => Ok(Value::Str(v.to_text())),
            (_, v) => Err(v),
        }
    }
}

/// Why an event does not fit its dataset's schema.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemaError {
    #[error("field {field:?} is {found} but the column is {column}")]
    TypeMismatch {
        field: String,
        column: &'static str,
        found: &'static str,
    },
    #[error("dataset has {count} columns, the limit is {limit}")]
    TooManyColumns { count: usize, limit: usize },
    #[error("field {0:?} is reserved")]
    Reserved(String),
}

/// The columns of one dataset, in order of first appearance (without the two fixed columns).
#[derive(Debug, Clone, Default)]
pub struct DatasetSchema {
    columns: Vec<(String, ColumnType)>,
    /// Column position by name (foldhash: looked up for every field of every event).
    index: HashMap<String, usize, foldhash::fast::RandomState>,
}

impl DatasetSchema {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a schema from columns in order.
    pub fn from_columns(columns: impl IntoIterator<Item = (String, ColumnType)>) -> Self {
        let mut s = Self::new();
        for (name, t) in columns {
            s.push(name, t);
        }
        s
    }

    fn push(&mut self, name: String, t: ColumnType) -> usize {
        let idx = self.columns.len();
        self.index.insert(name.clone(), idx);
        self.columns.push((name, t));
        idx
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    pub fn columns(&self) -> &[(String, ColumnType)] {
        &self.columns
    }

    /// Position and type of a column.
    pub fn get(&self, name: &str) -> Option<(usize, ColumnType)> {
        self.index.get(name).map(|&i| (i, self.columns[i].1))
    }

    /// Checks `event` against the schema, coerces its values per the type rules and adds the
    /// columns it introduces. On error the schema and event are left unchanged.
    pub fn admit(&mut self, event: &mut Event, max_columns: usize) -> Result<(), SchemaError> {
        let mut new_columns = 0usize;
        for (name, v) in &event.fields {
            if name == TIMESTAMP || name == SAMPLERATE {
                return Err(SchemaError::Reserved(name.clone()));
            }
            match self.get(name) {
                Some((_, t)) => {
                    if !t.accepts(ColumnType::of(v)) {
                        return Err(SchemaError::TypeMismatch {
                            field: name.clone(),
                            column: t.name(),
                            found: ColumnType::of(v).name(),
                        });
                    }
                }
                None => new_columns += 1,
            }
        }
        if new_columns > 0 && self.columns.len() + new_columns > max_columns {
            return Err(SchemaError::TooManyColumns {
                count: self.columns.len() + new_columns,
                limit: max_columns,
            });
        }
        for (name, v) in event.fields.iter_mut() {
            match self.get(name) {
                Some((_, t)) => {
                    let taken = std::mem::replace(v, Value::Bool(false));
                    // Checked above, so coercion cannot fail here.
                    *v = t.coerce(taken).unwrap_or_else(|orig| orig);
                }
                None => {
                    self.push(name.clone(), ColumnType::of(v));
                }
            }
        }
        Ok(())
    }

    /// Merges a column seen in stored data (e.g. from a Parquet segment or a log batch).
    /// Returns false when the column exists with another type.
    pub fn merge_column(&mut self, name: &str, t: ColumnType) -> bool {
        match self.get(name) {
            Some((_, existing)) => existing == t,
            None => {
                self.push(name.to_owned(), t);
                true
            }
        }
    }

    /// The Arrow schema: `timestamp`, `_samplerate`, then every column in order.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields = Vec::with_capacity(self.columns.len() + 2);
        fields.push(timestamp_field());
        fields.push(samplerate_field());
        for (name, t) in &self.columns {
            fields.push(Field::new(name, t.arrow(), true));
        }
        Arc::new(Schema::new(fields))
    }
}

/// The `timestamp` column's field.
pub fn timestamp_field() -> Field {
    Field::new(
        TIMESTAMP,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

/// The `_samplerate` column's field.
pub fn samplerate_field() -> Field {
    Field::new(SAMPLERATE, DataType::Int64, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(fields: Vec<(&str, Value)>) -> Event {
        Event {
            timestamp_us: 0,
            samplerate: 1,
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }

    #[test]
    fn first_value_sets_type_and_rules_apply() {
        let mut s = DatasetSchema::new();
        let mut e = ev(vec![
            ("d", Value::Float(1.5)),
            ("n", Value::Int(1)),
            ("s", Value::Str("a".into())),
        ]);
        s.admit(&mut e, 100).unwrap();
        assert_eq!(s.get("n"), Some((1, ColumnType::Int)));

        let mut e = ev(vec![("d", Value::Int(2)), ("s", Value::Bool(true))]);
        s.admit(&mut e, 100).unwrap();
        assert_eq!(
            e.fields,
            vec![
                ("d".into(), Value::Float(2.0)),
                ("s".into(), Value::Str("true".into()))
            ]
        );

        let mut e = ev(vec![("new", Value::Int(1)), ("n", Value::Str("x".into()))]);
        let err = s.admit(&mut e, 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field \"n\" is string but the column is int64"
        );
        assert!(s.get("new").is_none(), "a rejected event adds no column");

        let mut e = ev(vec![("a", Value::Int(1)), ("b", Value::Int(1))]);
        assert!(matches!(
            s.admit(&mut e, 4),
            Err(SchemaError::TooManyColumns { count: 5, limit: 4 })
        ));
    }
}

/// Property tests of the type rules and the log batch codec.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::batch::{decode_batch, encode_batch, events_to_batches};
    use crate::event::{Event, Value};
    use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, StringArray};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-1e12f64..1e12).prop_map(Value::Float),
            "[a-z0-9 ]{0,8}".prop_map(Value::Str),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        (
            0i64..4_000_000_000_000_000,
            1i64..1000,
            proptest::collection::btree_map("[a-d]", value(), 0..4),
        )
            .prop_map(|(t, sr, fields)| Event {
                timestamp_us: t,
                samplerate: sr,
                fields: fields.into_iter().collect(),
            })
    }

    proptest! {
        /// A column's type is its first value's; a later value is stored as the column's type
        /// (an int widened to a float, anything as text in a string column) or the event is
        /// refused whole; the batch of the admitted events survives the log codec unchanged
        /// and holds exactly the admitted values.
        #[test]
        fn type_rules_and_codec_round_trip(events in proptest::collection::vec(event(), 1..40)) {
            let mut schema = DatasetSchema::new();
            let mut first: std::collections::HashMap<String, ColumnType> = Default::default();
            let mut admitted = Vec::new();
            for original in events {
                let mut e = original.clone();
                let before = schema.clone();
                match schema.admit(&mut e, 100) {
                    Ok(()) => {
                        for ((name, v), (_, orig)) in e.fields.iter().zip(&original.fields) {
                            let t = *first.entry(name.clone()).or_insert_with(|| ColumnType::of(orig));
                            prop_assert_eq!(schema.get(name).map(|(_, t)| t), Some(t));
                            let want = match (t, orig) {
                                (ColumnType::Float, Value::Int(i)) => Value::Float(*i as f64),
                                (ColumnType::String, v) => Value::Str(v.to_text()),
                                (_, v) => v.clone(),
                            };
                            prop_assert_eq!(v, &want);
                        }
                        admitted.push(e);
                    }
                    Err(_) => {
                        // Refused: some value fits its column in no way, and nothing changed.
                        prop_assert_eq!(schema.columns(), before.columns());
                        let misfit = original.fields.iter().any(|(n, v)| {
                            before.get(n).is_some_and(|(_, t)| !t.accepts(ColumnType::of(v)))
                        });
                        prop_assert!(misfit, "refused without a misfit: {:?}", original);
                    }
                }
            }
            prop_assume!(!admitted.is_empty());
            let batch = crate::chunks::concat_by_name(
                &schema.arrow_schema(),
                &events_to_batches(&schema, &admitted).unwrap().iter().collect::<Vec<_>>(),
            )
            .unwrap();
            let back = decode_batch(&encode_batch(&batch).unwrap()).unwrap();
            prop_assert_eq!(&back, &batch);
            for (row, e) in admitted.iter().enumerate() {
                for (name, v) in &e.fields {
                    let col = back.column_by_name(name).unwrap();
                    prop_assert!(!col.is_null(row));
                    let got = match v {
                        Value::Bool(_) => Value::Bool(col.as_any().downcast_ref::<BooleanArray>().unwrap().value(row)),
                        Value::Int(_) => Value::Int(col.as_any().downcast_ref::<Int64Array>().unwrap().value(row)),
                        Value::Float(_) => Value::Float(col.as_any().downcast_ref::<Float64Array>().unwrap().value(row)),
                        Value::Str(_) => Value::Str(col.as_any().downcast_ref::<StringArray>().unwrap().value(row).to_owned()),
                    };
                    prop_assert_eq!(&got, v);
                }
            }
        }
    }
}

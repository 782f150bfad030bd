//! Events and their values, and flattening of nested JSON objects into dotted field names.

use simd_json::prelude::Writable;
use simd_json::{BorrowedValue, StaticNode};

use crate::limits::Limits;
use crate::{SAMPLERATE, TIMESTAMP};

/// One field value. JSON `null` is not a value: a null field is simply absent.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Value {
    /// The value as text, as stored in a string column.
    pub fn to_text(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
        }
    }

    fn size(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            _ => 8,
        }
    }
}

/// One wide event: its time, sample rate and flattened fields (sorted by name, unique).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event time, Unix microseconds (UTC).
    pub timestamp_us: i64,
    /// How many events this one stands for (≥ 1).
    pub samplerate: i64,
    /// Fields sorted by name; names are unique.
    pub fields: Vec<(String, Value)>,
}

/// Why one event was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("event data must be a json object")]
    NotAnObject,
    #[error("event has {count} fields, the limit is {limit}")]
    TooManyFields { count: usize, limit: usize },
    #[error("field {field:?} has a string of {len} bytes, the limit is {limit}")]
    StringTooLong {
        field: String,
        len: usize,
        limit: usize,
    },
    #[error("event is {size} bytes, the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("field name is empty")]
    EmptyFieldName,
    #[error("samplerate must be a positive integer, got {0}")]
    BadSampleRate(String),
    #[error("time {0:?} is not an RFC3339 string or a number of Unix seconds")]
    BadTime(String),
}

/// Flattens a JSON object into an [`Event`].
///
/// `time_us` is the event time decided by the caller (batch item `time`, header, …); when it
/// is `None` the object's own top-level `timestamp` field is used if it parses, else
/// `receive_us`. A `timestamp` field that does not parse is kept as `timestamp_raw`; a
/// `_samplerate` field is dropped (the sample rate comes from the envelope).
///
/// Each key of an object is taken as it occurs. The decoders hand over values whose keys are
/// unique: simd-json's `into_static` and the msgpack decoder collect objects by `insert`, so
/// a repeated key keeps its last value where it first occurs (as `JSON.parse` reads it).
pub fn flatten_object(
    data: &BorrowedValue<'_>,
    time_us: Option<i64>,
    receive_us: i64,
    samplerate: i64,
    limits: &Limits,
) -> Result<Event, EventError> {
    let (fields, own_time) = flatten_fields(data, limits)?;
    Ok(Event {
        timestamp_us: time_us.or(own_time).unwrap_or(receive_us),
        samplerate,
        fields,
    })
}

/// An event's fields (sorted by name, unique) and its own parsed `timestamp`, if any.
pub(crate) type Flattened = (Vec<(String, Value)>, Option<i64>);

/// The fields and own `timestamp` of the JSON object `data`, by the rules of
/// [`flatten_object`].
pub(crate) fn flatten_fields(
    data: &BorrowedValue<'_>,
    limits: &Limits,
) -> Result<Flattened, EventError> {
    let BorrowedValue::Object(obj) = data else {
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
            own_time = match value {
                BorrowedValue::String(s) => crate::time::parse_time_str(s),
                BorrowedValue::Static(n) => static_f64(n).and_then(crate::time::parse_time_number),
                _ => None,
            };
            if own_time.is_none() {
                push_value(
                    &mut fields,
                    "timestamp_raw".to_owned(),
                    value,
                    limits,
                    1,
                    &mut size,
                )?;
            }
            continue;
        }
        if key == SAMPLERATE {
            continue;
        }
        push_value(&mut fields, key.to_string(), value, limits, 1, &mut size)?;
        if fields.len() > limits.max_fields_per_event {
            return Err(EventError::TooManyFields {
                count: count_leaves(data),
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
    // Keep the last of duplicate names ({"a.b":1,"a":{"b":2}} both flatten to a.b).
    sort_dedup(&mut fields);
    Ok((fields, own_time))
}

impl Event {
    /// Builds an event from fields produced by a decoder other than JSON (OTLP): applies the
    /// same limits and reserved names as [`flatten_object`] (field count, string length, event
    /// size, empty names; `timestamp` → `timestamp_raw`, `_samplerate` dropped) to the fields
    /// sorted by name, where a repeated name counts once with its last value. Strings over the
    /// limit refuse the event, as in JSON.
    pub fn from_fields(
        mut fields: Vec<(String, Value)>,
        timestamp_us: i64,
        samplerate: i64,
        limits: &Limits,
    ) -> Result<Event, EventError> {
        // As in JSON: a `timestamp` field is kept as `timestamp_raw` (the event time is
        // decided by the caller) and a `_samplerate` field is dropped.
        fields.retain(|(name, _)| name != SAMPLERATE);
        for (name, _) in fields.iter_mut() {
            if name == TIMESTAMP {
                *name = "timestamp_raw".to_owned();
            }
        }
        // A repeated name counts once, with its last value: an earlier one is not checked.
        sort_dedup(&mut fields);
        if fields.len() > limits.max_fields_per_event {
            return Err(EventError::TooManyFields {
                count: fields.len(),
                limit: limits.max_fields_per_event,
            });
        }
        let mut size = 0usize;
        for (name, v) in &fields {
            if name.is_empty() {
                return Err(EventError::EmptyFieldName);
            }
            if let Value::Str(s) = v
                && s.len() > limits.max_string_bytes
            {
                return Err(EventError::StringTooLong {
                    field: name.clone(),
                    len: s.len(),
                    limit: limits.max_string_bytes,
                });
            }
            size += name.len() + v.size();
        }
        if size > limits.max_event_bytes {
            return Err(EventError::TooLarge {
                size,
                limit: limits.max_event_bytes,
            });
        }
        Ok(Event {
            timestamp_us,
            samplerate,
            fields,
        })
    }
}

/// [`sort_dedup`], and whether every name was seen once: none was dropped, and none of
/// `marks` (names that gave no field) is a field's name or appears twice.
pub(crate) fn sort_dedup_unseen<K: Ord, V>(fields: &mut Vec<(K, V)>, marks: &mut [K]) -> bool {
    let seen = fields.len();
    sort_dedup(fields);
    if fields.len() != seen {
        return false;
    }
    if marks.is_empty() {
        return true;
    }
    marks.sort_unstable();
    !marks.windows(2).any(|w| w[0] == w[1])
        && !marks
            .iter()
            .any(|m| fields.binary_search_by(|(n, _)| n.cmp(m)).is_ok())
}

/// Sorts fields by name and keeps the last of duplicate names (the event path and the
/// columnar path share it, so both resolve duplicates alike).
pub(crate) fn sort_dedup<K: Ord, V>(fields: &mut Vec<(K, V)>) {
    // Stable sort: among equal names, the later one stays later, and dedup keeps it.
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            std::mem::swap(later, earlier);
            true
        } else {
            false
        }
    });
}

fn count_leaves(v: &BorrowedValue<'_>) -> usize {
    match v {
        BorrowedValue::Object(o) => o.values().map(count_leaves).sum(),
        _ => 1,
    }
}

fn static_f64(n: &StaticNode) -> Option<f64> {
    match *n {
        StaticNode::I64(i) => Some(i as f64),
        StaticNode::U64(u) => Some(u as f64),
        StaticNode::F64(f) => Some(f),
        _ => None,
    }
}

fn push_value(
    out: &mut Vec<(String, Value)>,
    name: String,
    value: &BorrowedValue<'_>,
    limits: &Limits,
    depth: usize,
    size: &mut usize,
) -> Result<(), EventError> {
    let v = match value {
        BorrowedValue::Static(StaticNode::Null) => return Ok(()),
        BorrowedValue::Static(StaticNode::Bool(b)) => Value::Bool(*b),
        BorrowedValue::Static(StaticNode::I64(i)) => Value::Int(*i),
        BorrowedValue::Static(StaticNode::U64(u)) => match i64::try_from(*u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(*u as f64),
        },
        BorrowedValue::Static(StaticNode::F64(f)) => {
            if !f.is_finite() {
                return Ok(());
            }
            Value::Float(*f)
        }
        BorrowedValue::String(s) => Value::Str(s.to_string()),
        BorrowedValue::Object(obj) if depth < limits.flatten_depth => {
            for (k, v) in obj.iter() {
                if k.is_empty() {
                    return Err(EventError::EmptyFieldName);
                }
                push_value(out, format!("{name}.{k}"), v, limits, depth + 1, size)?;
                if out.len() > limits.max_fields_per_event {
                    // Caller reports the exact count.
                    return Ok(());
                }
            }
            return Ok(());
        }
        // Arrays and objects nested deeper than the flatten depth are stored as JSON text.
        BorrowedValue::Object(_) | BorrowedValue::Array(_) => Value::Str(value.encode()),
    };
    if let Value::Str(s) = &v
        && s.len() > limits.max_string_bytes
    {
        return Err(EventError::StringTooLong {
            field: name,
            len: s.len(),
            limit: limits.max_string_bytes,
        });
    }
    *size += name.len() + v.size();
    out.push((name, v));
    Ok(())
}

/// Reads a sample rate from an envelope value: positive integers (or integral floats); 0 is
/// taken as 1, as Honeycomb does.
pub fn parse_samplerate(v: &BorrowedValue<'_>) -> Result<i64, EventError> {
    let bad = || EventError::BadSampleRate(v.encode());
    let n = match v {
        BorrowedValue::Static(StaticNode::Null) => return Ok(1),
        BorrowedValue::Static(n) => static_f64(n).ok_or_else(bad)?,
        BorrowedValue::String(s) => s.trim().parse::<f64>().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    samplerate_from_f64(n).ok_or_else(bad)
}

/// Validates a numeric sample rate.
pub fn samplerate_from_f64(n: f64) -> Option<i64> {
    if !n.is_finite() || n < 0.0 || n.fract() != 0.0 || n > i64::MAX as f64 {
        return None;
    }
    Some((n as i64).max(1))
}

/// Reads an envelope time value: RFC3339 string or Unix seconds/milliseconds number.
pub fn parse_time_value(v: &BorrowedValue<'_>) -> Result<Option<i64>, EventError> {
    match v {
        BorrowedValue::Static(StaticNode::Null) => Ok(None),
        BorrowedValue::String(s) if s.is_empty() => Ok(None),
        BorrowedValue::String(s) => crate::time::parse_time_str(s)
            .map(Some)
            .ok_or_else(|| EventError::BadTime(s.to_string())),
        BorrowedValue::Static(n) => static_f64(n)
            .and_then(crate::time::parse_time_number)
            .map(Some)
            .ok_or_else(|| EventError::BadTime(v.encode())),
        _ => Err(EventError::BadTime(v.encode())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> BorrowedValue<'static> {
        let mut b = s.as_bytes().to_vec();
        simd_json::to_borrowed_value(&mut b).unwrap().into_static()
    }

    #[test]
    fn flattens_nested_objects_to_depth_five() {
        let v = parse(
            r#"{"http":{"status":200,"ok":true},"a":{"b":{"c":{"d":{"e":{"f":1}}}}},"tags":[1,2],"n":null,"x":1.5}"#,
        );
        let e = flatten_object(&v, Some(7), 0, 1, &Limits::default()).unwrap();
        assert_eq!(e.timestamp_us, 7);
        assert_eq!(
            e.fields,
            vec![
                ("a.b.c.d.e".into(), Value::Str(r#"{"f":1}"#.into())),
                ("http.ok".into(), Value::Bool(true)),
                ("http.status".into(), Value::Int(200)),
                ("tags".into(), Value::Str("[1,2]".into())),
                ("x".into(), Value::Float(1.5)),
            ]
        );
    }

    #[test]
    fn timestamp_field_and_duplicates() {
        let v = parse(r#"{"timestamp":"2023-11-14T22:13:20Z","a.b":1,"a":{"b":2}}"#);
        let e = flatten_object(&v, None, 0, 1, &Limits::default()).unwrap();
        assert_eq!(e.timestamp_us, 1_700_000_000_000_000);
        assert_eq!(e.fields.len(), 1);
        let v = parse(r#"{"timestamp":"soon"}"#);
        let e = flatten_object(&v, None, 42, 1, &Limits::default()).unwrap();
        assert_eq!(e.timestamp_us, 42);
        assert_eq!(
            e.fields,
            vec![("timestamp_raw".into(), Value::Str("soon".into()))]
        );
    }

    /// OTLP attributes: a repeated name counts once, with its last value, and an earlier
    /// value is not checked against the limits.
    #[test]
    fn from_fields_takes_the_last_of_a_repeated_name() {
        let limits = Limits {
            max_string_bytes: 4,
            max_fields_per_event: 2,
            ..Limits::default()
        };
        let field = |n: &str, v: Value| (n.to_owned(), v);
        let e = Event::from_fields(
            vec![
                field("k", Value::Str("too long".into())),
                field("k", Value::Str("ok".into())),
                field("n", Value::Int(1)),
                field("n", Value::Int(2)),
            ],
            7,
            1,
            &limits,
        )
        .unwrap();
        assert_eq!(
            e.fields,
            vec![
                field("k", Value::Str("ok".into())),
                field("n", Value::Int(2))
            ]
        );
        let e = Event::from_fields(
            vec![
                field("k", Value::Str("ok".into())),
                field("k", Value::Str("too long".into())),
            ],
            7,
            1,
            &limits,
        );
        assert!(matches!(e, Err(EventError::StringTooLong { .. })), "{e:?}");
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_fields_per_event: 3,
            max_string_bytes: 4,
            ..Limits::default()
        };
        let v = parse(r#"{"a":1,"b":2,"c":{"d":3,"e":4}}"#);
        assert_eq!(
            flatten_object(&v, None, 0, 1, &limits),
            Err(EventError::TooManyFields { count: 4, limit: 3 })
        );
        let v = parse(r#"{"a":"hello"}"#);
        assert!(matches!(
            flatten_object(&v, None, 0, 1, &limits),
            Err(EventError::StringTooLong { len: 5, .. })
        ));
        assert_eq!(
            flatten_object(&parse("[1]"), None, 0, 1, &limits),
            Err(EventError::NotAnObject)
        );
    }

    #[test]
    fn samplerates() {
        assert_eq!(parse_samplerate(&parse("10")), Ok(10));
        assert_eq!(parse_samplerate(&parse("0")), Ok(1));
        assert_eq!(parse_samplerate(&parse("4.0")), Ok(4));
        assert!(parse_samplerate(&parse("-2")).is_err());
        assert!(parse_samplerate(&parse("1.5")).is_err());
        assert!(parse_samplerate(&parse(r#""x""#)).is_err());
    }
}

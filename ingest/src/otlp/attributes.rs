//! OTLP values → event fields: attributes (`AnyValue`, key/value lists flattened to dotted
//! names, arrays as JSON text), the `sampleRate` attribute, ids and timestamps.

use base64::Engine as _;
use eventide_model::event::samplerate_from_f64;
use eventide_model::{Event, Limits, Value};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use crate::decode::Item;

pub(super) fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    })
}

pub(super) type Fields = Vec<(String, Value)>;

pub(super) fn push_attrs(out: &mut Fields, attrs: &[KeyValue], limits: &Limits) {
    for kv in attrs {
        if let Some(v) = &kv.value {
            push_any(out, kv.key.clone(), v, 1, limits);
        }
    }
}

/// One attribute value → fields (several for a key/value list).
pub(super) fn push_any(
    out: &mut Fields,
    name: String,
    v: &AnyValue,
    depth: usize,
    limits: &Limits,
) {
    let Some(val) = &v.value else { return };
    let value = match val {
        any_value::Value::StringValue(s) => Value::Str(s.clone()),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::Int(*i),
        any_value::Value::DoubleValue(f) if f.is_finite() => Value::Float(*f),
        any_value::Value::DoubleValue(_) => return,
        any_value::Value::BytesValue(b) => {
            Value::Str(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::KvlistValue(list) if depth < limits.flatten_depth => {
            for kv in &list.values {
                if let Some(v) = &kv.value {
                    push_any(out, format!("{name}.{}", kv.key), v, depth + 1, limits);
                }
            }
            return;
        }
        // A string-table index is meaningful only in the profiling signal.
        any_value::Value::StringValueStrindex(_) => return,
        other => Value::Str(any_to_json(other).to_string()),
    };
    out.push((name, value));
}

fn any_to_json(v: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        any_value::Value::StringValue(s) => J::from(s.as_str()),
        any_value::Value::BoolValue(b) => J::from(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(f) => {
            serde_json::Number::from_f64(*f).map_or(J::Null, J::Number)
        }
        any_value::Value::BytesValue(b) => {
            J::from(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map_or(J::Null, any_to_json))
                .collect(),
        ),
        any_value::Value::KvlistValue(l) => J::Object(
            l.values
                .iter()
                .map(|kv| {
                    let v = kv
                        .value
                        .as_ref()
                        .and_then(|x| x.value.as_ref())
                        .map_or(J::Null, any_to_json);
                    (kv.key.clone(), v)
                })
                .collect(),
        ),
        any_value::Value::StringValueStrindex(_) => J::Null,
    }
}

/// Takes the `sampleRate` attribute out of `fields` and returns the sample rate it sets.
pub(super) fn take_samplerate(fields: &mut Fields, current: i64) -> i64 {
    let mut rate = current;
    fields.retain(|(name, v)| {
        if name != "sampleRate" && name != "SampleRate" {
            return true;
        }
        let parsed = match v {
            Value::Int(i) => samplerate_from_f64(*i as f64),
            Value::Float(f) => samplerate_from_f64(*f),
            Value::Str(s) => s.trim().parse::<f64>().ok().and_then(samplerate_from_f64),
            Value::Bool(_) => None,
        };
        if let Some(r) = parsed {
            rate = r;
        }
        false
    });
    rate
}

pub(super) fn nanos_to_micros(ns: u64) -> Option<i64> {
    (ns > 0).then(|| i64::try_from(ns / 1000).unwrap_or(i64::MAX))
}

pub(super) fn id_hex(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty() && bytes.iter().any(|b| *b != 0)).then(|| hex::encode(bytes))
}

pub(super) fn finish(fields: Fields, ts: i64, samplerate: i64, limits: &Limits) -> Item {
    Event::from_fields(fields, ts, samplerate, limits).map_err(|e| e.to_string())
}

//! The decoded-size budget of OTLP requests: what spans, log records and the resource and
//! scope attributes copied into each are charged, and the 413 when they are over it.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use super::attributes::Fields;
use crate::error::ApiError;

/// What the 413 of an OTLP request says made it large.
pub(super) const COPIED: &str =
    ", or smaller resource and scope attributes (OTLP copies them into every span and log record)";

pub(super) fn too_large(e: eventide_model::budget::BudgetExceeded) -> ApiError {
    ApiError::TooLarge(e.to_string())
}

/// What `fields` are charged against the decoded-size budget.
pub(super) fn fields_cost(fields: &Fields) -> usize {
    fields
        .iter()
        .map(|(n, v)| eventide_model::budget::field_cost(n, eventide_model::budget::value_bytes(v)))
        .sum()
}

/// What attributes are charged, before they are decoded (their keys and encoded values).
pub(super) fn attrs_cost(attrs: &[KeyValue]) -> usize {
    attrs
        .iter()
        .map(|kv| {
            eventide_model::budget::field_cost(&kv.key, kv.value.as_ref().map_or(0, any_cost))
        })
        .sum()
}

/// What one attribute value takes decoded, about.
pub(super) fn any_cost(v: &AnyValue) -> usize {
    v.value.as_ref().map_or(0, |v| match v {
        any_value::Value::StringValue(s) => s.len(),
        any_value::Value::BytesValue(b) => b.len() * 4 / 3 + 4,
        any_value::Value::ArrayValue(a) => a.values.iter().map(any_cost).sum::<usize>() + 2,
        any_value::Value::KvlistValue(l) => attrs_cost(&l.values),
        _ => 8,
    })
}

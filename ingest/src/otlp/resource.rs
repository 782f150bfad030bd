//! What a resource gives its items: the dataset (`service.name`, or the
//! `X-Honeycomb-Dataset` override) and the fields of its resource and scope attributes.

use eventide_model::{Limits, Value};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::UNKNOWN_SERVICE;
use super::attributes::{Fields, push_attrs, string_attr};

/// The dataset for a resource: the override, else `service.name` made into a valid name.
pub(super) fn dataset_for(resource: Option<&Resource>, dataset_override: Option<&str>) -> String {
    let raw = match dataset_override {
        Some(d) => d.trim(),
        None => {
            let service = resource
                .and_then(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or("")
                .trim();
            // SDKs default to `unknown_service:<process name>`.
            if service.starts_with(UNKNOWN_SERVICE) {
                ""
            } else {
                service
            }
        }
    };
    if raw.is_empty() {
        return UNKNOWN_SERVICE.to_owned();
    }
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(eventide_model::dataset::MAX_DATASET_NAME)
        .collect();
    name
}

pub(super) fn resource_fields(resource: Option<&Resource>, limits: &Limits) -> Fields {
    let mut out = Fields::new();
    if let Some(r) = resource {
        push_attrs(&mut out, &r.attributes, limits);
    }
    out
}

pub(super) fn scope_fields(
    scope: Option<&InstrumentationScope>,
    out: &mut Fields,
    limits: &Limits,
) {
    let Some(scope) = scope else { return };
    if !scope.name.is_empty() {
        out.push(("library.name".into(), Value::Str(scope.name.clone())));
    }
    if !scope.version.is_empty() {
        out.push(("library.version".into(), Value::Str(scope.version.clone())));
    }
    push_attrs(out, &scope.attributes, limits);
}

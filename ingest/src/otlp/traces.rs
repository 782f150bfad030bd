//! Traces: an OTLP trace export request → one event per span, plus one per span event and
//! per link, grouped by dataset.

use eventide_model::budget::DecodeBudget;
use eventide_model::{Limits, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::attributes::{
    Fields, finish, id_hex, nanos_to_micros, push_any, push_attrs, take_samplerate,
};
use super::budget::{COPIED, attrs_cost, fields_cost, too_large};
use super::request::{Encoding, decode_request};
use super::resource::{dataset_for, resource_fields, scope_fields};
use crate::decode::{Group, Groups};
use crate::error::ApiError;

/// Decodes an OTLP trace export request into events grouped by dataset.
pub fn decode_traces(
    body: &[u8],
    enc: Encoding,
    dataset_override: Option<&str>,
    receive_us: i64,
    limits: &Limits,
) -> Result<Groups, ApiError> {
    let req: ExportTraceServiceRequest = decode_request(body, enc, "ExportTraceServiceRequest")?;
    let budget = DecodeBudget::for_body(body.len(), limits);
    let mut groups = Groups::new();
    for rs in &req.resource_spans {
        let base = resource_fields(rs.resource.as_ref(), limits);
        let dataset = dataset_for(rs.resource.as_ref(), dataset_override);
        let group = groups.entry(dataset).or_default();
        for ss in &rs.scope_spans {
            let mut scope_base = base.clone();
            scope_fields(ss.scope.as_ref(), &mut scope_base, limits);
            let base_cost = fields_cost(&scope_base);
            for span in &ss.spans {
                // Charged before the copy is made: a resource's attributes are copied into
                // every span, and that is what a small body can multiply.
                budget
                    .charge(base_cost + attrs_cost(&span.attributes), COPIED)
                    .map_err(too_large)?;
                span_events(span, &scope_base, receive_us, limits, group);
            }
        }
    }
    Ok(groups)
}

fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// A span → its own event plus one per span event and link.
fn span_events(span: &Span, base: &Fields, receive_us: i64, limits: &Limits, group: &mut Group) {
    let trace_id = id_hex(&span.trace_id);
    let span_id = id_hex(&span.span_id);
    let start_us = nanos_to_micros(span.start_time_unix_nano).unwrap_or(receive_us);
    let mut fields = base.clone();
    push_attrs(&mut fields, &span.attributes, limits);
    let samplerate = take_samplerate(&mut fields, 1);
    // Honeycomb copies the first exception's details onto the span.
    if let Some(exc) = span.events.iter().find(|e| e.name == "exception") {
        for kv in &exc.attributes {
            if kv.key.starts_with("exception.")
                && let Some(v) = &kv.value
            {
                push_any(&mut fields, kv.key.clone(), v, 1, limits);
            }
        }
    }
    if let Some(t) = &trace_id {
        fields.push(("trace.trace_id".into(), Value::Str(t.clone())));
    }
    if let Some(s) = &span_id {
        fields.push(("trace.span_id".into(), Value::Str(s.clone())));
    }
    if let Some(p) = id_hex(&span.parent_span_id) {
        fields.push(("trace.parent_id".into(), Value::Str(p)));
    }
    fields.push(("name".into(), Value::Str(span.name.clone())));
    fields.push((
        "span.kind".into(),
        Value::Str(span_kind_name(span.kind).into()),
    ));
    if span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0 {
        let ns = span.end_time_unix_nano - span.start_time_unix_nano;
        fields.push(("duration_ms".into(), Value::Float(ns as f64 / 1e6)));
    }
    let (code, message) = span
        .status
        .as_ref()
        .map_or((0, ""), |s| (s.code, s.message.as_str()));
    fields.push(("status_code".into(), Value::Int(i64::from(code))));
    if !message.is_empty() {
        fields.push(("status_message".into(), Value::Str(message.to_owned())));
    }
    fields.push(("error".into(), Value::Bool(code == 2)));
    fields.push((
        "span.num_events".into(),
        Value::Int(span.events.len() as i64),
    ));
    fields.push(("span.num_links".into(), Value::Int(span.links.len() as i64)));
    fields.push(("meta.signal_type".into(), Value::Str("trace".into())));
    group.push(finish(fields, start_us, samplerate, limits), true);

    let annotation = |kind: &str| {
        let mut f = base.clone();
        // A resource-level sampleRate applies through `samplerate`, not as a field.
        take_samplerate(&mut f, samplerate);
        if let Some(t) = &trace_id {
            f.push(("trace.trace_id".into(), Value::Str(t.clone())));
        }
        if let Some(s) = &span_id {
            f.push(("trace.parent_id".into(), Value::Str(s.clone())));
        }
        f.push(("parent_name".into(), Value::Str(span.name.clone())));
        f.push(("meta.annotation_type".into(), Value::Str(kind.into())));
        f.push(("meta.signal_type".into(), Value::Str("trace".into())));
        f
    };
    for ev in &span.events {
        let mut f = annotation("span_event");
        push_attrs(&mut f, &ev.attributes, limits);
        let sr = take_samplerate(&mut f, samplerate);
        f.push(("name".into(), Value::Str(ev.name.clone())));
        let ts = nanos_to_micros(ev.time_unix_nano).unwrap_or(start_us);
        group.push(finish(f, ts, sr, limits), false);
    }
    for link in &span.links {
        let mut f = annotation("link");
        push_attrs(&mut f, &link.attributes, limits);
        let sr = take_samplerate(&mut f, samplerate);
        if let Some(t) = id_hex(&link.trace_id) {
            f.push(("trace.link.trace_id".into(), Value::Str(t)));
        }
        if let Some(s) = id_hex(&link.span_id) {
            f.push(("trace.link.span_id".into(), Value::Str(s)));
        }
        group.push(finish(f, start_us, sr, limits), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::fixtures::{field, kv, request, s};
    use prost::Message as _;

    #[test]
    fn spans_map_like_honeycomb() {
        let body = request().encode_to_vec();
        let limits = Limits::default();
        let groups = decode_traces(&body, Encoding::Protobuf, None, 5, &limits).unwrap();
        let group = &groups["checkout_api"];
        assert_eq!(group.primary, vec![true, false, false]);
        let span = group.items[0].as_ref().unwrap();
        assert_eq!(span.samplerate, 10);
        assert_eq!(span.timestamp_us, 1_700_000_000_000_000);
        assert_eq!(
            field(span, "trace.trace_id"),
            Some(&Value::Str("ab".repeat(16)))
        );
        assert_eq!(
            field(span, "trace.span_id"),
            Some(&Value::Str("0101010101010101".into()))
        );
        assert_eq!(field(span, "trace.parent_id"), None);
        assert_eq!(field(span, "duration_ms"), Some(&Value::Float(250.0)));
        assert_eq!(field(span, "span.kind"), Some(&Value::Str("server".into())));
        assert_eq!(field(span, "error"), Some(&Value::Bool(true)));
        assert_eq!(field(span, "status_code"), Some(&Value::Int(2)));
        assert_eq!(field(span, "http.status_code"), Some(&Value::Int(500)));
        assert_eq!(field(span, "user.id"), Some(&Value::Int(42)));
        assert_eq!(field(span, "flags"), Some(&Value::Str(r#"["a"]"#.into())));
        assert_eq!(
            field(span, "exception.message"),
            Some(&Value::Str("card declined".into()))
        );
        assert_eq!(field(span, "sampleRate"), None);
        // Reserved names behave as in JSON events.
        assert_eq!(
            field(span, "timestamp_raw"),
            Some(&Value::Str("not the event time".into()))
        );
        assert_eq!(field(span, "_samplerate"), None);
        assert_eq!(
            field(span, "library.name"),
            Some(&Value::Str("tracer".into()))
        );
        let ev = group.items[1].as_ref().unwrap();
        assert_eq!(ev.timestamp_us, 1_700_000_000_100_000);
        assert_eq!(ev.samplerate, 10);
        assert_eq!(
            field(ev, "meta.annotation_type"),
            Some(&Value::Str("span_event".into()))
        );
        assert_eq!(
            field(ev, "trace.parent_id"),
            Some(&Value::Str("0101010101010101".into()))
        );
        assert_eq!(
            field(ev, "parent_name"),
            Some(&Value::Str("GET /checkout".into()))
        );
        let link = group.items[2].as_ref().unwrap();
        assert_eq!(
            field(link, "trace.link.trace_id"),
            Some(&Value::Str("cd".repeat(16)))
        );
    }

    #[test]
    fn an_oversized_attribute_rejects_only_its_span() {
        let limits = Limits {
            max_string_bytes: 40,
            ..Limits::default()
        };
        let mut req = request();
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        let mut big = spans[0].clone();
        big.attributes.push(kv("blob", s(&"x".repeat(41))));
        big.events.clear();
        big.links.clear();
        spans.push(big);
        let groups = decode_traces(
            &req.encode_to_vec(),
            Encoding::Protobuf,
            Some("override"),
            5,
            &limits,
        )
        .unwrap();
        let g = &groups["override"];
        assert_eq!(g.items.len(), 4);
        assert!(g.items[0].is_ok());
        let err = g.items[3].as_ref().unwrap_err();
        assert!(err.contains("blob"), "{err}");
    }
}

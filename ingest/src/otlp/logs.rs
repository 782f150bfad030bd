//! Logs: an OTLP logs export request → one event per log record, grouped by dataset.

use eventide_model::budget::DecodeBudget;
use eventide_model::{Limits, Value};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::attributes::{
    Fields, finish, id_hex, nanos_to_micros, push_any, push_attrs, take_samplerate,
};
use super::budget::{COPIED, any_cost, attrs_cost, fields_cost, too_large};
use super::request::{Encoding, decode_request};
use super::resource::{dataset_for, resource_fields, scope_fields};
use crate::decode::{Groups, Item};
use crate::error::ApiError;

/// Decodes an OTLP logs export request into events grouped by dataset.
pub fn decode_logs(
    body: &[u8],
    enc: Encoding,
    dataset_override: Option<&str>,
    receive_us: i64,
    limits: &Limits,
) -> Result<Groups, ApiError> {
    let req: ExportLogsServiceRequest = decode_request(body, enc, "ExportLogsServiceRequest")?;
    let budget = DecodeBudget::for_body(body.len(), limits);
    let mut groups = Groups::new();
    for rl in &req.resource_logs {
        let base = resource_fields(rl.resource.as_ref(), limits);
        let dataset = dataset_for(rl.resource.as_ref(), dataset_override);
        let group = groups.entry(dataset).or_default();
        for sl in &rl.scope_logs {
            let mut scope_base = base.clone();
            scope_fields(sl.scope.as_ref(), &mut scope_base, limits);
            let base_cost = fields_cost(&scope_base);
            for rec in &sl.log_records {
                let body_cost = rec.body.as_ref().map_or(0, any_cost);
                budget
                    .charge(base_cost + attrs_cost(&rec.attributes) + body_cost, COPIED)
                    .map_err(too_large)?;
                group.push(log_event(rec, &scope_base, receive_us, limits), true);
            }
        }
    }
    Ok(groups)
}

/// Lowercase severity from the text, else from the number's range (OTLP's 1–24 scale).
fn severity_name(text: &str, number: i32) -> Option<String> {
    if !text.is_empty() {
        return Some(text.to_ascii_lowercase());
    }
    let name = match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => return None,
    };
    Some(name.into())
}

fn log_event(rec: &LogRecord, base: &Fields, receive_us: i64, limits: &Limits) -> Item {
    let mut fields = base.clone();
    push_attrs(&mut fields, &rec.attributes, limits);
    let samplerate = take_samplerate(&mut fields, 1);
    if let Some(body) = &rec.body {
        match &body.value {
            Some(any_value::Value::StringValue(s)) => {
                fields.push(("body".into(), Value::Str(s.clone())));
            }
            Some(_) => push_any(&mut fields, "body".into(), body, 1, limits),
            None => {}
        }
    }
    if !rec.severity_text.is_empty() {
        fields.push((
            "severity_text".into(),
            Value::Str(rec.severity_text.clone()),
        ));
    }
    if rec.severity_number != 0 {
        fields.push((
            "severity_number".into(),
            Value::Int(i64::from(rec.severity_number)),
        ));
    }
    if let Some(sev) = severity_name(&rec.severity_text, rec.severity_number) {
        fields.push(("severity".into(), Value::Str(sev)));
    }
    if let Some(t) = id_hex(&rec.trace_id) {
        fields.push(("trace.trace_id".into(), Value::Str(t)));
    }
    if let Some(s) = id_hex(&rec.span_id) {
        fields.push(("trace.span_id".into(), Value::Str(s)));
    }
    if !rec.event_name.is_empty() {
        fields.push(("event_name".into(), Value::Str(rec.event_name.clone())));
    }
    fields.push(("meta.signal_type".into(), Value::Str("log".into())));
    let ts = nanos_to_micros(rec.time_unix_nano)
        .or_else(|| nanos_to_micros(rec.observed_time_unix_nano))
        .unwrap_or(receive_us);
    finish(fields, ts, samplerate, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::fixtures::{field, kv, s};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message as _;

    #[test]
    fn logs_map_severity_body_and_ids() {
        use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("payments"))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            observed_time_unix_nano: 1_700_000_000_000_000_000,
                            severity_number: 17,
                            body: Some(AnyValue {
                                value: Some(s("payment failed")),
                            }),
                            trace_id: vec![7; 16],
                            span_id: vec![8; 8],
                            ..Default::default()
                        },
                        LogRecord {
                            severity_text: "WARN".into(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::KvlistValue(KeyValueList {
                                    values: vec![kv("msg", s("slow"))],
                                })),
                            }),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        };
        let limits = Limits::default();
        let groups =
            decode_logs(&req.encode_to_vec(), Encoding::Protobuf, None, 99, &limits).unwrap();
        let g = &groups["payments"];
        let a = g.items[0].as_ref().unwrap();
        assert_eq!(a.timestamp_us, 1_700_000_000_000_000);
        assert_eq!(field(a, "severity"), Some(&Value::Str("error".into())));
        assert_eq!(field(a, "severity_number"), Some(&Value::Int(17)));
        assert_eq!(field(a, "body"), Some(&Value::Str("payment failed".into())));
        assert_eq!(
            field(a, "trace.trace_id"),
            Some(&Value::Str("07".repeat(16)))
        );
        let b = g.items[1].as_ref().unwrap();
        assert_eq!(b.timestamp_us, 99);
        assert_eq!(field(b, "body.msg"), Some(&Value::Str("slow".into())));
        assert_eq!(field(b, "severity"), Some(&Value::Str("warn".into())));
    }
}

//! Test fixtures shared by the OTLP unit tests: attribute builders, and a trace export
//! request whose span has attributes of every kind, an exception event and a link.

use eventide_model::{Event, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event as SpanEvent, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

pub(super) fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub(super) fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

pub(super) fn field<'a>(e: &'a Event, name: &str) -> Option<&'a Value> {
    e.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

pub(super) fn request() -> ExportTraceServiceRequest {
    let root = Span {
        trace_id: vec![0xab; 16],
        span_id: vec![1; 8],
        name: "GET /checkout".into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        attributes: vec![
            kv("http.status_code", any_value::Value::IntValue(500)),
            kv("sampleRate", any_value::Value::IntValue(10)),
            kv("timestamp", s("not the event time")),
            kv("_samplerate", any_value::Value::IntValue(99)),
            kv(
                "flags",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(s("a")),
                    }],
                }),
            ),
            kv(
                "user",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("id", any_value::Value::IntValue(42))],
                }),
            ),
        ],
        events: vec![SpanEvent {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "exception".into(),
            attributes: vec![kv("exception.message", s("card declined"))],
            dropped_attributes_count: 0,
        }],
        links: vec![Link {
            trace_id: vec![0xcd; 16],
            span_id: vec![2; 8],
            ..Default::default()
        }],
        status: Some(Status {
            message: "boom".into(),
            code: 2,
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("checkout api"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tracer".into(),
                    ..Default::default()
                }),
                spans: vec![root],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

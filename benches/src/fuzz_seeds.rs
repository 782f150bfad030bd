//! `eventide-bench fuzz-seeds`: writes the seed corpora of the fuzz targets into
//! `OUT/<target>/` (`fuzz/seeds`, committed; run again after changing a format). It lives
//! here rather than in `fuzz/`, whose binaries are all built with libFuzzer's instrumentation.

use std::fs;
use std::io::Write;
use std::path::Path;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::Event, span::Link,
};
use prost::Message;
use serde_json::{Value, json};

fn write(out: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = out.join(target);
    fs::create_dir_all(&dir).expect("create seed dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn events() -> Vec<Value> {
    vec![
        json!({"service.name": "checkout", "endpoint": "/cart", "status": 200, "duration_ms": 12.5,
               "error": false, "user_id": "u-123", "trace": {"trace_id": "abc", "span_id": "d1"}}),
        json!({"service": {"name": "search", "version": "v2"}, "status": 503, "duration_ms": 1e3,
               "tags": ["a", "b"], "flags": {"new_ui": true, "beta": null}, "big": 1.7976931348623157e308}),
        json!({"status": "not-a-number", "duration_ms": -0.0, "nested": {"a": {"b": {"c": {"d": {"e": 1}}}}},
               "unicode": "héllo \u{1F600} \"quoted\"", "empty": {}, "n": -9223372036854775808i64}),
    ]
}

fn honeycomb_batch() -> Value {
    let mut items: Vec<Value> = events()
        .into_iter()
        .map(|data| json!({"data": data, "samplerate": 10, "time": "2026-11-23T10:00:00.123456Z"}))
        .collect();
    items.push(json!({"data": {"status": 200}, "time": 1_763_892_000}));
    items.push(json!({"data": "not an object"}));
    items.push(json!({"samplerate": 0}));
    Value::Array(items)
}

fn to_msgpack(v: &Value) -> rmpv::Value {
    match v {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => rmpv::Value::from(i),
            (None, Some(u)) => rmpv::Value::from(u),
            _ => rmpv::Value::F64(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::Array(a) => rmpv::Value::Array(a.iter().map(to_msgpack).collect()),
        Value::Object(o) => rmpv::Value::Map(
            o.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_msgpack(v)))
                .collect(),
        ),
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource() -> Resource {
    Resource {
        attributes: vec![
            kv(
                "service.name",
                any_value::Value::StringValue("checkout".into()),
            ),
            kv(
                "service.version",
                any_value::Value::StringValue("v7".into()),
            ),
            kv("host.cpus", any_value::Value::IntValue(8)),
        ],
        ..Default::default()
    }
}

fn attrs() -> Vec<KeyValue> {
    vec![
        kv(
            "http.route",
            any_value::Value::StringValue("/cart/{id}".into()),
        ),
        kv("http.status_code", any_value::Value::IntValue(500)),
        kv("sampled", any_value::Value::BoolValue(true)),
        kv("ratio", any_value::Value::DoubleValue(0.25)),
        kv("raw", any_value::Value::BytesValue(vec![0, 159, 146, 150])),
        kv(
            "list",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::IntValue(1)),
                }],
            }),
        ),
        kv(
            "map",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", any_value::Value::StringValue("x".into()))],
            }),
        ),
        kv("SampleRate", any_value::Value::IntValue(4)),
    ]
}

fn traces() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        parent_span_id: vec![3; 8],
        name: "GET /cart".into(),
        kind: 2,
        start_time_unix_nano: 1_763_892_000_000_000_000,
        end_time_unix_nano: 1_763_892_000_250_000_000,
        attributes: attrs(),
        events: vec![Event {
            time_unix_nano: 1_763_892_000_100_000_000,
            name: "exception".into(),
            attributes: vec![kv(
                "exception.message",
                any_value::Value::StringValue("boom".into()),
            )],
            ..Default::default()
        }],
        links: vec![Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            ..Default::default()
        }],
        status: Some(Status {
            code: 2,
            message: "failed".into(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.http".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_763_892_000_000_000_000,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("payment failed".into())),
                        }),
                        attributes: attrs(),
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        ..Default::default()
                    },
                    LogRecord {
                        observed_time_unix_nano: 1_763_892_000_000_000_000,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::KvlistValue(KeyValueList {
                                values: vec![kv("k", any_value::Value::IntValue(1))],
                            })),
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn with_signal(signal: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![signal];
    out.extend_from_slice(body);
    out
}

pub fn run(out: &Path) {
    let write = |target: &str, name: &str, bytes: &[u8]| write(out, target, name, bytes);
    let batch = honeycomb_batch();
    write(
        "honeycomb_json_batch",
        "batch.json",
        batch.to_string().as_bytes(),
    );
    write("honeycomb_json_batch", "empty.json", b"[]");
    write(
        "honeycomb_json_batch",
        "conflicts.json",
        br#"[{"data":{"a":1}},{"data":{"a":"x"}},{"data":{"a":1.5}},{"data":{"a":true}},{"data":{"a":null,"b":[1,{"c":2}]}}]"#,
    );
    let mut mp = Vec::new();
    rmpv::encode::write_value(&mut mp, &to_msgpack(&batch)).expect("msgpack");
    write("honeycomb_msgpack_batch", "batch.msgpack", &mp);
    // An item whose time is the msgpack timestamp extension (type -1, 8 bytes).
    let ts = rmpv::Value::Ext(-1, {
        let mut b = Vec::new();
        b.extend_from_slice(&((123_000u64 << 34) | 1_763_892_000).to_be_bytes());
        b
    });
    let item = rmpv::Value::Array(vec![rmpv::Value::Map(vec![
        (
            "data".into(),
            rmpv::Value::Map(vec![("bin".into(), rmpv::Value::Binary(vec![0xff, 0x00]))]),
        ),
        ("time".into(), ts),
    ])]);
    let mut mp = Vec::new();
    rmpv::encode::write_value(&mut mp, &item).expect("msgpack");
    write("honeycomb_msgpack_batch", "timestamp_ext.msgpack", &mp);

    for (i, e) in events().iter().enumerate() {
        write(
            "honeycomb_event",
            &format!("event{i}.json"),
            e.to_string().as_bytes(),
        );
    }
    let mut nd = String::new();
    for e in events() {
        nd.push_str(&e.to_string());
        nd.push('\n');
    }
    nd.push_str("{\"broken\": \n\r\n  \n[1,2]\n");
    write("ndjson", "lines.ndjson", nd.as_bytes());

    let mut udp = String::new();
    for e in events() {
        udp.push_str(&json!({"dataset": "api", "data": e, "samplerate": 2}).to_string());
        udp.push('\n');
    }
    udp.push_str("{\"dataset\": \"../etc\", \"data\": {}}\n{\"data\": {}}\nnot json\n");
    write("udp_lines", "lines.txt", udp.as_bytes());

    write(
        "otlp_protobuf",
        "traces.pb",
        &with_signal(0, &traces().encode_to_vec()),
    );
    write(
        "otlp_protobuf",
        "logs.pb",
        &with_signal(1, &logs().encode_to_vec()),
    );
    let tj = serde_json::to_vec(&traces()).expect("json");
    let lj = serde_json::to_vec(&logs()).expect("json");
    write("otlp_json", "traces.json", &with_signal(0, &tj));
    write("otlp_json", "logs.json", &with_signal(1, &lj));
    // The lenient OTLP/JSON forms clients send: base64 ids, enum names, string numbers.
    let lenient = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},"scopeSpans":[{"spans":[{"traceId":"AQEBAQEBAQEBAQEBAQEBAQ==","spanId":"AgICAgICAgI=","name":"x","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1763892000000000000","endTimeUnixNano":"1763892000500000000","status":{"code":"STATUS_CODE_ERROR"},"attributes":[{"key":"n","value":{"intValue":"42"}}]}]}]}]}"#;
    write("otlp_json", "lenient.json", &with_signal(0, lenient));

    let specs = [
        json!({"time_range": 7200, "calculations": [{"op": "COUNT"}, {"op": "P99", "column": "duration_ms"},
               {"op": "HEATMAP", "column": "duration_ms"}], "breakdowns": ["service.name"],
               "filters": [{"column": "status", "op": ">=", "value": 500}], "orders": [{"op": "COUNT", "order": "descending"}],
               "limit": 10, "granularity": 60}),
        json!({"start_time": 1_763_890_000, "end_time": 1_763_892_000, "calculations": [{"op": "COUNT_DISTINCT", "column": "we\"ird'; --"}],
               "filters": [{"column": "service.name", "op": "in", "value": ["a", "b'c"]},
                           {"column": "we\"ird'; --", "op": "contains", "value": "%_'\\"},
                           {"column": "error", "op": "exists"}], "filter_combination": "OR",
               "havings": [{"calculate_op": "COUNT", "op": ">", "value": 1.5}]}),
        json!({"calculations": [{"op": "RATE_AVG", "column": "duration_ms"}, {"op": "CONCURRENCY"}],
               "filters": [{"column": "duration_ms", "op": "between", "value": [1, 2]},
                           {"column": "service.name", "op": "starts-with", "value": "chk"}],
               "orders": [{"column": "service.name"}], "breakdowns": ["service.name", "status"]}),
    ];
    for (i, s) in specs.iter().enumerate() {
        write(
            "query_spec",
            &format!("spec{i}.json"),
            s.to_string().as_bytes(),
        );
    }

    let mut log = Vec::new();
    log.extend_from_slice(&eventide_eventlog::frame_record(0, "api", b"payload one"));
    log.extend_from_slice(&eventide_eventlog::frame_record(1, "checkout", &[0u8; 64]));
    write("log_records", "two.log", &log);
    let whole = eventide_eventlog::frame_record(2, "x", b"torn");
    log.extend_from_slice(&whole[..whole.len() - 3]);
    write("log_records", "torn.log", &log);

    let body = batch.to_string();
    let mut gz = flate2::write::GzEncoder::new(vec![0u8], flate2::Compression::default());
    gz.write_all(body.as_bytes()).expect("gzip");
    write("body_decompress", "batch.gz", &gz.finish().expect("gzip"));
    let mut zs = vec![1u8];
    zs.extend_from_slice(&zstd::encode_all(body.as_bytes(), 3).expect("zstd"));
    write("body_decompress", "batch.zst", &zs);
    println!("seeds written under {}", out.display());
}

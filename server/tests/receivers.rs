//! The receivers beyond the Honeycomb JSON batch: OTLP/HTTP error and partial-success paths,
//! the UDP receiver with its counted rejections, and libhoney-go's wire format (msgpack with
//! the timestamp extension, zstd) built byte for byte.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{INGEST_KEY, QUERY_KEY, Server};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value as Json, json};

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn span(i: u8, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![0x11; 16],
        span_id: vec![i; 8],
        name: format!("op-{i}"),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i) * 1_000_000,
        end_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i) * 1_000_000 + 2_500_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn otlp_errors_partial_success_and_dataset_override() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]).await;
    let otlp = |path: &str, ct: &str, body: Vec<u8>| {
        s.post(path, INGEST_KEY)
            .header("content-type", ct)
            .body(body)
    };

    // Unknown content type: 415 with a JSON error naming it.
    let r = otlp("/v1/traces", "text/plain", b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let b: Json = r.json().await.unwrap();
    assert!(b["error"].as_str().unwrap().contains("text/plain"), "{b}");
    // Malformed protobuf and JSON: 400 naming the message.
    let r = otlp("/v1/traces", "application/x-protobuf", vec![0xff; 9])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Json = r.json().await.unwrap();
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("malformed OTLP protobuf ExportTraceServiceRequest"),
        "{b}"
    );
    let r = otlp(
        "/v1/logs",
        "application/json",
        b"{\"resourceLogs\": 7}".to_vec(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // No key: 401.
    let r = s
        .client
        .post(format!("{}/v1/traces", s.url))
        .header("content-type", "application/x-protobuf")
        .body(traces("x", vec![]).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A query key cannot ingest.
    let r = s
        .post("/v1/traces", QUERY_KEY)
        .header("content-type", "application/x-protobuf")
        .body(traces("x", vec![]).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // One span over the string limit (64 KB): it alone is rejected, reported in partialSuccess.
    let big = "x".repeat(70_000);
    let req = traces(
        "partial",
        vec![
            span(1, vec![kv("k", "a")]),
            span(2, vec![kv("blob", &big)]),
            span(3, vec![kv("k", "c")]),
        ],
    );
    let r = otlp(
        "/v1/traces",
        "application/x-protobuf",
        gzip(&req.encode_to_vec()),
    )
    .header("content-encoding", "gzip")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/x-protobuf"
    );
    let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    let partial = resp.partial_success.expect("partial success reported");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("blob"), "{partial:?}");
    assert_eq!(s.wait_count("partial", 2).await, 2);
    let rows = s
        .rows("SELECT name, k, duration_ms, \"trace.span_id\" FROM partial ORDER BY name")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![
                json!("op-1"),
                json!("a"),
                json!(2.5),
                json!("0101010101010101")
            ],
            vec![
                json!("op-3"),
                json!("c"),
                json!(2.5),
                json!("0303030303030303")
            ],
        ]
    );

    // JSON in, JSON out; X-Honeycomb-Dataset overrides service.name.
    let body = serde_json::to_vec(&traces("ignored", vec![span(4, vec![])])).unwrap();
    let r = otlp("/v1/traces", "application/json", body)
        .header("x-honeycomb-dataset", "chosen")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(r.json::<Json>().await.unwrap(), json!({}));
    assert_eq!(s.wait_count("chosen", 1).await, 1);

    // An empty export is valid and stores nothing.
    let r = otlp(
        "/v1/logs",
        "application/x-protobuf",
        ExportLogsServiceRequest::default().encode_to_vec(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // The server is still healthy after all of it.
    let r = s
        .client
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn udp_lines_are_stored_and_bad_lines_counted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &["--udp", "127.0.0.1:0"], &[]).await;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(s.udp.unwrap()).unwrap();
    // 100 datagrams of 10 good lines, one of which also carries 4 bad lines.
    for d in 0..100u64 {
        let mut dgram = String::new();
        for j in 0..10u64 {
            let id = d * 10 + j;
            dgram.push_str(
                &json!({"dataset": "udp", "data": {"id": id, "n": id % 7}, "samplerate": 2})
                    .to_string(),
            );
            dgram.push('\n');
        }
        if d == 50 {
            dgram.push_str("{not json\n");
            dgram.push_str("{\"data\": {\"id\": -1}}\n"); // no dataset
            dgram.push_str("{\"dataset\": \"bad name!\", \"data\": {}}\n");
            dgram.push_str("{\"dataset\": \"udp\", \"data\": {\"n\": \"seven\"}}\n"); // type rule
        }
        sock.send(dgram.as_bytes()).unwrap();
        if d % 10 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert_eq!(s.wait_count("udp", 1000).await, 1000);
    let r = s
        .rows("SELECT count(DISTINCT id), sum(id), sum(_samplerate), min(id) FROM udp")
        .await;
    assert_eq!(
        r[0],
        vec![json!(1000), json!(499_500), json!(2000), json!(0)]
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.metric("eventide_udp_lines_rejected_total").await < 4.0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.metric("eventide_udp_datagrams_total").await as u64, 100);
    assert_eq!(
        s.metric("eventide_udp_lines_accepted_total").await as u64,
        1000
    );
    assert_eq!(
        s.metric("eventide_udp_lines_rejected_total").await as u64,
        4
    );
    assert_eq!(s.metric("eventide_udp_lines_dropped_total").await as u64, 0);
}

/// msgpack builders, written out so the bytes are exactly what libhoney-go's encoder
/// (vmihailenco/msgpack v5, compact ints) produces for a batch.
mod mp {
    pub fn fixmap(n: u8) -> Vec<u8> {
        vec![0x80 | n]
    }
    pub fn fixarray(n: u8) -> Vec<u8> {
        vec![0x90 | n]
    }
    pub fn str(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = if b.len() < 32 {
            vec![0xa0 | b.len() as u8]
        } else {
            vec![0xd9, b.len() as u8]
        };
        out.extend_from_slice(b);
        out
    }
    pub fn uint(v: u64) -> Vec<u8> {
        match v {
            0..=0x7f => vec![v as u8],
            0x80..=0xff => vec![0xcc, v as u8],
            0x100..=0xffff => {
                let mut o = vec![0xcd];
                o.extend_from_slice(&(v as u16).to_be_bytes());
                o
            }
            _ => {
                let mut o = vec![0xcf];
                o.extend_from_slice(&v.to_be_bytes());
                o
            }
        }
    }
    pub fn neg(v: i8) -> Vec<u8> {
        assert!(v < -32);
        vec![0xd0, v as u8]
    }
    pub fn f64(v: f64) -> Vec<u8> {
        let mut o = vec![0xcb];
        o.extend_from_slice(&v.to_be_bytes());
        o
    }
    pub fn bool(b: bool) -> Vec<u8> {
        vec![if b { 0xc3 } else { 0xc2 }]
    }
    /// The timestamp extension (type −1) in the smallest form v5 picks.
    pub fn time(secs: u64, nanos: u32) -> Vec<u8> {
        if secs >> 34 == 0 {
            let data = (u64::from(nanos) << 34) | secs;
            if data & 0xffff_ffff_0000_0000 == 0 {
                let mut o = vec![0xd6, 0xff];
                o.extend_from_slice(&(data as u32).to_be_bytes());
                o
            } else {
                let mut o = vec![0xd7, 0xff];
                o.extend_from_slice(&data.to_be_bytes());
                o
            }
        } else {
            let mut o = vec![0xc7, 12, 0xff];
            o.extend_from_slice(&nanos.to_be_bytes());
            o.extend_from_slice(&(secs as i64).to_be_bytes());
            o
        }
    }
}

#[tokio::test]
async fn libhoney_go_msgpack_with_zstd_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]).await;
    // Three events, each {"data": {...}, "samplerate": N, "time": ext(-1)}, one per timestamp
    // form (32-bit, 64-bit with nanoseconds, 96-bit past 2514).
    let times = [
        (1_700_000_000u64, 0u32, 1_700_000_000_000_000i64),
        (1_700_000_001, 123_456_789, 1_700_000_001_123_456),
        (17_179_869_184, 5_000, 17_179_869_184_000_005),
    ];
    let mut body = mp::fixarray(3);
    for (i, (secs, nanos, _)) in times.iter().enumerate() {
        body.extend(mp::fixmap(3));
        body.extend(mp::str("data"));
        body.extend(mp::fixmap(6));
        body.extend(mp::str("id"));
        body.extend(mp::uint(i as u64 * 300)); // fixint, uint8, uint16
        body.extend(mp::str("endpoint"));
        body.extend(mp::str(&format!("/api/v{i}/{}", "x".repeat(40)))); // str8
        body.extend(mp::str("duration_ms"));
        body.extend(mp::f64(1.5 * i as f64));
        body.extend(mp::str("ok"));
        body.extend(mp::bool(i != 1));
        body.extend(mp::str("delta"));
        body.extend(mp::neg(-100));
        body.extend(mp::str("http"));
        body.extend(mp::fixmap(1));
        body.extend(mp::str("status"));
        body.extend(mp::uint(200 + i as u64));
        body.extend(mp::str("samplerate"));
        body.extend(mp::uint(3));
        body.extend(mp::str("time"));
        body.extend(mp::time(*secs, *nanos));
    }
    // Spot-check the encoding against the msgpack spec's own examples.
    assert_eq!(mp::time(1_700_000_000, 0)[..2], [0xd6, 0xff]);
    assert_eq!(mp::time(1_700_000_001, 1)[..2], [0xd7, 0xff]);
    let r = s
        .post("/1/batch/go-msgpack", INGEST_KEY)
        .header("content-type", "application/msgpack")
        .header("content-encoding", "zstd")
        .body(zstd::encode_all(&body[..], 3).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Json>().await.unwrap(),
        json!([{"status": 202}, {"status": 202}, {"status": 202}])
    );
    assert_eq!(s.wait_count("\"go-msgpack\"", 3).await, 3);
    let rows = s
        .rows(
            "SELECT id, endpoint, duration_ms, ok, delta, \"http.status\", _samplerate, \
             CAST(timestamp AS BIGINT) FROM \"go-msgpack\" ORDER BY id",
        )
        .await;
    for (i, (row, (_, _, us))) in rows.iter().zip(times).enumerate() {
        assert_eq!(
            row,
            &vec![
                json!(i * 300),
                json!(format!("/api/v{i}/{}", "x".repeat(40))),
                json!(1.5 * i as f64),
                json!(i != 1),
                json!(-100),
                json!(200 + i),
                json!(3),
                json!(us),
            ]
        );
    }
}

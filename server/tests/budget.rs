//! One request's decoded size is bounded in proportion to its body, on every path: a small
//! request that would decode to gigabytes is refused whole with 413 and a JSON error naming
//! the limit, before the server's memory grows. The request that killed the server: an
//! OTLP/JSON export (gzip) whose resource has 10 attributes of 60 KiB, over 20,000 spans,
//! drove the server to 23.6 GiB and an OOM kill, because resource attributes were copied into
//! every span before any limit applied.

mod common;

use std::io::Write;

use common::{INGEST_KEY, Server};
use serde_json::{Value as Json, json};

fn traces(resource_attrs: usize, attr_bytes: usize, spans: usize) -> Vec<u8> {
    let attrs: Vec<Json> = (0..resource_attrs)
        .map(|i| json!({"key": format!("big.{i}"), "value": {"stringValue": "x".repeat(attr_bytes)}}))
        .chain(std::iter::once(json!({"key": "service.name", "value": {"stringValue": "heavy"}})))
        .collect();
    let spans: Vec<Json> = (0..spans)
        .map(|i| {
            json!({
                "traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1),
                "name": "op", "kind": 2,
                "startTimeUnixNano": "1781519400000000000", "endTimeUnixNano": "1781519400001000000",
                "attributes": [{"key": "seq", "value": {"intValue": i.to_string()}}]
            })
        })
        .collect();
    let body = json!({"resourceSpans": [{"resource": {"attributes": attrs},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&serde_json::to_vec(&body).unwrap()).unwrap();
    gz.finish().unwrap()
}

async fn post_traces(s: &Server, body: Vec<u8>) -> (u16, Json) {
    let r = s
        .post("/v1/traces", INGEST_KEY)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Json::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_otlp_resources_are_refused_before_memory_grows() {
    let dir = tempfile::tempdir().unwrap();
    // Room for the 20,000-span JSON body (about 5.6 MB decompressed).
    let s = Server::start_with(dir.path(), &["--max-body-bytes", "16000000"], &[]).await;
    let body = traces(10, 60 * 1024, 20_000);
    let compressed = body.len();
    s.reset_peak_rss();
    let before = s.peak_rss();
    let (status, reply) = post_traces(&s, body).await;
    let peak = s.peak_rss();
    assert_eq!(status, 413, "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("decode to more than"),
        "names the limit: {error}"
    );
    assert!(
        error.contains("resource"),
        "says what made it large: {error}"
    );
    eprintln!(
        "heavy OTLP: {compressed} bytes gzip, refused; peak RSS {} MiB (before {} MiB)",
        peak >> 20,
        before >> 20
    );
    assert!(
        peak < 512 << 20,
        "peak RSS {} MiB for a {compressed}-byte request",
        peak >> 20
    );
    // Nothing of it was stored, and the server goes on.
    let (status, _) = post_traces(&s, traces(3, 32, 20_000)).await;
    assert_eq!(status, 200, "an ordinary export of 20,000 spans is taken");
    assert_eq!(s.wait_count("heavy", 20_000).await, 20_000);
    let rows = s
        .rows("SELECT count(*), count(DISTINCT \"trace.trace_id\") FROM heavy")
        .await;
    assert_eq!(rows[0], vec![json!(20_000), json!(20_000)]);
}

//! Bad input gets the documented status and a JSON error naming the problem; valid items in
//! the same batch are stored; the server stays up.

mod common;

use std::io::Write;

use common::{ADMIN_KEY, INGEST_KEY, QUERY_KEY, Server};
use serde_json::{Value as Json, json};

async fn reply(resp: reqwest::Response) -> (u16, Json) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body: Json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("reply is not json: {text:?}"));
    (status, body)
}

fn error_of(body: &Json) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_never_poisons_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]).await;
    let batch = |body: Vec<u8>| s.post("/1/batch/bad", INGEST_KEY).body(body);

    // Malformed JSON: the whole body is refused.
    let (st, b) = reply(
        batch(b"[{\"data\": {\"a\": 1}".to_vec())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 400);
    assert!(error_of(&b).starts_with("malformed json"), "{b}");
    let (st, b) = reply(batch(b"{\"data\": {}}".to_vec()).send().await.unwrap()).await;
    assert_eq!(
        (st, error_of(&b)),
        (400, "batch body must be a json array of events")
    );

    // Wrong types, 10,000 fields, deep nesting: refused per item; the valid items are stored.
    let wide: serde_json::Map<String, Json> =
        (0..10_000).map(|i| (format!("f{i}"), json!(i))).collect();
    let mut deep = json!({"leaf": 1});
    for _ in 0..10 {
        deep = json!({ "n": deep });
    }
    let items = json!([
        {"data": {"id": 1, "n": 5}},
        {"data": {"id": 2, "n": "five"}},
        {"data": wide},
        {"data": {"id": 3, "deep": deep}},
        {"data": "not an object"},
        {"data": {"id": 4, "n": 6}, "samplerate": -3},
        {"data": {"id": 5, "n": 7}, "time": "not a time"},
        {"data": {"id": 6, "n": 8}}
    ]);
    let (st, b) = reply(
        batch(serde_json::to_vec(&items).unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    let statuses: Vec<i64> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![202, 400, 400, 202, 400, 400, 400, 202]);
    assert_eq!(
        b[1]["error"],
        "field \"n\" is string but the column is int64"
    );
    assert_eq!(b[2]["error"], "event has 10000 fields, the limit is 2000");
    assert_eq!(b[4]["error"], "event data must be a json object");
    assert_eq!(
        b[5]["error"],
        "samplerate must be a positive integer, got -3"
    );
    assert_eq!(
        b[6]["error"],
        "time \"not a time\" is not an RFC3339 string or a number of Unix seconds"
    );

    // Absurd nesting: refused before parsing.
    let nested = "[".repeat(100_000) + &"]".repeat(100_000);
    let (st, b) = reply(batch(nested.into_bytes()).send().await.unwrap()).await;
    assert_eq!(
        (st, error_of(&b)),
        (400, "json nests deeper than 64 levels")
    );

    // Invalid UTF-8, an empty body.
    let (st, b) = reply(
        batch(b"[{\"data\": {\"s\": \"\xff\xfe\"}}]".to_vec())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 400);
    assert!(error_of(&b).starts_with("malformed json"), "{b}");
    let (st, b) = reply(batch(Vec::new()).send().await.unwrap()).await;
    assert_eq!((st, error_of(&b)), (400, "request body is empty"));
    let (st, b) = reply(s.post("/1/events/bad", INGEST_KEY).send().await.unwrap()).await;
    assert_eq!((st, error_of(&b)), (400, "request body is empty"));

    // A 10 MB body, plain and as a small gzip bomb.
    let big = vec![b' '; 10 * 1024 * 1024];
    let (st, b) = reply(batch(big.clone()).send().await.unwrap()).await;
    assert_eq!(
        (st, error_of(&b)),
        (413, "request body exceeds the limit of 5242880 bytes")
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&big).unwrap();
    let gz = gz.finish().unwrap();
    let (st, b) = reply(
        batch(gz)
            .header("Content-Encoding", "gzip")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, error_of(&b)),
        (
            413,
            "decompressed request body exceeds the limit of 5242880 bytes"
        )
    );
    let (st, b) = reply(
        batch(b"not gzip".to_vec())
            .header("Content-Encoding", "gzip")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 400);
    assert!(error_of(&b).starts_with("body is not valid gzip"), "{b}");
    let (st, b) = reply(
        batch(b"[]".to_vec())
            .header("Content-Encoding", "br")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, error_of(&b)),
        (415, "unsupported content-encoding \"br\": use gzip or zstd")
    );

    // Dataset names.
    let (st, b) = reply(
        s.post("/1/batch/bad%20name!", INGEST_KEY)
            .body("[]")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 400);
    assert!(error_of(&b).contains("invalid character ' '"), "{b}");
    let long = "d".repeat(129);
    let (st, b) = reply(
        s.post(&format!("/1/events/{long}"), INGEST_KEY)
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, error_of(&b)),
        (400, "dataset name is longer than 128 characters")
    );

    // Single events and NDJSON.
    let (st, b) = reply(
        s.post("/1/events/bad", INGEST_KEY)
            .body("{\"n\": true}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, error_of(&b)),
        (400, "field \"n\" is bool but the column is int64")
    );
    let (st, b) = reply(
        s.post("/1/events/bad", INGEST_KEY)
            .header("X-Honeycomb-Samplerate", "abc")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, error_of(&b)),
        (400, "x-honeycomb-samplerate must be a positive integer")
    );
    let (st, b) = reply(
        s.post("/api/v1/ingest/bad", INGEST_KEY)
            .body("{\"id\": 7, \"n\": 9}\nnope\n{\"id\": 8, \"n\": \"x\"}\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(b["accepted"], 1);
    assert_eq!(b["rejected"], 2);
    assert_eq!(b["errors"][0]["line"], 2);
    assert_eq!(
        b["errors"][1],
        json!({"line": 3, "error": "field \"n\" is string but the column is int64"})
    );

    // Keys and routes.
    let (st, b) = reply(
        s.client
            .post(format!("{}/1/batch/bad", s.url))
            .body("[]")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 401);
    assert!(error_of(&b).starts_with("missing api key"));
    let (st, b) = reply(
        s.post("/1/batch/bad", "wrong")
            .body("[]")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, error_of(&b)), (401, "unknown api key"));
    let (st, b) = reply(
        s.post("/1/batch/bad", QUERY_KEY)
            .body("[]")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, error_of(&b)),
        (403, "key has scope query but this needs ingest")
    );
    let (st, b) = reply(
        s.post("/api/v1/sql", INGEST_KEY)
            .json(&json!({"sql": "SELECT 1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, error_of(&b)),
        (403, "key has scope ingest but this needs query")
    );
    let resp = s
        .client
        .post(format!("{}/api/v1/sql", s.url))
        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
        .json(&json!({"sql": "SELECT 1 AS one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "admin keys work everywhere, also as a bearer token"
    );
    // GET /1/auth: the key's permissions in Honeycomb's shape.
    let auth = |key: &'static str| {
        s.client
            .get(format!("{}/1/auth", s.url))
            .header("X-Honeycomb-Team", key)
    };
    let (st, b) = reply(auth(INGEST_KEY).send().await.unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!(b["api_key_access"]["events"], true);
    assert_eq!(b["api_key_access"]["queries"], false);
    let (st, b) = reply(auth(QUERY_KEY).send().await.unwrap()).await;
    assert_eq!(
        (
            st,
            &b["api_key_access"]["events"],
            &b["api_key_access"]["queries"]
        ),
        (200, &json!(false), &json!(true))
    );
    let (st, b) = reply(auth("nope").send().await.unwrap()).await;
    assert_eq!((st, error_of(&b)), (401, "unknown api key"));

    // libhoney-py's json.dumps writes NaN/Infinity: those fields are dropped, the events kept.
    let nan_body = r#"[{"data": {"id": 9, "n": 10, "ratio": NaN, "peak": Infinity}, "time": "2026-11-22T20:00:00Z", "samplerate": 1}]"#;
    let (st, b) = reply(
        s.post("/1/batch/bad", INGEST_KEY)
            .body(nan_body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, &b), (200, &json!([{"status": 202}])));

    let (st, b) = reply(
        s.client
            .get(format!("{}/nope", s.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, error_of(&b)), (404, "no route for GET /nope"));
    let (st, b) = reply(
        s.client
            .get(format!("{}/1/batch/x", s.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, error_of(&b)),
        (405, "method GET is not allowed on /1/batch/x")
    );

    // Query errors.
    let (st, b) = reply(
        s.post("/api/v1/sql", QUERY_KEY)
            .body("{")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 400);
    assert!(error_of(&b).starts_with("invalid request json"));
    let (st, b) = reply(
        s.post("/api/v1/query/nosuch", QUERY_KEY)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, error_of(&b)), (400, "unknown dataset \"nosuch\""));

    // The server is up and holds exactly the valid items: ids 1, 3, 6, 7 and 9, with the deep
    // object flattened to depth 5 and the rest kept as JSON text.
    let (st, _) = reply(
        s.client
            .get(format!("{}/healthz", s.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    let mut rows = Json::Null;
    for _ in 0..100 {
        rows = s
            .sql("SELECT id FROM bad WHERE id IS NOT NULL ORDER BY id")
            .await["rows"]
            .clone();
        if rows == json!([[1], [3], [6], [7], [9]]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rows, json!([[1], [3], [6], [7], [9]]));
    let r = s.sql("SELECT \"deep.n.n.n.n\" FROM bad WHERE id = 3").await;
    let text = r["rows"][0][0].as_str().unwrap();
    assert!(text.starts_with("{\"n\":{\"n\":"), "{text}");
}

/// Dataset names cannot leave `DATA/segments/`: `..` and `.` (sent percent-encoded, so no
/// client normalises them away) are refused on every ingest route and on UDP-less markers,
/// and nothing is written outside the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_names_cannot_traverse_paths() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[]).await;
    for name in ["%2E%2E", "%2E", "..%2F..%2Fetc", ".hidden"] {
        for path in [
            format!("/1/batch/{name}"),
            format!("/1/events/{name}"),
            format!("/api/v1/ingest/{name}"),
        ] {
            let body = if path.starts_with("/1/batch") {
                r#"[{"data":{"a":1}}]"#
            } else {
                r#"{"a":1}"#
            };
            let (st, b) = reply(s.post(&path, INGEST_KEY).body(body).send().await.unwrap()).await;
            assert!(st == 400 || st == 404, "{path}: {st} {b}");
            if st == 400 {
                assert!(error_of(&b).contains("dataset name"), "{path}: {b}");
            }
        }
        let (st, b) = reply(
            s.post(&format!("/1/markers/{name}"), ADMIN_KEY)
                .json(&json!({"message": "x"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(st == 400 || st == 404, "markers {name}: {st} {b}");
    }
    // Nothing landed beside the data directory.
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("data")]);
    let segments: Vec<_> = std::fs::read_dir(data.join("segments"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(segments.is_empty(), "{segments:?}");
}

/// CORS is off: no `Access-Control-Allow-*` header on a preflight or on a cross-origin
/// request, so a page on another origin cannot read Eventide's replies with a user's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]).await;
    let preflight = s
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/api/v1/sql", s.url))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "x-honeycomb-team")
        .send()
        .await
        .unwrap();
    let simple = s
        .post("/api/v1/sql", QUERY_KEY)
        .header("Origin", "https://evil.example")
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(simple.status(), 200);
    for r in [&preflight, &simple] {
        let cors: Vec<_> = r
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{cors:?}");
    }
    assert_eq!(preflight.status(), 405, "a preflight is not approved");
}

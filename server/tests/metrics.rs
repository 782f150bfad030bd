//! `GET /metrics` against the real binary: counters that follow what the test sent.

mod common;

use common::{INGEST_KEY, QUERY_KEY, Server};
use reqwest::Method;
use serde_json::json;

/// The value of the sample line `name{labels}` (exact match of the part before the value).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_events_requests_appends_and_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let (st, b) = server
        .call(
            Method::POST,
            "/1/batch/shop",
            INGEST_KEY,
            Some(json!([{"data": {"n": 1}}, {"data": {"n": 2}}, {"data": {"n": "text"}}])),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(b[2]["status"], 400, "{b}");
    let r = server
        .post("/api/v1/ingest/shop", INGEST_KEY)
        .body("{\"n\": 3}\nnot json\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // An acknowledged event is queryable once the store has read it from the log, usually
    // milliseconds later (more on a loaded machine): wait for it on /metrics, whose requests
    // are not counted below.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = server.metrics_text().await;
        let rows = sample(&text, "eventide_dataset_hot_rows{dataset=\"shop\"}").unwrap_or(0.0)
            + sample(&text, "eventide_dataset_segment_rows{dataset=\"shop\"}").unwrap_or(0.0);
        if rows == 3.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{rows} rows applied");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (st, _) = server
        .call(
            Method::POST,
            "/api/v1/sql",
            QUERY_KEY,
            Some(json!({"sql": "SELECT count(*) FROM shop"})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = server.call(Method::GET, "/nope", QUERY_KEY, None).await;
    assert_eq!(st, 404);

    let resp = server
        .client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    let get = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        get("eventide_events_accepted_total{endpoint=\"/1/batch\"}"),
        2.0
    );
    assert_eq!(
        get("eventide_events_rejected_total{endpoint=\"/1/batch\"}"),
        1.0
    );
    assert_eq!(
        get("eventide_events_accepted_total{endpoint=\"/api/v1/ingest\"}"),
        1.0
    );
    assert_eq!(
        get("eventide_events_rejected_total{endpoint=\"/api/v1/ingest\"}"),
        1.0
    );
    assert_eq!(get("eventide_log_append_seconds_count"), 2.0);
    assert_eq!(
        get("eventide_log_append_seconds_bucket{le=\"+Inf\"}"),
        2.0,
        "buckets are cumulative up to the count"
    );
    assert!(get("eventide_log_append_bytes_total") > 0.0);
    assert_eq!(
        get(
            "eventide_http_requests_total{route=\"/1/batch/{dataset}\",method=\"POST\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        get("eventide_http_requests_total{route=\"/api/v1/sql\",method=\"POST\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        get("eventide_http_requests_total{route=\"other\",method=\"GET\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        get("eventide_http_request_duration_seconds_count{route=\"/api/v1/sql\"}"),
        1.0
    );
    let rows = get("eventide_dataset_hot_rows{dataset=\"shop\"}")
        + get("eventide_dataset_segment_rows{dataset=\"shop\"}");
    assert_eq!(rows, 3.0);
    let hot = get("eventide_store_hot_bytes");
    assert_eq!(
        hot > 0.0,
        get("eventide_dataset_hot_rows{dataset=\"shop\"}") > 0.0,
        "hot bytes follow hot rows"
    );
    let rss = get("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 64e9, "RSS {rss}");
    assert_eq!(get("eventide_triggers"), 0.0);
    assert_eq!(get("eventide_deploy_checks_pending"), 0.0);
    // Every sample line belongs to a declared metric.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            text.contains(&format!("# TYPE {name} ")) || text.contains(&format!("# TYPE {base} ")),
            "{l} has no TYPE line"
        );
    }
}

/// `--self-dataset`: every API request becomes an event of that dataset, queryable like any
/// other; probes and metrics scrapes do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_events_record_each_api_request_in_their_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--self-dataset", "_eventide"], &[]).await;
    let r = server
        .post("/1/batch/shop", INGEST_KEY)
        .header("user-agent", "libhoney-test/1.0")
        .json(&json!([{"data": {"n": 1}}, {"data": {"n": 2}}, {"data": {"n": "text"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = server
        .post("/1/batch/shop", INGEST_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The body the client gets is untouched by the recording.
    let error = r.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!error.is_empty());
    assert_eq!(server.wait_count("shop", 2).await, 2);
    let (st, _) = server
        .call(
            Method::POST,
            "/api/v1/query/shop",
            QUERY_KEY,
            Some(json!({"calculations": [{"op": "COUNT"}]})),
        )
        .await;
    assert_eq!(st, 200);
    for _ in 0..3 {
        assert_eq!(
            server
                .client
                .get(format!("{}/healthz", server.url))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }

    // Written within about a second; the polling queries are recorded too.
    let q = "SELECT \"http.route\", \"http.method\", \"http.status_code\", dataset, \
             \"events.accepted\", \"events.rejected\", error, \"user_agent.original\", \
             \"service.name\", duration_ms > 0 \
             FROM \"_eventide\" WHERE \"http.route\" <> '/api/v1/sql' ORDER BY timestamp";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let rows = loop {
        let (st, body) = server.try_sql(q).await;
        if st == 200 && body["rows"].as_array().is_some_and(|r| r.len() >= 3) {
            break body["rows"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no self events: {st} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(
        rows,
        json!([
            [
                "/1/batch/{dataset}",
                "POST",
                200,
                "shop",
                2,
                1,
                null,
                "libhoney-test/1.0",
                "eventide",
                true
            ],
            [
                "/1/batch/{dataset}",
                "POST",
                400,
                "shop",
                null,
                null,
                error,
                null,
                "eventide",
                true
            ],
            [
                "/api/v1/query/{dataset}",
                "POST",
                200,
                "shop",
                null,
                null,
                null,
                null,
                "eventide",
                true
            ],
        ])
    );
    // Queries carry what they read; the probes are not recorded.
    let r = server
        .rows(
            "SELECT count(*) FILTER (WHERE \"http.route\" = '/api/v1/query/{dataset}'), \
             count(\"query.bytes_total\") FILTER (WHERE \"http.route\" = '/api/v1/query/{dataset}'), \
             count(*) FILTER (WHERE \"http.route\" IN ('/healthz', '/metrics')) \
             FROM \"_eventide\"",
        )
        .await;
    assert_eq!(r[0], vec![json!(1), json!(1), json!(0)]);
    let text = server
        .client
        .get(format!("{}/metrics", server.url))
        .header("X-Honeycomb-Team", QUERY_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let written = sample(&text, "eventide_self_events_total{outcome=\"written\"}").unwrap();
    assert!(written >= 3.0, "{written}");
    assert_eq!(
        sample(&text, "eventide_self_events_total{outcome=\"dropped\"}"),
        Some(0.0)
    );
}

/// The store's flushes and merges are self events too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_events_record_the_stores_flushes_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--self-dataset", "_eventide"],
        &[
            ("EVENTIDE_FLUSH_SECONDS", "1"),
            ("EVENTIDE_COMPACTION_SECONDS", "1"),
            ("EVENTIDE_COMPACTION_GRACE_SECONDS", "1"),
        ],
    )
    .await;
    // Polls `sql` (its columns may not exist yet) until its first row is `want`.
    let wait_for = |sql: &'static str, want: serde_json::Value| {
        let server = &server;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let (st, body) = server.try_sql(sql).await;
                if st == 200 && body["rows"][0] == want {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "{sql}: {st} {body}");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
    };
    // Two flushes of `shop` (the second batch after the first flush), then their merge.
    server
        .send_batch(
            "shop",
            &[json!({"data": {"n": 1}}), json!({"data": {"n": 2}})],
        )
        .await;
    wait_for(
        "SELECT count(*), sum(rows) FROM _eventide WHERE name = 'store.flush' AND dataset = 'shop'",
        json!([1, 2]),
    )
    .await;
    server
        .send_batch("shop", &[json!({"data": {"n": 3}})])
        .await;
    wait_for(
        "SELECT count(*), sum(rows), sum(\"segments.in\"), min(\"segments.out\"), \
         min(\"compaction.level\"), min(\"bytes.in\") > 0, min(\"bytes.out\") > 0, \
         min(duration_ms) >= 0, min(\"log.partition\") \
         FROM _eventide WHERE name = 'store.merge' AND dataset = 'shop'",
        json!([1, 3, 2, 1, 1, true, true, true, 0]),
    )
    .await;
    let r = server
        .rows(
            "SELECT count(*), sum(rows) FROM _eventide \
             WHERE name = 'store.flush' AND dataset = 'shop'",
        )
        .await;
    assert_eq!(r[0], vec![json!(2), json!(3)]);
}

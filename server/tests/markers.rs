//! Markers over HTTP against the real binary: Honeycomb's `/1/markers` shape, scopes,
//! persistence across a restart, the SQL table `eventide.markers`, markers in query results,
//! BubbleUp through the API, and clear errors.

mod common;

use common::{ADMIN_KEY, INGEST_KEY, QUERY_KEY, Server};
use serde_json::{Value as Json, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_are_kept_listed_queried_and_shown_on_results() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    // The time of day never decides an outcome: the server's clock is the test's.
    let clock = common::TestClock::new();
    let mut s = Server::start_with(dir.path(), &["--clock-start", &clock.start_value()], &[]).await;
    let now = clock.now_us() / 1_000_000;
    // A deploy marker as a CI job posts it (ingest key), with Eventide's deploy fields.
    let (st, deploy) = s
        .call(
            Method::POST,
            "/1/markers/checkout",
            INGEST_KEY,
            Some(json!({
                "message": "deploy checkout v42", "type": "deploy", "url": "https://ci.example/42",
                "start_time": now - 60, "service": "checkout", "version": "v42", "commit": "abc123",
                "commit_time": now - 600, "environment": "prod"
            })),
        )
        .await;
    assert_eq!(st, 200, "{deploy}");
    let id = deploy["id"].as_str().unwrap().to_owned();
    assert_eq!(deploy["type"], json!("deploy"));
    assert_eq!(deploy["version"], json!("v42"));
    assert!(deploy["created_at"].as_str().unwrap().ends_with('Z'));
    let (st, all) = s.call( Method::POST, "/1/markers/__all__", ADMIN_KEY, Some(json!({
        "message": "maintenance", "type": "maintenance", "start_time": now - 120, "end_time": now - 90
    }))).await;
    assert_eq!(st, 200, "{all}");

    // Scopes: a query key cannot write, an ingest key cannot list.
    let (st, body) = s
        .call(
            Method::POST,
            "/1/markers/checkout",
            QUERY_KEY,
            Some(json!({"message": "x"})),
        )
        .await;
    assert_eq!(st, 403, "{body}");
    let (st, _) = s
        .call(Method::GET, "/1/markers/checkout", INGEST_KEY, None)
        .await;
    assert_eq!(st, 403);

    // Update and list.
    let (st, updated) = s
        .call(
            Method::PUT,
            &format!("/1/markers/checkout/{id}"),
            INGEST_KEY,
            Some(json!({"url": "https://ci.example/42b"})),
        )
        .await;
    assert_eq!(st, 200, "{updated}");
    assert_eq!(updated["message"], json!("deploy checkout v42"));
    assert_eq!(updated["url"], json!("https://ci.example/42b"));
    let (st, list) = s
        .call(Method::GET, "/1/markers/checkout", QUERY_KEY, None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(list, json!([updated.clone()]));

    // Clear errors, nothing stored.
    for (path, body, want) in [
        (
            "/1/markers/checkout",
            json!({"start_time": now, "end_time": now - 5}),
            "is before start_time",
        ),
        (
            "/1/markers/checkout",
            json!({"start_time": now * 1000}),
            "is not a Unix time in seconds",
        ),
        ("/1/markers/bad%20name", json!({}), "invalid character"),
        (
            "/1/markers/checkout",
            json!({"message": 5}),
            "invalid request json",
        ),
    ] {
        let (st, b) = s.call(Method::POST, path, INGEST_KEY, Some(body)).await;
        assert_eq!(st, 400, "{path}: {b}");
        assert!(b["error"].as_str().unwrap().contains(want), "{b}");
    }
    let (st, b) = s
        .call(
            Method::DELETE,
            "/1/markers/checkout/m999999",
            INGEST_KEY,
            None,
        )
        .await;
    assert_eq!(st, 404, "{b}");

    // Kept across a restart.
    s.stop();
    let s = Server::start_with(dir.path(), &["--clock-start", &clock.start_value()], &[]).await;
    let (_, list) = s
        .call(Method::GET, "/1/markers/checkout", QUERY_KEY, None)
        .await;
    assert_eq!(list, json!([updated.clone()]));

    // Readable in SQL.
    let r = s
        .sql("SELECT dataset, message, type, version, commit_time FROM eventide.markers ORDER BY start_time")
        .await;
    let commit_time = chrono::DateTime::from_timestamp(now - 600, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    assert_eq!(
        r["rows"],
        json!([
            ["__all__", "maintenance", "maintenance", null, null],
            [
                "checkout",
                "deploy checkout v42",
                "deploy",
                "v42",
                commit_time
            ]
        ])
    );

    // Shown with a query's results: the dataset's own and the __all__ ones in its range.
    let r = s
        .post("/1/events/checkout", INGEST_KEY)
        .json(&json!({"duration_ms": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.wait_count("checkout", 1).await;
    let r = s.spec("checkout", json!({"time_range": 3600})).await;
    let shown: Vec<&str> = r["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["maintenance", "deploy checkout v42"]);
    let r = s.spec("checkout", json!({"time_range": 30})).await;
    assert_eq!(r["markers"], json!([]), "both markers are older than 30 s");

    // Deleted for good.
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/1/markers/checkout/{id}"),
            ADMIN_KEY,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (_, list) = s
        .call(Method::GET, "/1/markers/checkout", QUERY_KEY, None)
        .await;
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bubbleup_names_the_seeded_difference() {
    let dir = tempfile::tempdir().unwrap();
    // The time of day never decides an outcome: the server's clock is the test's.
    let clock = common::TestClock::new();
    let s = Server::start_with(dir.path(), &["--clock-start", &clock.start_value()], &[]).await;
    let now = clock.now_us() / 1_000_000;
    // 1,000 events; the slow ones (duration ≥ 500) all come from build b2, the rest from b1.
    let items: Vec<Json> = (0..1000)
        .map(|i| {
            let slow = i % 10 == 0;
            let region = ["eu", "us"][i as usize % 2];
            json!({"time": now - 600 + i / 10, "data": {
                "build_id": if slow { "b2" } else { "b1" },
                "duration_ms": if slow { 800 + i % 7 } else { 20 + i % 13 },
                "region": region,
            }})
        })
        .collect();
    s.send_batch("shop", &items).await;
    s.wait_count("shop", 1000).await;
    let r = s
        .post("/api/v1/bubbleup/shop", QUERY_KEY)
        .json(&json!({"time_range": 3600, "selection": {"filters": [{"column": "duration_ms", "op": ">=", "value": 500}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Json = r.json().await.unwrap();
    assert_eq!(b["selection_count"], json!(100));
    assert_eq!(b["baseline_count"], json!(900));
    assert_eq!(b["columns"][0]["column"], json!("build_id"), "{b}");
    assert_eq!(b["columns"][0]["score"], json!(1.0));
    // A selection is required; an ingest key cannot ask.
    let r = s
        .post("/api/v1/bubbleup/shop", QUERY_KEY)
        .json(&json!({"time_range": 3600, "selection": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Json = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("selection needs filters"),
        "{e}"
    );
    let r = s
        .post("/api/v1/bubbleup/shop", INGEST_KEY)
        .json(&json!({"selection": {"start_time": now}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// BubbleUp while events keep arriving in its scope: its per-column shares come from one scan
/// each, so none is above 100 % and a column's shares never add up past it. (Before, the
/// totals came from a first scan and the counts from later ones: "101 % of the failing
/// events" in the deploy loop's evidence.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bubbleup_shares_stay_within_their_scan_while_ingest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::TestClock::new();
    let s = Server::start_with(dir.path(), &["--clock-start", &clock.start_value()], &[]).await;
    let now = clock.now_us() / 1_000_000;
    let batch = move |k: i64| -> Vec<Json> {
        (0..200)
            .map(|i| {
                let region = ["eu", "us", "ap"][(i % 3) as usize];
                json!({"time": now - 300 + (k + i) % 300, "data": {
                    "region": region,
                    "http.status_code": if i % 4 == 0 { 500 } else { 200 },
                    "duration_ms": 10.0 + (i % 50) as f64,
                }})
            })
            .collect()
    };
    s.send_batch("live", &batch(0)).await;
    s.wait_count("live", 200).await;
    let url = s.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let client = s.client.clone();
        tokio::spawn(async move {
            let mut k = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(format!("{url}/1/batch/live"))
                    .header("X-Honeycomb-Team", INGEST_KEY)
                    .json(&batch(k))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                k += 1;
            }
            k
        })
    };
    for _ in 0..20 {
        let r = s
            .post("/api/v1/bubbleup/live", QUERY_KEY)
            .json(&json!({"time_range": 3600, "selection": {"filters": [
                {"column": "http.status_code", "op": ">=", "value": 500}]}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let b: Json = r.json().await.unwrap();
        for c in b["columns"].as_array().unwrap() {
            let (mut sel, mut base) = (0.0, 0.0);
            for v in c["values"].as_array().unwrap() {
                let (vs, vb) = (
                    v["selection"].as_f64().unwrap(),
                    v["baseline"].as_f64().unwrap(),
                );
                assert!(vs <= 1.0 && vb <= 1.0, "{c}");
                sel += vs;
                base += vb;
            }
            assert!(sel <= 1.0 + 1e-9 && base <= 1.0 + 1e-9, "{c}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let batches = writer.await.unwrap();
    eprintln!("20 BubbleUps during {batches} batches of ingest");
}

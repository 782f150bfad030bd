//! Compaction end to end: millions of events in small batches become a few dozen segments;
//! every answer is the same before and after; no event is lost or duplicated; a `kill -9`
//! during compaction leaves neither orphaned nor double-counted files.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{INGEST_KEY, Server, TestClock};
use futures::StreamExt;
use serde_json::{Value as Json, json};

const HOUR_US: i64 = 3_600_000_000;

/// A server on `dir` with `env`, whose clock is `clock`'s: every test here fixes the time of
/// day its events and compaction windows fall in.
async fn start(dir: &Path, env: &[(&str, &str)], clock: &TestClock) -> Server {
    let at = clock.start_value();
    Server::start(dir, &clock.env(env, &at)).await
}

/// Events `0..n`, spread evenly over the 72 hours before `end_us`.
async fn ingest(server: &Server, dataset: &str, n: u64, batch: u64, end_us: i64) {
    let span = 72 * HOUR_US;
    let bodies = (0..n / batch).map(|b| {
        let items: Vec<Json> = (b * batch..(b + 1) * batch)
            .map(|i| {
                let t = end_us - span + (i as i64) * (span / n as i64);
                let status = [200, 200, 200, 404, 500][(i % 5) as usize];
                json!({
                    "time": t as f64 / 1e6,
                    "data": {
                        "id": i,
                        "service.name": format!("svc-{}", i % 7),
                        "duration_ms": (i % 1000) as f64 * 1.25 + 0.5,
                        "status": status,
                        "trace.trace_id": format!("{:032x}", i / 10),
                        "user_id": format!("u{}", i % 5000),
                    }
                })
            })
            .collect();
        serde_json::to_vec(&items).unwrap()
    });
    let results: Vec<u16> = futures::stream::iter(bodies)
        .map(|body| {
            let req = server
                .post(&format!("/1/batch/{dataset}"), INGEST_KEY)
                .body(body);
            async move { req.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    assert!(results.iter().all(|s| *s == 200));
}

/// The catalog's segments of `dataset`: (level, path).
fn catalog_segments(dir: &Path, dataset: &str) -> Vec<(u64, String)> {
    let Ok(text) = std::fs::read_to_string(dir.join("catalog/p00000.json")) else {
        return Vec::new();
    };
    let c: Json = serde_json::from_str(&text).unwrap();
    c["datasets"][dataset]["segments"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["level"].as_u64().unwrap_or(0),
                        s["path"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Segment files on disk, relative to `segments/`.
fn files_on_disk(dir: &Path, dataset: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("segments").join(dataset))
        .map(|d| {
            d.flatten()
                .map(|f| format!("{dataset}/{}", f.file_name().to_string_lossy()))
                .filter(|f| f.ends_with(".parquet"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until compaction has settled: the listing reports no merge pending, twice in a row
/// a second apart with the same catalog.
async fn settle(server: &Server, dir: &Path, dataset: &str, limit: Duration) -> Vec<(u64, String)> {
    let deadline = Instant::now() + limit;
    let mut quiet = 0;
    let mut last = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let list: Json = server
            .client
            .get(format!("{}/api/v1/datasets", server.url))
            .header("X-Honeycomb-Team", common::ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pending = list["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == dataset)
            .map_or(1, |d| d["merges_pending"].as_u64().unwrap());
        let now = catalog_segments(dir, dataset);
        quiet = if pending == 0 && now == last {
            quiet + 1
        } else {
            0
        };
        last = now;
        if quiet >= 2 {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "compaction did not settle: {last:?}"
        );
    }
}

/// The queries compared before and after compaction: SQL and query specs, with absolute
/// time ranges so "now" does not move them.
async fn answers(server: &Server, dataset: &str, end_us: i64) -> Vec<Json> {
    let start = (end_us - 80 * HOUR_US) / 1_000_000;
    let end = end_us / 1_000_000 + 60;
    let t = format!("\"{dataset}\"");
    let sqls = [
        format!("SELECT count(*), sum(id), count(DISTINCT id), min(id), max(id) FROM {t}"),
        format!(
            "SELECT \"service.name\", count(*), sum(duration_ms), avg(duration_ms), \
             min(timestamp), max(timestamp) FROM {t} GROUP BY 1 ORDER BY 1"
        ),
        format!("SELECT status, count(*) FROM {t} WHERE duration_ms > 500 GROUP BY 1 ORDER BY 1"),
        format!(
            "SELECT id, \"service.name\", duration_ms FROM {t} \
             WHERE \"trace.trace_id\" = '{:032x}' ORDER BY id",
            12_345
        ),
        format!(
            "SELECT date_trunc('hour', timestamp) AS h, count(*) FROM {t} GROUP BY 1 ORDER BY 1"
        ),
        format!("SELECT id FROM {t} ORDER BY timestamp DESC, id DESC LIMIT 5"),
    ];
    let mut out = Vec::new();
    for q in &sqls {
        out.push(server.sql(q).await["rows"].clone());
    }
    let specs = [
        json!({"start_time": start, "end_time": end,
               "calculations": [{"op": "COUNT"}, {"op": "P50", "column": "duration_ms"},
                                {"op": "P99", "column": "duration_ms"},
                                {"op": "COUNT_DISTINCT", "column": "user_id"},
                                {"op": "HEATMAP", "column": "duration_ms"}],
               "breakdowns": ["service.name"], "orders": [{"column": "service.name"}]}),
        json!({"start_time": start, "end_time": end, "granularity": 3600,
               "calculations": [{"op": "COUNT"}, {"op": "AVG", "column": "duration_ms"}],
               "filters": [{"column": "status", "op": ">=", "value": 400}],
               "breakdowns": ["status"]}),
        json!({"start_time": start, "end_time": end,
               "calculations": [{"op": "SUM", "column": "duration_ms"}, {"op": "MAX", "column": "id"}],
               "filters": [{"column": "service.name", "op": "in", "value": ["svc-1", "svc-3"]}],
               "breakdowns": ["service.name", "status"],
               "orders": [{"op": "SUM", "column": "duration_ms", "order": "descending"}],
               "limit": 7}),
    ];
    for s in specs {
        let mut r = server.spec(dataset, s).await;
        r.as_object_mut().unwrap().remove("elapsed_ms");
        r.as_object_mut().unwrap().remove("stats");
        out.push(r);
    }
    out
}

/// Equal, except floats within a relative 1e-9 (sums depend on the order rows are added).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn assert_same_answers(before: &[Json], after: &[Json]) {
    assert_eq!(before.len(), after.len());
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        assert!(same(b, a), "query {i} changed:\nbefore {b}\nafter  {a}");
    }
}

async fn exact_once(server: &Server, dataset: &str, n: u64) {
    let r = server
        .rows(&format!(
            "SELECT count(*), count(DISTINCT id), sum(id) FROM \"{dataset}\""
        ))
        .await;
    assert_eq!(r[0], vec![json!(n), json!(n), json!(n * (n - 1) / 2)]);
}

const NO_COMPACTION: [(&str, &str); 3] = [
    ("EVENTIDE_COMPACTION_SECONDS", "0"),
    ("EVENTIDE_FLUSH_SECONDS", "1"),
    ("EVENTIDE_FLUSH_ROWS", "20000"),
];
const COMPACTION: [(&str, &str); 4] = [
    ("EVENTIDE_COMPACTION_SECONDS", "1"),
    ("EVENTIDE_COMPACTION_GRACE_SECONDS", "1"),
    ("EVENTIDE_RETIRE_GRACE_SECONDS", "0"),
    ("EVENTIDE_FLUSH_SECONDS", "1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_million_small_batches_compact_to_a_few_dozen_segments_with_identical_answers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let n = 2_000_000;
    let end_us = clock.now_us();
    let mut server = start(dir.path(), &NO_COMPACTION, &clock).await;
    ingest(&server, "many", n, 100, end_us).await;
    assert_eq!(server.wait_count("many", n).await, n);
    server.stop();
    let before_segments = catalog_segments(dir.path(), "many");
    assert!(
        before_segments.len() >= 50,
        "{} flushed segments",
        before_segments.len()
    );

    let server = start(dir.path(), &NO_COMPACTION, &clock).await;
    let before = answers(&server, "many", end_us).await;
    drop(server);

    let server = start(dir.path(), &COMPACTION, &clock).await;
    let after_segments = settle(&server, dir.path(), "many", Duration::from_secs(600)).await;
    assert!(
        after_segments.len() <= 36,
        "{} segments after compaction: {after_segments:?}",
        after_segments.len()
    );
    assert!(after_segments.iter().all(|(level, _)| *level > 0));
    eprintln!(
        "compaction: {} flushed segments -> {} segments (levels {:?})",
        before_segments.len(),
        after_segments.len(),
        after_segments.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    exact_once(&server, "many", n).await;
    let after = answers(&server, "many", end_us).await;
    assert_same_answers(&before, &after);
    // Retired inputs are deleted: the files on disk are exactly the catalog's.
    let named: BTreeSet<String> = after_segments.iter().map(|s| s.1.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_on_disk(dir.path(), "many") != named && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(files_on_disk(dir.path(), "many"), named);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_compaction_loses_nothing_and_leaves_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let n = 400_000;
    let end_us = clock.now_us();
    let mut server = start(dir.path(), &NO_COMPACTION, &clock).await;
    ingest(&server, "crashy", n, 100, end_us).await;
    assert_eq!(server.wait_count("crashy", n).await, n);
    let before = answers(&server, "crashy", end_us).await;
    server.stop();

    // Kill -9 the moment a merge has a file on disk that the catalog does not name (written,
    // not yet committed; or committed, inputs not yet deleted): two such kills, in at most
    // five attempts.
    let mut kills = 0;
    for _ in 0..5 {
        if kills >= 2 {
            break;
        }
        let mut server = start(dir.path(), &COMPACTION, &clock).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        let caught = loop {
            let named: BTreeSet<String> = catalog_segments(dir.path(), "crashy")
                .into_iter()
                .map(|s| s.1)
                .collect();
            if files_on_disk(dir.path(), "crashy").len() > named.len() {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        server.kill9();
        if !caught {
            break; // compaction finished before we could catch it again
        }
        let named: BTreeSet<String> = catalog_segments(dir.path(), "crashy")
            .into_iter()
            .map(|s| s.1)
            .collect();
        let on_disk = files_on_disk(dir.path(), "crashy");
        assert!(
            named.is_subset(&on_disk),
            "every file the catalog names exists"
        );
        if on_disk.len() > named.len() {
            kills += 1; // the kill left files no catalog names
        }
    }
    assert!(
        kills > 0,
        "no kill landed inside a merge; the test proves nothing"
    );

    let server = start(dir.path(), &COMPACTION, &clock).await;
    let segments = settle(&server, dir.path(), "crashy", Duration::from_secs(300)).await;
    exact_once(&server, "crashy", n).await;
    assert_same_answers(&before, &answers(&server, "crashy", end_us).await);
    let named: BTreeSet<String> = segments.into_iter().map(|s| s.1).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_on_disk(dir.path(), "crashy") != named && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        files_on_disk(dir.path(), "crashy"),
        named,
        "orphans and retired files are deleted"
    );
}

fn segments_with_times(dir: &Path, dataset: &str) -> Vec<(i64, i64, u64, String)> {
    let Ok(text) = std::fs::read_to_string(dir.join("catalog/p00000.json")) else {
        return Vec::new();
    };
    let c: Json = serde_json::from_str(&text).unwrap();
    c["datasets"][dataset]["segments"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["min_time_us"].as_i64().unwrap(),
                        s["max_time_us"].as_i64().unwrap(),
                        s["rows"].as_u64().unwrap(),
                        s["path"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sends events at the given ages (hours before now), `per_hour` events per hour of age.
async fn ingest_ages(
    clock: &TestClock,
    server: &Server,
    dataset: &str,
    hours: std::ops::Range<i64>,
    per_hour: u64,
) -> u64 {
    let now = clock.now_us();
    let mut sent = 0;
    for h in hours {
        let items: Vec<Json> = (0..per_hour)
            .map(|k| {
                let t = now - h * HOUR_US - (k as i64) * (HOUR_US / per_hour as i64 / 2);
                json!({"time": t as f64 / 1e6, "data": {"id": h * 1_000_000 + k as i64, "age_h": h}})
            })
            .collect();
        let r = server
            .post(&format!("/1/batch/{dataset}"), INGEST_KEY)
            .json(&items)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        sent += per_hour;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_hides_old_events_at_once_and_deletes_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let server = start(dir.path(), &COMPACTION, &clock).await;
    // Old: 10 days down to 4 days ago. New: the last 2 days. Nothing in between.
    let old = ingest_ages(&clock, &server, "ret", 96..240, 50).await;
    let new = ingest_ages(&clock, &server, "ret", 1..48, 50).await;
    assert_eq!(server.wait_count("ret", old + new).await, old + new);

    let admin = |req: reqwest::RequestBuilder| req.header("X-Honeycomb-Team", common::ADMIN_KEY);
    let put = |dataset: &str, body: Json| {
        admin(
            server
                .client
                .put(format!("{}/api/v1/datasets/{dataset}", server.url)),
        )
        .json(&body)
        .send()
    };
    // Validation, and only admins.
    let r = server
        .client
        .put(format!("{}/api/v1/datasets/ret", server.url))
        .header("X-Honeycomb-Team", common::QUERY_KEY)
        .json(&json!({"retention_days": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = put("ret", json!({"retention_days": 0})).await.unwrap();
    assert_eq!(r.status(), 400);
    // A per-dataset sort key for compaction, shown in the listing below.
    let r = put("ret", json!({"sort_key": ["age_h"]})).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Json>().await.unwrap()["sort_key"],
        json!(["age_h"])
    );
    // An empty body or a misspelt field must not remove a retention by accident.
    for body in [json!({}), json!({"retention": 3})] {
        let r = put("ret", body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    let r = put("nope", json!({"retention_days": 3})).await.unwrap();
    assert_eq!(r.status(), 404);

    let r = put("ret", json!({"retention_days": 3})).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["retention_days"], 3);

    // Hidden from queries at once, exactly: only the new events remain.
    let r = server
        .rows("SELECT count(*), min(age_h), max(age_h) FROM ret")
        .await;
    assert_eq!(r[0], vec![json!(new), json!(1), json!(47)]);

    // Gone from disk after the retention pass (and compaction splitting any flush that held
    // both old and new events).
    let cutoff = clock.now_us() - 3 * 24 * HOUR_US;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let segs = segments_with_times(dir.path(), "ret");
        let rows: u64 = segs.iter().map(|s| s.2).sum();
        let named: BTreeSet<String> = segs.iter().map(|s| s.3.clone()).collect();
        let done = segs.iter().all(|s| s.0 >= cutoff)
            && rows == new
            && files_on_disk(dir.path(), "ret") == named;
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old segments still on disk: {segs:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The listing shows it.
    let r = admin(server.client.get(format!("{}/api/v1/datasets", server.url)))
        .send()
        .await
        .unwrap();
    let list: Json = r.json().await.unwrap();
    let ret = list["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "ret")
        .unwrap()
        .clone();
    assert_eq!(ret["rows"], new);
    assert_eq!(ret["retention_days"], 3);
    assert_eq!(
        ret["sort_key"],
        json!(["age_h"]),
        "setting the retention kept the sort key"
    );

    // Deleting the dataset: everything gone from queries at once, from disk soon after.
    let r = admin(
        server
            .client
            .delete(format!("{}/api/v1/datasets/ret", server.url)),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.rows("SELECT count(*) FROM ret").await[0][0], 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !files_on_disk(dir.path(), "ret").is_empty() {
        assert!(Instant::now() < deadline, "deleted dataset's files remain");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Events sent after the deletion are visible again.
    let items: Vec<Json> = (0..10).map(|i| json!({"data": {"id": i}})).collect();
    server.send_batch("ret", &items).await;
    assert_eq!(server.wait_count("ret", 10).await, 10);
}

/// Looks up a needle among 200,000 events after compaction, and reads 3 columns of a
/// dataset with 2,000 sparse ones: the reported stats show how little is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needle_and_narrow_queries_read_a_small_part_of_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    // The server's clock is the test's (10:30 UTC of a fixed day, whenever the test runs):
    // which hours and days are closed, and so the file layout, is the same at every run. A
    // target size below a day's data (about 1.7 MB here) but above an hour's keeps one file
    // per hour: a closed day is merged into one file only when it fits the target.
    let mut env = COMPACTION.to_vec();
    env.push(("EVENTIDE_COMPACTION_TARGET_BYTES", "262144"));
    let server = start(dir.path(), &env, &clock).await;
    let n: u64 = 200_000;
    // Aligned to the hour, so that the same events share a window (and a file, and a bloom
    // filter).
    let now_us = clock.now_us();
    let end_us = now_us - now_us.rem_euclid(HOUR_US);
    // A scrambled trace id per event, so min/max statistics cannot help; bloom filters can.
    let trace = |i: u64| {
        format!(
            "{:032x}",
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
        )
    };
    let bodies: Vec<Vec<u8>> = (0..n / 1000)
        .map(|b| {
            let items: Vec<Json> = (b * 1000..(b + 1) * 1000)
                .map(|i| {
                    let t = end_us - 48 * HOUR_US + (i as i64) * (48 * HOUR_US / n as i64);
                    json!({"time": t as f64 / 1e6, "data": {
                        "id": i, "trace.trace_id": trace(i),
                        "service.name": format!("svc-{}", i % 9),
                        "duration_ms": (i % 977) as f64,
                        "payload": format!("{:0>64}", i),
                    }})
                })
                .collect();
            serde_json::to_vec(&items).unwrap()
        })
        .collect();
    for body in bodies {
        let r = server
            .post("/1/batch/needle", INGEST_KEY)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(server.wait_count("needle", n).await, n);
    let segments = settle(&server, dir.path(), "needle", Duration::from_secs(300)).await;
    let largest = segments
        .iter()
        .map(|(_, p)| {
            std::fs::metadata(dir.path().join("segments").join(p))
                .unwrap()
                .len()
        })
        .max()
        .unwrap();

    let r = server
        .sql(&format!(
            "SELECT id, \"service.name\" FROM needle WHERE \"trace.trace_id\" = '{}'",
            trace(123_457)
        ))
        .await;
    assert_eq!(r["rows"], json!([[123_457, "svc-4"]]));
    let s = &r["stats"];
    let (scanned, total) = (
        s["bytes_scanned"].as_u64().unwrap(),
        s["bytes_total"].as_u64().unwrap(),
    );
    // Every file but the one holding the needle is skipped by its bloom filter; what is read
    // is that file's row group plus the filters and footers (a file of one hour is one row
    // group of about 4,200 rows, and the trace ids are most of its bytes, so the ratio is
    // modest here; the storage benchmark measures 10M events). The filters are sized for 3 %
    // false positives: over 47 other files 1.4 pass by chance on average. Which files pass is
    // fixed: the files are the 48 hour windows, whose rows do not depend on the time of day.
    let files = s["files_scanned"].as_u64().unwrap();
    assert_eq!(files, 48, "one file per hour: {s}");
    let pruned = s["row_groups_pruned_bloom_filter"].as_u64().unwrap()
        + s["row_groups_pruned_statistics"].as_u64().unwrap();
    let read_files = files - pruned;
    assert!(
        (1..=4).contains(&read_files),
        "bloom filters prune all but the needle's row group and at most 3 false positives: {s}"
    );
    // At most the needle's file (and the false positives'), plus a bloom filter (at most 32 KiB
    // for 20,000-row files at 3 % false positives) and a footer for each other file.
    assert!(
        total > 0 && scanned < total && scanned <= read_files * largest + (files - 1) * 48 * 1024,
        "needle read {scanned} of {total} bytes (largest file {largest}): {s}"
    );
    // A time-bounded question reads only that window's files.
    let r = server
        .sql(&format!(
            "SELECT count(*) FROM needle WHERE timestamp >= to_timestamp_micros({}) ",
            end_us - 2 * HOUR_US
        ))
        .await;
    let s = &r["stats"];
    assert!(
        s["files_scanned"].as_u64().unwrap() < s["files_total"].as_u64().unwrap(),
        "time pruning: {s}"
    );
    // The same stats are in query spec replies.
    let spec = server
        .spec("needle", json!({"time_range": 7 * 86400, "calculations": [{"op": "COUNT"}],
                               "filters": [{"column": "trace.trace_id", "op": "=", "value": trace(99)}]}))
        .await;
    assert_eq!(spec["results"][0]["COUNT"], 1);
    assert!(
        spec["stats"]["row_groups_pruned_bloom_filter"]
            .as_u64()
            .unwrap()
            > 0
    );

    // 2,000 sparse columns; a query over 3 of them reads only those.
    let items: Vec<Json> = (0..4000u64)
        .map(|i| {
            let mut data = serde_json::Map::new();
            data.insert("a".into(), json!(i));
            data.insert("b".into(), json!(format!("b{}", i % 10)));
            data.insert("c".into(), json!(i as f64 / 2.0));
            for k in 0..10 {
                data.insert(
                    format!("sparse_{}", (i * 10 + k) % 2000),
                    json!(format!("v{i}-{k}-padding-padding")),
                );
            }
            json!({"data": data})
        })
        .collect();
    for chunk in items.chunks(500) {
        server.send_batch("wide", chunk).await;
    }
    assert_eq!(server.wait_count("wide", 4000).await, 4000);
    // Let the hot tail flush to Parquet (flush age 1 s) so the stats cover segments.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = server
            .sql("SELECT sum(a), count(b), max(c) FROM wide")
            .await;
        assert_eq!(r["rows"], json!([[7_998_000, 4000, 1999.5]]));
        let s = &r["stats"];
        let (scanned, total) = (
            s["bytes_scanned"].as_u64().unwrap(),
            s["bytes_total"].as_u64().unwrap(),
        );
        if total > 0 && s["files_scanned"].as_u64().unwrap() == s["files_total"].as_u64().unwrap() {
            assert!(
                scanned * 20 < total,
                "3 of 2003 columns: read {scanned} of {total} bytes"
            );
            break;
        }
        assert!(Instant::now() < deadline, "wide never flushed: {s}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The columns endpoint lists every column with its type and statistics.
    let cols: Json = server
        .client
        .get(format!("{}/api/v1/datasets/wide/columns", server.url))
        .header("X-Honeycomb-Team", common::QUERY_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cols = cols["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 2003);
    let a = cols.iter().find(|c| c["name"] == "a").unwrap();
    assert_eq!((&a["type"], &a["count"]), (&json!("int64"), &json!(4000)));
    let ad = a["approx_distinct"].as_u64().unwrap();
    assert!((3800..=4200).contains(&ad), "approx distinct of a: {ad}");
    let b = cols.iter().find(|c| c["name"] == "b").unwrap();
    assert_eq!(b["approx_distinct"], 10);
    let sparse = cols.iter().find(|c| c["name"] == "sparse_7").unwrap();
    assert_eq!(sparse["count"], 20);
    assert!(sparse["first_seen"].is_string() && sparse["last_seen"].is_string());
}

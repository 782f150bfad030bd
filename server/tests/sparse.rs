//! Sparse and wide requests on the embedded log: acknowledged means kept, exactly once, in
//! records bounded by size, and memory that grows with the values sent, not rows × columns.
//!
//! The first case is the one that was acknowledged and then lost: 100,000 events of two
//! fields, the first named from 400 names. Its single log record was 327 MB (every column
//! padded to every row), larger than the log reads back, so the store stopped applying
//! anything and a restart cut it off with everything after it.

mod common;

use std::time::Duration;

use common::{INGEST_KEY, Server};
use serde_json::{Value as Json, json};

fn log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("log"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

async fn post_items(s: &Server, dataset: &str, items: &[Json]) -> (u16, Json) {
    let body = serde_json::to_vec(items).unwrap();
    let r = s
        .post(&format!("/1/batch/{dataset}"), INGEST_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Json::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_batch_is_kept_exactly_once_through_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing is flushed: every event lives in the log and the hot tail until the restart.
    let args = ["--flush-seconds", "3600", "--max-memory-mb", "2048"];
    let mut server = Server::start_with(dir.path(), &args, &[]).await;
    let sparse: Vec<Json> = (0..100_000)
        .map(|i| json!({"data": {format!("sp{}", i % 400): i % 7, "seq": i}}))
        .collect();
    let (status, reply) = post_items(&server, "sparse", &sparse).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply.as_array().map(Vec::len), Some(100_000));
    assert!(reply.as_array().unwrap().iter().all(|r| r["status"] == 202));
    // The records hold the values sent, not rows × columns (the padded record was 327 MB).
    let bytes = log_bytes(dir.path());
    assert!(
        bytes < 24 << 20,
        "the log holds {bytes} bytes for a 3.4 MB request"
    );

    // A small batch after it becomes visible: the store did not stop at the sparse one.
    let after: Vec<Json> = (100_000..100_010)
        .map(|i| json!({"data": {"seq": i, "after": true}}))
        .collect();
    let (status, _) = post_items(&server, "sparse", &after).await;
    assert_eq!(status, 200);
    assert_eq!(server.wait_count("sparse", 100_010).await, 100_010);
    let check = |rows: Vec<Vec<Json>>| {
        assert_eq!(rows[0][0], json!(100_010), "count");
        assert_eq!(rows[0][1], json!(100_010), "distinct seq");
        assert_eq!(rows[0][2], json!(100_009), "max seq");
        assert_eq!(rows[0][3], json!(250), "events with sp123");
    };
    let sql = "SELECT count(*), count(DISTINCT seq), max(seq), count(sp123) FROM sparse";
    check(server.rows(sql).await);

    // kill -9 and restart: all of it comes back from the log, once.
    server.kill9();
    let server = Server::start_with(dir.path(), &args, &[]).await;
    assert_eq!(server.wait_count("sparse", 100_010).await, 100_010);
    check(server.rows(sql).await);
    // Every sparse column reads back where it was put.
    let rows = server
        .rows("SELECT seq, sp399 FROM sparse WHERE sp399 IS NOT NULL ORDER BY seq LIMIT 3")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![json!(399), json!(399 % 7)],
            vec![json!(799), json!(799 % 7)],
            vec![json!(1199), json!(1199 % 7)]
        ]
    );
    // And once flushed to Parquet, the same answers.
    drop(server);
    let server = Server::start_with(dir.path(), &["--flush-seconds", "1"], &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = server
            .call(
                reqwest::Method::GET,
                "/api/v1/datasets",
                common::ADMIN_KEY,
                None,
            )
            .await;
        let hot = body["datasets"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["name"] == "sparse"))
            .map(|d| d["hot_rows"].as_u64().unwrap_or(1));
        if hot == Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never flushed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(server.rows(sql).await);
}

/// A request too large for one record becomes several, appended together: wide events
/// (100 columns of 60-byte strings, about 20 MB encoded) are acknowledged and stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_a_record_is_stored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--flush-seconds", "3600", "--max-body-bytes", "40000000"];
    let mut server = Server::start_with(dir.path(), &args, &[]).await;
    let wide: Vec<Json> = (0..3_000)
        .map(|i| {
            let mut data = serde_json::Map::new();
            data.insert("seq".into(), json!(i));
            for c in 0..100 {
                data.insert(
                    format!("attr{c}"),
                    json!(format!("{i:08}-{c:03}-{}", "v".repeat(48))),
                );
            }
            json!({ "data": data })
        })
        .collect();
    let (status, reply) = post_items(&server, "wide", &wide).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(server.wait_count("wide", 3_000).await, 3_000);
    server.kill9();
    let server = Server::start_with(dir.path(), &args, &[]).await;
    assert_eq!(server.wait_count("wide", 3_000).await, 3_000);
    let rows = server
        .rows("SELECT count(DISTINCT seq), count(attr99), min(attr42) FROM wide")
        .await;
    assert_eq!(rows[0][0], json!(3_000));
    assert_eq!(rows[0][1], json!(3_000));
    assert_eq!(
        rows[0][2],
        json!(format!("{:08}-042-{}", 0, "v".repeat(48)))
    );
}

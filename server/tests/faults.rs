//! Faults under a running server: the disk fills up (a real, small tmpfs), a segment file is
//! corrupted, a catalog entry is lost. Each must be detected and reported clearly, never turn
//! into a crash (or crash loop), and never lose what was acknowledged.
//!
//! Failing fsyncs and half-done writes are injected below the server, in
//! `eventlog/tests/faults.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tmpfs::{Tmpfs, fill_up};
use common::{INGEST_KEY, Server};
use serde_json::{Value as Json, json};

fn events(from: u64, n: u64) -> Vec<Json> {
    (from..from + n)
        .map(|seq| {
            json!({"data": {
                "seq": seq,
                "service.name": "checkout",
                // Different in every event, so the data does not compress to nothing.
                "trace.trace_id": format!("{:032x}", seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                "pad": format!("{seq:0>120}"),
            }})
        })
        .collect()
}

async fn post(s: &Server, items: &[Json]) -> (u16, Option<u64>, Json) {
    s.post_batch(INGEST_KEY, "full", items).await
}

async fn counts(s: &Server) -> (u64, u64) {
    let rows = s
        .rows("SELECT count(*), count(DISTINCT seq) FROM \"full\"")
        .await;
    (
        rows[0][0].as_u64().unwrap_or(0),
        rows[0][1].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_503_loses_nothing_acknowledged_and_recovers_by_itself() {
    let Some(fs) = Tmpfs::mount(40) else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); eventlog/tests/faults.rs injects the same faults"
        );
        return;
    };
    let data = fs.path().join("data");
    let ballast: PathBuf = fs.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 8 << 20]).expect("ballast");
    // Small log segments and frequent flushes: both the log and segment flushes meet the
    // full disk.
    let args = [
        "--flush-rows",
        "5000",
        "--flush-seconds",
        "1",
        "--log-segment-bytes",
        "2097152",
    ];
    let mut s = Server::start_with(&data, &args, &[]).await;

    let mut acked = 0u64;
    let mut seq = 0u64;
    let mut refused = None;
    for _ in 0..5000 {
        let (status, retry, body) = post(&s, &events(seq, 500)).await;
        seq += 500;
        match status {
            200 => acked += 500,
            503 => {
                refused = Some((retry, body));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (retry, body) = refused.expect("the disk never filled up");
    eprintln!("disk full after {acked} acknowledged events: {body}");
    assert_eq!(retry, Some(10), "Retry-After on a full disk");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("disk is full"),
        "{body}"
    );
    // Still full: still refused, nothing else breaks; health and queries answer. The server
    // frees space by itself (a flush that finished truncates the log), so the test takes what
    // is left before asking again; what it takes back may let a request or two through.
    let filler = fs.path().join("filler");
    let mut refused_again = false;
    for _ in 0..20 {
        fill_up(&filler);
        let (status, _, body) = post(&s, &events(seq, 500)).await;
        seq += 500;
        match status {
            200 => acked += 500,
            503 => {
                refused_again = true;
                break;
            }
            other => panic!("unexpected {other} on a full disk: {body}"),
        }
    }
    assert!(refused_again, "a full disk stopped refusing ingest");
    let health = s.client.get(format!("{}/healthz", s.url)).send().await;
    assert_eq!(health.expect("healthz").status(), 200);
    assert_eq!(s.wait_count("\"full\"", acked).await, acked);
    assert_eq!(counts(&s).await, (acked, acked));

    // Space comes back: ingest resumes without a restart.
    std::fs::remove_file(&ballast).expect("remove ballast");
    std::fs::remove_file(&filler).expect("remove filler");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = post(&s, &events(seq, 500)).await;
        seq += 500;
        if status == 200 {
            acked += 500;
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "ingest never resumed: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.wait_count("\"full\"", acked).await, acked);

    // A restart (the hot tail is replayed from the log, segments from the catalog): exactly
    // the acknowledged events, each once.
    s.stop();
    let s = Server::start_with(&data, &args, &[]).await;
    assert_eq!(s.wait_count("\"full\"", acked).await, acked);
    assert_eq!(counts(&s).await, (acked, acked));
    drop(s);
}

/// Starts a server that flushes every 1000 events and never merges, sends `batches` batches
/// of 1000 to `dataset`, and stops it (the stop flushes the rest).
async fn segments_of(dir: &Path, dataset: &str, batches: u64) {
    let mut s = Server::start_with(
        dir,
        &["--flush-rows", "1000", "--compaction-seconds", "0"],
        &[],
    )
    .await;
    for b in 0..batches {
        s.send_batch(dataset, &events(b * 1000, 1000)).await;
    }
    assert_eq!(
        s.wait_count(&format!("\"{dataset}\""), batches * 1000)
            .await,
        batches * 1000
    );
    s.stop();
}

fn catalog(dir: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(dir.join("catalog/p00000.json")).expect("catalog"))
        .expect("catalog json")
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_no_catalog_names_are_quarantined_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    segments_of(dir.path(), "kept", 3).await;
    let segments = dir.path().join("segments/kept");
    let before = files_under(&segments);
    assert!(before.len() >= 2, "{before:?}");

    // One catalog entry is lost (a bad edit, an old backup restored over it).
    let mut c = catalog(dir.path());
    let lost = c["datasets"]["kept"]["segments"]
        .as_array_mut()
        .expect("segments")
        .remove(0);
    std::fs::write(
        dir.path().join("catalog/p00000.json"),
        serde_json::to_vec(&c).unwrap(),
    )
    .unwrap();
    let lost_file = lost["path"]
        .as_str()
        .unwrap()
        .trim_start_matches("kept/")
        .to_owned();
    let lost_rows = lost["rows"].as_u64().unwrap();

    let s = Server::start_with(dir.path(), &["--compaction-seconds", "0"], &[]).await;
    // The sweep runs every second: the file is moved, not deleted, and the move is reported.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.path().join("quarantine/kept").join(&lost_file).exists() {
        assert!(
            Instant::now() < deadline,
            "not quarantined: {:?}",
            files_under(&segments)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!segments.join(&lost_file).exists());
    assert_eq!(s.metric("eventide_store_quarantined_files").await, 1.0);
    let rows = s.rows("SELECT count(*) FROM kept").await;
    assert_eq!(rows[0][0].as_u64(), Some(3000 - lost_rows));
    drop(s);

    // The whole catalog file is lost: every segment file is kept, in quarantine, and the
    // server runs and ingests on.
    std::fs::remove_file(dir.path().join("catalog/p00000.json")).unwrap();
    let s = Server::start_with(dir.path(), &["--compaction-seconds", "0"], &[]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while files_under(&dir.path().join("quarantine/kept")).len() < before.len() {
        assert!(Instant::now() < deadline, "not all quarantined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(files_under(&dir.path().join("quarantine/kept")), before);
    // The log still held every record (its segment files were never full, so never cut):
    // they are replayed, and served once each (not also from the quarantined files).
    s.send_batch("kept", &events(10_000, 10)).await;
    assert_eq!(s.wait_count("kept", 3010).await, 3010);
    let rows = s.rows("SELECT count(DISTINCT seq) FROM kept").await;
    assert_eq!(rows[0][0].as_u64(), Some(3010));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_segment_is_reported_by_name_and_the_rest_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    segments_of(dir.path(), "damaged", 2).await;
    segments_of(dir.path(), "healthy", 1).await;
    let c = catalog(dir.path());
    let victim = c["datasets"]["damaged"]["segments"][0]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    // Bit rot over the file's data pages (all but the magic and the footer).
    let path = dir.path().join("segments").join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    for b in &mut bytes[4..n - 8 - footer] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();

    for restart in 0..2 {
        let s = Server::start(dir.path(), &[]).await;
        let (status, body) = s
            .try_sql("SELECT count(*), sum(seq), max(\"trace.trace_id\") FROM damaged")
            .await;
        eprintln!("restart {restart}: {status} {body}");
        assert_eq!(status, 500, "{body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(&victim), "names the file: {body}");
        assert!(msg.contains("corrupt"), "{body}");
        let rows = s.rows("SELECT count(*) FROM healthy").await;
        assert_eq!(rows[0][0].as_u64(), Some(1000));
        let health = s.client.get(format!("{}/healthz", s.url)).send().await;
        assert_eq!(health.unwrap().status(), 200);
        drop(s);
    }
}

//! Overload: per-key rate limits (429 + `Retry-After`), the in-flight budget and the memory
//! bound (503 + `Retry-After`), with `/healthz` and queries answered meanwhile and nothing acknowledged
//! lost or doubled. The long soak at twice the measured capacity is `eventide-bench soak`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{INGEST_KEY, QUERY_KEY, Server};
use serde_json::{Value as Json, json};

fn events(from: u64, n: u64) -> Vec<Json> {
    (from..from + n)
        .map(|seq| json!({"data": {"seq": seq, "service.name": "checkout", "pad": "x".repeat(40)}}))
        .collect()
}

async fn post(s: &Server, key: &str, dataset: &str, items: &[Json]) -> (u16, Option<u64>, Json) {
    s.post_batch(key, dataset, items).await
}

async fn count_distinct(s: &Server, dataset: &str) -> (u64, u64) {
    let rows = s
        .rows(&format!(
            "SELECT count(*), count(DISTINCT seq) FROM \"{dataset}\""
        ))
        .await;
    (
        rows[0][0].as_u64().unwrap_or(0),
        rows[0][1].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_key_gets_429_with_retry_after_and_other_keys_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eventide"))
        .args([
            "keys",
            "create",
            "--scope",
            "ingest",
            "--rate-limit",
            "1000",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("eventide keys create");
    assert!(out.status.success(), "{out:?}");
    let limited = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let s = Server::start(dir.path(), &[]).await;

    // More than a second's worth passes at once (the key goes 2.5 s into debt)…
    let (status, _, body) = post(&s, &limited, "limited", &events(0, 3500)).await;
    assert_eq!(status, 200, "{body}");
    // …and the next request waits until the debt is repaid (the debt leaves room for a slow
    // machine between the two requests).
    let (status, retry, body) = post(&s, &limited, "limited", &events(3500, 10)).await;
    assert_eq!(status, 429, "{body}");
    let retry = retry.expect("Retry-After on 429");
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("rate limit of 1000 events/s"), "{body}");

    // Another key is not limited by it.
    let (status, _, body) = post(&s, INGEST_KEY, "unlimited", &events(0, 3000)).await;
    assert_eq!(status, 200, "{body}");

    // After Retry-After, the key sends again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (status, _, body) = post(&s, &limited, "limited", &events(3500, 10)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.wait_count("limited", 3510).await, 3510);
    assert_eq!(count_distinct(&s, "limited").await, (3510, 3510));

    // The refusal shows in /metrics by route and status.
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains(
            "eventide_http_requests_total{route=\"/1/batch/{dataset}\",method=\"POST\",status=\"429\"} 1"
        ),
        "{metrics}"
    );
}

/// Opens a request that declares `len` body bytes and sends only a few: it holds its share of
/// the in-flight budget until the socket closes.
fn stalled_request(url: &str, len: usize) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).expect("connect");
    write!(
        sock,
        "POST /1/batch/stalled HTTP/1.1\r\nHost: {addr}\r\nX-Honeycomb-Team: {INGEST_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n[{{\"data\":"
    )
    .expect("write");
    sock.flush().expect("flush");
    sock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_budget_ingest_gets_503_and_recovers_while_health_and_queries_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &["--max-inflight-mb", "1"], &[]).await;
    let (status, _, body) = post(&s, INGEST_KEY, "shed", &events(0, 100)).await;
    assert_eq!(status, 200, "{body}");

    // Two slow clients declare 400 KB each: 800 of the 1024 KiB budget are held.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| stalled_request(&s.url, 400 * 1024))
        .collect();
    let big = events(100, 3000); // ~250 KB
    // The stalled requests hold their budget once the server has read their headers: until
    // then a big batch may still pass (and counts as acknowledged).
    let mut acked = 100;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, retry, body) = loop {
        let r = post(&s, INGEST_KEY, "shed", &big).await;
        if r.0 != 200 || Instant::now() > deadline {
            break r;
        }
        acked += 3000;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry, Some(1), "Retry-After");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("overloaded"),
        "{body}"
    );
    // A small request still fits, health and queries answer at once.
    let (status, _, body) = post(&s, INGEST_KEY, "shed", &events(3100, 10)).await;
    assert_eq!(status, 200, "{body}");
    acked += 10;
    let started = Instant::now();
    s.assert_health_and_query_answer("SELECT count(*) FROM shed")
        .await;
    eprintln!(
        "healthz + a query while ingest sheds: {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );

    // The slow clients go away: the budget is back and the big batch passes.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = post(&s, INGEST_KEY, "shed", &big).await;
        if status == 200 {
            acked += 3000;
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "the budget never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly the acknowledged events (a batch sent twice holds the same seqs twice).
    assert_eq!(s.wait_count("shed", acked).await, acked);
    let (rows, _) = count_distinct(&s, "shed").await;
    assert_eq!(rows, acked);
    let (status, _, _) = post(&s, QUERY_KEY, "shed", &events(0, 1)).await;
    assert_eq!(status, 403, "a query key cannot ingest");
}

/// CPU clock ticks the server uses over 2 s, starting 500 ms from now (time for a cancelled
/// query's work to stop).
async fn ticks_used_soon_after(s: &Server) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = s.child.id();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cpu_ticks(pid) - before
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_time_limit_gets_504_and_stops_using_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &["--query-timeout-seconds", "1"], &[]).await;
    let started = Instant::now();
    // Hours of work: ten billion rows.
    let (status, body) = s
        .try_sql("SELECT sum(value % 7) FROM generate_series(1, 10000000000)")
        .await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("limit of 1 s"),
        "{body}"
    );
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    // Cancelled, not left running: the server is (almost) idle afterwards.
    let used = ticks_used_soon_after(&s).await;
    assert!(used < 100, "{used} ticks in 2 s after the cancellation");
    // And it answers queries.
    let (status, _) = s.try_sql("SELECT 1").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_whose_client_goes_away_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]).await;
    // The client gives up after 1 s and closes its connection.
    let r = s
        .post("/api/v1/sql", QUERY_KEY)
        .json(&json!({"sql": "SELECT sum(value % 7) FROM generate_series(1, 10000000000)"}))
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    assert!(r.is_err(), "the query cannot have finished: {r:?}");
    let used = ticks_used_soon_after(&s).await;
    assert!(used < 100, "{used} ticks in 2 s after the client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_query_memory_limit_gets_422_and_the_next_one_answers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &["--query-memory-mb", "4"], &[]).await;
    // Four million values in one aggregate state (tens of MB): more than the pool holds.
    let (status, body) = s
        .try_sql("SELECT array_length(array_agg(value)) FROM generate_series(1, 4000000)")
        .await;
    assert_eq!(status, 422, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("--query-memory-mb"), "{body}");
    // What it reserved was given back: a query that fits answers.
    let rows = s
        .rows("SELECT array_length(array_agg(value)) FROM generate_series(1, 1000)")
        .await;
    assert_eq!(rows[0][0].as_u64(), Some(1000));
    s.assert_health_and_query_answer("SELECT 1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_memory_bound_ingest_gets_503_and_queries_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    // A bound every process is above: the guard is closed from its first sample on.
    let s = Server::start_with(dir.path(), &["--max-memory-mb", "4"], &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, retry, body) = loop {
        let r = post(&s, INGEST_KEY, "mem", &events(0, 10)).await;
        if r.0 != 200 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry, Some(1), "Retry-After");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("memory") && msg.contains("bound 4 MiB"),
        "{body}"
    );
    s.assert_health_and_query_answer("SELECT 1").await;
    assert!(s.metric("eventide_ingest_shed_total").await >= 1.0);
}

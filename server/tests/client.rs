//! Eventide's Rust client (`eventide-client`) against the real server: exactly-once delivery
//! from many tasks, a bounded queue with an exact drop counter while the server is down,
//! retries that deliver once it is back, sampling, and the UDP transport.

mod common;

use std::time::Duration;

use common::{INGEST_KEY, Server};
use eventide_client::{Client, Compression, Error, Outcome, Transport};

const TASKS: u64 = 8;
const PER_TASK: u64 = 125_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_from_eight_tasks_arrive_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let client = Client::builder()
        .endpoint(&server.url)
        .key(INGEST_KEY)
        .dataset("rust-client")
        .compression(Compression::Zstd)
        .batch_events(5_000)
        .queue_capacity(50_000)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in t * PER_TASK..(t + 1) * PER_TASK {
                let outcome = client
                    .event()
                    .add("id", i)
                    .add("task", t)
                    .add("route", format!("/r/{}", i % 17))
                    .add("duration_ms", (i % 1000) as f64 / 4.0)
                    .send_wait()
                    .await
                    .unwrap();
                assert_eq!(outcome, Outcome::Queued);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    client.flush().await.unwrap();
    let stats = client.stats();
    let n = TASKS * PER_TASK;
    assert_eq!(
        (stats.sent, stats.dropped, stats.failed, stats.queued),
        (n, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(server.wait_count("\"rust-client\"", n).await, n);
    let r = server
        .rows(
            "SELECT count(*), count(DISTINCT id), sum(id), sum(task), \
             sum(_samplerate) FROM \"rust-client\"",
        )
        .await;
    assert_eq!(r[0][0], n, "count");
    assert_eq!(r[0][1], n, "each id once");
    assert_eq!(r[0][2], n * (n - 1) / 2, "id checksum");
    assert_eq!(
        r[0][3],
        PER_TASK * (TASKS * (TASKS - 1) / 2),
        "task checksum"
    );
    assert_eq!(r[0][4], n);
    client.shutdown().await;
}

#[tokio::test]
async fn with_the_server_down_the_queue_is_bounded_and_drops_are_exact_then_retries_deliver() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed port, so the server can come back where the client is sending.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Server::start_with(dir.path(), &["--http", &addr], &[]).await;
    const CAP: u64 = 1_000;
    let client = Client::builder()
        .endpoint(&server.url)
        .key(INGEST_KEY)
        .dataset("outage")
        .queue_capacity(CAP as usize)
        .batch_events(100)
        .max_retries(30)
        .build()
        .unwrap();
    for i in 0..500u64 {
        client.event().add("id", i).send().unwrap();
    }
    client.flush().await.unwrap();
    assert_eq!(client.stats().sent, 500);

    server.stop();
    const TRIES: u64 = 20_000;
    let mut queue_full = 0u64;
    for i in 500..500 + TRIES {
        match client.event().add("id", i).send() {
            Ok(_) => {}
            Err(Error::QueueFull) => queue_full += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(client.stats().queued <= CAP, "queue over its bound");
    }
    let s = client.stats();
    // Nothing can be delivered or given up on yet (the first retries back off for 100 ms
    // and more), so exactly CAP events are held and the rest were dropped.
    assert_eq!(s.queued, CAP, "{s:?}");
    assert_eq!(s.dropped, TRIES - CAP, "{s:?}");
    assert_eq!(queue_full, s.dropped);
    assert!(s.retries > 0 || s.failed == 0, "{s:?}");

    // The server comes back on the same address: the held events are retried and delivered.
    let server = Server::start_with(dir.path(), &["--http", &addr], &[]).await;
    tokio::time::timeout(Duration::from_secs(60), client.flush())
        .await
        .expect("flush after the server came back")
        .unwrap();
    let s = client.stats();
    assert_eq!((s.sent, s.failed, s.queued), (500 + CAP, 0, 0), "{s:?}");
    assert_eq!(
        server.wait_count("outage", 500 + CAP).await,
        500 + CAP,
        "each held event stored once"
    );
    let r = server.rows("SELECT count(DISTINCT id) FROM outage").await;
    assert_eq!(r[0][0], 500 + CAP);
}

#[tokio::test]
async fn shutdown_with_the_server_down_counts_the_undelivered_as_failed() {
    let client = Client::builder()
        // Nothing listens on port 9 of loopback (discard) in tests.
        .endpoint("http://127.0.0.1:9")
        .key(INGEST_KEY)
        .dataset("nowhere")
        .queue_capacity(300)
        .shutdown_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut ok = 0u64;
    for i in 0..1_000u64 {
        if client.event().add("id", i).send().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 300);
    let s = client.shutdown().await;
    assert_eq!(
        (s.sent, s.failed, s.dropped, s.queued),
        (0, 300, 700, 0),
        "{s:?}"
    );
    // After shutdown every send is refused and counted, so the identity still holds.
    assert!(matches!(
        client.event().add("id", 1).send(),
        Err(Error::Closed)
    ));
    assert!(matches!(
        client.event().add("id", 2).send_wait().await,
        Err(Error::Closed)
    ));
    let s = client.stats();
    assert_eq!((s.failed, s.queued), (302, 0), "{s:?}");
    assert_eq!(
        s.sent + s.failed + s.dropped + s.sampled_out + s.queued,
        1_002
    );
}

#[tokio::test]
async fn deterministic_sampling_and_the_udp_transport() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--udp", "127.0.0.1:0"], &[]).await;

    // Sampling: 1 in 5 by trace id; the kept events carry samplerate 5.
    let sampled = Client::builder()
        .endpoint(&server.url)
        .key(INGEST_KEY)
        .dataset("sampled")
        .sample_rate(5)
        .compression(Compression::Gzip)
        .build()
        .unwrap();
    let mut kept = 0u64;
    for i in 0..20_000u64 {
        let trace = format!("trace-{}", i / 4); // 4 events per trace, kept or left out together
        if sampled
            .event()
            .add("id", i)
            .add("trace_id", trace.clone())
            .sample_key(trace)
            .send()
            .unwrap()
            == Outcome::Queued
        {
            kept += 1;
        }
    }
    sampled.flush().await.unwrap();
    let s = sampled.stats();
    assert_eq!(s.sampled_out + kept, 20_000);
    assert_eq!(s.sent, kept);
    assert!((3_000..5_000).contains(&kept), "kept {kept}");
    assert_eq!(server.wait_count("sampled", kept).await, kept);
    let r = server
        .rows(
            "SELECT sum(_samplerate), count(DISTINCT trace_id), \
             max(n) FROM (SELECT trace_id, count(*) AS n, sum(_samplerate) AS _samplerate \
             FROM sampled GROUP BY trace_id)",
        )
        .await;
    assert_eq!(r[0][0], 5 * kept, "weighted count estimates the 20,000");
    assert_eq!(r[0][1], kept / 4, "whole traces kept");
    assert_eq!(r[0][2], 4);

    // UDP: fire and forget, counted as sent when written; all arrive on loopback.
    let udp = Client::builder()
        .transport(Transport::Udp(server.udp.unwrap()))
        .dataset("udp-client")
        .build()
        .unwrap();
    for i in 0..20_000u64 {
        udp.event()
            .add("id", i)
            .add("msg", "over udp")
            .send_wait()
            .await
            .unwrap();
    }
    udp.flush().await.unwrap();
    assert_eq!(udp.stats().sent, 20_000);
    assert_eq!(server.wait_count("\"udp-client\"", 20_000).await, 20_000);
    let r = server
        .rows("SELECT count(DISTINCT id), sum(id) FROM \"udp-client\"")
        .await;
    assert_eq!(r[0][0], 20_000);
    assert_eq!(r[0][1], 20_000u64 * 19_999 / 2);
}

//! End-to-end: the real binary, 100,000 events through each HTTP endpoint, exact checks via
//! both query endpoints, freshness measured, restart.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{INGEST_KEY, Server, percentiles};
use futures::StreamExt;
use serde_json::{Value as Json, json};

const N: u64 = 100_000;
const SERVICES: [&str; 5] = ["api", "web", "db", "auth", "search"];

fn data(i: u64, kind: &str) -> Json {
    let status = [200, 200, 200, 404, 500][(i % 5) as usize];
    let mut d = json!({
        "id": i,
        "kind": kind,
        "service": SERVICES[(i % 5) as usize],
        "dur": (i % 1000) as f64 / 10.0,
        "http": {"status": status},
    });
    if i.is_multiple_of(3) {
        d["user"] = json!(format!("u{}", i % 1000));
    }
    if i.is_multiple_of(7) {
        d["deep"] = json!({"a": {"b": {"c": {"d": {"e": {"f": i}}}}}});
    }
    if i.is_multiple_of(11) {
        d["flag"] = json!(i.is_multiple_of(2));
    }
    if i % 1000 == 999 {
        // A string in the float column `dur`: refused on its own.
        d["dur"] = json!("oops");
    }
    d
}

/// What the client expects the store to hold for one kind.
#[derive(Debug, Default, Clone, PartialEq)]
struct Expect {
    count: u64,
    sum_id: u64,
    sum_sr: u64,
    sum_dur_sr: f64,
    deep: u64,
    by_service: BTreeMap<String, u64>,
}

impl Expect {
    fn add(&mut self, i: u64, sr: u64) {
        self.count += 1;
        self.sum_id += i;
        self.sum_sr += sr;
        self.sum_dur_sr += (i % 1000) as f64 / 10.0 * sr as f64;
        if i.is_multiple_of(7) {
            self.deep += 1;
        }
        *self
            .by_service
            .entry(SERVICES[(i % 5) as usize].into())
            .or_default() += 1;
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

async fn send_batches(s: &Server) -> Expect {
    let requests: Vec<u64> = (0..N / 1000).collect();
    let results = futures::stream::iter(requests)
        .map(|r| async move {
            let items: Vec<Json> = (r * 1000..(r + 1) * 1000)
                .map(|i| json!({"data": data(i, "batch"), "samplerate": 1 + i % 4}))
                .collect();
            let body = serde_json::to_vec(&items).unwrap();
            let req = s.post("/1/batch/e2e", INGEST_KEY);
            let req = match r % 4 {
                0 => req.header("Content-Type", "application/json").body(body),
                1 => req.header("Content-Encoding", "gzip").body(gzip(&body)),
                2 => req
                    .header("Content-Encoding", "zstd")
                    .body(zstd::encode_all(&body[..], 3).unwrap()),
                _ => req
                    .header("Content-Type", "application/msgpack")
                    .body(rmp_serde::to_vec_named(&items).unwrap()),
            };
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let statuses: Vec<Json> = resp.json().await.unwrap();
            assert_eq!(statuses.len(), 1000, "one status per item, in order");
            (r, statuses)
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let mut e = Expect::default();
    for (r, statuses) in results {
        for (k, st) in statuses.iter().enumerate() {
            let i = r * 1000 + k as u64;
            if i % 1000 == 999 {
                assert_eq!(st["status"], 400, "{st}");
                assert_eq!(
                    st["error"],
                    "field \"dur\" is string but the column is float64"
                );
            } else {
                assert_eq!(st["status"], 202, "{st}");
                e.add(i, 1 + i % 4);
            }
        }
    }
    e
}

async fn send_events(s: &Server) -> Expect {
    let results = futures::stream::iter(N..2 * N)
        .map(|i| async move {
            let resp = s
                .post("/1/events/e2e", INGEST_KEY)
                .header("X-Honeycomb-Samplerate", (1 + i % 3).to_string())
                .json(&data(i, "event"))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Json = resp.json().await.unwrap();
            (i, status, body)
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let mut e = Expect::default();
    for (i, status, body) in results {
        if i % 1000 == 999 {
            assert_eq!(status, 400, "{body}");
            assert!(body["error"].as_str().unwrap().contains("dur"));
        } else {
            assert_eq!((status, &body), (200, &json!({})));
            e.add(i, 1 + i % 3);
        }
    }
    e
}

async fn send_ndjson(s: &Server) -> Expect {
    let requests: Vec<u64> = (0..20).collect();
    let results = futures::stream::iter(requests)
        .map(|r| async move {
            let per = N / 20;
            let mut body = String::new();
            for i in 2 * N + r * per..2 * N + (r + 1) * per {
                body.push_str(&data(i, "ndjson").to_string());
                body.push('\n');
            }
            body.push_str("{not json\n");
            let resp = s
                .post("/api/v1/ingest/e2e", INGEST_KEY)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let reply: Json = resp.json().await.unwrap();
            (r, reply)
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let mut e = Expect::default();
    for (r, reply) in results {
        let per = N / 20;
        // Five refused type mismatches per 5000 lines plus the malformed last line.
        assert_eq!(reply["accepted"], json!(per - 5), "{reply}");
        assert_eq!(reply["rejected"], json!(6));
        assert_eq!(reply["errors"].as_array().unwrap().len(), 6);
        assert_eq!(reply["errors"][5]["line"], json!(per + 1));
        for i in 2 * N + r * per..2 * N + (r + 1) * per {
            if i % 1000 != 999 {
                e.add(i, 1);
            }
        }
    }
    e
}

async fn verify(s: &Server, expect: &BTreeMap<&str, Expect>) {
    // Acknowledged events become visible within the freshness bound (1 s); wait for the last
    // ones, then check everything exactly.
    let total: u64 = expect.values().map(|e| e.count).sum();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.sql("SELECT count(*) FROM e2e").await;
        if r["rows"][0][0] == json!(total) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SQL: raw rows, exact counts, no duplicates, sums.
    let r = s
        .sql("SELECT kind, count(*), count(DISTINCT id), sum(id), sum(_samplerate), count(\"deep.a.b.c.d\") FROM e2e GROUP BY kind ORDER BY kind")
        .await;
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{r}");
    for row in rows {
        let kind = row[0].as_str().unwrap();
        let e = &expect[kind];
        assert_eq!(row[1], json!(e.count), "{kind} count");
        assert_eq!(row[2], json!(e.count), "{kind} distinct ids: no duplicates");
        assert_eq!(row[3], json!(e.sum_id), "{kind} sum(id)");
        assert_eq!(row[4], json!(e.sum_sr), "{kind} sum(_samplerate)");
        assert_eq!(row[5], json!(e.deep), "{kind} flattened deep objects");
    }
    let r = s.sql("SELECT service, count(*) FROM e2e WHERE kind = 'batch' GROUP BY service ORDER BY service").await;
    let got: BTreeMap<String, u64> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_owned(),
                row[1].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expect["batch"].by_service);
    // Query spec: COUNT and SUM weighted by sample rate, per kind.
    let r = s
        .spec("e2e", json!({"time_range": 7200, "calculations": [{"op": "COUNT"}, {"op": "SUM", "column": "dur"}], "breakdowns": ["kind"], "orders": [{"column": "kind"}]}))
        .await;
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for row in results {
        let e = &expect[row["kind"].as_str().unwrap()];
        assert_eq!(row["COUNT"], json!(e.sum_sr), "{row}");
        let sum = row["SUM(dur)"].as_f64().unwrap();
        assert!(
            (sum - e.sum_dur_sr).abs() < 1e-6 * e.sum_dur_sr,
            "{row} vs {}",
            e.sum_dur_sr
        );
    }
    let r = s
        .spec("e2e", json!({"calculations": [{"op": "COUNT"}], "filters": [{"column": "http.status", "op": ">=", "value": 500}, {"column": "kind", "op": "=", "value": "ndjson"}]}))
        .await;
    let want = (2 * N..3 * N)
        .filter(|i| i % 1000 != 999 && i % 5 == 4)
        .count();
    assert_eq!(r["results"][0]["COUNT"], json!(want));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipeline_exactly_once_through_all_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    // Flush often so that queries span Parquet segments and the hot tail.
    let server = Arc::new(
        Server::start(
            dir.path(),
            &[
                ("EVENTIDE_FLUSH_ROWS", "60000"),
                ("EVENTIDE_FLUSH_SECONDS", "2"),
            ],
        )
        .await,
    );
    let started = Instant::now();
    let b = send_batches(&server).await;
    let t_batch = started.elapsed();
    let prober = server.clone();
    let probe = tokio::spawn(async move {
        common::probe_freshness(&prober, "fresh", 100, Duration::from_millis(20)).await
    });
    let started = Instant::now();
    let e = send_events(&server).await;
    let t_events = started.elapsed();
    let started = Instant::now();
    let n = send_ndjson(&server).await;
    let t_ndjson = started.elapsed();
    let lat = probe.await.unwrap();
    let (p50, p99, max) = percentiles(lat);
    eprintln!(
        "e2e (debug build): /1/batch {:.0} ev/s, /1/events {:.0} ev/s, /api/v1/ingest {:.0} ev/s; \
         freshness under load over 100 probes: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        N as f64 / t_batch.as_secs_f64(),
        N as f64 / t_events.as_secs_f64(),
        N as f64 / t_ndjson.as_secs_f64()
    );
    let expect: BTreeMap<&str, Expect> = [("batch", b), ("event", e), ("ndjson", n)]
        .into_iter()
        .collect();
    verify(&server, &expect).await;

    // A graceful restart flushes the hot tail; everything is still there exactly once.
    let mut server = Arc::try_unwrap(server).ok().expect("probe finished");
    server.stop();
    let segments = std::fs::read_dir(dir.path().join("segments/e2e"))
        .unwrap()
        .count();
    assert!(
        segments >= 2,
        "data was flushed to parquet segments ({segments})"
    );
    let server = Server::start(dir.path(), &[]).await;
    verify(&server, &expect).await;
}

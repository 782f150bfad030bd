//! The traffic of a fault schedule: batches of events with unique ids, and queries whose
//! answers are checked as they arrive. Every outcome is written down in a [`Ledger`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};

use crate::common::{INGEST_KEY, QUERY_KEY};

/// The datasets each schedule writes to.
pub const DATASETS: [&str; 2] = ["fault-a", "fault-b"];

/// Where the server is now (its port changes at every restart).
pub struct Target {
    pub url: RwLock<String>,
    pub client: reqwest::Client,
}

impl Target {
    pub fn new(url: String) -> Self {
        Self {
            url: RwLock::new(url),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        }
    }

    pub fn url(&self) -> String {
        self.url.read().map(|u| u.clone()).unwrap_or_default()
    }

    pub fn set(&self, url: &str) {
        if let Ok(mut u) = self.url.write() {
            *u = url.to_owned();
        }
    }
}

/// What was sent, what was acknowledged, and what went wrong.
#[derive(Default)]
pub struct Ledger {
    /// id → the dataset (index into [`DATASETS`]) it was sent to.
    pub sent: Mutex<HashMap<u64, usize>>,
    pub acked: Mutex<HashSet<u64>>,
    pub max_sent: AtomicU64,
    pub batches: AtomicU64,
    pub refused_503: AtomicU64,
    pub no_reply: AtomicU64,
    pub queries_ok: AtomicU64,
    pub queries_503: AtomicU64,
    pub queries_504: AtomicU64,
    pub queries_no_reply: AtomicU64,
    /// Anything that breaks the promise: a 500, an unexpected refusal, a wrong answer.
    pub failures: Mutex<Vec<String>>,
}

impl Ledger {
    pub fn fail(&self, what: String) {
        eprintln!("FAULT SCHEDULE FAILURE: {what}");
        if let Ok(mut f) = self.failures.lock() {
            f.push(what);
        }
    }

    /// Acknowledged events of dataset `ds` (an index into [`DATASETS`]).
    pub fn acked_in(&self, ds: usize) -> usize {
        let (Ok(acked), Ok(sent)) = (self.acked.lock(), self.sent.lock()) else {
            return 0;
        };
        acked.iter().filter(|id| sent.get(id) == Some(&ds)).count()
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().map(|a| a.len()).unwrap_or(0)
    }
}

/// One event: an id unique in the schedule, a few common fields and a sparse one.
fn event(rng: &mut StdRng, id: u64) -> Json {
    let mut data = serde_json::Map::new();
    data.insert("id".into(), json!(id));
    data.insert(
        "service.name".into(),
        json!(["api", "checkout", "web"][rng.random_range(0..3)]),
    );
    data.insert("duration_ms".into(), json!(rng.random_range(0.1..900.0)));
    data.insert(
        "status".into(),
        json!([200, 200, 200, 404, 500][rng.random_range(0..5)]),
    );
    // Sparse columns, so batches differ in shape.
    data.insert(format!("attr_{}", rng.random_range(0..40)), json!(id % 97));
    if rng.random_ratio(1, 50) {
        data.insert("blob".into(), json!("x".repeat(rng.random_range(1..8192))));
    }
    json!({ "data": data })
}

/// Sends batches until `stop`, each of fresh ids, and writes down every outcome. Ids are never
/// sent twice, so an acknowledged id must be stored exactly once and any other id at most once.
pub async fn ingest(
    target: Arc<Target>,
    ledger: Arc<Ledger>,
    next_id: Arc<AtomicU64>,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Acquire) {
        let n = rng.random_range(1..=120u64);
        let ds = rng.random_range(0..DATASETS.len());
        let first = next_id.fetch_add(n, Ordering::AcqRel);
        let items: Vec<Json> = (first..first + n).map(|id| event(&mut rng, id)).collect();
        if let Ok(mut sent) = ledger.sent.lock() {
            for id in first..first + n {
                sent.insert(id, ds);
            }
        }
        ledger.max_sent.fetch_max(first + n - 1, Ordering::AcqRel);
        ledger.batches.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}/1/batch/{}", target.url(), DATASETS[ds]);
        let reply = target
            .client
            .post(url)
            .header("X-Honeycomb-Team", INGEST_KEY)
            .json(&items)
            .send()
            .await;
        let r = match reply {
            Ok(r) => r,
            Err(_) => {
                // Killed, stopped or restarting: not acknowledged; the ids may or may not be
                // stored (at most once). Pause a little so a dead server is not spun on.
                ledger.no_reply.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let status = r.status().as_u16();
        let body = r.text().await;
        match (status, body) {
            (200, Ok(body)) => {
                let Ok(Json::Array(results)) = serde_json::from_str::<Json>(&body) else {
                    ledger.fail(format!(
                        "batch 200 with a body that is not an array: {body:.300}"
                    ));
                    continue;
                };
                if results.len() != items.len() {
                    ledger.fail(format!("batch of {n} answered {} statuses", results.len()));
                    continue;
                }
                let mut acked = ledger.acked.lock().expect("ledger");
                for (i, res) in results.iter().enumerate() {
                    match res["status"].as_u64() {
                        Some(202) => {
                            acked.insert(first + i as u64);
                        }
                        _ => ledger.fail(format!(
                            "event {} refused in a 200 batch: {res}",
                            first + i as u64
                        )),
                    }
                }
            }
            (503, _) => {
                ledger.refused_503.fetch_add(1, Ordering::Relaxed);
            }
            (200, Err(_)) => {
                // The reply was cut (the server died while answering): not acknowledged.
                ledger.no_reply.fetch_add(1, Ordering::Relaxed);
            }
            (s, body) => ledger.fail(format!(
                "batch answered {s} (only 200 or 503 are right here): {:.300}",
                body.unwrap_or_default()
            )),
        }
    }
}

/// Whether a query of `ds` answers 200: on Kafka the store applies a record some time after
/// it was acknowledged (there is no read-your-writes wait as on the embedded log), so until
/// then the dataset's table does not exist and a query is a 400 "table not found".
pub async fn visible(target: &Target, ds: &str) -> bool {
    target
        .client
        .post(format!("{}/api/v1/sql", target.url()))
        .header("X-Honeycomb-Team", QUERY_KEY)
        .json(&json!({ "sql": format!("SELECT count(*) FROM \"{ds}\"") }))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// Asks, until `stop`, how many events each dataset holds, and checks each answer: no id
/// counted twice, none that was never sent, and (embedded log) never fewer than the last
/// answer, since the store applies only what the log made durable, and that survives any
/// crash. A query may also get 503 or 504, or no answer while the server is down; never a 500.
pub async fn query(
    target: Arc<Target>,
    ledger: Arc<Ledger>,
    monotonic: bool,
    stop: Arc<AtomicBool>,
) {
    let mut last = [0u64; DATASETS.len()];
    while !stop.load(Ordering::Acquire) {
        for (i, ds) in DATASETS.iter().enumerate() {
            let sql = format!(
                "SELECT count(*) AS n, count(DISTINCT id) AS d, coalesce(max(id), 0) AS m FROM \"{ds}\""
            );
            let reply = target
                .client
                .post(format!("{}/api/v1/sql", target.url()))
                .header("X-Honeycomb-Team", QUERY_KEY)
                .json(&json!({ "sql": sql }))
                .send()
                .await;
            let Ok(r) = reply else {
                ledger.queries_no_reply.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let status = r.status().as_u16();
            let Ok(body) = r.text().await else {
                ledger.queries_no_reply.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match status {
                200 => {
                    let v: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
                    let row = &v["rows"][0];
                    let (n, d, m) = (row[0].as_u64(), row[1].as_u64(), row[2].as_u64());
                    let (Some(n), Some(d), Some(m)) = (n, d, m) else {
                        ledger.fail(format!("query answer without counts: {body:.300}"));
                        continue;
                    };
                    ledger.queries_ok.fetch_add(1, Ordering::Relaxed);
                    let max_sent = ledger.max_sent.load(Ordering::Acquire);
                    if n != d {
                        ledger.fail(format!(
                            "{ds}: {n} events but {d} distinct ids: an event counted twice"
                        ));
                    }
                    if m > max_sent {
                        ledger.fail(format!("{ds}: id {m} was never sent (max {max_sent})"));
                    }
                    if monotonic && n < last[i] {
                        ledger.fail(format!(
                            "{ds}: {n} events after {} were seen: durable events disappeared",
                            last[i]
                        ));
                    }
                    last[i] = last[i].max(n);
                }
                503 => {
                    ledger.queries_503.fetch_add(1, Ordering::Relaxed);
                }
                504 => {
                    ledger.queries_504.fetch_add(1, Ordering::Relaxed);
                }
                s => ledger.fail(format!("query answered {s}: {body:.300}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! What the alert tests share: a webhook receiver, the clock of their servers, and traffic.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{self, INGEST_KEY, QUERY_KEY, Server};
use serde_json::{Value as Json, json};

/// A webhook receiver: every JSON body posted to it, in arrival order.
pub struct Hook {
    pub url: String,
    got: Arc<Mutex<Vec<Json>>>,
}

impl Hook {
    pub async fn start() -> Hook {
        let got: Arc<Mutex<Vec<Json>>> = Arc::default();
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Json>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook { url, got }
    }

    pub fn all(&self) -> Vec<Json> {
        self.got.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Json> {
        let deadline = Instant::now() + within;
        loop {
            let all = self.all();
            if all.len() >= n || Instant::now() > deadline {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The clock of this file's servers (`--clock-start`) and of the events they are sent: the
/// time of day never decides an outcome.
pub static CLOCK: std::sync::LazyLock<common::TestClock> =
    std::sync::LazyLock::new(common::TestClock::new);

pub fn now_s() -> f64 {
    CLOCK.now_us() as f64 / 1e6
}

/// `--clock-start` for a server started now.
pub fn clock_args() -> Vec<String> {
    vec!["--clock-start".into(), CLOCK.start_value()]
}

pub async fn start_with(dir: &std::path::Path, args: &[&str]) -> Server {
    let clock = clock_args();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(clock.iter().map(String::as_str));
    Server::start_with(dir, &all, &[]).await
}

pub async fn get(server: &Server, path: &str) -> Json {
    let (s, v) = server
        .call(reqwest::Method::GET, path, QUERY_KEY, None)
        .await;
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

/// Sends `per_tick` events every 100 ms (event time: now) until `stop` is set, ignoring
/// refusals while the server is down. `make(i)` builds event `i`'s data.
pub fn traffic(
    url: Arc<Mutex<String>>,
    dataset: &'static str,
    per_tick: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    make: impl Fn(usize) -> Json + Send + 'static,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut i = 0;
        let mut acked = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            let t = now_s();
            let items: Vec<Json> = (0..per_tick)
                .map(|k| json!({"time": t, "data": make(i + k)}))
                .collect();
            let base = url.lock().unwrap().clone();
            let r = client
                .post(format!("{base}/1/batch/{dataset}"))
                .header("X-Honeycomb-Team", INGEST_KEY)
                .json(&items)
                .send()
                .await;
            if matches!(&r, Ok(r) if r.status() == 200) {
                acked += per_tick;
            }
            i += per_tick;
        }
        acked
    })
}

/// `n` events of `service` at `version` spread evenly over `[from, to)` seconds, one in
/// `error_every` an error (500), the others 200. Endpoint and duration are set per block of
/// `error_every` events, so they are spread the same way over errors and successes.
pub fn events(
    service: &str,
    version: &str,
    n: usize,
    from: f64,
    to: f64,
    error_every: usize,
) -> Vec<Json> {
    (0..n)
        .map(|i| {
            let block = i / error_every;
            json!({
                "time": from + (to - from) * i as f64 / n as f64,
                "data": {
                    "service.name": service,
                    "service.version": version,
                    "endpoint": format!("/e{}", block % 5),
                    "duration_ms": 50.0 + ((block * 37) % 100) as f64,
                    "http.status_code": if i % error_every == 0 { 500 } else { 200 },
                }
            })
        })
        .collect()
}

pub async fn send_all(server: &Server, dataset: &str, items: Vec<Json>) {
    for chunk in items.chunks(2000) {
        server.send_batch(dataset, chunk).await;
    }
}

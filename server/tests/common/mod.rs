//! A real `eventide serve` process for end-to-end tests.
#![allow(dead_code)]

pub mod tmpfs;

/// Runs `scripts/kafka.sh CMD` (`start`, `stop`, `status`) and wants it to succeed.
pub fn kafka_script(cmd: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(cmd)
        .status()
        .expect("run scripts/kafka.sh");
    assert!(status.success(), "scripts/kafka.sh {cmd} failed");
}

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

pub const INGEST_KEY: &str = "ingest-secret";
pub const QUERY_KEY: &str = "query-secret";
pub const ADMIN_KEY: &str = "admin-secret";

pub struct Server {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
    pub client: reqwest::Client,
    /// The UDP receiver's address, when started with `--udp`.
    pub udp: Option<std::net::SocketAddr>,
}

/// The server binary under test: this build's, or the one `EVENTIDE_TEST_BINARY` names (to run
/// a test against another build, such as an older commit's, to show what it fixed).
pub fn binary() -> PathBuf {
    std::env::var_os("EVENTIDE_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_eventide")))
}

impl Server {
    /// Starts the binary on a free loopback port and waits for `/healthz`.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_with(dir, &[], env).await
    }

    /// Like [`Server::start`], with extra `serve` flags.
    pub async fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--data-dir"]).arg(dir);
        if !args.contains(&"--http") {
            cmd.args(["--http", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .env(
                "EVENTIDE_KEYS",
                format!("ingest:{INGEST_KEY},query:{QUERY_KEY},admin:{ADMIN_KEY}"),
            )
            .env(
                "EVENTIDE_LOG",
                std::env::var("EVENTIDE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start eventide");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                for prefix in ["eventide listening on ", "eventide receiving udp on "] {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send(addr.to_owned());
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("server printed its address");
        let udp = args.contains(&"--udp").then(|| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("server printed its udp address")
                .parse()
                .expect("udp address")
        });
        let server = Server {
            child,
            url,
            dir: dir.to_owned(),
            client: reqwest::Client::new(),
            udp,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = server
                .client
                .get(format!("{}/healthz", server.url))
                .send()
                .await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "server never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Sends `method path` with `key` (and a JSON body); the status and the JSON reply
    /// (`null` when the reply is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Json>,
    ) -> (u16, Json) {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("X-Honeycomb-Team", key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Json::Null))
    }

    pub fn post(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.url))
            .header("X-Honeycomb-Team", key)
    }

    /// Sends `items` (Honeycomb batch items) to `/1/batch/{dataset}` with the ingest key and
    /// checks the 200.
    pub async fn send_batch(&self, dataset: &str, items: &[Json]) {
        let r = self
            .post(&format!("/1/batch/{dataset}"), INGEST_KEY)
            .json(items)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "batch to {dataset}");
    }

    /// Posts Honeycomb batch items to `/1/batch/{dataset}` with `key`: the status, the
    /// `Retry-After` header (seconds) and the JSON reply (`null` when it is not JSON).
    pub async fn post_batch(
        &self,
        key: &str,
        dataset: &str,
        items: &[Json],
    ) -> (u16, Option<u64>, Json) {
        let r = self
            .post(&format!("/1/batch/{dataset}"), key)
            .json(items)
            .send()
            .await
            .expect("send a batch");
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        (status, retry, r.json().await.unwrap_or(Json::Null))
    }

    /// The text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of an unlabelled sample `name` in `GET /metrics`; panics when it is missing.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    }

    /// Asserts that `/healthz` and the query `sql` both answer 200.
    pub async fn assert_health_and_query_answer(&self, sql: &str) {
        let health = self
            .client
            .get(format!("{}/healthz", self.url))
            .send()
            .await
            .expect("GET /healthz");
        assert_eq!(health.status(), 200);
        let (status, body) = self.try_sql(sql).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Runs SQL and returns the status and body, whatever they are.
    pub async fn try_sql(&self, sql: &str) -> (u16, Json) {
        let r = self
            .post("/api/v1/sql", QUERY_KEY)
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn sql(&self, sql: &str) -> Json {
        let (status, body) = self.try_sql(sql).await;
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }

    pub async fn spec(&self, dataset: &str, spec: Json) -> Json {
        let r = self
            .post(&format!("/api/v1/query/{dataset}"), QUERY_KEY)
            .json(&spec)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Json = r.json().await.unwrap();
        assert_eq!(status, 200, "{spec}: {body}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends `probes` single events to `dataset` (pausing `pause` between them), each with a
/// unique `probe` value, and measures for each the time from its 2xx to being visible in SQL.
pub async fn probe_freshness(
    s: &Server,
    dataset: &str,
    probes: usize,
    pause: Duration,
) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(probes);
    for _ in 0..probes {
        let id = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let resp = s
            .post(&format!("/1/events/{dataset}"), INGEST_KEY)
            .json(&json!({ "probe": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let acked = Instant::now();
        loop {
            // Until its first event is applied the dataset does not exist (400, table not found).
            let (status, r) = s
                .try_sql(&format!(
                    "SELECT count(*) FROM \"{dataset}\" WHERE probe = '{id}'"
                ))
                .await;
            if status == 200 && r["rows"][0][0] == json!(1) {
                lat.push(acked.elapsed());
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(30),
                "probe {id} in {dataset} never became visible"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(pause).await;
    }
    lat
}

/// The median, p99 and max of durations, in milliseconds.
pub fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort_unstable();
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.5), at(0.99), at(1.0))
}

impl Server {
    /// Rows of a SQL query.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Json>> {
        let body = self.sql(sql).await;
        serde_json::from_value(body["rows"].clone()).expect("rows are arrays")
    }

    /// Polls `SELECT count(*) …` until it reaches `want` (events are applied to the hot tail
    /// just after their acknowledgement) or 20 s pass; returns the last count.
    pub async fn wait_count(&self, from_where: &str, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self
                .try_sql(&format!("SELECT count(*) FROM {from_where}"))
                .await;
            let n = if status == 200 {
                body["rows"][0][0].as_u64().unwrap_or(0)
            } else {
                0
            };
            if n >= want || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A fixed time of day for the servers of one test (`--clock-start`), so that which hour,
/// day or compaction window the test's events fall in never depends on when it runs. It
/// advances with real time from the test's start, so a restarted server goes on where the
/// last one stopped instead of going back.
pub struct TestClock {
    base_us: i64,
    started: Instant,
}

impl TestClock {
    /// 2026-06-15T10:30:00Z: mid-hour, so a test shorter than 25 minutes stays in one hour.
    pub const BASE_US: i64 = 1_781_519_400_000_000;

    pub fn new() -> Self {
        Self {
            base_us: Self::BASE_US,
            started: Instant::now(),
        }
    }

    /// The clock now, µs since the epoch.
    pub fn now_us(&self) -> i64 {
        self.base_us + self.started.elapsed().as_micros() as i64
    }

    /// The value of `EVENTIDE_CLOCK_START` for a server started now.
    pub fn start_value(&self) -> String {
        let us = self.now_us();
        chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
            .expect("a valid time")
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// `env` with `EVENTIDE_CLOCK_START` set to now.
    pub fn env<'a>(&self, env: &[(&'a str, &'a str)], value: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut out = env.to_vec();
        out.push(("EVENTIDE_CLOCK_START", value));
        out
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// The server process's peak resident memory since the last [`Server::reset_peak_rss`]
    /// (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Starts measuring the peak resident memory afresh (`/proc/PID/clear_refs`).
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }
}

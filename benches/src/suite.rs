//! `eventide-bench suite`: the whole benchmark in one run, with its references measured in
//! the same run, written as `report.json`, `report.md` and PNG charts.
//!
//! 1. **Decode ceiling**: one thread turning `/1/batch` bodies into encoded Arrow batches
//!    (the server's own decoder, in process): the most one core can ingest.
//! 2. **Ingest + freshness**: a fresh `eventide serve` (embedded log, durable acks), HTTP batch
//!    ingest from concurrent clients, freshness probes into the dataset under load; server
//!    CPU-seconds and peak RSS from `/proc`.
//! 3. **Load**: the query dataset (N events with their own times) through `eventide import`,
//!    then wait until it is all in compacted Parquet segments.
//! 4. **Queries**: a fixed set over those segments, through Eventide's HTTP API and through
//!    DuckDB reading the very same Parquet files; answers compared, medians and ratios.
//! 5. **Storage**: bytes/event of Eventide's segments, of the raw NDJSON and of DuckDB's own
//!    ZSTD Parquet of the same events (with DuckDB's `read_json` load time as an ingest
//!    reference).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::{Format, IngestArgs, generator, pct, send_ingest};

/// Settings of `eventide-bench suite`.
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// Events of the query and storage suites.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Events of the ingest suite (bodies are built in memory first: ~1 KB each).
    #[arg(long, default_value_t = 2_000_000)]
    pub ingest_events: u64,
    /// Events of each other variant (request format, Kafka): one run each.
    #[arg(long, default_value_t = 500_000)]
    pub variant_events: u64,
    /// Ingest runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub ingest_runs: usize,
    /// Events of the decode-ceiling measurement.
    #[arg(long, default_value_t = 500_000)]
    pub decode_events: u64,
    /// Concurrent ingest clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Timed runs per query (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Folder for the report (created).
    #[arg(long, default_value = "benches/results/latest")]
    pub out: PathBuf,
    /// Scratch folder for the data directory, the NDJSON and DuckDB's Parquet (deleted
    /// afterwards unless --keep).
    #[arg(long, default_value = "/tmp/eventide-suite")]
    pub work: PathBuf,
    #[arg(long)]
    pub keep: bool,
    /// NDJSON of the query and storage suites: used as it is when the file exists (it must
    /// hold `--events` events of `eventide-bench gen --seed 1`), else generated there. Kept
    /// outside --work so later runs skip generating ~1 GB per million events.
    #[arg(long)]
    pub ndjson: Option<PathBuf>,
    /// The server binary.
    #[arg(long, default_value = "target/release/eventide")]
    pub server_bin: PathBuf,
    /// Python of the bench virtualenv (benches/venv.sh prints it).
    #[arg(long, env = "EVENTIDE_BENCH_PYTHON")]
    pub python: PathBuf,
    /// HTTP port of the server it starts (loopback).
    #[arg(long, default_value_t = 4380)]
    pub port: u16,
    /// Apache Kafka brokers (`host:port`): also measure one ingest run with the server on
    /// Kafka (`serve --kafka`, a fresh topic), e.g. one `scripts/kafka.sh start` runs.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Skip phases: any of decode, ingest, variants (the other request formats), query,
    /// storage.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
}

pub(crate) const KEY: &str = "suite-admin";
const QUERY_DATASET: &str = "bench";

#[derive(Debug, Serialize)]
struct DecodeReport {
    events: u64,
    json_bytes: usize,
    seconds: f64,
    events_per_s: f64,
    mb_per_s: f64,
    /// Bytes of log payload (Arrow IPC) per event, what the log writes.
    log_bytes_per_event: f64,
}

/// One core: `/1/batch` bodies → Arrow batch → log payload, with the server's decoder.
fn decode_ceiling(events: u64) -> anyhow::Result<DecodeReport> {
    use eventide_ingest::decode::{Defaults, json_batch_into};
    use eventide_model::{ColumnarBatch, DatasetSchema, Limits, encode_records};
    let (bodies, bytes) = crate::batch_bodies(
        7,
        generator::DEFAULT_START_US,
        1000,
        events,
        1000,
        crate::Format::Honeycomb,
    )?;
    let limits = Limits::default();
    let d = Defaults {
        time_us: None,
        samplerate: 1,
        receive_us: generator::DEFAULT_START_US,
        decoded_budget: usize::MAX,
    };
    let mut best = f64::MAX;
    let mut payload_bytes = 0usize;
    // Three passes over the bodies, the fastest counts (the first also warms the schema).
    for _ in 0..3 {
        let mut schema = DatasetSchema::new();
        payload_bytes = 0;
        let t = Instant::now();
        for body in &bodies {
            let mut batch =
                ColumnarBatch::new(schema.clone(), limits.max_columns_per_dataset, 1024);
            let out = json_batch_into(body, &d, &limits, &mut batch)
                .map_err(|e| anyhow::anyhow!("decode: {e:?}"))?;
            if out.iter().any(Option::is_some) {
                bail!("the decoder refused generated events");
            }
            for (name, t) in batch.new_columns() {
                schema.merge_column(name, *t);
            }
            for (b, _) in encode_records(&batch.finish()?, limits.max_record_bytes)? {
                payload_bytes += std::hint::black_box(b).len();
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(DecodeReport {
        events,
        json_bytes: bytes,
        seconds: best,
        events_per_s: events as f64 / best,
        mb_per_s: bytes as f64 / best / 1e6,
        log_bytes_per_event: payload_bytes as f64 / events as f64,
    })
}

/// A server process this suite started, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(
        bin: &Path,
        data: &Path,
        port: u16,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(data.with_extension("log"))?;
        let child = Command::new(bin)
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("EVENTIDE_KEYS", format!("admin:{KEY}"))
            .env("EVENTIDE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let s = Self { child, url };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("server did not listen on port {port}")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime + stime of the process so far, seconds.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
        Ok(ticks / clock_ticks())
    }

    /// Peak resident set size since the last reset, bytes.
    fn peak_rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        Ok(kb * 1024)
    }

    fn reset_peak_rss(&self) {
        // "5" resets the peak RSS (Linux ≥ 4.0); harmless if refused.
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[derive(Debug, Serialize)]
struct IngestSummary {
    events: usize,
    seconds: f64,
    events_per_s: f64,
    mb_per_s: f64,
    clients: usize,
    batch: usize,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    server_cpu_seconds: f64,
    server_cpu_seconds_per_million: f64,
    /// Server CPU-seconds per wall second: the cores the server kept busy.
    server_cores_used: f64,
    /// events/s per core used, as a fraction of the one-core decode ceiling.
    per_core_fraction_of_decode_ceiling: Option<f64>,
    /// Peak RSS over every run.
    peak_rss_bytes: u64,
    /// events/s of every run, in run order.
    runs_events_per_s: Vec<f64>,
    ack_samples_ms: Vec<f64>,
    timeline: Vec<(f64, f64)>,
}

#[derive(Debug, Serialize)]
struct FreshnessSummary {
    probes: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    samples_ms: Vec<f64>,
}

/// One query of the suite: the same question in Eventide's SQL (DataFusion) and DuckDB's.
struct QuerySpec {
    name: &'static str,
    what: &'static str,
    eventide: String,
    duckdb: String,
}

/// The queries over `events` generated events (one every 1000 µs on average from
/// `start_us`); the time windows and the HAVING threshold scale with the data, so a small
/// run asks the same questions.
fn queries(trace_id: &str, user_id: &str, start_us: i64, events: u64) -> Vec<QuerySpec> {
    let t = |offset_s: i64| {
        chrono::DateTime::from_timestamp_micros(start_us + offset_s * 1_000_000)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    let span_s = (events / 1000) as i64;
    let start = (span_s / 5).min(1800);
    let (from, to) = (t(start), t(start + (span_s * 3 / 5).min(7200)));
    let having = events / 50;
    let same = |name, what, sql: String| QuerySpec {
        name,
        what,
        eventide: sql.clone(),
        duckdb: sql,
    };
    vec![
        same(
            "count_by_service",
            "COUNT by service.name",
            r#"SELECT "service.name" AS service, COUNT(*) AS n FROM bench GROUP BY 1 ORDER BY n DESC, service"#.into(),
        ),
        QuerySpec {
            name: "p99_by_endpoint_top20",
            what: "P99(duration_ms) by endpoint, top 20",
            eventide: r#"SELECT endpoint, percentile_cont(duration_ms, 0.99) AS p99 FROM bench GROUP BY endpoint ORDER BY p99 DESC, endpoint LIMIT 20"#.into(),
            duckdb: r#"SELECT endpoint, quantile_cont(duration_ms, 0.99) AS p99 FROM bench GROUP BY endpoint ORDER BY p99 DESC, endpoint LIMIT 20"#.into(),
        },
        same(
            "count_distinct_users",
            "COUNT_DISTINCT(user_id)",
            r#"SELECT COUNT(DISTINCT user_id) AS users FROM bench"#.into(),
        ),
        same(
            "error_rate_per_minute_2h",
            "errors and error rate per minute over a time window (3/5 of the data, at most 2 h: 100 min at 10M events)",
            format!(
                r#"SELECT date_trunc('minute', "timestamp") AS minute, COUNT(*) AS n, SUM(CASE WHEN "http.status_code" >= 500 THEN 1 ELSE 0 END) AS errors, AVG(CASE WHEN "http.status_code" >= 500 THEN 1.0 ELSE 0.0 END) AS error_rate FROM bench WHERE "timestamp" >= '{from}' AND "timestamp" < '{to}' GROUP BY 1 ORDER BY 1"#
            ),
        ),
        same(
            "needle_trace_id",
            "one trace by trace.trace_id",
            format!(
                r#"SELECT "timestamp", "service.name", endpoint, duration_ms, "trace.span_id" FROM bench WHERE "trace.trace_id" = '{trace_id}'"#
            ),
        ),
        same(
            "needle_user_id",
            "one user's events by user_id",
            format!(
                r#"SELECT COUNT(*) AS n, AVG(duration_ms) AS avg_ms, MAX("timestamp") AS last FROM bench WHERE user_id = '{user_id}'"#
            ),
        ),
        same(
            "build_by_status_filtered",
            "COUNT by build_id × status, service and method filters",
            r#"SELECT build_id, "http.status_code" AS status, COUNT(*) AS n FROM bench WHERE "service.name" = 'svc-03' AND "http.method" = 'GET' GROUP BY 1, 2 ORDER BY n DESC, build_id, status LIMIT 50"#.into(),
        ),
        same(
            "heatmap_duration",
            "HEATMAP buckets of duration_ms (25 ms)",
            r#"SELECT CAST(floor(duration_ms / 25) AS BIGINT) AS bucket, COUNT(*) AS n FROM bench WHERE duration_ms < 2000 GROUP BY 1 ORDER BY 1"#.into(),
        ),
        same(
            "top_traces_by_spans",
            "top 10 traces by span count (10M distinct trace ids)",
            r#"SELECT "trace.trace_id", COUNT(*) AS spans, SUM(duration_ms) AS total_ms FROM bench GROUP BY 1 ORDER BY spans DESC, total_ms DESC, 1 LIMIT 10"#.into(),
        ),
        same(
            "breakdown3_having",
            "3-column breakdown with HAVING",
            format!(r#"SELECT region, "customer.plan" AS plan, "http.method" AS method, COUNT(*) AS n, AVG(duration_ms) AS avg_ms FROM bench GROUP BY 1, 2, 3 HAVING COUNT(*) > {having} ORDER BY n DESC, 1, 2, 3"#),
        ),
        same(
            "select_star_page",
            "SELECT * page: latest 100 events of one service",
            r#"SELECT * FROM bench WHERE "service.name" = 'svc-07' ORDER BY "timestamp" DESC, "trace.trace_id" LIMIT 100"#.into(),
        ),
        same(
            "errors_in_window",
            "COUNT and AVG of 5xx in a 2 h window",
            format!(
                r#"SELECT COUNT(*) AS n, AVG(duration_ms) AS avg_ms FROM bench WHERE "timestamp" >= '{from}' AND "timestamp" < '{to}' AND "http.status_code" >= 500"#
            ),
        ),
    ]
}

#[derive(Debug, Serialize)]
struct QueryResult {
    name: String,
    what: String,
    eventide_sql: String,
    duckdb_sql: String,
    eventide_ms: Vec<f64>,
    duckdb_ms: Vec<f64>,
    eventide_median_ms: f64,
    duckdb_median_ms: f64,
    ratio: f64,
    rows: usize,
    equal: bool,
    difference: Option<String>,
    /// Eventide's scan stats of the last run.
    stats: Json,
}

/// Two result cells are the same answer: equal, or numbers within 1e-6 relative (sums
/// accumulate in different orders, and the engines round percentile interpolation
/// differently in the last digits).
fn same_cell(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs())
        }
        _ => a == b,
    }
}

/// Compares Eventide's rows with DuckDB's, matching columns by name (a `SELECT *` lists the
/// same columns in each engine's own order).
fn compare(
    e_cols: &[String],
    e_rows: &[Json],
    d_cols: &[String],
    d_rows: &[Json],
) -> Option<String> {
    if e_rows.len() != d_rows.len() {
        return Some(format!(
            "{} rows vs DuckDB's {}",
            e_rows.len(),
            d_rows.len()
        ));
    }
    let mut d_sorted: Vec<&String> = d_cols.iter().collect();
    let mut e_sorted: Vec<&String> = e_cols.iter().collect();
    d_sorted.sort();
    e_sorted.sort();
    if d_sorted != e_sorted {
        return Some(format!("columns {e_cols:?} vs DuckDB's {d_cols:?}"));
    }
    let map: Vec<usize> = e_cols
        .iter()
        .map(|c| d_cols.iter().position(|d| d == c).unwrap_or(0))
        .collect();
    for (i, (er, dr)) in e_rows.iter().zip(d_rows).enumerate() {
        for (j, &k) in map.iter().enumerate() {
            let (a, b) = (&er[j], &dr[k]);
            if !same_cell(a, b) {
                return Some(format!(
                    "row {i} column {:?}: {a} vs DuckDB's {b}",
                    e_cols[j]
                ));
            }
        }
    }
    None
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    pct(&mut v, 0.5)
}

pub(crate) async fn sql(client: &reqwest::Client, url: &str, sql: &str) -> anyhow::Result<Json> {
    let r = client
        .post(format!("{url}/api/v1/sql"))
        .header("X-Honeycomb-Team", KEY)
        .json(&json!({ "sql": sql }))
        .send()
        .await?;
    let status = r.status();
    let body: Json = r.json().await?;
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}

async fn datasets(client: &reqwest::Client, url: &str) -> anyhow::Result<Json> {
    Ok(client
        .get(format!("{url}/api/v1/datasets"))
        .header("X-Honeycomb-Team", KEY)
        .send()
        .await?
        .json()
        .await?)
}

/// Waits until `dataset` holds `rows` rows, all in segments, with no merge pending for 35 s
/// in a row (the server runs with a 20 s compaction grace).
async fn settle(
    client: &reqwest::Client,
    url: &str,
    dataset: &str,
    rows: u64,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        let all = datasets(client, url).await?;
        let d = all["datasets"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["name"] == dataset))
            .cloned()
            .unwrap_or(Json::Null);
        let quiet = d["rows"] == json!(rows)
            && d["hot_rows"] == json!(0)
            && d["merges_pending"] == json!(0);
        // Settled once quiet for longer than the grace (20 s) plus a compaction round.
        match (quiet, quiet_since) {
            (true, None) => quiet_since = Some(Instant::now()),
            (true, Some(q)) if q.elapsed() > Duration::from_secs(35) => {
                return Ok(t.elapsed().as_secs_f64());
            }
            (false, _) => quiet_since = None,
            _ => {}
        }
        if t.elapsed() > Duration::from_secs(1200) {
            bail!("dataset {dataset} did not settle in 20 minutes: {d}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the Python side (`benches/py/duckdb_suite.py`) with one JSON request.
fn duckdb(python: &Path, request: &Json) -> anyhow::Result<Json> {
    use std::io::Write;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/duckdb_suite.py");
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(request.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("duckdb_suite.py failed: {}", out.status);
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The committed segments of `dataset`, from the catalogs (`DATA/catalog/*.json`): their
/// total bytes and paths. The segment folder may also hold files compaction retired and has
/// not deleted yet (`--retire-grace-seconds`), which are no longer part of the dataset.
fn catalog_segments(data: &Path, dataset: &str) -> anyhow::Result<(u64, Vec<PathBuf>)> {
    let mut total = 0;
    let mut files = Vec::new();
    for e in std::fs::read_dir(data.join("catalog"))? {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let c: Json = serde_json::from_slice(&std::fs::read(&p)?)?;
        for seg in c["datasets"][dataset]["segments"]
            .as_array()
            .into_iter()
            .flatten()
        {
            total += seg["bytes"].as_u64().unwrap_or(0);
            files.push(
                data.join("segments")
                    .join(seg["path"].as_str().unwrap_or_default()),
            );
        }
    }
    files.sort();
    Ok((total, files))
}

pub(crate) fn machine() -> Json {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    let cmd = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory_gib": (mem as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": cmd("uname", &["-r"]),
        "loadavg_at_start": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "git": cmd("git", &["rev-parse", "--short", "HEAD"]),
        "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
}

/// What [`ingest_runs`] sends.
struct RunPlan<'a> {
    /// Datasets are `{label}-{i}`.
    label: &'a str,
    format: Format,
    runs: usize,
    events: u64,
    /// Freshness probes (with their SQL polling) during the runs.
    probes: bool,
}

/// `runs` ingest runs of `events` events in `format` into `server`, each into its
/// own dataset (`{label}-{i}`) with its bodies built first (so the CPU and memory figures
/// cover the sending window only; the server may still be compacting earlier runs then:
/// sustained load). The run with the median events/s is reported (the machine is shared),
/// with every run's events/s alongside and the peak RSS over all of them.
async fn ingest_runs(
    args: &SuiteArgs,
    server: &Server,
    plan: RunPlan<'_>,
    ceiling: Option<f64>,
) -> anyhow::Result<(IngestSummary, FreshnessSummary)> {
    let RunPlan {
        label,
        format,
        runs,
        events,
        probes,
    } = plan;
    let mut all = Vec::new();
    for i in 0..runs.max(1) {
        let args_i = IngestArgs {
            url: server.url.clone(),
            key: KEY.into(),
            dataset: format!("{label}-{i}"),
            clients: args.clients,
            batch: 1000,
            events,
            seed: 2 + i as u64,
            probe_every_ms: if probes { 100 } else { 0 },
            start_us: generator::DEFAULT_START_US,
            step_us: 1000,
            format,
            rate: 0,
        };
        let (bodies, bytes) = crate::batch_bodies(
            args_i.seed,
            args_i.start_us,
            args_i.step_us,
            args_i.events,
            args_i.batch,
            args_i.format,
        )?;
        server.reset_peak_rss();
        let cpu0 = server.cpu_seconds()?;
        let r = send_ingest(&args_i, bodies, bytes).await?;
        let cpu = server.cpu_seconds()? - cpu0;
        let peak = server.peak_rss()?;
        r.print();
        all.push((r, cpu, peak));
    }
    let all_eps: Vec<f64> = all.iter().map(|(r, _, _)| r.events_per_s()).collect();
    all.sort_by(|a, b| a.0.events_per_s().total_cmp(&b.0.events_per_s()));
    let (r, cpu, median_peak) = all.swap_remove(all.len() / 2);
    let peak = all.iter().map(|x| x.2).max().unwrap_or(0).max(median_peak);
    let eps = r.events_per_s();
    let cores = cpu / r.seconds;
    let mut ack = r.ack_samples_ms.clone();
    let s = IngestSummary {
        events: r.events,
        seconds: r.seconds,
        events_per_s: eps,
        mb_per_s: r.json_bytes as f64 / r.seconds / 1e6,
        clients: r.clients,
        batch: r.batch,
        ack_p50_ms: pct(&mut ack, 0.5),
        ack_p99_ms: pct(&mut ack, 0.99),
        server_cpu_seconds: cpu,
        server_cpu_seconds_per_million: cpu / (r.events as f64 / 1e6),
        server_cores_used: cores,
        per_core_fraction_of_decode_ceiling: ceiling.map(|c| eps / cores.max(1e-9) / c),
        peak_rss_bytes: peak,
        runs_events_per_s: all_eps,
        ack_samples_ms: r.ack_samples_ms.clone(),
        timeline: r.timeline.clone(),
    };
    eprintln!(
        "   server: {cpu:.1} CPU-s ({:.1} per million events, {cores:.2} cores), peak RSS {:.0} MiB",
        s.server_cpu_seconds_per_million,
        peak as f64 / 1048576.0
    );
    let mut f = r.fresh_samples_ms.clone();
    let fresh = FreshnessSummary {
        probes: f.len(),
        p50_ms: pct(&mut f, 0.5),
        p99_ms: pct(&mut f, 0.99),
        max_ms: pct(&mut f, 1.0),
        samples_ms: r.fresh_samples_ms,
    };
    Ok((s, fresh))
}

pub async fn run(args: SuiteArgs) -> anyhow::Result<()> {
    let skip = |p: &str| args.skip.iter().any(|s| s == p);
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work)?;
    std::fs::create_dir_all(&args.out)?;
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), machine());

    let ceiling = if skip("decode") {
        None
    } else {
        eprintln!(
            "== decode ceiling: {} events on one thread",
            args.decode_events
        );
        let d = tokio::task::spawn_blocking({
            let n = args.decode_events;
            move || decode_ceiling(n)
        })
        .await??;
        eprintln!(
            "   {:.0} events/s, {:.1} MB/s of JSON",
            d.events_per_s, d.mb_per_s
        );
        let v = d.events_per_s;
        report.insert("decode".into(), serde_json::to_value(&d)?);
        Some(v)
    };

    let client = reqwest::Client::new();

    if !skip("ingest") {
        // A fresh server with the default settings.
        let server = Server::start(
            &args.server_bin,
            &args.work.join("ingest-data"),
            args.port,
            &[],
        )?;
        eprintln!(
            "== ingest: {} runs of {} events, {} clients, 1000-event batches",
            args.ingest_runs, args.ingest_events, args.clients
        );
        // Ingest alone: its throughput, CPU and memory.
        let (s, _) = ingest_runs(
            &args,
            &server,
            RunPlan {
                label: "ingest",
                format: Format::Honeycomb,
                runs: args.ingest_runs,
                events: args.ingest_events,
                probes: false,
            },
            ceiling,
        )
        .await?;
        report.insert("ingest".into(), serde_json::to_value(&s)?);
        // Freshness: one more run at the same load, with a probe every 100 ms whose SQL
        // polling (every 5 ms) adds query work to the server.
        eprintln!("== freshness: one more run of the same size, probes every 100 ms");
        let (fs, fresh) = ingest_runs(
            &args,
            &server,
            RunPlan {
                label: "fresh",
                format: Format::Honeycomb,
                runs: 1,
                events: args.ingest_events,
                probes: true,
            },
            ceiling,
        )
        .await?;
        report.insert("freshness".into(), serde_json::to_value(&fresh)?);
        let mut variants = vec![json!({
            "variant": "Honeycomb over HTTP, embedded log, with the freshness probes' queries",
            "ingest": fs, "freshness": fresh,
        })];
        // The other request formats, one run each, into the same server.
        let formats = if skip("variants") {
            Vec::new()
        } else {
            vec![Format::Ndjson, Format::Otlp]
        };
        for format in formats {
            eprintln!("== ingest as {format:?}");
            let (s, fresh) = ingest_runs(
                &args,
                &server,
                RunPlan {
                    label: &format!("{format:?}").to_lowercase(),
                    format,
                    runs: 1,
                    events: args.variant_events,
                    probes: true,
                },
                ceiling,
            )
            .await?;
            variants.push(json!({"variant": format!("{format:?} over HTTP, embedded log"), "ingest": s, "freshness": fresh}));
        }
        drop(server);
        if let Some(brokers) = &args.kafka {
            let topic = format!("eventide-suite-{}", std::process::id());
            let server = Server::start(
                &args.server_bin,
                &args.work.join("kafka-data"),
                args.port,
                &["--kafka", brokers, "--kafka-topic", &topic],
            )?;
            eprintln!("== ingest through Apache Kafka at {brokers} (topic {topic})");
            let (s, fresh) = ingest_runs(
                &args,
                &server,
                RunPlan {
                    label: "kafka",
                    format: Format::Honeycomb,
                    runs: 1,
                    events: args.variant_events,
                    probes: true,
                },
                ceiling,
            )
            .await?;
            variants.push(json!({"variant": "Honeycomb over HTTP, Apache Kafka log", "ingest": s, "freshness": fresh}));
        }
        report.insert("ingest_variants".into(), json!(variants));
    }

    let ndjson = args
        .ndjson
        .clone()
        .unwrap_or_else(|| args.work.join("events.ndjson"));
    let need_data = !skip("query") || !skip("storage");
    if need_data && ndjson.exists() {
        eprintln!("== using the events in {}", ndjson.display());
    } else if need_data {
        eprintln!(
            "== generate {} events (NDJSON, with their own times)",
            args.events
        );
        crate::gen_file(args.events, ndjson.clone(), 1)?;
    }
    if !skip("query") {
        // Loading: a short compaction grace, so the segments reach their final layout
        // within a minute rather than five.
        let server = Server::start(
            &args.server_bin,
            &args.work.join("data"),
            args.port,
            &["--compaction-grace-seconds", "20"],
        )?;
        eprintln!("== load: eventide import into {QUERY_DATASET:?}");
        let t = Instant::now();
        let st = Command::new(&args.server_bin)
            .args(["import", "--url", &server.url, "--key", KEY, QUERY_DATASET])
            .arg(&ndjson)
            .stderr(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("eventide import failed: {st}");
        }
        let load_s = t.elapsed().as_secs_f64();
        let settle_s = settle(&client, &server.url, QUERY_DATASET, args.events).await?;
        eprintln!(
            "   imported in {load_s:.1} s ({:.0} events/s); compaction settled {settle_s:.1} s later",
            args.events as f64 / load_s
        );
        report.insert(
            "load".into(),
            json!({"events": args.events, "import_seconds": load_s,
                   "import_events_per_s": args.events as f64 / load_s,
                   "settle_seconds": settle_s}),
        );
        // Querying: compaction off, so both engines read the very same files.
        drop(server);
        let server = Server::start(
            &args.server_bin,
            &args.work.join("data"),
            args.port,
            &["--compaction-seconds", "0"],
        )?;

        // Needles: the trace id and user of the event in the middle of the file.
        let (trace_id, user_id) = {
            use std::io::BufRead;
            let f = std::io::BufReader::new(std::fs::File::open(&ndjson)?);
            let line = f
                .lines()
                .nth((args.events / 2) as usize)
                .context("needle line")??;
            let v: Json = serde_json::from_str(&line)?;
            (
                v["trace.trace_id"].as_str().unwrap_or_default().to_string(),
                v["user_id"].as_str().unwrap_or_default().to_string(),
            )
        };
        let specs = queries(
            &trace_id,
            &user_id,
            generator::DEFAULT_START_US,
            args.events,
        );
        let (seg_bytes, files) = catalog_segments(&args.work.join("data"), QUERY_DATASET)?;
        eprintln!(
            "== queries: {} over {} segment files ({:.0} MB), {} runs each",
            specs.len(),
            files.len(),
            seg_bytes as f64 / 1e6,
            args.runs
        );
        let duck = duckdb(
            &args.python,
            &json!({
                "mode": "query",
                "runs": args.runs,
                "files": files.iter().map(|f| f.to_string_lossy()).collect::<Vec<_>>(),
                "queries": specs.iter().map(|q| json!({"name": q.name, "sql": q.duckdb})).collect::<Vec<_>>(),
            }),
        )?;
        let mut results = Vec::new();
        for (q, d) in specs
            .iter()
            .zip(duck["queries"].as_array().context("duckdb reply")?)
        {
            sql(&client, &server.url, &q.eventide).await?;
            let mut times = Vec::new();
            let mut last = Json::Null;
            for _ in 0..args.runs {
                let t = Instant::now();
                last = sql(&client, &server.url, &q.eventide).await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let e_cols: Vec<String> = last["columns"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|c| c["name"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            let e_rows = last["rows"].as_array().cloned().unwrap_or_default();
            let d_cols: Vec<String> = serde_json::from_value(d["columns"].clone())?;
            let d_rows = d["rows"].as_array().cloned().unwrap_or_default();
            let difference = compare(&e_cols, &e_rows, &d_cols, &d_rows);
            let d_ms: Vec<f64> = serde_json::from_value(d["times_ms"].clone())?;
            let (em, dm) = (median(&times), median(&d_ms));
            eprintln!(
                "   {:<28} eventide {:>8.1} ms  duckdb {:>8.1} ms  ratio {:>5.2}  {} rows {}",
                q.name,
                em,
                dm,
                em / dm,
                e_rows.len(),
                difference
                    .as_deref()
                    .map_or("same answer".to_string(), |d| format!("DIFFERENT: {d}"))
            );
            results.push(QueryResult {
                name: q.name.into(),
                what: q.what.into(),
                eventide_sql: q.eventide.clone(),
                duckdb_sql: q.duckdb.clone(),
                eventide_ms: times,
                duckdb_ms: d_ms,
                eventide_median_ms: em,
                duckdb_median_ms: dm,
                ratio: em / dm,
                rows: e_rows.len(),
                equal: difference.is_none(),
                difference,
                stats: last["stats"].clone(),
            });
        }
        let geomean =
            (results.iter().map(|r| r.ratio.ln()).sum::<f64>() / results.len() as f64).exp();
        eprintln!("   geometric mean Eventide/DuckDB: {geomean:.3}");
        report.insert(
            "query".into(),
            json!({"duckdb_version": duck["duckdb"], "events": args.events, "segment_files": files.len(),
                   "segment_bytes": seg_bytes, "runs": args.runs, "geomean_ratio": geomean,
                   "all_equal": results.iter().all(|r| r.equal), "queries": results}),
        );
    }

    if !skip("storage") {
        eprintln!("== storage: DuckDB read_json load and ZSTD Parquet of the same NDJSON");
        let nd_bytes = std::fs::metadata(&ndjson)?.len();
        let duck_out = args.work.join("duckdb.parquet");
        let d = duckdb(
            &args.python,
            &json!({"mode": "storage", "ndjson": ndjson, "out": duck_out}),
        )?;
        let n = args.events as f64;
        let seg = catalog_segments(&args.work.join("data"), QUERY_DATASET)
            .map(|(b, _)| b)
            .unwrap_or(0);
        let duck_bytes = d["parquet_bytes"].as_f64().unwrap_or(0.0);
        let load_s = d["load_seconds"].as_f64().unwrap_or(f64::NAN);
        let s = json!({
            "events": args.events,
            "ndjson_bytes_per_event": nd_bytes as f64 / n,
            "eventide_bytes_per_event": seg as f64 / n,
            "duckdb_zstd_parquet_bytes_per_event": duck_bytes / n,
            "eventide_vs_duckdb": seg as f64 / duck_bytes,
            "duckdb_read_json_seconds": load_s,
            "duckdb_read_json_events_per_s": n / load_s,
            "duckdb_rows": d["rows"],
        });
        eprintln!("   {s}");
        report.insert("storage".into(), s);
    }

    let report = Json::Object(report);
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(args.out.join("report.md"), markdown(&report))?;
    let charts = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/charts.py");
    let st = Command::new(&args.python)
        .arg(charts)
        .arg(args.out.join("report.json"))
        .arg(&args.out)
        .status()?;
    if !st.success() {
        bail!("charts.py failed: {st}");
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&args.work);
    }
    eprintln!("== report in {}", args.out.display());
    Ok(())
}

/// The Markdown summary of a report.
fn markdown(r: &Json) -> String {
    use std::fmt::Write;
    let f = |v: &Json| v.as_f64().unwrap_or(f64::NAN);
    let mut s = String::new();
    let m = &r["machine"];
    let _ = writeln!(s, "# Eventide benchmark suite\n");
    let _ = writeln!(
        s,
        "{} · {} cores · {} GiB · kernel {} · git {} · load average at start {}\n",
        m["cpu"].as_str().unwrap_or(""),
        m["cores"],
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or(""),
        m["git"].as_str().unwrap_or(""),
        m["loadavg_at_start"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        s,
        "Run {}. Client and server share the machine's cores.\n",
        m["date"].as_str().unwrap_or("")
    );
    if let Some(d) = r.get("decode") {
        let _ = writeln!(s, "## Decode ceiling (one core, in process)\n");
        let _ = writeln!(
            s,
            "`/1/batch` bodies → Arrow batch → log payload: **{:.0} events/s** ({:.1} MB/s of JSON), best of 3 passes over {} events; the log payload is {:.0} bytes/event.\n",
            f(&d["events_per_s"]),
            f(&d["mb_per_s"]),
            d["events"],
            f(&d["log_bytes_per_event"])
        );
    }
    if let Some(i) = r.get("ingest") {
        let _ = writeln!(
            s,
            "## Ingest (HTTP `/1/batch`, embedded log, durable acks)\n"
        );
        let _ = writeln!(s, "| figure | value |\n|---|---|");
        let _ = writeln!(
            s,
            "| events/s | **{:.0}** ({} events in {:.2} s, {} clients × {}-event batches): the median of runs at {} events/s |",
            f(&i["events_per_s"]),
            i["events"],
            f(&i["seconds"]),
            i["clients"],
            i["batch"],
            i["runs_events_per_s"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|x| format!("{:.0}", f(x)))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
        let _ = writeln!(s, "| MB/s of JSON | {:.1} |", f(&i["mb_per_s"]));
        let _ = writeln!(
            s,
            "| ack latency p50 / p99 | {:.1} / {:.1} ms |",
            f(&i["ack_p50_ms"]),
            f(&i["ack_p99_ms"])
        );
        let _ = writeln!(
            s,
            "| server CPU | {:.1} s, {:.1} s per million events, {:.2} cores busy |",
            f(&i["server_cpu_seconds"]),
            f(&i["server_cpu_seconds_per_million"]),
            f(&i["server_cores_used"])
        );
        if let Some(x) = i["per_core_fraction_of_decode_ceiling"].as_f64() {
            let _ = writeln!(
                s,
                "| events/s per server core ÷ decode ceiling | {:.1} % (target ≥ 40 %) |",
                x * 100.0
            );
        }
        let _ = writeln!(
            s,
            "| server peak RSS | {:.0} MiB |",
            f(&i["peak_rss_bytes"]) / 1048576.0
        );
        if let Some(fr) = r.get("freshness") {
            let _ = writeln!(
                s,
                "| freshness, ack → visible in SQL ({} probes into the dataset under load, in a separate run of the same size) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
                fr["probes"],
                f(&fr["p50_ms"]),
                f(&fr["p99_ms"]),
                f(&fr["max_ms"])
            );
        }
        if let Some(v) = r.get("ingest_variants").and_then(Json::as_array)
            && !v.is_empty()
        {
            let _ = writeln!(
                s,
                "\nOther request formats and logs, one run each (`--variant-events`):\n\n| variant | events/s | MB/s | ack p50 / p99 ms | server CPU-s per million | per core ÷ decode ceiling | freshness p50 / p99 ms |\n|---|---|---|---|---|---|---|"
            );
            for x in v {
                let (i, fr) = (&x["ingest"], &x["freshness"]);
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {:.1} | {:.1} / {:.1} | {:.1} | {} | {:.1} / {:.1} |",
                    x["variant"].as_str().unwrap_or(""),
                    f(&i["events_per_s"]),
                    f(&i["mb_per_s"]),
                    f(&i["ack_p50_ms"]),
                    f(&i["ack_p99_ms"]),
                    f(&i["server_cpu_seconds_per_million"]),
                    i["per_core_fraction_of_decode_ceiling"]
                        .as_f64()
                        .map_or("–".to_string(), |x| format!("{:.1} %", x * 100.0)),
                    f(&fr["p50_ms"]),
                    f(&fr["p99_ms"]),
                );
            }
        }
        let _ = writeln!(
            s,
            "\n![throughput](throughput.png)\n\n![latency](latency.png)\n"
        );
    }
    if let Some(q) = r.get("query") {
        let _ = writeln!(
            s,
            "## Queries: Eventide (HTTP API) vs DuckDB {} on the same Parquet files\n",
            q["duckdb_version"].as_str().unwrap_or("")
        );
        if let Some(l) = r.get("load") {
            let _ = writeln!(
                s,
                "{} events loaded with `eventide import` in {:.1} s ({:.0} events/s); compaction settled {:.1} s later into {} segment files ({:.0} MB). Median of {} runs after a warm-up.\n",
                l["events"],
                f(&l["import_seconds"]),
                f(&l["import_events_per_s"]),
                f(&l["settle_seconds"]),
                q["segment_files"],
                f(&q["segment_bytes"]) / 1e6,
                q["runs"]
            );
        }
        let _ = writeln!(
            s,
            "| query | Eventide ms | DuckDB ms | Eventide/DuckDB | rows | same answer |\n|---|---|---|---|---|---|"
        );
        for x in q["queries"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "| {} ({}) | {:.1} | {:.1} | {:.2} | {} | {} |",
                x["name"].as_str().unwrap_or(""),
                x["what"].as_str().unwrap_or(""),
                f(&x["eventide_median_ms"]),
                f(&x["duckdb_median_ms"]),
                f(&x["ratio"]),
                x["rows"],
                if x["equal"] == json!(true) {
                    "yes".to_string()
                } else {
                    format!("**no**: {}", x["difference"].as_str().unwrap_or(""))
                }
            );
        }
        let _ = writeln!(
            s,
            "\n**Geometric mean Eventide/DuckDB: {:.3}**\n\n![queries](queries.png)\n",
            f(&q["geomean_ratio"])
        );
    }
    if let Some(st) = r.get("storage") {
        let _ = writeln!(s, "## Storage ({} events)\n", st["events"]);
        let _ = writeln!(s, "| form | bytes/event |\n|---|---|");
        let _ = writeln!(
            s,
            "| raw NDJSON | {:.1} |",
            f(&st["ndjson_bytes_per_event"])
        );
        let _ = writeln!(
            s,
            "| Eventide segments (compacted Parquet) | **{:.1}** |",
            f(&st["eventide_bytes_per_event"])
        );
        let _ = writeln!(
            s,
            "| DuckDB ZSTD Parquet (`COPY … (FORMAT parquet, COMPRESSION zstd)`) | {:.1} |",
            f(&st["duckdb_zstd_parquet_bytes_per_event"])
        );
        let _ = writeln!(
            s,
            "\nEventide/DuckDB size: {:.3}. DuckDB's `read_json` load of the NDJSON: {:.1} s = {:.0} events/s (no network, no durability).\n",
            f(&st["eventide_vs_duckdb"]),
            f(&st["duckdb_read_json_seconds"]),
            f(&st["duckdb_read_json_events_per_s"])
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn answers_compare_by_column_name_with_a_float_tolerance() {
        let e_cols = cols(&["a", "b"]);
        let d_cols = cols(&["b", "a"]);
        let e = vec![json!(["x", 1.000_000_000_1]), json!([null, 2])];
        let d = vec![json!([1.0, "x"]), json!([2, null])];
        assert_eq!(compare(&e_cols, &e, &d_cols, &d), None);
        let d_off = vec![json!([1.001, "x"]), json!([2, null])];
        assert!(
            compare(&e_cols, &e, &d_cols, &d_off)
                .unwrap()
                .starts_with("row 0 column \"b\"")
        );
        assert_eq!(
            compare(&e_cols, &e, &d_cols, &d[..1]).as_deref(),
            Some("2 rows vs DuckDB's 1")
        );
        assert!(
            compare(&e_cols, &e, &cols(&["a", "c"]), &d)
                .unwrap()
                .starts_with("columns")
        );
        assert!(!same_cell(&json!("1"), &json!(1)));
    }

    #[test]
    fn query_windows_scale_with_the_run() {
        let small = queries("t", "u", 1_795_000_000_000_000, 300_000);
        let big = queries("t", "u", 1_795_000_000_000_000, 10_000_000);
        assert_eq!(small.len(), 12);
        let sql = |qs: &[QuerySpec], name: &str| {
            qs.iter()
                .find(|q| q.name == name)
                .map(|q| q.eventide.clone())
                .unwrap()
        };
        // The window starts at a fifth of the data (at most 1,800 s in) and spans three
        // fifths of it (at most 2 h): 300 s of data → 60..240 s; 10M events (10,000 s) →
        // 1,800..7,800 s.
        assert!(sql(&small, "error_rate_per_minute_2h").contains("2026-11-18T11:07:40Z"));
        assert!(sql(&big, "error_rate_per_minute_2h").contains("2026-11-18T11:36:40Z"));
        assert!(sql(&big, "error_rate_per_minute_2h").contains("2026-11-18T13:16:40Z"));
        assert!(sql(&big, "breakdown3_having").contains("> 200000"));
        assert!(sql(&small, "needle_trace_id").contains("= 't'"));
    }

    #[test]
    fn batch_replies_are_counted_without_parsing() {
        assert_eq!(
            crate::accepted_in_reply(
                br#"[{"status":202},{"status":400,"error":"x"},{"status":202}]"#
            ),
            2
        );
    }
}

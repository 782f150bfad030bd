//! # eventide-bench
//!
//! Load generator and end-to-end benchmarks, driven against a running `eventide serve`
//! (see `benches/README.md`).
//!
//! - `gen`: writes deterministic, realistic wide events as NDJSON.
//! - `ingest`: HTTP batch ingest from N concurrent clients, with ack latency, plus freshness
//!   probes (ack → visible in SQL) running during the load.
//! - `udp`: UDP datagrams at paced rates; the highest rate with < 0.1 % loss.
//! - `encodings`: Parquet settings compared on generated events, in process.
//! - `suite` ([`suite`]): the whole benchmark with same-run references (decode ceiling,
//!   ingest + freshness, 12 queries against DuckDB on the same Parquet files, storage),
//!   written as `report.json`, `report.md` and charts.
//! - `soak` ([`soak`]): ingest at a multiple of the measured capacity for a bounded time.
//! - `deploys` ([`deploys`]): hundreds of deploys replayed through the deploy check's decision
//!   code: detection times and wrong verdicts.

mod deploys;
mod fuzz_seeds;
mod generator;
mod soak;
mod suite;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Value as Json, json};

#[derive(Debug, Parser)]
#[command(
    name = "eventide-bench",
    about = "Eventide load generator and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write N generated events as NDJSON.
    Gen {
        /// Number of events.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Random seed (same seed, same events).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// HTTP batch ingest from concurrent clients, with freshness probes during the load.
    Ingest(IngestArgs),
    /// UDP at paced rates: events sent, stored and lost per rate; the highest rate with
    /// less than 0.1 % loss.
    Udp(UdpArgs),
    /// Parquet encodings compared on generated events (in process, no server): bytes per
    /// event and encode time for ZSTD levels, dictionary and timestamp encodings.
    Encodings {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// The whole suite with its same-run references: decode ceiling, ingest + freshness,
    /// queries vs DuckDB on the same Parquet files, storage; writes report.json, report.md
    /// and charts.
    Suite(suite::SuiteArgs),
    /// A fresh server under ingest above its measured capacity (default 2× for 5 minutes):
    /// 503s, /healthz and query latency, RSS, and that exactly the acknowledged events are
    /// stored, before and after a restart.
    Soak(soak::SoakArgs),
    /// Replays hundreds of deploys (half bad in seven ways, half clean) against realistic
    /// traffic through the deploy check's decision code, faster than real time: detection
    /// times and wrong verdicts.
    Deploys(deploys::DeploysArgs),
    /// Write the seed corpora of the fuzz targets (fuzz/README.md).
    FuzzSeeds {
        #[arg(long, default_value = "fuzz/seeds")]
        out: PathBuf,
    },
}

/// Settings of `eventide-bench udp`.
#[derive(Debug, clap::Args)]
struct UdpArgs {
    /// The server's UDP address (`serve --udp`).
    #[arg(long, default_value = "127.0.0.1:4081")]
    pub target: std::net::SocketAddr,
    /// The server's HTTP API, to count what was stored.
    #[arg(long, default_value = "http://127.0.0.1:4080")]
    pub url: String,
    /// A key with query scope.
    #[arg(long, env = "EVENTIDE_KEY")]
    pub key: String,
    /// Events sent at each rate.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Rates to try, events per second, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "25000,50000,100000,150000,200000,300000"
    )]
    pub rates: Vec<u64>,
    /// Events per datagram (JSON lines).
    #[arg(long, default_value_t = 1)]
    pub per_datagram: u64,
    /// Stop after the first rate that loses more than this fraction.
    #[arg(long, default_value_t = 0.001)]
    pub max_loss: f64,
}

/// Settings of `eventide-bench ingest`.
#[derive(Debug, Clone, clap::Args)]
struct IngestArgs {
    #[arg(long, default_value = "http://127.0.0.1:4080")]
    pub url: String,
    /// A key with ingest and query scope (an admin key).
    #[arg(long, env = "EVENTIDE_KEY")]
    pub key: String,
    #[arg(long, default_value = "bench")]
    pub dataset: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Total events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 2)]
    pub seed: u64,
    /// Milliseconds between freshness probes (0: none).
    #[arg(long, default_value_t = 100)]
    pub probe_every_ms: u64,
    /// How events are sent.
    #[arg(long, value_enum, default_value_t = Format::Honeycomb)]
    pub format: Format,
    /// Target rate, events/s: each request leaves when its first event is due (0: flat out).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Event time of the first event, Unix microseconds.
    #[arg(long, default_value_t = generator::DEFAULT_START_US)]
    pub start_us: i64,
    /// Average gap between event times, µs (1000: 1M events span ~17 minutes).
    #[arg(long, default_value_t = 1000)]
    pub step_us: i64,
}

/// Request formats of `eventide-bench ingest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Honeycomb batches: JSON arrays of `{"data": …}` to `/1/batch/{dataset}`.
    Honeycomb,
    /// Newline-delimited JSON events to `/api/v1/ingest/{dataset}`.
    Ndjson,
    /// OTLP/JSON spans to `/v1/traces`, with `X-Honeycomb-Dataset: {dataset}`.
    Otlp,
}

impl Format {
    fn path(self, dataset: &str) -> String {
        match self {
            Format::Honeycomb => format!("/1/batch/{dataset}"),
            Format::Ndjson => format!("/api/v1/ingest/{dataset}"),
            Format::Otlp => "/v1/traces".into(),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            _ => "application/json",
        }
    }

    /// Events the server accepted, from its reply to a request of `sent` events.
    fn accepted(self, reply: &[u8], sent: usize) -> anyhow::Result<usize> {
        Ok(match self {
            Format::Honeycomb => accepted_in_reply(reply),
            Format::Ndjson => {
                let r: Json = serde_json::from_slice(reply)?;
                r["accepted"].as_u64().context("reply without accepted")? as usize
            }
            Format::Otlp => {
                // `{}` when every span was taken, else `partialSuccess.rejectedSpans`.
                let r: Json = serde_json::from_slice(reply)?;
                let rejected = &r["partialSuccess"]["rejectedSpans"];
                let rejected = rejected
                    .as_u64()
                    .or_else(|| rejected.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0) as usize;
                sent.saturating_sub(rejected)
            }
        })
    }
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Every `every`, sends one event with a unique `probe` value into `dataset` (the dataset
/// under load) and polls SQL every 5 ms until it is visible: ack → visible, ms, per probe.
async fn probe_loop(
    client: reqwest::Client,
    url: String,
    key: String,
    dataset: String,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let probe = format!("p{n}-{}", std::process::id());
        let r = client
            .post(format!("{url}/1/events/{dataset}"))
            .header("X-Honeycomb-Team", &key)
            .json(&json!({ "probe": probe }))
            .send()
            .await?;
        if r.status() != 200 {
            tokio::time::sleep(every).await;
            continue;
        }
        let acked = Instant::now();
        let sql = format!("SELECT count(*) FROM \"{dataset}\" WHERE probe = '{probe}'");
        loop {
            let r: Json = client
                .post(format!("{url}/api/v1/sql"))
                .header("X-Honeycomb-Team", &key)
                .json(&json!({ "sql": sql }))
                .send()
                .await?
                .json()
                .await?;
            if r["rows"][0][0] == json!(1) {
                out.push(acked.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if acked.elapsed() > Duration::from_secs(30) {
                bail!("probe {probe} not visible after 30 s");
            }
            // Poll every 5 ms: the figure is at most 5 ms late, and the probe's own queries
            // stay a small part of the server's load (1 ms polling was ~100 queries/s).
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(every).await;
    }
    Ok(out)
}

/// What one HTTP batch ingest run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestReport {
    pub events: usize,
    pub json_bytes: usize,
    pub seconds: f64,
    pub clients: usize,
    pub batch: usize,
    /// Ack latency of every batch request, ms.
    pub ack_samples_ms: Vec<f64>,
    /// `(seconds since start, acked events/s over the half second ending then)`.
    pub timeline: Vec<(f64, f64)>,
    /// Ack → visible in SQL, ms, of every freshness probe.
    pub fresh_samples_ms: Vec<f64>,
}

impl IngestReport {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn print(&self) {
        let mut lat = self.ack_samples_ms.clone();
        println!(
            "ingest: {} events in {:.2} s = {:.0} events/s, {:.1} MB/s of JSON, {} clients × {}-event batches",
            self.events,
            self.seconds,
            self.events_per_s(),
            self.json_bytes as f64 / self.seconds / 1e6,
            self.clients,
            self.batch
        );
        println!(
            "ack latency per batch: p50 {:.1} ms, p99 {:.1} ms",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
        if !self.fresh_samples_ms.is_empty() {
            let mut f = self.fresh_samples_ms.clone();
            println!(
                "freshness (ack → visible in SQL) under load, {} probes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                f.len(),
                pct(&mut f, 0.5),
                pct(&mut f, 0.99),
                pct(&mut f, 1.0)
            );
        }
    }
}

/// Counts the accepted items of a `/1/batch` reply without building JSON values (the load
/// generator shares the machine's cores with the server).
fn accepted_in_reply(body: &[u8]) -> usize {
    const ACCEPTED: &[u8] = br#"{"status":202}"#;
    body.windows(ACCEPTED.len())
        .filter(|w| *w == ACCEPTED)
        .count()
}

/// Builds `events` generated events into request bodies of `batch` events each, in `format`.
fn batch_bodies(
    seed: u64,
    start_us: i64,
    step_us: i64,
    events: u64,
    batch: usize,
    format: Format,
) -> anyhow::Result<(Vec<bytes::Bytes>, usize)> {
    let mut generator = generator::Generator::new(seed).with_time(start_us, step_us);
    let mut bodies = Vec::new();
    let mut bytes = 0usize;
    let mut left = events;
    while left > 0 {
        let n = (batch as u64).min(left);
        let items: Vec<Json> = (0..n).map(|_| generator.event()).collect();
        let body = match format {
            Format::Honeycomb => serde_json::to_vec(
                &items
                    .into_iter()
                    .map(|e| json!({ "data": e }))
                    .collect::<Vec<_>>(),
            )?,
            Format::Ndjson => {
                let mut out = Vec::new();
                for e in &items {
                    serde_json::to_writer(&mut out, e)?;
                    out.push(b'\n');
                }
                out
            }
            Format::Otlp => serde_json::to_vec(&generator::otlp_traces(&items))?,
        };
        bytes += body.len();
        bodies.push(bytes::Bytes::from(body));
        left -= n;
    }
    Ok((bodies, bytes))
}

async fn run_ingest(args: &IngestArgs) -> anyhow::Result<IngestReport> {
    // Build every request body first so the measured window holds only sending.
    let (bodies, bytes) = batch_bodies(
        args.seed,
        args.start_us,
        args.step_us,
        args.events,
        args.batch,
        args.format,
    )?;
    send_ingest(args, bodies, bytes).await
}

/// Sends prebuilt `/1/batch` bodies (`bytes` in all) as `args` says, with freshness probes.
async fn send_ingest(
    args: &IngestArgs,
    bodies: Vec<bytes::Bytes>,
    bytes: usize,
) -> anyhow::Result<IngestReport> {
    let IngestArgs {
        url,
        key,
        dataset,
        clients,
        batch,
        probe_every_ms,
        format,
        rate,
        events,
        ..
    } = args.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = (probe_every_ms > 0).then(|| {
        tokio::spawn(probe_loop(
            client.clone(),
            url.clone(),
            key.clone(),
            dataset.clone(),
            Duration::from_millis(probe_every_ms),
            stop.clone(),
        ))
    });
    let started = Instant::now();
    let target = format!("{url}{}", format.path(&dataset));
    let results: Vec<anyhow::Result<(f64, f64, usize)>> =
        futures::stream::iter(bodies.into_iter().enumerate())
            .map(|(i, body)| {
                let (client, target, key, dataset) =
                    (client.clone(), target.clone(), key.clone(), dataset.clone());
                let first = (i * batch) as u64;
                let sent = (batch as u64).min(events.saturating_sub(first)) as usize;
                async move {
                    if rate > 0 {
                        let due = started + Duration::from_secs_f64(first as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let t = Instant::now();
                    loop {
                        let r = client
                            .post(&target)
                            .header("X-Honeycomb-Team", &key)
                            .header("X-Honeycomb-Dataset", &dataset)
                            .header("Content-Type", format.content_type())
                            .body(body.clone())
                            .send()
                            .await
                            .context("send")?;
                        if r.status() == 503 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        if r.status() != 200 {
                            bail!("batch answered {}", r.status());
                        }
                        let ok = format.accepted(&r.bytes().await?, sent)?;
                        return Ok((
                            t.elapsed().as_secs_f64() * 1000.0,
                            started.elapsed().as_secs_f64(),
                            ok,
                        ));
                    }
                }
            })
            .buffer_unordered(clients)
            .collect()
            .await;
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut accepted = 0usize;
    const BUCKET: f64 = 0.5;
    let nb = ((secs / BUCKET).ceil() as usize).max(1);
    let mut buckets = vec![0usize; nb];
    for r in results {
        let (l, done_at, ok) = r?;
        lat.push(l);
        accepted += ok;
        buckets[((done_at / BUCKET) as usize).min(nb - 1)] += ok;
    }
    // The last bucket may be partial: its rate is over the time it covers.
    let timeline = buckets
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let end = ((i + 1) as f64 * BUCKET).min(secs);
            (end, *n as f64 / (end - i as f64 * BUCKET).max(1e-3))
        })
        .collect();
    let fresh_samples_ms = match prober {
        Some(p) => p.await??,
        None => Vec::new(),
    };
    Ok(IngestReport {
        events: accepted,
        json_bytes: bytes,
        seconds: secs,
        clients,
        batch,
        ack_samples_ms: lat,
        timeline,
        fresh_samples_ms,
    })
}

async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    run_ingest(&args).await?.print();
    Ok(())
}

/// Sends `events` events at `rate`/s as datagrams of `per` lines: whatever is due by the
/// clock is sent, then the sender naps 200 µs.
/// Returns the seconds it took.
fn udp_send(
    target: std::net::SocketAddr,
    dataset: &str,
    events: u64,
    rate: u64,
    per: u64,
    templates: &[String],
) -> anyhow::Result<f64> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(target)?;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut dgram = String::with_capacity(64 * 1024);
    while sent < events {
        // Events due by now at the paced rate.
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(events);
        if sent >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        while sent < due {
            dgram.clear();
            let n = per.min(events - sent);
            for k in 0..n {
                let id = sent + k;
                let t = &templates[(id % templates.len() as u64) as usize];
                // `t` is an event object's members without the braces.
                dgram.push_str(&format!(
                    "{{\"dataset\":\"{dataset}\",\"data\":{{\"id\":{id},{t}}}}}\n"
                ));
            }
            sock.send(dgram.as_bytes())?;
            sent += n;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn udp(args: UdpArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let count = |dataset: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/sql", args.url);
        let key = args.key.clone();
        async move {
            let r: Json = http
                .post(url)
                .header("Authorization", format!("Bearer {key}"))
                .json(&json!({"sql": format!("SELECT count(*) FROM \"{dataset}\"")}))
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(r["rows"][0][0].as_u64().unwrap_or(0))
        }
    };
    let mut generator = generator::Generator::new(7);
    let templates: Vec<String> = (0..10_000)
        .map(|_| {
            let mut e = generator.event();
            if let Some(o) = e.as_object_mut() {
                o.remove("timestamp");
            }
            let s = e.to_string();
            s[1..s.len() - 1].to_owned()
        })
        .collect();
    let avg = templates.iter().map(|t| t.len() + 40).sum::<usize>() / templates.len();
    println!(
        "UDP: {} events per rate, {} per datagram, ~{avg} bytes per event",
        args.events, args.per_datagram
    );
    println!(
        "{:>9} {:>10} {:>10} {:>9} {:>8}",
        "rate/s", "achieved/s", "stored", "loss %", "secs"
    );
    let mut best = None;
    for &rate in &args.rates {
        let dataset = format!("udp-{rate}-{}", args.per_datagram);
        let (target, events, per) = (args.target, args.events, args.per_datagram);
        let ds = dataset.clone();
        let templates_ = templates.clone();
        let secs = tokio::task::spawn_blocking(move || {
            udp_send(target, &ds, events, rate, per, &templates_)
        })
        .await??;
        // Wait until the count stops growing (2 s unchanged) or reaches everything.
        let mut stored = 0;
        let mut still_since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let n = count(dataset.clone()).await.unwrap_or(stored);
            if n != stored {
                stored = n;
                still_since = Instant::now();
            }
            if stored >= args.events || still_since.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        let loss = 1.0 - stored as f64 / args.events as f64;
        println!(
            "{rate:>9} {:>10.0} {stored:>10} {:>9.3} {secs:>8.2}",
            args.events as f64 / secs,
            loss * 100.0
        );
        if loss < args.max_loss {
            best = Some(rate);
        } else {
            break;
        }
    }
    match best {
        Some(r) => println!(
            "highest rate with < {:.1} % loss: {r} events/s",
            args.max_loss * 100.0
        ),
        None => println!("every rate lost more than {:.1} %", args.max_loss * 100.0),
    }
    Ok(())
}

/// Encodes the same generated events (flattened and typed as ingest does, sorted by time as a
/// segment is) with several Parquet settings; prints bytes per event and encode time, with the
/// store's setting (ZSTD 1, dictionary on, delta-encoded timestamps) as the reference.
fn encodings(events: u64) -> anyhow::Result<()> {
    use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
    use parquet::basic::{Compression, Encoding, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    use parquet::schema::types::ColumnPath;

    let mut generator = generator::Generator::new(3);
    let mut schema = eventide_model::DatasetSchema::new();
    let limits = eventide_model::Limits::default();
    let mut evs = Vec::with_capacity(events as usize);
    let mut raw = 0usize;
    for _ in 0..events {
        let mut bytes = serde_json::to_vec(&generator.event())?;
        raw += bytes.len() + 1;
        let v = simd_json::to_borrowed_value(&mut bytes)?;
        let mut e = eventide_model::flatten_object(&v, None, 0, 1, &limits)?;
        schema.admit(&mut e, limits.max_columns_per_dataset)?;
        evs.push(e);
    }
    let batches = eventide_model::events_to_batches(&schema, &evs)?;
    let batch = eventide_model::chunks::concat_by_name(
        &schema.arrow_schema(),
        &batches.iter().collect::<Vec<_>>(),
    )?;
    drop(evs);
    let idx = lexsort_to_indices(
        &[SortColumn {
            values: batch.column(0).clone(),
            options: None,
        }],
        None,
    )?;
    let batch = take_record_batch(&batch, &idx)?;
    let base = || {
        WriterProperties::builder()
            .set_max_row_group_row_count(Some(256 * 1024))
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
    };
    let ts = ColumnPath::new(vec![eventide_model::TIMESTAMP.to_owned()]);
    // `None`: the store's own writer, with its per-column choice of encodings.
    let variants: Vec<(&str, Option<WriterProperties>)> = vec![
        ("store: zstd 1, encodings per column", None),
        (
            "zstd 1, dictionary, ts delta (before)",
            base()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
                .set_column_dictionary_enabled(ts.clone(), false)
                .set_column_encoding(ts.clone(), Encoding::DELTA_BINARY_PACKED)
                .build()
                .into(),
        ),
        (
            "zstd 3 (before this measurement)",
            base()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                .build()
                .into(),
        ),
        (
            "zstd 1",
            base()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
                .build()
                .into(),
        ),
        (
            "zstd 6",
            base()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(6)?))
                .build()
                .into(),
        ),
        (
            "zstd 9",
            base()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(9)?))
                .build()
                .into(),
        ),
        (
            "zstd 3, no dictionary",
            base()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                .set_dictionary_enabled(false)
                .build()
                .into(),
        ),
        (
            "zstd 3, ts DELTA_BINARY_PACKED",
            base()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                .set_column_dictionary_enabled(ts.clone(), false)
                .set_column_encoding(ts.clone(), Encoding::DELTA_BINARY_PACKED)
                .build()
                .into(),
        ),
        (
            "lz4",
            Some(base().set_compression(Compression::LZ4_RAW).build()),
        ),
        (
            "snappy",
            base().set_compression(Compression::SNAPPY).build().into(),
        ),
    ];
    println!(
        "{events} events, {} columns, raw NDJSON {:.1} bytes/event",
        batch.num_columns(),
        raw as f64 / events as f64
    );
    let mut reference = None;
    for (name, props) in variants {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..3 {
            let started = Instant::now();
            size = match &props {
                Some(props) => {
                    let mut out = Vec::new();
                    let mut w = parquet::arrow::ArrowWriter::try_new(
                        &mut out,
                        batch.schema(),
                        Some(props.clone()),
                    )?;
                    w.write(&batch)?;
                    w.close()?;
                    out.len()
                }
                None => {
                    let opts = eventide_store::segment::SegmentOptions {
                        bloom_columns: Vec::new(),
                        presorted: true,
                    };
                    eventide_store::segment::encode_segment(
                        &batch.schema(),
                        std::slice::from_ref(&batch),
                        &opts,
                    )?
                    .bytes
                    .len()
                }
            };
            times.push(started.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[1];
        let per = size as f64 / events as f64;
        let (ref_per, ref_t) = *reference.get_or_insert((per, median));
        println!(
            "{name:<38} {per:>7.1} bytes/event ({:>5.1}x smaller than raw, {:.3}x the store's size), encode median {:.2} s ({:.2}x)",
            raw as f64 / size as f64,
            per / ref_per,
            median,
            median / ref_t
        );
    }
    per_column_encodings(&batch, events)
}

/// Each column alone, written with each encoding its type allows (ZSTD 1 as the store): the
/// measurement behind the store's per-column choice (`eventide_store::segment`).
fn per_column_encodings(
    batch: &arrow::record_batch::RecordBatch,
    events: u64,
) -> anyhow::Result<()> {
    use arrow::datatypes::DataType;
    use parquet::basic::{Compression, Encoding, ZstdLevel};
    use parquet::file::properties::WriterProperties;

    println!("\nper column, bytes/event (ZSTD 1):");
    for (i, field) in batch.schema().fields().iter().enumerate() {
        let one = arrow::record_batch::RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(vec![field.as_ref().clone()])),
            vec![batch.column(i).clone()],
        )?;
        let mut options: Vec<(&str, Option<Encoding>)> =
            vec![("dictionary", None), ("plain", Some(Encoding::PLAIN))];
        match field.data_type() {
            DataType::Int64 | DataType::Timestamp(_, _) => {
                options.push(("delta", Some(Encoding::DELTA_BINARY_PACKED)));
                options.push(("split", Some(Encoding::BYTE_STREAM_SPLIT)));
            }
            DataType::Float64 => options.push(("split", Some(Encoding::BYTE_STREAM_SPLIT))),
            DataType::Utf8 => {
                options.push(("delta_bytes", Some(Encoding::DELTA_BYTE_ARRAY)));
                options.push(("delta_len", Some(Encoding::DELTA_LENGTH_BYTE_ARRAY)));
            }
            _ => {}
        }
        let mut line = format!("{:<24}", field.name());
        for (name, enc) in options {
            let mut b = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
                .set_max_row_group_row_count(Some(256 * 1024))
                .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page);
            if let Some(e) = enc {
                b = b.set_dictionary_enabled(false).set_encoding(e);
            }
            let mut out = Vec::new();
            let mut w =
                parquet::arrow::ArrowWriter::try_new(&mut out, one.schema(), Some(b.build()))?;
            w.write(&one)?;
            w.close()?;
            line.push_str(&format!(" {name} {:.3}", out.len() as f64 / events as f64));
        }
        println!("{line}");
    }
    Ok(())
}

fn gen_file(events: u64, out: PathBuf, seed: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut generator = generator::Generator::new(seed);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    for _ in 0..events {
        serde_json::to_writer(&mut w, &generator.event())?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    let size = std::fs::metadata(&out)?.len();
    println!(
        "wrote {events} events, {size} bytes ({:.0} bytes/event) to {}",
        size as f64 / events as f64,
        out.display()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Gen { events, out, seed } => gen_file(events, out, seed),
        Cmd::Ingest(args) => ingest(args).await,
        Cmd::Udp(args) => udp(args).await,
        Cmd::Encodings { events } => encodings(events),
        Cmd::Suite(args) => suite::run(args).await,
        Cmd::Soak(args) => soak::run(args).await,
        Cmd::Deploys(args) => deploys::run(args),
        Cmd::FuzzSeeds { out } => {
            fuzz_seeds::run(&out);
            Ok(())
        }
    }
}

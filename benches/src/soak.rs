//! `eventide-bench soak`: a fresh server under ingest well above its capacity, for a bounded
//! time.
//!
//! 1. **Capacity**: `--capacity-clients` closed-loop clients send `/1/batch` requests flat
//!    out for `--capacity-seconds`: the acknowledged events/s is the capacity.
//! 2. **Soak**: an open-loop sender offers `--overload` × capacity for `--seconds`: a batch
//!    leaves when it is due, whatever happened to the earlier ones (at most `--concurrency`
//!    in flight; a batch due while all are busy is counted as not offered). Meanwhile
//!    `/healthz` is probed every 50 ms and a SQL count every second on their own
//!    connections, and the server's RSS is read every 100 ms: each on its own thread, so that
//!    they measure the server, not the sender's backlog of tasks.
//! 3. **Check**: every event carries a unique `seq`. After the load, the stored events are
//!    compared with the acknowledged ones (count, distinct count and sum of `seq`), then
//!    again after a restart.
//!
//! It fails (exit 1) when the server died, RSS passed `--rss-limit-mb`, `/healthz` p99 was
//! 100 ms or more, or the stored events are not exactly the acknowledged ones.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value as Json, json};
use tokio::sync::Semaphore;

use crate::pct;
use crate::suite::{KEY, Server};

/// Settings of `eventide-bench soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// The `eventide` binary (a release build).
    #[arg(long, default_value = "target/release/eventide")]
    pub bin: PathBuf,
    /// Length of the overload phase.
    #[arg(long, default_value_t = 300)]
    pub seconds: u64,
    /// Offered load as a multiple of the measured capacity.
    #[arg(long, default_value_t = 2.0)]
    pub overload: f64,
    /// Length of the capacity measurement.
    #[arg(long, default_value_t = 20)]
    pub capacity_seconds: u64,
    /// Closed-loop clients of the capacity measurement.
    #[arg(long, default_value_t = 4)]
    pub capacity_clients: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Most requests of the open-loop sender in flight at once.
    #[arg(long, default_value_t = 1024)]
    pub concurrency: usize,
    /// The server's `--max-inflight-mb`.
    #[arg(long, default_value_t = 64)]
    pub max_inflight_mb: usize,
    /// The server's `--max-hot-mb`.
    #[arg(long, default_value_t = 256)]
    pub max_hot_mb: usize,
    /// The server's `--max-memory-mb` (0: none).
    #[arg(long, default_value_t = 1536)]
    pub max_memory_mb: u64,
    /// The RSS bound the run checks, MiB.
    #[arg(long, default_value_t = 1536)]
    pub rss_limit_mb: u64,
    /// HTTP port of the server under test.
    #[arg(long, default_value_t = 4290)]
    pub port: u16,
    /// Scratch directory (deleted afterwards).
    #[arg(long, default_value = "/tmp/eventide-soak")]
    pub work: PathBuf,
    /// Where to write the report (`soak.md` and `soak.json`).
    #[arg(long, default_value = "benches/results/soak")]
    pub out: PathBuf,
}

const DATASET: &str = "soak";

/// One `/1/batch` body of `n` events numbered from `seq`.
fn body(seq: u64, n: usize) -> String {
    let mut out = String::with_capacity(n * 220);
    out.push('[');
    for i in 0..n as u64 {
        let s = seq + i;
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"data":{{"seq":{s},"service.name":"svc-{}","endpoint":"/api/v{}/items","status":{},"duration_ms":{}.{},"user_id":"u-{}","trace.trace_id":"{:016x}{:016x}","region":"eu-{}"}}}}"#,
            s % 30,
            s % 300,
            if s.is_multiple_of(50) { 500 } else { 200 },
            s % 997,
            s % 10,
            s % 100_000,
            s.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            s,
            s % 4
        );
    }
    out.push(']');
    out
}

/// What the senders saw.
#[derive(Debug, Default)]
struct Tally {
    acked_events: AtomicU64,
    /// Sum of the acknowledged `seq`s.
    acked_seq_sum: std::sync::Mutex<u128>,
    ok: AtomicU64,
    shed_503: AtomicU64,
    limited_429: AtomicU64,
    other_status: AtomicU64,
    /// Requests whose outcome is unknown (connection error, timeout): their events may or
    /// may not be stored.
    unknown: AtomicU64,
    unknown_events: AtomicU64,
    not_offered: AtomicU64,
    offered: AtomicU64,
    ack_ms: std::sync::Mutex<Vec<f64>>,
}

impl Tally {
    async fn send(&self, client: &reqwest::Client, url: &str, seq: u64, n: usize) {
        let started = Instant::now();
        self.offered.fetch_add(1, Ordering::Relaxed);
        let r = client
            .post(format!("{url}/1/batch/{DATASET}"))
            .header("X-Honeycomb-Team", KEY)
            .header("Content-Type", "application/json")
            .body(body(seq, n))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match r {
            Ok(r) => {
                let status = r.status().as_u16();
                let _ = r.bytes().await;
                match status {
                    200 => {
                        self.ok.fetch_add(1, Ordering::Relaxed);
                        self.acked_events.fetch_add(n as u64, Ordering::Relaxed);
                        let sum: u128 = (seq as u128..(seq + n as u64) as u128).sum();
                        *self.acked_seq_sum.lock().unwrap_or_else(|p| p.into_inner()) += sum;
                        self.ack_ms
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    503 => {
                        self.shed_503.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => {
                        self.limited_429.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        self.other_status.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => {
                self.unknown.fetch_add(1, Ordering::Relaxed);
                self.unknown_events.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Stored events: (count, distinct seqs, sum of seqs). The distinct count is the count less
/// the extra copies of seqs stored more than once, from a `GROUP BY` that spills to disk and so
/// fits the server's query memory pool (`count(DISTINCT seq)` beside other aggregates does
/// not spill: over 200 M events it needs GBs).
async fn stored(client: &reqwest::Client, url: &str) -> anyhow::Result<(u64, u64, u128)> {
    let totals = crate::suite::sql(
        client,
        url,
        &format!(
            "SELECT count(*), CAST(sum(CAST(seq AS DECIMAL(38,0))) AS VARCHAR) FROM {DATASET}"
        ),
    )
    .await?;
    let row = &totals["rows"][0];
    let count = row[0].as_u64().unwrap_or(0);
    // Duplicates, counted over ranges of `seq` of about 8M rows each: one `GROUP BY seq` over
    // 200M rows spills and outran the 900 s query limit; a range fits in the query pool.
    let bounds = crate::suite::sql(
        client,
        url,
        &format!("SELECT min(seq), max(seq) FROM {DATASET}"),
    )
    .await?;
    let (lo, hi) = (
        bounds["rows"][0][0].as_u64().unwrap_or(0),
        bounds["rows"][0][1].as_u64().unwrap_or(0),
    );
    let step = 8_000_000u64;
    let mut extra = 0u64;
    let mut from = lo;
    while count > 0 && from <= hi {
        let to = from.saturating_add(step);
        let part = crate::suite::sql(
            client,
            url,
            &format!(
                "SELECT coalesce(sum(n - 1), 0) FROM \
                 (SELECT count(*) AS n FROM {DATASET} WHERE seq >= {from} AND seq < {to} \
                  GROUP BY seq HAVING count(*) > 1)"
            ),
        )
        .await?;
        extra += part["rows"][0][0].as_u64().unwrap_or(0);
        from = to;
    }
    Ok((
        count,
        count.saturating_sub(extra),
        row[1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
    ))
}

/// Polls the stored count until it reaches `want` or stops growing for 3 s, then returns
/// what [`stored`] finds.
async fn settle(
    client: &reqwest::Client,
    url: &str,
    want: u64,
) -> anyhow::Result<(u64, u64, u128)> {
    let mut last = u64::MAX;
    let mut same_since = Instant::now();
    loop {
        let body =
            crate::suite::sql(client, url, &format!("SELECT count(*) FROM {DATASET}")).await?;
        let now = body["rows"][0][0].as_u64().unwrap_or(0);
        if now == want {
            break;
        }
        if now != last {
            same_since = Instant::now();
        } else if same_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stored(client, url).await
}

/// Runs `work` on its own OS thread with its own runtime: a probe must not queue behind the
/// load generator's tasks, or it measures the client's backlog instead of the server.
fn own_thread<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::sync::oneshot::Receiver<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let _ = tx.send(rt.block_on(work));
            }
            Err(e) => eprintln!("probe runtime: {e}"),
        }
    });
    rx
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work)?;
    let data = args.work.join("data");
    let (inflight, hot, memory) = (
        args.max_inflight_mb.to_string(),
        args.max_hot_mb.to_string(),
        args.max_memory_mb.to_string(),
    );
    let server_args = [
        "--max-inflight-mb",
        inflight.as_str(),
        "--max-hot-mb",
        hot.as_str(),
        "--max-memory-mb",
        memory.as_str(),
        // The final check groups every stored event by seq (spilling to disk within the
        // query memory pool): over 200 M events it takes longer than the default 120 s.
        "--query-timeout-seconds",
        "900",
    ];
    let mut server = Server::start(&args.bin, &data, args.port, &server_args)?;
    let url = server.url.clone();
    let pid = server.pid();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let tally = Arc::new(Tally::default());
    let next_seq = Arc::new(AtomicU64::new(0));
    let batch = args.batch;

    // 1. Capacity, closed loop.
    eprintln!(
        "capacity: {} clients for {} s",
        args.capacity_clients, args.capacity_seconds
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(args.capacity_seconds);
    let mut clients = Vec::new();
    for _ in 0..args.capacity_clients {
        let (client, url, tally, next_seq) =
            (client.clone(), url.clone(), tally.clone(), next_seq.clone());
        clients.push(tokio::spawn(async move {
            while Instant::now() < until {
                let seq = next_seq.fetch_add(batch as u64, Ordering::Relaxed);
                tally.send(&client, &url, seq, batch).await;
            }
        }));
    }
    for c in clients {
        c.await?;
    }
    let capacity =
        tally.acked_events.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    if tally.shed_503.load(Ordering::Relaxed) + tally.unknown.load(Ordering::Relaxed) > 0 {
        eprintln!("note: the capacity run itself saw refusals: {tally:?}");
    }
    let target = capacity * args.overload;
    eprintln!(
        "capacity {capacity:.0} events/s; offering {target:.0} events/s for {} s",
        args.seconds
    );
    let acked_before = tally.acked_events.load(Ordering::Relaxed);
    let counts_before = (
        tally.ok.load(Ordering::Relaxed),
        tally.shed_503.load(Ordering::Relaxed),
    );
    tally
        .ack_ms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();

    // 2. Probes and samplers.
    let stop = Arc::new(AtomicBool::new(false));
    let health = {
        let (stop, url) = (stop.clone(), url.clone());
        own_thread(async move {
            let c = reqwest::Client::new();
            let mut lat = Vec::new();
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = c
                    .get(format!("{url}/healthz"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                failed += u64::from(!ok);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (lat, failed)
        })
    };
    let queries = {
        let (stop, url) = (stop.clone(), url.clone());
        own_thread(async move {
            let c = reqwest::Client::new();
            let mut lat = Vec::new();
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let q = format!(
                    "SELECT \"service.name\", count(*) FROM {DATASET} WHERE status = 500 GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
                );
                failed += u64::from(crate::suite::sql(&c, &url, &q).await.is_err());
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (lat, failed)
        })
    };
    let rss = {
        let stop = stop.clone();
        own_thread(async move {
            let mut peak = 0u64;
            let mut alive = true;
            while !stop.load(Ordering::Relaxed) {
                let r = rss_bytes(pid);
                alive &= r > 0;
                peak = peak.max(r);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (peak, alive)
        })
    };

    // The server's own view every 5 s, for the report's timeline.
    let timeline = {
        let (stop, url) = (stop.clone(), url.clone());
        own_thread(async move {
            let c = reqwest::Client::new();
            let started = Instant::now();
            let mut points = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let text = match c
                    .get(format!("{url}/metrics"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                let sum = |prefix: &str| -> f64 {
                    text.lines()
                        .filter(|l| l.starts_with(prefix))
                        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                        .sum()
                };
                let point = json!({
                    "t_s": started.elapsed().as_secs(),
                    "rss_mib": rss_bytes(pid) >> 20,
                    "hot_mib": (sum("eventide_store_hot_bytes ") / 1048576.0).round(),
                    "segments": sum("eventide_dataset_segments{"),
                    "merges_pending": sum("eventide_dataset_merges_pending{"),
                    "shed": sum("eventide_ingest_shed_total"),
                    "merges_deferred": sum("eventide_store_merges_deferred_total"),
                });
                if points.len() % 6 == 5 {
                    eprintln!("server: {point}");
                }
                points.push(point);
            }
            points
        })
    };

    // 3. Open-loop overload.
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let soak_started = Instant::now();
    let soak_for = Duration::from_secs(args.seconds);
    let mut issued = 0u64;
    let mut per_second: Vec<u64> = Vec::new();
    let mut last_acked = tally.acked_events.load(Ordering::Relaxed);
    let mut next_report = Duration::from_secs(1);
    while soak_started.elapsed() < soak_for {
        let elapsed = soak_started.elapsed();
        let due = (elapsed.as_secs_f64() * target / batch as f64) as u64;
        while issued < due {
            issued += 1;
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let seq = next_seq.fetch_add(batch as u64, Ordering::Relaxed);
                    let (client, url, tally) = (client.clone(), url.clone(), tally.clone());
                    tokio::spawn(async move {
                        tally.send(&client, &url, seq, batch).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tally.not_offered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if elapsed >= next_report {
            let acked = tally.acked_events.load(Ordering::Relaxed);
            per_second.push(acked - last_acked);
            last_acked = acked;
            next_report += Duration::from_secs(1);
            if per_second.len().is_multiple_of(30) {
                eprintln!(
                    "{:>4} s: {} events/s acknowledged, 503 so far {}, RSS {} MiB",
                    per_second.len(),
                    per_second.last().unwrap_or(&0),
                    tally.shed_503.load(Ordering::Relaxed),
                    rss_bytes(pid) >> 20
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Let the requests in flight finish.
    let _ = slots
        .acquire_many(u32::try_from(args.concurrency).unwrap_or(u32::MAX))
        .await;
    let soak_secs = soak_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut health_ms, health_failed) = health.await?;
    let (mut query_ms, query_failed) = queries.await?;
    let (peak_rss, alive) = rss.await?;
    let timeline = timeline.await?;

    // 4. Exactly the acknowledged events, before and after a restart.
    let acked = tally.acked_events.load(Ordering::Relaxed);
    let acked_sum = *tally
        .acked_seq_sum
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let unknown_events = tally.unknown_events.load(Ordering::Relaxed);
    let before_restart = settle(&client, &url, acked).await?;
    drop(server);
    server = Server::start(&args.bin, &data, args.port, &server_args)?;
    let after_restart = settle(&client, &server.url, acked).await?;
    drop(server);

    let exact = |s: (u64, u64, u128)| {
        if unknown_events == 0 {
            s.0 == acked && s.1 == acked && s.2 == acked_sum
        } else {
            s.0 == s.1 && s.0 >= acked && s.0 <= acked + unknown_events
        }
    };
    let soak_acked = acked - acked_before;
    let mut ack_ms = tally
        .ack_ms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let health_p99 = pct(&mut health_ms, 0.99);
    let report = json!({
        "machine": crate::suite::machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "capacity_events_per_s": capacity.round(),
        "offered_events_per_s": target.round(),
        "soak_seconds": soak_secs,
        "acknowledged_events_per_s": (soak_acked as f64 / soak_secs).round(),
        "requests": {
            "offered": tally.offered.load(Ordering::Relaxed),
            "ok": tally.ok.load(Ordering::Relaxed) - counts_before.0,
            "shed_503": tally.shed_503.load(Ordering::Relaxed) - counts_before.1,
            "rate_limited_429": tally.limited_429.load(Ordering::Relaxed),
            "other_status": tally.other_status.load(Ordering::Relaxed),
            "unknown_outcome": tally.unknown.load(Ordering::Relaxed),
            "not_offered_client_busy": tally.not_offered.load(Ordering::Relaxed),
        },
        "ack_ms": {"p50": pct(&mut ack_ms, 0.5), "p99": pct(&mut ack_ms, 0.99)},
        "healthz_ms": {"p50": pct(&mut health_ms, 0.5), "p99": health_p99, "max": pct(&mut health_ms, 1.0), "probes": health_ms.len(), "failed": health_failed},
        "query_ms": {"p50": pct(&mut query_ms, 0.5), "p99": pct(&mut query_ms, 0.99), "max": pct(&mut query_ms, 1.0), "runs": query_ms.len(), "failed": query_failed},
        "peak_rss_mib": peak_rss >> 20,
        "rss_limit_mib": args.rss_limit_mb,
        "server_alive_throughout": alive,
        "acknowledged_events": acked,
        "stored_before_restart": {"count": before_restart.0, "distinct": before_restart.1, "seq_sum_matches": before_restart.2 == acked_sum},
        "stored_after_restart": {"count": after_restart.0, "distinct": after_restart.1, "seq_sum_matches": after_restart.2 == acked_sum},
        "acknowledged_per_second": per_second,
        "server_timeline": timeline,
    });
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("soak.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(args.out.join("soak.md"), &md)?;
    println!("{md}");
    let _ = std::fs::remove_dir_all(&args.work);

    let mut failures = Vec::new();
    if !alive {
        failures.push("the server died".to_owned());
    }
    if peak_rss >> 20 > args.rss_limit_mb {
        failures.push(format!(
            "peak RSS {} MiB > {} MiB",
            peak_rss >> 20,
            args.rss_limit_mb
        ));
    }
    if health_p99.is_nan() || health_p99 >= 100.0 || health_failed > 0 {
        failures.push(format!(
            "/healthz p99 {health_p99:.1} ms, {health_failed} failed"
        ));
    }
    if !exact(before_restart) || !exact(after_restart) {
        failures.push(format!(
            "stored events differ from the acknowledged {acked}: {before_restart:?} before, {after_restart:?} after the restart"
        ));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("soak failed: {}", failures.join("; "))
    }
}

fn markdown(r: &Json) -> String {
    let f = |v: &Json| v.as_f64().map_or("-".into(), |x| format!("{x:.1}"));
    let n = |v: &Json| v.to_string();
    let q = &r["requests"];
    format!(
        "# Soak: {over:.1}× capacity for {secs:.0} s\n\n\
         `{cmd}`\n\n\
         | figure | value |\n|---|---|\n\
         | capacity (closed loop) | {cap} events/s |\n\
         | offered (open loop) | {off} events/s |\n\
         | acknowledged during the soak | {ackps} events/s |\n\
         | requests offered / 200 / 503 / 429 / other / unknown / not offered (client busy) | {o} / {ok} / {s503} / {s429} / {oth} / {unk} / {no} |\n\
         | ack latency p50 / p99 | {a50} / {a99} ms |\n\
         | `/healthz` p50 / p99 / max ({hp} probes, {hf} failed) | {h50} / {h99} / {hmax} ms |\n\
         | query p50 / p99 / max ({qp} runs, {qf} failed) | {q50} / {q99} / {qmax} ms |\n\
         | peak RSS (bound) | {rss} MiB ({lim} MiB) |\n\
         | server alive throughout | {alive} |\n\
         | acknowledged events | {acked} |\n\
         | stored before restart: count / distinct / seq sum equal | {b0} / {b1} / {b2} |\n\
         | stored after restart: count / distinct / seq sum equal | {r0} / {r1} / {r2} |\n\n\
         Machine: {machine}\n",
        over = r["offered_events_per_s"].as_f64().unwrap_or(0.0)
            / r["capacity_events_per_s"].as_f64().unwrap_or(1.0),
        secs = r["soak_seconds"].as_f64().unwrap_or(0.0),
        cmd = r["command"].as_str().unwrap_or_default(),
        cap = n(&r["capacity_events_per_s"]),
        off = n(&r["offered_events_per_s"]),
        ackps = n(&r["acknowledged_events_per_s"]),
        o = n(&q["offered"]),
        ok = n(&q["ok"]),
        s503 = n(&q["shed_503"]),
        s429 = n(&q["rate_limited_429"]),
        oth = n(&q["other_status"]),
        unk = n(&q["unknown_outcome"]),
        no = n(&q["not_offered_client_busy"]),
        a50 = f(&r["ack_ms"]["p50"]),
        a99 = f(&r["ack_ms"]["p99"]),
        hp = n(&r["healthz_ms"]["probes"]),
        hf = n(&r["healthz_ms"]["failed"]),
        h50 = f(&r["healthz_ms"]["p50"]),
        h99 = f(&r["healthz_ms"]["p99"]),
        hmax = f(&r["healthz_ms"]["max"]),
        qp = n(&r["query_ms"]["runs"]),
        qf = n(&r["query_ms"]["failed"]),
        q50 = f(&r["query_ms"]["p50"]),
        q99 = f(&r["query_ms"]["p99"]),
        qmax = f(&r["query_ms"]["max"]),
        rss = n(&r["peak_rss_mib"]),
        lim = n(&r["rss_limit_mib"]),
        alive = n(&r["server_alive_throughout"]),
        acked = n(&r["acknowledged_events"]),
        b0 = n(&r["stored_before_restart"]["count"]),
        b1 = n(&r["stored_before_restart"]["distinct"]),
        b2 = n(&r["stored_before_restart"]["seq_sum_matches"]),
        r0 = n(&r["stored_after_restart"]["count"]),
        r1 = n(&r["stored_after_restart"]["distinct"]),
        r2 = n(&r["stored_after_restart"]["seq_sum_matches"]),
        machine = r["machine"],
    )
}

//! Client commands: `eventide query` and `eventide import`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value as Json;

/// Connection flags shared by client commands.
#[derive(Debug, Args)]
pub struct Conn {
    /// URL of a running Eventide server.
    #[arg(long, env = "EVENTIDE_URL", default_value = "http://127.0.0.1:4080")]
    pub url: String,
    /// API key (query scope for `query`, ingest scope for `import`).
    #[arg(long, env = "EVENTIDE_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

impl Conn {
    fn request(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        let mut r = client.post(format!("{}{path}", self.url.trim_end_matches('/')));
        if let Some(k) = &self.key {
            r = r.header("X-Honeycomb-Team", k);
        }
        r
    }
}

/// Flags of `eventide query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// SQL to run (any DataFusion SQL; datasets are tables, quote names like "my-service").
    #[arg(long, conflicts_with = "spec")]
    pub sql: Option<String>,
    /// Dataset for a query spec (with --spec).
    pub dataset: Option<String>,
    /// A JSON query spec file (docs/API.md, `POST /api/v1/query/{dataset}`), run against DATASET.
    #[arg(long, requires = "dataset")]
    pub spec: Option<PathBuf>,
    /// Print the server's JSON reply instead of a table.
    #[arg(long)]
    pub json: bool,
}

async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Json> {
    let resp = req.send().await.context("could not reach the server")?;
    let status = resp.status();
    let body: Json = resp.json().await.context("server reply is not json")?;
    if !status.is_success() {
        let msg = body
            .get("error")
            .and_then(Json::as_str)
            .unwrap_or("unknown error");
        bail!("server answered {status}: {msg}");
    }
    Ok(body)
}

fn text(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_table(header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count()).min(60);
            }
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c: String = c.chars().take(*w).collect();
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", line(header));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for r in rows {
        println!("{}", line(r));
    }
}

pub async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    if let Some(sql) = &args.sql {
        let reply = send(
            args.conn
                .request(&client, "/api/v1/sql")
                .json(&serde_json::json!({"sql": sql})),
        )
        .await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&reply)?);
            return Ok(());
        }
        let header: Vec<String> = reply["columns"]
            .as_array()
            .map(|c| c.iter().map(|c| text(&c["name"])).collect())
            .unwrap_or_default();
        let rows: Vec<Vec<String>> = reply["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        r.as_array()
                            .map(|r| r.iter().map(text).collect())
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        print_table(&header, &rows);
        eprintln!(
            "{} rows in {:.1} ms",
            rows.len(),
            reply["elapsed_ms"].as_f64().unwrap_or(0.0)
        );
        return Ok(());
    }
    let (Some(dataset), Some(spec)) = (&args.dataset, &args.spec) else {
        bail!("give --sql \"SELECT …\" or DATASET --spec FILE.json");
    };
    let spec: Json = serde_json::from_slice(
        &std::fs::read(spec).with_context(|| format!("reading {}", spec.display()))?,
    )
    .context("spec file is not json")?;
    let reply = send(
        args.conn
            .request(&client, &format!("/api/v1/query/{dataset}"))
            .json(&spec),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    let results = reply["results"].as_array().cloned().unwrap_or_default();
    let mut header: Vec<String> = Vec::new();
    for r in &results {
        if let Some(o) = r.as_object() {
            for k in o.keys() {
                if !header.contains(k) {
                    header.push(k.clone());
                }
            }
        }
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| header.iter().map(|h| text(&r[h])).collect())
        .collect();
    print_table(&header, &rows);
    eprintln!(
        "{} groups in {:.1} ms",
        rows.len(),
        reply["elapsed_ms"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}

/// Flags of `eventide import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// Dataset to load into (created on first write).
    pub dataset: String,
    /// NDJSON file, one event per line; `.gz` and `.zst` files are decompressed.
    pub file: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Bytes of NDJSON per request (must stay under the server's body limit).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub chunk_bytes: usize,
}

/// Counts bytes read from the file for the progress bar.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

async fn send_chunk(
    client: &reqwest::Client,
    conn: &Conn,
    dataset: &str,
    chunk: Vec<u8>,
) -> anyhow::Result<(u64, u64)> {
    let body = bytes::Bytes::from(chunk);
    let mut backoff = Duration::from_millis(200);
    for _ in 0..50 {
        let resp = conn
            .request(client, &format!("/api/v1/ingest/{dataset}"))
            .header("Content-Type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .context("could not reach the server")?;
        if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(backoff);
            tokio::time::sleep(wait.min(backoff)).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        let status = resp.status();
        let reply: Json = resp.json().await.context("server reply is not json")?;
        if !status.is_success() {
            bail!("server answered {status}: {}", text(&reply["error"]));
        }
        if let Some(errors) = reply["errors"].as_array() {
            for e in errors.iter().take(3) {
                tracing::warn!(line = %e["line"], error = %text(&e["error"]), "line rejected (line number within its request)");
            }
        }
        return Ok((
            reply["accepted"].as_u64().unwrap_or(0),
            reply["rejected"].as_u64().unwrap_or(0),
        ));
    }
    bail!("server stayed overloaded; giving up")
}

pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let read = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: file,
        count: read.clone(),
    };
    let name = args.file.to_string_lossy().to_string();
    let reader: Box<dyn Read + Send> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(counting))
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Box::new(zstd::stream::read::Decoder::new(counting)?)
    } else {
        Box::new(counting)
    };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Chunks are cut on line boundaries by a blocking reader thread.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(args.concurrency.max(1) * 2);
    let chunk_bytes = args.chunk_bytes.max(1024);
    let reader_task = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut r = BufReader::with_capacity(1 << 20, reader);
        let mut chunk = Vec::with_capacity(chunk_bytes + 64 * 1024);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            if !chunk.is_empty()
                && chunk.len() + line.len() > chunk_bytes
                && tx.blocking_send(std::mem::take(&mut chunk)).is_err()
            {
                return Ok(());
            }
            chunk.extend_from_slice(&line);
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(chunk);
        }
        Ok(())
    });
    let client = reqwest::Client::new();
    let conn = Arc::new(args.conn);
    let dataset = Arc::new(args.dataset);
    let started = Instant::now();
    let mut inflight = tokio::task::JoinSet::new();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    while let Some(chunk) = rx.recv().await {
        while inflight.len() >= args.concurrency.max(1) {
            if let Some(res) = inflight.join_next().await {
                let (a, r) = res??;
                accepted += a;
                rejected += r;
                bar.set_position(read.load(Ordering::Relaxed));
                bar.set_message(format!("{accepted} events"));
            }
        }
        let (client, conn, dataset) = (client.clone(), conn.clone(), dataset.clone());
        inflight.spawn(async move { send_chunk(&client, &conn, &dataset, chunk).await });
    }
    while let Some(res) = inflight.join_next().await {
        let (a, r) = res??;
        accepted += a;
        rejected += r;
    }
    reader_task.await??;
    bar.set_position(total);
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {accepted} events into {} ({rejected} rejected) in {secs:.2} s: {:.0} events/s",
        dataset,
        accepted as f64 / secs.max(1e-9)
    );
    Ok(())
}

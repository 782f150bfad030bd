//! The background sender: batches per dataset, compresses, sends with bounded concurrency and
//! retries, and accounts for every event exactly once.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::{ClientBuilder, Compression, Counters, Msg, Transport};

/// Largest datagram the UDP transport writes.
pub(crate) const MAX_DATAGRAM: usize = 60_000;
/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Events in one request whose fate is not settled yet. Whatever is unsettled when it is
/// dropped (an aborted or panicked send) counts as failed, so the counters stay exact.
struct Settle {
    n: u64,
    c: Arc<Counters>,
    room: Arc<Notify>,
}

impl Settle {
    fn sent(&mut self, k: u64) {
        self.n -= k;
        self.c.settle(&self.room, k, 0);
    }
    fn failed(&mut self, k: u64) {
        self.n -= k;
        self.c.settle(&self.room, 0, k);
    }
    fn rest_failed(&mut self) {
        let n = self.n;
        self.failed(n);
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if self.n > 0 {
            self.rest_failed();
        }
    }
}

struct Batch {
    items: Vec<Vec<u8>>,
    bytes: usize,
    since: Instant,
}

enum Wire {
    Http(reqwest::Client),
    Udp(Arc<tokio::net::UdpSocket>),
}

struct Worker {
    cfg: Arc<ClientBuilder>,
    c: Arc<Counters>,
    room: Arc<Notify>,
    wire: Arc<Wire>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    pending: HashMap<Arc<str>, Batch>,
}

pub(crate) async fn run(
    cfg: ClientBuilder,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    c: Arc<Counters>,
    room: Arc<Notify>,
) {
    let wire = match connect(&cfg).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "eventide client cannot start its transport");
            // Every event sent to this client fails.
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Event(_) => c.settle(&room, 0, 1),
                    Msg::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
            return;
        }
    };
    let mut w = Worker {
        slots: Arc::new(Semaphore::new(cfg.max_in_flight)),
        cfg: Arc::new(cfg),
        c,
        room,
        wire: Arc::new(wire),
        tasks: JoinSet::new(),
        pending: HashMap::new(),
    };
    let period = (w.cfg.flush_interval / 2).max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            Some(_) = w.tasks.join_next(), if !w.tasks.is_empty() => {}
            msg = rx.recv() => match msg {
                None => {
                    w.dispatch_all().await;
                    while w.tasks.join_next().await.is_some() {}
                    return;
                }
                Some(Msg::Event(q)) => w.push(q.dataset, q.item).await,
                Some(Msg::Flush(done)) => {
                    w.dispatch_all().await;
                    while w.tasks.join_next().await.is_some() {}
                    let _ = done.send(());
                }
            },
            _ = tick.tick() => w.dispatch_aged().await,
        }
    }
}

async fn connect(cfg: &ClientBuilder) -> Result<Wire, String> {
    match &cfg.transport {
        Transport::Http => reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .build()
            .map(Wire::Http)
            .map_err(|e| e.to_string()),
        Transport::Udp(addr) => {
            let local = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let s = tokio::net::UdpSocket::bind(local)
                .await
                .map_err(|e| format!("binding a udp socket: {e}"))?;
            s.connect(addr)
                .await
                .map_err(|e| format!("udp connect {addr}: {e}"))?;
            Ok(Wire::Udp(Arc::new(s)))
        }
    }
}

impl Worker {
    async fn push(&mut self, dataset: Arc<str>, item: Vec<u8>) {
        let max_bytes = match self.cfg.transport {
            Transport::Http => self.cfg.batch_bytes,
            // Several datagrams per batch, so batches can be as large as over HTTP.
            Transport::Udp(_) => self.cfg.batch_bytes.max(MAX_DATAGRAM),
        };
        // A batch that would outgrow its byte budget goes first.
        if let Some(b) = self.pending.get(&dataset)
            && b.bytes + item.len() + 1 > max_bytes
            && !b.items.is_empty()
        {
            self.dispatch(dataset.clone()).await;
        }
        let b = self
            .pending
            .entry(dataset.clone())
            .or_insert_with(|| Batch {
                items: Vec::new(),
                bytes: 2,
                since: Instant::now(),
            });
        b.bytes += item.len() + 1;
        b.items.push(item);
        if b.items.len() >= self.cfg.batch_events {
            self.dispatch(dataset).await;
        }
    }

    async fn dispatch_aged(&mut self) {
        let due: Vec<Arc<str>> = self
            .pending
            .iter()
            .filter(|(_, b)| b.since.elapsed() >= self.cfg.flush_interval)
            .map(|(d, _)| d.clone())
            .collect();
        for d in due {
            self.dispatch(d).await;
        }
    }

    async fn dispatch_all(&mut self) {
        let all: Vec<Arc<str>> = self.pending.keys().cloned().collect();
        for d in all {
            self.dispatch(d).await;
        }
    }

    /// Hands a dataset's batch to a send task once a request slot is free.
    async fn dispatch(&mut self, dataset: Arc<str>) {
        let Some(batch) = self.pending.remove(&dataset) else {
            return;
        };
        let settle = Settle {
            n: batch.items.len() as u64,
            c: self.c.clone(),
            room: self.room.clone(),
        };
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return; // never closed; `settle` would count the batch failed
        };
        let cfg = self.cfg.clone();
        let wire = self.wire.clone();
        self.tasks.spawn(async move {
            match &*wire {
                Wire::Http(http) => send_http(http, &cfg, &dataset, batch.items, settle).await,
                Wire::Udp(sock) => send_udp(sock, batch.items, settle).await,
            }
            drop(permit);
        });
    }
}

fn encode_body(items: &[Vec<u8>], compression: Compression) -> std::io::Result<Bytes> {
    let mut json = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
    json.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(item);
    }
    json.push(b']');
    Ok(Bytes::from(match compression {
        Compression::None => json,
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(json.len() / 4),
                flate2::Compression::fast(),
            );
            enc.write_all(&json)?;
            enc.finish()?
        }
        Compression::Zstd => zstd::encode_all(&json[..], 1)?,
    }))
}

static LAST_WARN_US: AtomicU64 = AtomicU64::new(0);

/// Logs at most one warning every 10 s, so an outage does not flood the application's logs.
fn warn_rate_limited(msg: &str, detail: &str) {
    let now = chrono::Utc::now().timestamp_micros() as u64;
    let prev = LAST_WARN_US.load(Ordering::Relaxed);
    if now.saturating_sub(prev) >= 10_000_000
        && LAST_WARN_US
            .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(detail, "eventide client: {msg}");
    }
}

fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let base = retry_after.unwrap_or_else(|| {
        Duration::from_millis(100)
            .saturating_mul(1u32 << attempt.min(10))
            .min(MAX_BACKOFF)
    });
    // ±20 % jitter so many clients do not retry in step.
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    base.mul_f64(jitter)
}

async fn send_http(
    http: &reqwest::Client,
    cfg: &ClientBuilder,
    dataset: &str,
    items: Vec<Vec<u8>>,
    mut settle: Settle,
) {
    let body = match encode_body(&items, cfg.compression) {
        Ok(b) => b,
        Err(e) => {
            warn_rate_limited("could not compress a batch", &e.to_string());
            return; // `settle` counts the batch failed
        }
    };
    drop(items);
    let url = format!("{}/1/batch/{dataset}", cfg.endpoint);
    let mut attempt = 0u32;
    loop {
        let mut req = http
            .post(&url)
            .header("X-Honeycomb-Team", &cfg.key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!("eventide-client-rust/", env!("CARGO_PKG_VERSION")),
            )
            .body(body.clone());
        match cfg.compression {
            Compression::None => {}
            Compression::Gzip => req = req.header(reqwest::header::CONTENT_ENCODING, "gzip"),
            Compression::Zstd => req = req.header(reqwest::header::CONTENT_ENCODING, "zstd"),
        }
        let retry_after = match req.send().await {
            Ok(r) if r.status().is_success() => {
                match r.json::<Vec<serde_json::Value>>().await {
                    Ok(statuses) => {
                        let ok = statuses
                            .iter()
                            .filter(|s| {
                                s["status"]
                                    .as_u64()
                                    .is_some_and(|c| (200..300).contains(&c))
                            })
                            .count() as u64;
                        if let Some(bad) = statuses.iter().find(|s| s["status"] != 202) {
                            warn_rate_limited("events refused by the server", &bad.to_string());
                        }
                        settle.sent(ok.min(settle.n));
                    }
                    // A 2xx means the batch is durable; only the per-item detail is lost.
                    Err(_) => {
                        let n = settle.n;
                        settle.sent(n);
                    }
                }
                settle.rest_failed();
                return;
            }
            Ok(r) if r.status() == 429 || r.status().is_server_error() => r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                warn_rate_limited(
                    &format!("batch refused with {status}"),
                    body.chars().take(300).collect::<String>().as_str(),
                );
                return; // not retryable: `settle` counts the batch failed
            }
            Err(e) => {
                tracing::debug!(error = %e, "eventide client: request failed");
                None
            }
        };
        if attempt >= cfg.max_retries {
            warn_rate_limited(
                "giving up on a batch after retries",
                &format!("{} events to {url}", settle.n),
            );
            return;
        }
        attempt += 1;
        settle.c.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff(attempt, retry_after)).await;
    }
}

async fn send_udp(sock: &tokio::net::UdpSocket, items: Vec<Vec<u8>>, mut settle: Settle) {
    let mut dgram = Vec::with_capacity(MAX_DATAGRAM);
    let mut lines = 0u64;
    for item in items {
        if item.len() + 1 > MAX_DATAGRAM {
            warn_rate_limited(
                "event too large for a datagram",
                &format!("{} bytes", item.len()),
            );
            settle.failed(1);
            continue;
        }
        if dgram.len() + item.len() + 1 > MAX_DATAGRAM {
            flush_datagram(sock, &mut dgram, &mut lines, &mut settle).await;
        }
        dgram.extend_from_slice(&item);
        dgram.push(b'\n');
        lines += 1;
    }
    flush_datagram(sock, &mut dgram, &mut lines, &mut settle).await;
}

async fn flush_datagram(
    sock: &tokio::net::UdpSocket,
    dgram: &mut Vec<u8>,
    lines: &mut u64,
    settle: &mut Settle,
) {
    if *lines == 0 {
        return;
    }
    match sock.send(dgram).await {
        Ok(_) => settle.sent(*lines),
        Err(e) => {
            warn_rate_limited("udp send failed", &e.to_string());
            settle.failed(*lines);
        }
    }
    dgram.clear();
    *lines = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decompress_to_the_json_array() {
        let items = vec![
            br#"{"data":{"a":1}}"#.to_vec(),
            br#"{"data":{"b":2}}"#.to_vec(),
        ];
        let want = br#"[{"data":{"a":1}},{"data":{"b":2}}]"#;
        let plain = encode_body(&items, Compression::None).unwrap();
        assert_eq!(&plain[..], want);
        let z = encode_body(&items, Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(&z[..]).unwrap(), want);
        let g = encode_body(&items, Compression::Gzip).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&g[..]), &mut out).unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        assert!(backoff(1, None) < backoff(5, None));
        assert!(backoff(30, None) <= MAX_BACKOFF.mul_f64(1.2));
        let ra = backoff(1, Some(Duration::from_secs(2)));
        assert!(ra >= Duration::from_millis(1600) && ra <= Duration::from_millis(2400));
    }
}

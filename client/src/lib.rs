//! # eventide-client
//!
//! Eventide's Rust instrumentation library: build one wide event per unit of work, and the
//! client batches, compresses, samples and sends them in the background.
//!
//! ```no_run
//! # async fn demo() -> Result<(), eventide_client::Error> {
//! use eventide_client::Client;
//!
//! let client = Client::builder()
//!     .endpoint("http://127.0.0.1:4080")
//!     .key("my-ingest-key")
//!     .dataset("checkout")
//!     .build()?;
//!
//! client
//!     .event()
//!     .add("endpoint", "/cart")
//!     .add("status", 200)
//!     .add("duration_ms", 12.5)
//!     .send()?;
//!
//! client.shutdown().await; // flushes what is queued
//! # Ok(()) }
//! ```
//!
//! # What it owns
//! - **Batching** by dataset, by count ([`ClientBuilder::batch_events`]), size
//!   ([`ClientBuilder::batch_bytes`]) and age ([`ClientBuilder::flush_interval`]), sent to
//!   `POST /1/batch/{dataset}` with gzip or zstd, several requests in flight.
//! - **A bounded queue** ([`ClientBuilder::queue_capacity`], counted in events held by the
//!   client: queued, batched or being sent). Drop policy: [`EventBuilder::send`] never blocks;
//!   when the queue is full it returns [`Error::QueueFull`] and counts the event in
//!   [`Stats::dropped`]. [`EventBuilder::send_wait`] waits for room instead.
//! - **Deterministic sampling**: with a sample rate `R`, an event is kept when the hash of its
//!   sample key ([`EventBuilder::sample_key`], e.g. a trace id) falls in 1/R of the space, so
//!   every service keeps or drops the same traces; without a key the choice is random. Kept
//!   events carry `samplerate = R`, which Eventide's COUNT/SUM/AVG weigh by.
//! - **Retries** of 429, 5xx and connection errors with exponential backoff, honouring
//!   `Retry-After`; a 4xx other than 429 fails the batch at once; per-item 400s count as
//!   failed.
//! - **Flush and shutdown**: [`Client::flush`] sends everything queued and waits for the
//!   answers; [`Client::shutdown`] flushes within [`ClientBuilder::shutdown_timeout`] and
//!   counts what could not be delivered as failed.
//! - **Counters** ([`Client::stats`]): every event handed to `send` or `send_wait` ends in
//!   exactly one of `sampled_out`, `dropped`, `sent`, `failed` (including events refused for
//!   having no dataset, or sent after shutdown), or is still `queued`.
//! - **A UDP transport** ([`Transport::Udp`]): JSON lines in datagrams of at most 60 kB;
//!   fire-and-forget, no retries.
//!
//! The HTTP transport speaks plain HTTP (no TLS in this build); put a TLS-terminating proxy in
//! front of Eventide when events cross an untrusted network.

mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc, oneshot};

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The queue holds `queue_capacity` events; this one was dropped and counted.
    #[error("queue full: event dropped")]
    QueueFull,
    /// The client was shut down.
    #[error("client is shut down")]
    Closed,
    #[error("event could not be encoded: {0}")]
    Encode(String),
}

/// Body compression of HTTP batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// How events travel.
#[derive(Debug, Clone)]
pub enum Transport {
    /// `POST {endpoint}/1/batch/{dataset}`: acknowledged, retried.
    Http,
    /// JSON lines over UDP to this address: unacknowledged.
    Udp(SocketAddr),
}

/// Counters since the client was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events the server acknowledged (202), or datagrams written (UDP).
    pub sent: u64,
    /// Events refused because the queue was full.
    pub dropped: u64,
    /// Events the sampler left out.
    pub sampled_out: u64,
    /// Events the server refused, or that could not be delivered within the retries.
    pub failed: u64,
    /// Requests retried.
    pub retries: u64,
    /// Events held right now (queued, batched or in flight).
    pub queued: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    sampled_out: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    /// Events held by the client; the top bit ([`CLOSED`]) is set once it has shut down.
    held: AtomicU64,
}

/// Set in [`Counters::held`] by shutdown: every event still held was then counted failed, and
/// later settlements of those events are ignored, so each event is counted once.
const CLOSED: u64 = 1 << 63;

impl Counters {
    /// Takes a place in the queue; `Err(held)` when full or closed (nothing counted).
    fn try_reserve(&self, cap: u64) -> Result<(), u64> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h & CLOSED == 0 && h < cap).then_some(h + 1)
            })
            .map(|_| ())
    }

    /// Settles held events as sent or failed and gives their places back. A no-op after
    /// [`Counters::close`], which already counted them.
    pub(crate) fn settle(&self, room: &Notify, sent: u64, failed: u64) {
        let k = sent + failed;
        if k == 0 {
            return;
        }
        let open = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h & CLOSED == 0).then(|| h - k)
            })
            .is_ok();
        if open {
            self.sent.fetch_add(sent, Ordering::Relaxed);
            self.failed.fetch_add(failed, Ordering::Relaxed);
            room.notify_waiters();
        }
    }

    /// Counts every held event as failed and refuses new ones.
    fn close(&self, room: &Notify) {
        // Nothing is held any more: what was is now counted failed.
        let prev = self.held.swap(CLOSED, Ordering::AcqRel);
        if prev & CLOSED == 0 {
            self.failed.fetch_add(prev, Ordering::Relaxed);
        }
        room.notify_waiters();
    }
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoint: String,
    key: String,
    dataset: String,
    transport: Transport,
    compression: Compression,
    sample_rate: u32,
    batch_events: usize,
    batch_bytes: usize,
    flush_interval: Duration,
    queue_capacity: usize,
    max_in_flight: usize,
    max_retries: u32,
    request_timeout: Duration,
    shutdown_timeout: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:4080".into(),
            key: String::new(),
            dataset: String::new(),
            transport: Transport::Http,
            compression: Compression::Zstd,
            sample_rate: 1,
            batch_events: 1000,
            batch_bytes: 4 * 1024 * 1024,
            flush_interval: Duration::from_millis(100),
            queue_capacity: 100_000,
            max_in_flight: 4,
            max_retries: 8,
            request_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl ClientBuilder {
    /// Base URL of Eventide's HTTP API (default `http://127.0.0.1:4080`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = url.into().trim_end_matches('/').to_owned();
        self
    }
    /// API key with the `ingest` scope, sent as `X-Honeycomb-Team`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }
    /// Default dataset of events (an event may name another).
    pub fn dataset(mut self, dataset: impl Into<String>) -> Self {
        self.dataset = dataset.into();
        self
    }
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }
    /// Body compression (default zstd).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }
    /// Keep 1 in `rate` events (default 1: keep all).
    pub fn sample_rate(mut self, rate: u32) -> Self {
        self.sample_rate = rate;
        self
    }
    /// Most events per request (default 1000).
    pub fn batch_events(mut self, n: usize) -> Self {
        self.batch_events = n;
        self
    }
    /// Most uncompressed bytes per request (default 4 MiB; the server takes 5 MB).
    pub fn batch_bytes(mut self, n: usize) -> Self {
        self.batch_bytes = n;
        self
    }
    /// Send a partial batch once it is this old (default 100 ms).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }
    /// Most events held by the client at once (default 100,000).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }
    /// Requests in flight at once (default 4).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }
    /// Retries of a request before its events count as failed (default 8).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
    /// Timeout of one request (default 10 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// How long [`Client::shutdown`] may take to deliver what is queued (default 10 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Starts the client's background sender. Must be called inside a tokio runtime.
    pub fn build(self) -> Result<Client, Error> {
        if self.sample_rate == 0 {
            return Err(Error::Config("sample rate must be at least 1".into()));
        }
        if self.batch_events == 0 || self.queue_capacity == 0 || self.max_in_flight == 0 {
            return Err(Error::Config(
                "batch_events, queue_capacity and max_in_flight must be positive".into(),
            ));
        }
        if matches!(self.transport, Transport::Http) {
            if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "endpoint {:?} is not an http:// URL",
                    self.endpoint
                )));
            }
            if self.key.is_empty() {
                return Err(Error::Config("an API key is required".into()));
            }
            if self.endpoint.starts_with("https://") {
                return Err(Error::Config(
                    "https:// is not supported by this build (no TLS): use http:// to Eventide \
                     or a local TLS-terminating proxy"
                        .into(),
                ));
            }
        }
        let counters = Arc::new(Counters::default());
        let room = Arc::new(Notify::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("build() must run inside a tokio runtime".into()))?;
        let worker = handle.spawn(worker::run(
            self.clone(),
            rx,
            counters.clone(),
            room.clone(),
        ));
        Ok(Client {
            inner: Arc::new(Inner {
                config: self,
                tx,
                counters,
                room,
                worker: std::sync::Mutex::new(Some(worker)),
            }),
        })
    }
}

/// One event on its way to the worker: its dataset and its encoded batch item.
pub(crate) struct Queued {
    dataset: Arc<str>,
    item: Vec<u8>,
}

pub(crate) enum Msg {
    Event(Queued),
    Flush(oneshot::Sender<()>),
}

struct Inner {
    config: ClientBuilder,
    tx: mpsc::UnboundedSender<Msg>,
    counters: Arc<Counters>,
    room: Arc<Notify>,
    worker: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A handle to the background sender; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.config.endpoint)
            .field("dataset", &self.inner.config.dataset)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Client {
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Starts an event for the default dataset.
    pub fn event(&self) -> EventBuilder<'_> {
        EventBuilder {
            client: self,
            dataset: None,
            fields: Map::new(),
            time: None,
            sample_key: None,
            sample_rate: None,
        }
    }

    /// Counters since the client was built.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            sent: c.sent.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            sampled_out: c.sampled_out.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            queued: c.held.load(Ordering::Relaxed) & !CLOSED,
        }
    }

    /// Sends every event handed to `send` before this call and waits until each is
    /// acknowledged or failed.
    pub async fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Flush(tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Flushes within the shutdown timeout, then stops the sender. Events still undelivered
    /// then count as failed. Other clones of this client can no longer send ([`Error::Closed`],
    /// counted as failed).
    pub async fn shutdown(&self) -> Stats {
        let timeout = self.inner.config.shutdown_timeout;
        let _ = tokio::time::timeout(timeout, self.flush()).await;
        self.inner.counters.close(&self.inner.room);
        let worker = self
            .inner
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(w) = worker {
            // What is still in flight was counted failed by `close`.
            w.abort();
            let _ = w.await;
        }
        self.stats()
    }

    /// Takes a place in the queue. `Ok(false)` when full; a closed client counts the event
    /// failed.
    fn reserve(&self) -> Result<bool, Error> {
        let c = &self.inner.counters;
        match c.try_reserve(self.inner.config.queue_capacity as u64) {
            Ok(()) => Ok(true),
            Err(h) if h & CLOSED != 0 => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                Err(Error::Closed)
            }
            Err(_) => Ok(false),
        }
    }

    fn enqueue(&self, q: Queued) -> Result<(), Error> {
        if self.inner.tx.send(Msg::Event(q)).is_err() {
            self.inner.counters.settle(&self.inner.room, 0, 1);
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn count_failed(&self) {
        self.inner.counters.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// What happened to an event handed to [`EventBuilder::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// In the queue.
    Queued,
    /// Left out by the sampler (counted in [`Stats::sampled_out`]).
    SampledOut,
}

/// One event being built. Fields are JSON values; nested objects become dotted columns.
#[derive(Debug)]
pub struct EventBuilder<'a> {
    client: &'a Client,
    dataset: Option<String>,
    fields: Map<String, Value>,
    time: Option<SystemTime>,
    sample_key: Option<String>,
    sample_rate: Option<u32>,
}

impl EventBuilder<'_> {
    /// Adds (or replaces) a field.
    pub fn add(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }
    /// Adds a field in place (for code that fills an event step by step).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        self.fields.insert(name.into(), value.into());
        self
    }
    /// Sends to this dataset instead of the client's default.
    pub fn dataset(mut self, dataset: impl Into<String>) -> Self {
        self.dataset = Some(dataset.into());
        self
    }
    /// The event's time (default: when it is sent).
    pub fn timestamp(mut self, t: SystemTime) -> Self {
        self.time = Some(t);
        self
    }
    /// Sample by this key (e.g. a trace id): every event with the same key is kept or left
    /// out together, in every process using the same rate.
    pub fn sample_key(mut self, key: impl Into<String>) -> Self {
        self.sample_key = Some(key.into());
        self
    }
    /// Sample rate of this event (default: the client's).
    pub fn sample_rate(mut self, rate: u32) -> Self {
        self.sample_rate = Some(rate.max(1));
        self
    }

    /// Queues the event without ever blocking. A full queue drops it: [`Error::QueueFull`],
    /// counted in [`Stats::dropped`].
    pub fn send(self) -> Result<Outcome, Error> {
        let client = self.client;
        let Some(q) = self.prepare()? else {
            return Ok(Outcome::SampledOut);
        };
        if !client.reserve()? {
            client
                .inner
                .counters
                .dropped
                .fetch_add(1, Ordering::Relaxed);
            return Err(Error::QueueFull);
        }
        client.enqueue(q).map(|()| Outcome::Queued)
    }

    /// Queues the event, waiting for room when the queue is full.
    pub async fn send_wait(self) -> Result<Outcome, Error> {
        let client = self.client;
        let Some(q) = self.prepare()? else {
            return Ok(Outcome::SampledOut);
        };
        loop {
            let room = client.inner.room.notified();
            if client.reserve()? {
                break;
            }
            // Re-checks at least every 50 ms in case a wake-up raced the reservation.
            let _ = tokio::time::timeout(Duration::from_millis(50), room).await;
        }
        client.enqueue(q).map(|()| Outcome::Queued)
    }

    /// Samples and encodes; `None` when sampled out.
    fn prepare(self) -> Result<Option<Queued>, Error> {
        let config = &self.client.inner.config;
        let rate = self.sample_rate.unwrap_or(config.sample_rate).max(1);
        if rate > 1 && !keep(self.sample_key.as_deref(), rate) {
            self.client
                .inner
                .counters
                .sampled_out
                .fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let dataset = self.dataset.as_deref().unwrap_or(&config.dataset);
        if dataset.is_empty() {
            self.client.count_failed();
            return Err(Error::Config(
                "no dataset: set one on the client or the event".into(),
            ));
        }
        let time = self.time.unwrap_or_else(SystemTime::now);
        let time = chrono::DateTime::<chrono::Utc>::from(time)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut item = Map::new();
        if matches!(config.transport, Transport::Udp(_)) {
            item.insert("dataset".into(), Value::from(dataset));
        }
        item.insert("time".into(), Value::from(time));
        item.insert("samplerate".into(), Value::from(rate));
        item.insert("data".into(), Value::Object(self.fields));
        let bytes = serde_json::to_vec(&item).map_err(|e| {
            self.client.count_failed();
            Error::Encode(e.to_string())
        })?;
        Ok(Some(Queued {
            dataset: Arc::from(dataset),
            item: bytes,
        }))
    }
}

/// Deterministic keep decision: FNV-1a of the key, kept in 1 of `rate` buckets.
fn keep(key: Option<&str>, rate: u32) -> bool {
    let h = match key {
        Some(k) => fnv1a(k.as_bytes()),
        None => rand::random::<u64>(),
    };
    h % u64::from(rate) == 0
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Mix the high bits in: FNV's low bits are weak for short keys.
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sampling_keeps_the_same_keys_at_the_expected_rate() {
        let kept: Vec<bool> = (0..40_000)
            .map(|i| keep(Some(&format!("trace-{i}")), 4))
            .collect();
        let again: Vec<bool> = (0..40_000)
            .map(|i| keep(Some(&format!("trace-{i}")), 4))
            .collect();
        assert_eq!(kept, again);
        let n = kept.iter().filter(|k| **k).count();
        assert!((9_000..11_000).contains(&n), "kept {n} of 40000 at 1/4");
    }

    #[tokio::test]
    async fn builder_refuses_bad_settings() {
        let e = Client::builder()
            .key("k")
            .sample_rate(0)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("sample rate"));
        let e = Client::builder()
            .endpoint("ftp://x")
            .key("k")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("http://"));
        let e = Client::builder().build().unwrap_err();
        assert!(e.to_string().contains("API key"));
    }

    #[tokio::test]
    async fn an_event_without_dataset_is_an_error() {
        let c = Client::builder().key("k").build().unwrap();
        let e = c.event().add("a", 1).send().unwrap_err();
        assert!(e.to_string().contains("no dataset"));
        assert_eq!(c.stats().queued, 0);
    }
}

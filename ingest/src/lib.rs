//! # eventide-ingest
//!
//! Everything between a client's bytes and the log: HTTP receivers, decoders (Honeycomb JSON
//! and msgpack batches, single events, NDJSON), request limits, API keys, the per-dataset
//! type registry, and backpressure.
//!
//! # Layout
//! - `body`: body size limits, gzip/zstd, the JSON depth guard.
//! - `decode`: bodies → events, one result per item in request order. JSON batches and NDJSON
//!   go straight from a simd-json tape into Arrow builders (`ColumnarBatch`); the other
//!   formats build `Event`s first.
//! - `registry`: column types per dataset; applies the type rules before the log.
//! - `auth`: keys, scopes and the middleware that checks them.
//! - `otlp`: OTLP/HTTP traces and logs → Honeycomb-shaped events.
//! - `udp`: the UDP receiver (JSON lines, `recvmmsg`, counted drops).
//! - [`router`]: the ingest routes (`/1/batch`, `/1/events`, `/api/v1/ingest`, `/v1/traces`,
//!   `/v1/logs`).
//!
//! # Invariants
//! - A 2xx reply is sent only after the events it accepts are durable in the log.
//! - One bad item never fails the others in its request; a bad body fails only its request.
//! - Memory is bounded: bodies are limited before and after decompression and the log refuses
//!   appends (→ 503 + `Retry-After`) instead of queueing without bound.
//! - Ingest never touches the store.

pub mod auth;
pub mod body;
pub mod decode;
pub mod error;
pub mod metrics;
pub mod otlp;
pub mod registry;
pub mod udp;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use eventide_eventlog::{EventLog, NewRecord};
use eventide_model::{
    ColumnarBatch, DatasetName, Event, Limits, encode_records, events_to_batches,
};
use metrics::Endpoint;
use serde_json::json;

pub use auth::{Keys, Require, Scope};
pub use error::ApiError;
pub use registry::SchemaRegistry;

use decode::{Defaults, Item};

/// Shared state of the ingest routes.
#[derive(Clone)]
pub struct IngestState {
    pub log: Arc<dyn EventLog>,
    pub registry: Arc<SchemaRegistry>,
    pub limits: Limits,
    /// Budget of request bodies being read, decoded and appended at once, in KiB: a request
    /// takes its `Content-Length` (or, without one, its body limit). When the budget is
    /// spent, requests are refused at once with 503 + `Retry-After` rather than queued: this
    /// bounds the memory ingest can hold, and the time a request can wait.
    pub inflight: Arc<tokio::sync::Semaphore>,
    /// Decodes running at once (one per core): the others wait here, holding their in-flight
    /// budget, instead of piling up on blocking threads that would compete for the cores
    /// (and each keep a parse buffer).
    pub decode_slots: Arc<tokio::sync::Semaphore>,
    /// Longest a request waits for a decode slot before it is refused with 503: under
    /// sustained overload, requests are shed at once instead of all waiting longer and longer.
    pub max_queue_wait: std::time::Duration,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::IngestMetrics>,
    /// The process memory bound (`--max-memory-mb`), if any: above its high watermark new
    /// requests are refused.
    pub memory: Option<Arc<eventide_model::memory::MemoryGuard>>,
    /// The receive time of events that carry none.
    pub clock: eventide_model::time::Clock,
}

/// Default in-flight budget of request bodies: 256 MiB.
pub const DEFAULT_INFLIGHT_BYTES: usize = 256 * 1024 * 1024;

impl IngestState {
    pub fn new(log: Arc<dyn EventLog>, registry: Arc<SchemaRegistry>, limits: Limits) -> Self {
        Self {
            log,
            registry,
            limits,
            inflight: Arc::new(tokio::sync::Semaphore::new(DEFAULT_INFLIGHT_BYTES / 1024)),
            decode_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            )),
            max_queue_wait: std::time::Duration::from_millis(500),
            metrics: Arc::default(),
            memory: None,
            clock: eventide_model::time::Clock::system(),
        }
    }

    /// Takes receive times from `clock`.
    pub fn with_clock(mut self, clock: eventide_model::time::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Refuses new requests while `guard` says memory is above its high watermark.
    pub fn with_memory_guard(mut self, guard: Arc<eventide_model::memory::MemoryGuard>) -> Self {
        self.memory = Some(guard);
        self
    }

    /// Sets how long a request may wait for a decode slot.
    pub fn with_max_queue_wait(mut self, wait: std::time::Duration) -> Self {
        self.max_queue_wait = wait;
        self
    }

    /// Sets the in-flight budget of request bodies (at least 1 MiB).
    pub fn with_inflight_bytes(mut self, bytes: usize) -> Self {
        self.inflight = Arc::new(tokio::sync::Semaphore::new(
            (bytes / 1024).clamp(1024, tokio::sync::Semaphore::MAX_PERMITS),
        ));
        self
    }

    /// Waits for a decode slot (see [`IngestState::decode_slots`]), at most
    /// `max_queue_wait`.
    async fn decode_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(
            self.max_queue_wait,
            self.decode_slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(permit) => permit.map_err(|_| ApiError::Internal("decode slots closed".into())),
            Err(_) => {
                self.metrics.shed();
                Err(ApiError::Overloaded(
                    "server is overloaded (ingest queue is full); retry later".into(),
                    1,
                ))
            }
        }
    }

    /// Appends events made inside this process (Eventide's own, `--self-dataset`) to
    /// `dataset`: the type rules and the durable append of an ingest request, without its
    /// admission (the caller bounds its own queue) or rate limits. Refused while memory is
    /// over its bound. Returns how many events were stored (the type rules may refuse some).
    pub async fn append_events(
        &self,
        dataset: &str,
        events: Vec<Event>,
    ) -> Result<usize, ApiError> {
        let dataset = dataset_name(dataset)?;
        if let Some(guard) = self.memory.as_ref().filter(|g| g.is_over()) {
            return Err(ApiError::Overloaded(
                format!("memory above its bound ({} MiB)", guard.limit() >> 20),
                1,
            ));
        }
        let this = self.clone();
        let ds = dataset.clone();
        let items: Vec<Item> = events.into_iter().map(Ok).collect();
        let prepared = tokio::task::spawn_blocking(move || this.prepare(&ds, items))
            .await
            .map_err(|e| ApiError::Internal(format!("encoder task failed: {e}")))??;
        self.append(dataset.as_str(), prepared.records).await?;
        Ok(prepared.events)
    }

    /// Appends the records of one request to `dataset` durably and atomically (all or none).
    async fn append(&self, dataset: &str, records: Vec<Bytes>) -> Result<(), ApiError> {
        self.append_records(
            records
                .into_iter()
                .map(|payload| NewRecord::new(dataset, payload))
                .collect(),
        )
        .await
    }

    /// Appends the records of one request (of any datasets) durably and atomically (all or
    /// none), timing it for `/metrics`.
    async fn append_records(&self, records: Vec<NewRecord>) -> Result<(), ApiError> {
        if records.is_empty() {
            return Ok(());
        }
        let bytes = records.iter().map(|r| r.payload.len()).sum();
        let started = std::time::Instant::now();
        let r = self.log.append_all(records).await;
        self.metrics.append(started.elapsed(), bytes, r.is_ok());
        r.map(|_| ()).map_err(Into::into)
    }

    /// The log records of `batches`, each within the record bound; and how many events.
    fn encode(&self, batches: &[RecordBatch]) -> Result<(Vec<Bytes>, usize), ApiError> {
        let records = encode_records(batches, self.limits.max_record_bytes)
            .map_err(|e| ApiError::Internal(format!("encoding batch: {e}")))?;
        let events = records.iter().map(|(_, n)| n).sum();
        Ok((records.into_iter().map(|(b, _)| b).collect(), events))
    }

    fn admit_request(
        &self,
        headers: &HeaderMap,
        body_limit: usize,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(guard) = self.memory.as_ref().filter(|g| g.is_over()) {
            self.metrics.shed();
            return Err(ApiError::Overloaded(
                format!(
                    "server is overloaded (memory: {} MiB in use, bound {} MiB); retry later",
                    guard.rss() >> 20,
                    guard.limit() >> 20
                ),
                1,
            ));
        }
        let bytes = declared.map_or(body_limit, |n| n.min(body_limit));
        let units = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        self.inflight
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| {
                self.metrics.shed();
                ApiError::Overloaded(
                    "server is overloaded (too many request bytes in flight); retry later".into(),
                    1,
                )
            })
    }
}

impl std::fmt::Debug for IngestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestState")
            .field("limits", &self.limits)
            .finish()
    }
}

/// Items after admission: per item `None` (accepted) or the reason it was refused, and the
/// log records of the accepted events.
struct Prepared {
    outcomes: Vec<Option<String>>,
    /// The log records (appended together, all or none); empty when nothing was accepted.
    records: Vec<Bytes>,
    /// Events the records hold.
    events: usize,
}

impl IngestState {
    /// Applies the type rules to each event and encodes the accepted ones. CPU-bound.
    fn prepare(&self, dataset: &DatasetName, items: Vec<Item>) -> Result<Prepared, ApiError> {
        let schema = self.registry.dataset(dataset.as_str());
        let mut outcomes = Vec::with_capacity(items.len());
        let mut accepted: Vec<Event> = Vec::with_capacity(items.len());
        let batch = {
            let mut schema = schema.lock().unwrap_or_else(|p| p.into_inner());
            for item in items {
                match item {
                    Ok(mut e) => match schema.admit(&mut e, self.limits.max_columns_per_dataset) {
                        Ok(()) => {
                            accepted.push(e);
                            outcomes.push(None);
                        }
                        Err(err) => outcomes.push(Some(err.to_string())),
                    },
                    Err(err) => outcomes.push(Some(err)),
                }
            }
            events_to_batches(&schema, &accepted)
                .map_err(|e| ApiError::Internal(format!("building arrow batch: {e}")))?
        };
        let (records, events) = self.encode(&batch)?;
        Ok(Prepared {
            outcomes,
            records,
            events,
        })
    }

    /// Decodes (on a blocking thread), admits, appends durably. Returns per-item outcomes.
    async fn ingest(
        &self,
        dataset: DatasetName,
        decode: impl FnOnce() -> Result<Vec<Item>, ApiError> + Send + 'static,
    ) -> Result<Vec<Option<String>>, ApiError> {
        let this = self.clone();
        let ds = dataset.clone();
        let slot = self.decode_slot().await?;
        let prepared = tokio::task::spawn_blocking(move || this.prepare(&ds, decode()?))
            .await
            .map_err(|e| ApiError::Internal(format!("decoder task failed: {e}")))??;
        drop(slot);
        if prepared.events > 0 {
            auth::charge_events(prepared.events)?;
        }
        self.append(dataset.as_str(), prepared.records).await?;
        Ok(prepared.outcomes)
    }
}

impl IngestState {
    /// The columnar path (JSON batches, NDJSON): `fill` decodes the request straight into a
    /// [`ColumnarBatch`] built against a copy of the dataset's schema, without holding its
    /// lock. The columns the batch adds are then published; when another request changed the
    /// schema meanwhile, the batch is built again under the lock, so type decisions stay
    /// consistent. CPU-bound.
    fn prepare_columnar<T>(
        &self,
        dataset: &DatasetName,
        mut fill: impl FnMut(&mut ColumnarBatch) -> Result<T, ApiError>,
    ) -> Result<(T, Vec<Bytes>, usize), ApiError> {
        let shared = self.registry.dataset(dataset.as_str());
        let lock = || shared.lock().unwrap_or_else(|p| p.into_inner());
        let max = self.limits.max_columns_per_dataset;
        let snapshot = lock().clone();
        let mut batch = ColumnarBatch::new(snapshot, max, 1024);
        let mut outcomes = fill(&mut batch)?;
        if !batch.new_columns().is_empty() {
            let mut schema = lock();
            if schema.len() != batch.base_len() {
                // Another request added columns since the copy: decide again against the
                // current schema, holding the lock this time.
                batch = ColumnarBatch::new(schema.clone(), max, batch.len().max(1));
                outcomes = fill(&mut batch)?;
            }
            for (name, t) in batch.new_columns() {
                schema.merge_column(name, *t);
            }
        }
        let batches = batch
            .finish()
            .map_err(|e| ApiError::Internal(format!("building arrow batch: {e}")))?;
        let (records, events) = self.encode(&batches)?;
        Ok((outcomes, records, events))
    }

    /// Like [`IngestState::ingest_request`] for the columnar decoders: reads the body, then
    /// decodes, admits and encodes it on a blocking thread, and appends it durably.
    async fn ingest_columnar<T: Send + 'static>(
        &self,
        dataset: &str,
        headers: &HeaderMap,
        body: Body,
        limit: usize,
        fill: impl Fn(&[u8], &Defaults, &Limits, &mut ColumnarBatch) -> Result<T, ApiError>
        + Send
        + 'static,
    ) -> Result<T, ApiError> {
        let dataset = dataset_name(dataset)?;
        let enc = body::encoding(headers)?;
        let _permit = self.admit_request(headers, limit)?;
        let raw = body::read_raw(body, limit).await?;
        let d = defaults(headers, self.clock.now_micros())?;
        let this = self.clone();
        let ds = dataset.clone();
        let slot = self.decode_slot().await?;
        let (out, records, events) = tokio::task::spawn_blocking(move || {
            let body = body::decode_body(raw, enc, limit)?;
            let d = d.for_body(body.len(), &this.limits);
            let limits = this.limits.clone();
            this.prepare_columnar(&ds, |batch| fill(&body, &d, &limits, batch))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("decoder task failed: {e}")))??;
        drop(slot);
        if events > 0 {
            auth::charge_events(events)?;
        }
        self.append(dataset.as_str(), records).await?;
        Ok(out)
    }
}

/// Outcomes of one dataset's group: its name, which items were primary, per-item outcomes.
pub(crate) type GroupOutcome = (String, Vec<bool>, Vec<Option<String>>);

impl IngestState {
    /// Like [`IngestState::ingest`] for requests that carry several datasets (OTLP): decodes
    /// and admits every group on a blocking thread, then appends the groups to the log
    /// concurrently. Succeeds only when every group is durable.
    async fn ingest_groups(
        &self,
        decode: impl FnOnce() -> Result<decode::Groups, ApiError> + Send + 'static,
    ) -> Result<Vec<GroupOutcome>, ApiError> {
        let this = self.clone();
        let slot = self.decode_slot().await?;
        let prepared = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (name, group) in decode()? {
                let p = match dataset_name(&name) {
                    Ok(dataset) => this.prepare(&dataset, group.items)?,
                    // A resource whose name is no dataset refuses its own items only.
                    Err(e) => Prepared {
                        outcomes: vec![Some(e.to_string()); group.items.len()],
                        records: Vec::new(),
                        events: 0,
                    },
                };
                out.push((name, group.primary, p));
            }
            Ok::<_, ApiError>(out)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("decoder task failed: {e}")))??;
        drop(slot);
        // One charge for the whole request: it is appended whole or refused whole.
        auth::charge_events(prepared.iter().map(|(_, _, p)| p.events).sum())?;
        // Every dataset's records in one append: all of the request is kept, or none.
        let records = prepared
            .iter()
            .flat_map(|(dataset, _, p)| {
                p.records
                    .iter()
                    .map(|payload| NewRecord::new(dataset.as_str(), payload.clone()))
            })
            .collect();
        self.append_records(records).await?;
        Ok(prepared
            .into_iter()
            .map(|(dataset, primary, p)| (dataset, primary, p.outcomes))
            .collect())
    }
}

fn dataset_name(raw: &str) -> Result<DatasetName, ApiError> {
    DatasetName::new(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn defaults(headers: &HeaderMap, receive_us: i64) -> Result<Defaults, ApiError> {
    let time_us = match headers.get("x-honeycomb-event-time") {
        None => None,
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("x-honeycomb-event-time is not text".into()))?;
            let parsed = eventide_model::time::parse_time_str(s).or_else(|| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(eventide_model::time::parse_time_number)
            });
            Some(parsed.ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "x-honeycomb-event-time {s:?} is not an RFC3339 time or Unix seconds"
                ))
            })?)
        }
    };
    let samplerate = match headers.get("x-honeycomb-samplerate") {
        None => 1,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .and_then(eventide_model::event::samplerate_from_f64)
            .ok_or_else(|| {
                ApiError::BadRequest("x-honeycomb-samplerate must be a positive integer".into())
            })?,
    };
    Ok(Defaults {
        time_us,
        samplerate,
        receive_us,
        // Set once the body is decompressed (`Defaults::for_body`).
        decoded_budget: usize::MAX,
    })
}

fn is_msgpack(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("msgpack"))
}

impl IngestState {
    /// The common path of every ingest request: dataset name, encoding, in-flight budget,
    /// body (≤ `limit`), envelope headers; then `decode` runs on a blocking thread with the
    /// decompressed body, and the accepted events are appended durably.
    async fn ingest_request(
        &self,
        dataset: &str,
        headers: &HeaderMap,
        body: Body,
        limit: usize,
        decode: impl FnOnce(&[u8], &Defaults, &Limits) -> Result<Vec<Item>, ApiError> + Send + 'static,
    ) -> Result<Vec<Option<String>>, ApiError> {
        let dataset = dataset_name(dataset)?;
        let enc = body::encoding(headers)?;
        let _permit = self.admit_request(headers, limit)?;
        let raw = body::read_raw(body, limit).await?;
        let d = defaults(headers, self.clock.now_micros())?;
        let limits = self.limits.clone();
        self.ingest(dataset, move || {
            let body = body::decode_body(raw, enc, limit)?;
            let d = d.for_body(body.len(), &limits);
            let items = decode(&body, &d, &limits)?;
            decode::check_budget(&items, body.len(), &d, &limits)?;
            Ok(items)
        })
        .await
    }
}

async fn post_batch(
    State(s): State<IngestState>,
    Path(dataset): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = s.limits.max_body_bytes;
    let outcomes = if is_msgpack(&headers) {
        s.ingest_request(&dataset, &headers, body, limit, decode::msgpack_batch)
            .await?
    } else {
        s.ingest_columnar(&dataset, &headers, body, limit, decode::json_batch_into)
            .await?
    };
    let rejected = outcomes.iter().filter(|o| o.is_some()).count();
    let accepted = outcomes.len() - rejected;
    s.metrics.events(Endpoint::Batch, accepted, rejected);
    Ok(with_counts(batch_reply(&outcomes), accepted, rejected))
}

/// `resp` carrying the request's [`metrics::EventCounts`] in its extensions.
pub(crate) fn with_counts(mut resp: Response, accepted: usize, rejected: usize) -> Response {
    resp.extensions_mut()
        .insert(metrics::EventCounts { accepted, rejected });
    resp
}

/// The `/1/batch` reply: `[{"status":202},{"status":400,"error":"…"},…]`, one per item,
/// written directly (a batch of thousands of items would otherwise build as many JSON
/// values).
fn batch_reply(outcomes: &[Option<String>]) -> Response {
    const ACCEPTED: &str = r#"{"status":202}"#;
    let mut out = String::with_capacity(outcomes.len() * (ACCEPTED.len() + 1) + 2);
    out.push('[');
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match o {
            None => out.push_str(ACCEPTED),
            Some(error) => out.push_str(&json!({"status": 400, "error": error}).to_string()),
        }
    }
    out.push(']');
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn post_event(
    State(s): State<IngestState>,
    Path(dataset): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = s.limits.max_event_bytes;
    let outcomes = s
        .ingest_request(&dataset, &headers, body, limit, |body, d, limits| {
            Ok(vec![Ok(decode::json_event(body, d, limits)?)])
        })
        .await?;
    let outcome = outcomes.into_iter().next().flatten();
    let rejected = usize::from(outcome.is_some());
    s.metrics.events(Endpoint::Event, 1 - rejected, rejected);
    let resp = match outcome {
        None => Json(json!({})).into_response(),
        Some(error) => ApiError::BadRequest(error).into_response(),
    };
    Ok(with_counts(resp, 1 - rejected, rejected))
}

/// At most this many line errors are listed in an NDJSON reply.
const MAX_LISTED_ERRORS: usize = 100;

async fn post_ndjson(
    State(s): State<IngestState>,
    Path(dataset): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = s.limits.max_body_bytes;
    let lines = s
        .ingest_columnar(&dataset, &headers, body, limit, |body, d, limits, batch| {
            decode::ndjson_into(body, d, limits, batch)
        })
        .await?;
    let mut accepted = 0usize;
    let mut rejected = 0usize;
    let mut errors = Vec::new();
    for (line, o) in lines {
        match o {
            None => accepted += 1,
            Some(error) => {
                rejected += 1;
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(json!({"line": line, "error": error}));
                }
            }
        }
    }
    s.metrics.events(Endpoint::Ndjson, accepted, rejected);
    let resp =
        Json(json!({"accepted": accepted, "rejected": rejected, "errors": errors})).into_response();
    Ok(with_counts(resp, accepted, rejected))
}

/// The ingest routes, each requiring an `ingest` (or `admin`) key, and `GET /1/auth` (any
/// valid key).
pub fn router(state: IngestState, keys: Keys) -> Router {
    let auth_route = Router::new()
        .route("/1/auth", axum::routing::get(auth::get_auth))
        .with_state(keys.clone());
    let routes = Router::new()
        .route("/1/batch/{dataset}", post(post_batch))
        .route("/1/events/{dataset}", post(post_event))
        .route("/api/v1/ingest/{dataset}", post(post_ndjson));
    // OTLP requests name their datasets inside the body (service.name), so a key limited to
    // some datasets cannot be checked against the path: such keys are refused there.
    let otlp_routes = Router::new()
        .route("/v1/traces", post(otlp::post_traces))
        .route("/v1/logs", post(otlp::post_logs));
    // OTLP requests name their datasets in the body: the guard checks the scope, and the
    // handlers check every dataset a request writes to against a dataset-limited key.
    auth::guard(routes, keys.clone(), Scope::Ingest, false)
        .merge(auth::guard(otlp_routes, keys, Scope::Ingest, false))
        .with_state(state)
        .merge(auth_route)
}

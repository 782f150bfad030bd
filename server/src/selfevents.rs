//! Eventide's own wide events (`--self-dataset NAME`): one event per API request and one per
//! flush and merge of the store, written through the log into a dataset like any other, so
//! Eventide can be asked about itself with its own queries ("which clients get 400s, and
//! why?", "p99 of /api/v1/sql by dataset", "how long do merges take, and are any deferred?").
//!
//! The middleware builds a request's event when the response head is ready, the store
//! reports its work through [`eventide_store::Store::watch`]; a writer task gathers
//! them for up to a second and appends them as one log record, through the same type rules
//! and durable append as an ingest request. The queue is bounded: when it is full, or the
//! log refuses the append (overload, full disk), events are dropped and counted
//! (`eventide_self_events_total{outcome="dropped"}`), never waited for: observing the
//! server must not slow it down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::HttpBody as _;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use eventide_ingest::IngestState;
use eventide_ingest::metrics::EventCounts;
use eventide_model::Event;
use eventide_model::event::Value;
use eventide_query::ScanStats;
use eventide_store::Activity;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

/// Events waiting to be written; past this, new ones are dropped.
const QUEUE: usize = 16_384;
/// Most events in one log record.
const MAX_BATCH: usize = 8_192;
/// How long the writer gathers events before it appends them.
const GATHER: Duration = Duration::from_secs(1);
/// Longest error message kept from a response body.
const MAX_ERROR_BYTES: usize = 1024;
/// Largest error response body read to find its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The queue of self events and its counters.
#[derive(Debug)]
pub struct SelfEvents {
    dataset: String,
    role: &'static str,
    tx: Mutex<Option<mpsc::Sender<Event>>>,
    /// Events written and dropped.
    outcomes: Family<OutcomeLabel, Counter>,
    /// Times of the events: the process's clock.
    clock: eventide_model::time::Clock,
}

impl SelfEvents {
    /// Starts the writer task appending to `dataset` through `ingest`'s log. The handle
    /// ends once [`SelfEvents::close`] was called and the queue is written.
    pub fn start(
        dataset: String,
        role: &'static str,
        ingest: IngestState,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let this = Arc::new(Self {
            dataset,
            role,
            tx: Mutex::new(Some(tx)),
            outcomes: {
                let f = Family::default();
                for outcome in ["written", "dropped"] {
                    let _ = f.get_or_create(&OutcomeLabel { outcome });
                }
                f
            },
            clock: ingest.clock.clone(),
        });
        let task = tokio::spawn(this.clone().write(rx, ingest));
        (this, task)
    }

    /// Stops taking events; the writer appends what is queued and ends.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// The common fields of every self event.
    fn base(&self, name: &str) -> Vec<(String, Value)> {
        vec![
            ("service.name".into(), Value::Str("eventide".into())),
            ("name".into(), Value::Str(name.into())),
            ("eventide.role".into(), Value::Str(self.role.into())),
            (
                "eventide.version".into(),
                Value::Str(env!("CARGO_PKG_VERSION").into()),
            ),
        ]
    }

    /// Records what the store did (a flush, a merge, a failure), as one event.
    pub fn store_activity(&self, activity: Activity) {
        let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
        let ms = |d: Duration| Value::Float(d.as_secs_f64() * 1e3);
        let (name, dataset, partition, mut more) = match activity {
            Activity::Flushed {
                dataset,
                partition,
                rows,
                bytes,
                took,
            } => (
                "store.flush",
                dataset,
                partition,
                vec![
                    ("rows", int(rows)),
                    ("bytes.out", int(bytes)),
                    ("duration_ms", ms(took)),
                ],
            ),
            Activity::FlushFailed {
                dataset,
                partition,
                error,
            } => (
                "store.flush_failed",
                dataset,
                partition,
                vec![("error", Value::Str(error))],
            ),
            Activity::Merged {
                dataset,
                partition,
                level,
                inputs,
                input_bytes,
                outputs,
                output_bytes,
                rows,
                took,
            } => (
                "store.merge",
                dataset,
                partition,
                vec![
                    ("compaction.level", Value::Int(i64::from(level))),
                    ("segments.in", int(inputs as u64)),
                    ("segments.out", int(outputs as u64)),
                    ("bytes.in", int(input_bytes)),
                    ("bytes.out", int(output_bytes)),
                    ("rows", int(rows)),
                    ("duration_ms", ms(took)),
                ],
            ),
            Activity::MergeFailed {
                dataset,
                partition,
                level,
                error,
            } => (
                "store.merge_failed",
                dataset,
                partition,
                vec![
                    ("compaction.level", Value::Int(i64::from(level))),
                    ("error", Value::Str(error)),
                ],
            ),
            Activity::MergeDeferred {
                dataset,
                partition,
                level,
                need_bytes,
            } => (
                "store.merge_deferred",
                dataset,
                partition,
                vec![
                    ("compaction.level", Value::Int(i64::from(level))),
                    ("memory.need_bytes", int(need_bytes)),
                ],
            ),
        };
        let mut fields = self.base(name);
        fields.push(("dataset".into(), Value::Str(dataset)));
        fields.push(("log.partition".into(), Value::Int(i64::from(partition))));
        fields.extend(more.drain(..).map(|(k, v)| (k.to_owned(), v)));
        self.push_fields(fields, self.clock.now_micros());
    }

    fn push_fields(&self, mut fields: Vec<(String, Value)>, timestamp_us: i64) {
        if let Some((_, Value::Str(e))) = fields.iter_mut().find(|(k, _)| k == "error") {
            e.truncate(e.floor_char_boundary(MAX_ERROR_BYTES));
        }
        match Event::from_fields(fields, timestamp_us, 1, &eventide_model::Limits::default()) {
            Ok(event) => self.push(event),
            Err(_) => {
                self.count("dropped", 1);
            }
        }
    }

    fn push(&self, event: Event) {
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|tx| tx.try_send(event).is_ok());
        if !sent {
            self.count("dropped", 1);
        }
    }

    async fn write(self: Arc<Self>, mut rx: mpsc::Receiver<Event>, ingest: IngestState) {
        let mut last_warning: Option<Instant> = None;
        loop {
            let mut batch = Vec::new();
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
            // Gather what arrives within a second, so one log record holds many requests.
            let deadline = tokio::time::Instant::now() + GATHER;
            while batch.len() < MAX_BATCH {
                let room = MAX_BATCH - batch.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let n = batch.len() as u64;
            match ingest.append_events(&self.dataset, batch).await {
                Ok(stored) => {
                    self.count("written", stored as u64);
                    self.count("dropped", n.saturating_sub(stored as u64));
                }
                Err(e) => {
                    self.count("dropped", n);
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        last_warning = Some(Instant::now());
                        tracing::warn!(dataset = %self.dataset, events = n, error = %e, "self events dropped (at most one warning a minute)");
                    }
                }
            }
        }
    }

    /// Registers `eventide_self_events_total{outcome}` (written, dropped).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "eventide_self_events",
            "Eventide's own request events (--self-dataset) by outcome",
            self.outcomes.clone(),
        );
    }

    fn count(&self, outcome: &'static str, n: u64) {
        self.outcomes
            .get_or_create(&OutcomeLabel { outcome })
            .inc_by(n);
    }
}

/// The label of `eventide_self_events_total`: `written` or `dropped`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Whether requests to `route` make self events: the APIs, not probes, metrics scrapes or
/// the web page's files.
fn recorded(route: Option<&str>) -> bool {
    route.is_none_or(|r| ["/1/", "/api/", "/v1/"].iter().any(|p| r.starts_with(p)))
}

/// Middleware: one event per API request.
pub async fn record(State(s): State<Arc<SelfEvents>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    if !recorded(route.as_deref()) {
        return next.run(req).await;
    }
    let started_us = s.clock.now_micros();
    let started = Instant::now();
    let mut fields = s.base("http.request");
    fields.push((
        "http.method".into(),
        Value::Str(req.method().as_str().into()),
    ));
    match &route {
        Some(r) => fields.push(("http.route".into(), Value::Str(r.clone()))),
        None => {
            fields.push(("http.route".into(), Value::Str("other".into())));
            let mut p = req.uri().path().to_owned();
            p.truncate(p.floor_char_boundary(256));
            fields.push(("url.path".into(), Value::Str(p)));
        }
    }
    // The `{dataset}` of the route, percent-decoded as the handlers see it.
    let (mut parts, body) = req.into_parts();
    if let Ok(params) = RawPathParams::from_request_parts(&mut parts, &()).await
        && let Some((_, d)) = params.iter().find(|(k, _)| *k == "dataset")
    {
        fields.push(("dataset".into(), Value::Str(d.to_owned())));
    }
    let req = Request::from_parts(parts, body);
    {
        // (A block: a borrow of the request must not live across an await.)
        let header = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let Some(n) = header(header::CONTENT_LENGTH).and_then(|v| v.parse::<i64>().ok()) {
            fields.push(("http.request_content_length".into(), Value::Int(n)));
        }
        if let Some(mut ua) = header(header::USER_AGENT) {
            ua.truncate(ua.floor_char_boundary(256));
            fields.push(("user_agent.original".into(), Value::Str(ua)));
        }
        if let Some(enc) = header(header::CONTENT_ENCODING) {
            fields.push(("http.request_content_encoding".into(), Value::Str(enc)));
        }
    }

    let resp = next.run(req).await;
    let took = started.elapsed();
    let status = resp.status();
    fields.push((
        "http.status_code".into(),
        Value::Int(i64::from(status.as_u16())),
    ));
    fields.push(("duration_ms".into(), Value::Float(took.as_secs_f64() * 1e3)));
    if let Some(c) = resp.extensions().get::<EventCounts>() {
        fields.push(("events.accepted".into(), Value::Int(c.accepted as i64)));
        fields.push(("events.rejected".into(), Value::Int(c.rejected as i64)));
    }
    if let Some(q) = resp.extensions().get::<ScanStats>() {
        for (name, v) in [
            ("query.files_scanned", q.files_scanned),
            ("query.files_total", q.files_total),
            ("query.bytes_scanned", q.bytes_scanned),
            ("query.bytes_total", q.bytes_total),
            (
                "query.row_groups_pruned",
                q.row_groups_pruned_statistics + q.row_groups_pruned_bloom_filter,
            ),
        ] {
            fields.push((
                name.into(),
                Value::Int(i64::try_from(v).unwrap_or(i64::MAX)),
            ));
        }
    }
    // The message of a JSON error reply (`{"error": "…"}`), read from a body of known, small
    // size and put back; other bodies pass untouched.
    let small = resp
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_ERROR_BODY as u64);
    let resp = if (status.is_client_error() || status.is_server_error()) && small {
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        if let Some(e) = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        {
            fields.push(("error".into(), Value::Str(e)));
        }
        Response::from_parts(parts, axum::body::Body::from(bytes))
    } else {
        resp
    };
    s.push_fields(fields, started_us);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_requests_are_recorded_probes_and_page_files_are_not() {
        assert!(recorded(Some("/1/batch/{dataset}")) && recorded(None));
        assert!(!recorded(Some("/healthz")) && !recorded(Some("/ui/{*path}")));
        assert!(!recorded(Some("/metrics")) && !recorded(Some("/")));
    }
}

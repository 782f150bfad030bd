//! `GET /metrics` (Prometheus text format, through `prometheus-client`): one registry per
//! process, into which each part registers what it has: HTTP requests by route, method and
//! status with latency histograms per route (here), the ingest and UDP counters, the log's and
//! the store's figures, Eventide's own request events, the alerts' state and the resident
//! memory (read on each scrape).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eventide_alerts::Alerts;
use eventide_ingest::metrics::{IngestMetrics, latency_histogram};
use eventide_ingest::udp::UdpStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The labels of `eventide_http_requests_total`: the route template (never the raw path), the
/// method and the status, so the label set stays small.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

/// The label of `eventide_http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

/// Requests by (route, method, status), and latency by route.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl HttpMetrics {
    fn record(&self, route: &str, method: &str, status: u16, took: std::time::Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "eventide_http_requests",
            "HTTP requests by route (unmatched: \"other\"), method and status",
            self.requests.clone(),
        );
        registry.register(
            "eventide_http_request_duration_seconds",
            "time to the response head, by route",
            self.latency.clone(),
        );
    }
}

/// Middleware: counts and times every request by its route template (`/1/batch/{dataset}`,
/// never the raw path, so the label set stays small).
pub async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    m.record(&route, &method, resp.status().as_u16(), started.elapsed());
    resp
}

/// Everything `/metrics` reports, as far as this process has it.
#[derive(Clone, Default)]
pub struct Sources {
    pub http: HttpMetrics,
    pub ingest: Option<Arc<IngestMetrics>>,
    /// The log, for its own metrics (fsync groups).
    pub log: Option<Arc<dyn eventide_eventlog::EventLog>>,
    pub udp: Option<Arc<UdpStats>>,
    /// The store, for its figures (segments, hot tail, merges, Kafka consumer lag): every
    /// role but `ingest`, whose store view is not kept up to date.
    pub store: Option<eventide_store::Store>,
    pub alerts: Option<Alerts>,
    /// Eventide's own request events (`--self-dataset`).
    pub self_events: Option<Arc<crate::selfevents::SelfEvents>>,
}

impl Sources {
    /// The process's registry, with every source registered.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        self.http.register(&mut registry);
        registry.register_collector(Box::new(ResidentMemory));
        if let Some(log) = &self.log {
            log.register_metrics(&mut registry);
        }
        if let Some(m) = &self.ingest {
            m.register(&mut registry);
        }
        if let Some(u) = &self.udp {
            u.register(&mut registry);
        }
        if let Some(s) = &self.self_events {
            s.register(&mut registry);
        }
        if let Some(store) = &self.store {
            store.register_metrics(&mut registry);
        }
        if let Some(a) = &self.alerts {
            registry.register_collector(Box::new(AlertFigures(a.clone())));
        }
        registry
    }
}

/// `process_resident_memory_bytes`, read on each scrape.
#[derive(Debug)]
struct ResidentMemory;

impl Collector for ResidentMemory {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(rss) = eventide_model::memory::resident_bytes() else {
            return Ok(());
        };
        let g = ConstGauge::new(rss as i64);
        g.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "resident set size of the eventide process",
            None,
            g.metric_type(),
        )?)
    }
}

/// The alerts' state, read on each scrape.
struct AlertFigures(Alerts);

impl std::fmt::Debug for AlertFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertFigures")
    }
}

impl Collector for AlertFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let a = &self.0;
        let triggers = a.triggers().all();
        let firing = triggers
            .iter()
            .filter(|t| {
                a.journal()
                    .last(&t.id)
                    .is_some_and(|e| e.state == eventide_alerts::journal::TriggerState::Triggered)
            })
            .count();
        for (name, help, v) in [
            ("eventide_triggers", "triggers defined", triggers.len()),
            (
                "eventide_triggers_firing",
                "triggers in the triggered state",
                firing,
            ),
            (
                "eventide_deploy_checks_pending",
                "deploy checks without a verdict yet",
                a.pending_deploy_checks(),
            ),
            (
                "eventide_alert_deliveries_owed",
                "webhook and marker deliveries not done yet",
                a.journal().pending().len(),
            ),
        ] {
            let g = ConstGauge::new(v as i64);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// `GET /metrics`.
pub async fn render(State(registry): State<Arc<Registry>>) -> Response {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "metrics not encoded");
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        out,
    )
        .into_response()
}

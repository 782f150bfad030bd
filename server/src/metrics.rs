//! `GET /metrics` (Prometheus text format): HTTP requests by route, method and status with
//! latency histograms per route, the ingest counters, the UDP receiver's counters, the store's
//! datasets, segments and compaction backlog, and the alerts' state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eventide_alerts::Alerts;
use eventide_ingest::metrics::{Histogram, IngestMetrics, LATENCY_BUCKETS};
use eventide_ingest::udp::UdpStats;

/// Requests by (route, method, status), and latency by route.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

impl HttpMetrics {
    fn record(&self, route: &str, method: &str, status: u16, took: std::time::Duration) {
        {
            let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            *r.entry((route.to_owned(), method.to_owned(), status))
                .or_default() += 1;
        }
        let h = {
            let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
            l.entry(route.to_owned())
                .or_insert_with(|| Arc::new(Histogram::new(LATENCY_BUCKETS)))
                .clone()
        };
        h.observe(took);
    }

    fn render(&self, out: &mut String) {
        let name = "eventide_http_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP requests by route (unmatched: \"other\"), method and status\n# TYPE {name} counter"
        );
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "{name}{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let name = "eventide_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} time to the response head, by route\n# TYPE {name} histogram"
        );
        let all: Vec<(String, Arc<Histogram>)> = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (route, h) in all {
            h.render(out, name, &format!("route=\"{}\"", escape(&route)));
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Middleware: counts and times every request by its route template (`/1/batch/{dataset}`,
/// never the raw path, so the label set stays small).
pub async fn track(State(m): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
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
    pub http: Arc<HttpMetrics>,
    pub ingest: Option<Arc<IngestMetrics>>,
    /// The log, for its own metrics (fsync groups, consumer lag).
    pub log: Option<Arc<dyn eventide_eventlog::EventLog>>,
    pub udp: Option<Arc<UdpStats>>,
    /// The store, for its figures (segments, hot tail, merges, Kafka consumer lag): every
    /// role but `ingest`, whose store view is not kept up to date.
    pub store: Option<eventide_store::Store>,
    pub alerts: Option<Alerts>,
    /// Eventide's own request events (`--self-dataset`).
    pub self_events: Option<Arc<crate::selfevents::SelfEvents>>,
}

fn gauge_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// `GET /metrics`.
pub async fn render(State(src): State<Sources>) -> Response {
    let mut out = String::new();
    src.http.render(&mut out);
    if let Some(rss) = eventide_model::memory::resident_bytes() {
        let name = "process_resident_memory_bytes";
        gauge_header(&mut out, name, "resident set size of the eventide process");
        let _ = writeln!(out, "{name} {rss}");
    }
    if let Some(log) = &src.log {
        log.render_metrics(&mut out);
    }
    if let Some(m) = &src.ingest {
        m.render_prometheus(&mut out);
    }
    if let Some(u) = &src.udp {
        u.render_prometheus(&mut out);
    }
    if let Some(s) = &src.self_events {
        s.render_prometheus(&mut out);
    }
    if let Some(store) = &src.store {
        store.render_log_metrics(&mut out);
        let name = "eventide_store_quarantined_files";
        gauge_header(
            &mut out,
            name,
            "segment files holding committed events that no catalog named, moved to DATA/quarantine (see OPERATIONS.md)",
        );
        let _ = writeln!(out, "{name} {}", store.quarantined_files());
        let name = "eventide_store_merges_deferred_total";
        let _ = writeln!(
            out,
            "# HELP {name} merges not started because --max-memory-mb had no room for them (they run on a later pass)\n# TYPE {name} counter\n{name} {}",
            store.merges_deferred()
        );
        let name = "eventide_store_hot_bytes";
        gauge_header(
            &mut out,
            name,
            "bytes of events in memory not yet flushed to segments (bounded by --max-hot-mb)",
        );
        let _ = writeln!(out, "{name} {}", store.hot_bytes());
        let summaries = store.summaries();
        for (name, help, get) in [
            (
                "eventide_dataset_segments",
                "Parquet segment files of the dataset",
                (|s| s.segments as f64) as fn(&eventide_store::DatasetSummary) -> f64,
            ),
            (
                "eventide_dataset_segment_bytes",
                "bytes of the dataset's segments",
                |s| s.segment_bytes as f64,
            ),
            (
                "eventide_dataset_segment_rows",
                "events in the dataset's segments",
                |s| s.segment_rows as f64,
            ),
            (
                "eventide_dataset_hot_rows",
                "events of the dataset in memory, not yet flushed to a segment",
                |s| s.hot_rows as f64,
            ),
            (
                "eventide_dataset_merges_pending",
                "compaction backlog: merges the policy would run now",
                |s| s.merges_pending as f64,
            ),
        ] {
            gauge_header(&mut out, name, help);
            for s in &summaries {
                let _ = writeln!(out, "{name}{{dataset=\"{}\"}} {}", escape(&s.name), get(s));
            }
        }
    }
    if let Some(a) = &src.alerts {
        let triggers = a.triggers().all();
        let firing = triggers
            .iter()
            .filter(|t| {
                a.journal()
                    .last(&t.id)
                    .is_some_and(|e| e.state == eventide_alerts::journal::TriggerState::Triggered)
            })
            .count();
        let pending = a.pending_deploy_checks();
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
                pending,
            ),
            (
                "eventide_alert_deliveries_owed",
                "webhook and marker deliveries not done yet",
                a.journal().pending().len(),
            ),
        ] {
            gauge_header(&mut out, name, help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

//! Ingest counters for `GET /metrics`: events accepted and rejected per endpoint, and the
//! time and size of log appends, declared once as [`IngestMetrics`] and registered with the
//! process's `prometheus-client` registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets (seconds) for latencies from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram of seconds over [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// The ingest endpoints events are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Batch,
    Event,
    Ndjson,
    OtlpTraces,
    OtlpLogs,
}

const ENDPOINTS: [(Endpoint, &str); 5] = [
    (Endpoint::Batch, "/1/batch"),
    (Endpoint::Event, "/1/events"),
    (Endpoint::Ndjson, "/api/v1/ingest"),
    (Endpoint::OtlpTraces, "/v1/traces"),
    (Endpoint::OtlpLogs, "/v1/logs"),
];

/// How many events one ingest request stored and refused: put in the response's extensions
/// by every ingest handler, for middleware that records requests (`--self-dataset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventCounts {
    pub accepted: usize,
    pub rejected: usize,
}

/// The label of the per-endpoint counters: one of five paths, so the label set is bounded.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

/// Counters of the HTTP ingest path.
#[derive(Debug)]
pub struct IngestMetrics {
    accepted: Family<EndpointLabel, Counter>,
    rejected: Family<EndpointLabel, Counter>,
    append: Histogram,
    append_bytes: Counter,
    append_failures: Counter,
    shed: Counter,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        let m = Self {
            accepted: Family::default(),
            rejected: Family::default(),
            append: latency_histogram(),
            append_bytes: Counter::default(),
            append_failures: Counter::default(),
            shed: Counter::default(),
        };
        // Every endpoint shows, at 0 until it is used.
        for (_, endpoint) in ENDPOINTS {
            let label = EndpointLabel { endpoint };
            let _ = m.accepted.get_or_create(&label);
            let _ = m.rejected.get_or_create(&label);
        }
        m
    }
}

fn label(endpoint: Endpoint) -> EndpointLabel {
    EndpointLabel {
        endpoint: ENDPOINTS[endpoint as usize].1,
    }
}

impl IngestMetrics {
    /// Counts a request's items: stored (acknowledged) and refused one by one.
    pub fn events(&self, endpoint: Endpoint, accepted: usize, rejected: usize) {
        let l = label(endpoint);
        self.accepted.get_or_create(&l).inc_by(accepted as u64);
        self.rejected.get_or_create(&l).inc_by(rejected as u64);
    }

    /// Counts one durable append to the log (or a failed one).
    pub fn append(&self, took: std::time::Duration, bytes: usize, ok: bool) {
        if ok {
            self.append.observe(took.as_secs_f64());
            self.append_bytes.inc_by(bytes as u64);
        } else {
            self.append_failures.inc();
        }
    }

    /// Counts a request refused because the in-flight budget was spent (503).
    pub fn shed(&self) {
        self.shed.inc();
    }

    /// Registers the metrics (`eventide_events_*_total`, `eventide_log_append_*`,
    /// `eventide_ingest_shed_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "eventide_events_accepted",
            "events stored durably (acknowledged), by endpoint",
            self.accepted.clone(),
        );
        registry.register(
            "eventide_events_rejected",
            "events refused one by one (type rules, limits, malformed items), by endpoint",
            self.rejected.clone(),
        );
        registry.register(
            "eventide_log_append_seconds",
            "time of a durable log append (fsync or acks=all)",
            self.append.clone(),
        );
        registry.register(
            "eventide_log_append_bytes",
            "payload bytes appended to the log",
            self.append_bytes.clone(),
        );
        registry.register(
            "eventide_log_append_failures",
            "log appends that failed (the request got 503 or 500)",
            self.append_failures.clone(),
        );
        registry.register(
            "eventide_ingest_shed",
            "ingest requests refused with 503 because the in-flight budget (--max-inflight-mb) was spent, they waited longer than --max-queue-ms to be decoded, or memory was above 90 % of --max-memory-mb",
            self.shed.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_by_endpoint_in_the_prometheus_text_format() {
        let m = IngestMetrics::default();
        m.events(Endpoint::Ndjson, 5, 2);
        m.events(Endpoint::Ndjson, 1, 0);
        m.append(Duration::from_millis(2), 100, true);
        m.append(Duration::from_millis(2), 100, false);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        for line in [
            "eventide_events_accepted_total{endpoint=\"/api/v1/ingest\"} 6\n",
            "eventide_events_rejected_total{endpoint=\"/api/v1/ingest\"} 2\n",
            "eventide_events_accepted_total{endpoint=\"/1/batch\"} 0\n",
            "eventide_log_append_seconds_count 1\n",
            "eventide_log_append_seconds_bucket{le=\"0.0025\"} 1\n",
            "eventide_log_append_seconds_bucket{le=\"0.001\"} 0\n",
            "eventide_log_append_bytes_total 100\n",
            "eventide_log_append_failures_total 1\n",
            "# TYPE eventide_log_append_seconds histogram\n",
        ] {
            assert!(out.contains(line), "no {line:?} in\n{out}");
        }
    }
}

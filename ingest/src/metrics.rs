//! Ingest counters for `GET /metrics` (Prometheus text format): events accepted and rejected
//! per endpoint, and the time and size of log appends. Plain atomics, rendered on scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fixed-bucket histogram of seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations ≤ each bound (not cumulative; summed on render), then the overflow.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

/// Buckets for latencies from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < s);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Appends `name_bucket{labels,le=…}`, `name_sum`, `name_count` (`labels` is `k="v",…` or
    /// empty; HELP and TYPE lines are the caller's).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {total}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
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

/// Counters of the HTTP ingest path.
/// How many events one ingest request stored and refused: put in the response's extensions
/// by every ingest handler, for middleware that records requests (`--self-dataset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventCounts {
    pub accepted: usize,
    pub rejected: usize,
}

#[derive(Debug)]
pub struct IngestMetrics {
    accepted: [AtomicU64; 5],
    rejected: [AtomicU64; 5],
    append: Histogram,
    append_bytes: AtomicU64,
    append_failures: AtomicU64,
    shed: AtomicU64,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self {
            accepted: Default::default(),
            rejected: Default::default(),
            append: Histogram::new(LATENCY_BUCKETS),
            append_bytes: AtomicU64::new(0),
            append_failures: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        }
    }
}

impl IngestMetrics {
    /// Counts a request's items: stored (acknowledged) and refused one by one.
    pub fn events(&self, endpoint: Endpoint, accepted: usize, rejected: usize) {
        let i = endpoint as usize;
        self.accepted[i].fetch_add(accepted as u64, Ordering::Relaxed);
        self.rejected[i].fetch_add(rejected as u64, Ordering::Relaxed);
    }

    /// Counts one durable append to the log (or a failed one).
    pub fn append(&self, took: std::time::Duration, bytes: usize, ok: bool) {
        if ok {
            self.append.observe(took);
            self.append_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        } else {
            self.append_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request refused because the in-flight budget was spent (503).
    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render_prometheus(&self, out: &mut String) {
        for (name, help, values) in [
            (
                "eventide_events_accepted_total",
                "events stored durably (acknowledged), by endpoint",
                &self.accepted,
            ),
            (
                "eventide_events_rejected_total",
                "events refused one by one (type rules, limits, malformed items), by endpoint",
                &self.rejected,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (ep, path) in ENDPOINTS {
                let v = values[ep as usize].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{endpoint=\"{path}\"}} {v}");
            }
        }
        let name = "eventide_log_append_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} time of a durable log append (fsync or acks=all)\n# TYPE {name} histogram"
        );
        self.append.render(out, name, "");
        for (name, help, v) in [
            (
                "eventide_log_append_bytes_total",
                "payload bytes appended to the log",
                &self.append_bytes,
            ),
            (
                "eventide_log_append_failures_total",
                "log appends that failed (the request got 503 or 500)",
                &self.append_failures,
            ),
            (
                "eventide_ingest_shed_total",
                "ingest requests refused with 503 because the in-flight budget (--max-inflight-mb) was spent, they waited longer than --max-queue-ms to be decoded, or memory was above 90 % of --max-memory-mb",
                &self.shed,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative_and_render_prometheus() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "route=\"/a\"");
        assert!(
            out.contains("x_seconds_bucket{route=\"/a\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"/a\",le=\"0.01\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{route=\"/a\"} 4\n"), "{out}");
        assert!(
            out.contains("x_seconds_sum{route=\"/a\"} 1.0105\n"),
            "{out}"
        );
    }

    #[test]
    fn counts_by_endpoint() {
        let m = IngestMetrics::default();
        m.events(Endpoint::Ndjson, 5, 2);
        m.events(Endpoint::Ndjson, 1, 0);
        m.append(Duration::from_millis(2), 100, true);
        m.append(Duration::from_millis(2), 100, false);
        let mut out = String::new();
        m.render_prometheus(&mut out);
        assert!(out.contains("eventide_events_accepted_total{endpoint=\"/api/v1/ingest\"} 6\n"));
        assert!(out.contains("eventide_events_rejected_total{endpoint=\"/api/v1/ingest\"} 2\n"));
        assert!(out.contains("eventide_events_accepted_total{endpoint=\"/1/batch\"} 0\n"));
        assert!(out.contains("eventide_log_append_seconds_count 1\n"));
        assert!(out.contains("eventide_log_append_bytes_total 100\n"));
        assert!(out.contains("eventide_log_append_failures_total 1\n"));
    }
}

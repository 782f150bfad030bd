//! Deterministic, realistic wide events (~40 fields): a few dozen services, hundreds of
//! endpoints, mostly-200 statuses, lognormal durations with a heavy tail, unique trace ids,
//! ~1M users, builds tied to deploys, hosts, regions, feature flags, sparse fields and
//! free-text errors.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value as Json, json};

const REGIONS: [&str; 6] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-south-1",
    "sa-east-1",
];
const METHODS: [&str; 5] = ["GET", "GET", "GET", "POST", "PUT"];
const ERRORS: [&str; 5] = [
    "upstream connect error or disconnect/reset before headers",
    "context deadline exceeded",
    "connection refused by payments-db",
    "invalid token: signature has expired",
    "null pointer in cart serializer",
];

pub struct Generator {
    rng: StdRng,
    seq: u64,
    time_us: i64,
    /// Average gap between consecutive events, µs.
    step_us: i64,
}

/// Where generated time starts by default (2026-11-18T…Z).
pub const DEFAULT_START_US: i64 = 1_795_000_000_000_000;

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
            time_us: DEFAULT_START_US,
            step_us: 1000,
        }
    }

    /// Events from `start_us`, `step_us` apart on average (e.g. 2.5M events a week apart by
    /// ~242 ms to shape a month).
    pub fn with_time(mut self, start_us: i64, step_us: i64) -> Self {
        self.time_us = start_us;
        self.step_us = step_us.max(1);
        self
    }

    fn normal(&mut self) -> f64 {
        // Box–Muller.
        let u1: f64 = self.rng.random::<f64>().max(1e-12);
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn event(&mut self) -> Json {
        self.seq += 1;
        self.time_us += self.rng.random_range(0..2 * self.step_us);
        let r = &mut self.rng;
        let service = r.random_range(0..30u32);
        let endpoint = r.random_range(0..300u32);
        let status = match r.random_range(0..1000u32) {
            0..=939 => 200,
            940..=969 => 404,
            970..=984 => 400,
            985..=994 => 500,
            _ => 503,
        };
        let build = (self.time_us / 3_600_000_000) % 1000;
        let mut d = Map::new();
        d.insert("service.name".into(), json!(format!("svc-{service:02}")));
        d.insert(
            "endpoint".into(),
            json!(format!("/api/v1/resource{endpoint}")),
        );
        d.insert(
            "http.method".into(),
            json!(METHODS[r.random_range(0..METHODS.len())]),
        );
        d.insert("http.status_code".into(), json!(status));
        let z = self.normal();
        let r = &mut self.rng;
        let dur = (3.0 + 1.1 * z).exp()
            * if r.random_range(0..100) == 0 {
                20.0
            } else {
                1.0
            };
        d.insert("duration_ms".into(), json!((dur * 1000.0).round() / 1000.0));
        d.insert(
            "trace.trace_id".into(),
            json!(format!("{:032x}", r.random::<u128>())),
        );
        d.insert(
            "trace.span_id".into(),
            json!(format!("{:016x}", r.random::<u64>())),
        );
        d.insert(
            "user_id".into(),
            json!(format!("user-{}", r.random_range(0..1_000_000u32))),
        );
        d.insert(
            "customer.plan".into(),
            json!(["free", "team", "enterprise"][r.random_range(0..3)]),
        );
        d.insert("build_id".into(), json!(format!("build-{build}")));
        d.insert(
            "region".into(),
            json!(REGIONS[r.random_range(0..REGIONS.len())]),
        );
        d.insert(
            "host".into(),
            json!(format!("host-{:03}", r.random_range(0..500u32))),
        );
        d.insert(
            "k8s.pod".into(),
            json!(format!("pod-{service}-{}", r.random_range(0..20u32))),
        );
        d.insert("db.calls".into(), json!(r.random_range(0..12u32)));
        d.insert(
            "db.duration_ms".into(),
            json!((r.random::<f64>() * 40.0 * 1000.0).round() / 1000.0),
        );
        d.insert("cache.hit".into(), json!(r.random_bool(0.8)));
        d.insert(
            "response.bytes".into(),
            json!(r.random_range(200..200_000u32)),
        );
        d.insert("request.bytes".into(), json!(r.random_range(0..5_000u32)));
        for f in 0..8 {
            d.insert(
                format!("flag.feature_{f}"),
                json!(r.random_bool(0.1 + f as f64 * 0.1)),
            );
        }
        d.insert(
            "client.version".into(),
            json!(format!(
                "{}.{}.{}",
                r.random_range(1..4),
                r.random_range(0..20),
                r.random_range(0..50)
            )),
        );
        d.insert(
            "net.peer.ip".into(),
            json!(format!(
                "10.{}.{}.{}",
                r.random_range(0..256),
                r.random_range(0..256),
                r.random_range(0..256)
            )),
        );
        d.insert("retry.count".into(), json!(r.random_range(0..3u32)));
        d.insert("queue.depth".into(), json!(r.random_range(0..100u32)));
        d.insert("cpu.ms".into(), json!((dur * 0.3 * 100.0).round() / 100.0));
        d.insert("alloc.kb".into(), json!(r.random_range(1..10_000u32)));
        d.insert("sampled".into(), json!(true));
        d.insert(
            "deployment.environment".into(),
            json!(if r.random_range(0..20) == 0 {
                "staging"
            } else {
                "production"
            }),
        );
        d.insert(
            "service.version".into(),
            json!(format!("1.{}.0", build % 40)),
        );
        d.insert(
            "http.route".into(),
            json!(format!("/api/v1/resource{endpoint}/{{id}}")),
        );
        d.insert(
            "http.user_agent".into(),
            json!(
                [
                    "curl/8.5.0",
                    "Mozilla/5.0 (X11; Linux x86_64)",
                    "okhttp/4.12.0",
                    "python-requests/2.32"
                ][r.random_range(0..4)]
            ),
        );
        d.insert("runtime.threads".into(), json!(r.random_range(8..64u32)));
        d.insert("seq".into(), json!(self.seq));
        let r = &mut self.rng;
        if status >= 500 {
            d.insert(
                "error".into(),
                json!(ERRORS[r.random_range(0..ERRORS.len())]),
            );
            d.insert(
                "error.kind".into(),
                json!(["timeout", "io", "panic"][r.random_range(0..3)]),
            );
        }
        if r.random_range(0..10) == 0 {
            d.insert(
                "experiment.cohort".into(),
                json!(format!("cohort-{}", r.random_range(0..5))),
            );
        }
        if r.random_range(0..50) == 0 {
            d.insert(
                "debug.note".into(),
                json!("slow path: cold cache after deploy"),
            );
        }
        d.insert("timestamp".into(), json!(chrono_like(self.time_us)));
        Json::Object(d)
    }
}

/// `events` (as [`Generator::event`] makes them) as one OTLP/JSON `ExportTraceServiceRequest`:
/// a span per event, grouped into one resource per `service.name`. The span starts at the
/// event's `timestamp` and lasts `duration_ms`; `trace.trace_id`/`trace.span_id` are its ids,
/// `endpoint` its name, a 5xx status an error status; every other field is a span attribute
/// (strings, integers as decimal strings, doubles, booleans, as the OTLP/JSON mapping writes
/// them). Eventide maps the spans back to the same fields.
pub fn otlp_traces(events: &[Json]) -> Json {
    let mut by_service: std::collections::BTreeMap<String, Vec<Json>> = Default::default();
    for e in events {
        let Some(d) = e.as_object() else { continue };
        let text = |k: &str| {
            d.get(k)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let start_ns = chrono::DateTime::parse_from_rfc3339(&text("timestamp"))
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap_or_default();
        let dur_ns = (d.get("duration_ms").and_then(Json::as_f64).unwrap_or(0.0) * 1e6) as i64;
        let error = d
            .get("http.status_code")
            .and_then(Json::as_i64)
            .is_some_and(|s| s >= 500);
        let attributes: Vec<Json> = d
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "service.name"
                        | "trace.trace_id"
                        | "trace.span_id"
                        | "timestamp"
                        | "duration_ms"
                )
            })
            .filter_map(|(k, v)| {
                let value = match v {
                    Json::String(s) => json!({ "stringValue": s }),
                    Json::Bool(b) => json!({ "boolValue": b }),
                    Json::Number(n) if n.is_i64() => json!({ "intValue": n.to_string() }),
                    Json::Number(n) => json!({ "doubleValue": n.as_f64()? }),
                    _ => return None,
                };
                Some(json!({ "key": k, "value": value }))
            })
            .collect();
        by_service
            .entry(text("service.name"))
            .or_default()
            .push(json!({
                "traceId": text("trace.trace_id"),
                "spanId": text("trace.span_id"),
                "name": text("endpoint"),
                "kind": 2,
                "startTimeUnixNano": start_ns.to_string(),
                "endTimeUnixNano": (start_ns + dur_ns).to_string(),
                "attributes": attributes,
                "status": { "code": if error { 2 } else { 1 } },
            }));
    }
    let resource_spans: Vec<Json> = by_service
        .into_iter()
        .map(|(service, spans)| {
            json!({
                "resource": { "attributes": [
                    { "key": "service.name", "value": { "stringValue": service } }
                ] },
                "scopeSpans": [{ "scope": { "name": "eventide-bench" }, "spans": spans }],
            })
        })
        .collect();
    json!({ "resourceSpans": resource_spans })
}

/// RFC3339 UTC with microseconds.
fn chrono_like(us: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_wide() {
        let a = Generator::new(7).event();
        let b = Generator::new(7).event();
        assert_eq!(a, b);
        assert!(a.as_object().unwrap().len() >= 38);
        assert_eq!(
            chrono_like(1_700_000_000_000_001),
            "2023-11-14T22:13:20.000001Z"
        );
    }
}

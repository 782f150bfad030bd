//! Each endpoint's encoding of a shape's events: the requests to send, and what their replies
//! say was stored.

use std::collections::HashSet;

use prost::Message;
use serde_json::{Value as Json, json};

use crate::shapes::{Event, Shape, data_text};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    BatchJson,
    BatchMsgpack,
    Events,
    Ndjson,
    OtlpJson,
    OtlpProto,
    Udp,
}

pub const ALL: [Endpoint; 7] = [
    Endpoint::BatchJson,
    Endpoint::BatchMsgpack,
    Endpoint::Events,
    Endpoint::Ndjson,
    Endpoint::OtlpJson,
    Endpoint::OtlpProto,
    Endpoint::Udp,
];

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::BatchJson => "batch-json",
            Endpoint::BatchMsgpack => "batch-msgpack",
            Endpoint::Events => "events",
            Endpoint::Ndjson => "ndjson",
            Endpoint::OtlpJson => "otlp-json",
            Endpoint::OtlpProto => "otlp-proto",
            Endpoint::Udp => "udp",
        }
    }

    pub fn otlp(self) -> bool {
        matches!(self, Endpoint::OtlpJson | Endpoint::OtlpProto)
    }
}

/// One HTTP request (or, for UDP, one datagram) and the ids it carries, by dataset.
pub struct Request {
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub ids: Vec<(u64, String)>,
}

/// The dataset of the `i`-th resource of a shape on an endpoint.
pub fn dataset(shape: &Shape, ep: Endpoint, i: usize) -> String {
    if shape.datasets > 1 {
        format!("adv-{}-{}-{i}", shape.name, ep.name())
    } else {
        format!("adv-{}-{}", shape.name, ep.name())
    }
}

/// The requests of `shape` on `ep`, or why the shape cannot be sent there.
pub fn requests(shape: &Shape, ep: Endpoint) -> Result<Vec<Request>, String> {
    if shape.datasets > 1 && !ep.otlp() {
        return Err("its dataset is in the URL: one request names one dataset".into());
    }
    if shape.resource_attrs > 0 && !ep.otlp() {
        // Without resources, the closest is the same wide fields in every event (shorter
        // values, 100 events per request, so each request stays under the body limit).
        return Ok(with_resource_fields(shape)
            .iter()
            .map(|b| plain(shape, ep, b))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect());
    }
    if ep.otlp() {
        return Ok(shape.batches.iter().map(|b| otlp(shape, ep, b)).collect());
    }
    Ok(shape
        .batches
        .iter()
        .map(|b| plain(shape, ep, b))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect())
}

/// A resource attribute's value: 1 KiB, or 64 bytes where it is repeated in every event.
fn resource_value(a: usize, bytes: usize) -> String {
    format!("{a:04}").repeat(bytes / 4)
}

fn with_resource_fields(shape: &Shape) -> Vec<Vec<Event>> {
    shape
        .batches
        .iter()
        .flat_map(|b| b.chunks(100))
        .map(|b| {
            b.iter()
                .map(|e| {
                    let mut fields = e.fields.clone();
                    fields.extend(
                        (0..shape.resource_attrs)
                            .map(|a| (format!("res.{a}"), json!(resource_value(a, 64)))),
                    );
                    Event { id: e.id, fields }
                })
                .collect()
        })
        .collect()
}

fn plain(shape: &Shape, ep: Endpoint, batch: &[Event]) -> Result<Vec<Request>, String> {
    let ds = dataset(shape, ep, 0);
    let ids = |b: &[Event]| b.iter().map(|e| (e.id, ds.clone())).collect::<Vec<_>>();
    Ok(match ep {
        Endpoint::BatchJson => {
            let items: Vec<String> = batch
                .iter()
                .map(|e| format!("{{\"data\":{}}}", data_text(e)))
                .collect();
            vec![Request {
                path: format!("/1/batch/{ds}"),
                content_type: "application/json",
                body: format!("[{}]", items.join(",")).into_bytes(),
                ids: ids(batch),
            }]
        }
        Endpoint::BatchMsgpack => {
            let items: Vec<rmpv::Value> = batch
                .iter()
                .map(|e| rmpv::Value::Map(vec![(rmpv::Value::from("data"), msgpack_event(e))]))
                .collect();
            let mut body = Vec::new();
            rmpv::encode::write_value(&mut body, &rmpv::Value::Array(items))
                .map_err(|e| e.to_string())?;
            vec![Request {
                path: format!("/1/batch/{ds}"),
                content_type: "application/msgpack",
                body,
                ids: ids(batch),
            }]
        }
        // One request per event: the first 100 of each batch are enough to show the shape.
        Endpoint::Events => batch
            .iter()
            .take(100)
            .map(|e| Request {
                path: format!("/1/events/{ds}"),
                content_type: "application/json",
                body: data_text(e).into_bytes(),
                ids: vec![(e.id, ds.clone())],
            })
            .collect(),
        Endpoint::Ndjson => {
            let lines: Vec<String> = batch.iter().map(data_text).collect();
            vec![Request {
                path: format!("/api/v1/ingest/{ds}"),
                content_type: "application/x-ndjson",
                body: (lines.join("\n") + "\n").into_bytes(),
                ids: ids(batch),
            }]
        }
        Endpoint::Udp => {
            // Lines packed into datagrams of at most 60,000 bytes; a line that does not fit
            // one cannot be sent over UDP at all.
            let mut out: Vec<Request> = Vec::new();
            for e in batch {
                let line = format!("{{\"dataset\":\"{ds}\",\"data\":{}}}\n", data_text(e));
                if line.len() > 60_000 {
                    return Err(format!(
                        "an event of {} bytes does not fit a datagram",
                        line.len()
                    ));
                }
                match out.last_mut() {
                    Some(r) if r.body.len() + line.len() <= 60_000 => {
                        r.body.extend_from_slice(line.as_bytes());
                        r.ids.push((e.id, ds.clone()));
                    }
                    _ => out.push(Request {
                        path: String::new(),
                        content_type: "",
                        body: line.into_bytes(),
                        ids: vec![(e.id, ds.clone())],
                    }),
                }
            }
            out
        }
        Endpoint::OtlpJson | Endpoint::OtlpProto => unreachable!("handled by otlp()"),
    })
}

fn msgpack(v: &Json) -> rmpv::Value {
    match v {
        Json::Null => rmpv::Value::Nil,
        Json::Bool(b) => rmpv::Value::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => rmpv::Value::from(i),
            (None, Some(f)) => rmpv::Value::F64(f),
            _ => rmpv::Value::Nil,
        },
        Json::String(s) => rmpv::Value::from(s.as_str()),
        Json::Array(a) => rmpv::Value::Array(a.iter().map(msgpack).collect()),
        Json::Object(o) => rmpv::Value::Map(
            o.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), msgpack(v)))
                .collect(),
        ),
    }
}

fn msgpack_event(e: &Event) -> rmpv::Value {
    let mut m = vec![(rmpv::Value::from("adv_id"), rmpv::Value::from(e.id))];
    m.extend(
        e.fields
            .iter()
            .map(|(k, v)| (rmpv::Value::from(k.as_str()), msgpack(v))),
    );
    rmpv::Value::Map(m)
}

fn any_value(v: &Json) -> Json {
    match v {
        Json::Null => json!({}),
        Json::Bool(b) => json!({ "boolValue": b }),
        Json::Number(n) if n.is_i64() => json!({ "intValue": n.to_string() }),
        Json::Number(n) => json!({ "doubleValue": n.as_f64() }),
        Json::String(s) => json!({ "stringValue": s }),
        Json::Array(a) => {
            json!({ "arrayValue": { "values": a.iter().map(any_value).collect::<Vec<_>>() } })
        }
        Json::Object(o) => {
            json!({ "kvlistValue": { "values": o.iter().map(|(k, v)| json!({"key": k, "value": any_value(v)})).collect::<Vec<_>>() } })
        }
    }
}

/// One OTLP traces export: a resource per dataset (events dealt round-robin), each event a
/// span whose attributes are its fields.
fn otlp(shape: &Shape, ep: Endpoint, batch: &[Event]) -> Request {
    let mut ids = Vec::new();
    let resources: Vec<Json> = (0..shape.datasets)
        .map(|r| {
            let ds = dataset(shape, ep, r);
            let mut attrs = vec![json!({"key": "service.name", "value": {"stringValue": ds}})];
            attrs.extend((0..shape.resource_attrs).map(|a| json!({"key": format!("res.{a}"), "value": {"stringValue": resource_value(a, 1024)}})));
            let spans: Vec<Json> = batch
                .iter()
                .enumerate()
                .filter(|(i, _)| i % shape.datasets == r)
                .map(|(_, e)| {
                    ids.push((e.id, ds.clone()));
                    let mut a = vec![json!({"key": "adv_id", "value": {"intValue": e.id.to_string()}})];
                    a.extend(e.fields.iter().map(|(k, v)| json!({"key": k, "value": any_value(v)})));
                    json!({
                        "traceId": format!("{:032x}", e.id), "spanId": format!("{:016x}", e.id),
                        "name": "op", "kind": 2,
                        "startTimeUnixNano": "1781519400000000000", "endTimeUnixNano": "1781519400001000000",
                        "attributes": a
                    })
                })
                .collect();
            json!({"resource": {"attributes": attrs}, "scopeSpans": [{"scope": {"name": "adv"}, "spans": spans}]})
        })
        .collect();
    let export = json!({ "resourceSpans": resources });
    let (content_type, body) = match ep {
        Endpoint::OtlpJson => (
            "application/json",
            serde_json::to_vec(&export).expect("json"),
        ),
        _ => {
            let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
                serde_json::from_value(export).expect("an OTLP export in the proto3 JSON mapping");
            ("application/x-protobuf", req.encode_to_vec())
        }
    };
    Request {
        path: "/v1/traces".into(),
        content_type,
        body,
        ids,
    }
}

/// What a reply says was stored of a request's ids.
pub enum Stored {
    /// Exactly these ids; the others were refused with these messages.
    Known {
        acked: HashSet<u64>,
        refused: Vec<String>,
    },
    /// This many of the request's ids, not which (OTLP partial success, NDJSON past 100 errors).
    Count { n: usize, refused: Vec<String> },
}

/// Reads a 200 reply of `ep` for a request of `ids`.
pub fn stored(ep: Endpoint, ids: &[(u64, String)], body: &[u8]) -> Result<Stored, String> {
    let v: Json = if ep == Endpoint::OtlpProto {
        let resp =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
                body,
            )
            .map_err(|e| format!("bad OTLP reply: {e}"))?;
        let rejected = resp
            .partial_success
            .as_ref()
            .map_or(0, |p| p.rejected_spans);
        let msg = resp
            .partial_success
            .map(|p| p.error_message)
            .unwrap_or_default();
        json!({"partialSuccess": {"rejectedSpans": rejected.to_string(), "errorMessage": msg}})
    } else {
        serde_json::from_slice(body).map_err(|e| format!("reply is not JSON: {e}"))?
    };
    let all: HashSet<u64> = ids.iter().map(|(id, _)| *id).collect();
    Ok(match ep {
        Endpoint::BatchJson | Endpoint::BatchMsgpack => {
            let items = v.as_array().ok_or("batch reply is not an array")?;
            if items.len() != ids.len() {
                return Err(format!("{} statuses for {} items", items.len(), ids.len()));
            }
            let mut acked = HashSet::new();
            let mut refused = Vec::new();
            for (item, (id, _)) in items.iter().zip(ids) {
                match item["status"].as_u64() {
                    Some(202) => {
                        acked.insert(*id);
                    }
                    Some(400..=499) => {
                        refused.push(item["error"].as_str().unwrap_or_default().to_owned())
                    }
                    s => return Err(format!("item status {s:?}: {item}")),
                }
            }
            Stored::Known { acked, refused }
        }
        Endpoint::Events => Stored::Known {
            acked: all,
            refused: Vec::new(),
        },
        Endpoint::Ndjson => {
            let accepted = v["accepted"].as_u64().ok_or("no accepted count")? as usize;
            let errors = v["errors"].as_array().cloned().unwrap_or_default();
            let refused: Vec<String> = errors
                .iter()
                .map(|e| e["error"].as_str().unwrap_or_default().to_owned())
                .collect();
            if accepted + errors.len() == ids.len() {
                let bad: HashSet<usize> = errors
                    .iter()
                    .filter_map(|e| e["line"].as_u64())
                    .map(|l| l as usize - 1)
                    .collect();
                let acked = ids
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !bad.contains(i))
                    .map(|(_, (id, _))| *id)
                    .collect();
                Stored::Known { acked, refused }
            } else {
                Stored::Count {
                    n: accepted,
                    refused,
                }
            }
        }
        Endpoint::OtlpJson | Endpoint::OtlpProto => {
            let p = &v["partialSuccess"];
            let rejected: usize = p["rejectedSpans"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let msg = p["errorMessage"].as_str().unwrap_or_default().to_owned();
            let refused = if msg.is_empty() {
                Vec::new()
            } else {
                vec![msg]
            };
            if rejected == 0 {
                Stored::Known {
                    acked: all,
                    refused,
                }
            } else {
                Stored::Count {
                    n: ids.len() - rejected,
                    refused,
                }
            }
        }
        Endpoint::Udp => unreachable!("UDP has no reply"),
    })
}

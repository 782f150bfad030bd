//! OTLP/HTTP receivers: `POST /v1/traces` and `POST /v1/logs`, protobuf or JSON.
//!
//! Spans and log records become wide events the way Honeycomb maps them, so queries written
//! for Honeycomb work unchanged:
//! - dataset = the resource's `service.name` (`unknown_service` when blank), or the
//!   `X-Honeycomb-Dataset` header when a client sets it;
//! - a span → one event at its start time with `trace.trace_id`, `trace.span_id`,
//!   `trace.parent_id`, `name`, `span.kind`, `duration_ms`, `status_code`, `status_message`,
//!   `error`, `span.num_events`, `span.num_links`, `library.name`/`library.version`, and the
//!   resource, scope and span attributes; the first `exception` span event's attributes are
//!   copied onto the span;
//! - each span event and each link → its own event (`meta.annotation_type` `span_event` /
//!   `link`, `trace.parent_id` = the span, `parent_name` = the span's name);
//! - a log record → one event with `body`, `severity_text`, `severity_number`, `severity`,
//!   `trace.trace_id`, `trace.span_id`, `event_name` and the attributes;
//! - every event has `meta.signal_type` (`trace` or `log`);
//! - a `sampleRate` (or `SampleRate`) attribute becomes `_samplerate` and is not stored as a
//!   field.
//!
//! Attribute values map to columns: strings, bools, ints and doubles as themselves; bytes as
//! base64 text; arrays as JSON text; key/value lists flattened to dotted names like nested
//! JSON objects. Ids are lowercase hex. OTLP/JSON ids should be hex; base64 ids (what
//! protobuf's own JSON mapping writes) are accepted as a fallback, as are enum names
//! (`"SPAN_KIND_SERVER"`) where the spec wants numbers.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use eventide_model::budget::DecodeBudget;
use eventide_model::event::samplerate_from_f64;
use eventide_model::{Event, Limits, Value};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use crate::auth::KeyEntry;
use crate::decode::{Group, Groups, Item};
use crate::error::ApiError;
use crate::{IngestState, body};

/// Dataset of telemetry whose resource has no usable `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From `Content-Type`; anything else is a 415 naming what was sent.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let raw = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Self::Protobuf),
            "application/json" => Ok(Self::Json),
            "" => Err(ApiError::UnsupportedMediaType(
                "missing content-type: OTLP/HTTP takes application/x-protobuf or application/json"
                    .into(),
            )),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "unsupported content-type {other:?}: OTLP/HTTP takes application/x-protobuf or application/json"
            ))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Decodes an OTLP trace export request into events grouped by dataset.
pub fn decode_traces(
    body: &[u8],
    enc: Encoding,
    dataset_override: Option<&str>,
    receive_us: i64,
    limits: &Limits,
) -> Result<Groups, ApiError> {
    let req: ExportTraceServiceRequest = decode_request(body, enc, "ExportTraceServiceRequest")?;
    let budget = DecodeBudget::for_body(body.len(), limits);
    let mut groups = Groups::new();
    for rs in &req.resource_spans {
        let base = resource_fields(rs.resource.as_ref(), limits);
        let dataset = dataset_for(rs.resource.as_ref(), dataset_override);
        let group = groups.entry(dataset).or_default();
        for ss in &rs.scope_spans {
            let mut scope_base = base.clone();
            scope_fields(ss.scope.as_ref(), &mut scope_base, limits);
            let base_cost = fields_cost(&scope_base);
            for span in &ss.spans {
                // Charged before the copy is made: a resource's attributes are copied into
                // every span, and that is what a small body can multiply.
                budget
                    .charge(base_cost + attrs_cost(&span.attributes), COPIED)
                    .map_err(too_large)?;
                span_events(span, &scope_base, receive_us, limits, group);
            }
        }
    }
    Ok(groups)
}

/// What the 413 of an OTLP request says made it large.
const COPIED: &str =
    ", or smaller resource and scope attributes (OTLP copies them into every span and log record)";

fn too_large(e: eventide_model::budget::BudgetExceeded) -> ApiError {
    ApiError::TooLarge(e.to_string())
}

/// What `fields` are charged against the decoded-size budget.
fn fields_cost(fields: &Fields) -> usize {
    fields
        .iter()
        .map(|(n, v)| eventide_model::budget::field_cost(n, eventide_model::budget::value_bytes(v)))
        .sum()
}

/// What attributes are charged, before they are decoded (their keys and encoded values).
fn attrs_cost(attrs: &[KeyValue]) -> usize {
    attrs
        .iter()
        .map(|kv| {
            eventide_model::budget::field_cost(&kv.key, kv.value.as_ref().map_or(0, any_cost))
        })
        .sum()
}

/// What one attribute value takes decoded, about.
fn any_cost(v: &AnyValue) -> usize {
    v.value.as_ref().map_or(0, |v| match v {
        any_value::Value::StringValue(s) => s.len(),
        any_value::Value::BytesValue(b) => b.len() * 4 / 3 + 4,
        any_value::Value::ArrayValue(a) => a.values.iter().map(any_cost).sum::<usize>() + 2,
        any_value::Value::KvlistValue(l) => attrs_cost(&l.values),
        _ => 8,
    })
}

/// Decodes an OTLP logs export request into events grouped by dataset.
pub fn decode_logs(
    body: &[u8],
    enc: Encoding,
    dataset_override: Option<&str>,
    receive_us: i64,
    limits: &Limits,
) -> Result<Groups, ApiError> {
    let req: ExportLogsServiceRequest = decode_request(body, enc, "ExportLogsServiceRequest")?;
    let budget = DecodeBudget::for_body(body.len(), limits);
    let mut groups = Groups::new();
    for rl in &req.resource_logs {
        let base = resource_fields(rl.resource.as_ref(), limits);
        let dataset = dataset_for(rl.resource.as_ref(), dataset_override);
        let group = groups.entry(dataset).or_default();
        for sl in &rl.scope_logs {
            let mut scope_base = base.clone();
            scope_fields(sl.scope.as_ref(), &mut scope_base, limits);
            let base_cost = fields_cost(&scope_base);
            for rec in &sl.log_records {
                let body_cost = rec.body.as_ref().map_or(0, any_cost);
                budget
                    .charge(base_cost + attrs_cost(&rec.attributes) + body_cost, COPIED)
                    .map_err(too_large)?;
                group.push(log_event(rec, &scope_base, receive_us, limits), true);
            }
        }
    }
    Ok(groups)
}

fn decode_request<T>(body: &[u8], enc: Encoding, what: &str) -> Result<T, ApiError>
where
    T: prost::Message + Default + serde::de::DeserializeOwned,
{
    match enc {
        Encoding::Protobuf => T::decode(body)
            .map_err(|e| ApiError::BadRequest(format!("malformed OTLP protobuf {what}: {e}"))),
        Encoding::Json => {
            let mut v: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("malformed OTLP json: {e}")))?;
            normalize_json(&mut v);
            serde_json::from_value(v)
                .map_err(|e| ApiError::BadRequest(format!("malformed OTLP json {what}: {e}")))
        }
    }
}

/// Makes lenient OTLP/JSON strict before typed decoding: base64 ids → hex, enum names →
/// numbers.
fn normalize_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                match (k.as_str(), &*val) {
                    ("traceId", serde_json::Value::String(s)) => {
                        if let Some(hex) = base64_id_to_hex(s, 16) {
                            *val = serde_json::Value::String(hex);
                        }
                    }
                    ("spanId" | "parentSpanId", serde_json::Value::String(s)) => {
                        if let Some(hex) = base64_id_to_hex(s, 8) {
                            *val = serde_json::Value::String(hex);
                        }
                    }
                    ("kind" | "code" | "severityNumber", serde_json::Value::String(s)) => {
                        if let Some(n) = enum_number(s) {
                            *val = serde_json::Value::from(n);
                        }
                    }
                    _ => normalize_json(val),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(normalize_json),
        _ => {}
    }
}

/// `Some(hex)` when `s` is not already hex of `len` bytes but is base64 of `len` bytes.
fn base64_id_to_hex(s: &str, len: usize) -> Option<String> {
    if s.is_empty() || (s.len() == len * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .ok()?;
    (bytes.len() == len).then(|| hex::encode(bytes))
}

fn enum_number(name: &str) -> Option<i32> {
    use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    if let Ok(n) = name.parse::<i32>() {
        return Some(n);
    }
    SpanKind::from_str_name(name)
        .map(|k| k as i32)
        .or_else(|| StatusCode::from_str_name(name).map(|c| c as i32))
        .or_else(|| SeverityNumber::from_str_name(name).map(|s| s as i32))
}

fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// The dataset for a resource: the override, else `service.name` made into a valid name.
fn dataset_for(resource: Option<&Resource>, dataset_override: Option<&str>) -> String {
    let raw = match dataset_override {
        Some(d) => d.trim(),
        None => {
            let service = resource
                .and_then(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or("")
                .trim();
            // SDKs default to `unknown_service:<process name>`.
            if service.starts_with(UNKNOWN_SERVICE) {
                ""
            } else {
                service
            }
        }
    };
    if raw.is_empty() {
        return UNKNOWN_SERVICE.to_owned();
    }
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(eventide_model::dataset::MAX_DATASET_NAME)
        .collect();
    name
}

type Fields = Vec<(String, Value)>;

fn resource_fields(resource: Option<&Resource>, limits: &Limits) -> Fields {
    let mut out = Fields::new();
    if let Some(r) = resource {
        push_attrs(&mut out, &r.attributes, limits);
    }
    out
}

fn scope_fields(scope: Option<&InstrumentationScope>, out: &mut Fields, limits: &Limits) {
    let Some(scope) = scope else { return };
    if !scope.name.is_empty() {
        out.push(("library.name".into(), Value::Str(scope.name.clone())));
    }
    if !scope.version.is_empty() {
        out.push(("library.version".into(), Value::Str(scope.version.clone())));
    }
    push_attrs(out, &scope.attributes, limits);
}

fn push_attrs(out: &mut Fields, attrs: &[KeyValue], limits: &Limits) {
    for kv in attrs {
        if let Some(v) = &kv.value {
            push_any(out, kv.key.clone(), v, 1, limits);
        }
    }
}

/// One attribute value → fields (several for a key/value list).
fn push_any(out: &mut Fields, name: String, v: &AnyValue, depth: usize, limits: &Limits) {
    let Some(val) = &v.value else { return };
    let value = match val {
        any_value::Value::StringValue(s) => Value::Str(s.clone()),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::Int(*i),
        any_value::Value::DoubleValue(f) if f.is_finite() => Value::Float(*f),
        any_value::Value::DoubleValue(_) => return,
        any_value::Value::BytesValue(b) => {
            Value::Str(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::KvlistValue(list) if depth < limits.flatten_depth => {
            for kv in &list.values {
                if let Some(v) = &kv.value {
                    push_any(out, format!("{name}.{}", kv.key), v, depth + 1, limits);
                }
            }
            return;
        }
        // A string-table index is meaningful only in the profiling signal.
        any_value::Value::StringValueStrindex(_) => return,
        other => Value::Str(any_to_json(other).to_string()),
    };
    out.push((name, value));
}

fn any_to_json(v: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        any_value::Value::StringValue(s) => J::from(s.as_str()),
        any_value::Value::BoolValue(b) => J::from(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(f) => {
            serde_json::Number::from_f64(*f).map_or(J::Null, J::Number)
        }
        any_value::Value::BytesValue(b) => {
            J::from(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map_or(J::Null, any_to_json))
                .collect(),
        ),
        any_value::Value::KvlistValue(l) => J::Object(
            l.values
                .iter()
                .map(|kv| {
                    let v = kv
                        .value
                        .as_ref()
                        .and_then(|x| x.value.as_ref())
                        .map_or(J::Null, any_to_json);
                    (kv.key.clone(), v)
                })
                .collect(),
        ),
        any_value::Value::StringValueStrindex(_) => J::Null,
    }
}

/// Takes the `sampleRate` attribute out of `fields` and returns the sample rate it sets.
fn take_samplerate(fields: &mut Fields, current: i64) -> i64 {
    let mut rate = current;
    fields.retain(|(name, v)| {
        if name != "sampleRate" && name != "SampleRate" {
            return true;
        }
        let parsed = match v {
            Value::Int(i) => samplerate_from_f64(*i as f64),
            Value::Float(f) => samplerate_from_f64(*f),
            Value::Str(s) => s.trim().parse::<f64>().ok().and_then(samplerate_from_f64),
            Value::Bool(_) => None,
        };
        if let Some(r) = parsed {
            rate = r;
        }
        false
    });
    rate
}

fn nanos_to_micros(ns: u64) -> Option<i64> {
    (ns > 0).then(|| i64::try_from(ns / 1000).unwrap_or(i64::MAX))
}

fn id_hex(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty() && bytes.iter().any(|b| *b != 0)).then(|| hex::encode(bytes))
}

fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn finish(fields: Fields, ts: i64, samplerate: i64, limits: &Limits) -> Item {
    Event::from_fields(fields, ts, samplerate, limits).map_err(|e| e.to_string())
}

/// A span → its own event plus one per span event and link.
fn span_events(span: &Span, base: &Fields, receive_us: i64, limits: &Limits, group: &mut Group) {
    let trace_id = id_hex(&span.trace_id);
    let span_id = id_hex(&span.span_id);
    let start_us = nanos_to_micros(span.start_time_unix_nano).unwrap_or(receive_us);
    let mut fields = base.clone();
    push_attrs(&mut fields, &span.attributes, limits);
    let samplerate = take_samplerate(&mut fields, 1);
    // Honeycomb copies the first exception's details onto the span.
    if let Some(exc) = span.events.iter().find(|e| e.name == "exception") {
        for kv in &exc.attributes {
            if kv.key.starts_with("exception.")
                && let Some(v) = &kv.value
            {
                push_any(&mut fields, kv.key.clone(), v, 1, limits);
            }
        }
    }
    if let Some(t) = &trace_id {
        fields.push(("trace.trace_id".into(), Value::Str(t.clone())));
    }
    if let Some(s) = &span_id {
        fields.push(("trace.span_id".into(), Value::Str(s.clone())));
    }
    if let Some(p) = id_hex(&span.parent_span_id) {
        fields.push(("trace.parent_id".into(), Value::Str(p)));
    }
    fields.push(("name".into(), Value::Str(span.name.clone())));
    fields.push((
        "span.kind".into(),
        Value::Str(span_kind_name(span.kind).into()),
    ));
    if span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0 {
        let ns = span.end_time_unix_nano - span.start_time_unix_nano;
        fields.push(("duration_ms".into(), Value::Float(ns as f64 / 1e6)));
    }
    let (code, message) = span
        .status
        .as_ref()
        .map_or((0, ""), |s| (s.code, s.message.as_str()));
    fields.push(("status_code".into(), Value::Int(i64::from(code))));
    if !message.is_empty() {
        fields.push(("status_message".into(), Value::Str(message.to_owned())));
    }
    fields.push(("error".into(), Value::Bool(code == 2)));
    fields.push((
        "span.num_events".into(),
        Value::Int(span.events.len() as i64),
    ));
    fields.push(("span.num_links".into(), Value::Int(span.links.len() as i64)));
    fields.push(("meta.signal_type".into(), Value::Str("trace".into())));
    group.push(finish(fields, start_us, samplerate, limits), true);

    let annotation = |kind: &str| {
        let mut f = base.clone();
        // A resource-level sampleRate applies through `samplerate`, not as a field.
        take_samplerate(&mut f, samplerate);
        if let Some(t) = &trace_id {
            f.push(("trace.trace_id".into(), Value::Str(t.clone())));
        }
        if let Some(s) = &span_id {
            f.push(("trace.parent_id".into(), Value::Str(s.clone())));
        }
        f.push(("parent_name".into(), Value::Str(span.name.clone())));
        f.push(("meta.annotation_type".into(), Value::Str(kind.into())));
        f.push(("meta.signal_type".into(), Value::Str("trace".into())));
        f
    };
    for ev in &span.events {
        let mut f = annotation("span_event");
        push_attrs(&mut f, &ev.attributes, limits);
        let sr = take_samplerate(&mut f, samplerate);
        f.push(("name".into(), Value::Str(ev.name.clone())));
        let ts = nanos_to_micros(ev.time_unix_nano).unwrap_or(start_us);
        group.push(finish(f, ts, sr, limits), false);
    }
    for link in &span.links {
        let mut f = annotation("link");
        push_attrs(&mut f, &link.attributes, limits);
        let sr = take_samplerate(&mut f, samplerate);
        if let Some(t) = id_hex(&link.trace_id) {
            f.push(("trace.link.trace_id".into(), Value::Str(t)));
        }
        if let Some(s) = id_hex(&link.span_id) {
            f.push(("trace.link.span_id".into(), Value::Str(s)));
        }
        group.push(finish(f, start_us, sr, limits), false);
    }
}

/// Lowercase severity from the text, else from the number's range (OTLP's 1–24 scale).
fn severity_name(text: &str, number: i32) -> Option<String> {
    if !text.is_empty() {
        return Some(text.to_ascii_lowercase());
    }
    let name = match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => return None,
    };
    Some(name.into())
}

fn log_event(rec: &LogRecord, base: &Fields, receive_us: i64, limits: &Limits) -> Item {
    let mut fields = base.clone();
    push_attrs(&mut fields, &rec.attributes, limits);
    let samplerate = take_samplerate(&mut fields, 1);
    if let Some(body) = &rec.body {
        match &body.value {
            Some(any_value::Value::StringValue(s)) => {
                fields.push(("body".into(), Value::Str(s.clone())));
            }
            Some(_) => push_any(&mut fields, "body".into(), body, 1, limits),
            None => {}
        }
    }
    if !rec.severity_text.is_empty() {
        fields.push((
            "severity_text".into(),
            Value::Str(rec.severity_text.clone()),
        ));
    }
    if rec.severity_number != 0 {
        fields.push((
            "severity_number".into(),
            Value::Int(i64::from(rec.severity_number)),
        ));
    }
    if let Some(sev) = severity_name(&rec.severity_text, rec.severity_number) {
        fields.push(("severity".into(), Value::Str(sev)));
    }
    if let Some(t) = id_hex(&rec.trace_id) {
        fields.push(("trace.trace_id".into(), Value::Str(t)));
    }
    if let Some(s) = id_hex(&rec.span_id) {
        fields.push(("trace.span_id".into(), Value::Str(s)));
    }
    if !rec.event_name.is_empty() {
        fields.push(("event_name".into(), Value::Str(rec.event_name.clone())));
    }
    fields.push(("meta.signal_type".into(), Value::Str("log".into())));
    let ts = nanos_to_micros(rec.time_unix_nano)
        .or_else(|| nanos_to_micros(rec.observed_time_unix_nano))
        .unwrap_or(receive_us);
    finish(fields, ts, samplerate, limits)
}

/// What an OTLP request left behind: how many spans or records were refused, and why.
#[derive(Debug, Default)]
struct Rejected {
    count: i64,
    first_error: Option<String>,
}

impl Rejected {
    fn from_outcomes(results: &[crate::GroupOutcome]) -> Self {
        let mut r = Rejected::default();
        for (dataset, primary, outcomes) in results {
            for (is_primary, outcome) in primary.iter().zip(outcomes) {
                if let Some(err) = outcome {
                    if *is_primary {
                        r.count += 1;
                    }
                    r.first_error
                        .get_or_insert_with(|| format!("dataset {dataset}: {err}"));
                }
            }
        }
        r
    }
}

#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Logs,
}

async fn receive(
    s: IngestState,
    key: Option<KeyEntry>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Result<Response, ApiError> {
    let enc = Encoding::from_headers(&headers)?;
    let compression = body::encoding(&headers)?;
    let limit = s.limits.max_body_bytes;
    let _permit = s.admit_request(&headers, limit)?;
    let raw = body::read_raw(body, limit).await?;
    let dataset_override = headers
        .get("x-honeycomb-dataset")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|d| !d.trim().is_empty());
    let receive_us = s.clock.now_micros();
    let limits = s.limits.clone();
    let results = s
        .ingest_groups(move || {
            let body = body::decompress_body(raw, compression, limit)?;
            let ds = dataset_override.as_deref();
            let groups = match signal {
                Signal::Traces => decode_traces(&body, enc, ds, receive_us, &limits),
                Signal::Logs => decode_logs(&body, enc, ds, receive_us, &limits),
            }?;
            // A dataset-limited key: every dataset the request writes to must match, or
            // none of it is stored.
            if let Some(key) = &key {
                for dataset in groups.keys() {
                    key.may_use(dataset)?;
                }
            }
            Ok(groups)
        })
        .await?;
    let rejected = Rejected::from_outcomes(&results);
    let primary: usize = results
        .iter()
        .map(|(_, primary, _)| primary.iter().filter(|p| **p).count())
        .sum();
    let refused = usize::try_from(rejected.count).unwrap_or(0);
    s.metrics.events(
        match signal {
            Signal::Traces => crate::metrics::Endpoint::OtlpTraces,
            Signal::Logs => crate::metrics::Endpoint::OtlpLogs,
        },
        primary.saturating_sub(refused),
        refused,
    );
    if rejected.count > 0 || rejected.first_error.is_some() {
        tracing::debug!(count = rejected.count, error = ?rejected.first_error, "OTLP items rejected");
    }
    let accepted = primary.saturating_sub(refused);
    Ok(crate::with_counts(
        reply(enc, signal, rejected),
        accepted,
        refused,
    ))
}

fn reply(enc: Encoding, signal: Signal, rejected: Rejected) -> Response {
    let has_partial = rejected.first_error.is_some();
    let message = rejected.first_error.unwrap_or_default();
    let body = match enc {
        Encoding::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: has_partial.then_some(ExportTracePartialSuccess {
                    rejected_spans: rejected.count,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: has_partial.then_some(ExportLogsPartialSuccess {
                    rejected_log_records: rejected.count,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
        },
        // The proto3 JSON mapping: int64 as a string, unset messages left out.
        Encoding::Json => {
            let counted = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Logs => "rejectedLogRecords",
            };
            let v = if has_partial {
                serde_json::json!({"partialSuccess": {
                    counted: rejected.count.to_string(),
                    "errorMessage": message,
                }})
            } else {
                serde_json::json!({})
            };
            v.to_string().into_bytes()
        }
    };
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(enc.content_type()),
    );
    resp
}

/// `key`: the request's key, which the auth guard put in the request's extensions.
pub(crate) async fn post_traces(
    State(s): State<IngestState>,
    key: Option<Extension<KeyEntry>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive(s, key.map(|k| k.0), headers, body, Signal::Traces).await
}

pub(crate) async fn post_logs(
    State(s): State<IngestState>,
    key: Option<Extension<KeyEntry>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive(s, key.map(|k| k.0), headers, body, Signal::Logs).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::span::{Event as SpanEvent, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn field<'a>(e: &'a Event, name: &str) -> Option<&'a Value> {
        e.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn request() -> ExportTraceServiceRequest {
        let root = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![1; 8],
            name: "GET /checkout".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_250_000_000,
            attributes: vec![
                kv("http.status_code", any_value::Value::IntValue(500)),
                kv("sampleRate", any_value::Value::IntValue(10)),
                kv("timestamp", s("not the event time")),
                kv("_samplerate", any_value::Value::IntValue(99)),
                kv(
                    "flags",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(s("a")),
                        }],
                    }),
                ),
                kv(
                    "user",
                    any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("id", any_value::Value::IntValue(42))],
                    }),
                ),
            ],
            events: vec![SpanEvent {
                time_unix_nano: 1_700_000_000_100_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.message", s("card declined"))],
                dropped_attributes_count: 0,
            }],
            links: vec![Link {
                trace_id: vec![0xcd; 16],
                span_id: vec![2; 8],
                ..Default::default()
            }],
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("checkout api"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "tracer".into(),
                        ..Default::default()
                    }),
                    spans: vec![root],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn spans_map_like_honeycomb() {
        let body = request().encode_to_vec();
        let limits = Limits::default();
        let groups = decode_traces(&body, Encoding::Protobuf, None, 5, &limits).unwrap();
        let group = &groups["checkout_api"];
        assert_eq!(group.primary, vec![true, false, false]);
        let span = group.items[0].as_ref().unwrap();
        assert_eq!(span.samplerate, 10);
        assert_eq!(span.timestamp_us, 1_700_000_000_000_000);
        assert_eq!(
            field(span, "trace.trace_id"),
            Some(&Value::Str("ab".repeat(16)))
        );
        assert_eq!(
            field(span, "trace.span_id"),
            Some(&Value::Str("0101010101010101".into()))
        );
        assert_eq!(field(span, "trace.parent_id"), None);
        assert_eq!(field(span, "duration_ms"), Some(&Value::Float(250.0)));
        assert_eq!(field(span, "span.kind"), Some(&Value::Str("server".into())));
        assert_eq!(field(span, "error"), Some(&Value::Bool(true)));
        assert_eq!(field(span, "status_code"), Some(&Value::Int(2)));
        assert_eq!(field(span, "http.status_code"), Some(&Value::Int(500)));
        assert_eq!(field(span, "user.id"), Some(&Value::Int(42)));
        assert_eq!(field(span, "flags"), Some(&Value::Str(r#"["a"]"#.into())));
        assert_eq!(
            field(span, "exception.message"),
            Some(&Value::Str("card declined".into()))
        );
        assert_eq!(field(span, "sampleRate"), None);
        // Reserved names behave as in JSON events.
        assert_eq!(
            field(span, "timestamp_raw"),
            Some(&Value::Str("not the event time".into()))
        );
        assert_eq!(field(span, "_samplerate"), None);
        assert_eq!(
            field(span, "library.name"),
            Some(&Value::Str("tracer".into()))
        );
        let ev = group.items[1].as_ref().unwrap();
        assert_eq!(ev.timestamp_us, 1_700_000_000_100_000);
        assert_eq!(ev.samplerate, 10);
        assert_eq!(
            field(ev, "meta.annotation_type"),
            Some(&Value::Str("span_event".into()))
        );
        assert_eq!(
            field(ev, "trace.parent_id"),
            Some(&Value::Str("0101010101010101".into()))
        );
        assert_eq!(
            field(ev, "parent_name"),
            Some(&Value::Str("GET /checkout".into()))
        );
        let link = group.items[2].as_ref().unwrap();
        assert_eq!(
            field(link, "trace.link.trace_id"),
            Some(&Value::Str("cd".repeat(16)))
        );
    }

    #[test]
    fn json_with_hex_or_base64_ids_and_enum_names() {
        let limits = Limits::default();
        let json = serde_json::to_vec(&request()).unwrap();
        let hex = decode_traces(&json, Encoding::Json, None, 5, &limits).unwrap();
        let proto = decode_traces(
            &request().encode_to_vec(),
            Encoding::Protobuf,
            None,
            5,
            &limits,
        )
        .unwrap();
        assert_eq!(
            hex["checkout_api"].items[0].as_ref().unwrap(),
            proto["checkout_api"].items[0].as_ref().unwrap()
        );
        // protobuf's JSON mapping: base64 ids, enum names, int64 as strings.
        let b64 = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "q6urq6urq6urq6urq6urqw==",
            "spanId": "AQEBAQEBAQE=",
            "name": "x",
            "kind": "SPAN_KIND_CLIENT",
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000001000000",
            "status": {"code": "STATUS_CODE_OK"},
            "attributes": [{"key": "n", "value": {"intValue": "7"}}]
        }]}]}]});
        let groups = decode_traces(
            &serde_json::to_vec(&b64).unwrap(),
            Encoding::Json,
            None,
            5,
            &limits,
        )
        .unwrap();
        let span = groups[UNKNOWN_SERVICE].items[0].as_ref().unwrap();
        assert_eq!(
            field(span, "trace.trace_id"),
            Some(&Value::Str("ab".repeat(16)))
        );
        assert_eq!(field(span, "span.kind"), Some(&Value::Str("client".into())));
        assert_eq!(field(span, "n"), Some(&Value::Int(7)));
        assert_eq!(field(span, "duration_ms"), Some(&Value::Float(1.0)));
        assert_eq!(field(span, "error"), Some(&Value::Bool(false)));
    }

    #[test]
    fn malformed_bodies_and_content_types_are_named() {
        let limits = Limits::default();
        let err = decode_traces(b"\xff\xff\xff", Encoding::Protobuf, None, 5, &limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("malformed OTLP protobuf"), "{err}");
        let err = decode_logs(b"{", Encoding::Json, None, 5, &limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("malformed OTLP json"), "{err}");
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let err = Encoding::from_headers(&h).unwrap_err();
        assert_eq!(err.status(), 415);
        assert!(err.to_string().contains("text/plain"));
    }

    #[test]
    fn an_oversized_attribute_rejects_only_its_span() {
        let limits = Limits {
            max_string_bytes: 40,
            ..Limits::default()
        };
        let mut req = request();
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        let mut big = spans[0].clone();
        big.attributes.push(kv("blob", s(&"x".repeat(41))));
        big.events.clear();
        big.links.clear();
        spans.push(big);
        let groups = decode_traces(
            &req.encode_to_vec(),
            Encoding::Protobuf,
            Some("override"),
            5,
            &limits,
        )
        .unwrap();
        let g = &groups["override"];
        assert_eq!(g.items.len(), 4);
        assert!(g.items[0].is_ok());
        let err = g.items[3].as_ref().unwrap_err();
        assert!(err.contains("blob"), "{err}");
    }

    /// OTLP names its datasets in the body: a dataset-limited key may send a request whose
    /// datasets all match its pattern, and is refused (nothing stored) when one does not.
    #[tokio::test]
    async fn dataset_limited_keys_write_only_their_datasets_over_otlp() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt as _;
        let dir = tempfile::tempdir().unwrap();
        let log = eventide_eventlog::EmbeddedLog::open(eventide_eventlog::EmbeddedLogConfig::new(
            dir.path().join("log"),
        ))
        .unwrap();
        let state = crate::IngestState::new(
            std::sync::Arc::new(log),
            std::sync::Arc::new(crate::SchemaRegistry::new()),
            Limits::default(),
        );
        let limited =
            crate::auth::create_key(dir.path(), crate::Scope::Ingest, Some("t*".into()), None)
                .unwrap();
        let open = crate::auth::create_key(dir.path(), crate::Scope::Ingest, None, None).unwrap();
        let (keys, _) = crate::Keys::load(None, dir.path()).unwrap();
        let app = crate::router(state.clone(), keys);
        let post = |key: &str, dataset: &str| {
            Request::post("/v1/traces")
                .header("x-honeycomb-team", key)
                .header("x-honeycomb-dataset", dataset)
                .header("content-type", "application/x-protobuf")
                .body(Body::from(request().encode_to_vec()))
                .unwrap()
        };
        let r = app
            .clone()
            .oneshot(post(&limited, "checkout"))
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert!(
            String::from_utf8_lossy(&body)
                .contains(r#"key is limited to datasets matching \"t*\", not \"checkout\""#),
            "{body:?}"
        );
        let columns = state.registry.dataset("checkout").lock().unwrap().len();
        assert_eq!(columns, 0, "nothing of the refused request was stored");
        let r = app
            .clone()
            .oneshot(post(&limited, "traffic"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = app.oneshot(post(&open, "checkout")).await.unwrap();
        assert_eq!(r.status(), 200);
    }

    #[test]
    fn logs_map_severity_body_and_ids() {
        use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("payments"))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            observed_time_unix_nano: 1_700_000_000_000_000_000,
                            severity_number: 17,
                            body: Some(AnyValue {
                                value: Some(s("payment failed")),
                            }),
                            trace_id: vec![7; 16],
                            span_id: vec![8; 8],
                            ..Default::default()
                        },
                        LogRecord {
                            severity_text: "WARN".into(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::KvlistValue(KeyValueList {
                                    values: vec![kv("msg", s("slow"))],
                                })),
                            }),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        };
        let limits = Limits::default();
        let groups =
            decode_logs(&req.encode_to_vec(), Encoding::Protobuf, None, 99, &limits).unwrap();
        let g = &groups["payments"];
        let a = g.items[0].as_ref().unwrap();
        assert_eq!(a.timestamp_us, 1_700_000_000_000_000);
        assert_eq!(field(a, "severity"), Some(&Value::Str("error".into())));
        assert_eq!(field(a, "severity_number"), Some(&Value::Int(17)));
        assert_eq!(field(a, "body"), Some(&Value::Str("payment failed".into())));
        assert_eq!(
            field(a, "trace.trace_id"),
            Some(&Value::Str("07".repeat(16)))
        );
        let b = g.items[1].as_ref().unwrap();
        assert_eq!(b.timestamp_us, 99);
        assert_eq!(field(b, "body.msg"), Some(&Value::Str("slow".into())));
        assert_eq!(field(b, "severity"), Some(&Value::Str("warn".into())));
    }
}

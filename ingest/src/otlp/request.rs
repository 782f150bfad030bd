//! The two OTLP/HTTP encodings, and the decoding of an export request from protobuf or from
//! JSON (made strict first: base64 ids → hex, enum names → numbers).

use axum::http::{HeaderMap, header};
use base64::Engine as _;

use crate::error::ApiError;

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

    pub(super) fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

pub(super) fn decode_request<T>(body: &[u8], enc: Encoding, what: &str) -> Result<T, ApiError>
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::fixtures::{field, request};
    use crate::otlp::{UNKNOWN_SERVICE, decode_logs, decode_traces};
    use axum::http::HeaderValue;
    use eventide_model::{Limits, Value};
    use prost::Message as _;

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
}

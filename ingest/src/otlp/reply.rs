//! The reply to an OTLP export request: an export response in the request's encoding, with
//! a partial success that counts the refused spans or log records and names the first error.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message as _;

use super::Signal;
use super::request::Encoding;

/// What an OTLP request left behind: how many spans or records were refused, and why.
#[derive(Debug, Default)]
pub(super) struct Rejected {
    pub(super) count: i64,
    pub(super) first_error: Option<String>,
}

impl Rejected {
    pub(super) fn from_outcomes(results: &[crate::GroupOutcome]) -> Self {
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

pub(super) fn reply(enc: Encoding, signal: Signal, rejected: Rejected) -> Response {
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

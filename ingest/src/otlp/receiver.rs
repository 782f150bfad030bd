//! The OTLP/HTTP handlers, `POST /v1/traces` and `POST /v1/logs`: admission, body,
//! decoding, the dataset check of a dataset-limited key, the durable append and the reply.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::reply::{Rejected, reply};
use super::request::Encoding;
use super::{Signal, decode_logs, decode_traces};
use crate::auth::KeyEntry;
use crate::error::ApiError;
use crate::{IngestState, body};

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
    use crate::otlp::fixtures::request;
    use eventide_model::Limits;
    use prost::Message as _;

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
}

//! The auth middleware: the secret a request carries, [`guard`] / [`require`], which check
//! it on every route behind them, and how a refusal maps to an [`ApiError`].

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::rate::{KEY_LIMIT, KeyLimit};
use super::{Denied, Keys, Scope};
use crate::error::ApiError;

/// The secret a request carries, if any.
pub fn request_secret(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get("x-honeycomb-team")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.trim());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Middleware state: the keys and what the routes behind it need.
#[derive(Debug, Clone)]
pub struct Require {
    pub keys: Keys,
    pub scope: Scope,
    /// The route spans datasets (e.g. SQL): dataset-limited keys are refused.
    pub spans_datasets: bool,
}

/// Requires, on every route of `router`, a key with `scope` (see [`Require`]).
pub fn guard<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    keys: Keys,
    scope: Scope,
    spans_datasets: bool,
) -> axum::Router<S> {
    let req = Require {
        keys,
        scope,
        spans_datasets,
    };
    router.route_layer(axum::middleware::from_fn_with_state(req, require))
}

/// Axum middleware enforcing [`Require`]. The dataset, when the route has one, is its
/// `{dataset}` path parameter.
pub async fn require(
    State(req_state): State<Require>,
    mut request: Request,
    next: Next,
) -> Response {
    let dataset = if req_state.spans_datasets {
        None
    } else {
        use axum::RequestExt as _;
        request
            .extract_parts::<axum::extract::RawPathParams>()
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "dataset")
                    .map(|(_, v)| v.to_owned())
            })
    };
    let result = req_state.keys.check(
        request_secret(request.headers()),
        req_state.scope,
        dataset.as_deref(),
        req_state.spans_datasets,
    );
    match result {
        Ok(entry) => {
            let limit = entry.rate_limit.map(|rate| KeyLimit {
                budgets: req_state.keys.budgets.clone(),
                hash: entry.hash.clone(),
                rate,
            });
            let mut request = request;
            request.extensions_mut().insert(entry);
            KEY_LIMIT.scope(limit, next.run(request)).await
        }
        Err(denied) => ApiError::from(denied).into_response(),
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Missing => ApiError::Unauthorized(
                "missing api key: send X-Honeycomb-Team or Authorization: Bearer".into(),
            ),
            Denied::Unknown => ApiError::Unauthorized("unknown api key".into()),
            Denied::Forbidden(m) => ApiError::Forbidden(m),
        }
    }
}

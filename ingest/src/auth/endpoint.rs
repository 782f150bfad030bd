//! `GET /1/auth`: what a key may do.

use axum::extract::State;

use super::{Keys, Scope, request_secret};
use crate::error::ApiError;

/// `GET /1/auth`: what the key may do, in Honeycomb's shape (libhoney and the Honeycomb CLI
/// call it to validate a key).
pub async fn get_auth(
    State(keys): State<Keys>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let entry = keys.lookup(request_secret(&headers))?;
    let admin = entry.scope == Scope::Admin;
    let ingest = admin || entry.scope == Scope::Ingest;
    let query = admin || entry.scope == Scope::Query;
    Ok(axum::Json(serde_json::json!({
        "api_key_access": {
            "events": ingest,
            "markers": ingest,
            "createDatasets": ingest,
            "queries": query,
            "columns": query,
            "boards": query,
            "triggers": admin,
            "slos": admin,
            "recipients": admin,
            "privateBoards": admin,
        },
        "environment": {"name": "eventide", "slug": "eventide"},
        "team": {"name": "eventide", "slug": "eventide"},
        "eventide": {"scope": entry.scope.as_str(), "datasets": entry.dataset},
    })))
}

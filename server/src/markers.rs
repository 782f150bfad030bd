//! `/1/markers/{dataset}` (Honeycomb's markers API) over [`eventide_alerts::Markers`]:
//! create and change with an `ingest` (or `admin`) key, list with `query` (or `admin`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use eventide_alerts::{MarkerError, MarkerInput, Markers};
use eventide_ingest::auth::guard;
use eventide_ingest::error::error_response;
use eventide_ingest::{Keys, Scope};

fn marker_error(e: MarkerError) -> Response {
    match e {
        MarkerError::Invalid(m) => error_response(StatusCode::BAD_REQUEST, &m),
        e @ MarkerError::NotFound { .. } => error_response(StatusCode::NOT_FOUND, &e.to_string()),
        e @ MarkerError::Io(_) => {
            tracing::error!(error = %e, "markers not saved");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not save the markers",
            )
        }
    }
}

async fn input(body: axum::body::Body) -> Result<MarkerInput, Response> {
    crate::api::read_json(body)
        .await
        .map_err(IntoResponse::into_response)
}

async fn create(
    State(m): State<Markers>,
    Path(dataset): Path<String>,
    body: axum::body::Body,
) -> Response {
    let input = match input(body).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    match m.create(&dataset, input) {
        Ok(marker) => Json(marker).into_response(),
        Err(e) => marker_error(e),
    }
}

async fn list(State(m): State<Markers>, Path(dataset): Path<String>) -> Response {
    match m.list(&dataset) {
        Ok(list) => Json(list).into_response(),
        Err(e) => marker_error(e),
    }
}

async fn update(
    State(m): State<Markers>,
    Path((dataset, id)): Path<(String, String)>,
    body: axum::body::Body,
) -> Response {
    let input = match input(body).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    match m.update(&dataset, &id, input) {
        Ok(marker) => Json(marker).into_response(),
        Err(e) => marker_error(e),
    }
}

async fn delete(State(m): State<Markers>, Path((dataset, id)): Path<(String, String)>) -> Response {
    match m.delete(&dataset, &id) {
        Ok(marker) => Json(marker).into_response(),
        Err(e) => marker_error(e),
    }
}

/// The markers routes.
pub fn routes(markers: Markers, keys: Keys) -> Router {
    let write = guard(
        Router::new()
            .route("/1/markers/{dataset}", axum::routing::post(create))
            .route("/1/markers/{dataset}/{id}", put(update).delete(delete)),
        keys.clone(),
        Scope::Ingest,
        false,
    );
    let read = guard(
        Router::new().route("/1/markers/{dataset}", get(list)),
        keys,
        Scope::Query,
        false,
    );
    Router::new()
        .merge(write.with_state(markers.clone()))
        .merge(read.with_state(markers))
}

//! HTTP assembly: ingest routes, query routes, health, fallbacks, panics → JSON errors.

use std::any::Any;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventide_ingest::auth::guard;
use eventide_ingest::error::error_response;
use eventide_ingest::udp::UdpStats;
use eventide_ingest::{ApiError, IngestState, Keys, Scope};
use eventide_query::{QueryEngine, QueryError, QuerySpec};
use serde::Deserialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

fn query_error(e: QueryError) -> Response {
    match e {
        QueryError::BadRequest(m) => error_response(StatusCode::BAD_REQUEST, &m),
        QueryError::Internal(detail) => {
            tracing::error!(error = %detail, "query failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error while running the query",
            )
        }
    }
}

/// Largest query request body.
const MAX_QUERY_BODY: usize = 1024 * 1024;

/// Reads a query request body as JSON (≤ 1 MB; errors as JSON like everything else).
async fn read_json<T: for<'de> Deserialize<'de>>(body: axum::body::Body) -> Result<T, ApiError> {
    let body = eventide_ingest::body::read_raw(body, MAX_QUERY_BODY).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("request body is empty".into()));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request json: {e}")))
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    sql: String,
}

async fn post_sql(State(engine): State<QueryEngine>, body: axum::body::Body) -> Response {
    let req: SqlRequest = match read_json(body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match engine.sql(&req.sql).await {
        Ok(result) => Json(result).into_response(),
        Err(e) => query_error(e),
    }
}

async fn post_spec(
    State(engine): State<QueryEngine>,
    Path(dataset): Path<String>,
    body: axum::body::Body,
) -> Response {
    let spec: QuerySpec = match read_json(body).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match engine.run_spec(&dataset, &spec).await {
        Ok(result) => Json(result).into_response(),
        Err(e) => query_error(e),
    }
}

async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        &format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(udp: Option<Arc<UdpStats>>) -> Response {
    let mut out = String::new();
    if let Some(u) = udp {
        u.render_prometheus(&mut out);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The HTTP API of a process: ingest routes when it ingests, query routes when it queries,
/// `/healthz` always.
pub fn app(
    ingest: Option<IngestState>,
    engine: Option<QueryEngine>,
    keys: Keys,
    udp: Option<Arc<UdpStats>>,
) -> Router {
    let mut router = Router::new();
    if let Some(engine) = engine {
        router = router.merge(query_routes(engine, keys.clone()));
    }
    if let Some(ingest) = ingest {
        router = router.merge(eventide_ingest::router(ingest, keys));
    }
    router
        .route("/healthz", get(healthz))
        .route("/metrics", get(move || metrics(udp.clone())))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
}

fn query_routes(engine: QueryEngine, keys: Keys) -> Router {
    let sql = guard(
        Router::new().route("/api/v1/sql", post(post_sql)),
        keys.clone(),
        Scope::Query,
        true,
    );
    let spec = guard(
        Router::new().route("/api/v1/query/{dataset}", post(post_spec)),
        keys,
        Scope::Query,
        false,
    );
    Router::new()
        .merge(sql.with_state(engine.clone()))
        .merge(spec.with_state(engine))
}

//! HTTP assembly: ingest routes, query routes, health, fallbacks, panics → JSON errors.

use std::any::Any;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventide_alerts::{Alerts, Markers};
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
        QueryError::Corrupt(m) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &m),
        QueryError::OverMemory(detail) => {
            tracing::warn!(%detail, "query refused: over the query memory limit");
            error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the query needs more memory than the query memory limit allows \
                 (--query-memory-mb, shared by the queries running at once); narrow its time \
                 range or filters, or group by fewer distinct values",
            )
        }
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
pub(crate) async fn read_json<T: for<'de> Deserialize<'de>>(
    body: axum::body::Body,
) -> Result<T, ApiError> {
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
        Ok(result) => with_stats(result.stats, Json(result).into_response()),
        Err(e) => query_error(e),
    }
}

/// `POST /api/v1/query/{dataset}`: the spec's result, with the markers of its time range.
async fn post_spec(
    State((engine, markers)): State<(QueryEngine, Markers)>,
    Path(dataset): Path<String>,
    body: axum::body::Body,
) -> Response {
    let spec: QuerySpec = match read_json(body).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match engine.run_spec(&dataset, &spec).await {
        Ok(result) => {
            let stats = result.stats;
            let mut out = serde_json::to_value(&result).unwrap_or_default();
            if let Ok((start, end)) =
                eventide_query::spec::window(&spec, engine.store().clock().now_micros())
            {
                // Markers are whole seconds: the range's seconds, rounded outwards.
                let shown = markers.in_range(
                    &dataset,
                    start.div_euclid(1_000_000),
                    (end + 999_999).div_euclid(1_000_000),
                );
                out["markers"] = serde_json::to_value(shown).unwrap_or_default();
                // The range the server resolved (a relative one ends at its now), in seconds.
                out["window"] = serde_json::json!({
                    "start_time": start as f64 / 1e6,
                    "end_time": end as f64 / 1e6,
                });
            }
            with_stats(stats, Json(out).into_response())
        }
        Err(e) => query_error(e),
    }
}

/// `POST /api/v1/bubbleup/{dataset}`: how the selected events differ from the rest.
async fn post_bubbleup(
    State(engine): State<QueryEngine>,
    Path(dataset): Path<String>,
    body: axum::body::Body,
) -> Response {
    let req: eventide_query::BubbleUpRequest = match read_json(body).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match engine.bubbleup(&dataset, &req).await {
        Ok(result) => with_stats(result.stats, Json(result).into_response()),
        Err(e) => query_error(e),
    }
}

/// `resp` carrying what its query read, for the request events (`--self-dataset`).
fn with_stats(stats: eventide_query::ScanStats, mut resp: Response) -> Response {
    resp.extensions_mut().insert(stats);
    resp
}

/// 200 once the process can answer for its data: a store that consumes the log has been given
/// its partitions and has replayed them (Kafka); 503 with what it waits for until then.
async fn healthz(State(store): State<eventide_store::Store>) -> Response {
    match store.ready() {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(waiting) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "starting", "detail": waiting})),
        )
            .into_response(),
    }
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

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The store as the HTTP edge sees it.
pub struct StoreHandles {
    /// What `/healthz` asks whether the process is ready.
    pub health: eventide_store::Store,
    /// Whose figures `/metrics` shows (`None` where the store view is not kept up to date).
    pub figures: Option<eventide_store::Store>,
}

/// The HTTP API of a process: ingest routes when it ingests, query routes when it queries,
/// `/healthz` always.
pub fn app(
    ingest: Option<IngestState>,
    engine: Option<(QueryEngine, Alerts)>,
    keys: Keys,
    udp: Option<Arc<UdpStats>>,
    query_timeout: std::time::Duration,
    self_events: Option<Arc<crate::selfevents::SelfEvents>>,
    store: StoreHandles,
) -> Router {
    let StoreHandles { health, figures } = store;
    let store = figures;
    let mut router = Router::new();
    let sources = crate::metrics::Sources {
        http: crate::metrics::HttpMetrics::default(),
        ingest: ingest.as_ref().map(|i| i.metrics.clone()),
        log: ingest.as_ref().map(|i| i.log.clone()),
        udp,
        store,
        alerts: engine.as_ref().map(|(_, a)| a.clone()),
        self_events: self_events.clone(),
    };
    let http = sources.http.clone();
    if let Some((engine, alerts)) = engine {
        let markers = alerts.markers().clone();
        router = router
            .merge(query_routes(
                engine,
                markers.clone(),
                keys.clone(),
                query_timeout,
            ))
            .merge(crate::markers::routes(markers, keys.clone()))
            .merge(crate::alerts::routes(alerts, keys.clone()))
            .merge(eventide_ui::router());
    }
    if let Some(ingest) = ingest {
        router = router.merge(eventide_ingest::router(ingest, keys));
    }
    let mut router = router
        .route("/healthz", get(healthz).with_state(health))
        .route(
            "/metrics",
            get(crate::metrics::render).with_state(Arc::new(sources.registry())),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    if let Some(s) = self_events {
        router = router.layer(axum::middleware::from_fn_with_state(
            s,
            crate::selfevents::record,
        ));
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            http,
            crate::metrics::track,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetUpdate {
    /// A number of days, or `null` to remove the retention; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    retention_days: Option<Option<u32>>,
    /// Columns compacted files are sorted by (after the time window); `null` or `[]`: the
    /// store's `--sort-key`; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    sort_key: Option<Option<Vec<String>>>,
}

/// Tells a field given as `null` (`Some(None)`) from a missing one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Most columns in a dataset's sort key.
const MAX_SORT_KEY: usize = 8;

fn time_text(us: Option<i64>) -> serde_json::Value {
    us.map_or(serde_json::Value::Null, |us| {
        serde_json::Value::from(eventide_model::time::format_micros(us))
    })
}

fn dataset_json(s: &eventide_store::DatasetSummary) -> serde_json::Value {
    serde_json::json!({
        "name": s.name,
        "columns": s.columns,
        "segments": s.segments,
        "rows": s.segment_rows + s.hot_rows,
        "segment_rows": s.segment_rows,
        "hot_rows": s.hot_rows,
        "bytes": s.segment_bytes,
        "oldest": time_text(s.min_time_us),
        "newest": time_text(s.max_time_us),
        "retention_days": s.settings.retention_days,
        "sort_key": s.settings.sort_key,
        "deleted_before": time_text(s.settings.deleted_before_us),
        "merges_pending": s.merges_pending,
    })
}

/// `GET /api/v1/datasets` (admin): every dataset with its size and settings.
async fn list_datasets(State(engine): State<QueryEngine>) -> Response {
    let list: Vec<serde_json::Value> = engine
        .store()
        .summaries()
        .iter()
        .map(dataset_json)
        .collect();
    Json(serde_json::json!({ "datasets": list })).into_response()
}

fn known_dataset(engine: &QueryEngine, dataset: &str) -> Result<(), ApiError> {
    if engine.store().datasets().iter().any(|d| d == dataset) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("unknown dataset {dataset:?}")))
    }
}

/// `PUT /api/v1/datasets/{dataset}` (admin): `{"retention_days": N | null}`.
async fn put_dataset(
    State(engine): State<QueryEngine>,
    Path(dataset): Path<String>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    known_dataset(&engine, &dataset)?;
    let update: DatasetUpdate = read_json(body).await?;
    if update.retention_days.is_none() && update.sort_key.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to change: give retention_days (days, or null for none) and/or sort_key (columns, or null for the default)".into(),
        ));
    }
    if let Some(Some(key)) = &update.sort_key
        && (key.len() > MAX_SORT_KEY || key.iter().any(|c| c.is_empty()))
    {
        return Err(ApiError::BadRequest(format!(
            "sort_key must be at most {MAX_SORT_KEY} non-empty column names"
        )));
    }
    if let Some(Some(d)) = update.retention_days
        && !(1..=36_500).contains(&d)
    {
        return Err(ApiError::BadRequest(
            "retention_days must be between 1 and 36500, or null for none".into(),
        ));
    }
    let store = engine.store().clone();
    let ds = dataset.clone();
    tokio::task::spawn_blocking(move || {
        store.update_settings(&ds, |s| {
            if let Some(days) = update.retention_days {
                s.retention_days = days;
            }
            if let Some(key) = update.sort_key {
                s.sort_key = key.filter(|k| !k.is_empty());
            }
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let summary = engine
        .store()
        .summaries()
        .into_iter()
        .find(|s| s.name == dataset)
        .ok_or_else(|| ApiError::NotFound(format!("unknown dataset {dataset:?}")))?;
    Ok(Json(dataset_json(&summary)).into_response())
}

/// `DELETE /api/v1/datasets/{dataset}` (admin): every event so far is gone from queries at
/// once and from disk at the next retention pass.
async fn delete_dataset(
    State(engine): State<QueryEngine>,
    Path(dataset): Path<String>,
) -> Result<Response, ApiError> {
    known_dataset(&engine, &dataset)?;
    let now = engine.store().clock().now_micros();
    let store = engine.store().clone();
    let ds = dataset.clone();
    tokio::task::spawn_blocking(move || {
        // Strictly after every event so far, including ones stamped this microsecond.
        store.update_settings(&ds, |s| s.deleted_before_us = Some(now + 1))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(serde_json::json!({
        "deleted": dataset,
        "before": eventide_model::time::format_micros(now + 1),
    }))
    .into_response())
}

/// `GET /api/v1/datasets/{dataset}/columns`: each column's type, when it was first and last
/// seen, and an approximate distinct count (HyperLogLog), over the visible data.
async fn get_columns(
    State(engine): State<QueryEngine>,
    Path(dataset): Path<String>,
) -> Result<Response, ApiError> {
    known_dataset(&engine, &dataset)?;
    match engine.columns(&dataset).await {
        Ok(cols) => {
            Ok(Json(serde_json::json!({ "dataset": dataset, "columns": cols })).into_response())
        }
        Err(e) => Ok(query_error(e)),
    }
}

/// Stops a query request that runs longer than its limit: 504 with a JSON error. Dropping
/// the handler's future drops DataFusion's streams, which cancels their work.
async fn time_limit(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error_response(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "the query ran longer than the limit of {} s (--query-timeout-seconds) and was cancelled; narrow its time range or filters",
                limit.as_secs_f64()
            ),
        ),
    }
}

fn query_routes(
    engine: QueryEngine,
    markers: Markers,
    keys: Keys,
    timeout: std::time::Duration,
) -> Router {
    let limited = |r: Router| r.layer(axum::middleware::from_fn_with_state(timeout, time_limit));
    let sql = guard(
        Router::new().route("/api/v1/sql", post(post_sql)),
        keys.clone(),
        Scope::Query,
        true,
    );
    let spec = guard(
        Router::new().route("/api/v1/query/{dataset}", post(post_spec)),
        keys.clone(),
        Scope::Query,
        false,
    );
    let bubbleup = guard(
        Router::new().route("/api/v1/bubbleup/{dataset}", post(post_bubbleup)),
        keys.clone(),
        Scope::Query,
        false,
    );
    // The listing spans datasets: keys limited to some datasets are refused there.
    let listing = guard(
        Router::new().route("/api/v1/datasets", get(list_datasets)),
        keys.clone(),
        Scope::Admin,
        true,
    );
    let admin = guard(
        Router::new().route(
            "/api/v1/datasets/{dataset}",
            axum::routing::put(put_dataset).delete(delete_dataset),
        ),
        keys.clone(),
        Scope::Admin,
        false,
    );
    // A stream, so no time limit.
    let tail = guard(
        Router::new().route("/api/v1/tail/{dataset}", get(crate::tail::tail)),
        keys.clone(),
        Scope::Query,
        false,
    );
    let columns = guard(
        Router::new().route("/api/v1/datasets/{dataset}/columns", get(get_columns)),
        keys,
        Scope::Query,
        false,
    );
    Router::new()
        .merge(limited(sql.with_state(engine.clone())))
        .merge(limited(spec.with_state((engine.clone(), markers))))
        .merge(limited(bubbleup.with_state(engine.clone())))
        .merge(listing.with_state(engine.clone()))
        .merge(admin.with_state(engine.clone()))
        .merge(tail.with_state(engine.clone()))
        .merge(limited(columns.with_state(engine)))
}

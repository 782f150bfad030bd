//! Routes over [`eventide_alerts::Alerts`]: triggers (`/1/triggers`, Honeycomb's shape),
//! conventions, deploy verdicts and DORA metrics. Reading takes a `query` key, changing
//! triggers and conventions an `admin` key.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use eventide_alerts::conventions::Conventions;
use eventide_alerts::dora::{DoraRules, parse_window};
use eventide_alerts::triggers::TriggerInput;
use eventide_alerts::{AlertError, Alerts, MarkerError};
use eventide_ingest::auth::guard;
use eventide_ingest::error::error_response;
use eventide_ingest::{ApiError, Keys, Scope};
use serde::Deserialize;

fn alert_error(e: AlertError) -> Response {
    match e {
        AlertError::Invalid(m) | AlertError::Marker(MarkerError::Invalid(m)) => {
            error_response(StatusCode::BAD_REQUEST, &m)
        }
        AlertError::NotFound(m) => error_response(StatusCode::NOT_FOUND, &m),
        e @ AlertError::Marker(MarkerError::NotFound { .. }) => {
            error_response(StatusCode::NOT_FOUND, &e.to_string())
        }
        e => {
            tracing::error!(error = %e, "alerts request failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error in the alerts store",
            )
        }
    }
}

fn reply(r: Result<serde_json::Value, AlertError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => alert_error(e),
    }
}

async fn list_triggers(State(a): State<Alerts>, Path(dataset): Path<String>) -> Response {
    reply(
        a.triggers()
            .list(&dataset)
            .map(|list| serde_json::Value::Array(list.iter().map(|t| a.trigger_view(t)).collect())),
    )
}

async fn get_trigger(
    State(a): State<Alerts>,
    Path((dataset, id)): Path<(String, String)>,
) -> Response {
    reply(a.triggers().get(&dataset, &id).map(|t| a.trigger_view(&t)))
}

/// Reads and checks a trigger body, and runs its query once.
async fn trigger_input(
    a: &Alerts,
    dataset: &str,
    body: axum::body::Body,
) -> Result<TriggerInput, Response> {
    let mut input: TriggerInput = crate::api::read_json(body)
        .await
        .map_err(IntoResponse::into_response)?;
    eventide_alerts::triggers::Triggers::check(dataset, &mut input).map_err(alert_error)?;
    a.try_trigger(dataset, &input).await.map_err(alert_error)?;
    Ok(input)
}

async fn create_trigger(
    State(a): State<Alerts>,
    Path(dataset): Path<String>,
    body: axum::body::Body,
) -> Response {
    match trigger_input(&a, &dataset, body).await {
        Ok(input) => reply(
            a.triggers()
                .create(&dataset, input)
                .map(|t| a.trigger_view(&t)),
        ),
        Err(r) => r,
    }
}

async fn replace_trigger(
    State(a): State<Alerts>,
    Path((dataset, id)): Path<(String, String)>,
    body: axum::body::Body,
) -> Response {
    match trigger_input(&a, &dataset, body).await {
        Ok(input) => reply(
            a.triggers()
                .replace(&dataset, &id, input)
                .map(|t| a.trigger_view(&t)),
        ),
        Err(r) => r,
    }
}

async fn delete_trigger(
    State(a): State<Alerts>,
    Path((dataset, id)): Path<(String, String)>,
) -> Response {
    reply(
        a.triggers()
            .delete(&dataset, &id)
            .map(|t| serde_json::json!(t)),
    )
}

#[derive(Debug, Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn evaluations(
    State(a): State<Alerts>,
    Path((dataset, id)): Path<(String, String)>,
    Query(q): Query<Limit>,
) -> Response {
    reply(a.triggers().get(&dataset, &id).map(|t| {
        let limit = q
            .limit
            .unwrap_or(100)
            .clamp(1, eventide_alerts::journal::RECENT_PER_TRIGGER);
        serde_json::json!({
            "trigger": a.trigger_view(&t),
            "evaluations": a.journal().recent(&t.id, limit),
        })
    }))
}

fn check_dataset(dataset: &str) -> Result<(), ApiError> {
    eventide_model::dataset::DatasetName::new(dataset)
        .map(|_| ())
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn conventions_json(a: &Alerts, dataset: &str) -> serde_json::Value {
    serde_json::json!({
        "dataset": dataset,
        "custom": a.conventions().is_set(dataset),
        "conventions": a.conventions().get(dataset),
    })
}

async fn get_conventions(State(a): State<Alerts>, Path(dataset): Path<String>) -> Response {
    if let Err(e) = check_dataset(&dataset) {
        return e.into_response();
    }
    Json(conventions_json(&a, &dataset)).into_response()
}

async fn put_conventions(
    State(a): State<Alerts>,
    Path(dataset): Path<String>,
    body: axum::body::Body,
) -> Response {
    if let Err(e) = check_dataset(&dataset) {
        return e.into_response();
    }
    let c: Conventions = match crate::api::read_json(body).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    reply(
        a.conventions()
            .set(&dataset, c)
            .map(|()| conventions_json(&a, &dataset)),
    )
}

async fn delete_conventions(State(a): State<Alerts>, Path(dataset): Path<String>) -> Response {
    if let Err(e) = check_dataset(&dataset) {
        return e.into_response();
    }
    reply(
        a.conventions()
            .reset(&dataset)
            .map(|()| conventions_json(&a, &dataset)),
    )
}

#[derive(Debug, Deserialize)]
struct DeploysQuery {
    service: Option<String>,
    dataset: Option<String>,
    limit: Option<usize>,
}

async fn list_deploys(State(a): State<Alerts>, Query(q): Query<DeploysQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let list = a.deploys(q.service.as_deref(), q.dataset.as_deref(), limit);
    Json(serde_json::json!({ "deploys": list })).into_response()
}

#[derive(Debug, Deserialize)]
struct VerdictQuery {
    /// Hold the request until the verdict is final, at most this long (`30s`, `2m`).
    wait: Option<String>,
}

/// `30`, `30s` or `2m`, in seconds.
fn parse_wait(s: &str) -> Option<i64> {
    let s = s.trim();
    let (n, mult) = match s.strip_suffix('s') {
        Some(n) => (n, 1),
        None => match s.strip_suffix('m') {
            Some(n) => (n, 60),
            None => (s, 1),
        },
    };
    n.parse::<i64>().ok().map(|n| n.saturating_mul(mult))
}

/// The longest `?wait=`.
const MAX_WAIT_S: i64 = 300;

async fn verdict(
    State(a): State<Alerts>,
    Path(marker_id): Path<String>,
    Query(q): Query<VerdictQuery>,
) -> Response {
    let wait = match q.wait.as_deref().map(parse_wait) {
        None => None,
        Some(Some(s)) if (0..=MAX_WAIT_S).contains(&s) => Some(s),
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "wait must be seconds (30, 30s) or minutes (2m), at most {MAX_WAIT_S} s, not {:?}",
                    q.wait.unwrap_or_default()
                ),
            );
        }
    };
    let v = match wait {
        Some(s) => {
            a.wait_verdict(&marker_id, std::time::Duration::from_secs(s as u64))
                .await
        }
        None => a.verdict(&marker_id),
    };
    match v {
        Some(v) => Json(v).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            &format!("no marker with id {marker_id:?}"),
        ),
    }
}

async fn series(State(a): State<Alerts>, Path(marker_id): Path<String>) -> Response {
    match a.deploy_series(&marker_id).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error_response(
            StatusCode::NOT_FOUND,
            &format!("no marker with id {marker_id:?}"),
        ),
        Err(e) => alert_error(e),
    }
}

#[derive(Debug, Deserialize)]
struct DoraQuery {
    service: Option<String>,
    window: Option<String>,
    failure_window: Option<String>,
    deploy_types: Option<String>,
    rollback_types: Option<String>,
    incident_types: Option<String>,
}

fn types(v: Option<String>, default: Vec<String>) -> Vec<String> {
    match v {
        Some(s) => s
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        None => default,
    }
}

async fn dora(State(a): State<Alerts>, Query(q): Query<DoraQuery>) -> Result<Response, ApiError> {
    let service = q
        .service
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the service parameter is required".into()))?;
    let window =
        parse_window(q.window.as_deref().unwrap_or("30d")).map_err(ApiError::BadRequest)?;
    let d = DoraRules::default();
    let rules = DoraRules {
        failure_window_s: match q.failure_window.as_deref() {
            Some(w) => parse_window(w).map_err(|e| ApiError::BadRequest(format!("failure_{e}")))?,
            None => d.failure_window_s,
        },
        deploy_types: types(q.deploy_types, d.deploy_types),
        rollback_types: types(q.rollback_types, d.rollback_types),
        incident_types: types(q.incident_types, d.incident_types),
    };
    Ok(Json(a.dora(&service, window, &rules)).into_response())
}

/// The alerts routes.
pub fn routes(alerts: Alerts, keys: Keys) -> Router {
    let read = guard(
        Router::new()
            .route("/1/triggers/{dataset}", get(list_triggers))
            .route("/1/triggers/{dataset}/{id}", get(get_trigger))
            .route("/1/triggers/{dataset}/{id}/evaluations", get(evaluations))
            .route("/api/v1/conventions/{dataset}", get(get_conventions)),
        keys.clone(),
        Scope::Query,
        false,
    );
    let manage = guard(
        Router::new()
            .route("/1/triggers/{dataset}", axum::routing::post(create_trigger))
            .route(
                "/1/triggers/{dataset}/{id}",
                axum::routing::put(replace_trigger).delete(delete_trigger),
            )
            .route(
                "/api/v1/conventions/{dataset}",
                axum::routing::put(put_conventions).delete(delete_conventions),
            ),
        keys.clone(),
        Scope::Admin,
        false,
    );
    // Deploys and DORA span datasets (a service deploys into several).
    let across = guard(
        Router::new()
            .route("/api/v1/deploys", get(list_deploys))
            .route("/api/v1/deploys/{marker_id}/verdict", get(verdict))
            .route("/api/v1/deploys/{marker_id}/series", get(series))
            .route("/api/v1/dora", get(dora)),
        keys,
        Scope::Query,
        true,
    );
    Router::new()
        .merge(read.with_state(alerts.clone()))
        .merge(manage.with_state(alerts.clone()))
        .merge(across.with_state(alerts))
}

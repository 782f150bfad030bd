//! `GET /api/v1/tail/{dataset}`: a dataset's new events as they become queryable, as
//! server-sent events, filtered by the query builder's WHERE (`filters`, a JSON array of
//! query-spec filters, and `filter_combination`). Served by the process that applies the log
//! (the all-in-one server, a store process).
//!
//! Events: `ready` once subscribed (`{"dataset"}`), then `events` per applied batch with
//! matches (`{"events": [...], "matched": n}`; at most [`MAX_ROWS`] objects, `matched` counts
//! them all), `skipped` when the client fell behind (`{"batches": n}`), and a comment every
//! 15 s to keep proxies from closing the stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use eventide_ingest::error::error_response;
use eventide_query::QueryEngine;
use eventide_query::spec::Filter;
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

/// Most events in one message.
pub const MAX_ROWS: usize = 1000;
/// Most filters.
const MAX_FILTERS: usize = 100;

#[derive(Debug, Deserialize)]
pub struct TailQuery {
    filters: Option<String>,
    filter_combination: Option<String>,
}

struct Tail {
    engine: QueryEngine,
    dataset: String,
    filters: Vec<Filter>,
    any: bool,
    rx: tokio::sync::broadcast::Receiver<eventide_store::Applied>,
    started: bool,
}

impl Tail {
    async fn next_event(&mut self) -> Option<Event> {
        if !self.started {
            self.started = true;
            return Some(
                Event::default()
                    .event("ready")
                    .data(json!({"dataset": self.dataset}).to_string()),
            );
        }
        loop {
            match self.rx.recv().await {
                Ok(a) if a.dataset == self.dataset => {
                    let found = eventide_query::live::matching(
                        &self.engine,
                        &self.dataset,
                        &a.batch,
                        &self.filters,
                        self.any,
                        MAX_ROWS,
                    )
                    .await;
                    match found {
                        Ok((rows, _)) if rows.is_empty() => continue,
                        Ok((rows, matched)) => {
                            let body = json!({"events": rows, "matched": matched});
                            return Some(Event::default().event("events").data(body.to_string()));
                        }
                        Err(e) => {
                            let body = json!({"error": e.to_string()});
                            return Some(Event::default().event("error").data(body.to_string()));
                        }
                    }
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    let body = json!({"batches": n});
                    return Some(Event::default().event("skipped").data(body.to_string()));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn stream(tail: Tail) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(tail, |mut t| async move {
        let e = t.next_event().await?;
        Some((Ok(e), t))
    })
}

/// The handler.
pub async fn tail(
    State(engine): State<QueryEngine>,
    Path(dataset): Path<String>,
    Query(q): Query<TailQuery>,
) -> Response {
    let filters: Vec<Filter> = match q.filters.as_deref().map(serde_json::from_str) {
        None => Vec::new(),
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("filters must be a JSON array of query-spec filters: {e}"),
            );
        }
    };
    if filters.len() > MAX_FILTERS {
        return error_response(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_FILTERS} filters"),
        );
    }
    let any = match q.filter_combination.as_deref() {
        None | Some("AND") => false,
        Some("OR") => true,
        Some(o) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("filter_combination must be AND or OR, not {o:?}"),
            );
        }
    };
    // A dataset not seen yet may still come; filters are checked against it once it has columns.
    if engine.store().snapshot(&dataset).is_some()
        && let Err(e) = engine.filters_predicate(&dataset, &filters, any)
    {
        return error_response(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let rx = engine.store().tail();
    let t = Tail {
        engine,
        dataset,
        filters,
        any,
        rx,
        started: false,
    };
    Sse::new(stream(t))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

//! A toy axum service instrumented with one wide event per request.
//!
//! ```text
//! EVENTIDE_ENDPOINT=http://127.0.0.1:4080 EVENTIDE_KEY=<ingest key> \
//!   cargo run -p eventide-client --example axum_service
//! curl 'http://127.0.0.1:3000/checkout?customer=c42&items=3'
//! ```
//!
//! A middleware starts an event for each request and sends it when the response is ready:
//! method, route, status, duration, user agent, request id. Handlers add what only they know
//! (customer, cart size, whether a cache hit) through the `WideEvent` request extension, so
//! one event describes the whole unit of work and any field can be queried or grouped by.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Query, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use eventide_client::Client;
use serde_json::{Map, Value};

/// Fields a handler adds to its request's event.
#[derive(Clone, Default)]
struct WideEvent(Arc<Mutex<Map<String, Value>>>);

impl WideEvent {
    fn add(&self, name: &str, value: impl Into<Value>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), value.into());
    }
}

async fn instrument(
    Extension(client): Extension<Client>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let fields = WideEvent::default();
    req.extensions_mut().insert(fields.clone());
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = next.run(req).await;

    let mut event = client
        .event()
        .add("service.name", "toy-shop")
        .add("http.method", method)
        .add("http.route", route)
        .add("http.status", response.status().as_u16())
        .add("user_agent", user_agent)
        .add("duration_ms", start.elapsed().as_secs_f64() * 1e3)
        .add("request_id", format!("{:016x}", rand::random::<u64>()))
        .add("build_id", option_env!("BUILD_ID").unwrap_or("dev"));
    let handler_fields = std::mem::take(&mut *fields.0.lock().unwrap_or_else(|p| p.into_inner()));
    for (k, v) in handler_fields {
        event.set(k, v);
    }
    // Never blocks the request: a full queue drops the event and counts it.
    if let Err(e) = event.send() {
        tracing::debug!(error = %e, "event not queued");
    }
    response
}

#[derive(serde::Deserialize)]
struct Checkout {
    customer: Option<String>,
    items: Option<u32>,
}

async fn checkout(Extension(ev): Extension<WideEvent>, Query(q): Query<Checkout>) -> Response {
    let customer = q.customer.unwrap_or_else(|| "anonymous".into());
    let items = q.items.unwrap_or(0);
    ev.add("customer.id", customer.as_str());
    ev.add("cart.items", items);
    ev.add("cache.hit", items % 2 == 0);
    if items == 0 {
        ev.add("error", "empty cart");
        return (StatusCode::BAD_REQUEST, "empty cart\n").into_response();
    }
    format!("charged {customer} for {items} items\n").into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder()
        .endpoint(std::env::var("EVENTIDE_ENDPOINT").unwrap_or("http://127.0.0.1:4080".into()))
        .key(std::env::var("EVENTIDE_KEY")?)
        .dataset("toy-shop")
        .build()?;
    let app = Router::new()
        .route("/checkout", get(checkout))
        .route("/health", get(|| async { "ok\n" }))
        .layer(middleware::from_fn(instrument))
        .layer(Extension(client.clone()));
    let addr: SocketAddr = std::env::var("LISTEN")
        .unwrap_or("127.0.0.1:3000".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("toy-shop listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // Delivers what is still queued before exiting.
    let stats = client.shutdown().await;
    println!(
        "events sent: {}, dropped: {}, failed: {}",
        stats.sent, stats.dropped, stats.failed
    );
    Ok(())
}

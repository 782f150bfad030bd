//! # eventide-ui
//!
//! The query web page served by `eventide serve` at `/`: plain ES modules, no build step
//! (`assets/`), with uPlot (MIT, vendored from npm in `assets/vendor/`) for the charts. The
//! assets are embedded in the binary; they carry no business logic: every answer comes from
//! the HTTP API with the key the page asks for once (kept in the browser's local storage).
//! Browser tests (Playwright driving Chromium) are in `tests/browser/`, run by the server's
//! `tests/ui.rs`.
//!
//! # Invariants
//! - The assets are public (no key), like `/healthz`; everything they show needs a key.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, extract::Path};

/// (path under `/ui/`, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "core.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/core.js"),
    ),
    (
        "builder.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/builder.js"),
    ),
    (
        "results.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/results.js"),
    ),
    (
        "deploys.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/deploys.js"),
    ),
    (
        "triggers.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/triggers.js"),
    ),
    (
        "tail.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/tail.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
    (
        "vendor/uPlot.esm.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot.esm.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot.min.css"),
    ),
];

const INDEX: &str = include_str!("../assets/index.html");

fn asset(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut r = bytes.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// For working on the page: `EVENTIDE_UI_DIR=ui/assets` serves the files from that directory
/// at each request instead of the copies built in (the same names only).
fn from_dir(path: &str) -> Option<Vec<u8>> {
    let dir = std::env::var_os("EVENTIDE_UI_DIR")?;
    std::fs::read(std::path::Path::new(&dir).join(path)).ok()
}

async fn index() -> Response {
    match from_dir("index.html") {
        Some(b) => asset_owned("text/html; charset=utf-8", b),
        None => asset("text/html; charset=utf-8", INDEX.as_bytes()),
    }
}

fn asset_owned(content_type: &'static str, bytes: Vec<u8>) -> Response {
    let mut r = bytes.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn file(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((p, t, b)) => match from_dir(p) {
            Some(owned) => asset_owned(t, owned),
            None => asset(t, b),
        },
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// `GET /` (the page) and `GET /ui/{asset}`, without keys.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(file))
}

//! `eventide serve`: configuration and startup.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use eventide_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog};
use eventide_ingest::{IngestState, Keys, SchemaRegistry};
use eventide_model::Limits;
use eventide_query::QueryEngine;
use eventide_store::{Store, StoreConfig};
use tracing::info;

/// Settings of `eventide serve`. Every flag also reads an `EVENTIDE_*` variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for the log, segments, catalog and keys.
    #[arg(long, env = "EVENTIDE_DATA_DIR", default_value = "./eventide-data")]
    pub data_dir: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, env = "EVENTIDE_HTTP", default_value = "127.0.0.1:4080")]
    pub http: SocketAddr,
    /// Accepted API keys as `scope:secret,…` (scopes: ingest, query, admin). Without any key
    /// configured, the first start generates an ingest and an admin key and prints them.
    #[arg(long, env = "EVENTIDE_KEYS", hide_env_values = true)]
    pub keys: Option<String>,
    /// Flush a dataset's hot tail to a Parquet segment after this many seconds.
    #[arg(long, env = "EVENTIDE_FLUSH_SECONDS", default_value_t = 30)]
    pub flush_seconds: u64,
    /// Flush a dataset's hot tail to a Parquet segment once it holds this many rows.
    #[arg(long, env = "EVENTIDE_FLUSH_ROWS", default_value_t = 1_000_000)]
    pub flush_rows: usize,
    /// Largest request body for batch endpoints in bytes, after decompression.
    #[arg(long, env = "EVENTIDE_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Size of one log segment file in bytes.
    #[arg(long, env = "EVENTIDE_LOG_SEGMENT_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub log_segment_bytes: u64,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    let (keys, generated) =
        Keys::load(args.keys.as_deref(), &args.data_dir).context("loading api keys")?;

    let mut log_config = EmbeddedLogConfig::new(args.data_dir.join("log"));
    log_config.segment_bytes = args.log_segment_bytes;
    log_config.min_next_offset =
        eventide_store::committed_high_water(&args.data_dir).context("reading the catalog")?;
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(log_config).context("opening the embedded log")?);

    let mut store_config = StoreConfig::new(&args.data_dir);
    store_config.flush_age = Duration::from_secs(args.flush_seconds.max(1));
    store_config.flush_rows = args.flush_rows.max(1);
    let store = Store::open(store_config, log.clone())
        .await
        .context("opening the store")?;

    let registry = Arc::new(SchemaRegistry::new());
    registry.seed(store.schemas());
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        ..Limits::default()
    };
    let ingest = IngestState::new(log, registry, limits);
    let engine = QueryEngine::new(store.clone()).context("starting the query engine")?;
    let app = crate::api::app(ingest, engine, keys);

    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding {}", args.http))?;
    let addr = listener.local_addr()?;
    println!(
        "eventide listening on http://{addr} (data in {})",
        args.data_dir.display()
    );
    for (scope, secret) in &generated {
        println!("generated {} key: {secret}", scope.as_str());
    }
    if !generated.is_empty() {
        println!("(keys are stored hashed and will not be shown again)");
    }
    info!(%addr, "accepting traffic");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("http server")?;
    info!("shutting down: flushing hot data to segments");
    store.flush_all().await.context("flushing on shutdown")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

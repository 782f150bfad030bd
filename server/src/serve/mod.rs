//! `eventide serve`: configuration and startup.

use eventide_model::memory::MemoryGuard;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use eventide_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, KafkaConfig, KafkaLog};
use eventide_ingest::{IngestState, Keys, SchemaRegistry};
use eventide_model::Limits;
use eventide_query::QueryEngine;
use eventide_store::{Store, StoreConfig};
use tracing::info;

/// What one `eventide serve` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Ingest, store and query in one process.
    All,
    /// Only the ingest endpoints: events go to Kafka.
    Ingest,
    /// Only consume Kafka into Parquet segments (several store processes share the work).
    Store,
    /// Only the query endpoints, over the segments in the shared data directory.
    Query,
}

/// Settings of `eventide serve`. Every flag also reads an `EVENTIDE_*` variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Use Apache Kafka at these brokers (`host:port,…`) as the log instead of the embedded one.
    #[arg(long, env = "EVENTIDE_KAFKA")]
    pub kafka: Option<String>,
    /// What this process does; split roles need --kafka (except query).
    #[arg(long, env = "EVENTIDE_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// Kafka topic holding every dataset's batches.
    #[arg(long, env = "EVENTIDE_KAFKA_TOPIC", default_value = "eventide-events")]
    pub kafka_topic: String,
    /// Partitions of the Kafka topic when Eventide creates it (the most store processes that
    /// can share the work).
    #[arg(long, env = "EVENTIDE_KAFKA_PARTITIONS", default_value_t = 4)]
    pub kafka_partitions: i32,
    /// Replication factor of the Kafka topic when Eventide creates it.
    #[arg(long, env = "EVENTIDE_KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i32,
    /// Kafka consumer group of the store processes.
    #[arg(long, env = "EVENTIDE_KAFKA_GROUP", default_value = "eventide-store")]
    pub kafka_group: String,
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
    /// Flush a hot tail (one dataset, one log partition) to a Parquet segment after this many
    /// seconds. In split roles this bounds how soon a query process sees new events.
    #[arg(long, env = "EVENTIDE_FLUSH_SECONDS", default_value_t = 30)]
    pub flush_seconds: u64,
    /// Flush a hot tail (one dataset, one log partition) once it holds this many rows.
    #[arg(long, env = "EVENTIDE_FLUSH_ROWS", default_value_t = 250_000)]
    pub flush_rows: usize,
    /// Largest request body for batch endpoints in bytes, after decompression.
    #[arg(long, env = "EVENTIDE_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Also receive events as UDP datagrams of JSON lines on this address (e.g. 0.0.0.0:4081).
    #[arg(long, env = "EVENTIDE_UDP")]
    pub udp: Option<SocketAddr>,
    /// Look for segments to merge, expired data and files to delete this often (0: never
    /// merge; retention and file cleanup still run every second).
    #[arg(long, env = "EVENTIDE_COMPACTION_SECONDS", default_value_t = 10)]
    pub compaction_seconds: u64,
    /// Largest segment file compaction writes, in bytes (it also bounds one merge's input).
    #[arg(long, env = "EVENTIDE_COMPACTION_TARGET_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub compaction_target_bytes: u64,
    /// A time window is closed (merged into its final files) this many seconds after it ends.
    #[arg(long, env = "EVENTIDE_COMPACTION_GRACE_SECONDS", default_value_t = 300)]
    pub compaction_grace_seconds: u64,
    /// A segment file dropped by compaction or retention is deleted this many seconds later
    /// (and only once no local query that might read it is running).
    #[arg(long, env = "EVENTIDE_RETIRE_GRACE_SECONDS", default_value_t = 60)]
    pub retire_grace_seconds: u64,
    /// Columns that get a Parquet bloom filter, for fast `=` lookups of high-cardinality ids.
    #[arg(
        long,
        env = "EVENTIDE_BLOOM_COLUMNS",
        value_delimiter = ',',
        default_value = "trace.trace_id,user_id"
    )]
    pub bloom_columns: Vec<String>,
    /// Compacted segments are sorted by these columns (after the time window) so filters on
    /// them prune row groups.
    #[arg(
        long,
        env = "EVENTIDE_SORT_KEY",
        value_delimiter = ',',
        default_value = "service.name"
    )]
    pub sort_key: Vec<String>,
    /// The address users open the UI at, for links in webhook payloads (default: the --http
    /// address).
    #[arg(long, env = "EVENTIDE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Evaluate triggers and deploy checks in this process (with several query processes over
    /// one data directory, leave it on in exactly one).
    #[arg(long, env = "EVENTIDE_EVALUATE_ALERTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub evaluate_alerts: bool,
    /// Trigger windows and deploy checks evaluated at once.
    #[arg(long, env = "EVENTIDE_ALERT_CONCURRENCY", default_value_t = 4)]
    pub alert_concurrency: usize,
    /// A trigger window is evaluated this many milliseconds after it ends (so its events are
    /// visible: at least the log's freshness).
    #[arg(long, env = "EVENTIDE_ALERT_DELAY_MS", default_value_t = 2000)]
    pub alert_delay_ms: u64,
    /// Most request bytes ingest reads, decodes and appends at once, in MiB: past it, ingest
    /// requests get 503 + `Retry-After` at once instead of queueing (bounds ingest memory and
    /// how long a request can wait).
    #[arg(long, env = "EVENTIDE_MAX_INFLIGHT_MB", default_value_t = 256)]
    pub max_inflight_mb: usize,
    /// Most memory the store's hot tails (events read from the log, not yet in a segment) may
    /// hold, in MiB: past it, the store stops reading the log until flushes catch up (the log
    /// keeps the events on disk; ingest goes on).
    #[arg(long, env = "EVENTIDE_MAX_HOT_MB", default_value_t = 1024)]
    pub max_hot_mb: usize,
    /// Bound of the whole process's resident memory, in MiB (0: none). Above 90 % of it, new
    /// ingest requests get 503 + `Retry-After` until it is back under 80 %, and a merge starts
    /// only when its estimated peak fits under 90 %; queries and `/healthz` still answer. Set
    /// it below the memory the machine or container gives Eventide, and at least twice
    /// `--max-hot-mb` plus `--max-inflight-mb`.
    #[arg(long, env = "EVENTIDE_MAX_MEMORY_MB", default_value_t = 0)]
    pub max_memory_mb: u64,
    /// Longest an ingest request waits to be decoded, in milliseconds, before it gets 503 +
    /// `Retry-After`: under sustained overload, the excess is refused at once rather than
    /// every request waiting longer.
    #[arg(long, env = "EVENTIDE_MAX_QUEUE_MS", default_value_t = 500)]
    pub max_queue_ms: u64,
    /// Memory the running queries share, in MiB, for their sorts, aggregations and joins
    /// (sorts spill to disk first); a query that needs more is refused with 422. 0: a quarter
    /// of `--max-memory-mb` when that is set, else no limit.
    #[arg(long, env = "EVENTIDE_QUERY_MEMORY_MB", default_value_t = 0)]
    pub query_memory_mb: u64,
    /// A query request (SQL, spec, BubbleUp, column statistics) running longer than this is
    /// cancelled and answered 504.
    #[arg(long, env = "EVENTIDE_QUERY_TIMEOUT_SECONDS", default_value_t = 120)]
    pub query_timeout_seconds: u64,
    /// Serve HTTPS: the PEM certificate chain (with --tls-key).
    #[arg(long, env = "EVENTIDE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serve HTTPS: the PEM private key (with --tls-cert).
    #[arg(long, env = "EVENTIDE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Size of one log segment file in bytes.
    #[arg(long, env = "EVENTIDE_LOG_SEGMENT_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub log_segment_bytes: u64,
    /// Record one event per API request (route, status, duration, dataset, events accepted
    /// and refused, bytes a query read, the error) into this dataset, e.g. `_eventide`
    /// (roles all and ingest).
    #[arg(long, env = "EVENTIDE_SELF_DATASET")]
    pub self_dataset: Option<String>,
    /// A TOML file of these settings by flag name (`max-memory-mb = 1536`); the command line
    /// and `EVENTIDE_*` variables override it.
    #[arg(long, env = "EVENTIDE_CONFIG")]
    pub config: Option<PathBuf>,
    /// For tests and replays: the process's clock reads this RFC3339 time at start and runs
    /// at real speed from there (receive times, query windows, retention, which compaction
    /// windows are closed, alerts). Default: the system clock.
    #[arg(long, env = "EVENTIDE_CLOCK_START")]
    pub clock_start: Option<String>,
}

/// Samples the process's RSS into `guard` every 50 ms, for as long as anything else holds it.
fn spawn_memory_sampler(guard: &Arc<MemoryGuard>) {
    let weak = Arc::downgrade(guard);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(guard) = weak.upgrade() else { return };
            let Some(rss) = eventide_model::memory::resident_bytes() else {
                tracing::warn!(
                    "--max-memory-mb: this platform reports no RSS; the bound is not enforced"
                );
                return;
            };
            match guard.observe(rss) {
                Some(true) => tracing::warn!(
                    rss_mib = rss >> 20,
                    limit_mib = guard.limit() >> 20,
                    "memory above 90% of --max-memory-mb: refusing ingest and deferring merges until it is under 80%"
                ),
                Some(false) => tracing::info!(
                    rss_mib = rss >> 20,
                    "memory under 80% of --max-memory-mb: ingest resumes"
                ),
                None => {}
            }
        }
    });
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    crate::faultpoints::watch_from_env();
    eventide_durable::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    let (keys, generated) =
        Keys::load(args.keys.as_deref(), &args.data_dir).context("loading api keys")?;

    let clock = match &args.clock_start {
        None => eventide_model::time::Clock::system(),
        Some(s) => {
            let us = eventide_model::time::parse_time_str(s)
                .with_context(|| format!("--clock-start {s:?} is not an RFC3339 time"))?;
            tracing::warn!(start = %s, "the clock starts at --clock-start, not the system time");
            eventide_model::time::Clock::starting_at(us)
        }
    };
    let mut store_config = StoreConfig::new(&args.data_dir);
    store_config.clock = clock.clone();
    store_config.flush_age = Duration::from_secs(args.flush_seconds.max(1));
    store_config.flush_rows = args.flush_rows.max(1);
    store_config.bloom_columns = args.bloom_columns.clone();
    store_config.sort_key = args.sort_key.clone();
    store_config.merge_policy = (args.compaction_seconds > 0).then(|| {
        Arc::new(eventide_store::compact::TimeWindowPolicy {
            grace_us: i64::try_from(args.compaction_grace_seconds)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
            target_bytes: args.compaction_target_bytes.max(1),
            max_input_bytes: args.compaction_target_bytes.max(1),
            ..Default::default()
        }) as Arc<dyn eventide_store::compact::MergePolicy>
    });
    store_config.compaction_interval = Duration::from_secs(args.compaction_seconds.max(1));
    store_config.retire_grace = Duration::from_secs(args.retire_grace_seconds);
    store_config.max_hot_bytes = args.max_hot_mb.max(1).saturating_mul(1024 * 1024);
    let memory = (args.max_memory_mb > 0).then(|| {
        let guard = MemoryGuard::new(args.max_memory_mb.saturating_mul(1024 * 1024));
        spawn_memory_sampler(&guard);
        guard
    });
    store_config.memory = memory.clone();
    // Only this process uses the data directory with the embedded log: files a previous run
    // left unreferenced can go at once.
    store_config.exclusive = args.kafka.is_none();

    // With Kafka, this process's identity within the data directory (static group
    // membership, transactions), held until it exits.
    let mut _instance = None;
    let log: Option<Arc<dyn EventLog>> = match (&args.kafka, args.role) {
        (_, Role::Query) => None,
        (Some(brokers), _) => {
            let mut k = KafkaConfig::new(brokers.clone());
            k.topic = args.kafka_topic.clone();
            k.partitions = args.kafka_partitions.max(1);
            k.replication = args.kafka_replication.max(1);
            k.group = args.kafka_group.clone();
            let instance = eventide_eventlog::Instance::claim(&args.data_dir)
                .context("claiming this process's member slot in the data directory")?;
            info!(id = %instance.id, slot = %instance.dir.display(), "kafka member identity");
            k.group_instance_id = Some(instance.id.clone());
            k.transactional_id = Some(format!("{}-tx", instance.id));
            _instance = Some(instance);
            info!(brokers = %brokers, topic = %k.topic, "using apache kafka as the log");
            Some(Arc::new(
                KafkaLog::connect(k).await.context("connecting to kafka")?,
            ))
        }
        (None, Role::All) => {
            let mut log_config = EmbeddedLogConfig::new(args.data_dir.join("log"));
            log_config.segment_bytes = args.log_segment_bytes;
            log_config.min_next_offset = eventide_store::committed_high_water(&args.data_dir, 0)
                .context("reading the catalog")?;
            Some(Arc::new(
                EmbeddedLog::open(log_config).context("opening the embedded log")?,
            ))
        }
        (None, role) => {
            anyhow::bail!("--role {role:?} needs --kafka (only all and query run without it)")
        }
    };
    let store = match (args.role, &log) {
        (Role::All | Role::Store, Some(log)) => Store::open(store_config, log.clone()).await,
        _ => Store::open_read_only(store_config).await,
    }
    .context("opening the store")?;

    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        ..Limits::default()
    };
    let ingest = match (args.role, &log) {
        (Role::All | Role::Ingest, Some(log)) => {
            let registry = Arc::new(SchemaRegistry::new());
            registry.seed(store.schemas());
            let mut state = IngestState::new(log.clone(), registry, limits)
                .with_clock(clock.clone())
                .with_inflight_bytes(args.max_inflight_mb.saturating_mul(1024 * 1024))
                .with_max_queue_wait(Duration::from_millis(args.max_queue_ms.max(1)));
            if let Some(guard) = &memory {
                state = state.with_memory_guard(guard.clone());
            }
            Some(state)
        }
        _ => None,
    };
    // Bound before the alerts open, so their links carry the real port (`--http :0`).
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding {}", args.http))?;
    let addr = listener.local_addr()?;
    // Markers live with the query API (they are drawn on its charts and read in its SQL).
    let engine = match args.role {
        Role::All | Role::Query => {
            let query_memory_mb = match (args.query_memory_mb, args.max_memory_mb) {
                (0, 0) => None,
                (0, bound) => Some(bound / 4),
                (mb, _) => Some(mb),
            };
            let engine = QueryEngine::with_memory_limit(
                store.clone(),
                query_memory_mb.map(|mb| mb.saturating_mul(1024 * 1024) as usize),
            )
            .context("starting the query engine")?;
            let markers = eventide_alerts::Markers::open(&args.data_dir)
                .context("opening the markers")?
                .with_clock(clock.clone());
            engine
                .register_system_table(
                    "markers",
                    Arc::new(eventide_alerts::MarkersTable::new(markers.clone())),
                )
                .context("registering eventide.markers")?;
            let alerts = eventide_alerts::Alerts::open(
                &args.data_dir,
                engine.clone(),
                markers,
                eventide_alerts::RunnerConfig {
                    public_url: args.public_url.clone().unwrap_or_else(|| {
                        let scheme = if args.tls_cert.is_some() {
                            "https"
                        } else {
                            "http"
                        };
                        format!("{scheme}://{addr}")
                    }),
                    concurrency: args.alert_concurrency.max(1),
                    delay: Duration::from_millis(args.alert_delay_ms),
                    ..Default::default()
                },
            )
            .context("opening the alerts state")?;
            Some((engine, alerts))
        }
        _ => None,
    };
    // One process evaluates triggers and deploy checks (several query processes over one
    // data directory: turn it off on all but one).
    let _alerts_runner = match &engine {
        Some((_, alerts)) if args.evaluate_alerts => Some(AbortOnDrop(alerts.start())),
        _ => None,
    };
    let udp = match (&args.udp, &ingest) {
        (Some(addr), Some(state)) => Some(
            eventide_ingest::udp::UdpReceiver::start(*addr, state.clone())
                .with_context(|| format!("binding udp {addr}"))?,
        ),
        (Some(_), None) => anyhow::bail!("--udp needs a role that ingests (all or ingest)"),
        (None, _) => None,
    };
    let self_events = match (&args.self_dataset, &ingest) {
        (Some(name), Some(state)) => {
            eventide_model::DatasetName::new(name)
                .with_context(|| format!("--self-dataset {name:?}"))?;
            let role = match args.role {
                Role::All => "all",
                Role::Ingest => "ingest",
                Role::Store => "store",
                Role::Query => "query",
            };
            let (events, writer) =
                crate::selfevents::SelfEvents::start(name.clone(), role, state.clone());
            let sink = events.clone();
            store.watch(Arc::new(move |a| sink.store_activity(a)));
            Some((events, writer))
        }
        (Some(_), None) => {
            anyhow::bail!("--self-dataset needs a role that ingests (all or ingest)")
        }
        (None, _) => None,
    };
    let app = crate::api::app(
        ingest,
        engine,
        keys,
        udp.as_ref().map(|u| u.stats()),
        Duration::from_secs(args.query_timeout_seconds.max(1)),
        self_events.as_ref().map(|(s, _)| s.clone()),
        crate::api::StoreHandles {
            health: store.clone(),
            // An ingest process's store view is not kept up to date: no store figures there.
            figures: (args.role != Role::Ingest).then(|| store.clone()),
        },
    );

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    println!(
        "eventide listening on {}://{addr} (data in {})",
        if tls.is_some() { "https" } else { "http" },
        args.data_dir.display()
    );
    if let Some(u) = &udp {
        println!("eventide receiving udp on {}", u.local_addr());
    }
    for (scope, secret) in &generated {
        println!("generated {} key: {secret}", scope.as_str());
    }
    if !generated.is_empty() {
        println!("(keys are stored hashed and will not be shown again)");
    }
    info!(%addr, "accepting traffic");
    match tls {
        Some(config) => axum::serve(crate::tls::TlsListener::new(listener, config)?, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("https server")?,
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("http server")?,
    }
    if let Some((events, writer)) = self_events {
        // The requests served until now are written before the store's last flush.
        events.close();
        if tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .is_err()
        {
            tracing::warn!("shutting down: the last self events were not written within 5 s");
        }
    }
    if matches!(args.role, Role::All | Role::Store) {
        info!("shutting down: flushing hot data to segments");
        store.flush_all().await.context("flushing on shutdown")?;
    }
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

/// Stops a background task when dropped (at shutdown).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

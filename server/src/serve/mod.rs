//! `eventide serve`: the process's parts opened in order (clock, log, store, ingest, query and
//! alerts, UDP, self events), the HTTP edge bound over them, and the shutdown. The settings are
//! in [`args`], by concern.

mod args;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use eventide_alerts::Alerts;
use eventide_eventlog::{EmbeddedLog, EventLog, Instance, KafkaLog};
use eventide_ingest::udp::UdpReceiver;
use eventide_ingest::{IngestState, Keys, SchemaRegistry};
use eventide_model::memory::MemoryGuard;
use eventide_model::time::Clock;
use eventide_query::QueryEngine;
use eventide_store::Store;
use tokio::task::JoinHandle;
use tracing::info;

pub use args::{Role, ServeArgs};

use crate::selfevents::SelfEvents;

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
    let clock = args.clock()?;
    let memory = memory_guard(args.max_memory_mb);
    // With Kafka, `_instance` is this process's identity within the data directory (static
    // group membership, transactions), held until it exits.
    let (log, _instance) = open_log(&args).await?;
    let store = open_store(&args, &log, clock.clone(), memory.clone()).await?;
    let ingest = open_ingest(&args, &log, &store, &clock, &memory);
    // Bound before the alerts open, so their links carry the real port (`--http :0`).
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding {}", args.http))?;
    let addr = listener.local_addr()?;
    let engine = open_query(&args, &store, &clock, addr)?;
    // One process evaluates triggers and deploy checks (several query processes over one
    // data directory: turn it off on all but one).
    let _alerts_runner = match &engine {
        Some((_, alerts)) if args.alerts.evaluate_alerts => Some(AbortOnDrop(alerts.start())),
        _ => None,
    };
    let udp = start_udp(&args, &ingest)?;
    let self_events = start_self_events(&args, &ingest, &store)?;
    let app = crate::api::app(
        ingest,
        engine,
        keys,
        udp.as_ref().map(UdpReceiver::stats),
        args.query.timeout(),
        self_events.as_ref().map(|(s, _)| s.clone()),
        crate::api::StoreHandles {
            health: store.clone(),
            // An ingest process's store view is not kept up to date: no store figures there.
            figures: args.role.has_store_figures().then(|| store.clone()),
        },
    );
    let tls = args.tls.server_config()?;
    announce(&args, addr, tls.is_some(), udp.as_ref(), &generated);
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
    shut_down(args.role, self_events, &store).await
}

/// The process's memory bound (`--max-memory-mb`), sampled every 50 ms.
fn memory_guard(max_memory_mb: u64) -> Option<Arc<MemoryGuard>> {
    (max_memory_mb > 0).then(|| {
        let guard = MemoryGuard::new(max_memory_mb.saturating_mul(1024 * 1024));
        spawn_memory_sampler(&guard);
        guard
    })
}

/// The log this role needs: none for a query process, Kafka with `--kafka` (and this
/// process's member identity), else the embedded one (role `all` only).
async fn open_log(
    args: &ServeArgs,
) -> anyhow::Result<(Option<Arc<dyn EventLog>>, Option<Instance>)> {
    if !args.role.logs() {
        return Ok((None, None));
    }
    match (&args.log.kafka, args.role) {
        (Some(brokers), _) => {
            let mut k = args.log.kafka_config(brokers);
            let instance = Instance::claim(&args.data_dir)
                .context("claiming this process's member slot in the data directory")?;
            info!(id = %instance.id, slot = %instance.dir.display(), "kafka member identity");
            k.group_instance_id = Some(instance.id.clone());
            k.transactional_id = Some(format!("{}-tx", instance.id));
            info!(brokers = %brokers, topic = %k.topic, "using apache kafka as the log");
            let log = KafkaLog::connect(k).await.context("connecting to kafka")?;
            Ok((Some(Arc::new(log)), Some(instance)))
        }
        (None, Role::All) => {
            let mut config = args.log.embedded_config(&args.data_dir);
            config.min_next_offset = eventide_store::committed_high_water(&args.data_dir, 0)
                .context("reading the catalog")?;
            let log = EmbeddedLog::open(config).context("opening the embedded log")?;
            Ok((Some(Arc::new(log)), None))
        }
        (None, role) => {
            anyhow::bail!(
                "--role {} needs --kafka (only all and query run without it)",
                role.name()
            )
        }
    }
}

/// The store: applying the log where this role stores, read-only otherwise.
async fn open_store(
    args: &ServeArgs,
    log: &Option<Arc<dyn EventLog>>,
    clock: Clock,
    memory: Option<Arc<MemoryGuard>>,
) -> anyhow::Result<Store> {
    let mut config = args.store.store_config(&args.data_dir, clock, memory);
    // Only this process uses the data directory with the embedded log: files a previous run
    // left unreferenced can go at once.
    config.exclusive = args.log.kafka.is_none();
    match (args.role.stores(), log) {
        (true, Some(log)) => Store::open(config, log.clone()).await,
        _ => Store::open_read_only(config).await,
    }
    .context("opening the store")
}

/// The ingest path, where this role ingests: schemas seeded from the store, the request
/// limits and admission bounds.
fn open_ingest(
    args: &ServeArgs,
    log: &Option<Arc<dyn EventLog>>,
    store: &Store,
    clock: &Clock,
    memory: &Option<Arc<MemoryGuard>>,
) -> Option<IngestState> {
    let log = log.as_ref().filter(|_| args.role.ingests())?;
    let registry = Arc::new(SchemaRegistry::new());
    registry.seed(store.schemas());
    let mut state = IngestState::new(log.clone(), registry, args.ingest.limits())
        .with_clock(clock.clone())
        .with_inflight_bytes(args.ingest.inflight_bytes())
        .with_max_queue_wait(args.ingest.max_queue_wait());
    if let Some(guard) = memory {
        state = state.with_memory_guard(guard.clone());
    }
    Some(state)
}

/// The query engine with markers and alerts, where this role queries (markers live with the
/// query API: they are drawn on its charts and read in its SQL).
fn open_query(
    args: &ServeArgs,
    store: &Store,
    clock: &Clock,
    addr: SocketAddr,
) -> anyhow::Result<Option<(QueryEngine, Alerts)>> {
    if !args.role.queries() {
        return Ok(None);
    }
    let engine =
        QueryEngine::with_memory_limit(store.clone(), args.query.memory_limit(args.max_memory_mb))
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
    let alerts = Alerts::open(
        &args.data_dir,
        engine.clone(),
        markers,
        args.alerts.runner_config(args.tls.scheme(), addr),
    )
    .context("opening the alerts state")?;
    Ok(Some((engine, alerts)))
}

/// The UDP receiver (`--udp`), which needs a role that ingests.
fn start_udp(
    args: &ServeArgs,
    ingest: &Option<IngestState>,
) -> anyhow::Result<Option<UdpReceiver>> {
    match (&args.ingest.udp, ingest) {
        (Some(addr), Some(state)) => Ok(Some(
            UdpReceiver::start(*addr, state.clone())
                .with_context(|| format!("binding udp {addr}"))?,
        )),
        (Some(_), None) => anyhow::bail!("--udp needs a role that ingests (all or ingest)"),
        (None, _) => Ok(None),
    }
}

/// Eventide's own request events (`--self-dataset`) and their writer task.
type SelfEventsRunning = (Arc<SelfEvents>, JoinHandle<()>);

/// The self events (`--self-dataset`), which need a role that ingests; the store's flushes
/// and merges become events too.
fn start_self_events(
    args: &ServeArgs,
    ingest: &Option<IngestState>,
    store: &Store,
) -> anyhow::Result<Option<SelfEventsRunning>> {
    match (&args.ingest.self_dataset, ingest) {
        (Some(name), Some(state)) => {
            eventide_model::DatasetName::new(name)
                .with_context(|| format!("--self-dataset {name:?}"))?;
            let (events, writer) = SelfEvents::start(name.clone(), args.role.name(), state.clone());
            let sink = events.clone();
            store.watch(Arc::new(move |a| sink.store_activity(a)));
            Ok(Some((events, writer)))
        }
        (Some(_), None) => {
            anyhow::bail!("--self-dataset needs a role that ingests (all or ingest)")
        }
        (None, _) => Ok(None),
    }
}

/// What the operator reads at start: the address, the UDP address, generated keys.
fn announce(
    args: &ServeArgs,
    addr: SocketAddr,
    tls: bool,
    udp: Option<&UdpReceiver>,
    generated: &[(eventide_ingest::auth::Scope, String)],
) {
    println!(
        "eventide listening on {}://{addr} (data in {})",
        if tls { "https" } else { "http" },
        args.data_dir.display()
    );
    if let Some(u) = udp {
        println!("eventide receiving udp on {}", u.local_addr());
    }
    for (scope, secret) in generated {
        println!("generated {} key: {secret}", scope.as_str());
    }
    if !generated.is_empty() {
        println!("(keys are stored hashed and will not be shown again)");
    }
}

/// After the HTTP server stopped: the last self events written, then the hot data flushed.
async fn shut_down(
    role: Role,
    self_events: Option<SelfEventsRunning>,
    store: &Store,
) -> anyhow::Result<()> {
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
    if role.stores() {
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

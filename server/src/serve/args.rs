//! The settings of `eventide serve`, in blocks by concern (log, store, ingest, query, alerts,
//! TLS), each with its conversion into the configuration of the part it sets beside it. Every
//! flag also reads an `EVENTIDE_*` variable and a `--config` file setting of the same name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use eventide_eventlog::{EmbeddedLogConfig, KafkaConfig};
use eventide_model::Limits;
use eventide_model::memory::MemoryGuard;
use eventide_model::time::Clock;
use eventide_store::StoreConfig;
use eventide_store::compact::{MergePolicy, TimeWindowPolicy};

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

impl Role {
    /// Whether the process takes events in (HTTP ingest, UDP, self events).
    pub fn ingests(self) -> bool {
        matches!(self, Role::All | Role::Ingest)
    }

    /// Whether the process applies the log to the store (flushes, merges, retention).
    pub fn stores(self) -> bool {
        matches!(self, Role::All | Role::Store)
    }

    /// Whether the process answers queries (and so serves markers, alerts and the UI).
    pub fn queries(self) -> bool {
        matches!(self, Role::All | Role::Query)
    }

    /// Whether the process needs a log at all (a query process reads only segments).
    pub fn logs(self) -> bool {
        self != Role::Query
    }

    /// Whether the process's store view is kept up to date (all but an ingest process).
    pub fn has_store_figures(self) -> bool {
        self != Role::Ingest
    }

    /// The role's name, as `--role` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingest => "ingest",
            Role::Store => "store",
            Role::Query => "query",
        }
    }
}

/// Settings of `eventide serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// What this process does; split roles need --kafka (except query).
    #[arg(long, env = "EVENTIDE_ROLE", value_enum, default_value = "all")]
    pub role: Role,
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
    /// Bound of the whole process's resident memory, in MiB (0: none). Above 90 % of it, new
    /// ingest requests get 503 + `Retry-After` until it is back under 80 %, and a merge starts
    /// only when its estimated peak fits under 90 %; queries and `/healthz` still answer. Set
    /// it below the memory the machine or container gives Eventide, and at least twice
    /// `--max-hot-mb` plus `--max-inflight-mb`.
    #[arg(long, env = "EVENTIDE_MAX_MEMORY_MB", default_value_t = 0)]
    pub max_memory_mb: u64,
    /// A TOML file of these settings by flag name (`max-memory-mb = 1536`); the command line
    /// and `EVENTIDE_*` variables override it.
    #[arg(long, env = "EVENTIDE_CONFIG")]
    pub config: Option<PathBuf>,
    /// For tests and replays: the process's clock reads this RFC3339 time at start and runs
    /// at real speed from there (receive times, query windows, retention, which compaction
    /// windows are closed, alerts). Default: the system clock.
    #[arg(long, env = "EVENTIDE_CLOCK_START")]
    pub clock_start: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub query: QueryArgs,
    #[command(flatten)]
    pub alerts: AlertArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl ServeArgs {
    /// The process's clock: the system's, or `--clock-start`'s.
    pub fn clock(&self) -> anyhow::Result<Clock> {
        let Some(s) = &self.clock_start else {
            return Ok(Clock::system());
        };
        let us = eventide_model::time::parse_time_str(s)
            .ok_or_else(|| anyhow::anyhow!("--clock-start {s:?} is not an RFC3339 time"))?;
        tracing::warn!(start = %s, "the clock starts at --clock-start, not the system time");
        Ok(Clock::starting_at(us))
    }
}

/// The log: embedded (the default) or Apache Kafka.
#[derive(Debug, Args)]
#[command(next_help_heading = "Log")]
pub struct LogArgs {
    /// Use Apache Kafka at these brokers (`host:port,…`) as the log instead of the embedded one.
    #[arg(long, env = "EVENTIDE_KAFKA")]
    pub kafka: Option<String>,
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
    /// Size of one log segment file in bytes.
    #[arg(long, env = "EVENTIDE_LOG_SEGMENT_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub log_segment_bytes: u64,
}

impl LogArgs {
    /// The Kafka log's settings for `brokers` (the member identity is the caller's).
    pub fn kafka_config(&self, brokers: &str) -> KafkaConfig {
        let mut k = KafkaConfig::new(brokers.to_owned());
        k.topic = self.kafka_topic.clone();
        k.partitions = self.kafka_partitions.max(1);
        k.replication = self.kafka_replication.max(1);
        k.group = self.kafka_group.clone();
        k
    }

    /// The embedded log's settings, in `DATA/log`.
    pub fn embedded_config(&self, data_dir: &Path) -> EmbeddedLogConfig {
        let mut c = EmbeddedLogConfig::new(data_dir.join("log"));
        c.segment_bytes = self.log_segment_bytes;
        c
    }
}

/// The store: flushes, compaction, file layout and its memory bound.
#[derive(Debug, Args)]
#[command(next_help_heading = "Store")]
pub struct StoreArgs {
    /// Flush a hot tail (one dataset, one log partition) to a Parquet segment after this many
    /// seconds. In split roles this bounds how soon a query process sees new events.
    #[arg(long, env = "EVENTIDE_FLUSH_SECONDS", default_value_t = 30)]
    pub flush_seconds: u64,
    /// Flush a hot tail (one dataset, one log partition) once it holds this many rows.
    #[arg(long, env = "EVENTIDE_FLUSH_ROWS", default_value_t = 250_000)]
    pub flush_rows: usize,
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
    /// Most memory the store's hot tails (events read from the log, not yet in a segment) may
    /// hold, in MiB: past it, the store stops reading the log until flushes catch up (the log
    /// keeps the events on disk; ingest goes on).
    #[arg(long, env = "EVENTIDE_MAX_HOT_MB", default_value_t = 1024)]
    pub max_hot_mb: usize,
}

impl StoreArgs {
    /// The store's settings in `data_dir`, on `clock`, under the process's memory guard.
    pub fn store_config(
        &self,
        data_dir: &Path,
        clock: Clock,
        memory: Option<Arc<MemoryGuard>>,
    ) -> StoreConfig {
        let mut c = StoreConfig::new(data_dir);
        c.clock = clock;
        c.flush_age = Duration::from_secs(self.flush_seconds.max(1));
        c.flush_rows = self.flush_rows.max(1);
        c.bloom_columns = self.bloom_columns.clone();
        c.sort_key = self.sort_key.clone();
        c.merge_policy = (self.compaction_seconds > 0).then(|| {
            Arc::new(TimeWindowPolicy {
                grace_us: i64::try_from(self.compaction_grace_seconds)
                    .unwrap_or(i64::MAX / 1_000_000)
                    .saturating_mul(1_000_000),
                target_bytes: self.compaction_target_bytes.max(1),
                max_input_bytes: self.compaction_target_bytes.max(1),
                ..Default::default()
            }) as Arc<dyn MergePolicy>
        });
        c.compaction_interval = Duration::from_secs(self.compaction_seconds.max(1));
        c.retire_grace = Duration::from_secs(self.retire_grace_seconds);
        c.max_hot_bytes = self.max_hot_mb.max(1).saturating_mul(1024 * 1024);
        c.memory = memory;
        c
    }
}

/// Ingest: request limits, admission, UDP and self events.
#[derive(Debug, Args)]
#[command(next_help_heading = "Ingest")]
pub struct IngestArgs {
    /// Largest request body for batch endpoints in bytes, after decompression.
    #[arg(long, env = "EVENTIDE_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Also receive events as UDP datagrams of JSON lines on this address (e.g. 0.0.0.0:4081).
    #[arg(long, env = "EVENTIDE_UDP")]
    pub udp: Option<SocketAddr>,
    /// Most request bytes ingest reads, decodes and appends at once, in MiB: past it, ingest
    /// requests get 503 + `Retry-After` at once instead of queueing (bounds ingest memory and
    /// how long a request can wait).
    #[arg(long, env = "EVENTIDE_MAX_INFLIGHT_MB", default_value_t = 256)]
    pub max_inflight_mb: usize,
    /// Longest an ingest request waits to be decoded, in milliseconds, before it gets 503 +
    /// `Retry-After`: under sustained overload, the excess is refused at once rather than
    /// every request waiting longer.
    #[arg(long, env = "EVENTIDE_MAX_QUEUE_MS", default_value_t = 500)]
    pub max_queue_ms: u64,
    /// Record one event per API request (route, status, duration, dataset, events accepted
    /// and refused, bytes a query read, the error) into this dataset, e.g. `_eventide`
    /// (roles all and ingest).
    #[arg(long, env = "EVENTIDE_SELF_DATASET")]
    pub self_dataset: Option<String>,
}

impl IngestArgs {
    /// The limits of one request.
    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            ..Limits::default()
        }
    }

    /// The in-flight budget in bytes.
    pub fn inflight_bytes(&self) -> usize {
        self.max_inflight_mb.saturating_mul(1024 * 1024)
    }

    /// How long a request may wait to be decoded.
    pub fn max_queue_wait(&self) -> Duration {
        Duration::from_millis(self.max_queue_ms.max(1))
    }
}

/// Queries: their shared memory and time limit.
#[derive(Debug, Args)]
#[command(next_help_heading = "Query")]
pub struct QueryArgs {
    /// Memory the running queries share, in MiB, for their sorts, aggregations and joins
    /// (sorts spill to disk first); a query that needs more is refused with 422. 0: a quarter
    /// of `--max-memory-mb` when that is set, else no limit.
    #[arg(long, env = "EVENTIDE_QUERY_MEMORY_MB", default_value_t = 0)]
    pub query_memory_mb: u64,
    /// A query request (SQL, spec, BubbleUp, column statistics) running longer than this is
    /// cancelled and answered 504.
    #[arg(long, env = "EVENTIDE_QUERY_TIMEOUT_SECONDS", default_value_t = 120)]
    pub query_timeout_seconds: u64,
}

impl QueryArgs {
    /// The queries' memory pool in bytes (`None`: no limit), given `--max-memory-mb`.
    pub fn memory_limit(&self, max_memory_mb: u64) -> Option<usize> {
        let mb = match (self.query_memory_mb, max_memory_mb) {
            (0, 0) => return None,
            (0, bound) => bound / 4,
            (mb, _) => mb,
        };
        Some(mb.saturating_mul(1024 * 1024) as usize)
    }

    /// The time limit of one query request.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.query_timeout_seconds.max(1))
    }
}

/// Triggers and deploy checks.
#[derive(Debug, Args)]
#[command(next_help_heading = "Alerts")]
pub struct AlertArgs {
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
}

impl AlertArgs {
    /// The alert runner's settings; links point at `--public-url`, else at `scheme://addr`.
    pub fn runner_config(&self, scheme: &str, addr: SocketAddr) -> eventide_alerts::RunnerConfig {
        eventide_alerts::RunnerConfig {
            public_url: self
                .public_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{addr}")),
            concurrency: self.alert_concurrency.max(1),
            delay: Duration::from_millis(self.alert_delay_ms),
            ..Default::default()
        }
    }
}

/// HTTPS.
#[derive(Debug, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// Serve HTTPS: the PEM certificate chain (with --tls-key).
    #[arg(long, env = "EVENTIDE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serve HTTPS: the PEM private key (with --tls-cert).
    #[arg(long, env = "EVENTIDE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The server's TLS configuration, when both files are given.
    pub fn server_config(&self) -> anyhow::Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::server_config(cert, key)?)),
            _ => Ok(None),
        }
    }

    /// `https` with TLS, `http` without.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

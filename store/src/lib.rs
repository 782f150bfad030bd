//! # eventide-store
//!
//! Turns the log into queryable columnar data and owns its layout on disk.
//!
//! # Layout
//! - [`Store`] runs two stages: the *consumer* polls the log (through
//!   [`eventide_eventlog::LogConsumer`]), decodes each record's Arrow batch and appends it to the
//!   hot tail of its (dataset, partition), queryable at once; the *flusher* turns one
//!   (dataset, partition) hot tail into a Parquet segment (`segment`), uploads it through
//!   `object_store`, and commits it in that partition's `catalog` file together with the log
//!   offset it covers. Only then are those hot batches dropped and the offset committed to the
//!   log.
//! - `catalog`: one atomically replaced catalog file per log partition.
//! - `hot`: the hot tail and schema conformance of batches.
//! - `segment`: Parquet encoding.
//! - [`Store::watch`] tells one watcher about each flush and merge ([`Activity`]): the server
//!   turns them into Eventide's own events.
//!
//! # Partitions and processes
//! A log partition is the unit of ownership: only the process that owns a partition (the log
//! says so through [`PartitionOwner`]) writes its catalog file and segments, so several store
//! processes can share one data directory. A store also reads the catalog files of partitions
//! it does not own (refreshed every second) so every process answers over all committed data;
//! a read-only store ([`Store::open_read_only`], the `query` role) owns nothing.
//!
//! # Invariants
//! - Exactly once from log to store: a record of (dataset, partition) is in a committed
//!   segment iff its offset ≤ that pair's `committed_offset`; replayed records at or below it
//!   are skipped.
//! - After [`PartitionOwner::revoked`] returns, nothing more is committed for those partitions
//!   by this process (the commit section and revocation share one lock).
//! - A query [`Store::snapshot`] sees each event once: the swap from hot batches to the
//!   segment holding them happens under one lock.
//! - Only this crate knows the Parquet and catalog layout; it answers no queries itself.
//! - Memory is bounded: the consumer stops polling while the hot tails exceed `max_hot_bytes`,
//!   and with a process bound (`StoreConfig::memory`) a merge starts only when the RSS plus
//!   its estimated peak (its input decoded, at the Arrow/Parquet expansion the last flush or
//!   merge measured) stays under the bound's high watermark; otherwise it waits for a later
//!   pass.

pub mod catalog;
pub mod compact;
pub mod hot;
pub mod segment;
pub mod settings;
mod telemetry;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use eventide_eventlog::{
    Epoch, EventLog, LogConsumer, LogError, Offset, Partition, PartitionOwner, Position,
};
use eventide_model::{ColumnType, DatasetSchema};
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, error, info, warn};

pub use catalog::{Catalog, CatalogFile, DatasetEntry, SegmentMeta};
use hot::{HotTail, conform};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store i/o at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog {path}: {message}")]
    Catalog { path: String, message: String },
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("log: {0}")]
    Log(#[from] LogError),
    #[error("internal: {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory for the catalog and (by default) the segment files.
    pub data_dir: PathBuf,
    /// Flush a (dataset, partition) hot tail to a segment once it holds this many rows…
    pub flush_rows: usize,
    /// …or this many bytes of Arrow memory…
    pub flush_bytes: usize,
    /// …or its oldest batch is this old.
    pub flush_age: Duration,
    /// Stop polling the log while all hot tails together exceed this many bytes.
    pub max_hot_bytes: usize,
    /// How often catalogs of partitions owned by other processes are re-read.
    pub refresh: Duration,
    /// Columns with a Parquet bloom filter (when a dataset has them).
    pub bloom_columns: Vec<String>,
    /// Compacted segments are sorted by window, then these columns (when a dataset has them),
    /// then time, so `service.name = …` prunes row groups.
    pub sort_key: Vec<String>,
    /// Which segments to merge; `None` turns compaction off.
    pub merge_policy: Option<Arc<dyn compact::MergePolicy>>,
    /// How often the compactor looks for work (merges, retention, files to delete).
    pub compaction_interval: Duration,
    /// A file dropped from the catalog is deleted once no local query that might read it is
    /// running and at least this long after it was dropped (queries of other processes
    /// sharing the directory).
    pub retire_grace: Duration,
    /// A segment file no catalog names (left by a crash mid-flush or mid-merge) is deleted
    /// once it is this old…
    pub orphan_grace: Duration,
    /// …or at once when it predates this process and the data directory is this process's
    /// alone (the embedded log).
    pub exclusive: bool,
    /// The process memory bound (`--max-memory-mb`): a merge starts only when it has room
    /// under it (see [`eventide_model::memory`]).
    pub memory: Option<Arc<eventide_model::memory::MemoryGuard>>,
    /// The time of day for every decision that depends on it: retention and deletion cuts,
    /// which compaction windows are closed, when a segment was written.
    pub clock: eventide_model::time::Clock,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            flush_rows: 250_000,
            flush_bytes: 128 * 1024 * 1024,
            flush_age: Duration::from_secs(30),
            max_hot_bytes: 1024 * 1024 * 1024,
            refresh: Duration::from_secs(1),
            bloom_columns: vec!["trace.trace_id".into(), "user_id".into()],
            sort_key: vec!["service.name".into()],
            merge_policy: Some(Arc::new(compact::TimeWindowPolicy::default())),
            compaction_interval: Duration::from_secs(10),
            retire_grace: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(600),
            exclusive: false,
            memory: None,
            clock: eventide_model::time::Clock::system(),
        }
    }
}

/// One past the highest offset the catalog of `partition` has committed for any dataset
/// (0 when none): the log must never hand out an offset below it again.
pub fn committed_high_water(data_dir: &Path, partition: Partition) -> Result<Offset> {
    let catalog = CatalogFile::new(data_dir, partition).load()?;
    Ok(catalog
        .datasets
        .values()
        .filter_map(|d| d.committed_offset)
        .max()
        .map_or(0, |o| o + 1))
}

/// What a query needs to read one dataset at one moment.
#[derive(Debug, Clone)]
pub struct DatasetSnapshot {
    pub name: String,
    /// The dataset's Arrow schema: `timestamp`, `_samplerate`, then every column.
    pub schema: SchemaRef,
    /// Committed Parquet segments (all partitions).
    pub segments: Vec<SegmentMeta>,
    /// Hot batches of the partitions this process owns (rows before `visible_from_us`
    /// already removed). Each has the columns of `schema` its rows use, in `schema`'s order
    /// and with its types; a reader fills the others with nulls, by name.
    pub hot: Vec<RecordBatch>,
    /// Rows with an earlier `timestamp` are expired or deleted and must not be returned;
    /// `segments` may still hold some (those that straddle the cut).
    pub visible_from_us: Option<i64>,
}

/// One dataset at a glance (`GET /api/v1/datasets`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DatasetSummary {
    pub name: String,
    pub columns: usize,
    pub segments: usize,
    pub segment_rows: u64,
    pub segment_bytes: u64,
    pub hot_rows: u64,
    /// Oldest and newest event time in segments, Unix microseconds.
    pub min_time_us: Option<i64>,
    pub max_time_us: Option<i64>,
    pub settings: settings::DatasetSettings,
    /// Merges the compaction policy would start now in the partitions this process owns
    /// (0 once compaction has settled).
    pub merges_pending: usize,
}

/// One (dataset, partition).
#[derive(Default)]
struct PartState {
    segments: Vec<SegmentMeta>,
    committed_offset: Option<Offset>,
    hot: HotTail,
    /// How many of the oldest hot batches a running flush is writing.
    flushing: usize,
}

struct DatasetState {
    schema: DatasetSchema,
    arrow_schema: SchemaRef,
    parts: BTreeMap<Partition, PartState>,
}

impl DatasetState {
    fn new() -> Self {
        let schema = DatasetSchema::new();
        Self {
            arrow_schema: schema.arrow_schema(),
            schema,
            parts: BTreeMap::new(),
        }
    }

    /// Adds columns seen in stored data; returns whether the schema grew.
    fn merge_columns(
        &mut self,
        columns: impl IntoIterator<Item = (String, ColumnType)>,
        dataset: &str,
    ) -> bool {
        let mut grew = false;
        for (name, t) in columns {
            if self.schema.get(&name).is_none() {
                self.schema.merge_column(&name, t);
                grew = true;
            } else if !self.schema.merge_column(&name, t) {
                warn!(dataset, column = %name, "column type differs from the dataset's; values are cast");
            }
        }
        if grew {
            self.arrow_schema = self.schema.arrow_schema();
        }
        grew
    }
}

#[derive(Default)]
struct State {
    datasets: BTreeMap<String, DatasetState>,
    /// Partitions this process owns (consumes and commits).
    owned: HashSet<Partition>,
    next_segment_id: HashMap<Partition, u64>,
    /// Per owned partition, the `next_segment_id` its catalog held when this process took it
    /// (`u64::MAX` when there was no catalog file): a segment file with a smaller id was
    /// committed once, so when no catalog names it the orphan sweep quarantines it instead of
    /// deleting it (a lost catalog entry must not turn into lost data).
    committed_ids: HashMap<Partition, u64>,
    /// Per owned partition, the next offset the consumer will apply.
    applied: HashMap<Partition, Offset>,
    /// Per owned partition, the assignment it is owned under: a flush, merge or record of an
    /// earlier one is refused, so work begun before the partition left and came back never
    /// commits over the new owner's state.
    epochs: HashMap<Partition, Epoch>,
    /// Owned partitions whose log has been read to its end since they were assigned.
    caught_up: HashSet<Partition>,
    /// Modification time of each foreign catalog file when last read.
    foreign_seen: HashMap<Partition, Option<SystemTime>>,
}

impl State {
    fn dataset(&mut self, name: &str) -> &mut DatasetState {
        self.datasets
            .entry(name.to_owned())
            .or_insert_with(DatasetState::new)
    }

    /// Replaces partition `p` of every dataset with the catalog's view (no hot data).
    fn load_partition(&mut self, p: Partition, catalog: &Catalog) {
        for d in self.datasets.values_mut() {
            d.parts.remove(&p);
        }
        for (name, entry) in &catalog.datasets {
            let d = self.dataset(name);
            d.merge_columns(entry.columns.iter().cloned(), name);
            d.parts.insert(
                p,
                PartState {
                    segments: entry.segments.clone(),
                    committed_offset: entry.committed_offset,
                    ..PartState::default()
                },
            );
        }
    }

    /// The catalog of partition `p` as held in memory.
    fn catalog_of(&self, p: Partition) -> Catalog {
        let mut datasets = BTreeMap::new();
        for (name, d) in &self.datasets {
            if let Some(part) = d.parts.get(&p) {
                datasets.insert(
                    name.clone(),
                    DatasetEntry {
                        columns: d.schema.columns().to_vec(),
                        committed_offset: part.committed_offset,
                        segments: part.segments.clone(),
                    },
                );
            }
        }
        Catalog {
            version: 1,
            partition: p,
            log: String::new(),
            next_segment_id: self.next_segment_id.get(&p).copied().unwrap_or(1),
            datasets,
        }
    }

    /// Stops owning partition `p`. Its hot data is not ours to serve or flush any more: the
    /// next owner replays it from the log. Committed segments stay visible.
    fn release(&mut self, p: Partition) {
        self.owned.remove(&p);
        self.applied.remove(&p);
        self.epochs.remove(&p);
        self.caught_up.remove(&p);
        for d in self.datasets.values_mut() {
            if let Some(part) = d.parts.get_mut(&p) {
                part.hot = HotTail::default();
                part.flushing = 0;
            }
        }
        info!(partition = p, "store released partition");
    }

    /// The owned (dataset, partition) pairs with hot data that satisfy `pred`.
    fn owned_hot(&self, pred: impl Fn(&PartState) -> bool) -> Vec<(String, Partition)> {
        let mut out = Vec::new();
        for (name, d) in &self.datasets {
            for (p, part) in &d.parts {
                if self.owned.contains(p) && !part.hot.batches.is_empty() && pred(part) {
                    out.push((name.clone(), *p));
                }
            }
        }
        out
    }

    fn hot_bytes(&self) -> usize {
        self.datasets
            .values()
            .flat_map(|d| d.parts.values())
            .map(|p| p.hot.bytes)
            .sum()
    }
}

/// Work the store did, for whoever watches it ([`Store::watch`]): Eventide's own events
/// (`--self-dataset`).
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// A hot tail written to a segment and committed.
    Flushed {
        dataset: String,
        partition: Partition,
        rows: u64,
        bytes: u64,
        took: Duration,
    },
    /// A flush that failed; the events stay in the log and the hot tail, and it is retried.
    FlushFailed {
        dataset: String,
        partition: Partition,
        error: String,
    },
    /// Segments merged into fewer, sorted, time-windowed ones.
    Merged {
        dataset: String,
        partition: Partition,
        level: u8,
        inputs: usize,
        input_bytes: u64,
        outputs: usize,
        output_bytes: u64,
        rows: u64,
        took: Duration,
    },
    /// A merge that failed; it is planned again on the next pass.
    MergeFailed {
        dataset: String,
        partition: Partition,
        level: u8,
        error: String,
    },
    /// A merge not started because the memory bound had no room for its estimated peak.
    MergeDeferred {
        dataset: String,
        partition: Partition,
        level: u8,
        need_bytes: u64,
    },
}

/// Receives the store's [`Activity`]; called on the store's tasks, so it must not block.
pub type ActivitySink = Arc<dyn Fn(Activity) + Send + Sync>;

struct Inner {
    config: StoreConfig,
    objects: Arc<dyn ObjectStore>,
    segments_dir: PathBuf,
    state: RwLock<State>,
    /// Segment files moved to `DATA/quarantine` by this process (see `State::committed_ids`).
    quarantined: std::sync::atomic::AtomicU64,
    /// Merges not started because the memory bound had no room for them.
    merges_deferred: std::sync::atomic::AtomicU64,
    /// Arrow bytes per byte of Parquet, ×100, as last measured by a flush (Arrow in) or a
    /// merge (Arrow decoded): how a merge's memory is estimated before it reads anything.
    /// Starts at 8× until the first flush.
    merge_expansion: std::sync::atomic::AtomicU64,
    /// Held while a catalog commit checks ownership, writes the file and applies it; taken by
    /// revocation so nothing is committed for a partition after it is revoked.
    commit_fence: Mutex<()>,
    /// One flush at a time.
    flush_lock: tokio::sync::Mutex<()>,
    applied_notify: Notify,
    /// Counts the batches of records applied (see [`Store::applied_changed`]).
    applied_generation: std::sync::atomic::AtomicU64,
    /// Every batch of events as it is applied, for live tails ([`Store::tail`]).
    tail: tokio::sync::broadcast::Sender<Applied>,
    consumer: OnceLock<Arc<dyn LogConsumer>>,
    /// Set once [`Store::ready`] said so.
    ready: std::sync::atomic::AtomicBool,
    /// The log this store consumes (its durable ends decide what a query waits for). Weak:
    /// the store's tasks must not keep a closed log (and its directory lock) alive.
    log: OnceLock<std::sync::Weak<dyn EventLog>>,
    /// Who is told about flushes and merges ([`Store::watch`]).
    activity: OnceLock<ActivitySink>,
    flush_tx: OnceLock<mpsc::Sender<(String, Partition)>>,
    /// The log catalogs written by this process refer to (`EventLog::identity`).
    log_identity: OnceLock<String>,
    /// Part of every segment name this process writes, so two processes that both believe
    /// they own a partition (one of them cut off from Kafka) never overwrite each other's file.
    writer_token: String,
    /// Segment files being written and not yet committed.
    in_flight: Mutex<HashSet<String>>,
    /// Files dropped from the catalog and who might still read them.
    readers: Mutex<compact::Readers>,
    /// When this process opened the store.
    started: SystemTime,
    /// Per-dataset settings and the settings file's mtime when read.
    settings: RwLock<(
        Option<SystemTime>,
        BTreeMap<String, settings::DatasetSettings>,
    )>,
}

/// Batches a slow live tail may fall behind before it is told it skipped some.
const TAIL_BATCHES: usize = 1024;

/// A batch of events just applied (queryable from now on), in the dataset's schema.
#[derive(Debug, Clone)]
pub struct Applied {
    pub dataset: String,
    pub batch: arrow::record_batch::RecordBatch,
}

/// The store: consumer, hot tails, flusher and catalogs.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// The log's view of the store: partition assignment and revocation.
struct Owner(Arc<Inner>);

impl PartitionOwner for Owner {
    fn assigned(&self, partitions: &[(Partition, Epoch)]) {
        for &(p, epoch) in partitions {
            let catalog = match CatalogFile::new(&self.0.config.data_dir, p).load() {
                Ok(c) => c,
                Err(e) => {
                    error!(partition = p, error = %e, "cannot read the partition's catalog; its data is not served");
                    continue;
                }
            };
            let had_catalog = CatalogFile::new(&self.0.config.data_dir, p).exists();
            let mut state = write_lock(&self.0.state);
            state.load_partition(p, &catalog);
            // Never below an id this process handed out before (a flush of an earlier
            // assignment may still be writing it): segment names never repeat.
            let next = catalog
                .next_segment_id
                .max(state.next_segment_id.get(&p).copied().unwrap_or(1))
                .max(1);
            state.next_segment_id.insert(p, next);
            state.epochs.insert(p, epoch);
            state.caught_up.remove(&p);
            state.committed_ids.insert(
                p,
                if had_catalog {
                    catalog.next_segment_id
                } else {
                    u64::MAX
                },
            );
            state.owned.insert(p);
            state.applied.remove(&p);
            state.foreign_seen.remove(&p);
            info!(partition = p, epoch, "store owns partition");
        }
    }

    fn revoked(&self, partitions: &[Partition]) {
        // Wait for a commit in progress; afterwards none can start for these partitions.
        let _fence = self
            .0
            .commit_fence
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut state = write_lock(&self.0.state);
        for &p in partitions {
            state.release(p);
        }
    }
}

impl Store {
    /// Opens a consuming store: reads every partition catalog, starts consuming `log` (which
    /// assigns partitions), replays what the log already holds into the hot tails, then
    /// starts the consumer, flusher and refresher tasks.
    pub async fn open(config: StoreConfig, log: Arc<dyn EventLog>) -> Result<Self> {
        let store = Self::new(config)?;
        let identity = log.identity();
        for (p, _) in catalog::list_partitions(&store.inner.config.data_dir)? {
            let c = CatalogFile::new(&store.inner.config.data_dir, p).load()?;
            if !c.log.is_empty() && c.log != identity {
                return Err(StoreError::Internal(format!(
                    "the catalog of partition {p} was written from log {:?} but this process consumes {identity:?}: \
                     its offsets would be misread; use a new data directory for another log",
                    c.log
                )));
            }
        }
        let _ = store.inner.log_identity.set(identity);
        let _ = store.inner.log.set(Arc::downgrade(&log));
        store.inner.refresh_foreign()?;
        let consumer = log.consume(Arc::new(Owner(store.inner.clone())))?;
        let _ = store.inner.consumer.set(consumer);
        let (flush_tx, flush_rx) = mpsc::channel(1024);
        let _ = store.inner.flush_tx.set(flush_tx);
        let mut replayed = 0usize;
        loop {
            let n = store.inner.consume_once(Duration::ZERO).await?;
            if n == 0 {
                break;
            }
            replayed += n;
        }
        info!(records = replayed, "replayed the log into the hot tail");
        {
            // Nothing to replay still means caught up to where the log stands now.
            let mut state = write_lock(&store.inner.state);
            let owned: Vec<Partition> = state.owned.iter().copied().collect();
            if let Some(consumer) = store.inner.consumer.get() {
                for p in owned {
                    let Some(at) = consumer.position(p) else {
                        continue; // Kafka: the consumer says when it reached the end
                    };
                    state.applied.entry(p).or_insert(at);
                    // The replay above read the log to its end.
                    state.caught_up.insert(p);
                }
            }
        }
        let inner = store.inner.clone();
        tokio::spawn(async move { inner.run_consumer().await });
        let inner = store.inner.clone();
        tokio::spawn(async move { inner.run_flusher(flush_rx).await });
        let inner = store.inner.clone();
        tokio::spawn(async move { inner.run_compactor().await });
        let inner = store.inner.clone();
        tokio::spawn(async move { inner.run_ticker().await });
        Ok(store)
    }

    /// Opens a read-only store (no log): serves the committed segments of every partition,
    /// re-reading the catalogs every `config.refresh`.
    pub async fn open_read_only(config: StoreConfig) -> Result<Self> {
        let store = Self::new(config)?;
        store.inner.refresh_foreign()?;
        let inner = store.inner.clone();
        tokio::spawn(async move { inner.run_ticker().await });
        Ok(store)
    }

    fn new(config: StoreConfig) -> Result<Self> {
        let settings_file = settings::SettingsFile::new(&config.data_dir);
        let settings = (settings_file.mtime(), settings_file.load()?);
        let segments_dir = config.data_dir.join("segments");
        eventide_durable::create_dir_all(&segments_dir)
            .map_err(|e| StoreError::io(&segments_dir, e))?;
        let catalog_dir = config.data_dir.join(catalog::CATALOG_DIR);
        eventide_durable::create_dir_all(&catalog_dir)
            .map_err(|e| StoreError::io(&catalog_dir, e))?;
        let objects: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(&segments_dir)?);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                objects,
                segments_dir,
                state: RwLock::new(State::default()),
                quarantined: Default::default(),
                merges_deferred: Default::default(),
                merge_expansion: std::sync::atomic::AtomicU64::new(800),
                commit_fence: Mutex::new(()),
                flush_lock: tokio::sync::Mutex::new(()),
                applied_notify: Notify::new(),
                applied_generation: std::sync::atomic::AtomicU64::new(0),
                tail: tokio::sync::broadcast::channel(TAIL_BATCHES).0,
                consumer: OnceLock::new(),
                log: OnceLock::new(),
                ready: std::sync::atomic::AtomicBool::new(false),
                activity: OnceLock::new(),
                flush_tx: OnceLock::new(),
                log_identity: OnceLock::new(),
                writer_token: writer_token(),
                in_flight: Mutex::new(HashSet::new()),
                readers: Mutex::new(compact::Readers::default()),
                started: SystemTime::now(),
                settings: RwLock::new(settings),
            }),
        })
    }

    /// The clock the store decides by (see [`StoreConfig::clock`]).
    pub fn clock(&self) -> &eventide_model::time::Clock {
        &self.inner.config.clock
    }

    /// The object store holding segment files (paths in [`SegmentMeta::path`]).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.inner.objects.clone()
    }

    /// Local directory behind [`Store::object_store`].
    pub fn segments_dir(&self) -> &Path {
        &self.inner.segments_dir
    }

    /// Names of all datasets.
    pub fn datasets(&self) -> Vec<String> {
        read_lock(&self.inner.state)
            .datasets
            .keys()
            .cloned()
            .collect()
    }

    /// Partitions this process owns.
    pub fn owned_partitions(&self) -> Vec<Partition> {
        let mut v: Vec<_> = read_lock(&self.inner.state).owned.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Column schemas of all datasets (for ingest's type registry).
    pub fn schemas(&self) -> HashMap<String, Vec<(String, ColumnType)>> {
        read_lock(&self.inner.state)
            .datasets
            .iter()
            .map(|(k, d)| (k.clone(), d.schema.columns().to_vec()))
            .collect()
    }

    /// Reads every segment file of `dataset` in full (at most `max_bytes` of them) and
    /// returns the files that are missing, unreadable or corrupt, with what is wrong. Slow:
    /// for finding the culprit after a query failed reading.
    pub fn verify_segments(&self, dataset: &str, max_bytes: u64) -> Vec<(String, String)> {
        let Some(snap) = self.snapshot(dataset) else {
            return Vec::new();
        };
        let mut bad = Vec::new();
        let mut read = 0u64;
        for seg in &snap.segments {
            if read > max_bytes {
                break;
            }
            read += seg.bytes;
            let path = self.inner.segments_dir.join(&seg.path);
            match segment::verify_file(&path) {
                Ok(rows) if rows == seg.rows => {}
                Ok(rows) => bad.push((
                    seg.path.clone(),
                    format!("holds {rows} rows but its catalog entry says {}", seg.rows),
                )),
                Err(e) => bad.push((seg.path.clone(), e)),
            }
        }
        bad
    }

    /// A consistent view of one dataset for a query.
    pub fn snapshot(&self, dataset: &str) -> Option<DatasetSnapshot> {
        let visible_from_us = self
            .settings(dataset)
            .visible_from_us(self.inner.config.clock.now_micros());
        let state = read_lock(&self.inner.state);
        let d = state.datasets.get(dataset)?;
        let mut segments = Vec::new();
        let mut hot = Vec::new();
        for part in d.parts.values() {
            segments.extend(
                part.segments
                    .iter()
                    .filter(|s| visible_from_us.is_none_or(|v| s.max_time_us >= v))
                    .cloned(),
            );
            for b in &part.hot.batches {
                let b = hot::rows_from(&b.batch, visible_from_us);
                match b {
                    Ok(b) => hot.push(b),
                    Err(e) => {
                        error!(error = %e, dataset, "hot batch does not fit the dataset schema")
                    }
                }
            }
        }
        Some(DatasetSnapshot {
            name: dataset.to_owned(),
            schema: d.arrow_schema.clone(),
            segments,
            hot,
            visible_from_us,
        })
    }

    /// The settings of `dataset` (defaults when none were set).
    pub fn settings(&self, dataset: &str) -> settings::DatasetSettings {
        read_lock(&self.inner.settings)
            .1
            .get(dataset)
            .cloned()
            .unwrap_or_default()
    }

    /// Changes the settings of `dataset` in the settings file (read fresh, so changes made by
    /// other processes are kept) and in memory; returns the new settings.
    pub fn update_settings(
        &self,
        dataset: &str,
        change: impl FnOnce(&mut settings::DatasetSettings),
    ) -> Result<settings::DatasetSettings> {
        let file = settings::SettingsFile::new(&self.inner.config.data_dir);
        let mut guard = write_lock(&self.inner.settings);
        let mut all = file.load()?;
        let entry = all.entry(dataset.to_owned()).or_default();
        change(entry);
        let new = entry.clone();
        if new == settings::DatasetSettings::default() {
            all.remove(dataset);
        }
        file.save(&all)?;
        *guard = (file.mtime(), all);
        Ok(new)
    }

    /// Merges the compaction policy would start now for `dataset` in owned partitions.
    pub fn merges_pending(&self, dataset: &str) -> usize {
        let Some(policy) = &self.inner.config.merge_policy else {
            return 0;
        };
        let now = self.inner.config.clock.now_micros();
        let state = read_lock(&self.inner.state);
        state.datasets.get(dataset).map_or(0, |d| {
            d.parts
                .iter()
                .filter(|(p, _)| state.owned.contains(p))
                .map(|(_, part)| policy.plan(&part.segments, now).len())
                .sum()
        })
    }

    /// Every dataset at a glance.
    pub fn summaries(&self) -> Vec<DatasetSummary> {
        let names = self.datasets();
        names
            .into_iter()
            .filter_map(|name| {
                let snap = self.snapshot(&name)?;
                Some(DatasetSummary {
                    columns: snap.schema.fields().len().saturating_sub(2),
                    segments: snap.segments.len(),
                    segment_rows: snap.segments.iter().map(|s| s.rows).sum(),
                    segment_bytes: snap.segments.iter().map(|s| s.bytes).sum(),
                    hot_rows: snap.hot.iter().map(|b| b.num_rows() as u64).sum(),
                    min_time_us: snap.segments.iter().map(|s| s.min_time_us).min(),
                    max_time_us: snap.segments.iter().map(|s| s.max_time_us).max(),
                    settings: self.settings(&name),
                    merges_pending: self.merges_pending(&name),
                    name,
                })
            })
            .collect()
    }

    /// The next offset of `partition` the store will apply (None when not owned or nothing
    /// was applied yet).
    pub fn applied(&self, partition: Partition) -> Option<Offset> {
        read_lock(&self.inner.state)
            .applied
            .get(&partition)
            .copied()
    }

    /// Whether this store is ready to serve: its log consumer has been given its partitions
    /// (a Kafka consumer joined its group) and has read each of them to its end since, so a
    /// query sees what the log held. Once ready it stays ready (later rebalances do not turn
    /// it back). `Err` says what it is waiting for. A store that consumes nothing (query and
    /// ingest roles) is always ready.
    pub fn ready(&self) -> std::result::Result<(), String> {
        if self.inner.ready.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let Some(consumer) = self.inner.consumer.get() else {
            return Ok(());
        };
        if !consumer.has_assignment() {
            return Err(
                "waiting for the log to assign partitions (joining the consumer group)".into(),
            );
        }
        let state = read_lock(&self.inner.state);
        let mut behind: Vec<Partition> = state
            .owned
            .iter()
            .filter(|p| !state.caught_up.contains(p))
            .copied()
            .collect();
        if !behind.is_empty() {
            behind.sort_unstable();
            return Err(format!("replaying the log of partitions {behind:?}"));
        }
        drop(state);
        self.inner
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Waits, at most `max_wait`, until every record durable in the log when it was called
    /// has been applied (is queryable), where the log can say which those are (the embedded
    /// log): a query that calls it first sees every event acknowledged before it started.
    /// Returns whether it caught up.
    pub async fn catch_up(&self, max_wait: Duration) -> bool {
        let Some(log) = self.inner.log.get().and_then(std::sync::Weak::upgrade) else {
            return true;
        };
        let ends = log.durable_ends();
        let caught_up = |store: &Store| {
            ends.iter().all(|end| {
                end.offset == 0
                    || !read_lock(&store.inner.state).owned.contains(&end.partition)
                    || store
                        .applied(end.partition)
                        .is_some_and(|a| a >= end.offset)
            })
        };
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let notified = self.inner.applied_notify.notified();
            if caught_up(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return caught_up(self);
            }
        }
    }

    /// How many batches of log records this store has applied: it changes whenever new events
    /// become queryable here.
    pub fn applied_generation(&self) -> u64 {
        self.inner
            .applied_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until records were applied after [`Store::applied_generation`] read `seen`;
    /// returns the new generation. Never returns in a store that consumes no log.
    pub async fn applied_changed(&self, seen: u64) -> u64 {
        loop {
            let notified = self.inner.applied_notify.notified();
            let now = self.applied_generation();
            if now != seen {
                return now;
            }
            notified.await;
        }
    }

    /// Every batch of events applied from now on (each is queryable when it is received).
    /// A receiver that falls more than 1,024 batches behind is told how many it skipped.
    pub fn tail(&self) -> tokio::sync::broadcast::Receiver<Applied> {
        self.inner.tail.subscribe()
    }

    /// Waits until the record at `pos` has been applied (it is then queryable).
    pub async fn wait_applied(&self, pos: Position) {
        loop {
            let notified = self.inner.applied_notify.notified();
            if self.applied(pos.partition).is_some_and(|a| a > pos.offset) {
                return;
            }
            notified.await;
        }
    }

    /// Pins the files a query is about to read: no file dropped from a catalog after this is
    /// deleted while the pin lives.
    pub fn pin(&self) -> compact::ReadPin {
        self.inner.pin()
    }

    /// Runs the merges due now (the compactor also does, every `compaction_interval`).
    pub async fn compact_now(&self) -> Result<usize> {
        self.inner.compact_once().await
    }

    /// Runs the retention pass now: drops owned segments wholly past their dataset's
    /// visibility cut. Returns how many segments were dropped.
    pub async fn expire_now(&self) -> Result<usize> {
        self.inner.expire().await
    }

    /// Tells `sink` about every flush and merge from now on. Only the first sink is kept:
    /// false when one was set before.
    pub fn watch(&self, sink: ActivitySink) -> bool {
        self.inner.activity.set(sink).is_ok()
    }

    /// Bytes of events held in memory, not yet flushed (what `max_hot_bytes` bounds: the
    /// consumer stops reading the log above it).
    pub fn hot_bytes(&self) -> usize {
        read_lock(&self.inner.state).hot_bytes()
    }

    /// Merges not started (yet) because the memory bound had no room for them.
    pub fn merges_deferred(&self) -> u64 {
        self.inner
            .merges_deferred
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Segment files this process moved to `DATA/quarantine` because they held committed
    /// data but no catalog named them.
    pub fn quarantined_files(&self) -> u64 {
        self.inner
            .quarantined
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Deletes retired and orphaned files that are due now.
    pub fn sweep_now(&self) -> usize {
        self.inner.delete_retired_and_orphans()
    }

    /// Flushes every owned hot tail to segments (e.g. on shutdown).
    pub async fn flush_all(&self) -> Result<()> {
        let due = read_lock(&self.inner.state).owned_hot(|_| true);
        for (name, p) in due {
            self.inner.flush(&name, p).await?;
        }
        Ok(())
    }
}

impl Inner {
    /// Tells the watcher, if any ([`Store::watch`]).
    fn report(&self, activity: Activity) {
        if let Some(sink) = self.activity.get() {
            sink(activity);
        }
    }

    async fn run_consumer(self: Arc<Self>) {
        loop {
            if read_lock(&self.state).hot_bytes() > self.config.max_hot_bytes {
                // Backpressure: let the flusher catch up before reading more.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            if let Err(e) = self.consume_once(Duration::from_millis(500)).await {
                error!(error = %e, "store consumer failed to read the log; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Polls one chunk of records and applies it. Returns how many records were read.
    async fn consume_once(&self, wait: Duration) -> Result<usize> {
        let Some(consumer) = self.consumer.get() else {
            return Ok(0);
        };
        let records = consumer.poll(16 * 1024 * 1024, wait).await?;
        let n = records.len();
        if n == 0 {
            return Ok(0);
        }
        // Decoding Arrow IPC is CPU work: keep it off the async threads.
        let decoded = tokio::task::spawn_blocking(move || {
            records
                .into_iter()
                .map(|r| {
                    let batches = if r.dataset.is_empty() {
                        Ok(Vec::new())
                    } else {
                        eventide_model::decode_payload(&r.payload)
                    };
                    let at = (r.partition, r.offset, r.epoch, r.end_of_partition);
                    (at, r.dataset, batches)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Internal(format!("log decoder panicked: {e}")))?;
        let mut to_flush = Vec::new();
        let tailing = self.tail.receiver_count() > 0;
        let mut tailed = Vec::new();
        {
            let mut guard = write_lock(&self.state);
            let state = &mut *guard;
            for ((p, offset, epoch, end_of_partition), dataset, batches) in decoded {
                if !state.owned.contains(&p) || state.epochs.get(&p) != Some(&epoch) {
                    // Fetched under an assignment that has since ended: the partition's
                    // current owner (this process again, maybe) replays it.
                    continue;
                }
                if end_of_partition {
                    state.caught_up.insert(p);
                    continue;
                }
                state.applied.insert(p, offset + 1);
                if dataset.is_empty() {
                    continue; // an offset the log marked lost (`eventide log repair`)
                }
                let batches = match batches {
                    Ok(b) => b,
                    Err(e) => {
                        error!(partition = p, offset, dataset, error = %e, "undecodable log record skipped: its events are lost");
                        continue;
                    }
                };
                let d = state.dataset(&dataset);
                let part = d.parts.entry(p).or_default();
                if part.committed_offset.is_some_and(|c| offset <= c) {
                    continue; // already in a committed segment
                }
                for batch in batches {
                    let columns: Vec<(String, ColumnType)> = batch
                        .schema()
                        .fields()
                        .iter()
                        .skip(2)
                        .filter_map(|f| {
                            ColumnType::from_arrow(f.data_type()).map(|t| (f.name().clone(), t))
                        })
                        .collect();
                    d.merge_columns(columns, &dataset);
                    let schema = d.arrow_schema.clone();
                    let Some(part) = d.parts.get_mut(&p) else {
                        continue;
                    };
                    // Errors here are bugs (ingest built the batch); skipping the record keeps
                    // the consumer going instead of re-applying the chunk forever.
                    let frozen = part.flushing;
                    let pushed = conform(&batch, &schema).and_then(|b| {
                        if tailing {
                            tailed.push(Applied {
                                dataset: dataset.clone(),
                                batch: b.clone(),
                            });
                        }
                        part.hot.push(b, offset, &schema, frozen)
                    });
                    if let Err(e) = pushed {
                        error!(partition = p, offset, dataset, error = %e, "log record does not fit the hot tail; its events are lost");
                        continue;
                    }
                }
                let Some(part) = d.parts.get_mut(&p) else {
                    continue;
                };
                if part.flushing == 0
                    && (part.hot.rows >= self.config.flush_rows
                        || part.hot.bytes >= self.config.flush_bytes)
                {
                    to_flush.push((dataset, p));
                }
            }
        }
        self.applied_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.applied_notify.notify_waiters();
        for a in tailed {
            // No receiver left: nobody is tailing any more.
            let _ = self.tail.send(a);
        }
        if let Some(tx) = self.flush_tx.get() {
            for job in to_flush {
                let _ = tx.try_send(job);
            }
        }
        Ok(n)
    }

    /// Re-reads the settings file when another process changed it.
    fn refresh_settings(&self) {
        let file = settings::SettingsFile::new(&self.config.data_dir);
        let mtime = file.mtime();
        if read_lock(&self.settings).0 == mtime {
            return;
        }
        match file.load() {
            Ok(all) => *write_lock(&self.settings) = (mtime, all),
            Err(e) => warn!(error = %e, "could not re-read dataset settings"),
        }
    }

    /// Re-reads catalog files of partitions this process does not own, when they changed.
    /// One that cannot be read is reported and skipped (until it changes); the others are
    /// read all the same.
    fn refresh_foreign(&self) -> Result<()> {
        for (p, mtime) in catalog::list_partitions(&self.config.data_dir)? {
            {
                let state = read_lock(&self.state);
                if state.owned.contains(&p) || state.foreign_seen.get(&p) == Some(&mtime) {
                    continue;
                }
            }
            let catalog = match CatalogFile::new(&self.config.data_dir, p).load() {
                Ok(c) => c,
                Err(e) => {
                    error!(partition = p, error = %e, "cannot read another process's catalog; its partition is not served until the file changes");
                    write_lock(&self.state).foreign_seen.insert(p, mtime);
                    continue;
                }
            };
            let mut state = write_lock(&self.state);
            if state.owned.contains(&p) {
                continue; // assigned meanwhile: the owner's view wins
            }
            state.load_partition(p, &catalog);
            state.foreign_seen.insert(p, mtime);
            debug!(partition = p, "re-read a catalog owned by another process");
        }
        Ok(())
    }

    async fn run_ticker(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut last_refresh = std::time::Instant::now();
        loop {
            tick.tick().await;
            if last_refresh.elapsed() >= self.config.refresh {
                last_refresh = std::time::Instant::now();
                self.refresh_settings();
                let this = self.clone();
                match tokio::task::spawn_blocking(move || this.refresh_foreign()).await {
                    Ok(Err(e)) => warn!(error = %e, "could not refresh foreign catalogs"),
                    Err(e) => warn!(error = %e, "catalog refresh panicked"),
                    Ok(Ok(())) => {}
                }
            }
            let Some(tx) = self.flush_tx.get() else {
                continue;
            };
            let due = read_lock(&self.state).owned_hot(|part| {
                part.flushing == 0
                    && part
                        .hot
                        .since
                        .is_some_and(|t| t.elapsed() >= self.config.flush_age)
            });
            for job in due {
                let _ = tx.try_send(job);
            }
        }
    }

    async fn run_flusher(self: Arc<Self>, mut rx: mpsc::Receiver<(String, Partition)>) {
        while let Some((name, p)) = rx.recv().await {
            if let Err(e) = self.flush(&name, p).await {
                error!(dataset = %name, partition = p, error = %e, "segment flush failed; data stays in the log and hot tail, will retry");
                self.report(Activity::FlushFailed {
                    dataset: name.clone(),
                    partition: p,
                    error: e.to_string(),
                });
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Writes the current hot batches of (dataset, partition) to one segment and commits it.
    async fn flush(self: &Arc<Self>, name: &str, p: Partition) -> Result<()> {
        let _one = self.flush_lock.lock().await;
        let job = {
            let mut guard = write_lock(&self.state);
            let state = &mut *guard;
            if !state.owned.contains(&p) {
                return Ok(());
            }
            let Some(&epoch) = state.epochs.get(&p) else {
                return Ok(());
            };
            let id = state.next_segment_id.get(&p).copied().unwrap_or(1);
            let Some(d) = state.datasets.get_mut(name) else {
                return Ok(());
            };
            let schema = d.arrow_schema.clone();
            let Some(part) = d.parts.get_mut(&p) else {
                return Ok(());
            };
            if part.hot.batches.is_empty() {
                return Ok(());
            }
            let count = part.hot.batches.len();
            let batches: Vec<RecordBatch> =
                part.hot.batches.iter().map(|b| b.batch.clone()).collect();
            // The file has the columns these rows use, not every column of the dataset.
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let schema = eventide_model::chunks::used_fields(&schema, &refs);
            part.flushing = count;
            let job = FlushJob {
                schema,
                batches,
                first_offset: part.hot.batches[0].first_offset,
                last_offset: part.hot.batches[count - 1].last_offset,
                id,
                count,
                epoch,
            };
            state.next_segment_id.insert(p, id + 1);
            job
        };
        let epoch = job.epoch;
        let result = self.write_and_commit(name, p, job).await;
        if result.is_err() {
            let mut state = write_lock(&self.state);
            let same = state.epochs.get(&p) == Some(&epoch);
            if let Some(part) = state
                .datasets
                .get_mut(name)
                .and_then(|d| d.parts.get_mut(&p))
                .filter(|_| same)
            {
                part.flushing = 0;
            }
        }
        result
    }

    async fn write_and_commit(
        self: &Arc<Self>,
        name: &str,
        p: Partition,
        job: FlushJob,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let FlushJob {
            schema,
            batches,
            first_offset,
            last_offset,
            id,
            count,
            epoch,
        } = job;
        let opts = segment::SegmentOptions {
            bloom_columns: self.config.bloom_columns.clone(),
            presorted: false,
        };
        let arrow_bytes: usize = batches.iter().map(hot::batch_bytes).sum();
        let encoded =
            tokio::task::spawn_blocking(move || segment::encode_segment(&schema, &batches, &opts))
                .await
                .map_err(|e| StoreError::Internal(format!("segment encoder panicked: {e}")))??;
        // Arrow bytes per Parquet byte: what a merge of such files will hold decoded.
        self.merge_expansion.store(
            (arrow_bytes as u64).saturating_mul(100) / (encoded.bytes.len() as u64).max(1),
            std::sync::atomic::Ordering::Relaxed,
        );
        let rel = self.segment_path(name, p, id);
        let _in_flight = self.in_flight(&rel);
        let meta = self
            .put_segment(rel.clone(), encoded, first_offset, last_offset, id, 0)
            .await?;
        // Commit: under the fence, check we still own the partition, write its catalog with
        // the new segment, and apply it in memory.
        let this = self.clone();
        let dataset = name.to_owned();
        let (rows, bytes) = (meta.rows, meta.bytes);
        // A fault test holds a flush here, written and not committed.
        fail::fail_point!("store-flush-before-commit");
        let committed = tokio::task::spawn_blocking(move || {
            this.commit_segment(&dataset, p, meta, count, epoch)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("catalog commit panicked: {e}")))??;
        let Some(next) = committed else {
            return Ok(());
        };
        self.report(Activity::Flushed {
            dataset: name.to_owned(),
            partition: p,
            rows,
            bytes,
            took: started.elapsed(),
        });
        if let Some(consumer) = self.consumer.get()
            && let Err(e) = consumer.commit(p, next).await
        {
            warn!(partition = p, error = %e, "could not commit the offset to the log; records will be skipped on replay");
        }
        Ok(())
    }

    /// Returns the offset the log may forget below, or None when the partition was revoked.
    fn commit_segment(
        &self,
        name: &str,
        p: Partition,
        meta: SegmentMeta,
        count: usize,
        epoch: Epoch,
    ) -> Result<Option<Offset>> {
        let _fence = self.commit_fence.lock().unwrap_or_else(|e| e.into_inner());
        let catalog = {
            let held = self.consumer.get().is_none_or(|c| c.holds(p));
            if !held {
                // The consumer lost the partition without a revocation reaching us yet (e.g. it
                // was paused past max.poll.interval): release it now, which frees its memory
                // so polling resumes and the rebalance is processed.
                write_lock(&self.state).release(p);
            }
            let state = read_lock(&self.state);
            if !state.owned.contains(&p) || state.epochs.get(&p) != Some(&epoch) {
                info!(
                    dataset = name,
                    partition = p,
                    epoch,
                    "partition revoked (or revoked and assigned again) during a flush; segment dropped"
                );
                return Ok(None);
            }
            let mut c = state.catalog_of(p);
            c.log = self.log_identity.get().cloned().unwrap_or_default();
            let entry = c.datasets.entry(name.to_owned()).or_default();
            entry.segments.push(meta.clone());
            entry.committed_offset = Some(meta.last_offset);
            c
        };
        CatalogFile::new(&self.config.data_dir, p).commit(&catalog)?;
        let mut state = write_lock(&self.state);
        if let Some(part) = state
            .datasets
            .get_mut(name)
            .and_then(|d| d.parts.get_mut(&p))
        {
            part.segments.push(meta.clone());
            part.committed_offset = Some(meta.last_offset);
            part.hot.drain_front(count);
            part.flushing = 0;
        }
        debug!(
            dataset = name,
            partition = p,
            segment = meta.id,
            rows = meta.rows,
            bytes = meta.bytes,
            "committed segment"
        );
        // The log is needed from the oldest record of this partition still only in a hot tail.
        let next = state
            .datasets
            .values()
            .filter_map(|d| d.parts.get(&p))
            .filter_map(|part| part.hot.batches.first().map(|b| b.first_offset))
            .min()
            .or_else(|| state.applied.get(&p).copied())
            .unwrap_or(meta.last_offset + 1);
        Ok(Some(next))
    }
}

impl Inner {
    /// Where segment `id` of (dataset, partition) goes.
    pub(crate) fn segment_path(&self, name: &str, p: Partition, id: u64) -> String {
        format!("{name}/p{p:05}-{id:012}-{}.parquet", self.writer_token)
    }

    /// Marks a segment file as being written, so the orphan sweep leaves it alone until the
    /// guard is dropped (after its commit, or its failure).
    pub(crate) fn in_flight(self: &Arc<Self>, rel: &str) -> InFlight {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rel.to_owned());
        InFlight {
            inner: self.clone(),
            rel: rel.to_owned(),
        }
    }

    /// Uploads an encoded segment and makes it durable (the file and its directory entries
    /// are on disk before any catalog names it).
    pub(crate) async fn put_segment(
        &self,
        rel: String,
        encoded: segment::EncodedSegment,
        first_offset: Offset,
        last_offset: Offset,
        id: u64,
        level: u8,
    ) -> Result<SegmentMeta> {
        let bytes = encoded.bytes.len() as u64;
        self.objects
            .put(
                &object_store::path::Path::from(rel.as_str()),
                PutPayload::from(encoded.bytes),
            )
            .await?;
        let local = self.segments_dir.join(&rel);
        tokio::task::spawn_blocking(move || {
            // The fault schedule fails a segment's fsync (a flush or merge that must be retried).
            fail::fail_point!("store-segment-fsync", |_| Err(std::io::Error::other(
                "injected fsync failure (fault point store-segment-fsync)"
            )));
            std::fs::File::open(&local)?.sync_all()?;
            if let Some(dir) = local.parent() {
                std::fs::File::open(dir)?.sync_all()?;
                if let Some(root) = dir.parent() {
                    std::fs::File::open(root)?.sync_all()?;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
        .map_err(|e| StoreError::io(&self.segments_dir, e))?;
        Ok(SegmentMeta {
            id,
            path: rel,
            min_time_us: encoded.min_time_us,
            max_time_us: encoded.max_time_us,
            rows: encoded.rows,
            bytes,
            arrow_bytes: encoded.arrow_bytes,
            first_offset,
            last_offset,
            level,
            created_us: self.config.clock.now_micros(),
        })
    }
}

/// See [`Inner::in_flight`].
pub(crate) struct InFlight {
    inner: Arc<Inner>,
    rel: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.rel);
    }
}

/// A short token unique to this process run.
fn writer_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ (nanos >> 64) as u64;
    format!("{:08x}", (mixed ^ (mixed >> 29)) as u32)
}

struct FlushJob {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    first_offset: Offset,
    last_offset: Offset,
    id: u64,
    count: usize,
    /// The assignment of the partition the flush began under: it commits only under it.
    epoch: Epoch,
}

#[cfg(test)]
mod tests;

//! # eventide-store
//!
//! Turns the log into queryable columnar data and owns its layout on disk.
//!
//! # Layout
//! - [`Store`] runs two stages joined by a bounded channel: the *consumer* reads log records
//!   in offset order, decodes their Arrow batches and appends them to each dataset's hot tail
//!   (queryable at once); the *flusher* turns a dataset's hot tail into a Parquet segment
//!   (`segment`), uploads it through `object_store`, and commits it in the `catalog` together
//!   with the log offset it covers. Only then are those hot batches dropped and the log
//!   truncated.
//! - `catalog`: the atomically replaced catalog file.
//! - `hot`: the hot tail and schema conformance of batches.
//! - `segment`: Parquet encoding.
//!
//! # Invariants
//! - Exactly once from log to store: a dataset's log record is in a committed segment iff its
//!   offset ≤ the dataset's `committed_offset`; on restart the log is replayed and records at
//!   or below it are skipped.
//! - A query [`Store::snapshot`] sees each event once: the swap from hot batches to the
//!   segment holding them happens under one lock.
//! - Only this crate knows the Parquet and catalog layout; it answers no queries itself.
//! - Memory is bounded: the consumer stops reading the log while the hot tails exceed
//!   `max_hot_bytes`.

pub mod catalog;
pub mod hot;
pub mod segment;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use eventide_eventlog::{EventLog, LogError, Offset};
use eventide_model::{ColumnType, DatasetSchema};
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::{Mutex, Notify, mpsc};
use tracing::{debug, error, info, warn};

pub use catalog::{Catalog, CatalogFile, DatasetEntry, SegmentMeta};
use hot::{HotTail, conform, extend_to};

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
    /// Flush a dataset's hot tail to a segment once it holds this many rows…
    pub flush_rows: usize,
    /// …or this many bytes of Arrow memory…
    pub flush_bytes: usize,
    /// …or its oldest batch is this old.
    pub flush_age: Duration,
    /// Stop reading the log while all hot tails together exceed this many bytes.
    pub max_hot_bytes: usize,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            flush_rows: 1_000_000,
            flush_bytes: 256 * 1024 * 1024,
            flush_age: Duration::from_secs(30),
            max_hot_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// What a query needs to read one dataset at one moment.
#[derive(Debug, Clone)]
pub struct DatasetSnapshot {
    pub name: String,
    /// The dataset's Arrow schema: `timestamp`, `_samplerate`, then every column.
    pub schema: SchemaRef,
    /// Committed Parquet segments.
    pub segments: Vec<SegmentMeta>,
    /// Hot batches, conformed to `schema`.
    pub hot: Vec<RecordBatch>,
}

struct DatasetState {
    schema: DatasetSchema,
    arrow_schema: SchemaRef,
    segments: Vec<SegmentMeta>,
    committed_offset: Option<Offset>,
    hot: HotTail,
    /// How many of the oldest hot batches a running flush is writing.
    flushing: usize,
}

impl DatasetState {
    fn from_entry(entry: &DatasetEntry) -> Self {
        let schema = DatasetSchema::from_columns(entry.columns.iter().cloned());
        Self {
            arrow_schema: schema.arrow_schema(),
            schema,
            segments: entry.segments.clone(),
            committed_offset: entry.committed_offset,
            hot: HotTail::default(),
            flushing: 0,
        }
    }

    fn entry(&self) -> DatasetEntry {
        DatasetEntry {
            columns: self.schema.columns().to_vec(),
            committed_offset: self.committed_offset,
            segments: self.segments.clone(),
        }
    }
}

struct State {
    datasets: BTreeMap<String, DatasetState>,
    next_segment_id: u64,
}

struct Inner {
    config: StoreConfig,
    log: Arc<dyn EventLog>,
    objects: Arc<dyn ObjectStore>,
    segments_dir: PathBuf,
    catalog_file: CatalogFile,
    state: RwLock<State>,
    /// Serialises catalog commits (one flush at a time).
    commit_lock: Mutex<()>,
    /// Next log offset the consumer will apply.
    applied: AtomicU64,
    applied_notify: Notify,
    flush_tx: mpsc::Sender<String>,
}

/// The store: consumer, hot tails, flusher and catalog.
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

/// One past the highest log offset the catalog in `data_dir` has committed (0 when none):
/// the log must never hand out an offset below it again.
pub fn committed_high_water(data_dir: &Path) -> Result<Offset> {
    let catalog = CatalogFile::new(data_dir).load()?;
    Ok(catalog
        .datasets
        .values()
        .filter_map(|d| d.committed_offset)
        .max()
        .map_or(0, |o| o + 1))
}

impl Store {
    /// Opens the store: loads the catalog, replays the log past what the catalog holds into
    /// the hot tails, then starts the consumer and flusher tasks. Returns once replay is done,
    /// so every acknowledged event is queryable when this returns.
    pub async fn open(config: StoreConfig, log: Arc<dyn EventLog>) -> Result<Self> {
        let segments_dir = config.data_dir.join("segments");
        std::fs::create_dir_all(&segments_dir).map_err(|e| StoreError::io(&segments_dir, e))?;
        let objects: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(&segments_dir)?);
        let catalog_file = CatalogFile::new(&config.data_dir);
        let catalog = catalog_file.load()?;
        let high_water = catalog
            .datasets
            .values()
            .filter_map(|d| d.committed_offset)
            .max()
            .map_or(0, |o| o + 1);
        if log.end_offset() < high_water {
            return Err(StoreError::Internal(format!(
                "the log ends at offset {} but the catalog committed up to {}: open the log with \
                 min_next_offset = committed_high_water()",
                log.end_offset(),
                high_water - 1
            )));
        }
        let datasets = catalog
            .datasets
            .iter()
            .map(|(name, entry)| (name.clone(), DatasetState::from_entry(entry)))
            .collect();
        let (flush_tx, flush_rx) = mpsc::channel(1024);
        let start = log.start_offset();
        let inner = Arc::new(Inner {
            config,
            log,
            objects,
            segments_dir,
            catalog_file,
            state: RwLock::new(State {
                datasets,
                next_segment_id: catalog.next_segment_id.max(1),
            }),
            commit_lock: Mutex::new(()),
            applied: AtomicU64::new(start),
            applied_notify: Notify::new(),
            flush_tx,
        });
        // Replay synchronously up to the log's end as of now.
        let end = inner.log.end_offset();
        let mut replayed = 0usize;
        while inner.applied.load(Ordering::Acquire) < end {
            let n = inner.consume_once(Duration::ZERO).await?;
            if n == 0 {
                break;
            }
            replayed += n;
        }
        info!(
            from = start,
            to = end,
            records = replayed,
            "replayed log into the hot tail"
        );
        let consumer = inner.clone();
        tokio::spawn(async move { consumer.run_consumer().await });
        let flusher = inner.clone();
        tokio::spawn(async move { flusher.run_flusher(flush_rx).await });
        let ticker = inner.clone();
        tokio::spawn(async move { ticker.run_age_ticker().await });
        Ok(Self { inner })
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

    /// Column schemas of all datasets (for ingest's type registry).
    pub fn schemas(&self) -> HashMap<String, Vec<(String, ColumnType)>> {
        read_lock(&self.inner.state)
            .datasets
            .iter()
            .map(|(k, d)| (k.clone(), d.schema.columns().to_vec()))
            .collect()
    }

    /// A consistent view of one dataset for a query.
    pub fn snapshot(&self, dataset: &str) -> Option<DatasetSnapshot> {
        let state = read_lock(&self.inner.state);
        let d = state.datasets.get(dataset)?;
        let hot = d
            .hot
            .batches
            .iter()
            .filter_map(|b| match extend_to(&b.batch, &d.arrow_schema) {
                Ok(b) => Some(b),
                Err(e) => {
                    error!(error = %e, dataset, "hot batch does not fit the dataset schema");
                    None
                }
            })
            .collect();
        Some(DatasetSnapshot {
            name: dataset.to_owned(),
            schema: d.arrow_schema.clone(),
            segments: d.segments.clone(),
            hot,
        })
    }

    /// The next log offset the store will apply: every record below it is queryable.
    pub fn applied_offset(&self) -> Offset {
        self.inner.applied.load(Ordering::Acquire)
    }

    /// Waits until every record below `offset` is queryable.
    pub async fn wait_applied(&self, offset: Offset) {
        loop {
            let notified = self.inner.applied_notify.notified();
            if self.applied_offset() >= offset {
                return;
            }
            notified.await;
        }
    }

    /// Flushes every dataset's hot tail to segments (e.g. on shutdown).
    pub async fn flush_all(&self) -> Result<()> {
        for name in self.datasets() {
            self.inner.flush(&name).await?;
        }
        Ok(())
    }
}

impl Inner {
    async fn run_consumer(self: Arc<Self>) {
        loop {
            if self.hot_bytes() > self.config.max_hot_bytes {
                // Backpressure: let the flusher catch up before reading more.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            match self.consume_once(Duration::from_millis(500)).await {
                Ok(_) => {}
                Err(e) => {
                    error!(error = %e, "store consumer failed to read the log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn hot_bytes(&self) -> usize {
        read_lock(&self.state)
            .datasets
            .values()
            .map(|d| d.hot.bytes)
            .sum()
    }

    /// Reads one chunk of records and applies it. Returns how many records were read.
    async fn consume_once(&self, wait: Duration) -> Result<usize> {
        let from = self.applied.load(Ordering::Acquire);
        let records = self.log.read(from, 16 * 1024 * 1024, wait).await?;
        let Some(last) = records.last() else {
            return Ok(0);
        };
        let next = last.offset + 1;
        let n = records.len();
        // Decoding LZ4 Arrow IPC is CPU work: keep it off the async threads.
        let decoded = tokio::task::spawn_blocking(move || {
            records
                .into_iter()
                .filter_map(|r| match eventide_model::decode_batch(&r.payload) {
                    Ok(b) => Some((r.offset, r.dataset, b)),
                    Err(e) => {
                        error!(offset = r.offset, dataset = %r.dataset, error = %e,
                            "undecodable log record skipped: its events are lost");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Internal(format!("log decoder panicked: {e}")))?;
        let mut to_flush = Vec::new();
        {
            let mut state = write_lock(&self.state);
            for (offset, dataset, batch) in decoded {
                let d = state
                    .datasets
                    .entry(dataset.clone())
                    .or_insert_with(|| DatasetState::from_entry(&DatasetEntry::default()));
                if d.committed_offset.is_some_and(|c| offset <= c) {
                    continue; // already in a committed segment
                }
                let mut grew = false;
                for f in batch.schema().fields().iter().skip(2) {
                    let Some(t) = ColumnType::from_arrow(f.data_type()) else {
                        warn!(dataset, column = %f.name(), "column of unsupported type skipped");
                        continue;
                    };
                    if d.schema.get(f.name()).is_none() {
                        d.schema.merge_column(f.name(), t);
                        grew = true;
                    } else if !d.schema.merge_column(f.name(), t) {
                        warn!(dataset, column = %f.name(), "column type differs from the dataset's; values cast");
                    }
                }
                if grew {
                    d.arrow_schema = d.schema.arrow_schema();
                }
                // Errors here are bugs (ingest built the batch); skipping the record keeps the
                // consumer going instead of re-applying the chunk forever.
                let frozen = d.flushing;
                let pushed = conform(&batch, &d.arrow_schema)
                    .and_then(|b| d.hot.push(b, offset, &d.arrow_schema, frozen));
                if let Err(e) = pushed {
                    error!(offset, dataset, error = %e, "log record does not fit the hot tail; its events are lost");
                    continue;
                }
                if d.flushing == 0
                    && (d.hot.rows >= self.config.flush_rows
                        || d.hot.bytes >= self.config.flush_bytes)
                {
                    to_flush.push(dataset);
                }
            }
            self.applied.store(next, Ordering::Release);
        }
        self.applied_notify.notify_waiters();
        for name in to_flush {
            let _ = self.flush_tx.try_send(name);
        }
        Ok(n)
    }

    async fn run_age_ticker(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let due: Vec<String> = read_lock(&self.state)
                .datasets
                .iter()
                .filter(|(_, d)| {
                    d.flushing == 0
                        && d.hot
                            .since
                            .is_some_and(|t| t.elapsed() >= self.config.flush_age)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for name in due {
                let _ = self.flush_tx.try_send(name);
            }
        }
    }

    async fn run_flusher(self: Arc<Self>, mut rx: mpsc::Receiver<String>) {
        while let Some(name) = rx.recv().await {
            if let Err(e) = self.flush(&name).await {
                error!(dataset = %name, error = %e, "segment flush failed; data stays in the log and hot tail, will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Writes the dataset's current hot batches to one segment and commits it.
    async fn flush(&self, name: &str) -> Result<()> {
        let _commit = self.commit_lock.lock().await;
        let (schema, batches, first_offset, last_offset, id, count) = {
            let mut state = write_lock(&self.state);
            let id = state.next_segment_id;
            let Some(d) = state.datasets.get_mut(name) else {
                return Ok(());
            };
            if d.hot.batches.is_empty() {
                return Ok(());
            }
            let count = d.hot.batches.len();
            d.flushing = count;
            let schema = d.arrow_schema.clone();
            let batches: Vec<RecordBatch> = d
                .hot
                .batches
                .iter()
                .map(|b| extend_to(&b.batch, &schema))
                .collect::<Result<_, _>>()?;
            let first = d.hot.batches[0].first_offset;
            let last = d.hot.batches[count - 1].last_offset;
            state.next_segment_id += 1;
            (schema, batches, first, last, id, count)
        };
        let result = self
            .write_and_commit(name, schema, batches, first_offset, last_offset, id, count)
            .await;
        if result.is_err()
            && let Some(d) = write_lock(&self.state).datasets.get_mut(name)
        {
            d.flushing = 0;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_and_commit(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        first_offset: Offset,
        last_offset: Offset,
        id: u64,
        count: usize,
    ) -> Result<()> {
        let encoded =
            tokio::task::spawn_blocking(move || segment::encode_segment(&schema, &batches))
                .await
                .map_err(|e| StoreError::Internal(format!("segment encoder panicked: {e}")))??;
        let rel = format!("{name}/{id:012}.parquet");
        let bytes = encoded.bytes.len() as u64;
        self.objects
            .put(
                &object_store::path::Path::from(rel.as_str()),
                PutPayload::from(encoded.bytes),
            )
            .await?;
        // Local files and their directory entries must be on disk before the catalog names them.
        let local = self.segments_dir.join(&rel);
        tokio::task::spawn_blocking(move || {
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
        let meta = SegmentMeta {
            id,
            path: rel,
            min_time_us: encoded.min_time_us,
            max_time_us: encoded.max_time_us,
            rows: encoded.rows,
            bytes,
            first_offset,
            last_offset,
        };
        // Build the new catalog from current state plus this segment, commit it, then apply it.
        let catalog = {
            let state = read_lock(&self.state);
            let mut datasets = BTreeMap::new();
            for (k, d) in &state.datasets {
                let mut e = d.entry();
                if k == name {
                    e.segments.push(meta.clone());
                    e.committed_offset = Some(last_offset);
                }
                datasets.insert(k.clone(), e);
            }
            Catalog {
                version: 1,
                next_segment_id: state.next_segment_id,
                datasets,
            }
        };
        let file = self.catalog_file.clone();
        tokio::task::spawn_blocking(move || file.commit(&catalog))
            .await
            .map_err(|e| StoreError::Internal(format!("catalog commit panicked: {e}")))??;
        let truncate_to = {
            let mut state = write_lock(&self.state);
            if let Some(d) = state.datasets.get_mut(name) {
                d.segments.push(meta.clone());
                d.committed_offset = Some(last_offset);
                d.hot.drain_front(count);
                d.flushing = 0;
            }
            // The log is needed from the oldest record still only in a hot tail.
            state
                .datasets
                .values()
                .filter_map(|d| d.hot.batches.first().map(|b| b.first_offset))
                .min()
                .unwrap_or_else(|| self.applied.load(Ordering::Acquire))
        };
        debug!(
            dataset = name,
            segment = meta.id,
            rows = meta.rows,
            bytes = meta.bytes,
            "committed segment"
        );
        if let Err(e) = self.log.truncate(truncate_to).await {
            warn!(error = %e, "could not truncate the log");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

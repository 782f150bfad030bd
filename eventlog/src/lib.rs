//! # eventide-eventlog
//!
//! The durable log between ingest and the store: the [`EventLog`] trait and its two
//! implementations, [`EmbeddedLog`] and [`KafkaLog`].
//!
//! A record is one encoded batch of events for one dataset. [`EventLog::append`] returns only
//! once the record is durable, so ingest can acknowledge a request after it returns. The
//! store reads records through a [`LogConsumer`] and commits, per partition, the offsets it has
//! stored in Parquet; [`PartitionOwner`] tells it which partitions it owns.
//!
//! Two implementations: [`EmbeddedLog`] (files on local disk, one partition) and [`KafkaLog`]
//! (Apache Kafka through rdkafka: idempotent producer with `acks=all`, a consumer group).
//!
//! # Layout
//! - `embedded`: segment files, record framing and checksums, the group-commit writer thread,
//!   recovery of a torn or corrupt tail.
//! - `kafka`: topic setup, the producer, the consumer thread and its rebalance callbacks.
//!
//! # Invariants
//! - A position returned by `append` is durable (fsync'd, or acknowledged by all in-sync Kafka
//!   replicas) and will be returned by `poll`, in order, after any restart, until committed.
//! - The embedded log never returns a record whose checksum does not match.
//! - This crate knows nothing of the payload: no Arrow, no Parquet.

mod embedded;
mod instance;
mod kafka;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use embedded::{
    DirLock, EmbeddedLog, EmbeddedLogConfig, LogProblem, LogReport, RepairReport, SegmentReport,
    frame_record, repair_log, scan_records, verify_log,
};
pub use instance::Instance;
pub use kafka::{KafkaConfig, KafkaLog};

/// Position of a record within its partition; offsets are dense per partition.
pub type Offset = u64;
/// A partition of the log: the unit of ordering and of ownership by a store process. The
/// embedded log has one partition, 0.
pub type Partition = u32;

/// One assignment of a partition to this process: it grows at every assignment, so work
/// begun under an earlier one (a flush, a merge, a record already fetched) is recognised
/// and refused after the partition left and came back.
pub type Epoch = u64;

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: Partition,
    pub offset: Offset,
}

/// A record to append: the dataset it belongs to and its payload.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub dataset: String,
    pub payload: Bytes,
}

impl NewRecord {
    pub fn new(dataset: impl Into<String>, payload: Bytes) -> Self {
        Self {
            dataset: dataset.into(),
            payload,
        }
    }
}

/// One record read back from the log.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: Partition,
    pub offset: Offset,
    pub dataset: String,
    pub payload: Bytes,
    /// The assignment it was fetched under.
    pub epoch: Epoch,
    /// Not a record: the consumer has read the partition to its end as of now (Kafka's
    /// partition EOF), after every record before this marker. The first after an assignment
    /// means the replay of what the log held is done.
    pub end_of_partition: bool,
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Too many appends are waiting: retry later.
    #[error("log is saturated: {0}")]
    Saturated(&'static str),
    /// The log (e.g. the Kafka cluster) cannot take the record now; retry later.
    #[error("log is unavailable: {0}")]
    Unavailable(String),
    #[error("log is closed")]
    Closed,
    /// The log's disk is full: the append was refused (and rolled back); retry later.
    #[error("the log's disk is full: {0}")]
    DiskFull(String),
    /// A failed write could not be rolled back; the log refuses writes until restarted.
    #[error("log failed and refuses writes until restarted: {0}")]
    Failed(String),
    #[error("log i/o at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The log ends below offsets the store already committed (lost or restored log).
    #[error("{0}")]
    BehindStore(String),
    #[error("dataset name of {0} bytes is too long for a log record")]
    DatasetTooLong(usize),
    /// A record larger than the log takes (ingest bounds its records well below this).
    #[error("a log record of {bytes} bytes is larger than the log takes ({limit} bytes)")]
    RecordTooLarge { bytes: usize, limit: usize },
    /// Another process holds the log directory (`LOCK`).
    #[error(
        "the log directory {dir} is in use by another eventide process{}: only one process may write it; stop that one first, or give this one another --data-dir",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked { dir: String, holder: Option<u32> },
    /// The embedded log holds damage a crash cannot explain: it is not opened until
    /// `eventide log repair` ran (see `embedded::recovery`).
    #[error("the embedded log is damaged in {segment} at byte {byte} (offset {offset}): {reason}")]
    Corrupt {
        segment: String,
        byte: u64,
        offset: Offset,
        reason: String,
    },
    #[error("kafka: {0}")]
    Kafka(String),
}

impl LogError {
    /// The same error for another waiter of a refused group (io errors are not `Clone`).
    pub fn duplicate(&self) -> Self {
        match self {
            Self::Saturated(m) => Self::Saturated(m),
            Self::Unavailable(m) => Self::Unavailable(m.clone()),
            Self::Closed => Self::Closed,
            Self::DiskFull(m) => Self::DiskFull(m.clone()),
            Self::Failed(m) => Self::Failed(m.clone()),
            Self::Io { path, source } => Self::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Self::BehindStore(m) => Self::BehindStore(m.clone()),
            Self::DatasetTooLong(n) => Self::DatasetTooLong(*n),
            Self::RecordTooLarge { bytes, limit } => Self::RecordTooLarge {
                bytes: *bytes,
                limit: *limit,
            },
            Self::Locked { dir, holder } => Self::Locked {
                dir: dir.clone(),
                holder: *holder,
            },
            Self::Corrupt {
                segment,
                byte,
                offset,
                reason,
            } => Self::Corrupt {
                segment: segment.clone(),
                byte: *byte,
                offset: *offset,
                reason: reason.clone(),
            },
            Self::Kafka(m) => Self::Kafka(m.clone()),
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Implemented by the log's consumer (the store) to follow which partitions it owns.
///
/// Both calls may block: they run on the consumer's own thread, before any record of the
/// partitions is returned (`assigned`) or before they move to another consumer (`revoked`).
pub trait PartitionOwner: Send + Sync + 'static {
    /// The consumer now owns these partitions, each under a new epoch: load their state.
    fn assigned(&self, partitions: &[(Partition, Epoch)]);
    /// The consumer is about to lose these partitions: when this returns, nothing more may be
    /// committed for them by this process.
    fn revoked(&self, partitions: &[Partition]);
}

/// A durable, ordered, partitioned log of dataset batches.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends the records of one request (of one or several datasets) atomically and
    /// returns where they landed once they are durable: all of them, or none (an error).
    /// Embedded: one group commit. Kafka: one record through the idempotent producer,
    /// several in one transaction.
    async fn append_all(&self, records: Vec<NewRecord>) -> Result<Vec<Position>>;

    /// Appends one record and returns where it landed once it is durable.
    async fn append(&self, dataset: &str, payload: Bytes) -> Result<Position> {
        self.append_all(vec![NewRecord::new(dataset, payload)])
            .await?
            .pop()
            .ok_or(LogError::Closed)
    }

    /// Starts consuming on behalf of `owner` (one consumer per process).
    fn consume(&self, owner: Arc<dyn PartitionOwner>) -> Result<Arc<dyn LogConsumer>>;

    /// Names this log (`embedded`, `kafka:TOPIC`): a store refuses catalogs written from
    /// another log, whose offsets mean something else.
    fn identity(&self) -> String;

    /// Per partition, the offset the next record will get (everything below it is durable),
    /// where the log knows it without a round trip: a store waits until it has applied them
    /// before a query starts, so a query sees every event acknowledged before it. Empty
    /// where it does not know (Kafka).
    fn durable_ends(&self) -> Vec<Position> {
        Vec::new()
    }

    /// Registers the log's own metrics (`GET /metrics`).
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
}

/// The reading side of a log.
#[async_trait]
pub trait LogConsumer: Send + Sync + 'static {
    /// Records of owned partitions, in offset order per partition: at least one if any
    /// arrives within `wait`, about `max_bytes` of payload at most.
    async fn poll(&self, max_bytes: usize, wait: Duration) -> Result<Vec<Record>>;

    /// Everything below `next` in `partition` is committed to the store: the log may forget it
    /// and a restarted consumer may start there.
    async fn commit(&self, partition: Partition, next: Offset) -> Result<()>;

    /// Whether this consumer still holds `partition` as far as it can tell locally (a store
    /// checks it right before committing a catalog, to narrow the window of a consumer that
    /// lost its group membership without noticing).
    fn holds(&self, partition: Partition) -> bool;

    /// Registers the consumer's own metrics (Kafka: consumer lag).
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}

    /// Whether the consumer has been given its partitions (a Kafka consumer: at least one
    /// partition, or none for a whole session timeout after its first rebalance, an idle
    /// member; the cooperative protocol may first assign nothing and the partitions a moment
    /// later). Until then a store that serves queries is not ready.
    fn has_assignment(&self) -> bool {
        true
    }

    /// The offset of `partition` this consumer will read next, where it knows it (the
    /// embedded log).
    fn position(&self, _partition: Partition) -> Option<Offset> {
        None
    }
}

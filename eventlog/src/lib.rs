//! # eventide-eventlog
//!
//! The durable log between ingest and the store: the [`EventLog`] trait and its embedded
//! implementation, [`EmbeddedLog`] (the Kafka implementation joins it later).
//!
//! A record is one encoded batch of events for one dataset. [`EventLog::append`] returns only
//! once the record is durable, so ingest can acknowledge a request after it returns. The
//! store reads records in offset order with [`EventLog::read`] and calls
//! [`EventLog::truncate`] for offsets it has committed to Parquet.
//!
//! # Layout
//! - `embedded`: segment files, record framing and checksums, the group-commit writer thread,
//!   recovery of a torn or corrupt tail.
//!
//! # Invariants
//! - An offset returned by `append` is durable (fsync'd) and will be returned by `read`, in
//!   order, after any restart, until truncated.
//! - `read` never returns a record whose checksum does not match.
//! - This crate knows nothing of the payload: no Arrow, no Parquet.

mod embedded;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use embedded::{EmbeddedLog, EmbeddedLogConfig};

/// Position of a record in the log; offsets are dense and increase by one per record.
pub type Offset = u64;

/// One record read back from the log.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: Offset,
    pub dataset: String,
    pub payload: Bytes,
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Too many appends are waiting for the disk: the caller should retry later.
    #[error("log is saturated: {0}")]
    Saturated(&'static str),
    #[error("log is closed")]
    Closed,
    /// A write or fsync failed earlier; the log refuses writes until restarted.
    #[error("log failed and refuses writes: {0}")]
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
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// A durable, ordered log of dataset batches.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends one record and returns its offset once it is durable.
    async fn append(&self, dataset: &str, payload: Bytes) -> Result<Offset>;

    /// Reads records with offsets ≥ `from`, in order: at least one if any is available within
    /// `wait`, and no more than about `max_bytes` of payload. Returns an empty vector when
    /// nothing arrived in time.
    async fn read(&self, from: Offset, max_bytes: usize, wait: Duration) -> Result<Vec<Record>>;

    /// Declares records below `upto` no longer needed; the log may delete them.
    async fn truncate(&self, upto: Offset) -> Result<()>;

    /// The first offset still held.
    fn start_offset(&self) -> Offset;

    /// The offset the next appended record will get (everything below it is durable).
    fn end_offset(&self) -> Offset;
}

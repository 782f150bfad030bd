//! # eventide-model
//!
//! The vocabulary every other Eventide crate speaks. It does no I/O of its own, with one
//! exception: [`memory`] reads this process's resident set size from `/proc/self/status`.
//! What it holds:
//!
//! - [`Event`] and [`Value`]: one wide event, flattened to dotted field names ([`flatten`]);
//! - [`DatasetName`]: the validated name of a dataset;
//! - [`time`]: event-time parsing (RFC3339, Unix seconds or milliseconds);
//! - [`Limits`]: the size limits applied to requests, events and datasets;
//! - [`schema`]: column types and the type rules for mixed values (first value wins, ints widen
//!   into float columns, anything becomes text in a string column);
//! - [`batch`]: events → Arrow [`arrow::record_batch::RecordBatch`]es and the record payload
//!   written to the log (Arrow IPC streams, bounded in size);
//! - [`chunks`]: rows → batches never padded to the width of sparse data, and combining
//!   batches of different columns by name;
//! - [`columnar`]: JSON → Arrow in one pass ([`ColumnarBatch`]), the ingest fast path: the
//!   same flattening, limits and type rules as [`flatten_object`] + [`DatasetSchema::admit`] +
//!   [`events_to_batches`], without building an [`Event`] per object.
//!
//! # Invariants
//! - Nothing here reads files, sockets or clocks other than `Utc::now()` for receive time,
//!   which callers pass in explicitly.
//! - Every stored event has a `timestamp` (UTC, microseconds) and `_samplerate` (≥ 1).

pub mod batch;
pub mod budget;
pub mod chunks;
pub mod columnar;
pub mod dataset;
pub mod event;
pub mod limits;
pub mod memory;
pub mod schema;
pub mod time;

pub use batch::{
    BatchCodecError, decode_batch, decode_payload, encode_batch, encode_records, events_to_batches,
};
pub use columnar::ColumnarBatch;
pub use dataset::{DatasetName, InvalidDatasetName};
pub use event::{Event, EventError, Value, flatten_object};
pub use limits::Limits;
pub use schema::{ColumnType, DatasetSchema, SchemaError};

/// Name of the event-time column every dataset has.
pub const TIMESTAMP: &str = "timestamp";
/// Name of the sample-rate column every dataset has.
pub const SAMPLERATE: &str = "_samplerate";

//! # eventide-alerts
//!
//! What Eventide knows about deploys and alerts, beside the events themselves.
//!
//! # Layout
//! - [`markers`]: deploy (and other) markers, Honeycomb-compatible: per dataset or `__all__`,
//!   with Eventide's `service`, `version`, `commit`, `commit_time` and `environment`; kept in
//!   `DATA/markers.json` (written atomically), and readable in SQL as `eventide.markers`
//!   ([`markers::MarkersTable`]).
//!
//! Triggers, deploy checks and DORA metrics (DESIGN.md §6) are not built yet.
//!
//! # Invariants
//! - A marker acknowledged by `create`, `update` or `delete` is on disk (file fsync'd, then
//!   renamed over the old one, then the directory fsync'd): a crash keeps either the old or
//!   the new list, never a torn one.
//! - Input mistakes are [`MarkerError::Invalid`] with a message naming the field.

pub mod markers;

pub use markers::{ALL_DATASETS, Marker, MarkerError, MarkerInput, Markers, MarkersTable};

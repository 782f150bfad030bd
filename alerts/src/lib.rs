//! # eventide-alerts
//!
//! What Eventide knows about deploys and alerts, beside the events themselves, and the loop
//! that watches the events for them. It reads events only through the query engine.
//!
//! # Layout
//! - [`markers`]: deploy (and other) markers, Honeycomb-compatible: per dataset or `__all__`,
//!   with Eventide's `service`, `version`, `commit`, `commit_time` and `environment`; kept in
//!   `DATA/markers.json`, and readable in SQL as `eventide.markers` ([`markers::MarkersTable`]).
//! - [`conventions`]: which columns mean service, version, error and latency per dataset, and
//!   the deploy-check settings (`DATA/alerts/conventions.json`).
//! - [`triggers`]: alert rules (Honeycomb's shape), `DATA/alerts/triggers.json`.
//! - [`journal`]: every trigger evaluation and delivery, `DATA/alerts/evaluations.jsonl`.
//! - [`deploys`]: the automatic check of each deploy and its verdict, `DATA/alerts/deploys.json`;
//!   [`deploy_data`] reads its counts, [`deploy_stats`] decides (with the [`sequential`]
//!   tests), [`deploy_check`] runs them for a dataset, [`deploy_story`] writes the sentences.
//! - [`dora`]: DORA metrics from markers, verdicts and trigger firings.
//! - [`notify`]: recipients and webhook delivery.
//! - [`runner`]: [`Alerts`], the schedule that evaluates triggers and deploy checks.
//!
//! # Invariants
//! - Every state file is replaced atomically ([`jsonfile`]): a crash keeps the old or the new
//!   content, never a torn one. The journal is append-only and fsync'd per record.
//! - An evaluation is in the journal before anyone is notified of it; a delivery is noted after
//!   it succeeded. So a restart neither re-fires a trigger (its state is replayed) nor drops a
//!   notification (owed deliveries are retried, with the same payload `id`).
//! - Input mistakes are `Invalid` errors with a message naming the field.

pub mod conventions;
mod delivery;
pub mod deploy_check;
pub mod deploy_data;
pub mod deploy_recovery;
mod deploy_runner;
pub mod deploy_series;
pub mod deploy_stats;
pub mod deploy_story;
mod deploy_verdicts;
pub mod deploys;
pub mod dora;
pub mod journal;
pub mod jsonfile;
pub mod markers;
pub mod notify;
pub mod runner;
pub mod sequential;
mod trigger_runner;
pub mod triggers;

pub use markers::{ALL_DATASETS, Marker, MarkerError, MarkerInput, Markers, MarkersTable};
pub use runner::{Alerts, RunnerConfig};

/// Why an alerts operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A mistake in the request; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// No such trigger (or other object); the message names it.
    #[error("{0}")]
    NotFound(String),
    /// A query behind a check failed.
    #[error("query failed: {0}")]
    Query(String),
    #[error("state file {0}")]
    Io(#[from] jsonfile::FileError),
    #[error(transparent)]
    Marker(#[from] MarkerError),
}

/// Now, RFC3339 UTC, whole seconds.
pub(crate) fn now_rfc3339() -> String {
    let us = eventide_model::time::now_micros();
    eventide_model::time::format_micros(us - us % 1_000_000)
}

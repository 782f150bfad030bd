//! Conventions: which columns of a dataset mean "service", "version", "error" and "latency",
//! and how deploys of it are checked. Defaults follow OpenTelemetry's and Honeycomb's names;
//! each dataset can override them (`PUT /api/v1/conventions/{dataset}`), kept in
//! `DATA/alerts/conventions.json`.

use std::collections::BTreeMap;
use std::path::Path;

use eventide_query::spec::Filter;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::jsonfile::{FileError, Saved};
use crate::notify::Recipient;

/// What the columns of a dataset mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Conventions {
    /// The column naming the service an event comes from.
    pub service: String,
    /// Columns naming the running version, the first one the dataset has is used.
    pub version: Vec<String>,
    /// An event is an error when any of these filters (query-spec filters) holds; filters on
    /// columns the dataset does not have are left out.
    pub error: Vec<Filter>,
    /// The duration column latency percentiles are taken of.
    pub latency: String,
    /// How deploys are checked.
    pub deploy_check: DeployCheckSettings,
}

impl Default for Conventions {
    fn default() -> Self {
        Self {
            service: "service.name".into(),
            version: vec!["service.version".into(), "build_id".into()],
            error: vec![
                Filter {
                    column: "error".into(),
                    op: "=".into(),
                    value: Some(json!(true)),
                },
                Filter {
                    column: "http.status_code".into(),
                    op: ">=".into(),
                    value: Some(json!(500)),
                },
            ],
            latency: "duration_ms".into(),
            deploy_check: DeployCheckSettings::default(),
        }
    }
}

/// How a deploy is compared with the traffic before it (the statistics:
/// [`crate::deploy_stats`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployCheckSettings {
    /// The baseline: this many seconds before the deploy.
    pub baseline_seconds: u64,
    /// The first new-version events left out (restarts, cold caches): the warm-up ends with
    /// the first second by which this many had arrived.
    pub warmup_events: u64,
    /// Seconds right after the deploy left out as well (0: none).
    pub warmup_seconds: u64,
    /// The deploy is watched this long after the deploy (and `warmup_seconds`); a regression
    /// fails it at once, otherwise the verdict is given at the end.
    pub observe_seconds: u64,
    /// Fewest events on each side for a `pass` (fewer: `inconclusive`), and fewest a baseline
    /// needs to be compared with.
    pub min_events: u64,
    /// The chance that a deploy that changed nothing is ever failed (independent events), the
    /// baselines' own sampling error aside: split over the comparisons (Bonferroni).
    pub false_positive_rate: f64,
    /// Baseline figures are bounded this many standard errors toward "no regression"
    /// (Φ(−z) each: 3.3 → 0.05 %).
    pub z: f64,
    /// Error rate rises smaller than this fraction of the baseline rate are tolerated...
    pub error_rate_tolerance: f64,
    /// ...and so are rises smaller than this many points of error rate (0.001 = 0.1 %).
    pub min_error_rate_increase: f64,
    /// Latency percentile rises smaller than this fraction are tolerated.
    pub latency_tolerance: f64,
    /// The chance of calling a failed deploy `recovered` while it is still as broken as it
    /// was (halfway between the baseline and the failure).
    pub recovery_false_rate: f64,
    /// A failed deploy is watched for its fix this long after it failed.
    pub recovery_seconds: u64,
    /// Webhooks that get every verdict.
    pub recipients: Vec<Recipient>,
}

impl Default for DeployCheckSettings {
    fn default() -> Self {
        Self {
            baseline_seconds: 600,
            warmup_events: 100,
            warmup_seconds: 0,
            observe_seconds: 300,
            min_events: 200,
            false_positive_rate: 0.01,
            z: 3.3,
            error_rate_tolerance: 0.1,
            min_error_rate_increase: 0.001,
            latency_tolerance: 0.2,
            recovery_false_rate: 0.02,
            recovery_seconds: 3600,
            recipients: Vec::new(),
        }
    }
}

const DAY: u64 = 86_400;

impl Conventions {
    /// Checks the values; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.service.is_empty() || self.latency.is_empty() {
            return Err("service and latency must name a column".into());
        }
        if self.version.iter().any(String::is_empty) || self.version.len() > 8 {
            return Err("version must be at most 8 column names".into());
        }
        if self.error.len() > 16 {
            return Err("error takes at most 16 filters".into());
        }
        let d = &self.deploy_check;
        for (name, v, lo, hi) in [
            ("baseline_seconds", d.baseline_seconds, 10, 7 * DAY),
            ("warmup_seconds", d.warmup_seconds, 0, DAY),
            ("warmup_events", d.warmup_events, 0, 1_000_000_000),
            ("recovery_seconds", d.recovery_seconds, 0, 7 * DAY),
            ("observe_seconds", d.observe_seconds, 1, 7 * DAY),
            ("min_events", d.min_events, 1, 1_000_000_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("deploy_check.{name} must be between {lo} and {hi}"));
            }
        }
        for (name, v, lo, hi) in [
            ("z", d.z, 1.0, 20.0),
            ("error_rate_tolerance", d.error_rate_tolerance, 0.0, 100.0),
            (
                "min_error_rate_increase",
                d.min_error_rate_increase,
                0.0,
                1.0,
            ),
            ("latency_tolerance", d.latency_tolerance, 0.0, 100.0),
            ("false_positive_rate", d.false_positive_rate, 1e-9, 0.5),
            ("recovery_false_rate", d.recovery_false_rate, 1e-9, 0.5),
        ] {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err(format!("deploy_check.{name} must be between {lo} and {hi}"));
            }
        }
        for r in &d.recipients {
            r.validate(false)?;
        }
        Ok(())
    }

    /// The version column of a dataset with these columns, if any.
    pub fn version_column(&self, has: impl Fn(&str) -> bool) -> Option<&str> {
        self.version.iter().map(String::as_str).find(|c| has(c))
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct ConventionsFile {
    datasets: BTreeMap<String, Conventions>,
}

/// The conventions of every dataset that set its own.
#[derive(Debug, Clone)]
pub struct ConventionsStore {
    file: Saved<ConventionsFile>,
}

impl ConventionsStore {
    pub fn open(dir: &Path) -> Result<Self, FileError> {
        Ok(Self {
            file: Saved::open(dir.join("alerts").join("conventions.json"))?,
        })
    }

    /// The dataset's conventions (the defaults unless it set its own).
    pub fn get(&self, dataset: &str) -> Conventions {
        self.file
            .read(|f| f.datasets.get(dataset).cloned())
            .unwrap_or_default()
    }

    /// Whether the dataset set its own.
    pub fn is_set(&self, dataset: &str) -> bool {
        self.file.read(|f| f.datasets.contains_key(dataset))
    }

    /// Sets the dataset's conventions (checked first).
    pub fn set(&self, dataset: &str, c: Conventions) -> Result<(), crate::AlertError> {
        c.validate().map_err(crate::AlertError::Invalid)?;
        self.file.change(|f| {
            f.datasets.insert(dataset.to_owned(), c);
            Ok(())
        })
    }

    /// Back to the defaults.
    pub fn reset(&self, dataset: &str) -> Result<(), crate::AlertError> {
        self.file.change(|f| {
            f.datasets.remove(dataset);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_opentelemetry_and_persist_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConventionsStore::open(dir.path()).unwrap();
        let c = store.get("shop");
        assert_eq!(c.service, "service.name");
        assert_eq!(c.version_column(|n| n == "build_id"), Some("build_id"));
        assert_eq!(
            c.version_column(|n| n == "build_id" || n == "service.version"),
            Some("service.version")
        );
        let mut mine = c.clone();
        mine.latency = "elapsed".into();
        mine.deploy_check.min_events = 5;
        store.set("shop", mine.clone()).unwrap();
        let again = ConventionsStore::open(dir.path()).unwrap();
        assert_eq!(again.get("shop"), mine);
        assert!(again.is_set("shop"));
        assert_eq!(again.get("other"), Conventions::default());
        let mut bad = mine;
        bad.deploy_check.observe_seconds = 0;
        let e = again.set("shop", bad).unwrap_err().to_string();
        assert!(e.contains("observe_seconds"), "{e}");
    }
}

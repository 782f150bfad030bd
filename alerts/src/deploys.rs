//! Deploy checks: every `deploy` marker that names a `service` is checked against the traffic
//! before it. The service's events after the deploy (after a warm-up counted in events) are
//! compared with the window before it for error rate and latency percentiles; where the
//! marker names a `version` and the dataset has a version column, only the new version's events
//! count as "after", and when the old version still runs beside it (a canary, a rolling
//! deploy) the new version is also compared with the old one over the same window.
//!
//! The verdict is `fail` as soon as a sequential test shows a regression
//! ([`crate::deploy_stats`], which also states the false-positive rate), `pass` when the
//! observation window has ended with enough events and no regression, `inconclusive` when it
//! ended with too few, and `pending` until then. A failed deploy is watched for its fix and
//! turns `recovered` when the service is healthy again. Final verdicts are kept in
//! `DATA/alerts/deploys.json`.
//!
//! - [`crate::deploy_data`] reads the counts, [`crate::deploy_stats`] decides,
//!   [`crate::deploy_check`] runs both for one dataset and writes the evidence,
//!   [`crate::deploy_story`] says it in sentences.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::AlertError;
use crate::jsonfile::{FileError, Saved};
use crate::markers::{ALL_DATASETS, Marker};

/// The marker type that is a deploy.
pub const DEPLOY_TYPE: &str = "deploy";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pending,
    Pass,
    Fail,
    Inconclusive,
    /// Failed, then the fix was seen in the data.
    Recovered,
}

impl Verdict {
    pub fn is_final(self) -> bool {
        self != Verdict::Pending
    }

    /// The exit code of `eventide deploy --wait`: 0 pass, 1 fail, 2 inconclusive (a recovered
    /// deploy failed first: 1).
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Pass => 0,
            Self::Fail | Self::Recovered => 1,
            Self::Inconclusive | Self::Pending => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
            Self::Recovered => "recovered",
        }
    }
}

/// One deploy's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployCheck {
    pub marker_id: String,
    pub dataset: String,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The deploy's time (the marker's `start_time`), Unix seconds.
    pub deploy_time: i64,
    pub verdict: Verdict,
    pub evidence: Json,
    /// When the data first showed the regression (Unix seconds, data time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<i64>,
    /// When the data showed the fix (Unix seconds, data time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    pub updated_at: String,
    /// Webhook targets told about the final verdict.
    #[serde(default)]
    pub notified: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DeploysFile {
    checks: BTreeMap<String, DeployCheck>,
}

/// Every deploy check.
#[derive(Debug, Clone)]
pub struct DeployChecks {
    file: Saved<DeploysFile>,
}

/// Whether a marker is a deploy that gets checked.
pub fn is_checked(m: &Marker) -> bool {
    m.kind == DEPLOY_TYPE && m.service.as_deref().is_some_and(|s| !s.is_empty())
}

impl DeployChecks {
    pub fn open(dir: &Path) -> Result<Self, FileError> {
        Ok(Self {
            file: Saved::open(dir.join("alerts").join("deploys.json"))?,
        })
    }

    pub fn get(&self, marker_id: &str) -> Option<DeployCheck> {
        self.file.read(|f| f.checks.get(marker_id).cloned())
    }

    pub fn all(&self) -> Vec<DeployCheck> {
        self.file.read(|f| f.checks.values().cloned().collect())
    }

    /// Stores a check's new state.
    pub fn put(&self, check: DeployCheck) -> Result<(), AlertError> {
        self.file.change(|f| {
            f.checks.insert(check.marker_id.clone(), check);
            Ok(())
        })
    }

    /// Drops the checks of markers that are gone; returns how many.
    pub fn retain(&self, live: &std::collections::HashSet<String>) -> Result<usize, AlertError> {
        if self
            .file
            .read(|f| f.checks.keys().all(|k| live.contains(k)))
        {
            return Ok(0);
        }
        self.file.change(|f| {
            let before = f.checks.len();
            f.checks.retain(|k, _| live.contains(k));
            Ok(before - f.checks.len())
        })
    }
}

/// What one evaluation found in one dataset.
pub struct Outcome {
    pub verdict: Verdict,
    pub evidence: Json,
    /// When the regression was first seen, for a failure.
    pub detected_at: Option<i64>,
}

/// Combines the outcomes of the datasets a deploy marker covers (`__all__`: several).
pub fn combine(marker: &Marker, mut outcomes: Vec<Outcome>) -> Outcome {
    if outcomes.len() == 1 && marker.dataset != ALL_DATASETS {
        return outcomes.remove(0);
    }
    let vs: Vec<Verdict> = outcomes.iter().map(|o| o.verdict).collect();
    let verdict = if vs.contains(&Verdict::Fail) {
        Verdict::Fail
    } else if vs.contains(&Verdict::Pending) {
        Verdict::Pending
    } else if vs.contains(&Verdict::Pass) {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    let regressions: Vec<Json> = outcomes
        .iter()
        .flat_map(|o| {
            o.evidence["regressions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let detected_at = outcomes.iter().filter_map(|o| o.detected_at).min();
    let summary: Vec<Json> = outcomes
        .iter()
        .filter(|o| o.verdict == verdict)
        .map(|o| o.evidence["summary"].clone())
        .collect();
    Outcome {
        verdict,
        detected_at,
        evidence: json!({
            "summary": summary.first().cloned().unwrap_or(Json::Null),
            "service": marker.service,
            "version": marker.version,
            "regressions": regressions,
            "datasets": outcomes.into_iter().map(|o| o.evidence).collect::<Vec<_>>(),
            "reason": if vs.is_empty() { Some("no dataset has events of this service") } else { None },
        }),
    }
}

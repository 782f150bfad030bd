//! Triggers: a query with one calculation, evaluated every `frequency` seconds over the last
//! `time_range`, compared with a threshold. The HTTP shape is Honeycomb's
//! (`/1/triggers/{dataset}`); `webhook` and `marker` recipients are delivered by Eventide.
//! Definitions are kept in `DATA/alerts/triggers.json`; their evaluations in the journal
//! ([`crate::journal`]).

use std::path::Path;

use eventide_query::QuerySpec;
use serde::{Deserialize, Serialize};

use crate::AlertError;
use crate::jsonfile::{FileError, Saved};
use crate::notify::Recipient;

/// Shortest and longest evaluation period, in seconds.
pub const MIN_FREQUENCY: u64 = 1;
pub const MAX_FREQUENCY: u64 = 86_400;
/// Longest query time range, in seconds.
pub const MAX_TIME_RANGE: i64 = 7 * 86_400;
/// Most recipients per trigger, most triggers in all.
pub const MAX_RECIPIENTS: usize = 16;
pub const MAX_TRIGGERS: usize = 10_000;

/// `threshold.op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThresholdOp {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
}

impl ThresholdOp {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Gt => value > threshold,
            Self::Ge => value >= threshold,
            Self::Lt => value < threshold,
            Self::Le => value <= threshold,
        }
    }

    /// Whether larger values are worse (the worst group is the largest).
    pub fn upward(self) -> bool {
        matches!(self, Self::Gt | Self::Ge)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub op: ThresholdOp,
    pub value: f64,
    /// Consecutive breaching evaluations before the trigger fires (Honeycomb's name).
    #[serde(default = "one")]
    pub exceeded_limit: u32,
}

fn one() -> u32 {
    1
}

/// When recipients are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    /// When the trigger fires, and when it resolves.
    #[default]
    OnChange,
    /// At every evaluation that finds the threshold crossed, and when it resolves.
    OnTrue,
}

/// A trigger as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: String,
    pub dataset: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub disabled: bool,
    pub query: QuerySpec,
    pub threshold: Threshold,
    /// Seconds between evaluations; evaluations fall on multiples of it (Unix time).
    pub frequency: u64,
    pub alert_type: AlertType,
    #[serde(default)]
    pub recipients: Vec<Recipient>,
    /// The service whose incidents this trigger reports, for DORA's time to restore (else
    /// taken from a `service = X` filter of the query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The body of a create or a replace (`PUT` replaces the whole definition).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub disabled: bool,
    pub query: QuerySpec,
    pub threshold: Threshold,
    #[serde(default)]
    pub frequency: Option<u64>,
    #[serde(default)]
    pub alert_type: AlertType,
    #[serde(default)]
    pub recipients: Vec<Recipient>,
    #[serde(default)]
    pub service: Option<String>,
    /// Read-only fields a client may send back unchanged (Honeycomb's GET → PUT round trip).
    #[serde(default, rename = "id")]
    pub _id: Option<serde_json::Value>,
    #[serde(default, rename = "triggered")]
    pub _triggered: Option<serde_json::Value>,
    #[serde(default, rename = "dataset")]
    pub _dataset: Option<serde_json::Value>,
    #[serde(default, rename = "created_at")]
    pub _created_at: Option<serde_json::Value>,
    #[serde(default, rename = "updated_at")]
    pub _updated_at: Option<serde_json::Value>,
    #[serde(default, rename = "state")]
    pub _state: Option<serde_json::Value>,
}

impl TriggerInput {
    /// Checks everything that does not need the dataset's columns; returns the frequency.
    fn check(&mut self) -> Result<u64, AlertError> {
        let bad = |m: String| Err(AlertError::Invalid(m));
        if self.name.trim().is_empty() || self.name.len() > 256 {
            return bad("name must be 1 to 256 characters".into());
        }
        if self.description.len() > 4096 {
            return bad("description is longer than 4096 bytes".into());
        }
        let frequency = self.frequency.unwrap_or(900);
        if !(MIN_FREQUENCY..=MAX_FREQUENCY).contains(&frequency) {
            return bad(format!(
                "frequency must be between {MIN_FREQUENCY} and {MAX_FREQUENCY} seconds"
            ));
        }
        let q = &mut self.query;
        if q.calculations.len() != 1 {
            return bad(format!(
                "a trigger's query needs exactly one calculation, it has {}",
                q.calculations.len()
            ));
        }
        let op = q.calculations[0].op.to_ascii_uppercase();
        if matches!(op.as_str(), "HEATMAP" | "CONCURRENCY") {
            return bad(format!("{op} cannot be compared with a threshold"));
        }
        if q.start_time.is_some() || q.end_time.is_some() {
            return bad("a trigger's query takes time_range, not start_time/end_time".into());
        }
        let range = q.time_range.unwrap_or(frequency as i64);
        if !(1..=MAX_TIME_RANGE).contains(&range) {
            return bad(format!(
                "query time_range must be between 1 and {MAX_TIME_RANGE} seconds"
            ));
        }
        q.time_range = Some(range);
        q.granularity = None;
        q.orders.clear();
        if !self.threshold.value.is_finite() {
            return bad("threshold.value must be a finite number".into());
        }
        if self.threshold.exceeded_limit == 0 || self.threshold.exceeded_limit > 1000 {
            return bad("threshold.exceeded_limit must be between 1 and 1000".into());
        }
        if self.recipients.len() > MAX_RECIPIENTS {
            return bad(format!("at most {MAX_RECIPIENTS} recipients"));
        }
        for r in &self.recipients {
            r.validate(true).map_err(AlertError::Invalid)?;
        }
        Ok(frequency)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct TriggersFile {
    triggers: Vec<Trigger>,
    next: u64,
}

/// Every trigger.
#[derive(Debug, Clone)]
pub struct Triggers {
    file: Saved<TriggersFile>,
}

fn check_dataset(dataset: &str) -> Result<(), AlertError> {
    eventide_model::dataset::DatasetName::new(dataset)
        .map(|_| ())
        .map_err(|e| AlertError::Invalid(e.to_string()))
}

fn not_found(dataset: &str, id: &str) -> AlertError {
    AlertError::NotFound(format!("trigger {id:?} not found in dataset {dataset:?}"))
}

impl Triggers {
    pub fn open(dir: &Path) -> Result<Self, FileError> {
        Ok(Self {
            file: Saved::open(dir.join("alerts").join("triggers.json"))?,
        })
    }

    /// Checks `input` without storing it (the server also runs its query once first).
    pub fn check(dataset: &str, input: &mut TriggerInput) -> Result<(), AlertError> {
        check_dataset(dataset)?;
        input.check().map(|_| ())
    }

    pub fn create(&self, dataset: &str, mut input: TriggerInput) -> Result<Trigger, AlertError> {
        check_dataset(dataset)?;
        let frequency = input.check()?;
        let now = crate::now_rfc3339();
        self.file.change(|f| {
            if f.triggers.len() >= MAX_TRIGGERS {
                return Err(AlertError::Invalid(format!(
                    "there are already {MAX_TRIGGERS} triggers"
                )));
            }
            f.next += 1;
            let t = Trigger {
                id: format!("t{:06}", f.next),
                dataset: dataset.to_owned(),
                name: input.name,
                description: input.description,
                disabled: input.disabled,
                query: input.query,
                threshold: input.threshold,
                frequency,
                alert_type: input.alert_type,
                recipients: input.recipients,
                service: input.service,
                created_at: now.clone(),
                updated_at: now,
            };
            f.triggers.push(t.clone());
            Ok(t)
        })
    }

    pub fn replace(
        &self,
        dataset: &str,
        id: &str,
        mut input: TriggerInput,
    ) -> Result<Trigger, AlertError> {
        check_dataset(dataset)?;
        let frequency = input.check()?;
        self.file.change(|f| {
            let t = f
                .triggers
                .iter_mut()
                .find(|t| t.dataset == dataset && t.id == id)
                .ok_or_else(|| not_found(dataset, id))?;
            t.name = input.name;
            t.description = input.description;
            t.disabled = input.disabled;
            t.query = input.query;
            t.threshold = input.threshold;
            t.frequency = frequency;
            t.alert_type = input.alert_type;
            t.recipients = input.recipients;
            t.service = input.service;
            t.updated_at = crate::now_rfc3339();
            Ok(t.clone())
        })
    }

    pub fn delete(&self, dataset: &str, id: &str) -> Result<Trigger, AlertError> {
        check_dataset(dataset)?;
        self.file.change(|f| {
            let pos = f
                .triggers
                .iter()
                .position(|t| t.dataset == dataset && t.id == id)
                .ok_or_else(|| not_found(dataset, id))?;
            Ok(f.triggers.remove(pos))
        })
    }

    pub fn get(&self, dataset: &str, id: &str) -> Result<Trigger, AlertError> {
        self.file
            .read(|f| {
                f.triggers
                    .iter()
                    .find(|t| t.dataset == dataset && t.id == id)
                    .cloned()
            })
            .ok_or_else(|| not_found(dataset, id))
    }

    /// The triggers of `dataset`, oldest first.
    pub fn list(&self, dataset: &str) -> Result<Vec<Trigger>, AlertError> {
        check_dataset(dataset)?;
        Ok(self.file.read(|f| {
            f.triggers
                .iter()
                .filter(|t| t.dataset == dataset)
                .cloned()
                .collect()
        }))
    }

    /// Every trigger.
    pub fn all(&self) -> Vec<Trigger> {
        self.file.read(|f| f.triggers.clone())
    }
}

impl Trigger {
    /// The service this trigger's incidents count for (DORA): its `service`, else the value
    /// of a `{service column} = X` filter in an AND query.
    pub fn service_for(&self, service_column: &str) -> Option<String> {
        if let Some(s) = &self.service {
            return Some(s.clone());
        }
        let and = self
            .query
            .filter_combination
            .as_deref()
            .is_none_or(|c| c.eq_ignore_ascii_case("and"));
        self.query
            .filters
            .iter()
            .filter(|_| and)
            .find(|f| f.column == service_column && f.op == "=")
            .and_then(|f| f.value.as_ref())
            .and_then(|v| v.as_str().map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: serde_json::Value) -> TriggerInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn create_replace_delete_persist_and_checks_name_fields() {
        let dir = tempfile::tempdir().unwrap();
        let t = Triggers::open(dir.path()).unwrap();
        let made = t
            .create(
                "shop",
                input(json!({
                    "name": "errors", "frequency": 60,
                    "query": {"calculations": [{"op": "COUNT"}],
                              "filters": [{"column": "service.name", "op": "=", "value": "api"}]},
                    "threshold": {"op": ">", "value": 10},
                    "recipients": [{"type": "webhook", "target": "http://127.0.0.1:1/h"}]
                })),
            )
            .unwrap();
        assert_eq!(made.id, "t000001");
        assert_eq!(
            made.query.time_range,
            Some(60),
            "time_range defaults to frequency"
        );
        assert_eq!(made.threshold.exceeded_limit, 1);
        assert_eq!(made.alert_type, AlertType::OnChange);
        assert_eq!(made.service_for("service.name").as_deref(), Some("api"));

        let again = Triggers::open(dir.path()).unwrap();
        assert_eq!(again.get("shop", "t000001").unwrap(), made);
        let mut changed = input(json!({
            "name": "errors!", "frequency": 30, "alert_type": "on_true",
            "query": {"calculations": [{"op": "P99", "column": "duration_ms"}], "time_range": 300},
            "threshold": {"op": ">=", "value": 250.5, "exceeded_limit": 2}
        }));
        let replaced = again.replace("shop", "t000001", changed.clone()).unwrap();
        assert_eq!(replaced.frequency, 30);
        assert_eq!(replaced.alert_type, AlertType::OnTrue);
        assert_eq!(replaced.service_for("service.name"), None);

        for (patch, word) in [
            (json!({"frequency": 0}), "frequency"),
            (
                json!({"query": {"calculations": []}}),
                "exactly one calculation",
            ),
            (
                json!({"query": {"calculations": [{"op": "HEATMAP", "column": "d"}]}}),
                "HEATMAP",
            ),
            (
                json!({"threshold": {"op": ">", "value": 1, "exceeded_limit": 0}}),
                "exceeded_limit",
            ),
            (
                json!({"recipients": [{"type": "webhook", "target": "mailto:x"}]}),
                "webhook",
            ),
        ] {
            let mut v = json!({
                "name": "n", "query": {"calculations": [{"op": "COUNT"}]},
                "threshold": {"op": ">", "value": 1}
            });
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = again.create("shop", input(v)).unwrap_err().to_string();
            assert!(e.contains(word), "{e} should name {word}");
        }
        assert!(
            serde_json::from_value::<TriggerInput>(json!({
                "name": "n", "query": {}, "threshold": {"op": "!", "value": 1}
            }))
            .is_err()
        );
        changed.name = String::new();
        assert!(again.replace("shop", "t000001", changed).is_err());
        assert!(matches!(
            again.delete("shop", "t000009"),
            Err(AlertError::NotFound(_))
        ));
        again.delete("shop", "t000001").unwrap();
        assert!(Triggers::open(dir.path()).unwrap().all().is_empty());
    }
}

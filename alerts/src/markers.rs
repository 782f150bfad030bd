//! Markers: a point or span of time with a message, drawn on every chart of its dataset (or
//! of all datasets, `__all__`). The HTTP shape is Honeycomb's (`/1/markers/{dataset}`), so
//! existing tooling that posts deploy markers works unchanged.

use std::path::Path;
use std::sync::Arc;

use crate::jsonfile::Saved;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use serde::{Deserialize, Serialize};

/// The dataset name of markers shown on every dataset.
pub const ALL_DATASETS: &str = "__all__";

/// Longest message, type, url or label accepted.
pub const MAX_TEXT: usize = 4096;

/// Why a marker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    /// A mistake in the request; the message names it.
    #[error("{0}")]
    Invalid(String),
    #[error("marker {id:?} not found in dataset {dataset:?}")]
    NotFound { dataset: String, id: String },
    #[error("markers file {0}")]
    Io(#[from] crate::jsonfile::FileError),
}

/// A stored marker. Times are Unix seconds, as Honeycomb's API has them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Marker {
    pub id: String,
    pub dataset: String,
    pub start_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// RFC3339 UTC.
    pub created_at: String,
    pub updated_at: String,
}

/// The body of a create or update: every field optional (an update changes only what it
/// names). `start_time` defaults to now on create.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MarkerInput {
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub message: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub service: Option<String>,
    pub version: Option<String>,
    pub commit: Option<String>,
    pub commit_time: Option<i64>,
    pub environment: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct MarkersFile {
    markers: Vec<Marker>,
    /// Ids handed out so far (ids are never reused).
    next: u64,
}

/// Every marker, in memory and in `DATA/markers.json`.
#[derive(Debug, Clone)]
pub struct Markers {
    file: Saved<MarkersFile>,
    /// The start of a marker created without one.
    clock: eventide_model::time::Clock,
}

fn check_dataset(dataset: &str) -> Result<(), MarkerError> {
    if dataset == ALL_DATASETS {
        return Ok(());
    }
    eventide_model::dataset::DatasetName::new(dataset)
        .map(|_| ())
        .map_err(|e| MarkerError::Invalid(e.to_string()))
}

fn check_text(field: &str, v: &Option<String>) -> Result<(), MarkerError> {
    match v {
        Some(s) if s.len() > MAX_TEXT => Err(MarkerError::Invalid(format!(
            "{field} is longer than {MAX_TEXT} bytes"
        ))),
        _ => Ok(()),
    }
}

fn check_time(field: &str, v: Option<i64>) -> Result<(), MarkerError> {
    // Seconds between 1970 and 2200: catches milliseconds sent as seconds.
    match v {
        Some(t) if !(0..=7_258_118_400).contains(&t) => Err(MarkerError::Invalid(format!(
            "{field} {t} is not a Unix time in seconds"
        ))),
        _ => Ok(()),
    }
}

impl Markers {
    /// Opens (or starts) the markers of the data directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, MarkerError> {
        Ok(Self {
            file: Saved::open(dir.join("markers.json"))?,
            clock: eventide_model::time::Clock::system(),
        })
    }

    /// Starts markers created without a start time at `clock`'s now.
    pub fn with_clock(mut self, clock: eventide_model::time::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Creates a marker in `dataset` (or `__all__`).
    pub fn create(&self, dataset: &str, input: MarkerInput) -> Result<Marker, MarkerError> {
        check_dataset(dataset)?;
        let now = crate::now_rfc3339();
        let mut m = Marker {
            id: String::new(),
            dataset: dataset.to_owned(),
            start_time: self.clock.now_micros() / 1_000_000,
            end_time: None,
            message: String::new(),
            kind: String::new(),
            url: String::new(),
            service: None,
            version: None,
            commit: None,
            commit_time: None,
            environment: None,
            created_at: now.clone(),
            updated_at: now,
        };
        apply(&mut m, input)?;
        self.file.change(|file| {
            file.next += 1;
            m.id = format!("m{:06}", file.next);
            file.markers.push(m.clone());
            Ok(m)
        })
    }

    /// The markers of `dataset`, oldest first (`__all__`: the markers of all datasets).
    pub fn list(&self, dataset: &str) -> Result<Vec<Marker>, MarkerError> {
        check_dataset(dataset)?;
        let mut out: Vec<Marker> = self.file.read(|file| {
            file.markers
                .iter()
                .filter(|m| m.dataset == dataset)
                .cloned()
                .collect()
        });
        out.sort_by_key(|m| (m.start_time, m.id.clone()));
        Ok(out)
    }

    /// The markers shown on `dataset`'s charts over `[start_s, end_s)`: its own and the
    /// `__all__` ones whose time span touches the range.
    pub fn in_range(&self, dataset: &str, start_s: i64, end_s: i64) -> Vec<Marker> {
        let mut out: Vec<Marker> = self.file.read(|file| {
            file.markers
                .iter()
                .filter(|m| m.dataset == dataset || m.dataset == ALL_DATASETS)
                .filter(|m| m.start_time < end_s && m.end_time.unwrap_or(m.start_time) >= start_s)
                .cloned()
                .collect()
        });
        out.sort_by_key(|m| (m.start_time, m.id.clone()));
        out
    }

    /// Every marker, for the SQL table.
    pub fn all(&self) -> Vec<Marker> {
        self.file.read(|f| f.markers.clone())
    }

    /// Changes the fields `input` names.
    pub fn update(
        &self,
        dataset: &str,
        id: &str,
        input: MarkerInput,
    ) -> Result<Marker, MarkerError> {
        check_dataset(dataset)?;
        self.file.change(|file| {
            let pos = position(file, dataset, id)?;
            let m = &mut file.markers[pos];
            apply(m, input)?;
            m.updated_at = crate::now_rfc3339();
            Ok(m.clone())
        })
    }

    /// Deletes a marker; returns it.
    pub fn delete(&self, dataset: &str, id: &str) -> Result<Marker, MarkerError> {
        check_dataset(dataset)?;
        self.file.change(|file| {
            let pos = position(file, dataset, id)?;
            Ok(file.markers.remove(pos))
        })
    }
}

/// Where marker `id` of `dataset` is in the list.
fn position(file: &MarkersFile, dataset: &str, id: &str) -> Result<usize, MarkerError> {
    file.markers
        .iter()
        .position(|m| m.dataset == dataset && m.id == id)
        .ok_or_else(|| MarkerError::NotFound {
            dataset: dataset.to_owned(),
            id: id.to_owned(),
        })
}

/// Applies the fields `input` names to `m`, checking them.
fn apply(m: &mut Marker, input: MarkerInput) -> Result<(), MarkerError> {
    for (field, v) in [
        ("message", &input.message),
        ("type", &input.kind),
        ("url", &input.url),
        ("service", &input.service),
        ("version", &input.version),
        ("commit", &input.commit),
        ("environment", &input.environment),
    ] {
        check_text(field, v)?;
    }
    check_time("start_time", input.start_time)?;
    check_time("end_time", input.end_time)?;
    check_time("commit_time", input.commit_time)?;
    if let Some(t) = input.start_time {
        m.start_time = t;
    }
    if let Some(t) = input.end_time {
        m.end_time = Some(t);
    }
    if let Some(end) = m.end_time
        && end < m.start_time
    {
        return Err(MarkerError::Invalid(format!(
            "end_time {end} is before start_time {}",
            m.start_time
        )));
    }
    let set = |dst: &mut String, v: Option<String>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut m.message, input.message);
    set(&mut m.kind, input.kind);
    set(&mut m.url, input.url);
    for (dst, v) in [
        (&mut m.service, input.service),
        (&mut m.version, input.version),
        (&mut m.commit, input.commit),
        (&mut m.environment, input.environment),
    ] {
        if v.is_some() {
            *dst = v;
        }
    }
    if input.commit_time.is_some() {
        m.commit_time = input.commit_time;
    }
    Ok(())
}

/// `eventide.markers` in SQL: every marker, read when a query plans.
#[derive(Debug)]
pub struct MarkersTable {
    markers: Markers,
    schema: SchemaRef,
}

impl MarkersTable {
    pub fn new(markers: Markers) -> Self {
        let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let text = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
        let schema = Arc::new(Schema::new(vec![
            text("id", false),
            text("dataset", false),
            Field::new("start_time", ts(), false),
            Field::new("end_time", ts(), true),
            text("message", false),
            text("type", false),
            text("url", false),
            text("service", true),
            text("version", true),
            text("commit", true),
            Field::new("commit_time", ts(), true),
            text("environment", true),
        ]));
        Self { markers, schema }
    }

    fn batch(&self) -> DfResult<RecordBatch> {
        let all = self.markers.all();
        let text = |f: &dyn Fn(&Marker) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(all.iter().map(f).collect::<Vec<_>>()))
        };
        let time = |f: &dyn Fn(&Marker) -> Option<i64>| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from(
                    all.iter()
                        .map(|m| f(m).map(|s| s.saturating_mul(1_000_000)))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            )
        };
        Ok(RecordBatch::try_new(
            self.schema.clone(),
            vec![
                text(&|m| Some(m.id.clone())),
                text(&|m| Some(m.dataset.clone())),
                time(&|m| Some(m.start_time)),
                time(&|m| m.end_time),
                text(&|m| Some(m.message.clone())),
                text(&|m| Some(m.kind.clone())),
                text(&|m| Some(m.url.clone())),
                text(&|m| m.service.clone()),
                text(&|m| m.version.clone()),
                text(&|m| m.commit.clone()),
                time(&|m| m.commit_time),
                text(&|m| m.environment.clone()),
            ],
        )?)
    }
}

#[async_trait]
impl TableProvider for MarkersTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let source = MemorySourceConfig::try_new(
            &[vec![self.batch()?]],
            self.schema.clone(),
            projection.cloned(),
        )?
        .with_limit(limit);
        Ok(datafusion::datasource::source::DataSourceExec::from_data_source(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_update_delete_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let m = Markers::open(dir.path()).unwrap();
        let a = m
            .create(
                "checkout",
                MarkerInput {
                    start_time: Some(1_700_000_000),
                    message: Some("deploy 42".into()),
                    kind: Some("deploy".into()),
                    service: Some("checkout".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        let b = m
            .create(
                ALL_DATASETS,
                MarkerInput {
                    start_time: Some(1_700_000_100),
                    end_time: Some(1_700_000_200),
                    message: Some("freeze".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_ne!(a.id, b.id);
        let u = m
            .update(
                "checkout",
                &a.id,
                MarkerInput {
                    version: Some("v42".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            (u.message.as_str(), u.version.as_deref()),
            ("deploy 42", Some("v42"))
        );
        // Reopened from disk: the same markers.
        let m2 = Markers::open(dir.path()).unwrap();
        assert_eq!(m2.list("checkout").unwrap(), vec![u.clone()]);
        assert_eq!(m2.list(ALL_DATASETS).unwrap(), vec![b.clone()]);
        // A chart of checkout over [1_700_000_050, 1_700_000_150) shows the __all__ span only.
        assert_eq!(
            m2.in_range("checkout", 1_700_000_050, 1_700_000_150),
            vec![b.clone()]
        );
        assert_eq!(m2.in_range("checkout", 0, i64::MAX).len(), 2);
        assert_eq!(m2.in_range("other", 0, i64::MAX), vec![b.clone()]);
        m2.delete("checkout", &a.id).unwrap();
        assert!(matches!(
            m2.delete("checkout", &a.id),
            Err(MarkerError::NotFound { .. })
        ));
        let m3 = Markers::open(dir.path()).unwrap();
        assert!(m3.list("checkout").unwrap().is_empty());
        // Ids are not reused after a delete.
        let c = m3.create("checkout", MarkerInput::default()).unwrap();
        assert_ne!(c.id, a.id);
        assert_ne!(c.id, b.id);
    }

    #[test]
    fn bad_input_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let m = Markers::open(dir.path()).unwrap();
        let err = |r: Result<Marker, MarkerError>| r.unwrap_err().to_string();
        assert_eq!(
            err(m.create(
                "checkout",
                MarkerInput {
                    start_time: Some(100),
                    end_time: Some(50),
                    ..Default::default()
                }
            )),
            "end_time 50 is before start_time 100"
        );
        assert_eq!(
            err(m.create(
                "checkout",
                MarkerInput {
                    start_time: Some(1_700_000_000_000),
                    ..Default::default()
                }
            )),
            "start_time 1700000000000 is not a Unix time in seconds"
        );
        assert_eq!(
            err(m.create(
                "checkout",
                MarkerInput {
                    message: Some("x".repeat(MAX_TEXT + 1)),
                    ..Default::default()
                }
            )),
            format!("message is longer than {MAX_TEXT} bytes")
        );
        assert!(err(m.create("bad name!", MarkerInput::default())).contains("invalid character"));
        assert!(m.all().is_empty(), "nothing stored by a refused request");
    }
}

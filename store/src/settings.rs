//! Per-dataset settings: retention and deletion. One JSON file, `DATA/datasets.json`, replaced
//! atomically (temporary file, fsync, rename, fsync of the directory) by whichever process
//! serves the admin API, and re-read by every process when it changes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// Settings of one dataset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatasetSettings {
    /// Events older than this many days are hidden from queries at once and their segments
    /// deleted by the next retention pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Set by deleting the dataset: events with an earlier timestamp are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_before_us: Option<i64>,
    /// Columns compacted files of this dataset are sorted by (after the time window); None:
    /// the store's `sort_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<Vec<String>>,
}

impl DatasetSettings {
    /// Events with a timestamp before this are no longer visible (None: all are).
    pub fn visible_from_us(&self, now_us: i64) -> Option<i64> {
        let retention = self
            .retention_days
            .map(|d| now_us.saturating_sub(i64::from(d).saturating_mul(86_400_000_000)));
        match (retention, self.deleted_before_us) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

pub const SETTINGS_FILE: &str = "datasets.json";

/// The settings file.
#[derive(Debug, Clone)]
pub struct SettingsFile {
    path: PathBuf,
}

impl SettingsFile {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(SETTINGS_FILE),
        }
    }

    /// Modification time, to re-read only on change.
    pub fn mtime(&self) -> Option<std::time::SystemTime> {
        fs::metadata(&self.path).and_then(|m| m.modified()).ok()
    }

    pub fn load(&self) -> Result<BTreeMap<String, DatasetSettings>> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Catalog {
                path: self.path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(StoreError::io(&self.path, e)),
        }
    }

    pub fn save(&self, settings: &BTreeMap<String, DatasetSettings>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(settings)
            .map_err(|e| StoreError::Internal(format!("encoding settings: {e}")))?;
        crate::catalog::replace_file(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_is_the_later_of_retention_and_deletion() {
        let day = 86_400_000_000;
        let s = DatasetSettings {
            retention_days: Some(2),
            ..Default::default()
        };
        assert_eq!(s.visible_from_us(10 * day), Some(8 * day));
        let s = DatasetSettings {
            retention_days: Some(2),
            deleted_before_us: Some(9 * day),
            ..Default::default()
        };
        assert_eq!(s.visible_from_us(10 * day), Some(9 * day));
        assert_eq!(DatasetSettings::default().visible_from_us(10 * day), None);
    }

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let f = SettingsFile::new(dir.path());
        assert!(f.load().unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert(
            "web".to_owned(),
            DatasetSettings {
                retention_days: Some(7),
                sort_key: Some(vec!["service.name".into()]),
                ..Default::default()
            },
        );
        f.save(&m).unwrap();
        assert_eq!(f.load().unwrap(), m);
        assert!(!dir.path().join("datasets.json.tmp").exists());
    }
}

//! The catalog: which Parquet segments hold each dataset, and up to which log offset.
//!
//! One JSON file per log partition, `DATA/catalog/p{partition:05}.json`, written only by the
//! process that owns the partition and replaced atomically (write a temporary file, fsync it,
//! rename it over the old one, fsync the directory): after a crash at any point the file is
//! either the old or the new catalog, never a mix. Other processes read it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use eventide_model::ColumnType;
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// One committed Parquet segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentMeta {
    pub id: u64,
    /// Object-store path relative to the segment root, e.g.
    /// `checkout/p00002-000000000007-5f3a9c1e.parquet` (partition, id, writer token).
    pub path: String,
    /// Smallest and largest `timestamp` in the segment, Unix microseconds.
    pub min_time_us: i64,
    pub max_time_us: i64,
    pub rows: u64,
    pub bytes: u64,
    /// What its rows take decoded into Arrow (0 in catalogs from before it was recorded:
    /// estimated from `bytes`). Bounds the memory of a merge that reads it.
    #[serde(default)]
    pub arrow_bytes: u64,
    /// The log offsets of the first and last log records this segment holds (for a merged
    /// segment: the smallest and largest of its inputs).
    pub first_offset: u64,
    pub last_offset: u64,
    /// How many times its events have been rewritten by compaction (0: a flush; see
    /// `compact::policy`).
    #[serde(default)]
    pub level: u8,
    /// When the segment was written, Unix microseconds (0 in catalogs from before it was
    /// recorded: taken as long ago).
    #[serde(default)]
    pub created_us: i64,
}

/// Catalog state of one dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetEntry {
    /// Columns in order of first appearance (without `timestamp` and `_samplerate`).
    pub columns: Vec<(String, ColumnType)>,
    /// Every log record of this dataset at or below this offset is in `segments`.
    pub committed_offset: Option<u64>,
    pub segments: Vec<SegmentMeta>,
}

/// The catalog of one log partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub version: u32,
    #[serde(default)]
    pub partition: u32,
    /// The log this catalog's offsets refer to (`embedded`, `kafka:TOPIC`).
    #[serde(default)]
    pub log: String,
    pub next_segment_id: u64,
    pub datasets: BTreeMap<String, DatasetEntry>,
}

/// Reads and atomically replaces one partition's catalog file.
#[derive(Debug, Clone)]
pub struct CatalogFile {
    path: PathBuf,
}

/// Folder of the catalog files under the data directory.
pub const CATALOG_DIR: &str = "catalog";

/// The partitions that have a catalog file under `data_dir`, with the files' modification
/// times.
pub fn list_partitions(data_dir: &Path) -> Result<Vec<(u32, Option<std::time::SystemTime>)>> {
    let dir = data_dir.join(CATALOG_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
        let name = entry.file_name();
        let Some(p) = name
            .to_str()
            .and_then(|n| n.strip_prefix('p'))
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        out.push((p, entry.metadata().and_then(|m| m.modified()).ok()));
    }
    out.sort_unstable_by_key(|(p, _)| *p);
    Ok(out)
}

impl CatalogFile {
    /// The catalog file of `partition` under `data_dir`.
    pub fn new(data_dir: &Path, partition: u32) -> Self {
        Self {
            path: data_dir
                .join(CATALOG_DIR)
                .join(format!("p{partition:05}.json")),
        }
    }

    /// Whether the catalog file exists.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Loads the catalog, or an empty one when none was ever written.
    pub fn load(&self) -> Result<Catalog> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Catalog {
                path: self.path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog {
                version: 1,
                next_segment_id: 1,
                ..Catalog::default()
            }),
            Err(e) => Err(StoreError::io(&self.path, e)),
        }
    }

    /// Replaces the catalog atomically and durably.
    pub fn commit(&self, catalog: &Catalog) -> Result<()> {
        let bytes = serde_json::to_vec(catalog).map_err(|e| StoreError::Catalog {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        replace_file(&self.path, &bytes)
    }
}

/// Replaces `path` (in directory `dir`) with `bytes`, atomically and durably: write
/// `path.tmp`, fsync it, rename it over `path`, fsync the directory. After a crash the file is
/// the old or the new content, never a mix.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    eventide_durable::replace(path, bytes).map_err(|e| StoreError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = CatalogFile::new(dir.path(), 3);
        assert!(file.load().unwrap().datasets.is_empty());
        let mut c = Catalog {
            version: 1,
            partition: 3,
            log: "embedded".into(),
            next_segment_id: 2,
            ..Catalog::default()
        };
        c.datasets.insert(
            "ds".into(),
            DatasetEntry {
                columns: vec![("a".into(), ColumnType::Int)],
                committed_offset: Some(9),
                segments: vec![SegmentMeta {
                    id: 1,
                    path: "ds/1.parquet".into(),
                    min_time_us: 1,
                    max_time_us: 2,
                    rows: 3,
                    bytes: 4,
                    arrow_bytes: 40,
                    first_offset: 0,
                    last_offset: 9,
                    level: 0,
                    created_us: 0,
                }],
            },
        );
        file.commit(&c).unwrap();
        let back = file.load().unwrap();
        assert_eq!(back.next_segment_id, 2);
        assert_eq!(back.datasets["ds"].segments, c.datasets["ds"].segments);
        assert!(!dir.path().join("catalog/p00003.json.tmp").exists());
        assert_eq!(list_partitions(dir.path()).unwrap().len(), 1);
        assert_eq!(list_partitions(dir.path()).unwrap()[0].0, 3);
    }
}

/// Property tests of catalog commits and their replay.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = SegmentMeta> {
        (
            any::<u64>(),
            "\\PC{1,40}",
            any::<i64>(),
            any::<i64>(),
            any::<(u64, u64, u64, u64)>(),
            any::<u8>(),
            any::<i64>(),
        )
            .prop_map(
                |(id, path, a, b, (rows, bytes, first, last), level, created_us)| SegmentMeta {
                    id,
                    path,
                    min_time_us: a.min(b),
                    max_time_us: a.max(b),
                    rows,
                    bytes,
                    arrow_bytes: bytes.saturating_mul(7),
                    first_offset: first,
                    last_offset: last,
                    level,
                    created_us,
                },
            )
    }

    fn catalog() -> impl Strategy<Value = Catalog> {
        let column = (
            "[a-z.]{1,12}",
            prop_oneof![
                Just(ColumnType::Bool),
                Just(ColumnType::Int),
                Just(ColumnType::Float),
                Just(ColumnType::String)
            ],
        );
        let entry = (
            proptest::collection::vec(column, 0..6),
            proptest::option::of(any::<u64>()),
            proptest::collection::vec(segment(), 0..6),
        )
            .prop_map(|(columns, committed_offset, segments)| DatasetEntry {
                columns,
                committed_offset,
                segments,
            });
        (
            any::<u32>(),
            "[a-z:-]{0,20}",
            any::<u64>(),
            proptest::collection::btree_map("[A-Za-z0-9._-]{1,16}", entry, 0..4),
        )
            .prop_map(|(partition, log, next_segment_id, datasets)| Catalog {
                version: 1,
                partition,
                log,
                next_segment_id,
                datasets,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// After any sequence of commits, some interrupted before the rename (a torn temporary
        /// file left behind), loading gives exactly the last completed commit.
        #[test]
        fn load_replays_the_last_completed_commit(
            steps in proptest::collection::vec((catalog(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)), 1..6)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let file = CatalogFile::new(dir.path(), 7);
            let mut last: Option<Catalog> = None;
            for (c, interrupted, junk) in steps {
                if interrupted {
                    // A crash between writing the temporary file and the rename.
                    fs::create_dir_all(dir.path().join(CATALOG_DIR)).unwrap();
                    fs::write(dir.path().join("catalog/p00007.json.tmp"), &junk).unwrap();
                } else {
                    file.commit(&c).unwrap();
                    last = Some(c);
                }
                let loaded = file.load().unwrap();
                match &last {
                    Some(want) => prop_assert_eq!(&loaded, want),
                    None => prop_assert!(loaded.datasets.is_empty()),
                }
            }
        }
    }
}

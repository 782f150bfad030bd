//! The column types of every dataset, as ingest decides them.
//!
//! Ingest applies the type rules (see `eventide_model::schema`) before an event reaches the
//! log, so every value the log holds already has its column's type. The registry is seeded
//! at start from the store's schemas, which the store rebuilt from the catalog and the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use eventide_model::{ColumnType, DatasetSchema};

/// Per-dataset schemas, each behind its own lock.
#[derive(Debug, Default)]
pub struct SchemaRegistry {
    datasets: RwLock<HashMap<String, Arc<Mutex<DatasetSchema>>>>,
}

impl SchemaRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Seeds the registry with schemas known to the store.
    pub fn seed(&self, schemas: HashMap<String, Vec<(String, ColumnType)>>) {
        let mut map = self.datasets.write().unwrap_or_else(|p| p.into_inner());
        for (name, cols) in schemas {
            map.insert(
                name,
                Arc::new(Mutex::new(DatasetSchema::from_columns(cols))),
            );
        }
    }

    /// The schema of `dataset`, created empty on first use.
    pub fn dataset(&self, dataset: &str) -> Arc<Mutex<DatasetSchema>> {
        if let Some(s) = self
            .datasets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(dataset)
        {
            return s.clone();
        }
        self.datasets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(dataset.to_owned())
            .or_default()
            .clone()
    }
}

//! The dataset's columns by name, which the names in a spec are checked against.

use std::collections::HashMap;

use arrow::datatypes::{DataType, SchemaRef};

use crate::{QueryError, Result};

/// The dataset's columns by name.
pub(crate) struct Columns {
    pub(super) dataset: String,
    pub(super) types: HashMap<String, DataType>,
}

impl Columns {
    pub(crate) fn new(dataset: &str, schema: &SchemaRef) -> Self {
        Self {
            dataset: dataset.to_owned(),
            types: schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect(),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Result<&DataType> {
        self.types.get(name).ok_or_else(|| {
            QueryError::bad(format!(
                "unknown column {name:?} in dataset {:?}",
                self.dataset
            ))
        })
    }
}

//! Dataset names: 1–128 characters of `[A-Za-z0-9._-]`, not starting with `.` (a dataset
//! name is a directory name under `DATA/segments/`: `.` and `..` would escape it).

use std::fmt;

/// Longest accepted dataset name.
pub const MAX_DATASET_NAME: usize = 128;

/// A validated dataset name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetName(String);

/// Why a dataset name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidDatasetName {
    #[error("dataset name is empty")]
    Empty,
    #[error("dataset name is longer than {MAX_DATASET_NAME} characters")]
    TooLong,
    #[error("dataset name {name:?} has invalid character {ch:?}: use A-Z a-z 0-9 . _ -")]
    BadChar { name: String, ch: char },
    #[error("dataset name {0:?} starts with '.'")]
    LeadingDot(String),
}

impl DatasetName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, InvalidDatasetName> {
        if name.is_empty() {
            return Err(InvalidDatasetName::Empty);
        }
        if name.len() > MAX_DATASET_NAME {
            return Err(InvalidDatasetName::TooLong);
        }
        if let Some(ch) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidDatasetName::BadChar {
                name: name.chars().take(MAX_DATASET_NAME).collect(),
                ch,
            });
        }
        if name.starts_with('.') {
            return Err(InvalidDatasetName::LeadingDot(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DatasetName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(DatasetName::new("my-service.prod_1").is_ok());
        assert_eq!(DatasetName::new(""), Err(InvalidDatasetName::Empty));
        assert_eq!(
            DatasetName::new(&"a".repeat(129)),
            Err(InvalidDatasetName::TooLong)
        );
        assert!(matches!(
            DatasetName::new("a b"),
            Err(InvalidDatasetName::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            DatasetName::new("a/b"),
            Err(InvalidDatasetName::BadChar { ch: '/', .. })
        ));
        // No way out of DATA/segments/ (or onto it).
        for name in [".", "..", ".hidden"] {
            assert_eq!(
                DatasetName::new(name),
                Err(InvalidDatasetName::LeadingDot(name.into()))
            );
        }
        assert!(DatasetName::new("a..b").is_ok());
    }
}

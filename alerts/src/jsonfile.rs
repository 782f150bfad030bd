//! Small JSON state files, written the crash-safe way: a temporary file, fsync'd, renamed over
//! the old one, then the folder fsync'd. A crash keeps either the old or the new content.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl Fn(std::io::Error) -> FileError + '_ {
    move |source| FileError {
        path: path.to_owned(),
        source,
    }
}

/// Reads `path`, or `T::default()` when it does not exist yet. A file that exists but does
/// not parse is an error (never silently replaced by an empty state).
pub fn read_or_default<T: DeserializeOwned + Default>(path: &Path) -> Result<T, FileError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| err(path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(err(path)(e)),
    }
}

/// Replaces `path` with `value` as pretty JSON, durably.
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), FileError> {
    let io = err(path);
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| io(std::io::Error::other(e)))?;
    eventide_durable::replace(path, &bytes).map_err(&io)
}

/// A value kept in a state file: read from memory, changed by copy, save, swap (a failed
/// edit or save changes nothing, in memory or on disk).
#[derive(Debug)]
pub struct Saved<T> {
    path: PathBuf,
    value: std::sync::Arc<std::sync::Mutex<T>>,
}

impl<T> Clone for Saved<T> {
    fn clone(&self) -> Self {
        Self {
            path: self.path.clone(),
            value: self.value.clone(),
        }
    }
}

impl<T: Serialize + DeserializeOwned + Default + Clone> Saved<T> {
    /// Loads `path` (missing: the default value).
    pub fn open(path: PathBuf) -> Result<Self, FileError> {
        let value = read_or_default(&path)?;
        Ok(Self {
            path,
            value: std::sync::Arc::new(std::sync::Mutex::new(value)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        // Changes are swapped in whole after they are saved: a poisoned lock still guards a
        // consistent value.
        self.value.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the current value.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.lock())
    }

    /// Applies `edit` to a copy, saves the copy, then makes it current.
    pub fn change<R, E: From<FileError>>(
        &self,
        edit: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut current = self.lock();
        let mut next = current.clone();
        let out = edit(&mut next)?;
        write_atomic(&self.path, &next)?;
        *current = next;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.json");
        let empty: Vec<u32> = read_or_default(&p).unwrap();
        assert!(empty.is_empty());
        write_atomic(&p, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(read_or_default::<Vec<u32>>(&p).unwrap(), vec![1, 2, 3]);
        std::fs::write(&p, b"{not json").unwrap();
        let e = read_or_default::<Vec<u32>>(&p).unwrap_err();
        assert!(e.to_string().contains("state.json"), "{e}");
    }
}

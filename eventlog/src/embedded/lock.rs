//! The embedded log's directory lock: one process at a time writes a log directory (and,
//! through it, the store's catalogs of that data directory).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::io_err;
use crate::{LogError, Result};

/// An exclusive lock on a log directory, held until dropped (or the process ends: the
/// operating system releases it, so a killed process leaves no stale lock).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock of `dir` (`dir/LOCK`, which also records the holder's process id), or
    /// fails at once with [`LogError::Locked`] naming the directory and the holder.
    pub fn acquire(dir: &Path) -> Result<Self> {
        // Durably: the log directory's entry in the data directory is fsync'd too.
        eventide_durable::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = dir.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(LogError::Locked {
                    dir: dir.display().to_string(),
                    holder: holder.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path, e)),
        }
        // Who holds it, for the message another process prints.
        file.set_len(0).map_err(|e| io_err(&path, e))?;
        file.rewind().map_err(|e| io_err(&path, e))?;
        writeln!(file, "{}", std::process::id()).map_err(|e| io_err(&path, e))?;
        file.sync_all().map_err(|e| io_err(&path, e))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).unwrap_err();
        match &e {
            LogError::Locked { holder, .. } => assert_eq!(*holder, Some(std::process::id())),
            other => panic!("{other}"),
        }
        assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        );
        drop(first);
        DirLock::acquire(dir.path()).expect("free again once the holder let go");
    }
}

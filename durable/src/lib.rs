//! # eventide-durable
//!
//! The file system steps every Eventide crate needs to survive a crash, in one place:
//!
//! - [`replace`]: a file's whole content replaced atomically and durably (write a temporary
//!   file beside it, fsync it, rename it over the old one, fsync the directory): after a
//!   crash at any point the file holds the old or the new content, never a mix, and once it
//!   returns the new content survives a power loss.
//! - [`create_dir_all`]: directories created durably: every directory it creates is fsync'd
//!   into its parent, so a crash right after the first start cannot lose the directory (and
//!   the files in it) that a later fsync of a file inside it seemed to make durable.
//! - [`sync_dir`]: a directory's entries made durable.
//!
//! No Eventide types: plain `std::io` errors, which callers wrap in their own.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Makes the entries of directory `dir` (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parent, fsyncing each new directory's parent.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // The missing ancestors, outermost first.
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    std::fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// Replaces `path` with `bytes`, atomically and durably (see the crate docs). The directory
/// is created (durably) when missing.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        // The fault schedule fails this fsync (a catalog commit or a settings write refused).
        fail::fail_point!("durable-replace-fsync", |_| Err(io::Error::other(
            "injected fsync failure (fault point durable-replace-fsync)"
        )));
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_creates_their_directories() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/c/file.json");
        replace(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        replace(&path, b"two, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two, longer");
        assert!(!path.with_extension("json.tmp").exists());
        create_dir_all(&root.path().join("x/y")).unwrap();
        assert!(root.path().join("x/y").is_dir());
        create_dir_all(&root.path().join("x/y")).unwrap();
    }
}

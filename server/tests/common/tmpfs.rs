//! A real, small file system that fills up: a tmpfs mounted for one test.

use std::path::Path;
use std::process::Command;

/// A tmpfs of `mb` MiB mounted on a new temporary directory, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` where this process may not mount (not root, or no mount namespace rights).
    pub fn mount(mb: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Appends to `path` until the file system has no room left.
pub fn fill_up(path: &Path) {
    use std::io::Write;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return; // not even room for the file's entry: full already
    };
    let chunk = vec![7u8; 64 << 10];
    // A write that cannot fit is partial or fails with ENOSPC; either ends the loop (small
    // writes then take the last few bytes).
    for size in [chunk.len(), 4096, 1] {
        while f.write_all(&chunk[..size]).is_ok() {}
    }
}

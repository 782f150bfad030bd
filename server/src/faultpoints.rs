//! Fault injection for the fault tests: with `EVENTIDE_FAILPOINTS_FILE=PATH`, a thread applies
//! the fault points listed in PATH (`name=actions` per line or `;`-separated, the `fail`
//! crate's syntax, e.g. `eventlog-fsync=return(eio)`) whenever the file changes, and clears
//! those no longer listed. After each change it writes `PATH.applied` with the file's content,
//! so a test waits for that instead of sleeping.
//!
//! Fault points are compiled in only when the `fail` crate's `failpoints` feature is on (the
//! workspace's test builds); a release build ignores the variable with a warning.

use std::path::PathBuf;
use std::time::Duration;

/// The environment variable that names the file.
pub const ENV: &str = "EVENTIDE_FAILPOINTS_FILE";

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(20);

/// Starts the watcher when the variable is set.
pub fn watch_from_env() {
    let Some(path) = std::env::var_os(ENV).map(PathBuf::from) else {
        return;
    };
    if !fail::has_failpoints() {
        tracing::warn!(file = %path.display(), "{ENV} is set, but this build has no fault points; ignoring it");
        return;
    }
    tracing::warn!(file = %path.display(), "fault injection is on: fault points are read from this file");
    // The points the file holds at start apply before anything else runs.
    let mut watcher = Watcher::new(path);
    watcher.apply();
    let spawned = std::thread::Builder::new()
        .name("eventide-faultpoints".into())
        .spawn(move || {
            loop {
                std::thread::sleep(POLL);
                watcher.apply();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the fault point watcher");
    }
}

/// The fault points of the file, applied once and then whenever it changes.
struct Watcher {
    path: PathBuf,
    done: PathBuf,
    applied: Option<String>,
    names: Vec<String>,
}

impl Watcher {
    fn new(path: PathBuf) -> Self {
        let mut done = path.clone().into_os_string();
        done.push(".applied");
        Self {
            path,
            done: PathBuf::from(done),
            applied: None,
            names: Vec::new(),
        }
    }

    /// Applies the file if it changed since the last call.
    fn apply(&mut self) {
        let content = std::fs::read_to_string(&self.path).unwrap_or_default();
        if self.applied.as_deref() != Some(content.as_str()) {
            let mut now = Vec::new();
            for entry in content
                .split([';', '\n'])
                .map(str::trim)
                .filter(|e| !e.is_empty())
            {
                let Some((name, actions)) = entry.split_once('=') else {
                    tracing::error!(entry, "fault point entry without '='; ignored");
                    continue;
                };
                let name = name.trim().to_owned();
                match fail::cfg(name.clone(), actions.trim()) {
                    Ok(()) => now.push(name),
                    Err(e) => tracing::error!(entry, error = %e, "bad fault point entry; ignored"),
                }
            }
            for gone in self.names.iter().filter(|n| !now.contains(n)) {
                fail::remove(gone);
            }
            tracing::warn!(points = ?now, "fault points changed");
            self.names = now;
            if let Err(e) = std::fs::write(&self.done, &content) {
                tracing::error!(file = %self.done.display(), error = %e, "could not confirm the fault points");
            }
            self.applied = Some(content);
        }
    }
}

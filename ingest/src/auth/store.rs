//! The key store: [`Keys`], the accepted keys (from `EVENTIDE_KEYS` and the keys file, which
//! is re-read when it changes), and the checks of a secret against them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use super::keys::{KEYS_FILE, KeyEntry, KeyError, Scope, hash, new_secret, read_file, write_file};
use super::rate::RateBudgets;

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401
    Missing,
    /// 401
    Unknown,
    /// 403
    Forbidden(String),
}

#[derive(Debug)]
struct KeySet {
    entries: Vec<KeyEntry>,
    file_mtime: Option<SystemTime>,
    checked: std::time::Instant,
}

impl Default for KeySet {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            file_mtime: None,
            checked: std::time::Instant::now(),
        }
    }
}

/// The accepted keys. Keys from the keys file are re-read when the file changes, so
/// `eventide keys create` takes effect without a restart.
#[derive(Debug, Clone)]
pub struct Keys {
    inner: Arc<RwLock<KeySet>>,
    file: Option<PathBuf>,
    env: Vec<KeyEntry>,
    pub(super) budgets: Arc<RateBudgets>,
}

impl Keys {
    /// Keys from an `EVENTIDE_KEYS`-style spec (`ingest:abc,admin:xyz`) plus the keys file in
    /// `data_dir`. When neither holds a key, one ingest and one admin key are generated,
    /// stored hashed, and returned in plain text so the caller can print them once.
    pub fn load(
        env_spec: Option<&str>,
        data_dir: &Path,
    ) -> Result<(Self, Vec<(Scope, String)>), KeyError> {
        let mut env = Vec::new();
        if let Some(spec) = env_spec {
            for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (scope, secret) = part
                    .split_once(':')
                    .ok_or_else(|| KeyError::BadSpec(part.into()))?;
                let scope = Scope::parse(scope).ok_or_else(|| KeyError::BadSpec(part.into()))?;
                if secret.is_empty() {
                    return Err(KeyError::BadSpec(part.into()));
                }
                env.push(KeyEntry {
                    scope,
                    dataset: None,
                    hash: hash(secret),
                    created: None,
                    rate_limit: None,
                });
            }
        }
        let path = data_dir.join(KEYS_FILE);
        let (mut entries, mut mtime) = read_file(&path)?;
        let mut generated = Vec::new();
        if env.is_empty() && entries.is_empty() {
            for scope in [Scope::Ingest, Scope::Admin] {
                let secret = new_secret();
                entries.push(KeyEntry {
                    scope,
                    dataset: None,
                    hash: hash(&secret),
                    created: Some(chrono::Utc::now().to_rfc3339()),
                    rate_limit: None,
                });
                generated.push((scope, secret));
            }
            write_file(&path, &entries)?;
            mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        }
        Ok((
            Self {
                inner: Arc::new(RwLock::new(KeySet {
                    entries,
                    file_mtime: mtime,
                    checked: std::time::Instant::now(),
                })),
                file: Some(path),
                env,
                budgets: Arc::default(),
            },
            generated,
        ))
    }

    /// Keys given directly (tests).
    pub fn from_secrets(keys: &[(Scope, &str)]) -> Self {
        Self {
            inner: Arc::new(RwLock::new(KeySet::default())),
            file: None,
            env: keys
                .iter()
                .map(|(scope, s)| KeyEntry {
                    scope: *scope,
                    dataset: None,
                    hash: hash(s),
                    created: None,
                    rate_limit: None,
                })
                .collect(),
            budgets: Arc::default(),
        }
    }

    /// The entry whose hash is `h`. Every stored hash is compared in full, in constant time,
    /// so how long a lookup takes says nothing about which key (or how much of one) matched.
    fn find(&self, h: &str) -> Option<KeyEntry> {
        use subtle::ConstantTimeEq;
        let set = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for e in self.env.iter().chain(set.entries.iter()) {
            let same = e.hash.len() == h.len() && bool::from(e.hash.as_bytes().ct_eq(h.as_bytes()));
            if same && found.is_none() {
                found = Some(e.clone());
            }
        }
        found
    }

    fn reload_if_changed(&self) {
        let Some(path) = &self.file else { return };
        if let Ok(mut set) = self.inner.write() {
            set.checked = std::time::Instant::now();
        }
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let stale = self
            .inner
            .read()
            .map(|s| s.file_mtime != mtime)
            .unwrap_or(true);
        if !stale {
            return;
        }
        match read_file(path) {
            Ok((entries, mtime)) => {
                let mut set = self.inner.write().unwrap_or_else(|p| p.into_inner());
                set.entries = entries;
                set.file_mtime = mtime;
            }
            Err(e) => tracing::warn!(error = %e, "could not reload keys file"),
        }
    }

    /// Checks a secret for a scope and (optionally) a dataset. `dataset = None` on a route
    /// that spans datasets (SQL) refuses dataset-limited keys.
    pub fn check(
        &self,
        secret: Option<&str>,
        needed: Scope,
        dataset: Option<&str>,
        spans_datasets: bool,
    ) -> Result<KeyEntry, Denied> {
        let entry = self.lookup(secret)?;
        if !entry.scope.allows(needed) {
            return Err(Denied::Forbidden(format!(
                "key has scope {} but this needs {}",
                entry.scope.as_str(),
                needed.as_str()
            )));
        }
        if let Some(pattern) = &entry.dataset {
            if spans_datasets {
                return Err(Denied::Forbidden(format!(
                    "key is limited to datasets matching {pattern:?} and cannot be used here"
                )));
            }
            if let Some(ds) = dataset {
                entry.may_use(ds)?;
            }
        }
        Ok(entry)
    }

    /// The stored key matching a secret, whatever its scope.
    pub fn lookup(&self, secret: Option<&str>) -> Result<KeyEntry, Denied> {
        let secret = secret.filter(|s| !s.is_empty()).ok_or(Denied::Missing)?;
        let h = hash(secret);
        // Pick up keys created or revoked in the keys file, at most once a second.
        let due = self
            .inner
            .read()
            .map(|s| s.checked.elapsed() >= std::time::Duration::from_secs(1))
            .unwrap_or(true);
        if due {
            self.reload_if_changed();
        }
        let entry = match self.find(&h) {
            Some(e) => e,
            None => {
                self.reload_if_changed();
                self.find(&h).ok_or(Denied::Unknown)?
            }
        };
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::create_key;

    #[test]
    fn scopes_and_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, generated) = Keys::load(Some("ingest:abc,query:q1"), dir.path()).unwrap();
        assert!(generated.is_empty());
        assert!(
            keys.check(Some("abc"), Scope::Ingest, Some("x"), false)
                .is_ok()
        );
        assert!(matches!(
            keys.check(Some("abc"), Scope::Query, None, true),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(
            keys.check(Some("nope"), Scope::Ingest, None, false)
                .unwrap_err(),
            Denied::Unknown
        );
        assert_eq!(
            keys.check(None, Scope::Ingest, None, false).unwrap_err(),
            Denied::Missing
        );

        let secret = create_key(dir.path(), Scope::Ingest, Some("web-*".into()), None).unwrap();
        assert!(
            keys.check(Some(&secret), Scope::Ingest, Some("web-api"), false)
                .is_ok(),
            "reloaded"
        );
        assert!(matches!(
            keys.check(Some(&secret), Scope::Ingest, Some("db"), false),
            Err(Denied::Forbidden(_))
        ));
        assert!(
            !std::fs::read_to_string(dir.path().join(KEYS_FILE))
                .unwrap()
                .contains(&secret),
            "only hashes are stored"
        );
    }

    #[test]
    fn generates_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, generated) = Keys::load(None, dir.path()).unwrap();
        assert_eq!(generated.len(), 2);
        let admin = &generated
            .iter()
            .find(|(s, _)| *s == Scope::Admin)
            .unwrap()
            .1;
        assert!(keys.check(Some(admin), Scope::Query, None, true).is_ok());
        let (_, again) = Keys::load(None, dir.path()).unwrap();
        assert!(again.is_empty());
    }
}

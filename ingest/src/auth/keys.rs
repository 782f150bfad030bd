//! Keys and what they allow: scopes, stored key entries, secrets and their hashes, dataset
//! patterns, and the keys file (`DATA/keys.json`, which `eventide keys create` appends to).

use std::path::Path;
use std::time::SystemTime;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Denied;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Query,
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ingest" => Some(Self::Ingest),
            "query" => Some(Self::Query),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Query => "query",
            Self::Admin => "admin",
        }
    }

    pub(super) fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }
}

/// One stored key: its scope, optional dataset pattern and the hash of its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    pub scope: Scope,
    #[serde(default)]
    pub dataset: Option<String>,
    pub hash: String,
    #[serde(default)]
    pub created: Option<String>,
    /// Most events per second this key may send (`None`: no limit). A request is accepted
    /// while the key's budget is not in debt and takes its events from it, so one batch larger
    /// than a second's worth still passes, and the next waits until the debt is repaid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
}

/// Errors loading or storing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("bad key spec {0:?}: expected scope:secret with scope ingest, query or admin")]
    BadSpec(String),
    #[error("keys file {path}: {message}")]
    File { path: String, message: String },
}

pub(super) fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Generates a new random secret (32 hex characters).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

impl KeyEntry {
    /// Whether this key may touch `dataset`: always, unless it is limited to a pattern that
    /// `dataset` does not match.
    pub fn may_use(&self, dataset: &str) -> Result<(), Denied> {
        match &self.dataset {
            Some(pattern) if !glob_match(pattern, dataset) => Err(Denied::Forbidden(format!(
                "key is limited to datasets matching {pattern:?}, not {dataset:?}"
            ))),
            _ => Ok(()),
        }
    }
}

/// File name of the hashed keys under the data directory.
pub const KEYS_FILE: &str = "keys.json";

pub(super) fn read_file(path: &Path) -> Result<(Vec<KeyEntry>, Option<SystemTime>), KeyError> {
    let err = |m: String| KeyError::File {
        path: path.display().to_string(),
        message: m,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let entries: Vec<KeyEntry> =
                serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            Ok((entries, mtime))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Vec::new(), None)),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Appends a new key to the keys file and returns its secret.
pub fn create_key(
    data_dir: &Path,
    scope: Scope,
    dataset: Option<String>,
    rate_limit: Option<u32>,
) -> Result<String, KeyError> {
    let path = data_dir.join(KEYS_FILE);
    let (mut entries, _) = read_file(&path)?;
    let secret = new_secret();
    entries.push(KeyEntry {
        scope,
        dataset,
        hash: hash(&secret),
        created: Some(chrono::Utc::now().to_rfc3339()),
        rate_limit,
    });
    write_file(&path, &entries)?;
    Ok(secret)
}

pub(super) fn write_file(path: &Path, entries: &[KeyEntry]) -> Result<(), KeyError> {
    let err = |m: String| KeyError::File {
        path: path.display().to_string(),
        message: m,
    };
    let bytes = serde_json::to_vec_pretty(entries).map_err(|e| err(e.to_string()))?;
    // A key printed once must survive a crash right after: fsync of the file and directory.
    eventide_durable::replace(path, &bytes).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("web-*", "web-api"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c", "abd"));
        assert!(glob_match("exact", "exact"));
    }
}

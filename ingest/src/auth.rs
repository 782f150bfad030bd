//! API keys and scopes (docs/API.md, "Authentication").
//!
//! Keys come from `EVENTIDE_KEYS` (`scope:secret,…`) or from `DATA/keys.json`, which holds
//! only SHA-256 hashes of the secrets. A request carries its key as `X-Honeycomb-Team: KEY`
//! or `Authorization: Bearer KEY`. `admin` may do everything; `ingest` sends events (and
//! markers); `query` runs queries. A key may be limited to datasets matching a pattern
//! (`*` matches any run of characters), and to a rate of events per second (more gets 429
//! with `Retry-After`). Changes to the keys file (new or removed keys) take effect within a
//! second, without a restart. A secret is compared with every stored hash in constant time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

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

    fn allows(self, needed: Scope) -> bool {
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

/// The spent budgets of rate-limited keys, by key hash.
#[derive(Debug, Default)]
struct RateBudgets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// Events that may still be sent now (negative: the debt of a batch larger than what was
    /// left); refills at the key's rate up to one second's worth.
    tokens: f64,
    refilled: Instant,
}

/// The rate limit of the key of the request being handled.
#[derive(Debug, Clone)]
struct KeyLimit {
    budgets: Arc<RateBudgets>,
    hash: String,
    rate: u32,
}

impl KeyLimit {
    fn charge(&self, events: usize) -> Result<(), ApiError> {
        let rate = f64::from(self.rate.max(1));
        let mut buckets = self
            .budgets
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let b = buckets.entry(self.hash.clone()).or_insert(Bucket {
            tokens: rate,
            refilled: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.refilled).as_secs_f64() * rate).min(rate);
        b.refilled = now;
        if b.tokens < 0.0 {
            let wait = (-b.tokens / rate).ceil().max(1.0) as u32;
            return Err(ApiError::RateLimited(
                format!(
                    "this key's rate limit of {} events/s is spent; retry in {wait} s",
                    self.rate
                ),
                wait,
            ));
        }
        b.tokens -= events as f64;
        Ok(())
    }
}

tokio::task_local! {
    /// The rate limit of the key that [`require`] admitted for the request being handled.
    static KEY_LIMIT: Option<KeyLimit>;
}

/// Takes `events` from the rate budget of the request's key, if it has a limit: call it once
/// per request, before anything is appended. Outside a guarded request it does nothing.
pub fn charge_events(events: usize) -> Result<(), ApiError> {
    KEY_LIMIT
        .try_with(|l| l.as_ref().map_or(Ok(()), |l| l.charge(events)))
        .unwrap_or(Ok(()))
}

/// Errors loading or storing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("bad key spec {0:?}: expected scope:secret with scope ingest, query or admin")]
    BadSpec(String),
    #[error("keys file {path}: {message}")]
    File { path: String, message: String },
}

fn hash(secret: &str) -> String {
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
    budgets: Arc<RateBudgets>,
}

/// File name of the hashed keys under the data directory.
pub const KEYS_FILE: &str = "keys.json";

fn read_file(path: &Path) -> Result<(Vec<KeyEntry>, Option<SystemTime>), KeyError> {
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

fn write_file(path: &Path, entries: &[KeyEntry]) -> Result<(), KeyError> {
    let err = |m: String| KeyError::File {
        path: path.display().to_string(),
        message: m,
    };
    let bytes = serde_json::to_vec_pretty(entries).map_err(|e| err(e.to_string()))?;
    // A key printed once must survive a crash right after: fsync of the file and directory.
    eventide_durable::replace(path, &bytes).map_err(|e| err(e.to_string()))
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

/// The secret a request carries, if any.
pub fn request_secret(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get("x-honeycomb-team")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.trim());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Middleware state: the keys and what the routes behind it need.
#[derive(Debug, Clone)]
pub struct Require {
    pub keys: Keys,
    pub scope: Scope,
    /// The route spans datasets (e.g. SQL): dataset-limited keys are refused.
    pub spans_datasets: bool,
}

/// Requires, on every route of `router`, a key with `scope` (see [`Require`]).
pub fn guard<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    keys: Keys,
    scope: Scope,
    spans_datasets: bool,
) -> axum::Router<S> {
    let req = Require {
        keys,
        scope,
        spans_datasets,
    };
    router.route_layer(axum::middleware::from_fn_with_state(req, require))
}

/// Axum middleware enforcing [`Require`]. The dataset, when the route has one, is its
/// `{dataset}` path parameter.
pub async fn require(
    State(req_state): State<Require>,
    mut request: Request,
    next: Next,
) -> Response {
    let dataset = if req_state.spans_datasets {
        None
    } else {
        use axum::RequestExt as _;
        request
            .extract_parts::<axum::extract::RawPathParams>()
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "dataset")
                    .map(|(_, v)| v.to_owned())
            })
    };
    let result = req_state.keys.check(
        request_secret(request.headers()),
        req_state.scope,
        dataset.as_deref(),
        req_state.spans_datasets,
    );
    match result {
        Ok(entry) => {
            let limit = entry.rate_limit.map(|rate| KeyLimit {
                budgets: req_state.keys.budgets.clone(),
                hash: entry.hash.clone(),
                rate,
            });
            let mut request = request;
            request.extensions_mut().insert(entry);
            KEY_LIMIT.scope(limit, next.run(request)).await
        }
        Err(denied) => ApiError::from(denied).into_response(),
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Missing => ApiError::Unauthorized(
                "missing api key: send X-Honeycomb-Team or Authorization: Bearer".into(),
            ),
            Denied::Unknown => ApiError::Unauthorized("unknown api key".into()),
            Denied::Forbidden(m) => ApiError::Forbidden(m),
        }
    }
}

/// `GET /1/auth`: what the key may do, in Honeycomb's shape (libhoney and the Honeycomb CLI
/// call it to validate a key).
pub async fn get_auth(
    State(keys): State<Keys>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let entry = keys.lookup(request_secret(&headers))?;
    let admin = entry.scope == Scope::Admin;
    let ingest = admin || entry.scope == Scope::Ingest;
    let query = admin || entry.scope == Scope::Query;
    Ok(axum::Json(serde_json::json!({
        "api_key_access": {
            "events": ingest,
            "markers": ingest,
            "createDatasets": ingest,
            "queries": query,
            "columns": query,
            "boards": query,
            "triggers": admin,
            "slos": admin,
            "recipients": admin,
            "privateBoards": admin,
        },
        "environment": {"name": "eventide", "slug": "eventide"},
        "team": {"name": "eventide", "slug": "eventide"},
        "eventide": {"scope": entry.scope.as_str(), "datasets": entry.dataset},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn globs() {
        assert!(glob_match("web-*", "web-api"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c", "abd"));
        assert!(glob_match("exact", "exact"));
    }
}

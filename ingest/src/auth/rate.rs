//! Per-key rate limits: the spent event budgets of rate-limited keys, and
//! [`charge_events`], which takes a request's events from its key's budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::ApiError;

/// The spent budgets of rate-limited keys, by key hash.
#[derive(Debug, Default)]
pub(super) struct RateBudgets {
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
pub(super) struct KeyLimit {
    pub(super) budgets: Arc<RateBudgets>,
    pub(super) hash: String,
    pub(super) rate: u32,
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
    /// The rate limit of the key that [`require`](super::require) admitted for the request
    /// being handled.
    pub(super) static KEY_LIMIT: Option<KeyLimit>;
}

/// Takes `events` from the rate budget of the request's key, if it has a limit: call it once
/// per request, before anything is appended. Outside a guarded request it does nothing.
pub fn charge_events(events: usize) -> Result<(), ApiError> {
    KEY_LIMIT
        .try_with(|l| l.as_ref().map_or(Ok(()), |l| l.charge(events)))
        .unwrap_or(Ok(()))
}

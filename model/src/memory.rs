//! The process memory bound (`serve --max-memory-mb`), shared by ingest and the store.
//!
//! Each part of the pipeline has its own budget (request bytes in flight, the log's pending
//! bytes, the hot tails), but what they allocate around those bytes (decoded events, Parquet
//! encoders, merges, query state, allocator slack) is not counted by any of them. The guard
//! holds what the operating system sees instead: the resident set size, sampled every 50 ms
//! by the server. Above the high watermark (90 % of the bound) new ingest requests are
//! refused with 503 + `Retry-After` until RSS is back under the low watermark (80 %), and a
//! merge starts only when RSS plus what it will hold stays under the high watermark.
//! Everything already admitted finishes; queries and `/healthz` are never refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Shared between the sampler, the ingest routes and the compactor.
#[derive(Debug)]
pub struct MemoryGuard {
    limit: u64,
    rss: AtomicU64,
    over: AtomicBool,
}

impl MemoryGuard {
    /// A guard for a bound of `limit` bytes, with no sample yet.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            rss: AtomicU64::new(0),
            over: AtomicBool::new(false),
        })
    }

    /// The bound, bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The last sampled RSS, bytes.
    pub fn rss(&self) -> u64 {
        self.rss.load(Ordering::Relaxed)
    }

    /// Whether ingest is being refused.
    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Whether work that will hold `bytes` more can start now: the last sample plus `bytes`
    /// stays under the high watermark.
    pub fn has_room_for(&self, bytes: u64) -> bool {
        self.rss().saturating_add(bytes).saturating_mul(10) <= self.limit.saturating_mul(9)
    }

    /// Records a sample: past 90 % of the bound the guard closes, under 80 % it opens again
    /// (the gap keeps it from flapping at every sample). Returns the new state when it
    /// changed (`true`: closed).
    pub fn observe(&self, rss: u64) -> Option<bool> {
        self.rss.store(rss, Ordering::Relaxed);
        let was = self.is_over();
        let now = if was {
            rss.saturating_mul(10) > self.limit.saturating_mul(8)
        } else {
            rss.saturating_mul(10) > self.limit.saturating_mul(9)
        };
        (now != was).then(|| {
            self.over.store(now, Ordering::Relaxed);
            now
        })
    }
}

/// The process's resident set size (Linux: `VmRSS` of `/proc/self/status`), or `None`
/// elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_past_ninety_percent_and_opens_under_eighty() {
        let g = MemoryGuard::new(1000);
        assert_eq!(g.observe(900), None, "90 % itself is still under");
        assert!(!g.is_over());
        assert_eq!(g.observe(901), Some(true));
        assert!(g.is_over());
        assert_eq!(
            g.observe(850),
            None,
            "between the watermarks it stays closed"
        );
        assert!(g.is_over());
        assert_eq!(g.observe(800), Some(false));
        assert!(!g.is_over());
        assert_eq!(g.observe(850), None, "between the watermarks it stays open");
        assert_eq!(g.rss(), 850);
    }

    #[test]
    fn room_is_what_stays_under_the_high_watermark() {
        let g = MemoryGuard::new(1000);
        g.observe(600);
        assert!(g.has_room_for(300));
        assert!(!g.has_room_for(301));
    }

    #[test]
    fn reads_this_process_rss() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes().expect("VmRSS on Linux");
            assert!(rss > 1 << 20, "{rss}");
        }
    }
}

//! Which segments to merge: the time-windowed, leveled merge policy (ADR 0003).
//!
//! Levels say how often an event has been rewritten:
//! - **L0**: a flush of the hot tail, any time range.
//! - **L1**: L0 segments merged and split at hour boundaries (one rewrite). Fires once a
//!   partition has `tier` L0 segments, or at least two that have all settled, or a single
//!   settled one that spans several hours or whose hour has closed (the last flush of a
//!   dataset that went quiet, which would otherwise stay beside its hour's files for good).
//! - **L2**: every L1/L2 segment of an hour window that has closed (its end plus `grace` is
//!   past), merged into as few files as the target size allows (second rewrite).
//! - **L3**: the L1/L2 segments of a closed day merged into one file when together they are
//!   under the target size: small datasets end with one file per day (third rewrite).
//!
//! So an event is written at most four times in all (write amplification ≤ 4), and a closed
//! day holds at most 24 files (one per hour) or a single one.

use crate::SegmentMeta;

/// One hour and one day, in microseconds.
pub const HOUR_US: i64 = 3_600_000_000;
pub const DAY_US: i64 = 24 * HOUR_US;

/// One merge: these input segments (ids) are read, their rows sorted and split into
/// `window_us`-aligned windows, written as `level` segments, and the inputs retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeTask {
    pub inputs: Vec<u64>,
    pub level: u8,
    pub window_us: i64,
}

/// Plans merges over the committed segments of one (dataset, partition).
///
/// Invariant (checked by proptest in `tests`): every input exists and appears in at most one
/// task, each task has at least two inputs or rewrites one settled L0 segment that straddles
/// hours or lies in a closed hour, and
/// executing the tasks loses and duplicates nothing, with every output inside one window.
pub trait MergePolicy: Send + Sync + std::fmt::Debug {
    fn plan(&self, segments: &[SegmentMeta], now_us: i64) -> Vec<MergeTask>;
    /// Largest output file, in bytes.
    fn target_bytes(&self) -> u64;
    /// Most decoded bytes of one output file (it is cut into more files past it).
    fn max_piece_decoded_bytes(&self) -> u64 {
        MAX_PIECE_DECODED_BYTES
    }
}

/// The default [`MergePolicy`].
#[derive(Debug, Clone)]
pub struct TimeWindowPolicy {
    /// L0 segments that trigger an L1 merge.
    pub tier: usize,
    /// A window is closed once its end is this far in the past; an L0 segment has settled
    /// once it was written this long ago.
    pub grace_us: i64,
    /// Largest output file; a closed window larger than this keeps several files.
    pub target_bytes: u64,
    /// Most input bytes (Parquet) one task reads, which bounds its memory (an L1 merge takes
    /// at least two flushes even when they are larger).
    pub max_input_bytes: u64,
    /// Most decoded (Arrow) bytes one task reads: very compressible strings decode to a
    /// hundred times their Parquet size, so the file size alone does not bound a merge.
    pub max_input_decoded_bytes: u64,
}

impl Default for TimeWindowPolicy {
    fn default() -> Self {
        Self {
            tier: 8,
            grace_us: 5 * 60 * 1_000_000,
            target_bytes: 32 * 1024 * 1024,
            max_input_bytes: 32 * 1024 * 1024,
            max_input_decoded_bytes: MAX_INPUT_DECODED_BYTES,
        }
    }
}

/// Most decoded (Arrow) bytes one merge reads, whatever its inputs' file sizes: very
/// compressible strings decode to a hundred times their Parquet size.
pub const MAX_INPUT_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// Most decoded bytes of one output file of a merge.
pub const MAX_PIECE_DECODED_BYTES: u64 = 256 * 1024 * 1024;

/// What `segments` take decoded: as their catalog entries say, or their size times
/// `expansion_x100` / 100 for entries from before it was recorded.
pub fn decoded_bytes(segments: &[SegmentMeta], expansion_x100: u64) -> u64 {
    segments.iter().map(|s| decoded_of(s, expansion_x100)).sum()
}

fn decoded_of(s: &SegmentMeta, expansion_x100: u64) -> u64 {
    if s.arrow_bytes > 0 {
        s.arrow_bytes
    } else {
        s.bytes.saturating_mul(expansion_x100.max(100)) / 100
    }
}

/// The expansion assumed for segments whose decoded size is unknown (×100).
const UNKNOWN_EXPANSION_X100: u64 = 1000;

/// The `width`-aligned window holding `t`.
pub fn window_of(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width
}

fn contained(s: &SegmentMeta, width: i64) -> Option<i64> {
    let w = window_of(s.min_time_us, width);
    (window_of(s.max_time_us, width) == w).then_some(w)
}

impl MergePolicy for TimeWindowPolicy {
    fn target_bytes(&self) -> u64 {
        self.target_bytes
    }

    fn max_piece_decoded_bytes(&self) -> u64 {
        (self.max_input_decoded_bytes / 2).clamp(1, MAX_PIECE_DECODED_BYTES)
    }

    fn plan(&self, segments: &[SegmentMeta], now_us: i64) -> Vec<MergeTask> {
        let mut tasks = Vec::new();

        // L0 → L1: oldest first, within the input budget.
        let mut l0: Vec<&SegmentMeta> = segments.iter().filter(|s| s.level == 0).collect();
        l0.sort_by_key(|s| s.id);
        let settled = l0
            .iter()
            .all(|s| s.created_us.saturating_add(self.grace_us) <= now_us);
        // A lone settled flush that spans several hours is split too, so retention and time
        // pruning can work per window; one inside a closed hour becomes L1, so the hour's L2
        // merge (and the day's L3) takes it in.
        let lone = l0.len() == 1
            && settled
            && contained(l0[0], HOUR_US).is_none_or(|w| w + HOUR_US + self.grace_us <= now_us);
        if lone {
            tasks.push(MergeTask {
                inputs: vec![l0[0].id],
                level: 1,
                window_us: HOUR_US,
            });
        } else if l0.len() >= self.tier || (l0.len() >= 2 && settled) {
            let mut inputs = Vec::new();
            let (mut bytes, mut decoded) = (0u64, 0u64);
            for s in l0 {
                // At least two, so a merge always makes progress (two flushes are bounded by
                // the hot tail's flush size); past that, the budgets.
                let d = decoded_of(s, UNKNOWN_EXPANSION_X100);
                if inputs.len() >= 2
                    && (bytes + s.bytes > self.max_input_bytes
                        || decoded + d > self.max_input_decoded_bytes)
                {
                    break;
                }
                bytes += s.bytes;
                decoded += d;
                inputs.push(s.id);
            }
            if inputs.len() >= 2 {
                tasks.push(MergeTask {
                    inputs,
                    level: 1,
                    window_us: HOUR_US,
                });
            }
        }

        // Closed hours → L2.
        let mut hours: std::collections::BTreeMap<i64, Vec<&SegmentMeta>> = Default::default();
        for s in segments.iter().filter(|s| (1..=2).contains(&s.level)) {
            if let Some(w) = contained(s, HOUR_US) {
                hours.entry(w).or_default().push(s);
            }
        }
        let mut hours_pending = std::collections::BTreeSet::new();
        for (w, segs) in &hours {
            if w + HOUR_US + self.grace_us > now_us {
                continue;
            }
            // Files under half the target, smallest first, within the input budget.
            let mut small: Vec<&&SegmentMeta> = segs
                .iter()
                .filter(|s| s.bytes < self.target_bytes / 2)
                .collect();
            small.sort_by_key(|s| (s.bytes, s.id));
            let mut inputs = Vec::new();
            let (mut bytes, mut decoded) = (0u64, 0u64);
            for s in small {
                let d = decoded_of(s, UNKNOWN_EXPANSION_X100);
                if bytes + s.bytes > self.max_input_bytes || decoded + d > MAX_INPUT_DECODED_BYTES {
                    break;
                }
                bytes += s.bytes;
                decoded += d;
                inputs.push(s.id);
            }
            if inputs.len() >= 2 {
                hours_pending.insert(window_of(*w, DAY_US));
                tasks.push(MergeTask {
                    inputs,
                    level: 2,
                    window_us: HOUR_US,
                });
            }
        }

        // Closed days whose hours are all consolidated (no L0 left, no L2 merge pending) →
        // one L3 when small enough.
        let mut days: std::collections::BTreeMap<i64, Vec<&SegmentMeta>> = Default::default();
        let mut unsettled_days = std::collections::BTreeSet::new();
        for s in segments {
            let d = window_of(s.min_time_us, DAY_US);
            match contained(s, DAY_US) {
                // An hour that closed with a single L1 file needs no L2 pass of its own.
                Some(d) if s.level >= 1 => days.entry(d).or_default().push(s),
                _ => {
                    unsettled_days.insert(d);
                }
            }
        }
        for (d, segs) in days {
            if d + DAY_US + self.grace_us > now_us
                || hours_pending.contains(&d)
                || unsettled_days.contains(&d)
                || segs.len() < 2
            {
                continue;
            }
            let bytes: u64 = segs.iter().map(|s| s.bytes).sum();
            let decoded: u64 = segs
                .iter()
                .map(|s| decoded_of(s, UNKNOWN_EXPANSION_X100))
                .sum();
            if bytes <= self.target_bytes
                && bytes <= self.max_input_bytes
                && decoded <= self.max_input_decoded_bytes
            {
                tasks.push(MergeTask {
                    inputs: segs.iter().map(|s| s.id).collect(),
                    level: 3,
                    window_us: DAY_US,
                });
            }
        }
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashSet};

    /// A simulated segment: its meta and its rows (timestamps, each with a unique id).
    #[derive(Debug, Clone)]
    struct Sim {
        meta: SegmentMeta,
        rows: Vec<(i64, u64)>,
    }

    fn meta(id: u64, level: u8, rows: &[(i64, u64)], created_us: i64) -> SegmentMeta {
        SegmentMeta {
            id,
            path: format!("s{id}"),
            min_time_us: rows.iter().map(|r| r.0).min().unwrap_or(0),
            max_time_us: rows.iter().map(|r| r.0).max().unwrap_or(0),
            rows: rows.len() as u64,
            bytes: rows.len() as u64 * 100,
            arrow_bytes: rows.len() as u64 * 800,
            first_offset: 0,
            last_offset: 0,
            level,
            created_us,
        }
    }

    /// Executes `tasks` the way the compactor does: rows of the inputs split by window.
    fn execute(mut segs: Vec<Sim>, tasks: &[MergeTask], next_id: &mut u64) -> Vec<Sim> {
        for t in tasks {
            let mut rows = Vec::new();
            segs.retain(|s| {
                if t.inputs.contains(&s.meta.id) {
                    rows.extend(s.rows.iter().copied());
                    false
                } else {
                    true
                }
            });
            let mut by_window: BTreeMap<i64, Vec<(i64, u64)>> = BTreeMap::new();
            for r in rows {
                by_window
                    .entry(window_of(r.0, t.window_us))
                    .or_default()
                    .push(r);
            }
            for (_, mut rows) in by_window {
                rows.sort_unstable();
                *next_id += 1;
                segs.push(Sim {
                    meta: meta(*next_id, t.level, &rows, 0),
                    rows,
                });
            }
        }
        segs
    }

    fn arb_segments() -> impl Strategy<Value = Vec<Vec<i64>>> {
        // Up to 30 flushes, each of 1–40 events within ~3 days, some straddling windows.
        prop::collection::vec(
            (
                0i64..3 * DAY_US,
                prop::collection::vec(0i64..2 * HOUR_US, 1..40),
            )
                .prop_map(|(base, offs)| offs.into_iter().map(|o| base + o).collect::<Vec<_>>()),
            0..30,
        )
    }

    proptest! {
        #[test]
        fn merges_lose_nothing_duplicate_nothing_and_respect_windows(
            flushes in arb_segments(),
            now_days in 1i64..6,
        ) {
            let policy = TimeWindowPolicy {
                tier: 4,
                grace_us: 60_000_000,
                target_bytes: 2_000,
                max_input_bytes: 3_000,
                max_input_decoded_bytes: 16_000,
            };
            let mut next_row = 0u64;
            let mut next_id = 0u64;
            let mut segs: Vec<Sim> = flushes
                .iter()
                .map(|ts| {
                    let rows: Vec<(i64, u64)> = ts
                        .iter()
                        .map(|t| {
                            next_row += 1;
                            (*t, next_row)
                        })
                        .collect();
                    next_id += 1;
                    Sim { meta: meta(next_id, 0, &rows, 0), rows }
                })
                .collect();
            let all: HashSet<u64> = segs.iter().flat_map(|s| s.rows.iter().map(|r| r.1)).collect();
            let now = now_days * DAY_US;
            // Run the policy to a fixed point (bounded), checking the invariant each round.
            for _ in 0..20 {
                let metas: Vec<SegmentMeta> = segs.iter().map(|s| s.meta.clone()).collect();
                let tasks = policy.plan(&metas, now);
                if tasks.is_empty() {
                    break;
                }
                let mut seen = HashSet::new();
                for t in &tasks {
                    let lone = t.inputs.len() == 1
                        && metas.iter().any(|m| {
                            m.id == t.inputs[0]
                                && m.level == 0
                                && contained(m, HOUR_US)
                                    .is_none_or(|w| w + HOUR_US + policy.grace_us <= now)
                        });
                    prop_assert!(
                        t.inputs.len() >= 2 || lone,
                        "a task merges at least two segments or rewrites a straddling flush or one of a closed hour"
                    );
                    let mut bytes = 0;
                    for id in &t.inputs {
                        prop_assert!(seen.insert(*id), "segment {} in two tasks", id);
                        let m = metas.iter().find(|m| m.id == *id);
                        prop_assert!(m.is_some(), "input {} exists", id);
                        bytes += m.map_or(0, |m| m.bytes);
                    }
                    prop_assert!(bytes <= policy.max_input_bytes || t.inputs.len() <= 2);
                }
                segs = execute(segs, &tasks, &mut next_id);
                let rows: Vec<u64> = segs.iter().flat_map(|s| s.rows.iter().map(|r| r.1)).collect();
                let unique: HashSet<u64> = rows.iter().copied().collect();
                prop_assert_eq!(rows.len(), unique.len(), "no row duplicated");
                prop_assert_eq!(&unique, &all, "no row lost");
                for s in &segs {
                    if s.meta.level > 0 {
                        let width = if s.meta.level == 3 { DAY_US } else { HOUR_US };
                        prop_assert_eq!(
                            window_of(s.meta.min_time_us, width),
                            window_of(s.meta.max_time_us, width),
                            "level {} output inside one window", s.meta.level
                        );
                    }
                }
            }
            // At the fixed point (all test data is settled) no flush-level segment is left
            // unless it fits alone in one hour that has not closed, and every closed hour
            // holds at most one small file below the L3 level.
            let metas: Vec<SegmentMeta> = segs.iter().map(|s| s.meta.clone()).collect();
            if policy.plan(&metas, now).is_empty() {
                let l0: Vec<&SegmentMeta> = metas.iter().filter(|m| m.level == 0).collect();
                prop_assert!(
                    l0.is_empty()
                        || (l0.len() == 1
                            && contained(l0[0], HOUR_US)
                                .is_some_and(|w| w + HOUR_US + policy.grace_us > now)),
                    "flushes left: {:?}", l0
                );
                let mut per_hour: BTreeMap<i64, usize> = BTreeMap::new();
                for m in metas.iter().filter(|m| (1..=2).contains(&m.level) && contained(m, HOUR_US).is_some()) {
                    let w = window_of(m.min_time_us, HOUR_US);
                    if w + HOUR_US + policy.grace_us <= now && m.bytes < policy.target_bytes / 2 {
                        *per_hour.entry(w).or_default() += 1;
                    }
                }
                prop_assert!(per_hour.values().all(|n| *n <= 1), "{:?}", per_hour);
            }
        }
    }

    #[test]
    fn a_closed_day_of_small_files_ends_as_one_segment() {
        let policy = TimeWindowPolicy::default();
        let mut id = 0;
        let mut segs: Vec<Sim> = (0..48)
            .map(|i| {
                id += 1;
                let rows = vec![(i * HOUR_US / 2 + 1, id), (i * HOUR_US / 2 + 2, id + 1000)];
                Sim {
                    meta: meta(id, 0, &rows, 0),
                    rows,
                }
            })
            .collect();
        let now = 3 * DAY_US;
        let mut rounds = 0;
        loop {
            let metas: Vec<SegmentMeta> = segs.iter().map(|s| s.meta.clone()).collect();
            let tasks = policy.plan(&metas, now);
            if tasks.is_empty() {
                break;
            }
            segs = execute(segs, &tasks, &mut id);
            rounds += 1;
            assert!(rounds < 10);
        }
        assert_eq!(segs.len(), 1, "{segs:?}");
        assert_eq!(segs[0].meta.level, 3);
        assert_eq!(segs[0].rows.len(), 96);
    }

    #[test]
    fn the_last_flush_of_a_quiet_dataset_joins_its_hour_once_the_hour_closes() {
        let policy = TimeWindowPolicy::default();
        let hour = 10 * DAY_US + 3 * HOUR_US;
        // An hour already merged to one L2 file, and a later lone flush inside the same hour.
        let l2 = meta(1, 2, &[(hour + 10, 1), (hour + 20, 2)], 0);
        let l0 = meta(2, 0, &[(hour + 30, 3)], hour + 40 * 60 * 1_000_000);
        let segs = vec![l2.clone(), l0.clone()];
        // Settled, but its hour is open: it waits (more flushes may come to merge it with).
        let open = hour + 50 * 60 * 1_000_000;
        assert!(policy.plan(&segs, open).is_empty());
        // The hour closed: the flush becomes L1, then the hour's files merge into one.
        let closed = hour + HOUR_US + policy.grace_us;
        let tasks = policy.plan(&segs, closed);
        assert_eq!(
            tasks,
            vec![MergeTask {
                inputs: vec![2],
                level: 1,
                window_us: HOUR_US
            }]
        );
        let l1 = SegmentMeta { level: 1, ..l0 };
        let tasks = policy.plan(&[l2, l1], closed);
        assert_eq!(tasks.len(), 1);
        assert_eq!((tasks[0].level, tasks[0].inputs.len()), (2, 2));
    }

    #[test]
    fn the_open_hour_is_only_tiered() {
        let policy = TimeWindowPolicy::default();
        let now = 10 * DAY_US + 10 * 60 * 1_000_000; // 10 minutes into an hour
        let segs: Vec<SegmentMeta> = (0..5)
            .map(|i| meta(i, 0, &[(10 * DAY_US + i as i64, i)], now))
            .collect();
        assert!(policy.plan(&segs, now).is_empty(), "5 fresh L0: wait");
        let segs: Vec<SegmentMeta> = (0..8)
            .map(|i| meta(i, 0, &[(10 * DAY_US + i as i64, i)], now))
            .collect();
        let tasks = policy.plan(&segs, now);
        assert_eq!(tasks.len(), 1);
        assert_eq!((tasks[0].level, tasks[0].inputs.len()), (1, 8));
    }
}

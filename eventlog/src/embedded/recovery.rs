//! Recovery at open, and the offline `verify` and `repair` of a damaged log.
//!
//! # What open may cut by itself
//! Only a **torn tail**: damage in the last segment that starts within the last group the
//! writer could have had in flight ([`MAX_TAIL_BYTES`]) and is followed by no whole record of
//! a later offset past that distance. A crash can tear only the group whose fsync never
//! completed, and nothing of it was acknowledged. Anything else (a damaged record in a sealed
//! segment, one followed by good records further on, a missing or overlapping segment) may
//! hold acknowledged events: open refuses with [`LogError::Corrupt`], naming the segment and
//! the byte, and changes no file.
//!
//! # Repair
//! [`repair_log`] is the deliberate way past such damage. Each damaged range is copied to
//! `DIR/damaged/` and replaced by *tombstones*: valid records with an empty dataset, one per
//! lost offset, so offsets stay dense and every record still whole keeps its own offset. A
//! missing segment becomes a segment of tombstones. Readers skip tombstones.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use tracing::{error, warn};

use super::framing::{HEADER, MAX_RECORD, frame, read_record};
use super::{Segment, io_err, segment_path, sync_dir};
use crate::{LogError, Offset, Result};

/// The most bytes one group of the writer can hold: it stops taking appends at 8 MiB, plus
/// the record that crossed it. Damage further than this from a segment's end cannot be a tear.
pub(super) const MAX_TAIL_BYTES: u64 = 8 * 1024 * 1024 + MAX_RECORD as u64;

/// The dataset of a tombstone: no real dataset has an empty name.
pub(super) const TOMBSTONE: &str = "";

/// One problem a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogProblem {
    /// A record that is short, fails its checksum or breaks the offset sequence, where a
    /// crash cannot have torn it.
    Damaged {
        segment: PathBuf,
        /// Byte position of the damaged record in the segment file.
        byte: u64,
        /// The offset the record should have had.
        offset: Offset,
        reason: String,
    },
    /// Offsets `from..to` are in no segment file: a segment is missing.
    Missing {
        from: Offset,
        to: Offset,
        /// The segment that should have followed them.
        before: PathBuf,
    },
    /// A segment starts below the end of the one before it.
    Overlap { segment: PathBuf, expected: Offset },
}

impl std::fmt::Display for LogProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Damaged {
                segment,
                byte,
                offset,
                reason,
            } => write!(
                f,
                "{} is damaged at byte {byte} (the record of offset {offset}): {reason}",
                segment.display()
            ),
            Self::Missing { from, to, before } => write!(
                f,
                "the records of offsets {from}..{to} are missing: no segment holds them before {}",
                before.display()
            ),
            Self::Overlap { segment, expected } => write!(
                f,
                "{} starts below offset {expected}, where the segment before it ends",
                segment.display()
            ),
        }
    }
}

/// What a scan of the log directory found.
#[derive(Debug, Clone, Default)]
pub struct LogReport {
    /// Per segment: its file, first offset, whole records and bytes.
    pub segments: Vec<SegmentReport>,
    /// Damage that stops the log from opening.
    pub problems: Vec<LogProblem>,
    /// A torn tail open would cut: the last segment, the byte it would be cut at, and the
    /// bytes that would go.
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// Records that are tombstones of an earlier repair.
    pub tombstones: u64,
}

/// One segment in a [`LogReport`].
#[derive(Debug, Clone)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub base: Offset,
    pub records: u64,
    pub bytes: u64,
}

/// What [`repair_log`] did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// Offsets replaced by tombstones (their events are lost).
    pub lost_records: u64,
    /// Damaged bytes moved to `DIR/damaged/`.
    pub damaged_bytes: u64,
    /// The files written there.
    pub saved: Vec<PathBuf>,
    /// A torn tail that was cut (as open would have).
    pub cut_tail_bytes: u64,
}

/// The result of scanning one segment from its start.
struct Scan {
    /// Whole records in sequence from the start.
    records: u64,
    tombstones: u64,
    /// Byte position after the last whole record.
    valid: u64,
    /// The next offset expected.
    next: Offset,
    /// Why the scan stopped before the end of the file, if it did.
    stop: Option<String>,
    size: u64,
}

fn scan_segment(path: &Path, base: Offset) -> Result<Scan> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let size = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut scan = Scan {
        records: 0,
        tombstones: 0,
        valid: 0,
        next: base,
        stop: None,
        size,
    };
    loop {
        match read_record(&mut r) {
            Ok(None) => return Ok(scan),
            Ok(Some(rec)) if rec.offset == scan.next => {
                scan.valid += rec.framed_len as u64;
                scan.next += 1;
                scan.records += 1;
                if rec.dataset == TOMBSTONE {
                    scan.tombstones += 1;
                }
            }
            Ok(Some(rec)) => {
                scan.stop = Some(format!(
                    "holds offset {} where {} was expected",
                    rec.offset, scan.next
                ));
                return Ok(scan);
            }
            Err(e) => {
                scan.stop = Some(e.to_string());
                return Ok(scan);
            }
        }
    }
}

/// The first position at or after `from` in `bytes` holding a whole record with an offset in
/// `min..=max`, and that record's offset.
fn resync(bytes: &[u8], from: usize, min: Offset, max: Offset) -> Option<(usize, Offset)> {
    let mut pos = from;
    while pos + HEADER + 10 <= bytes.len() {
        let body = pos + HEADER;
        let offset = u64::from_le_bytes(bytes[body..body + 8].try_into().unwrap_or_default());
        // The offset first: in damaged or torn bytes it is almost never in range, so the
        // checksum is rarely computed.
        if (min..=max).contains(&offset) {
            let mut r = &bytes[pos..];
            if let Ok(Some(rec)) = read_record(&mut r)
                && rec.offset == offset
            {
                return Some((pos, offset));
            }
        }
        pos += 1;
    }
    None
}

/// The next whole record after damage at `pos` that expected offset `next`: its position
/// and offset. A record is at least 18 bytes, which bounds the offsets worth trying.
fn next_whole(bytes: &[u8], pos: usize, next: Offset) -> Option<(usize, Offset)> {
    let most = (bytes.len().saturating_sub(pos) / 18) as u64;
    resync(bytes, pos + 1, next, next.saturating_add(most))
}

/// Segment bases found in `dir`, sorted.
fn segment_bases(dir: &Path) -> Result<Vec<Offset>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log")
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Whether damage at byte `at` of the last segment (`bytes`), where offset `next` was
/// expected, is a torn tail: it starts within the last group the writer could have had in
/// flight, and no whole record of a later offset follows it.
fn is_torn_tail(bytes: &[u8], at: u64, next: Offset) -> bool {
    bytes.len() as u64 - at <= MAX_TAIL_BYTES && next_whole(bytes, at as usize, next).is_none()
}

/// Scans every segment of `dir` without changing anything.
pub fn verify_log(dir: &Path) -> Result<LogReport> {
    let mut report = LogReport::default();
    let bases = segment_bases(dir)?;
    let mut expected: Option<Offset> = None;
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base);
        match expected {
            Some(e) if base > e => report.problems.push(LogProblem::Missing {
                from: e,
                to: base,
                before: path.clone(),
            }),
            Some(e) if base < e => report.problems.push(LogProblem::Overlap {
                segment: path.clone(),
                expected: e,
            }),
            _ => {}
        }
        let scan = scan_segment(&path, base)?;
        report.tombstones += scan.tombstones;
        report.segments.push(SegmentReport {
            path: path.clone(),
            base,
            records: scan.records,
            bytes: scan.size,
        });
        if let Some(reason) = &scan.stop {
            let last = i + 1 == bases.len();
            let torn = last && {
                let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
                is_torn_tail(&bytes, scan.valid, scan.next)
            };
            if torn {
                report.torn_tail = Some((path.clone(), scan.valid, scan.size - scan.valid));
            } else {
                report.problems.push(LogProblem::Damaged {
                    segment: path.clone(),
                    byte: scan.valid,
                    offset: scan.next,
                    reason: reason.clone(),
                });
                // Where the damaged segment really ends is unknown: the next one is taken
                // to follow it.
                expected = None;
                continue;
            }
        }
        expected = Some(scan.next);
    }
    Ok(report)
}

/// Scans the segments at open. Cuts a torn tail of the last segment; refuses any other
/// damage (see the module docs). Returns the segments, the next offset and the active
/// segment's valid length.
pub(super) fn recover(dir: &Path) -> Result<(Vec<Segment>, Offset, u64)> {
    let report = verify_log(dir)?;
    if let Some(problem) = report.problems.first() {
        error!(dir = %dir.display(), %problem, "the embedded log is damaged; refusing to open it");
        return Err(corrupt(dir, problem));
    }
    if let Some((path, at, dropped)) = &report.torn_tail {
        warn!(segment = %path.display(), valid_bytes = at, dropped_bytes = dropped,
            "log segment has a torn tail (a write a crash interrupted, never acknowledged); cutting it off");
        cut(path, *at)?;
    }
    let mut segments = Vec::new();
    let mut next = 0;
    let mut active_len = 0;
    for s in &report.segments {
        segments.push(Segment {
            base: s.base,
            path: s.path.clone(),
        });
        next = s.base + s.records;
        active_len = match &report.torn_tail {
            Some((p, at, _)) if *p == s.path => *at,
            _ => s.bytes,
        };
    }
    Ok((segments, next, active_len))
}

fn corrupt(dir: &Path, problem: &LogProblem) -> LogError {
    let (segment, byte, offset) = match problem {
        LogProblem::Damaged {
            segment,
            byte,
            offset,
            ..
        } => (segment.clone(), *byte, *offset),
        LogProblem::Missing { from, before, .. } => (before.clone(), 0, *from),
        LogProblem::Overlap { segment, expected } => (segment.clone(), 0, *expected),
    };
    LogError::Corrupt {
        segment: segment.display().to_string(),
        byte,
        offset,
        reason: format!(
            "{problem}. It may hold acknowledged events, so nothing was cut or removed; see what \
             is damaged with `eventide log verify --data-dir DATA`, and once the directory is \
             backed up, keep every record that is still whole with `eventide log repair \
             --data-dir DATA` (log directory {})",
            dir.display()
        ),
    }
}

fn cut(path: &Path, at: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.set_len(at).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

/// Tombstones for offsets `from..to`.
fn tombstones(from: Offset, to: Offset) -> Vec<u8> {
    let mut buf = Vec::new();
    for o in from..to {
        frame(&mut buf, o, TOMBSTONE, b"");
    }
    buf
}

/// Replaces `path` with `bytes`: a temporary file, fsync, rename, fsync of the directory.
fn replace(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("log.repair");
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(dir).map_err(|e| io_err(dir, e))
}

/// Keeps `bytes` under `DIR/damaged/` for inspection.
fn save_damaged(dir: &Path, name: &str, bytes: &[u8], out: &mut RepairReport) -> Result<()> {
    let damaged = dir.join("damaged");
    fs::create_dir_all(&damaged).map_err(|e| io_err(&damaged, e))?;
    let path = damaged.join(name);
    let mut f = File::create(&path).map_err(|e| io_err(&path, e))?;
    f.write_all(bytes).map_err(|e| io_err(&path, e))?;
    f.sync_all().map_err(|e| io_err(&path, e))?;
    sync_dir(&damaged).map_err(|e| io_err(&damaged, e))?;
    out.damaged_bytes += bytes.len() as u64;
    out.saved.push(path);
    Ok(())
}

/// Repairs the log in `dir` (see the module docs): every whole record keeps its offset,
/// damaged ranges become tombstones, a missing segment becomes one of tombstones, a torn tail
/// is cut. Run it only while no server uses the directory.
pub fn repair_log(dir: &Path) -> Result<RepairReport> {
    let mut out = RepairReport::default();
    let bases = segment_bases(dir)?;
    let mut expected: Option<Offset> = None;
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base);
        let last = i + 1 == bases.len();
        if let Some(e) = expected
            && base > e
        {
            // A missing segment: its offsets become tombstones in a segment of their own.
            let filler = segment_path(dir, e);
            replace(dir, &filler, &tombstones(e, base))?;
            out.lost_records += base - e;
            warn!(
                from = e,
                to = base,
                "log repair: missing records replaced by tombstones"
            );
            expected = Some(base);
        }
        let start = expected.unwrap_or(base);
        let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
        let mut rebuilt = Vec::with_capacity(bytes.len());
        let mut pos = 0usize;
        let mut next = start;
        let mut changed = base != start;
        while pos < bytes.len() {
            let mut r = &bytes[pos..];
            match read_record(&mut r) {
                Ok(Some(rec)) if rec.offset == next => {
                    rebuilt.extend_from_slice(&bytes[pos..pos + rec.framed_len]);
                    pos += rec.framed_len;
                    next += 1;
                }
                Ok(Some(rec)) if rec.offset < next => {
                    // Overlapping an earlier segment: the earlier copy stays.
                    save_damaged(
                        dir,
                        &format!("{base:020}-{pos}.bin"),
                        &bytes[pos..pos + rec.framed_len],
                        &mut out,
                    )?;
                    pos += rec.framed_len;
                    changed = true;
                }
                Ok(None) => break,
                _ => {
                    changed = true;
                    if last && is_torn_tail(&bytes, pos as u64, next) {
                        // As open would: a tear, nothing of it acknowledged.
                        out.cut_tail_bytes += (bytes.len() - pos) as u64;
                        warn!(segment = %path.display(), byte = pos, "log repair: torn tail cut");
                        break;
                    }
                    // Damage: keep it aside, and go on at the next whole record.
                    let (end, resume) = match next_whole(&bytes, pos, next) {
                        Some(found) => found,
                        None => (
                            bytes.len(),
                            bases.get(i + 1).map_or(next, |b| (*b).max(next)),
                        ),
                    };
                    save_damaged(
                        dir,
                        &format!("{base:020}-{pos}.bin"),
                        &bytes[pos..end],
                        &mut out,
                    )?;
                    rebuilt.extend_from_slice(&tombstones(next, resume));
                    out.lost_records += resume - next;
                    warn!(segment = %path.display(), byte = pos, from = next, to = resume,
                        "log repair: damaged records replaced by tombstones");
                    pos = end;
                    next = resume;
                }
            }
        }
        if changed {
            let target = segment_path(dir, start);
            replace(dir, &target, &rebuilt)?;
            if target != path {
                fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
                sync_dir(dir).map_err(|e| io_err(dir, e))?;
            }
        }
        expected = Some(next);
    }
    Ok(out)
}

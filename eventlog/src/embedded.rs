//! The embedded log: segment files of checksummed records, written by one thread that
//! group-commits (one fsync for every append waiting at that moment).
//!
//! # Files
//! `DIR/{base:020}.log`, where `base` is the offset of the segment's first record. A record is
//! framed as `len: u32 LE | crc32: u32 LE | body`, body = `offset: u64 LE | dataset_len: u16 LE
//! | dataset | payload`, and the CRC covers the body.
//!
//! # Recovery
//! On open every segment is scanned. At the first record that is short, fails its checksum or
//! breaks the offset sequence, the segment is cut there and later segments are removed:
//! a torn write after a crash is never served, and nothing after it was ever acknowledged
//! (acknowledgement waits for the fsync that covers it).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::{
    EventLog, LogConsumer, LogError, Offset, Partition, PartitionOwner, Position, Record, Result,
};

const HEADER: usize = 8;
const MAX_RECORD: usize = 256 * 1024 * 1024;

/// Settings of the embedded log.
#[derive(Debug, Clone)]
pub struct EmbeddedLogConfig {
    /// Directory holding the segment files.
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Payload bytes that may wait for the disk before appends are refused as saturated.
    pub max_pending_bytes: usize,
    /// Appends that may wait for the disk before appends are refused as saturated.
    pub max_pending_appends: usize,
    /// Skip fsync (tests of logic only; never in production).
    pub fsync: bool,
    /// The next offset must be at least this (one past the highest offset a consumer has
    /// committed). An empty log starts here; a log ending below it was lost or restored from
    /// an older backup and is refused, since reusing committed offsets would hide new events.
    pub min_next_offset: Offset,
}

impl EmbeddedLogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 128 * 1024 * 1024,
            max_pending_bytes: 256 * 1024 * 1024,
            max_pending_appends: 8192,
            fsync: true,
            min_next_offset: 0,
        }
    }
}

struct AppendReq {
    dataset: String,
    payload: Bytes,
    reply: oneshot::Sender<Result<Offset>>,
}

#[derive(Debug, Clone)]
struct Segment {
    base: Offset,
    path: PathBuf,
}

struct Shared {
    dir: PathBuf,
    segments: Mutex<Vec<Segment>>,
    /// Next offset to be made durable; everything below is durable and readable.
    durable: watch::Sender<Offset>,
    first: AtomicU64,
    /// Groups cut back after a failed write or fsync. Their offsets are handed out again, so
    /// a read cursor opened before a cut may hold refused records in its buffer: it is
    /// re-positioned (reading the file again) whenever this moved since it was opened.
    rollbacks: AtomicU64,
    failed: AtomicBool,
    fsyncs: AtomicU64,
    /// Records per fsync (group commit): counts per bucket of [`GROUP_BUCKETS`], then +Inf.
    group_records: [AtomicU64; GROUP_BUCKETS.len() + 1],
    group_records_sum: AtomicU64,
    group_bytes_sum: AtomicU64,
}

struct ReadCursor {
    reader: BufReader<File>,
    seg_base: Offset,
    next: Offset,
    /// [`Shared::rollbacks`] when the cursor was positioned.
    rollbacks: u64,
}

/// The embedded, file-backed [`EventLog`].
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    tx: mpsc::Sender<AppendReq>,
    pending_bytes: Arc<Semaphore>,
    pending_bytes_max: usize,
    cursor: Arc<Mutex<Option<ReadCursor>>>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

fn io_err(path: &Path, source: io::Error) -> LogError {
    LogError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn segment_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A record as read from a segment file, with its framed size.
struct RawRecord {
    offset: Offset,
    dataset: String,
    payload: Vec<u8>,
    framed_len: usize,
}

/// Reads one record at the reader's position. `Ok(None)` = clean end of file; `Err` with
/// kind `InvalidData`/`UnexpectedEof` = torn or corrupt.
fn read_record(r: &mut impl Read) -> io::Result<Option<RawRecord>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = r.read(&mut header[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "torn header"));
        }
        got += n;
    }
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
    if !(10..=MAX_RECORD).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad record length",
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    if crc32fast::hash(&body) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    let offset = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
    let dlen = u16::from_le_bytes(body[8..10].try_into().unwrap_or_default()) as usize;
    if 10 + dlen > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad dataset length",
        ));
    }
    let dataset = String::from_utf8(body[10..10 + dlen].to_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "dataset not utf-8"))?;
    let payload = body.split_off(10 + dlen);
    Ok(Some(RawRecord {
        offset,
        dataset,
        payload,
        framed_len: HEADER + len,
    }))
}

/// The error an injected fault raises: `enospc` (disk full) or else EIO.
// Used only where `fail`'s `failpoints` feature is on (this crate's fault tests).
#[allow(dead_code)]
fn injected(arg: Option<String>) -> io::Error {
    const ENOSPC: i32 = 28;
    const EIO: i32 = 5;
    match arg.as_deref() {
        Some("enospc") => io::Error::from_raw_os_error(ENOSPC),
        _ => io::Error::from_raw_os_error(EIO),
    }
}

/// What the appenders of a refused group are told.
fn fault(e: &io::Error) -> LogError {
    if e.kind() == io::ErrorKind::StorageFull {
        LogError::DiskFull(e.to_string())
    } else {
        LogError::Unavailable(format!("log write failed: {e}"))
    }
}

/// A record read by [`scan_records`]: offset, dataset, payload.
pub type ScannedRecord = (Offset, String, Vec<u8>);

/// Reads the records framed in `bytes` the way recovery reads a segment file: the records
/// before the first torn or corrupt one, and the error that ended the scan (`None` at a clean
/// end). Used by the fuzz target `log_records`.
pub fn scan_records(bytes: &[u8]) -> (Vec<ScannedRecord>, Option<io::Error>) {
    let mut r = bytes;
    let mut out = Vec::new();
    loop {
        match read_record(&mut r) {
            Ok(Some(rec)) => out.push((rec.offset, rec.dataset, rec.payload)),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Frames one record as the log writes it (fuzz seeds and tests).
pub fn frame_record(offset: Offset, dataset: &str, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    frame(&mut buf, offset, dataset, payload);
    buf
}

fn frame(buf: &mut Vec<u8>, offset: Offset, dataset: &str, payload: &[u8]) {
    let len = 8 + 2 + dataset.len() + payload.len();
    let start = buf.len();
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&(dataset.len() as u16).to_le_bytes());
    buf.extend_from_slice(dataset.as_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf[start + HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Scans the segments, cutting off any torn or corrupt tail. Returns the surviving segments,
/// the next offset and the active segment's valid length.
fn recover(dir: &Path) -> Result<(Vec<Segment>, Offset, u64)> {
    let mut bases: Vec<Offset> = Vec::new();
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
    let mut segments = Vec::new();
    let mut next: Option<Offset> = None;
    let mut active_len = 0u64;
    let mut cut = false;
    for base in bases {
        let path = segment_path(dir, base);
        if cut || next.is_some_and(|n| n != base) {
            if !cut {
                error!(segment = %path.display(), "log segment does not follow the previous one; removing it and later segments");
            }
            cut = true;
            fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            continue;
        }
        let file = File::open(&path).map_err(|e| io_err(&path, e))?;
        let size = file.metadata().map_err(|e| io_err(&path, e))?.len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut pos = 0u64;
        let mut expect = base;
        loop {
            match read_record(&mut r) {
                Ok(None) => break,
                Ok(Some(rec)) if rec.offset == expect => {
                    pos += rec.framed_len as u64;
                    expect += 1;
                }
                Ok(Some(_)) | Err(_) => {
                    warn!(segment = %path.display(), valid_bytes = pos, dropped_bytes = size - pos,
                        "log segment has a torn or corrupt tail; cutting it off");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io_err(&path, e))?;
                    f.set_len(pos).map_err(|e| io_err(&path, e))?;
                    f.sync_all().map_err(|e| io_err(&path, e))?;
                    cut = true;
                    break;
                }
            }
        }
        segments.push(Segment { base, path });
        next = Some(expect);
        active_len = pos;
    }
    Ok((segments, next.unwrap_or(0), active_len))
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `config.dir`, recovering from any torn tail.
    pub fn open(config: EmbeddedLogConfig) -> Result<Self> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let (mut segments, mut next, mut active_len) = recover(&dir)?;
        if next < config.min_next_offset {
            let first = segments.first().map(|s| s.base).unwrap_or(next);
            if next > first {
                return Err(LogError::BehindStore(format!(
                    "log ends at offset {next} but offsets up to {} were already committed to the store: \
                     the log directory was lost or restored from an older backup",
                    config.min_next_offset - 1
                )));
            }
            // An empty log (e.g. a new log directory beside an existing store): start past
            // every committed offset.
            for seg in segments.drain(..) {
                fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, e))?;
            }
            next = config.min_next_offset;
            active_len = 0;
            warn!(
                next,
                "log is empty but the store has committed data; starting after it"
            );
        }
        if segments.is_empty() {
            let path = segment_path(&dir, next);
            File::create(&path).map_err(|e| io_err(&path, e))?;
            sync_dir(&dir).map_err(|e| io_err(&dir, e))?;
            segments.push(Segment { base: next, path });
        }
        let first = segments.first().map(|s| s.base).unwrap_or(next);
        info!(dir = %dir.display(), first, next, segments = segments.len(), "opened embedded log");
        let active = segments.last().cloned().ok_or(LogError::Closed)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&active.path)
            .map_err(|e| io_err(&active.path, e))?;
        let (durable, _) = watch::channel(next);
        let shared = Arc::new(Shared {
            dir,
            segments: Mutex::new(segments),
            durable,
            first: AtomicU64::new(first),
            rollbacks: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
            group_records: Default::default(),
            group_records_sum: AtomicU64::new(0),
            group_bytes_sum: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(config.max_pending_appends.max(1));
        let writer = Writer {
            shared: shared.clone(),
            rx,
            file,
            file_len: active_len,
            next,
            config: config.clone(),
        };
        // The writer thread ends by itself once this log (the only sender) is dropped and the
        // appends already queued are written.
        std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| io_err(&config.dir, e))?;
        let permits = (config.max_pending_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        Ok(Self {
            shared,
            tx,
            pending_bytes: Arc::new(Semaphore::new(permits)),
            pending_bytes_max: permits,
            cursor: Arc::new(Mutex::new(None)),
        })
    }

    /// How many fsyncs the writer has issued (group commit makes this far smaller than the
    /// number of appends under concurrency).
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Number of segment files currently held.
    pub fn segment_count(&self) -> usize {
        self.shared.segments.lock().map(|s| s.len()).unwrap_or(0)
    }
}

struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<AppendReq>,
    file: File,
    file_len: u64,
    next: Offset,
    config: EmbeddedLogConfig,
}

impl Writer {
    fn run(mut self) {
        let mut buf = Vec::with_capacity(8 << 20);
        let mut group: Vec<(oneshot::Sender<Result<Offset>>, Offset)> = Vec::new();
        while let Some(first) = self.rx.blocking_recv() {
            buf.clear();
            group.clear();
            let mut req = Some(first);
            // Take every append already waiting (up to ~8 MB) into one write and one fsync.
            while let Some(r) = req.take() {
                if self.shared.failed.load(Ordering::Acquire) {
                    let _ = r
                        .reply
                        .send(Err(LogError::Failed("earlier write failed".into())));
                } else {
                    let offset = self.next;
                    frame(&mut buf, offset, &r.dataset, &r.payload);
                    self.next += 1;
                    group.push((r.reply, offset));
                }
                if buf.len() < (8 << 20) {
                    req = self.rx.try_recv().ok();
                }
            }
            if group.is_empty() {
                continue;
            }
            let result = self.write_group(&buf);
            match result {
                Ok(()) => {
                    self.shared.observe_group(group.len(), buf.len());
                    self.shared.durable.send_replace(self.next);
                    for (reply, offset) in group.drain(..) {
                        let _ = reply.send(Ok(offset));
                    }
                    if self.file_len >= self.config.segment_bytes
                        && let Err(e) = self.roll()
                    {
                        error!(error = %e, "could not start a new log segment; refusing writes");
                        self.shared.failed.store(true, Ordering::Release);
                    }
                }
                Err(e) => {
                    // Nothing of this group was acknowledged: cut the file back to its last
                    // durable length, so no partial record stays behind and the offsets are
                    // used again. Only when that fails too does the log stop taking writes.
                    let first = group.first().map_or(self.next, |(_, o)| *o);
                    // A fault test holds the writer here, between the failed write and the cut.
                    fail::fail_point!("eventlog-before-rollback");
                    let reason = match self.rollback() {
                        Ok(()) => {
                            // Before any later group is made durable (readers load `durable`
                            // first, then this).
                            self.shared.rollbacks.fetch_add(1, Ordering::AcqRel);
                            self.next = first;
                            warn!(error = %e, "log write failed; the group was rolled back and refused");
                            fault(&e)
                        }
                        Err(e2) => {
                            error!(error = %e, rollback = %e2, "log write failed and could not be rolled back; refusing writes until restart");
                            self.shared.failed.store(true, Ordering::Release);
                            LogError::Failed(format!("{e}; rolling back: {e2}"))
                        }
                    };
                    for (reply, _) in group.drain(..) {
                        let _ = reply.send(Err(reason.duplicate()));
                    }
                }
            }
        }
    }

    fn write_group(&mut self, buf: &[u8]) -> io::Result<()> {
        // Fault points for the fault tests: a write that stops halfway, a failing fsync.
        fail::fail_point!("eventlog-write", |arg| {
            self.file.write_all(&buf[..buf.len() / 2])?;
            Err(injected(arg))
        });
        self.file.write_all(buf)?;
        if self.config.fsync {
            fail::fail_point!("eventlog-fsync", |arg| Err(injected(arg)));
            self.file.sync_data()?;
        }
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.file_len += buf.len() as u64;
        Ok(())
    }

    /// Truncates the active segment back to its durable length (after a failed write).
    fn rollback(&mut self) -> io::Result<()> {
        fail::fail_point!("eventlog-rollback", |arg| Err(injected(arg)));
        self.file.set_len(self.file_len)?;
        self.file.sync_all()
    }

    fn roll(&mut self) -> io::Result<()> {
        let path = segment_path(&self.shared.dir, self.next);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.shared.dir)?;
        self.file = file;
        self.file_len = 0;
        if let Ok(mut segs) = self.shared.segments.lock() {
            segs.push(Segment {
                base: self.next,
                path,
            });
        }
        Ok(())
    }
}

/// Upper bounds of the records-per-fsync histogram.
const GROUP_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

impl Shared {
    fn observe_group(&self, records: usize, bytes: usize) {
        let records = records as u64;
        let i = GROUP_BUCKETS.partition_point(|&b| b < records);
        self.group_records[i].fetch_add(1, Ordering::Relaxed);
        self.group_records_sum.fetch_add(records, Ordering::Relaxed);
        self.group_bytes_sum
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Prometheus text of the writer: fsyncs, records per fsync, bytes written, segments.
    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let name = "eventide_log_fsync_records";
        let _ = writeln!(
            out,
            "# HELP {name} records made durable by one fsync (group commit)\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, le) in GROUP_BUCKETS.iter().enumerate() {
            cumulative += self.group_records[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.group_records[GROUP_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {cumulative}",
            self.group_records_sum.load(Ordering::Relaxed)
        );
        let segments = self.segments.lock().map(|s| s.len()).unwrap_or(0);
        for (name, kind, help, v) in [
            (
                "eventide_log_fsyncs_total",
                "counter",
                "fsyncs of the embedded log",
                self.fsyncs.load(Ordering::Relaxed),
            ),
            (
                "eventide_log_written_bytes_total",
                "counter",
                "bytes written to the embedded log (framing included)",
                self.group_bytes_sum.load(Ordering::Relaxed),
            ),
            (
                "eventide_log_segments",
                "gauge",
                "segment files the embedded log holds",
                segments as u64,
            ),
            (
                "eventide_log_failed",
                "gauge",
                "1 when the log refuses writes until restarted (a failed write could not be undone)",
                u64::from(self.failed.load(Ordering::Acquire)),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }

    /// Positions a cursor at `from` (scanning the segment that holds it).
    fn seek(&self, from: Offset) -> io::Result<Option<ReadCursor>> {
        let seg = {
            let segs = self
                .segments
                .lock()
                .map_err(|_| io::Error::other("segment list poisoned"))?;
            let idx = segs.partition_point(|s| s.base <= from);
            if idx == 0 {
                segs.first().cloned()
            } else {
                segs.get(idx - 1).cloned()
            }
        };
        let Some(seg) = seg else { return Ok(None) };
        let rollbacks = self.rollbacks.load(Ordering::Acquire);
        let file = File::open(&seg.path)?;
        let mut cursor = ReadCursor {
            reader: BufReader::with_capacity(1 << 20, file),
            seg_base: seg.base,
            next: seg.base,
            rollbacks,
        };
        // Skip records below `from` by reading headers and seeking over bodies.
        while cursor.next < from {
            let mut header = [0u8; HEADER];
            if cursor.reader.read_exact(&mut header).is_err() {
                break;
            }
            let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
            cursor.reader.seek_relative(i64::from(len))?;
            cursor.next += 1;
        }
        Ok(Some(cursor))
    }

    fn next_segment_after(&self, base: Offset) -> Option<Segment> {
        let segs = self.segments.lock().ok()?;
        segs.iter().find(|s| s.base > base).cloned()
    }

    fn read_blocking(
        &self,
        slot: &mut Option<ReadCursor>,
        from: Offset,
        max_bytes: usize,
    ) -> io::Result<Vec<Record>> {
        // `durable` before `rollbacks`: a group made durable after a cut is only read by a
        // cursor that has seen the cut.
        let durable = *self.durable.borrow();
        let from = from.max(self.first.load(Ordering::Acquire));
        if from >= durable {
            return Ok(Vec::new());
        }
        let rollbacks = self.rollbacks.load(Ordering::Acquire);
        if slot
            .as_ref()
            .is_none_or(|c| c.next != from || c.rollbacks != rollbacks)
        {
            *slot = self.seek(from)?;
        }
        let Some(cursor) = slot.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while cursor.next < durable && (out.is_empty() || bytes < max_bytes) {
            match read_record(&mut cursor.reader)? {
                Some(RawRecord {
                    offset,
                    dataset,
                    payload,
                    ..
                }) => {
                    if offset != cursor.next {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("log offset {offset} where {} was expected", cursor.next),
                        ));
                    }
                    bytes += payload.len();
                    cursor.next += 1;
                    out.push(Record {
                        partition: 0,
                        offset,
                        dataset,
                        payload: Bytes::from(payload),
                    });
                }
                None => {
                    // End of this segment: continue in the next one.
                    let Some(seg) = self.next_segment_after(cursor.seg_base) else {
                        break;
                    };
                    let file = File::open(&seg.path)?;
                    cursor.reader = BufReader::with_capacity(1 << 20, file);
                    cursor.seg_base = seg.base;
                }
            }
        }
        Ok(out)
    }
}

impl Shared {
    async fn read(
        self: &Arc<Self>,
        cursor: &Arc<Mutex<Option<ReadCursor>>>,
        from: Offset,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        let mut durable_rx = self.durable.subscribe();
        if *durable_rx.borrow_and_update() <= from {
            let _ = tokio::time::timeout(wait, async {
                while *durable_rx.borrow_and_update() <= from {
                    if durable_rx.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        let shared = self.clone();
        let cursor = cursor.clone();
        let dir = shared.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = cursor
                .lock()
                .map_err(|_| io::Error::other("read cursor poisoned"))?;
            let read = shared.read_blocking(&mut slot, from, max_bytes);
            if read.is_err() {
                // Never go on from a position that failed: the next read seeks afresh.
                *slot = None;
            }
            read
        })
        .await
        .map_err(|e| io_err(&dir, io::Error::other(e)))?
        .map_err(|e| io_err(&dir, e))
    }

    fn truncate(&self, upto: Offset) -> Result<()> {
        let doomed: Vec<Segment> = {
            let mut segs = self
                .segments
                .lock()
                .map_err(|_| LogError::Failed("segment list poisoned".into()))?;
            // A segment can go when the next one starts at or below `upto` (all its records
            // are below `upto`); the active (last) segment always stays.
            let mut n = 0;
            while n + 1 < segs.len() && segs[n + 1].base <= upto {
                n += 1;
            }
            let doomed: Vec<Segment> = segs.drain(..n).collect();
            if let Some(first) = segs.first() {
                self.first.store(first.base, Ordering::Release);
            }
            doomed
        };
        for seg in doomed {
            fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, e))?;
            info!(segment = %seg.path.display(), "removed log segment committed to the store");
        }
        Ok(())
    }
}

impl EmbeddedLog {
    /// Reads records with offsets ≥ `from`, in order: at least one if any is available within
    /// `wait`, and no more than about `max_bytes` of payload.
    pub async fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        self.shared.read(&self.cursor, from, max_bytes, wait).await
    }

    /// Declares records below `upto` no longer needed; whole segments below it are deleted.
    pub fn truncate(&self, upto: Offset) -> Result<()> {
        self.shared.truncate(upto)
    }

    /// The first offset still held.
    pub fn start_offset(&self) -> Offset {
        self.shared.first.load(Ordering::Acquire)
    }

    /// The offset the next appended record will get (everything below it is durable).
    pub fn end_offset(&self) -> Offset {
        *self.shared.durable.borrow()
    }

    async fn append_record(&self, dataset: &str, payload: Bytes) -> Result<Offset> {
        if dataset.len() > u16::MAX as usize {
            return Err(LogError::DatasetTooLong(dataset.len()));
        }
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(LogError::Failed("an earlier write failed".into()));
        }
        let kb = (payload.len() / 1024 + 1).min(self.pending_bytes_max) as u32;
        let permit = match self.pending_bytes.clone().try_acquire_many_owned(kb) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                return Err(LogError::Saturated("too many bytes waiting for the disk"));
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(LogError::Closed),
        };
        let (reply, rx) = oneshot::channel();
        let req = AppendReq {
            dataset: dataset.to_owned(),
            payload,
            reply,
        };
        self.tx.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                LogError::Saturated("too many appends waiting for the disk")
            }
            mpsc::error::TrySendError::Closed(_) => LogError::Closed,
        })?;
        let result = rx.await.map_err(|_| LogError::Closed)?;
        drop(permit);
        result
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, dataset: &str, payload: Bytes) -> Result<Position> {
        let offset = self.append_record(dataset, payload).await?;
        Ok(Position {
            partition: 0,
            offset,
        })
    }

    fn identity(&self) -> String {
        "embedded".into()
    }

    fn render_metrics(&self, out: &mut String) {
        self.shared.render_metrics(out);
    }

    fn consume(&self, owner: Arc<dyn PartitionOwner>) -> Result<Arc<dyn LogConsumer>> {
        owner.assigned(&[0]);
        Ok(Arc::new(EmbeddedConsumer {
            shared: self.shared.clone(),
            cursor: Arc::new(Mutex::new(None)),
            next: AtomicU64::new(self.start_offset()),
        }))
    }
}

/// The embedded log's consumer: one partition, read from the oldest record still held;
/// commits delete whole segments below the committed offset.
struct EmbeddedConsumer {
    shared: Arc<Shared>,
    cursor: Arc<Mutex<Option<ReadCursor>>>,
    next: AtomicU64,
}

#[async_trait]
impl LogConsumer for EmbeddedConsumer {
    async fn poll(&self, max_bytes: usize, wait: Duration) -> Result<Vec<Record>> {
        let from = self.next.load(Ordering::Acquire);
        let records = self
            .shared
            .read(&self.cursor, from, max_bytes, wait)
            .await?;
        if let Some(last) = records.last() {
            self.next.store(last.offset + 1, Ordering::Release);
        }
        Ok(records)
    }

    async fn commit(&self, partition: Partition, next: Offset) -> Result<()> {
        debug_assert_eq!(partition, 0, "the embedded log has one partition");
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.truncate(next))
            .await
            .map_err(|e| LogError::Failed(e.to_string()))?
    }

    fn holds(&self, partition: Partition) -> bool {
        partition == 0
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.pending_bytes.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> EmbeddedLogConfig {
        EmbeddedLogConfig::new(dir)
    }

    async fn read_all(log: &EmbeddedLog, from: Offset) -> Vec<Record> {
        let mut out = Vec::new();
        let mut next = from;
        loop {
            let recs = log
                .read(next, 1 << 20, Duration::from_millis(10))
                .await
                .unwrap();
            if recs.is_empty() {
                return out;
            }
            next = recs.last().unwrap().offset + 1;
            out.extend(recs);
        }
    }

    #[tokio::test]
    async fn append_read_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(cfg(dir.path())).unwrap();
            for i in 0..10u64 {
                let off = log
                    .append_record("ds", Bytes::from(format!("p{i}")))
                    .await
                    .unwrap();
                assert_eq!(off, i);
            }
            let recs = read_all(&log, 3).await;
            assert_eq!(recs.len(), 7);
            assert_eq!(&recs[0].payload[..], b"p3");
            assert_eq!(recs[0].dataset, "ds");
        }
        let log = EmbeddedLog::open(cfg(dir.path())).unwrap();
        assert_eq!(log.end_offset(), 10);
        assert_eq!(
            log.append_record("x", Bytes::from_static(b"z"))
                .await
                .unwrap(),
            10
        );
        let recs = read_all(&log, 0).await;
        assert_eq!(recs.len(), 11);
        assert_eq!(&recs[10].payload[..], b"z");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EmbeddedLog::open(cfg(dir.path())).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append_record("ds", Bytes::from(vec![i as u8; 1000]))
                    .await
                    .unwrap()
            }));
        }
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.push(t.await.unwrap());
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (0..200).collect::<Vec<_>>());
        let fsyncs = log.fsync_count();
        assert!(
            fsyncs < 200,
            "group commit: {fsyncs} fsyncs for 200 appends"
        );
        assert_eq!(read_all(&log, 0).await.len(), 200);
    }

    #[tokio::test]
    async fn torn_and_corrupt_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(cfg(dir.path())).unwrap();
            for i in 0..5u64 {
                log.append_record("ds", Bytes::from(format!("p{i}")))
                    .await
                    .unwrap();
            }
        }
        let seg = segment_path(dir.path(), 0);
        // A torn write: half a header and some garbage.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        {
            let log = EmbeddedLog::open(cfg(dir.path())).unwrap();
            assert_eq!(log.end_offset(), 5);
            assert_eq!(read_all(&log, 0).await.len(), 5);
            assert_eq!(
                log.append_record("ds", Bytes::from_static(b"p5"))
                    .await
                    .unwrap(),
                5
            );
        }
        // Flip a byte inside the last record's payload: that record is dropped, earlier stay.
        let mut bytes = fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        let log = EmbeddedLog::open(cfg(dir.path())).unwrap();
        assert_eq!(log.end_offset(), 5);
        let recs = read_all(&log, 0).await;
        assert_eq!(recs.len(), 5);
        assert_eq!(&recs[4].payload[..], b"p4");
    }

    #[tokio::test]
    async fn segments_roll_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.segment_bytes = 100;
        let log = EmbeddedLog::open(c.clone()).unwrap();
        for _ in 0..20 {
            log.append_record("ds", Bytes::from(vec![7u8; 60]))
                .await
                .unwrap();
        }
        assert!(log.segment_count() > 5);
        assert_eq!(read_all(&log, 0).await.len(), 20);
        log.truncate(15).unwrap();
        assert!(log.start_offset() <= 15 && log.start_offset() > 0);
        let recs = read_all(&log, 15).await;
        assert_eq!(recs.first().unwrap().offset, 15);
        assert_eq!(recs.len(), 5);
        drop(log);
        let log = EmbeddedLog::open(c).unwrap();
        assert_eq!(log.end_offset(), 20);
        assert_eq!(read_all(&log, 15).await.len(), 5);
    }

    #[tokio::test]
    async fn never_reuses_committed_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.min_next_offset = 42;
        {
            let log = EmbeddedLog::open(c.clone()).unwrap();
            assert_eq!(
                log.append_record("ds", Bytes::from_static(b"a"))
                    .await
                    .unwrap(),
                42
            );
        }
        let log = EmbeddedLog::open(c.clone()).unwrap();
        assert_eq!(log.end_offset(), 43);
        drop(log);
        c.min_next_offset = 100;
        let err = EmbeddedLog::open(c).unwrap_err();
        assert!(err.to_string().contains("lost or restored"), "{err}");
    }

    #[tokio::test]
    async fn saturation_is_reported_not_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.max_pending_bytes = 4 * 1024;
        let log = Arc::new(EmbeddedLog::open(c).unwrap());
        // A payload larger than the whole budget still goes through (it is clamped) when alone.
        log.append_record("ds", Bytes::from(vec![0u8; 64 * 1024]))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append_record("ds", Bytes::from(vec![0u8; 3 * 1024]))
                    .await
            }));
        }
        let mut saturated = 0;
        for t in tasks {
            if let Err(LogError::Saturated(_)) = t.await.unwrap() {
                saturated += 1;
            }
        }
        assert!(
            saturated > 0,
            "a 4 KB budget must refuse some of 64 concurrent 3 KB appends"
        );
    }
}

/// Property tests of the record framing.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn records() -> impl Strategy<Value = Vec<(u64, String, Vec<u8>)>> {
        proptest::collection::vec(
            (
                any::<u64>(),
                "[a-z0-9._-]{1,20}",
                proptest::collection::vec(any::<u8>(), 0..300),
            ),
            1..20,
        )
    }

    fn read_all(bytes: &[u8]) -> (Vec<(u64, String, Vec<u8>)>, bool) {
        let mut r = std::io::Cursor::new(bytes);
        let mut out = Vec::new();
        loop {
            match read_record(&mut r) {
                Ok(Some(rec)) => out.push((rec.offset, rec.dataset, rec.payload)),
                Ok(None) => return (out, true),
                Err(_) => return (out, false),
            }
        }
    }

    proptest! {
        /// Framed records read back as written.
        #[test]
        fn records_round_trip(recs in records()) {
            let mut buf = Vec::new();
            for (o, d, p) in &recs {
                frame(&mut buf, *o, d, p);
            }
            let (back, clean) = read_all(&buf);
            prop_assert!(clean);
            prop_assert_eq!(back, recs);
        }

        /// A file cut anywhere reads as the whole records before the cut, then a torn tail
        /// (never a record that was not written).
        #[test]
        fn a_torn_tail_loses_only_the_torn_record(recs in records(), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            let mut ends = Vec::new();
            for (o, d, p) in &recs {
                frame(&mut buf, *o, d, p);
                ends.push(buf.len());
            }
            let at = cut.index(buf.len() + 1);
            let (back, clean) = read_all(&buf[..at]);
            let whole = ends.iter().filter(|e| **e <= at).count();
            prop_assert_eq!(&back[..], &recs[..whole]);
            prop_assert_eq!(clean, ends.contains(&at) || at == 0);
        }

        /// A flipped bit is caught: the records before it read back, the damaged one does not.
        #[test]
        fn a_flipped_bit_is_detected(recs in records(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut buf = Vec::new();
            let mut ends = Vec::new();
            for (o, d, p) in &recs {
                frame(&mut buf, *o, d, p);
                ends.push(buf.len());
            }
            let at = pos.index(buf.len());
            buf[at] ^= 1 << bit;
            let (back, _) = read_all(&buf);
            let damaged = ends.iter().filter(|e| **e <= at).count();
            prop_assert_eq!(&back[..], &recs[..damaged.min(back.len())]);
            prop_assert!(back.len() <= damaged, "the damaged record was returned");
        }
    }
}

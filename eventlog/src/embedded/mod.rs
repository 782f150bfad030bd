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
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::{
    EventLog, LogConsumer, LogError, NewRecord, Offset, Partition, PartitionOwner, Position,
    Record, Result,
};

/// The embedded log's only assignment: partition 0, to the process that opened it.
pub(super) const EMBEDDED_EPOCH: crate::Epoch = 1;

mod framing;
mod lock;
mod reader;
mod recovery;
mod writer;

pub use framing::{frame_record, scan_records};
pub use lock::DirLock;
use recovery::recover;
pub use recovery::{LogProblem, LogReport, RepairReport, SegmentReport, repair_log, verify_log};
use writer::{GROUP_BUCKETS, Writer};

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

pub(super) struct AppendReq {
    /// The records of one request: all are written in one group, so all or none are.
    pub(super) records: Vec<NewRecord>,
    pub(super) reply: oneshot::Sender<Result<Offset>>,
}

#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub(super) base: Offset,
    pub(super) path: PathBuf,
}

pub(super) struct Shared {
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
    fsyncs: Counter,
    /// Records per fsync (group commit), over [`GROUP_BUCKETS`].
    group_records: Histogram,
    written_bytes: Counter,
}

pub(super) struct ReadCursor {
    reader: BufReader<File>,
    seg_base: Offset,
    next: Offset,
    /// [`Shared::rollbacks`] when the cursor was positioned.
    rollbacks: u64,
}

/// The embedded, file-backed [`EventLog`].
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    /// `None` once closed (in `drop`), which ends the writer thread.
    tx: Option<mpsc::Sender<AppendReq>>,
    /// The writer thread: it holds the directory lock, so `drop` waits for it.
    writer: Option<std::thread::JoinHandle<()>>,
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

pub(super) fn io_err(path: &Path, source: io::Error) -> LogError {
    LogError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(super) fn segment_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `config.dir`, recovering from any torn tail.
    pub fn open(config: EmbeddedLogConfig) -> Result<Self> {
        let dir = config.dir.clone();
        // Before anything is read: a second process on this directory stops here.
        let lock = DirLock::acquire(&dir)?;
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
            fsyncs: Counter::default(),
            group_records: Histogram::new(GROUP_BUCKETS.iter().map(|b| *b as f64)),
            written_bytes: Counter::default(),
        });
        let (tx, rx) = mpsc::channel(config.max_pending_appends.max(1));
        let writer = Writer {
            shared: shared.clone(),
            rx,
            file,
            file_len: active_len,
            next,
            config: config.clone(),
            _lock: lock,
        };
        // The writer thread ends once this log (the only sender) is dropped and the appends
        // already queued are written.
        let writer = std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| io_err(&config.dir, e))?;
        let permits = (config.max_pending_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        Ok(Self {
            shared,
            tx: Some(tx),
            writer: Some(writer),
            pending_bytes: Arc::new(Semaphore::new(permits)),
            pending_bytes_max: permits,
            cursor: Arc::new(Mutex::new(None)),
        })
    }

    /// How many fsyncs the writer has issued (group commit makes this far smaller than the
    /// number of appends under concurrency).
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.get()
    }

    /// Number of segment files currently held.
    pub fn segment_count(&self) -> usize {
        self.shared.segments.lock().map(|s| s.len()).unwrap_or(0)
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
        let (mut records, _) = self
            .shared
            .read(&self.cursor, from, max_bytes, wait)
            .await?;
        // Offsets `eventide log repair` marked lost hold nothing to read.
        records.retain(|r| r.dataset != recovery::TOMBSTONE);
        Ok(records)
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

    #[cfg(test)]
    async fn append_record(&self, dataset: &str, payload: bytes::Bytes) -> Result<Offset> {
        self.append_records(vec![NewRecord::new(dataset, payload)])
            .await
    }

    /// Appends `payloads` in one group (one write, one fsync): all are durable, at
    /// consecutive offsets from the one returned, or none is.
    async fn append_records(&self, records: Vec<NewRecord>) -> Result<Offset> {
        for r in &records {
            if r.dataset.len() > u16::MAX as usize {
                return Err(LogError::DatasetTooLong(r.dataset.len()));
            }
            if r.payload.len() + r.dataset.len() + 10 > framing::MAX_RECORD {
                return Err(LogError::RecordTooLarge {
                    bytes: r.payload.len(),
                    limit: framing::MAX_RECORD - r.dataset.len() - 10,
                });
            }
        }
        let total: usize = records.iter().map(|r| r.payload.len()).sum();
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(LogError::Failed("an earlier write failed".into()));
        }
        let kb = (total / 1024 + 1).min(self.pending_bytes_max) as u32;
        let permit = match self.pending_bytes.clone().try_acquire_many_owned(kb) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                return Err(LogError::Saturated("too many bytes waiting for the disk"));
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(LogError::Closed),
        };
        let (reply, rx) = oneshot::channel();
        let req = AppendReq { records, reply };
        let tx = self.tx.as_ref().ok_or(LogError::Closed)?;
        tx.try_send(req).map_err(|e| match e {
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
    async fn append_all(&self, records: Vec<NewRecord>) -> Result<Vec<Position>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let n = records.len() as u64;
        let first = self.append_records(records).await?;
        Ok((first..first + n)
            .map(|offset| Position {
                partition: 0,
                offset,
            })
            .collect())
    }

    fn identity(&self) -> String {
        "embedded".into()
    }

    fn durable_ends(&self) -> Vec<Position> {
        vec![Position {
            partition: 0,
            offset: self.end_offset(),
        }]
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.shared.register_metrics(registry);
    }

    fn consume(&self, owner: Arc<dyn PartitionOwner>) -> Result<Arc<dyn LogConsumer>> {
        owner.assigned(&[(0, EMBEDDED_EPOCH)]);
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
        let (records, next) = self
            .shared
            .read(&self.cursor, from, max_bytes, wait)
            .await?;
        self.next.store(next, Ordering::Release);
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

    fn position(&self, partition: Partition) -> Option<Offset> {
        (partition == 0).then(|| self.next.load(Ordering::Acquire))
    }
}

impl Drop for EmbeddedLog {
    /// Closes the log: the appends already queued are written, then the writer thread ends
    /// and releases the directory lock before this returns, so the directory can be opened
    /// again at once.
    fn drop(&mut self) {
        self.pending_bytes.close();
        self.tx.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Write;

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

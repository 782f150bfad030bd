//! The writer thread: group commit (one write and one fsync for every append waiting), the
//! rollback of a refused group, segment rolls, and the writer's metrics.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use super::framing::frame;
use super::{AppendReq, DirLock, EmbeddedLogConfig, Segment, Shared, segment_path, sync_dir};
use crate::{LogError, Offset, Result};

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

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: mpsc::Receiver<AppendReq>,
    pub(super) file: File,
    pub(super) file_len: u64,
    pub(super) next: Offset,
    pub(super) config: EmbeddedLogConfig,
    /// The directory lock, released when the thread ends.
    pub(super) _lock: DirLock,
}

impl Writer {
    pub(super) fn run(mut self) {
        let mut buf = Vec::with_capacity(8 << 20);
        let mut group: Vec<(oneshot::Sender<Result<Offset>>, Offset)> = Vec::new();
        while let Some(first) = self.rx.blocking_recv() {
            buf.clear();
            group.clear();
            let mut records = 0usize;
            let mut req = Some(first);
            // Take every append already waiting (up to ~8 MB) into one write and one fsync.
            while let Some(r) = req.take() {
                if self.shared.failed.load(Ordering::Acquire) {
                    let _ = r
                        .reply
                        .send(Err(LogError::Failed("earlier write failed".into())));
                } else {
                    let offset = self.next;
                    for rec in &r.records {
                        frame(&mut buf, self.next, &rec.dataset, &rec.payload);
                        self.next += 1;
                    }
                    records += r.records.len();
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
                    self.shared.observe_group(records, buf.len());
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
        self.shared.fsyncs.inc();
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
pub(super) const GROUP_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

impl Shared {
    fn observe_group(&self, records: usize, bytes: usize) {
        self.group_records.observe(records as f64);
        self.written_bytes.inc_by(bytes as u64);
    }

    /// Registers the writer's metrics: fsyncs, records per fsync, bytes written, and (read on
    /// each scrape) the segments held and whether the log failed.
    pub(super) fn register_metrics(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "eventide_log_fsync_records",
            "records made durable by one fsync (group commit)",
            self.group_records.clone(),
        );
        registry.register(
            "eventide_log_fsyncs",
            "fsyncs of the embedded log",
            self.fsyncs.clone(),
        );
        registry.register(
            "eventide_log_written_bytes",
            "bytes written to the embedded log (framing included)",
            self.written_bytes.clone(),
        );
        registry.register_collector(Box::new(LogGauges(self.clone())));
    }
}

/// The embedded log's gauges, read when `/metrics` is scraped.
struct LogGauges(Arc<Shared>);

impl std::fmt::Debug for LogGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGauges")
    }
}

impl Collector for LogGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let segments = self.0.segments.lock().map(|s| s.len()).unwrap_or(0) as i64;
        let failed = i64::from(self.0.failed.load(Ordering::Acquire));
        for (name, help, v) in [
            (
                "eventide_log_segments",
                "segment files the embedded log holds",
                segments,
            ),
            (
                "eventide_log_failed",
                "1 when the log refuses writes until restarted (a failed write could not be undone)",
                failed,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

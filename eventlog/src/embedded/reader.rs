//! Reading: cursors positioned by offset, kept between polls, re-positioned after a
//! rollback; truncation of segments the store has committed.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tracing::info;

use super::framing::{HEADER, RawRecord, read_record};
use super::{EMBEDDED_EPOCH, ReadCursor, Segment, Shared, io_err};
use crate::{LogError, Offset, Record, Result};

impl Shared {
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
    ) -> io::Result<(Vec<Record>, Offset)> {
        // `durable` before `rollbacks`: a group made durable after a cut is only read by a
        // cursor that has seen the cut.
        let durable = *self.durable.borrow();
        let from = from.max(self.first.load(Ordering::Acquire));
        if from >= durable {
            return Ok((Vec::new(), from));
        }
        let rollbacks = self.rollbacks.load(Ordering::Acquire);
        if slot
            .as_ref()
            .is_none_or(|c| c.next != from || c.rollbacks != rollbacks)
        {
            *slot = self.seek(from)?;
        }
        let Some(cursor) = slot.as_mut() else {
            return Ok((Vec::new(), from));
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
                    cursor.next += 1;
                    bytes += payload.len();
                    out.push(Record {
                        partition: 0,
                        offset,
                        dataset,
                        payload: Bytes::from(payload),
                        epoch: EMBEDDED_EPOCH,
                        end_of_partition: false,
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
        Ok((out, cursor.next))
    }
}

impl Shared {
    pub(super) async fn read(
        self: &Arc<Self>,
        cursor: &Arc<Mutex<Option<ReadCursor>>>,
        from: Offset,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<(Vec<Record>, Offset)> {
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

    pub(super) fn truncate(&self, upto: Offset) -> Result<()> {
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

//! Compaction: merging small segments into large, time-windowed, sorted ones (ADR 0003), and
//! deleting files that no catalog names any more.
//!
//! The compactor runs in the process that owns a partition, one merge at a time on one
//! blocking thread (at most one core), each merge reading at most the policy's
//! `max_input_bytes` of Parquet. A merge:
//! 1. reads its input segments and conforms them to the dataset's schema;
//! 2. sorts the rows by (window, sort key, timestamp) and cuts them at window boundaries and
//!    at the target file size;
//! 3. writes and fsyncs the outputs (marked in flight, so the orphan sweep leaves them);
//! 4. commits under the catalog's commit fence: if every input is still in the catalog and
//!    the partition is still owned, the catalog file is atomically replaced with the inputs
//!    swapped for the outputs and the change applied in memory under one lock, so a query
//!    sees either the inputs or the outputs, never both or neither;
//! 5. retires the inputs: each is deleted once no local query that began before the swap is
//!    running and `retire_grace` has passed (for queries of other processes).
//!
//! A crash at any step leaves the old catalog (outputs become orphans) or the new one
//! (inputs become orphans); the orphan sweep deletes segment files of owned partitions that
//! no catalog names, so nothing is counted twice and nothing leaks.

pub mod policy;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use arrow::array::{Array, ArrayRef, Int64Array, TimestampMicrosecondArray};
use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use eventide_eventlog::{Epoch, Partition};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tracing::{debug, error, info, warn};

pub use policy::{DAY_US, HOUR_US, MergePolicy, MergeTask, TimeWindowPolicy, window_of};

use crate::hot::{batch_bytes, conform};
use crate::segment::{self, SegmentOptions};
use crate::{Inner, Result, SegmentMeta, StoreError, read_lock, write_lock};

/// Who may still read files dropped from a catalog.
#[derive(Debug, Default)]
pub struct Readers {
    /// Bumped at every swap that retires files.
    epoch: u64,
    /// Running local queries by the epoch they started in.
    active: BTreeMap<u64, usize>,
    /// Retired files: (epoch of the swap, when, path).
    retired: Vec<(u64, Instant, String)>,
}

/// Held by a running query: files it may read are not deleted until it is dropped.
pub struct ReadPin {
    inner: Arc<Inner>,
    epoch: u64,
}

impl std::fmt::Debug for ReadPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadPin")
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Drop for ReadPin {
    fn drop(&mut self) {
        let mut r = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = r.active.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                r.active.remove(&self.epoch);
            }
        }
    }
}

impl Inner {
    pub(crate) fn pin(self: &Arc<Self>) -> ReadPin {
        let mut r = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = r.epoch;
        *r.active.entry(epoch).or_default() += 1;
        ReadPin {
            inner: self.clone(),
            epoch,
        }
    }

    /// Queues files dropped from the catalog for deletion.
    pub(crate) fn retire(&self, paths: impl IntoIterator<Item = String>) {
        let mut r = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        r.epoch += 1;
        let epoch = r.epoch;
        let now = Instant::now();
        r.retired
            .extend(paths.into_iter().map(|path| (epoch, now, path)));
    }

    /// Deletes retired files nobody can need any more.
    fn delete_retired(&self) -> usize {
        let due: Vec<String> = {
            let mut r = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            let oldest_reader = r.active.keys().next().copied().unwrap_or(u64::MAX);
            let grace = self.config.retire_grace;
            let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut r.retired)
                .into_iter()
                .partition(|(epoch, at, _)| {
                    // A query that started in an epoch before the swap may read the file.
                    oldest_reader >= *epoch && at.elapsed() >= grace
                });
            r.retired = keep;
            due.into_iter().map(|(_, _, p)| p).collect()
        };
        let mut n = 0;
        for rel in due {
            let path = self.segments_dir.join(&rel);
            match std::fs::remove_file(&path) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "could not delete a retired segment")
                }
            }
        }
        n
    }

    /// Deletes segment files of owned partitions that no catalog names and nobody is
    /// writing: left by a crash between writing a file and committing the catalog.
    fn sweep_orphans(&self) -> usize {
        let (owned, named, committed_ids) = {
            let state = read_lock(&self.state);
            let named: HashSet<String> = state
                .datasets
                .values()
                .flat_map(|d| d.parts.values())
                .flat_map(|p| p.segments.iter().map(|s| s.path.clone()))
                .collect();
            (state.owned.clone(), named, state.committed_ids.clone())
        };
        if owned.is_empty() {
            return 0;
        }
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let retired: HashSet<String> = self
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retired
            .iter()
            .map(|r| r.2.clone())
            .collect();
        let Ok(datasets) = std::fs::read_dir(&self.segments_dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut n = 0;
        for ds in datasets.flatten() {
            let Ok(files) = std::fs::read_dir(ds.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let Some(p) = segment_partition(&name) else {
                    continue;
                };
                let rel = format!("{}/{name}", ds.file_name().to_string_lossy());
                if !owned.contains(&p)
                    || named.contains(&rel)
                    || in_flight.contains(&rel)
                    || retired.contains(&rel)
                {
                    continue;
                }
                let Ok(mtime) = f.metadata().and_then(|m| m.modified()) else {
                    continue;
                };
                let old = now.duration_since(mtime).unwrap_or_default() >= self.config.orphan_grace;
                let before_us = self.config.exclusive && mtime < self.started;
                if !(old || before_us) {
                    continue;
                }
                // A finished file whose id its partition's catalog had already handed out
                // was committed once: no catalog naming it means a lost entry (or a merge
                // input whose deletion a crash interrupted). Keep its data.
                let once_committed = !name.contains('#')
                    && segment_id(&name)
                        .is_none_or(|id| id < committed_ids.get(&p).copied().unwrap_or(u64::MAX));
                if once_committed {
                    self.quarantine(&ds.file_name().to_string_lossy(), &name);
                    continue;
                }
                match std::fs::remove_file(f.path()) {
                    Ok(()) => {
                        info!(file = %rel, "deleted an orphaned segment file (no catalog names it)");
                        n += 1;
                    }
                    Err(e) => {
                        warn!(file = %rel, error = %e, "could not delete an orphaned segment")
                    }
                }
            }
        }
        n
    }

    /// Moves a segment file no catalog names, but that held committed data, to
    /// `DATA/quarantine/{dataset}/` and says so loudly.
    fn quarantine(&self, dataset: &str, name: &str) {
        let from = self.segments_dir.join(dataset).join(name);
        let dir = self.config.data_dir.join("quarantine").join(dataset);
        let to = dir.join(name);
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(&from, &to)) {
            Ok(()) => {
                self.quarantined
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                error!(
                    file = %to.display(),
                    "a segment file holding committed events is named by no catalog entry \
                     (the catalog was edited, restored or lost): it is no longer served and was \
                     moved to quarantine instead of being deleted; see OPERATIONS.md"
                );
            }
            Err(e) => {
                error!(file = %from.display(), error = %e, "could not quarantine a segment file no catalog names; leaving it")
            }
        }
    }

    pub(crate) fn delete_retired_and_orphans(&self) -> usize {
        self.delete_retired() + self.sweep_orphans()
    }

    /// The compactor: merges, retention and file deletion, every `compaction_interval`.
    pub(crate) async fn run_compactor(self: Arc<Self>) {
        // The first pass one interval after the start: a caller that runs a pass itself
        // right after opening (`Store::compact_now`) is not raced by this one.
        let every = self.config.compaction_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.expire().await {
                warn!(error = %e, "retention pass failed; will retry");
            }
            if let Err(e) = self.compact_once().await {
                warn!(error = %e, "compaction failed; will retry");
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.delete_retired_and_orphans()).await;
        }
    }

    /// Drops segments wholly older than their dataset's visibility cut (retention, deletion)
    /// from the partitions this process owns. Returns how many were dropped.
    pub(crate) async fn expire(self: &Arc<Self>) -> Result<usize> {
        let now = self.config.clock.now_micros();
        let cuts: BTreeMap<String, i64> = read_lock(&self.settings)
            .1
            .iter()
            .filter_map(|(name, s)| s.visible_from_us(now).map(|v| (name.clone(), v)))
            .collect();
        if cuts.is_empty() {
            return Ok(0);
        }
        let work: Vec<(String, Partition, Epoch, Vec<SegmentMeta>)> = {
            let state = read_lock(&self.state);
            let mut work = Vec::new();
            for (name, cut) in &cuts {
                let Some(d) = state.datasets.get(name) else {
                    continue;
                };
                for (p, part) in &d.parts {
                    let expired: Vec<SegmentMeta> = part
                        .segments
                        .iter()
                        .filter(|s| s.max_time_us < *cut)
                        .cloned()
                        .collect();
                    if let Some(&epoch) = state.epochs.get(p)
                        && state.owned.contains(p)
                        && !expired.is_empty()
                    {
                        work.push((name.clone(), *p, epoch, expired));
                    }
                }
            }
            work
        };
        let mut dropped = 0;
        for (name, p, epoch, expired) in work {
            let ids: Vec<u64> = expired.iter().map(|s| s.id).collect();
            let this = self.clone();
            let dataset = name.clone();
            let ok = tokio::task::spawn_blocking(move || {
                this.commit_merge(&dataset, p, epoch, &ids, Vec::new())
            })
            .await
            .map_err(|e| StoreError::Internal(format!("catalog commit panicked: {e}")))??;
            if ok {
                dropped += expired.len();
                info!(
                    dataset = %name,
                    partition = p,
                    segments = expired.len(),
                    rows = expired.iter().map(|s| s.rows).sum::<u64>(),
                    "dropped expired segments"
                );
                self.retire(expired.into_iter().map(|s| s.path));
            }
        }
        Ok(dropped)
    }

    /// Plans and runs the merges due now. Returns how many ran.
    pub(crate) async fn compact_once(self: &Arc<Self>) -> Result<usize> {
        let Some(policy) = self.config.merge_policy.clone() else {
            return Ok(0);
        };
        let now = self.config.clock.now_micros();
        let work: Vec<(String, Partition, Vec<MergeTask>)> = {
            let state = read_lock(&self.state);
            let mut work = Vec::new();
            for (name, d) in &state.datasets {
                for (p, part) in &d.parts {
                    if state.owned.contains(p) {
                        let tasks = policy.plan(&part.segments, now);
                        if !tasks.is_empty() {
                            work.push((name.clone(), *p, tasks));
                        }
                    }
                }
            }
            work
        };
        let mut ran = 0;
        for (name, p, tasks) in work {
            for task in tasks {
                let started = Instant::now();
                // One failing merge (an unreadable input, a full disk) must not stall the
                // others: log it and go on; it is planned again next pass.
                let merged = match self.merge(&name, p, &task).await {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(dataset = %name, partition = p, level = task.level, error = %e, "merge failed; will retry");
                        self.report(crate::Activity::MergeFailed {
                            dataset: name.clone(),
                            partition: p,
                            level: task.level,
                            error: e.to_string(),
                        });
                        continue;
                    }
                };
                match merged {
                    Some(done) => {
                        ran += 1;
                        info!(
                            dataset = %name,
                            partition = p,
                            level = task.level,
                            inputs = task.inputs.len(),
                            outputs = done.outputs,
                            rows = done.rows,
                            ms = started.elapsed().as_millis() as u64,
                            "merged segments"
                        );
                        self.report(crate::Activity::Merged {
                            dataset: name.clone(),
                            partition: p,
                            level: task.level,
                            inputs: task.inputs.len(),
                            input_bytes: done.input_bytes,
                            outputs: done.outputs,
                            output_bytes: done.output_bytes,
                            rows: done.rows,
                            took: started.elapsed(),
                        });
                    }
                    None => {
                        debug!(dataset = %name, partition = p, "merge skipped: inputs changed or no memory room")
                    }
                }
            }
        }
        Ok(ran)
    }

    /// Runs one merge. `None` when its inputs are no longer all committed (a retention pass
    /// or another merge took some), the partition was lost, or the memory bound has no room
    /// for it now (it is planned again next pass).
    async fn merge(
        self: &Arc<Self>,
        name: &str,
        p: Partition,
        task: &MergeTask,
    ) -> Result<Option<MergeDone>> {
        let (inputs, schema, epoch) = {
            let state = read_lock(&self.state);
            let Some(d) = state.datasets.get(name) else {
                return Ok(None);
            };
            let Some(part) = d.parts.get(&p) else {
                return Ok(None);
            };
            let inputs: Vec<SegmentMeta> = part
                .segments
                .iter()
                .filter(|s| task.inputs.contains(&s.id))
                .cloned()
                .collect();
            let Some(&epoch) = state.epochs.get(&p) else {
                return Ok(None);
            };
            if inputs.len() != task.inputs.len() || !state.owned.contains(&p) {
                return Ok(None);
            }
            (inputs, d.arrow_schema.clone(), epoch)
        };
        let in_rows: u64 = inputs.iter().map(|s| s.rows).sum();
        let in_bytes: u64 = inputs.iter().map(|s| s.bytes).sum();
        let target = self
            .config
            .merge_policy
            .as_ref()
            .map_or(32 * 1024 * 1024, |p| p.target_bytes());
        // What the merge will hold at its peak: its inputs decoded (as their catalog entries
        // say, or estimated from their size), the sort keys, the piece being written and the
        // encoded outputs.
        let expansion = self.merge_expansion.load(Ordering::Relaxed);
        let in_decoded = policy::decoded_bytes(&inputs, expansion);
        let need =
            in_decoded + (segment::WRITE_CHUNK_BYTES as u64) + in_bytes.saturating_add(target);
        if let Some(guard) = &self.config.memory
            && !guard.has_room_for(need)
        {
            self.merges_deferred.fetch_add(1, Ordering::Relaxed);
            self.report(crate::Activity::MergeDeferred {
                dataset: name.to_owned(),
                partition: p,
                level: task.level,
                need_bytes: need,
            });
            debug!(
                dataset = %name,
                partition = p,
                need_mib = need >> 20,
                rss_mib = guard.rss() >> 20,
                limit_mib = guard.limit() >> 20,
                "merge deferred: no room under --max-memory-mb"
            );
            return Ok(None);
        }
        // Read the inputs.
        let mut batches = Vec::new();
        for s in &inputs {
            let bytes: Bytes = self
                .objects
                .get(&object_store::path::Path::from(s.path.as_str()))
                .await?
                .bytes()
                .await?;
            let schema = schema.clone();
            let read = tokio::task::spawn_blocking(move || -> Result<Vec<RecordBatch>> {
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
                    .with_batch_size(64 * 1024)
                    .build()?;
                let mut out = Vec::new();
                // By name, with the dataset's types: files written by processes that saw the
                // columns in another order, or with another type, line up.
                for b in reader {
                    out.push(conform(&b?, &schema)?);
                }
                Ok(out)
            })
            .await
            .map_err(|e| StoreError::Internal(format!("segment reader panicked: {e}")))??;
            batches.extend(read);
        }
        let decoded: u64 = batches.iter().map(|b| batch_bytes(b) as u64).sum();
        self.merge_expansion.store(
            (decoded.saturating_mul(100) / in_bytes.max(1)).max(100),
            Ordering::Relaxed,
        );
        // Rows per output file from the inputs' bytes per row: the Parquet target, and no
        // more decoded bytes than the inputs' (a piece of very compressible strings stays far
        // from Arrow's 2 GiB offset limit).
        let by_file = (target as f64) / (in_bytes.max(1) as f64 / in_rows.max(1) as f64);
        let max_piece = self
            .config
            .merge_policy
            .as_ref()
            .map_or(policy::MAX_PIECE_DECODED_BYTES, |p| {
                p.max_piece_decoded_bytes()
            });
        let by_decoded = (max_piece as f64) / (decoded.max(1) as f64 / in_rows.max(1) as f64);
        let rows_per_file = by_file.min(by_decoded).clamp(1.0, u64::MAX as f64) as usize;
        let sort_key = read_lock(&self.settings)
            .1
            .get(name)
            .and_then(|s| s.sort_key.clone())
            .unwrap_or_else(|| self.config.sort_key.clone());
        let window_us = task.window_us;
        let schema_ = schema.clone();
        let bloom = self.config.bloom_columns.clone();
        let chunks = tokio::task::spawn_blocking(move || {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            // The outputs have the columns the inputs' rows use.
            let schema_ = eventide_model::chunks::used_fields(&schema_, &refs);
            let pieces = sorted_pieces(&schema_, &batches, &sort_key, window_us, rows_per_file)?;
            let opts = SegmentOptions {
                bloom_columns: bloom,
                presorted: true,
            };
            let step = segment::rows_per_write(
                (decoded as usize) / (in_rows as usize).max(1),
                schema_.fields().len(),
            );
            // One output file at a time, its rows copied out in bounded batches straight into
            // the writer.
            pieces
                .iter()
                .map(|idx| {
                    let mut w =
                        segment::SegmentWriter::new(&schema_, &refs, &opts, idx.len() as u64)?;
                    for part in idx.chunks(step) {
                        w.write(&eventide_model::chunks::interleave_by_name(
                            &schema_, &refs, part,
                        )?)?;
                    }
                    w.finish()
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| StoreError::Internal(format!("merge panicked: {e}")))??;
        let out_rows: u64 = chunks.iter().map(|c| c.rows).sum();
        if out_rows != in_rows {
            return Err(StoreError::Internal(format!(
                "merge of {name} produced {out_rows} rows from {in_rows}; not committed"
            )));
        }
        // Write the outputs.
        let first_offset = inputs.iter().map(|s| s.first_offset).min().unwrap_or(0);
        let last_offset = inputs.iter().map(|s| s.last_offset).max().unwrap_or(0);
        let mut outputs = Vec::new();
        let mut guards = Vec::new();
        for encoded in chunks {
            let id = {
                let mut state = write_lock(&self.state);
                let id = state.next_segment_id.get(&p).copied().unwrap_or(1);
                state.next_segment_id.insert(p, id + 1);
                id
            };
            let rel = self.segment_path(name, p, id);
            guards.push(self.in_flight(&rel));
            outputs.push(
                self.put_segment(rel, encoded, first_offset, last_offset, id, task.level)
                    .await?,
            );
        }
        let n_out = outputs.len();
        let output_bytes = outputs.iter().map(|o| o.bytes).sum();
        let this = self.clone();
        let dataset = name.to_owned();
        let ids = task.inputs.clone();
        let outs = outputs.clone();
        // A fault test holds a merge here, written and not committed.
        fail::fail_point!("store-merge-before-commit");
        let committed =
            tokio::task::spawn_blocking(move || this.commit_merge(&dataset, p, epoch, &ids, outs))
                .await
                .map_err(|e| StoreError::Internal(format!("catalog commit panicked: {e}")))??;
        drop(guards);
        if !committed {
            for o in outputs {
                let _ = std::fs::remove_file(self.segments_dir.join(&o.path));
            }
            return Ok(None);
        }
        self.retire(inputs.into_iter().map(|s| s.path));
        Ok(Some(MergeDone {
            rows: out_rows,
            outputs: n_out,
            input_bytes: in_bytes,
            output_bytes,
        }))
    }

    /// Swaps `inputs` for `outputs` in partition `p`'s catalog, atomically on disk and in
    /// memory. False when an input is gone or the partition is no longer owned.
    fn commit_merge(
        &self,
        name: &str,
        p: Partition,
        epoch: Epoch,
        inputs: &[u64],
        outputs: Vec<SegmentMeta>,
    ) -> Result<bool> {
        let _fence = self.commit_fence.lock().unwrap_or_else(|e| e.into_inner());
        if !self.consumer.get().is_none_or(|c| c.holds(p)) {
            return Ok(false);
        }
        let catalog = {
            let state = read_lock(&self.state);
            // Still owned, and under the assignment the merge began in.
            if !state.owned.contains(&p) || state.epochs.get(&p) != Some(&epoch) {
                return Ok(false);
            }
            let Some(part) = state.datasets.get(name).and_then(|d| d.parts.get(&p)) else {
                return Ok(false);
            };
            let present = part
                .segments
                .iter()
                .filter(|s| inputs.contains(&s.id))
                .count();
            if present != inputs.len() {
                return Ok(false);
            }
            let mut c = state.catalog_of(p);
            c.log = self.log_identity.get().cloned().unwrap_or_default();
            if let Some(entry) = c.datasets.get_mut(name) {
                entry.segments.retain(|s| !inputs.contains(&s.id));
                entry.segments.extend(outputs.iter().cloned());
            }
            c
        };
        crate::CatalogFile::new(&self.config.data_dir, p).commit(&catalog)?;
        let mut state = write_lock(&self.state);
        if let Some(part) = state
            .datasets
            .get_mut(name)
            .and_then(|d| d.parts.get_mut(&p))
        {
            part.segments.retain(|s| !inputs.contains(&s.id));
            part.segments.extend(outputs);
        }
        Ok(true)
    }
}

/// What a committed merge did.
struct MergeDone {
    rows: u64,
    outputs: usize,
    input_bytes: u64,
    output_bytes: u64,
}

/// The id of a segment file name `pNNNNN-IIIIIIIIIIII-token.parquet`.
fn segment_id(file: &str) -> Option<u64> {
    file.get(7..19)?.parse().ok()
}

/// The partition of a segment file name `pNNNNN-….parquet`, or of the object store's staging
/// file for one (`….parquet#N`, left by a crash mid-upload).
fn segment_partition(file: &str) -> Option<Partition> {
    let rest = file.strip_prefix('p')?;
    let base = file.split_once('#').map_or(file, |(b, _)| b);
    if !base.ends_with(".parquet") {
        return None;
    }
    rest.get(..5)?.parse().ok()
}

/// The order of a merge's output: for each output file, the `(input batch, row)` of each of
/// its rows, sorted by (window, sort key columns present, timestamp) and cut so that no file
/// crosses a window or holds more than `rows_per_file` rows. Only the sort keys are
/// concatenated; the rows themselves are copied later, one output file at a time, so a merge
/// holds its decoded inputs once rather than three times (inputs, concatenation, sorted copy).
/// Columns are matched by name: a batch without one of `schema`'s columns counts as null there.
pub fn sorted_pieces(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    sort_key: &[String],
    window_us: i64,
    rows_per_file: usize,
) -> Result<Vec<Vec<(usize, usize)>>> {
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    if n == 0 {
        return Ok(Vec::new());
    }
    let origin: Vec<(u32, u32)> = batches
        .iter()
        .enumerate()
        .flat_map(|(bi, b)| (0..b.num_rows() as u32).map(move |r| (bi as u32, r)))
        .collect();
    // One column of every batch, by name (nulls where a batch lacks it).
    let column = |i: usize| -> Result<ArrayRef> {
        let field = schema.field(i);
        let parts = batches
            .iter()
            .map(|b| {
                Ok(
                    eventide_model::chunks::column_as(b, field)?.unwrap_or_else(|| {
                        arrow::array::new_null_array(field.data_type(), b.num_rows())
                    }),
                )
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        Ok(arrow::compute::concat(&refs)?)
    };
    let ts_col = column(0)?;
    let ts = ts_col
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| StoreError::Internal("timestamp column has the wrong type".into()))?;
    let windows: Int64Array = ts
        .iter()
        .map(|t| t.map(|t| window_of(t, window_us)))
        .collect();
    let mut keys = vec![SortColumn {
        values: Arc::new(windows.clone()) as ArrayRef,
        options: Some(SortOptions::default()),
    }];
    for k in sort_key {
        if let Some((i, _)) = schema.column_with_name(k) {
            keys.push(SortColumn {
                values: column(i)?,
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: false,
                }),
            });
        }
    }
    keys.push(SortColumn {
        values: ts_col.clone(),
        options: Some(SortOptions::default()),
    });
    let indices = lexsort_to_indices(&keys, None)?;
    let order = indices.values();
    let window = |k: usize| windows.value(order[k] as usize);
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let w = window(start);
        let mut end = start;
        while end < n && window(end) == w && end - start < rows_per_file.max(1) {
            end += 1;
        }
        out.push(
            order[start..end]
                .iter()
                .map(|&g| {
                    let (b, r) = origin[g as usize];
                    (b as usize, r as usize)
                })
                .collect(),
        );
        start = end;
    }
    Ok(out)
}

/// Sorts rows by (window, sort key columns present, timestamp) and cuts them into chunks
/// that never cross a window and hold at most `rows_per_file` rows ([`sorted_pieces`],
/// materialized).
pub fn sort_and_cut(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    sort_key: &[String],
    window_us: i64,
    rows_per_file: usize,
) -> Result<Vec<RecordBatch>> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    sorted_pieces(schema, batches, sort_key, window_us, rows_per_file)?
        .iter()
        .map(|idx| {
            Ok(eventide_model::chunks::interleave_by_name(
                schema, &refs, idx,
            )?)
        })
        .collect()
}

#[cfg(test)]
mod sort_tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    #[test]
    fn rows_are_sorted_by_window_key_time_and_cut_at_windows_and_sizes() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("svc", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
        ]));
        // Two hours, services interleaved.
        let ts = [HOUR_US + 5, 3, HOUR_US + 1, 2, 1, HOUR_US + 2];
        let svc = ["b", "b", "a", "a", "b", "a"];
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC")),
                Arc::new(StringArray::from(svc.to_vec())),
                Arc::new(Int64Array::from((0..6).collect::<Vec<i64>>())),
            ],
        )
        .unwrap();
        let chunks = sort_and_cut(
            &schema,
            std::slice::from_ref(&batch),
            &["svc".into()],
            HOUR_US,
            2,
        )
        .unwrap();
        let ids: Vec<Vec<i64>> = chunks
            .iter()
            .map(|c| {
                c.column(2)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        // Hour 0: a@2 (3), b@1 (4), b@3 (1) → cut at 2 rows; hour 1: a@1 (2), a@2 (5), b@5 (0).
        assert_eq!(ids, vec![vec![3, 4], vec![1], vec![2, 5], vec![0]]);
        // Without a sort key present in the schema: by time within each window.
        let chunks = sort_and_cut(&schema, &[batch], &["nope".into()], HOUR_US, 10).unwrap();
        let first: Vec<i64> = chunks[0]
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec();
        assert_eq!(first, vec![4, 3, 1]);
    }
}

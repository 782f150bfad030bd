//! A partition revoked and assigned back to the same process while a flush of it is in
//! flight (its own process: fault points are process-wide). The flush was planned under the
//! first assignment; when it reaches its commit, the partition is owned again, under a new
//! epoch, with a new hot tail replayed from the log. Its commit must fail: committing would
//! put a segment over offsets the new assignment replays (counting them twice), drain the
//! new hot tail's batches (losing them), move the committed offset and reuse the segment id.
//! A record fetched under the first assignment must not be applied under the second.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use eventide_eventlog::{
    Epoch, EventLog, LogConsumer, LogError, NewRecord, Offset, Partition, PartitionOwner, Position,
    Record,
};
use eventide_model::{DatasetSchema, Event, Value, encode_records, events_to_batches};
use eventide_store::{Store, StoreConfig};

/// A log whose records and assignments the test hands out.
#[derive(Default)]
struct FakeLog {
    owner: Mutex<Option<Arc<dyn PartitionOwner>>>,
    queue: Arc<Mutex<VecDeque<Record>>>,
}

struct FakeConsumer {
    queue: Arc<Mutex<VecDeque<Record>>>,
}

#[async_trait]
impl EventLog for FakeLog {
    async fn append_all(
        &self,
        _records: Vec<NewRecord>,
    ) -> eventide_eventlog::Result<Vec<Position>> {
        Err(LogError::Closed)
    }

    fn consume(
        &self,
        owner: Arc<dyn PartitionOwner>,
    ) -> eventide_eventlog::Result<Arc<dyn LogConsumer>> {
        owner.assigned(&[(0, 1)]);
        *self.owner.lock().unwrap() = Some(owner);
        Ok(Arc::new(FakeConsumer {
            queue: self.queue.clone(),
        }))
    }

    fn identity(&self) -> String {
        "fake".into()
    }
}

#[async_trait]
impl LogConsumer for FakeConsumer {
    async fn poll(&self, _max: usize, wait: Duration) -> eventide_eventlog::Result<Vec<Record>> {
        let deadline = Instant::now() + wait;
        loop {
            let got: Vec<Record> = self.queue.lock().unwrap().drain(..).collect();
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn commit(&self, _partition: Partition, _next: Offset) -> eventide_eventlog::Result<()> {
        Ok(())
    }

    fn holds(&self, _partition: Partition) -> bool {
        true
    }
}

impl FakeLog {
    fn owner(&self) -> Arc<dyn PartitionOwner> {
        self.owner.lock().unwrap().clone().expect("consuming")
    }

    /// Record `offset` of dataset `ds`: ten events with ids `offset * 10 ..`.
    fn push(&self, offset: Offset, epoch: Epoch) {
        let mut schema = DatasetSchema::new();
        let events: Vec<Event> = (0..10)
            .map(|i| {
                let mut e = Event {
                    timestamp_us: 1_000_000 + offset as i64,
                    samplerate: 1,
                    fields: vec![("id".into(), Value::Int((offset * 10 + i) as i64))],
                };
                schema.admit(&mut e, 100).unwrap();
                e
            })
            .collect();
        let (payload, _) = encode_records(&events_to_batches(&schema, &events).unwrap(), 1 << 20)
            .unwrap()
            .remove(0);
        self.queue.lock().unwrap().push_back(Record {
            partition: 0,
            offset,
            dataset: "ds".into(),
            payload,
            epoch,
            end_of_partition: false,
        });
    }
}

/// Every id in the dataset's segments and hot tail, sorted.
fn ids(store: &Store, dir: &std::path::Path) -> Vec<i64> {
    use arrow::array::AsArray;
    let snap = store.snapshot("ds").unwrap();
    let mut batches = snap.hot.clone();
    for seg in &snap.segments {
        let f = std::fs::File::open(dir.join("segments").join(&seg.path)).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 1024).unwrap();
        batches.extend(r.map(|b| b.unwrap()));
    }
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    out.sort_unstable();
    out
}

fn parquet_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("segments/ds"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flush_from_an_earlier_assignment_never_commits() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(FakeLog::default());
    let mut config = StoreConfig::new(dir.path());
    config.merge_policy = None;
    config.flush_age = Duration::from_secs(3600);
    let store = Store::open(config, log.clone() as Arc<dyn EventLog>)
        .await
        .unwrap();
    for offset in 0..10 {
        log.push(offset, 1);
    }
    store
        .wait_applied(Position {
            partition: 0,
            offset: 9,
        })
        .await;

    // A flush of offsets 0..=9 writes its file and stops before its commit.
    fail::cfg("store-flush-before-commit", "pause").unwrap();
    let flushing = {
        let store = store.clone();
        tokio::spawn(async move { store.flush_all().await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while parquet_files(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "the flush never wrote its file");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let late_file = parquet_files(dir.path());

    // The partition leaves and comes back: the log replays it from offset 0, and more follows.
    log.owner().revoked(&[0]);
    log.owner().assigned(&[(0, 2)]);
    for offset in 0..15 {
        log.push(offset, 2);
    }
    // A record fetched under the first assignment, handed over late.
    log.push(15, 1);
    store
        .wait_applied(Position {
            partition: 0,
            offset: 14,
        })
        .await;

    // The paused flush goes on: its commit is refused, nothing of it is visible.
    fail::remove("store-flush-before-commit");
    flushing.await.unwrap().unwrap();
    let snap = store.snapshot("ds").unwrap();
    assert!(
        snap.segments.is_empty(),
        "the late flush committed: {:?}",
        snap.segments
    );
    assert_eq!(ids(&store, dir.path()), (0..150).collect::<Vec<i64>>());

    // The new assignment's flush commits everything once, under another file name.
    store.flush_all().await.unwrap();
    let snap = store.snapshot("ds").unwrap();
    assert_eq!(snap.segments.len(), 1);
    assert_eq!(snap.segments[0].last_offset, 14);
    assert!(
        !late_file.contains(&snap.segments[0].path.rsplit('/').next().unwrap().to_owned()),
        "the segment id was reused: {late_file:?} vs {}",
        snap.segments[0].path
    );
    assert!(snap.hot.is_empty());
    assert_eq!(ids(&store, dir.path()), (0..150).collect::<Vec<i64>>());
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("catalog/p00000.json")).unwrap())
            .unwrap();
    assert_eq!(catalog["datasets"]["ds"]["committed_offset"], 14);
    scenario.teardown();
}

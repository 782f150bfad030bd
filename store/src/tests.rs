use super::*;
use arrow::util::pretty::pretty_format_batches;
use eventide_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, Position};
use eventide_model::{Event, Value, encode_records, events_to_batches};

fn ev(ts: i64, id: i64, extra: Option<(&str, Value)>) -> Event {
    let mut fields = vec![("id".to_string(), Value::Int(id))];
    if let Some((k, v)) = extra {
        fields.push((k.to_string(), v));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Event {
        timestamp_us: ts,
        samplerate: 1,
        fields,
    }
}

async fn append(
    log: &EmbeddedLog,
    schema: &mut DatasetSchema,
    ds: &str,
    mut events: Vec<Event>,
) -> Position {
    for e in &mut events {
        schema.admit(e, 1000).unwrap();
    }
    let batches = events_to_batches(schema, &events).unwrap();
    let records = encode_records(&batches, 8 << 20).unwrap();
    let payloads = records
        .into_iter()
        .map(|(b, _)| eventide_eventlog::NewRecord::new(ds, b))
        .collect();
    log.append_all(payloads).await.unwrap().pop().unwrap()
}

fn ids(snap: &DatasetSnapshot, dir: &Path) -> Vec<i64> {
    let mut out = Vec::new();
    let mut batches = snap.hot.clone();
    for seg in &snap.segments {
        let f = std::fs::File::open(dir.join("segments").join(&seg.path)).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 1024).unwrap();
        for b in r {
            batches.push(b.unwrap());
        }
    }
    for b in batches {
        let col = b.column_by_name("id").unwrap();
        let a = col
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        out.extend(a.iter().flatten());
    }
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_tail_flush_and_restart_are_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut schema = DatasetSchema::new();
    {
        let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(&log_dir)).unwrap());
        let store = Store::open(StoreConfig::new(dir.path()), log.clone())
            .await
            .unwrap();
        let o = append(
            &log,
            &mut schema,
            "ds",
            vec![
                ev(3, 1, None),
                ev(1, 2, Some(("s", Value::Str("x".into())))),
            ],
        )
        .await;
        store.wait_applied(o).await;
        let snap = store.snapshot("ds").unwrap();
        assert_eq!(snap.hot.len(), 1);
        assert_eq!(ids(&snap, dir.path()), vec![1, 2]);

        store.flush_all().await.unwrap();
        let snap = store.snapshot("ds").unwrap();
        assert!(snap.hot.is_empty());
        assert_eq!(snap.segments.len(), 1);
        assert_eq!(snap.segments[0].rows, 2);
        assert_eq!(
            (snap.segments[0].min_time_us, snap.segments[0].max_time_us),
            (1, 3)
        );

        // A new column after the flush; older segment lacks it.
        let o = append(
            &log,
            &mut schema,
            "ds",
            vec![ev(5, 3, Some(("b", Value::Bool(true))))],
        )
        .await;
        store.wait_applied(o).await;
        let snap = store.snapshot("ds").unwrap();
        assert_eq!(snap.schema.fields().len(), 5);
        assert_eq!(ids(&snap, dir.path()), vec![1, 2, 3]);
        // The hot batch has the columns its rows use, not the dataset's others.
        let text = pretty_format_batches(&snap.hot).unwrap().to_string();
        assert!(
            text.contains("| 1970-01-01T00:00:00.000005Z | 1           | 3  | true |"),
            "{text}"
        );
        assert!(snap.hot[0].column_by_name("s").is_none(), "{text}");
    }
    // Restart: the segment is not replayed again, the hot record is.
    let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(&log_dir)).unwrap());
    let store = Store::open(StoreConfig::new(dir.path()), log.clone())
        .await
        .unwrap();
    let snap = store.snapshot("ds").unwrap();
    assert_eq!(ids(&snap, dir.path()), vec![1, 2, 3]);
    assert_eq!(snap.hot.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(store.schemas()["ds"].len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_truncates_the_log_and_restart_neither_loses_nor_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut schema = DatasetSchema::new();
    let mut cfg = EmbeddedLogConfig::new(&log_dir);
    cfg.segment_bytes = 256;
    {
        let log = Arc::new(EmbeddedLog::open(cfg.clone()).unwrap());
        let store = Store::open(StoreConfig::new(dir.path()), log.clone())
            .await
            .unwrap();
        let mut last = Position {
            partition: 0,
            offset: 0,
        };
        for i in 0..20 {
            last = append(
                &log,
                &mut schema,
                if i % 2 == 0 { "a" } else { "b" },
                vec![ev(i, i, None)],
            )
            .await;
        }
        store.wait_applied(last).await;
        let before = log.segment_count();
        store.flush_all().await.unwrap();
        assert!(
            log.segment_count() < before,
            "committed log segments are removed"
        );
    }
    // Restart after flushes and log truncation: segments come from the catalog, the log's
    // remaining records are skipped where the catalog already covers them.
    let log = Arc::new(EmbeddedLog::open(cfg).unwrap());
    let store = Store::open(StoreConfig::new(dir.path()), log.clone())
        .await
        .unwrap();
    let a = ids(&store.snapshot("a").unwrap(), dir.path());
    let b = ids(&store.snapshot("b").unwrap(), dir.path());
    assert_eq!(a, (0..20).filter(|i| i % 2 == 0).collect::<Vec<_>>());
    assert_eq!(b, (0..20).filter(|i| i % 2 == 1).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_wait_for_room_under_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
    let guard = eventide_model::memory::MemoryGuard::new(1 << 30);
    let mut config = StoreConfig::new(dir.path());
    config.merge_policy = Some(Arc::new(compact::TimeWindowPolicy {
        grace_us: 0,
        ..compact::TimeWindowPolicy::default()
    }));
    // Only this test runs merges.
    config.compaction_interval = Duration::from_secs(3600);
    config.memory = Some(guard.clone());
    let store = Store::open(config, log.clone()).await.unwrap();
    // What the store reports of its work (Eventide's own events).
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    assert!(store.watch(Arc::new(move |a| sink.lock().unwrap().push(a))));
    assert!(!store.watch(Arc::new(|_| {})), "one watcher");
    let mut schema = DatasetSchema::new();
    for i in 0..4 {
        let o = append(&log, &mut schema, "ds", vec![ev(i, i, None)]).await;
        store.wait_applied(o).await;
        store.flush_all().await.unwrap();
    }
    assert_eq!(store.snapshot("ds").unwrap().segments.len(), 4);
    let flushes: Vec<(u64, u64)> = seen
        .lock()
        .unwrap()
        .drain(..)
        .map(|a| match a {
            Activity::Flushed {
                dataset,
                partition: 0,
                rows,
                bytes,
                ..
            } if dataset == "ds" => (rows, bytes),
            other => panic!("not a flush of ds: {other:?}"),
        })
        .collect();
    let bytes: Vec<u64> = store
        .snapshot("ds")
        .unwrap()
        .segments
        .iter()
        .map(|s| s.bytes)
        .collect();
    assert_eq!(flushes, bytes.iter().map(|b| (1, *b)).collect::<Vec<_>>());

    // The process is at its bound: no merge has room, none starts, nothing changes.
    guard.observe(1 << 30);
    assert_eq!(store.compact_now().await.unwrap(), 0);
    assert_eq!(store.snapshot("ds").unwrap().segments.len(), 4);
    assert!(store.merges_deferred() >= 1);
    let deferred = seen.lock().unwrap().drain(..).collect::<Vec<_>>();
    assert_eq!(
        deferred.len() as u64,
        store.merges_deferred(),
        "{deferred:?}"
    );
    assert!(
        deferred.iter().all(
            |a| matches!(a, Activity::MergeDeferred { level: 1, need_bytes, .. } if *need_bytes > 0)
        ),
        "{deferred:?}"
    );

    // Room again: the deferred merges run, and every event is there once.
    guard.observe(0);
    while store.compact_now().await.unwrap() > 0 {}
    let snap = store.snapshot("ds").unwrap();
    assert!(snap.segments.len() < 4, "{} segments", snap.segments.len());
    assert_eq!(ids(&snap, dir.path()), vec![0, 1, 2, 3]);
    let merged = seen.lock().unwrap().drain(..).collect::<Vec<_>>();
    let (inputs, rows): (usize, u64) = merged
        .iter()
        .map(|a| match a {
            Activity::Merged {
                inputs,
                rows,
                outputs,
                input_bytes,
                output_bytes,
                ..
            } => {
                assert!(
                    *outputs >= 1 && *input_bytes > 0 && *output_bytes > 0,
                    "{a:?}"
                );
                (*inputs, *rows)
            }
            other => panic!("not a merge: {other:?}"),
        })
        .fold((0, 0), |(i, r), (a, b)| (i + a, r + b));
    // Every merge is reported: their inputs are the 4 flushes and what earlier merges wrote.
    assert!(inputs >= 4 && rows >= 4, "{merged:?}");
}

/// A catalog that cannot be read is skipped: the other partitions' catalogs are still read
/// (the refresh stopped at the first bad one, and a read-only store did not open at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_catalog_does_not_hide_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let good = Catalog {
        version: 1,
        partition: 2,
        log: "kafka:t".into(),
        next_segment_id: 2,
        datasets: [(
            "ds".to_string(),
            DatasetEntry {
                columns: vec![("id".into(), ColumnType::Int)],
                committed_offset: Some(7),
                segments: vec![SegmentMeta {
                    id: 1,
                    path: "ds/p00002-000000000001-00000000.parquet".into(),
                    min_time_us: 1,
                    max_time_us: 2,
                    rows: 5,
                    bytes: 100,
                    arrow_bytes: 400,
                    first_offset: 0,
                    last_offset: 7,
                    level: 0,
                    created_us: 0,
                }],
            },
        )]
        .into(),
    };
    CatalogFile::new(dir.path(), 2).commit(&good).unwrap();
    std::fs::write(dir.path().join("catalog/p00001.json"), b"{ not json").unwrap();
    let store = Store::open_read_only(StoreConfig::new(dir.path()))
        .await
        .unwrap();
    let snap = store.snapshot("ds").expect("partition 2 is served");
    assert_eq!(snap.segments.len(), 1);
    assert_eq!(snap.segments[0].rows, 5);
}

/// A flush that fails leaves its rows in the hot tail and nothing half-done: the next flush,
/// once the cause is gone, writes them (a failure used to leave the dataset "flushing" for
/// good, so it was never flushed again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_is_retried_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
    let store = Store::open(StoreConfig::new(dir.path()), log.clone())
        .await
        .unwrap();
    let mut schema = DatasetSchema::new();
    let o = append(
        &log,
        &mut schema,
        "ds",
        (0..10).map(|i| ev(i, i, None)).collect(),
    )
    .await;
    store.wait_applied(o).await;
    // The dataset's segment directory cannot be made: a file is in its place.
    std::fs::write(dir.path().join("segments/ds"), b"in the way").unwrap();
    assert!(store.flush_all().await.is_err());
    let snap = store.snapshot("ds").unwrap();
    assert!(snap.segments.is_empty());
    assert_eq!(ids(&snap, dir.path()), (0..10).collect::<Vec<_>>());
    std::fs::remove_file(dir.path().join("segments/ds")).unwrap();
    store.flush_all().await.unwrap();
    let snap = store.snapshot("ds").unwrap();
    assert!(snap.hot.is_empty());
    assert_eq!(snap.segments.len(), 1);
    assert_eq!(ids(&snap, dir.path()), (0..10).collect::<Vec<_>>());
}

//! Merges over files of different shapes: columns in different orders (written by processes
//! that saw them arrive in another order), columns missing from some files, and strings so
//! compressible that decoding multiplies their size.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use eventide_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog};
use eventide_model::ColumnType;
use eventide_model::schema::{samplerate_field, timestamp_field};

use crate::segment::{SegmentOptions, encode_segment};
use crate::{Catalog, CatalogFile, DatasetEntry, SegmentMeta, Store, StoreConfig};

use super::{HOUR_US, TimeWindowPolicy};

/// A file of `rows` rows with ids `from..`, with `columns` (name, type) in that order: `x` is
/// `id * 10`, `y` is `id * 100`, `s` is `text(id)`.
fn file(
    columns: &[(&str, DataType)],
    from: i64,
    rows: i64,
    text: &dyn Fn(i64) -> String,
) -> (SchemaRef, RecordBatch) {
    let ids: Vec<i64> = (from..from + rows).collect();
    let mut fields = vec![
        timestamp_field(),
        samplerate_field(),
        Field::new("id", DataType::Int64, true),
    ];
    let mut arrays: Vec<Arc<dyn Array>> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(
                ids.iter().map(|i| 5 * HOUR_US + i).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from(vec![1; rows as usize])),
        Arc::new(Int64Array::from(ids.clone())),
    ];
    for (name, t) in columns {
        fields.push(Field::new(*name, t.clone(), true));
        arrays.push(match *name {
            "x" => Arc::new(Int64Array::from(
                ids.iter().map(|i| i * 10).collect::<Vec<_>>(),
            )),
            "y" => Arc::new(Int64Array::from(
                ids.iter().map(|i| i * 100).collect::<Vec<_>>(),
            )),
            _ => Arc::new(StringArray::from(
                ids.iter().map(|i| text(*i)).collect::<Vec<_>>(),
            )),
        });
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    (schema, batch)
}

/// Writes the files as committed L0 segments of partition 0 of dataset `ds`, in a catalog
/// whose column order is `order`.
fn commit(dir: &std::path::Path, files: &[(SchemaRef, RecordBatch)], order: &[(&str, ColumnType)]) {
    let mut segments = Vec::new();
    for (i, (schema, batch)) in files.iter().enumerate() {
        let encoded = encode_segment(
            schema,
            std::slice::from_ref(batch),
            &SegmentOptions::default(),
        )
        .unwrap();
        let rel = format!("ds/p00000-{:012}-0000000{i}.parquet", i + 1);
        let path = dir.join("segments").join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &encoded.bytes).unwrap();
        segments.push(SegmentMeta {
            id: i as u64 + 1,
            path: rel,
            min_time_us: encoded.min_time_us,
            max_time_us: encoded.max_time_us,
            rows: encoded.rows,
            bytes: encoded.bytes.len() as u64,
            arrow_bytes: encoded.arrow_bytes,
            first_offset: i as u64,
            last_offset: i as u64,
            level: 0,
            created_us: 0,
        });
    }
    let mut catalog = Catalog {
        version: 1,
        partition: 0,
        log: "embedded".into(),
        next_segment_id: files.len() as u64 + 1,
        datasets: Default::default(),
    };
    let mut columns = vec![("id".to_string(), ColumnType::Int)];
    columns.extend(order.iter().map(|(n, t)| (n.to_string(), *t)));
    catalog.datasets.insert(
        "ds".into(),
        DatasetEntry {
            columns,
            committed_offset: Some(files.len() as u64 - 1),
            segments,
        },
    );
    CatalogFile::new(dir, 0).commit(&catalog).unwrap();
}

async fn store(dir: &std::path::Path, policy: TimeWindowPolicy) -> Store {
    let mut log = EmbeddedLogConfig::new(dir.join("log"));
    log.min_next_offset = 100;
    let log = Arc::new(EmbeddedLog::open(log).unwrap());
    let mut config = StoreConfig::new(dir);
    config.merge_policy = Some(Arc::new(policy));
    config.compaction_interval = Duration::from_secs(3600);
    Store::open(config, log as Arc<dyn EventLog>).await.unwrap()
}

/// Every row of the dataset's segments: (id, x, y), read back by column name.
fn rows(store: &Store, dir: &std::path::Path) -> Vec<(i64, Option<i64>, Option<i64>)> {
    let snap = store.snapshot("ds").unwrap();
    let mut out = Vec::new();
    for seg in &snap.segments {
        let f = std::fs::File::open(dir.join("segments").join(&seg.path)).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 1024).unwrap();
        for b in r {
            let b = b.unwrap();
            let get = |n: &str| {
                b.column_by_name(n)
                    .map(|c| c.as_primitive::<Int64Type>().clone())
            };
            let (id, x, y) = (get("id").unwrap(), get("x"), get("y"));
            for i in 0..b.num_rows() {
                let at = |c: &Option<arrow::array::Int64Array>| {
                    c.as_ref().and_then(|c| c.is_valid(i).then(|| c.value(i)))
                };
                out.push((id.value(i), at(&x), at(&y)));
            }
        }
    }
    out.sort_unstable();
    out
}

/// Two files with the same two int columns in opposite orders, and one without `y`: the
/// merged file holds every value under its own name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_matches_columns_by_name_not_position() {
    let dir = tempfile::tempdir().unwrap();
    let none = |_: i64| String::new();
    let files = [
        file(
            &[("x", DataType::Int64), ("y", DataType::Int64)],
            0,
            100,
            &none,
        ),
        file(
            &[("y", DataType::Int64), ("x", DataType::Int64)],
            100,
            100,
            &none,
        ),
        file(&[("x", DataType::Int64)], 200, 50, &none),
    ];
    commit(
        dir.path(),
        &files,
        &[("x", ColumnType::Int), ("y", ColumnType::Int)],
    );
    let store = store(
        dir.path(),
        TimeWindowPolicy {
            grace_us: 0,
            ..TimeWindowPolicy::default()
        },
    )
    .await;
    let before = rows(&store, dir.path());
    assert_eq!(store.compact_now().await.unwrap(), 1, "one L1 merge");
    let snap = store.snapshot("ds").unwrap();
    assert!(
        snap.segments.iter().all(|s| s.level == 1),
        "{:?}",
        snap.segments
    );
    let after = rows(&store, dir.path());
    assert_eq!(after, before);
    for (id, x, y) in after {
        assert_eq!(x, Some(id * 10), "x of {id}");
        assert_eq!(y, (id < 200).then_some(id * 100), "y of {id}");
    }
}

/// Strings that compress to almost nothing: a merge's inputs are bounded by what they decode
/// to, and its outputs cut so no file decodes to more than the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_are_bounded_by_decoded_size_not_file_size() {
    let dir = tempfile::tempdir().unwrap();
    // 2,000 rows of one 4 KiB string each: about 8 MiB decoded, a few KiB of Parquet.
    let big = |_: i64| "z".repeat(4096);
    let files: Vec<_> = (0..6)
        .map(|f| file(&[("s", DataType::Utf8)], f * 2000, 2000, &big))
        .collect();
    commit(dir.path(), &files, &[("s", ColumnType::String)]);
    let policy = TimeWindowPolicy {
        grace_us: 0,
        tier: 2,
        max_input_decoded_bytes: 20 * 1024 * 1024,
        ..TimeWindowPolicy::default()
    };
    let snap_bytes: Vec<(u64, u64)> = {
        let c = CatalogFile::new(dir.path(), 0).load().unwrap();
        c.datasets["ds"]
            .segments
            .iter()
            .map(|s| (s.bytes, s.arrow_bytes))
            .collect()
    };
    assert!(
        snap_bytes.iter().all(|(b, a)| *a > 50 * *b),
        "compressible: {snap_bytes:?}"
    );
    use super::MergePolicy;
    let c = CatalogFile::new(dir.path(), 0).load().unwrap();
    let tasks = policy.plan(&c.datasets["ds"].segments, 10 * 24 * HOUR_US);
    assert_eq!(tasks.len(), 1);
    // Two files (16 MiB decoded) fit the 20 MiB bound, a third would not, although the files
    // are tiny next to the Parquet budget.
    assert_eq!(tasks[0].inputs.len(), 2, "{tasks:?}");
    let store = store(dir.path(), policy).await;
    assert_eq!(store.compact_now().await.unwrap(), 1);
    let snap = store.snapshot("ds").unwrap();
    let merged: Vec<&SegmentMeta> = snap.segments.iter().filter(|s| s.level == 1).collect();
    // 16 MiB decoded, cut at 10 MiB per file (half the input bound).
    assert_eq!(merged.len(), 2, "{merged:?}");
    assert!(
        merged
            .iter()
            .all(|s| s.arrow_bytes <= 10 * 1024 * 1024 + 64 * 1024),
        "{merged:?}"
    );
    assert_eq!(merged.iter().map(|s| s.rows).sum::<u64>(), 4000);
    assert_eq!(rows(&store, dir.path()).len(), 12_000);
}

//! Shared checks of Eventide's fuzz targets: what the output of every decoder must satisfy,
//! beyond "does not panic".
//!
//! - Every item a decoder accepts is admitted by the dataset's type rules or refused with a
//!   message, and the admitted events always build one Arrow batch with one row each.
//! - That batch survives the log payload codec unchanged (what the store will read back).

use arrow::record_batch::RecordBatch;
use eventide_ingest::decode::{Defaults, Item};
use eventide_model::{
    ColumnarBatch, DatasetSchema, Limits, decode_payload, encode_records, events_to_batches,
};

/// Small limits, so that inputs a fuzzer can build reach every one of them.
pub fn limits() -> Limits {
    Limits {
        max_body_bytes: 1 << 20,
        max_event_bytes: 4096,
        max_fields_per_event: 64,
        max_string_bytes: 512,
        max_columns_per_dataset: 96,
        max_json_depth: 24,
        flatten_depth: 3,
        max_record_bytes: 64 * 1024,
        ..Limits::default()
    }
}

/// Request defaults: a fixed clock, samplerate 1.
pub fn defaults() -> Defaults {
    Defaults {
        time_us: None,
        samplerate: 1,
        receive_us: 1_700_000_000_000_000,
        decoded_budget: usize::MAX,
    }
}

/// Admits `items` into a new dataset the way ingest does and checks the batch they build.
/// Returns how many were admitted.
pub fn admit_and_roundtrip(items: Vec<Item>) -> usize {
    let limits = limits();
    let mut schema = DatasetSchema::new();
    let mut accepted = Vec::new();
    for mut event in items.into_iter().flatten() {
        if schema
            .admit(&mut event, limits.max_columns_per_dataset)
            .is_ok()
        {
            accepted.push(event);
        }
    }
    if accepted.is_empty() {
        return 0;
    }
    let batches = events_to_batches(&schema, &accepted).expect("admitted events build batches");
    assert_eq!(
        batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        accepted.len(),
        "one row per admitted event"
    );
    roundtrip(&batches);
    accepted.len()
}

/// Checks a columnar batch holding `accepted` events.
pub fn finish_columnar(batch: ColumnarBatch, accepted: usize) {
    let batches = batch.finish().expect("a columnar batch always assembles");
    assert_eq!(
        batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        accepted,
        "one row per accepted event"
    );
    roundtrip(&batches);
}

/// The log records of `batches` (bounded in size) give back the same rows, in order, under
/// the same column names.
pub fn roundtrip(batches: &[RecordBatch]) {
    if batches.is_empty() {
        return;
    }
    let records = encode_records(batches, limits().max_record_bytes).expect("encode log records");
    let mut back = Vec::new();
    for (payload, rows) in &records {
        let decoded = decode_payload(payload).expect("decode a log payload");
        assert_eq!(decoded.iter().map(|b| b.num_rows()).sum::<usize>(), *rows);
        back.extend(decoded);
    }
    let mut fields: Vec<arrow::datatypes::FieldRef> = Vec::new();
    for b in batches {
        for f in b.schema().fields() {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(f.clone());
            }
        }
    }
    let union = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    let all = |v: &[RecordBatch]| {
        let refs: Vec<&RecordBatch> = v.iter().collect();
        eventide_model::chunks::concat_by_name(&union, &refs).expect("same columns")
    };
    assert_eq!(all(&back), all(batches), "log payload round trip");
}

/// A new columnar batch for an empty dataset.
pub fn columnar() -> ColumnarBatch {
    ColumnarBatch::new(DatasetSchema::new(), limits().max_columns_per_dataset, 64)
}

/// The OTLP targets: the first byte picks traces or logs, the rest is the body. Every group's
/// events must be admitted into a batch that survives the log codec.
pub fn check_otlp(data: &[u8], encoding: eventide_ingest::otlp::Encoding) {
    use eventide_ingest::otlp::{decode_logs, decode_traces};
    let Some((&signal, body)) = data.split_first() else {
        return;
    };
    let decode = if signal & 1 == 0 {
        decode_traces
    } else {
        decode_logs
    };
    let Ok(groups) = decode(body, encoding, None, 1_700_000_000_000_000, &limits()) else {
        return;
    };
    for (dataset, group) in groups {
        assert!(!dataset.is_empty(), "a dataset name");
        assert_eq!(group.items.len(), group.primary.len());
        admit_and_roundtrip(group.items);
    }
}

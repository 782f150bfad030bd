//! `POST /1/batch` (JSON): the columnar decoder, checked against the event path.
#![no_main]

use eventide_fuzz::{columnar, defaults, finish_columnar, limits};
use eventide_ingest::decode::{batch_item, json_batch_into, non_finite_to_null};
use eventide_model::DatasetSchema;
use libfuzzer_sys::fuzz_target;
use simd_json::prelude::*;

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    let d = defaults();
    let mut batch = columnar();
    let Ok(outcomes) = json_batch_into(data, &d, &limits, &mut batch) else {
        return;
    };
    let accepted = outcomes.iter().filter(|o| o.is_none()).count();
    finish_columnar(batch, accepted);

    // The event path (msgpack batches, single events) decides every item the same way, a key
    // repeated in an object included. Like the server, read NaN and ±Infinity literals as
    // null.
    let mut copy = non_finite_to_null(data).unwrap_or_else(|| data.to_vec());
    let value = simd_json::to_borrowed_value(&mut copy).expect("parsed once already");
    let value = value.into_static();
    let items = value.as_array().expect("a batch is an array");
    let mut schema = DatasetSchema::new();
    for (i, item) in items.iter().enumerate() {
        let by_event = match batch_item(item, &d, &limits) {
            Ok(mut e) => schema
                .admit(&mut e, limits.max_columns_per_dataset)
                .err()
                .map(|e| e.to_string()),
            Err(e) => Some(e),
        };
        assert_eq!(
            outcomes[i], by_event,
            "item {i}: columnar and event paths differ"
        );
    }
});

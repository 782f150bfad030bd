//! `POST /1/batch` with `Content-Type: application/msgpack`.
#![no_main]

use eventide_fuzz::{admit_and_roundtrip, defaults, limits};
use eventide_ingest::decode::msgpack_batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = msgpack_batch(data, &defaults(), &limits()) {
        admit_and_roundtrip(items);
    }
});

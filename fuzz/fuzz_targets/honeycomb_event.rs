//! `POST /1/events/{dataset}`: one JSON event.
#![no_main]

use eventide_fuzz::{admit_and_roundtrip, defaults, limits};
use eventide_ingest::decode::json_event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = json_event(data, &defaults(), &limits()) {
        admit_and_roundtrip(vec![Ok(event)]);
    }
});

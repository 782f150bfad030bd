//! The embedded log's record reader (what recovery reads from a segment file after a crash
//! or disk corruption): it returns the intact records before the first bad one, and those
//! records re-frame to exactly the bytes they were read from.
#![no_main]

use eventide_eventlog::{frame_record, scan_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (records, _end) = scan_records(data);
    let mut framed = Vec::new();
    for (offset, dataset, payload) in &records {
        framed.extend_from_slice(&frame_record(*offset, dataset, payload));
    }
    assert!(data.starts_with(&framed), "records re-frame to their bytes");
});
